/* The graph builder shared by the checkpoint importers (resnet_build.h):
 * tensors, batch norm folding and torchvision's ResNet body. */
#include "detect/resnet_build.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BN_EPS 1e-5 /* torchvision's FrozenBatchNorm2d and BatchNorm2d default */

void det_blocks_free(det_blocks *b)
{
    for (int i = 0; b && i < b->n; i++)
        free(b->v[i]);
    if (b) {
        free(b->v);
        b->v = NULL;
        b->n = 0;
    }
}

/* ---- tensors ----------------------------------------------------------- */

/* The checkpoint's tensor for a key, with or without DeepForest's legacy
 * "model." prefix (RetinaNetHub._strip_legacy_prefix). */
const st_tensor *det_build_find(const det_builder *b, const char *key)
{
    const st_tensor *t = st_find(b->st, key);
    if (!t) {
        char pre[ST_NAME_MAX + 8];
        snprintf(pre, sizeof pre, "model.%s", key);
        t = st_find(b->st, pre);
    }
    return t;
}

static void shape_str(const int64_t *s, int n, char *out, size_t cap)
{
    out[0] = '\0';
    for (int i = 0; i < n; i++)
        snprintf(out + strlen(out), cap - strlen(out), "%s%lld", i ? "," : "", (long long)s[i]);
}

/* Reads key as doubles, checking its shape against want (ndim entries;
 * -1 = any, filled in from the tensor). *out malloc'd. */
cnp_status det_build_fetch(det_builder *b, const char *key, int ndim, int64_t *want, double **out)
{
    *out = NULL;
    const st_tensor *t = det_build_find(b, key);
    if (!t) {
        cnp_err_set(b->err, "%s: tensor %s%s is missing (not %s, or an incomplete one)",
                    b->path, b->shown ? b->shown : "", key, b->what);
        return CNP_ERR_FORMAT;
    }
    bool ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = want[i] < 0 || want[i] == t->shape[i];
    if (!ok) {
        char got[96], exp[96];
        shape_str(t->shape, t->ndim, got, sizeof got);
        shape_str(want, ndim, exp, sizeof exp);
        cnp_err_set(b->err, "%s: tensor %s has shape [%s], expected [%s] (-1: any)", b->path,
                    t->name, got, exp);
        return CNP_ERR_FORMAT;
    }
    for (int i = 0; i < ndim; i++)
        want[i] = t->shape[i];
    uint64_t n = st_numel(t);
    if (n == 0 || n > ((uint64_t)1 << 31)) {
        cnp_err_set(b->err, "%s: tensor %s has %llu elements", b->path, t->name,
                    (unsigned long long)n);
        return CNP_ERR_FORMAT;
    }
    double *v = malloc((size_t)n * sizeof *v);
    if (!v) {
        cnp_err_set(b->err, "%s: out of memory", b->path);
        return CNP_ERR_NOMEM;
    }
    cnp_status result = st_read_f64(b->st, t, v, b->err);
    for (uint64_t i = 0; result == CNP_OK && i < n; i++) {
        if (!isfinite(v[i])) {
            cnp_err_set(b->err, "%s: tensor %s holds a non-finite value", b->path, t->name);
            result = CNP_ERR_FORMAT;
        }
    }
    if (result != CNP_OK) {
        free(v);
        return result;
    }
    *out = v;
    return CNP_OK;
}

float *det_build_keep(det_builder *b, size_t n)
{
    det_blocks *bl = b->blocks;
    float **grown = realloc(bl->v, ((size_t)bl->n + 1) * sizeof *grown);
    if (!grown)
        return NULL;
    bl->v = grown;
    float *v = malloc(n * sizeof *v);
    if (v)
        bl->v[bl->n++] = v;
    return v;
}

/* ---- nodes ------------------------------------------------------------- */

int det_build_node(det_builder *b, enum det_op op, const char *name, int in, int in2)
{
    det_graph *g = b->g;
    if (g->n_nodes >= DET_GRAPH_MAX_NODES) {
        cnp_err_set(b->err, "%s: more than %d graph nodes", b->path, DET_GRAPH_MAX_NODES);
        return -1;
    }
    det_node *n = &g->nodes[g->n_nodes];
    memset(n, 0, sizeof *n);
    n->op = op;
    snprintf(n->name, sizeof n->name, "%s", name);
    n->in = in;
    n->in2 = in2;
    n->dilation = 1;
    b->c[g->n_nodes] = in >= 0 ? b->c[in] : 3;
    return g->n_nodes++;
}

/* Adds conv node `name` on node in (residual add, -1 for none), reading and
 * folding its tensors; cout from the tensor, cin checked against in's
 * channels. */
int det_build_conv(det_builder *b, const char *name, int in, int add, const det_conv_spec *s)
{
    char key[ST_NAME_MAX];
    double *w = NULL, *bias = NULL, *bw = NULL, *bb = NULL, *rm = NULL, *rv = NULL;
    int64_t ws[4] = {-1, b->c[in], s->k, s->k};
    snprintf(key, sizeof key, "%s.weight", s->conv);
    int idx = -1;
    if (det_build_fetch(b, key, 4, ws, &w) != CNP_OK)
        goto out;
    int64_t cs[1] = {ws[0]};
    if (s->has_bias) {
        snprintf(key, sizeof key, "%s.bias", s->conv);
        if (det_build_fetch(b, key, 1, cs, &bias) != CNP_OK)
            goto out;
    }
    if (s->bn) {
        const char *parts[4] = {"weight", "bias", "running_mean", "running_var"};
        double **dst[4] = {&bw, &bb, &rm, &rv};
        for (int i = 0; i < 4; i++) {
            snprintf(key, sizeof key, "%s.%s", s->bn, parts[i]);
            if (det_build_fetch(b, key, 1, cs, dst[i]) != CNP_OK)
                goto out;
        }
    }
    size_t per = (size_t)ws[1] * (size_t)(s->k * s->k), cout = (size_t)ws[0];
    float *fw = det_build_keep(b, cout * per), *fb = det_build_keep(b, cout);
    if (!fw || !fb) {
        cnp_err_set(b->err, "%s: out of memory", b->path);
        goto out;
    }
    for (size_t o = 0; o < cout; o++) {
        /* FrozenBatchNorm2d: y = x * scale + (b - rm * scale),
         * scale = w * rsqrt(rv + eps); folded into the conv before it. */
        double scale = 1, shift = bias ? bias[o] : 0;
        if (s->bn) {
            if (!(rv[o] + BN_EPS > 0)) {
                cnp_err_set(b->err, "%s: tensor %s.running_var: channel %zu is %g", b->path,
                            s->bn, o, rv[o]);
                goto out;
            }
            scale = bw[o] / sqrt(rv[o] + BN_EPS);
            shift = bb[o] + (shift - rm[o]) * scale;
        }
        for (size_t i = 0; i < per; i++)
            fw[o * per + i] = (float)(w[o * per + i] * scale);
        fb[o] = (float)shift;
    }
    if ((idx = det_build_node(b, DET_OP_CONV, name, in, add)) < 0)
        goto out;
    det_node *n = &b->g->nodes[idx];
    snprintf(n->weights, sizeof n->weights, "%s", s->weights);
    n->cin = (int)ws[1];
    n->cout = (int)ws[0];
    n->k = s->k;
    n->stride = s->stride;
    n->pad = s->k / 2;
    n->act = s->act;
    n->weight = fw;
    n->bias = fb;
    b->c[idx] = n->cout;
out:
    free(w), free(bias), free(bw), free(bb), free(rm), free(rv);
    return idx;
}

/* ---- the body ---------------------------------------------------------- */

/* One ResNet v1.5 block `layerL.i` on node in: Bottleneck (1x1, 3x3 with
 * the stride, 1x1) when the checkpoint has conv3, else BasicBlock (3x3
 * with the stride, 3x3); the last conv adds the residual (the downsample
 * branch when the checkpoint has one), relu after the add. Returns the
 * block's output node or -1. */
static int block(det_builder *b, int layer, int i, int in, int stride)
{
    char mod[96], bn[96], name[96], key[ST_NAME_MAX];
    const char *pre = b->pre;
    int skip = in;
    snprintf(key, sizeof key, "%slayer%d.%d.downsample.0.weight", pre, layer, i);
    if (det_build_find(b, key)) {
        snprintf(mod, sizeof mod, "%slayer%d.%d.downsample.0", pre, layer, i);
        snprintf(bn, sizeof bn, "%slayer%d.%d.downsample.1", pre, layer, i);
        snprintf(name, sizeof name, "layer%d.%d.downsample", layer, i);
        det_conv_spec s = {mod, bn, false, mod, 1, stride, DET_ACT_NONE};
        if ((skip = det_build_conv(b, name, in, -1, &s)) < 0)
            return -1;
    }
    snprintf(key, sizeof key, "%slayer%d.%d.conv3.weight", pre, layer, i);
    bool bottleneck = det_build_find(b, key) != NULL;
    int n_conv = bottleneck ? 3 : 2, x = in;
    for (int k = 1; k <= n_conv; k++) {
        snprintf(mod, sizeof mod, "%slayer%d.%d.conv%d", pre, layer, i, k);
        snprintf(bn, sizeof bn, "%slayer%d.%d.bn%d", pre, layer, i, k);
        snprintf(name, sizeof name, "layer%d.%d.conv%d", layer, i, k);
        int ks = bottleneck && k != 2 ? 1 : 3;
        bool strided = bottleneck ? k == 2 : k == 1;
        det_conv_spec s = {mod, bn, false, mod, ks, strided ? stride : 1, DET_ACT_RELU};
        if (k == n_conv && skip == in) {
            /* Without a downsample the input must already have the
             * block's output channels. */
            snprintf(key, sizeof key, "%s.weight", mod);
            const st_tensor *t = det_build_find(b, key);
            if (t && t->ndim == 4 && t->shape[0] != b->c[in]) {
                cnp_err_set(b->err,
                            "%s: tensor %slayer%d.%d.downsample.0.weight is missing: the "
                            "block maps %d channels to %lld",
                            b->path, pre, layer, i, b->c[in], (long long)t->shape[0]);
                return -1;
            }
        }
        if ((x = det_build_conv(b, name, x, k == n_conv ? skip : -1, &s)) < 0)
            return -1;
    }
    return x;
}

bool det_build_resnet_body(det_builder *b, int c_out[3])
{
    char conv1[64], bn1[64];
    snprintf(conv1, sizeof conv1, "%sconv1", b->pre);
    snprintf(bn1, sizeof bn1, "%sbn1", b->pre);
    det_conv_spec stem = {conv1, bn1, false, conv1, 7, 2, DET_ACT_RELU};
    int x = det_build_conv(b, "conv1", 0, -1, &stem);
    if (x < 0 || (x = det_build_node(b, DET_OP_MAXPOOL, "maxpool", x, -1)) < 0)
        return false;
    det_node *pool = &b->g->nodes[x];
    pool->k = 3, pool->stride = 2, pool->pad = 1;
    for (int layer = 1; layer <= 4; layer++) {
        char key[ST_NAME_MAX];
        int n = 0;
        while (n < 256 &&
               det_build_find(b, (snprintf(key, sizeof key, "%slayer%d.%d.conv1.weight",
                                           b->pre, layer, n),
                                  key)))
            n++;
        if (n == 0) {
            cnp_err_set(b->err, "%s: tensor %slayer%d.0.conv1.weight is missing (not a ResNet "
                                "body)",
                        b->path, b->pre, layer);
            return false;
        }
        for (int i = 0; i < n; i++)
            if ((x = block(b, layer, i, x, i == 0 && layer > 1 ? 2 : 1)) < 0)
                return false;
        if (layer >= 2)
            c_out[layer - 2] = x;
    }
    return true;
}
