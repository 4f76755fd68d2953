/* Every kernel family on inputs small enough for a simulator, from the main
 * thread only, for tests/oclgrind/run.sh to run under Oclgrind
 * (--data-races --check-api): binarization (all methods and
 * channels, odd sizes, exact against the CPU reference), the crown detector
 * (detect.cl, the graph's convolution kernels) and the tiny random box model
 * (graph.cl's input, im2col, epilogue, maxpool, upsample, scores, decode,
 * gather; topk.cl's top-k; NMS), and the uploads of pipe_device_stage
 * (pinned staging and direct writes on the copy queue, the compute queue's
 * barrier on the copy). Without Oclgrind it runs on the default device.
 *
 * Oclgrind's --uninitialized (the issue found it crashing on canopy's
 * binarization) is not used: its plugin in Oclgrind 21.10 is at fault, not
 * canopy, three ways, each reproduced with a small stand-alone program:
 *  - SIGSEGV in ShadowContext::getCleanValue (from hostMemoryStore) when a
 *    clEnqueueWriteBuffer runs on any thread but the main one: `canopy run`
 *    does every device call on its device thread;
 *  - clEnqueueFillBuffer does not mark memory initialized: every kernel that
 *    reads a filled histogram or counter is reported (a clEnqueueWriteBuffer
 *    of the same zeros is not);
 *  - "OCLGRIND FATAL ERROR (Uninitialized.cpp:1805) Unsupported instruction:
 *    freeze" on the graph_conv and graph_maxpool kernels (LLVM 14 emits it).
 * This driver keeps to the main thread so that the flag can be tried again
 * with a later Oclgrind. */
#include <math.h>

#include "canopy/binarize.h"
#include "canopy/pipeline.h"
#include "canopy/synth.h"
#include "detect/graph_util.h"
#include "devutil.h"
#include "testutil.h"

static void binarize_all(ocl_ctx *ctx, uint32_t w, uint32_t h)
{
    cnp_image img = {0};
    cnp_err err;
    CHECK_FATAL(synth_aerial(&img, w, h, 3, 11, &err) == CNP_OK, "%s", err.msg);
    /* Some nodata pixels: they must stay out of the histogram. */
    for (size_t i = 0; i < (size_t)w * h; i += 7)
        img.rgba[4 * i + 3] = 0;
    static const enum cnp_bin_method methods[] = {CNP_BIN_OTSU, CNP_BIN_FIXED, CNP_BIN_ADAPTIVE};
    static const enum cnp_bin_channel channels[] = {CNP_CH_LUMA, CNP_CH_EXG};
    size_t n = (size_t)w * h;
    uint8_t *m_ref = malloc(n), *m_dev = malloc(n);
    CHECK_FATAL(m_ref && m_dev);
    for (int mi = 0; mi < 3; mi++) {
        for (int ci = 0; ci < 2; ci++) {
            bin_params p = {.method = methods[mi], .channel = channels[ci], .threshold = 120,
                            .window = 5, .offset = 2};
            bin_result r_ref, r_dev;
            bin_engine *e = NULL;
            CHECK_FATAL(bin_ref_run(&p, &img, m_ref, &r_ref, &err) == CNP_OK, "%s", err.msg);
            CHECK_FATAL(bin_engine_create(ctx, &p, &e, &err) == CNP_OK, "%s", err.msg);
            cnp_status st = bin_engine_run_image(e, &img, m_dev, &r_dev, &err);
            CHECK(st == CNP_OK, "%ux%u m%d c%d: %s", w, h, mi, ci, err.msg);
            if (st == CNP_OK) {
                CHECK(memcmp(m_ref, m_dev, n) == 0, "%ux%u m%d c%d: masks differ", w, h, mi, ci);
                CHECK(r_ref.threshold == r_dev.threshold && r_ref.foreground == r_dev.foreground,
                      "%ux%u m%d c%d: threshold %d/%d, foreground %llu/%llu", w, h, mi, ci,
                      r_ref.threshold, r_dev.threshold, (unsigned long long)r_ref.foreground,
                      (unsigned long long)r_dev.foreground);
            }
            bin_engine_free(e);
        }
    }
    free(m_ref);
    free(m_dev);
    cnp_image_free(&img);
}

/* One image through binarization and the model's detector on `backend`
 * (auto: the CPU backend where the device is a CPU, as Oclgrind's is, and
 * oneDNN is built in), every conv on `conv` where it applies (direct or
 * pixel: no timing runs at start). */
static void detect(const char *model_path, int tile, uint32_t w, uint32_t h,
                   enum det_conv_path conv, enum cnp_backend backend)
{
    cnp_config cfg;
    cnp_err err;
    cnp_config_defaults(&cfg);
    snprintf(cfg.detector.model, sizeof cfg.detector.model, "%s", model_path);
    cfg.detector.tile = tile;
    cfg.detector.tile_overlap = 0;
    cfg.detector.patch_size = tile;
    cfg.detector.conv = (int)conv;
    cfg.device.backend = backend;
    det_model *model = NULL;
    CHECK_FATAL(pipe_model_load(&cfg.detector, &model, &err) == CNP_OK, "%s", err.msg);
    /* backend opencl: Oclgrind is a CPU device, where auto would run the
     * models on the CPU backend and no detector kernel under Oclgrind. */
    cfg.device.backend = CNP_BACKEND_OPENCL;
    pipe_device *dev = NULL;
    CHECK_FATAL(test_pipe_device(&cfg, model, &dev, &err) == CNP_OK, "%s", err.msg);
    cnp_image img = {0};
    CHECK_FATAL(synth_aerial(&img, w, h, 2, 5, &err) == CNP_OK, "%s", err.msg);
    pipe_result res;
    cnp_status st = pipe_device_process(dev, &img, &res, &err);
    CHECK(st == CNP_OK, "%s on %ux%u: %s", model_path, w, h, err.msg);
    if (st == CNP_OK)
        fprintf(stderr, "%s on %ux%u: %zu trees\n", model_path, w, h, res.ntrees);
    pipe_result_free(&res);
    cnp_image_free(&img);
    pipe_device_free(dev);
    det_model_free(model);
}

/* graph_conv_px at stride 2 on a batch of two 19 x 23 inputs: the 7 x 7
 * stride-2 stem (3 -> 20 channels: a partial block of 32), a 3 x 3
 * stride-2 conv with a 1 x 1 stride-2 residual (13: a partial 16), a 3 x 3
 * stride-2 dilation-2 conv (5 of 8); each patch's output equals the C
 * reference's on that patch (the same sums in the same order). */
static void pixel_stride2(void)
{
    enum { H = 23, W = 19, NB = 2 };
    cnp_config cfg;
    cnp_err err;
    cnp_config_defaults(&cfg);
    ocl_ctx *ctx = NULL;
    CHECK_FATAL(ocl_ctx_create(&cfg.opencl, &ctx, &err) == CNP_OK, "%s", err.msg);
    tg_graph t;
    tg_init(&t, 29);
    int stem = tg_conv(&t, 0, 3, 20, 7, 2, 3, 1, -1, true, 1.2f, 0.0f);   /* 12 x 10 */
    int ds = tg_conv(&t, stem, 20, 13, 1, 2, 0, 1, -1, false, 1.0f, 0.0f); /* 6 x 5 */
    int b = tg_conv(&t, stem, 20, 13, 3, 2, 1, 1, ds, true, 1.0f, 0.0f);
    int box = tg_conv(&t, 0, 3, 4, 1, 1, 0, 1, -1, false, 1.0f, 0.0f);
    int last = tg_conv(&t, b, 13, 5, 3, 2, 2, 2, -1, false, 1.0f, 0.0f); /* 3 x 3 */
    tg_retina_identity(&t.g.retina, H, W);
    t.g.retina.num_classes = 5;
    t.g.retina.cls_node[0] = last;
    t.g.retina.box_node[0] = box;
    det_graph_engine *e = NULL;
    det_graph_engine_opts opts = {.conv = DET_CONV_PIXEL, .max_batch = NB};
    CHECK_FATAL(det_graph_engine_create_opts(ctx, &t.g, W, H, &opts, &e, &err) == CNP_OK, "%s",
                err.msg);
    CHECK_FATAL(det_graph_engine_max_batch(e) == NB);
    for (int i = 1; i < t.g.n_nodes; i++)
        CHECK(det_graph_engine_node_path(e, i, NULL, NULL) == DET_CONV_PIXEL, "node %d", i);
    size_t plane = (size_t)H * W;
    float *in = malloc(sizeof(float) * 3 * NB * plane), *one = malloc(sizeof(float) * 3 * plane);
    CHECK_FATAL(in && one);
    uint32_t seed = 31;
    for (size_t j = 0; j < 3 * NB * plane; j++)
        in[j] = tg_rand(&seed);
    cl_command_queue q = ocl_ctx_queue(ctx);
    CHECK_FATAL(clEnqueueWriteBuffer(q, det_graph_engine_input(e), CL_TRUE, 0,
                                     sizeof(float) * 3 * NB * plane, in, 0, NULL,
                                     NULL) == CL_SUCCESS);
    cl_mem out = NULL;
    int oc = 0, oh = 0, ow = 0;
    CHECK_FATAL(det_graph_engine_run_raw_batch(e, NB, H, W, &out, &oc, &oh, &ow, &err) == CNP_OK,
                "%s", err.msg);
    size_t op = (size_t)oh * ow;
    float *dev = malloc(sizeof(float) * (size_t)oc * NB * op);
    CHECK_FATAL(dev != NULL);
    CHECK_FATAL(clEnqueueReadBuffer(q, out, CL_TRUE, 0, sizeof(float) * (size_t)oc * NB * op,
                                    dev, 0, NULL, NULL) == CL_SUCCESS);
    for (int n = 0; n < NB; n++) {
        for (int ch = 0; ch < 3; ch++)
            memcpy(one + ch * plane, in + ((size_t)ch * NB + n) * plane, sizeof(float) * plane);
        float *ref = NULL;
        int rc = 0, rh = 0, rw = 0;
        CHECK_FATAL(det_graph_ref_run_raw(&t.g, one, H, W, &ref, &rc, &rh, &rw, &err) == CNP_OK,
                    "%s", err.msg);
        CHECK_FATAL(rc == oc && rh == oh && rw == ow && oh == 3 && ow == 3,
                    "shape %dx%dx%d vs %dx%dx%d", rc, rh, rw, oc, oh, ow);
        double worst = 0, scale = 1;
        for (int ch = 0; ch < oc; ch++)
            for (size_t j = 0; j < op; j++) {
                scale = fmax(scale, fabs(ref[(size_t)ch * op + j]));
                worst = fmax(worst, fabs((double)ref[(size_t)ch * op + j] -
                                         dev[((size_t)ch * NB + n) * op + j]));
            }
        fprintf(stderr, "pixel stride 2, patch %d: %dx%dx%d, max diff %.3g (scale %.3g)\n", n,
                oc, oh, ow, worst, scale);
        CHECK(worst <= 1e-4 * scale, "pixel stride 2 patch %d: %g", n, worst);
        free(ref);
    }
    free(dev);
    free(in);
    free(one);
    det_graph_engine_free(e);
    tg_free(&t);
    ocl_ctx_free(ctx);
}

/* Under a device whose work-groups hold at most 128 items (Oclgrind
 * --max-wgsize 128): Otsu's kernel needs 256 (reqd_work_group_size), and the
 * failure says so instead of a bare CL_INVALID_WORK_GROUP_SIZE. */
static void small_work_groups(ocl_ctx *ctx)
{
    cnp_image img = {0};
    cnp_err err;
    CHECK_FATAL(synth_aerial(&img, 37, 23, 3, 11, &err) == CNP_OK, "%s", err.msg);
    bin_params p = {.method = CNP_BIN_OTSU, .channel = CNP_CH_LUMA, .window = 5};
    bin_engine *e = NULL;
    uint8_t mask[37 * 23];
    bin_result r;
    if (bin_engine_create(ctx, &p, &e, &err) == CNP_OK) {
        cnp_status st = bin_engine_run_image(e, &img, mask, &r, &err);
        CHECK(st == CNP_ERR_OPENCL && strstr(err.msg, "CL_KERNEL_WORK_GROUP_SIZE"),
              "status %d: %s", st, err.msg);
    } else {
        /* A driver may refuse the kernel at build time instead: also clear. */
        fprintf(stderr, "refused at creation: %s\n", err.msg);
    }
    bin_engine_free(e);
    cnp_image_free(&img);
}

/* Images of three sizes binarized with the next one staged, pinned and
 * direct: each mask exactly the mask of the image alone. */
static void staging(void)
{
    cnp_config cfg;
    cnp_err err;
    cnp_config_defaults(&cfg);
    pipe_device *dev = NULL;
    CHECK_FATAL(test_pipe_device(&cfg, NULL, &dev, &err) == CNP_OK, "%s", err.msg);
    enum { N = 3 };
    const uint32_t size[N][2] = {{29, 17}, {41, 33}, {13, 21}};
    cnp_image img[N] = {{0}};
    pipe_result ref[N];
    for (int k = 0; k < N; k++) {
        CHECK_FATAL(synth_aerial(&img[k], size[k][0], size[k][1], 2, 7 + (uint64_t)k, &err) ==
                        CNP_OK,
                    "%s", err.msg);
        CHECK_FATAL(pipe_device_process(dev, &img[k], &ref[k], &err) == CNP_OK, "%s", err.msg);
    }
    for (int pinned = 0; pinned < 2; pinned++) {
        pipe_device_set_pinned(dev, pinned);
        for (int k = 0; k < N; k++) {
            if (k + 1 < N)
                CHECK(pipe_device_stage(dev, &img[k + 1], &err) == CNP_OK, "%s", err.msg);
            pipe_result r;
            CHECK_FATAL(pipe_device_process(dev, &img[k], &r, &err) == CNP_OK, "%s", err.msg);
            CHECK(memcmp(r.mask, ref[k].mask, (size_t)size[k][0] * size[k][1]) == 0 &&
                      r.bin.foreground == ref[k].bin.foreground,
                  "staging (pinned %d): image %d's mask differs from its mask alone", pinned, k);
            pipe_result_free(&r);
        }
        pipe_device_unstage(dev);
    }
    for (int k = 0; k < N; k++) {
        pipe_result_free(&ref[k]);
        cnp_image_free(&img[k]);
    }
    pipe_device_free(dev);
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "all";
    cnp_config cfg;
    cnp_err err;
    cnp_config_defaults(&cfg);
    if (!strcmp(what, "all") || !strcmp(what, "binarize")) {
        ocl_ctx *ctx = NULL;
        if (ocl_ctx_create(&cfg.opencl, &ctx, &err) != CNP_OK)
            return test_skip_or_fail(err.msg);
        binarize_all(ctx, 37, 23);
        binarize_all(ctx, 1, 1);
        ocl_ctx_free(ctx);
    }
    if (!strcmp(what, "wgsize")) {
        ocl_ctx *ctx = NULL;
        if (ocl_ctx_create(&cfg.opencl, &ctx, &err) != CNP_OK)
            return test_skip_or_fail(err.msg);
        small_work_groups(ctx);
        ocl_ctx_free(ctx);
    }
    if (!strcmp(what, "all") || !strcmp(what, "staging"))
        staging();
    if (!strcmp(what, "all") || !strcmp(what, "box"))
        detect(CANOPY_SOURCE_DIR "/models/test/random-tiny.cnw", 32, 29, 27, DET_CONV_DIRECT,
               CNP_BACKEND_AUTO);
    if (!strcmp(what, "all") || !strcmp(what, "crown"))
        detect(CANOPY_SOURCE_DIR "/models/crown-1.1.cnw", 64, 24, 20, DET_CONV_DIRECT,
               CNP_BACKEND_AUTO);
    /* graph_conv_px (conv_px.c) on the OpenCL backend: the crown model's
     * convs (dilation up to 8 on a 24 x 20 tile: most taps in the padding)
     * and the box model's; at stride 2 on a small graph. */
    if (!strcmp(what, "all") || !strcmp(what, "pixel")) {
        detect(CANOPY_SOURCE_DIR "/models/crown-1.1.cnw", 64, 24, 20, DET_CONV_PIXEL,
               CNP_BACKEND_OPENCL);
        detect(CANOPY_SOURCE_DIR "/models/test/random-tiny.cnw", 32, 29, 27, DET_CONV_PIXEL,
               CNP_BACKEND_OPENCL);
        pixel_stride2();
    }
    return TEST_RESULT();
}
