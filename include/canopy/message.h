/* Input messages: S3 event notifications (direct or wrapped in SNS) and the
 * earlier system's JSON {"image_id", "bucket", "key", "scan_id",
 * "address_id", "tree_types"}. One message may name several images. */
#ifndef CANOPY_MESSAGE_H
#define CANOPY_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>

#include "canopy/status.h"

typedef struct msg_item {
    char *bucket;
    char *key;        /* URL-decoded */
    char *etag;       /* from the event; NULL when absent */
    char *image_id;   /* NULL when absent */
    char *scan_id;
    char *address_id;
    char **tree_types; /* NULL when absent */
    size_t n_tree_types;
} msg_item;

typedef enum msg_kind {
    MSG_IMAGES = 0,  /* items holds one or more images */
    MSG_IGNORE = 1,  /* s3:TestEvent, or an event with no object-created record */
    MSG_INVALID = 2, /* permanent failure: reason says why */
} msg_kind;

typedef struct msg_parsed {
    msg_kind kind;
    msg_item *items;
    size_t n;
    char reason[256];
} msg_parsed;

/* Parses one SQS message body. Returns CNP_OK with out->kind set (a bad
 * message is MSG_INVALID with the reason, not an error); CNP_ERR_NOMEM only. */
cnp_status msg_parse(const char *body, msg_parsed *out);
void msg_parsed_free(msg_parsed *m);

/* Decodes an S3 event key: %XX escapes, and '+' for a space. Returns a
 * malloc'd string, or NULL on a malformed escape (%00 included: it would cut
 * the key short) or out of memory. */
char *msg_key_decode(const char *in);

#endif
