/* canopy run: processes local PNG files and writes the outputs next to each
 * other in a local directory. No service needed.
 *
 * Worker threads read, decode and encode concurrently; the device is shared
 * and used by one thread at a time, so decoding and encoding of some images
 * overlap the device work of another. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "canopy/log.h"
#include "canopy/pipeline.h"
#include "cli/cli.h"
#include "cli/commands.h"

struct job {
    char *path;
    const char *name; /* file name inside path */
};

struct run_state {
    const cnp_config *cfg;
    const char *outdir;
    const char *model_version;
    pipe_device *dev;
    pthread_mutex_t dev_lock;
    pthread_mutex_t print_lock;
    struct job *jobs;
    size_t njobs;
    atomic_size_t next;
    /* Totals, under print_lock. */
    size_t done, failed, trees;
    double mpix;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: canopy run --input DIR|FILE [--input ...] --output DIR [options]\n\n"
            "Binarizes and detects trees in local PNG files. For each <stem>.png writes\n"
            "<stem>.mask.png, <stem>.overlay.png and <stem>.trees.json into the output\n"
            "directory, prints one line per image and a summary.\n\n"
            "options:\n"
            "  -c, --config FILE      configuration file (see config/canopy.ini)\n"
            "  -i, --input PATH       a PNG file or a directory of PNG files (repeatable)\n"
            "  -o, --output DIR       output directory (created if missing)\n"
            "      --method M         [binarize] method: otsu | fixed | adaptive\n"
            "      --channel C        [binarize] channel: luma | exg\n"
            "      --threshold T      [binarize] threshold for --method fixed\n"
            "      --no-detector      binarization only\n"
            "      --model FILE       [detector] model\n"
            "      --set S.K=V        override any configuration key\n"
            "  -h, --help             this text\n\n"
            "Exit codes: 0 all done, 3 some images failed, 2 usage error, 1 fatal error.\n");
}

static bool has_png_ext(const char *name)
{
    size_t n = strlen(name);
    return n > 4 && strcasecmp(name + n - 4, ".png") == 0;
}

static int job_cmp(const void *a, const void *b)
{
    return strcmp(((const struct job *)a)->path, ((const struct job *)b)->path);
}

static int add_job(struct job **jobs, size_t *n, const char *dir, const char *name)
{
    struct job *grown = realloc(*jobs, (*n + 1) * sizeof **jobs);
    if (!grown)
        return -1;
    *jobs = grown;
    size_t len = strlen(dir) + strlen(name) + 2;
    char *path = malloc(len);
    if (!path)
        return -1;
    if (dir[0])
        snprintf(path, len, "%s/%s", dir, name);
    else
        snprintf(path, len, "%s", name);
    const char *slash = strrchr(path, '/');
    (*jobs)[*n].path = path;
    (*jobs)[*n].name = slash ? slash + 1 : path;
    (*n)++;
    return 0;
}

/* Adds a file, or every *.png of a directory (sorted, not recursive). */
static int collect(const char *input, struct job **jobs, size_t *n)
{
    struct stat st;
    if (stat(input, &st) != 0) {
        fprintf(stderr, "canopy run: %s: %s\n", input, strerror(errno));
        return CNP_EXIT_USAGE;
    }
    if (!S_ISDIR(st.st_mode))
        return add_job(jobs, n, "", input) ? CNP_EXIT_FATAL : CNP_EXIT_OK;
    DIR *d = opendir(input);
    if (!d) {
        fprintf(stderr, "canopy run: %s: %s\n", input, strerror(errno));
        return CNP_EXIT_USAGE;
    }
    size_t first = *n;
    struct dirent *de;
    int rc = CNP_EXIT_OK;
    while ((de = readdir(d)) != NULL && rc == CNP_EXIT_OK)
        if (de->d_name[0] != '.' && has_png_ext(de->d_name))
            rc = add_job(jobs, n, input, de->d_name) ? CNP_EXIT_FATAL : CNP_EXIT_OK;
    closedir(d);
    qsort(*jobs + first, *n - first, sizeof **jobs, job_cmp);
    if (*n == first)
        fprintf(stderr, "canopy run: %s: no .png files\n", input);
    return rc;
}

/* mkdir -p: creates the directory and its missing parents. */
static int mkdir_parents(const char *dir)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(path, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

static cnp_status write_output(const char *dir, const char *stem, const char *suffix,
                               const cnp_buf *data, cnp_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s%s", dir, stem, suffix);
    return cnp_file_write(path, data->data, data->len, err);
}

/* Processes one file; returns CNP_OK or fills err (prefixed with the path). */
static cnp_status process_one(struct run_state *s, const struct job *job, pipe_result *res,
                              cnp_err *err)
{
    cnp_image img = {0};
    pipe_outputs outs = {0};
    char stem[1024];
    cnp_status result = img_png_read_file(job->path, (uint64_t)s->cfg->limits.max_pixels, &img, err);
    if (result != CNP_OK)
        return result; /* the message names the path */
    pthread_mutex_lock(&s->dev_lock);
    result = pipe_device_process(s->dev, &img, res, err);
    pthread_mutex_unlock(&s->dev_lock);
    if (result != CNP_OK) {
        cnp_err_prefix(err, "%s", job->path);
        goto out;
    }
    if ((result = pipe_encode(s->cfg, &img, res, job->name, s->model_version, &outs, err)) != CNP_OK)
        goto out;
    pipe_stem(job->name, stem, sizeof stem);
    if ((result = write_output(s->outdir, stem, ".mask.png", &outs.mask_png, err)) != CNP_OK ||
        (result = write_output(s->outdir, stem, ".trees.json", &outs.trees_json, err)) != CNP_OK)
        goto out;
    if (outs.overlay_png.len &&
        (result = write_output(s->outdir, stem, ".overlay.png", &outs.overlay_png, err)) != CNP_OK)
        goto out;
out:
    pipe_outputs_free(&outs);
    cnp_image_free(&img);
    return result;
}

static void *worker(void *arg)
{
    struct run_state *s = arg;
    for (;;) {
        size_t i = atomic_fetch_add(&s->next, 1);
        if (i >= s->njobs)
            break;
        const struct job *job = &s->jobs[i];
        pipe_result res = {0};
        cnp_err err = {{0}};
        double t0 = cnp_now();
        cnp_status result = process_one(s, job, &res, &err);
        double ms = (cnp_now() - t0) * 1e3;
        pthread_mutex_lock(&s->print_lock);
        if (result == CNP_OK) {
            s->done++;
            s->trees += res.ntrees;
            s->mpix += (double)res.width * res.height / 1e6;
            char thr[16] = "adaptive";
            if (res.bin.threshold >= 0)
                snprintf(thr, sizeof thr, "%d", res.bin.threshold);
            printf("%-28s %5ux%-5u threshold %-8s cover %5.1f%%  trees %4zu  %7.1f ms\n",
                   job->name, res.width, res.height, thr, res.bin.canopy_cover * 100.0,
                   res.ntrees, ms);
        } else {
            s->failed++;
            printf("%-28s FAILED (%s): %s\n", job->name, cnp_status_name(result), err.msg);
        }
        fflush(stdout);
        pthread_mutex_unlock(&s->print_lock);
        pipe_result_free(&res);
    }
    return NULL;
}

static int run_jobs(struct run_state *s, int nthreads)
{
    pthread_t threads[64];
    if (nthreads > 64)
        nthreads = 64;
    if ((size_t)nthreads > s->njobs)
        nthreads = (int)s->njobs;
    double t0 = cnp_now();
    int started = 0;
    for (; started < nthreads; started++)
        if (pthread_create(&threads[started], NULL, worker, s) != 0)
            break;
    if (started == 0)
        worker(s);
    for (int i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    double secs = cnp_now() - t0;
    printf("\n%zu images: %zu ok, %zu failed; %zu trees; %.2f MPix in %.2f s (%.2f images/s, "
           "%.2f MPix/s)\n",
           s->njobs, s->done, s->failed, s->trees, s->mpix, secs,
           secs > 0 ? (double)s->done / secs : 0.0, secs > 0 ? s->mpix / secs : 0.0);
    return s->failed ? CNP_EXIT_PARTIAL : CNP_EXIT_OK;
}

int cmd_run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"input", required_argument, NULL, 'i'},
        {"output", required_argument, NULL, 'o'},
        {"method", required_argument, NULL, 'M'},
        {"channel", required_argument, NULL, 'C'},
        {"threshold", required_argument, NULL, 'T'},
        {"no-detector", no_argument, NULL, 'N'},
        {"model", required_argument, NULL, 'm'},
        {"set", required_argument, NULL, 'S'},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    const char *config = NULL, *outdir = NULL;
    const char *inputs[64];
    int ninputs = 0, c, rc = CNP_EXIT_OK;
    cli_overrides ov = {0};
    struct job *jobs = NULL;
    size_t njobs = 0;
    det_model *model = NULL;
    pipe_device *dev = NULL;
    cnp_config cfg;
    cnp_err err;

    optind = 1;
    while ((c = getopt_long(argc, argv, "c:i:o:h", opts, NULL)) != -1 && rc == CNP_EXIT_OK) {
        switch (c) {
        case 'c': config = optarg; break;
        case 'i':
            if (ninputs == 64) {
                fprintf(stderr, "canopy run: at most 64 --input\n");
                rc = CNP_EXIT_USAGE;
            } else {
                inputs[ninputs++] = optarg;
            }
            break;
        case 'o': outdir = optarg; break;
        case 'M': rc = cli_override(&ov, "binarize", "method", optarg); break;
        case 'C': rc = cli_override(&ov, "binarize", "channel", optarg); break;
        case 'T': rc = cli_override(&ov, "binarize", "threshold", optarg); break;
        case 'N': rc = cli_override(&ov, "detector", "enabled", "false"); break;
        case 'm': rc = cli_override(&ov, "detector", "model", optarg); break;
        case 'S': rc = cli_override_set(&ov, optarg); break;
        case 'h': usage(stdout); goto out;
        default: rc = CNP_EXIT_USAGE; break;
        }
    }
    if (rc != CNP_EXIT_OK)
        goto out;
    for (; optind < argc && ninputs < 64; optind++)
        inputs[ninputs++] = argv[optind];
    if (ninputs == 0 || !outdir) {
        usage(stderr);
        rc = CNP_EXIT_USAGE;
        goto out;
    }
    if ((rc = cli_config_load("run", config, &ov, &cfg)) != CNP_EXIT_OK)
        goto out;
    for (int i = 0; i < ninputs && rc == CNP_EXIT_OK; i++)
        rc = collect(inputs[i], &jobs, &njobs);
    if (rc != CNP_EXIT_OK)
        goto out;
    if (mkdir_parents(outdir) != 0) {
        fprintf(stderr, "canopy run: %s: %s\n", outdir, strerror(errno));
        rc = CNP_EXIT_USAGE;
        goto out;
    }
    if (pipe_model_load(&cfg, &model, &err) != CNP_OK) {
        fprintf(stderr, "canopy run: %s\n", err.msg);
        rc = CNP_EXIT_FATAL;
        goto out;
    }
    if (pipe_device_create(&cfg, model, &dev, &err) != CNP_OK) {
        fprintf(stderr, "canopy run: %s\n", err.msg);
        rc = CNP_EXIT_FATAL;
        goto out;
    }
    LOG_INFO("run", "%zu images on %s%s%s", njobs, pipe_device_description(dev),
             model ? ", model " : ", detector off", model ? det_model_version(model) : "");
    struct run_state s = {
        .cfg = &cfg,
        .outdir = outdir,
        .model_version = model ? det_model_version(model) : NULL,
        .dev = dev,
        .jobs = jobs,
        .njobs = njobs,
    };
    pthread_mutex_init(&s.dev_lock, NULL);
    pthread_mutex_init(&s.print_lock, NULL);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int nthreads = cfg.batch.threads > 0 ? cfg.batch.threads : (int)(cores > 0 ? cores : 1);
    rc = run_jobs(&s, nthreads);
    pthread_mutex_destroy(&s.dev_lock);
    pthread_mutex_destroy(&s.print_lock);
out:
    pipe_device_free(dev);
    det_model_free(model);
    for (size_t i = 0; i < njobs; i++)
        free(jobs[i].path);
    free(jobs);
    cli_overrides_free(&ov);
    return rc;
}
