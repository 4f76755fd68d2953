/* Device limits: a buffer larger than the device allows is not asked for;
 * the image fails with CNP_ERR_LIMIT (a permanent failure of the item, not a
 * retry) and a reason naming the limit and both sizes, and the device goes
 * on working. The limit is lowered with ocl_set_max_buffer_bytes, as a
 * small GPU's CL_DEVICE_MAX_MEM_ALLOC_SIZE would be. */
#include "canopy/synth.h"
#include "devutil.h"
#include "pipeline/pl_internal.h"
#include "testutil.h"

static cnp_status process(pipe_device *dev, uint32_t w, uint32_t h, cnp_err *err)
{
    cnp_image img = {0};
    CHECK_FATAL(synth_aerial(&img, w, h, 12, 3, err) == CNP_OK, "%s", err->msg);
    pipe_result res;
    memset(&res, 0, sizeof res);
    cnp_status st = pipe_device_process(dev, &img, &res, err);
    pipe_result_free(&res);
    cnp_image_free(&img);
    return st;
}

int main(void)
{
    cnp_config cfg;
    cnp_err err;
    cnp_config_defaults(&cfg);
    pipe_device *dev = NULL;
    if (test_pipe_device(&cfg, NULL, &dev, &err) != CNP_OK)
        return test_skip_or_fail(err.msg);
    uint64_t own = pipe_device_max_pixels(dev);
    CHECK(own > 0 && own <= UINT32_MAX, "device max pixels %llu", (unsigned long long)own);

    ocl_set_max_buffer_bytes(100000);
    CHECK(pipe_device_max_pixels(dev) == 25000, "%llu",
          (unsigned long long)pipe_device_max_pixels(dev));
    /* 200 x 200 RGBA is 160000 bytes: refused before clCreateBuffer. */
    cnp_status st = process(dev, 200, 200, &err);
    CHECK(st == CNP_ERR_LIMIT, "status %d: %s", st, err.msg);
    CHECK(strstr(err.msg, "CL_DEVICE_MAX_MEM_ALLOC_SIZE") && strstr(err.msg, "160000") &&
              strstr(err.msg, "100000"),
          "the reason does not name the limit and sizes: %s", err.msg);
    /* As an item's failure: permanent, recorded, not retried. */
    pl_item it;
    memset(&it, 0, sizeof it);
    it.state = ITEM_DECODED;
    item_fail(&it, st, "%s", err.msg);
    CHECK(it.state == ITEM_FAILED_PERMANENT);
    /* 150 x 150 fits (90000 bytes): the device still works under the limit. */
    st = process(dev, 150, 150, &err);
    CHECK(st == CNP_OK, "%s", err.msg);
    ocl_set_max_buffer_bytes(0);
    st = process(dev, 200, 200, &err);
    CHECK(st == CNP_OK, "with the device's own limits: %s", err.msg);
    /* A buffer the real device refuses (beyond its global memory). */
    cl_int rc = CL_SUCCESS;
    cnp_err e2;
    cl_mem m = ocl_buffer_create(NULL, CL_MEM_READ_WRITE, 16, NULL, &rc);
    CHECK(m == NULL && rc != CL_SUCCESS);
    CHECK(ocl_check(rc, "a buffer without a context", &e2) == CNP_ERR_OPENCL,
          "a plain OpenCL error is not a limit: %s", e2.msg);
    pipe_device_free(dev);

    /* Programs are built with -cl-fp32-correctly-rounded-divide-sqrt exactly
     * when the device reports CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT. */
    ocl_ctx *ctx = NULL;
    CHECK_FATAL(ocl_ctx_create(&cfg.opencl, &ctx, &err) == CNP_OK, "%s", err.msg);
    cl_device_fp_config fp = 0;
    clGetDeviceInfo(ocl_ctx_device(ctx), CL_DEVICE_SINGLE_FP_CONFIG, sizeof fp, &fp, NULL);
    bool reported = (fp & CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT) != 0;
    CHECK(ocl_ctx_fp32_correctly_rounded(ctx) == reported);
    cl_program prog = NULL;
    CHECK_FATAL(ocl_program_get(ctx, "binarize", "", &prog, &err) == CNP_OK, "%s", err.msg);
    char opts[1024] = "";
    clGetProgramBuildInfo(prog, ocl_ctx_device(ctx), CL_PROGRAM_BUILD_OPTIONS, sizeof opts - 1,
                          opts, NULL);
    CHECK((strstr(opts, "-cl-fp32-correctly-rounded-divide-sqrt") != NULL) == reported,
          "device reports it: %d; build options '%s'", reported, opts);
    fprintf(stderr, "correctly rounded fp32 divide/sqrt: %s; build options '%s'\n",
            reported ? "reported" : "not reported", opts);

    /* A context keeps any number of programs (a model's conv shapes each
     * build variants): 40 option strings of one file, each built once and
     * the same program when asked again. */
    enum { VARIANTS = 40 };
    cl_program variants[VARIANTS];
    for (int i = 0; i < VARIANTS; i++) {
        char o[64];
        snprintf(o, sizeof o, "-DCANOPY_TEST_VARIANT=%d", i);
        CHECK_FATAL(ocl_program_get(ctx, "crop", o, &variants[i], &err) == CNP_OK,
                    "program %d: %s", i, err.msg);
    }
    for (int i = 0; i < VARIANTS; i++) {
        char o[64];
        snprintf(o, sizeof o, "-DCANOPY_TEST_VARIANT=%d", i);
        cl_program again = NULL;
        CHECK(ocl_program_get(ctx, "crop", o, &again, &err) == CNP_OK && again == variants[i],
              "program %d built again or lost", i);
        CHECK(i == 0 || variants[i] != variants[i - 1], "programs %d and %d are one", i - 1, i);
    }
    ocl_ctx_free(ctx);
    return TEST_RESULT();
}
