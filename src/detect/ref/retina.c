/* The C reference of RetinaNet's detection part with torchvision 0.20's
 * semantics (eval mode): GeneralizedRCNNTransform's input transform,
 * AnchorGenerator, BoxCoder.decode_single, RetinaNet.postprocess_detections
 * and the transform's box rescaling. The float operations follow torch's
 * order (float32 throughout) so that the engine (kernels/graph.cl) and
 * torchvision agree to rounding. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "canopy/detect.h"
#include "detect/graph.h"

/* torchvision (eager mode, _resize_image_and_masks "the normal way"):
 * scale = min(min_size / min(h, w), max_size / max(h, w)) in Python floats
 * (double), output size floor(dim * scale) in double (F.interpolate with
 * recompute_scale_factor). In float32 400 x 400 at min_size 256 came out
 * 255 x 255 where torchvision gives 256 x 256. */
void det_retina_input_size(const det_retina *r, int h, int w, int *rh, int *rw, int *ph,
                           int *pw)
{
    double mn = h < w ? h : w, mx = h < w ? w : h;
    double s = fmin((double)r->min_size / mn, (double)r->max_size / mx);
    *rh = (int)floor((double)h * s);
    *rw = (int)floor((double)w * s);
    int d = r->size_divisible > 0 ? r->size_divisible : 1;
    *ph = (*rh + d - 1) / d * d;
    *pw = (*rw + d - 1) / d * d;
}

/* ATen's upsample_bilinear2d (CPU) source index and weight along one axis:
 * src = max(scale * (dst + 0.5) - 0.5, 0), scale = in / out in float. */
static void bilinear_axis(int in, int out, int dst, int *i0, int *i1, float *l0, float *l1)
{
    float scale = (float)in / (float)out;
    float src = scale * ((float)dst + 0.5f) - 0.5f;
    if (src < 0.0f)
        src = 0.0f;
    int i = (int)floorf(src);
    if (i > in - 1)
        i = in - 1;
    float lam = src - (float)i;
    lam = fminf(fmaxf(lam, 0.0f), 1.0f);
    *i0 = i;
    *i1 = i < in - 1 ? i + 1 : i;
    *l1 = lam;
    *l0 = 1.0f - lam;
}

cnp_status det_retina_input(const det_retina *r, const uint8_t *rgba, uint32_t stride_bytes,
                            uint32_t w, uint32_t h, float **out, int *rh, int *rw, int *ph,
                            int *pw, cnp_err *err)
{
    *out = NULL;
    if (w == 0 || h == 0) {
        cnp_err_set(err, "retina input: empty image %ux%u", w, h);
        return CNP_ERR_INVALID;
    }
    det_retina_input_size(r, (int)h, (int)w, rh, rw, ph, pw);
    size_t plane = (size_t)*ph * *pw;
    float *norm = malloc(sizeof(float) * 3 * w * h);
    float *o = calloc(3 * plane, sizeof(float));
    if (!norm || !o || *rh <= 0 || *rw <= 0) {
        free(norm);
        free(o);
        cnp_err_set(err, "retina input: out of memory or empty resize of %ux%u", w, h);
        return norm && o ? CNP_ERR_INVALID : CNP_ERR_NOMEM;
    }
    for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x < w; x++) {
            const uint8_t *p = rgba + (size_t)y * stride_bytes + 4 * (size_t)x;
            for (int c = 0; c < 3; c++)
                norm[((size_t)c * h + y) * w + x] =
                    ((float)p[c] / 255.0f - r->mean[c]) / r->std[c];
        }
    for (int y = 0; y < *rh; y++) {
        int y0, y1;
        float wy0, wy1;
        bilinear_axis((int)h, *rh, y, &y0, &y1, &wy0, &wy1);
        for (int x = 0; x < *rw; x++) {
            int x0, x1;
            float wx0, wx1;
            bilinear_axis((int)w, *rw, x, &x0, &x1, &wx0, &wx1);
            for (int c = 0; c < 3; c++) {
                const float *s = norm + (size_t)c * h * w;
                float t0 = s[(size_t)y0 * w + x0] * wx0 + s[(size_t)y0 * w + x1] * wx1;
                float t1 = s[(size_t)y1 * w + x0] * wx0 + s[(size_t)y1 * w + x1] * wx1;
                o[(size_t)c * plane + (size_t)y * *pw + x] = t0 * wy0 + t1 * wy1;
            }
        }
    }
    free(norm);
    *out = o;
    return CNP_OK;
}

void det_retina_base_anchors(const det_retina *r, int l, float *anchors)
{
    int k = 0;
    for (int a = 0; a < r->n_ratios; a++) {
        float hr = sqrtf(r->ratios[l][a]);
        float wr = 1.0f / hr;
        for (int s = 0; s < r->n_sizes; s++, k++) {
            float ws = wr * r->sizes[l][s], hs = hr * r->sizes[l][s];
            anchors[4 * k + 0] = rintf(-ws / 2.0f);
            anchors[4 * k + 1] = rintf(-hs / 2.0f);
            anchors[4 * k + 2] = rintf(ws / 2.0f);
            anchors[4 * k + 3] = rintf(hs / 2.0f);
        }
    }
}

/* BoxCoder.decode_single of one box against its anchor, clipped to
 * [0, rw] x [0, rh] (clip_boxes_to_image). */
static det_box decode_box(const det_retina *r, const float *anchor, const float d[4], int rh,
                          int rw)
{
    float wa = anchor[2] - anchor[0], ha = anchor[3] - anchor[1];
    float cx = anchor[0] + 0.5f * wa, cy = anchor[1] + 0.5f * ha;
    float dx = d[0] / r->box_weights[0], dy = d[1] / r->box_weights[1];
    float dw = fminf(d[2] / r->box_weights[2], r->bbox_clip);
    float dh = fminf(d[3] / r->box_weights[3], r->bbox_clip);
    float px = dx * wa, py = dy * ha;
    px = px + cx;
    py = py + cy;
    float pw = expf(dw) * wa, ph = expf(dh) * ha;
    float hw = 0.5f * pw, hh = 0.5f * ph;
    det_box b = {px - hw, py - hh, px + hw, py + hh};
    b.x0 = fminf(fmaxf(b.x0, 0.0f), (float)rw);
    b.x1 = fminf(fmaxf(b.x1, 0.0f), (float)rw);
    b.y0 = fminf(fmaxf(b.y0, 0.0f), (float)rh);
    b.y1 = fminf(fmaxf(b.y1, 0.0f), (float)rh);
    return b;
}

typedef struct cand {
    float score;
    uint32_t idx;
} cand;

/* Score descending, then flat index ascending (torch.topk's order; the
 * device sorts the same keys). */
static int cand_cmp(const void *pa, const void *pb)
{
    const cand *a = pa, *b = pb;
    if (a->score != b->score)
        return a->score > b->score ? -1 : 1;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

static float sigmoid(float v)
{
    return 1.0f / (1.0f + expf(-v));
}

cnp_status det_retina_ref_postprocess(const det_graph *g, float *const *cls, float *const *box,
                                      const int *fh, const int *fw, int rh, int rw, int ph,
                                      int pw, int orig_h, int orig_w, det_detection **out,
                                      size_t *n, cnp_err *err)
{
    const det_retina *r = &g->retina;
    int A = r->n_sizes * r->n_ratios, K = r->num_classes;
    *out = NULL;
    *n = 0;
    size_t cap = (size_t)r->n_levels * (size_t)r->topk_candidates;
    det_box *boxes = malloc((cap ? cap : 1) * sizeof *boxes);
    float *scores = malloc((cap ? cap : 1) * sizeof *scores);
    int *labels = malloc((cap ? cap : 1) * sizeof *labels);
    uint32_t *keep = malloc((cap ? cap : 1) * sizeof *keep);
    cand *c = NULL;
    size_t total = 0;
    cnp_status result = CNP_OK;
    if (!boxes || !scores || !labels || !keep) {
        result = CNP_ERR_NOMEM;
        goto out;
    }
    for (int l = 0; l < r->n_levels; l++) {
        size_t hw = (size_t)fh[l] * fw[l], m = hw * A * K, nc = 0;
        free(c);
        c = malloc((m ? m : 1) * sizeof *c);
        if (!c) {
            result = CNP_ERR_NOMEM;
            goto out;
        }
        /* Flat index over (y, x, a, k): the head's view + permute. */
        for (size_t p = 0; p < hw; p++)
            for (int a = 0; a < A; a++)
                for (int k = 0; k < K; k++) {
                    float s = sigmoid(cls[l][(size_t)(a * K + k) * hw + p]);
                    if (s > r->score_thresh)
                        c[nc++] = (cand){s, (uint32_t)((p * A + a) * K + k)};
                }
        qsort(c, nc, sizeof *c, cand_cmp);
        if (nc > (size_t)r->topk_candidates)
            nc = (size_t)r->topk_candidates;
        float base[4 * DET_GRAPH_MAX_ANCHORS * DET_GRAPH_MAX_ANCHORS];
        det_retina_base_anchors(r, l, base);
        int sy = ph / fh[l], sx = pw / fw[l];
        for (size_t t = 0; t < nc; t++) {
            uint32_t ai = c[t].idx / (uint32_t)K, p = ai / (uint32_t)A, a = ai % (uint32_t)A;
            float fx = (float)((int)(p % (uint32_t)fw[l]) * sx);
            float fy = (float)((int)(p / (uint32_t)fw[l]) * sy);
            float anc[4] = {fx + base[4 * a], fy + base[4 * a + 1], fx + base[4 * a + 2],
                            fy + base[4 * a + 3]};
            float d[4];
            for (int j = 0; j < 4; j++)
                d[j] = box[l][(size_t)(a * 4 + (uint32_t)j) * hw + p];
            boxes[total] = decode_box(r, anc, d, rh, rw);
            scores[total] = c[t].score;
            labels[total] = (int)(c[t].idx % (uint32_t)K);
            total++;
        }
    }
    size_t nk = 0;
    result = det_nms(boxes, scores, labels, total, r->nms_thresh, keep, &nk, err);
    if (result != CNP_OK)
        goto out;
    if (nk > (size_t)r->detections_per_img)
        nk = (size_t)r->detections_per_img;
    if (nk) {
        *out = malloc(nk * sizeof **out);
        if (!*out) {
            result = CNP_ERR_NOMEM;
            goto out;
        }
    }
    float ry = (float)orig_h / (float)rh, rx = (float)orig_w / (float)rw;
    for (size_t k = 0; k < nk; k++) {
        const det_box *b = &boxes[keep[k]];
        (*out)[k] = (det_detection){b->x0 * rx, b->y0 * ry, b->x1 * rx, b->y1 * ry,
                                    scores[keep[k]], labels[keep[k]]};
    }
    *n = nk;
out:
    if (result == CNP_ERR_NOMEM)
        cnp_err_set(err, "retina postprocess: out of memory");
    free(c);
    free(boxes);
    free(scores);
    free(labels);
    free(keep);
    return result;
}

cnp_status det_retina_ref_predict(const det_graph *g, const uint8_t *rgba, uint32_t stride_bytes,
                                  uint32_t w, uint32_t h, det_detection **out, size_t *n,
                                  cnp_err *err)
{
    const det_retina *r = &g->retina;
    *out = NULL;
    *n = 0;
    float *in = NULL, *cls[DET_GRAPH_MAX_LEVELS] = {0}, *box[DET_GRAPH_MAX_LEVELS] = {0};
    int rh, rw, ph, pw, fh[DET_GRAPH_MAX_LEVELS], fw[DET_GRAPH_MAX_LEVELS];
    cnp_status result = det_retina_input(r, rgba, stride_bytes, w, h, &in, &rh, &rw, &ph, &pw,
                                         err);
    if (result == CNP_OK)
        result = det_graph_ref_forward(g, in, ph, pw, cls, box, fh, fw, err);
    if (result == CNP_OK)
        result = det_retina_ref_postprocess(g, cls, box, fh, fw, rh, rw, ph, pw, (int)h, (int)w,
                                            out, n, err);
    free(in);
    for (int l = 0; l < DET_GRAPH_MAX_LEVELS; l++) {
        free(cls[l]);
        free(box[l]);
    }
    return result;
}
