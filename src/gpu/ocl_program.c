/* OpenCL programs: kernel sources (kernels_dir or the embedded copies),
 * builds kept per context, an on-disk cache of program binaries and the
 * cache files of other keyed results (ocl_cache_file). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canopy/buf.h"
#include "canopy/cache.h"
#include "canopy/gpu.h"
#include "canopy/log.h"
#include "gpu/kernels_embedded.h"
#include "gpu/ocl_internal.h"


/* Loads kernels/<name>.cl: from kernel_dir when set, else the embedded copy.
 * On success *src is NUL-terminated and owned by buf (or static). */
static cnp_status kernel_source(const ocl_ctx *ctx, const char *name, cnp_buf *buf,
                                const char **src, size_t *len, cnp_err *err)
{
    if (ctx->kernel_dir[0]) {
        char path[CNP_STR_LONG + 300];
        snprintf(path, sizeof path, "%s/%s.cl", ctx->kernel_dir, name);
        cnp_status result = cnp_file_read(path, 0, buf, err);
        if (result != CNP_OK)
            return result;
        if (cnp_buf_append(buf, "", 1) != CNP_OK)
            return CNP_ERR_NOMEM;
        *src = (const char *)buf->data;
        *len = buf->len - 1;
        return CNP_OK;
    }
    for (const struct ocl_embedded_kernel *k = ocl_embedded_kernels; k->name; k++) {
        if (strcmp(k->name, name) == 0) {
            *src = k->source;
            *len = k->len;
            return CNP_OK;
        }
    }
    cnp_err_set(err, "no kernel source named '%s' (kernels/%s.cl)", name, name);
    return CNP_ERR_NOTFOUND;
}

/* 16 hex digits of SHA-256 over the device's identity, the NUL-terminated
 * strings of parts and len bytes of data: the key of a cache file. */
static void cache_key(const ocl_ctx *ctx, const char *const *parts, size_t nparts,
                      const void *data, size_t len, char hex[17])
{
    const char *all[8] = {ctx->device_name, ctx->driver, ctx->description};
    size_t n = 3;
    for (size_t i = 0; i < nparts && n < sizeof all / sizeof *all; i++)
        all[n++] = parts[i];
    cnp_cache_key(all, n, data, len, hex);
}

/* Cache key: SHA-256 over everything that changes the binary. */
static void cache_path(const ocl_ctx *ctx, const char *name, const char *options,
                       const char *src, size_t len, char *out, size_t out_len)
{
    const char *parts[] = {options, name};
    char hex[17];
    cache_key(ctx, parts, 2, src, len, hex);
    snprintf(out, out_len, "%s/%s-%s.bin", ctx->cache_dir, name, hex);
}

static cnp_status build_log(const ocl_ctx *ctx, cl_program prog, const char *name, cl_int rc,
                            cnp_err *err)
{
    size_t n = 0;
    clGetProgramBuildInfo(prog, ctx->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &n);
    char *log = calloc(1, n + 1);
    if (log)
        clGetProgramBuildInfo(prog, ctx->device, CL_PROGRAM_BUILD_LOG, n, log, NULL);
    cnp_err_set(err, "building kernels/%s.cl: %s (%d): %s", name, ocl_error_name(rc), rc,
                log ? log : "(no build log)");
    free(log);
    return CNP_ERR_OPENCL;
}

static cl_program build_from_cache(const ocl_ctx *ctx, const char *path, const char *options)
{
    cnp_buf bin = {0};
    cl_program prog = NULL;
    if (cnp_file_read(path, 0, &bin, NULL) != CNP_OK || bin.len == 0)
        goto out;
    const unsigned char *bins[] = {bin.data};
    size_t lens[] = {bin.len};
    cl_int status, rc;
    prog = clCreateProgramWithBinary(ctx->context, 1, &ctx->device, lens, bins, &status, &rc);
    if (rc != CL_SUCCESS || status != CL_SUCCESS) {
        if (prog)
            clReleaseProgram(prog);
        prog = NULL;
        goto out;
    }
    if (clBuildProgram(prog, 1, &ctx->device, options, NULL, NULL) != CL_SUCCESS) {
        clReleaseProgram(prog);
        prog = NULL;
    }
out:
    cnp_buf_free(&bin);
    return prog;
}

static void save_to_cache(const ocl_ctx *ctx, cl_program prog, const char *path)
{
    size_t size = 0;
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL) != CL_SUCCESS ||
        size == 0)
        return;
    unsigned char *bin = malloc(size);
    if (!bin)
        return;
    unsigned char *bins[] = {bin};
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARIES, sizeof bins, bins, NULL) == CL_SUCCESS) {
        (void)cnp_mkdir_p(ctx->cache_dir);
        cnp_err err;
        if (cnp_file_write(path, bin, size, &err) != CNP_OK)
            LOG_WARN("gpu", "not caching program binary: %s", err.msg);
    }
    free(bin);
}

/* Builds (or loads from the disk cache) program `name`; caller holds ctx->lock. */
static cnp_status program_build(ocl_ctx *ctx, const char *name, const char *user_options,
                                cl_program *out, cnp_err *err)
{
    /* Divisions and square roots feeding thresholds, scores and top-k keys
     * are correctly rounded where the device can do it (OpenCL allows
     * 2.5 ulp otherwise), so every such device computes the same bits. */
    char options[1024];
    snprintf(options, sizeof options, "%s%s", user_options,
             ctx->fp32_cr_divide ? " -cl-fp32-correctly-rounded-divide-sqrt" : "");
    cnp_buf srcbuf = {0};
    const char *src = NULL;
    size_t len = 0;
    cnp_status result = kernel_source(ctx, name, &srcbuf, &src, &len, err);
    if (result != CNP_OK)
        goto out;
    char path[CNP_STR_LONG + 400];
    cache_path(ctx, name, options, src, len, path, sizeof path);
    double t0 = cnp_now();
    cl_program prog = build_from_cache(ctx, path, options);
    if (prog) {
        LOG_DEBUG("gpu", "kernels/%s.cl: loaded cached binary %s", name, path);
        *out = prog;
        goto out;
    }
    cl_int rc;
    prog = clCreateProgramWithSource(ctx->context, 1, &src, &len, &rc);
    if ((result = ocl_check(rc, "clCreateProgramWithSource", err)) != CNP_OK)
        goto out;
    rc = clBuildProgram(prog, 1, &ctx->device, options, NULL, NULL);
    if (rc != CL_SUCCESS) {
        result = build_log(ctx, prog, name, rc, err);
        clReleaseProgram(prog);
        goto out;
    }
    LOG_DEBUG("gpu", "kernels/%s.cl: built in %.2f s", name, cnp_now() - t0);
    save_to_cache(ctx, prog, path);
    *out = prog;
out:
    cnp_buf_free(&srcbuf);
    return result;
}

cnp_status ocl_program_get(ocl_ctx *ctx, const char *name, const char *options,
                           cl_program *out, cnp_err *err)
{
    cnp_status result = CNP_OK;
    const char *opts = options ? options : "";
    pthread_mutex_lock(&ctx->lock);
    for (int i = 0; i < ctx->nprograms; i++) {
        if (strcmp(ctx->programs[i].name, name) == 0 && strcmp(ctx->programs[i].options, opts) == 0) {
            *out = ctx->programs[i].program;
            goto out;
        }
    }
    if (ctx->nprograms == ctx->cap_programs) {
        int cap = ctx->cap_programs ? 2 * ctx->cap_programs : 32;
        struct program_entry *grown = realloc(ctx->programs, sizeof *grown * (size_t)cap);
        if (!grown) {
            cnp_err_set(err, "out of memory for OpenCL program %s", name);
            result = CNP_ERR_NOMEM;
            goto out;
        }
        ctx->programs = grown;
        ctx->cap_programs = cap;
    }
    cl_program prog;
    if ((result = program_build(ctx, name, opts, &prog, err)) != CNP_OK)
        goto out;
    struct program_entry *e = &ctx->programs[ctx->nprograms];
    e->name = strdup(name);
    e->options = strdup(opts);
    if (!e->name || !e->options) {
        free(e->name);
        free(e->options);
        clReleaseProgram(prog);
        cnp_err_set(err, "out of memory");
        result = CNP_ERR_NOMEM;
        goto out;
    }
    e->program = prog;
    ctx->nprograms++;
    *out = prog;
out:
    pthread_mutex_unlock(&ctx->lock);
    return result;
}

cnp_status ocl_kernel_create(ocl_ctx *ctx, const char *name, const char *options,
                             const char *kernel, cl_kernel *out, cnp_err *err)
{
    cl_program prog;
    cnp_status result = ocl_program_get(ctx, name, options, &prog, err);
    if (result != CNP_OK)
        return result;
    cl_int rc;
    *out = clCreateKernel(prog, kernel, &rc);
    if (rc != CL_SUCCESS) {
        cnp_err_set(err, "kernels/%s.cl: clCreateKernel(%s): %s (%d)", name, kernel,
                    ocl_error_name(rc), rc);
        return CNP_ERR_OPENCL;
    }
    return CNP_OK;
}

void ocl_cache_file(const ocl_ctx *ctx, const char *name, const void *key, size_t key_len,
                    char *out, size_t out_len)
{
    const char *parts[] = {name};
    char hex[17];
    cache_key(ctx, parts, 1, key, key_len, hex);
    (void)cnp_mkdir_p(ctx->cache_dir);
    snprintf(out, out_len, "%s/%s-%s.txt", ctx->cache_dir, name, hex);
}
