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
#include "canopy/raster.h"
#include "canopy/spool.h"
#include "canopy/status.h"

/* The device side of the pipeline: an OpenCL context and queue with the
 * binarization and detector engines. Not thread-safe: one thread at a time
 * (callers serialise on it); device buffers grow to the largest image and
 * are reused. */
typedef struct pipe_device pipe_device;

/* The configuration sections the device side uses. */
typedef struct pipe_device_params {
    const cnp_opencl_config *opencl;
    const cnp_binarize_config *binarize;
    const cnp_detector_config *detector;
    const cnp_device_config *device; /* NULL: [device] defaults (backend auto) */
    const cnp_classifier_config *classifier; /* NULL or model empty: no second stage */
} pipe_device_params;

/* True when the run goes on without OpenCL: no OpenCL device exists on this
 * machine (no driver registered, or platforms without devices), [device]
 * backend is not opencl, [opencl] names no platform or device, and the
 * models (model: whether one is loaded) can run on the CPU backend. The
 * models then run on the CPU backend and binarization on bin_cpu_run. */
bool pipe_device_less(const cnp_opencl_config *opencl, const cnp_device_config *device,
                      bool model);

/* Creates the device side (without OpenCL where pipe_device_less). model may be NULL (binarization only); it must
 * outlive the device. */
cnp_status pipe_device_create(const pipe_device_params *p, const det_model *model,
                              pipe_device **out, cnp_err *err);
void pipe_device_free(pipe_device *dev);
const char *pipe_device_description(const pipe_device *dev);
/* The classifier the device loaded ([classifier] model), or NULL. */
const det_model *pipe_device_classifier(const pipe_device *dev);
/* Types each of the n trees of a W x H raster with the classifier from the
 * window win of it (RGBA8 rgba, rows win->w pixels apart), which holds
 * each tree's crop (det_model_crop_rect); without a classifier, nothing. */
cnp_status pipe_device_classify(pipe_device *dev, const uint8_t *rgba, const det_tile *win,
                                uint32_t W, uint32_t H, cnp_tree *trees, size_t n,
                                cnp_err *err);

/* ---- large rasters in windows (stage_window.c) ---- */

bool pipe_device_has_detector(const pipe_device *dev);
/* The most pixels an image processed whole can have on this device (its
 * buffers within CL_DEVICE_MAX_MEM_ALLOC_SIZE and global memory, and 32-bit
 * pixel counts). */
uint64_t pipe_device_max_pixels(const pipe_device *dev);
/* Bytes of the device's two image buffers (each sized for the largest image
 * it held). */
size_t pipe_device_image_bytes(const pipe_device *dev);
/* The largest side of a window (pipe_device_windows). */
uint32_t pipe_device_window_side(const pipe_device *dev);
/* The windows a w x h raster is processed in: the detector's tiles (each
 * owning the pixels and trees of its own region; together they partition
 * the raster), or 2048-pixel blocks without a detector. *out malloc'd. */
cnp_status pipe_device_windows(const pipe_device *dev, uint32_t w, uint32_t h, det_tile **out,
                               size_t *n, cnp_err *err);
/* Detects trees in one window (w x h RGBA8, at most a tile) without NMS;
 * coordinates relative to the window. *trees malloc'd. */
cnp_status pipe_device_detect_window(pipe_device *dev, const uint8_t *rgba, uint32_t w,
                                     uint32_t h, cnp_tree **trees, size_t *n, cnp_err *err);
/* The IoU the model merges windows at (det_backend_merge_iou). */
float pipe_device_merge_iou(const pipe_device *dev);
/* The model's NMS at iou over trees gathered from several windows, in
 * place; then sorted by (y, x) as whole-image detection sorts. */
cnp_status pipe_device_merge(pipe_device *dev, cnp_tree *trees, size_t *n, float iou,
                             cnp_err *err);

typedef struct pipe_result {
    uint32_t width, height;
    bin_result bin;
    uint8_t *mask;    /* width * height bytes, 255 = foreground; owned */
    cnp_tree *trees;  /* owned; NULL when ntrees == 0 */
    size_t ntrees;
    double device_s;  /* upload + kernels + read back */
    uint32_t overlay_step; /* raster pixels per overlay pixel (a windowed preview); 0: 1 */
} pipe_result;

/* Uploads img once and runs binarization then detection on it; an image
 * pipe_device_stage copied already (the same pixels' address and size) is
 * not uploaded again. */
cnp_status pipe_device_process(pipe_device *dev, const cnp_image *img, pipe_result *out,
                               cnp_err *err);
/* Starts copying next to the device on a second queue, into the image
 * buffer the current image does not use, so that the copy overlaps the
 * current image's processing; its pipe_device_process then only waits for
 * the copy on the device. next's pixels are free on return (copied into
 * pinned staging, or written before returning on a CPU device) and must
 * not change until next is processed. Of two images staged and not yet
 * processed, a third staging or an upload drops the older; a failure
 * leaves nothing staged (and nothing copying). Without OpenCL, nothing. */
cnp_status pipe_device_stage(pipe_device *dev, const cnp_image *next, cnp_err *err);
/* Forgets every staged image (the caller is about to free them). */
void pipe_device_unstage(pipe_device *dev);
/* Uploads through pinned staging (true) or from the caller's pixels
 * (false). pipe_device_create picks pinned on all but CPU devices; tests
 * force either. Drains the device and forgets staged images. */
void pipe_device_set_pinned(pipe_device *dev, bool pinned);
void pipe_result_free(pipe_result *r);

/* The outputs of one image, named <stem><suffix>. */
enum pipe_out_kind {
    PIPE_OUT_MASK_PNG = 0, /* 1-bit PNG mask */
    PIPE_OUT_MASK_TIF,     /* georeferenced GeoTIFF mask (georeferenced inputs) */
    PIPE_OUT_OVERLAY,      /* the input with each tree drawn (with a detector) */
    PIPE_OUT_TREES_JSON,
    PIPE_OUT_GEOJSON,      /* RFC 7946 crowns (georeferenced inputs) */
    PIPE_OUT_GPKG,         /* GeoPackage in the raster's CRS ([output] vector gpkg) */
    PIPE_OUT_CSV,          /* DeepForest's CSV in pixels ([output] vector csv) */
    PIPE_OUT_OVERLAY_WLD,  /* the overlay's world file (georeferenced inputs) */
    PIPE_OUT_OVERLAY_AUX,  /* the overlay's CRS, GDAL's .aux.xml (georeferenced inputs) */
    PIPE_OUT_COUNT,
};
extern const char *const pipe_out_suffix[PIPE_OUT_COUNT];
extern const char *const pipe_out_content_type[PIPE_OUT_COUNT];

/* Encoded outputs of one image; an empty one is an output not written.
 * trees.json, trees.geojson and a windowed raster's GeoTIFF mask go to a
 * temporary file past the spools' limit ([output] spill_bytes); PNGs are
 * encoded in memory (their images are at most [limits] window_pixels). */
typedef struct pipe_outputs {
    cnp_spool out[PIPE_OUT_COUNT];
} pipe_outputs;

/* Empty outputs spilling to files in dir (NULL: $TMPDIR) past limit bytes
 * (0: in memory). */
void pipe_outputs_init(pipe_outputs *o, const char *dir, uint64_t limit);

/* Where a tree lies on the Earth (georeferenced inputs). */
typedef struct pipe_geo_tree {
    double map_x, map_y;   /* in the raster's CRS: GDAL's transform of (x, y) */
    double lon, lat;       /* WGS 84 */
    double radius_m;
    double box_map[4];     /* xmin, ymin, xmax, ymax of the pixel box's corners, map units */
} pipe_geo_tree;

/* Georeferences the trees of r (*out: r->ntrees entries, caller frees;
 * NULL when there are none) and the raster's footprint (a closed ring of 5
 * lon/lat points: top-left, top-right, bottom-right, bottom-left, top-left). */
cnp_status pipe_georeference(const img_georef *geo, const pipe_result *r, pipe_geo_tree **out,
                             double footprint[10], cnp_err *err);

/* How outputs are encoded. */
typedef struct pipe_encode_params {
    const cnp_output_config *output;
    bool detector;             /* overlays are drawn only with a detector */
    const char *model_version; /* NULL: "model": null */
    const det_model *model;    /* box models: the names of labels; may be NULL */
    const det_model *classifier; /* the names of tree types; NULL: none */
    const char *types;         /* [classifier] types: what tree_count counts; NULL: all */
} pipe_encode_params;

/* One image's inputs to the encoder. geo and trees_geo may be NULL (not
 * georeferenced). */
typedef struct pipe_encode_in {
    const cnp_image *img;
    const pipe_result *r;
    const char *image_name;    /* the "image" of trees.json */
    const img_georef *geo;
    const pipe_geo_tree *trees_geo;
    const double *footprint;   /* 10 values, with geo */
    uint64_t nodata;           /* nodata pixels */
    const char *const *types;  /* a message's tree_types (over [classifier] types) */
    size_t n_types;
} pipe_encode_in;

/* Encodes the outputs of one image (thread-safe, CPU only): the mask (PNG,
 * or GeoTIFF for a georeferenced input unless [output] mask_format = png),
 * the overlay (with a detector and [output] overlay on), trees.json, and for
 * georeferenced inputs trees.geojson. Outputs already in *out (a raster
 * processed in windows: r->mask and in->img NULL) are kept; *out must start
 * zeroed or so. */
cnp_status pipe_encode(const pipe_encode_params *p, const pipe_encode_in *in, pipe_outputs *out,
                       cnp_err *err);
/* Frees every output and removes its temporary file; accepts NULL. */
void pipe_outputs_free(pipe_outputs *o);

/* ---- tree types (types.c) ---- */

/* {"<type>": count, ...} of the n trees' types (types with no tree left
 * out), malloc'd; NULL without a classifier (cls NULL) or memory. */
char *pipe_type_counts_json(const det_model *cls, const cnp_tree *trees, size_t n);

/* tree_count: the trees whose type is one of the types asked for (a
 * message's tree_types, each a name or a comma-separated list; else the
 * comma-separated config_types, [classifier] types); n when no classifier
 * ran or no types were asked for. */
size_t pipe_tree_count(const det_model *cls, const cnp_tree *trees, size_t n,
                       const char *const *types, size_t n_types, const char *config_types);

/* A tree's box (the model's own, or a crown's centre +- radius) clipped to
 * the w x h raster, as every output writes it. */
det_box pipe_tree_box(const cnp_tree *t, uint32_t w, uint32_t h);

/* Draws the trees (coordinates times scale) on canvas as rings, yellow for
 * confident trees, orange otherwise, and encodes it as an RGB PNG. */
cnp_status pipe_overlay_encode(const cnp_output_config *oc, cnp_image *canvas,
                               const cnp_tree *trees, size_t n, float scale, cnp_buf *out,
                               cnp_err *err);

/* Writes the stem of a file name or object key into out: the last path
 * component without its extension ("a/b/OSBS_029.png" -> "OSBS_029"). */
void pipe_stem(const char *name, char *out, size_t out_len);

/* Loads the model named by [detector] model when the detector is enabled
 * (*out NULL otherwise). */
cnp_status pipe_model_load(const cnp_detector_config *dc, det_model **out, cnp_err *err);

#endif
