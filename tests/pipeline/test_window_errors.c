/* pipe_device_detect_window on a failure after its non-blocking upload:
 * whatever fails in the detector (here clEnqueueFillBuffer, interposed:
 * this executable's definition wins over libOpenCL's and forwards to the
 * real one through dlsym(RTLD_NEXT) unless told to fail), the upload has
 * completed when it returns, because stage_window.c frees or reuses the
 * window's pixels right after. Then the device still works. */
#define _GNU_SOURCE
#include "canopy/synth.h"
#include "cl_interpose.h"
#include "devutil.h"
#include "pipeline/pl_internal.h"
#include "testutil.h"

static struct {
    int fail_fill;            /* fail clEnqueueFillBuffer with CL_OUT_OF_RESOURCES */
    cl_event pending[64];     /* non-blocking writes enqueued */
    int npending;
} g;

CL_API_ENTRY cl_int CL_API_CALL clEnqueueWriteBuffer(cl_command_queue q, cl_mem buf,
                                                     cl_bool blocking, size_t off, size_t size,
                                                     const void *ptr, cl_uint nwait,
                                                     const cl_event *wait, cl_event *ev)
{
    cl_event mine = NULL;
    cl_int rc = test_real_write_buffer()(q, buf, blocking, off, size, ptr, nwait, wait,
                                         ev ? ev : &mine);
    cl_event e = ev ? *ev : mine;
    if (rc == CL_SUCCESS && !blocking && g.npending < 64) {
        if (ev)
            clRetainEvent(e);
        g.pending[g.npending++] = e;
    } else if (mine) {
        clReleaseEvent(mine);
    }
    return rc;
}

TEST_FILL_BUFFER_FAILING_WHILE(g.fail_fill)

static int still_pending(void)
{
    int n = 0;
    for (int i = 0; i < g.npending; i++) {
        cl_int st = CL_QUEUED;
        clGetEventInfo(g.pending[i], CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof st, &st, NULL);
        n += st > CL_COMPLETE;
    }
    return n;
}

static void forget_pending(void)
{
    for (int i = 0; i < g.npending; i++)
        clReleaseEvent(g.pending[i]);
    g.npending = 0;
}

int main(void)
{
    cnp_err err;
    test_crown crown;
    /* The failure is injected into OpenCL calls: the models run there too. */
    test_crown_start(&crown);
    pipe_device *dev = crown.dev;
    /* A large window: its upload is still running when a failure returns
     * early, unless the queue is finished first. */
    cnp_image img = {0};
    CHECK_FATAL(synth_aerial(&img, 2048, 2048, 40, 5, &err) == CNP_OK, "%s", err.msg);
    for (int round = 0; round < 3; round++) {
        forget_pending();
        g.fail_fill = 1;
        cnp_tree *trees = NULL;
        size_t n = 0;
        cnp_status st = pipe_device_detect_window(dev, img.rgba, img.width, img.height, &trees,
                                                  &n, &err);
        int pending = still_pending();
        g.fail_fill = 0;
        CHECK(st == CNP_ERR_OPENCL, "round %d: status %d (%s)", round, st, err.msg);
        CHECK(g.npending >= 1, "round %d: no non-blocking upload was seen", round);
        CHECK(pending == 0, "round %d: %d upload(s) still pending after the failure returned",
              round, pending);
        free(trees);
    }
    /* The device works after the failures. */
    cnp_tree *trees = NULL;
    size_t n = 0;
    CHECK(pipe_device_detect_window(dev, img.rgba, 256, 256, &trees, &n, &err) == CNP_OK, "%s",
          err.msg);
    free(trees);
    forget_pending();
    cnp_image_free(&img);
    test_crown_free(&crown);
    return TEST_RESULT();
}
