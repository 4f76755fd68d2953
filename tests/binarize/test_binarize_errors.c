/* bin_engine_run on its failure paths, with OpenCL failures injected by
 * interposing clSetKernelArg, clEnqueueReadBuffer and clEnqueueWriteBuffer
 * (this executable's definitions win over libOpenCL's; each forwards to the
 * real one through dlsym(RTLD_NEXT) unless told to fail):
 *
 * - whichever call fails, every non-blocking read or write the engine (or
 *   bin_engine_run_image's upload) enqueued has completed when it returns:
 *   none may still target a dead stack frame or a buffer the caller frees;
 * - two failing clSetKernelArg calls report the first one's own code and
 *   name (OR-ing -38 and -50 gave -34, CL_INVALID_CONTEXT);
 * - the engine still works after each failure. */
#define _GNU_SOURCE
#include <stdint.h>

#include "canopy/binarize.h"
#include "canopy/synth.h"
#include "cl_interpose.h"
#include "devutil.h"
#include "testutil.h"

/* Injection plan; zeroed between cases. */
static struct {
    int fail_transfer;      /* fail the Nth non-blocking read/write (1-based), 0: none */
    cl_int transfer_code;
    const char *arg_kernel; /* fail clSetKernelArg of this kernel ... */
    cl_uint arg_index[2];   /* ... at these indices (UINT32_MAX: unused) */
    cl_int arg_code[2];
    int transfers;          /* non-blocking transfers seen */
    cl_event pending[16];   /* events of the non-blocking transfers enqueued */
    int npending;
} g;

CL_API_ENTRY cl_int CL_API_CALL clSetKernelArg(cl_kernel kernel, cl_uint index, size_t size,
                                               const void *value)
{
    if (g.arg_kernel) {
        char name[128] = "";
        clGetKernelInfo(kernel, CL_KERNEL_FUNCTION_NAME, sizeof name - 1, name, NULL);
        for (int i = 0; i < 2; i++)
            if (strcmp(name, g.arg_kernel) == 0 && index == g.arg_index[i])
                return g.arg_code[i];
    }
    return test_real_set_kernel_arg()(kernel, index, size, value);
}

/* Counts a non-blocking transfer; returns the code to fail it with, or 0. */
static cl_int transfer_begin(cl_bool blocking)
{
    if (blocking)
        return CL_SUCCESS;
    return ++g.transfers == g.fail_transfer ? g.transfer_code : CL_SUCCESS;
}

/* Keeps the event of a non-blocking transfer to look at later. */
static void transfer_enqueued(cl_bool blocking, cl_int rc, cl_event mine, cl_event *theirs)
{
    if (rc != CL_SUCCESS || blocking) {
        if (mine)
            clReleaseEvent(mine);
        return;
    }
    cl_event ev = theirs ? *theirs : mine;
    if (theirs)
        clRetainEvent(ev);
    if (g.npending < (int)(sizeof g.pending / sizeof g.pending[0]))
        g.pending[g.npending++] = ev;
    else
        clReleaseEvent(ev);
}

CL_API_ENTRY cl_int CL_API_CALL clEnqueueReadBuffer(cl_command_queue q, cl_mem buf,
                                                    cl_bool blocking, size_t off, size_t size,
                                                    void *ptr, cl_uint nwait,
                                                    const cl_event *wait, cl_event *ev)
{
    cl_int rc = transfer_begin(blocking);
    if (rc != CL_SUCCESS)
        return rc;
    cl_event mine = NULL;
    rc = test_real_read_buffer()(q, buf, blocking, off, size, ptr, nwait, wait, ev ? ev : &mine);
    transfer_enqueued(blocking, rc, mine, ev);
    return rc;
}

CL_API_ENTRY cl_int CL_API_CALL clEnqueueWriteBuffer(cl_command_queue q, cl_mem buf,
                                                     cl_bool blocking, size_t off, size_t size,
                                                     const void *ptr, cl_uint nwait,
                                                     const cl_event *wait, cl_event *ev)
{
    cl_int rc = transfer_begin(blocking);
    if (rc != CL_SUCCESS)
        return rc;
    cl_event mine = NULL;
    rc = test_real_write_buffer()(q, buf, blocking, off, size, ptr, nwait, wait, ev ? ev : &mine);
    transfer_enqueued(blocking, rc, mine, ev);
    return rc;
}

static ocl_ctx *g_ctx;

static void plan_reset(void)
{
    for (int i = 0; i < g.npending; i++)
        clReleaseEvent(g.pending[i]);
    memset(&g, 0, sizeof g);
    g.arg_index[0] = g.arg_index[1] = UINT32_MAX;
}

/* Number of transfers recorded that had not completed (checked the moment
 * bin_engine_run_image returned). */
static int still_pending(void)
{
    int n = 0;
    for (int i = 0; i < g.npending; i++) {
        cl_int st = CL_QUEUED;
        clGetEventInfo(g.pending[i], CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof st, &st, NULL);
        n += st > CL_COMPLETE; /* CL_COMPLETE is 0; errors are negative */
    }
    return n;
}

/* Runs the engine once under the current plan; expects a failure whose
 * message contains `want`, and nothing left pending at return. */
static void expect_failure(bin_engine *e, const cnp_image *img, uint8_t *mask, const char *what,
                           const char *want)
{
    bin_result res;
    cnp_err err = {{0}};
    cnp_status st = bin_engine_run_image(e, img, mask, &res, &err);
    int pending = still_pending(); /* before anything else can wait */
    CHECK_MSG(st == CNP_ERR_OPENCL, "%s: status %d (%s)", what, (int)st, err.msg);
    CHECK_MSG(pending == 0, "%s: %d of %d non-blocking transfers still queued at return", what,
              pending, g.npending);
    CHECK_MSG(strstr(err.msg, want) != NULL, "%s: '%s' lacks '%s'", what, err.msg, want);
    /* Whatever the engine left behind must not outlive this case. */
    clFinish(ocl_ctx_queue(g_ctx));
    plan_reset();
    CHECK_MSG(bin_engine_run_image(e, img, mask, &res, &err) == CNP_OK, "%s: next run: %s",
              what, err.msg);
    plan_reset();
}

static void test_failures(const cnp_image *img, enum cnp_bin_method method)
{
    bin_params p = {.method = method, .channel = CNP_CH_LUMA, .threshold = 120, .window = 15,
                    .offset = 4};
    bin_engine *e = NULL;
    cnp_err err;
    uint8_t *mask = malloc((size_t)img->width * img->height);
    CHECK(mask != NULL);
    CHECK_MSG(bin_engine_create(g_ctx, &p, &e, &err) == CNP_OK, "%s", err.msg);
    if (!mask || !e)
        goto out;
    plan_reset();
    bin_result res;
    CHECK_MSG(bin_engine_run_image(e, img, mask, &res, &err) == CNP_OK, "%s", err.msg);
    /* Count the non-blocking transfers of one run: the upload, then the
     * engine's own (threshold for fixed, reads of threshold, count, mask). */
    int transfers = g.transfers;
    plan_reset();
    char what[128];
    /* Fail each non-blocking transfer after the first (the upload) in turn:
     * those enqueued before it must still have completed at return. */
    for (int k = 2; k <= transfers; k++) {
        g.fail_transfer = k;
        g.transfer_code = CL_OUT_OF_RESOURCES;
        snprintf(what, sizeof what, "method %d, transfer %d of %d fails", (int)method, k,
                 transfers);
        expect_failure(e, img, mask, what, "CL_OUT_OF_RESOURCES (-5)");
    }
    /* Two argument failures of the last kernel: the first call's own code
     * and name are reported, and what was enqueued before is complete. */
    const char *kernel = method == CNP_BIN_ADAPTIVE ? "box_v_mask" : "threshold_mask";
    g.arg_kernel = kernel;
    g.arg_index[0] = 3;
    g.arg_code[0] = CL_INVALID_MEM_OBJECT; /* -38 | -50 == -34, CL_INVALID_CONTEXT */
    g.arg_index[1] = 4;
    g.arg_code[1] = CL_INVALID_ARG_VALUE;
    snprintf(what, sizeof what, "method %d, %s arguments 3 and 4 fail", (int)method, kernel);
    char want[128];
    snprintf(want, sizeof want, "%s, 3): CL_INVALID_MEM_OBJECT (-38)", kernel);
    expect_failure(e, img, mask, what, want);
out:
    bin_engine_free(e);
    free(mask);
}

int main(void)
{
    cnp_config cfg;
    cnp_err err;
    test_ocl_start(&cfg, &g_ctx);
    /* Large enough that the kernels are still running when a failure
     * returns early: a transfer queued behind them is then visibly pending. */
    cnp_image img = {0};
    CHECK_MSG(synth_aerial(&img, 3000, 2000, 400, 7, &err) == CNP_OK, "%s", err.msg);
    if (img.rgba) {
        test_failures(&img, CNP_BIN_OTSU);
        test_failures(&img, CNP_BIN_FIXED);
        test_failures(&img, CNP_BIN_ADAPTIVE);
    }
    cnp_image_free(&img);
    plan_reset();
    ocl_ctx_free(g_ctx);
    return TEST_RESULT();
}
