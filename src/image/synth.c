/* Synthetic aerial-like images for tests and benchmarks. */
#include <string.h>

#include "canopy/synth.h"

cnp_status synth_aerial(cnp_image *img, uint32_t width, uint32_t height, uint32_t crowns,
                        uint64_t seed, cnp_err *err)
{
    cnp_status result = cnp_image_alloc(img, width, height, err);
    if (result != CNP_OK)
        return result;
    uint64_t st = seed ? seed : 0x9E3779B97F4A7C15ULL;
    size_t n = (size_t)width * height;
    for (size_t i = 0; i < n; i++) {
        uint64_t r = synth_rand(&st);
        int noise = (int)(r & 31) - 16;
        img->rgba[4 * i + 0] = (uint8_t)(150 + noise);
        img->rgba[4 * i + 1] = (uint8_t)(130 + noise);
        img->rgba[4 * i + 2] = (uint8_t)(100 + noise);
        img->rgba[4 * i + 3] = 255;
    }
    for (uint32_t c = 0; c < crowns && width && height; c++) {
        int cx = (int)(synth_rand(&st) % width);
        int cy = (int)(synth_rand(&st) % height);
        int rad = 8 + (int)(synth_rand(&st) % 23);
        int shade = (int)(synth_rand(&st) % 60);
        for (int y = cy - rad; y <= cy + rad; y++) {
            if (y < 0 || y >= (int)height)
                continue;
            for (int x = cx - rad; x <= cx + rad; x++) {
                if (x < 0 || x >= (int)width)
                    continue;
                int d2 = (x - cx) * (x - cx) + (y - cy) * (y - cy);
                if (d2 > rad * rad)
                    continue;
                uint8_t *p = img->rgba + 4 * ((size_t)y * width + (size_t)x);
                int light = 40 - 40 * d2 / (rad * rad); /* brighter at the crown top */
                int noise = (int)(synth_rand(&st) & 15) - 8;
                p[0] = (uint8_t)(40 + shade / 2 + light / 2 + noise);
                p[1] = (uint8_t)(90 + shade + light + noise);
                p[2] = (uint8_t)(40 + shade / 3 + noise);
            }
        }
    }
    return CNP_OK;
}
