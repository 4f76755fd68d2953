/* Internals of the batch pipeline shared by its files (see README.md here):
 * work items and their states, chunks, the queues between stages, the
 * in-flight pixel budget, and the source and sink interfaces. */
#ifndef CANOPY_PL_INTERNAL_H
#define CANOPY_PL_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "canopy/batch.h"
#include "canopy/buf.h"
#include "canopy/message.h"
#include "canopy/metrics.h"
#include "canopy/pipeline.h"
#include "canopy/pool.h"
#include "pipeline/health.h"
#include "pipeline/tally.h"

/* ---- work items (item.c) ------------------------------------------------ */

/* The states of a work item, in the order the main line passes them. An
 * item counts as ok only in ITEM_ACKNOWLEDGED; the two failed states are
 * where it leaves the main line. */
typedef enum item_state {
    ITEM_RECEIVED = 0,  /* named by its source */
    ITEM_FETCHED,       /* bytes in memory */
    ITEM_DECODED,       /* pixels in memory */
    ITEM_PROCESSED,     /* mask and trees from the device */
    ITEM_ENCODED,       /* output files encoded */
    ITEM_UPLOADED,      /* outputs written by the sink */
    ITEM_COMMITTED,     /* row committed (or nothing to commit) */
    ITEM_ACKNOWLEDGED,  /* message deleted (or nothing to acknowledge): done */
    ITEM_FAILED_PERMANENT,
    ITEM_FAILED_TRANSIENT,
} item_state;

/* An item's input bytes, however its source brought them: in memory, or in
 * a temporary file (a large S3 object streamed to disk) that the item owns
 * and item_free removes. */
typedef struct pl_bytes {
    cnp_buf body;            /* in memory; empty when spilled */
    char spill_path[512];    /* the temporary file; "" when in body */
    int64_t size;            /* bytes in all */
} pl_bytes;

/* A work item: bytes, an identity (bucket/key/etag or path) and an opaque
 * acknowledgement token; no source's or sink's own types. */
typedef struct pl_item {
    item_state state;
    cnp_status fail_status;
    char error[CNP_ERR_MSG_MAX];
    const char *warning;     /* static text, warning_buf, or NULL */
    char warning_buf[256];
    int ack;                 /* acknowledgement token, the source's own (SQS: its
                                message's index in the chunk); -1 none */
    const msg_item *meta;    /* what the message said; NULL without one */
    char *name;              /* s3://bucket/key or the file path (logs, reports) */
    char *bucket, *key;      /* S3 object; NULL for local files */
    char *path;              /* local file; NULL for S3 */
    char *etag;              /* the version fetched (else listed); NULL unknown */
    char *scan_id, *address_id; /* from the object's metadata; NULL none */
    char *out_stem;          /* output name without suffix (key or relative path) */
    pl_bytes bytes;          /* fetched input */
    uint64_t budget;         /* pixels held in the in-flight budget */
    cnp_image img;
    img_georef geo;          /* valid for georeferenced rasters */
    img_raster *raster;      /* a raster processed in windows (no img); owned */
    uint64_t nodata;         /* nodata pixels of img */
    pipe_result res;
    pipe_geo_tree *trees_geo; /* res.ntrees entries with geo */
    double footprint[10];    /* lon/lat ring with geo */
    pipe_outputs outs;
    char *out_name[PIPE_OUT_COUNT]; /* where each output went; NULL when not written */
    double t_fetch, t_decode, t_device, t_encode, t_upload; /* ms */
    char image_id[40];
} pl_item;

const char *item_state_name(item_state s);
/* True when an item may move from `from` to `to`. */
bool item_transition_ok(item_state from, item_state to);
/* Moves the item to `to`; an illegal move is a programmer error (assert) and
 * turns the item into a transient failure in release builds. */
void item_advance(pl_item *it, item_state to);
/* Records a failure: permanent for the image's own faults (bad message,
 * format, size, missing object), transient for everything else. */
void item_fail(pl_item *it, cnp_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The state a failure with this status leads to. */
item_state item_fail_state(cnp_status st);
/* True while the item is on the main line in state s. */
static inline bool item_in(const pl_item *it, item_state s) { return it->state == s; }
void item_free(pl_item *it);

/* ---- chunks ------------------------------------------------------------- */

/* The states of a chunk, in the order the main line passes them. A chunk
 * moves only through chunk_advance (one step, logged) and leaves the main
 * line only through chunk_fail, its one error path; it is done when it
 * reached CHUNK_ACKNOWLEDGED, never by default. */
typedef enum chunk_state {
    CHUNK_RECEIVED = 0, /* items named by the source */
    CHUNK_FETCHED,      /* the source brought their bytes (or failed them) */
    CHUNK_PROCESSED,    /* every slice through decode, device and encode */
    CHUNK_WRITTEN,      /* the sink wrote the outputs */
    CHUNK_COMMITTED,    /* the sink committed the chunk */
    CHUNK_ACKNOWLEDGED, /* the source acknowledged it: done */
    CHUNK_FAILED,       /* carried no further (no memory for a job, not
                           committed); its items failed, the source still
                           acknowledges (backs off) */
} chunk_state;

typedef struct pl_job pl_job;

/* A slice [begin, end) of a chunk's items travelling between stages; the
 * decode stage cuts chunks into slices that fit the pixel budget. */
struct pl_job {
    struct pl_chunk *c;
    size_t begin, end;
    bool last;               /* the chunk's last slice */
    bool embedded;           /* the chunk's own node (last_job): never freed */
    struct pl_job *next;
};

typedef struct pl_chunk {
    size_t seq;
    _Atomic chunk_state state; /* written by the stage that holds the chunk */
    /* What the source keeps to acknowledge the chunk (the SQS source: its
     * messages), freed by chunk_free through src_state_free; nacks counts
     * its acknowledgement units (messages) for logs. */
    void *src_state;
    void (*src_state_free)(void *state);
    size_t nacks;
    pl_item *items;
    size_t nitems;
    size_t encoded;          /* items through the encode stage so far */
    int hb_busy;             /* heartbeat: its entries in a round on the network */
    pl_job last_job;         /* the queue node of its last slice: pushing it never
                                fails for want of memory (one such job at a time) */
    struct pl_chunk *reg_next;
} pl_chunk;

/* Adds an item named by bucket/key (S3) or path (local) with its source's
 * acknowledgement token (-1: none); NULL on no memory. */
pl_item *chunk_add_item(pl_chunk *c, int ack, const char *bucket, const char *key,
                        const char *path);
void chunk_free(pl_chunk *c);
const char *chunk_state_name(chunk_state s);
/* Moves the chunk one step along the main line; a failed chunk stays
 * failed, and any other move is a programmer error (logged, ignored). */
void chunk_advance(pl_chunk *c, chunk_state to);
/* The chunk's one error path: every item not already failed transiently
 * fails with st and "<item>: <reason>", and the chunk becomes CHUNK_FAILED. */
void chunk_fail(pl_chunk *c, cnp_status st, const char *reason);

/* ---- queues between stages ---------------------------------------------- */

typedef struct pl_queue {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pl_job *head, *tail;
    bool closed;
} pl_queue;

void queue_init(pl_queue *q);
void queue_destroy(pl_queue *q);
/* Pushes a job; false only when no memory for it (the caller keeps c). The
 * last slice of a chunk travels in the chunk's own node: it is never refused. */
bool queue_push(pl_queue *q, pl_chunk *c, size_t begin, size_t end, bool last);
/* Fault injection for tests: the next n pushes of a non-last slice fail as
 * if out of memory. */
void queue_fail_pushes(int n);
void queue_close(pl_queue *q);
/* Blocks until a job arrives; false once the queue is closed and empty. */
bool queue_pop(pl_queue *q, pl_job *out);

/* ---- the in-flight pixel budget (back-pressure in bytes) ---------------- */

typedef struct pl_budget {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t cap, used, peak;
} pl_budget;

void budget_init(pl_budget *b, uint64_t cap);
void budget_destroy(pl_budget *b);
/* Waits until `want` fits; a request larger than the cap is let in alone. */
void budget_acquire(pl_budget *b, uint64_t want);
/* Takes `want` only if it fits now. */
bool budget_try_acquire(pl_budget *b, uint64_t want);
void budget_release(pl_budget *b, uint64_t n);

/* ---- the run, sources and sinks ----------------------------------------- */

typedef struct pl_ctx pl_ctx;

/* A source names work items and, for SQS, acknowledges them. */
typedef struct pl_source_ops {
    /* Fills c with the next items. Returns false when there is no more work
     * (exhausted, idle, cancelled or fatal); c is then left empty. */
    bool (*next_chunk)(pl_ctx *x, void *self, pl_chunk *c);
    /* Brings the bytes of every RECEIVED item (-> FETCHED or failed). */
    void (*fetch)(pl_ctx *x, void *self, pl_chunk *c);
    /* After the sink's commit: deletes or backs off the chunk's messages and
     * moves committed items to ACKNOWLEDGED. */
    void (*acknowledge)(pl_ctx *x, void *self, pl_chunk *c, bool committed);
} pl_source_ops;

/* The acknowledgement of sources without messages (listing, files): nothing
 * to delete, so committed items are done. */
void pl_ack_without_message(pl_ctx *x, void *self, pl_chunk *c, bool committed);

/* A sink writes outputs and commits results. */
typedef struct pl_sink_ops {
    /* Writes the outputs of every ENCODED item (-> UPLOADED or failed). */
    void (*write)(pl_ctx *x, void *self, pl_chunk *c);
    /* Records the chunk (UPLOADED -> COMMITTED; permanent failures recorded
     * too). Returns false when nothing was committed. */
    bool (*commit)(pl_ctx *x, void *self, pl_chunk *c);
} pl_sink_ops;

/* What the stages need, and nothing else. */
typedef struct pl_stage_params {
    uint64_t max_pixels;     /* [limits] max_pixels */
    int64_t max_object_bytes;
    int64_t spill_bytes;     /* S3 objects above this stream to a temporary file */
    int64_t out_spill_bytes; /* outputs above this go through a temporary file; 0: never */
    const char *spool_dir;   /* those files' directory; NULL: $TMPDIR or /tmp */
    cnp_output_config output;
    bool detector;           /* a model is loaded: overlays and the RGB check */
    cnp_binarize_config binarize;
    uint64_t window_pixels;  /* TIFFs above this are processed in windows */
    const char *model_version;
    const det_model *model;  /* NULL without a detector: labels of box models */
    const det_model *classifier; /* NULL without one: names of tree types */
    char types[CNP_STR_LONG];    /* [classifier] types */
} pl_stage_params;

struct pl_ctx {
    const char *mode;        /* "drain", "reprocess", "run": log module */
    const pl_hooks *hooks;
    const pl_source_ops *src;
    void *src_self;
    const pl_sink_ops *sink;
    void *sink_self;
    pl_stage_params sp;
    pipe_device *dev;
    cnp_pool *pool;
    pl_budget budget;
    int max_chunks;          /* chunks between source and acknowledgement */
    bool redelivers;         /* the source brings transient failures back (SQS) */
    pl_health *health;       /* the outage gate; NULL: none (run) */
    pl_queue q_fetch, q_decode, q_device, q_encode, q_write, q_commit;
    pthread_mutex_t slots_lock;
    pthread_cond_t slots_cond;
    int inflight;
    size_t next_seq;
    atomic_bool fatal;
    atomic_bool finished;
    pl_tally tally;          /* images ok, failed, retried: each counted once */
    atomic_llong n_trees, n_kpix, total;
    atomic_llong pending;    /* drain: set by the SQS source */
    /* Rasters read in windows: windows planned and done (both passes) of the
     * rasters being processed now, for the progress line. */
    atomic_llong win_total, win_done;
    double start;
    cnp_metrics *metrics;    /* NULL: none */
    cnp_metrics_config mcfg;
};

/* True once the caller asked to stop taking work. */
bool pl_cancelled(const pl_ctx *x);
/* Marks the run fatal: sources stop, what is in flight finishes. */
void pl_set_fatal(pl_ctx *x);

/* Initialises what every run needs around its source and sink. */
void pl_ctx_init(pl_ctx *x, const char *mode, const pl_hooks *hooks, const pl_stage_params *sp,
                 int max_chunks, uint64_t budget_pixels);
/* Runs the stage threads around the source until it is exhausted; returns
 * the exit code from the counts (fatal > pending > partial > ok). Items
 * failed transiently make it partial unless the source redelivers them. */
int pl_ctx_run(pl_ctx *x, pl_counts *counts);
void pl_ctx_destroy(pl_ctx *x);
void pl_counts_get(pl_ctx *x, pl_counts *c);

/* ---- stages (stage_*.c), each run by one thread of run.c ---------------- */

void stage_decode_job(pl_ctx *x, pl_chunk *c, size_t begin, size_t *end);
void stage_device_job(pl_ctx *x, pl_chunk *c, size_t begin, size_t end);
void stage_encode_job(pl_ctx *x, pl_chunk *c, size_t begin, size_t end);
/* The device stage of a raster processed in windows (stage_window.c). */
cnp_status stage_window_item(pl_ctx *x, pl_item *it, cnp_err *err);
/* The windows of a W x H raster (pipe_device_windows) and the most pixels
 * one of them holds. *tiles malloc'd. */
cnp_status stage_window_plan(const pl_ctx *x, uint32_t W, uint32_t H, det_tile **tiles,
                             size_t *nt, size_t *max, cnp_err *err);
/* Its second stage: the type of each of the n trees of the W x H raster,
 * from the crop the whole raster gives (stage_window_types.c). */
cnp_status stage_window_types(pl_ctx *x, pl_item *it, cnp_tree *trees, size_t n, uint32_t W,
                              uint32_t H, cnp_err *err);
/* Pixels a window of the item holds at once (budget). */
uint64_t stage_window_pixels(const pl_ctx *x);
/* Commit, acknowledge, count and report a chunk whose outputs were written. */
void stage_finish_chunk(pl_ctx *x, pl_chunk *c);
/* A slice that could not be queued: fails its own items (not the chunk's
 * others, which other stages may hold) and returns their pixel budget. */
void pl_slice_fail(pl_ctx *x, pl_chunk *c, size_t begin, size_t end);

/* ---- pure helpers (naming.c) --------------------------------------------- */

/* prefix + key without its extension: "a/x.png" -> "out/a/x". Caller frees. */
char *pl_output_stem(const char *prefix, const char *key);
/* stem + suffix; caller frees. */
char *pl_join(const char *a, const char *b);
/* The earlier system's image id: a name-based UUID of bucket, key, etag. */
void pl_image_uuid(const char *bucket, const char *key, const char *etag, char out[40]);
/* Percent-encodes bytes outside printable ASCII (and '%') for HTTP headers. */
char *pl_header_safe(const char *s);

/* Seconds a message that failed transiently stays invisible: grows with its
 * receive count (base, 2 base, 4 base, ... capped at 900 s; base is
 * [batch] retry_backoff_seconds, 5 s by default) plus jitter in [0, 3). */
int pl_backoff_seconds(int base, int receive_count, unsigned jitter);
/* What to do with message m of the chunk (the items whose ack token is m) once the chunk is committed (or
 * not): delete it only when every item of it ended (ok or permanent). */
bool pl_message_deletable(const pl_chunk *c, size_t m, bool committed);

/* ---- sources and sinks -------------------------------------------------- */

extern const pl_source_ops pl_source_sqs_ops, pl_source_listing_ops, pl_source_files_ops;
extern const pl_sink_ops pl_sink_cloud_ops, pl_sink_dir_ops;

#endif
