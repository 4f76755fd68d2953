/* Winograd F(2x2, 3x3) for 3x3 stride-1 convolutions (src/detect/winograd.c):
 * the input transform V = B^T d B of every 4x4 input tile, then the 16
 * products M[e] = U[e] V[e] as one strided-batched CLBlast SGEMM (U: the
 * filters, transformed once at load), then the output transform
 * Y = A^T M A with the bias, the residual and ReLU fused.
 *
 * Activations are planes c * N + n of H x W (N patches in a batch). V is
 * [16][C][P] and M [16][O][P] with P = N * TH * TW tiles, tile p = (n * TH
 * + ty) * TW + tx: a work-item handles a run of consecutive p (below),
 * consecutive work-items the consecutive runs.
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
                         const int H, const int W, const int pad, const int TH, const int TW)
{
    const int r = get_global_id(0), c = get_global_id(1);
    const int RW = (TW + WINO_RUN - 1) / WINO_RUN;
    if (r >= N * TH * RW)
        return;
    const int row = r / RW, tx0 = (r % RW) * WINO_RUN; /* row = n * TH + ty */
    const int ty = row % TH, n = row / TH, nt = min(WINO_RUN, TW - tx0);
    const int P = N * TH * TW;
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
                          const int OW, const int TH, const int TW)
{
    const int r = get_global_id(0), oc = get_global_id(1);
    const int RW = (TW + WINO_RUN - 1) / WINO_RUN;
    if (r >= N * TH * RW)
        return;
    const int row = r / RW, tx0 = (r % RW) * WINO_RUN;
    const int ty = row % TH, n = row / TH, nt = min(WINO_RUN, TW - tx0);
    const int P = N * TH * TW;
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
        const size_t at = base + (size_t)y * OW + xs;
        if (nx == 2 * WINO_RUN) {
            float16 val = yv + b;
            if (has_add)
                val += vload16(0, add + at);
            if (relu)
                val = select(val, (float16)(0.0f), val < 0.0f);
            vstore16(val, 0, out + at);
        } else {
            float s[2 * WINO_RUN];
            vstore16(yv, 0, s);
            for (int j = 0; j < nx; j++) {
                float val = s[j] + b;
                if (has_add)
                    val += add[at + j];
                out[at + j] = relu && val < 0.0f ? 0.0f : val;
            }
        }
    }
}
