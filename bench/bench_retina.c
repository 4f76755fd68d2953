/* bench_retina: an imported RetinaNet (.cnw version 2, canopy model import)
 * on the OpenCL device: images/s and MPix/s of det_box_engine, whole images
 * (patch_size 0: one model(image) call each) and one image in DeepForest's
 * patches (also one patch at a time against batches of patches through
 * the graph engine); then, on the first image, the time of every stage (im2col,
 * CLBlast SGEMM, epilogue of each conv, the other nodes, decode + NMS) and
 * each conv's GFLOP/s against a bare CLBlast SGEMM of the same M x N x K on
 * the same device; the bytes of the device buffers the engine allocates;
 * optionally one run at a larger min_size / max_size (DeepForest's real
 * 800 / 1333). Medians over repeats; each whole image gets one warm-up run
 * first (kernel builds, CLBlast's program cache), the later parts reuse
 * those kernels and run without. Prints a table and writes a JSON file
 * (bench/retina.sh merges it with PyTorch's).
 *
 *   bench_retina --model FILE [--tiled PNG] [--patch-size N]
 *                [--patch-overlap F] [--patch-iou F] [--repeats N]
 *                [--large-min-size N --large-max-size N] [--json FILE]
 *                [--tiled-only] [-c FILE] IMAGE.png...
 *
 * --tiled-only: only the tiled image's patches (DeepForest's predict_tile),
 * for bench/retina.sh --full at DeepForest's real sizes, where the other
 * parts would take hours on a CPU device.
 */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canopy/config.h"
#include "canopy/detect.h"
#include "canopy/gpu.h"
#include "canopy/image.h"
#include "detect/detect_internal.h"
#include "detect/graph.h"
#include "detect/patches.h"
#include "common/sgemm_timer.h"

#define MAX_REPEATS 64
#define MAX_IMAGES 16

typedef struct bench_opts {
    const char *model, *tiled, *json, *config;
    const char *images[MAX_IMAGES];
    int n_images, repeats, patch_size, large_min, large_max, tiled_only;
    double patch_overlap, patch_iou;
} bench_opts;

static int usage(void)
{
    fprintf(stderr, "usage: bench_retina --model FILE [--tiled PNG] [--patch-size N] "
                    "[--patch-overlap F] [--patch-iou F] [--repeats N] [--large-min-size N "
                    "--large-max-size N] [--json FILE] [--tiled-only] [-c FILE] IMAGE.png...\n");
    return 2;
}

static int parse_args(int argc, char **argv, bench_opts *o)
{
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'},
        {"tiled", required_argument, NULL, 't'},
        {"patch-size", required_argument, NULL, 'p'},
        {"patch-overlap", required_argument, NULL, 'o'},
        {"patch-iou", required_argument, NULL, 'u'},
        {"repeats", required_argument, NULL, 'r'},
        {"large-min-size", required_argument, NULL, 'L'},
        {"large-max-size", required_argument, NULL, 'M'},
        {"json", required_argument, NULL, 'j'},
        {"config", required_argument, NULL, 'c'},
        {"tiled-only", no_argument, NULL, 'T'},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    *o = (bench_opts){.json = "bench_retina.json", .repeats = 3, .patch_size = 400,
                      .patch_overlap = 0.05, .patch_iou = 0.15};
    int c;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 't': o->tiled = optarg; break;
        case 'p': o->patch_size = atoi(optarg); break;
        case 'o': o->patch_overlap = atof(optarg); break;
        case 'u': o->patch_iou = atof(optarg); break;
        case 'r': o->repeats = atoi(optarg); break;
        case 'L': o->large_min = atoi(optarg); break;
        case 'M': o->large_max = atoi(optarg); break;
        case 'j': o->json = optarg; break;
        case 'c': o->config = optarg; break;
        case 'T': o->tiled_only = 1; break;
        default: return usage();
        }
    }
    for (int i = optind; i < argc && o->n_images < MAX_IMAGES; i++)
        o->images[o->n_images++] = argv[i];
    if (!o->model || (o->n_images == 0 && !(o->tiled_only && o->tiled)) ||
        optind + o->n_images != argc)
        return usage();
    if (o->repeats < 1 || o->repeats > MAX_REPEATS || o->patch_size < 1 ||
        (o->large_min > 0) != (o->large_max > 0) || o->large_min < 0) {
        fprintf(stderr, "bench_retina: --repeats 1..%d, --patch-size > 0, --large-min-size "
                        "and --large-max-size together\n", MAX_REPEATS);
        return 2;
    }
    return 0;
}

/* FLOPs of one conv node at output oh x ow: 2 M N K (the GEMM). */
static double conv_flops(const det_node *n, int oh, int ow)
{
    return 2.0 * n->cout * (double)oh * ow * n->cin * n->k * n->k;
}

/* FLOPs of the graph for an h x w image and the shapes it takes. */
static double graph_flops(const det_graph *g, uint32_t w, uint32_t h, int *c, int *sh, int *sw,
                          int *ph, int *pw)
{
    int rh, rw;
    cnp_err err;
    det_retina_input_size(&g->retina, (int)h, (int)w, &rh, &rw, ph, pw);
    if (det_graph_ref_shapes(g, *ph, *pw, c, sh, sw, &err) != CNP_OK)
        return 0;
    double f = 0;
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i].op == DET_OP_CONV)
            f += conv_flops(&g->nodes[i], sh[i], sw[i]);
    return f;
}

/* An image and its copy on the device. */
typedef struct bimage {
    const char *path;
    cnp_image img;
    cl_mem buf;
} bimage;

static cnp_status bimage_load(ocl_ctx *ctx, const char *path, bimage *b, cnp_err *err)
{
    b->path = path;
    cnp_status result = img_png_read_file(path, 0, &b->img, err);
    if (result != CNP_OK)
        return result;
    cl_int rc;
    b->buf = clCreateBuffer(ocl_ctx_context(ctx), CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                            (size_t)b->img.width * b->img.height * 4, b->img.rgba, &rc);
    return ocl_check(rc, path, err);
}

static void bimage_free(bimage *b)
{
    if (b->buf)
        clReleaseMemObject(b->buf);
    cnp_image_free(&b->img);
}

/* Median seconds of det_box_engine_run on b (trees read back included)
 * after one warm-up run; *ntrees of the last run. */
static cnp_status time_run(det_box_engine *e, const bimage *b, int repeats, bool warm_up,
                           double *sec, size_t *ntrees, cnp_err *err)
{
    double t[MAX_REPEATS];
    for (int r = warm_up ? -1 : 0; r < repeats; r++) {
        cnp_tree *trees = NULL;
        double t0 = cnp_now();
        cnp_status result =
            det_box_engine_run(e, b->buf, b->img.width, b->img.height, &trees, ntrees, err);
        if (r >= 0)
            t[r] = cnp_now() - t0;
        free(trees);
        if (result != CNP_OK)
            return result;
    }
    *sec = cnp_median(t, repeats);
    return CNP_OK;
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* What every timed run records: the image, the network's input size, the
 * work and the rates. */
static void add_run(cJSON *o, const bimage *b, int pw, int ph, double flops, double sec,
                    size_t boxes)
{
    double mpix = (double)b->img.width * b->img.height / 1e6;
    cJSON_AddStringToObject(o, "name", base_name(b->path));
    cJSON_AddNumberToObject(o, "input_width", pw);
    cJSON_AddNumberToObject(o, "input_height", ph);
    cJSON_AddNumberToObject(o, "gflop", flops / 1e9);
    cJSON_AddNumberToObject(o, "seconds", sec);
    cJSON_AddNumberToObject(o, "mpix_per_s", mpix / sec);
    cJSON_AddNumberToObject(o, "gflop_per_s", flops / sec / 1e9);
    cJSON_AddNumberToObject(o, "boxes", (double)boxes);
}

/* Whole images (patch_size 0): one row per image and the totals. */
static cnp_status bench_whole(ocl_ctx *ctx, const det_model *m, const cnp_config *cfg,
                              bimage *imgs, int n, int repeats, cJSON *root, cnp_err *err)
{
    const det_graph *g = det_model_graph(m);
    cnp_detector_config dc = cfg->detector;
    dc.patch_size = 0;
    det_box_engine *e = NULL;
    cnp_status result = det_box_engine_create(ctx, m, &dc, &e, err);
    if (result != CNP_OK)
        return result;
    size_t nn = (size_t)g->n_nodes;
    int *shp = malloc(3 * nn * sizeof *shp);
    cJSON *jw = cJSON_AddObjectToObject(root, "whole");
    cJSON *ja = cJSON_AddArrayToObject(jw, "images");
    double sum_s = 0, sum_mpix = 0, sum_flops = 0;
    printf("\nwhole images (patch_size 0), median of %d:\n", repeats);
    printf("%-24s %10s %10s %9s %9s %9s %7s\n", "image", "size", "input", "s/image", "MPix/s",
           "GFLOP/s", "boxes");
    for (int i = 0; result == CNP_OK && shp && i < n; i++) {
        double s = 0;
        size_t nt = 0;
        int ph, pw;
        double f = graph_flops(g, imgs[i].img.width, imgs[i].img.height, shp, shp + nn,
                               shp + 2 * nn, &ph, &pw);
        result = time_run(e, &imgs[i], repeats, true, &s, &nt, err);
        if (result != CNP_OK)
            break;
        double mpix = (double)imgs[i].img.width * imgs[i].img.height / 1e6;
        char size[32], input[32];
        snprintf(size, sizeof size, "%ux%u", imgs[i].img.width, imgs[i].img.height);
        snprintf(input, sizeof input, "%dx%d", pw, ph);
        printf("%-24s %10s %10s %9.3f %9.3f %9.2f %7zu\n", base_name(imgs[i].path), size, input,
               s, mpix / s, f / s / 1e9, nt);
        cJSON *o = cJSON_CreateObject();
        add_run(o, &imgs[i], pw, ph, f, s, nt);
        cJSON_AddNumberToObject(o, "width", imgs[i].img.width);
        cJSON_AddNumberToObject(o, "height", imgs[i].img.height);
        cJSON_AddItemToArray(ja, o);
        sum_s += s;
        sum_mpix += mpix;
        sum_flops += f;
    }
    if (result == CNP_OK && sum_s > 0) {
        printf("%-24s %10s %10s %9.3f %9.3f %9.2f  (%.2f images/s)\n", "all", "", "",
               sum_s / n, sum_mpix / sum_s, sum_flops / sum_s / 1e9, n / sum_s);
        cJSON_AddNumberToObject(jw, "images_per_s", n / sum_s);
        cJSON_AddNumberToObject(jw, "mpix_per_s", sum_mpix / sum_s);
        cJSON_AddNumberToObject(jw, "gflop_per_s", sum_flops / sum_s / 1e9);
    }
    free(shp);
    det_box_engine_free(e);
    return result;
}

typedef struct patch_ctx {
    det_graph_engine *e;
    cl_mem buf;
    uint32_t img_w;
} patch_ctx;

static cnp_status one_patch(void *ctx, const det_tile *p, det_detection **out, size_t *n,
                            cnp_err *err)
{
    patch_ctx *c = ctx;
    return det_graph_engine_predict(c->e, c->buf, c->img_w, p->x0, p->y0, p->w, p->h, out, n,
                                    err);
}

static cnp_status batch_patches(void *ctx, const det_tile *p, size_t np, det_detection **out,
                                size_t *n, cnp_err *err)
{
    patch_ctx *c = ctx;
    return det_graph_engine_predict_batch(c->e, c->buf, c->img_w, p, np, out, n, err);
}

/* Median seconds of DeepForest's predict_tile on the model's own graph,
 * one patch at a time (max_batch 1) or in batches (max_batch > 1: as many
 * as the engine's memory budget allows), after a warm-up run, with the conv
 * paths of [detector] conv (CANOPY_DETECTOR_CONV) as the box engine takes
 * them; *batch the batch the engine took, *nd the detections. */
static cnp_status time_patches(ocl_ctx *ctx, const det_graph *g, const cnp_detector_config *dc,
                               const bench_opts *o, const bimage *b, uint32_t max_batch,
                               double *sec, int *batch, size_t *nd, cnp_err *err)
{
    det_graph_engine *e = NULL;
    uint32_t side = (uint32_t)o->patch_size;
    det_graph_engine_opts opts = {.conv = (enum det_conv_path)dc->conv, .max_batch = max_batch};
    cnp_status result = det_graph_engine_create_opts(ctx, g, side, side, &opts, &e, err);
    if (result != CNP_OK)
        return result;
    *batch = det_graph_engine_max_batch(e);
    patch_ctx pc = {e, b->buf, b->img.width};
    double t[MAX_REPEATS];
    for (int r = -1; result == CNP_OK && r < o->repeats; r++) {
        det_detection *d = NULL;
        double t0 = cnp_now();
        if (max_batch > 1)
            result = det_predict_tiled_batch(b->img.width, b->img.height, o->patch_size,
                                             o->patch_overlap, (float)o->patch_iou,
                                             (size_t)*batch, batch_patches, &pc, &d, nd, err);
        else
            result = det_predict_tiled(b->img.width, b->img.height, o->patch_size,
                                       o->patch_overlap, (float)o->patch_iou, one_patch, &pc,
                                       &d, nd, err);
        if (r >= 0)
            t[r] = cnp_now() - t0;
        free(d);
    }
    det_graph_engine_free(e);
    if (result == CNP_OK)
        *sec = cnp_median(t, o->repeats);
    return result;
}

/* One image in DeepForest's patches. */
static cnp_status bench_tiled(ocl_ctx *ctx, const det_model *m, const cnp_config *cfg,
                              const bench_opts *o, bimage *b, cJSON *root, cnp_err *err)
{
    cnp_detector_config dc = cfg->detector;
    dc.patch_size = o->patch_size;
    dc.patch_overlap = o->patch_overlap;
    dc.patch_iou = o->patch_iou;
    det_box_engine *e = NULL;
    det_tile *tiles = NULL;
    size_t nt = 0, np = 0;
    double s = 0;
    cnp_status result = det_box_engine_create(ctx, m, &dc, &e, err);
    if (result == CNP_OK)
        result = det_box_engine_windows(e, b->img.width, b->img.height, &tiles, &np, err);
    free(tiles);
    if (result == CNP_OK)
        result = time_run(e, b, o->repeats, false, &s, &nt, err);
    det_box_engine_free(e);
    if (result != CNP_OK)
        return result;
    double mpix = (double)b->img.width * b->img.height / 1e6;
    printf("\ntiled: %s %ux%u in %zu patches of %d (overlap %.2f, iou %.2f): %.3f s/image, "
           "%.3f MPix/s, %.2f patches/s, %zu boxes\n",
           base_name(b->path), b->img.width, b->img.height, np, o->patch_size, o->patch_overlap,
           o->patch_iou, s, mpix / s, (double)np / s, nt);
    cJSON *jt = cJSON_AddObjectToObject(root, "tiled");
    cJSON_AddStringToObject(jt, "name", base_name(b->path));
    cJSON_AddNumberToObject(jt, "width", b->img.width);
    cJSON_AddNumberToObject(jt, "height", b->img.height);
    cJSON_AddNumberToObject(jt, "patch_size", o->patch_size);
    cJSON_AddNumberToObject(jt, "patch_overlap", o->patch_overlap);
    cJSON_AddNumberToObject(jt, "patch_iou", o->patch_iou);
    cJSON_AddNumberToObject(jt, "patches", (double)np);
    cJSON_AddNumberToObject(jt, "seconds", s);
    cJSON_AddNumberToObject(jt, "images_per_s", 1.0 / s);
    cJSON_AddNumberToObject(jt, "mpix_per_s", mpix / s);
    cJSON_AddNumberToObject(jt, "boxes", (double)nt);
    if (o->tiled_only)
        return CNP_OK;
    /* Batched against one patch at a time, on the model's own graph. */
    double s1 = 0, sb = 0;
    int b1 = 1, bb = 1;
    size_t n1 = 0, nb = 0;
    result = time_patches(ctx, det_model_graph(m), &dc, o, b, 1, &s1, &b1, &n1, err);
    if (result == CNP_OK)
        result = time_patches(ctx, det_model_graph(m), &dc, o, b, 64, &sb, &bb, &nb, err);
    if (result != CNP_OK)
        return result;
    printf("tiled, model's graph: one patch at a time %.3f s/image, batches of %d %.3f "
           "s/image (%.2fx), %zu and %zu boxes\n", s1, bb, sb, s1 / sb, n1, nb);
    cJSON_AddNumberToObject(jt, "unbatched_seconds", s1);
    cJSON_AddNumberToObject(jt, "batch", bb);
    cJSON_AddNumberToObject(jt, "batched_seconds", sb);
    cJSON_AddNumberToObject(jt, "batch_speedup", s1 / sb);
    return CNP_OK;
}

/* A bare SGEMM timing per distinct (M, N, K), so repeated shapes are timed
 * once. */
typedef struct sgemm_memo {
    size_t m, n, k;
    double sec;
} sgemm_memo;

static double memo_sgemm(ocl_ctx *ctx, sgemm_memo *memo, int *nmemo, size_t m, size_t n,
                         size_t k, int repeats)
{
    for (int i = 0; i < *nmemo; i++)
        if (memo[i].m == m && memo[i].n == n && memo[i].k == k)
            return memo[i].sec;
    double s = 0;
    if (bench_time_sgemm(ctx, m, n, k, repeats, &s) != 0)
        s = 0;
    memo[*nmemo] = (sgemm_memo){m, n, k, s};
    (*nmemo)++;
    return s;
}

/* Stage times of the graph engine on b (medians over repeats of timed
 * predicts), per conv against a bare SGEMM, the shares, and the device
 * bytes. */
static cnp_status bench_stages(ocl_ctx *ctx, const det_model *m, const bimage *b, int repeats,
                               cJSON *root, cnp_err *err)
{
    const det_graph *g = det_model_graph(m);
    int nn = g->n_nodes;
    det_graph_engine *e = NULL;
    cnp_status result = det_graph_engine_create(ctx, g, b->img.width, b->img.height, &e, err);
    if (result != CNP_OK)
        return result;
    /* rep-major arrays: [r][stage][node], stages im2col, gemm, epilogue, other. */
    double *all = calloc((size_t)repeats * 4 * nn, sizeof *all);
    double post[MAX_REPEATS], synced[MAX_REPEATS];
    int *shp = malloc(3 * (size_t)nn * sizeof *shp);
    sgemm_memo *memo = calloc((size_t)nn, sizeof *memo);
    double *tmp = malloc((size_t)repeats * sizeof *tmp);
    if (!all || !shp || !memo || !tmp) {
        cnp_err_set(err, "bench_retina: out of memory");
        result = CNP_ERR_NOMEM;
    }
    /* One untimed predict first: the first after creation touches the
     * scratch buffers (im2col, Winograd V and M) for the first time, which
     * put ~140 ms of page faults on fpn.p3, the first conv at P3's size. */
    for (int rr = -1; result == CNP_OK && rr < repeats; rr++) {
        if (rr < 0) {
            det_detection *d = NULL;
            size_t nd = 0;
            result = det_graph_engine_predict(e, b->buf, b->img.width, 0, 0, b->img.width,
                                              b->img.height, &d, &nd, err);
            free(d);
            continue;
        }
        double *a = all + (size_t)rr * 4 * nn;
        det_graph_times t = {a, a + nn, a + 2 * nn, a + 3 * nn, 0};
        det_detection *d = NULL;
        size_t nd = 0;
        det_graph_engine_set_times(e, &t);
        double t0 = cnp_now();
        result = det_graph_engine_predict(e, b->buf, b->img.width, 0, 0, b->img.width,
                                          b->img.height, &d, &nd, err);
        synced[rr] = cnp_now() - t0;
        det_graph_engine_set_times(e, NULL);
        free(d);
        post[rr] = t.post;
    }
    int ph = 0, pw = 0;
    double flops = result == CNP_OK ? graph_flops(g, b->img.width, b->img.height, shp,
                                                  shp + nn, shp + 2 * nn, &ph, &pw)
                                    : 0;
    double total[4] = {0, 0, 0, 0}, conv_s = 0, conv_flops_sum = 0, sgemm_sum = 0;
    int nmemo = 0;
    cJSON *jl = cJSON_AddArrayToObject(root, "layers");
    if (result == CNP_OK) {
        printf("\nper conv on %s (input %dx%d), median of %d timed runs (clFinish after "
               "every stage):\n",
               base_name(b->path), pw, ph, repeats);
        printf("%-34s %4s %6s %5s %8s %8s %8s %8s %8s %9s %6s\n", "node", "M", "N", "K",
               "GFLOP", "im2col", "gemm", "epilog", "GFLOP/s", "sgemm GF/s", "ratio");
    }
    for (int i = 0; result == CNP_OK && i < nn; i++) {
        double med[4];
        for (int s = 0; s < 4; s++) {
            for (int r = 0; r < repeats; r++)
                tmp[r] = all[(size_t)r * 4 * nn + (size_t)s * nn + i];
            med[s] = cnp_median(tmp, repeats);
            total[s] += med[s];
        }
        const det_node *n = &g->nodes[i];
        if (n->op != DET_OP_CONV)
            continue;
        size_t M = (size_t)n->cout, N = (size_t)shp[nn + i] * shp[2 * nn + i],
               K = (size_t)n->cin * n->k * n->k;
        double f = conv_flops(n, shp[nn + i], shp[2 * nn + i]);
        double node_s = med[0] + med[1] + med[2];
        double sg = memo_sgemm(ctx, memo, &nmemo, M, N, K, repeats);
        conv_s += node_s;
        conv_flops_sum += f;
        sgemm_sum += sg;
        printf("%-34s %4zu %6zu %5zu %8.3f %8.2f %8.2f %8.2f %8.2f %9.2f %6.2f\n", n->name, M,
               N, K, f / 1e9, med[0] * 1e3, med[1] * 1e3, med[2] * 1e3, f / node_s / 1e9,
               sg > 0 ? f / sg / 1e9 : 0, sg > 0 ? sg / node_s : 0);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "node", n->name);
        cJSON_AddStringToObject(o, "path",
                                det_conv_path_name(det_graph_engine_node_path(e, i, NULL, NULL)));
        cJSON_AddNumberToObject(o, "M", (double)M);
        cJSON_AddNumberToObject(o, "N", (double)N);
        cJSON_AddNumberToObject(o, "K", (double)K);
        cJSON_AddNumberToObject(o, "k", n->k);
        cJSON_AddNumberToObject(o, "stride", n->stride);
        cJSON_AddNumberToObject(o, "gflop", f / 1e9);
        cJSON_AddNumberToObject(o, "im2col_ms", med[0] * 1e3);
        cJSON_AddNumberToObject(o, "gemm_ms", med[1] * 1e3);
        cJSON_AddNumberToObject(o, "epilogue_ms", med[2] * 1e3);
        cJSON_AddNumberToObject(o, "gflop_per_s", f / node_s / 1e9);
        cJSON_AddNumberToObject(o, "gemm_gflop_per_s", med[1] > 0 ? f / med[1] / 1e9 : 0);
        cJSON_AddNumberToObject(o, "sgemm_ms", sg * 1e3);
        cJSON_AddNumberToObject(o, "sgemm_gflop_per_s", sg > 0 ? f / sg / 1e9 : 0);
        cJSON_AddItemToArray(jl, o);
    }
    if (result == CNP_OK) {
        double p = cnp_median(post, repeats), sy = cnp_median(synced, repeats);
        double all_s = total[0] + total[1] + total[2] + total[3] + p;
        printf("\nstages (sum of medians %.3f s, timed run %.3f s):\n", all_s, sy);
        const char *names[5] = {"im2col", "gemm", "epilogue", "other nodes + input", "post"};
        const char *keys[5] = {"im2col_s", "gemm_s", "epilogue_s", "other_s", "post_s"};
        double v[5] = {total[0], total[1], total[2], total[3], p};
        cJSON *js = cJSON_AddObjectToObject(root, "stages");
        for (int s = 0; s < 5; s++) {
            printf("  %-22s %8.3f s %6.1f %%\n", names[s], v[s], 100 * v[s] / all_s);
            cJSON_AddNumberToObject(js, keys[s], v[s]);
        }
        cJSON_AddNumberToObject(js, "timed_run_s", sy);
        cJSON_AddNumberToObject(js, "input_width", pw);
        cJSON_AddNumberToObject(js, "input_height", ph);
        cJSON_AddNumberToObject(js, "gflop", flops / 1e9);
        cJSON_AddNumberToObject(js, "conv_gflop_per_s", conv_flops_sum / conv_s / 1e9);
        cJSON_AddNumberToObject(js, "sgemm_gflop_per_s", conv_flops_sum / sgemm_sum / 1e9);
        printf("convs: %.2f GFLOP/s (im2col + gemm + epilogue); the same GEMMs bare: %.2f "
               "GFLOP/s (%d distinct shapes)\n",
               conv_flops_sum / conv_s / 1e9, conv_flops_sum / sgemm_sum / 1e9, nmemo);
        /* Device memory: every buffer the engine made; weights apart. */
        size_t bytes = det_graph_engine_device_bytes(e), wbytes = 0;
        for (int i = 0; i < nn; i++) {
            const det_node *n = &g->nodes[i];
            bool first = n->op == DET_OP_CONV;
            for (int j = 0; first && j < i; j++)
                if (g->nodes[j].op == DET_OP_CONV && g->nodes[j].weight == n->weight)
                    first = false;
            if (first)
                wbytes += sizeof(float) * ((size_t)n->cout * n->cin * n->k * n->k + n->cout);
        }
        printf("device memory: %.1f MiB allocated by the engine (%.1f MiB weights, %.1f MiB "
               "activations and scratch at min_size %d / max_size %d)\n",
               bytes / 1048576.0, wbytes / 1048576.0, (bytes - wbytes) / 1048576.0,
               g->retina.min_size, g->retina.max_size);
        cJSON *jm = cJSON_AddObjectToObject(root, "device_memory");
        cJSON_AddNumberToObject(jm, "bytes", (double)bytes);
        cJSON_AddNumberToObject(jm, "weight_bytes", (double)wbytes);
        cJSON_AddNumberToObject(jm, "min_size", g->retina.min_size);
        cJSON_AddNumberToObject(jm, "max_size", g->retina.max_size);
    }
    free(all);
    free(shp);
    free(memo);
    free(tmp);
    det_graph_engine_free(e);
    return result;
}

/* One whole-image predict at another min_size / max_size (the graph's
 * transform changed, nothing else), no warm-up: the kernels were built by
 * the runs before (CLBlast's kernels are per routine, not per size). */
static cnp_status bench_large(ocl_ctx *ctx, const det_model *m, const bench_opts *o,
                              const bimage *b, cJSON *root, cnp_err *err)
{
    det_graph g = *det_model_graph(m);
    g.retina.min_size = o->large_min;
    g.retina.max_size = o->large_max;
    det_graph_engine *e = NULL;
    double sec = 0;
    size_t nd = 0;
    cnp_status result = det_graph_engine_create(ctx, &g, b->img.width, b->img.height, &e, err);
    if (result == CNP_OK) {
        det_detection *d = NULL;
        double t0 = cnp_now();
        result = det_graph_engine_predict(e, b->buf, b->img.width, 0, 0, b->img.width,
                                          b->img.height, &d, &nd, err);
        sec = cnp_now() - t0;
        free(d);
    }
    size_t bytes = e ? det_graph_engine_device_bytes(e) : 0;
    det_graph_engine_free(e);
    if (result != CNP_OK)
        return result;
    int nn = g.n_nodes, ph, pw;
    int *shp = malloc(3 * (size_t)nn * sizeof *shp);
    double f = shp ? graph_flops(&g, b->img.width, b->img.height, shp, shp + nn, shp + 2 * nn,
                                 &ph, &pw)
                   : 0;
    free(shp);
    double mpix = (double)b->img.width * b->img.height / 1e6;
    printf("\nmin_size %d / max_size %d: %s as %dx%d, %.1f GFLOP: %.3f s/image (one run), "
           "%.3f MPix/s, %.2f GFLOP/s, %zu boxes, %.1f MiB device memory\n",
           o->large_min, o->large_max, base_name(b->path), pw, ph, f / 1e9, sec, mpix / sec,
           f / sec / 1e9, nd, bytes / 1048576.0);
    cJSON *jl = cJSON_AddObjectToObject(root, "large");
    add_run(jl, b, pw, ph, f, sec, nd);
    cJSON_AddNumberToObject(jl, "min_size", o->large_min);
    cJSON_AddNumberToObject(jl, "max_size", o->large_max);
    cJSON_AddNumberToObject(jl, "device_bytes", (double)bytes);
    return CNP_OK;
}

int main(int argc, char **argv)
{
    bench_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc)
        return rc;
    cnp_config cfg;
    cnp_err err;
    if (cnp_config_load(&cfg, o.config, &err) != CNP_OK) {
        fprintf(stderr, "bench_retina: %s\n", err.msg);
        return 2;
    }
    cnp_config_apply_log(&cfg);
    det_model *m = NULL;
    ocl_ctx *ctx = NULL;
    bimage imgs[MAX_IMAGES + 1];
    memset(imgs, 0, sizeof imgs);
    cJSON *root = cJSON_CreateObject();
    cnp_status result = det_model_load(o.model, &m, &err);
    if (result == CNP_OK && !det_model_has_boxes(m)) {
        cnp_err_set(&err, "%s: not a box model (import a RetinaNet with canopy model import)",
                    o.model);
        result = CNP_ERR_INVALID;
    }
    if (result == CNP_OK)
        result = ocl_ctx_create(&cfg.opencl, &ctx, &err);
    for (int i = 0; result == CNP_OK && i < o.n_images; i++)
        result = bimage_load(ctx, o.images[i], &imgs[i], &err);
    bimage *tiled = o.tiled ? &imgs[o.n_images] : NULL;
    if (result == CNP_OK && tiled)
        result = bimage_load(ctx, o.tiled, tiled, &err);
    if (result != CNP_OK)
        goto out;
    cl_uint cu = 0;
    clGetDeviceInfo(ocl_ctx_device(ctx), CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cu, &cu, NULL);
    const det_graph *g = det_model_graph(m);
    printf("bench_retina: model %s (%d nodes, min_size %d, max_size %d), device %s, %u compute "
           "units, %d repeats\n",
           det_model_version(m), g->n_nodes, g->retina.min_size, g->retina.max_size,
           ocl_ctx_description(ctx), cu, o.repeats);
    cJSON_AddStringToObject(root, "model", det_model_version(m));
    cJSON_AddNumberToObject(root, "min_size", g->retina.min_size);
    cJSON_AddNumberToObject(root, "max_size", g->retina.max_size);
    cJSON_AddStringToObject(root, "device", ocl_ctx_description(ctx));
    cJSON_AddNumberToObject(root, "compute_units", cu);
    cJSON_AddNumberToObject(root, "repeats", o.repeats);
    cJSON_AddStringToObject(root, "clblast_tuning", ocl_ctx_tuning(ctx));
    double t0 = cnp_now();
    if (!o.tiled_only)
        result = bench_whole(ctx, m, &cfg, imgs, o.n_images, o.repeats, root, &err);
    if (result == CNP_OK && tiled)
        result = bench_tiled(ctx, m, &cfg, &o, tiled, root, &err);
    if (result == CNP_OK && !o.tiled_only)
        result = bench_stages(ctx, m, &imgs[0], o.repeats, root, &err);
    if (result == CNP_OK && !o.tiled_only) {
        double sq = 0;
        if (bench_time_sgemm(ctx, 1024, 1024, 1024, o.repeats, &sq) == 0) {
            printf("CLBlast SGEMM 1024x1024x1024: %.2f GFLOP/s\n", 2.0 * 1073741824 / sq / 1e9);
            cJSON_AddNumberToObject(root, "sgemm_1024_gflop_per_s", 2.0 * 1073741824 / sq / 1e9);
        }
    }
    if (result == CNP_OK && o.large_min > 0 && !o.tiled_only)
        result = bench_large(ctx, m, &o, &imgs[0], root, &err);
    cJSON_AddNumberToObject(root, "bench_s", cnp_now() - t0);
    if (result == CNP_OK) {
        char *text = cJSON_Print(root);
        result = cnp_file_write(o.json, text, strlen(text), &err);
        free(text);
        if (result == CNP_OK)
            printf("wrote %s\n", o.json);
    }
out:
    if (result != CNP_OK) {
        fprintf(stderr, "bench_retina: %s\n", err.msg);
        rc = 1;
    }
    cJSON_Delete(root);
    for (int i = 0; i <= MAX_IMAGES; i++)
        bimage_free(&imgs[i]);
    ocl_ctx_free(ctx);
    det_model_free(m);
    return rc;
}
