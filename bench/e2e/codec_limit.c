/* The codec-bound limit of the binarize-only pipeline: every thread decodes
 * input PNGs and encodes their 1-bit masks (canopy's own libpng paths,
 * img_png_decode and img_png_encode_mask, zlib level 1 like [output]
 * png_level) in a tight loop over images held in memory; no network, no
 * device, no database. Whatever canopy drain reaches end to end is bounded by
 * this figure on the same machine.
 *
 *   codec_limit [--threads N] [--seconds S] [--overlay] FILE.png...
 *
 * --threads: 0 (default) = one per online core. --overlay also encodes the
 * RGB overlay, as canopy does unless [output] overlay = false. Prints one JSON
 * object: threads, images, megapixels, seconds, images_per_s, mpix_per_s.
 * Built by bench/e2e/run_bench.sh against the build's libcanopy_lib.a. */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "canopy/buf.h"
#include "canopy/image.h"
#include "canopy/status.h"

typedef struct input {
    cnp_buf png;
    uint64_t pixels;
} input;

typedef struct shared {
    const input *inputs;
    size_t n;
    double seconds;
    bool overlay;
    double t0;
} shared;

typedef struct worker {
    pthread_t thread;
    const shared *sh;
    size_t first;
    uint64_t images, pixels;
    int failed;
} worker;

/* Decodes and encodes images first, first+1, ... (wrapping) until the time is up. */
static void *work(void *arg)
{
    worker *w = arg;
    const shared *sh = w->sh;
    cnp_buf out = {0};
    uint8_t *mask = NULL;
    size_t mask_cap = 0;
    for (size_t i = w->first; cnp_now() - sh->t0 < sh->seconds; i++) {
        const input *in = &sh->inputs[i % sh->n];
        cnp_image img = {0};
        cnp_err err;
        if (img_png_decode(in->png.data, in->png.len, "input", 0, &img, &err) != CNP_OK) {
            fprintf(stderr, "codec_limit: %s\n", err.msg);
            w->failed = 1;
            break;
        }
        size_t npix = (size_t)img.width * img.height;
        if (npix > mask_cap) {
            free(mask);
            mask_cap = npix;
            mask = malloc(mask_cap);
            if (!mask) {
                w->failed = 1;
                cnp_image_free(&img);
                break;
            }
        }
        /* A trivial threshold: the point is the codecs, not the binarizer. */
        for (size_t p = 0; p < npix; p++)
            mask[p] = img.rgba[4 * p + 1] > 100;
        out.len = 0;
        cnp_status st = img_png_encode_mask(mask, img.width, img.height, 1, &out, &err);
        if (st == CNP_OK && sh->overlay) {
            out.len = 0;
            st = img_png_encode_rgb(&img, 1, &out, &err);
        }
        cnp_image_free(&img);
        if (st != CNP_OK) {
            fprintf(stderr, "codec_limit: %s\n", err.msg);
            w->failed = 1;
            break;
        }
        w->images++;
        w->pixels += in->pixels;
    }
    free(mask);
    cnp_buf_free(&out);
    return NULL;
}

int main(int argc, char **argv)
{
    int threads = 0;
    double seconds = 5.0;
    bool overlay = false;
    int argi = 1;
    for (; argi < argc && argv[argi][0] == '-'; argi++) {
        if (!strcmp(argv[argi], "--threads") && argi + 1 < argc)
            threads = atoi(argv[++argi]);
        else if (!strcmp(argv[argi], "--seconds") && argi + 1 < argc)
            seconds = atof(argv[++argi]);
        else if (!strcmp(argv[argi], "--overlay"))
            overlay = true;
        else {
            fprintf(stderr, "usage: codec_limit [--threads N] [--seconds S] [--overlay] FILE...\n");
            return 2;
        }
    }
    size_t n = (size_t)(argc - argi);
    if (n == 0) {
        fprintf(stderr, "codec_limit: no input files\n");
        return 2;
    }
    if (threads <= 0)
        threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    input *inputs = calloc(n, sizeof *inputs);
    worker *workers = calloc((size_t)threads, sizeof *workers);
    if (!inputs || !workers)
        return 1;
    for (size_t i = 0; i < n; i++) {
        cnp_err err;
        uint32_t w, h;
        if (cnp_file_read(argv[argi + i], 1u << 30, &inputs[i].png, &err) != CNP_OK ||
            img_png_probe(inputs[i].png.data, inputs[i].png.len, argv[argi + i], &w, &h,
                          &err) != CNP_OK) {
            fprintf(stderr, "codec_limit: %s\n", err.msg);
            return 1;
        }
        inputs[i].pixels = (uint64_t)w * h;
    }
    shared sh = {.inputs = inputs, .n = n, .seconds = seconds, .overlay = overlay,
                 .t0 = cnp_now()};
    for (int t = 0; t < threads; t++) {
        workers[t].sh = &sh;
        workers[t].first = (size_t)t;
        if (pthread_create(&workers[t].thread, NULL, work, &workers[t]) != 0)
            return 1;
    }
    uint64_t images = 0, pixels = 0;
    int failed = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(workers[t].thread, NULL);
        images += workers[t].images;
        pixels += workers[t].pixels;
        failed |= workers[t].failed;
    }
    double elapsed = cnp_now() - sh.t0;
    printf("{\"threads\": %d, \"overlay\": %s, \"images\": %llu, \"megapixels\": %.3f, "
           "\"seconds\": %.3f, \"images_per_s\": %.2f, \"mpix_per_s\": %.3f}\n",
           threads, overlay ? "true" : "false", (unsigned long long)images, pixels / 1e6,
           elapsed, images / elapsed, pixels / 1e6 / elapsed);
    for (size_t i = 0; i < n; i++)
        cnp_buf_free(&inputs[i].png);
    free(inputs);
    free(workers);
    return failed;
}
