/* Tree types in the outputs (pipeline.h): counts per type of the second
 * stage (a classifier) and tree_count restricted to the types a message or
 * [classifier] types asks for. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "canopy/pipeline.h"

char *pipe_type_counts_json(const det_model *cls, const cnp_tree *trees, size_t n)
{
    int k = det_model_type_count(cls);
    if (k <= 0)
        return NULL;
    size_t *count = calloc((size_t)k, sizeof *count);
    cJSON *o = count ? cJSON_CreateObject() : NULL;
    for (size_t i = 0; o && i < n; i++)
        if (trees[i].typed && trees[i].type >= 0 && trees[i].type < k)
            count[trees[i].type]++;
    for (int t = 0; o && t < k; t++)
        if (count[t] && !cJSON_AddNumberToObject(o, det_model_type_name(cls, t), (double)count[t]))
            break;
    char *text = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    free(count);
    return text;
}

/* Whether name is one of the comma-separated list's items. */
static bool in_list(const char *list, const char *name)
{
    size_t len = strlen(name);
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        while (n && *p == ' ')
            p++, n--;
        while (n && p[n - 1] == ' ')
            n--;
        if (n == len && strncmp(p, name, n) == 0)
            return true;
        if (!end)
            break;
        p = end + 1;
    }
    return false;
}

size_t pipe_tree_count(const det_model *cls, const cnp_tree *trees, size_t n,
                       const char *const *types, size_t n_types, const char *config_types)
{
    bool from_msg = types && n_types > 0;
    if (det_model_type_count(cls) <= 0 || (!from_msg && !(config_types && config_types[0])))
        return n;
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        const char *name = trees[i].typed ? det_model_type_name(cls, trees[i].type) : NULL;
        bool want = false;
        for (size_t t = 0; name && from_msg && !want && t < n_types; t++)
            want = types[t] && (strcmp(types[t], name) == 0 || in_list(types[t], name));
        if (name && !from_msg)
            want = in_list(config_types, name);
        count += want;
    }
    return count;
}
