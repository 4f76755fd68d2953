/* Per-image device processing, shared by all front ends (encoding: encode.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "canopy/log.h"
#include "canopy/pipeline.h"

struct pipe_device {
    ocl_ctx *ctx;
    bin_engine *bin;
    det_engine *det;
    cl_mem rgba;
    size_t rgba_cap;
};

cnp_status pipe_device_create(const pipe_device_params *p, const det_model *model,
                              pipe_device **out, cnp_err *err)
{
    cnp_status result;
    bin_params bp;
    *out = NULL;
    if ((result = bin_params_from_config(p->binarize, &bp, err)) != CNP_OK)
        return result;
    pipe_device *dev = calloc(1, sizeof *dev);
    if (!dev) {
        cnp_err_set(err, "out of memory");
        return CNP_ERR_NOMEM;
    }
    if ((result = ocl_ctx_create(p->opencl, &dev->ctx, err)) != CNP_OK ||
        (result = bin_engine_create(dev->ctx, &bp, &dev->bin, err)) != CNP_OK)
        goto fail;
    if (model &&
        (result = det_engine_create(dev->ctx, model, p->detector, &dev->det, err)) != CNP_OK)
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

cnp_status pipe_model_load(const cnp_detector_config *dc, det_model **out, cnp_err *err)
{
    *out = NULL;
    if (!dc->enabled)
        return CNP_OK;
    char path[CNP_STR_LONG + 512];
    cnp_status result = det_model_resolve_path(dc->model, path, sizeof path, err);
    if (result != CNP_OK)
        return result;
    return det_model_load(path, out, err);
}
