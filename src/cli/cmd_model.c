/* canopy model import: converts a published detector checkpoint (a Hugging
 * Face safetensors file with its config.json) into a .cnw version 2 file. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "detect/import.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: canopy model import SRC --output FILE.cnw [--version STRING]\n\n"
            "Converts a torchvision RetinaNet ResNet-50-FPN checkpoint, as DeepForest\n"
            "publishes it, into a .cnw version 2 weights file (models/FORMAT.md). SRC is\n"
            "a directory holding model.safetensors and config.json, or the .safetensors\n"
            "file with config.json beside it. Batch norm is folded into the convs.\n"
            "--version sets the model version stored with results (default\n"
            "deepforest-tree-<revision>: config.json's \"revision\", else the safetensors\n"
            "metadata's, else the first 12 hex digits of the file's SHA-256).\n"
            "Exit 2 on a usage error, 1 when the checkpoint is refused.\n");
}

static int model_import(int argc, char **argv)
{
    static const struct option opts[] = {
        {"output", required_argument, NULL, 'o'},
        {"version", required_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    const char *output = NULL, *version = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': output = optarg; break;
        case 'v': version = optarg; break;
        case 'h': usage(stdout); return CNP_EXIT_OK;
        default: return CNP_EXIT_USAGE;
        }
    }
    if (optind != argc - 1 || !output) {
        fprintf(stderr, "canopy model import: needs one SRC and --output FILE (see canopy "
                        "model --help)\n");
        return CNP_EXIT_USAGE;
    }
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
    printf("%s: model version %s, %d graph nodes, %d classes (%s%s)\n", output,
           det_import_version(im), g->n_nodes, g->retina.num_classes, g->retina.labels[0],
           g->retina.num_classes > 1 ? ", ..." : "");
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
