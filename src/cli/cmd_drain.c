/* canopy drain and canopy reprocess: the SQS and S3-listing front ends of
 * the pipeline (canopy/batch.h). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canopy/batch.h"
#include "cli/cli.h"
#include "cli/commands.h"
#include "cli/session.h"

static void drain_usage(FILE *out)
{
    fprintf(out,
            "usage: canopy drain -c FILE [options]\n\n"
            "Drains the SQS queue [input] queue_url in chunks of [batch] size messages:\n"
            "downloads each raster (PNG, GeoTIFF/COG, JPEG) from S3, binarizes it and\n"
            "detects trees on the OpenCL device, uploads <stem>.mask.png (.mask.tif when\n"
            "georeferenced), .overlay.png, .trees.json (and .trees.geojson when\n"
            "georeferenced) under [output] bucket/prefix, commits one PostgreSQL transaction per chunk, notifies\n"
            "[output] queue_url and only then deletes the messages. Exits when the queue\n"
            "has stayed empty for [batch] idle_exit_seconds.\n\n"
            "options:\n"
            "  -c, --config FILE      configuration file (see config/canopy.ini)\n"
            "      --follow           keep running when the queue is empty\n"
            "      --max-messages N   stop receiving after N messages\n"
            "      --no-detector      binarization only\n"
            "      --set S.K=V        override any configuration key\n"
            "  -h, --help             this text\n\n"
            "SIGTERM or SIGINT: stop receiving, finish and acknowledge the chunks in flight,\n"
            "exit 0; a second signal exits at once without acknowledging.\n"
            "Messages that failed transiently (network, database) are left for redelivery\n"
            "with a backoff; drain waits for them while they are due back within\n"
            "[batch] idle_exit_seconds. When ReceiveMessage keeps failing for [batch]\n"
            "unreachable_exit_seconds, drain gives up with exit 1.\n"
            "Exit codes: 0 all done, 3 some images failed (recorded in the database),\n"
            "4 messages left for redelivery had not come back when drain exited,\n"
            "2 usage or configuration error, 1 fatal error.\n");
}

static void reprocess_usage(FILE *out)
{
    fprintf(out,
            "usage: canopy reprocess s3://BUCKET/PREFIX -c FILE [options]\n\n"
            "Processes every raster (.png, .tif, .tiff, .jpg, .jpeg keys) under the\n"
            "prefix through the same pipeline as drain.\n"
            "Objects already processed at the same etag and model version are skipped,\n"
            "so an interrupted reprocess resumes where it stopped.\n\n"
            "options:\n"
            "  -c, --config FILE      configuration file (see config/canopy.ini)\n"
            "      --dry-run          list what would be processed or skipped, process nothing\n"
            "      --force            also process objects already processed\n"
            "      --no-detector      binarization only\n"
            "      --set S.K=V        override any configuration key\n"
            "  -h, --help             this text\n\n"
            "Exit codes: 0 all done, 3 some images failed, 2 usage or configuration\n"
            "error, 1 fatal error.\n");
}

enum { OPT_FOLLOW = 256, OPT_MAX, OPT_NODET, OPT_SET, OPT_DRY, OPT_FORCE };

/* Parses the options both commands share; returns -1 to go on, else an exit code. */
struct options {
    bool follow, dry_run, force;
    int64_t max_messages;
};

static int parse(int argc, char **argv, bool reprocess, const char **config, cli_overrides *ov,
                 struct options *opt, const char **target)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"follow", no_argument, NULL, OPT_FOLLOW},
        {"max-messages", required_argument, NULL, OPT_MAX},
        {"no-detector", no_argument, NULL, OPT_NODET},
        {"set", required_argument, NULL, OPT_SET},
        {"dry-run", no_argument, NULL, OPT_DRY},
        {"force", no_argument, NULL, OPT_FORCE},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    int c, rc;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': *config = optarg; break;
        case OPT_FOLLOW: opt->follow = true; break;
        case OPT_MAX: {
            char *end;
            opt->max_messages = strtoll(optarg, &end, 10);
            if (*end || opt->max_messages <= 0) {
                fprintf(stderr, "canopy %s: --max-messages: '%s' is not a positive integer\n",
                        argv[0], optarg);
                return CNP_EXIT_USAGE;
            }
            break;
        }
        case OPT_NODET:
            if ((rc = cli_override(ov, "detector", "enabled", "false")) != CNP_EXIT_OK)
                return rc;
            break;
        case OPT_SET:
            if ((rc = cli_override_set(ov, optarg)) != CNP_EXIT_OK)
                return rc;
            break;
        case OPT_DRY: opt->dry_run = true; break;
        case OPT_FORCE: opt->force = true; break;
        case 'h':
            (reprocess ? reprocess_usage : drain_usage)(stdout);
            return CNP_EXIT_OK;
        default:
            return CNP_EXIT_USAGE;
        }
    }
    if (reprocess) {
        if (optind != argc - 1) {
            reprocess_usage(stderr);
            return CNP_EXIT_USAGE;
        }
        *target = argv[optind];
    } else if (optind != argc) {
        drain_usage(stderr);
        return CNP_EXIT_USAGE;
    }
    if (!reprocess && (opt->dry_run || opt->force)) {
        fprintf(stderr, "canopy drain: --dry-run and --force belong to reprocess\n");
        return CNP_EXIT_USAGE;
    }
    if (reprocess && (opt->follow || opt->max_messages)) {
        fprintf(stderr, "canopy reprocess: --follow and --max-messages belong to drain\n");
        return CNP_EXIT_USAGE;
    }
    return -1;
}

/* reprocess --dry-run: one line per listed object. */
static void print_listed(void *ctx, const char *bucket, const char *key, bool skip)
{
    size_t *counts = ctx; /* [0] to process, [1] to skip */
    counts[skip]++;
    printf("%s s3://%s/%s\n", skip ? "skip   " : "process", bucket, key);
}

int cmd_drain(int argc, char **argv)
{
    const char *config = NULL, *target = NULL;
    cli_overrides ov = {0};
    struct options opt = {0};
    cnp_config cfg;
    int rc = parse(argc, argv, false, &config, &ov, &opt, &target);
    if (rc >= 0)
        goto out;
    if ((rc = cli_config_load("drain", config, &ov, &cfg)) == CNP_EXIT_OK) {
        cli_session s;
        pl_counts counts;
        cnp_err err = {{0}};
        pl_drain_options dopt = {.follow = opt.follow, .max_messages = opt.max_messages};
        cli_session_begin(&s, "drain", cfg.log.progress, false);
        rc = pl_drain(&cfg, &dopt, &s.hooks, &counts, &err);
        cli_session_end(&s);
        if (err.msg[0] && (rc == CNP_EXIT_USAGE || rc == CNP_EXIT_FATAL))
            fprintf(stderr, "canopy drain: %s\n", err.msg);
        if (rc != CNP_EXIT_USAGE && counts.run_id)
            cli_summary_print(stdout, "drain", &counts, rc, cli_session_signalled());
    }
out:
    cli_overrides_free(&ov);
    return rc;
}

/* Splits s3://bucket/prefix; the prefix may be empty. */
static bool parse_s3_url(const char *url, char *bucket, size_t blen, const char **prefix)
{
    if (strncmp(url, "s3://", 5) != 0)
        return false;
    const char *b = url + 5;
    const char *slash = strchr(b, '/');
    size_t n = slash ? (size_t)(slash - b) : strlen(b);
    if (n == 0 || n >= blen)
        return false;
    memcpy(bucket, b, n);
    bucket[n] = '\0';
    *prefix = slash ? slash + 1 : "";
    return true;
}

int cmd_reprocess(int argc, char **argv)
{
    const char *config = NULL, *target = NULL, *prefix = NULL;
    cli_overrides ov = {0};
    struct options opt = {0};
    cnp_config cfg;
    char bucket[256];
    int rc = parse(argc, argv, true, &config, &ov, &opt, &target);
    if (rc >= 0)
        goto out;
    if (!parse_s3_url(target, bucket, sizeof bucket, &prefix)) {
        fprintf(stderr, "canopy reprocess: '%s' is not s3://BUCKET/PREFIX\n", target);
        rc = CNP_EXIT_USAGE;
        goto out;
    }
    if ((rc = cli_config_load("reprocess", config, &ov, &cfg)) == CNP_EXIT_OK) {
        cli_session s;
        pl_counts counts;
        cnp_err err = {{0}};
        pl_reprocess_options ropt = {.force = opt.force, .dry_run = opt.dry_run};
        cli_session_begin(&s, "reprocess", cfg.log.progress, false);
        size_t listed[2] = {0, 0};
        if (opt.dry_run) {
            s.hooks.on_listed = print_listed;
            s.hooks.ctx = listed; /* only on_listed runs on a dry run */
            s.hooks.on_progress = NULL;
        }
        rc = pl_reprocess(&cfg, bucket, prefix, &ropt, &s.hooks, &counts, &err);
        cli_session_end(&s);
        if (err.msg[0] && (rc == CNP_EXIT_USAGE || rc == CNP_EXIT_FATAL))
            fprintf(stderr, "canopy reprocess: %s\n", err.msg);
        else if (opt.dry_run)
            printf("dry run: %zu to process, %zu to skip\n", listed[0], listed[1]);
        else if (counts.run_id)
            cli_summary_print(stdout, "reprocess", &counts, rc, cli_session_signalled());
    }
out:
    cli_overrides_free(&ov);
    return rc;
}
