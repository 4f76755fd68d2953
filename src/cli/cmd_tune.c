/* canopy tune: measures CLBlast's kernel parameters for the selected device
 * on the GEMM shapes of the configured models and writes the tuning file
 * that every engine applies at start (src/gpu/tune.h). */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "canopy/buf.h"
#include "canopy/detect.h"
#include "canopy/gpu.h"
#include "cli/cli.h"
#include "cli/commands.h"
#include "detect/gemm_shapes.h"
#include "gpu/tune.h"

#define TUNE_MAX_MODELS 8
#define TUNE_MAX_SHAPES 256

extern char **environ;

/* How to start a sample in a child process: this executable with the same
 * configuration flags. */
typedef struct tune_child {
    const char *config;
    const char *sets[CLI_MAX_SETS];
    int n_sets;
} tune_child;

/* Reads the child's answer into line (len bytes) until it closes its end or
 * limit_s seconds pass; false when time ran out. */
static bool read_until(int fd, char *line, size_t cap, double limit_s)
{
    size_t len = 0;
    double end = cnp_now() + limit_s;
    for (;;) {
        double left = end - cnp_now();
        if (left <= 0)
            return false;
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int r = poll(&pf, 1, left > 1e6 ? 1000000000 : (int)(left * 1e3) + 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            continue; /* the loop's check ends it */
        ssize_t got = len < cap - 1 ? read(fd, line + len, cap - 1 - len) : 0;
        if (got <= 0)
            break;
        len += (size_t)got;
    }
    line[len] = 0;
    return true;
}

/* ocl_tune_sample_fn: `canopy tune --sample KERNEL:M:N:K:FRACTION` in a
 * child, which prints the kernel line ("NAME K=V ...") or "error: ...";
 * killed after limit_s seconds (what is left of --budget: CLBlast's tuners
 * cannot be stopped inside, so the child is). */
static cnp_status sample_in_child(void *user, const char *kernel, size_t m, size_t n, size_t k,
                                  double fraction, double limit_s, ocl_tune_kernel *out,
                                  cnp_err *err)
{
    const tune_child *tc = user;
    char spec[160];
    snprintf(spec, sizeof spec, "%s:%zu:%zu:%zu:%.9g", kernel, m, n, k, fraction);
    char *argv[8 + 2 * CLI_MAX_SETS];
    int a = 0;
    argv[a++] = "canopy";
    argv[a++] = "tune";
    if (tc->config) {
        argv[a++] = "-c";
        argv[a++] = (char *)tc->config;
    }
    for (int i = 0; i < tc->n_sets; i++) {
        argv[a++] = "--set";
        argv[a++] = (char *)tc->sets[i];
    }
    argv[a++] = "--sample";
    argv[a++] = spec;
    argv[a] = NULL;
    int fds[2];
    if (pipe(fds) != 0) {
        cnp_err_set(err, "tuner %s: pipe failed", kernel);
        return CNP_ERR_IO;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    pid_t pid;
    int rc = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        cnp_err_set(err, "tuner %s: cannot start /proc/self/exe: %s", kernel, strerror(rc));
        return CNP_ERR_IO;
    }
    char line[2048] = "";
    bool in_time = read_until(fds[0], line, sizeof line, limit_s > 0 ? limit_s : 1e9);
    if (!in_time)
        kill(pid, SIGKILL);
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!in_time) {
        cnp_err_set(err, "stopped at the end of --budget after %.0f s: sample skipped", limit_s);
        return CNP_ERR_LIMIT;
    }
    line[strcspn(line, "\n")] = 0;
    char why[256];
    if (WIFSIGNALED(status)) {
        cnp_err_set(err, "the tuner crashed (signal %d): sample skipped", WTERMSIG(status));
        return CNP_ERR_OPENCL;
    }
    /* Exit 3: the tuner crashed after a first search had a winner, printed. */
    bool salvaged = WIFEXITED(status) && WEXITSTATUS(status) == 3;
    if (!WIFEXITED(status) || (WEXITSTATUS(status) != 0 && !salvaged) ||
        strncmp(line, "error: ", 7) == 0) {
        cnp_err_set(err, "%s", strncmp(line, "error: ", 7) == 0 ? line + 7 : "the tuner failed");
        return WIFEXITED(status) && WEXITSTATUS(status) == 2 ? CNP_ERR_INVALID
                                                              : CNP_ERR_NOTFOUND;
    }
    if (!ocl_tuning_parse_kernel(line, out, why, sizeof why)) {
        cnp_err_set(err, "tuner %s answered '%.200s': %s", kernel, line, why);
        return CNP_ERR_INVALID;
    }
    return CNP_OK;
}

/* The child's side: one sample, its kernel line on stdout. */
static int run_sample(const cnp_config *cfg, const char *spec)
{
    char kernel[32];
    size_t m, n, k;
    double f;
    int used = 0;
    if (sscanf(spec, "%31[A-Za-z]:%zu:%zu:%zu:%lf%n", kernel, &m, &n, &k, &f, &used) != 5 ||
        spec[used] || !(f > 0 && f <= 1)) {
        printf("error: --sample '%s' is not KERNEL:M:N:K:FRACTION\n", spec);
        return CNP_EXIT_USAGE;
    }
    cnp_opencl_config oc = cfg->opencl;
    snprintf(oc.tuning_file, sizeof oc.tuning_file, "off");
    oc.queue_profiling = true; /* CLBlast's tuners time kernels by their events */
    ocl_ctx *ctx = NULL;
    cnp_err err;
    ocl_tune_kernel out;
    cnp_status st = ocl_ctx_create(&oc, &ctx, &err);
    if (st == CNP_OK) {
        ocl_tune_salvage_on_crash();
        st = ocl_tune_sample(ctx, kernel, m, n, k, f, &out, &err);
    }
    ocl_ctx_free(ctx);
    if (st != CNP_OK) {
        printf("error: %s\n", err.msg);
        return st == CNP_ERR_INVALID ? CNP_EXIT_USAGE : CNP_EXIT_FATAL;
    }
    printf("%s", out.name);
    for (size_t i = 0; i < out.n; i++)
        printf(" %s=%zu", out.keys[i], out.values[i]);
    printf("\n");
    return CNP_EXIT_OK;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: canopy tune [-c FILE] [--budget SECONDS] [--model FILE]... [--output FILE]\n"
            "\n"
            "Runs CLBlast's tuners on the GEMM shapes of the models ([detector] model, or\n"
            "each --model) for the device [opencl] selects, and keeps a kernel's parameters\n"
            "only when they compute SGEMM right and CLBlastSgemm over those shapes measures\n"
            "faster than with CLBlast's defaults. Writes the file every engine applies at\n"
            "start. Each search is sized from the time left and its measured speed; one\n"
            "still running at the end of the budget is stopped (what it found is lost).\n\n"
            "options:\n"
            "  -c, --config FILE      configuration file (see config/canopy.ini)\n"
            "  -b, --budget SECONDS   time for the search, 1..604800 (default 600)\n"
            "  -m, --model FILE       a model whose GEMM shapes to tune for (repeatable, up\n"
            "                         to %d; default [detector] model)\n"
            "  -o, --output FILE      where to write (default [opencl] tuning_file, else\n"
            "                         beside the kernel cache, keyed by device, driver and\n"
            "                         CLBlast version)\n"
            "      --set S.K=V        override any configuration key\n"
            "  -h, --help             this text\n",
            TUNE_MAX_MODELS);
}

/* The GEMM shapes of every model, at the batch its engine runs. */
static int gather_shapes(const cnp_config *cfg, const ocl_ctx *ctx, char **models, int n_models,
                         ocl_gemm_shape *shapes, size_t *n)
{
    const char *configured[TUNE_MAX_MODELS];
    int count = n_models;
    for (int i = 0; i < n_models; i++)
        configured[i] = models[i];
    if (count == 0) {
        configured[0] = cfg->detector.model;
        count = 1;
    }
    int batch = cfg->detector.patch_batch;
    if (batch <= 0) {
        cl_device_type type = 0;
        clGetDeviceInfo(ocl_ctx_device(ctx), CL_DEVICE_TYPE, sizeof type, &type, NULL);
        batch = (type & CL_DEVICE_TYPE_CPU) ? 1 : 8;
    }
    for (int i = 0; i < count; i++) {
        char path[2048];
        det_model *m = NULL;
        cnp_err err;
        cnp_status st = det_model_resolve_path(configured[i], path, sizeof path, &err);
        if (st == CNP_OK)
            st = det_model_load(path, &m, &err);
        if (st == CNP_OK)
            st = det_model_gemm_shapes(m, &cfg->detector, det_model_has_boxes(m) ? batch : 1,
                                       shapes, TUNE_MAX_SHAPES, n, &err);
        det_model_free(m);
        if (st != CNP_OK) {
            fprintf(stderr, "canopy tune: model %s: %s\n", configured[i], err.msg);
            return st == CNP_ERR_NOTFOUND || st == CNP_ERR_FORMAT || st == CNP_ERR_CONFIG
                       ? CNP_EXIT_USAGE
                       : CNP_EXIT_FATAL;
        }
    }
    return CNP_EXIT_OK;
}

int cmd_tune(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"budget", required_argument, NULL, 'b'},
        {"model", required_argument, NULL, 'm'},  {"output", required_argument, NULL, 'o'},
        {"set", required_argument, NULL, 's'},    {"help", no_argument, NULL, 'h'},
        {"sample", required_argument, NULL, 'S'},
        {0, 0, 0, 0},
    };
    const char *config = NULL, *output = NULL, *sample = NULL;
    tune_child child = {0};
    char *models[TUNE_MAX_MODELS];
    int n_models = 0, c, rc = CNP_EXIT_OK;
    double budget = 600;
    cli_overrides o = {0};
    while (rc == CNP_EXIT_OK && (c = getopt_long(argc, argv, "c:b:m:o:s:h", opts, NULL)) != -1) {
        char *end = NULL;
        switch (c) {
        case 'c': config = child.config = optarg; break;
        case 'o': output = optarg; break;
        case 'S': sample = optarg; break;
        case 's':
            rc = cli_override_set(&o, optarg);
            if (rc == CNP_EXIT_OK)
                child.sets[child.n_sets++] = optarg;
            break;
        case 'b':
            budget = strtod(optarg, &end);
            if (end == optarg || *end || !(budget >= 1 && budget <= 7 * 86400.0)) {
                fprintf(stderr, "canopy tune: --budget '%s': seconds from 1 to 604800\n",
                        optarg);
                rc = CNP_EXIT_USAGE;
            }
            break;
        case 'm':
            if (n_models == TUNE_MAX_MODELS) {
                fprintf(stderr, "canopy tune: more than %d --model\n", TUNE_MAX_MODELS);
                rc = CNP_EXIT_USAGE;
            } else
                models[n_models++] = optarg;
            break;
        case 'h':
            usage(stdout);
            cli_overrides_free(&o);
            return CNP_EXIT_OK;
        default: rc = CNP_EXIT_USAGE;
        }
    }
    if (rc == CNP_EXIT_OK && optind < argc) {
        fprintf(stderr, "canopy tune: unexpected argument '%s'\n", argv[optind]);
        rc = CNP_EXIT_USAGE;
    }
    cnp_config cfg;
    if (rc == CNP_EXIT_OK)
        rc = cli_config_load("tune", config, &o, &cfg);
    cli_overrides_free(&o);
    if (rc != CNP_EXIT_OK)
        return rc;
    if (sample)
        return run_sample(&cfg, sample);
    /* The search starts from CLBlast's own defaults, whatever file exists. */
    cnp_opencl_config oc = cfg.opencl;
    snprintf(oc.tuning_file, sizeof oc.tuning_file, "off");
    cnp_err err;
    ocl_ctx *ctx = NULL;
    if (ocl_ctx_create(&oc, &ctx, &err) != CNP_OK) {
        fprintf(stderr, "canopy tune: %s\n", err.msg);
        return CNP_EXIT_FATAL;
    }
    char path[4200];
    if (output)
        snprintf(path, sizeof path, "%s", output);
    else if (cfg.opencl.tuning_file[0] && strcmp(cfg.opencl.tuning_file, "off") != 0)
        snprintf(path, sizeof path, "%s", cfg.opencl.tuning_file);
    else
        ocl_tuning_default_path(ctx, path, sizeof path);
    ocl_gemm_shape *shapes = calloc(TUNE_MAX_SHAPES, sizeof *shapes);
    ocl_tuning *t = calloc(1, sizeof *t);
    size_t n = 0;
    if (!shapes || !t) {
        fprintf(stderr, "canopy tune: out of memory\n");
        rc = CNP_EXIT_FATAL;
    }
    if (rc == CNP_EXIT_OK)
        rc = gather_shapes(&cfg, ctx, models, n_models, shapes, &n);
    if (rc == CNP_EXIT_OK) {
        printf("tuning CLBlast %s on %s: %zu GEMM shapes, budget %.0f s\n",
               ocl_clblast_version(), ocl_ctx_description(ctx), n, budget);
        fflush(stdout);
        cnp_status st = ocl_tune_run(ctx, shapes, n, budget, sample_in_child, &child, stdout, t, &err);
        if (st == CNP_OK)
            st = ocl_tuning_save(t, path, &err);
        if (st != CNP_OK) {
            fprintf(stderr, "canopy tune: %s\n", err.msg);
            rc = CNP_EXIT_FATAL;
        } else
            printf("SGEMM %.1f ms with CLBlast's defaults, %.1f ms tuned (%zu kernels "
                   "changed): wrote %s\n",
                   t->default_ms, t->tuned_ms, t->n, path);
    }
    free(shapes);
    free(t);
    ocl_ctx_free(ctx);
    return rc;
}
