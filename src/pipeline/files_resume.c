/* `canopy run` and the outputs already in its output directory: which files
 * there are canopy's own (never inputs), and which inputs are complete
 * (--skip-existing). The directory sink writes <stem>.trees.json last, each
 * output by an atomic rename, so a trees.json that parses marks an image
 * whose outputs are all in place. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "canopy/buf.h"
#include "pipeline/sources.h"

bool pl_is_output_name(const char *name)
{
    size_t len = strlen(name);
    for (int k = 0; k < PIPE_OUT_COUNT; k++) {
        size_t sl = strlen(pipe_out_suffix[k]);
        /* A stem of at least one character before the suffix. */
        if (len > sl && strcmp(name + len - sl, pipe_out_suffix[k]) == 0)
            return true;
    }
    return false;
}

static bool file_exists(const char *outdir, const char *stem, const char *suffix)
{
    char path[4096];
    struct stat st;
    if (snprintf(path, sizeof path, "%s/%s%s", outdir, stem, suffix) >= (int)sizeof path)
        return false;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

bool pl_outputs_complete(const char *outdir, const char *stem, const char *model_version)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s%s", outdir, stem,
                 pipe_out_suffix[PIPE_OUT_TREES_JSON]) >= (int)sizeof path)
        return false;
    cnp_buf b = {0};
    cnp_err err;
    if (cnp_file_read(path, 64u << 20, &b, &err) != CNP_OK) {
        cnp_buf_free(&b);
        return false;
    }
    cJSON *doc = cJSON_ParseWithLength((const char *)b.data, b.len);
    cnp_buf_free(&b);
    /* Outputs of another model (or of none) are not this run's outputs. */
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(doc, "model");
    bool same_model = model_version && strcmp(model_version, "none") != 0
                          ? cJSON_IsString(model) && strcmp(model->valuestring, model_version) == 0
                          : cJSON_IsNull(model) ||
                                (cJSON_IsString(model) && strcmp(model->valuestring, "none") == 0);
    cJSON_Delete(doc);
    return same_model && (file_exists(outdir, stem, pipe_out_suffix[PIPE_OUT_MASK_PNG]) ||
                          file_exists(outdir, stem, pipe_out_suffix[PIPE_OUT_MASK_TIF]));
}
