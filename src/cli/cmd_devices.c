/* canopy devices: lists OpenCL platforms and devices, the one selected and
 * the backend that runs the models ([device] backend). */
#include <getopt.h>
#include <stdio.h>
#include <unistd.h>

#include "canopy/detect.h"
#include "canopy/gpu.h"
#include "canopy/pipeline.h"
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
                   "the device that [opencl] platform/device selects, and the backend\n"
                   "that runs the models ([device] backend: opencl or cpu).\n");
            return CNP_EXIT_OK;
        default: return CNP_EXIT_USAGE;
        }
    }
    cnp_config cfg;
    int rc = cli_config_load("devices", config, NULL, &cfg);
    if (rc != CNP_EXIT_OK)
        return rc;
    cnp_err err;
    ocl_ctx *ctx = NULL;
    if (pipe_device_less(&cfg.opencl, &cfg.device, true)) {
        printf("no OpenCL device: %s\n",
               ocl_list_devices(stdout, &err) != CNP_OK ? err.msg : "platforms without devices");
        printf("selected: none (binarization on the CPU, C path)\n");
    } else {
        if (ocl_list_devices(stdout, &err) != CNP_OK ||
            ocl_ctx_create(&cfg.opencl, &ctx, &err) != CNP_OK) {
            fprintf(stderr, "canopy devices: %s\n", err.msg);
            return CNP_EXIT_FATAL;
        }
        printf("selected: %s\n", ocl_ctx_description(ctx));
        printf("CLBlast tuning: %s\n", ocl_ctx_tuning(ctx)[0] ? ocl_ctx_tuning(ctx)
                                                            : "none (CLBlast's defaults)");
    }
    enum cnp_backend b;
    if (det_backend_choose(cfg.device.backend, ctx, &b, &err) != CNP_OK) {
        fprintf(stderr, "canopy devices: %s\n", err.msg);
        ocl_ctx_free(ctx);
        return CNP_EXIT_USAGE;
    }
    if (b == CNP_BACKEND_CPU)
        printf("models: cpu backend (oneDNN, %d threads; [device] backend = %s%s)\n",
               cfg.device.threads > 0 ? cfg.device.threads : (int)sysconf(_SC_NPROCESSORS_ONLN),
               det_backend_kind_name(cfg.device.backend), ctx ? "" : ", no OpenCL device");
    else
        printf("models: opencl backend on the selected device ([device] backend = %s)\n",
               det_backend_kind_name(cfg.device.backend));
    ocl_ctx_free(ctx);
    return CNP_EXIT_OK;
}
