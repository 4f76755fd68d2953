/* canopy eval: runs the detector over annotated images and prints precision,
 * recall, F1 and count error per image and overall (micro-averaged); with a
 * classifier and typed annotations, the confusion matrix of tree types. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canopy/detect.h"
#include "canopy/image.h"
#include "canopy/pipeline.h"
#include "canopy/raster.h"
#include "cli/cli.h"
#include "cli/commands.h"

typedef struct eval_image {
    char name[512];
    det_match_stats s;
    double seconds;
} eval_image;

/* Runs whichever detector was set up: the run's device side (the backend
 * [device] selects, as `canopy run` would) when dev, else the C reference. */
typedef struct eval_detector {
    det_model *m;
    pipe_device *dev;
    const cnp_config *cfg;
    /* [classifier] model: its names (the device's or cls_model), and for
     * --cpu its own model and C reference handle. */
    const det_model *types;
    det_model *cls_model;
    det_backend *cls;
} eval_detector;

/* The confusion of tree types over matched pairs: counts[a * k + p] pairs
 * of annotated type a and predicted type p. */
typedef struct eval_types {
    int k;
    size_t *counts;
    bool annotated; /* some annotation file had a type column */
} eval_types;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: canopy eval --images DIR --annotations DIR [options]\n"
            "\n"
            "Runs the tree detector on every image named in DIR/*.csv (columns\n"
            "image_path,xmin,ymin,xmax,ymax,label; image_path names a raster, PNG,\n"
            "GeoTIFF or JPEG, in the --images directory), matches predictions one-to-one to the annotated\n"
            "boxes at IoU >= 0.4 (prediction box = centre +/- radius, greedy by score)\n"
            "and prints precision, recall, F1 and count error per image and overall\n"
            "(micro-averaged over all boxes of the images evaluated). An image that\n"
            "cannot be read is reported on stderr and left out of the scores.\n"
            "\n"
            "options:\n"
            "  -c, --config FILE      configuration file (see config/canopy.ini)\n"
            "      --images DIR       directory of the images the annotations name\n"
            "      --annotations DIR  directory of *.csv annotation files\n"
            "      --model FILE       [detector] model\n"
            "      --threshold X      [detector] score_threshold for this run\n"
            "      --iou X            IoU a prediction needs to match a box (default 0.4)\n"
            "      --classifier FILE  [classifier] model: with annotations that carry a\n"
            "                         type column (`type`, or `label` naming the\n"
            "                         classifier's types) a confusion matrix of types\n"
            "                         over matched pairs, precision and recall per type\n"
            "      --cpu              use the C reference instead of the backend [device]\n"
            "                         selects (as canopy run: oneDNN or OpenCL)\n"
            "      --json             one JSON document on stdout\n"
            "      --set S.K=V        override any configuration key\n"
            "  -h, --help             this text\n\n"
            "Exit codes: 0 all evaluated, 3 some images not evaluated, 2 usage or\n"
            "configuration error, 1 fatal error (also when no image could be evaluated).\n");
}

/* Reads and decodes an annotated image as `run` would: PNG, GeoTIFF, JPEG
 * (by content), within [input] max_object_bytes and [limits] max_pixels. */
static cnp_status read_raster(const char *path, const cnp_config *cfg, cnp_image *img,
                              cnp_err *err)
{
    cnp_buf data = {0};
    cnp_status st = cnp_file_read(path, (size_t)cfg->input.max_object_bytes, &data, err);
    if (st == CNP_OK)
        st = img_raster_decode(data.data, data.len, path, (uint64_t)cfg->limits.max_pixels, img,
                               NULL, NULL, err);
    cnp_buf_free(&data);
    return st;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted list of the .csv paths in dir. */
static int list_csv(const char *dir, char ***out, size_t *n)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "canopy eval: %s: cannot open directory\n", dir);
        return CNP_EXIT_USAGE;
    }
    char **v = NULL;
    size_t cap = 0;
    *n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len < 5 || strcmp(de->d_name + len - 4, ".csv") != 0)
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            char **p = realloc(v, cap * sizeof *p);
            if (!p)
                break;
            v = p;
        }
        size_t sz = strlen(dir) + len + 2;
        v[*n] = malloc(sz);
        if (!v[*n])
            break;
        snprintf(v[*n], sz, "%s/%s", dir, de->d_name);
        (*n)++;
    }
    closedir(d);
    if (*n > 1)
        qsort(v, *n, sizeof *v, cmp_str);
    *out = v;
    if (*n == 0) {
        fprintf(stderr, "canopy eval: %s: no .csv annotation files\n", dir);
        return CNP_EXIT_USAGE;
    }
    return CNP_EXIT_OK;
}

static cnp_status detect(eval_detector *d, const cnp_image *img, cnp_tree **trees, size_t *n,
                         cnp_err *err)
{
    if (!d->dev && det_model_has_boxes(d->m))
        return det_box_ref_run(d->m, &d->cfg->detector, img, trees, n, err);
    if (!d->dev)
        return det_ref_run(d->m, img, det_score_threshold(d->m, d->cfg->detector.score_threshold),
                           d->cfg->detector.nms_iou >= 0 ? (float)d->cfg->detector.nms_iou
                                                         : (float)det_model_nms_iou(d->m),
                           d->cfg->detector.tile,
                           d->cfg->detector.tile_overlap, trees, n, err);
    pipe_result r;
    cnp_status result = pipe_device_process(d->dev, img, &r, err);
    if (result != CNP_OK)
        return result;
    *trees = r.trees;
    *n = r.ntrees;
    r.trees = NULL;
    pipe_result_free(&r);
    return CNP_OK;
}

/* Types the trees on the C reference (--cpu; the device side types them in
 * pipe_device_process). */
static cnp_status classify(eval_detector *d, const cnp_image *img, cnp_tree *trees, size_t n,
                           cnp_err *err)
{
    if (!d->cls)
        return CNP_OK;
    det_pixels in = {.w = img->width, .h = img->height, .host = img->rgba};
    return det_backend_classify(d->cls, &in, trees, n, err);
}

/* Adds the matched pairs of one image to the confusion of types. */
static cnp_status count_types(const eval_detector *d, const char *csv, const char *image,
                              const cnp_tree *trees, size_t nt, const det_box *boxes,
                              size_t nb, double iou, eval_types *et, cnp_err *err)
{
    int *types = NULL;
    size_t ntypes = 0;
    size_t *pair = malloc((nt ? nt : 1) * sizeof *pair);
    if (!pair) {
        cnp_err_set(err, "out of memory");
        return CNP_ERR_NOMEM;
    }
    cnp_status st = det_annotations_types(csv, image, d->types, &types, &ntypes, err);
    if (st == CNP_OK && types && ntypes == nb) {
        det_match_stats s;
        det_match_pairs(trees, nt, boxes, nb, iou, pair, &s);
        et->annotated = true;
        for (size_t i = 0; i < nt; i++)
            if (pair[i] != SIZE_MAX && types[pair[i]] >= 0 && trees[i].typed &&
                trees[i].type >= 0 && trees[i].type < et->k)
                et->counts[(size_t)types[pair[i]] * (size_t)et->k + (size_t)trees[i].type]++;
    }
    free(types);
    free(pair);
    return st;
}

/* Evaluates every image named in one CSV; appends to *imgs. Returns the
 * number of images that failed. */
static int eval_csv(eval_detector *d, const char *csv, const char *images, double iou,
                    eval_types *et, eval_image **imgs, size_t *nimg, size_t *cap)
{
    cnp_err err;
    char **names = NULL;
    size_t nn = 0;
    int failed = 0;
    if (det_annotations_images(csv, &names, &nn, &err) != CNP_OK) {
        fprintf(stderr, "canopy eval: %s\n", err.msg);
        return 1;
    }
    for (size_t i = 0; i < nn; i++) {
        det_box *boxes = NULL;
        size_t nb = 0, nt = 0;
        cnp_tree *trees = NULL;
        cnp_image img = {0};
        char path[4096];
        /* image_path may carry a directory: the image is looked up by its base
         * name in --images (as tools/train/evaluate.py does). */
        const char *base = strrchr(names[i], '/');
        snprintf(path, sizeof path, "%s/%s", images, base ? base + 1 : names[i]);
        double t0 = cnp_now();
        cnp_status st = det_annotations_read(csv, names[i], &boxes, &nb, &err);
        if (st == CNP_OK)
            st = read_raster(path, d->cfg, &img, &err);
        if (st == CNP_OK)
            st = detect(d, &img, &trees, &nt, &err);
        if (st == CNP_OK && d->types)
            st = classify(d, &img, trees, nt, &err);
        if (st == CNP_OK && d->types)
            st = count_types(d, csv, names[i], trees, nt, boxes, nb, iou, et, &err);
        if (st == CNP_OK && *nimg == *cap) {
            *cap = *cap ? 2 * *cap : 16;
            eval_image *p = realloc(*imgs, *cap * sizeof *p);
            if (!p)
                st = CNP_ERR_NOMEM;
            else
                *imgs = p;
        }
        if (st == CNP_OK) {
            eval_image *e = &(*imgs)[(*nimg)++];
            snprintf(e->name, sizeof e->name, "%s", names[i]);
            det_match(trees, nt, boxes, nb, iou, &e->s);
            e->seconds = cnp_now() - t0;
        } else {
            fprintf(stderr, "canopy eval: %s (named in %s): not evaluated: %s\n", names[i], csv,
                    err.msg);
            failed++;
        }
        free(trees);
        free(boxes);
        cnp_image_free(&img);
    }
    det_names_free(names, nn);
    return failed;
}

static det_match_stats overall(const eval_image *imgs, size_t n, double *mean_abs_count)
{
    det_match_stats s = {0};
    double abs_sum = 0;
    for (size_t i = 0; i < n; i++) {
        s.predictions += imgs[i].s.predictions;
        s.annotations += imgs[i].s.annotations;
        s.matched += imgs[i].s.matched;
        abs_sum += labs(imgs[i].s.count_error);
    }
    det_match_stats_finish(&s);
    *mean_abs_count = n ? abs_sum / (double)n : 0;
    return s;
}

static cJSON *stats_json(const det_match_stats *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "annotations", (double)s->annotations);
    cJSON_AddNumberToObject(o, "predictions", (double)s->predictions);
    cJSON_AddNumberToObject(o, "matched", (double)s->matched);
    cJSON_AddNumberToObject(o, "precision", s->precision);
    cJSON_AddNumberToObject(o, "recall", s->recall);
    cJSON_AddNumberToObject(o, "f1", s->f1);
    cJSON_AddNumberToObject(o, "count_error", (double)s->count_error);
    return o;
}

/* Per type k: pairs annotated k, predicted k, and both. */
static void type_sums(const eval_types *et, int k, size_t *annotated, size_t *predicted,
                      size_t *correct)
{
    *annotated = *predicted = 0;
    for (int j = 0; j < et->k; j++) {
        *annotated += et->counts[(size_t)k * (size_t)et->k + (size_t)j];
        *predicted += et->counts[(size_t)j * (size_t)et->k + (size_t)k];
    }
    *correct = et->counts[(size_t)k * (size_t)et->k + (size_t)k];
}

static size_t type_total(const eval_types *et, size_t *correct)
{
    size_t all = 0;
    *correct = 0;
    for (int a = 0; a < et->k; a++)
        for (int p = 0; p < et->k; p++) {
            all += et->counts[(size_t)a * (size_t)et->k + (size_t)p];
            *correct += a == p ? et->counts[(size_t)a * (size_t)et->k + (size_t)p] : 0;
        }
    return all;
}

/* A ratio, or JSON null where its denominator is 0 (nothing to score). */
static void add_ratio(cJSON *o, const char *key, size_t num, size_t den)
{
    if (den)
        cJSON_AddNumberToObject(o, key, (double)num / (double)den);
    else
        cJSON_AddNullToObject(o, key);
}

/* "types": the confusion matrix (rows annotated, columns predicted) and
 * precision and recall per type over matched pairs. */
static cJSON *types_json(const eval_types *et, const det_model *cls)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "classifier", det_model_version(cls));
    cJSON *labels = cJSON_AddArrayToObject(o, "labels");
    cJSON *rows = cJSON_AddArrayToObject(o, "confusion");
    cJSON *per = cJSON_AddArrayToObject(o, "per_type");
    for (int a = 0; a < et->k; a++) {
        cJSON_AddItemToArray(labels, cJSON_CreateString(det_model_type_name(cls, a)));
        cJSON *row = cJSON_CreateArray();
        for (int p = 0; p < et->k; p++)
            cJSON_AddItemToArray(
                row, cJSON_CreateNumber((double)et->counts[(size_t)a * (size_t)et->k + (size_t)p]));
        cJSON_AddItemToArray(rows, row);
        size_t ann, pred, ok;
        type_sums(et, a, &ann, &pred, &ok);
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "type", det_model_type_name(cls, a));
        cJSON_AddNumberToObject(t, "annotated", (double)ann);
        cJSON_AddNumberToObject(t, "predicted", (double)pred);
        cJSON_AddNumberToObject(t, "correct", (double)ok);
        add_ratio(t, "precision", ok, pred);
        add_ratio(t, "recall", ok, ann);
        cJSON_AddItemToArray(per, t);
    }
    size_t ok, all = type_total(et, &ok);
    cJSON_AddNumberToObject(o, "pairs", (double)all);
    cJSON_AddNumberToObject(o, "correct", (double)ok);
    add_ratio(o, "accuracy", ok, all);
    return o;
}

static void print_ratio(size_t num, size_t den, int width)
{
    if (den)
        printf(" %*.3f", width, (double)num / (double)den);
    else
        printf(" %*s", width, "-");
}

static void types_table(const eval_types *et, const det_model *cls)
{
    size_t ok, all = type_total(et, &ok);
    printf("\ntree types (classifier %s): %zu matched pairs with an annotated type, %zu of "
           "the same type (accuracy",
           det_model_version(cls), all, ok);
    print_ratio(ok, all, 0);
    printf(")\n%-20s", "annotated\\predicted");
    for (int p = 0; p < et->k; p++)
        printf(" %8.8s", det_model_type_name(cls, p));
    printf("\n");
    for (int a = 0; a < et->k; a++) {
        printf("%-20.20s", det_model_type_name(cls, a));
        for (int p = 0; p < et->k; p++)
            printf(" %8zu", et->counts[(size_t)a * (size_t)et->k + (size_t)p]);
        printf("\n");
    }
    printf("%-20s %9s %9s %7s %9s %7s\n", "type", "annotated", "predicted", "correct",
           "precision", "recall");
    for (int k = 0; k < et->k; k++) {
        size_t ann, pred, c;
        type_sums(et, k, &ann, &pred, &c);
        printf("%-20.20s %9zu %9zu %7zu", det_model_type_name(cls, k), ann, pred, c);
        print_ratio(c, pred, 9);
        print_ratio(c, ann, 7);
        printf("\n");
    }
}

static void print_json(const eval_image *imgs, size_t n, const det_model *m,
                       const char *device, const cnp_config *cfg, double iou,
                       const eval_types *et, const det_model *cls)
{
    double mac;
    det_match_stats all = overall(imgs, n, &mac);
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "model", det_model_version(m));
    cJSON_AddStringToObject(root, "device", device);
    cJSON_AddNumberToObject(root, "iou", iou);
    cJSON_AddNumberToObject(root, "score_threshold",
                            det_score_threshold(m, cfg->detector.score_threshold));
    cJSON *arr = cJSON_AddArrayToObject(root, "images");
    for (size_t i = 0; i < n; i++) {
        cJSON *o = stats_json(&imgs[i].s);
        cJSON_AddStringToObject(o, "image", imgs[i].name);
        cJSON_AddNumberToObject(o, "seconds", imgs[i].seconds);
        cJSON_AddItemToArray(arr, o);
    }
    cJSON *o = stats_json(&all);
    cJSON_AddNumberToObject(o, "images", (double)n);
    cJSON_AddNumberToObject(o, "mean_abs_count_error", mac);
    cJSON_AddItemToObject(root, "overall", o);
    if (et->annotated)
        cJSON_AddItemToObject(root, "types", types_json(et, cls));
    char *text = cJSON_Print(root);
    if (text)
        printf("%s\n", text);
    free(text);
    cJSON_Delete(root);
}

static void print_table(const eval_image *imgs, size_t n, const det_model *m,
                        const char *device, const cnp_config *cfg, double iou,
                        const eval_types *et, const det_model *cls)
{
    printf("model %s (%s), IoU >= %.2f, score >= %.2f\n", det_model_version(m), device, iou,
           det_score_threshold(m, cfg->detector.score_threshold));
    printf("%-28s %6s %6s %6s %9s %7s %6s %7s\n", "image", "truth", "pred", "match",
           "precision", "recall", "F1", "count");
    for (size_t i = 0; i < n; i++) {
        const det_match_stats *s = &imgs[i].s;
        printf("%-28s %6zu %6zu %6zu %9.3f %7.3f %6.3f %+7ld\n", imgs[i].name, s->annotations,
               s->predictions, s->matched, s->precision, s->recall, s->f1, s->count_error);
    }
    double mac;
    det_match_stats s = overall(imgs, n, &mac);
    printf("%-28s %6zu %6zu %6zu %9.3f %7.3f %6.3f %+7ld  (mean |count error| %.1f)\n",
           "overall (micro)", s.annotations, s.predictions, s.matched, s.precision, s.recall,
           s.f1, s.count_error, mac);
    if (et->annotated)
        types_table(et, cls);
}

/* --cpu with [classifier] model: the classifier on the C reference. */
static int setup_classifier(eval_detector *d, const cnp_config *cfg)
{
    if (!cfg->classifier.model[0])
        return CNP_EXIT_OK;
    cnp_err err;
    char path[2048];
    cnp_status st = det_model_resolve_path(cfg->classifier.model, path, sizeof path, &err);
    if (st == CNP_OK)
        st = det_model_load(path, &d->cls_model, &err);
    if (st == CNP_OK && !det_model_is_classifier(d->cls_model)) {
        cnp_err_set(&err, "[classifier] model %s: a detector, not a classifier (import a "
                          "DeepForest CropModel with canopy model import)",
                    path);
        st = CNP_ERR_CONFIG;
    }
    if (st == CNP_OK)
        st = det_backend_create(d->cls_model, NULL, &cfg->detector, &d->cls, &err);
    if (st != CNP_OK) {
        fprintf(stderr, "canopy eval: %s\n", err.msg);
        return st == CNP_ERR_NOTFOUND || st == CNP_ERR_CONFIG ? CNP_EXIT_USAGE : CNP_EXIT_FATAL;
    }
    d->types = d->cls_model;
    return CNP_EXIT_OK;
}

/* Loads the model and, unless cpu, the run's device side. */
static int setup(eval_detector *d, const cnp_config *cfg, bool cpu, char *device, size_t len)
{
    cnp_err err;
    char path[2048];
    det_model *m = NULL;
    cnp_status st = det_model_resolve_path(cfg->detector.model, path, sizeof path, &err);
    if (st == CNP_OK)
        st = det_model_load(path, &m, &err);
    if (st != CNP_OK) {
        fprintf(stderr, "canopy eval: %s\n", err.msg);
        return st == CNP_ERR_NOTFOUND || st == CNP_ERR_CONFIG ? CNP_EXIT_USAGE : CNP_EXIT_FATAL;
    }
    d->m = m;
    d->cfg = cfg;
    snprintf(device, len, "the C reference");
    if (cpu)
        return setup_classifier(d, cfg);
    pipe_device_params dp = {.opencl = &cfg->opencl, .binarize = &cfg->binarize,
                             .detector = &cfg->detector, .device = &cfg->device,
                             .classifier = &cfg->classifier};
    st = pipe_device_create(&dp, m, &d->dev, &err);
    if (st != CNP_OK) {
        fprintf(stderr, "canopy eval: %s\n", err.msg);
        return st == CNP_ERR_CONFIG ? CNP_EXIT_USAGE : CNP_EXIT_FATAL;
    }
    snprintf(device, len, "%s", pipe_device_description(d->dev));
    d->types = pipe_device_classifier(d->dev);
    return CNP_EXIT_OK;
}

int cmd_eval(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"images", required_argument, NULL, 'i'},
        {"annotations", required_argument, NULL, 'a'},
        {"model", required_argument, NULL, 'm'},
        {"json", no_argument, NULL, 'j'},
        {"cpu", no_argument, NULL, 'C'},
        {"classifier", required_argument, NULL, 'L'},
        {"iou", required_argument, NULL, 'I'},
        {"threshold", required_argument, NULL, 'T'},
        {"set", required_argument, NULL, 'S'},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    const char *config = NULL, *images = NULL, *annotations = NULL;
    bool json = false, cpu = false;
    double iou = 0.4;
    int c, rc = CNP_EXIT_OK;
    cli_overrides ov = {0};
    cnp_config cfg;
    eval_detector d = {0};
    char **csvs = NULL;
    size_t ncsv = 0, nimg = 0, cap = 0;
    eval_image *imgs = NULL;
    eval_types et = {0};
    char device[512];

    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1 && rc == CNP_EXIT_OK) {
        switch (c) {
        case 'c': config = optarg; break;
        case 'i': images = optarg; break;
        case 'a': annotations = optarg; break;
        case 'm': rc = cli_override(&ov, "detector", "model", optarg); break;
        case 'T': rc = cli_override(&ov, "detector", "score_threshold", optarg); break;
        case 'L': rc = cli_override(&ov, "classifier", "model", optarg); break;
        case 'S': rc = cli_override_set(&ov, optarg); break;
        case 'j': json = true; break;
        case 'C': cpu = true; break;
        case 'I': {
            char *end;
            iou = strtod(optarg, &end);
            if (*end || !(iou > 0 && iou <= 1)) {
                fprintf(stderr, "canopy eval: --iou %s: need a number in (0, 1]\n", optarg);
                rc = CNP_EXIT_USAGE;
            }
            break;
        }
        case 'h': usage(stdout); goto out;
        default: rc = CNP_EXIT_USAGE; break;
        }
    }
    if (rc != CNP_EXIT_OK)
        goto out;
    if (!images || !annotations || optind < argc) {
        usage(stderr);
        rc = CNP_EXIT_USAGE;
        goto out;
    }
    if ((rc = cli_config_load("eval", config, &ov, &cfg)) != CNP_EXIT_OK)
        goto out;
    if ((rc = list_csv(annotations, &csvs, &ncsv)) != CNP_EXIT_OK)
        goto out;
    if ((rc = setup(&d, &cfg, cpu, device, sizeof device)) != CNP_EXIT_OK)
        goto out;
    if (d.types) {
        et.k = det_model_type_count(d.types);
        if (!(et.counts = calloc((size_t)et.k * (size_t)et.k + 1, sizeof *et.counts))) {
            fprintf(stderr, "canopy eval: out of memory\n");
            rc = CNP_EXIT_FATAL;
            goto out;
        }
    }
    int failed = 0;
    for (size_t i = 0; i < ncsv; i++)
        failed += eval_csv(&d, csvs[i], images, iou, &et, &imgs, &nimg, &cap);
    /* Scores only over images that were evaluated: with none, there is
     * nothing to score (an empty set would read as a perfect 1.000). */
    if (nimg == 0) {
        fprintf(stderr, "canopy eval: no image could be evaluated (%d failed), no scores\n",
                failed);
        rc = CNP_EXIT_FATAL;
        goto out;
    }
    if (d.types && !et.annotated)
        fprintf(stderr, "canopy eval: the annotations carry no type column (`type`, or "
                        "`label` naming the classifier's types): no confusion of types\n");
    if (json)
        print_json(imgs, nimg, d.m, device, &cfg, iou, &et, d.types);
    else
        print_table(imgs, nimg, d.m, device, &cfg, iou, &et, d.types);
    if (failed)
        fprintf(stderr, "canopy eval: %d image(s) not evaluated; scores cover the other %zu\n",
                failed, nimg);
    rc = failed ? CNP_EXIT_PARTIAL : CNP_EXIT_OK;
out:
    free(imgs);
    free(et.counts);
    det_backend_free(d.cls);
    det_model_free(d.cls_model);
    for (size_t i = 0; i < ncsv; i++)
        free(csvs[i]);
    free(csvs);
    pipe_device_free(d.dev);
    det_model_free(d.m);
    cli_overrides_free(&ov);
    return rc;
}
