/* Checkpoint import of DeepForest's CropModel (import.h, resnet_build.h):
 * a Hugging Face directory as CropModel.push_to_hub writes it (config.json
 * whose "cropmodel" section holds architecture, label_dict, resize,
 * resize_interpolation, normalize, expand; model.safetensors with the
 * LightningModule's "model." keys of a torchvision ResNet-18 or ResNet-50
 * whose fc is a Linear of len(label_dict) outputs) -> a classifier graph
 * (graph.h det_classifier): batch norm folded into the convs, the global
 * average pool and the fc folded into one conv whose kernel covers the last
 * feature map (each weight divided by its cells). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canopy/buf.h"
#include "detect/import.h"
#include "detect/resnet_build.h"

#define CONFIG_MAX ((size_t)1 << 20)

/* torchvision's block type and blocks per layer of each architecture
 * DeepForest's create_crop_backbone builds. */
static const struct arch {
    const char *name;
    bool bottleneck;
    int blocks[4];
} ARCHS[] = {
    {"resnet18", false, {2, 2, 2, 2}},
    {"resnet50", true, {3, 4, 6, 3}},
};

static cJSON *read_json(const char *path, cnp_err *err)
{
    cnp_buf file = {0};
    if (cnp_file_read(path, CONFIG_MAX, &file, err) != CNP_OK)
        return NULL;
    cJSON *root = cJSON_ParseWithLength((const char *)file.data, file.len);
    cnp_buf_free(&file);
    if (!cJSON_IsObject(root)) {
        cnp_err_set(err, "%s: not a JSON object", path);
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

bool det_import_is_crop(const char *cfg_path)
{
    cnp_err ignored = {{0}};
    cJSON *root = read_json(cfg_path, &ignored);
    bool crop = cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(root, "cropmodel"));
    cJSON_Delete(root);
    return crop;
}

/* label_dict: {name: index}, indices exactly 0..n-1. */
static cnp_status read_labels(const char *path, const cJSON *cm, det_classifier *c,
                              cnp_err *err)
{
    const cJSON *ld = cJSON_GetObjectItemCaseSensitive(cm, "label_dict");
    int n = cJSON_GetArraySize(ld);
    if (!cJSON_IsObject(ld) || n < 1 || n > DET_CLASS_MAX) {
        cnp_err_set(err, "%s: cropmodel.label_dict must map 1..%d label names to indices", path,
                    DET_CLASS_MAX);
        return CNP_ERR_FORMAT;
    }
    c->num_classes = n;
    const cJSON *it;
    cJSON_ArrayForEach(it, ld)
    {
        double v = cJSON_IsNumber(it) ? it->valuedouble : -1;
        int k = (int)v;
        if (v != floor(v) || k < 0 || k >= n || c->labels[k][0] || !it->string[0] ||
            strlen(it->string) >= sizeof c->labels[0]) {
            cnp_err_set(err,
                        "%s: cropmodel.label_dict: \"%s\" must map to a distinct index 0..%d "
                        "(names of 1..%zu bytes)",
                        path, it->string, n - 1, sizeof c->labels[0] - 1);
            return CNP_ERR_FORMAT;
        }
        strcpy(c->labels[k], it->string);
    }
    return CNP_OK;
}

static bool read_triple(const cJSON *o, const char *key, float *v, bool positive)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, key);
    bool ok = cJSON_IsArray(a) && cJSON_GetArraySize(a) == 3;
    for (int i = 0; ok && i < 3; i++) {
        const cJSON *x = cJSON_GetArrayItem(a, i);
        ok = cJSON_IsNumber(x) && isfinite(x->valuedouble) && (!positive || x->valuedouble > 0);
        if (ok)
            v[i] = (float)x->valuedouble;
    }
    return ok;
}

/* The transform rules (DeepForest's defaults where a key is absent or null:
 * resize [224, 224], bilinear, ImageNet normalisation, expand 0). */
static cnp_status read_rules(const char *path, const cJSON *cm, det_classifier *c,
                             cnp_err *err)
{
    static const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(cm, "resize");
    const cJSON *ri = cJSON_GetObjectItemCaseSensitive(cm, "resize_interpolation");
    const cJSON *no = cJSON_GetObjectItemCaseSensitive(cm, "normalize");
    const cJSON *ex = cJSON_GetObjectItemCaseSensitive(cm, "expand");
    c->size = 224;
    if (rs && !cJSON_IsNull(rs)) {
        const cJSON *h = cJSON_GetArrayItem(rs, 0), *w = cJSON_GetArrayItem(rs, 1);
        if (!cJSON_IsArray(rs) || cJSON_GetArraySize(rs) != 2 || !cJSON_IsNumber(h) ||
            !cJSON_IsNumber(w) || h->valuedouble != w->valuedouble || h->valuedouble < 32 ||
            h->valuedouble > 992 || h->valuedouble != floor(h->valuedouble)) {
            cnp_err_set(err, "%s: cropmodel.resize must be [S, S], S a whole number in "
                             "32..992 (canopy runs square crops, the last map at most 31 "
                             "cells a side)",
                        path);
            return CNP_ERR_FORMAT;
        }
        c->size = (int)h->valuedouble;
    }
    c->interp = DET_RESIZE_BILINEAR;
    if (ri && !cJSON_IsNull(ri)) {
        if (cJSON_IsString(ri) && strcmp(ri->valuestring, "nearest") == 0) {
            c->interp = DET_RESIZE_NEAREST;
        } else if (!cJSON_IsString(ri) || strcmp(ri->valuestring, "bilinear") != 0) {
            cnp_err_set(err, "%s: cropmodel.resize_interpolation must be \"bilinear\" or "
                             "\"nearest\"",
                        path);
            return CNP_ERR_FORMAT;
        }
    }
    c->normalize = !cJSON_IsFalse(no);
    memcpy(c->mean, mean, sizeof mean);
    memcpy(c->std, std, sizeof std);
    if (no && !cJSON_IsNull(no) && !cJSON_IsFalse(no) &&
        (!read_triple(no, "mean", c->mean, false) || !read_triple(no, "std", c->std, true))) {
        cnp_err_set(err, "%s: cropmodel.normalize must be null, false, or {mean: [3 numbers], "
                         "std: [3 positive numbers]}",
                    path);
        return CNP_ERR_FORMAT;
    }
    c->expand = 0;
    if (ex && !cJSON_IsNull(ex)) {
        if (!cJSON_IsNumber(ex) || ex->valuedouble < 0 || ex->valuedouble > 4096) {
            cnp_err_set(err, "%s: cropmodel.expand must be a number of pixels in 0..4096",
                        path);
            return CNP_ERR_FORMAT;
        }
        c->expand = (int)ex->valuedouble; /* BoundingBoxDataset: int(expand) */
    }
    return CNP_OK;
}

/* The checkpoint's blocks against the architecture config.json names. */
static bool check_arch(det_builder *b, const struct arch *a)
{
    char key[ST_NAME_MAX];
    for (int layer = 1; layer <= 4; layer++) {
        int n = 0;
        while (n < 256 && det_build_find(b, (snprintf(key, sizeof key, "layer%d.%d.conv1.weight",
                                                      layer, n),
                                             key)))
            n++;
        if (n != a->blocks[layer - 1]) {
            cnp_err_set(b->err,
                        "%s: tensor model.layer%d.%d.conv1.weight: layer%d has %d blocks, "
                        "%s has %d",
                        b->path, layer, n < a->blocks[layer - 1] ? n : a->blocks[layer - 1],
                        layer, n, a->name, a->blocks[layer - 1]);
            return false;
        }
        snprintf(key, sizeof key, "layer%d.0.conv3.weight", layer);
        if ((det_build_find(b, key) != NULL) != a->bottleneck) {
            cnp_err_set(b->err, "%s: tensor model.%s is %s: %s is built of %s blocks", b->path,
                        key, a->bottleneck ? "missing" : "present", a->name,
                        a->bottleneck ? "Bottleneck" : "BasicBlock");
            return false;
        }
    }
    return true;
}

/* Global average pool + fc on node in (C x k x k) as one k x k conv. */
static cnp_status add_fc(det_builder *b, int in, int k, int classes)
{
    int64_t ws[2] = {-1, b->c[in]}, bs[1] = {-1};
    double *w = NULL, *bias = NULL;
    cnp_status result = det_build_fetch(b, "fc.weight", 2, ws, &w);
    if (result == CNP_OK)
        result = det_build_fetch(b, "fc.bias", 1, bs, &bias);
    if (result == CNP_OK && (ws[0] != classes || bs[0] != classes)) {
        cnp_err_set(b->err, "%s: tensor model.fc.weight has %lld outputs, config.json's "
                            "label_dict names %d classes",
                    b->path, (long long)ws[0], classes);
        result = CNP_ERR_FORMAT;
    }
    size_t cin = (size_t)ws[1], cells = (size_t)k * (size_t)k;
    float *fw = result == CNP_OK ? det_build_keep(b, (size_t)classes * cin * cells) : NULL;
    float *fb = fw ? det_build_keep(b, (size_t)classes) : NULL;
    int idx = fb ? det_build_node(b, DET_OP_CONV, "fc", in, -1) : -1;
    if (result == CNP_OK && idx < 0) {
        if (!fb)
            cnp_err_set(b->err, "%s: out of memory", b->path);
        result = CNP_ERR_NOMEM;
    }
    if (result == CNP_OK) {
        for (size_t o = 0; o < (size_t)classes; o++) {
            for (size_t i = 0; i < cin; i++)
                for (size_t p = 0; p < cells; p++)
                    fw[(o * cin + i) * cells + p] = (float)(w[o * cin + i] / (double)cells);
            fb[o] = (float)bias[o];
        }
        det_node *n = &b->g->nodes[idx];
        snprintf(n->weights, sizeof n->weights, "fc");
        n->cin = (int)cin, n->cout = classes, n->k = k, n->stride = 1, n->pad = 0;
        n->act = DET_ACT_NONE, n->weight = fw, n->bias = fb;
        b->c[idx] = classes;
    }
    free(w), free(bias);
    return result;
}

static cnp_status build(det_builder *b, const struct arch *a)
{
    det_graph *g = b->g;
    g->nodes = calloc(DET_GRAPH_MAX_NODES, sizeof *g->nodes);
    if (!g->nodes) {
        cnp_err_set(b->err, "%s: out of memory", b->path);
        return CNP_ERR_NOMEM;
    }
    int c[3];
    det_build_node(b, DET_OP_INPUT, "input", -1, -1);
    if (!check_arch(b, a) || !det_build_resnet_body(b, c))
        return CNP_ERR_FORMAT;
    int nn = g->n_nodes, *s = malloc(3 * (size_t)nn * sizeof *s);
    if (!s) {
        cnp_err_set(b->err, "%s: out of memory", b->path);
        return CNP_ERR_NOMEM;
    }
    int size = g->classify.size;
    cnp_status result = det_graph_shapes(g, size, size, s, s + nn, s + 2 * nn, b->err);
    int k = s[nn + c[2]];
    free(s);
    if (result == CNP_OK)
        result = add_fc(b, c[2], k, g->classify.num_classes);
    return result == CNP_OK ? det_graph_check(g, b->path, b->err) : result;
}

cnp_status det_import_crop(const char *st_path, const char *cfg_path, const char *version,
                           det_import *im, cnp_err *err)
{
    det_builder b = {.path = st_path,
                     .pre = "",
                     .what = "a torchvision ResNet CropModel checkpoint",
                     .shown = "model.",
                     .g = &im->g,
                     .blocks = &im->blocks,
                     .err = err};
    det_classifier *c = &im->g.classify;
    im->g.input.kind = DET_INPUT_CROP;
    cJSON *root = read_json(cfg_path, err);
    if (!root)
        return CNP_ERR_FORMAT;
    const cJSON *cm = cJSON_GetObjectItemCaseSensitive(root, "cropmodel");
    const cJSON *ar = cJSON_GetObjectItemCaseSensitive(cm, "architecture");
    const char *arch = cJSON_IsString(ar) ? ar->valuestring : "resnet50"; /* from_pretrained */
    const struct arch *a = NULL;
    for (size_t i = 0; i < sizeof ARCHS / sizeof ARCHS[0]; i++)
        if (strcmp(arch, ARCHS[i].name) == 0)
            a = &ARCHS[i];
    cnp_status result = CNP_ERR_FORMAT;
    if (!a || (ar && !cJSON_IsString(ar))) {
        cnp_err_set(err, "%s: cropmodel.architecture \"%s\" is not one canopy imports "
                         "(resnet18, resnet50)",
                    cfg_path, cJSON_IsString(ar) ? arch : "?");
        goto out;
    }
    snprintf(im->name, sizeof im->name, "cropmodel-%s", a->name);
    if ((result = read_labels(cfg_path, cm, c, err)) != CNP_OK ||
        (result = read_rules(cfg_path, cm, c, err)) != CNP_OK ||
        (result = st_open(st_path, &b.st, err)) != CNP_OK || (result = build(&b, a)) != CNP_OK)
        goto out;
    const cJSON *rev = cJSON_GetObjectItemCaseSensitive(root, "revision");
    result = det_import_set_version(im, version, b.st,
                                    cJSON_IsString(rev) ? rev->valuestring : "", im->name, err);
out:
    st_close(b.st);
    cJSON_Delete(root);
    return result;
}
