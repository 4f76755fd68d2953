/* The architecture JSON of a .cnw version 1 file (models/FORMAT.md): a
 * crown model's name, version, stride, NMS IoU, input channels, layer list
 * and output order, read into a det_model and checked (channel counts
 * chain, the pools give the stride, the last conv has the 4 outputs). The
 * container around it is cnw.c's; model.c binds the layers to their
 * tensors. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detect/detect_internal.h"

#define CNW_MAX_ARCH_LAYERS 256

static cnp_status parse_input(const char *path, const cJSON *input, det_model *m,
                              cnp_err *err)
{
    static const char *names[] = {"r", "g", "b", "exg"};
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(input, "channels");
    const cJSON *mean = cJSON_GetObjectItemCaseSensitive(input, "mean");
    const cJSON *std = cJSON_GetObjectItemCaseSensitive(input, "std");
    int n = cJSON_GetArraySize(ch);
    if (!cJSON_IsArray(ch) || n < 1 || n > DET_MAX_CHANNELS) {
        cnp_err_set(err, "%s: architecture: input.channels must list 1..4 channels", path);
        return CNP_ERR_FORMAT;
    }
    if (!cJSON_IsArray(mean) || !cJSON_IsArray(std) || cJSON_GetArraySize(mean) != n ||
        cJSON_GetArraySize(std) != n) {
        cnp_err_set(err, "%s: architecture: input.mean and input.std need %d numbers", path,
                    n);
        return CNP_ERR_FORMAT;
    }
    m->n_channels = n;
    for (int i = 0; i < n; i++) {
        const cJSON *c = cJSON_GetArrayItem(ch, i);
        const cJSON *mu = cJSON_GetArrayItem(mean, i), *sd = cJSON_GetArrayItem(std, i);
        m->channel[i] = -1;
        for (int k = 0; k < 4 && cJSON_IsString(c); k++)
            if (strcmp(c->valuestring, names[k]) == 0)
                m->channel[i] = k;
        if (m->channel[i] < 0) {
            cnp_err_set(err, "%s: architecture: input channel %d unknown (r, g, b, exg)",
                        path, i);
            return CNP_ERR_FORMAT;
        }
        if (!cJSON_IsNumber(mu) || !cJSON_IsNumber(sd) || !isfinite(mu->valuedouble) ||
            !(sd->valuedouble > 0) || !isfinite(sd->valuedouble)) {
            cnp_err_set(err, "%s: architecture: input mean/std %d invalid (std must be > 0)",
                        path, i);
            return CNP_ERR_FORMAT;
        }
        m->mean[i] = (float)mu->valuedouble;
        m->std[i] = (float)sd->valuedouble;
    }
    return CNP_OK;
}

static cnp_status parse_layer(const char *path, const cJSON *js, int idx, int *channels,
                              int *pools, det_layer *l, cnp_err *err)
{
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(js, "type");
    if (!cJSON_IsObject(js) || !cJSON_IsString(type)) {
        cnp_err_set(err, "%s: architecture: layer %d has no type", path, idx);
        return CNP_ERR_FORMAT;
    }
    if (strcmp(type->valuestring, "maxpool") == 0) {
        l->type = DET_LAYER_MAXPOOL;
        snprintf(l->name, sizeof l->name, "pool%d", idx);
        l->in = l->out = *channels;
        (*pools)++;
        return CNP_OK;
    }
    if (strcmp(type->valuestring, "conv") != 0) {
        cnp_err_set(err, "%s: architecture: layer %d: unknown type \"%s\"", path, idx,
                    type->valuestring);
        return CNP_ERR_FORMAT;
    }
    l->type = DET_LAYER_CONV;
    char act[16];
    if (!det_json_str(js, "name", l->name, sizeof l->name) ||
        !det_json_int(js, "in", 1, 4096, &l->in) || !det_json_int(js, "out", 1, 4096, &l->out) ||
        !det_json_int(js, "k", 1, 31, &l->k) ||
        !det_json_int(js, "dilation", 1, 64, &l->dilation) ||
        !det_json_str(js, "act", act, sizeof act)) {
        cnp_err_set(err,
                    "%s: architecture: conv layer %d needs name, in, out, k (1..31), "
                    "dilation (1..64) and act",
                    path, idx);
        return CNP_ERR_FORMAT;
    }
    if (l->k % 2 == 0) {
        cnp_err_set(err, "%s: architecture: layer %s: k=%d must be odd", path, l->name, l->k);
        return CNP_ERR_FORMAT;
    }
    if (strcmp(act, "relu") == 0)
        l->relu = true;
    else if (strcmp(act, "none") == 0)
        l->relu = false;
    else {
        cnp_err_set(err, "%s: architecture: layer %s: unknown act \"%s\"", path, l->name,
                    act);
        return CNP_ERR_FORMAT;
    }
    if (l->in != *channels) {
        cnp_err_set(err, "%s: architecture: layer %s takes %d channels, gets %d", path,
                    l->name, l->in, *channels);
        return CNP_ERR_FORMAT;
    }
    *channels = l->out;
    return CNP_OK;
}

static cnp_status parse_outputs(const char *path, const cJSON *outs, det_model *m,
                                cnp_err *err)
{
    static const char *names[] = {"heatmap", "log_radius", "dx", "dy"};
    if (!cJSON_IsArray(outs) || cJSON_GetArraySize(outs) != 4) {
        cnp_err_set(err, "%s: architecture: outputs must list 4 names", path);
        return CNP_ERR_FORMAT;
    }
    for (int k = 0; k < 4; k++) {
        m->out_index[k] = -1;
        for (int i = 0; i < 4; i++) {
            const cJSON *it = cJSON_GetArrayItem(outs, i);
            if (cJSON_IsString(it) && strcmp(it->valuestring, names[k]) == 0)
                m->out_index[k] = i;
        }
        if (m->out_index[k] < 0) {
            cnp_err_set(err, "%s: architecture: outputs lacks \"%s\"", path, names[k]);
            return CNP_ERR_FORMAT;
        }
    }
    return CNP_OK;
}

cnp_status det_crown_from_json(const char *path, const char *json, size_t len, det_model *m,
                               cnp_err *err)
{
    cnp_status result = CNP_ERR_FORMAT;
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!cJSON_IsObject(root)) {
        cnp_err_set(err, "%s: architecture JSON does not parse", path);
        goto out;
    }
    if (!det_json_str(root, "name", m->name, sizeof m->name) ||
        !det_json_str(root, "version", m->version, sizeof m->version) ||
        !det_json_int(root, "stride", 1, 64, &m->stride) || (m->stride & (m->stride - 1))) {
        cnp_err_set(err,
                    "%s: architecture: needs name, version (< 64 chars) and a "
                    "power-of-two stride",
                    path);
        goto out;
    }
    /* Optional: the NMS IoU the model was tuned with (FORMAT.md). */
    const cJSON *nms = cJSON_GetObjectItemCaseSensitive(root, "nms_iou");
    m->nms_iou = DET_NMS_IOU_DEFAULT;
    if (nms) {
        if (!cJSON_IsNumber(nms) || !(nms->valuedouble > 0.0 && nms->valuedouble <= 1.0)) {
            cnp_err_set(err, "%s: architecture: nms_iou must be a number in (0, 1]", path);
            goto out;
        }
        m->nms_iou = nms->valuedouble;
    }
    result = parse_input(path, cJSON_GetObjectItemCaseSensitive(root, "input"), m, err);
    if (result != CNP_OK)
        goto out;
    result = CNP_ERR_FORMAT;
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(root, "layers");
    int n = cJSON_GetArraySize(layers);
    if (!cJSON_IsArray(layers) || n < 1 || n > CNW_MAX_ARCH_LAYERS) {
        cnp_err_set(err, "%s: architecture: layers must be a non-empty array", path);
        goto out;
    }
    m->layers = calloc((size_t)n, sizeof *m->layers);
    if (!m->layers) {
        result = CNP_ERR_NOMEM;
        cnp_err_set(err, "%s: out of memory", path);
        goto out;
    }
    m->n_layers = n;
    int channels = m->n_channels, pools = 0;
    for (int i = 0; i < n; i++) {
        result = parse_layer(path, cJSON_GetArrayItem(layers, i), i, &channels, &pools,
                             &m->layers[i], err);
        if (result != CNP_OK)
            goto out;
    }
    result = CNP_ERR_FORMAT;
    /* stride is at most 64: more pools than 6 can never match (and 1 << pools
     * would overflow for the 256 layers a file may list). */
    if (pools > 6 || (1 << pools) != m->stride) {
        cnp_err_set(err, "%s: architecture: %d maxpool layers do not give stride %d", path,
                    pools, m->stride);
        goto out;
    }
    const det_layer *last = &m->layers[n - 1];
    if (last->type != DET_LAYER_CONV || last->out != 4) {
        cnp_err_set(err, "%s: architecture: the last layer must be a conv with 4 outputs",
                    path);
        goto out;
    }
    result = parse_outputs(path, cJSON_GetObjectItemCaseSensitive(root, "outputs"), m, err);
out:
    cJSON_Delete(root);
    return result;
}
