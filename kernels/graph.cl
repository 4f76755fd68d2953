/* Kernels of graph models (src/detect/graph_engine.c), OpenCL 1.2. Each has
 * a C reference (src/detect/graph_ref.c, retina.c) and a test in
 * tests/detect/test_graph_*.c. Convolutions are im2col + CLBlast SGEMM +
 * graph_epilogue; the NMS reuses detect.cl's detect_nms_* kernels.
 *
 * Contraction into fma would change roundings against the C reference
 * (compiled as ISO C, which GCC does not contract). */
#pragma OPENCL FP_CONTRACT OFF

/* ATen's upsample_bilinear2d (CPU) source index and weights along one axis,
 * as bilinear_axis in retina.c. scale = (float)in / (float)out, computed on
 * the host: a division the OpenCL spec does not require to be correctly
 * rounded must not move a source index. */
static inline void bilinear_axis(const int in, const float scale, const int dst, int *i0,
                                 int *i1, float *l0, float *l1)
{
    float src = scale * ((float)dst + 0.5f) - 0.5f;
    if (src < 0.0f)
        src = 0.0f;
    int i = (int)floor(src);
    if (i > in - 1)
        i = in - 1;
    float lam = src - (float)i;
    lam = fmin(fmax(lam, 0.0f), 1.0f);
    *i0 = i;
    *i1 = i < in - 1 ? i + 1 : i;
    *l1 = lam;
    *l0 = 1.0f - lam;
}

static inline float3 norm_px(__global const uchar4 *rgba, const int img_w, const int x,
                             const int y, const float3 mean, const float3 std)
{
    const uchar4 p = rgba[(size_t)y * img_w + x];
    const float3 v = (float3)((float)p.x / 255.0f, (float)p.y / 255.0f, (float)p.z / 255.0f);
    return (v - mean) / std;
}

/* The input transform (det_retina_input): the w x h window at (x0, y0) of
 * an RGBA8 image img_w wide -> (x / 255 - mean) / std -> bilinear resize to
 * rh x rw -> zero padding to ph x pw. Patch n of a batch of N: planes
 * c * N + n of ph x pw floats (N = 1: 3 x ph x pw). scale: the host's
 * (float)w / rw, (float)h / rh. Global (pw, ph). */
__kernel void graph_input(__global const uchar4 *rgba, const int img_w, const int x0,
                          const int y0, const int w, const int h, const int rh, const int rw,
                          const int ph, const int pw, const float4 mean4, const float4 std4,
                          __global float *out0, const int n, const int N, const float2 scale)
{
    const int x = get_global_id(0), y = get_global_id(1);
    if (x >= pw || y >= ph)
        return;
    const size_t plane = (size_t)ph * pw * N, o = (size_t)y * pw + x;
    __global float *out = out0 + (size_t)n * ph * pw;
    if (x >= rw || y >= rh) {
        out[o] = out[plane + o] = out[2 * plane + o] = 0.0f;
        return;
    }
    int ya, yb, xa, xb;
    float wy0, wy1, wx0, wx1;
    bilinear_axis(h, scale.y, y, &ya, &yb, &wy0, &wy1);
    bilinear_axis(w, scale.x, x, &xa, &xb, &wx0, &wx1);
    const float3 mean = mean4.xyz, std = std4.xyz;
    const float3 p00 = norm_px(rgba, img_w, x0 + xa, y0 + ya, mean, std);
    const float3 p01 = norm_px(rgba, img_w, x0 + xb, y0 + ya, mean, std);
    const float3 p10 = norm_px(rgba, img_w, x0 + xa, y0 + yb, mean, std);
    const float3 p11 = norm_px(rgba, img_w, x0 + xb, y0 + yb, mean, std);
    const float3 t0 = p00 * wx0 + p01 * wx1;
    const float3 t1 = p10 * wx0 + p11 * wx1;
    const float3 v = t0 * wy0 + t1 * wy1;
    out[o] = v.x;
    out[plane + o] = v.y;
    out[2 * plane + o] = v.z;
}

/* col[(c * K + ky) * K + kx][b * OH * OW + oy * OW + ox] =
 * in[c][b][oy*S - P + ky*D][ox*S - P + kx*D] (0 outside): the columns of
 * the N patches of a batch side by side (input planes c * N + b), so one
 * SGEMM covers them all; rows of T floats (T >= N * OH * OW: the engine
 * pads them to a multiple of 128 so that CLBlast reads the matrix without
 * a padded copy; the columns past N * OH * OW are not written). Global (ceil(OW / IM2COL_RUN) rounded, OH * N, C):
 * each work-item writes, for each of the K * K taps of its channel c, one
 * run of IM2COL_RUN consecutive ox of row (b, oy), consecutive work-items
 * the consecutive runs (coalesced writes on a GPU). A tap row outside the
 * input is a run of zeros; a run wholly inside it is one vector store with
 * no bounds test (from one vector load at stride 1, the even lanes of one
 * at stride 2 where the 16 floats are in the row); only the runs at the
 * borders and the last, short run of a row test each element. The divisions
 * are once per work-item, not per element (PoCL: 6-15x the one-element-per-
 * work-item kernel it replaces at RetinaNet's shapes, numbers in the
 * commits). */
#define IM2COL_RUN 8
__kernel void graph_im2col(__global const float *in, __global float *col, const int H,
                           const int W, const int OH, const int OW, const int K, const int S,
                           const int P, const int D, const int N, const int T)
{
    const int x0 = get_global_id(0) * IM2COL_RUN, row = get_global_id(1), c = get_global_id(2);
    if (x0 >= OW)
        return;
    const int b = row / OH, oy = row % OH, n = min(IM2COL_RUN, OW - x0);
    const size_t tap = (size_t)T; /* one tap's row of col */
    __global float *dst =
        col + (size_t)c * K * K * T + (size_t)b * OH * OW + (size_t)oy * OW + x0;
    __global const float *plane = in + ((size_t)c * N + b) * H * W;
    for (int ky = 0; ky < K; ky++) {
        const int iy = oy * S - P + ky * D;
        if (iy < 0 || iy >= H) {
            for (int kx = 0; kx < K; kx++, dst += tap) {
                if (n == IM2COL_RUN) {
                    vstore8((float8)(0.0f), 0, dst);
                } else {
                    for (int j = 0; j < n; j++)
                        dst[j] = 0.0f;
                }
            }
            continue;
        }
        __global const float *src = plane + (size_t)iy * W;
        for (int kx = 0; kx < K; kx++, dst += tap) {
            const int ix0 = x0 * S - P + kx * D;
            if (n == IM2COL_RUN && ix0 >= 0 && ix0 + (IM2COL_RUN - 1) * S < W) {
                if (S == 1) {
                    vstore8(vload8(0, src + ix0), 0, dst);
                } else if (S == 2 && ix0 + 15 < W) {
                    vstore8(vload16(0, src + ix0).even, 0, dst);
                } else {
                    const float8 v = (float8)(src[ix0], src[ix0 + S], src[ix0 + 2 * S],
                                              src[ix0 + 3 * S], src[ix0 + 4 * S], src[ix0 + 5 * S],
                                              src[ix0 + 6 * S], src[ix0 + 7 * S]);
                    vstore8(v, 0, dst);
                }
                continue;
            }
            for (int j = 0; j < n; j++) {
                const int ix = ix0 + j * S;
                float v = 0.0f;
                if (ix >= 0 && ix < W)
                    v = src[ix];
                dst[j] = v;
            }
        }
    }
}

/* out = act(src + bias[c] [+ add]) after the SGEMM: src the SGEMM's C, rows
 * of ld floats (out itself with ld n, or the engine's scratch with the
 * column stride of the padded im2col matrix). Global (n rounded, C). */
__kernel void graph_epilogue(__global const float *src, const int ld, __global float *out,
                             __global const float *bias, __global const float *add,
                             const int has_add, const int n, const int relu)
{
    const int i = get_global_id(0), c = get_global_id(1);
    if (i >= n)
        return;
    const size_t o = (size_t)c * n + i;
    float v = src[(size_t)c * ld + i] + bias[c];
    if (has_add)
        v += add[o];
    out[o] = relu && v < 0.0f ? 0.0f : v;
}

/* Direct convolution of stride 1 (the per-node alternative to im2col +
 * SGEMM, chosen by measurement): CK x CK taps at dilation CDIL (build
 * options -DCK=.. -DCDIL=..), zero padding P, with the epilogue fused:
 * out = act(conv + bias [+ add]). Activations of N patches of equal size
 * are planes (c * N + n) of H x W (N = 1: CHW). A work-group computes a
 * GTX x GTY tile of output pixels for GCOB output channels of one patch;
 * each step stages GCIB input channels of the tile with its halo, and
 * their weights, in local memory, so every input value is read from
 * global memory once per work-group and consecutive work-items read
 * consecutive addresses. Global (OW rounded to GTX, OH rounded to GTY,
 * ceil(O / GCOB) * N), local (GTX, GTY, 1). */
#ifndef CK
#define CK 1
#endif
#ifndef CDIL
#define CDIL 1
#endif
#define GTX 16
#define GTY 8
#define GCOB 8
#define GCIB 4
#define GLW (GTX + (CK - 1) * CDIL)
#define GLH (GTY + (CK - 1) * CDIL)

__kernel __attribute__((reqd_work_group_size(GTX, GTY, 1)))
void graph_conv(__global const float *in, __global const float *weight,
                __global const float *bias, __global const float *add, const int has_add,
                const int relu, __global float *out, const int C, const int H, const int W,
                const int O, const int OH, const int OW, const int P, const int N)
{
    __local float patch[GCIB * GLH * GLW];
    __local float wl[GCOB * GCIB * CK * CK];
    const int lx = get_local_id(0), ly = get_local_id(1);
    const int lid = ly * GTX + lx;
    const int gx0 = get_group_id(0) * GTX, gy0 = get_group_id(1) * GTY;
    const int x = gx0 + lx, y = gy0 + ly;
    const int o0 = (get_group_id(2) / N) * GCOB, n = get_group_id(2) % N;
    const size_t plane = (size_t)H * W, oplane = (size_t)OH * OW;
    float acc[GCOB];
    for (int o = 0; o < GCOB; o++)
        acc[o] = 0.0f;
    for (int c0 = 0; c0 < C; c0 += GCIB) {
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int i = lid; i < GCIB * GLH * GLW; i += GTX * GTY) {
            const int ci = i / (GLH * GLW), r = i % (GLH * GLW);
            const int py = r / GLW, px = r % GLW;
            const int sy = gy0 + py - P, sx = gx0 + px - P;
            float v = 0.0f;
            if (c0 + ci < C && sy >= 0 && sy < H && sx >= 0 && sx < W)
                v = in[((size_t)(c0 + ci) * N + n) * plane + (size_t)sy * W + sx];
            patch[i] = v;
        }
        for (int i = lid; i < GCOB * GCIB * CK * CK; i += GTX * GTY) {
            const int o = i / (GCIB * CK * CK), r = i % (GCIB * CK * CK);
            const int ci = r / (CK * CK), kk = r % (CK * CK);
            float v = 0.0f;
            if (o0 + o < O && c0 + ci < C)
                v = weight[((size_t)(o0 + o) * C + c0 + ci) * (CK * CK) + kk];
            wl[i] = v;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int ci = 0; ci < GCIB; ci++)
            for (int ky = 0; ky < CK; ky++)
                for (int kx = 0; kx < CK; kx++) {
                    const float v = patch[(ci * GLH + ly + ky * CDIL) * GLW + lx + kx * CDIL];
                    for (int o = 0; o < GCOB; o++)
                        acc[o] += wl[(o * GCIB + ci) * (CK * CK) + ky * CK + kx] * v;
                }
    }
    if (x >= OW || y >= OH)
        return;
    for (int o = 0; o < GCOB && o0 + o < O; o++) {
        const size_t at = ((size_t)(o0 + o) * N + n) * oplane + (size_t)y * OW + x;
        float v = acc[o] + bias[o0 + o];
        if (has_add)
            v += add[at];
        out[at] = relu && v < 0.0f ? 0.0f : v;
    }
}

/* K x K max pool, stride S, padding P (never wins), floor mode. Global
 * (C * OH * OW rounded). */
__kernel void graph_maxpool(__global const float *in, __global float *out, const int C,
                            const int H, const int W, const int OH, const int OW, const int K,
                            const int S, const int P)
{
    const int i = get_global_id(0);
    if (i >= C * OH * OW)
        return;
    const int x = i % OW, y = (i / OW) % OH, c = i / (OW * OH);
    float m = -INFINITY;
    for (int ky = 0; ky < K; ky++) {
        const int iy = y * S - P + ky;
        if (iy < 0 || iy >= H)
            continue;
        for (int kx = 0; kx < K; kx++) {
            const int ix = x * S - P + kx;
            if (ix >= 0 && ix < W)
                m = fmax(m, in[((size_t)c * H + iy) * W + ix]);
        }
    }
    out[i] = m;
}

/* graph_maxpool for 2 x 2, stride 2, no padding (the crown model's
 * pools): a work-item computes 8 consecutive outputs of one row of a plane
 * from two rows of 16 inputs (two vector loads, the max of the rows, then of
 * the even and odd lanes: one vector store), lane by lane where the run
 * passes the right edge. Work-items in row-major order of their runs (as
 * graph_conv_pxv). The same maxima as graph_maxpool (max is exact). Global
 * (ceil(OH * ceil(OW / 8)) rounded to the local width, planes). */
__kernel void graph_maxpool2(__global const float *in, __global float *out, const int H,
                             const int W, const int OH, const int OW)
{
    const int runs = (OW + 7) / 8, g = get_global_id(0);
    if (g >= runs * OH)
        return;
    const int y = g / runs, x0 = (g - y * runs) * 8;
    const size_t p = get_global_id(1);
    __global const float *r0 = in + (p * H + 2 * y) * W + 2 * x0, *r1 = r0 + W;
    __global float *o = out + (p * OH + y) * OW + x0;
    if (x0 + 8 <= OW) { /* 2 * (x0 + 8) <= 2 * OW <= W */
        const float16 m = fmax(vload16(0, r0), vload16(0, r1));
        vstore8(fmax(m.even, m.odd), 0, o);
        return;
    }
    for (int l = 0; l < 8 && x0 + l < OW; l++)
        o[l] = fmax(fmax(r0[2 * l], r0[2 * l + 1]), fmax(r1[2 * l], r1[2 * l + 1]));
}

/* ATen's nearest index rule: min(floor(dst * scale), in - 1), scale =
 * (float)in / out computed on the host. */
static inline int nearest_src(const int dst, const int in, const float scale)
{
    return min((int)floor((float)dst * scale), in - 1);
}

/* out = in + nearest(top); scale: the host's (float)TW / W, (float)TH / H.
 * Global (C * H * W rounded). */
__kernel void graph_upsample_add(__global const float *in, __global const float *top,
                                 __global float *out, const int C, const int H, const int W,
                                 const int TH, const int TW, const float2 scale)
{
    const int i = get_global_id(0);
    if (i >= C * H * W)
        return;
    const int x = i % W, y = (i / W) % H, c = i / (W * H);
    const int sy = nearest_src(y, TH, scale.y), sx = nearest_src(x, TW, scale.x);
    out[i] = in[i] + top[((size_t)c * TH + sy) * TW + sx];
}

__kernel void graph_relu(__global const float *in, __global float *out, const int n)
{
    const int i = get_global_id(0);
    if (i < n)
        out[i] = fmax(in[i], 0.0f);
}

/* ---- decode ---------------------------------------------------------------
 * Candidates are 64-bit keys (~score bits) << 32 | flat index: scores are
 * non-negative, so ascending keys are score descending, then index
 * ascending (torch.topk's order as the reference sorts it). */

/* Sigmoid of the class logits (channels A*K, plane hw) of one level of
 * patch n of N (planes ch * N + n); those whose score is above the
 * threshold appended to keys[base ..] (flat index (p * A + a) * K + k, the
 * head's (y, x, a, k) order), their number in count[level]. Which pass is
 * decided on the logit against lthr, the smallest logit whose score the C
 * reference puts above the threshold (computed on the host), so it does not
 * depend on the device's exp. Global (A * K * hw rounded). */
__kernel void graph_scores(__global const float *cls, const int hw, const int AK,
                           const float lthr, __global ulong *keys, const int base,
                           __global int *count, const int level, const int cap, const int n,
                           const int N)
{
    const int i = get_global_id(0);
    if (i >= AK * hw)
        return;
    const int ch = i / hw, p = i % hw;
    const float v = cls[((size_t)ch * N + n) * hw + p];
    if (!(v >= lthr))
        return;
    const float s = 1.0f / (1.0f + exp(-v));
    const int at = atomic_inc(&count[level]);
    if (at < cap)
        keys[base + at] = ((ulong)(~as_uint(s)) << 32) | (uint)(p * AK + ch);
}

/* Candidate t of a level (sorted keys at keys[base]) decoded to the NMS
 * input at out0 + t (graph_decode's arithmetic, in its order). */
static inline void graph_decode_one(__global const ulong *keys, const int base, const int t,
                                    __global const float *reg, const int hw, const int fw,
                                    const int A, const int K, const int sx, const int sy,
                                    __global const float4 *anchors, const float4 weights,
                                    const float clip, const int rh, const int rw,
                                    const int out0, __global float4 *box,
                                    __global float *score, __global int *label, const int pb,
                                    const int NB)
{
    const ulong key = keys[base + t];
    const uint idx = (uint)(key & 0xffffffffu);
    const float s = as_float(~(uint)(key >> 32));
    const int ai = (int)(idx / (uint)K), p = ai / A, a = ai % A;
    const float fx = (float)((p % fw) * sx), fy = (float)((p / fw) * sy);
    const float4 b = anchors[a];
    const float ax0 = fx + b.x, ay0 = fy + b.y, ax1 = fx + b.z, ay1 = fy + b.w;
    const float wa = ax1 - ax0, ha = ay1 - ay0;
    const float cx = ax0 + 0.5f * wa, cy = ay0 + 0.5f * ha;
    const float dx = reg[((size_t)(a * 4 + 0) * NB + pb) * hw + p] / weights.x;
    const float dy = reg[((size_t)(a * 4 + 1) * NB + pb) * hw + p] / weights.y;
    const float dw = fmin(reg[((size_t)(a * 4 + 2) * NB + pb) * hw + p] / weights.z, clip);
    const float dh = fmin(reg[((size_t)(a * 4 + 3) * NB + pb) * hw + p] / weights.w, clip);
    float px = dx * wa, py = dy * ha;
    px = px + cx;
    py = py + cy;
    const float pw = exp(dw) * wa, ph = exp(dh) * ha;
    const float hw2 = 0.5f * pw, hh2 = 0.5f * ph;
    const float fr = (float)rw, fh = (float)rh;
    box[out0 + t] = (float4)(fmin(fmax(px - hw2, 0.0f), fr), fmin(fmax(py - hh2, 0.0f), fh),
                             fmin(fmax(px + hw2, 0.0f), fr), fmin(fmax(py + hh2, 0.0f), fh));
    score[out0 + t] = s;
    label[out0 + t] = (int)(idx % (uint)K);
}

/* The first n = min(counts[cslot + level], topk) sorted candidates of one
 * level (the counts graph_scores left on the device; the level's within
 * 0..cap) -> anchors (base anchors + the cell's shift),
 * BoxCoder.decode_single, clip to rw x rh; written to the NMS input after
 * the earlier levels' (out0 = the sum of their min(count, topk)). The last
 * level (last = 1) also writes the patch's total, out0 + n, to
 * counts[total]: the NMS's box count. reg: box regression (A*4 channels,
 * plane hw) of patch pb of NB (planes ch * NB + pb). Any global size: the
 * work-items loop over the candidates below n. */
__kernel void graph_decode(__global const ulong *keys, const int base,
                           __global int *counts, const int cslot, const int level,
                           const int cap, const int topk, const int last, const int total,
                           __global const float *reg, const int hw, const int fw, const int A,
                           const int K, const int sx, const int sy,
                           __global const float4 *anchors, const float4 weights,
                           const float clip, const int rh, const int rw,
                           __global float4 *box, __global float *score, __global int *label,
                           const int pb, const int NB)
{
    int out0 = 0;
    for (int l = 0; l < level; l++)
        out0 += min(max(counts[cslot + l], 0), topk);
    const int n = min(clamp(counts[cslot + level], 0, cap), topk);
    if (last && get_global_id(0) == 0)
        counts[total] = out0 + n;
    for (int t = get_global_id(0); t < n; t += get_global_size(0))
        graph_decode_one(keys, base, t, reg, hw, fw, A, K, sx, sy, anchors, weights, clip, rh,
                         rw, out0, box, score, label, pb, NB);
}

/* The kept detections (NMS order, at most max_det), boxes scaled by
 * (rx, ry) to the window: out[0] = their number (int bits), then 6 floats
 * each (x0, y0, x1, y1, score, label as int bits). Global (max_det rounded). */
__kernel void graph_gather(__global const float4 *box, __global const float *score,
                           __global const int *label, __global const int *keep,
                           __global const int *count, const int max_det, const float rx,
                           const float ry, __global float *out)
{
    const int k = get_global_id(0);
    const int c = min(*count, max_det);
    if (k == 0)
        out[0] = as_float(c);
    if (k >= c)
        return;
    const int i = keep[k];
    const float4 b = box[i];
    __global float *o = out + 1 + 6 * (size_t)k;
    o[0] = b.x * rx;
    o[1] = b.y * ry;
    o[2] = b.z * rx;
    o[3] = b.w * ry;
    o[4] = score[i];
    o[5] = as_float(label[i]);
}

/* Direct convolution for narrow layers (conv_px.c; the other direct
 * kernel, graph_conv, is stride 1 only): no local memory, no barriers. A
 * work-item computes one output pixel (consecutive x on consecutive
 * work-items: coalesced loads on a GPU, every CS-th float at stride CS;
 * PoCL does not vectorize it across x: stride 1 runs graph_conv_pxv
 * below) for PCOB output channels in
 * registers (build options -DCK=.. -DCS=.. -DCDIL=.. -DPCOB=..), looping
 * over the input channels and the CK x CK taps at stride CS and dilation
 * CDIL, zero padding P by bounds checks. Weights re-laid on the host as
 * [ceil(O / PCOB)][C][CK * CK][PCOB] (zeros past O): the PCOB weights of a
 * tap are contiguous and the same for the whole work-group. Same contract
 * as graph_conv: out = act(conv + bias [+ add]) on planes c * N + n.
 * Global (OW rounded to the local width, OH, ceil(O / PCOB) * N), local
 * (width, 1, 1). */
#ifndef PCOB
#define PCOB 16
#endif
#ifndef CS
#define CS 1
#endif

__kernel void graph_conv_px(__global const float *in, __global const float *weight,
                            __global const float *bias, __global const float *add,
                            const int has_add, const int relu, __global float *out,
                            const int C, const int H, const int W, const int O, const int OH,
                            const int OW, const int P, const int N)
{
    const int x = get_global_id(0), y = get_global_id(1);
    const int ob = get_global_id(2) / N, n = get_global_id(2) % N;
    const size_t plane = (size_t)H * W;
    float acc[PCOB];
    for (int o = 0; o < PCOB; o++)
        acc[o] = 0.0f;
    for (int c = 0; c < C; c++) {
        __global const float *ip = in + ((size_t)c * N + n) * plane;
        __global const float *wp = weight + ((size_t)ob * C + c) * (CK * CK * PCOB);
        for (int ky = 0; ky < CK; ky++) {
            const int iy = y * CS - P + ky * CDIL;
            const bool rowin = iy >= 0 && iy < H;
            for (int kx = 0; kx < CK; kx++) {
                const int ix = x * CS - P + kx * CDIL;
                const float v = rowin && ix >= 0 && ix < W ? ip[(size_t)iy * W + ix] : 0.0f;
                for (int o = 0; o < PCOB; o++)
                    acc[o] += wp[(ky * CK + kx) * PCOB + o] * v;
            }
        }
    }
    if (x >= OW || y >= OH)
        return;
    const size_t oplane = (size_t)OH * OW, at0 = (size_t)y * OW + x;
    for (int o = 0; o < PCOB && ob * PCOB + o < O; o++) {
        const int oc = ob * PCOB + o;
        const size_t at = ((size_t)oc * N + n) * oplane + at0;
        float v = acc[o] + bias[oc];
        if (has_add)
            v += add[at];
        out[at] = relu && v < 0.0f ? 0.0f : v;
    }
}

/* graph_conv_px for stride 1 (conv_px.c), vectorized by hand: a work-item
 * computes PXV consecutive output pixels of one row (a float4 / float8 /
 * float16, build option -DPXV=..: 16 on a CPU device, where PoCL keeps
 * PCOB of them in the 32 vector registers of AVX-512 and its loop over the
 * work-items stays scalar, 4 on a GPU) for PCOB output channels, the taps
 * unrolled so the accumulators stay in registers. Work-items in row-major
 * order of their pixel runs (consecutive work-items: consecutive runs,
 * coalesced; no work-group is mostly past a narrow map's right edge).
 * Each tap's run is one vector load where it lies inside the row, else
 * gathered lane by lane with zeros in the padding; rows in the padding are
 * skipped. Accumulation by fma() in the order c, ky, kx (taps in the
 * padding add w * 0), then + bias, + add, ReLU: bit-for-bit
 * det_px_vec_ref. Weights as graph_conv_px's, [ceil(O / PCOB)][C][CK *
 * CK][PCOB]. Global (ceil(OH * ceil(OW / PXV)) rounded to the local width,
 * ceil(O / PCOB) * N), local (width, 1). */
#ifndef PXV
#define PXV 4
#endif
#if PXV == 16
typedef float16 pxvec;
#define PXV_LOAD vload16
#define PXV_STORE vstore16
#elif PXV == 8
typedef float8 pxvec;
#define PXV_LOAD vload8
#define PXV_STORE vstore8
#else
typedef float4 pxvec;
#define PXV_LOAD vload4
#define PXV_STORE vstore4
#endif

/* Input pixels ix0 .. ix0 + PXV - 1 of a row of W, zero outside it. */
static inline pxvec pxv_row(__global const float *row, const int ix0, const int W)
{
    if (ix0 >= 0 && ix0 + PXV <= W)
        return PXV_LOAD(0, row + ix0);
    float t[PXV];
#pragma unroll
    for (int l = 0; l < PXV; l++)
        t[l] = ix0 + l >= 0 && ix0 + l < W ? row[ix0 + l] : 0.0f;
    return PXV_LOAD(0, t);
}

__kernel void graph_conv_pxv(__global const float *in, __global const float *weight,
                             __global const float *bias, __global const float *add,
                             const int has_add, const int relu, __global float *out,
                             const int C, const int H, const int W, const int O, const int OH,
                             const int OW, const int P, const int N)
{
    const int runs = (OW + PXV - 1) / PXV, g = get_global_id(0);
    if (g >= runs * OH)
        return;
    const int y = g / runs, x0 = (g - y * runs) * PXV;
    const int ob = get_global_id(1) / N, n = get_global_id(1) % N;
    const size_t plane = (size_t)H * W;
    pxvec acc[PCOB];
#pragma unroll
    for (int o = 0; o < PCOB; o++)
        acc[o] = (pxvec)(0.0f);
    for (int c = 0; c < C; c++) {
        __global const float *ip = in + ((size_t)c * N + n) * plane;
        __global const float *wp = weight + ((size_t)ob * C + c) * (CK * CK * PCOB);
#pragma unroll
        for (int ky = 0; ky < CK; ky++) {
            const int iy = y - P + ky * CDIL;
            if (iy < 0 || iy >= H)
                continue;
            __global const float *row = ip + (size_t)iy * W;
#pragma unroll
            for (int kx = 0; kx < CK; kx++) {
                const pxvec v = pxv_row(row, x0 - P + kx * CDIL, W);
                __global const float *wt = wp + (ky * CK + kx) * PCOB;
#pragma unroll
                for (int o = 0; o < PCOB; o++)
                    acc[o] = fma((pxvec)(wt[o]), v, acc[o]);
            }
        }
    }
    const size_t oplane = (size_t)OH * OW, at0 = (size_t)y * OW + x0;
#pragma unroll
    for (int o = 0; o < PCOB; o++) {
        const int oc = ob * PCOB + o;
        if (oc >= O)
            break;
        const size_t at = ((size_t)oc * N + n) * oplane + at0;
        pxvec v = acc[o] + (pxvec)(bias[oc]);
        if (x0 + PXV <= OW) {
            if (has_add)
                v += PXV_LOAD(0, add + at);
            PXV_STORE(relu ? select(v, (pxvec)(0.0f), v < (pxvec)(0.0f)) : v, 0, out + at);
            continue;
        }
        float t[PXV];
        PXV_STORE(v, 0, t);
        for (int l = 0; l < PXV && x0 + l < OW; l++) {
            float s = has_add ? t[l] + add[at + l] : t[l];
            out[at + l] = relu && s < 0.0f ? 0.0f : s;
        }
    }
}
