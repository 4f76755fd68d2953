/* The batch pipeline, one for every front end:
 *
 *   source (SQS messages | S3 listing | local files)
 *     -> fetch -> decode -> device -> encode          (stages, src/pipeline/stage_*.c)
 *     -> sink: write outputs, commit, notify           (S3 + PostgreSQL | local directory)
 *     -> source: acknowledge (delete / back off)       (SQS only; a no-op otherwise)
 *
 * Every work item moves through named states (src/pipeline/item.c) and
 * counts as ok only when it reached the last one. The library never prints
 * to the terminal and installs no signal handler: the caller passes a cancel
 * flag and hooks that receive progress and per-item reports, and logs go
 * through canopy/log.h. */
#ifndef CANOPY_BATCH_H
#define CANOPY_BATCH_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "canopy/config.h"
#include "canopy/exit.h"
#include "canopy/status.h"

/* Counts of a run so far (or at its end). */
typedef struct pl_counts {
    long long ok;            /* items that reached the last state */
    long long failed;        /* permanent failures (recorded, acknowledged) */
    long long retried;       /* transient failures (left for redelivery or not done) */
    long long pending;       /* drain: messages left for redelivery not seen again */
    long long trees;
    long long total;         /* items expected in all; -1 when unknown (drain) */
    double mpix;             /* megapixels of the ok items */
    long long windows_done;  /* rasters being read in windows: windows done */
    long long windows_total; /* ... of windows planned (0: none in progress) */
    double elapsed_s;
    int64_t run_id;          /* the runs row; 0 for `canopy run` */
} pl_counts;

/* What became of one item, reported once it reached its last state. */
typedef struct pl_item_report {
    const char *name;        /* s3://bucket/key or the file path */
    bool ok;
    bool transient;          /* failed, will be retried (not ok, not failed) */
    cnp_status status;       /* CNP_OK when ok */
    const char *error;       /* reason when not ok */
    const char *warning;     /* NULL or a remark on an ok item */
    uint32_t width, height;
    int threshold;           /* -1: adaptive */
    double canopy_cover;
    size_t ntrees;
    double ms;               /* time spent on it in the stages (fetch..write) */
} pl_item_report;

/* How the caller takes part: all optional. Hooks are called from library
 * threads, one call at a time per hook. */
typedef struct pl_hooks {
    const volatile sig_atomic_t *cancel; /* non-zero: stop taking work, finish what is in flight */
    void (*on_item)(void *ctx, const pl_item_report *r);
    void (*on_progress)(void *ctx, const pl_counts *c); /* about twice a second */
    void (*on_listed)(void *ctx, const char *bucket, const char *key, bool skip); /* reprocess */
    void *ctx;
} pl_hooks;

typedef struct pl_drain_options {
    bool follow;          /* never exit because the queue is idle */
    int64_t max_messages; /* stop receiving after this many; 0 = no limit */
} pl_drain_options;

typedef struct pl_reprocess_options {
    bool force;           /* also objects already processed at this etag and model */
    bool dry_run;         /* list (through on_listed), process nothing */
} pl_reprocess_options;

typedef struct pl_files_options {
    const char *const *inputs; /* files or directories (not recursive) */
    size_t ninputs;
    const char *outdir;        /* created if missing */
    bool skip_existing;        /* leave out inputs whose outputs in outdir are complete */
} pl_files_options;

/* Each returns an exit code of canopy/exit.h, fills *counts (may be NULL),
 * and on a set-up failure (exit 1 or 2) writes the reason into err. */
int pl_drain(const cnp_config *cfg, const pl_drain_options *opt, const pl_hooks *hooks,
             pl_counts *counts, cnp_err *err);
int pl_reprocess(const cnp_config *cfg, const char *bucket, const char *prefix,
                 const pl_reprocess_options *opt, const pl_hooks *hooks, pl_counts *counts,
                 cnp_err *err);
int pl_run_files(const cnp_config *cfg, const pl_files_options *opt, const pl_hooks *hooks,
                 pl_counts *counts, cnp_err *err);

#endif
