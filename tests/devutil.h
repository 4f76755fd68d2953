/* The start of a test on the device: an OpenCL context, the pipeline's
 * device side, the crown model's configuration. test_ocl_start and
 * test_crown_start end the test at once where there is no device, skipped
 * or failed as test_skip_or_fail says (tests/testutil.h). */
#ifndef CANOPY_TESTS_DEVUTIL_H
#define CANOPY_TESTS_DEVUTIL_H

#include <stdio.h>
#include <stdlib.h>

#include "canopy/config.h"
#include "canopy/detect.h"
#include "canopy/gpu.h"
#include "canopy/pipeline.h"
#include "testutil.h"

/* *cfg gets the defaults and the CANOPY_* environment (CANOPY_OPENCL_CACHE_DIR
 * from scripts/test.sh: defaults alone would cache kernels and the
 * remembered conv paths in the user's ~/.cache/canopy), *ctx the OpenCL
 * context they select (the caller frees it). A configuration the
 * environment spoils fails the test. */
static inline void test_ocl_start(cnp_config *cfg, ocl_ctx **ctx)
{
    cnp_err err;
    if (cnp_config_load(cfg, NULL, &err) != CNP_OK) {
        fprintf(stderr, "configuration: %s\n", err.msg);
        exit(1);
    }
    if (ocl_ctx_create(&cfg->opencl, ctx, &err) != CNP_OK)
        exit(test_skip_or_fail(err.msg));
}

/* The defaults with the shipped crown model (models/crown-1.1.cnw). */
static inline void test_crown_config(cnp_config *cfg)
{
    cnp_config_defaults(cfg);
    snprintf(cfg->detector.model, sizeof cfg->detector.model, "%s/models/crown-1.1.cnw",
             CANOPY_SOURCE_DIR);
}

/* pipe_device_create on the sections of cfg it uses (no classifier);
 * model NULL: binarization only. */
static inline cnp_status test_pipe_device(const cnp_config *cfg, const det_model *model,
                                          pipe_device **dev, cnp_err *err)
{
    pipe_device_params dp = {.opencl = &cfg->opencl, .binarize = &cfg->binarize,
                             .detector = &cfg->detector, .device = &cfg->device};
    *dev = NULL;
    return pipe_device_create(&dp, model, dev, err);
}

/* The crown model's device side (test_crown_start, test_crown_free). */
typedef struct test_crown {
    cnp_config cfg; /* what it was made from */
    det_model *model;
    pipe_device *dev;
} test_crown;

/* The crown model on the OpenCL backend (the models run there too),
 * 256-pixel tiles on the direct conv path (nothing measured at start). */
static inline void test_crown_start(test_crown *c)
{
    cnp_err err;
    test_crown_config(&c->cfg);
    c->cfg.detector.tile = 256;
    c->cfg.detector.conv = DET_CONV_DIRECT;
    c->cfg.device.backend = CNP_BACKEND_OPENCL;
    c->model = NULL;
    CHECK_FATAL(pipe_model_load(&c->cfg.detector, &c->model, &err) == CNP_OK, "%s", err.msg);
    if (test_pipe_device(&c->cfg, c->model, &c->dev, &err) != CNP_OK) {
        det_model_free(c->model);
        exit(test_skip_or_fail(err.msg));
    }
}

static inline void test_crown_free(test_crown *c)
{
    pipe_device_free(c->dev);
    det_model_free(c->model);
}

#endif
