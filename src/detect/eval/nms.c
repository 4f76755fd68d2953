/* Greedy non-maximum suppression, the C reference of the detect_nms_*
 * kernels (kernels/detect.cl): the same order, the same overlap test with
 * the same float operations, so the kept set is identical. Shared by every
 * model family: crowns as boxes centre +- radius (with the containment test,
 * DET_NMS_CONTAIN), box models with labels (class-wise, IoU only). */
#include <math.h>
#include <stdlib.h>

#include "canopy/detect.h"

/* The intersection of a and b and their areas; false when they do not
 * overlap by a positive area. One rounding per operation, in the kernel's
 * order (nms_intersect; this file is compiled as ISO C, where GCC does not
 * contract a * b + c). */
static bool nms_intersect(const det_box *a, const det_box *b, float *inter, float *area_a,
                          float *area_b)
{
    float iw = fminf(a->x1, b->x1) - fmaxf(a->x0, b->x0);
    float ih = fminf(a->y1, b->y1) - fmaxf(a->y0, b->y0);
    if (!(iw > 0.0f && ih > 0.0f))
        return false;
    *inter = iw * ih;
    *area_a = (a->x1 - a->x0) * (a->y1 - a->y0);
    *area_b = (b->x1 - b->x0) * (b->y1 - b->y0);
    return true;
}

bool det_nms_overlaps(const det_box *a, const det_box *b, float iou)
{
    float inter, area_a, area_b;
    if (!nms_intersect(a, b, &inter, &area_a, &area_b))
        return false;
    float uni = area_a + area_b;
    uni = uni - inter;
    return inter > iou * uni;
}

bool det_nms_contains(const det_box *a, const det_box *b, float contain)
{
    float inter, area_a, area_b;
    if (!(contain < 1.0f) || !nms_intersect(a, b, &inter, &area_a, &area_b))
        return false;
    return inter > contain * fminf(area_a, area_b);
}

typedef struct nms_item {
    det_box box;
    float score;
    int label;
    uint32_t index;
} nms_item;

/* Score descending, then y0, x0, y1, x1, label ascending, then index: a
 * total order on the content, so the device's list (in atomic append order)
 * and the reference's (row-major) sort the same way. */
static int nms_cmp(const void *pa, const void *pb)
{
    const nms_item *a = pa, *b = pb;
    if (a->score != b->score)
        return a->score > b->score ? -1 : 1;
    if (a->box.y0 != b->box.y0)
        return a->box.y0 < b->box.y0 ? -1 : 1;
    if (a->box.x0 != b->box.x0)
        return a->box.x0 < b->box.x0 ? -1 : 1;
    if (a->box.y1 != b->box.y1)
        return a->box.y1 < b->box.y1 ? -1 : 1;
    if (a->box.x1 != b->box.x1)
        return a->box.x1 < b->box.x1 ? -1 : 1;
    if (a->label != b->label)
        return a->label < b->label ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index;
}

/* The n boxes as items to sort; NULL with *st and err set when there are
 * too many or memory ran out. */
static nms_item *nms_items(const det_box *boxes, const float *scores, const int *labels,
                           size_t n, cnp_status *st, cnp_err *err)
{
    if (n > INT32_MAX) {
        cnp_err_set(err, "NMS: %zu boxes is more than supported", n);
        *st = CNP_ERR_INVALID;
        return NULL;
    }
    nms_item *it = malloc(n * sizeof *it);
    if (!it) {
        cnp_err_set(err, "NMS: out of memory for %zu boxes", n);
        *st = CNP_ERR_NOMEM;
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        it[i] = (nms_item){boxes[i], scores[i], labels ? labels[i] : 0, (uint32_t)i};
    *st = CNP_OK;
    return it;
}

cnp_status det_nms(const det_box *boxes, const float *scores, const int *labels, size_t n,
                   float iou, uint32_t *keep, size_t *n_keep, cnp_err *err)
{
    return det_nms_contain(boxes, scores, labels, n, iou, 1.0f, keep, n_keep, err);
}

cnp_status det_nms_contain(const det_box *boxes, const float *scores, const int *labels,
                           size_t n, float iou, float contain, uint32_t *keep, size_t *n_keep,
                           cnp_err *err)
{
    *n_keep = 0;
    if (n == 0)
        return CNP_OK;
    cnp_status st;
    nms_item *it = nms_items(boxes, scores, labels, n, &st, err);
    if (!it)
        return st;
    uint32_t *kept = malloc(n * sizeof *kept);
    if (!kept) {
        free(it);
        cnp_err_set(err, "NMS: out of memory for %zu boxes", n);
        return CNP_ERR_NOMEM;
    }
    qsort(it, n, sizeof *it, nms_cmp);
    /* kept[] holds positions in `it` of the boxes kept so far. Crowns are few
     * (hundreds per image), so the quadratic scan is fine for a reference. */
    size_t nk = 0;
    for (size_t i = 0; i < n; i++) {
        bool suppressed = false;
        for (size_t k = 0; k < nk && !suppressed; k++) {
            const nms_item *p = &it[kept[k]];
            suppressed = p->label == it[i].label &&
                         (det_nms_overlaps(&p->box, &it[i].box, iou) ||
                          det_nms_contains(&p->box, &it[i].box, contain));
        }
        if (!suppressed)
            kept[nk++] = (uint32_t)i;
    }
    for (size_t k = 0; k < nk; k++)
        keep[k] = it[kept[k]].index;
    *n_keep = nk;
    free(kept);
    free(it);
    return CNP_OK;
}

/* ---- the same NMS, window by window ---------------------------------------- */

/* The sorted boxes' grid: square windows of side `side`, each listing the
 * kept boxes whose top-left corner lies in it. Two boxes that overlap by a
 * positive area have corners less than one box extent apart, so with side
 * >= the largest extent a box's possible suppressors are in its own window
 * and the eight around it (the halo). */
typedef struct nms_grid {
    float x0, y0, side;
    size_t cols, rows;
    uint32_t *head;   /* per window: the last kept box in it, UINT32_MAX none */
    uint32_t *next;   /* per kept box (by position in the sorted list) */
} nms_grid;

static size_t grid_cell(const nms_grid *g, float v, float origin, size_t count)
{
    float c = floorf((v - origin) / g->side);
    if (!(c > 0.0f))
        return 0;
    return c >= (float)(count - 1) ? count - 1 : (size_t)c;
}

/* Side and extent of the grid; false when a box is not finite (the caller
 * falls back to the plain scan). */
static bool grid_plan(nms_grid *g, const nms_item *it, size_t n, float window)
{
    float minx = INFINITY, miny = INFINITY, maxx = -INFINITY, maxy = -INFINITY, ext = 0.0f;
    for (size_t i = 0; i < n; i++) {
        const det_box *b = &it[i].box;
        if (!isfinite(b->x0) || !isfinite(b->y0) || !isfinite(b->x1) || !isfinite(b->y1))
            return false;
        minx = fminf(minx, b->x0);
        miny = fminf(miny, b->y0);
        maxx = fmaxf(maxx, b->x0);
        maxy = fmaxf(maxy, b->y0);
        ext = fmaxf(ext, fmaxf(b->x1 - b->x0, b->y1 - b->y0));
    }
    /* A little above the largest extent: cells a float rounding apart
     * still hold every pair that can overlap. */
    g->side = fmaxf(fmaxf(window, ext * 1.001f + 1e-3f), 1e-3f);
    /* No more windows than boxes (times 4): a few huge boxes among many
     * small ones make the windows wider, never the grid larger. */
    for (;;) {
        double cols = floor((double)(maxx - minx) / g->side) + 1;
        double rows = floor((double)(maxy - miny) / g->side) + 1;
        if (cols * rows <= 4.0 * (double)n + 16) {
            g->cols = (size_t)cols;
            g->rows = (size_t)rows;
            break;
        }
        g->side *= 2.0f;
    }
    g->x0 = minx;
    g->y0 = miny;
    return true;
}

/* Whether the kept box p suppresses q (the scan's test, in its order). */
static bool nms_suppresses(const nms_item *p, const nms_item *q, float iou, float contain)
{
    return p->label == q->label &&
           (det_nms_overlaps(&p->box, &q->box, iou) || det_nms_contains(&p->box, &q->box, contain));
}

cnp_status det_nms_contain_local(const det_box *boxes, const float *scores, const int *labels,
                                 size_t n, float iou, float contain, float window,
                                 uint32_t *keep, size_t *n_keep, cnp_err *err)
{
    *n_keep = 0;
    if (n == 0)
        return CNP_OK;
    nms_grid g = {0};
    cnp_status result;
    nms_item *it = nms_items(boxes, scores, labels, n, &result, err);
    if (!it)
        return result;
    if (!grid_plan(&g, it, n, window)) {
        free(it);
        return det_nms_contain(boxes, scores, labels, n, iou, contain, keep, n_keep, err);
    }
    g.head = malloc(g.cols * g.rows * sizeof *g.head);
    g.next = malloc(n * sizeof *g.next);
    result = CNP_OK;
    if (!g.head || !g.next) {
        cnp_err_set(err, "NMS: out of memory for %zu boxes in %zu windows", n, g.cols * g.rows);
        result = CNP_ERR_NOMEM;
        goto out;
    }
    qsort(it, n, sizeof *it, nms_cmp);
    for (size_t c = 0; c < g.cols * g.rows; c++)
        g.head[c] = UINT32_MAX;
    /* The scan's order and test; only the kept boxes of the window and its
     * halo are looked at. Whether any suppresses decides, not which: the
     * kept set is the scan's. */
    size_t nk = 0;
    for (size_t i = 0; i < n; i++) {
        size_t cx = grid_cell(&g, it[i].box.x0, g.x0, g.cols);
        size_t cy = grid_cell(&g, it[i].box.y0, g.y0, g.rows);
        bool suppressed = false;
        for (size_t y = cy ? cy - 1 : 0; y <= cy + 1 && y < g.rows && !suppressed; y++)
            for (size_t x = cx ? cx - 1 : 0; x <= cx + 1 && x < g.cols && !suppressed; x++)
                for (uint32_t k = g.head[y * g.cols + x]; k != UINT32_MAX && !suppressed;
                     k = g.next[k])
                    suppressed = nms_suppresses(&it[k], &it[i], iou, contain);
        if (suppressed)
            continue;
        g.next[i] = g.head[cy * g.cols + cx];
        g.head[cy * g.cols + cx] = (uint32_t)i;
        keep[nk++] = it[i].index;
    }
    *n_keep = nk;
out:
    free(it);
    free(g.head);
    free(g.next);
    return result;
}

det_box det_tree_box(const cnp_tree *t)
{
    if (t->boxed)
        return (det_box){t->x0, t->y0, t->x1, t->y1};
    return (det_box){t->x - t->radius, t->y - t->radius, t->x + t->radius, t->y + t->radius};
}

/* det_trees_nms, by the plain scan or window by window. */
static cnp_status trees_nms(cnp_tree *trees, size_t *n, float iou, bool local, cnp_err *err)
{
    if (*n < 2 || !(iou < 1.0f))
        return CNP_OK;
    det_box *boxes = malloc(*n * sizeof *boxes);
    float *scores = malloc(*n * sizeof *scores);
    uint32_t *keep = malloc(*n * sizeof *keep);
    cnp_tree *copy = malloc(*n * sizeof *copy);
    cnp_status result = CNP_OK;
    if (!boxes || !scores || !keep || !copy) {
        cnp_err_set(err, "NMS: out of memory for %zu trees", *n);
        result = CNP_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < *n; i++) {
        boxes[i] = det_tree_box(&trees[i]);
        scores[i] = trees[i].score;
        copy[i] = trees[i];
    }
    size_t nk = 0;
    result = local ? det_nms_contain_local(boxes, scores, NULL, *n, iou, DET_NMS_CONTAIN, 0.0f,
                                           keep, &nk, err)
                   : det_nms_contain(boxes, scores, NULL, *n, iou, DET_NMS_CONTAIN, keep, &nk,
                                     err);
    if (result != CNP_OK)
        goto out;
    for (size_t k = 0; k < nk; k++)
        trees[k] = copy[keep[k]];
    *n = nk;
out:
    free(boxes);
    free(scores);
    free(keep);
    free(copy);
    return result;
}

cnp_status det_trees_nms(cnp_tree *trees, size_t *n, float iou, cnp_err *err)
{
    return trees_nms(trees, n, iou, false, err);
}

cnp_status det_trees_nms_local(cnp_tree *trees, size_t *n, float iou, cnp_err *err)
{
    return trees_nms(trees, n, iou, true, err);
}
