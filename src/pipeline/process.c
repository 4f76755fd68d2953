/* Per-image device processing, shared by all front ends (encoding: encode.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canopy/log.h"
#include "canopy/pipeline.h"

/* One device image buffer, its pinned staging and what it holds. */
typedef struct img_slot {
    cl_mem buf; /* the image on the device, grown to the largest it held */
    size_t cap;
    cl_mem pin;    /* pinned host staging (pinned mode), mapped at pin_ptr */
    void *pin_ptr;
    size_t pin_cap;
    cl_event copy; /* the last write into buf (it reads pin_ptr); NULL: none */
    /* The image staged here by pipe_device_stage and not yet processed:
     * its pixels' address and size (NULL: none). */
    const uint8_t *staged;
    uint32_t w, h;
    uint64_t seq;
} img_slot;

struct pipe_device {
    ocl_ctx *ctx;        /* NULL: no OpenCL device on this machine */
    bin_engine *bin;     /* NULL without a device: bin_cpu_run */
    bin_params bp;
    det_backend *det;    /* the model on the device; NULL: binarization alone */
    det_model *cls_model; /* [classifier] model, owned; NULL: none */
    det_backend *cls;     /* the classifier's handle */
    enum cnp_backend backend; /* where the model runs ([device] backend) */
    char desc[512];
    /* Image uploads. Two device image buffers used alternately, so the next
     * image can be copied (pipe_device_stage, on copy_q) while this one is
     * processed (on the context's queue). Pinned: each image is copied into
     * a host buffer of CL_MEM_ALLOC_HOST_PTR memory, mapped once, and
     * written to the device from there (full-bandwidth DMA on a GPU; the
     * driver stages malloc'd memory itself); otherwise (a CPU device, where
     * the extra memcpy buys nothing) written from the caller's pixels. */
    cl_command_queue copy_q; /* in order; NULL without OpenCL */
    bool pinned;
    img_slot slot[2];
    uint64_t seq; /* counts stagings: the older of two staged slots */
};

/* True when no OpenCL device exists at all: no platform (no driver in the
 * ICD loader's registry) or platforms without a device. */
static bool no_opencl_device(void)
{
    cl_platform_id plats[16];
    cl_uint np = 0;
    if (clGetPlatformIDs(16, plats, &np) != CL_SUCCESS)
        return true;
    for (cl_uint i = 0; i < np && i < 16; i++) {
        cl_uint nd = 0;
        if (clGetDeviceIDs(plats[i], CL_DEVICE_TYPE_ALL, 0, NULL, &nd) == CL_SUCCESS && nd > 0)
            return false;
    }
    return true;
}

bool pipe_device_less(const cnp_opencl_config *opencl, const cnp_device_config *device,
                      bool model)
{
    enum cnp_backend want = device ? device->backend : CNP_BACKEND_AUTO;
    /* A device named in [opencl] and an explicit opencl backend are asked
     * for: their absence stays an error (ocl_ctx_create's, naming what was
     * searched and what to install). */
    return want != CNP_BACKEND_OPENCL && !opencl->platform[0] && !opencl->device[0] &&
           (!model || det_cpu_backend_available()) && no_opencl_device();
}

/* Loads [classifier] model and opens its handle where the detector runs:
 * the CPU backend's table, or the OpenCL device's (falling back to the
 * CPU backend where no device table takes the model). */
/* Where the CPU backend remembers its measured choices: [opencl] cache_dir
 * (or the default), with or without an OpenCL driver. */
static const char *cache_dir(const pipe_device_params *p)
{
    return p->opencl ? p->opencl->cache_dir : "";
}

static cnp_status classifier_open(pipe_device *dev, const pipe_device_params *p, cnp_err *err)
{
    if (!p->classifier || !p->classifier->model[0])
        return CNP_OK;
    char path[CNP_STR_LONG + 512];
    cnp_status result = det_model_resolve_path(p->classifier->model, path, sizeof path, err);
    if (result == CNP_OK)
        result = det_model_load(path, &dev->cls_model, err);
    if (result == CNP_OK && !det_model_is_classifier(dev->cls_model)) {
        cnp_err_set(err, "[classifier] model %s: a detector, not a classifier (import a "
                         "DeepForest CropModel with canopy model import)",
                    path);
        result = CNP_ERR_INVALID;
    }
    if (result != CNP_OK)
        return result;
    int threads = p->device ? p->device->threads : 0;
    bool on_cpu = dev->backend == CNP_BACKEND_CPU || !dev->ctx; /* no OpenCL device */
    if (!on_cpu)
        result = det_backend_create(dev->cls_model, dev->ctx, p->detector, &dev->cls, err);
    if (on_cpu || result != CNP_OK)
        result = det_backend_create_cpu(dev->cls_model, cache_dir(p), p->detector, threads,
                                        &dev->cls, err);
    if (result != CNP_OK) /* built without oneDNN: the C reference */
        result = det_backend_create(dev->cls_model, NULL, p->detector, &dev->cls, err);
    if (result == CNP_OK)
        LOG_INFO("device", "classifier %s on %s", det_model_version(dev->cls_model),
                 det_backend_name(dev->cls));
    return result;
}

static void slot_settle(img_slot *s);
static void slot_unpin(pipe_device *dev, img_slot *s);

/* The copy queue, and the upload mode for this device's type (logged). */
static cnp_status uploads_open(pipe_device *dev, cnp_err *err)
{
    cl_int rc;
    cl_device_id d = ocl_ctx_device(dev->ctx);
    dev->copy_q = clCreateCommandQueue(ocl_ctx_context(dev->ctx), d, 0, &rc);
    cnp_status result = ocl_check(rc, "clCreateCommandQueue(copies)", err);
    if (result != CNP_OK) {
        dev->copy_q = NULL;
        return result;
    }
    cl_device_type type = 0;
    clGetDeviceInfo(d, CL_DEVICE_TYPE, sizeof type, &type, NULL);
    pipe_device_set_pinned(dev, !(type & CL_DEVICE_TYPE_CPU));
    return CNP_OK;
}

/* Drains both queues, forgets what is staged and frees the staging. */
static void uploads_reset(pipe_device *dev)
{
    clFinish(ocl_ctx_queue(dev->ctx));
    clFinish(dev->copy_q);
    for (int k = 0; k < 2; k++) {
        slot_settle(&dev->slot[k]);
        slot_unpin(dev, &dev->slot[k]);
        dev->slot[k].staged = NULL;
    }
}

void pipe_device_set_pinned(pipe_device *dev, bool pinned)
{
    if (!dev->ctx)
        return;
    uploads_reset(dev);
    dev->pinned = pinned;
    if (pinned)
        LOG_DEBUG("device", "image uploads: through pinned staging (CL_MEM_ALLOC_HOST_PTR, "
                            "mapped once), the next image copied on a second queue");
    else
        LOG_DEBUG("device", "image uploads: written from the host's pixels (a CPU device: a "
                            "pinned staging copy would buy nothing)");
}

/* Drains both queues and frees the image buffers, staging and copy queue. */
static void uploads_close(pipe_device *dev)
{
    if (!dev->ctx)
        return;
    if (dev->copy_q)
        uploads_reset(dev);
    for (int k = 0; k < 2; k++)
        ocl_buffer_release(dev->slot[k].buf);
    if (dev->copy_q)
        clReleaseCommandQueue(dev->copy_q);
}

cnp_status pipe_device_create(const pipe_device_params *p, const det_model *model,
                              pipe_device **out, cnp_err *err)
{
    cnp_status result;
    *out = NULL;
    pipe_device *dev = calloc(1, sizeof *dev);
    if (!dev) {
        cnp_err_set(err, "out of memory");
        return CNP_ERR_NOMEM;
    }
    if ((result = bin_params_from_config(p->binarize, &dev->bp, err)) != CNP_OK)
        goto fail;
    bool none = pipe_device_less(p->opencl, p->device, model != NULL);
    if (!none && ((result = ocl_ctx_create(p->opencl, &dev->ctx, err)) != CNP_OK ||
                  (result = uploads_open(dev, err)) != CNP_OK ||
                  (result = bin_engine_create(dev->ctx, &dev->bp, &dev->bin, err)) != CNP_OK))
        goto fail;
    dev->backend = CNP_BACKEND_OPENCL;
    if (model)
        result = det_backend_choose(p->device ? p->device->backend : CNP_BACKEND_AUTO, dev->ctx,
                                    &dev->backend, err);
    if (result == CNP_OK && model)
        result = dev->backend == CNP_BACKEND_CPU
                     ? det_backend_create_cpu(model, cache_dir(p), p->detector,
                                              p->device ? p->device->threads : 0, &dev->det,
                                              err)
                     : det_backend_create(model, dev->ctx, p->detector, &dev->det, err);
    if (result == CNP_OK)
        result = classifier_open(dev, p, err);
    if (result != CNP_OK)
        goto fail;
    const char *bin_on = none ? "the CPU (C path; no OpenCL device on this machine)"
                              : ocl_ctx_description(dev->ctx);
    if (dev->det && dev->backend == CNP_BACKEND_CPU)
        snprintf(dev->desc, sizeof dev->desc,
                 "models on the cpu backend (oneDNN, %s), binarization on %s",
                 det_backend_name(dev->det), bin_on);
    else if (none)
        snprintf(dev->desc, sizeof dev->desc, "binarization on %s", bin_on);
    else
        snprintf(dev->desc, sizeof dev->desc, "%s on the opencl backend", bin_on);
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
    det_backend_free(dev->det);
    det_backend_free(dev->cls);
    det_model_free(dev->cls_model);
    bin_engine_free(dev->bin);
    uploads_close(dev);
    ocl_ctx_free(dev->ctx);
    free(dev);
}

const char *pipe_device_description(const pipe_device *dev)
{
    return dev->desc;
}

static cnp_status upload(pipe_device *dev, const uint8_t *rgba, size_t n, cl_mem *buf,
                         cnp_err *err);
static cnp_status finish_after(pipe_device *dev, cnp_status result);

const det_model *pipe_device_classifier(const pipe_device *dev)
{
    return dev->cls ? dev->cls_model : NULL;
}

cnp_status pipe_device_classify(pipe_device *dev, const uint8_t *rgba, const det_tile *win,
                                uint32_t W, uint32_t H, cnp_tree *trees, size_t n,
                                cnp_err *err)
{
    if (!dev->cls || n == 0)
        return CNP_OK;
    /* A device table reads the image from the device buffer. */
    cl_mem buf = NULL;
    cnp_status result = upload(dev, rgba, (size_t)win->w * win->h, &buf, err);
    if (result != CNP_OK)
        return finish_after(dev, result);
    det_pixels in = {.w = win->w, .h = win->h, .host = rgba, .dev = buf,
                     .x0 = win->x0, .y0 = win->y0, .full_w = W, .full_h = H};
    return finish_after(dev, det_backend_classify(dev->cls, &in, trees, n, err));
}

/* Waits for the last write out of the slot's staging to finish (on the
 * host: its pinned memory is about to be rewritten or freed). */
static void slot_settle(img_slot *s)
{
    if (s->copy) {
        clWaitForEvents(1, &s->copy);
        clReleaseEvent(s->copy);
        s->copy = NULL;
    }
}

/* Unmaps and frees the slot's pinned staging (after slot_settle). */
static void slot_unpin(pipe_device *dev, img_slot *s)
{
    if (s->pin) {
        if (s->pin_ptr &&
            clEnqueueUnmapMemObject(dev->copy_q, s->pin, s->pin_ptr, 0, NULL, NULL) ==
                CL_SUCCESS)
            clFinish(dev->copy_q);
        clReleaseMemObject(s->pin);
    }
    s->pin = NULL;
    s->pin_ptr = NULL;
    s->pin_cap = 0;
}

/* Grows the slot's device buffer (and pinned staging) to bytes. A buffer
 * released here still in use by a queued command lives until it is done
 * (clReleaseMemObject's contract). */
static cnp_status slot_reserve(pipe_device *dev, img_slot *s, size_t bytes, cnp_err *err)
{
    cnp_status result;
    cl_int rc;
    cl_context c = ocl_ctx_context(dev->ctx);
    if (bytes > s->cap) {
        ocl_buffer_release(s->buf);
        s->cap = 0;
        s->buf = ocl_buffer_create(c, CL_MEM_READ_ONLY, bytes, NULL, &rc);
        if ((result = ocl_check(rc, "clCreateBuffer(image)", err)) != CNP_OK)
            return result;
        s->cap = bytes;
    }
    if (!dev->pinned || bytes <= s->pin_cap)
        return CNP_OK;
    slot_settle(s);
    slot_unpin(dev, s);
    /* Host memory: not counted with the device's buffers (ocl_device_bytes). */
    s->pin = clCreateBuffer(c, CL_MEM_READ_WRITE | CL_MEM_ALLOC_HOST_PTR, bytes, NULL, &rc);
    if ((result = ocl_check(rc, "clCreateBuffer(pinned staging)", err)) != CNP_OK)
        return result;
    s->pin_ptr = clEnqueueMapBuffer(dev->copy_q, s->pin, CL_TRUE, CL_MAP_WRITE, 0, bytes, 0,
                                    NULL, NULL, &rc);
    if ((result = ocl_check(rc, "mapping the pinned staging", err)) != CNP_OK) {
        s->pin_ptr = NULL;
        slot_unpin(dev, s);
        return result;
    }
    s->pin_cap = bytes;
    return CNP_OK;
}

/* Writes bytes of rgba into the slot's device buffer on q after the nwait
 * events, its event in s->copy. Pinned: through the staging, so the
 * caller's pixels are free on return. Direct: from rgba, blocking on the
 * copy queue (the caller may free its pixels next) and not on the compute
 * queue (finish_after and bin_engine_run's clFinish drain that). */
static cnp_status slot_write(pipe_device *dev, img_slot *s, cl_command_queue q,
                             const uint8_t *rgba, size_t bytes, cl_uint nwait,
                             const cl_event *wait, cnp_err *err)
{
    cnp_status result = slot_reserve(dev, s, bytes, err);
    if (result != CNP_OK)
        return result;
    slot_settle(s);
    const void *src = rgba;
    if (dev->pinned) {
        memcpy(s->pin_ptr, rgba, bytes);
        src = s->pin_ptr;
    }
    cl_bool blocking = !dev->pinned && q == dev->copy_q;
    cl_int rc = clEnqueueWriteBuffer(q, s->buf, blocking, 0, bytes, src, nwait, wait, &s->copy);
    if (rc != CL_SUCCESS)
        s->copy = NULL;
    return ocl_check(rc, "uploading the image", err);
}

/* The slot to overwrite: one holding no staged image, else the one staged
 * earlier (a staging never processed, or the overlap simply lost). */
static img_slot *slot_victim(pipe_device *dev)
{
    img_slot *a = &dev->slot[0], *b = &dev->slot[1];
    img_slot *s = !a->staged ? a : !b->staged ? b : a->seq < b->seq ? a : b;
    s->staged = NULL;
    return s;
}

/* Uploads n RGBA pixels into a device image buffer on the compute queue;
 * *buf: that buffer (NULL without a device: everything reads the host's
 * pixels). */
static cnp_status upload(pipe_device *dev, const uint8_t *rgba, size_t n, cl_mem *buf,
                         cnp_err *err)
{
    *buf = NULL;
    if (!dev->ctx)
        return CNP_OK;
    img_slot *s = slot_victim(dev);
    /* slot_write first waits for a staging still being copied into it. */
    cnp_status result = slot_write(dev, s, ocl_ctx_queue(dev->ctx), rgba, n * 4, 0, NULL, err);
    if (result == CNP_OK)
        *buf = s->buf;
    return result;
}

/* The buffer pipe_device_stage filled with img, the compute queue told to
 * wait for that copy (a barrier on its event: the host does not wait);
 * NULL where img was not staged or its copy failed. */
static cl_mem take_staged(pipe_device *dev, const cnp_image *img)
{
    for (int k = 0; k < 2; k++) {
        img_slot *s = &dev->slot[k];
        if (!s->staged || s->staged != img->rgba || s->w != img->width || s->h != img->height)
            continue;
        s->staged = NULL;
        cl_int st = CL_COMPLETE;
        if (!s->copy ||
            clGetEventInfo(s->copy, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof st, &st, NULL) !=
                CL_SUCCESS ||
            st < 0) {
            LOG_DEBUG("device", "the staged copy of a %ux%u image failed (%d): uploading it again",
                      img->width, img->height, (int)st);
            return NULL;
        }
        if (clEnqueueBarrierWithWaitList(ocl_ctx_queue(dev->ctx), 1, &s->copy, NULL) !=
            CL_SUCCESS)
            return NULL;
        return s->buf;
    }
    return NULL;
}

cnp_status pipe_device_stage(pipe_device *dev, const cnp_image *next, cnp_err *err)
{
    if (!dev->ctx || !next || !next->rgba || (size_t)next->width * next->height == 0)
        return CNP_OK;
    for (int k = 0; k < 2; k++)
        if (dev->slot[k].staged == next->rgba && dev->slot[k].w == next->width &&
            dev->slot[k].h == next->height)
            return CNP_OK;
    img_slot *s = slot_victim(dev);
    /* The copy waits for everything queued for compute so far, which may
     * still read this buffer (the image before last). */
    cl_event done = NULL;
    cl_int rc = clEnqueueMarkerWithWaitList(ocl_ctx_queue(dev->ctx), 0, NULL, &done);
    /* An event another queue waits on must be flushed to its device. */
    if (rc == CL_SUCCESS)
        rc = clFlush(ocl_ctx_queue(dev->ctx));
    cnp_status result = ocl_check(rc, "clEnqueueMarkerWithWaitList", err);
    if (result == CNP_OK)
        result = slot_write(dev, s, dev->copy_q, next->rgba,
                            (size_t)next->width * next->height * 4, 1, &done, err);
    if (done)
        clReleaseEvent(done);
    if (result == CNP_OK && (rc = clFlush(dev->copy_q)) != CL_SUCCESS)
        result = ocl_check(rc, "clFlush(copy queue)", err);
    if (result != CNP_OK) {
        /* Nothing left reading anything of the caller's. */
        clFinish(dev->copy_q);
        return result;
    }
    s->staged = next->rgba;
    s->w = next->width;
    s->h = next->height;
    s->seq = ++dev->seq;
    return CNP_OK;
}

void pipe_device_unstage(pipe_device *dev)
{
    dev->slot[0].staged = NULL;
    dev->slot[1].staged = NULL;
}

size_t pipe_device_image_bytes(const pipe_device *dev)
{
    return dev->slot[0].cap + dev->slot[1].cap;
}

uint64_t pipe_device_max_pixels(const pipe_device *dev)
{
    /* The largest buffer of a whole image is its RGBA upload (4 bytes per
     * pixel); the binarization kernels count pixels in 32 bits. */
    if (!dev->ctx)
        return UINT32_MAX;
    uint64_t px = ocl_max_buffer_bytes(ocl_ctx_context(dev->ctx)) / 4;
    return px == 0 || px > UINT32_MAX ? UINT32_MAX : px;
}

bool pipe_device_has_detector(const pipe_device *dev)
{
    return dev->det != NULL;
}

/* Windows without a model: blocks of this side. */
enum { BLOCK_SIDE = 2048 };

uint32_t pipe_device_window_side(const pipe_device *dev)
{
    uint32_t side = dev->det ? det_backend_window_side(dev->det) : 0;
    return side > 0 ? side : BLOCK_SIDE;
}

cnp_status pipe_device_windows(const pipe_device *dev, uint32_t w, uint32_t h, det_tile **out,
                               size_t *n, cnp_err *err)
{
    if (dev->det)
        return det_backend_plan(dev->det, w, h, out, n, err);
    /* Binarization alone: 2048-pixel blocks, each owning itself. */
    const uint32_t side = BLOCK_SIDE;
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

/* A failure after upload(): the engines may return before any blocking
 * call, with the non-blocking upload (and whatever else they queued) still
 * reading the caller's pixels, which the caller frees or reuses next. The
 * copy queue is drained too: nothing of either queue outlives a failure. */
static cnp_status finish_after(pipe_device *dev, cnp_status result)
{
    if (result != CNP_OK && dev->ctx) {
        clFinish(ocl_ctx_queue(dev->ctx));
        clFinish(dev->copy_q);
    }
    return result;
}

cnp_status pipe_device_detect_window(pipe_device *dev, const uint8_t *rgba, uint32_t w,
                                     uint32_t h, cnp_tree **trees, size_t *n, cnp_err *err)
{
    *trees = NULL;
    *n = 0;
    cl_mem buf = NULL;
    cnp_status result = upload(dev, rgba, (size_t)w * h, &buf, err);
    det_pixels in = {.w = w, .h = h, .host = rgba, .dev = buf};
    det_found found = {0};
    if (result == CNP_OK)
        result = det_backend_run(dev->det, &in, 1, &found, err);
    *trees = found.trees;
    *n = found.n;
    return finish_after(dev, result);
}

float pipe_device_merge_iou(const pipe_device *dev)
{
    return det_backend_merge_iou(dev->det);
}

cnp_status pipe_device_merge(pipe_device *dev, cnp_tree *trees, size_t *n, float iou,
                             cnp_err *err)
{
    return det_backend_merge(dev->det, trees, n, iou, err);
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
        return bin_cpu_run(&dev->bp, img->rgba, 0, 0, out->mask, &out->bin, err);
    /* The image pipe_device_stage copied already, or an upload now. */
    cl_mem buf = dev->ctx ? take_staged(dev, img) : NULL;
    if (!buf && (result = upload(dev, img->rgba, n, &buf, err)) != CNP_OK)
        goto fail;
    result = dev->bin ? bin_engine_run(dev->bin, buf, img->width, img->height, out->mask,
                                       &out->bin, err)
                      : bin_cpu_run(&dev->bp, img->rgba, img->width, img->height, out->mask,
                                    &out->bin, err);
    if (result != CNP_OK)
        goto fail;
    if (dev->det) {
        det_pixels in = {.w = img->width, .h = img->height, .host = img->rgba, .dev = buf};
        if ((result = det_backend_detect(dev->det, &in, &out->trees, &out->ntrees, err)) !=
            CNP_OK)
            goto fail;
        if (dev->cls && (result = det_backend_classify(dev->cls, &in, out->trees, out->ntrees,
                                                       err)) != CNP_OK)
            goto fail;
    }
    out->device_s = cnp_now() - t0;
    return CNP_OK;
fail:
    pipe_result_free(out);
    return finish_after(dev, result);
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
    result = det_model_load(path, out, err);
    if (result == CNP_OK && det_model_is_classifier(*out)) {
        cnp_err_set(err, "[detector] model %s is a tree-type classifier: select it with "
                         "[classifier] model (canopy run --classifier)",
                    path);
        det_model_free(*out);
        *out = NULL;
        result = CNP_ERR_INVALID;
    }
    return result;
}
