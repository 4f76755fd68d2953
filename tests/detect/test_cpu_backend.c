/* [device] backend: the choice (auto picks the CPU backend on a CPU OpenCL
 * device or none, opencl without a device and cpu are refused or honoured),
 * the [device] keys in a configuration file (values and a bad value's
 * error), and the pipeline's device on each backend: the same mask and
 * the same trees (centre within POS_TOL, score within SCORE_TOL, as the
 * engine tests) on the three NEON images with the shipped crown model, a
 * description naming the backend, and the windowed path (window + merge)
 * giving the whole image's trees. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "canopy/config.h"
#include "canopy/detect.h"
#include "canopy/image.h"
#include "canopy/pipeline.h"
#include "detect/test_detect_common.h"

#define POS_TOL 0.02f
#define SCORE_TOL 1e-4f

static void test_choose(ocl_ctx *ctx)
{
    cnp_err err;
    enum cnp_backend b = CNP_BACKEND_AUTO;
    CHECK(det_backend_choose(CNP_BACKEND_AUTO, ctx, &b, &err) == CNP_OK && b == CNP_BACKEND_CPU,
          "auto on a CPU OpenCL device: %s", det_backend_kind_name(b));
    CHECK(det_backend_choose(CNP_BACKEND_AUTO, NULL, &b, &err) == CNP_OK && b == CNP_BACKEND_CPU,
          "auto without a device: %s", det_backend_kind_name(b));
    CHECK(det_backend_choose(CNP_BACKEND_OPENCL, ctx, &b, &err) == CNP_OK &&
          b == CNP_BACKEND_OPENCL, "opencl");
    CHECK(det_backend_choose(CNP_BACKEND_CPU, ctx, &b, &err) == CNP_OK && b == CNP_BACKEND_CPU,
          "cpu");
    CHECK(det_backend_choose(CNP_BACKEND_OPENCL, NULL, &b, &err) == CNP_ERR_CONFIG &&
          strstr(err.msg, "[device] backend = opencl"), "opencl without a device: %s", err.msg);
}

static void test_config(void)
{
    char path[] = "/tmp/test_cpu_backend.XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    const char *ini = "[device]\nbackend = cpu\nthreads = 3\n";
    REQUIRE(write(fd, ini, strlen(ini)) == (ssize_t)strlen(ini));
    close(fd);
    cnp_config cfg;
    cnp_err err;
    CHECK(cnp_config_load(&cfg, path, &err) == CNP_OK, "%s", err.msg);
    CHECK(cfg.device.backend == CNP_BACKEND_CPU && cfg.device.threads == 3, "backend %d threads %d",
          (int)cfg.device.backend, cfg.device.threads);
    cnp_config_defaults(&cfg);
    CHECK(cfg.device.backend == CNP_BACKEND_AUTO && cfg.device.threads == 0, "defaults");
    FILE *f = fopen(path, "w");
    REQUIRE(f);
    fputs("[device]\nbackend = gpu\n", f);
    fclose(f);
    CHECK(cnp_config_load(&cfg, path, &err) != CNP_OK && strstr(err.msg, "backend"),
          "backend = gpu: %s", err.msg);
    unlink(path);
}

static pipe_device *device(const cnp_config *cfg, const det_model *m, enum cnp_backend b)
{
    cnp_device_config dc = cfg->device;
    dc.backend = b;
    pipe_device_params p = {.opencl = &cfg->opencl, .binarize = &cfg->binarize,
                            .detector = &cfg->detector, .device = &dc};
    pipe_device *dev = NULL;
    cnp_err err;
    CHECK_FATAL(pipe_device_create(&p, m, &dev, &err) == CNP_OK, "%s", err.msg);
    return dev;
}

/* The trees of img through the windowed path: windows, unmerged, shifted,
 * merged. */
static void windowed(pipe_device *dev, const cnp_image *img, cnp_tree **out, size_t *nout)
{
    det_tile *t = NULL;
    size_t nt = 0, n = 0;
    cnp_err err;
    cnp_tree *all = NULL;
    REQUIRE(pipe_device_windows(dev, img->width, img->height, &t, &nt, &err) == CNP_OK);
    for (size_t i = 0; i < nt; i++) {
        cnp_image win = {.width = t[i].w, .height = t[i].h};
        win.rgba = malloc((size_t)t[i].w * t[i].h * 4);
        for (uint32_t y = 0; y < t[i].h; y++)
            memcpy(win.rgba + (size_t)y * t[i].w * 4,
                   img->rgba + (((size_t)t[i].y0 + y) * img->width + t[i].x0) * 4,
                   (size_t)t[i].w * 4);
        cnp_tree *wt = NULL;
        size_t nw = 0;
        CHECK_FATAL(pipe_device_detect_window(dev, win.rgba, win.width, win.height, &wt, &nw,
                                              &err) == CNP_OK, "%s", err.msg);
        all = realloc(all, (n + nw + 1) * sizeof *all);
        for (size_t k = 0; k < nw; k++) {
            /* Crowns owned by this window, shifted to the image. */
            cnp_tree tr = wt[k];
            det_tree_shift(&tr, t[i].x0, t[i].y0);
            if (tr.x >= t[i].own[0] && tr.x < t[i].own[2] && tr.y >= t[i].own[1] &&
                tr.y < t[i].own[3])
                all[n++] = tr;
        }
        free(wt);
        free(win.rgba);
    }
    free(t);
    REQUIRE(pipe_device_merge(dev, all, &n, pipe_device_merge_iou(dev), &err) == CNP_OK);
    *out = all;
    *nout = n;
}

static void test_pipeline(const cnp_config *cfg, const det_model *m)
{
    static const char *images[] = {"OSBS_029", "SOAP_061", "YELL_541000_west"};
    pipe_device *cpu = device(cfg, m, CNP_BACKEND_CPU), *ocl = device(cfg, m, CNP_BACKEND_OPENCL);
    CHECK(strstr(pipe_device_description(cpu), "cpu backend") != NULL, "%s",
          pipe_device_description(cpu));
    CHECK(strstr(pipe_device_description(ocl), "opencl backend") != NULL, "%s",
          pipe_device_description(ocl));
    size_t total = 0;
    for (size_t i = 0; i < sizeof images / sizeof images[0]; i++) {
        char file[1024];
        cnp_err err;
        snprintf(file, sizeof file, "%s/%s.png", CANOPY_NEON_DIR, images[i]);
        cnp_image img;
        CHECK_FATAL(img_png_read_file(file, 0, &img, &err) == CNP_OK, "%s", err.msg);
        pipe_result a, b;
        CHECK_FATAL(pipe_device_process(cpu, &img, &a, &err) == CNP_OK, "%s", err.msg);
        CHECK_FATAL(pipe_device_process(ocl, &img, &b, &err) == CNP_OK, "%s", err.msg);
        CHECK(memcmp(a.mask, b.mask, (size_t)img.width * img.height) == 0, "%s: masks differ",
              images[i]);
        size_t x = trees_found_in(a.trees, a.ntrees, b.trees, b.ntrees, POS_TOL, SCORE_TOL),
               y = trees_found_in(b.trees, b.ntrees, a.trees, a.ntrees, POS_TOL, SCORE_TOL);
        printf("%s: cpu backend %zu trees, opencl %zu; %zu / %zu found both ways\n", images[i],
               a.ntrees, b.ntrees, x, y);
        CHECK(a.ntrees - x <= a.ntrees / 50 && b.ntrees - y <= b.ntrees / 50,
              "%s: trees differ", images[i]);
        cnp_tree *w = NULL;
        size_t nw = 0;
        windowed(cpu, &img, &w, &nw);
        size_t z = trees_found_in(w, nw, a.trees, a.ntrees, POS_TOL, SCORE_TOL);
        printf("%s: windowed on the cpu backend %zu trees, %zu found whole\n", images[i], nw, z);
        CHECK(nw == a.ntrees && z == nw, "%s: windowed %zu vs whole %zu", images[i], nw,
              a.ntrees);
        total += a.ntrees;
        free(w);
        pipe_result_free(&a);
        pipe_result_free(&b);
        cnp_image_free(&img);
    }
    CHECK(total >= 100, "only %zu trees compared", total);
    pipe_device_free(cpu);
    pipe_device_free(ocl);
}

int main(void)
{
    cnp_config cfg;
    cnp_err err;
    test_crown_config(&cfg);
    ocl_ctx *ctx = NULL;
    CHECK_FATAL(ocl_ctx_create(&cfg.opencl, &ctx, &err) == CNP_OK, "%s", err.msg);
    test_choose(ctx);
    ocl_ctx_free(ctx);
    test_config();
    det_model *m = NULL;
    CHECK_FATAL(det_model_load(cfg.detector.model, &m, &err) == CNP_OK, "%s", err.msg);
    test_pipeline(&cfg, m);
    det_model_free(m);
    return test_result("test_cpu_backend");
}
