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

/* Heartbeat's pure part: the receipt handles of every message of chunks in
 * `registry` whose last extension is at least `every` seconds old (their
 * last_extend is set to now). *out is an array of borrowed pointers the
 * caller frees; returns the count, or (size_t)-1 without memory. */
size_t pl_heartbeat_collect(pl_chunk *registry, double now, double every, const char ***out);

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
} pl_cloud_params;
cnp_status pl_cloud_sink_create(aws_client *aws, pg_store *db, const pl_cloud_params *p,
                                pl_cloud_sink **out, cnp_err *err);
void pl_cloud_sink_free(pl_cloud_sink *s);

/* Local directory. */
typedef struct pl_dir_sink pl_dir_sink;
cnp_status pl_dir_sink_create(const char *outdir, pl_dir_sink **out, cnp_err *err);
void pl_dir_sink_free(pl_dir_sink *s);

#endif
