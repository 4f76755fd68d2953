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
    e->hist = clCreateBuffer(c, CL_MEM_READ_WRITE, 256 * sizeof(cl_uint), NULL, &rc);
    if ((result = ocl_check(rc, "clCreateBuffer(hist)", err)))
        goto fail;
    e->thr = clCreateBuffer(c, CL_MEM_READ_WRITE, sizeof(cl_int), NULL, &rc);
    if ((result = ocl_check(rc, "clCreateBuffer(threshold)", err)))
        goto fail;
    e->count = clCreateBuffer(c, CL_MEM_READ_WRITE, sizeof(cl_uint), NULL, &rc);
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
        clReleaseMemObject(*m);
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
    release_mem(&e->value);
    release_mem(&e->hsum);
    release_mem(&e->mask);
    e->capacity = 0;
    e->value = clCreateBuffer(c, CL_MEM_READ_WRITE, n, NULL, &rc);
    if (ocl_check(rc, "clCreateBuffer(value)", err))
        return CNP_ERR_OPENCL;
    e->mask = clCreateBuffer(c, CL_MEM_READ_WRITE, n, NULL, &rc);
    if (ocl_check(rc, "clCreateBuffer(mask)", err))
        return CNP_ERR_OPENCL;
    if (e->p.method == CNP_BIN_ADAPTIVE) {
        e->hsum = clCreateBuffer(c, CL_MEM_READ_WRITE, n * sizeof(cl_ushort), NULL, &rc);
        if (ocl_check(rc, "clCreateBuffer(hsum)", err))
            return CNP_ERR_OPENCL;
    }
    e->capacity = n;
    return CNP_OK;
}

#define ARG(k, i, v) clSetKernelArg((k), (i), sizeof(v), &(v))

static size_t groups_for(size_t n)
{
    size_t g = (n + GROUP - 1) / GROUP;
    return g < 1 ? 1 : g > MAX_GROUPS ? MAX_GROUPS : g;
}

cnp_status bin_engine_run(bin_engine *e, cl_mem rgba, uint32_t width, uint32_t height,
                          uint8_t *mask, bin_result *res, cnp_err *err)
{
    cnp_status result;
    size_t n = (size_t)width * height;
    memset(res, 0, sizeof *res);
    if (n == 0) {
        res->threshold = e->p.method == CNP_BIN_ADAPTIVE ? -1 :
                         e->p.method == CNP_BIN_FIXED ? e->p.threshold : 0;
        return CNP_OK;
    }
    if (n > UINT32_MAX) {
        cnp_err_set(err, "%ux%u: too many pixels for one image", width, height);
        return CNP_ERR_LIMIT;
    }
    if ((result = reserve(e, n, err)) != CNP_OK)
        return result;
    cl_command_queue q = ocl_ctx_queue(e->ctx);
    cl_uint nn = (cl_uint)n;
    cl_int channel = (cl_int)e->p.channel;
    cl_uint zero = 0;
    cl_int rc = CL_SUCCESS;
    cl_uint fg = 0;
    cl_int thr = -1;
    uint32_t hist[256];

    rc |= clEnqueueFillBuffer(q, e->hist, &zero, sizeof zero, 0, 256 * sizeof(cl_uint), 0, NULL, NULL);
    rc |= clEnqueueFillBuffer(q, e->count, &zero, sizeof zero, 0, sizeof(cl_uint), 0, NULL, NULL);
    if ((result = ocl_check(rc, "clEnqueueFillBuffer", err)))
        return result;

    rc = ARG(e->k_hist, 0, rgba) | ARG(e->k_hist, 1, nn) | ARG(e->k_hist, 2, channel) |
         ARG(e->k_hist, 3, e->value) | ARG(e->k_hist, 4, e->hist);
    size_t local = GROUP, global = groups_for(n) * GROUP;
    if (rc == CL_SUCCESS)
        rc = clEnqueueNDRangeKernel(q, e->k_hist, 1, NULL, &global, &local, 0, NULL, NULL);
    if ((result = ocl_check(rc, "channel_hist", err)))
        return result;

    if (e->p.method == CNP_BIN_ADAPTIVE) {
        cl_int r = e->p.window / 2, off = e->p.offset;
        cl_uint w = width, h = height;
        rc = ARG(e->k_box_h, 0, e->value) | ARG(e->k_box_h, 1, w) | ARG(e->k_box_h, 2, h) |
             ARG(e->k_box_h, 3, r) | ARG(e->k_box_h, 4, e->hsum);
        size_t hl[2] = {TILE_W, 1}, hg[2] = {ocl_round_up(width, TILE_W), height};
        if (rc == CL_SUCCESS)
            rc = clEnqueueNDRangeKernel(q, e->k_box_h, 2, NULL, hg, hl, 0, NULL, NULL);
        if ((result = ocl_check(rc, "box_h", err)))
            return result;
        rc = ARG(e->k_box_v, 0, e->value) | ARG(e->k_box_v, 1, e->hsum) | ARG(e->k_box_v, 2, w) |
             ARG(e->k_box_v, 3, h) | ARG(e->k_box_v, 4, r) | ARG(e->k_box_v, 5, off) |
             ARG(e->k_box_v, 6, e->mask) | ARG(e->k_box_v, 7, e->count);
        size_t vl[2] = {VGROUP, 1}, vg[2] = {ocl_round_up(width, VGROUP), (height + ROWS - 1) / ROWS};
        if (rc == CL_SUCCESS)
            rc = clEnqueueNDRangeKernel(q, e->k_box_v, 2, NULL, vg, vl, 0, NULL, NULL);
        if ((result = ocl_check(rc, "box_v_mask", err)))
            return result;
    } else {
        if (e->p.method == CNP_BIN_FIXED) {
            thr = e->p.threshold;
            rc = clEnqueueWriteBuffer(q, e->thr, CL_FALSE, 0, sizeof thr, &thr, 0, NULL, NULL);
        } else if (e->device_otsu) {
            size_t ol = 256, og = 256;
            rc = ARG(e->k_otsu, 0, e->hist) | ARG(e->k_otsu, 1, e->thr);
            if (rc == CL_SUCCESS)
                rc = clEnqueueNDRangeKernel(q, e->k_otsu, 1, NULL, &og, &ol, 0, NULL, NULL);
        } else {
            /* No fp64 on this device: one small read, the same host formula. */
            rc = clEnqueueReadBuffer(q, e->hist, CL_TRUE, 0, sizeof hist, hist, 0, NULL, NULL);
            if (rc == CL_SUCCESS) {
                thr = bin_otsu(hist);
                rc = clEnqueueWriteBuffer(q, e->thr, CL_TRUE, 0, sizeof thr, &thr, 0, NULL, NULL);
            }
        }
        if ((result = ocl_check(rc, "threshold", err)))
            return result;
        rc = ARG(e->k_mask, 0, e->value) | ARG(e->k_mask, 1, nn) | ARG(e->k_mask, 2, e->thr) |
             ARG(e->k_mask, 3, e->mask) | ARG(e->k_mask, 4, e->count);
        if (rc == CL_SUCCESS)
            rc = clEnqueueNDRangeKernel(q, e->k_mask, 1, NULL, &global, &local, 0, NULL, NULL);
        if ((result = ocl_check(rc, "threshold_mask", err)))
            return result;
        rc = clEnqueueReadBuffer(q, e->thr, CL_FALSE, 0, sizeof thr, &thr, 0, NULL, NULL);
    }
    rc |= clEnqueueReadBuffer(q, e->count, CL_FALSE, 0, sizeof fg, &fg, 0, NULL, NULL);
    rc |= clEnqueueReadBuffer(q, e->mask, CL_FALSE, 0, n, mask, 0, NULL, NULL);
    if (rc == CL_SUCCESS)
        rc = clFinish(q);
    if ((result = ocl_check(rc, "reading the mask", err)))
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
        e->upload = clCreateBuffer(ocl_ctx_context(e->ctx), CL_MEM_READ_ONLY, bytes, NULL, &rc);
        if (ocl_check(rc, "clCreateBuffer(image)", err))
            return CNP_ERR_OPENCL;
        e->upload_cap = bytes;
    }
    rc = clEnqueueWriteBuffer(ocl_ctx_queue(e->ctx), e->upload, CL_FALSE, 0, bytes, img->rgba, 0,
                              NULL, NULL);
    if (ocl_check(rc, "uploading the image", err))
        return CNP_ERR_OPENCL;
    return bin_engine_run(e, e->upload, img->width, img->height, mask, res, err);
}
