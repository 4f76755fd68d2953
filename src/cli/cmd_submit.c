/* canopy submit: the producer side of the earlier system's upload endpoint.
 * Validates each raster (PNG, GeoTIFF, JPEG), uploads it to [input] bucket/prefix with scan and
 * address metadata, enqueues {"image_id", "bucket", "key", "scan_id",
 * "address_id", "tree_types"} on [input] queue_url and prints the ids. */
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "canopy/exit.h"
#include "canopy/image.h"
#include "canopy/raster.h"
#include "canopy/s3.h"
#include "canopy/sqs.h"
#include "cli/cli.h"
#include "cli/commands.h"

struct item {
    const char *path;
    cnp_buf data;
    char key[2048];
    char image_id[40];
    s3_put_result put;
    char *body;
    bool ok;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: canopy submit -c FILE [options] FILE...\n\n"
            "Validates each raster (PNG, GeoTIFF, JPEG), uploads it to [input] bucket under [input] prefix with\n"
            "x-amz-meta-scan-id / address-id, and sends one message per image to [input]\n"
            "queue_url. Prints `<image_id> s3://bucket/key` per image.\n\n"
            "options:\n"
            "  -c, --config FILE      configuration file (see config/canopy.ini)\n"
            "      --scan-id S        scan_id of every message (and x-amz-meta-scan-id)\n"
            "      --address-id A     address_id of every message (and x-amz-meta-address-id)\n"
            "      --tree-types T,..  tree_types of every message, comma-separated (also\n"
            "      --types T,..       --types): with a classifier, tree_count counts those\n"
            "      --set S.K=V        override any configuration key\n"
            "  -h, --help             this text\n\n"
            "Exit codes: 0 all submitted, 3 some files failed (not rasters, unreadable),\n"
            "2 usage or configuration error, 1 fatal error (S3 or SQS unreachable or\n"
            "refusing the credentials).\n");
}

/* A random (version 4) UUID from /dev/urandom. */
static bool uuid4(char out[40])
{
    unsigned char b[16];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, b, sizeof b);
    close(fd);
    if (n != (ssize_t)sizeof b)
        return false;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 40, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
             b[13], b[14], b[15]);
    return true;
}

static char *message(const struct item *it, const char *bucket, const char *scan,
                     const char *address, const char *types)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "image_id", it->image_id);
    cJSON_AddStringToObject(o, "bucket", bucket);
    cJSON_AddStringToObject(o, "key", it->key);
    if (scan) cJSON_AddStringToObject(o, "scan_id", scan); else cJSON_AddNullToObject(o, "scan_id");
    if (address) cJSON_AddStringToObject(o, "address_id", address);
    else cJSON_AddNullToObject(o, "address_id");
    cJSON *arr = cJSON_AddArrayToObject(o, "tree_types");
    if (types && types[0]) {
        char *copy = strdup(types), *save = NULL;
        for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t; t = strtok_r(NULL, ",", &save))
            cJSON_AddItemToArray(arr, cJSON_CreateString(t));
        free(copy);
    }
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

/* A failure that is the service's (down, unreachable, credentials
 * refused), not the image's. */
static bool service_fault(cnp_status st)
{
    return st == CNP_ERR_TRANSIENT || st == CNP_ERR_AUTH;
}

static int submit(const cnp_config *cfg, struct item *items, size_t n, const char *scan,
                  const char *address, const char *types)
{
    aws_client *aws = NULL;
    aws_batch *batch = NULL;
    aws_kvlist meta = {0};
    cnp_err err;
    size_t failed = 0, unreachable = 0;
    int rc = CNP_EXIT_FATAL;
    cnp_status st0 = aws_client_create(&cfg->aws, &aws, &err);
    if (st0 == CNP_OK)
        st0 = aws_client_check_credentials(aws, &err);
    if (st0 == CNP_OK || st0 == CNP_ERR_TRANSIENT) /* transient: the uploads retry */
        st0 = aws_batch_create(aws, &batch, &err);
    if (st0 != CNP_OK) {
        /* Before any upload: a missing profile is a configuration error (2),
         * missing credentials a fatal one (1), not failed images (3). */
        fprintf(stderr, "canopy submit: %s\n", err.msg);
        rc = cnp_exit_for_setup(st0);
        goto out;
    }
    if ((scan && aws_kvlist_add(&meta, "scan-id", scan) != CNP_OK) ||
        (address && aws_kvlist_add(&meta, "address-id", address) != CNP_OK))
        goto out;
    for (size_t i = 0; i < n; i++) {
        struct item *it = &items[i];
        cnp_image img = {0};
        if (cnp_file_read(it->path, (size_t)cfg->input.max_object_bytes, &it->data, &err) != CNP_OK ||
            img_raster_decode(it->data.data, it->data.len, it->path,
                              (uint64_t)cfg->limits.max_pixels, &img, NULL, NULL, &err) != CNP_OK) {
            fprintf(stderr, "canopy submit: %s\n", err.msg);
            failed++;
            continue;
        }
        cnp_image_free(&img);
        const char *base = strrchr(it->path, '/');
        base = base ? base + 1 : it->path;
        snprintf(it->key, sizeof it->key, "%s%s", cfg->input.prefix, base);
        if (!uuid4(it->image_id)) {
            fprintf(stderr, "canopy submit: cannot read /dev/urandom\n");
            goto out;
        }
        const char *kind = img_raster_sniff(it->data.data, it->data.len);
        const char *ctype = kind && strcmp(kind, "tiff") == 0   ? "image/tiff"
                            : kind && strcmp(kind, "jpeg") == 0 ? "image/jpeg"
                                                                : "image/png";
        s3_put put = {.bucket = cfg->input.bucket, .key = it->key, .data = it->data.data,
                      .len = it->data.len, .content_type = ctype, .metadata = &meta};
        s3_batch_put(batch, &put, &it->put);
        it->ok = true;
    }
    if (aws_batch_run(batch, &err) != CNP_OK) {
        fprintf(stderr, "canopy submit: %s\n", err.msg);
        goto out;
    }
    sqs_send_entry entries[SQS_BATCH_MAX];
    struct item *who[SQS_BATCH_MAX];
    size_t k = 0;
    for (size_t i = 0; i <= n; i++) {
        struct item *it = i < n ? &items[i] : NULL;
        if (it && it->ok && it->put.result.status != CNP_OK) {
            fprintf(stderr, "canopy submit: %s: %s\n", it->path, it->put.result.err.msg);
            it->ok = false;
            failed++;
            unreachable += service_fault(it->put.result.status);
        }
        if (it && it->ok) {
            it->body = message(it, cfg->input.bucket, scan, address, types);
            entries[k] = (sqs_send_entry){.body = it->body};
            size_t ql = strlen(cfg->input.queue_url);
            if (ql > 5 && strcmp(cfg->input.queue_url + ql - 5, ".fifo") == 0) {
                entries[k].group_id = it->image_id;
                entries[k].dedup_id = it->image_id;
            }
            who[k++] = it;
        }
        if (k == SQS_BATCH_MAX || (k && !it)) {
            sqs_entry_result er[SQS_BATCH_MAX];
            aws_result ar;
            cnp_status st = sqs_send_batch(aws, cfg->input.queue_url, entries, k, er, &ar);
            for (size_t j = 0; j < k; j++) {
                if (st != CNP_OK || er[j].status != CNP_OK) {
                    fprintf(stderr, "canopy submit: %s: enqueue: %s\n", who[j]->path,
                            st != CNP_OK ? ar.err.msg : er[j].message);
                    failed++;
                    unreachable += st != CNP_OK && service_fault(st);
                } else {
                    printf("%s s3://%s/%s\n", who[j]->image_id, cfg->input.bucket, who[j]->key);
                }
            }
            k = 0;
        }
    }
    /* Exit 3 is for images at fault; a service that could not be reached
     * or refused us is a runtime error (exit 1), as for drain. */
    if (unreachable)
        fprintf(stderr, "canopy submit: %zu upload%s or enqueue%s failed for reasons of the "
                        "service, not of the image (endpoint %s)\n",
                unreachable, unreachable == 1 ? "" : "s", unreachable == 1 ? "" : "s",
                cfg->aws.endpoint_url[0] ? cfg->aws.endpoint_url : "AWS");
    rc = unreachable ? CNP_EXIT_FATAL : failed ? CNP_EXIT_PARTIAL : CNP_EXIT_OK;
out:
    aws_kvlist_free(&meta);
    aws_batch_free(batch);
    aws_client_free(aws);
    return rc;
}

int cmd_submit(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"scan-id", required_argument, NULL, 's'},
        {"address-id", required_argument, NULL, 'a'},
        {"tree-types", required_argument, NULL, 't'},
        {"types", required_argument, NULL, 't'},
        {"set", required_argument, NULL, 'S'},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    const char *config = NULL, *scan = NULL, *address = NULL, *types = NULL;
    cli_overrides ov = {0};
    cnp_config cfg;
    int c, rc = CNP_EXIT_OK;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1 && rc == CNP_EXIT_OK) {
        switch (c) {
        case 'c': config = optarg; break;
        case 's': scan = optarg; break;
        case 'a': address = optarg; break;
        case 't': types = optarg; break;
        case 'S': rc = cli_override_set(&ov, optarg); break;
        case 'h': usage(stdout); cli_overrides_free(&ov); return CNP_EXIT_OK;
        default: rc = CNP_EXIT_USAGE; break;
        }
    }
    if (rc == CNP_EXIT_OK && optind >= argc) {
        usage(stderr);
        rc = CNP_EXIT_USAGE;
    }
    if (rc == CNP_EXIT_OK)
        rc = cli_config_load("submit", config, &ov, &cfg);
    if (rc == CNP_EXIT_OK && (!cfg.input.bucket[0] || !cfg.input.queue_url[0])) {
        fprintf(stderr, "canopy submit: [input] bucket and queue_url must be set\n");
        rc = CNP_EXIT_USAGE;
    }
    if (rc == CNP_EXIT_OK) {
        size_t n = (size_t)(argc - optind);
        struct item *items = calloc(n, sizeof *items);
        if (!items) {
            rc = CNP_EXIT_FATAL;
        } else {
            for (size_t i = 0; i < n; i++)
                items[i].path = argv[optind + (int)i];
            rc = submit(&cfg, items, n, scan, address, types);
            for (size_t i = 0; i < n; i++) {
                cnp_buf_free(&items[i].data);
                cJSON_free(items[i].body);
            }
            free(items);
        }
    }
    cli_overrides_free(&ov);
    return rc;
}
