/* canopy model import: converts a published detector checkpoint (a Hugging
 * Face safetensors file with its config.json) into a .cnw version 2 file. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "detect/import.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: canopy model import SRC --output FILE.cnw [options]\n\n"
            "Converts a torchvision RetinaNet ResNet-50-FPN checkpoint, as DeepForest\n"
            "publishes it, into a .cnw version 2 weights file (models/FORMAT.md). SRC is\n"
            "a directory holding model.safetensors and config.json, or the .safetensors\n"
            "file with config.json beside it. Batch norm is folded into the convs.\n"
            "A config.json with a \"cropmodel\" section is a DeepForest CropModel (tree\n"
            "types: ResNet-18 or ResNet-50): it becomes a classifier .cnw, used with\n"
            "canopy run --classifier or [classifier] model (default version\n"
            "cropmodel-<architecture>-<revision>).\n"
            "--version sets the model version stored with results (default\n"
            "deepforest-tree-<revision>: config.json's \"revision\", else the safetensors\n"
            "metadata's, else the first 12 hex digits of the file's SHA-256).\n\n"
            "options:\n"
            "  -c, --config FILE      configuration file (see config/canopy.ini; checked,\n"
            "                         its [log] settings apply)\n"
            "  -o, --output FILE.cnw  where to write the model\n"
            "      --version STRING   the model version stored with results\n"
            "      --set S.K=V        override any configuration key\n"
            "  -h, --help             this text\n\n"
            "Exit codes: 0 written, 2 usage or configuration error, 1 when the checkpoint\n"
            "is refused.\n");
}

static int model_import(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"output", required_argument, NULL, 'o'},
        {"version", required_argument, NULL, 'v'},
        {"set", required_argument, NULL, 'S'},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    const char *output = NULL, *version = NULL, *config = NULL;
    int c, rc = CNP_EXIT_OK;
    cli_overrides ov = {0};
    cnp_config cfg;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:o:h", opts, NULL)) != -1 && rc == CNP_EXIT_OK) {
        switch (c) {
        case 'c': config = optarg; break;
        case 'o': output = optarg; break;
        case 'v': version = optarg; break;
        case 'S': rc = cli_override_set(&ov, optarg); break;
        case 'h': usage(stdout); cli_overrides_free(&ov); return CNP_EXIT_OK;
        default: rc = CNP_EXIT_USAGE; break;
        }
    }
    if (rc == CNP_EXIT_OK && (optind != argc - 1 || !output)) {
        fprintf(stderr, "canopy model import: needs one SRC and --output FILE (see canopy "
                        "model --help)\n");
        rc = CNP_EXIT_USAGE;
    }
    /* Like every command: a bad file or key is an error (2), [log] applies. */
    if (rc == CNP_EXIT_OK)
        rc = cli_config_load("model import", config, &ov, &cfg);
    cli_overrides_free(&ov);
    if (rc != CNP_EXIT_OK)
        return rc;
    det_import *im = NULL;
    cnp_err err = {{0}};
    cnp_status st = det_import_load(argv[optind], version, &im, &err);
    if (st == CNP_OK)
        st = det_import_write(im, output, &err);
    if (st != CNP_OK) {
        fprintf(stderr, "canopy model import: %s\n", err.msg);
        det_import_free(im);
        return st == CNP_ERR_INVALID ? CNP_EXIT_USAGE : CNP_EXIT_FATAL;
    }
    const det_graph *g = det_import_graph(im);
    bool crop = g->input.kind == DET_INPUT_CROP;
    int classes = crop ? g->classify.num_classes : g->retina.num_classes;
    printf("%s: %smodel version %s, %d graph nodes, %d classes (%s%s)\n", output,
           crop ? "classifier, " : "", det_import_version(im), g->n_nodes, classes,
           crop ? g->classify.labels[0] : g->retina.labels[0], classes > 1 ? ", ..." : "");
    det_import_free(im);
    return CNP_EXIT_OK;
}

int cmd_model(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CNP_EXIT_USAGE : CNP_EXIT_OK;
    }
    if (strcmp(argv[1], "import") == 0)
        return model_import(argc - 1, argv + 1);
    fprintf(stderr, "canopy model: unknown subcommand '%s' (see canopy model --help)\n",
            argv[1]);
    return CNP_EXIT_USAGE;
}
