/* CLBlast tuning file (src/gpu/tune.h): round trip, applied through
 * CLBlastOverrideParameters (a deliberately chosen parameter set changes
 * what CLBlast runs, and a good one keeps SGEMM equal to a C reference),
 * foreign-device and corrupt files refused with clear messages, the
 * default file beside the kernel cache picked up by every new context, and
 * one real tuner sample. */
#include <clblast_c.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "canopy/gpu.h"
#include "gpu/tune.h"
#include "testutil.h"

static char g_dir[256];

static void add_kernel(ocl_tuning *t, const char *name, const char *params)
{
    char buf[1024];
    char why[256];
    snprintf(buf, sizeof buf, "%s %s", name, params);
    CHECK_FATAL(ocl_tuning_parse_kernel(buf, &t->k[t->n], why, sizeof why), ": %s", why);
    t->n++;
}

/* The parameter set the issue measured on this CPU (not CLBlast's default). */
#define XGEMM_GOOD                                                                          \
    "GEMMK=0 KREG=1 KWG=32 KWI=2 MDIMA=8 MDIMC=8 MWG=64 NDIMB=16 NDIMC=8 NWG=128 SA=0 SB=1 " \
    "STRM=0 STRN=0 VWM=8 VWN=4"
/* Complete but unusable: MWG is not a multiple of MDIMC * VWM. */
#define XGEMM_BAD                                                                           \
    "GEMMK=0 KREG=1 KWG=32 KWI=2 MDIMA=8 MDIMC=8 MWG=24 NDIMB=16 NDIMC=8 NWG=128 SA=0 SB=1 " \
    "STRM=0 STRN=0 VWM=8 VWN=4"

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK_FATAL(f != NULL, ": %s", path);
    fputs(text, f);
    fclose(f);
}

/* C = A B (row major) on the device; max |C - reference|, or -1 when
 * CLBlast refuses to run. Shapes large enough for CLBlast's Xgemm (the
 * indirect path), odd so the padding kernels run too. */
static double sgemm_error(ocl_ctx *ctx, size_t m, size_t n, size_t k)
{
    float *a = malloc(sizeof(float) * m * k), *b = malloc(sizeof(float) * k * n),
          *c = malloc(sizeof(float) * m * n);
    CHECK_FATAL(a && b && c);
    for (size_t i = 0; i < m * k; i++)
        a[i] = (float)((i * 7919) % 113) / 113.0f - 0.5f;
    for (size_t i = 0; i < k * n; i++)
        b[i] = (float)((i * 104729) % 97) / 97.0f - 0.5f;
    cl_int rc;
    cl_context cl = ocl_ctx_context(ctx);
    cl_command_queue q = ocl_ctx_queue(ctx);
    cl_mem da = clCreateBuffer(cl, CL_MEM_COPY_HOST_PTR, sizeof(float) * m * k, a, &rc);
    cl_mem db = clCreateBuffer(cl, CL_MEM_COPY_HOST_PTR, sizeof(float) * k * n, b, &rc);
    cl_mem dc = clCreateBuffer(cl, CL_MEM_READ_WRITE, sizeof(float) * m * n, NULL, &rc);
    CHECK_FATAL(rc == CL_SUCCESS);
    CLBlastStatusCode st = CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo,
                                        CLBlastTransposeNo, m, n, k, 1.0f, da, 0, k, db, 0, n,
                                        0.0f, dc, 0, n, &q, NULL);
    double worst = -1;
    if (st == CLBlastSuccess &&
        clEnqueueReadBuffer(q, dc, CL_TRUE, 0, sizeof(float) * m * n, c, 0, NULL, NULL) ==
            CL_SUCCESS) {
        worst = 0;
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++) {
                double s = 0;
                for (size_t p = 0; p < k; p++)
                    s += (double)a[i * k + p] * b[p * n + j];
                double d = fabs(s - c[i * n + j]);
                worst = d > worst ? d : worst;
            }
    }
    clReleaseMemObject(da);
    clReleaseMemObject(db);
    clReleaseMemObject(dc);
    free(a);
    free(b);
    free(c);
    return worst;
}

static ocl_ctx *make_ctx(const char *tuning_file, cnp_status *st, cnp_err *err)
{
    cnp_opencl_config oc = {0};
    snprintf(oc.cache_dir, sizeof oc.cache_dir, "%s", g_dir);
    snprintf(oc.tuning_file, sizeof oc.tuning_file, "%s", tuning_file);
    oc.queue_profiling = true; /* test_sample runs a tuner */
    ocl_ctx *ctx = NULL;
    *st = ocl_ctx_create(&oc, &ctx, err);
    return ctx;
}

static void test_round_trip_and_apply(ocl_ctx *ctx)
{
    ocl_tuning t, back;
    ocl_tuning_init(&t, ctx);
    t.default_ms = 12.5;
    t.tuned_ms = 4.25;
    add_kernel(&t, "Xgemm", XGEMM_GOOD);
    add_kernel(&t, "GemmRoutine", "XGEMM_MIN_INDIRECT_SIZE=64"); /* always Xgemm */
    add_kernel(&t, "Copy", "COPY_DIMX=16 COPY_DIMY=32 COPY_VW=2 COPY_WPT=1");
    char path[512];
    snprintf(path, sizeof path, "%s/good.txt", g_dir);
    cnp_err err;
    CHECK_FATAL(ocl_tuning_save(&t, path, &err) == CNP_OK, ": %s", err.msg);
    CHECK_FATAL(ocl_tuning_load(path, &back, &err) == CNP_OK, ": %s", err.msg);
    CHECK(strcmp(back.device, ocl_ctx_device_name(ctx)) == 0);
    CHECK(strcmp(back.driver, ocl_ctx_driver(ctx)) == 0);
    CHECK(strcmp(back.clblast, ocl_clblast_version()) == 0);
    CHECK(back.default_ms == 12.5 && back.tuned_ms == 4.25);
    CHECK(back.n == 3 && strcmp(back.k[0].name, "Xgemm") == 0 && back.k[0].n == 16);
    for (size_t i = 0; i < 3; i++)
        CHECK(memcmp(&back.k[i], &t.k[i], sizeof t.k[i]) == 0, ": kernel %zu", i);
    CHECK(ocl_tuning_check(&back, ctx, path, &err) == CNP_OK, ": %s", err.msg);

    /* The good set: SGEMM as the reference. */
    CHECK(ocl_tuning_apply(&back, ctx, path, &err) == CNP_OK, ": %s", err.msg);
    double e = sgemm_error(ctx, 771, 517, 301);
    CHECK(e >= 0 && e < 1e-3, ": error %g with the chosen parameters", e);

    /* The unusable set is what CLBlast now runs: it refuses or errs. */
    ocl_tuning bad;
    ocl_tuning_init(&bad, ctx);
    add_kernel(&bad, "Xgemm", XGEMM_BAD);
    CHECK(ocl_tuning_apply(&bad, ctx, "bad", &err) == CNP_OK, ": %s", err.msg);
    e = sgemm_error(ctx, 771, 517, 301);
    CHECK(e < 0 || e > 1, ": CLBlast ran MWG=24 right (error %g): the override was not applied",
          e);

    /* Back to the good set through a new context's tuning_file. */
    cnp_status st;
    ocl_ctx *c2 = make_ctx(path, &st, &err);
    CHECK_FATAL(st == CNP_OK, ": %s", err.msg);
    CHECK(strcmp(ocl_ctx_tuning(c2), path) == 0);
    e = sgemm_error(c2, 771, 517, 301);
    CHECK(e >= 0 && e < 1e-3, ": error %g after the file was applied again", e);
    ocl_ctx_free(c2);

    /* A set missing a parameter: CLBlast refuses it, named. */
    ocl_tuning part;
    ocl_tuning_init(&part, ctx);
    add_kernel(&part, "Xgemm", "GEMMK=0 KWG=32");
    CHECK(ocl_tuning_apply(&part, ctx, "partial", &err) == CNP_ERR_CONFIG);
    CHECK(strstr(err.msg, "partial") && strstr(err.msg, "Xgemm") &&
              strstr(err.msg, "missing"),
          ": %s", err.msg);
}

static void test_refused(ocl_ctx *ctx)
{
    char path[512];
    cnp_err err;
    cnp_status st;
    ocl_tuning t;
    /* Another device's file. */
    snprintf(path, sizeof path, "%s/foreign.txt", g_dir);
    char text[1024];
    snprintf(text, sizeof text,
             "format 1\ndevice NVIDIA H100 80GB HBM3\ndriver 550.54\nclblast %s\n"
             "kernel Copy COPY_DIMX=16 COPY_DIMY=32 COPY_VW=2 COPY_WPT=1\n",
             ocl_clblast_version());
    write_file(path, text);
    CHECK(ocl_tuning_load(path, &t, &err) == CNP_OK, ": %s", err.msg);
    CHECK(ocl_tuning_check(&t, ctx, path, &err) == CNP_ERR_CONFIG);
    CHECK(strstr(err.msg, "NVIDIA H100 80GB HBM3") && strstr(err.msg, ocl_ctx_device_name(ctx)) &&
              strstr(err.msg, "canopy tune"),
          ": %s", err.msg);
    ocl_ctx *c2 = make_ctx(path, &st, &err);
    CHECK(c2 == NULL && st == CNP_ERR_CONFIG);
    CHECK(strstr(err.msg, "[opencl] tuning_file") && strstr(err.msg, path), ": %s", err.msg);

    /* Corrupt files: the line and the reason. */
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"format 2\n", ":1: format '2'"},
        {"device x\n", ":1: not a canopy tuning file"},
        {"format 1\ndevice d\ndriver v\nclblast 1\nkernel Xgemm MWG=abc\n",
         ":5: kernel Xgemm: 'MWG=abc' is not NAME=NUMBER"},
        {"format 1\nkernel Sgemv A=1\n", ":2: unknown CLBlast kernel 'Sgemv'"},
        {"format 1\ndevice d\n", "incomplete"},
        {"format 1\ndevice d\ndriver v\nclblast 1\nkernel Copy A=1\nkernel Copy A=2\n",
         ":6: kernel Copy twice"},
    };
    snprintf(path, sizeof path, "%s/corrupt.txt", g_dir);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file(path, bad[i].text);
        CHECK(ocl_tuning_load(path, &t, &err) == CNP_ERR_FORMAT, ": case %zu", i);
        CHECK(strstr(err.msg, path) && strstr(err.msg, bad[i].want), ": case %zu: %s", i,
              err.msg);
    }
    c2 = make_ctx(path, &st, &err);
    CHECK(c2 == NULL && st == CNP_ERR_CONFIG, ": a corrupt tuning_file must stop the start");
    snprintf(path, sizeof path, "%s/absent.txt", g_dir);
    c2 = make_ctx(path, &st, &err);
    CHECK(c2 == NULL && st == CNP_ERR_CONFIG && strstr(err.msg, "cannot open"), ": %s",
          err.msg);
}

static void test_default_file(ocl_ctx *ctx)
{
    char path[4200];
    cnp_err err;
    cnp_status st;
    ocl_tuning_default_path(ctx, path, sizeof path);
    CHECK(strncmp(path, g_dir, strlen(g_dir)) == 0 && strstr(path, "clblast-tuning-"), ": %s",
          path);
    remove(path);
    ocl_ctx *c2 = make_ctx("", &st, &err);
    CHECK_FATAL(st == CNP_OK, ": %s", err.msg);
    CHECK(ocl_ctx_tuning(c2)[0] == 0, ": untuned, yet %s", ocl_ctx_tuning(c2));
    ocl_ctx_free(c2);
    ocl_tuning t;
    ocl_tuning_init(&t, ctx);
    add_kernel(&t, "Xgemm", XGEMM_GOOD);
    CHECK_FATAL(ocl_tuning_save(&t, path, &err) == CNP_OK, ": %s", err.msg);
    c2 = make_ctx("", &st, &err);
    CHECK_FATAL(st == CNP_OK, ": %s", err.msg);
    CHECK(strcmp(ocl_ctx_tuning(c2), path) == 0, ": applied '%s'", ocl_ctx_tuning(c2));
    ocl_ctx_free(c2);
    c2 = make_ctx("off", &st, &err);
    CHECK(st == CNP_OK && ocl_ctx_tuning(c2)[0] == 0);
    ocl_ctx_free(c2);
    /* A damaged default file: refused with a warning, the context starts. */
    write_file(path, "format 1\nkernel Xgemm MWG\n");
    c2 = make_ctx("", &st, &err);
    CHECK(st == CNP_OK && c2 && ocl_ctx_tuning(c2)[0] == 0);
    ocl_ctx_free(c2);
    remove(path);
}

/* One real sample of CLBlast's tuner: the Copy kernel's parameters. */
static void test_sample(ocl_ctx *ctx)
{
    ocl_tune_kernel k;
    cnp_err err;
    CHECK(ocl_tune_sample(ctx, "Copy", 64, 64, 0, 1.0 / 32, &k, &err) == CNP_OK, ": %s",
          err.msg);
    CHECK(strcmp(k.name, "Copy") == 0 && k.n == 4, ": %s with %zu parameters", k.name, k.n);
    for (size_t i = 0; i < k.n; i++)
        CHECK(strncmp(k.keys[i], "COPY_", 5) == 0 && k.values[i] >= 1, ": %s=%zu", k.keys[i],
              k.values[i]);
    CHECK(ocl_tune_sample(ctx, "Sgemv", 64, 64, 0, 0.5, &k, &err) == CNP_ERR_INVALID &&
              strstr(err.msg, "Sgemv"),
          ": %s", err.msg);
}

/* The size of a kernel's next sample: twice the fraction when its time
 * (dt per fraction) fits what is left, less where only that fits, none
 * when not even 1.25x fits or the space is done. */
static void test_next_fraction(void)
{
    CHECK(ocl_tune_next_fraction(0.01, 2.0, 100.0) == 0.02, ": room for 2x");
    CHECK(fabs(ocl_tune_next_fraction(0.01, 2.0, 3.0) - 0.015) < 1e-12, ": 1.5x fits");
    CHECK(ocl_tune_next_fraction(0.01, 2.0, 2.4) == 0, ": 1.2x only: stop");
    CHECK(ocl_tune_next_fraction(0.01, 2.0, 0.0) == 0, ": no time left");
    CHECK(ocl_tune_next_fraction(0.75, 1.0, 100.0) == 1.0, ": capped at the whole space");
    CHECK(ocl_tune_next_fraction(1.0, 1.0, 100.0) == 0, ": the space is done");
    CHECK(ocl_tune_next_fraction(0.01, 0.0, 1.0) == 0.02, ": an instant sample doubles");
    /* A 5 s budget and 9 s samples: the next never starts. */
    CHECK(ocl_tune_next_fraction(1.0 / 2048, 9.0, 5.0 - 9.0) == 0, ": over budget");
}

int main(void)
{
    test_next_fraction();
    snprintf(g_dir, sizeof g_dir, "/tmp/canopy-test-tuning-XXXXXX");
    CHECK_FATAL(mkdtemp(g_dir) != NULL);
    cnp_err err;
    cnp_status st;
    ocl_ctx *ctx = make_ctx("off", &st, &err);
    if (st != CNP_OK) {
        fprintf(stderr, "no OpenCL device: %s\n", err.msg);
        return 77;
    }
    test_refused(ctx);
    test_default_file(ctx);
    test_round_trip_and_apply(ctx);
    test_sample(ctx);
    ocl_ctx_free(ctx);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    CHECK(system(cmd) == 0);
    return TEST_RESULT();
}
