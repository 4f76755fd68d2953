/* Per-image device processing, shared by all front ends (encoding: encode.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canopy/log.h"
#include "canopy/pipeline.h"

struct pipe_device {
    ocl_ctx *ctx;
    bin_engine *bin;
    det_engine *det;     /* crown model */
    det_box_engine *box; /* box model (imported RetinaNet) */
    det_cpu_engine *cpu; /* either model on the CPU backend ([device] backend) */
    enum cnp_backend backend;
    char desc[512];
    float patch_iou;     /* box models: NMS across patches */
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
    dev->backend = CNP_BACKEND_OPENCL;
    if (model)
        result = det_backend_choose(p->device ? p->device->backend : CNP_BACKEND_AUTO, dev->ctx,
                                    &dev->backend, err);
    if (result != CNP_OK)
        goto fail;
    if (model && dev->backend == CNP_BACKEND_CPU)
        result = det_cpu_engine_create(model, p->detector, p->device ? p->device->threads : 0,
                                       dev->ctx, &dev->cpu, err);
    else if (model && det_model_has_boxes(model))
        result = det_box_engine_create(dev->ctx, model, p->detector, &dev->box, err);
    else if (model)
        result = det_engine_create(dev->ctx, model, p->detector, &dev->det, err);
    if (result != CNP_OK)
        goto fail;
    if (dev->cpu)
        snprintf(dev->desc, sizeof dev->desc, "models on the cpu backend (oneDNN, %d threads), "
                 "binarization on %s", det_cpu_engine_threads(dev->cpu),
                 ocl_ctx_description(dev->ctx));
    else
        snprintf(dev->desc, sizeof dev->desc, "%s on the opencl backend",
                 ocl_ctx_description(dev->ctx));
    dev->patch_iou = (float)p->detector->patch_iou;
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
    det_box_engine_free(dev->box);
    det_cpu_engine_free(dev->cpu);
    bin_engine_free(dev->bin);
    if (dev->rgba)
        ocl_buffer_release(dev->rgba);
    ocl_ctx_free(dev->ctx);
    free(dev);
}

const char *pipe_device_description(const pipe_device *dev)
{
    return dev->desc;
}

/* Uploads n RGBA pixels into the device image, grown to the largest seen. */
static cnp_status upload(pipe_device *dev, const uint8_t *rgba, size_t n, cnp_err *err)
{
    cnp_status result;
    if (n * 4 > dev->rgba_cap) {
        cl_int rc;
        if (dev->rgba)
            ocl_buffer_release(dev->rgba);
        dev->rgba_cap = 0;
        dev->rgba = ocl_buffer_create(ocl_ctx_context(dev->ctx), CL_MEM_READ_ONLY, n * 4, NULL, &rc);
        if ((result = ocl_check(rc, "clCreateBuffer(image)", err)) != CNP_OK)
            return result;
        dev->rgba_cap = n * 4;
    }
    cl_int rc = clEnqueueWriteBuffer(ocl_ctx_queue(dev->ctx), dev->rgba, CL_FALSE, 0, n * 4, rgba,
                                     0, NULL, NULL);
    return ocl_check(rc, "uploading the image", err);
}

size_t pipe_device_image_bytes(const pipe_device *dev)
{
    return dev->rgba_cap;
}

bool pipe_device_has_detector(const pipe_device *dev)
{
    return dev->det != NULL || dev->box != NULL || dev->cpu != NULL;
}

uint32_t pipe_device_window_side(const pipe_device *dev)
{
    if (dev->box && det_box_engine_patch_size(dev->box) > 0)
        return (uint32_t)det_box_engine_patch_size(dev->box);
    if (dev->cpu) {
        uint32_t overlap;
        int stride;
        uint32_t side = det_cpu_engine_window_side(dev->cpu, &overlap, &stride);
        return side ? side : 2048;
    }
    if (!dev->det)
        return 2048;
    int tile, overlap, stride;
    det_engine_tiling(dev->det, &tile, &overlap, &stride);
    return (uint32_t)tile;
}

cnp_status pipe_device_windows(const pipe_device *dev, uint32_t w, uint32_t h, det_tile **out,
                               size_t *n, cnp_err *err)
{
    if (dev->box)
        return det_box_engine_windows(dev->box, w, h, out, n, err);
    if (dev->cpu)
        return det_cpu_engine_windows(dev->cpu, w, h, out, n, err);
    if (dev->det) {
        int tile, overlap, stride;
        det_engine_tiling(dev->det, &tile, &overlap, &stride);
        return det_tiles_plan(w, h, tile, overlap, stride, out, n, err);
    }
    /* Binarization alone: 2048-pixel blocks, each owning itself. */
    const uint32_t side = 2048;
    size_t nx = (w + side - 1) / side, ny = (h + side - 1) / side;
    det_tile *t = calloc(nx * ny > 0 ? nx * ny : 1, sizeof *t);
    if (!t) {
        cnp_err_set(err, "out of memory planning windows");
        return CNP_ERR_NOMEM;
    }
    for (size_t j = 0; j < ny; j++)
        for (size_t i = 0; i < nx; i++) {
            det_tile *d = &t[j * nx + i];
            d->x0 = (uint32_t)i * side;
            d->y0 = (uint32_t)j * side;
            d->w = w - d->x0 < side ? w - d->x0 : side;
            d->h = h - d->y0 < side ? h - d->y0 : side;
            d->own[0] = (float)d->x0;
            d->own[1] = (float)d->y0;
            d->own[2] = (float)(d->x0 + d->w);
            d->own[3] = (float)(d->y0 + d->h);
        }
    *out = t;
    *n = nx * ny;
    return CNP_OK;
}

cnp_status pipe_device_detect_window(pipe_device *dev, const uint8_t *rgba, uint32_t w,
                                     uint32_t h, cnp_tree **trees, size_t *n, cnp_err *err)
{
    *trees = NULL;
    *n = 0;
    if (dev->cpu) {
        cnp_image win = {.width = w, .height = h, .rgba = (uint8_t *)rgba};
        return det_cpu_engine_window(dev->cpu, &win, trees, n, err);
    }
    cnp_status result = upload(dev, rgba, (size_t)w * h, err);
    if (result != CNP_OK)
        return result;
    if (dev->box)
        return det_box_engine_patch(dev->box, dev->rgba, w, h, trees, n, err);
    float iou = det_engine_nms_iou(dev->det);
    det_engine_set_nms_iou(dev->det, 1.0f);
    result = det_engine_run(dev->det, dev->rgba, w, h, trees, n, err);
    det_engine_set_nms_iou(dev->det, iou);
    return result;
}

cnp_status pipe_device_nms(pipe_device *dev, cnp_tree *trees, size_t *n, cnp_err *err)
{
    if (dev->box)
        return det_box_trees_merge(trees, n, dev->patch_iou, err);
    if (dev->cpu)
        return det_cpu_engine_merge(dev->cpu, trees, n, err);
    float iou = det_engine_nms_iou(dev->det);
    cnp_status result = CNP_OK;
    if (*n >= 2 && iou < 1.0f) {
        det_box *boxes = malloc(*n * sizeof *boxes);
        float *scores = malloc(*n * sizeof *scores);
        uint32_t *keep = malloc(*n * sizeof *keep);
        cnp_tree *kept = malloc(*n * sizeof *kept);
        size_t nk = 0;
        if (!boxes || !scores || !keep || !kept) {
            cnp_err_set(err, "out of memory for NMS over %zu trees", *n);
            result = CNP_ERR_NOMEM;
        } else {
            for (size_t i = 0; i < *n; i++) {
                boxes[i] = det_tree_box(&trees[i]);
                scores[i] = trees[i].score;
            }
            result = det_engine_nms(dev->det, boxes, scores, NULL, *n, iou, keep, &nk, err);
            for (size_t i = 0; result == CNP_OK && i < nk; i++)
                kept[i] = trees[keep[i]];
            if (result == CNP_OK) {
                memcpy(trees, kept, nk * sizeof *kept);
                *n = nk;
            }
        }
        free(boxes);
        free(scores);
        free(keep);
        free(kept);
    }
    if (result == CNP_OK)
        det_trees_sort(trees, *n);
    return result;
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
    if ((result = upload(dev, img->rgba, n, err)) != CNP_OK)
        goto fail;
    result = bin_engine_run(dev->bin, dev->rgba, img->width, img->height, out->mask, &out->bin, err);
    if (result != CNP_OK)
        goto fail;
    if (dev->cpu)
        result = det_cpu_engine_run(dev->cpu, img, &out->trees, &out->ntrees, err);
    else if (dev->det || dev->box)
        result = dev->box ? det_box_engine_run(dev->box, dev->rgba, img->width, img->height,
                                               &out->trees, &out->ntrees, err)
                          : det_engine_run(dev->det, dev->rgba, img->width, img->height,
                                           &out->trees, &out->ntrees, err);
    if (result != CNP_OK)
        goto fail;
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
