/* Fuzz target: the JSON answers canopy reads from SQS and the metadata
 * services: ReceiveMessage (sqs_receive_parse), the batch calls' per-entry
 * results (sqs_entries_parse), GetQueueAttributes (sqs_attributes_parse) and
 * the container/instance credentials JSON (aws_creds_json_parse).
 *
 * Invariants: no crash or leak; every received message has all its strings;
 * a batch answer writes only the request's own entries (whatever Ids it
 * names) and leaves their strings terminated; credentials read have a key id
 * and a secret. */
#include "aws/aws_internal.h"
#include "fuzz_util.h"

#define ENTRIES 12

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sqs_message_list list;
    cnp_status st = sqs_receive_parse(data, size, &list);
    FUZZ_CHECK(st == CNP_OK || st == CNP_ERR_FORMAT || st == CNP_ERR_NOMEM);
    if (st == CNP_OK) {
        for (size_t i = 0; i < list.n; i++) {
            const sqs_message *m = &list.items[i];
            FUZZ_CHECK(m->message_id && m->receipt_handle && m->body && m->md5_of_body);
            for (size_t k = 0; k < m->n_msg_attrs; k++)
                FUZZ_CHECK(m->msg_attrs[k].name && m->msg_attrs[k].data_type &&
                           m->msg_attrs[k].value);
            for (size_t k = 0; k < m->attributes.n; k++)
                FUZZ_CHECK(m->attributes.items[k].name && m->attributes.items[k].value);
        }
    }
    sqs_message_list_free(&list);

    /* Entries 2..9 are this request's; the others must stay untouched. */
    sqs_entry_result results[ENTRIES];
    memset(results, 0x5a, sizeof results);
    memset(&results[2], 0, 8 * sizeof results[0]); /* as run_entry_batches does */
    st = sqs_entries_parse(data, size, results, 2, 8);
    FUZZ_CHECK(st == CNP_OK || st == CNP_ERR_FORMAT);
    for (size_t i = 0; i < ENTRIES; i++) {
        const uint8_t *raw = (const uint8_t *)&results[i];
        bool mine = i >= 2 && i < 10;
        if (!mine || st != CNP_OK) {
            for (size_t b = 0; b < sizeof results[i]; b++)
                FUZZ_CHECK(raw[b] == (mine ? 0 : 0x5a));
            continue;
        }
        FUZZ_CHECK(fuzz_terminated(results[i].message_id, sizeof results[i].message_id));
        FUZZ_CHECK(fuzz_terminated(results[i].code, sizeof results[i].code));
        FUZZ_CHECK(fuzz_terminated(results[i].message, sizeof results[i].message));
    }

    aws_kvlist attrs = {0};
    st = sqs_attributes_parse(data, size, &attrs);
    FUZZ_CHECK(st == CNP_OK || st == CNP_ERR_FORMAT || st == CNP_ERR_NOMEM);
    for (size_t k = 0; k < attrs.n; k++)
        FUZZ_CHECK(attrs.items[k].name && attrs.items[k].value);
    aws_kvlist_free(&attrs);

    aws_credentials creds;
    cnp_err err = {{0}};
    if (aws_creds_json_parse(data, size, "imds", "fuzz", &creds, &err) == CNP_OK)
        FUZZ_CHECK(creds.access_key_id[0] && creds.secret_access_key[0]);
    else
        FUZZ_CHECK(err.msg[0] != '\0');
    return 0;
}
