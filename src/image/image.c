/* The internal image layout: RGBA8, rows packed. */
#include <stdlib.h>
#include <string.h>

#include "canopy/image.h"

void cnp_image_free(cnp_image *img)
{
    if (!img)
        return;
    free(img->rgba);
    memset(img, 0, sizeof *img);
}

cnp_status cnp_image_alloc(cnp_image *img, uint32_t width, uint32_t height, cnp_err *err)
{
    memset(img, 0, sizeof *img);
    if (width == 0 || height == 0) {
        cnp_err_set(err, "image: invalid size %ux%u", width, height);
        return CNP_ERR_INVALID;
    }
    /* 4 * w * h must fit in size_t; on 64-bit hosts this never trips, but a
     * 32-bit build must not wrap. */
    if ((uint64_t)width * height > (uint64_t)(SIZE_MAX / 4)) {
        cnp_err_set(err, "image: %ux%u is too large for this host", width, height);
        return CNP_ERR_LIMIT;
    }
    size_t bytes = (size_t)width * height * 4;
    img->rgba = malloc(bytes);
    if (!img->rgba) {
        cnp_err_set(err, "image: out of memory allocating %ux%u (%zu bytes)", width, height,
                    bytes);
        return CNP_ERR_NOMEM;
    }
    img->width = width;
    img->height = height;
    return CNP_OK;
}
