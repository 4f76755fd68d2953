/* Device top-k (src/detect/engine/topk.c, kernels/topk.cl) against the C
 * reference (a full sort): exact keys and order, on odd sizes around the
 * chunk of one work-group, k below, at and above n, many equal scores (the
 * flat index breaks the ties, as in the graph engine's keys), a nonzero
 * base, and the keys outside the result untouched. The count is read on
 * the device (0, 1, below and at the room the launch is sized for); keys
 * past it are never read. `small` (the Oclgrind
 * run, tests/oclgrind) keeps to sizes a simulator finishes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canopy/config.h"
#include "canopy/gpu.h"
#include "detect/engine/topk.h"
#include "testutil.h"

static unsigned g_seed = 777;

static unsigned urand(void)
{
    g_seed = g_seed * 1103515245u + 12345u;
    return g_seed >> 8;
}

/* n keys as graph_scores makes them: ~score bits high, a unique flat index
 * low (a shuffled 0..n-1), scores from `levels` distinct values. */
static void make_keys(uint64_t *keys, size_t n, unsigned levels)
{
    uint32_t *idx = malloc(n * sizeof *idx);
    CHECK_FATAL(idx);
    for (size_t i = 0; i < n; i++)
        idx[i] = (uint32_t)i;
    for (size_t i = n; i > 1; i--) {
        size_t j = urand() % i;
        uint32_t t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
    for (size_t i = 0; i < n; i++) {
        float s = 0.05f + 0.9f * (float)(urand() % levels) / (float)levels;
        uint32_t bits;
        memcpy(&bits, &s, sizeof bits);
        keys[i] = ((uint64_t)~bits << 32) | idx[i];
    }
    free(idx);
}

/* n keys at base, the launch sized for cap >= n keys, n itself only in a
 * device buffer (at slot 2 of 4, the others wrong): the keys past n up to
 * cap are smaller than any real key, so reading them would show. */
static void check_case(ocl_ctx *ctx, det_topk *t, size_t base, size_t n, size_t cap, size_t k,
                       unsigned levels)
{
    size_t total = base + cap + 5;
    uint64_t *in = malloc(total * sizeof *in), *dev = malloc(total * sizeof *dev);
    CHECK_FATAL(in && dev);
    for (size_t i = 0; i < total; i++)
        in[i] = 0x1234567800000000ull + i; /* outside the n keys: must stay */
    make_keys(in + base, n, levels);
    for (size_t i = n; i < cap; i++)
        in[base + i] = i; /* past the count: never read */
    cnp_err err;
    cl_int rc, counts[4] = {(cl_int)cap + 1, -1, (cl_int)n, 0};
    cl_mem buf = ocl_buffer_create(ocl_ctx_context(ctx), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                                   total * sizeof *in, in, &rc);
    CHECK_FATAL(rc == CL_SUCCESS, ": %d", rc);
    cl_mem cbuf = ocl_buffer_create(ocl_ctx_context(ctx), CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                                    sizeof counts, counts, &rc);
    CHECK_FATAL(rc == CL_SUCCESS, ": %d", rc);
    cl_command_queue q = ocl_ctx_queue(ctx);
    CHECK(det_topk_enqueue(t, q, buf, base, cbuf, 2, cap, k, &err) == CNP_OK, ": %s", err.msg);
    CHECK_FATAL(clEnqueueReadBuffer(q, buf, CL_TRUE, 0, total * sizeof *dev, dev, 0, NULL,
                                    NULL) == CL_SUCCESS);
    size_t m = n < k ? n : k;
    uint64_t *ref = malloc((n ? n : 1) * sizeof *ref);
    CHECK_FATAL(ref);
    memcpy(ref, in + base, n * sizeof *ref);
    det_topk_ref(ref, n);
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < m; i++)
        if (dev[base + i] != ref[i] && bad++ == 0)
            first = i;
    CHECK(bad == 0,
          ": base %zu n %zu cap %zu k %zu levels %u: %zu of %zu keys differ, first at %zu", base,
          n, cap, k, levels, bad, m, first);
    CHECK(memcmp(dev, in, base * sizeof *in) == 0 &&
              memcmp(dev + base + m, in + base + m, (total - base - m) * sizeof *in) == 0,
          ": base %zu n %zu cap %zu k %zu: keys outside the result changed", base, n, cap, k);
    ocl_buffer_release(buf);
    ocl_buffer_release(cbuf);
    free(ref);
    free(in);
    free(dev);
}

int main(int argc, char **argv)
{
    bool small = argc > 1 && strcmp(argv[1], "small") == 0;
    cnp_config cfg;
    cnp_config_defaults(&cfg);
    ocl_ctx *ctx = NULL;
    cnp_err err;
    if (ocl_ctx_create(&cfg.opencl, &ctx, &err) != CNP_OK)
        return test_skip_or_fail(err.msg);
    size_t max_n = small ? 5000 : 70001, max_k = 3000;
    det_topk *t = NULL;
    CHECK_FATAL(det_topk_create(ctx, max_n, max_k, &t, &err) == CNP_OK, ": %s", err.msg);
    /* Over the room: refused, named. */
    CHECK(det_topk_enqueue(t, ocl_ctx_queue(ctx), NULL, 0, NULL, 0, max_n + 1, 1, &err) ==
              CNP_ERR_INTERNAL,
          ": ran past its room");
    /* (base, n on the device, cap the launch is sized for, k, levels) */
    check_case(ctx, t, 0, 0, 0, 1, 3);       /* nothing at all */
    check_case(ctx, t, 4, 0, 4097, 100, 3);  /* count 0 of a room of three chunks */
    check_case(ctx, t, 0, 1, 1, 1, 3);       /* count 1 == cap */
    check_case(ctx, t, 2, 1, 2049, 5, 3);    /* count 1, two chunks of room */
    check_case(ctx, t, 3, 7, 7, 5, 2);       /* count == cap */
    check_case(ctx, t, 3, 7, 301, 5, 2);
    check_case(ctx, t, 0, 7, 9, 1000, 4);    /* k above n: all, sorted */
    check_case(ctx, t, 11, 2047, 2047, 1000, 50);
    check_case(ctx, t, 1, 2047, 4999, 1000, 50); /* one chunk of the three launched */
    check_case(ctx, t, 0, 2048, 2048, 2048, 7);
    check_case(ctx, t, 5, 2049, 2049, 3000, 1); /* every score equal: index order */
    check_case(ctx, t, 0, 4999, 4999, 1000, 97);
    if (!small) {
        check_case(ctx, t, 17, 70001, 70001, 1000, 1000); /* 35 runs */
        check_case(ctx, t, 0, 70001, 70001, 3000, 5);
        check_case(ctx, t, 0, 65536, 70001, 1, 65536);
        check_case(ctx, t, 0, 33333, 70001, 2999, 100000);
        check_case(ctx, t, 9, 3, 70001, 2999, 2);
    }
    det_topk_free(t);
    ocl_ctx_free(ctx);
    return TEST_RESULT();
}
