/* Configuration: one INI file (inih), CANOPY_<SECTION>_<KEY> environment
 * overrides, then command-line overrides.
 *
 * Every key has an entry in the table in src/core/config.c (type, default,
 * one-line doc) and a documented line in config/canopy.ini. Adding a key means
 * adding a field here, a row in that table and a line in canopy.ini. */
#ifndef CANOPY_CONFIG_H
#define CANOPY_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "canopy/status.h"

enum cnp_bin_method { CNP_BIN_OTSU = 0, CNP_BIN_FIXED = 1, CNP_BIN_ADAPTIVE = 2 };
enum cnp_bin_channel { CNP_CH_LUMA = 0, CNP_CH_EXG = 1 };
enum cnp_log_format { CNP_LOGFMT_TEXT = 0, CNP_LOGFMT_JSON = 1 };
enum cnp_mask_format { CNP_MASK_AUTO = 0, CNP_MASK_PNG = 1, CNP_MASK_TIFF = 2 };
/* [output] vector: a set of the tree lists written beside trees.json. */
enum cnp_vector_format {
    CNP_VECTOR_GEOJSON = 1u << 0, /* <stem>.trees.geojson, WGS 84 (georeferenced inputs) */
    CNP_VECTOR_GPKG = 1u << 1,    /* <stem>.trees.gpkg, the raster's CRS (georeferenced) */
    CNP_VECTOR_CSV = 1u << 2,     /* <stem>.trees.csv, DeepForest's columns (every input) */
};

#define CNP_STR_SHORT 128
#define CNP_STR_LONG 1024
#define CNP_STR_SECRET 4096
#define CNP_CONFIG_MAX_KEYS 96

/* One struct per section, so that a module takes only its own section
 * (aws_client_create takes a cnp_aws_config, not the whole configuration). */
/* [aws] */
typedef struct cnp_aws_config {
    char region[CNP_STR_SHORT];
    char endpoint_url[CNP_STR_LONG];   /* overrides both S3 and SQS */
    char profile[CNP_STR_SHORT];
    char access_key_id[CNP_STR_SHORT]; /* first in the credential chain */
    char secret_access_key[CNP_STR_SHORT];
    char session_token[CNP_STR_SECRET];
    bool verify_tls;                   /* off only for a local endpoint */
    int connect_timeout;               /* seconds */
    int request_timeout;               /* seconds without progress (low speed) */
    int max_attempts;                  /* per request, including the first; 0: AWS_MAX_ATTEMPTS,
                                          the profile's max_attempts, else 5 */
    char retry_mode[16];               /* legacy | standard | adaptive; "": AWS_RETRY_MODE,
                                          the profile's retry_mode, else standard */
    char ca_bundle[CNP_STR_LONG];      /* CA certificates file; "": AWS_CA_BUNDLE, the
                                          profile's ca_bundle, else the system store */
    int max_connections;               /* transfers in flight at once */
    int64_t multipart_threshold;       /* bytes; larger uploads use multipart */
    int64_t multipart_part_size;       /* bytes */
} cnp_aws_config;

/* [input] */
typedef struct cnp_input_config {
    char queue_url[CNP_STR_LONG];
    char bucket[CNP_STR_SHORT];        /* where `canopy submit` uploads */
    char prefix[CNP_STR_LONG];
    int64_t max_object_bytes;          /* GetObject size cap */
    int64_t spill_bytes;               /* larger objects stream to a temporary file; 0: never */
} cnp_input_config;

/* [output] */
typedef struct cnp_output_config {
    char bucket[CNP_STR_SHORT];
    char prefix[CNP_STR_LONG];
    char queue_url[CNP_STR_LONG];      /* notifications; empty: none */
    int png_level;                     /* zlib level for written PNGs */
    bool overlay;                      /* write <stem>.overlay.png */
    enum cnp_mask_format mask_format;  /* auto: GeoTIFF for georeferenced inputs, else PNG */
    unsigned vector;                   /* enum cnp_vector_format bits */
    int64_t spill_bytes;               /* larger outputs go through a temporary file; 0: never */
} cnp_output_config;

/* [batch] */
typedef struct cnp_batch_config {
    int size;                          /* messages per chunk */
    int wait_seconds;                  /* long-poll wait */
    int visibility_timeout;            /* seconds */
    int idle_exit_seconds;             /* exit when queue empty this long */
    int threads;                       /* decode/encode pool; 0 = cores */
    int max_chunks_in_flight;          /* back-pressure */
    int max_inflight_mpix;             /* decoded megapixels in memory at once */
    int unreachable_exit_seconds;      /* drain: give up when SQS has not answered this long */
    int outage_exit_seconds;           /* give up riding out a database/bucket outage after this */
    int outage_probe_seconds;          /* cap of the waits between probes of a dependency down */
    int retry_backoff_seconds;         /* first backoff of a message failed transiently */
} cnp_batch_config;

/* [postgres] */
typedef struct cnp_postgres_config {
    char conninfo[CNP_STR_LONG];       /* empty: libpq PG* variables */
} cnp_postgres_config;

/* [opencl] */
typedef struct cnp_opencl_config {
    char platform[CNP_STR_SHORT];      /* name substring or index; empty: any */
    char device[CNP_STR_SHORT];        /* name substring or index; empty: first GPU */
    char cache_dir[CNP_STR_LONG];      /* program binaries; empty: XDG cache */
    char kernel_dir[CNP_STR_LONG];     /* developers: load .cl from here */
    char tuning_file[CNP_STR_LONG];    /* CLBlast tuning; empty: the cache's; "off": none */
    bool queue_profiling;              /* not a key: event timing (canopy tune's tuners) */
} cnp_opencl_config;

/* [device] */
enum cnp_backend {
    CNP_BACKEND_AUTO = 0,   /* cpu where the OpenCL device is a CPU or there is none */
    CNP_BACKEND_OPENCL = 1, /* models on the OpenCL device */
    CNP_BACKEND_CPU = 2,    /* models on the host through oneDNN (CANOPY_WITH_DNNL) */
};

typedef struct cnp_device_config {
    enum cnp_backend backend;          /* where the models run */
    int threads;                       /* CPU backend threads; 0: every core */
} cnp_device_config;

/* [binarize] */
typedef struct cnp_binarize_config {
    enum cnp_bin_method method;
    enum cnp_bin_channel channel;
    int threshold;                     /* for method = fixed, 0..255 */
    int window;                        /* adaptive: odd window side, pixels */
    int offset;                        /* adaptive: fg if v > mean - offset */
} cnp_binarize_config;

/* [detector] */
typedef struct cnp_detector_config {
    bool enabled;
    char model[CNP_STR_LONG];          /* weights file */
    double score_threshold;
    double nms_iou;                    /* overlap suppression IoU; < 0: the model's own; 1: off */
    int tile;                          /* tile side in pixels */
    int tile_overlap;                  /* pixels shared by adjacent tiles */
    int conv;                          /* enum det_conv_path: 0 auto, 1 direct, 2 gemm, 3 winograd, 4 pixel, 5 winograd4 */
    /* Box models (imported RetinaNet): DeepForest's predict_tile. */
    int patch_size;                    /* patch side; 0: the whole image in one call */
    double patch_overlap;              /* fraction of the patch shared with the next */
    double patch_iou;                  /* NMS IoU across patches (1: none) */
    int patch_batch;                   /* patches per batch; 0: 8 on a GPU, 1 on a CPU device */
} cnp_detector_config;

/* [classifier]: the second stage, a tree-type classifier run on every
 * detected tree's crop (an imported DeepForest CropModel). */
typedef struct cnp_classifier_config {
    char model[CNP_STR_LONG]; /* classifier .cnw; empty: off */
    char types[CNP_STR_LONG]; /* comma-separated types tree_count counts; empty: all */
} cnp_classifier_config;

/* [limits] */
typedef struct cnp_limits_config {
    int64_t max_pixels;                /* refuse larger images before decoding */
    int64_t window_pixels;             /* TIFFs with more pixels are processed in windows */
} cnp_limits_config;

/* [metrics] */
typedef struct cnp_metrics_config {
    char textfile[CNP_STR_LONG];       /* Prometheus textfile path; empty: none */
    int interval_seconds;              /* textfile rewrite / EMF line period */
} cnp_metrics_config;

/* [log] */
typedef struct cnp_log_config {
    char level[16];                    /* debug | info | warn | error */
    enum cnp_log_format format;
    char progress[16];                 /* auto | on | off */
} cnp_log_config;

typedef struct cnp_config {
    cnp_aws_config aws;
    cnp_input_config input;
    cnp_output_config output;
    cnp_batch_config batch;
    cnp_postgres_config postgres;
    cnp_opencl_config opencl;
    cnp_device_config device;
    cnp_binarize_config binarize;
    cnp_detector_config detector;
    cnp_classifier_config classifier;
    cnp_limits_config limits;
    cnp_metrics_config metrics;
    cnp_log_config log;
    /* Where each key's value came from, in the order of the key table:
     * "default", "FILE:LINE", "CANOPY_..." or "command line". */
    char origin[CNP_CONFIG_MAX_KEYS][96];
} cnp_config;

/* Fills cfg with every default. */
void cnp_config_defaults(cnp_config *cfg);

/* Loads defaults, then `path` (NULL: no file), then CANOPY_* environment
 * variables. Errors read "file:line: reason" or "VARIABLE: reason". */
cnp_status cnp_config_load(cnp_config *cfg, const char *path, cnp_err *err);

/* Sets one key from its text form, as a flag or override would. */
cnp_status cnp_config_set(cnp_config *cfg, const char *section, const char *key,
                          const char *value, cnp_err *err);

/* Writes every key with its current value as INI (secrets masked: the [aws]
 * keys, and the password / sslpassword in [postgres] conninfo). */
void cnp_config_dump(const cnp_config *cfg, FILE *out);
/* The same, each key preceded by a comment saying where its value came from
 * (`; size: CANOPY_BATCH_SIZE`, `; region: /etc/canopy.ini:3`, `; ...:
 * default`, `; ...: command line`). */
void cnp_config_dump_origins(const cnp_config *cfg, FILE *out);

/* Copies a libpq connection string (keyword = value pairs or a
 * postgresql:// URI) into out (size len) with every password and
 * sslpassword, and a URI's user:password, replaced by "********". */
void cnp_conninfo_mask(const char *in, char *out, size_t len);

/* Applies [log] level and format to the log sink. */
void cnp_config_apply_log(const cnp_config *cfg);

#endif
