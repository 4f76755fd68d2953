/* Tree-type classifiers in C (classify.h): DeepForest's crop rule,
 * torchvision's transform, softmax, the driver every classifier table
 * shares, and the reference table "classify/cpu" (the graph on graph_ref).
 * The float arithmetic follows PyTorch's CPU kernels (weights and sums in
 * float32, the antialiased resize width first) so that scores agree with
 * torchvision to float rounding. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detect/classify.h"
#include "detect/detect_internal.h"
#include "detect/model_backend.h"

void det_crop_rect(const det_classifier *c, const cnp_tree *t, uint32_t W, uint32_t H,
                   uint32_t r[4])
{
    /* The box every output writes (the model's own, or the crown's centre
     * +/- radius, clipped to the image); DeepForest reads it from a
     * DataFrame as Python floats. */
    det_box b = det_tree_box(t);
    double x0 = fmin(fmax(b.x0, 0), W), y0 = fmin(fmax(b.y0, 0), H);
    double x1 = fmin(fmax(b.x1, 0), W), y1 = fmin(fmax(b.y1, 0), H);
    if (c->expand > 0) {
        x0 = fmax(0, x0 - c->expand), y0 = fmax(0, y0 - c->expand);
        x1 = fmin(W, x1 + c->expand), y1 = fmin(H, y1 + c->expand);
    }
    double bw = fmax(1, x1 - x0), bh = fmax(1, y1 - y0);
    /* int() truncates toward zero; a box past the image is kept inside it
     * (rasterio would refuse the window). */
    long x = (long)x0, y = (long)y0, w = (long)bw, h = (long)bh;
    x = x < 0 ? 0 : x >= (long)W ? (long)W - 1 : x;
    y = y < 0 ? 0 : y >= (long)H ? (long)H - 1 : y;
    w = w < 1 ? 1 : w > (long)W - x ? (long)W - x : w;
    h = h < 1 ? 1 : h > (long)H - y ? (long)H - y : h;
    r[0] = (uint32_t)x, r[1] = (uint32_t)y, r[2] = (uint32_t)w, r[3] = (uint32_t)h;
}

void det_pixels_crop_rect(const det_classifier *c, const det_pixels *img, const cnp_tree *t,
                          uint32_t r[4])
{
    if (!img->full_w) {
        det_crop_rect(c, t, img->w, img->h, r);
        return;
    }
    det_crop_rect(c, t, img->full_w, img->full_h, r);
    /* Inside the window by the caller's choice; kept inside it whatever. */
    r[0] = r[0] > img->x0 ? r[0] - img->x0 : 0;
    r[1] = r[1] > img->y0 ? r[1] - img->y0 : 0;
    r[0] = r[0] < img->w ? r[0] : img->w - 1;
    r[1] = r[1] < img->h ? r[1] : img->h - 1;
    r[2] = r[2] < img->w - r[0] ? r[2] : img->w - r[0];
    r[3] = r[3] < img->h - r[1] ? r[3] : img->h - r[1];
}

static float triangle(float x)
{
    x = x < 0 ? -x : x;
    return x < 1.0f ? 1.0f - x : 0.0f;
}

cnp_status det_resize_taps(enum det_resize interp, int n, int size, int **first, int **count,
                           float **w, int *max_taps, cnp_err *err)
{
    float scale = (float)n / (float)size;
    float support = scale >= 1.0f ? scale : 1.0f;
    int mt = interp == DET_RESIZE_NEAREST ? 1 : (int)ceilf(support) * 2 + 1;
    *first = malloc((size_t)size * sizeof **first);
    *count = malloc((size_t)size * sizeof **count);
    *w = calloc((size_t)size * (size_t)mt, sizeof **w);
    if (!*first || !*count || !*w) {
        free(*first), free(*count), free(*w);
        *first = *count = NULL, *w = NULL;
        cnp_err_set(err, "out of memory for resize taps (%d -> %d)", n, size);
        return CNP_ERR_NOMEM;
    }
    *max_taps = mt;
    for (int i = 0; i < size; i++) {
        float *wi = *w + (size_t)i * mt;
        if (interp == DET_RESIZE_NEAREST) {
            /* PyTorch's nearest_idx (upsample_nearest2d). */
            long src = n == size ? i : size == 2 * n ? i >> 1 : (long)floorf((float)i * scale);
            (*first)[i] = (int)(src < n - 1 ? src : n - 1);
            (*count)[i] = 1;
            wi[0] = 1.0f;
            continue;
        }
        /* _compute_indices_min_size_weights_aa (antialias, align_corners
         * false). */
        float center = scale * ((float)i + 0.5f);
        float invscale = scale >= 1.0f ? 1.0f / scale : 1.0f;
        long lo = (long)(center - support + 0.5f);
        lo = lo > 0 ? lo : 0;
        long hi = (long)(center + support + 0.5f);
        hi = hi < n ? hi : n;
        int cnt = (int)(hi - lo);
        float total = 0;
        for (int j = 0; j < cnt; j++) {
            wi[j] = triangle(((float)j + (float)lo - center + 0.5f) * invscale);
            total += wi[j];
        }
        for (int j = 0; total != 0.0f && j < cnt; j++)
            wi[j] /= total;
        (*first)[i] = (int)lo;
        (*count)[i] = cnt;
    }
    return CNP_OK;
}

/* One pass over rows (horizontal, step 1) or columns (vertical, step =
 * row length): out[i] = sum_j w[i][j] * in[(first[i] + j) * step]. */
static void resize_pass(const float *in, size_t step, int size, const int *first,
                        const int *count, const float *w, int mt, float *out, size_t ostep)
{
    for (int i = 0; i < size; i++) {
        const float *wi = w + (size_t)i * mt;
        const float *src = in + (size_t)first[i] * step;
        float acc = src[0] * wi[0];
        for (int j = 1; j < count[i]; j++)
            acc += src[(size_t)j * step] * wi[j];
        out[(size_t)i * ostep] = acc;
    }
}

void det_crop_transform(const det_classifier *c, const uint8_t *rgba, uint32_t stride_px,
                        const uint32_t r[4], float *out, float *tmp)
{
    int cw = (int)r[2], ch = (int)r[3], S = c->size;
    int *fx = NULL, *nx = NULL, *fy = NULL, *ny = NULL, mtx = 0, mty = 0;
    float *wx = NULL, *wy = NULL;
    cnp_err ignored;
    /* The transform is ToTensor, Normalize, Resize: normalised values are
     * resized. Taps are recomputed per crop: crops differ in size. */
    if (det_resize_taps(c->interp, cw, S, &fx, &nx, &wx, &mtx, &ignored) != CNP_OK ||
        det_resize_taps(c->interp, ch, S, &fy, &ny, &wy, &mty, &ignored) != CNP_OK) {
        for (size_t i = 0; i < 3 * (size_t)S * S; i++)
            out[i] = NAN; /* out of memory: a crop that cannot pass for a result */
        goto out;
    }
    float *row = malloc((size_t)cw * sizeof *row);
    for (int k = 0; row && k < 3; k++) {
        float mean = c->normalize ? c->mean[k] : 0.0f, sd = c->normalize ? c->std[k] : 1.0f;
        float *t = tmp + (size_t)k * ch * S;
        for (int y = 0; y < ch; y++) {
            const uint8_t *src = rgba + ((size_t)(r[1] + (uint32_t)y) * stride_px + r[0]) * 4;
            for (int x = 0; x < cw; x++)
                row[x] = ((float)src[4 * x + k] / 255.0f - mean) / sd;
            resize_pass(row, 1, S, fx, nx, wx, mtx, t + (size_t)y * S, 1);
        }
        for (int x = 0; x < S; x++)
            resize_pass(t + x, (size_t)S, S, fy, ny, wy, mty, out + (size_t)k * S * S + x,
                        (size_t)S);
    }
    if (!row)
        for (size_t i = 0; i < 3 * (size_t)S * S; i++)
            out[i] = NAN;
    free(row);
out:
    free(fx), free(nx), free(wx), free(fy), free(ny), free(wy);
}

void det_class_softmax(const float *logits, int k, int *type, float *score)
{
    int best = 0;
    for (int i = 1; i < k; i++)
        if (logits[i] > logits[best])
            best = i;
    float sum = 0;
    for (int i = 0; i < k; i++)
        sum += expf(logits[i] - logits[best]);
    *type = best;
    *score = 1.0f / sum;
}

cnp_status det_classify_host(const det_graph *g, const det_pixels *img, cnp_tree *trees,
                             size_t n, int batch, det_class_forward fwd, void *self,
                             cnp_err *err)
{
    const det_classifier *c = &g->classify;
    size_t S = (size_t)c->size, per = 3 * S * S, K = (size_t)c->num_classes;
    batch = batch < 1 ? 1 : batch;
    float *crops = calloc((size_t)batch * per, sizeof *crops);
    float *logits = malloc((size_t)batch * K * sizeof *logits);
    float *tmp = malloc(3 * (size_t)img->h * S * sizeof *tmp);
    cnp_status result = CNP_OK;
    if (!crops || !logits || !tmp) {
        cnp_err_set(err, "out of memory for a batch of %d crops", batch);
        result = CNP_ERR_NOMEM;
    }
    for (size_t i0 = 0; result == CNP_OK && i0 < n; i0 += (size_t)batch) {
        int m = n - i0 < (size_t)batch ? (int)(n - i0) : batch;
        for (int i = 0; i < m; i++) {
            uint32_t r[4];
            det_pixels_crop_rect(c, img, &trees[i0 + i], r);
            det_crop_transform(c, img->host, img->w, r, crops + (size_t)i * per, tmp);
        }
        if ((result = fwd(self, crops, m, logits, err)) != CNP_OK)
            break;
        for (int i = 0; i < m; i++) {
            cnp_tree *t = &trees[i0 + i];
            det_class_softmax(logits + (size_t)i * K, (int)K, &t->type, &t->type_score);
            t->typed = isfinite(t->type_score);
        }
    }
    free(crops), free(logits), free(tmp);
    return result;
}

/* ---- the reference table: the graph on graph_ref, one crop at a time ---- */

static bool cpu_accepts(const det_model *m)
{
    return det_model_is_classifier(m);
}

static cnp_status cpu_create(const det_model *m, ocl_ctx *dev, const cnp_detector_config *dc,
                             void **self, cnp_err *err)
{
    (void)dev, (void)dc, (void)err;
    *self = (void *)det_model_graph(m);
    return CNP_OK;
}

static void cpu_free(void *self)
{
    (void)self;
}

static cnp_status cpu_forward(void *self, const float *crops, int n, float *logits,
                              cnp_err *err)
{
    const det_graph *g = self;
    int S = g->classify.size, K = g->classify.num_classes;
    for (int i = 0; i < n; i++) {
        float *out = NULL;
        int oc, oh, ow;
        cnp_status result = det_graph_ref_run_raw(g, crops + (size_t)i * 3 * S * S, S, S, &out,
                                                  &oc, &oh, &ow, err);
        if (result != CNP_OK)
            return result;
        memcpy(logits + (size_t)i * K, out, (size_t)K * sizeof *out);
        free(out);
    }
    return CNP_OK;
}

static cnp_status cpu_classify(void *self, const det_pixels *img, cnp_tree *trees, size_t n,
                               cnp_err *err)
{
    return det_classify_host(self, img, trees, n, 1, cpu_forward, self, err);
}

const det_backend_i det_backend_classify_cpu = {
    .name = "classify/cpu",
    .on_device = false,
    .accepts = cpu_accepts,
    .create = cpu_create,
    .free = cpu_free,
    .classify = cpu_classify,
};
