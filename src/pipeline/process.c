/* Per-image device processing and output encoding, shared by all front ends. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "canopy/log.h"
#include "canopy/pipeline.h"

struct pipe_device {
    ocl_ctx *ctx;
    bin_engine *bin;
    det_engine *det;
    cl_mem rgba;
    size_t rgba_cap;
};

cnp_status pipe_device_create(const cnp_config *cfg, const det_model *model,
                              pipe_device **out, cnp_err *err)
{
    cnp_status result;
    bin_params bp;
    *out = NULL;
    if ((result = bin_params_from_config(cfg, &bp, err)) != CNP_OK)
        return result;
    pipe_device *dev = calloc(1, sizeof *dev);
    if (!dev) {
        cnp_err_set(err, "out of memory");
        return CNP_ERR_NOMEM;
    }
    if ((result = ocl_ctx_create(cfg, &dev->ctx, err)) != CNP_OK ||
        (result = bin_engine_create(dev->ctx, &bp, &dev->bin, err)) != CNP_OK)
        goto fail;
    if (model && (result = det_engine_create(dev->ctx, model, &cfg->detector, &dev->det, err)) != CNP_OK)
        goto fail;
    *out = dev;
    return CNP_OK;
fail:
    pipe_device_free(dev);
    return result;
}

void pipe_device_free(pipe_device *dev)
{
    if (!dev)
        return;
    det_engine_free(dev->det);
    bin_engine_free(dev->bin);
    if (dev->rgba)
        clReleaseMemObject(dev->rgba);
    ocl_ctx_free(dev->ctx);
    free(dev);
}

const char *pipe_device_description(const pipe_device *dev)
{
    return ocl_ctx_description(dev->ctx);
}

cnp_status pipe_device_process(pipe_device *dev, const cnp_image *img, pipe_result *out,
                               cnp_err *err)
{
    cnp_status result;
    double t0 = cnp_now();
    size_t n = (size_t)img->width * img->height;
    memset(out, 0, sizeof *out);
    out->width = img->width;
    out->height = img->height;
    out->mask = malloc(n ? n : 1);
    if (!out->mask) {
        cnp_err_set(err, "out of memory for a %ux%u mask", img->width, img->height);
        return CNP_ERR_NOMEM;
    }
    if (n == 0)
        return bin_engine_run(dev->bin, NULL, 0, 0, out->mask, &out->bin, err);
    if (n * 4 > dev->rgba_cap) {
        cl_int rc;
        if (dev->rgba)
            clReleaseMemObject(dev->rgba);
        dev->rgba_cap = 0;
        dev->rgba = clCreateBuffer(ocl_ctx_context(dev->ctx), CL_MEM_READ_ONLY, n * 4, NULL, &rc);
        if ((result = ocl_check(rc, "clCreateBuffer(image)", err)) != CNP_OK)
            goto fail;
        dev->rgba_cap = n * 4;
    }
    cl_int rc = clEnqueueWriteBuffer(ocl_ctx_queue(dev->ctx), dev->rgba, CL_FALSE, 0, n * 4,
                                     img->rgba, 0, NULL, NULL);
    if ((result = ocl_check(rc, "uploading the image", err)) != CNP_OK)
        goto fail;
    result = bin_engine_run(dev->bin, dev->rgba, img->width, img->height, out->mask, &out->bin, err);
    if (result != CNP_OK)
        goto fail;
    if (dev->det) {
        result = det_engine_run(dev->det, dev->rgba, img->width, img->height, &out->trees,
                                &out->ntrees, err);
        if (result != CNP_OK)
            goto fail;
    }
    out->device_s = cnp_now() - t0;
    return CNP_OK;
fail:
    pipe_result_free(out);
    return result;
}

void pipe_result_free(pipe_result *r)
{
    if (!r)
        return;
    free(r->mask);
    free(r->trees);
    r->mask = NULL;
    r->trees = NULL;
    r->ntrees = 0;
}

/* Rounds to `digits` decimals so the JSON stays short and stable. */
static double round_to(double v, int digits)
{
    double scale = pow(10.0, digits);
    return round(v * scale) / scale;
}

static cnp_status trees_json(const cnp_image *img, const pipe_result *r, const char *image_name,
                             const char *model_version, cnp_buf *out, cnp_err *err)
{
    cnp_status result = CNP_ERR_NOMEM;
    char *text = NULL;
    cJSON *doc = cJSON_CreateObject();
    cJSON *trees = NULL;
    if (!doc || !cJSON_AddStringToObject(doc, "image", image_name) ||
        !cJSON_AddNumberToObject(doc, "width", img->width) ||
        !cJSON_AddNumberToObject(doc, "height", img->height))
        goto out;
    if (r->bin.threshold >= 0) {
        if (!cJSON_AddNumberToObject(doc, "threshold", r->bin.threshold))
            goto out;
    } else if (!cJSON_AddNullToObject(doc, "threshold")) {
        goto out;
    }
    if (!cJSON_AddNumberToObject(doc, "canopy_cover", round_to(r->bin.canopy_cover, 4)))
        goto out;
    if (model_version ? !cJSON_AddStringToObject(doc, "model", model_version)
                      : !cJSON_AddNullToObject(doc, "model"))
        goto out;
    if (!(trees = cJSON_AddArrayToObject(doc, "trees")))
        goto out;
    for (size_t i = 0; i < r->ntrees; i++) {
        cJSON *t = cJSON_CreateObject();
        if (!t)
            goto out;
        cJSON_AddItemToArray(trees, t);
        if (!cJSON_AddNumberToObject(t, "x", round_to(r->trees[i].x, 2)) ||
            !cJSON_AddNumberToObject(t, "y", round_to(r->trees[i].y, 2)) ||
            !cJSON_AddNumberToObject(t, "radius", round_to(r->trees[i].radius, 2)) ||
            !cJSON_AddNumberToObject(t, "score", round_to(r->trees[i].score, 4)))
            goto out;
    }
    if (!(text = cJSON_PrintUnformatted(doc)))
        goto out;
    result = cnp_buf_append(out, text, strlen(text));
    if (result == CNP_OK)
        result = cnp_buf_append(out, "\n", 1);
out:
    if (result != CNP_OK)
        cnp_err_set(err, "out of memory writing trees.json");
    cJSON_free(text);
    cJSON_Delete(doc);
    return result;
}

/* Draws each crown as a ring on a copy of the input, easy to read at a
 * glance on green canopy: yellow for confident trees, orange otherwise. */
static cnp_status overlay_png(const cnp_config *cfg, const cnp_image *img, const pipe_result *r,
                              cnp_buf *out, cnp_err *err)
{
    static const uint8_t strong[3] = {255, 230, 0};
    static const uint8_t weak[3] = {255, 120, 0};
    cnp_image copy;
    cnp_status result = cnp_image_alloc(&copy, img->width, img->height, err);
    if (result != CNP_OK)
        return result;
    memcpy(copy.rgba, img->rgba, (size_t)img->width * img->height * 4);
    for (size_t i = 0; i < r->ntrees; i++) {
        const cnp_tree *t = &r->trees[i];
        const uint8_t *c = t->score >= 0.5f ? strong : weak;
        img_draw_circle(&copy, t->x, t->y, t->radius, c, 2.0f);
        img_draw_dot(&copy, t->x, t->y, 1.5f, c);
    }
    result = img_png_encode_rgb(&copy, cfg->output.png_level, out, err);
    cnp_image_free(&copy);
    return result;
}

cnp_status pipe_encode(const cnp_config *cfg, const cnp_image *img, const pipe_result *r,
                       const char *image_name, const char *model_version, pipe_outputs *out,
                       cnp_err *err)
{
    cnp_status result;
    memset(out, 0, sizeof *out);
    if ((result = img_png_encode_mask(r->mask, r->width, r->height, cfg->output.png_level,
                                      &out->mask_png, err)) != CNP_OK ||
        (result = trees_json(img, r, image_name, model_version, &out->trees_json, err)) != CNP_OK)
        goto fail;
    if (cfg->output.overlay && (result = overlay_png(cfg, img, r, &out->overlay_png, err)) != CNP_OK)
        goto fail;
    return CNP_OK;
fail:
    cnp_err_prefix(err, "%s", image_name);
    pipe_outputs_free(out);
    return result;
}

void pipe_outputs_free(pipe_outputs *o)
{
    if (!o)
        return;
    cnp_buf_free(&o->mask_png);
    cnp_buf_free(&o->overlay_png);
    cnp_buf_free(&o->trees_json);
}

void pipe_stem(const char *name, char *out, size_t out_len)
{
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    const char *dot = strrchr(base, '.');
    size_t len = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    if (len >= out_len)
        len = out_len - 1;
    memcpy(out, base, len);
    out[len] = '\0';
}

cnp_status pipe_model_load(const cnp_config *cfg, det_model **out, cnp_err *err)
{
    *out = NULL;
    if (!cfg->detector.enabled)
        return CNP_OK;
    char path[CNP_STR_LONG + 512];
    cnp_status result = det_model_resolve_path(cfg->detector.model, path, sizeof path, err);
    if (result != CNP_OK)
        return result;
    return det_model_load(path, out, err);
}
