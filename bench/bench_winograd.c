/* Where a Winograd F(2x2, 3x3) or F(4x4, 3x3) convolution's time goes on the
 * OpenCL device: the whole det_wino_run (input transform, 16 or 36 products
 * as one strided-batched CLBlast SGEMM, output transform with the epilogue)
 * against the
 * batched SGEMM alone on the same buffers; the transforms are the
 * difference. Beside it the bare SGEMM of the same convolution as im2col +
 * GEMM (M = out channels, N = pixels, K = 9 x in channels) at its direct
 * FLOPs. Medians of --repeats after a warm-up, at RetinaNet-ResNet50-FPN's
 * 3 x 3 stride-1 shapes at DeepForest's 800 x 800 (or --shape C,O,H,W).
 *
 *   bench_winograd [--repeats N] [--shape C,O,H,W]...
 *
 * CANOPY_OPENCL_TUNING_FILE applies a `canopy tune` file as everywhere. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <clblast_c.h>

#include "canopy/buf.h"
#include "canopy/config.h"
#include "canopy/gpu.h"
#include "common/sgemm_timer.h"
#include "detect/engine/winograd.h"

enum { MAX_SHAPES = 16, MAX_REPEATS = 64 };

typedef struct shape {
    int c, o, h, w;
    const char *what;
} shape;

static const shape DEFAULT_SHAPES[] = {
    {64, 64, 200, 200, "layer1 conv2"},
    {128, 128, 100, 100, "layer2 conv2"},
    {256, 256, 100, 100, "P3 head, fpn.p3"},
    {256, 256, 50, 50, "layer3 conv2, P4 head"},
    {512, 512, 25, 25, "layer4 conv2"},
};

/* Median seconds of det_wino_run of F(m x m) (whole) and of its batched
 * SGEMM alone. */
static int time_shape(ocl_ctx *ctx, det_wino *wn, int m, const shape *s, int repeats,
                      double *whole, double *gemm)
{
    cl_context cl = ocl_ctx_context(ctx);
    cl_command_queue q = ocl_ctx_queue(ctx);
    int oh = s->h, ow = s->w, th = (oh + m - 1) / m, tw = (ow + m - 1) / m;
    size_t ni = (size_t)s->c * s->h * s->w, no = (size_t)s->o * oh * ow, tiles = (size_t)th * tw;
    float *wt = malloc((size_t)s->o * s->c * 9 * sizeof *wt);
    float *in = malloc(ni * sizeof *in);
    if (!wt || !in) {
        free(wt);
        free(in);
        return -1;
    }
    for (size_t i = 0; i < (size_t)s->o * s->c * 9; i++)
        wt[i] = (float)((i * 7919) % 97) / 97.0f - 0.5f;
    for (size_t i = 0; i < ni; i++)
        in[i] = (float)((i * 104729) % 89) / 89.0f;
    cl_int rc;
    cl_mem din = ocl_buffer_create(cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, ni * 4, in, &rc);
    cl_mem dout = ocl_buffer_create(cl, CL_MEM_READ_WRITE, no * 4, NULL, &rc);
    cl_mem bias = ocl_buffer_create(cl, CL_MEM_READ_WRITE, (size_t)s->o * 4, NULL, &rc);
    cl_mem u = NULL;
    cnp_err err;
    size_t sv, sm;
    det_wino_scratch(m, s->c, s->o, oh, ow, 1, &sv, &sm);
    int ret = din && dout && bias && det_wino_upload(cl, m, wt, s->o, s->c, &u, &err) == CNP_OK &&
                      det_wino_reserve(wn, cl, q, sv, sm, &err) == CNP_OK
                  ? 0
                  : -1;
    float zero = 0.0f;
    if (ret == 0)
        clEnqueueFillBuffer(q, bias, &zero, sizeof zero, 0, (size_t)s->o * 4, 0, NULL, NULL);
    double tw_[MAX_REPEATS], tg[MAX_REPEATS];
    for (int r = -1; ret == 0 && r < repeats; r++) {
        double t0 = cnp_now();
        if (det_wino_run(wn, m, q, din, u, bias, NULL, true, dout, s->c, s->o, 1, s->h, s->w, 1,
                         &err) != CNP_OK ||
            clFinish(q) != CL_SUCCESS) {
            fprintf(stderr, "bench_winograd: %s\n", err.msg);
            ret = -1;
            break;
        }
        double t1 = cnp_now();
        size_t ps = det_wino_tile_stride(tiles);
        if (ocl_sgemm_batched_xgemm(q, ps, (size_t)s->o, (size_t)s->c, wn->v, ps,
                                    (size_t)s->c * ps, u, (size_t)s->o, (size_t)s->c * s->o,
                                    wn->m, ps, (size_t)s->o * ps,
                                    (size_t)(m + 2) * (m + 2)) != CLBlastSuccess ||
            clFinish(q) != CL_SUCCESS) {
            ret = -1;
            break;
        }
        double t2 = cnp_now();
        if (r >= 0) {
            tw_[r] = t1 - t0;
            tg[r] = t2 - t1;
        }
    }
    if (ret == 0) {
        *whole = cnp_median(tw_, repeats);
        *gemm = cnp_median(tg, repeats);
    }
    ocl_buffer_release(u);
    ocl_buffer_release(din);
    ocl_buffer_release(dout);
    ocl_buffer_release(bias);
    free(wt);
    free(in);
    return ret;
}

int main(int argc, char **argv)
{
    int repeats = 5, n = 0;
    shape shapes[MAX_SHAPES];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--repeats") && i + 1 < argc) {
            repeats = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--shape") && i + 1 < argc && n < MAX_SHAPES) {
            shape *s = &shapes[n++];
            s->what = "";
            if (sscanf(argv[++i], "%d,%d,%d,%d", &s->c, &s->o, &s->h, &s->w) != 4 ||
                s->c < 1 || s->o < 1 || s->h < 1 || s->w < 1) {
                fprintf(stderr, "bench_winograd: --shape C,O,H,W (positive), not %s\n", argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "usage: bench_winograd [--repeats N] [--shape C,O,H,W]...\n");
            return 2;
        }
    }
    if (repeats < 1 || repeats > MAX_REPEATS) {
        fprintf(stderr, "bench_winograd: --repeats 1..%d\n", MAX_REPEATS);
        return 2;
    }
    if (n == 0) {
        n = (int)(sizeof DEFAULT_SHAPES / sizeof *DEFAULT_SHAPES);
        memcpy(shapes, DEFAULT_SHAPES, sizeof DEFAULT_SHAPES);
    }
    cnp_config cfg;
    cnp_config_defaults(&cfg);
    const char *tuning = getenv("CANOPY_OPENCL_TUNING_FILE");
    if (tuning)
        snprintf(cfg.opencl.tuning_file, sizeof cfg.opencl.tuning_file, "%s", tuning);
    ocl_ctx *ctx = NULL;
    cnp_err err;
    det_wino wn;
    memset(&wn, 0, sizeof wn);
    if (ocl_ctx_create(&cfg.opencl, &ctx, &err) != CNP_OK || det_wino_init(&wn, ctx, &err) != CNP_OK) {
        fprintf(stderr, "bench_winograd: %s\n", err.msg);
        ocl_ctx_free(ctx);
        return 1;
    }
    printf("bench_winograd: %s, median of %d\n", ocl_ctx_description(ctx), repeats);
    /* GFLOP/s: the direct convolution's FLOPs per second of the whole run. */
    printf("%-22s %4s %4s %4s %4s %4s %9s %9s %9s %7s %9s %9s\n", "shape", "C", "O", "H", "W",
           "F", "wino ms", "gemm ms", "xform ms", "xform%", "GFLOP/s", "SGEMM GF");
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        const shape *s = &shapes[i];
        double sg = 0;
        if (bench_time_sgemm(ctx, (size_t)s->o, (size_t)s->h * s->w, (size_t)s->c * 9, repeats,
                             &sg) != 0) {
            rc = 1;
            break;
        }
        for (int m = 2; m <= 4 && rc == 0; m += 2) {
            double whole = 0, gemm = 0;
            if (time_shape(ctx, &wn, m, s, repeats, &whole, &gemm) != 0) {
                rc = 1;
                break;
            }
            double flop = 2.0 * s->o * s->c * 9 * (double)s->h * s->w;
            printf("%-22s %4d %4d %4d %4d %2dx%d %9.2f %9.2f %9.2f %6.0f%% %9.2f %9.2f\n", s->what,
                   s->c, s->o, s->h, s->w, m, m, whole * 1e3, gemm * 1e3, (whole - gemm) * 1e3,
                   100 * (whole - gemm) / whole, flop / whole / 1e9, flop / sg / 1e9);
        }
    }
    det_wino_release(&wn);
    ocl_ctx_free(ctx);
    return rc;
}
