/* Winograd F(2x2, 3x3) for 3x3 stride-1 convolutions (src/detect/winograd.c):
 * the input transform V = B^T d B of every 4x4 input tile, then the 16
 * products M[e] = U[e] V[e] as one strided-batched CLBlast SGEMM (U: the
 * filters, transformed once at load), then the output transform
 * Y = A^T M A with the bias, the residual and ReLU fused.
 *
 * Activations are planes c * N + n of H x W (N patches in a batch). V is
 * [16][C][P] and M [16][O][P] with P = N * TH * TW tiles, tile p = (n * TH
 * + ty) * TW + tx: consecutive work-items touch consecutive p.
 *
 *   B^T = | 1  0 -1  0 |      A^T = | 1  1  1  0 |
 *         | 0  1  1  0 |            | 0  1 -1 -1 |
 *         | 0 -1  1  0 |
 *         | 0  1  0 -1 | */
#pragma OPENCL FP_CONTRACT OFF

/* gid0: tile p of the batch, gid1: input channel c. */
__kernel void wino_input(__global const float *in, __global float *v, const int C, const int N,
                         const int H, const int W, const int pad, const int TH, const int TW)
{
    const int p = get_global_id(0), c = get_global_id(1);
    const int P = N * TH * TW;
    if (p >= P)
        return;
    const int tx = p % TW, ty = (p / TW) % TH, n = p / (TW * TH);
    const int y0 = ty * 2 - pad, x0 = tx * 2 - pad;
    __global const float *plane = in + ((size_t)c * N + n) * H * W;
    float d[4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            const int y = y0 + i, x = x0 + j;
            d[i][j] = y >= 0 && y < H && x >= 0 && x < W ? plane[(size_t)y * W + x] : 0.0f;
        }
    float t[4][4]; /* B^T d */
    for (int j = 0; j < 4; j++) {
        t[0][j] = d[0][j] - d[2][j];
        t[1][j] = d[1][j] + d[2][j];
        t[2][j] = d[2][j] - d[1][j];
        t[3][j] = d[1][j] - d[3][j];
    }
    const size_t stride = (size_t)C * P;
    __global float *o = v + (size_t)c * P + p;
    for (int i = 0; i < 4; i++) { /* (B^T d) B */
        o[(i * 4 + 0) * stride] = t[i][0] - t[i][2];
        o[(i * 4 + 1) * stride] = t[i][1] + t[i][2];
        o[(i * 4 + 2) * stride] = t[i][2] - t[i][1];
        o[(i * 4 + 3) * stride] = t[i][1] - t[i][3];
    }
}

/* gid0: tile p of the batch, gid1: output channel o. out = Y + bias
 * (+ add) (ReLU), the epilogue of graph_epilogue in the same order. */
__kernel void wino_output(__global const float *m, __global const float *bias,
                          __global const float *add, const int has_add, const int relu,
                          __global float *out, const int O, const int N, const int OH,
                          const int OW, const int TH, const int TW)
{
    const int p = get_global_id(0), oc = get_global_id(1);
    const int P = N * TH * TW;
    if (p >= P)
        return;
    const int tx = p % TW, ty = (p / TW) % TH, n = p / (TW * TH);
    const size_t stride = (size_t)O * P;
    __global const float *src = m + (size_t)oc * P + p;
    float a[4][4];
    for (int e = 0; e < 16; e++)
        a[e / 4][e % 4] = src[e * stride];
    float t[2][4]; /* A^T M */
    for (int j = 0; j < 4; j++) {
        t[0][j] = a[0][j] + a[1][j] + a[2][j];
        t[1][j] = a[1][j] - a[2][j] - a[3][j];
    }
    const float b = bias[oc];
    const size_t base = ((size_t)oc * N + n) * OH * OW;
    for (int i = 0; i < 2; i++) {
        const int y = ty * 2 + i;
        if (y >= OH)
            continue;
        const float r[2] = {t[i][0] + t[i][1] + t[i][2], t[i][1] - t[i][2] - t[i][3]};
        for (int j = 0; j < 2; j++) {
            const int x = tx * 2 + j;
            if (x >= OW)
                continue;
            const size_t at = base + (size_t)y * OW + x;
            float val = r[j] + b;
            if (has_add)
                val += add[at];
            out[at] = relu && val < 0.0f ? 0.0f : val;
        }
    }
}
