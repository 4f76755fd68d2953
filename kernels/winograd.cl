/* Winograd F(2x2, 3x3) for 3x3 stride-1 convolutions (src/detect/engine/winograd.c):
 * the input transform V = B^T d B of every 4x4 input tile, then the 16
 * products M[e] = U[e]^T V[e] as one strided-batched CLBlast SGEMM (U: the
 * filters, transformed once at load, [16][C][O]), then the output transform
 * Y = A^T M A with the bias, the residual and ReLU fused.
 *
 * Activations are planes c * N + n of H x W (N patches in a batch). V is
 * [16][C][P] and M [16][O][P] for N * TH * TW tiles, tile p = (n * TH + ty)
 * * TW + tx, P (an argument) that count rounded up to a multiple of 128 so
 * that the batched SGEMM runs without copies (det_wino_tile_stride; the
 * columns past the tiles are never written or read here): a work-item
 * handles a run of consecutive p (below), consecutive work-items the
 * consecutive runs.
 *
 *   B^T = | 1  0 -1  0 |      A^T = | 1  1  1  0 |
 *         | 0  1  1  0 |            | 0  1 -1 -1 |
 *         | 0 -1  1  0 |
 *         | 0  1  0 -1 | */
#pragma OPENCL FP_CONTRACT OFF

/* Each work-item transforms a run of WINO_RUN consecutive tiles tx of one
 * tile row (n, ty) of one channel (gid0: the run, gid1: the channel), as
 * lanes of float8: a run wholly inside the input reads each of its 4 input
 * rows of 18 floats as two overlapping vload16 (the tiles' columns j and
 * j + 1 are the even and odd lanes) and writes V with 16 vstore8, no bounds
 * test; only the runs at the borders and the last, short run of a tile row
 * test each element. Per lane the float operations are those of the
 * one-tile-per-work-item kernel it replaces, in the same order (bit for bit;
 * PoCL: numbers in the commits). */
#define WINO_RUN 8

/* Lanes j, j + 2, ..., j + 14 of e: column j of the run's 8 tiles. */
#define WINO_COLS(e, j)                                                                        \
    (float8)((e)[(j)], (e)[(j) + 2], (e)[(j) + 4], (e)[(j) + 6], (e)[(j) + 8], (e)[(j) + 10],   \
             (e)[(j) + 12], (e)[(j) + 14])

__kernel void wino_input(__global const float *in, __global float *v, const int C, const int N,
                         const int H, const int W, const int pad, const int TH, const int TW,
                         const int P)
{
    const int r = get_global_id(0), c = get_global_id(1);
    const int RW = (TW + WINO_RUN - 1) / WINO_RUN;
    if (r >= N * TH * RW)
        return;
    const int row = r / RW, tx0 = (r % RW) * WINO_RUN; /* row = n * TH + ty */
    const int ty = row % TH, n = row / TH, nt = min(WINO_RUN, TW - tx0);
    const int y0 = ty * 2 - pad, x0 = tx0 * 2 - pad;
    const bool inner = nt == WINO_RUN && x0 >= 0 && x0 + 2 * WINO_RUN + 1 < W;
    __global const float *plane = in + ((size_t)c * N + n) * H * W;
    float8 d[4][4];
    for (int i = 0; i < 4; i++) {
        const int y = y0 + i;
        if (y < 0 || y >= H) {
            d[i][0] = d[i][1] = d[i][2] = d[i][3] = (float8)(0.0f);
            continue;
        }
        __global const float *src = plane + (size_t)y * W;
        if (inner) {
            const float16 lo = vload16(0, src + x0), hi = vload16(0, src + x0 + 2);
            d[i][0] = lo.even;
            d[i][1] = lo.odd;
            d[i][2] = hi.even;
            d[i][3] = hi.odd;
        } else if (nt == WINO_RUN && x0 == -1 && x0 + 2 * WINO_RUN + 1 < W) {
            /* The first run of a row at padding 1: column -1 is the zero. */
            const float16 lo = vload16(0, src);
            d[i][0] = (float8)(0.0f, lo.s1, lo.s3, lo.s5, lo.s7, lo.s9, lo.sb, lo.sd);
            d[i][1] = lo.even;
            d[i][2] = lo.odd;
            d[i][3] = (float8)(lo.s2, lo.s4, lo.s6, lo.s8, lo.sa, lo.sc, lo.se, src[16]);
        } else {
            float e[2 * WINO_RUN + 2];
            for (int j = 0; j < 2 * WINO_RUN + 2; j++) {
                const int x = x0 + j;
                e[j] = j < 2 * nt + 2 && x >= 0 && x < W ? src[x] : 0.0f;
            }
            d[i][0] = WINO_COLS(e, 0);
            d[i][1] = WINO_COLS(e, 1);
            d[i][2] = WINO_COLS(e, 2);
            d[i][3] = WINO_COLS(e, 3);
        }
    }
    float8 t[4][4]; /* B^T d */
    for (int j = 0; j < 4; j++) {
        t[0][j] = d[0][j] - d[2][j];
        t[1][j] = d[1][j] + d[2][j];
        t[2][j] = d[2][j] - d[1][j];
        t[3][j] = d[1][j] - d[3][j];
    }
    const size_t stride = (size_t)C * P;
    __global float *o = v + (size_t)c * P + (size_t)row * TW + tx0;
    for (int i = 0; i < 4; i++) { /* (B^T d) B */
        float8 q[4];
        q[0] = t[i][0] - t[i][2];
        q[1] = t[i][1] + t[i][2];
        q[2] = t[i][2] - t[i][1];
        q[3] = t[i][1] - t[i][3];
        for (int j = 0; j < 4; j++) {
            __global float *dst = o + (i * 4 + j) * stride;
            if (nt == WINO_RUN) {
                vstore8(q[j], 0, dst);
            } else {
                float s[WINO_RUN];
                vstore8(q[j], 0, s);
                for (int k = 0; k < nt; k++)
                    dst[k] = s[k];
            }
        }
    }
}

/* One output row segment of an output transform's run: out[at + j] =
 * yv[j] + b (+ add[at + j]) (ReLU) for j < nx (16: one vector store and one
 * vector load of the residual; fewer at the right border: element by
 * element), the epilogue of graph_epilogue in the same order. */
static inline void wino_store16(const float16 yv, const float b, __global const float *add,
                                const int has_add, const int relu, __global float *out,
                                const size_t at, const int nx)
{
    if (nx == 16) {
        float16 val = yv + b;
        if (has_add)
            val += vload16(0, add + at);
        if (relu)
            val = select(val, (float16)(0.0f), val < 0.0f);
        vstore16(val, 0, out + at);
        return;
    }
    float s[16];
    vstore16(yv, 0, s);
    for (int j = 0; j < nx; j++) {
        float val = s[j] + b;
        if (has_add)
            val += add[at + j];
        out[at + j] = relu && val < 0.0f ? 0.0f : val;
    }
}

/* The output transform of a run of WINO_RUN consecutive tiles (gid0: the
 * run, as wino_input's, gid1: output channel o): M read with one vload8 per
 * product, each of the 2 output rows of the run written as 2 * WINO_RUN
 * consecutive x, one vstore16 (and one vload16 of the residual) where the
 * run is inside the output, element by element at the right border.
 * out = Y + bias (+ add) (ReLU), the epilogue of graph_epilogue in the same
 * order. */
__kernel void wino_output(__global const float *m, __global const float *bias,
                          __global const float *add, const int has_add, const int relu,
                          __global float *out, const int O, const int N, const int OH,
                          const int OW, const int TH, const int TW, const int P)
{
    const int r = get_global_id(0), oc = get_global_id(1);
    const int RW = (TW + WINO_RUN - 1) / WINO_RUN;
    if (r >= N * TH * RW)
        return;
    const int row = r / RW, tx0 = (r % RW) * WINO_RUN;
    const int ty = row % TH, n = row / TH, nt = min(WINO_RUN, TW - tx0);
    const size_t stride = (size_t)O * P;
    __global const float *src = m + (size_t)oc * P + (size_t)row * TW + tx0;
    float8 a[4][4];
    for (int e = 0; e < 16; e++) {
        if (nt == WINO_RUN) {
            a[e / 4][e % 4] = vload8(0, src + e * stride);
        } else {
            float s[WINO_RUN];
            for (int k = 0; k < WINO_RUN; k++)
                s[k] = k < nt ? src[e * stride + k] : 0.0f;
            a[e / 4][e % 4] = vload8(0, s);
        }
    }
    float8 t[2][4]; /* A^T M */
    for (int j = 0; j < 4; j++) {
        t[0][j] = a[0][j] + a[1][j] + a[2][j];
        t[1][j] = a[1][j] - a[2][j] - a[3][j];
    }
    const float b = bias[oc];
    const size_t base = ((size_t)oc * N + n) * OH * OW;
    const int xs = tx0 * 2, nx = min(2 * WINO_RUN, OW - xs);
    for (int i = 0; i < 2; i++) {
        const int y = ty * 2 + i;
        if (y >= OH)
            continue;
        const float8 r0 = t[i][0] + t[i][1] + t[i][2], r1 = t[i][1] - t[i][2] - t[i][3];
        const float16 yv = (float16)(r0.s0, r1.s0, r0.s1, r1.s1, r0.s2, r1.s2, r0.s3, r1.s3,
                                     r0.s4, r1.s4, r0.s5, r1.s5, r0.s6, r1.s6, r0.s7, r1.s7);
        wino_store16(yv, b, add, has_add, relu, out, base + (size_t)y * OW + xs, nx);
    }
}

/* ---- F(4x4, 3x3) ----------------------------------------------------------
 * The same scheme with 6 x 6 input tiles at a stride of 4 and 4 x 4 output
 * tiles: V and M are [36][C or O][P], P = N * TH * TW, TH = ceil(OH / 4).
 *
 *   B^T = | 4  0 -5  0  1  0 |      A^T = | 1  1  1  1  1  0 |
 *         | 0 -4 -4  1  1  0 |            | 0  1 -1  2 -2  0 |
 *         | 0  4 -4 -1  1  0 |            | 0  1  1  4  4  0 |
 *         | 0 -2 -1  2  1  0 |            | 0  1 -1  8 -8  1 |
 *         | 0  2 -1 -2  1  0 |
 *         | 0  4  0 -5  0  1 |
 *
 * A work-item handles a run of WINO4_RUN (4) consecutive tiles of a tile
 * row as the lanes of float4 (36 float4 of tile in flight: a run of 8 would
 * need twice the registers, too many for a GPU). The operations per lane
 * are those of det_wino_input_tile / det_wino_output_tile (winograd.c:
 * bt4, at4) in the same order: the tests compare bit for bit. */
#define WINO4_RUN 4

/* y = B^T x of one column or row x[0..5] (lanes: tiles). */
#define WINO4_BT(x, y)                                                                          \
    do {                                                                                        \
        (y)[0] = (4.0f * (x)[0] - 5.0f * (x)[2]) + (x)[4];                                      \
        (y)[1] = ((x)[3] + (x)[4]) - 4.0f * ((x)[1] + (x)[2]);                                  \
        (y)[2] = ((x)[4] - (x)[3]) + 4.0f * ((x)[1] - (x)[2]);                                  \
        (y)[3] = ((x)[4] - (x)[2]) + 2.0f * ((x)[3] - (x)[1]);                                  \
        (y)[4] = ((x)[4] - (x)[2]) - 2.0f * ((x)[3] - (x)[1]);                                  \
        (y)[5] = (4.0f * (x)[1] - 5.0f * (x)[3]) + (x)[5];                                      \
    } while (0)

/* y[0..3] = A^T x of x[0..5]. */
#define WINO4_AT(x, y)                                                                          \
    do {                                                                                        \
        const float4 s12 = (x)[1] + (x)[2], d12 = (x)[1] - (x)[2], s34 = (x)[3] + (x)[4],       \
                     d34 = (x)[3] - (x)[4];                                                     \
        (y)[0] = ((x)[0] + s12) + s34;                                                          \
        (y)[1] = d12 + 2.0f * d34;                                                              \
        (y)[2] = s12 + 4.0f * s34;                                                              \
        (y)[3] = (d12 + 8.0f * d34) + (x)[5];                                                   \
    } while (0)

__kernel void wino4_input(__global const float *in, __global float *v, const int C,
                          const int N, const int H, const int W, const int pad, const int TH,
                          const int TW, const int P)
{
    const int r = get_global_id(0), c = get_global_id(1);
    const int RW = (TW + WINO4_RUN - 1) / WINO4_RUN;
    if (r >= N * TH * RW)
        return;
    const int row = r / RW, tx0 = (r % RW) * WINO4_RUN; /* row = n * TH + ty */
    const int ty = row % TH, n = row / TH, nt = min(WINO4_RUN, TW - tx0);
    const int y0 = ty * 4 - pad, x0 = tx0 * 4 - pad;
    /* The run reads columns x0 .. x0 + 4 * WINO4_RUN + 1 (18). */
    const bool inner = nt == WINO4_RUN && x0 >= 0 && x0 + 4 * WINO4_RUN + 2 <= W;
    __global const float *plane = in + ((size_t)c * N + n) * H * W;
    float4 d[6][6];
    for (int i = 0; i < 6; i++) {
        const int y = y0 + i;
        if (y < 0 || y >= H) {
            for (int j = 0; j < 6; j++)
                d[i][j] = (float4)(0.0f);
            continue;
        }
        __global const float *src = plane + (size_t)y * W;
        if (inner) {
            const float16 lo = vload16(0, src + x0);
            const float2 hi = vload2(0, src + x0 + 16);
            d[i][0] = lo.s048c;
            d[i][1] = lo.s159d;
            d[i][2] = lo.s26ae;
            d[i][3] = lo.s37bf;
            d[i][4] = (float4)(lo.s48c, hi.s0);
            d[i][5] = (float4)(lo.s59d, hi.s1);
        } else {
            float e[4 * WINO4_RUN + 2];
            for (int j = 0; j < 4 * WINO4_RUN + 2; j++) {
                const int x = x0 + j;
                e[j] = j < 4 * nt + 2 && x >= 0 && x < W ? src[x] : 0.0f;
            }
            for (int j = 0; j < 6; j++)
                d[i][j] = (float4)(e[j], e[j + 4], e[j + 8], e[j + 12]);
        }
    }
    float4 t[6][6]; /* B^T d, column by column */
    for (int j = 0; j < 6; j++) {
        float4 x[6], y[6];
        for (int i = 0; i < 6; i++)
            x[i] = d[i][j];
        WINO4_BT(x, y);
        for (int i = 0; i < 6; i++)
            t[i][j] = y[i];
    }
    const size_t stride = (size_t)C * P;
    __global float *o = v + (size_t)c * P + (size_t)row * TW + tx0;
    for (int i = 0; i < 6; i++) { /* (B^T d) B, row by row */
        float4 q[6];
        WINO4_BT(t[i], q);
        for (int j = 0; j < 6; j++) {
            __global float *dst = o + (i * 6 + j) * stride;
            if (nt == WINO4_RUN) {
                vstore4(q[j], 0, dst);
            } else {
                float s[WINO4_RUN];
                vstore4(q[j], 0, s);
                for (int k = 0; k < nt; k++)
                    dst[k] = s[k];
            }
        }
    }
}

/* The output transform of a run of WINO4_RUN tiles (gid0: the run, gid1:
 * output channel o): each of the 4 output rows of the run is 4 * WINO4_RUN
 * consecutive x, one vstore16 (and one vload16 of the residual) inside the
 * output, element by element at the right border. out = Y + bias (+ add)
 * (ReLU), as wino_output. */
__kernel void wino4_output(__global const float *m, __global const float *bias,
                           __global const float *add, const int has_add, const int relu,
                           __global float *out, const int O, const int N, const int OH,
                           const int OW, const int TH, const int TW, const int P)
{
    const int r = get_global_id(0), oc = get_global_id(1);
    const int RW = (TW + WINO4_RUN - 1) / WINO4_RUN;
    if (r >= N * TH * RW)
        return;
    const int row = r / RW, tx0 = (r % RW) * WINO4_RUN;
    const int ty = row % TH, n = row / TH, nt = min(WINO4_RUN, TW - tx0);
    const size_t stride = (size_t)O * P;
    __global const float *src = m + (size_t)oc * P + (size_t)row * TW + tx0;
    float4 t[4][6]; /* A^T M, column by column */
    for (int j = 0; j < 6; j++) {
        float4 x[6], y[4];
        for (int i = 0; i < 6; i++) {
            __global const float *at = src + (i * 6 + j) * stride;
            if (nt == WINO4_RUN) {
                x[i] = vload4(0, at);
            } else {
                float s[WINO4_RUN];
                for (int k = 0; k < WINO4_RUN; k++)
                    s[k] = k < nt ? at[k] : 0.0f;
                x[i] = vload4(0, s);
            }
        }
        WINO4_AT(x, y);
        for (int i = 0; i < 4; i++)
            t[i][j] = y[i];
    }
    const float b = bias[oc];
    const size_t base = ((size_t)oc * N + n) * OH * OW;
    const int xs = tx0 * 4, nx = min(4 * WINO4_RUN, OW - xs);
    for (int i = 0; i < 4; i++) { /* (A^T M) A, row by row */
        const int y = ty * 4 + i;
        if (y >= OH)
            continue;
        float4 q[4];
        WINO4_AT(t[i], q);
        const float16 yv = (float16)(q[0].s0, q[1].s0, q[2].s0, q[3].s0, q[0].s1, q[1].s1,
                                     q[2].s1, q[3].s1, q[0].s2, q[1].s2, q[2].s2, q[3].s2,
                                     q[0].s3, q[1].s3, q[2].s3, q[3].s3);
        wino_store16(yv, b, add, has_add, relu, out, base + (size_t)y * OW + xs, nx);
    }
}
