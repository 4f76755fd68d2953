/* The classifier's part of a version 2 architecture JSON (family
 * "cropmodel", models/FORMAT.md): the crop and transform rules and the
 * labels, both ways, and the checks det_graph_check runs on a classifier
 * graph. The nodes are graph_json.c's. */
#include "detect/graph.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIZE_MAX_PX 992 /* crops resized to at most this side (a last map of 31) */
#define EXPAND_MAX 4096

static cJSON *triple(const float *v)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < 3; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber((double)v[i]));
    return a;
}

void det_classifier_to_json(const det_graph *g, cJSON *root)
{
    const det_classifier *c = &g->classify;
    cJSON *o = cJSON_AddObjectToObject(root, "classifier");
    cJSON_AddNumberToObject(o, "size", c->size);
    cJSON_AddStringToObject(o, "interpolation",
                            c->interp == DET_RESIZE_NEAREST ? "nearest" : "bilinear");
    if (c->normalize) {
        cJSON *n = cJSON_AddObjectToObject(o, "normalize");
        cJSON_AddItemToObject(n, "mean", triple(c->mean));
        cJSON_AddItemToObject(n, "std", triple(c->std));
    } else {
        cJSON_AddNullToObject(o, "normalize");
    }
    cJSON_AddNumberToObject(o, "expand", c->expand);
    cJSON *labels = cJSON_AddArrayToObject(o, "labels");
    for (int k = 0; k < c->num_classes; k++)
        cJSON_AddItemToArray(labels, cJSON_CreateString(c->labels[k]));
}

cnp_status det_classifier_from_json(const char *path, const cJSON *root, det_graph *g,
                                    cnp_err *err)
{
    det_classifier *c = &g->classify;
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, "classifier");
    const cJSON *interp = cJSON_GetObjectItemCaseSensitive(o, "interpolation");
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(o, "normalize");
    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(o, "labels");
    g->input.kind = DET_INPUT_CROP;
    if (!cJSON_IsObject(o) || !det_json_int(o, "size", 1, SIZE_MAX_PX, &c->size) ||
        !det_json_int(o, "expand", 0, EXPAND_MAX, &c->expand) || !cJSON_IsString(interp)) {
        cnp_err_set(err, "%s: architecture: classifier needs size (1..%d), expand (0..%d) and "
                         "interpolation",
                    path, SIZE_MAX_PX, EXPAND_MAX);
        return CNP_ERR_FORMAT;
    }
    if (strcmp(interp->valuestring, "nearest") == 0) {
        c->interp = DET_RESIZE_NEAREST;
    } else if (strcmp(interp->valuestring, "bilinear") == 0) {
        c->interp = DET_RESIZE_BILINEAR;
    } else {
        cnp_err_set(err, "%s: architecture: classifier interpolation \"%s\" (bilinear or nearest)",
                    path, interp->valuestring);
        return CNP_ERR_FORMAT;
    }
    c->normalize = norm && !cJSON_IsNull(norm);
    if (c->normalize &&
        (!det_json_floats(cJSON_GetObjectItemCaseSensitive(norm, "mean"), c->mean, 3, false) ||
         !det_json_floats(cJSON_GetObjectItemCaseSensitive(norm, "std"), c->std, 3, true))) {
        cnp_err_set(err, "%s: architecture: classifier normalize needs mean and std (3 numbers, "
                         "std positive) or null",
                    path);
        return CNP_ERR_FORMAT;
    }
    int n = cJSON_GetArraySize(labels);
    if (!cJSON_IsArray(labels) || n < 1 || n > DET_CLASS_MAX) {
        cnp_err_set(err, "%s: architecture: classifier labels must list 1..%d names", path,
                    DET_CLASS_MAX);
        return CNP_ERR_FORMAT;
    }
    c->num_classes = n;
    for (int k = 0; k < n; k++) {
        if (!det_json_string(cJSON_GetArrayItem(labels, k), c->labels[k], sizeof c->labels[k])) {
            cnp_err_set(err, "%s: architecture: classifier label %d: a name of 1..%zu bytes",
                        path, k, sizeof c->labels[k] - 1);
            return CNP_ERR_FORMAT;
        }
    }
    return CNP_OK;
}

cnp_status det_classifier_check(const det_graph *g, const char *what, cnp_err *err)
{
    const det_classifier *c = &g->classify;
    if (c->size < 1 || c->size > SIZE_MAX_PX || c->expand < 0 || c->expand > EXPAND_MAX ||
        c->num_classes < 1 || c->num_classes > DET_CLASS_MAX) {
        cnp_err_set(err, "%s: classifier: size, expand or number of classes out of range", what);
        return CNP_ERR_FORMAT;
    }
    for (int k = 0; k < c->num_classes; k++) {
        if (!c->labels[k][0] || !memchr(c->labels[k], '\0', sizeof c->labels[k])) {
            cnp_err_set(err, "%s: classifier: label %d missing or too long", what, k);
            return CNP_ERR_FORMAT;
        }
    }
    int nn = g->n_nodes;
    int *s = malloc(3 * (size_t)nn * sizeof *s);
    if (!s) {
        cnp_err_set(err, "%s: out of memory", what);
        return CNP_ERR_NOMEM;
    }
    cnp_status result = det_graph_shapes(g, c->size, c->size, s, s + nn, s + 2 * nn, err);
    const det_node *last = &g->nodes[nn - 1];
    if (result != CNP_OK) {
        cnp_err_prefix(err, "%s: input %dx%d", what, c->size, c->size);
    } else if (last->op != DET_OP_CONV || s[nn - 1] != c->num_classes || s[2 * nn - 1] != 1 ||
               s[3 * nn - 1] != 1) {
        cnp_err_set(err,
                    "%s: classifier: node %s gives %d x %d x %d for a %dx%d crop; %d labels "
                    "need a conv giving %d x 1 x 1",
                    what, last->name, s[nn - 1], s[2 * nn - 1], s[3 * nn - 1], c->size, c->size,
                    c->num_classes, c->num_classes);
        result = CNP_ERR_FORMAT;
    }
    free(s);
    return result;
}
