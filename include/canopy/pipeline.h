/* The per-image work shared by every front end (local files, SQS, S3 prefix):
 * device processing (upload, binarization, detection) and output encoding
 * (mask PNG, overlay PNG, trees JSON). */
#ifndef CANOPY_PIPELINE_H
#define CANOPY_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "canopy/binarize.h"
#include "canopy/buf.h"
#include "canopy/config.h"
#include "canopy/detect.h"
#include "canopy/gpu.h"
#include "canopy/image.h"
#include "canopy/status.h"

/* The device side of the pipeline: an OpenCL context and queue with the
 * binarization and detector engines. Not thread-safe: one thread at a time
 * (callers serialise on it); device buffers grow to the largest image and
 * are reused. */
typedef struct pipe_device pipe_device;

/* Creates the device side. model may be NULL (binarization only); it must
 * outlive the device. */
cnp_status pipe_device_create(const cnp_config *cfg, const det_model *model,
                              pipe_device **out, cnp_err *err);
void pipe_device_free(pipe_device *dev);
const char *pipe_device_description(const pipe_device *dev);

typedef struct pipe_result {
    uint32_t width, height;
    bin_result bin;
    uint8_t *mask;    /* width * height bytes, 255 = foreground; owned */
    cnp_tree *trees;  /* owned; NULL when ntrees == 0 */
    size_t ntrees;
    double device_s;  /* upload + kernels + read back */
} pipe_result;

/* Uploads img once and runs binarization then detection on it. */
cnp_status pipe_device_process(pipe_device *dev, const cnp_image *img, pipe_result *out,
                               cnp_err *err);
void pipe_result_free(pipe_result *r);

/* Encoded outputs of one image. */
typedef struct pipe_outputs {
    cnp_buf mask_png;
    cnp_buf overlay_png; /* empty when [output] overlay = false */
    cnp_buf trees_json;
} pipe_outputs;

/* Encodes the outputs of one image (thread-safe, CPU only). image_name is
 * the "image" of trees.json; model_version NULL gives "model": null. The
 * overlay is drawn only with a detector and [output] overlay on. */
cnp_status pipe_encode(const cnp_output_config *oc, bool detector, const cnp_image *img,
                       const pipe_result *r, const char *image_name, const char *model_version,
                       pipe_outputs *out, cnp_err *err);
void pipe_outputs_free(pipe_outputs *o);

/* Writes the stem of a file name or object key into out: the last path
 * component without its extension ("a/b/OSBS_029.png" -> "OSBS_029"). */
void pipe_stem(const char *name, char *out, size_t out_len);

/* Loads the model named by [detector] model when the detector is enabled
 * (*out NULL otherwise). */
cnp_status pipe_model_load(const cnp_detector_config *dc, det_model **out, cnp_err *err);

#endif
