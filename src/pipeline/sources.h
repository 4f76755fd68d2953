/* The sources and sinks of the pipeline, as the front ends (frontends.c)
 * create them. Each is one object behind its ops table in pl_internal.h. */
#ifndef CANOPY_PL_SOURCES_H
#define CANOPY_PL_SOURCES_H

#include "canopy/aws.h"
#include "canopy/s3.h"
#include "canopy/sqs.h"
#include "canopy/store.h"
#include "pipeline/pl_internal.h"

void pl_fetch_s3(pl_ctx *x, aws_batch *batch, pl_chunk *c);
/* aws_batch_run, counting the batch's S3 requests and retries in the metrics. */
cnp_status pl_batch_run(pl_ctx *x, aws_batch *batch, cnp_err *err);

/* SQS: receives chunks of messages, keeps their visibility extended while
 * they are in flight (heartbeat), deletes or backs them off at the end. */
typedef struct pl_sqs_source pl_sqs_source;
typedef struct pl_sqs_params {
    const char *queue_url;
    int chunk_size;              /* messages per chunk */
    int wait_seconds;
    int visibility_timeout;
    int idle_exit_seconds;
    int unreachable_exit_seconds;
    int retry_backoff_seconds;   /* first backoff of a message failed transiently */
    bool follow;
    int64_t max_messages;
    cnp_metrics *metrics;        /* NULL: none */
} pl_sqs_params;
cnp_status pl_sqs_source_create(aws_client *aws, const pl_sqs_params *p, pl_sqs_source **out,
                                cnp_err *err);
/* A message of a chunk: what the SQS source keeps in the chunk's src_state
 * to acknowledge it (items point at it through their ack token, the
 * message's index, and at its parsed items through meta). */
typedef struct pl_msg {
    sqs_message m;
    msg_parsed parsed;
    double extended_at;      /* heartbeat: when its visibility was last set (success) */
} pl_msg;

typedef struct pl_sqs_chunk {
    pl_msg *msgs;
    size_t n;
} pl_sqs_chunk;

/* The SQS state of chunk c, created empty on first use and freed by
 * chunk_free; NULL without memory. */
pl_sqs_chunk *pl_sqs_chunk_of(pl_chunk *c);

/* Puts a chunk in flight: the heartbeat extends its messages until
 * acknowledge takes it out (next_chunk does this; tests call it directly). */
void pl_sqs_source_track(pl_sqs_source *s, pl_chunk *c);
/* Starts the heartbeat thread; false when it could not be started. */
bool pl_sqs_source_start(pl_sqs_source *s);
void pl_sqs_source_free(pl_sqs_source *s);

/* One heartbeat round by hand: extends the messages due at `now` (the
 * heartbeat thread calls this every quarter second with cnp_now(); tests
 * call it with their own clock instead of starting the thread). */
void pl_sqs_source_heartbeat_tick(pl_sqs_source *s, double now);

/* Heartbeat's pure part. An entry is one message of a chunk in flight. */
typedef struct pl_hb_entry {
    pl_chunk *c;
    size_t m;                    /* message index in c */
    const char *handle;          /* borrowed from the message */
} pl_hb_entry;
/* The messages of chunks in `registry` whose last successful extension is
 * at least `every` seconds old. Each collected chunk is marked busy until
 * pl_heartbeat_settle, so it is not freed while its entries are on the
 * network. *out is the caller's to free; returns the count, or (size_t)-1
 * without memory (nothing marked). Caller holds the registry's lock. */
size_t pl_heartbeat_collect(pl_chunk *registry, double now, double every, pl_hb_entry **out);
/* After the round sent at `sent`: entries with ok[i] count as extended then;
 * the others stay due and are sent again next tick. Unmarks the chunks.
 * Caller holds the registry's lock. */
void pl_heartbeat_settle(pl_hb_entry *e, size_t n, const bool *ok, double sent);

/* Start-up checks (preflight.c): the input queue (queue_url NULL or empty:
 * none) and the output bucket. Returns CNP_OK unless one failed in a way
 * that cannot recover by itself (no such queue or bucket, refused
 * credentials); err then names the setting, the service's code and message.
 * Network failures pass: the run's retries handle them. */
cnp_status pl_preflight(aws_client *aws, const char *queue_url, const char *bucket,
                        const char *prefix, cnp_err *err);
/* True for AWS error codes no retry can cure (QueueDoesNotExist,
 * NonExistentQueue, InvalidClientTokenId, SignatureDoesNotMatch,
 * AccessDenied, NoSuchBucket, ...). */
bool pl_aws_unrecoverable(const char *code);

/* S3 listing (reprocess): the objects of a listing, in chunks. */
typedef struct pl_listing_source pl_listing_source;
cnp_status pl_listing_source_create(aws_client *aws, const char *bucket, s3_list_entry *items,
                                    size_t n, int chunk_size, pl_listing_source **out,
                                    cnp_err *err);
void pl_listing_source_free(pl_listing_source *s);

/* Local files (run). */
typedef struct pl_files_source pl_files_source;
typedef struct pl_file {
    char *path;
    char *stem;                  /* output name without suffix, unique */
} pl_file;
cnp_status pl_files_source_create(pl_file *files, size_t n, int chunk_size,
                                  int64_t max_bytes, pl_files_source **out, cnp_err *err);
void pl_files_source_free(pl_files_source *s);
/* True when name (no directory) ends in an output suffix: <stem>.mask.png, ...
 * (files_resume.c). */
bool pl_is_output_name(const char *name);
/* True when outdir holds stem's outputs written by a finished run with
 * model_version ("none" without a detector): a trees.json, written last,
 * that parses and names that model, and a mask. */
bool pl_outputs_complete(const char *outdir, const char *stem, const char *model_version);

/* S3 + PostgreSQL + output queue. */
typedef struct pl_cloud_sink pl_cloud_sink;
typedef struct pl_cloud_params {
    const char *bucket, *prefix;  /* outputs */
    const char *queue_url;        /* notifications; "" none */
    int64_t run_id;
    cnp_metrics *metrics;         /* the run's; NULL: none */
} pl_cloud_params;
cnp_status pl_cloud_sink_create(aws_client *aws, pg_store *db, const pl_cloud_params *p,
                                pl_cloud_sink **out, cnp_err *err);
void pl_cloud_sink_free(pl_cloud_sink *s);
/* Sends the notifications pending in the outbox (this run's and those an
 * earlier or another process left), deleting those SQS took. Called after
 * each commit, at the start and at the end of a run; from the thread that
 * owns the sink's store. mode names the log lines. */
cnp_status pl_cloud_sink_flush(pl_cloud_sink *s, const char *mode, cnp_err *err);
/* Fault injection for tests: the next n notifications sent are refused as
 * if SQS had failed their entries. */
void pl_outbox_fail_entries(int n);

/* Local directory. */
typedef struct pl_dir_sink pl_dir_sink;
cnp_status pl_dir_sink_create(const char *outdir, pl_dir_sink **out, cnp_err *err);
void pl_dir_sink_free(pl_dir_sink *s);

#endif
