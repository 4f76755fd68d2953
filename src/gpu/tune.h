/* CLBlast tuned for the device, once: `canopy tune` searches CLBlast's
 * kernel parameters on the GEMM shapes of the configured models
 * (tune.cpp, CLBlast's C++ tuning API behind this C face) and stores the
 * winners in a small text file keyed by device name, driver version and
 * CLBlast version (tuning.c); every OpenCL context applies that file at
 * creation with CLBlastOverrideParameters.
 *
 * The file ("format 1"):
 *
 *   # comment lines
 *   format 1
 *   device <CL_DEVICE_NAME>
 *   driver <CL_DRIVER_VERSION>
 *   clblast <version canopy was built against>
 *   measured default_ms=<ms> tuned_ms=<ms>
 *   kernel <CLBlast kernel> NAME=VALUE NAME=VALUE ...
 *
 * with one kernel line per tuned kernel (Xgemm, XgemmDirect, Copy, Pad,
 * Transpose, Padtranspose, and GemmRoutine: XGEMM_MIN_INDIRECT_SIZE, the
 * size from which CLBlast takes Xgemm rather than XgemmDirect), each naming
 * every parameter of that kernel. */
#ifndef CANOPY_GPU_TUNE_H
#define CANOPY_GPU_TUNE_H

#include <stdbool.h>
#include <stddef.h>

#include "canopy/gpu.h"
#include "canopy/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OCL_TUNE_MAX_KERNELS 8
#define OCL_TUNE_MAX_PARAMS 24

typedef struct ocl_tune_kernel {
    char name[24];
    size_t n;
    char keys[OCL_TUNE_MAX_PARAMS][32];
    size_t values[OCL_TUNE_MAX_PARAMS];
} ocl_tune_kernel;

typedef struct ocl_tuning {
    char device[256];
    char driver[128];
    char clblast[32];
    /* The evaluation that chose the parameters: summed SGEMM milliseconds
     * over the tuning shapes with CLBlast's defaults and with this file. */
    double default_ms, tuned_ms;
    size_t n;
    ocl_tune_kernel k[OCL_TUNE_MAX_KERNELS];
} ocl_tuning;

/* One GEMM of a model as the engines call it (row major, no transposes):
 * C[m x n] = A[m x k] B[k x n], `count` times per image. */
typedef struct ocl_gemm_shape {
    size_t m, n, k;
    size_t count;
} ocl_gemm_shape;

/* The CLBlast version canopy is built against ("1.5.3"). */
const char *ocl_clblast_version(void);

/* An empty tuning keyed to ctx's device, driver and CLBlast version. */
void ocl_tuning_init(ocl_tuning *t, const ocl_ctx *ctx);

/* The default file: <cache_dir>/clblast-tuning-<hash>.txt, the hash over
 * the device, its driver and the CLBlast version. */
void ocl_tuning_default_path(const ocl_ctx *ctx, char *out, size_t len);

/* Writes t to path (a temporary file, then rename). */
cnp_status ocl_tuning_save(const ocl_tuning *t, const char *path, cnp_err *err);

/* Reads path. Errors name the file, the line and what is wrong with it. */
cnp_status ocl_tuning_load(const char *path, ocl_tuning *t, cnp_err *err);

/* CNP_OK when t was made for ctx's device, driver and CLBlast version;
 * otherwise an error naming both (`what`: the file, for the message). */
cnp_status ocl_tuning_check(const ocl_tuning *t, const ocl_ctx *ctx, const char *what,
                            cnp_err *err);

/* Hands every kernel's parameters to CLBlastOverrideParameters for ctx's
 * device (single precision); CLBlast refuses a set that lacks one of the
 * kernel's parameters. */
cnp_status ocl_tuning_apply(const ocl_tuning *t, const ocl_ctx *ctx, const char *what,
                            cnp_err *err);

/* What ocl_ctx_create does with [opencl] tuning_file: "off" nothing; a path:
 * that file, which must load, match the device and apply (else an error);
 * empty: the default file when there is one (a damaged one is refused with
 * a warning), else one log line saying how to tune. *applied receives the
 * path applied, or "" when none. */
cnp_status ocl_tuning_apply_configured(const ocl_ctx *ctx, const char *configured,
                                       char *applied, size_t applied_len, cnp_err *err);

/* Parses "NAME K=V K=V ..." (a kernel line after "kernel "; s is cut up):
 * false with the reason in why. */
bool ocl_tuning_parse_kernel(char *s, ocl_tune_kernel *k, char *why, size_t why_len);

/* One run of CLBlast's tuner for `kernel` (Xgemm, XgemmDirect, Copy, Pad,
 * Transpose, Padtranspose) on an m x n x k problem (k unused by the
 * copies), trying `fraction` of its parameter space: the best parameters
 * found into *out (tune.cpp). */
cnp_status ocl_tune_sample(const ocl_ctx *ctx, const char *kernel, size_t m, size_t n, size_t k,
                           double fraction, ocl_tune_kernel *out, cnp_err *err);

/* For a process that only runs one sample (cmd_tune's child): on a crash
 * inside the tuner, the best parameters found before it are printed as a
 * kernel line on stdout and the process exits 3. */
void ocl_tune_salvage_on_crash(void);

/* Runs one sample somewhere (cmd_tune: in a child process, so a tuner that
 * crashes the driver costs that sample only, stopped after limit_s seconds:
 * what is left of the budget; a sample stopped finds nothing). */
typedef cnp_status (*ocl_tune_sample_fn)(void *user, const char *kernel, size_t m, size_t n,
                                         size_t k, double fraction, double limit_s,
                                         ocl_tune_kernel *out, cnp_err *err);

/* The next sample's fraction of a kernel's space after a sample of
 * `fraction` took dt seconds, with left_s seconds of the kernel's share
 * left: twice the fraction (at most 1) when its time, estimated as dt per
 * `fraction` (the time per configuration times the number of
 * configurations), fits left_s; less where only that fits; 0 (stop) when
 * not even 1.25x the fraction fits or the space is done. */
double ocl_tune_next_fraction(double fraction, double dt, double left_s);

/* The search (tune.cpp): measures CLBlastSgemm over `shapes` with the
 * defaults, then for each kernel runs samples of CLBlast's tuner (`sample`,
 * NULL: ocl_tune_sample here) on a fraction of its parameter space sized by
 * ocl_tune_next_fraction from the kernel's share of budget_s, keeping a
 * result only when the measured sum gets faster. No sample starts after
 * budget_s and a running one is stopped there (`sample`'s limit_s), so the
 * search ends within the budget plus one check of a result. Progress lines go to `progress` (may
 * be NULL). out is keyed to ctx. */
cnp_status ocl_tune_run(const ocl_ctx *ctx, const ocl_gemm_shape *shapes, size_t n_shapes,
                        double budget_s, ocl_tune_sample_fn sample, void *user, FILE *progress,
                        ocl_tuning *out, cnp_err *err);

/* Milliseconds of one pass of CLBlastSgemm over `shapes` (each once, the
 * best of `repeats` runs) with whatever parameters CLBlast holds now. */
cnp_status ocl_tune_measure(const ocl_ctx *ctx, const ocl_gemm_shape *shapes, size_t n_shapes,
                            int repeats, double *ms, cnp_err *err);

#ifdef __cplusplus
}
#endif

#endif
