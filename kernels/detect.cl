/* Tree detector kernels (OpenCL 1.2). Each has a C reference in
 * src/detect/ref.c and a test in tests/detect that holds them together.
 *
 * Build options (per program variant, cached by the gpu module):
 *   -DK=3 -DDIL=1 -DRELU=1   convolution / im2col geometry and activation
 *   -DNCH=4 -DCH0..CH3        input channel codes (0 r, 1 g, 2 b, 3 exg)
 *   -DOUT_HEAT.. -DOUT_DY     output channel indices for the decode
 * Defaults below let one program serve kernels that ignore them. */

#ifndef K
#define K 1
#endif
#ifndef DIL
#define DIL 1
#endif
#ifndef RELU
#define RELU 0
#endif
#ifndef NCH
#define NCH 4
#define CH0 0
#define CH1 1
#define CH2 2
#define CH3 3
#endif
#ifndef OUT_HEAT
#define OUT_HEAT 0
#define OUT_LR 1
#define OUT_DX 2
#define OUT_DY 3
#endif

/* Work-group tile of the direct convolution: TX x TY output pixels, each
 * work-item computing COB output channels; CIB input channels staged in
 * local memory per step. */
#define TX 16
#define TY 8
#define COB 8
#define CIB 4
#define RAD (DIL * (K / 2))
#define LW (TX + 2 * RAD)
#define LH (TY + 2 * RAD)

float channel_value(int code, float r, float g, float b)
{
    return code == 0 ? r : code == 1 ? g : code == 2 ? b : 2.0f * g - r - b;
}

/* RGBA8 region (x0, y0, w, h) of an image img_w wide -> normalized CHW
 * floats. mean/inv_std per channel. One work-item per pixel. */
__kernel void detect_preprocess(__global const uchar4 *rgba, const int img_w, const int x0,
                                const int y0, const int w, const int h,
                                __global float *out, const float4 mean, const float4 inv_std)
{
    const int x = get_global_id(0), y = get_global_id(1);
    if (x >= w || y >= h)
        return;
    const uchar4 p = rgba[(size_t)(y0 + y) * img_w + x0 + x];
    const float r = p.x / 255.0f, g = p.y / 255.0f, b = p.z / 255.0f;
    const size_t plane = (size_t)w * h, i = (size_t)y * w + x;
    const int codes[4] = {CH0, CH1, CH2, CH3};
    const float mu[4] = {mean.s0, mean.s1, mean.s2, mean.s3};
    const float is[4] = {inv_std.s0, inv_std.s1, inv_std.s2, inv_std.s3};
    for (int c = 0; c < NCH; c++)
        out[c * plane + i] = (channel_value(codes[c], r, g, b) - mu[c]) * is[c];
}

/* Direct "same" convolution (stride 1, zero padding RAD) with bias and
 * activation fused. Global size (ceil(W/TX)*TX, ceil(H/TY)*TY,
 * ceil(O/COB)), local (TX, TY, 1). The input patch with its halo and the
 * weights of COB outputs x CIB inputs are staged in local memory so every
 * input value is read from global memory once per work-group; consecutive
 * work-items read consecutive addresses. */
__kernel __attribute__((reqd_work_group_size(TX, TY, 1)))
void detect_conv(__global const float *in, __global const float *weight,
                 __global const float *bias, __global float *out, const int C, const int H,
                 const int W, const int O)
{
    __local float patch[CIB * LH * LW];
    __local float wl[COB * CIB * K * K];
    const int lx = get_local_id(0), ly = get_local_id(1);
    const int lid = ly * TX + lx;
    const int gx0 = get_group_id(0) * TX, gy0 = get_group_id(1) * TY;
    const int x = gx0 + lx, y = gy0 + ly;
    const int o0 = get_group_id(2) * COB;
    const size_t plane = (size_t)H * W;
    float acc[COB];
    for (int o = 0; o < COB; o++)
        acc[o] = o0 + o < O ? bias[o0 + o] : 0.0f;
    for (int c0 = 0; c0 < C; c0 += CIB) {
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int i = lid; i < CIB * LH * LW; i += TX * TY) {
            const int ci = i / (LH * LW), r = i % (LH * LW);
            const int py = r / LW, px = r % LW;
            const int sy = gy0 + py - RAD, sx = gx0 + px - RAD;
            float v = 0.0f;
            if (c0 + ci < C && sy >= 0 && sy < H && sx >= 0 && sx < W)
                v = in[(c0 + ci) * plane + (size_t)sy * W + sx];
            patch[i] = v;
        }
        for (int i = lid; i < COB * CIB * K * K; i += TX * TY) {
            const int o = i / (CIB * K * K), r = i % (CIB * K * K);
            const int ci = r / (K * K), kk = r % (K * K);
            float v = 0.0f;
            if (o0 + o < O && c0 + ci < C)
                v = weight[((size_t)(o0 + o) * C + c0 + ci) * (K * K) + kk];
            wl[i] = v;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int ci = 0; ci < CIB; ci++) {
            for (int ky = 0; ky < K; ky++) {
                for (int kx = 0; kx < K; kx++) {
                    const float v = patch[(ci * LH + ly + ky * DIL) * LW + lx + kx * DIL];
                    for (int o = 0; o < COB; o++)
                        acc[o] = mad(wl[(o * CIB + ci) * (K * K) + ky * K + kx], v, acc[o]);
                }
            }
        }
    }
    if (x >= W || y >= H)
        return;
    for (int o = 0; o < COB; o++) {
        if (o0 + o < O) {
            float v = acc[o];
#if RELU
            v = fmax(v, 0.0f);
#endif
            out[(o0 + o) * plane + (size_t)y * W + x] = v;
        }
    }
}

/* im2col for the GEMM path: col[(c*K*K + ky*K + kx), y*W + x] = input tap
 * (zero outside). One work-item per (pixel, row of K*K taps of a channel):
 * global (W*H rounded, C). Consecutive work-items write consecutive columns. */
__kernel void detect_im2col(__global const float *in, __global float *col, const int C,
                            const int H, const int W)
{
    const int p = get_global_id(0), c = get_global_id(1);
    const int n = H * W;
    if (p >= n || c >= C)
        return;
    const int y = p / W, x = p % W;
    const size_t plane = (size_t)n;
    for (int ky = 0; ky < K; ky++) {
        for (int kx = 0; kx < K; kx++) {
            const int sy = y + ky * DIL - RAD, sx = x + kx * DIL - RAD;
            float v = 0.0f;
            if (sy >= 0 && sy < H && sx >= 0 && sx < W)
                v = in[c * plane + (size_t)sy * W + sx];
            col[((size_t)c * K * K + ky * K + kx) * plane + p] = v;
        }
    }
}

/* Bias and activation after the GEMM, in place. Global (H*W rounded, O). */
__kernel void detect_bias_act(__global float *out, __global const float *bias, const int n,
                              const int O)
{
    const int p = get_global_id(0), o = get_global_id(1);
    if (p >= n || o >= O)
        return;
    float v = out[(size_t)o * n + p] + bias[o];
#if RELU
    v = fmax(v, 0.0f);
#endif
    out[(size_t)o * n + p] = v;
}

/* 2x2 max pool, stride 2, odd trailing row/column dropped. Global (OW, OH, C). */
__kernel void detect_maxpool(__global const float *in, __global float *out, const int H,
                             const int W)
{
    const int x = get_global_id(0), y = get_global_id(1), c = get_global_id(2);
    const int OW = W / 2, OH = H / 2;
    if (x >= OW || y >= OH)
        return;
    __global const float *p = in + (size_t)c * H * W + (size_t)(2 * y) * W + 2 * x;
    out[(size_t)c * OH * OW + (size_t)y * OW + x] = fmax(fmax(p[0], p[1]), fmax(p[W], p[W + 1]));
}

float det_sigmoid(float v)
{
    return 1.0f / (1.0f + exp(-v));
}

/* Decode and 3x3 peak extraction. A cell is a tree when its score passes the
 * threshold, is > every neighbour before it in row-major order and >= every
 * neighbour after it, and its centre falls in the tile's owned region
 * own = (x_lo, y_lo, x_hi, y_hi). Trees are appended with an atomic counter;
 * slots past `cap` are counted but not written. Global (OW, OH). */
__kernel void detect_peaks(__global const float *head, const int OH, const int OW,
                           const int x0, const int y0, const float stride,
                           const float threshold, const float4 own,
                           __global float4 *trees, __global volatile int *count,
                           const int cap)
{
    const int j = get_global_id(0), i = get_global_id(1);
    if (j >= OW || i >= OH)
        return;
    const size_t plane = (size_t)OH * OW, k = (size_t)i * OW + j;
    __global const float *heat = head + OUT_HEAT * plane;
    const float score = det_sigmoid(heat[k]);
    if (!(score >= threshold))
        return;
    for (int di = -1; di <= 1; di++) {
        for (int dj = -1; dj <= 1; dj++) {
            const int ni = i + di, nj = j + dj;
            if ((di == 0 && dj == 0) || ni < 0 || nj < 0 || ni >= OH || nj >= OW)
                continue;
            const float ns = det_sigmoid(heat[(size_t)ni * OW + nj]);
            const bool before = di < 0 || (di == 0 && dj < 0);
            if (before ? !(score > ns) : !(score >= ns))
                return;
        }
    }
    const float x = (float)x0 + ((float)j + 0.5f + head[OUT_DX * plane + k]) * stride;
    const float y = (float)y0 + ((float)i + 0.5f + head[OUT_DY * plane + k]) * stride;
    if (x < own.s0 || y < own.s1 || x >= own.s2 || y >= own.s3)
        return;
    const int slot = atomic_inc(count);
    if (slot < cap)
        trees[slot] = (float4)(x, y, exp(head[OUT_LR * plane + k]), score);
}
