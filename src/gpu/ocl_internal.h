/* What src/gpu/ocl.c (device selection, buffers) and src/gpu/ocl_program.c
 * (program build, binary cache) share: the context behind the opaque
 * ocl_ctx handle. Not for use outside src/gpu/. */
#ifndef CANOPY_GPU_OCL_INTERNAL_H
#define CANOPY_GPU_OCL_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>

#include "canopy/gpu.h"

struct program_entry {
    char *name;
    char *options;
    cl_program program;
};

struct ocl_ctx {
    cl_platform_id platform;
    cl_device_id device;
    cl_context context;
    cl_command_queue queue;
    size_t max_work_group;
    cl_ulong local_mem;
    bool fp32_cr_divide;     /* CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT reported */
    char description[768];
    char device_name[256];
    char driver[128];
    char cache_dir[CNP_STR_LONG];
    char kernel_dir[CNP_STR_LONG];
    char tuning[CNP_STR_LONG];
    pthread_mutex_t lock;
    /* Every program built in this context, kept for its life: one per
     * kernel file and option string (a model's conv shapes each build
     * their variants, so the list grows with the models loaded). */
    struct program_entry *programs;
    int nprograms, cap_programs;
};

#endif
