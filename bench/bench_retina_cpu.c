/* bench_retina_cpu: an imported RetinaNet (.cnw version 2) on the CPU
 * backend (src/detect/cpu, oneDNN): images/s and MPix/s of whole images
 * (one model(image) call each) and of one image in DeepForest's patches
 * (det_predict_tiled_batch, --batch patches per call), then where the time
 * goes on the first image (per node: the convolutions by algorithm, the
 * other nodes, the transform, decode + NMS) and optionally one run at a
 * larger min_size / max_size. Medians over repeats after one warm-up run
 * per case (plans and Winograd measurements are made there). Threads:
 * --threads (0: every core). The JSON has bench_retina's keys ("whole",
 * "tiled", "large") so retina_report.py sets them side by side.
 *
 *   bench_retina_cpu --model FILE [--tiled PNG] [--patch-size N]
 *                    [--patch-overlap F] [--patch-iou F] [--batch N]
 *                    [--repeats N] [--threads N] [--large-min-size N
 *                    --large-max-size N] [--json FILE] IMAGE.png...
 */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canopy/detect.h"
#include "canopy/image.h"
#include "detect/cpu/dnnl_graph.h"
#include "detect/detect_internal.h"
#include "detect/patches.h"

#define MAX_REPEATS 64
#define MAX_IMAGES 16

typedef struct bench_opts {
    const char *model, *tiled, *json;
    const char *images[MAX_IMAGES];
    int n_images, repeats, patch_size, large_min, large_max, batch, threads;
    double patch_overlap, patch_iou;
} bench_opts;

static int usage(void)
{
    fprintf(stderr, "usage: bench_retina_cpu --model FILE [--tiled PNG] [--patch-size N] "
                    "[--patch-overlap F] [--patch-iou F] [--batch N] [--repeats N] "
                    "[--threads N] [--large-min-size N --large-max-size N] [--json FILE] "
                    "IMAGE.png...\n");
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
        {"batch", required_argument, NULL, 'b'},
        {"repeats", required_argument, NULL, 'r'},
        {"threads", required_argument, NULL, 'T'},
        {"large-min-size", required_argument, NULL, 'L'},
        {"large-max-size", required_argument, NULL, 'M'},
        {"json", required_argument, NULL, 'j'},
        {0, 0, 0, 0},
    };
    *o = (bench_opts){.json = "bench_retina_cpu.json", .repeats = 3, .patch_size = 400,
                      .patch_overlap = 0.05, .patch_iou = 0.15, .batch = 1};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 't': o->tiled = optarg; break;
        case 'p': o->patch_size = atoi(optarg); break;
        case 'o': o->patch_overlap = atof(optarg); break;
        case 'u': o->patch_iou = atof(optarg); break;
        case 'b': o->batch = atoi(optarg); break;
        case 'r': o->repeats = atoi(optarg); break;
        case 'T': o->threads = atoi(optarg); break;
        case 'L': o->large_min = atoi(optarg); break;
        case 'M': o->large_max = atoi(optarg); break;
        case 'j': o->json = optarg; break;
        default: return usage();
        }
    }
    for (int i = optind; i < argc && o->n_images < MAX_IMAGES; i++)
        o->images[o->n_images++] = argv[i];
    if (!o->model || o->n_images == 0 || optind + o->n_images != argc)
        return usage();
    if (o->repeats < 1 || o->repeats > MAX_REPEATS || o->patch_size < 1 || o->batch < 1 ||
        o->threads < 0 || (o->large_min > 0) != (o->large_max > 0) || o->large_min < 0) {
        fprintf(stderr, "bench_retina_cpu: --repeats 1..%d, --patch-size and --batch > 0, "
                        "--threads >= 0, --large-min-size and --large-max-size together\n",
                MAX_REPEATS);
        return 2;
    }
    return 0;
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* FLOPs of the graph's convolutions for an h x w image (2 M N K each). */
static double graph_flops(const det_graph *g, uint32_t w, uint32_t h, int *ph, int *pw)
{
    int rh, rw, nn = g->n_nodes;
    int *c = malloc(sizeof(int) * 3 * (size_t)nn);
    cnp_err err;
    double f = 0;
    det_retina_input_size(&g->retina, (int)h, (int)w, &rh, &rw, ph, pw);
    if (c && det_graph_ref_shapes(g, *ph, *pw, c, c + nn, c + 2 * nn, &err) == CNP_OK)
        for (int i = 0; i < nn; i++) {
            const det_node *n = &g->nodes[i];
            if (n->op == DET_OP_CONV)
                f += 2.0 * n->cout * (double)c[nn + i] * c[2 * nn + i] * n->cin * n->k * n->k;
        }
    free(c);
    return f;
}

/* Whole image: one window. */
static cnp_status predict_whole(det_dnnl_graph *e, const cnp_image *img, size_t *boxes,
                                cnp_err *err)
{
    det_tile p = {.x0 = 0, .y0 = 0, .w = img->width, .h = img->height};
    det_detection *d = NULL;
    cnp_status result = det_dnnl_graph_predict_batch(e, img->rgba, img->width, img->height, &p,
                                                     1, &d, boxes, err);
    free(d);
    return result;
}

typedef struct tiled_ctx {
    det_dnnl_graph *e;
    const cnp_image *img;
} tiled_ctx;

static cnp_status batch_fn(void *ctx, const det_tile *p, size_t np, det_detection **out,
                           size_t *n, cnp_err *err)
{
    tiled_ctx *t = ctx;
    return det_dnnl_graph_predict_batch(t->e, t->img->rgba, t->img->width, t->img->height, p,
                                        np, out, n, err);
}

static cnp_status predict_tiled(det_dnnl_graph *e, const cnp_image *img, const bench_opts *o,
                                size_t *boxes, cnp_err *err)
{
    tiled_ctx t = {e, img};
    det_detection *d = NULL;
    cnp_status result = det_predict_tiled_batch(img->width, img->height, o->patch_size,
                                                o->patch_overlap, (float)o->patch_iou,
                                                (size_t)o->batch, batch_fn, &t, &d, boxes, err);
    free(d);
    return result;
}

/* Median seconds of `repeats` runs after one warm-up (warm_up) run. */
static cnp_status time_runs(det_dnnl_graph *e, const cnp_image *img, const bench_opts *o,
                            bool tiled, int repeats, bool warm_up, double *sec, size_t *boxes,
                            cnp_err *err)
{
    double t[MAX_REPEATS];
    for (int r = warm_up ? -1 : 0; r < repeats; r++) {
        double t0 = cnp_now();
        cnp_status result = tiled ? predict_tiled(e, img, o, boxes, err)
                                  : predict_whole(e, img, boxes, err);
        if (result != CNP_OK)
            return result;
        if (r >= 0)
            t[r] = cnp_now() - t0;
    }
    *sec = cnp_median(t, repeats);
    return CNP_OK;
}

static cJSON *run_json(const char *path, const cnp_image *img, int pw, int ph, double flops,
                       double sec, size_t boxes)
{
    cJSON *o = cJSON_CreateObject();
    double mpix = (double)img->width * img->height / 1e6;
    cJSON_AddStringToObject(o, "name", base_name(path));
    cJSON_AddNumberToObject(o, "width", img->width);
    cJSON_AddNumberToObject(o, "height", img->height);
    cJSON_AddNumberToObject(o, "input_width", pw);
    cJSON_AddNumberToObject(o, "input_height", ph);
    cJSON_AddNumberToObject(o, "gflop", flops / 1e9);
    cJSON_AddNumberToObject(o, "seconds", sec);
    cJSON_AddNumberToObject(o, "mpix_per_s", mpix / sec);
    cJSON_AddNumberToObject(o, "gflop_per_s", flops / sec / 1e9);
    cJSON_AddNumberToObject(o, "boxes", (double)boxes);
    return o;
}

/* Where the time of one predict goes: per node, by kind. */
static cnp_status stages(det_dnnl_graph *e, const det_graph *g, const cnp_image *img,
                         cJSON *root, cnp_err *err)
{
    int nn = g->n_nodes;
    det_dnnl_times t = {.node = calloc((size_t)nn, sizeof(double))};
    if (!t.node)
        return CNP_ERR_NOMEM;
    size_t boxes;
    det_dnnl_graph_set_times(e, &t);
    cnp_status result = predict_whole(e, img, &boxes, err);
    det_dnnl_graph_set_times(e, NULL);
    double wino = 0, direct = 0, other = 0, total = t.node[0] + t.post;
    cJSON *jl = cJSON_AddArrayToObject(root, "cpu_nodes");
    for (int i = 1; result == CNP_OK && i < nn; i++) {
        const char *impl = "";
        enum det_dnnl_conv c = det_dnnl_graph_node_conv(e, i, &impl);
        const det_node *n = &g->nodes[i];
        total += t.node[i];
        if (n->op != DET_OP_CONV)
            other += t.node[i];
        else if (c == DET_DNNL_CONV_WINOGRAD)
            wino += t.node[i];
        else
            direct += t.node[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "node", n->name);
        cJSON_AddStringToObject(o, "impl", impl);
        cJSON_AddNumberToObject(o, "ms", t.node[i] * 1e3);
        cJSON_AddItemToArray(jl, o);
    }
    if (result == CNP_OK) {
        cJSON *o = cJSON_AddObjectToObject(root, "cpu_stages");
        cJSON_AddNumberToObject(o, "transform_s", t.node[0]);
        cJSON_AddNumberToObject(o, "conv_winograd_s", wino);
        cJSON_AddNumberToObject(o, "conv_direct_s", direct);
        cJSON_AddNumberToObject(o, "other_nodes_s", other);
        cJSON_AddNumberToObject(o, "post_s", t.post);
        printf("\nstages of one predict on %ux%u (%.3f s): transform %.3f, Winograd convs "
               "%.3f, direct convs %.3f, pool/upsample/relu %.3f, decode + NMS %.3f\n",
               img->width, img->height, total, t.node[0], wino, direct, other, t.post);
    }
    free(t.node);
    return result;
}

static int bench(const bench_opts *o, det_model *m, cJSON *root, cnp_err *err)
{
    det_graph g = *det_model_graph(m);
    det_dnnl_opts opts = {.threads = o->threads, .max_batch = o->batch};
    det_dnnl_graph *e = NULL;
    cnp_status result = det_dnnl_graph_create(&g, &opts, &e, err);
    if (result != CNP_OK)
        return 1;
    cJSON_AddNumberToObject(root, "threads", det_dnnl_graph_threads(e));
    cJSON *jw = cJSON_AddObjectToObject(root, "whole"), *ja = cJSON_AddArrayToObject(jw, "images");
    double sum_s = 0, sum_mpix = 0, sum_flops = 0;
    cnp_image first = {0};
    for (int i = 0; result == CNP_OK && i < o->n_images; i++) {
        cnp_image img;
        double s = 0, flops;
        size_t boxes = 0;
        int ph, pw;
        result = img_png_read_file(o->images[i], 0, &img, err);
        if (result != CNP_OK)
            break;
        flops = graph_flops(&g, img.width, img.height, &ph, &pw);
        result = time_runs(e, &img, o, false, o->repeats, true, &s, &boxes, err);
        if (result == CNP_OK) {
            printf("%-28s %ux%u (input %dx%d) %8.3f s %7.1f GFLOP/s %5zu boxes\n",
                   base_name(o->images[i]), img.width, img.height, pw, ph, s,
                   flops / s / 1e9, boxes);
            cJSON_AddItemToArray(ja, run_json(o->images[i], &img, pw, ph, flops, s, boxes));
            sum_s += s;
            sum_mpix += (double)img.width * img.height / 1e6;
            sum_flops += flops;
        }
        if (i == 0)
            first = img;
        else
            cnp_image_free(&img);
    }
    if (result == CNP_OK) {
        cJSON_AddNumberToObject(jw, "images_per_s", o->n_images / sum_s);
        cJSON_AddNumberToObject(jw, "mpix_per_s", sum_mpix / sum_s);
        cJSON_AddNumberToObject(jw, "gflop_per_s", sum_flops / sum_s / 1e9);
        result = stages(e, &g, &first, root, err);
    }
    cnp_image_free(&first);
    if (result == CNP_OK && o->tiled) {
        cnp_image img;
        double s = 0;
        size_t boxes = 0, np = 0;
        det_tile *tiles = NULL;
        result = img_png_read_file(o->tiled, 0, &img, err);
        if (result == CNP_OK)
            result = det_patches_plan(img.width, img.height, o->patch_size, o->patch_overlap,
                                      &tiles, &np, err);
        free(tiles);
        /* The first run makes the patch size's plan: a warm-up only when
         * there are repeats to spare, else the plan is in the one run. */
        if (result == CNP_OK)
            result = time_runs(e, &img, o, true, o->repeats, o->repeats > 1, &s, &boxes, err);
        if (result == CNP_OK) {
            double mpix = (double)img.width * img.height / 1e6;
            printf("\ntiled: %s %ux%u in %zu patches of %d, batch %d: %.3f s/image, %.3f "
                   "patches/s, %zu boxes\n", base_name(o->tiled), img.width, img.height, np,
                   o->patch_size, o->batch, s, (double)np / s, boxes);
            cJSON *jt = cJSON_AddObjectToObject(root, "tiled");
            cJSON_AddStringToObject(jt, "name", base_name(o->tiled));
            cJSON_AddNumberToObject(jt, "width", img.width);
            cJSON_AddNumberToObject(jt, "height", img.height);
            cJSON_AddNumberToObject(jt, "patches", (double)np);
            cJSON_AddNumberToObject(jt, "batch", o->batch);
            cJSON_AddNumberToObject(jt, "seconds", s);
            cJSON_AddNumberToObject(jt, "images_per_s", 1.0 / s);
            cJSON_AddNumberToObject(jt, "mpix_per_s", mpix / s);
            cJSON_AddNumberToObject(jt, "boxes", (double)boxes);
        }
        cnp_image_free(&img);
    }
    det_dnnl_graph_free(e);
    if (result == CNP_OK && o->large_min > 0) {
        g.retina.min_size = o->large_min;
        g.retina.max_size = o->large_max;
        cnp_image img;
        double s = 0;
        size_t boxes = 0;
        int ph, pw;
        result = det_dnnl_graph_create(&g, &opts, &e, err);
        if (result == CNP_OK)
            result = img_png_read_file(o->images[0], 0, &img, err);
        if (result == CNP_OK) {
            double flops = graph_flops(&g, img.width, img.height, &ph, &pw);
            result = time_runs(e, &img, o, false, 1, true, &s, &boxes, err);
            if (result == CNP_OK) {
                printf("\nmin_size %d: %.3f s (input %dx%d, %.1f GFLOP/s)\n", o->large_min, s,
                       pw, ph, flops / s / 1e9);
                cJSON *jl = run_json(o->images[0], &img, pw, ph, flops, s, boxes);
                cJSON_AddNumberToObject(jl, "min_size", o->large_min);
                cJSON_AddNumberToObject(jl, "max_size", o->large_max);
                cJSON_AddItemToObject(root, "large", jl);
            }
            cnp_image_free(&img);
        }
        det_dnnl_graph_free(e);
    }
    return result == CNP_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    bench_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc)
        return rc;
    cnp_err err = {0};
    det_model *m = NULL;
    if (det_model_load(o.model, &m, &err) != CNP_OK || !det_model_graph(m)) {
        fprintf(stderr, "bench_retina_cpu: %s: %s\n", o.model,
                m ? "not a box model" : err.msg);
        det_model_free(m);
        return 1;
    }
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "backend", "cpu (oneDNN)");
    cJSON_AddStringToObject(root, "model", det_model_version(m));
    cJSON_AddNumberToObject(root, "repeats", o.repeats);
    rc = bench(&o, m, root, &err);
    if (rc)
        fprintf(stderr, "bench_retina_cpu: %s\n", err.msg);
    char *text = cJSON_Print(root);
    FILE *f = text ? fopen(o.json, "w") : NULL;
    if (f) {
        fputs(text, f);
        fclose(f);
        printf("wrote %s\n", o.json);
    } else {
        fprintf(stderr, "bench_retina_cpu: cannot write %s\n", o.json);
        rc = 1;
    }
    free(text);
    cJSON_Delete(root);
    det_model_free(m);
    return rc;
}
