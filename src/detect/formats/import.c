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
#include "detect/resnet_build.h"

#define CONFIG_MAX ((size_t)1 << 20)
#define MODEL_NAME "retinanet-resnet50-fpn"

/* A conv node sharing the weights of an earlier one (the heads on P4..P7). */
static int share_conv(det_builder *b, const char *name, int in, int like)
{
    det_node proto = b->g->nodes[like];
    if (b->c[in] != proto.cin) {
        cnp_err_set(b->err, "%s: node %s: %d input channels, weights %s take %d", b->path,
                    name, b->c[in], proto.weights, proto.cin);
        return -1;
    }
    int idx = det_build_node(b, DET_OP_CONV, name, in, -1);
    if (idx < 0)
        return -1;
    det_node *n = &b->g->nodes[idx];
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

/* FPN block key stem in either layout: "<block>.<i>.0" (torchvision
 * >= 0.13, Conv2dNormActivation) or "<block>.<i>". */
static void fpn_stem(const det_builder *b, const char *block, int i, char *out, size_t cap)
{
    char key[ST_NAME_MAX];
    snprintf(key, sizeof key, "backbone.fpn.%s.%d.0.weight", block, i);
    if (det_build_find(b, key))
        snprintf(out, cap, "backbone.fpn.%s.%d.0", block, i);
    else
        snprintf(out, cap, "backbone.fpn.%s.%d", block, i);
}

/* FPN on C3..C5 plus LastLevelP6P7: p[0..4] receive P3..P7. */
static bool fpn(det_builder *b, const int c[3], int p[5])
{
    char stem[96], wname[96], name[64], key[ST_NAME_MAX];
    snprintf(key, sizeof key, "backbone.fpn.inner_blocks.3.weight");
    char key2[ST_NAME_MAX] = "backbone.fpn.inner_blocks.3.0.weight";
    if (det_build_find(b, key) || det_build_find(b, key2)) {
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
        det_conv_spec s = {stem, NULL, true, wname, 1, 1, DET_ACT_NONE};
        if ((inner[i] = det_build_conv(b, name, c[i], -1, &s)) < 0)
            return false;
        if (last >= 0) {
            snprintf(name, sizeof name, "fpn.topdown%d", i);
            if (b->c[last] != b->c[inner[i]]) {
                cnp_err_set(b->err, "%s: tensor %s.weight: %d outputs, the level above has %d",
                            b->path, stem, b->c[inner[i]], b->c[last]);
                return false;
            }
            if ((inner[i] = det_build_node(b, DET_OP_UPSAMPLE_ADD, name, inner[i], last)) < 0)
                return false;
        }
        last = inner[i];
        fpn_stem(b, "layer_blocks", i, stem, sizeof stem);
        snprintf(wname, sizeof wname, "backbone.fpn.layer_blocks.%d.0", i);
        snprintf(name, sizeof name, "fpn.p%d", i + 3);
        det_conv_spec ls = {stem, NULL, true, wname, 3, 1, DET_ACT_NONE};
        if ((p[i] = det_build_conv(b, name, last, -1, &ls)) < 0)
            return false;
    }
    /* LastLevelP6P7: P6 from P5 when p6 maps C -> C (use_P5), else from C5. */
    const st_tensor *p6 = det_build_find(b, "backbone.fpn.extra_blocks.p6.weight");
    if (!p6 || p6->ndim != 4) {
        cnp_err_set(b->err, "%s: tensor backbone.fpn.extra_blocks.p6.weight is %s (RetinaNet "
                            "has LastLevelP6P7; an FPN without it is another detector)",
                    b->path, p6 ? "not 4-dimensional" : "missing");
        return false;
    }
    int src = p6->shape[0] == p6->shape[1] ? p[2] : c[2];
    det_conv_spec s6 = {"backbone.fpn.extra_blocks.p6", NULL, true, "backbone.fpn.extra_blocks.p6",
                    3, 2, DET_ACT_NONE};
    det_conv_spec s7 = {"backbone.fpn.extra_blocks.p7", NULL, true, "backbone.fpn.extra_blocks.p7",
                    3, 2, DET_ACT_NONE};
    if ((p[3] = det_build_conv(b, "fpn.p6", src, -1, &s6)) < 0)
        return false;
    int r = det_build_node(b, DET_OP_RELU, "fpn.p6.relu", p[3], -1);
    return r >= 0 && (p[4] = det_build_conv(b, "fpn.p7", r, -1, &s7)) >= 0;
}

/* Key stem of head conv i: "<head>.conv.<i>.0" (torchvision >= 0.13) or
 * the older "<head>.conv.<2i>"; "" when neither is there. */
static void head_stem(const det_builder *b, const char *head, int i, char *out, size_t cap)
{
    char key[ST_NAME_MAX];
    snprintf(key, sizeof key, "head.%s.conv.%d.0.weight", head, i);
    if (det_build_find(b, key)) {
        snprintf(out, cap, "head.%s.conv.%d.0", head, i);
        return;
    }
    snprintf(key, sizeof key, "head.%s.conv.%d.weight", head, 2 * i);
    if (det_build_find(b, key))
        snprintf(out, cap, "head.%s.conv.%d", head, 2 * i);
    else
        out[0] = '\0';
}

/* One head (classification or regression) on every level: its convs on
 * P3 read the tensors, the other levels share them. out[l]: the last node
 * of level l. */
static bool head(det_builder *b, const char *which, const char *tag, const char *last_mod,
                 const int p[5], int out[5])
{
    char stem[96], wname[96], name[64], key[ST_NAME_MAX];
    snprintf(key, sizeof key, "head.%s.conv.0.1.weight", which);
    if (det_build_find(b, key)) {
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
                det_conv_spec s = {stem, NULL, true, wname, 3, 1,
                               logits ? DET_ACT_NONE : DET_ACT_RELU};
                x = first[i] = det_build_conv(b, name, x, -1, &s);
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
static bool refuse_other(det_builder *b)
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
        if (det_build_find(b, other[i].key)) {
            cnp_err_set(b->err, "%s: tensor %s: %s checkpoint, not a RetinaNet", b->path,
                        other[i].key, other[i].what);
            return false;
        }
    }
    if (!det_build_find(b, "head.classification_head.cls_logits.weight")) {
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

cnp_status det_import_set_version(det_import *im, const char *version, const st_file *st,
                                  const char *config_revision, const char *stem, cnp_err *err)
{
    if (version && version[0]) {
        if (strlen(version) >= sizeof im->version) {
            cnp_err_set(err, "--version '%s': longer than %zu bytes", version,
                        sizeof im->version - 1);
            return CNP_ERR_INVALID;
        }
        snprintf(im->version, sizeof im->version, "%s", version);
        return CNP_OK;
    }
    /* config.json's "revision", else the safetensors metadata's, else the
     * first 12 hex digits of the file's SHA-256. */
    char revision[48];
    snprintf(revision, sizeof revision, "%s", config_revision);
    const char *meta = st_metadata(st, "revision");
    char sha[65];
    st_sha256_hex(st, sha);
    if (!revision[0])
        snprintf(revision, sizeof revision, "%.40s", meta && meta[0] ? meta : sha);
    if (!(meta && meta[0]) && strncmp(revision, sha, 40) == 0)
        revision[12] = '\0';
    snprintf(im->version, sizeof im->version, "%.20s-%.40s", stem, revision);
    return CNP_OK;
}

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

static cnp_status build(det_builder *b)
{
    det_graph *g = b->g;
    if (!refuse_other(b))
        return CNP_ERR_FORMAT;
    g->nodes = calloc(DET_GRAPH_MAX_NODES, sizeof *g->nodes);
    if (!g->nodes) {
        cnp_err_set(b->err, "%s: out of memory", b->path);
        return CNP_ERR_NOMEM;
    }
    det_build_node(b, DET_OP_INPUT, "input", -1, -1);
    int c[3], p[5], cls[5], box[5];
    if (!det_build_resnet_body(b, c) || !fpn(b, c, p) ||
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
    if (det_import_is_crop(cfg_path)) {
        cnp_status result = det_import_crop(st_path_buf, cfg_path, version, im, err);
        if (result != CNP_OK) {
            det_import_free(im);
            return result;
        }
        *out = im;
        return CNP_OK;
    }
    snprintf(im->name, sizeof im->name, "%s", MODEL_NAME);
    char revision[48] = "";
    det_builder b = {.path = st_path_buf,
                     .pre = "backbone.body.",
                     .what = "a torchvision RetinaNet ResNet-FPN checkpoint",
                     .g = &im->g,
                     .blocks = &im->blocks,
                     .err = err};
    det_retina *r = &im->g.retina;
    default_anchors(r);
    cnp_status result = st_open(st_path_buf, &b.st, err);
    if (result == CNP_OK)
        result = read_config(cfg_path, r, revision, sizeof revision, err);
    if (result == CNP_OK)
        result = build(&b);
    if (result != CNP_OK)
        goto out;
    result = det_import_set_version(im, version, b.st, revision, "deepforest-tree", err);
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
    cnp_status result = det_graph_write_cnw(&im->g, im->name, im->version, &out, err);
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
    det_blocks_free(&im->blocks);
    free(im->g.nodes);
    free(im);
}
