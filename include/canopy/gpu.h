/* OpenCL runtime: device selection, program build with an on-disk binary
 * cache, and error names (src/gpu/ocl.c; programs and the cache in
 * src/gpu/ocl_program.c).
 *
 * Kernels are kernels/<name>.cl, embedded in the binary at build time;
 * [opencl] kernel_dir loads them from disk instead (for kernel development).
 * Compiled programs are cached under [opencl] cache_dir, keyed by device name,
 * driver version, build options and source hash. */
#ifndef CANOPY_GPU_H
#define CANOPY_GPU_H

#include <CL/cl.h>
#include <stdio.h>

#include "canopy/config.h"
#include "canopy/status.h"

typedef struct ocl_ctx ocl_ctx;

/* Picks the platform and device named by [opencl] platform/device (name
 * substring or index; default: first GPU, else the first device) and creates a
 * context and an in-order command queue (profiling enabled only when
 * cfg->queue_profiling), and applies
 * the CLBlast tuning of [opencl] tuning_file (src/gpu/tune.h). When nothing
 * matches, err lists the platforms and devices searched. */
cnp_status ocl_ctx_create(const cnp_opencl_config *cfg, ocl_ctx **out, cnp_err *err);
void ocl_ctx_free(ocl_ctx *ctx);

cl_context ocl_ctx_context(const ocl_ctx *ctx);
cl_device_id ocl_ctx_device(const ocl_ctx *ctx);
cl_command_queue ocl_ctx_queue(const ocl_ctx *ctx);
/* "NVIDIA H100 (NVIDIA CUDA, driver 550.54)" */
const char *ocl_ctx_description(const ocl_ctx *ctx);
/* CL_DEVICE_NAME and CL_DRIVER_VERSION of the device. */
const char *ocl_ctx_device_name(const ocl_ctx *ctx);
const char *ocl_ctx_driver(const ocl_ctx *ctx);
/* The CLBlast tuning file applied at creation ([opencl] tuning_file,
 * src/gpu/tune.h), or "" when CLBlast runs its own defaults. */
const char *ocl_ctx_tuning(const ocl_ctx *ctx);
/* Device limits read once at creation. */
size_t ocl_ctx_max_work_group(const ocl_ctx *ctx);
/* True when the device reports CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT: every
 * program is then built with -cl-fp32-correctly-rounded-divide-sqrt. */
bool ocl_ctx_fp32_correctly_rounded(const ocl_ctx *ctx);
cl_ulong ocl_ctx_local_mem(const ocl_ctx *ctx);

/* Returns the program built from kernels/<name>.cl with `options` (may be
 * NULL). Built once per context and option string, then shared: the context
 * owns it, callers must not release it. Build failures carry the build log. */
/* The path of a small file of the caller's under the kernel cache directory
 * (created), for results that depend on the device: <name>-<hash>.txt, the
 * hash over the device, its driver and key (key_len bytes). Callers treat
 * the file as a cache: unreadable or stale means measure again. */
void ocl_cache_file(const ocl_ctx *ctx, const char *name, const void *key, size_t key_len,
                    char *out, size_t out_len);

/* Device buffers with accounting: clCreateBuffer / clReleaseMemObject that
 * also keep the bytes this process holds on OpenCL devices (all contexts),
 * for the metrics and the bench. A buffer larger than the device's
 * CL_DEVICE_MAX_MEM_ALLOC_SIZE or CL_DEVICE_GLOBAL_MEM_SIZE is not asked
 * for: *rc is CL_INVALID_BUFFER_SIZE, and the next ocl_check() of that code
 * on this thread returns CNP_ERR_LIMIT naming the limit and both sizes (a
 * permanent failure of the image, not a retry). */
cl_mem ocl_buffer_create(cl_context c, cl_mem_flags flags, size_t bytes, void *host,
                         cl_int *rc);
/* The most bytes one buffer may have on the context's device: the smaller
 * of its CL_DEVICE_MAX_MEM_ALLOC_SIZE and CL_DEVICE_GLOBAL_MEM_SIZE, and of
 * the override below. 0 when the device cannot be asked. */
uint64_t ocl_max_buffer_bytes(cl_context c);
/* Tests and fault injection: act as if every device allowed at most
 * `bytes` per buffer (0: the devices' own limits). Process-wide. */
void ocl_set_max_buffer_bytes(uint64_t bytes);
void ocl_buffer_release(cl_mem m); /* accepts NULL */
/* Bytes held now, and the most held at once since start. */
size_t ocl_device_bytes(void);
size_t ocl_device_peak_bytes(void);

/* One kernel argument: its size and the address of its value. */
typedef struct ocl_arg {
    size_t size;
    const void *value;
} ocl_arg;

#define OCL_ARG(v) ((ocl_arg){sizeof(v), &(v)})

/* Sets arguments 0..n-1 of kernel k in order. On the first failing call,
 * reports that call's own OpenCL code, the kernel and the argument index
 * (OR-ing the codes of several calls would name a wrong error). */
cnp_status ocl_set_args(cl_kernel k, const char *name, const ocl_arg *args, size_t n,
                        cnp_err *err);

#define OCL_SET_ARGS(k, name, err, ...)                                               \
    ocl_set_args((k), (name), (const ocl_arg[]){__VA_ARGS__},                         \
                 sizeof((const ocl_arg[]){__VA_ARGS__}) / sizeof(ocl_arg), (err))

/* Enqueues k over `global` (nothing when any dimension is 0). */
cnp_status ocl_enqueue(cl_command_queue q, cl_kernel k, cl_uint dims, const size_t *global,
                       const size_t *local, const char *what, cnp_err *err);

cnp_status ocl_program_get(ocl_ctx *ctx, const char *name, const char *options,
                           cl_program *out, cnp_err *err);

/* Creates kernel `kernel` from program `name` (caller releases it). */
cnp_status ocl_kernel_create(ocl_ctx *ctx, const char *name, const char *options,
                             const char *kernel, cl_kernel *out, cnp_err *err);

/* "CL_OUT_OF_RESOURCES" for -5, "CL_UNKNOWN_ERROR(-9999)" otherwise. */
const char *ocl_error_name(cl_int code);

/* Fills err with "what: CL_NAME (code)" and returns CNP_ERR_OPENCL when code
 * is not CL_SUCCESS; returns CNP_OK otherwise. */
cnp_status ocl_check(cl_int code, const char *what, cnp_err *err);

/* Lists every platform and device with memory and compute units. */
cnp_status ocl_list_devices(FILE *out, cnp_err *err);

/* Rounds n up to a multiple of m. */
/* C = A B, row-major (A m x k, B k x n, C m x n, leading dimensions k, n,
 * n), enqueued on q: every engine's SGEMM (src/gpu/gemm.c: CLBlast's
 * column-major call on the same memory, which spares CLBlast's transposed
 * copy of C). tmp: a scratch of ocl_sgemm_temp_bytes (0: none needed or
 * the query failed) or NULL (CLBlast allocates one per call). Returns
 * CLBlast's status. */
size_t ocl_sgemm_temp_bytes(cl_command_queue q, size_t m, size_t n, size_t k);
int ocl_sgemm(cl_command_queue q, size_t m, size_t n, size_t k, cl_mem a, cl_mem b, cl_mem c,
              cl_mem tmp);

/* C[i] = A[i] B[i]^T for i < batch, column-major (CLBlast's
 * SgemmStridedBatched, TransposeNo / TransposeYes, alpha 1, beta 0): A[i]
 * m x k at a + i * a_stride (leading dimension a_ld), B[i] n x k (b_ld), C[i]
 * m x n (c_ld), enqueued on q. Always CLBlast's Xgemm kernel, never
 * XgemmDirect, whatever the tuning's XGEMM_MIN_INDIRECT_SIZE: for callers
 * whose m is a multiple of 128, n and k of the tuned Xgemm's tiles, and
 * leading dimensions m, n and m, so that Xgemm runs without CLBlast's
 * pad / transpose copies (src/gpu/gemm_batched.cpp). Returns CLBlast's
 * status. */
int ocl_sgemm_batched_xgemm(cl_command_queue q, size_t m, size_t n, size_t k, cl_mem a,
                            size_t a_ld, size_t a_stride, cl_mem b, size_t b_ld,
                            size_t b_stride, cl_mem c, size_t c_ld, size_t c_stride,
                            size_t batch);

static inline size_t ocl_round_up(size_t n, size_t m)
{
    return (n + m - 1) / m * m;
}

#endif
