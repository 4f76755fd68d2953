/* The batch driver: SQS (drain) or an S3 listing (reprocess) feeding the
 * staged pipeline
 *
 *   source -> fetch (S3 GET, concurrent)
 *          -> decode (PNG decode on the pool; the next chunk downloads meanwhile)
 *          -> device (binarize + detect, one command queue)
 *          -> output (encode on the pool; S3 PUT, concurrent; one PostgreSQL
 *             transaction per chunk; notifications; acknowledgement)
 *
 * with at most [batch] max_chunks_in_flight chunks between source and
 * acknowledgement (back-pressure), and a heartbeat extending the visibility
 * of messages in chunks still in flight. */
#ifndef CANOPY_DRIVER_H
#define CANOPY_DRIVER_H

#include <stdbool.h>
#include <stdint.h>

#include "canopy/config.h"

typedef struct drv_options {
    bool follow;          /* drain: never exit because the queue is idle */
    int64_t max_messages; /* drain: stop receiving after this many; 0 = no limit */
    bool force;           /* reprocess: also objects already processed */
    bool dry_run;         /* reprocess: list, process nothing */
} drv_options;

/* Drains [input] queue_url. Returns the exit code of the contract. */
int drv_drain(const cnp_config *cfg, const drv_options *opt);

/* Processes every .png under s3://bucket/prefix. Returns the exit code. */
int drv_reprocess(const cnp_config *cfg, const char *bucket, const char *prefix,
                  const drv_options *opt);

/* Installs the SIGTERM/SIGINT handlers: the first asks the driver to stop
 * receiving and finish the chunks in flight, the second exits at once. */
void drv_signals_install(void);
/* True once a stop was requested. */
bool drv_stop_requested(void);

#endif
