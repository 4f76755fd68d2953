/* canopy: finds trees in aerial images. Dispatches to the subcommands. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"

struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
};

/* CANOPY_DEVICE_ONLY (cmake/device_only.cmake): the device's commands alone. */
static const struct command commands[] = {
#ifndef CANOPY_DEVICE_ONLY
    {"run", cmd_run, "process local rasters or directories, write outputs locally"},
    {"drain", cmd_drain, "drain the SQS input queue in chunks (the batch job)"},
    {"reprocess", cmd_reprocess, "process every raster under s3://bucket/prefix"},
    {"submit", cmd_submit, "upload rasters to the input bucket and enqueue them"},
    {"eval", cmd_eval, "measure the detector against annotated images"},
    {"bench", cmd_bench, "benchmark kernels and PNG codecs"},
#endif
    {"devices", cmd_devices, "list OpenCL platforms and devices"},
    {"tune", cmd_tune, "tune CLBlast for the device on the models' GEMM shapes"},
#ifndef CANOPY_DEVICE_ONLY
    {"db", cmd_db, "database schema (db migrate, db status)"},
    {"config", cmd_config, "print the effective configuration, secrets masked (config show)"},
#endif
    {"model", cmd_model, "convert a published checkpoint to .cnw (model import)"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: canopy <command> [options]\n"
                 "       canopy --version | -V | version\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n`canopy <command> --help` describes a command's options.\n"
                 "Exit codes: 0 all done, 3 some images failed, 4 (drain) messages left for\n"
                 "redelivery had not come back, 5 (run) interrupted before every input was\n"
                 "processed, 6 (drain, reprocess) the database or output bucket stayed down\n"
                 "for [batch] outage_exit_seconds, 2 usage or configuration error, 1 fatal\n"
                 "runtime error.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CNP_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return CNP_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0 ||
        strcmp(argv[1], "version") == 0) {
        printf("canopy %s\n", CANOPY_VERSION_STRING);
        return CNP_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "canopy: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return CNP_EXIT_USAGE;
}
