/* Checkpoint import (import.h): torchvision RetinaNet ResNet-FPN tensors
 * -> det_graph -> .cnw version 2. The graph mirrors torchvision 0.20's
 * retinanet_resnet50_fpn: ResNet v1.5 body (stride on the 3x3 conv), FPN on
 * layer2..4 with LastLevelP6P7, and the shared classification and
 * regression heads run on each of P3..P7. */
#include "detect/import.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "canopy/buf.h"
#include "detect/safetensors.h"

#define BN_EPS 1e-5 /* torchvision's FrozenBatchNorm2d and BatchNorm2d default */
#define CONFIG_MAX ((size_t)1 << 20)
#define MODEL_NAME "retinanet-resnet50-fpn"

struct det_import {
    det_graph g;
    float **blocks; /* the conv weights and biases, owned */
    int n_blocks;
    char version[64];
};

/* The builder: the checkpoint, the graph under construction and each
 * node's channel count. */
typedef struct builder {
    st_file *st;
    const char *path;
    det_import *im;
    int c[DET_GRAPH_MAX_NODES];
    cnp_err *err;
} builder;

/* ---- tensors ----------------------------------------------------------- */

/* The checkpoint's tensor for a key, with or without DeepForest's legacy
 * "model." prefix (RetinaNetHub._strip_legacy_prefix). */
static const st_tensor *find(const builder *b, const char *key)
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
static cnp_status fetch(builder *b, const char *key, int ndim, int64_t *want, double **out)
{
    *out = NULL;
    const st_tensor *t = find(b, key);
    if (!t) {
        cnp_err_set(b->err, "%s: tensor %s is missing (not a torchvision RetinaNet ResNet-FPN "
                            "checkpoint, or an incomplete one)",
                    b->path, key);
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

static float *keep(builder *b, size_t n)
{
    det_import *im = b->im;
    float **grown = realloc(im->blocks, ((size_t)im->n_blocks + 1) * sizeof *grown);
    if (!grown)
        return NULL;
    im->blocks = grown;
    float *v = malloc(n * sizeof *v);
    if (v)
        im->blocks[im->n_blocks++] = v;
    return v;
}

/* ---- nodes ------------------------------------------------------------- */

static int add_node(builder *b, enum det_op op, const char *name, int in, int in2)
{
    det_graph *g = &b->im->g;
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

/* A conv spec: module path of the conv (weights key stem), optional batch
 * norm module path, whether the conv has a bias, the graph's weights name,
 * kernel and stride (padding k/2: every conv here is "same" at stride 1). */
typedef struct conv_spec {
    const char *conv;
    const char *bn;
    bool has_bias;
    const char *weights;
    int k, stride;
    enum det_act act;
} conv_spec;

/* Adds conv node `name` on node in (residual add, -1 for none), reading and
 * folding its tensors; cout from the tensor, cin checked against in's
 * channels. */
static int add_conv(builder *b, const char *name, int in, int add, const conv_spec *s)
{
    char key[ST_NAME_MAX];
    double *w = NULL, *bias = NULL, *bw = NULL, *bb = NULL, *rm = NULL, *rv = NULL;
    int64_t ws[4] = {-1, b->c[in], s->k, s->k};
    snprintf(key, sizeof key, "%s.weight", s->conv);
    int idx = -1;
    if (fetch(b, key, 4, ws, &w) != CNP_OK)
        goto out;
    int64_t cs[1] = {ws[0]};
    if (s->has_bias) {
        snprintf(key, sizeof key, "%s.bias", s->conv);
        if (fetch(b, key, 1, cs, &bias) != CNP_OK)
            goto out;
    }
    if (s->bn) {
        const char *parts[4] = {"weight", "bias", "running_mean", "running_var"};
        double **dst[4] = {&bw, &bb, &rm, &rv};
        for (int i = 0; i < 4; i++) {
            snprintf(key, sizeof key, "%s.%s", s->bn, parts[i]);
            if (fetch(b, key, 1, cs, dst[i]) != CNP_OK)
                goto out;
        }
    }
    size_t per = (size_t)ws[1] * (size_t)(s->k * s->k), cout = (size_t)ws[0];
    float *fw = keep(b, cout * per), *fb = keep(b, cout);
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
    if ((idx = add_node(b, DET_OP_CONV, name, in, add)) < 0)
        goto out;
    det_node *n = &b->im->g.nodes[idx];
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

/* A conv node sharing the weights of an earlier one (the heads on P4..P7). */
static int share_conv(builder *b, const char *name, int in, int like)
{
    det_node proto = b->im->g.nodes[like];
    if (b->c[in] != proto.cin) {
        cnp_err_set(b->err, "%s: node %s: %d input channels, weights %s take %d", b->path,
                    name, b->c[in], proto.weights, proto.cin);
        return -1;
    }
    int idx = add_node(b, DET_OP_CONV, name, in, -1);
    if (idx < 0)
        return -1;
    det_node *n = &b->im->g.nodes[idx];
    char keep_name[DET_GRAPH_NAME_MAX];
    snprintf(keep_name, sizeof keep_name, "%s", n->name);
    *n = proto;
    snprintf(n->name, sizeof n->name, "%s", keep_name);
    n->in = in;
    n->in2 = -1;
    b->c[idx] = n->cout;
    return idx;
}

/* ---- the network ------------------------------------------------------- */

/* ResNet v1.5 Bottleneck `layerL.i`: 1x1, 3x3 (stride), 1x1 + residual,
 * relu after the add; the downsample branch first when the checkpoint has
 * one. Returns the block's output node or -1. */
static int bottleneck(builder *b, int layer, int i, int in, int stride)
{
    char mod[96], bn[96], wname[96], name[96], key[ST_NAME_MAX];
    int skip = in;
    snprintf(key, sizeof key, "backbone.body.layer%d.%d.downsample.0.weight", layer, i);
    if (find(b, key)) {
        snprintf(mod, sizeof mod, "backbone.body.layer%d.%d.downsample.0", layer, i);
        snprintf(bn, sizeof bn, "backbone.body.layer%d.%d.downsample.1", layer, i);
        snprintf(name, sizeof name, "layer%d.%d.downsample", layer, i);
        conv_spec s = {mod, bn, false, mod, 1, stride, DET_ACT_NONE};
        if ((skip = add_conv(b, name, in, -1, &s)) < 0)
            return -1;
    }
    int x = in;
    for (int k = 1; k <= 3; k++) {
        snprintf(mod, sizeof mod, "backbone.body.layer%d.%d.conv%d", layer, i, k);
        snprintf(bn, sizeof bn, "backbone.body.layer%d.%d.bn%d", layer, i, k);
        snprintf(wname, sizeof wname, "%s", mod);
        snprintf(name, sizeof name, "layer%d.%d.conv%d", layer, i, k);
        conv_spec s = {mod, bn, false, wname, k == 2 ? 3 : 1, k == 2 ? stride : 1,
                       DET_ACT_RELU};
        if (k == 3 && skip == in) {
            /* Without a downsample the input must already have the
             * block's output channels. */
            snprintf(key, sizeof key, "%s.weight", mod);
            const st_tensor *t = find(b, key);
            if (t && t->ndim == 4 && t->shape[0] != b->c[in]) {
                cnp_err_set(b->err,
                            "%s: tensor backbone.body.layer%d.%d.downsample.0.weight is "
                            "missing: the block maps %d channels to %lld",
                            b->path, layer, i, b->c[in], (long long)t->shape[0]);
                return -1;
            }
        }
        if ((x = add_conv(b, name, x, k == 3 ? skip : -1, &s)) < 0)
            return -1;
    }
    return x;
}

/* The ResNet body: conv1 + bn1 + relu, maxpool, layer1..4. c[0..2] receive
 * the outputs of layer2..4 (C3, C4, C5). */
static bool body(builder *b, int c_out[3])
{
    conv_spec stem = {"backbone.body.conv1", "backbone.body.bn1", false, "backbone.body.conv1",
                      7, 2, DET_ACT_RELU};
    int x = add_conv(b, "conv1", 0, -1, &stem);
    if (x < 0 || (x = add_node(b, DET_OP_MAXPOOL, "maxpool", x, -1)) < 0)
        return false;
    det_node *pool = &b->im->g.nodes[x];
    pool->k = 3, pool->stride = 2, pool->pad = 1;
    for (int layer = 1; layer <= 4; layer++) {
        char key[ST_NAME_MAX];
        int n = 0;
        while (n < 256 &&
               find(b, (snprintf(key, sizeof key, "backbone.body.layer%d.%d.conv1.weight",
                                 layer, n),
                        key)))
            n++;
        if (n == 0) {
            cnp_err_set(b->err, "%s: tensor backbone.body.layer%d.0.conv1.weight is missing "
                                "(not a ResNet body)",
                        b->path, layer);
            return false;
        }
        for (int i = 0; i < n; i++)
            if ((x = bottleneck(b, layer, i, x, i == 0 && layer > 1 ? 2 : 1)) < 0)
                return false;
        if (layer >= 2)
            c_out[layer - 2] = x;
    }
    return true;
}

/* FPN block key stem in either layout: "<block>.<i>.0" (torchvision
 * >= 0.13, Conv2dNormActivation) or "<block>.<i>". */
static void fpn_stem(const builder *b, const char *block, int i, char *out, size_t cap)
{
    char key[ST_NAME_MAX];
    snprintf(key, sizeof key, "backbone.fpn.%s.%d.0.weight", block, i);
    if (find(b, key))
        snprintf(out, cap, "backbone.fpn.%s.%d.0", block, i);
    else
        snprintf(out, cap, "backbone.fpn.%s.%d", block, i);
}

/* FPN on C3..C5 plus LastLevelP6P7: p[0..4] receive P3..P7. */
static bool fpn(builder *b, const int c[3], int p[5])
{
    char stem[96], wname[96], name[64], key[ST_NAME_MAX];
    snprintf(key, sizeof key, "backbone.fpn.inner_blocks.3.weight");
    char key2[ST_NAME_MAX] = "backbone.fpn.inner_blocks.3.0.weight";
    if (find(b, key) || find(b, key2)) {
        cnp_err_set(b->err, "%s: tensor backbone.fpn.inner_blocks.3: an FPN on more than "
                            "layer2..4 is not torchvision's RetinaNet",
                    b->path);
        return false;
    }
    int inner[3], last = -1;
    for (int i = 2; i >= 0; i--) {
        fpn_stem(b, "inner_blocks", i, stem, sizeof stem);
        snprintf(wname, sizeof wname, "backbone.fpn.inner_blocks.%d.0", i);
        snprintf(name, sizeof name, "fpn.inner%d", i);
        conv_spec s = {stem, NULL, true, wname, 1, 1, DET_ACT_NONE};
        if ((inner[i] = add_conv(b, name, c[i], -1, &s)) < 0)
            return false;
        if (last >= 0) {
            snprintf(name, sizeof name, "fpn.topdown%d", i);
            if (b->c[last] != b->c[inner[i]]) {
                cnp_err_set(b->err, "%s: tensor %s.weight: %d outputs, the level above has %d",
                            b->path, stem, b->c[inner[i]], b->c[last]);
                return false;
            }
            if ((inner[i] = add_node(b, DET_OP_UPSAMPLE_ADD, name, inner[i], last)) < 0)
                return false;
        }
        last = inner[i];
        fpn_stem(b, "layer_blocks", i, stem, sizeof stem);
        snprintf(wname, sizeof wname, "backbone.fpn.layer_blocks.%d.0", i);
        snprintf(name, sizeof name, "fpn.p%d", i + 3);
        conv_spec ls = {stem, NULL, true, wname, 3, 1, DET_ACT_NONE};
        if ((p[i] = add_conv(b, name, last, -1, &ls)) < 0)
            return false;
    }
    /* LastLevelP6P7: P6 from P5 when p6 maps C -> C (use_P5), else from C5. */
    const st_tensor *p6 = find(b, "backbone.fpn.extra_blocks.p6.weight");
    if (!p6 || p6->ndim != 4) {
        cnp_err_set(b->err, "%s: tensor backbone.fpn.extra_blocks.p6.weight is %s (RetinaNet "
                            "has LastLevelP6P7; an FPN without it is another detector)",
                    b->path, p6 ? "not 4-dimensional" : "missing");
        return false;
    }
    int src = p6->shape[0] == p6->shape[1] ? p[2] : c[2];
    conv_spec s6 = {"backbone.fpn.extra_blocks.p6", NULL, true, "backbone.fpn.extra_blocks.p6",
                    3, 2, DET_ACT_NONE};
    conv_spec s7 = {"backbone.fpn.extra_blocks.p7", NULL, true, "backbone.fpn.extra_blocks.p7",
                    3, 2, DET_ACT_NONE};
    if ((p[3] = add_conv(b, "fpn.p6", src, -1, &s6)) < 0)
        return false;
    int r = add_node(b, DET_OP_RELU, "fpn.p6.relu", p[3], -1);
    return r >= 0 && (p[4] = add_conv(b, "fpn.p7", r, -1, &s7)) >= 0;
}

/* Key stem of head conv i: "<head>.conv.<i>.0" (torchvision >= 0.13) or
 * the older "<head>.conv.<2i>"; "" when neither is there. */
static void head_stem(const builder *b, const char *head, int i, char *out, size_t cap)
{
    char key[ST_NAME_MAX];
    snprintf(key, sizeof key, "head.%s.conv.%d.0.weight", head, i);
    if (find(b, key)) {
        snprintf(out, cap, "head.%s.conv.%d.0", head, i);
        return;
    }
    snprintf(key, sizeof key, "head.%s.conv.%d.weight", head, 2 * i);
    if (find(b, key))
        snprintf(out, cap, "head.%s.conv.%d", head, 2 * i);
    else
        out[0] = '\0';
}

/* One head (classification or regression) on every level: its convs on
 * P3 read the tensors, the other levels share them. out[l]: the last node
 * of level l. */
static bool head(builder *b, const char *which, const char *tag, const char *last_mod,
                 const int p[5], int out[5])
{
    char stem[96], wname[96], name[64], key[ST_NAME_MAX];
    snprintf(key, sizeof key, "head.%s.conv.0.1.weight", which);
    if (find(b, key)) {
        cnp_err_set(b->err, "%s: tensor %s: a normalised head (retinanet_resnet50_fpn_v2) is "
                            "not supported",
                    b->path, key);
        return false;
    }
    int n_conv = 0;
    while (n_conv < 16 && (head_stem(b, which, n_conv, stem, sizeof stem), stem[0]))
        n_conv++;
    int first[17];
    for (int l = 0; l < 5; l++) {
        int x = p[l];
        for (int i = 0; i <= n_conv; i++) {
            bool logits = i == n_conv;
            if (logits)
                snprintf(name, sizeof name, "head.%s.p%d.%s", tag, l + 3, last_mod);
            else
                snprintf(name, sizeof name, "head.%s.p%d.conv%d", tag, l + 3, i);
            if (l > 0) {
                x = share_conv(b, name, x, first[i]);
            } else {
                if (logits) {
                    snprintf(stem, sizeof stem, "head.%s.%s", which, last_mod);
                    snprintf(wname, sizeof wname, "%s", stem);
                } else {
                    head_stem(b, which, i, stem, sizeof stem);
                    snprintf(wname, sizeof wname, "head.%s.conv.%d.0", which, i);
                }
                conv_spec s = {stem, NULL, true, wname, 3, 1,
                               logits ? DET_ACT_NONE : DET_ACT_RELU};
                x = first[i] = add_conv(b, name, x, -1, &s);
            }
            if (x < 0)
                return false;
        }
        out[l] = x;
    }
    return true;
}

/* Another detector's checkpoint, named by its keys, before anything else
 * is looked for. */
static bool refuse_other(builder *b)
{
    static const struct {
        const char *key, *what;
    } other[] = {
        {"rpn.head.conv.0.0.weight", "a Faster/Mask R-CNN (rpn)"},
        {"rpn.head.conv.weight", "a Faster/Mask R-CNN (rpn)"},
        {"roi_heads.box_head.fc6.weight", "a Faster/Mask R-CNN (roi_heads)"},
        {"head.classification_head.cls_logits.weight", NULL},
    };
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
        if (!other[i].what)
            continue;
        if (find(b, other[i].key)) {
            cnp_err_set(b->err, "%s: tensor %s: %s checkpoint, not a RetinaNet", b->path,
                        other[i].key, other[i].what);
            return false;
        }
    }
    if (!find(b, "head.classification_head.cls_logits.weight")) {
        cnp_err_set(b->err,
                    "%s: tensor head.classification_head.cls_logits.weight is missing: not "
                    "a torchvision RetinaNet checkpoint",
                    b->path);
        return false;
    }
    return true;
}

/* ---- config.json ------------------------------------------------------- */

static bool cfg_num(const cJSON *root, const char *key, double lo, double hi, double *v,
                    const char *path, cnp_err *err, bool *bad)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!it || cJSON_IsNull(it))
        return false;
    /* torchvision takes min_size as an int or a tuple; eval uses the last. */
    if (cJSON_IsArray(it) && strcmp(key, "min_size") == 0)
        it = cJSON_GetArrayItem(it, cJSON_GetArraySize(it) - 1);
    if (!cJSON_IsNumber(it) || !(it->valuedouble >= lo && it->valuedouble <= hi)) {
        cnp_err_set(err, "%s: %s must be a number in [%g, %g]", path, key, lo, hi);
        *bad = true;
        return false;
    }
    *v = it->valuedouble;
    return true;
}

static bool cfg_triple(const cJSON *root, const char *key, float *v, bool positive,
                       const char *path, cnp_err *err, bool *bad)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!it || cJSON_IsNull(it))
        return false;
    bool ok = cJSON_IsArray(it) && cJSON_GetArraySize(it) == 3;
    for (int i = 0; ok && i < 3; i++) {
        const cJSON *x = cJSON_GetArrayItem(it, i);
        ok = cJSON_IsNumber(x) && isfinite(x->valuedouble) && (!positive || x->valuedouble > 0);
        if (ok)
            v[i] = (float)x->valuedouble;
    }
    if (!ok) {
        cnp_err_set(err, "%s: %s must list 3 %snumbers", path, key, positive ? "positive " : "");
        *bad = true;
    }
    return ok;
}

static cnp_status parse_labels(const cJSON *root, det_retina *r, const char *path,
                               cnp_err *err)
{
    const cJSON *ld = cJSON_GetObjectItemCaseSensitive(root, "label_dict");
    if (!ld || cJSON_IsNull(ld)) {
        /* DeepForest's default label_dict is {"Tree": 0}. */
        for (int k = 0; k < r->num_classes; k++)
            snprintf(r->labels[k], sizeof r->labels[k], r->num_classes == 1 ? "Tree" : "%d", k);
        return CNP_OK;
    }
    if (!cJSON_IsObject(ld) || cJSON_GetArraySize(ld) != r->num_classes) {
        cnp_err_set(err, "%s: label_dict must map %d label(s) to indices", path,
                    r->num_classes);
        return CNP_ERR_FORMAT;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, ld)
    {
        double v = cJSON_IsNumber(it) ? it->valuedouble : -1;
        int k = (int)v;
        if (v != floor(v) || k < 0 || k >= r->num_classes || r->labels[k][0] ||
            !it->string[0] || strlen(it->string) >= sizeof r->labels[0]) {
            cnp_err_set(err,
                        "%s: label_dict: \"%s\" must map to a distinct index 0..%d (names of "
                        "1..%d bytes)",
                        path, it->string, r->num_classes - 1, DET_GRAPH_LABEL_MAX - 1);
            return CNP_ERR_FORMAT;
        }
        strcpy(r->labels[k], it->string);
    }
    return CNP_OK;
}

/* Fills the retina fields from config.json over the defaults (FORMAT.md). */
static cnp_status read_config(const char *path, det_retina *r, char *revision, size_t rcap,
                              cnp_err *err)
{
    static const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    memcpy(r->mean, mean, sizeof mean);
    memcpy(r->std, std, sizeof std);
    r->min_size = 800, r->max_size = 1333, r->size_divisible = 32;
    r->score_thresh = 0.5f, r->nms_thresh = 0.05f; /* RetinaNetHub's */
    r->topk_candidates = 1000, r->detections_per_img = 300;
    r->num_classes = 1;
    cnp_buf file = {0};
    cnp_status result = cnp_file_read(path, CONFIG_MAX, &file, err);
    if (result != CNP_OK)
        return result;
    result = CNP_ERR_FORMAT;
    cJSON *root = cJSON_ParseWithLength((const char *)file.data, file.len);
    bool bad = false;
    double v;
    if (!cJSON_IsObject(root)) {
        cnp_err_set(err, "%s: not a JSON object", path);
        goto out;
    }
    if (cfg_num(root, "num_classes", 1, DET_GRAPH_MAX_CLASSES, &v, path, err, &bad)) {
        if (v != floor(v)) {
            cnp_err_set(err, "%s: num_classes must be an integer", path);
            goto out;
        }
        r->num_classes = (int)v;
    }
    if (cfg_num(root, "score_thresh", 0, 1, &v, path, err, &bad))
        r->score_thresh = (float)v;
    if (cfg_num(root, "nms_thresh", 1e-6, 1, &v, path, err, &bad))
        r->nms_thresh = (float)v;
    if (cfg_num(root, "detections_per_img", 1, 1e6, &v, path, err, &bad))
        r->detections_per_img = (int)v;
    if (cfg_num(root, "topk_candidates", 1, 1e6, &v, path, err, &bad))
        r->topk_candidates = (int)v;
    if (cfg_num(root, "min_size", 1, 8192, &v, path, err, &bad))
        r->min_size = (int)v;
    if (cfg_num(root, "max_size", 1, 16384, &v, path, err, &bad))
        r->max_size = (int)v;
    cfg_triple(root, "image_mean", r->mean, false, path, err, &bad);
    cfg_triple(root, "image_std", r->std, true, path, err, &bad);
    if (bad)
        goto out;
    if (r->max_size < r->min_size) {
        cnp_err_set(err, "%s: max_size %d < min_size %d", path, r->max_size, r->min_size);
        goto out;
    }
    if ((result = parse_labels(root, r, path, err)) != CNP_OK)
        goto out;
    const cJSON *rev = cJSON_GetObjectItemCaseSensitive(root, "revision");
    if (cJSON_IsString(rev) && rev->valuestring[0])
        snprintf(revision, rcap, "%s", rev->valuestring);
    result = CNP_OK;
out:
    cJSON_Delete(root);
    cnp_buf_free(&file);
    return result;
}

/* ---- entry points ------------------------------------------------------ */

static bool is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The default anchors of torchvision's RetinaNet: sizes x, int(x 2^(1/3)),
 * int(x 2^(2/3)) for x in 32..512, ratios 0.5, 1, 2 on every level. */
static void default_anchors(det_retina *r)
{
    r->n_levels = 5, r->n_sizes = 3, r->n_ratios = 3;
    for (int l = 0; l < 5; l++) {
        double x = 32 << l;
        r->sizes[l][0] = (float)x;
        r->sizes[l][1] = (float)(int)(x * pow(2.0, 1.0 / 3));
        r->sizes[l][2] = (float)(int)(x * pow(2.0, 2.0 / 3));
        r->ratios[l][0] = 0.5f, r->ratios[l][1] = 1.0f, r->ratios[l][2] = 2.0f;
    }
    for (int k = 0; k < 4; k++)
        r->box_weights[k] = 1.0f;
    r->bbox_clip = (float)log(1000.0 / 16);
}

static cnp_status build(builder *b)
{
    det_graph *g = &b->im->g;
    if (!refuse_other(b))
        return CNP_ERR_FORMAT;
    g->nodes = calloc(DET_GRAPH_MAX_NODES, sizeof *g->nodes);
    if (!g->nodes) {
        cnp_err_set(b->err, "%s: out of memory", b->path);
        return CNP_ERR_NOMEM;
    }
    add_node(b, DET_OP_INPUT, "input", -1, -1);
    int c[3], p[5], cls[5], box[5];
    if (!body(b, c) || !fpn(b, c, p) ||
        !head(b, "classification_head", "cls", "cls_logits", p, cls) ||
        !head(b, "regression_head", "box", "bbox_reg", p, box))
        return CNP_ERR_FORMAT;
    det_retina *r = &g->retina;
    int a = r->n_sizes * r->n_ratios;
    const det_node *cl = &g->nodes[cls[0]], *bx = &g->nodes[box[0]];
    if (cl->cout != a * r->num_classes) {
        cnp_err_set(b->err,
                    "%s: tensor %s.weight has %d outputs; %d anchors x %d classes "
                    "(config.json num_classes) need %d",
                    b->path, cl->weights, cl->cout, a, r->num_classes, a * r->num_classes);
        return CNP_ERR_FORMAT;
    }
    if (bx->cout != a * 4) {
        cnp_err_set(b->err, "%s: tensor %s.weight has %d outputs; %d anchors need %d", b->path,
                    bx->weights, bx->cout, a, a * 4);
        return CNP_ERR_FORMAT;
    }
    for (int l = 0; l < 5; l++)
        r->cls_node[l] = cls[l], r->box_node[l] = box[l];
    cnp_status result = det_graph_check(g, b->path, b->err);
    return result;
}

cnp_status det_import_load(const char *src, const char *version, det_import **out,
                           cnp_err *err)
{
    *out = NULL;
    char st_path_buf[4096], cfg_path[4096];
    if (is_dir(src)) {
        snprintf(st_path_buf, sizeof st_path_buf, "%s/model.safetensors", src);
        snprintf(cfg_path, sizeof cfg_path, "%s/config.json", src);
    } else {
        snprintf(st_path_buf, sizeof st_path_buf, "%s", src);
        const char *slash = strrchr(src, '/');
        if (slash)
            snprintf(cfg_path, sizeof cfg_path, "%.*s/config.json", (int)(slash - src), src);
        else
            snprintf(cfg_path, sizeof cfg_path, "config.json");
    }
    det_import *im = calloc(1, sizeof *im);
    if (!im) {
        cnp_err_set(err, "%s: out of memory", src);
        return CNP_ERR_NOMEM;
    }
    char revision[48] = "";
    builder b = {.path = st_path_buf, .im = im, .err = err};
    det_retina *r = &im->g.retina;
    default_anchors(r);
    cnp_status result = st_open(st_path_buf, &b.st, err);
    if (result == CNP_OK)
        result = read_config(cfg_path, r, revision, sizeof revision, err);
    if (result == CNP_OK)
        result = build(&b);
    if (result != CNP_OK)
        goto out;
    if (version && version[0]) {
        if (strlen(version) >= sizeof im->version) {
            cnp_err_set(err, "--version '%s': longer than %zu bytes", version,
                        sizeof im->version - 1);
            result = CNP_ERR_INVALID;
            goto out;
        }
        snprintf(im->version, sizeof im->version, "%s", version);
    } else {
        /* config.json's "revision", else the safetensors metadata's, else
         * the first 12 hex digits of the file's SHA-256. */
        const char *meta = st_metadata(b.st, "revision");
        char sha[65];
        st_sha256_hex(b.st, sha);
        if (!revision[0])
            snprintf(revision, sizeof revision, "%.40s", meta && meta[0] ? meta : sha);
        if (!(meta && meta[0]) && strncmp(revision, sha, 40) == 0)
            revision[12] = '\0';
        snprintf(im->version, sizeof im->version, "deepforest-tree-%.40s", revision);
    }
out:
    st_close(b.st);
    if (result != CNP_OK) {
        det_import_free(im);
        return result;
    }
    *out = im;
    return CNP_OK;
}

const det_graph *det_import_graph(const det_import *im)
{
    return &im->g;
}

const char *det_import_version(const det_import *im)
{
    return im->version;
}

cnp_status det_import_write(const det_import *im, const char *path, cnp_err *err)
{
    cnp_buf out = {0};
    cnp_status result = det_graph_write_cnw(&im->g, MODEL_NAME, im->version, &out, err);
    if (result != CNP_OK)
        cnp_err_prefix(err, "%s", path);
    else
        result = cnp_file_write(path, out.data, out.len, err);
    cnp_buf_free(&out);
    return result;
}

void det_import_free(det_import *im)
{
    if (!im)
        return;
    for (int i = 0; i < im->n_blocks; i++)
        free(im->blocks[i]);
    free(im->blocks);
    free(im->g.nodes);
    free(im);
}
