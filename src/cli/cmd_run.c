/* canopy run: local image files through the same pipeline as drain (a
 * directory source and a directory sink, canopy/batch.h), with one line per
 * image on stdout and a summary. No service needed. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canopy/batch.h"
#include "canopy/log.h"
#include "cli/cli.h"
#include "cli/commands.h"
#include "cli/session.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: canopy run --input DIR|FILE [--input ...] --output DIR [options]\n\n"
            "Binarizes and detects trees in local rasters (PNG, GeoTIFF/COG, JPEG: taken by\n"
            "content). For each input <stem> writes <stem>.mask.png (.mask.tif for a\n"
            "georeferenced one), <stem>.overlay.png, <stem>.trees.json and, when\n"
            "georeferenced, <stem>.trees.geojson into the output directory, prints one\n"
            "line per image (a JSON object per image with [log] format = json) and a\n"
            "summary. Two inputs whose outputs would have the same name are refused; an\n"
            "unusable --output is refused up front (exit 2), as is an input with no\n"
            "raster. Files in the --output directory named as canopy's outputs are not\n"
            "taken as inputs.\n\n"
            "options:\n"
            "  -c, --config FILE      configuration file (see config/canopy.ini)\n"
            "  -i, --input PATH       a raster file or a directory of them (repeatable)\n"
            "  -o, --output DIR       output directory (created if missing)\n"
            "      --method M         [binarize] method: otsu | fixed | adaptive\n"
            "      --channel C        [binarize] channel: luma | exg\n"
            "      --threshold T      [binarize] threshold, with --method fixed only\n"
            "      --no-detector      binarization only (no overlay either)\n"
            "      --model FILE       [detector] model (a crown model, or a RetinaNet from\n"
            "                         `canopy model import`)\n"
            "      --classifier FILE  [classifier] model: tree types from an imported\n"
            "                         DeepForest CropModel (type, type_score per tree)\n"
            "      --types A,B        [classifier] types: tree_count counts these types\n"
            "      --skip-existing    skip an input whose outputs in --output are complete\n"
            "                         (its trees.json, written last, names the same model)\n"
            "      --set S.K=V        override any configuration key\n"
            "  -h, --help             this text\n\n"
            "Exit codes: 0 all done, 3 some images failed, 5 interrupted (SIGINT/SIGTERM)\n"
            "before every input was processed, 2 usage error, 1 fatal error.\n");
}

int cmd_run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"input", required_argument, NULL, 'i'},
        {"output", required_argument, NULL, 'o'},
        {"method", required_argument, NULL, 'M'},
        {"channel", required_argument, NULL, 'C'},
        {"threshold", required_argument, NULL, 'T'},
        {"no-detector", no_argument, NULL, 'N'},
        {"model", required_argument, NULL, 'm'},
        {"classifier", required_argument, NULL, 'L'},
        {"types", required_argument, NULL, 'Y'},
        {"skip-existing", no_argument, NULL, 'K'},
        {"set", required_argument, NULL, 'S'},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    const char *config = NULL, *outdir = NULL;
    const char *inputs[64];
    int ninputs = 0, c, rc = CNP_EXIT_OK;
    bool skip_existing = false, threshold_flag = false;
    cli_overrides ov = {0};
    cnp_config cfg;

    optind = 1;
    while ((c = getopt_long(argc, argv, "c:i:o:h", opts, NULL)) != -1 && rc == CNP_EXIT_OK) {
        switch (c) {
        case 'c': config = optarg; break;
        case 'i':
            if (ninputs == 64) {
                fprintf(stderr, "canopy run: at most 64 --input\n");
                rc = CNP_EXIT_USAGE;
            } else {
                inputs[ninputs++] = optarg;
            }
            break;
        case 'o': outdir = optarg; break;
        case 'M': rc = cli_override(&ov, "binarize", "method", optarg); break;
        case 'C': rc = cli_override(&ov, "binarize", "channel", optarg); break;
        case 'T':
            threshold_flag = true;
            rc = cli_override(&ov, "binarize", "threshold", optarg);
            break;
        case 'N': rc = cli_override(&ov, "detector", "enabled", "false"); break;
        case 'm': rc = cli_override(&ov, "detector", "model", optarg); break;
        case 'L': rc = cli_override(&ov, "classifier", "model", optarg); break;
        case 'Y': rc = cli_override(&ov, "classifier", "types", optarg); break;
        case 'K': skip_existing = true; break;
        case 'S': rc = cli_override_set(&ov, optarg); break;
        case 'h': usage(stdout); goto out;
        default: rc = CNP_EXIT_USAGE; break;
        }
    }
    if (rc != CNP_EXIT_OK)
        goto out;
    if (argc - optind > 64 - ninputs) {
        /* Before: the inputs past the 64th were dropped and the run exited 0. */
        fprintf(stderr, "canopy run: %d inputs given, at most 64 (pass their directory "
                        "instead)\n", ninputs + argc - optind);
        rc = CNP_EXIT_USAGE;
        goto out;
    }
    for (; optind < argc; optind++)
        inputs[ninputs++] = argv[optind];
    if (ninputs == 0 || !outdir) {
        fprintf(stderr, "canopy run: %s is missing (see canopy run --help)\n",
                ninputs == 0 && !outdir ? "--input DIR|FILE and --output DIR"
                : ninputs == 0          ? "--input DIR|FILE"
                                        : "--output DIR");
        rc = CNP_EXIT_USAGE;
        goto out;
    }
    if ((rc = cli_config_load("run", config, &ov, &cfg)) != CNP_EXIT_OK)
        goto out;
    if (threshold_flag && cfg.binarize.method != CNP_BIN_FIXED) {
        /* Other methods choose their own threshold: the flag would be ignored. */
        fprintf(stderr, "canopy run: --threshold applies to --method fixed only (the method "
                        "is %s); add --method fixed\n",
                cfg.binarize.method == CNP_BIN_OTSU ? "otsu" : "adaptive");
        rc = CNP_EXIT_USAGE;
        goto out;
    }
    cli_session s;
    pl_counts counts;
    cnp_err err = {{0}};
    pl_files_options fopt = {.inputs = inputs, .ninputs = (size_t)ninputs, .outdir = outdir,
                             .skip_existing = skip_existing};
    cli_session_begin(&s, "run", cfg.log.progress, true);
    rc = pl_run_files(&cfg, &fopt, &s.hooks, &counts, &err);
    cli_session_end(&s);
    if (rc == CNP_EXIT_USAGE || rc == CNP_EXIT_FATAL) {
        fprintf(stderr, "canopy run: %s\n", err.msg);
    } else {
        /* Stopped by a signal with inputs left: not "all done" (README). */
        if (cli_session_signalled() && counts.ok + counts.failed + counts.retried < counts.total)
            rc = CNP_EXIT_INTERRUPTED;
        if (!cnp_log_is_json())
            printf("\n");
        cli_summary_print(stdout, "run", &counts, rc, cli_session_signalled());
    }
out:
    cli_overrides_free(&ov);
    return rc;
}
