/* Winograd F(2x2, 3x3) and F(4x4, 3x3) (src/detect/engine/winograd.c,
 * kernels/winograd.cl): the C reference against a plain convolution in
 * double, and the device run against the C reference (its transforms bit
 * for bit), on odd sizes, batches, paddings 0..2, with and without residual
 * and ReLU. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canopy/gpu.h"
#include "detect/engine/winograd.h"
#include "testutil.h"

static unsigned g_seed = 12345;

/* Argument "quick" (the Oclgrind run: CLBlast's Xgemm is slow there)
 * leaves out the cases with more than 200 channel pairs; every run shape of
 * the transform kernels stays. */
static bool g_quick;

static float frand(void)
{
    g_seed = g_seed * 1103515245u + 12345u;
    return (float)((g_seed >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* out planes o * n + b, in planes c * n + b. */
static void conv_double(const float *in, const float *wt, const float *bias, const float *add,
                        bool relu, float *out, int c, int o, int n, int h, int w, int pad)
{
    int oh = h + 2 * pad - 2, ow = w + 2 * pad - 2;
    for (int oc = 0; oc < o; oc++)
        for (int b = 0; b < n; b++)
            for (int y = 0; y < oh; y++)
                for (int x = 0; x < ow; x++) {
                    double s = bias[oc];
                    for (int ic = 0; ic < c; ic++)
                        for (int ky = 0; ky < 3; ky++)
                            for (int kx = 0; kx < 3; kx++) {
                                int iy = y - pad + ky, ix = x - pad + kx;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= w)
                                    continue;
                                s += (double)wt[((oc * c + ic) * 3 + ky) * 3 + kx] *
                                     in[(((size_t)ic * n + b) * h + iy) * w + ix];
                            }
                    size_t at = (((size_t)oc * n + b) * oh + y) * ow + x;
                    if (add)
                        s += add[at];
                    out[at] = (float)(relu && s < 0 ? 0 : s);
                }
}

static double max_diff(const float *a, const float *b, size_t n, double *scale)
{
    double d = 0, s = 1;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)a[i]));
    }
    *scale = s;
    return d;
}

/* wino_input's (m 2) or wino4_input's (m 4) V ([a*a][c][P], tile p =
 * (b * th + ty) * tw + tx, P: det_wino_tile_stride) in C, the float
 * operations of det_wino_ref's input transform in the same order. */
static void ref_input(int m, const float *in, float *v, int c, int n, int h, int w, int pad,
                      int th, int tw)
{
    size_t np = det_wino_tile_stride((size_t)n * th * tw);
    int a2 = (m + 2) * (m + 2);
    for (int ic = 0; ic < c; ic++)
        for (int b = 0; b < n; b++)
            for (int ty = 0; ty < th; ty++)
                for (int tx = 0; tx < tw; tx++) {
                    float t[DET_WINO_A_MAX * DET_WINO_A_MAX];
                    det_wino_input_tile(m, in + ((size_t)ic * n + b) * h * w, h, w, pad, ty,
                                        tx, t);
                    float *o = v + (size_t)ic * np + ((size_t)b * th + ty) * tw + tx;
                    size_t st = (size_t)c * np;
                    for (int e = 0; e < a2; e++)
                        o[e * st] = t[e];
                }
}

/* wino_output / wino4_output in C from the device's M ([a*a][o][P]):
 * A^T M A + bias (+ add) (ReLU), det_wino_ref's operations in the same
 * order. */
static void ref_output(int tm, const float *m, const float *bias, const float *add, bool relu,
                       float *out, int o, int n, int oh, int ow, int th, int tw)
{
    size_t np = det_wino_tile_stride((size_t)n * th * tw);
    int a2 = (tm + 2) * (tm + 2);
    for (int oc = 0; oc < o; oc++)
        for (int b = 0; b < n; b++)
            for (int ty = 0; ty < th; ty++)
                for (int tx = 0; tx < tw; tx++) {
                    size_t p = ((size_t)b * th + ty) * tw + tx;
                    float a[DET_WINO_A_MAX * DET_WINO_A_MAX];
                    for (int e = 0; e < a2; e++)
                        a[e] = m[((size_t)e * o + oc) * np + p];
                    size_t plane = ((size_t)oc * n + b) * oh * ow;
                    det_wino_output_tile(tm, a, bias[oc], add ? add + plane : NULL, relu,
                                         out + plane, oh, ow, ty, tx);
                }
}

/* Bound of |result - double| per unit of the largest |value| and input
 * channel: F(4x4)'s transforms scale by up to 8 and its filters by 1/24. */
static double tolerance(int m)
{
    return m == 2 ? 1e-5 : 1e-4;
}

/* Whether rows of `stride` floats of a and b agree bit for bit in their
 * first `tiles` (the columns past them are the SGEMM's padding). */
static bool same_tiles(const float *a, const float *b, size_t rows, size_t stride, size_t tiles)
{
    for (size_t r = 0; r < rows; r++)
        if (memcmp(a + r * stride, b + r * stride, tiles * sizeof(float)) != 0)
            return false;
    return true;
}

static void check_case(ocl_ctx *ctx, det_wino *wn, int m, int c, int o, int n, int h, int w,
                       int pad, bool residual, bool relu)
{
    if (g_quick && c * o > 200)
        return;
    int oh = h + 2 * pad - 2, ow = w + 2 * pad - 2;
    size_t ni = (size_t)c * n * h * w, no = (size_t)o * n * oh * ow, nw = (size_t)o * c * 9;
    float *in = malloc(ni * 4), *wt = malloc(nw * 4), *bias = malloc((size_t)o * 4),
          *add = residual ? malloc(no * 4) : NULL, *want = malloc(no * 4),
          *ref = malloc(no * 4), *dev = malloc(no * 4);
    CHECK_FATAL(in && wt && bias && want && ref && dev && (!residual || add));
    for (size_t i = 0; i < ni; i++)
        in[i] = frand();
    for (size_t i = 0; i < nw; i++)
        wt[i] = frand() * 0.5f;
    for (int i = 0; i < o; i++)
        bias[i] = frand();
    for (size_t i = 0; residual && i < no; i++)
        add[i] = frand();
    conv_double(in, wt, bias, add, relu, want, c, o, n, h, w, pad);
    det_wino_ref(m, in, wt, bias, add, relu, ref, c, o, n, h, w, pad);
    double scale, d = max_diff(want, ref, no, &scale);
    CHECK(d <= tolerance(m) * scale * c,
          ": F(%d) C reference c%d o%d n%d %dx%d pad %d: %g (scale %g)", m, c, o, n, w, h, pad,
          d, scale);

    cl_context cl = ocl_ctx_context(ctx);
    cl_command_queue q = ocl_ctx_queue(ctx);
    cl_int rc;
    cl_mem din = ocl_buffer_create(cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, ni * 4, in, &rc);
    cl_mem dbias =
        ocl_buffer_create(cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, (size_t)o * 4, bias, &rc);
    cl_mem dadd = residual ? ocl_buffer_create(cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                                               no * 4, add, &rc)
                           : NULL;
    cl_mem dout = ocl_buffer_create(cl, CL_MEM_READ_WRITE, no * 4, NULL, &rc);
    CHECK_FATAL(rc == CL_SUCCESS);
    cl_mem u = NULL;
    cnp_err err;
    size_t sv, sm;
    det_wino_scratch(m, c, o, oh, ow, n, &sv, &sm);
    CHECK_FATAL(det_wino_upload(cl, m, wt, o, c, &u, &err) == CNP_OK, ": %s", err.msg);
    CHECK_FATAL(det_wino_reserve(wn, cl, q, sv, sm, &err) == CNP_OK, ": %s", err.msg);
    CHECK_FATAL(det_wino_run(wn, m, q, din, u, dbias, dadd, relu, dout, c, o, n, h, w, pad,
                             &err) == CNP_OK,
                ": %s", err.msg);
    CHECK_FATAL(clEnqueueReadBuffer(q, dout, CL_TRUE, 0, no * 4, dev, 0, NULL, NULL) ==
                CL_SUCCESS);
    /* The transforms bit for bit: V against the C input transform, the
     * output against the C output transform of the device's own M (only
     * the SGEMM sums in another order than det_wino_ref). */
    int th = (oh + m - 1) / m, tw = (ow + m - 1) / m;
    size_t a2 = (size_t)(m + 2) * (m + 2);
    size_t np = det_wino_tile_stride((size_t)n * th * tw);
    size_t nv = a2 * (size_t)c * np, nm = a2 * (size_t)o * np;
    float *vref = malloc(nv * 4), *vdev = malloc(nv * 4), *mdev = malloc(nm * 4),
          *oref = malloc(no * 4);
    CHECK_FATAL(vref && vdev && mdev && oref);
    CHECK_FATAL(clEnqueueReadBuffer(q, wn->v, CL_TRUE, 0, nv * 4, vdev, 0, NULL, NULL) ==
                CL_SUCCESS);
    CHECK_FATAL(clEnqueueReadBuffer(q, wn->m, CL_TRUE, 0, nm * 4, mdev, 0, NULL, NULL) ==
                CL_SUCCESS);
    ref_input(m, in, vref, c, n, h, w, pad, th, tw);
    ref_output(m, mdev, bias, add, relu, oref, o, n, oh, ow, th, tw);
    CHECK(same_tiles(vref, vdev, a2 * (size_t)c, np, (size_t)n * th * tw),
          ": F(%d) input transform c%d n%d %dx%d pad %d differs from C", m, c, n, w, h, pad);
    CHECK(memcmp(oref, dev, no * 4) == 0,
          ": F(%d) output transform o%d n%d %dx%d pad %d residual %d relu %d differs from C", m,
          o, n, w, h, pad, residual, relu);
    free(vref);
    free(vdev);
    free(mdev);
    free(oref);
    d = max_diff(ref, dev, no, &scale);
    printf("F(%d) c%d o%d n%d %dx%d pad %d residual %d relu %d: C ref vs double %.3g, device vs "
           "C ref %.3g\n", m, c, o, n, w, h, pad, residual, relu,
           max_diff(want, ref, no, &scale), d);
    CHECK(d <= tolerance(m) * scale * c, ": F(%d) device c%d o%d n%d %dx%d pad %d: %g (scale %g)",
          m, c, o, n, w, h, pad, d, scale);
    ocl_buffer_release(din);
    ocl_buffer_release(dbias);
    ocl_buffer_release(dadd);
    ocl_buffer_release(dout);
    ocl_buffer_release(u);
    free(in);
    free(wt);
    free(bias);
    free(add);
    free(want);
    free(ref);
    free(dev);
}

int main(int argc, char **argv)
{
    g_quick = argc > 1 && strcmp(argv[1], "quick") == 0;
    cnp_opencl_config oc = {0};
    const char *cache = getenv("CANOPY_OPENCL_CACHE_DIR");
    snprintf(oc.cache_dir, sizeof oc.cache_dir, "%s", cache ? cache : "");
    snprintf(oc.tuning_file, sizeof oc.tuning_file, "off");
    ocl_ctx *ctx = NULL;
    cnp_err err;
    if (ocl_ctx_create(&oc, &ctx, &err) != CNP_OK) {
        return test_skip_or_fail(err.msg);
    }
    det_wino wn;
    CHECK_FATAL(det_wino_init(&wn, ctx, &err) == CNP_OK, ": %s", err.msg);
    /* Scratch too small: refused, named. */
    cl_mem none = NULL;
    CHECK(det_wino_run(&wn, 2, ocl_ctx_queue(ctx), none, none, none, NULL, false, none, 3, 4, 1,
                       9, 9, 1, &err) == CNP_ERR_INVALID,
          ": ran without scratch");
    CHECK(det_wino_run(&wn, 3, ocl_ctx_queue(ctx), none, none, none, NULL, false, none, 3, 4, 1,
                       9, 9, 1, &err) == CNP_ERR_INVALID,
          ": ran F(3x3)");
    for (int m = 2; m <= 4; m += 2) {
        check_case(ctx, &wn, m, 5, 7, 2, 13, 11, 1, false, false);
        check_case(ctx, &wn, m, 3, 4, 1, 9, 10, 0, true, true);
        check_case(ctx, &wn, m, 17, 9, 3, 7, 5, 2, true, false);
        check_case(ctx, &wn, m, 64, 33, 1, 19, 23, 1, false, true);
        check_case(ctx, &wn, m, 1, 1, 1, 3, 3, 0, false, false); /* one output pixel */
        check_case(ctx, &wn, m, 2, 3, 2, 1, 1, 1, true, true);   /* one input pixel */
    }
    /* F(2x2)'s runs of 8 tiles along x: whole runs inside the input, first
     * runs at padding 0 and 1, short last runs, odd OH and OW, rows of tiles
     * under one run (TW < 8) and of 2 runs exactly (TW 16). */
    check_case(ctx, &wn, 2, 3, 2, 2, 37, 37, 1, true, true);   /* TW 19: 8 8 3 */
    check_case(ctx, &wn, 2, 2, 3, 2, 21, 36, 0, false, true);  /* TW 17: 8 8 1 */
    check_case(ctx, &wn, 2, 2, 2, 1, 18, 35, 1, true, false);  /* OW 35, TW 18 */
    check_case(ctx, &wn, 2, 3, 3, 2, 16, 34, 0, true, true);   /* TW 16: 8 8 */
    check_case(ctx, &wn, 2, 2, 3, 2, 11, 14, 1, false, false); /* TW 7 */
    check_case(ctx, &wn, 2, 2, 2, 1, 9, 17, 0, true, true);    /* OW 15, TW 8 */
    check_case(ctx, &wn, 2, 2, 2, 2, 10, 17, 1, true, false);  /* OW 17, TW 9: 8 1 */
    /* F(4x4)'s runs of 4 tiles (18 input columns): whole runs inside the
     * input (the vload16 + vload2 path) at padding 0, first runs at padding
     * 1 and 2, short last runs, OW not a multiple of 4, TW under one run,
     * exactly 2 runs, real RetinaNet P3-like width. */
    check_case(ctx, &wn, 4, 3, 2, 2, 37, 37, 1, true, true);   /* OW 37, TW 10: 4 4 2 */
    check_case(ctx, &wn, 4, 2, 3, 2, 21, 36, 0, false, true);  /* OW 34, TW 9: 4 4 1 */
    check_case(ctx, &wn, 4, 2, 2, 1, 18, 35, 2, true, false);  /* OW 37 at pad 2 */
    check_case(ctx, &wn, 4, 3, 3, 2, 16, 34, 1, true, true);   /* OW 34, TW 9 */
    check_case(ctx, &wn, 4, 2, 3, 2, 11, 14, 1, false, false); /* TW 4: one run */
    check_case(ctx, &wn, 4, 2, 2, 1, 9, 33, 0, true, true);    /* OW 31, TW 8: 4 4 */
    check_case(ctx, &wn, 4, 2, 2, 2, 10, 18, 0, true, false);  /* OW 16, TW 4 exactly */
    check_case(ctx, &wn, 4, 8, 8, 1, 25, 50, 1, true, true);   /* TW 13: 4 4 4 1 */
    det_wino_release(&wn);
    ocl_ctx_free(ctx);
    return TEST_RESULT();
}
