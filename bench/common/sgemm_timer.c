/* The benchmarks' bare SGEMM timer (sgemm_timer.h). */
#include <clblast_c.h>

#include "canopy/buf.h"
#include "common/sgemm_timer.h"

int bench_time_sgemm(ocl_ctx *ctx, size_t m, size_t n, size_t k, int repeats, double *sec)
{
    cl_int rc;
    cl_context cl = ocl_ctx_context(ctx);
    cl_command_queue q = ocl_ctx_queue(ctx);
    cl_mem a = clCreateBuffer(cl, CL_MEM_READ_WRITE, m * k * 4, NULL, &rc);
    cl_mem b = clCreateBuffer(cl, CL_MEM_READ_WRITE, k * n * 4, NULL, &rc);
    cl_mem c = clCreateBuffer(cl, CL_MEM_READ_WRITE, m * n * 4, NULL, &rc);
    float zero = 0.0f;
    clEnqueueFillBuffer(q, a, &zero, 4, 0, m * k * 4, 0, NULL, NULL);
    clEnqueueFillBuffer(q, b, &zero, 4, 0, k * n * 4, 0, NULL, NULL);
    /* The engines' SGEMM call (ocl_sgemm) with a scratch buffer made once,
     * as the engine does (without, CLBlast would allocate one per call). */
    size_t need = ocl_sgemm_temp_bytes(q, m, n, k);
    cl_mem tmp = NULL;
    if (need > 0)
        tmp = clCreateBuffer(cl, CL_MEM_READ_WRITE, need, NULL, &rc);
    clFinish(q);
    double t[BENCH_SGEMM_MAX_REPEATS];
    if (repeats < 1 || repeats > BENCH_SGEMM_MAX_REPEATS)
        return -1;
    int ok = 1;
    for (int r = -1; r < repeats && ok; r++) {
        double t0 = cnp_now();
        ok = ocl_sgemm(q, m, n, k, a, b, c, tmp) == CLBlastSuccess;
        clFinish(q);
        if (r >= 0)
            t[r] = cnp_now() - t0;
    }
    clReleaseMemObject(a);
    clReleaseMemObject(b);
    clReleaseMemObject(c);
    if (tmp)
        clReleaseMemObject(tmp);
    if (!ok)
        return -1;
    *sec = cnp_median(t, repeats);
    return 0;
}
