/* Tree-type classifiers (DeepForest's CropModel, graph.h det_classifier):
 * the crop and transform rules in C, softmax, and the driver every
 * classifier table shares (ref/classify_ref.c). The C code here is the
 * reference the device's kernels (kernels/crop.cl) are held to. Not part of
 * the public API. */
#ifndef CANOPY_DETECT_CLASSIFY_H
#define CANOPY_DETECT_CLASSIFY_H

#include <stddef.h>
#include <stdint.h>

#include "canopy/detect.h"
#include "detect/graph.h"

/* The crop of tree t in a W x H image by BoundingBoxDataset's rule: its
 * box (det_tree_box, clipped to the image as the outputs write it) widened by expand on every side and clamped to the image, at
 * (int(x0), int(y0)), int(max(1, x1 - x0)) x int(max(1, y1 - y0)) pixels
 * (kept inside the image). r = {x, y, w, h}. */
void det_crop_rect(const det_classifier *c, const cnp_tree *t, uint32_t W, uint32_t H,
                   uint32_t r[4]);

/* det_crop_rect of t in the coordinates of img's pixels: the raster's
 * crop, relative to the window img is (det_pixels x0, y0, full_w). */
void det_pixels_crop_rect(const det_classifier *c, const det_pixels *img, const cnp_tree *t,
                          uint32_t r[4]);

/* bounding_box_transform of crop r of an RGBA8 image (rows stride_px
 * pixels apart): RGB / 255, normalised, resized to size x size (bilinear:
 * torchvision's antialiased, width then height; nearest: PyTorch's index
 * rule) into out (3 x size x size). tmp holds 3 * r[3] * size floats. */
void det_crop_transform(const det_classifier *c, const uint8_t *rgba, uint32_t stride_px,
                        const uint32_t r[4], float *out, float *tmp);

/* Softmax of k logits: the first largest's index and its probability. */
void det_class_softmax(const float *logits, int k, int *type, float *score);

/* One separable resize pass's taps for an input of n samples to `size`:
 * for output i, first[i] and count[i] taps (count <= *max_taps) with
 * weights w[i * max_taps + j]. Bilinear: torchvision's antialiased
 * weights (PIL's triangle filter, support scaled when shrinking,
 * normalised); nearest: one tap, floor(i * n / size). *first, *count, *w
 * malloc'd (caller frees). */
cnp_status det_resize_taps(enum det_resize interp, int n, int size, int **first, int **count,
                           float **w, int *max_taps, cnp_err *err);

/* A backend's batched forward: n transformed crops (n x 3 x size x size)
 * -> n x K logits. Both buffers hold `batch` (det_classify_host's) crops, so
 * a backend may run more than n (the crops past n are valid inputs). */
typedef cnp_status (*det_class_forward)(void *self, const float *crops, int n, float *logits,
                                        cnp_err *err);

/* The classify op on a host image, batch crops at a time through fwd,
 * softmax on the host. */
cnp_status det_classify_host(const det_graph *g, const det_pixels *img, cnp_tree *trees,
                             size_t n, int batch, det_class_forward fwd, void *self,
                             cnp_err *err);

/* The oneDNN classifier (cpu/classify_dnnl.c; CANOPY_WITH_DNNL): the state
 * of det_backend_classify_dnnl for m on `threads` threads (0: every core). */
cnp_status det_classify_dnnl_create(const det_model *m, int threads, const char *cache_dir,
                                    void **self, cnp_err *err);

#endif
