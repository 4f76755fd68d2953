/* The model interface's table of operations (ggml's struct ggml_backend_i,
 * curl's handler tables): one table per (model kind, backend) pair, filled
 * with designated initializers; det_backend_create picks the first table in
 * backend.c's list that takes the model on the kind of device asked for.
 *
 * Tables now: crown and box models on the OpenCL device (engine/backend_ocl.c)
 * and on the CPU reference (ref/backend_cpu.c); tree-type classifiers
 * (det_model_is_classifier) on the OpenCL device (engine/classify_engine.c),
 * the CPU reference (ref/classify_ref.c) and oneDNN (cpu/classify_dnnl.c). A classifier's table fills create, free
 * and classify only: the detector ops stay NULL and the dispatcher refuses
 * them; a detector's classify is NULL. A faster CPU backend (oneDNN) adds
 * tables for device == NULL placed before the reference's. Every op of a
 * device table is held to the CPU table of the same kind by
 * tests/detect/test_backend_ops.c. */
#ifndef CANOPY_DETECT_MODEL_BACKEND_H
#define CANOPY_DETECT_MODEL_BACKEND_H

#include <stdbool.h>

#include "canopy/detect.h"

typedef struct det_backend_i {
    const char *name;  /* "<kind>/<backend>" */
    bool on_device;    /* true: needs an OpenCL context; false: the CPU */
    /* Whether this table runs model m. */
    bool (*accepts)(const det_model *m);
    /* Builds the backend's state for m (dev NULL on the CPU). */
    cnp_status (*create)(const det_model *m, ocl_ctx *dev, const cnp_detector_config *dc,
                         void **self, cnp_err *err);
    void (*free)(void *self);
    uint32_t (*window_side)(const void *self);
    cnp_status (*plan)(const void *self, uint32_t w, uint32_t h, det_tile **out, size_t *n,
                       cnp_err *err);
    /* One patch image alone: its trees in its coordinates, unmerged. The
     * dispatcher loops over a batch and cleans up on failure. */
    cnp_status (*run)(void *self, const det_pixels *patch, det_found *out, cnp_err *err);
    float (*merge_iou)(const void *self);
    cnp_status (*merge)(void *self, cnp_tree *trees, size_t *n, float iou, cnp_err *err);
    cnp_status (*detect)(void *self, const det_pixels *img, cnp_tree **trees, size_t *n,
                         cnp_err *err);
    /* Classifiers: type and type_score of each of n trees of the whole
     * image img (det_backend_classify). NULL for detectors. */
    cnp_status (*classify)(void *self, const det_pixels *img, cnp_tree *trees, size_t n,
                           cnp_err *err);
} det_backend_i;

extern const det_backend_i det_backend_crown_ocl, det_backend_box_ocl;
extern const det_backend_i det_backend_classify_ocl;
extern const det_backend_i det_backend_crown_cpu, det_backend_box_cpu;
extern const det_backend_i det_backend_classify_cpu;
/* The CPU backend's (oneDNN; CANOPY_WITH_DNNL): bound only by
 * det_backend_create_cpu, so device-less det_backend_create stays the C
 * reference the device tables are held to. */
extern const det_backend_i det_backend_crown_dnnl, det_backend_box_dnnl;
extern const det_backend_i det_backend_classify_dnnl;

#endif
