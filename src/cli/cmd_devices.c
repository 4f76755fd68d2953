/* canopy devices: lists OpenCL platforms and devices, and the one selected. */
#include <getopt.h>
#include <stdio.h>

#include "canopy/gpu.h"
#include "cli/cli.h"
#include "cli/commands.h"

int cmd_devices(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    const char *config = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config = optarg; break;
        case 'h':
            printf("usage: canopy devices [-c FILE]\n\n"
                   "Lists OpenCL platforms and devices with their memory and compute units,\n"
                   "and the device that [opencl] platform/device selects.\n");
            return CNP_EXIT_OK;
        default: return CNP_EXIT_USAGE;
        }
    }
    cnp_config cfg;
    int rc = cli_config_load("devices", config, NULL, &cfg);
    if (rc != CNP_EXIT_OK)
        return rc;
    cnp_err err;
    if (ocl_list_devices(stdout, &err) != CNP_OK) {
        fprintf(stderr, "canopy devices: %s\n", err.msg);
        return CNP_EXIT_FATAL;
    }
    ocl_ctx *ctx;
    if (ocl_ctx_create(&cfg.opencl, &ctx, &err) != CNP_OK) {
        fprintf(stderr, "canopy devices: %s\n", err.msg);
        return CNP_EXIT_FATAL;
    }
    printf("selected: %s\n", ocl_ctx_description(ctx));
    printf("CLBlast tuning: %s\n", ocl_ctx_tuning(ctx)[0] ? ocl_ctx_tuning(ctx)
                                                        : "none (CLBlast's defaults)");
    ocl_ctx_free(ctx);
    return CNP_EXIT_OK;
}
