/* canopy bench: binarization throughput on the OpenCL device against the C
 * reference, and PNG decode/encode throughput, medians over repeated runs,
 * measured in one run. Prints a table, and JSON with --json FILE (only then:
 * a tracked results file is never overwritten by a plain run). */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "canopy/binarize.h"
#include "canopy/gpu.h"
#include "canopy/image.h"
#include "canopy/synth.h"
#include "cli/cli.h"
#include "cli/commands.h"

#define MAX_REPEAT 101
/* Relative to the working directory: the repository's NEON images when run
 * from its root; elsewhere (installed) the generated image alone. */
#define BENCH_DEFAULT_IMAGES "tests/data/neon"

struct bench_image {
    char name[64];
    cnp_image img;
    cnp_buf png; /* encoded at the configured level */
};

static cJSON *g_rows;

static void report(const char *what, const char *image, double mpix, double secs)
{
    printf("%-34s %-22s %10.1f MPix/s  (%8.3f ms)\n", what, image, mpix / secs, secs * 1e3);
    cJSON *row = cJSON_CreateObject();
    cJSON_AddStringToObject(row, "benchmark", what);
    cJSON_AddStringToObject(row, "image", image);
    cJSON_AddNumberToObject(row, "mpix", mpix);
    cJSON_AddNumberToObject(row, "median_s", secs);
    cJSON_AddNumberToObject(row, "mpix_per_s", mpix / secs);
    cJSON_AddItemToArray(g_rows, row);
}

static int load_images(const char *dir, const cnp_config *cfg, int size,
                       struct bench_image *imgs, int *n)
{
    static const char *const neon[] = {"OSBS_029", "SOAP_061", "YELL_541000_west"};
    cnp_err err;
    struct stat st;
    *n = 0;
    bool have_dir = stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
    if (!have_dir)
        fprintf(stderr, "canopy bench: %s: no such directory; the generated image only "
                        "(--images DIR for the NEON images)\n", dir);
    for (int i = 0; i < 3 && have_dir; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.png", dir, neon[i]);
        struct bench_image *b = &imgs[*n];
        memset(b, 0, sizeof *b);
        if (img_png_read_file(path, 0, &b->img, &err) != CNP_OK) {
            fprintf(stderr, "canopy bench: skipping %s\n", err.msg);
            continue;
        }
        snprintf(b->name, sizeof b->name, "%s", neon[i]);
        (*n)++;
    }
    struct bench_image *b = &imgs[*n];
    memset(b, 0, sizeof *b);
    if (synth_aerial(&b->img, (uint32_t)size, (uint32_t)size, (uint32_t)size * size / 2000,
                     42, &err) != CNP_OK) {
        fprintf(stderr, "canopy bench: %s\n", err.msg);
        return CNP_EXIT_FATAL;
    }
    snprintf(b->name, sizeof b->name, "synthetic %dx%d", size, size);
    (*n)++;
    for (int i = 0; i < *n; i++) {
        if (img_png_encode_rgb(&imgs[i].img, cfg->output.png_level, &imgs[i].png, &err) != CNP_OK) {
            fprintf(stderr, "canopy bench: %s\n", err.msg);
            return CNP_EXIT_FATAL;
        }
    }
    return CNP_EXIT_OK;
}

/* The --json FILE's directory must take a file: found out before minutes of
 * benchmarks, not after. */
static int check_json_target(const char *json)
{
    char *copy = strdup(json);
    if (!copy)
        return CNP_EXIT_FATAL;
    const char *dir = dirname(copy);
    struct stat st;
    int rc = CNP_EXIT_OK;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "canopy bench: --json %s: directory %s does not exist\n", json, dir);
        rc = CNP_EXIT_USAGE;
    } else if (access(dir, W_OK) != 0) {
        fprintf(stderr, "canopy bench: --json %s: directory %s is not writable: %s\n", json,
                dir, strerror(errno));
        rc = CNP_EXIT_USAGE;
    }
    free(copy);
    return rc;
}

static int bench_binarize(const cnp_config *cfg, struct bench_image *imgs, int n, int repeat)
{
    cnp_err err;
    ocl_ctx *ctx = NULL;
    bin_engine *eng = NULL;
    bin_params p;
    int rc = CNP_EXIT_FATAL;
    if (bin_params_from_config(&cfg->binarize, &p, &err) != CNP_OK ||
        ocl_ctx_create(&cfg->opencl, &ctx, &err) != CNP_OK || bin_engine_create(ctx, &p, &eng, &err) != CNP_OK) {
        fprintf(stderr, "canopy bench: %s\n", err.msg);
        goto out;
    }
    printf("device: %s\n\n", ocl_ctx_description(ctx));
    for (int i = 0; i < n; i++) {
        cnp_image *img = &imgs[i].img;
        size_t px = (size_t)img->width * img->height;
        double mpix = (double)px / 1e6;
        uint8_t *mask = malloc(px);
        double t[MAX_REPEAT];
        bin_result r;
        if (!mask)
            goto out;
        /* Device: upload included, as the pipeline pays it once per image. */
        bin_engine_run_image(eng, img, mask, &r, &err); /* warm-up: buffers, caches */
        for (int k = 0; k < repeat; k++) {
            double t0 = cnp_now();
            if (bin_engine_run_image(eng, img, mask, &r, &err) != CNP_OK) {
                fprintf(stderr, "canopy bench: %s\n", err.msg);
                free(mask);
                goto out;
            }
            t[k] = cnp_now() - t0;
        }
        report("binarize: OpenCL device", imgs[i].name, mpix, cnp_median(t, repeat));
        for (int k = 0; k < repeat; k++) {
            double t0 = cnp_now();
            bin_ref_run(&p, img, mask, &r, &err);
            t[k] = cnp_now() - t0;
        }
        report("binarize: C reference", imgs[i].name, mpix, cnp_median(t, repeat));
        free(mask);
    }
    rc = CNP_EXIT_OK;
out:
    bin_engine_free(eng);
    ocl_ctx_free(ctx);
    return rc;
}

static void bench_png(const cnp_config *cfg, struct bench_image *imgs, int n, int repeat)
{
    cnp_err err;
    double t[MAX_REPEAT];
    for (int i = 0; i < n; i++) {
        cnp_image *img = &imgs[i].img;
        size_t px = (size_t)img->width * img->height;
        double mpix = (double)px / 1e6;
        for (int k = 0; k < repeat; k++) {
            cnp_image out = {0};
            double t0 = cnp_now();
            img_png_decode(imgs[i].png.data, imgs[i].png.len, imgs[i].name, 0, &out, &err);
            t[k] = cnp_now() - t0;
            cnp_image_free(&out);
        }
        report("png: decode RGB", imgs[i].name, mpix, cnp_median(t, repeat));
        for (int k = 0; k < repeat; k++) {
            cnp_buf b = {0};
            double t0 = cnp_now();
            img_png_encode_rgb(img, cfg->output.png_level, &b, &err);
            t[k] = cnp_now() - t0;
            cnp_buf_free(&b);
        }
        report("png: encode RGB (overlay)", imgs[i].name, mpix, cnp_median(t, repeat));
        uint8_t *mask = malloc(px);
        if (!mask)
            continue;
        for (size_t j = 0; j < px; j++)
            mask[j] = img->rgba[4 * j + 1] > img->rgba[4 * j] ? 255 : 0;
        for (int k = 0; k < repeat; k++) {
            cnp_buf b = {0};
            double t0 = cnp_now();
            img_png_encode_mask(mask, img->width, img->height, cfg->output.png_level, &b, &err);
            t[k] = cnp_now() - t0;
            cnp_buf_free(&b);
        }
        report("png: encode 1-bit mask", imgs[i].name, mpix, cnp_median(t, repeat));
        free(mask);
    }
}

int cmd_bench(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"repeat", required_argument, NULL, 'r'},
        {"size", required_argument, NULL, 's'},
        {"images", required_argument, NULL, 'i'},
        {"json", required_argument, NULL, 'j'},
        {"set", required_argument, NULL, 'S'},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    const char *config = NULL, *json = "", *dir = BENCH_DEFAULT_IMAGES;
    int repeat = 7, size = 4096, c, rc = CNP_EXIT_OK;
    cli_overrides ov = {0};
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:r:s:i:j:h", opts, NULL)) != -1 && rc == CNP_EXIT_OK) {
        switch (c) {
        case 'c': config = optarg; break;
        case 'r': repeat = atoi(optarg); break;
        case 's': size = atoi(optarg); break;
        case 'i': dir = optarg; break;
        case 'j': json = optarg; break;
        case 'S': rc = cli_override_set(&ov, optarg); break;
        case 'h':
            printf("usage: canopy bench [options]\n\n"
                   "Binarization throughput (MPix/s, upload included) on the OpenCL device and\n"
                   "of the C reference, and PNG decode/encode throughput, on the NEON images\n"
                   "and a generated N x N image. Medians of N runs.\n\n"
                   "options:\n"
                   "  -c, --config FILE      configuration file (see config/canopy.ini)\n"
                   "  -r, --repeat N         runs per measurement, 1..%d (default 7)\n"
                   "  -s, --size N           side of the generated image, 1..16384 (default 4096)\n"
                   "  -i, --images DIR       directory of the NEON PNGs (default %s, when it\n"
                   "                         exists: the repository's, run from its root)\n"
                   "  -j, --json FILE        also write the results as JSON to FILE (checked\n"
                   "                         before anything runs)\n"
                   "      --set S.K=V        override any configuration key\n"
                   "  -h, --help             this text\n",
                   MAX_REPEAT, BENCH_DEFAULT_IMAGES);
            return CNP_EXIT_OK;
        default: rc = CNP_EXIT_USAGE; break;
        }
    }
    if (rc == CNP_EXIT_OK && (repeat < 1 || repeat > MAX_REPEAT || size < 1 || size > 16384)) {
        fprintf(stderr, "canopy bench: --repeat must be 1..%d and --size 1..16384\n", MAX_REPEAT);
        rc = CNP_EXIT_USAGE;
    }
    if (rc == CNP_EXIT_OK && json[0])
        rc = check_json_target(json);
    cnp_config cfg;
    if (rc != CNP_EXIT_OK || (rc = cli_config_load("bench", config, &ov, &cfg)) != CNP_EXIT_OK) {
        cli_overrides_free(&ov);
        return rc;
    }
    struct bench_image imgs[4];
    int n = 0;
    g_rows = cJSON_CreateArray();
    rc = load_images(dir, &cfg, size, imgs, &n);
    if (rc == CNP_EXIT_OK)
        rc = bench_binarize(&cfg, imgs, n, repeat);
    if (rc == CNP_EXIT_OK)
        bench_png(&cfg, imgs, n, repeat);
    if (rc == CNP_EXIT_OK && json[0]) {
        cJSON *doc = cJSON_CreateObject();
        cJSON_AddNumberToObject(doc, "repeat", repeat);
        cJSON_AddItemToObject(doc, "results", g_rows);
        g_rows = NULL;
        char *text = cJSON_Print(doc);
        cnp_err err;
        if (!text || cnp_file_write(json, text, strlen(text), &err) != CNP_OK) {
            fprintf(stderr, "canopy bench: %s\n", text ? err.msg : "out of memory");
            rc = CNP_EXIT_FATAL;
        } else {
            printf("\nwrote %s\n", json);
        }
        cJSON_free(text);
        cJSON_Delete(doc);
    }
    cJSON_Delete(g_rows);
    g_rows = NULL;
    for (int i = 0; i < n; i++) {
        cnp_image_free(&imgs[i].img);
        cnp_buf_free(&imgs[i].png);
    }
    cli_overrides_free(&ov);
    return rc;
}
