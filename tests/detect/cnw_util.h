/* Test helpers: a .cnw writer (independent of tools/train/export.py) and
 * random models/images, so the detector tests need no trained weights. */
#ifndef CANOPY_TEST_CNW_UTIL_H
#define CANOPY_TEST_CNW_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "canopy/buf.h"
#include "canopy/image.h"

typedef struct tw_tensor {
    char name[64];
    int ndim;
    uint32_t dims[4];
    float *data; /* owned */
} tw_tensor;

typedef struct tw_layer {
    const char *type; /* "conv" | "maxpool" */
    const char *name;
    int in, out, k, dilation;
    int relu;
} tw_layer;

/* A model description: architecture JSON plus tensors. */
typedef struct tw_model {
    char arch[8192];
    tw_tensor tensors[64];
    int n_tensors;
} tw_model;

/* Builds arch JSON and random weights (seeded) for the given layers. */
void tw_model_random(tw_model *m, const char *version, int stride, const tw_layer *layers,
                     int n_layers, uint32_t seed);
void tw_model_free(tw_model *m);

/* Serializes to the .cnw layout (appending to out), CRC included. */
void tw_model_write(const tw_model *m, cnp_buf *out);

/* Recomputes the trailing CRC-32 after a deliberate edit. */
void tw_fix_crc(cnp_buf *b);

/* Writes bytes to path; aborts the test on failure. */
void tw_write_file(const char *path, const void *data, size_t len);

/* The 7-layer layout of models/test/random-tiny.cnw (stride 4, dilations 1/2/4). */
extern const tw_layer tw_tiny_layers[];
extern const int tw_tiny_n_layers;

/* Deterministic pseudo-random numbers. */
uint32_t tw_rand(uint32_t *state);
float tw_randf(uint32_t *state); /* uniform [0, 1) */

/* Random RGBA image (seeded). */
void tw_image_random(cnp_image *img, uint32_t w, uint32_t h, uint32_t seed);

#endif
