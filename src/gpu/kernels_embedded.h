/* Table of kernels embedded at build time by cmake/embed_kernels.cmake. */
#ifndef CANOPY_GPU_KERNELS_EMBEDDED_H
#define CANOPY_GPU_KERNELS_EMBEDDED_H

#include <stddef.h>

struct ocl_embedded_kernel {
    const char *name;   /* file stem: "binarize" for kernels/binarize.cl */
    const char *source; /* NUL-terminated */
    size_t len;         /* without the terminator */
};

/* Terminated by an entry whose name is NULL. */
extern const struct ocl_embedded_kernel ocl_embedded_kernels[];

#endif
