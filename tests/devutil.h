/* The start of a test on the device: an OpenCL context. It ends the test
 * at once where there is no device, skipped or failed as test_skip_or_fail
 * says (tests/testutil.h). */
#ifndef CANOPY_TESTS_DEVUTIL_H
#define CANOPY_TESTS_DEVUTIL_H

#include <stdio.h>
#include <stdlib.h>

#include "canopy/config.h"
#include "canopy/gpu.h"
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

#endif
