/* Kernels of tree-type classifiers (src/detect/engine/classify_engine.c),
 * OpenCL 1.2: the crop of every tree cut, normalised and resized into the
 * graph engine's batched input, and softmax + argmax + max on its logits.
 * Their C reference is src/detect/ref/classify_ref.c (det_crop_transform,
 * det_resize_taps, det_class_softmax); tests/detect/test_classify.c holds
 * them together. Contraction into fma would change roundings against it. */
#pragma OPENCL FP_CONTRACT OFF

#define INTERP_BILINEAR 0
#define INTERP_NEAREST 1

static inline float crop_triangle(float x)
{
    x = fabs(x);
    return x < 1.0f ? 1.0f - x : 0.0f;
}

/* Taps of output i of a resize of n samples to size (det_resize_taps):
 * first index, count and the normaliser of the triangle weights (bilinear:
 * torchvision's antialiased rule; nearest: one tap of weight 1). */
static inline void crop_taps(const int interp, const int n, const int size, const int i,
                             int *lo, int *cnt, float *center, float *invscale, float *total)
{
    const float scale = (float)n / (float)size;
    if (interp == INTERP_NEAREST) {
        int src = n == size ? i : size == 2 * n ? i >> 1 : (int)floor((float)i * scale);
        *lo = src < n - 1 ? src : n - 1;
        *cnt = 1;
        *center = 0.0f;
        *invscale = 0.0f;
        *total = 0.0f;
        return;
    }
    const float support = scale >= 1.0f ? scale : 1.0f;
    *center = scale * ((float)i + 0.5f);
    *invscale = scale >= 1.0f ? 1.0f / scale : 1.0f;
    int a = (int)(*center - support + 0.5f);
    a = a > 0 ? a : 0;
    int b = (int)(*center + support + 0.5f);
    b = b < n ? b : n;
    *lo = a;
    *cnt = b - a;
    float t = 0.0f;
    for (int j = 0; j < b - a; j++)
        t += crop_triangle(((float)j + (float)a - *center + 0.5f) * *invscale);
    *total = t;
}

/* Weight j of a tap set (nearest: 1). */
static inline float crop_weight(const int interp, const int j, const int lo, const float center,
                                const float invscale, const float total)
{
    if (interp == INTERP_NEAREST)
        return 1.0f;
    const float w = crop_triangle(((float)j + (float)lo - center + 0.5f) * invscale);
    return total != 0.0f ? w / total : w;
}

/* Crop k of a batch of N: rect[k] = (x, y, w, h) of an RGBA8 image img_w
 * wide -> RGB / 255, (v - mean) / std -> resized to size x size, width
 * first (a row of horizontal sums per source row, then the vertical sum),
 * into planes c * N + k of out. Global (size, size, N). */
__kernel void crop_resize(__global const uchar4 *rgba, const int img_w,
                          __global const int4 *rect, const int size, const int interp,
                          const float4 mean4, const float4 std4, __global float *out,
                          const int N)
{
    const int x = get_global_id(0), y = get_global_id(1), k = get_global_id(2);
    if (x >= size || y >= size || k >= N)
        return;
    const int4 r = rect[k];
    int xl, xn, yl, yn;
    float xc, xi, xt, yc, yi, yt;
    crop_taps(interp, r.z, size, x, &xl, &xn, &xc, &xi, &xt);
    crop_taps(interp, r.w, size, y, &yl, &yn, &yc, &yi, &yt);
    const float3 mean = mean4.xyz, std = std4.xyz;
    float3 acc = (float3)(0.0f);
    for (int j = 0; j < yn; j++) {
        __global const uchar4 *row = rgba + (size_t)(r.y + yl + j) * img_w + r.x + xl;
        float3 h = (float3)(0.0f);
        for (int i = 0; i < xn; i++) {
            const uchar4 p = row[i];
            const float3 v =
                ((float3)((float)p.x / 255.0f, (float)p.y / 255.0f, (float)p.z / 255.0f) -
                 mean) / std;
            const float w = crop_weight(interp, i, xl, xc, xi, xt);
            h = i == 0 ? v * w : h + v * w;
        }
        const float w = crop_weight(interp, j, yl, yc, yi, yt);
        acc = j == 0 ? h * w : acc + h * w;
    }
    const size_t plane = (size_t)size * size, o = (size_t)k * plane + (size_t)y * size + x;
    out[o] = acc.x;
    out[(size_t)N * plane + o] = acc.y;
    out[2 * (size_t)N * plane + o] = acc.z;
}

/* Softmax of crop k's K logits (planes c * N + k of 1 x 1): the first
 * largest's index and its probability (det_class_softmax). Global (N). */
__kernel void crop_softmax(__global const float *logits, const int K, const int N,
                           __global int *type, __global float *score)
{
    const int k = get_global_id(0);
    if (k >= N)
        return;
    int best = 0;
    for (int c = 1; c < K; c++)
        if (logits[(size_t)c * N + k] > logits[(size_t)best * N + k])
            best = c;
    const float top = logits[(size_t)best * N + k];
    float sum = 0.0f;
    for (int c = 0; c < K; c++)
        sum += exp(logits[(size_t)c * N + k] - top);
    type[k] = best;
    score[k] = 1.0f / sum;
}
