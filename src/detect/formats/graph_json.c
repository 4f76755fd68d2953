/* The architecture JSON of a .cnw version 2 file (models/FORMAT.md), both
 * ways: det_graph_to_json writes a det_graph's nodes and retina fields as
 * that JSON, det_graph_from_json reads it back into a det_graph, refusing
 * unknown keys, out-of-range fields and dangling node references, then
 * checks the whole graph (det_graph_check, graph.c). The container around
 * the JSON is cnw.c's. */
#include "detect/graph.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CNW_NAME_MAX 63 /* det_model's name and version hold 63 bytes */

/* ---- JSON writer ------------------------------------------------------- */

/* The shortest decimal that reads back as v (0.485f as 0.485, not as
 * 0.48500001430511475), so that the JSON reads as it was written. */
static double tidy(float v)
{
    char buf[32];
    for (int p = 6; p < 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)v);
        if (strtof(buf, NULL) == v)
            return strtod(buf, NULL);
    }
    return v;
}

static cJSON *num_array(const float *v, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(tidy(v[i])));
    return a;
}

static cJSON *node_json(const det_graph *g, const det_node *n)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "op", det_graph_op_name(n->op));
    cJSON_AddStringToObject(o, "name", n->name);
    if (n->op == DET_OP_INPUT)
        return o;
    cJSON_AddStringToObject(o, "in", g->nodes[n->in].name);
    switch (n->op) {
    case DET_OP_CONV:
        if (n->in2 >= 0)
            cJSON_AddStringToObject(o, "add", g->nodes[n->in2].name);
        cJSON_AddStringToObject(o, "weights", n->weights);
        cJSON_AddNumberToObject(o, "cin", n->cin);
        cJSON_AddNumberToObject(o, "cout", n->cout);
        cJSON_AddNumberToObject(o, "k", n->k);
        cJSON_AddNumberToObject(o, "stride", n->stride);
        cJSON_AddNumberToObject(o, "pad", n->pad);
        cJSON_AddNumberToObject(o, "dilation", n->dilation);
        cJSON_AddStringToObject(o, "act", n->act == DET_ACT_RELU ? "relu" : "none");
        break;
    case DET_OP_MAXPOOL:
        cJSON_AddNumberToObject(o, "k", n->k);
        cJSON_AddNumberToObject(o, "stride", n->stride);
        cJSON_AddNumberToObject(o, "pad", n->pad);
        break;
    case DET_OP_UPSAMPLE_ADD: cJSON_AddStringToObject(o, "top", g->nodes[n->in2].name); break;
    default: break;
    }
    return o;
}

static cJSON *retina_json(const det_graph *g, cJSON *root)
{
    const det_retina *r = &g->retina;
    cJSON *in = cJSON_AddObjectToObject(root, "input");
    cJSON_AddItemToObject(in, "mean", num_array(r->mean, 3));
    cJSON_AddItemToObject(in, "std", num_array(r->std, 3));
    cJSON_AddNumberToObject(in, "min_size", r->min_size);
    cJSON_AddNumberToObject(in, "max_size", r->max_size);
    cJSON_AddNumberToObject(in, "size_divisible", r->size_divisible);
    cJSON *an = cJSON_AddObjectToObject(root, "anchors");
    cJSON *sizes = cJSON_AddArrayToObject(an, "sizes");
    cJSON *ratios = cJSON_AddArrayToObject(an, "aspect_ratios");
    cJSON *levels = cJSON_AddArrayToObject(root, "levels");
    for (int l = 0; l < r->n_levels; l++) {
        cJSON_AddItemToArray(sizes, num_array(r->sizes[l], r->n_sizes));
        cJSON_AddItemToArray(ratios, num_array(r->ratios[l], r->n_ratios));
        cJSON *lv = cJSON_CreateObject();
        cJSON_AddStringToObject(lv, "cls", g->nodes[r->cls_node[l]].name);
        cJSON_AddStringToObject(lv, "box", g->nodes[r->box_node[l]].name);
        cJSON_AddItemToArray(levels, lv);
    }
    cJSON *bc = cJSON_AddObjectToObject(root, "box_coder");
    cJSON_AddItemToObject(bc, "weights", num_array(r->box_weights, 4));
    cJSON_AddNumberToObject(bc, "clip", tidy(r->bbox_clip));
    cJSON *pp = cJSON_AddObjectToObject(root, "postprocess");
    cJSON_AddNumberToObject(pp, "score_thresh", tidy(r->score_thresh));
    cJSON_AddNumberToObject(pp, "nms_thresh", tidy(r->nms_thresh));
    cJSON_AddNumberToObject(pp, "topk_candidates", r->topk_candidates);
    cJSON_AddNumberToObject(pp, "detections_per_img", r->detections_per_img);
    cJSON_AddNumberToObject(root, "num_classes", r->num_classes);
    cJSON *labels = cJSON_AddArrayToObject(root, "labels");
    for (int k = 0; k < r->num_classes; k++)
        cJSON_AddItemToArray(labels, cJSON_CreateString(r->labels[k]));
    return root;
}

cnp_status det_graph_to_json(const det_graph *g, const char *name, const char *version,
                             char **json, cnp_err *err)
{
    *json = NULL;
    cnp_status result = det_graph_check(g, "graph", err);
    if (result != CNP_OK)
        return result;
    if (!name[0] || strlen(name) > CNW_NAME_MAX || !version[0] ||
        strlen(version) > CNW_NAME_MAX) {
        cnp_err_set(err, "graph: name and version need 1..%d bytes", CNW_NAME_MAX);
        return CNP_ERR_INVALID;
    }
    cJSON *root = cJSON_CreateObject();
    bool crop = g->input.kind == DET_INPUT_CROP;
    cJSON_AddStringToObject(root, "family", crop ? "cropmodel" : "retinanet");
    cJSON_AddStringToObject(root, "name", name);
    cJSON_AddStringToObject(root, "version", version);
    /* DeepForest's published models learnt from NEON's 0.1 m imagery. */
    if (!crop)
        cJSON_AddNumberToObject(root, "resolution_m", DET_RESOLUTION_M_DEFAULT);
    cJSON *nodes = cJSON_AddArrayToObject(root, "graph");
    for (int i = 0; nodes && i < g->n_nodes; i++)
        cJSON_AddItemToArray(nodes, node_json(g, &g->nodes[i]));
    if (crop)
        det_classifier_to_json(g, root);
    else
        retina_json(g, root);
    *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!*json) {
        cnp_err_set(err, "graph: out of memory");
        return CNP_ERR_NOMEM;
    }
    return CNP_OK;
}

/* ---- JSON reader ------------------------------------------------------- */

/* Every key of o is one of keys (NULL-terminated); else names the first
 * other in err. */
static bool only_keys(const cJSON *o, const char *const *keys, const char *what,
                      const char *where, cnp_err *err)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, o)
    {
        int k = 0;
        while (keys[k] && strcmp(keys[k], it->string) != 0)
            k++;
        if (!keys[k]) {
            cnp_err_set(err, "%s: %s: unknown key \"%s\"", what, where, it->string);
            return false;
        }
    }
    return true;
}

bool det_json_int(const cJSON *o, const char *key, int lo, int hi, int *v)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) ||
        it->valuedouble < lo || it->valuedouble > hi)
        return false;
    *v = (int)it->valuedouble;
    return true;
}

static bool get_float(const cJSON *o, const char *key, float *v)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble))
        return false;
    *v = (float)it->valuedouble;
    return true;
}

bool det_json_string(const cJSON *it, char *dst, size_t cap)
{
    if (!cJSON_IsString(it) || !it->valuestring[0] || strlen(it->valuestring) >= cap)
        return false;
    strcpy(dst, it->valuestring);
    return true;
}

bool det_json_str(const cJSON *o, const char *key, char *dst, size_t cap)
{
    return det_json_string(cJSON_GetObjectItemCaseSensitive(o, key), dst, cap);
}

bool det_json_floats(const cJSON *a, float *v, int n, bool positive)
{
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != n)
        return false;
    for (int i = 0; i < n; i++) {
        const cJSON *it = cJSON_GetArrayItem(a, i);
        if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble) ||
            (positive && !(it->valuedouble > 0)))
            return false;
        v[i] = (float)it->valuedouble;
    }
    return true;
}

/* A reference by name to an earlier node. */
static bool get_ref(const det_graph *g, int i, const cJSON *o, const char *key, int *ref)
{
    char name[DET_GRAPH_NAME_MAX];
    if (!det_json_str(o, key, name, sizeof name))
        return false;
    for (int j = 0; j < i; j++) {
        if (strcmp(g->nodes[j].name, name) == 0) {
            *ref = j;
            return true;
        }
    }
    return false;
}

static cnp_status parse_node(const char *path, det_graph *g, int i, const cJSON *o,
                             cnp_err *err)
{
    static const char *const k_input[] = {"op", "name", NULL};
    static const char *const k_conv[] = {"op",  "name",   "in",  "add",      "weights", "cin",
                                         "cout", "k",     "stride", "pad", "dilation", "act",
                                         NULL};
    static const char *const k_pool[] = {"op", "name", "in", "k", "stride", "pad", NULL};
    static const char *const k_up[] = {"op", "name", "in", "top", NULL};
    static const char *const k_relu[] = {"op", "name", "in", NULL};
    static const char *const *keys[] = {k_input, k_conv, k_pool, k_up, k_relu};
    det_node *n = &g->nodes[i];
    n->in = n->in2 = -1;
    n->dilation = 1;
    char op[32], where[DET_GRAPH_NAME_MAX + 16];
    if (!cJSON_IsObject(o) || !det_json_str(o, "name", n->name, sizeof n->name) ||
        !det_json_str(o, "op", op, sizeof op)) {
        cnp_err_set(err, "%s: graph node %d needs op and name (< %d bytes)", path, i,
                    DET_GRAPH_NAME_MAX);
        return CNP_ERR_FORMAT;
    }
    int k = 0;
    while (k < 5 && strcmp(op, det_graph_op_name((enum det_op)k)) != 0)
        k++;
    snprintf(where, sizeof where, "node %s", n->name);
    if (k == 5) {
        cnp_err_set(err, "%s: node %s: unknown op \"%s\"", path, n->name, op);
        return CNP_ERR_FORMAT;
    }
    n->op = (enum det_op)k;
    if (!only_keys(o, keys[k], path, where, err))
        return CNP_ERR_FORMAT;
    bool ok = n->op == DET_OP_INPUT || get_ref(g, i, o, "in", &n->in);
    char act[8] = "";
    switch (n->op) {
    case DET_OP_CONV:
        ok = ok && det_json_str(o, "weights", n->weights, sizeof n->weights) &&
             det_json_int(o, "cin", 1, 65536, &n->cin) &&
             det_json_int(o, "cout", 1, 65536, &n->cout) &&
             det_json_int(o, "k", 1, 31, &n->k) && det_json_int(o, "stride", 1, 16, &n->stride) &&
             det_json_int(o, "pad", 0, 1984, &n->pad) &&
             det_json_int(o, "dilation", 1, 64, &n->dilation) &&
             det_json_str(o, "act", act, sizeof act) &&
             (strcmp(act, "relu") == 0 || strcmp(act, "none") == 0);
        n->act = strcmp(act, "relu") == 0 ? DET_ACT_RELU : DET_ACT_NONE;
        if (ok && cJSON_GetObjectItemCaseSensitive(o, "add"))
            ok = get_ref(g, i, o, "add", &n->in2);
        break;
    case DET_OP_MAXPOOL:
        ok = ok && det_json_int(o, "k", 1, 31, &n->k) &&
             det_json_int(o, "stride", 1, 16, &n->stride) &&
             det_json_int(o, "pad", 0, 15, &n->pad);
        break;
    case DET_OP_UPSAMPLE_ADD: ok = ok && get_ref(g, i, o, "top", &n->in2); break;
    default: break;
    }
    if (!ok) {
        cnp_err_set(err,
                    "%s: node %s: %s needs %s (in/add/top name earlier nodes; conv: weights, "
                    "cin, cout, k 1..31, stride 1..16, pad, dilation 1..64, act relu|none)",
                    path, n->name, op,
                    n->op == DET_OP_CONV      ? "in, weights, cin, cout, k, stride, pad, "
                                                "dilation, act"
                    : n->op == DET_OP_MAXPOOL ? "in, k, stride, pad"
                    : n->op == DET_OP_UPSAMPLE_ADD ? "in and top"
                                                   : "in");
        return CNP_ERR_FORMAT;
    }
    return CNP_OK;
}

static cnp_status parse_input(const char *path, const cJSON *in, det_retina *r, cnp_err *err)
{
    static const char *const keys[] = {"mean", "std", "min_size", "max_size", "size_divisible",
                                       NULL};
    if (cJSON_IsObject(in) && !only_keys(in, keys, path, "input", err))
        return CNP_ERR_FORMAT;
    if (!cJSON_IsObject(in) ||
        !det_json_floats(cJSON_GetObjectItemCaseSensitive(in, "mean"), r->mean, 3, false) ||
        !det_json_floats(cJSON_GetObjectItemCaseSensitive(in, "std"), r->std, 3, false) ||
        !det_json_int(in, "min_size", 1, 8192, &r->min_size) ||
        !det_json_int(in, "max_size", 1, 16384, &r->max_size) ||
        !det_json_int(in, "size_divisible", 1, 256, &r->size_divisible)) {
        cnp_err_set(err,
                        "%s: input needs mean and std (3 numbers each), min_size, max_size "
                        "and size_divisible",
                        path);
        return CNP_ERR_FORMAT;
    }
    return CNP_OK;
}

static cnp_status parse_anchors(const char *path, const cJSON *root, det_graph *g,
                                cnp_err *err)
{
    det_retina *r = &g->retina;
    const cJSON *an = cJSON_GetObjectItemCaseSensitive(root, "anchors");
    const cJSON *sizes = cJSON_GetObjectItemCaseSensitive(an, "sizes");
    const cJSON *ratios = cJSON_GetObjectItemCaseSensitive(an, "aspect_ratios");
    const cJSON *levels = cJSON_GetObjectItemCaseSensitive(root, "levels");
    int nl = cJSON_GetArraySize(levels);
    if (!cJSON_IsArray(levels) || nl < 1 || nl > DET_GRAPH_MAX_LEVELS ||
        !cJSON_IsArray(sizes) || !cJSON_IsArray(ratios) || cJSON_GetArraySize(sizes) != nl ||
        cJSON_GetArraySize(ratios) != nl) {
        cnp_err_set(err,
                    "%s: levels must list 1..%d levels, and anchors.sizes and "
                    "anchors.aspect_ratios one list per level",
                    path, DET_GRAPH_MAX_LEVELS);
        return CNP_ERR_FORMAT;
    }
    r->n_levels = nl;
    r->n_sizes = cJSON_GetArraySize(cJSON_GetArrayItem(sizes, 0));
    r->n_ratios = cJSON_GetArraySize(cJSON_GetArrayItem(ratios, 0));
    for (int l = 0; l < nl; l++) {
        const cJSON *lv = cJSON_GetArrayItem(levels, l);
        static const char *const keys[] = {"cls", "box", NULL};
        char where[32];
        snprintf(where, sizeof where, "level %d", l);
        if (r->n_sizes < 1 || r->n_sizes > DET_GRAPH_MAX_ANCHORS || r->n_ratios < 1 ||
            r->n_ratios > DET_GRAPH_MAX_ANCHORS ||
            !det_json_floats(cJSON_GetArrayItem(sizes, l), r->sizes[l], r->n_sizes, false) ||
            !det_json_floats(cJSON_GetArrayItem(ratios, l), r->ratios[l], r->n_ratios, false)) {
            cnp_err_set(err,
                        "%s: anchors of level %d: 1..%d sizes and ratios, as many on every "
                        "level",
                        path, l, DET_GRAPH_MAX_ANCHORS);
            return CNP_ERR_FORMAT;
        }
        if (!cJSON_IsObject(lv) || !only_keys(lv, keys, path, where, err))
            return CNP_ERR_FORMAT;
        if (!get_ref(g, g->n_nodes, lv, "cls", &r->cls_node[l]) ||
            !get_ref(g, g->n_nodes, lv, "box", &r->box_node[l])) {
            cnp_err_set(err, "%s: level %d: cls and box must name graph nodes", path, l);
            return CNP_ERR_FORMAT;
        }
    }
    return CNP_OK;
}

static cnp_status parse_post(const char *path, const cJSON *root, det_retina *r,
                             cnp_err *err)
{
    static const char *const k_bc[] = {"weights", "clip", NULL};
    static const char *const k_pp[] = {"score_thresh", "nms_thresh", "topk_candidates",
                                       "detections_per_img", NULL};
    const cJSON *bc = cJSON_GetObjectItemCaseSensitive(root, "box_coder");
    const cJSON *pp = cJSON_GetObjectItemCaseSensitive(root, "postprocess");
    if ((cJSON_IsObject(bc) && !only_keys(bc, k_bc, path, "box_coder", err)) ||
        (cJSON_IsObject(pp) && !only_keys(pp, k_pp, path, "postprocess", err)))
        return CNP_ERR_FORMAT;
    if (!cJSON_IsObject(bc) ||
        !det_json_floats(cJSON_GetObjectItemCaseSensitive(bc, "weights"), r->box_weights, 4,
                         false) ||
        !get_float(bc, "clip", &r->bbox_clip)) {
        cnp_err_set(err, "%s: box_coder needs weights (4 numbers) and clip", path);
        return CNP_ERR_FORMAT;
    }
    if (!cJSON_IsObject(pp) || !get_float(pp, "score_thresh", &r->score_thresh) ||
        !get_float(pp, "nms_thresh", &r->nms_thresh) ||
        !det_json_int(pp, "topk_candidates", 1, 1000000, &r->topk_candidates) ||
        !det_json_int(pp, "detections_per_img", 1, 1000000, &r->detections_per_img)) {
        cnp_err_set(err,
                        "%s: postprocess needs score_thresh, nms_thresh, topk_candidates and "
                        "detections_per_img",
                        path);
        return CNP_ERR_FORMAT;
    }
    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(root, "labels");
    if (!det_json_int(root, "num_classes", 1, DET_GRAPH_MAX_CLASSES, &r->num_classes) ||
        !cJSON_IsArray(labels) || cJSON_GetArraySize(labels) != r->num_classes) {
        cnp_err_set(err, "%s: num_classes (1..%d) and labels (one per class) disagree", path,
                    DET_GRAPH_MAX_CLASSES);
        return CNP_ERR_FORMAT;
    }
    for (int k = 0; k < r->num_classes; k++) {
        const cJSON *it = cJSON_GetArrayItem(labels, k);
        if (!cJSON_IsString(it) || !it->valuestring[0] ||
            strlen(it->valuestring) >= DET_GRAPH_LABEL_MAX) {
            cnp_err_set(err, "%s: label %d must be a string of 1..%d bytes", path, k,
                        DET_GRAPH_LABEL_MAX - 1);
            return CNP_ERR_FORMAT;
        }
        strcpy(r->labels[k], it->valuestring);
    }
    return CNP_OK;
}

static cnp_status parse_root(const char *path, const cJSON *root, det_graph *g, char *name,
                             size_t name_cap, char *version, size_t version_cap, cnp_err *err)
{
    static const char *const keys[] = {"family",    "name",   "version",     "graph",
                                       "input",     "anchors", "levels",     "box_coder",
                                       "postprocess", "labels", "num_classes",
                                       "resolution_m", "classifier", NULL};
    if (!cJSON_IsObject(root)) {
        cnp_err_set(err, "%s: architecture JSON does not parse", path);
        return CNP_ERR_FORMAT;
    }
    if (!only_keys(root, keys, path, "architecture", err))
        return CNP_ERR_FORMAT;
    const cJSON *fam = cJSON_GetObjectItemCaseSensitive(root, "family");
    bool crop = cJSON_IsString(fam) && strcmp(fam->valuestring, "cropmodel") == 0;
    if (!crop && (!cJSON_IsString(fam) || strcmp(fam->valuestring, "retinanet") != 0)) {
        cnp_err_set(err, "%s: architecture: family must be \"retinanet\" or \"cropmodel\"",
                    path);
        return CNP_ERR_FORMAT;
    }
    size_t ncap = name_cap < CNW_NAME_MAX + 1 ? name_cap : CNW_NAME_MAX + 1;
    size_t vcap = version_cap < CNW_NAME_MAX + 1 ? version_cap : CNW_NAME_MAX + 1;
    if (!det_json_str(root, "name", name, ncap) || !det_json_str(root, "version", version, vcap)) {
        cnp_err_set(err, "%s: architecture: needs name and version (< %zu bytes)", path,
                    ncap < vcap ? ncap : vcap);
        return CNP_ERR_FORMAT;
    }
    const cJSON *nodes = cJSON_GetObjectItemCaseSensitive(root, "graph");
    int n = cJSON_GetArraySize(nodes);
    if (!cJSON_IsArray(nodes) || n < 2 || n > DET_GRAPH_MAX_NODES) {
        cnp_err_set(err, "%s: architecture: graph must list 2..%d nodes", path,
                    DET_GRAPH_MAX_NODES);
        return CNP_ERR_FORMAT;
    }
    g->nodes = calloc((size_t)n, sizeof *g->nodes);
    if (!g->nodes) {
        cnp_err_set(err, "%s: out of memory", path);
        return CNP_ERR_NOMEM;
    }
    cnp_status result;
    const cJSON *o;
    cJSON_ArrayForEach(o, nodes)
    {
        if ((result = parse_node(path, g, g->n_nodes, o, err)) != CNP_OK)
            return result;
        g->n_nodes++;
    }
    if (crop) {
        if ((result = det_classifier_from_json(path, root, g, err)) != CNP_OK)
            return result;
        return det_graph_check(g, path, err);
    }
    if ((result = parse_input(path, cJSON_GetObjectItemCaseSensitive(root, "input"),
                              &g->retina, err)) != CNP_OK ||
        (result = parse_anchors(path, root, g, err)) != CNP_OK ||
        (result = parse_post(path, root, &g->retina, err)) != CNP_OK)
        return result;
    return det_graph_check(g, path, err);
}

cnp_status det_graph_from_json(const char *path, const char *json, size_t len,
                               det_graph **out, char *name, size_t name_cap, char *version,
                               size_t version_cap, cnp_err *err)
{
    *out = NULL;
    det_graph *g = calloc(1, sizeof *g);
    if (!g) {
        cnp_err_set(err, "%s: out of memory", path);
        return CNP_ERR_NOMEM;
    }
    cJSON *root = cJSON_ParseWithLength(json, len);
    cnp_status result = parse_root(path, root, g, name, name_cap, version, version_cap, err);
    cJSON_Delete(root);
    if (result != CNP_OK) {
        det_graph_free(g);
        return result;
    }
    *out = g;
    return CNP_OK;
}
