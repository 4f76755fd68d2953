/* Fixed-size device top-k (topk.h, kernels/topk.cl). */
#include <stdlib.h>
#include <string.h>

#include "detect/engine/topk.h"

struct det_topk {
    cl_kernel runs_k, merge_k;
    cl_mem runs;
    size_t max_n, max_k, local, bytes;
};

static size_t run_len(size_t k)
{
    return k < DET_TOPK_CHUNK ? k : DET_TOPK_CHUNK;
}

cnp_status det_topk_create(ocl_ctx *ctx, size_t max_n, size_t max_k, det_topk **out,
                           cnp_err *err)
{
    *out = NULL;
    if (max_n == 0 || max_k == 0 || max_n > INT32_MAX / 2) {
        cnp_err_set(err, "device top-k: %zu keys, k %zu out of range", max_n, max_k);
        return CNP_ERR_INTERNAL;
    }
    if (ocl_ctx_local_mem(ctx) < DET_TOPK_CHUNK * sizeof(cl_ulong)) {
        cnp_err_set(err, "device top-k: the device's local memory (%llu bytes) holds less than "
                         "%zu keys",
                    (unsigned long long)ocl_ctx_local_mem(ctx), (size_t)DET_TOPK_CHUNK);
        return CNP_ERR_OPENCL;
    }
    det_topk *t = calloc(1, sizeof *t);
    if (!t) {
        cnp_err_set(err, "device top-k: out of memory");
        return CNP_ERR_NOMEM;
    }
    t->max_n = max_n;
    t->max_k = max_k;
    cnp_status result = ocl_kernel_create(ctx, "topk", "", "topk_runs", &t->runs_k, err);
    if (result == CNP_OK)
        result = ocl_kernel_create(ctx, "topk", "", "topk_merge", &t->merge_k, err);
    /* The sort's work-group: a power of two up to 256 within the kernel's
     * own limit (local memory and registers can lower it below the
     * device's). */
    size_t kwg = 0;
    if (result == CNP_OK)
        result = ocl_check(clGetKernelWorkGroupInfo(t->runs_k, ocl_ctx_device(ctx),
                                                    CL_KERNEL_WORK_GROUP_SIZE, sizeof kwg, &kwg,
                                                    NULL),
                           "CL_KERNEL_WORK_GROUP_SIZE of topk_runs", err);
    size_t mwg = ocl_ctx_max_work_group(ctx);
    for (t->local = 256; result == CNP_OK && t->local > 1 && (t->local > kwg || t->local > mwg);)
        t->local >>= 1;
    size_t groups = (max_n + DET_TOPK_CHUNK - 1) / DET_TOPK_CHUNK;
    t->bytes = groups * run_len(max_k) * sizeof(cl_ulong);
    cl_int rc = CL_SUCCESS;
    if (result == CNP_OK)
        t->runs = ocl_buffer_create(ocl_ctx_context(ctx), CL_MEM_READ_WRITE, t->bytes, NULL, &rc);
    if (result == CNP_OK)
        result = ocl_check(rc, "device top-k runs", err);
    if (result != CNP_OK) {
        det_topk_free(t);
        return result;
    }
    *out = t;
    return CNP_OK;
}

void det_topk_free(det_topk *t)
{
    if (!t)
        return;
    if (t->runs_k)
        clReleaseKernel(t->runs_k);
    if (t->merge_k)
        clReleaseKernel(t->merge_k);
    ocl_buffer_release(t->runs);
    free(t);
}

size_t det_topk_bytes(const det_topk *t)
{
    return t->bytes;
}

/* Work-groups of topk_runs and work-items of topk_merge at most: each
 * loops over the chunks (run elements) past its own. */
#define TOPK_MAX_GROUPS 256
#define TOPK_MAX_MERGE 16384

cnp_status det_topk_enqueue(det_topk *t, cl_command_queue q, cl_mem keys, size_t base,
                            cl_mem count, size_t slot, size_t cap, size_t k, cnp_err *err)
{
    if (cap > t->max_n || k > t->max_k || base > INT32_MAX || slot > INT32_MAX) {
        cnp_err_set(err, "device top-k: %zu keys, k %zu for room of %zu, %zu", cap, k, t->max_n,
                    t->max_k);
        return CNP_ERR_INTERNAL;
    }
    if (cap == 0 || k == 0)
        return CNP_OK;
    cl_int cbase = (cl_int)base, cslot = (cl_int)slot, ccap = (cl_int)cap,
           r = (cl_int)run_len(k), ck = (cl_int)k;
    size_t groups = (cap + DET_TOPK_CHUNK - 1) / DET_TOPK_CHUNK;
    size_t launch = groups < TOPK_MAX_GROUPS ? groups : TOPK_MAX_GROUPS;
    cnp_status result = OCL_SET_ARGS(t->runs_k, "topk_runs", err, OCL_ARG(keys), OCL_ARG(cbase),
                                     OCL_ARG(count), OCL_ARG(cslot), OCL_ARG(ccap), OCL_ARG(r),
                                     OCL_ARG(t->runs));
    size_t global = launch * t->local;
    if (result == CNP_OK)
        result = ocl_enqueue(q, t->runs_k, 1, &global, &t->local, "topk_runs", err);
    if (result == CNP_OK)
        result = OCL_SET_ARGS(t->merge_k, "topk_merge", err, OCL_ARG(t->runs), OCL_ARG(count),
                              OCL_ARG(cslot), OCL_ARG(ccap), OCL_ARG(r), OCL_ARG(ck),
                              OCL_ARG(keys), OCL_ARG(cbase));
    size_t gm = ocl_round_up(groups * (size_t)r, 64);
    if (gm > TOPK_MAX_MERGE)
        gm = TOPK_MAX_MERGE;
    if (result == CNP_OK)
        result = ocl_enqueue(q, t->merge_k, 1, &gm, NULL, "topk_merge", err);
    return result;
}

static int key_cmp(const void *a, const void *b)
{
    uint64_t x, y;
    memcpy(&x, a, sizeof x);
    memcpy(&y, b, sizeof y);
    return (x > y) - (x < y);
}

void det_topk_ref(uint64_t *keys, size_t n)
{
    if (n > 1)
        qsort(keys, n, sizeof *keys, key_cmp);
}
