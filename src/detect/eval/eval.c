/* Detection quality: one-to-one matching of predicted crowns to annotated
 * boxes at an IoU threshold, and the annotation CSV reader. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canopy/detect.h"

double det_box_iou(const det_box *a, const det_box *b)
{
    double iw = fmin(a->x1, b->x1) - fmax(a->x0, b->x0);
    double ih = fmin(a->y1, b->y1) - fmax(a->y0, b->y0);
    double inter = iw > 0 && ih > 0 ? iw * ih : 0.0;
    double area_a = fmax(0.0, (double)a->x1 - a->x0) * fmax(0.0, (double)a->y1 - a->y0);
    double area_b = fmax(0.0, (double)b->x1 - b->x0) * fmax(0.0, (double)b->y1 - b->y0);
    double uni = area_a + area_b - inter;
    return uni > 0 ? inter / uni : 0.0;
}

void det_match_stats_finish(det_match_stats *s)
{
    s->precision = s->predictions ? (double)s->matched / (double)s->predictions : 1.0;
    s->recall = s->annotations ? (double)s->matched / (double)s->annotations : 1.0;
    double pr = s->precision + s->recall;
    s->f1 = pr > 0 ? 2.0 * s->precision * s->recall / pr : 0.0;
    s->count_error = (long)s->predictions - (long)s->annotations;
}

/* Order of predictions: score descending, then index (a total order, so
 * qsort's instability does not matter). */
typedef struct scored {
    float score;
    size_t index;
} scored;

static int by_score(const void *pa, const void *pb)
{
    const scored *a = pa, *b = pb;
    if (a->score != b->score)
        return a->score > b->score ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index;
}

void det_match(const cnp_tree *pred, size_t n_pred, const det_box *truth, size_t n_truth,
               double min_iou, det_match_stats *out)
{
    det_match_pairs(pred, n_pred, truth, n_truth, min_iou, NULL, out);
}

void det_match_pairs(const cnp_tree *pred, size_t n_pred, const det_box *truth, size_t n_truth,
                     double min_iou, size_t *pair, det_match_stats *out)
{
    for (size_t i = 0; pair && i < n_pred; i++)
        pair[i] = SIZE_MAX;
    *out = (det_match_stats){.predictions = n_pred, .annotations = n_truth};
    scored *order = malloc((n_pred ? n_pred : 1) * sizeof *order);
    unsigned char *used = calloc(n_truth ? n_truth : 1, 1);
    if (!order || !used) {
        /* Matching tiny lists never fails in practice; report nothing matched. */
        free(order);
        free(used);
        det_match_stats_finish(out);
        return;
    }
    for (size_t i = 0; i < n_pred; i++)
        order[i] = (scored){pred[i].score, i};
    if (n_pred > 1)
        qsort(order, n_pred, sizeof *order, by_score);
    for (size_t k = 0; k < n_pred; k++) {
        const cnp_tree *p = &pred[order[k].index];
        det_box pb = det_tree_box(p);
        double best = -1;
        size_t best_j = 0;
        for (size_t j = 0; j < n_truth; j++) {
            if (used[j])
                continue;
            double iou = det_box_iou(&pb, &truth[j]);
            if (iou > best) {
                best = iou;
                best_j = j;
            }
        }
        if (best >= min_iou) {
            used[best_j] = 1;
            out->matched++;
            if (pair)
                pair[order[k].index] = best_j;
        }
    }
    free(order);
    free(used);
    det_match_stats_finish(out);
}

/* Splits one CSV line on commas in place (no quoting: the annotation files
 * hold names and numbers only). Returns the field count. */
static int split_fields(char *line, char **fields, int max)
{
    int n = 0;
    char *p = line;
    while (n < max) {
        fields[n++] = p;
        char *c = strchr(p, ',');
        if (!c)
            break;
        *c = '\0';
        p = c + 1;
    }
    return n;
}

static bool parse_num(const char *s, double *v)
{
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    while (*end == ' ' || *end == '\t')
        end++;
    return end != s && *end == '\0' && errno == 0 && isfinite(*v);
}

/* Calls fn(ctx, line, lineno, err) for every non-empty line of a CSV file
 * (line ending stripped, lineno from 1) until fn returns an error. */
static cnp_status csv_lines(const char *csv_path,
                            cnp_status (*fn)(void *ctx, char *line, int lineno, cnp_err *err),
                            void *ctx, cnp_err *err)
{
    FILE *f = fopen(csv_path, "r");
    if (!f) {
        cnp_err_set(err, "%s: %s", csv_path, strerror(errno));
        return errno == ENOENT ? CNP_ERR_NOTFOUND : CNP_ERR_IO;
    }
    cnp_status result = CNP_OK;
    char line[4096];
    for (int lineno = 1; result == CNP_OK && fgets(line, sizeof line, f); lineno++) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0])
            result = fn(ctx, line, lineno, err);
    }
    if (result == CNP_OK && ferror(f)) {
        cnp_err_set(err, "%s: read error", csv_path);
        result = CNP_ERR_IO;
    }
    fclose(f);
    return result;
}

/* Room for one more element of size sz in *v (n used of *cap). */
static cnp_status grow(void **v, size_t *cap, size_t n, size_t sz, const char *path,
                       cnp_err *err)
{
    if (n < *cap)
        return CNP_OK;
    size_t nc = *cap ? 2 * *cap : 64;
    void *p = realloc(*v, nc * sz);
    if (!p) {
        cnp_err_set(err, "%s: out of memory", path);
        return CNP_ERR_NOMEM;
    }
    *v = p;
    *cap = nc;
    return CNP_OK;
}

struct box_reader {
    const char *path, *image;
    det_box *boxes;
    size_t n, cap;
};

static cnp_status read_box_line(void *ctx, char *line, int lineno, cnp_err *err)
{
    struct box_reader *r = ctx;
    char *fields[8];
    int nf = split_fields(line, fields, 8);
    if (lineno == 1) {
        if (nf < 5 || strcmp(fields[0], "image_path") != 0) {
            cnp_err_set(err, "%s:1: header must start image_path,xmin,ymin,xmax,ymax", r->path);
            return CNP_ERR_FORMAT;
        }
        return CNP_OK;
    }
    double v[4];
    if (nf < 5 || !parse_num(fields[1], &v[0]) || !parse_num(fields[2], &v[1]) ||
        !parse_num(fields[3], &v[2]) || !parse_num(fields[4], &v[3]) || v[2] < v[0] ||
        v[3] < v[1]) {
        cnp_err_set(err, "%s:%d: expected image_path,xmin,ymin,xmax,ymax with xmax >= xmin",
                    r->path, lineno);
        return CNP_ERR_FORMAT;
    }
    if (r->image && strcmp(fields[0], r->image) != 0)
        return CNP_OK;
    void *mem = r->boxes;
    cnp_status st = grow(&mem, &r->cap, r->n, sizeof *r->boxes, r->path, err);
    r->boxes = mem;
    if (st != CNP_OK)
        return st;
    /* xmax, ymax are inclusive pixel indices: the box ends at +1. */
    r->boxes[r->n++] = (det_box){(float)v[0], (float)v[1], (float)(v[2] + 1), (float)(v[3] + 1)};
    return CNP_OK;
}

cnp_status det_annotations_read(const char *csv_path, const char *image, det_box **boxes,
                                size_t *n, cnp_err *err)
{
    struct box_reader r = {.path = csv_path, .image = image};
    cnp_status result = csv_lines(csv_path, read_box_line, &r, err);
    if (result != CNP_OK) {
        free(r.boxes);
        r.boxes = NULL;
        r.n = 0;
    }
    *boxes = r.boxes;
    *n = r.n;
    return result;
}

struct name_reader {
    const char *path;
    char **names;
    size_t n, cap;
};

static cnp_status read_name_line(void *ctx, char *line, int lineno, cnp_err *err)
{
    struct name_reader *r = ctx;
    char *comma = strchr(line, ',');
    if (lineno == 1 || !comma)
        return CNP_OK;
    *comma = '\0';
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->names[i], line) == 0)
            return CNP_OK;
    if (r->n == r->cap) {
        size_t nc = r->cap ? 2 * r->cap : 8;
        char **p = realloc(r->names, nc * sizeof *p);
        if (!p)
            goto nomem;
        r->names = p;
        r->cap = nc;
    }
    if (!(r->names[r->n] = strdup(line)))
        goto nomem;
    r->n++;
    return CNP_OK;
nomem:
    cnp_err_set(err, "%s: out of memory", r->path);
    return CNP_ERR_NOMEM;
}

cnp_status det_annotations_images(const char *csv_path, char ***names, size_t *n,
                                  cnp_err *err)
{
    struct name_reader r = {.path = csv_path};
    cnp_status result = csv_lines(csv_path, read_name_line, &r, err);
    if (result != CNP_OK) {
        det_names_free(r.names, r.n);
        r.names = NULL;
        r.n = 0;
    }
    *names = r.names;
    *n = r.n;
    return result;
}

void det_names_free(char **names, size_t n)
{
    for (size_t i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
}

/* Tree types of annotation rows (det_annotations_types). */
struct type_reader {
    const char *path, *image;
    const det_model *cls;
    int col;      /* the type's column; -1: none */
    bool label;   /* the column is `label` */
    bool probing; /* first pass over `label`: does every value name a type? */
    bool foreign; /* a label that is not one of cls's types */
    size_t named; /* labels naming a type */
    int *types;
    size_t n, cap;
};

static int type_index(const det_model *cls, const char *name)
{
    for (int k = 0; k < det_model_type_count(cls); k++)
        if (strcmp(det_model_type_name(cls, k), name) == 0)
            return k;
    return -1;
}

static cnp_status read_type_line(void *ctx, char *line, int lineno, cnp_err *err)
{
    struct type_reader *r = ctx;
    char *fields[32];
    int nf = split_fields(line, fields, 32);
    if (lineno == 1) {
        r->col = -1;
        for (int i = 0; i < nf && r->col < 0; i++)
            if (strcmp(fields[i], "type") == 0)
                r->col = i;
        for (int i = 0; i < nf && r->col < 0; i++)
            if (strcmp(fields[i], "label") == 0)
                r->col = i, r->label = true;
        return CNP_OK;
    }
    if (r->col < 0)
        return CNP_OK;
    const char *v = r->col < nf ? fields[r->col] : "";
    int k = v[0] ? type_index(r->cls, v) : -1;
    if (r->probing) {
        r->foreign |= v[0] && k < 0;
        r->named += k >= 0;
        return CNP_OK;
    }
    if (r->image && strcmp(fields[0], r->image) != 0)
        return CNP_OK;
    if (v[0] && k < 0) {
        cnp_err_set(err, "%s:%d: type \"%.64s\" is not one of the classifier's types", r->path,
                    lineno, v);
        return CNP_ERR_FORMAT;
    }
    void *p = r->types;
    cnp_status st = grow(&p, &r->cap, r->n, sizeof *r->types, r->path, err);
    r->types = p;
    if (st != CNP_OK)
        return st;
    r->types[r->n++] = k;
    return CNP_OK;
}

cnp_status det_annotations_types(const char *csv_path, const char *image, const det_model *cls,
                                 int **types, size_t *n, cnp_err *err)
{
    struct type_reader r = {.path = csv_path, .image = image, .cls = cls, .probing = true};
    *types = NULL;
    *n = 0;
    cnp_status result = csv_lines(csv_path, read_type_line, &r, err);
    if (result != CNP_OK || r.col < 0 || (r.label && (r.foreign || !r.named)))
        return result; /* no type column (DeepForest's label "Tree" is no type) */
    r.probing = false;
    if ((result = csv_lines(csv_path, read_type_line, &r, err)) != CNP_OK) {
        free(r.types);
        return result;
    }
    *types = r.types;
    *n = r.n;
    return CNP_OK;
}
