/* bench_detect: detector throughput on the OpenCL device and in the C
 * reference, GFLOP/s per layer for both convolution paths, and CLBlast SGEMM
 * GFLOP/s on the same device at the sizes of the network's GEMMs, all in one
 * run, and the NMS on the device against its C reference, medians over
 * repeats; with the CPU backend built, the same image on it too ([device]
 * threads), next to the OpenCL engine. Prints a table and writes a JSON
 * file.
 *
 *   bench_detect [--model FILE] [--image PNG | --size WxH] [--repeats N]
 *                [--tile N] [--json FILE] [--no-ref] [-c FILE]
 *
 * The default input is a 1024x1024 synthetic image (deterministic noise over
 * smooth blobs): throughput does not depend on the content.
 *
 * Without --model: [detector] model when it exists, else the crown
 * architecture of tools/train/model.py with random weights (same FLOPs). */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canopy/config.h"
#include "canopy/detect.h"
#include "canopy/gpu.h"
#include "canopy/image.h"
#include "canopy/log.h"
#include "detect/detect_internal.h"
#include "common/sgemm_timer.h"

#define MAX_REPEATS 64

/* The crown architecture (tools/train/model.py CROWN_LAYERS). */
static const struct {
    const char *name;
    int in, out, k, dil, relu;
} crown[] = {
    {"c1", 4, 16, 3, 1, 1},  {NULL, 0, 0, 0, 0, 0},   {"c2", 16, 32, 3, 1, 1},
    {NULL, 0, 0, 0, 0, 0},   {"c3", 32, 48, 3, 1, 1}, {"c4", 48, 48, 3, 2, 1},
    {"c5", 48, 48, 3, 4, 1}, {"c6", 48, 48, 3, 8, 1}, {"c7", 48, 32, 1, 1, 1},
    {"head", 32, 4, 1, 1, 0},
};

/* A det_model with the crown architecture and deterministic random weights,
 * built in memory (freed by det_model_free). */
static det_model *random_crown(void)
{
    int n = (int)(sizeof crown / sizeof crown[0]);
    det_model *m = calloc(1, sizeof *m);
    m->layers = calloc((size_t)n, sizeof *m->layers);
    snprintf(m->path, sizeof m->path, "(random crown)");
    snprintf(m->name, sizeof m->name, "canopy-crown");
    snprintf(m->version, sizeof m->version, "random-crown");
    m->stride = 4;
    m->n_channels = 4;
    for (int c = 0; c < 4; c++) {
        m->channel[c] = c;
        m->mean[c] = 0.4f;
        m->std[c] = 0.2f;
        m->out_index[c] = c;
    }
    m->n_layers = n;
    uint32_t s = 12345;
    for (int i = 0; i < n; i++) {
        det_layer *l = &m->layers[i];
        if (!crown[i].name) {
            l->type = DET_LAYER_MAXPOOL;
            l->in = l->out = m->layers[i - 1].out;
            snprintf(l->name, sizeof l->name, "pool%d", i);
            continue;
        }
        l->type = DET_LAYER_CONV;
        snprintf(l->name, sizeof l->name, "%s", crown[i].name);
        l->in = crown[i].in;
        l->out = crown[i].out;
        l->k = crown[i].k;
        l->dilation = crown[i].dil;
        l->relu = crown[i].relu;
        size_t nw = (size_t)l->out * l->in * l->k * l->k;
        l->weight = malloc(nw * sizeof(float));
        l->bias = calloc((size_t)l->out, sizeof(float));
        float sd = sqrtf(2.0f / (float)(l->in * l->k * l->k));
        for (size_t k = 0; k < nw; k++) {
            s = s * 1664525u + 1013904223u;
            l->weight[k] = ((float)(s >> 8) / 16777216.0f - 0.5f) * 3.46f * sd;
        }
    }
    return m;
}

/* Smooth bright blobs on a darker ground, with noise. */
static cnp_status synthetic(cnp_image *img, unsigned w, unsigned h, cnp_err *err)
{
    cnp_status st = cnp_image_alloc(img, w, h, err);
    uint32_t s = 777;
    for (unsigned y = 0; st == CNP_OK && y < h; y++)
        for (unsigned x = 0; x < w; x++) {
            s = s * 1664525u + 1013904223u;
            float v = 0.5f + 0.25f * sinf((float)x * 0.11f) * sinf((float)y * 0.13f);
            uint8_t *p = img->rgba + 4 * ((size_t)y * w + x);
            p[0] = (uint8_t)(v * 120 + (s >> 28));
            p[1] = (uint8_t)(v * 200 + (s >> 27));
            p[2] = (uint8_t)(v * 90 + (s >> 28));
            p[3] = 255;
        }
    return st;
}

typedef struct bench_opts {
    const char *model, *image, *json, *config;
    int repeats, tile;
    unsigned width, height;
    bool no_ref;
} bench_opts;

static int parse_args(int argc, char **argv, bench_opts *o)
{
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'}, {"image", required_argument, NULL, 'i'},
        {"repeats", required_argument, NULL, 'r'}, {"tile", required_argument, NULL, 't'},
        {"json", required_argument, NULL, 'j'},  {"no-ref", no_argument, NULL, 'n'},
        {"size", required_argument, NULL, 's'},
        {"config", required_argument, NULL, 'c'}, {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    *o = (bench_opts){.json = "bench_detect.json", .repeats = 3, .width = 1024, .height = 1024};
    int c;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 'i': o->image = optarg; break;
        case 'r': o->repeats = atoi(optarg); break;
        case 't': o->tile = atoi(optarg); break;
        case 'j': o->json = optarg; break;
        case 'n': o->no_ref = true; break;
        case 's':
            if (sscanf(optarg, "%ux%u", &o->width, &o->height) != 2 || !o->width ||
                !o->height || o->width > 16384 || o->height > 16384) {
                fprintf(stderr, "bench_detect: --size WxH, 1..16384\n");
                return 2;
            }
            break;
        case 'c': o->config = optarg; break;
        default:
            fprintf(stderr, "usage: bench_detect [--model FILE] [--image PNG | --size WxH] [--repeats N] "
                            "[--tile N] [--json FILE] [--no-ref] [-c FILE]\n");
            return 2;
        }
    }
    if (o->repeats < 1 || o->repeats > MAX_REPEATS) {
        fprintf(stderr, "bench_detect: --repeats 1..%d\n", MAX_REPEATS);
        return 2;
    }
    return 0;
}

static det_model *load_model(const bench_opts *o, const cnp_config *cfg)
{
    cnp_err err;
    char path[2048];
    det_model *m = NULL;
    const char *want = o->model ? o->model : cfg->detector.model;
    if (det_model_resolve_path(want, path, sizeof path, &err) == CNP_OK &&
        det_model_load(path, &m, &err) == CNP_OK)
        return m;
    if (o->model) {
        fprintf(stderr, "bench_detect: %s\n", err.msg);
        return NULL;
    }
    fprintf(stderr, "bench_detect: %s; using the crown architecture with random weights\n",
            err.msg);
    return random_crown();
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* NMS alone: device (det_engine_nms: upload, order, mask, select, read back)
 * against the C reference on n random crowns at the density of a forest
 * (about 3 per 40 x 40 px), medians of `repeats`; one entry per n in arr. */
static void bench_nms(det_engine *e, int repeats, cJSON *arr)
{
    static const size_t sizes[] = {1000, 10000};
    printf("\nNMS (IoU %.2f, random crowns)         n     device ms   reference ms   kept\n",
           DET_NMS_IOU_DEFAULT);
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        size_t n = sizes[si], kd = 0, kr = 0;
        det_box *b = malloc(n * sizeof *b);
        float *sc = malloc(n * sizeof *sc);
        uint32_t *keep = malloc(n * sizeof *keep);
        double td[MAX_REPEATS], tr[MAX_REPEATS];
        if (!b || !sc || !keep) {
            free(b);
            free(sc);
            free(keep);
            return;
        }
        uint32_t st = 12345u + (uint32_t)n;
        float side = 40.0f * sqrtf((float)n / 3.0f);
        for (size_t i = 0; i < n; i++) {
            st = st * 1664525u + 1013904223u;
            float x = (float)(st >> 8) / 16777216.0f * side;
            st = st * 1664525u + 1013904223u;
            float y = (float)(st >> 8) / 16777216.0f * side;
            st = st * 1664525u + 1013904223u;
            float r = 4.0f + 16.0f * (float)(st >> 8) / 16777216.0f;
            st = st * 1664525u + 1013904223u;
            sc[i] = (float)(st >> 8) / 16777216.0f;
            b[i] = (det_box){x - r, y - r, x + r, y + r};
        }
        cnp_err err;
        int ok = 1;
        for (int r = 0; ok && r < repeats; r++) {
            double t0 = cnp_now();
            ok = det_engine_nms(e, b, sc, NULL, n, (float)DET_NMS_IOU_DEFAULT, keep, &kd,
                                &err) == CNP_OK;
            td[r] = cnp_now() - t0;
            t0 = cnp_now();
            ok = ok && det_nms(b, sc, NULL, n, (float)DET_NMS_IOU_DEFAULT, keep, &kr, &err) ==
                           CNP_OK;
            tr[r] = cnp_now() - t0;
        }
        if (ok) {
            qsort(td, (size_t)repeats, sizeof td[0], cmp_double);
            qsort(tr, (size_t)repeats, sizeof tr[0], cmp_double);
            printf("%38zu %13.3f %14.3f %6zu%s\n", n, td[repeats / 2] * 1e3,
                   tr[repeats / 2] * 1e3, kd, kd == kr ? "" : " (reference differs!)");
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "n", (double)n);
            cJSON_AddNumberToObject(o, "device_ms", td[repeats / 2] * 1e3);
            cJSON_AddNumberToObject(o, "reference_ms", tr[repeats / 2] * 1e3);
            cJSON_AddNumberToObject(o, "kept", (double)kd);
            cJSON_AddItemToArray(arr, o);
        } else {
            fprintf(stderr, "bench_detect: NMS: %s\n", err.msg);
        }
        free(b);
        free(sc);
        free(keep);
    }
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
        fprintf(stderr, "bench_detect: %s\n", err.msg);
        return 2;
    }
    cnp_config_apply_log(&cfg);
    if (o.tile)
        cfg.detector.tile = o.tile;
    det_model *m = load_model(&o, &cfg);
    cnp_image img = {0};
    ocl_ctx *ctx = NULL;
    det_engine *e = NULL;
    cl_mem buf = NULL;
    cJSON *root = cJSON_CreateObject();
    if (!m)
        return 1;
    if ((o.image ? img_png_read_file(o.image, 0, &img, &err)
                 : synthetic(&img, o.width, o.height, &err)) != CNP_OK ||
        ocl_ctx_create(&cfg.opencl, &ctx, &err) != CNP_OK) {
        fprintf(stderr, "bench_detect: %s\n", err.msg);
        rc = 1;
        goto out;
    }
    double t0 = cnp_now();
    if (det_engine_create(ctx, m, &cfg.detector, &e, &err) != CNP_OK) {
        fprintf(stderr, "bench_detect: %s\n", err.msg);
        rc = 1;
        goto out;
    }
    double create_s = cnp_now() - t0;
    cl_int clrc;
    buf = clCreateBuffer(ocl_ctx_context(ctx), CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                         (size_t)img.width * img.height * 4, img.rgba, &clrc);
    double mpix = (double)img.width * img.height / 1e6;
    printf("bench_detect: model %s, image %s (%ux%u), tile %u, device %s, %d repeats\n",
           det_model_version(m), o.image ? o.image : "synthetic", img.width, img.height, det_engine_tile(e),
           ocl_ctx_description(ctx), o.repeats);
    printf("engine creation (kernels, buffers, per-layer measurement): %.2f s\n", create_s);
    cJSON_AddStringToObject(root, "model", det_model_version(m));
    cJSON_AddStringToObject(root, "device", ocl_ctx_description(ctx));
    cJSON_AddStringToObject(root, "image", o.image ? o.image : "synthetic");
    cJSON_AddNumberToObject(root, "width", img.width);
    cJSON_AddNumberToObject(root, "height", img.height);
    cJSON_AddNumberToObject(root, "tile", det_engine_tile(e));
    cJSON_AddNumberToObject(root, "repeats", o.repeats);
    cJSON_AddNumberToObject(root, "engine_create_s", create_s);

    /* Whole-image throughput: device (tree list read back included). */
    double t[MAX_REPEATS];
    size_t ntrees = 0;
    for (int r = -1; r < o.repeats; r++) {
        cnp_tree *trees = NULL;
        double s0 = cnp_now();
        if (det_engine_run(e, buf, img.width, img.height, &trees, &ntrees, &err) != CNP_OK) {
            fprintf(stderr, "bench_detect: %s\n", err.msg);
            rc = 1;
            goto out;
        }
        if (r >= 0)
            t[r] = cnp_now() - s0;
        free(trees);
    }
    double dev_s = cnp_median(t, o.repeats);
    double flops = det_model_flops(m, img.width, img.height);
    printf("device:    %8.3f s/image  %8.2f MPix/s  %7.2f GFLOP/s  (%zu trees)\n", dev_s,
           mpix / dev_s, flops / dev_s / 1e9, ntrees);
    cJSON *jd = cJSON_AddObjectToObject(root, "device_run");
    cJSON_AddNumberToObject(jd, "seconds", dev_s);
    cJSON_AddNumberToObject(jd, "mpix_per_s", mpix / dev_s);
    cJSON_AddNumberToObject(jd, "gflop_per_s", flops / dev_s / 1e9);
    cJSON_AddNumberToObject(jd, "trees", (double)ntrees);

    if (det_cpu_backend_available()) {
        det_cpu_engine *ce = NULL;
        size_t nc = 0;
        if (det_cpu_engine_create(m, &cfg.detector, cfg.device.threads, cfg.opencl.cache_dir,
                                  &ce, &err) != CNP_OK) {
            fprintf(stderr, "bench_detect: %s\n", err.msg);
            rc = 1;
            goto out;
        }
        for (int r = -1; r < o.repeats && rc == 0; r++) {
            cnp_tree *trees = NULL;
            double s0 = cnp_now();
            if (det_cpu_engine_run(ce, &img, &trees, &nc, &err) != CNP_OK) {
                fprintf(stderr, "bench_detect: %s\n", err.msg);
                rc = 1;
            }
            if (r >= 0)
                t[r] = cnp_now() - s0;
            free(trees);
        }
        int threads = det_cpu_engine_threads(ce);
        det_cpu_engine_free(ce);
        if (rc)
            goto out;
        double cpu_s = cnp_median(t, o.repeats);
        printf("cpu backend (oneDNN, %d threads): %8.3f s/image  %8.2f MPix/s  %7.2f GFLOP/s  "
               "(%zu trees; %.2fx the OpenCL engine)\n", threads, cpu_s, mpix / cpu_s,
               flops / cpu_s / 1e9, nc, dev_s / cpu_s);
        cJSON *jc = cJSON_AddObjectToObject(root, "cpu_backend_run");
        cJSON_AddNumberToObject(jc, "threads", threads);
        cJSON_AddNumberToObject(jc, "seconds", cpu_s);
        cJSON_AddNumberToObject(jc, "mpix_per_s", mpix / cpu_s);
        cJSON_AddNumberToObject(jc, "gflop_per_s", flops / cpu_s / 1e9);
        cJSON_AddNumberToObject(jc, "trees", (double)nc);
        cJSON_AddNumberToObject(jc, "speedup_vs_opencl", dev_s / cpu_s);
    }

    if (!o.no_ref) {
        int rr = o.repeats < 3 ? o.repeats : 3;
        for (int r = 0; r < rr; r++) {
            cnp_tree *trees = NULL;
            size_t n = 0;
            double s0 = cnp_now();
            det_ref_run(m, &img, det_score_threshold(m, cfg.detector.score_threshold),
                        cfg.detector.nms_iou >= 0 ? (float)cfg.detector.nms_iou
                                                  : (float)det_model_nms_iou(m),
                        cfg.detector.tile,
                        cfg.detector.tile_overlap, &trees, &n, &err);
            t[r] = cnp_now() - s0;
            free(trees);
        }
        double ref_s = cnp_median(t, rr);
        printf("reference: %8.3f s/image  %8.2f MPix/s  %7.2f GFLOP/s  (C, double accumulation, "
               "1 thread, %d repeats)\n",
               ref_s, mpix / ref_s, flops / ref_s / 1e9, rr);
        cJSON *jr = cJSON_AddObjectToObject(root, "reference_run");
        cJSON_AddNumberToObject(jr, "seconds", ref_s);
        cJSON_AddNumberToObject(jr, "mpix_per_s", mpix / ref_s);
        cJSON_AddNumberToObject(jr, "gflop_per_s", flops / ref_s / 1e9);
    }

    /* Per layer at the largest tile, the direct, GEMM and pixel paths, and
     * SGEMM alone at the layer's GEMM size. */
    printf("\nper layer at the %ux%u tile (median of %d):\n", det_engine_tile(e),
           det_engine_tile(e), o.repeats);
    printf("%-6s %-16s %9s %10s %9s %10s %9s %10s %9s %10s %s\n", "layer", "shape", "GFLOP",
           "direct ms", "GFLOP/s", "gemm ms", "GFLOP/s", "pixel ms", "GFLOP/s", "sgemm GF/s",
           "chosen");
    cJSON *jl = cJSON_AddArrayToObject(root, "layers");
    double best_total = 0;
    for (size_t i = 0; i < det_engine_layer_count(e); i++) {
        det_layer_info li;
        det_engine_layer_info(e, i, &li);
        double dir = 0, gem = 0, pix = 0, sg = 0;
        if (det_engine_time_layer(e, i, DET_CONV_DIRECT, o.repeats, &dir, &err) != CNP_OK ||
            (li.is_conv &&
             (det_engine_time_layer(e, i, DET_CONV_GEMM, o.repeats, &gem, &err) != CNP_OK ||
              det_engine_time_layer(e, i, DET_CONV_PIXEL, o.repeats, &pix, &err) != CNP_OK))) {
            fprintf(stderr, "bench_detect: %s\n", err.msg);
            rc = 1;
            goto out;
        }
        if (li.is_conv &&
            bench_time_sgemm(ctx, (size_t)li.out, (size_t)li.out_w * li.out_h,
                       (size_t)li.in * li.k * li.k, o.repeats, &sg) != 0)
            sg = 0;
        char shape[64];
        if (li.is_conv)
            snprintf(shape, sizeof shape, "%d->%d k%d d%d", li.in, li.out, li.k, li.dilation);
        else
            snprintf(shape, sizeof shape, "maxpool %d", li.in);
        double gf = li.flops / 1e9;
        best_total += li.is_conv ? fmin(fmin(dir, gem), pix) : dir;
        const char *chosen = li.chosen == DET_CONV_DIRECT  ? "direct"
                             : li.chosen == DET_CONV_PIXEL ? "pixel"
                                                           : "gemm";
        if (li.is_conv)
            printf("%-6s %-16s %9.3f %10.2f %9.2f %10.2f %9.2f %10.2f %9.2f %10.2f %s\n", li.name,
                   shape, gf, dir * 1e3, gf / dir, gem * 1e3, gf / gem, pix * 1e3, gf / pix,
                   sg > 0 ? gf / sg : 0, chosen);
        else
            printf("%-6s %-16s %9s %10.2f\n", li.name, shape, "-", dir * 1e3);
        cJSON *o1 = cJSON_CreateObject();
        cJSON_AddStringToObject(o1, "name", li.name);
        cJSON_AddStringToObject(o1, "shape", shape);
        cJSON_AddNumberToObject(o1, "out_w", li.out_w);
        cJSON_AddNumberToObject(o1, "out_h", li.out_h);
        cJSON_AddNumberToObject(o1, "gflop", li.is_conv ? gf : 0);
        cJSON_AddNumberToObject(o1, "direct_ms", dir * 1e3);
        if (li.is_conv) {
            cJSON_AddNumberToObject(o1, "direct_gflop_per_s", gf / dir);
            cJSON_AddNumberToObject(o1, "gemm_ms", gem * 1e3);
            cJSON_AddNumberToObject(o1, "gemm_gflop_per_s", gf / gem);
            cJSON_AddNumberToObject(o1, "pixel_ms", pix * 1e3);
            cJSON_AddNumberToObject(o1, "pixel_gflop_per_s", gf / pix);
            cJSON_AddNumberToObject(o1, "sgemm_alone_gflop_per_s", sg > 0 ? gf / sg : 0);
            cJSON_AddStringToObject(o1, "chosen", chosen);
        }
        cJSON_AddItemToArray(jl, o1);
    }
    /* Square SGEMM: what CLBlast reaches on this device without our shapes. */
    double sq = 0;
    if (bench_time_sgemm(ctx, 1024, 1024, 1024, o.repeats, &sq) == 0) {
        printf("\nCLBlast SGEMM 1024x1024x1024: %.2f ms, %.2f GFLOP/s\n", sq * 1e3,
               2.0 * 1024 * 1024 * 1024 / sq / 1e9);
        cJSON_AddNumberToObject(root, "sgemm_1024_gflop_per_s", 2.0 * 1024 * 1024 * 1024 / sq / 1e9);
    }
    printf("sum of the faster path per layer: %.2f ms per tile\n", best_total * 1e3);
    bench_nms(e, o.repeats, cJSON_AddArrayToObject(root, "nms"));
    char *text = cJSON_Print(root);
    cnp_status st = cnp_file_write(o.json, text, strlen(text), &err);
    free(text);
    if (st != CNP_OK) {
        fprintf(stderr, "bench_detect: %s\n", err.msg);
        rc = 1;
    } else {
        printf("wrote %s\n", o.json);
    }
out:
    cJSON_Delete(root);
    if (buf)
        clReleaseMemObject(buf);
    det_engine_free(e);
    ocl_ctx_free(ctx);
    cnp_image_free(&img);
    det_model_free(m);
    return rc;
}
