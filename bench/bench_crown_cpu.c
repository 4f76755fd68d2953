/* bench_crown_cpu: a crown model (.cnw version 1) on the CPU backend
 * (src/detect/cpu, oneDNN): the network alone on the whole image (the input
 * transform and every layer, det_dnnl_crown_forward) and the whole
 * detection as `canopy run` does it (tiles, decode, NMS:
 * det_dnnl_crown_run), medians over repeats after one warm-up run. --dump
 * writes the network's output on the whole image (4 x oh x ow float32,
 * little-endian) for bench/crown_torch.py to check PyTorch against before
 * timing it. bench/crown.sh runs it next to bench_detect (the OpenCL
 * engine) and PyTorch.
 *
 *   bench_crown_cpu --model FILE --image PNG [--repeats N] [--threads N]
 *                   [--dump FILE] [--json FILE]
 */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "canopy/buf.h"
#include "canopy/config.h"
#include "canopy/detect.h"
#include "canopy/image.h"
#include "detect/cpu/dnnl_crown.h"

#define MAX_REPEATS 64

static int usage(void)
{
    fprintf(stderr, "usage: bench_crown_cpu --model FILE --image PNG [--repeats N] "
                    "[--threads N] [--dump FILE] [--json FILE]\n");
    return 2;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'}, {"image", required_argument, NULL, 'i'},
        {"repeats", required_argument, NULL, 'r'}, {"threads", required_argument, NULL, 'T'},
        {"dump", required_argument, NULL, 'd'}, {"json", required_argument, NULL, 'j'},
        {0, 0, 0, 0},
    };
    const char *model = NULL, *image = NULL, *dump = NULL, *json = NULL;
    int repeats = 5, threads = 0, c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'i': image = optarg; break;
        case 'r': repeats = atoi(optarg); break;
        case 'T': threads = atoi(optarg); break;
        case 'd': dump = optarg; break;
        case 'j': json = optarg; break;
        default: return usage();
        }
    }
    if (!model || !image || repeats < 1 || repeats > MAX_REPEATS || threads < 0)
        return usage();
    cnp_config cfg;
    cnp_config_defaults(&cfg);
    cnp_err err;
    det_model *m = NULL;
    cnp_image img = {0};
    det_dnnl_crown *e = NULL;
    float *out = NULL;
    int rc = 1;
    if (det_model_load(model, &m, &err) != CNP_OK || img_png_read_file(image, 0, &img, &err) != CNP_OK)
        goto fail;
    if (det_model_has_boxes(m)) {
        snprintf(err.msg, sizeof err.msg, "%s: not a crown model (a graph model)", model);
        goto fail;
    }
    det_dnnl_opts o = {.threads = threads};
    if (det_dnnl_crown_create(m, &cfg.detector, &o, &e, &err) != CNP_OK)
        goto fail;
    double net[MAX_REPEATS], det[MAX_REPEATS];
    uint32_t oh = 0, ow = 0;
    size_t ntrees = 0;
    for (int r = -1; r < repeats; r++) {
        free(out);
        out = NULL;
        double t0 = cnp_now();
        if (det_dnnl_crown_forward(e, img.rgba, img.width, img.width, img.height, &out, &oh, &ow,
                                   &err) != CNP_OK)
            goto fail;
        if (r >= 0)
            net[r] = cnp_now() - t0;
    }
    for (int r = -1; r < repeats; r++) {
        cnp_tree *trees = NULL;
        double t0 = cnp_now();
        if (det_dnnl_crown_run(e, &img, &trees, &ntrees, &err) != CNP_OK)
            goto fail;
        if (r >= 0)
            det[r] = cnp_now() - t0;
        free(trees);
    }
    int used = det_dnnl_graph_threads(det_dnnl_crown_graph(e));
    double net_s = cnp_median(net, repeats), det_s = cnp_median(det, repeats);
    double gflop = det_model_flops(m, img.width, img.height) / 1e9;
    printf("crown %s on %ux%u, CPU backend (oneDNN, %d threads), median of %d: network %.4f s "
           "(%.1f GFLOP/s), detection %.4f s, %zu trees\n", det_model_version(m), img.width,
           img.height, used, repeats, net_s, gflop / net_s, det_s, ntrees);
    if (dump) {
        FILE *f = fopen(dump, "wb");
        size_t floats = 4 * (size_t)oh * ow;
        if (!f || fwrite(out, sizeof *out, floats, f) != floats || fclose(f) != 0) {
            snprintf(err.msg, sizeof err.msg, "%s: cannot write the output", dump);
            goto fail;
        }
    }
    if (json) {
        cJSON *root = cJSON_CreateObject();
        cJSON_AddStringToObject(root, "model", det_model_version(m));
        cJSON_AddStringToObject(root, "image", image);
        cJSON_AddNumberToObject(root, "width", img.width);
        cJSON_AddNumberToObject(root, "height", img.height);
        cJSON_AddNumberToObject(root, "threads", used);
        cJSON_AddNumberToObject(root, "repeats", repeats);
        cJSON_AddNumberToObject(root, "gflop", gflop);
        cJSON_AddNumberToObject(root, "network_s", net_s);
        cJSON_AddNumberToObject(root, "detect_s", det_s);
        cJSON_AddNumberToObject(root, "trees", (double)ntrees);
        cJSON_AddNumberToObject(root, "out_h", oh);
        cJSON_AddNumberToObject(root, "out_w", ow);
        char *s = cJSON_Print(root);
        FILE *f = fopen(json, "w");
        if (f) {
            fputs(s, f);
            fclose(f);
        }
        free(s);
        cJSON_Delete(root);
    }
    rc = 0;
fail:
    if (rc)
        fprintf(stderr, "bench_crown_cpu: %s\n", err.msg);
    free(out);
    det_dnnl_crown_free(e);
    cnp_image_free(&img);
    det_model_free(m);
    return rc;
}
