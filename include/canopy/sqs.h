/* SQS with the AWS JSON 1.0 protocol (X-Amz-Target: AmazonSQS.<Op>).
 *
 * Receive (long polling), batch delete / change visibility / send with
 * per-entry results, queue lookup, attributes and creation. Batch calls split
 * their input into requests of at most 10 entries and 256 KiB and send those
 * requests concurrently. */
#ifndef CANOPY_SQS_H
#define CANOPY_SQS_H

#include "canopy/aws.h"

#define SQS_BATCH_MAX 10
#define SQS_BATCH_BYTES (256 * 1024)

/* A message attribute (String, Number or Binary; binary values stay base64). */
typedef struct sqs_msg_attr {
    char *name;
    char *data_type;
    char *value;
} sqs_msg_attr;

typedef struct sqs_message {
    char *message_id;
    char *receipt_handle;
    char *body;
    char *md5_of_body;
    int receive_count;            /* ApproximateReceiveCount, 0 if absent */
    aws_kvlist attributes;        /* every system attribute returned */
    sqs_msg_attr *msg_attrs;
    size_t n_msg_attrs;
} sqs_message;

typedef struct sqs_message_list {
    sqs_message *items;
    size_t n;
} sqs_message_list;

/* Frees the fields of one message (not the message itself); accepts NULL. */
void sqs_message_free(sqs_message *m);
void sqs_message_list_free(sqs_message_list *list);

/* Receives up to max (1..10) messages, waiting up to wait_seconds (0..20)
 * for the first one; visibility_timeout < 0 keeps the queue's default.
 * Asks for all system and message attributes. Zero messages is CNP_OK.
 * cancel (may be NULL; may be set from a signal handler): once *cancel is
 * non-zero the call ends within about a second with CNP_ERR_TRANSIENT
 * "cancelled", whatever the wait; other requests of the client go on. A
 * message SQS handed out to the cancelled call stays invisible until its
 * visibility timeout ends, then is delivered again. */
cnp_status sqs_receive(aws_client *client, const char *queue_url, int max, int wait_seconds,
                       int visibility_timeout, const volatile int *cancel,
                       sqs_message_list *out, aws_result *result);

/* Per-entry outcome of a batch call, in input order. */
typedef struct sqs_entry_result {
    cnp_status status;            /* CNP_OK, or why this entry failed */
    bool sender_fault;
    char code[96];
    char message[256];
    char message_id[128];         /* SendMessageBatch */
} sqs_entry_result;

/* Deletes n messages by receipt handle. results (n entries) receive each
 * entry's outcome; the return is CNP_OK when every request was answered
 * (entries may still have failed: see results), else the first request
 * error. result->attempts counts the HTTP attempts of all requests. */
cnp_status sqs_delete_batch(aws_client *client, const char *queue_url,
                            const char *const *receipt_handles, size_t n,
                            sqs_entry_result *results, aws_result *result);

/* Sets the visibility timeout (seconds) of n messages. */
cnp_status sqs_change_visibility_batch(aws_client *client, const char *queue_url,
                                       const char *const *receipt_handles,
                                       const int *timeouts, size_t n,
                                       sqs_entry_result *results, aws_result *result);

typedef struct sqs_send_entry {
    const char *body;
    const char *group_id;         /* FIFO: MessageGroupId, else NULL */
    const char *dedup_id;         /* FIFO: MessageDeduplicationId, or NULL */
    int delay_seconds;            /* <= 0: none */
    const aws_kvlist *attributes; /* String message attributes, or NULL */
} sqs_send_entry;

cnp_status sqs_send_batch(aws_client *client, const char *queue_url,
                          const sqs_send_entry *entries, size_t n,
                          sqs_entry_result *results, aws_result *result);

/* GetQueueUrl: url_out receives the queue URL. */
cnp_status sqs_queue_url(aws_client *client, const char *name, char *url_out, size_t len,
                         aws_result *result);
/* CreateQueue with attributes (NULL: none); url_out receives the URL. */
cnp_status sqs_queue_create(aws_client *client, const char *name, const aws_kvlist *attributes,
                            char *url_out, size_t len, aws_result *result);
/* GetQueueAttributes (All) into out (appended). */
cnp_status sqs_queue_attributes(aws_client *client, const char *queue_url, aws_kvlist *out,
                                aws_result *result);
cnp_status sqs_queue_purge(aws_client *client, const char *queue_url, aws_result *result);
cnp_status sqs_queue_delete(aws_client *client, const char *queue_url, aws_result *result);

#endif
