/* pipe_device_stage: the next image's upload started on the copy queue
 * while this one is processed gives, image for image, the mask, counts and
 * trees of processing each image alone, with pinned staging and with
 * direct writes (the CPU device's default), over images of several sizes
 * (the two image buffers grow and alternate). Also: a staged image never
 * processed, a staging that matches neither the pixels' address nor the
 * size, a failed staging copy and a failure of the compute queue with an
 * image staged all leave later results right. The copy is taken at
 * staging time: the caller's pixels may change after (checked by
 * scribbling over them, which only a staged image survives). Failures are
 * injected by interposing clEnqueueWriteBuffer and clEnqueueFillBuffer
 * (this executable's definitions win over libOpenCL's and forward to the
 * real ones through dlsym(RTLD_NEXT) unless told to fail). */
#define _GNU_SOURCE
#include "canopy/synth.h"
#include "cl_interpose.h"
#include "devutil.h"
#include "pipeline/pl_internal.h"
#include "testutil.h"

static struct {
    int fail_write_blocking; /* fail blocking writes (the CPU device's staging) */
    int fail_write_async;    /* fail non-blocking writes (pinned staging, uploads) */
    int fail_fill;           /* fail clEnqueueFillBuffer (the binarizer's clears) */
} g;

CL_API_ENTRY cl_int CL_API_CALL clEnqueueWriteBuffer(cl_command_queue q, cl_mem buf,
                                                     cl_bool blocking, size_t off, size_t size,
                                                     const void *ptr, cl_uint nwait,
                                                     const cl_event *wait, cl_event *ev)
{
    if (blocking ? g.fail_write_blocking : g.fail_write_async)
        return CL_OUT_OF_RESOURCES;
    return test_real_write_buffer()(q, buf, blocking, off, size, ptr, nwait, wait, ev);
}

TEST_FILL_BUFFER_FAILING_WHILE(g.fail_fill)

enum { NIMG = 6 };
static const uint32_t sizes[NIMG][2] = {{200, 150}, {320, 240}, {120, 260},
                                        {256, 256}, {400, 210}, {96, 128}};

static cnp_image imgs[NIMG];
static pipe_result ref[NIMG];

/* Whether r is exactly ref[k] (mask, threshold, counts, every tree). */
static bool same(const pipe_result *r, int k, const char *what)
{
    const pipe_result *e = &ref[k];
    size_t n = (size_t)e->width * e->height;
    bool ok = r->width == e->width && r->height == e->height &&
              memcmp(r->mask, e->mask, n) == 0 && r->bin.threshold == e->bin.threshold &&
              r->bin.foreground == e->bin.foreground && r->ntrees == e->ntrees &&
              (r->ntrees == 0 || memcmp(r->trees, e->trees, r->ntrees * sizeof *r->trees) == 0);
    CHECK(ok, "%s: image %d (%ux%u) differs from its result alone (trees %zu vs %zu, fg %llu vs "
              "%llu)",
          what, k, e->width, e->height, r->ntrees, e->ntrees,
          (unsigned long long)r->bin.foreground, (unsigned long long)e->bin.foreground);
    return ok;
}

static void process_check(pipe_device *dev, const cnp_image *img, int k, const char *what)
{
    pipe_result r;
    cnp_err err;
    cnp_status st = pipe_device_process(dev, img, &r, &err);
    CHECK(st == CNP_OK, "%s: image %d: %s", what, k, err.msg);
    if (st == CNP_OK)
        same(&r, k, what);
    pipe_result_free(&r);
}

/* The device stage's order: image i+1 staged, then image i processed. */
static void run_sequence(pipe_device *dev, const char *mode, bool back)
{
    cnp_err err;
    char what[96];
    snprintf(what, sizeof what, "%s, in sequence", mode);
    for (int i = 0; i < NIMG; i++) {
        if (i + 1 < NIMG)
            CHECK(pipe_device_stage(dev, &imgs[i + 1], &err) == CNP_OK, "%s: %s", what, err.msg);
        process_check(dev, &imgs[i], i, what);
    }
    /* Twice in a row, sizes going down and up again. */
    for (int i = NIMG - 1; back && i >= 0; i--) {
        if (i > 0)
            CHECK(pipe_device_stage(dev, &imgs[i - 1], &err) == CNP_OK, "%s: %s", what, err.msg);
        process_check(dev, &imgs[i], i, what);
    }
    pipe_device_unstage(dev);
}

/* A staged image's copy is taken at staging: a scribble over the caller's
 * pixels after it does not reach the result (only .dev is read on the
 * OpenCL backend), so the staged buffer, not a new upload, was used. */
static void run_scribble(pipe_device *dev, const char *mode)
{
    cnp_err err;
    char what[96];
    snprintf(what, sizeof what, "%s, pixels changed after staging", mode);
    for (int k = 0; k < NIMG; k += 2) {
        size_t bytes = (size_t)imgs[k].width * imgs[k].height * 4;
        cnp_image copy = {.width = imgs[k].width, .height = imgs[k].height,
                          .rgba = malloc(bytes)};
        CHECK_FATAL(copy.rgba, "out of memory");
        memcpy(copy.rgba, imgs[k].rgba, bytes);
        CHECK(pipe_device_stage(dev, &copy, &err) == CNP_OK, "%s: %s", what, err.msg);
        memset(copy.rgba, 0x5a, bytes);
        process_check(dev, &copy, k, what);
        free(copy.rgba);
    }
    pipe_device_unstage(dev);
}

/* Stagings that are not the image processed next. */
static void run_mismatch(pipe_device *dev, const char *mode, const pipe_result *view_ref,
                         const cnp_image *view)
{
    cnp_err err;
    char what[96];
    snprintf(what, sizeof what, "%s, staged and not processed", mode);
    /* Image 1 staged, then skipped (its item failed): 0 and 2 still right,
     * 2 (staged after) too, and 1 later without staging. */
    CHECK(pipe_device_stage(dev, &imgs[1], &err) == CNP_OK, "%s: %s", what, err.msg);
    process_check(dev, &imgs[0], 0, what);
    CHECK(pipe_device_stage(dev, &imgs[2], &err) == CNP_OK, "%s: %s", what, err.msg);
    CHECK(pipe_device_stage(dev, &imgs[3], &err) == CNP_OK, "%s: %s", what, err.msg);
    process_check(dev, &imgs[2], 2, what);
    process_check(dev, &imgs[4], 4, what); /* 3 staged, 4 not: an upload */
    process_check(dev, &imgs[3], 3, what);
    process_check(dev, &imgs[1], 1, what);
    pipe_device_unstage(dev);

    /* The same pixels' address, another size: not the staged image. */
    snprintf(what, sizeof what, "%s, staged at another size", mode);
    CHECK(pipe_device_stage(dev, &imgs[4], &err) == CNP_OK, "%s: %s", what, err.msg);
    pipe_result r;
    CHECK(pipe_device_process(dev, view, &r, &err) == CNP_OK, "%s: %s", what, err.msg);
    size_t n = (size_t)view->width * view->height;
    CHECK(r.mask && memcmp(r.mask, view_ref->mask, n) == 0 && r.ntrees == view_ref->ntrees &&
              (r.ntrees == 0 ||
               memcmp(r.trees, view_ref->trees, r.ntrees * sizeof *r.trees) == 0),
          "%s: differs from the view's result alone", what);
    pipe_result_free(&r);
    process_check(dev, &imgs[4], 4, what); /* still staged, still right */
    pipe_device_unstage(dev);
}

/* Failures on either queue with an image staged. */
static void run_failures(pipe_device *dev, const char *mode, bool pinned)
{
    cnp_err err;
    pipe_result r;
    char what[96];
    snprintf(what, sizeof what, "%s, failed staging copy", mode);
    if (pinned)
        g.fail_write_async = 1;
    else
        g.fail_write_blocking = 1;
    cnp_status st = pipe_device_stage(dev, &imgs[1], &err);
    g.fail_write_async = g.fail_write_blocking = 0;
    CHECK(st == CNP_ERR_OPENCL, "%s: status %d", what, st);
    process_check(dev, &imgs[0], 0, what);
    process_check(dev, &imgs[1], 1, what); /* uploaded, not the failed staging */

    snprintf(what, sizeof what, "%s, compute failure with an image staged", mode);
    CHECK(pipe_device_stage(dev, &imgs[3], &err) == CNP_OK, "%s: %s", what, err.msg);
    g.fail_fill = 1;
    st = pipe_device_process(dev, &imgs[2], &r, &err);
    g.fail_fill = 0;
    CHECK(st == CNP_ERR_OPENCL, "%s: status %d", what, st);
    process_check(dev, &imgs[3], 3, what);
    process_check(dev, &imgs[2], 2, what);
    pipe_device_unstage(dev);
}

int main(void)
{
    cnp_err err;
    test_crown crown;
    /* The model reads the image buffer on the device: the OpenCL backend. */
    test_crown_start(&crown);
    pipe_device *dev = crown.dev;
    for (int k = 0; k < NIMG; k++)
        CHECK_FATAL(synth_aerial(&imgs[k], sizes[k][0], sizes[k][1], 10, 11 + (uint64_t)k,
                                 &err) == CNP_OK,
                    "%s", err.msg);
    /* Each image alone, nothing staged. */
    for (int k = 0; k < NIMG; k++)
        CHECK_FATAL(pipe_device_process(dev, &imgs[k], &ref[k], &err) == CNP_OK, "%s",
                    err.msg);
    int with_trees = 0;
    for (int k = 0; k < NIMG; k++)
        with_trees += ref[k].ntrees > 0;
    CHECK(with_trees >= NIMG / 2, "only %d images with trees: a weak comparison", with_trees);
    /* Image 4's pixels as a 300 x 200 image (its first 60000 pixels). */
    cnp_image view = {.width = 300, .height = 200, .rgba = imgs[4].rgba};
    pipe_result view_ref;
    CHECK_FATAL(pipe_device_process(dev, &view, &view_ref, &err) == CNP_OK, "%s", err.msg);

    for (int pinned = 0; pinned < 2; pinned++) {
        const char *mode = pinned ? "pinned staging" : "direct writes";
        pipe_device_set_pinned(dev, pinned);
        run_sequence(dev, mode, true);
        run_scribble(dev, mode);
        run_mismatch(dev, mode, &view_ref, &view);
        run_failures(dev, mode, pinned);
        run_sequence(dev, mode, false); /* the device still works */
    }

    pipe_result_free(&view_ref);
    for (int k = 0; k < NIMG; k++) {
        pipe_result_free(&ref[k]);
        cnp_image_free(&imgs[k]);
    }
    test_crown_free(&crown);
    return TEST_RESULT();
}
