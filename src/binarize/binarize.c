/* OpenCL binarization engine: kernels/binarize.cl driven without host round
 * trips between kernels; one wait per image, after the mask read. */
#include <stdlib.h>
#include <string.h>

#include "canopy/binarize.h"
#include "canopy/log.h"

#define GROUP 256     /* work-group size of the 1-D kernels and of otsu */
#define MAX_GROUPS 1024
#define TILE_W 256    /* box_h tile; must match the -D option */
#define ROWS 64       /* box_v_mask rows per work item */
#define VGROUP 64     /* box_v_mask work-group width */

struct bin_engine {
    ocl_ctx *ctx;
    bin_params p;
    bool device_otsu; /* false when the device lacks fp64: Otsu on the host */
    cl_kernel k_hist, k_otsu, k_mask, k_box_h, k_box_v;
    cl_mem value, hsum, mask, hist, thr, count;
    size_t capacity; /* pixels the buffers hold */
    cl_mem upload;   /* scratch for bin_engine_run_image */
    size_t upload_cap;
};

static bool device_has_fp64(cl_device_id dev)
{
    char ext[8192] = "";
    clGetDeviceInfo(dev, CL_DEVICE_EXTENSIONS, sizeof ext - 1, ext, NULL);
    return strstr(ext, "cl_khr_fp64") != NULL;
}

cnp_status bin_engine_create(ocl_ctx *ctx, const bin_params *p, bin_engine **out, cnp_err *err)
{
    cnp_status result;
    cl_int rc;
    *out = NULL;
    bin_engine *e = calloc(1, sizeof *e);
    if (!e) {
        cnp_err_set(err, "out of memory");
        return CNP_ERR_NOMEM;
    }
    e->ctx = ctx;
    e->p = *p;
    e->device_otsu = device_has_fp64(ocl_ctx_device(ctx));
    if (!e->device_otsu)
        LOG_INFO("binarize", "device has no fp64: Otsu thresholds computed on the host");
    char opts[128];
    snprintf(opts, sizeof opts, "-DTILE_W=%d -DROWS=%d%s", TILE_W, ROWS,
             e->device_otsu ? " -DCANOPY_HAVE_FP64" : "");
    if ((result = ocl_kernel_create(ctx, "binarize", opts, "channel_hist", &e->k_hist, err)) ||
        (result = ocl_kernel_create(ctx, "binarize", opts, "threshold_mask", &e->k_mask, err)) ||
        (result = ocl_kernel_create(ctx, "binarize", opts, "box_h", &e->k_box_h, err)) ||
        (result = ocl_kernel_create(ctx, "binarize", opts, "box_v_mask", &e->k_box_v, err)))
        goto fail;
    if (e->device_otsu &&
        (result = ocl_kernel_create(ctx, "binarize", opts, "otsu", &e->k_otsu, err)))
        goto fail;
    cl_context c = ocl_ctx_context(ctx);
    e->hist = ocl_buffer_create(c, CL_MEM_READ_WRITE, 256 * sizeof(cl_uint), NULL, &rc);
    if ((result = ocl_check(rc, "clCreateBuffer(hist)", err)))
        goto fail;
    e->thr = ocl_buffer_create(c, CL_MEM_READ_WRITE, sizeof(cl_int), NULL, &rc);
    if ((result = ocl_check(rc, "clCreateBuffer(threshold)", err)))
        goto fail;
    e->count = ocl_buffer_create(c, CL_MEM_READ_WRITE, sizeof(cl_uint), NULL, &rc);
    if ((result = ocl_check(rc, "clCreateBuffer(count)", err)))
        goto fail;
    *out = e;
    return CNP_OK;
fail:
    bin_engine_free(e);
    return result;
}

static void release_mem(cl_mem *m)
{
    if (*m)
        ocl_buffer_release(*m);
    *m = NULL;
}

static void release_kernel(cl_kernel *k)
{
    if (*k)
        clReleaseKernel(*k);
    *k = NULL;
}

void bin_engine_free(bin_engine *e)
{
    if (!e)
        return;
    release_kernel(&e->k_hist);
    release_kernel(&e->k_otsu);
    release_kernel(&e->k_mask);
    release_kernel(&e->k_box_h);
    release_kernel(&e->k_box_v);
    release_mem(&e->value);
    release_mem(&e->hsum);
    release_mem(&e->mask);
    release_mem(&e->hist);
    release_mem(&e->thr);
    release_mem(&e->count);
    release_mem(&e->upload);
    free(e);
}

/* Grows the per-pixel buffers to hold n pixels (never shrinks). */
static cnp_status reserve(bin_engine *e, size_t n, cnp_err *err)
{
    if (n <= e->capacity)
        return CNP_OK;
    cl_context c = ocl_ctx_context(e->ctx);
    cl_int rc;
    cnp_status result;
    release_mem(&e->value);
    release_mem(&e->hsum);
    release_mem(&e->mask);
    e->capacity = 0;
    e->value = ocl_buffer_create(c, CL_MEM_READ_WRITE, n, NULL, &rc);
    if ((result = ocl_check(rc, "clCreateBuffer(value)", err)))
        return result;
    e->mask = ocl_buffer_create(c, CL_MEM_READ_WRITE, n, NULL, &rc);
    if ((result = ocl_check(rc, "clCreateBuffer(mask)", err)))
        return result;
    if (e->p.method == CNP_BIN_ADAPTIVE) {
        e->hsum = ocl_buffer_create(c, CL_MEM_READ_WRITE, n * sizeof(cl_ushort), NULL, &rc);
        if ((result = ocl_check(rc, "clCreateBuffer(hsum)", err)))
            return result;
    }
    e->capacity = n;
    return CNP_OK;
}

/* Sets one kernel argument; on failure names the kernel, the argument and
 * that call's own error code (OR-ing the codes of several calls would name
 * some other error). */
static cnp_status kernel_arg(cl_kernel k, const char *kname, cl_uint index, size_t size,
                             const void *value, cnp_err *err)
{
    cl_int rc = clSetKernelArg(k, index, size, value);
    if (rc == CL_SUCCESS)
        return CNP_OK;
    cnp_err_set(err, "clSetKernelArg(%s, %u): %s (%d)", kname, index, ocl_error_name(rc), rc);
    return CNP_ERR_OPENCL;
}

#define ARG(k, kname, i, v) kernel_arg((k), (kname), (i), sizeof(v), &(v), err)

static size_t groups_for(size_t n)
{
    size_t g = (n + GROUP - 1) / GROUP;
    return g < 1 ? 1 : g > MAX_GROUPS ? MAX_GROUPS : g;
}

/* Sets the arguments of channel_hist and enqueues it over n pixels. */
static cnp_status enqueue_hist(bin_engine *e, cl_command_queue q, cl_mem rgba, cl_uint nn,
                               cnp_err *err)
{
    static const char name[] = "channel_hist";
    cnp_status result;
    cl_int channel = (cl_int)e->p.channel;
    if ((result = ARG(e->k_hist, name, 0, rgba)) || (result = ARG(e->k_hist, name, 1, nn)) ||
        (result = ARG(e->k_hist, name, 2, channel)) ||
        (result = ARG(e->k_hist, name, 3, e->value)) ||
        (result = ARG(e->k_hist, name, 4, e->hist)))
        return result;
    size_t local = GROUP, global = groups_for(nn) * GROUP;
    return ocl_enqueue(q, e->k_hist, 1, &global, &local, name, err);
}

/* Adaptive method: horizontal box sums, then the vertical pass that writes
 * the mask and counts the foreground. */
static cnp_status enqueue_adaptive(bin_engine *e, cl_command_queue q, uint32_t width,
                                   uint32_t height, cnp_err *err)
{
    cnp_status result;
    cl_int r = e->p.window / 2, off = e->p.offset;
    cl_uint w = width, h = height;
    if ((result = ARG(e->k_box_h, "box_h", 0, e->value)) ||
        (result = ARG(e->k_box_h, "box_h", 1, w)) || (result = ARG(e->k_box_h, "box_h", 2, h)) ||
        (result = ARG(e->k_box_h, "box_h", 3, r)) ||
        (result = ARG(e->k_box_h, "box_h", 4, e->hsum)))
        return result;
    size_t hl[2] = {TILE_W, 1}, hg[2] = {ocl_round_up(width, TILE_W), height};
    if ((result = ocl_enqueue(q, e->k_box_h, 2, hg, hl, "box_h", err)))
        return result;
    static const char v[] = "box_v_mask";
    if ((result = ARG(e->k_box_v, v, 0, e->value)) || (result = ARG(e->k_box_v, v, 1, e->hsum)) ||
        (result = ARG(e->k_box_v, v, 2, w)) || (result = ARG(e->k_box_v, v, 3, h)) ||
        (result = ARG(e->k_box_v, v, 4, r)) || (result = ARG(e->k_box_v, v, 5, off)) ||
        (result = ARG(e->k_box_v, v, 6, e->mask)) || (result = ARG(e->k_box_v, v, 7, e->count)))
        return result;
    size_t vl[2] = {VGROUP, 1}, vg[2] = {ocl_round_up(width, VGROUP), (height + ROWS - 1) / ROWS};
    return ocl_enqueue(q, e->k_box_v, 2, vg, vl, v, err);
}

/* Otsu or fixed: puts the threshold in e->thr (from *thr for fixed; *thr must
 * stay valid until the queue is finished), then threshold_mask. */
static cnp_status enqueue_threshold(bin_engine *e, cl_command_queue q, cl_uint nn, cl_int *thr,
                                    cnp_err *err)
{
    cnp_status result;
    cl_int rc;
    if (e->p.method == CNP_BIN_FIXED) {
        *thr = e->p.threshold;
        rc = clEnqueueWriteBuffer(q, e->thr, CL_FALSE, 0, sizeof *thr, thr, 0, NULL, NULL);
        if ((result = ocl_check(rc, "writing the threshold", err)))
            return result;
    } else if (e->device_otsu) {
        size_t ol = 256, og = 256;
        if ((result = ARG(e->k_otsu, "otsu", 0, e->hist)) ||
            (result = ARG(e->k_otsu, "otsu", 1, e->thr)))
            return result;
        if ((result = ocl_enqueue(q, e->k_otsu, 1, &og, &ol, "otsu", err)))
            return result;
    } else {
        /* No fp64 on this device: one small read, the same host formula. */
        uint32_t hist[256];
        rc = clEnqueueReadBuffer(q, e->hist, CL_TRUE, 0, sizeof hist, hist, 0, NULL, NULL);
        if ((result = ocl_check(rc, "reading the histogram", err)))
            return result;
        *thr = bin_otsu(hist);
        rc = clEnqueueWriteBuffer(q, e->thr, CL_TRUE, 0, sizeof *thr, thr, 0, NULL, NULL);
        if ((result = ocl_check(rc, "writing the threshold", err)))
            return result;
    }
    static const char m[] = "threshold_mask";
    if ((result = ARG(e->k_mask, m, 0, e->value)) || (result = ARG(e->k_mask, m, 1, nn)) ||
        (result = ARG(e->k_mask, m, 2, e->thr)) || (result = ARG(e->k_mask, m, 3, e->mask)) ||
        (result = ARG(e->k_mask, m, 4, e->count)))
        return result;
    size_t local = GROUP, global = groups_for(nn) * GROUP;
    return ocl_enqueue(q, e->k_mask, 1, &global, &local, m, err);
}

/* Every path out of here finishes the queue first: reads into thr, fg and
 * mask (and the caller's non-blocking upload of rgba) are enqueued without
 * blocking, so returning while one is still queued would let the device
 * write into a dead stack frame or a buffer the caller frees. */
cnp_status bin_engine_run(bin_engine *e, cl_mem rgba, uint32_t width, uint32_t height,
                          uint8_t *mask, bin_result *res, cnp_err *err)
{
    cnp_status result;
    size_t n = (size_t)width * height;
    cl_command_queue q = ocl_ctx_queue(e->ctx);
    cl_uint zero = 0, fg = 0;
    cl_int rc, thr = -1;
    memset(res, 0, sizeof *res);
    if (n == 0) {
        res->threshold = e->p.method == CNP_BIN_ADAPTIVE ? -1 :
                         e->p.method == CNP_BIN_FIXED ? e->p.threshold : 0;
        return CNP_OK;
    }
    if (n > UINT32_MAX) {
        cnp_err_set(err, "%ux%u: too many pixels for one image", width, height);
        result = CNP_ERR_LIMIT;
        goto out;
    }
    if ((result = reserve(e, n, err)) != CNP_OK)
        goto out;
    cl_uint nn = (cl_uint)n;
    rc = clEnqueueFillBuffer(q, e->hist, &zero, sizeof zero, 0, 256 * sizeof(cl_uint), 0, NULL,
                             NULL);
    if ((result = ocl_check(rc, "clearing the histogram", err)))
        goto out;
    rc = clEnqueueFillBuffer(q, e->count, &zero, sizeof zero, 0, sizeof(cl_uint), 0, NULL, NULL);
    if ((result = ocl_check(rc, "clearing the count", err)))
        goto out;
    if ((result = enqueue_hist(e, q, rgba, nn, err)))
        goto out;
    if (e->p.method == CNP_BIN_ADAPTIVE)
        result = enqueue_adaptive(e, q, width, height, err);
    else
        result = enqueue_threshold(e, q, nn, &thr, err);
    if (result != CNP_OK)
        goto out;
    if (e->p.method != CNP_BIN_ADAPTIVE) {
        rc = clEnqueueReadBuffer(q, e->thr, CL_FALSE, 0, sizeof thr, &thr, 0, NULL, NULL);
        if ((result = ocl_check(rc, "reading the threshold", err)))
            goto out;
    }
    rc = clEnqueueReadBuffer(q, e->count, CL_FALSE, 0, sizeof fg, &fg, 0, NULL, NULL);
    if ((result = ocl_check(rc, "reading the foreground count", err)))
        goto out;
    rc = clEnqueueReadBuffer(q, e->mask, CL_FALSE, 0, n, mask, 0, NULL, NULL);
    if ((result = ocl_check(rc, "reading the mask", err)))
        goto out;
out:
    /* The one wait of a successful run, and the drain of a failed one. A
     * failed clFinish leaves nothing better to do: report it unless an
     * earlier error is already reported. */
    rc = clFinish(q);
    if (result != CNP_OK)
        return result;
    if ((result = ocl_check(rc, "clFinish", err)) != CNP_OK)
        return result;
    res->threshold = e->p.method == CNP_BIN_ADAPTIVE ? -1 : thr;
    res->foreground = fg;
    res->canopy_cover = (double)fg / (double)n;
    return CNP_OK;
}

cnp_status bin_engine_run_image(bin_engine *e, const cnp_image *img, uint8_t *mask,
                                bin_result *res, cnp_err *err)
{
    size_t bytes = (size_t)img->width * img->height * 4;
    if (bytes == 0)
        return bin_engine_run(e, NULL, img->width, img->height, mask, res, err);
    cl_int rc;
    if (bytes > e->upload_cap) {
        release_mem(&e->upload);
        e->upload_cap = 0;
        e->upload = ocl_buffer_create(ocl_ctx_context(e->ctx), CL_MEM_READ_ONLY, bytes, NULL, &rc);
        cnp_status result = ocl_check(rc, "clCreateBuffer(image)", err);
        if (result != CNP_OK)
            return result; /* CNP_ERR_LIMIT when the device cannot hold it */
        e->upload_cap = bytes;
    }
    rc = clEnqueueWriteBuffer(ocl_ctx_queue(e->ctx), e->upload, CL_FALSE, 0, bytes, img->rgba, 0,
                              NULL, NULL);
    if (ocl_check(rc, "uploading the image", err))
        return CNP_ERR_OPENCL;
    return bin_engine_run(e, e->upload, img->width, img->height, mask, res, err);
}
