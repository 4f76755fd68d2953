/* The nodes oneDNN does not run for the CPU backend, as C loops over the
 * blocked layout nChw16c: a tensor is nb = n * ceil(c / 16) planes of
 * h x w cells of 16 channels, so every op below moves whole 16-float
 * vectors (the compiler vectorises the inner loops) and the plane loop is
 * split over the OpenMP threads. The index rules are graph_ref.c's
 * (PyTorch's), so the results equal the reference's exactly. */
#include <math.h>
#include <stddef.h>

#include "detect/cpu/dnnl_internal.h"

void dg_maxpool(const float *in, float *out, int nb, int ih, int iw, int oh, int ow, int k,
                int s, int p)
{
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < nb; b++)
        for (int y = 0; y < oh; y++) {
            const float *src = in + (size_t)b * ih * iw * DG_BLOCK;
            float *dst = out + ((size_t)b * oh + y) * ow * DG_BLOCK;
            for (int x = 0; x < ow; x++) {
                float m[DG_BLOCK];
                for (int j = 0; j < DG_BLOCK; j++)
                    m[j] = -INFINITY;
                for (int ky = 0; ky < k; ky++) {
                    int sy = y * s - p + ky;
                    if (sy < 0 || sy >= ih)
                        continue;
                    for (int kx = 0; kx < k; kx++) {
                        int sx = x * s - p + kx;
                        if (sx < 0 || sx >= iw)
                            continue;
                        const float *v = src + ((size_t)sy * iw + sx) * DG_BLOCK;
                        for (int j = 0; j < DG_BLOCK; j++)
                            m[j] = v[j] > m[j] ? v[j] : m[j];
                    }
                }
                for (int j = 0; j < DG_BLOCK; j++)
                    dst[(size_t)x * DG_BLOCK + j] = m[j];
            }
        }
}

void dg_relu(const float *in, float *out, size_t floats)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < floats; i++)
        out[i] = in[i] < 0.0f ? 0.0f : in[i];
}

/* ATen's nearest rule: src = min(floor(dst * (float)in / out), in - 1). */
static int nearest_src(int dst, int in, int out)
{
    float scale = (float)in / (float)out;
    int s = (int)floorf((float)dst * scale);
    return s < in - 1 ? s : in - 1;
}

void dg_upsample_add(const float *in, const float *top, float *out, int nb, int h, int w,
                     int th, int tw)
{
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < nb; b++)
        for (int y = 0; y < h; y++) {
            int sy = nearest_src(y, th, h);
            const float *t = top + ((size_t)b * th + sy) * tw * DG_BLOCK;
            size_t row = ((size_t)b * h + y) * w * DG_BLOCK;
            for (int x = 0; x < w; x++) {
                const float *tv = t + (size_t)nearest_src(x, tw, w) * DG_BLOCK;
                size_t o = row + (size_t)x * DG_BLOCK;
                for (int j = 0; j < DG_BLOCK; j++)
                    out[o + j] = in[o + j] + tv[j];
            }
        }
}
