/* Binarization kernels: channel + histogram, Otsu threshold, mask, and the
 * box sums of the adaptive method. OpenCL 1.2. The CPU reference is
 * src/binarize/binarize_ref.c: every formula here is mirrored there and the
 * tests hold both bit-exactly equal. */

#define CH_LUMA 0
#define CH_EXG 1

/* ITU-R BT.601 luma, rounded: (299 R + 587 G + 114 B + 500) / 1000.
 * Excess green 2G - R - B in [-510, 510] mapped to 0..255, rounded. */
static inline uint channel_value(uchar4 p, int channel)
{
    if (channel == CH_LUMA)
        return (299u * p.x + 587u * p.y + 114u * p.z + 500u) / 1000u;
    int exg = 2 * (int)p.y - (int)p.x - (int)p.z + 510;
    return (uint)((exg * 255 + 510) / 1020);
}

/* Each work-group walks the image with a grid stride (coalesced uchar4
 * loads), writes the channel value and builds a 256-bin histogram in local
 * memory, then adds it to the global histogram. hist must be zeroed. */
__kernel void channel_hist(__global const uchar4 *rgba, uint n, int channel,
                           __global uchar *value, __global uint *hist)
{
    __local uint lh[256];
    uint lid = get_local_id(0);
    uint lsz = get_local_size(0);
    for (uint i = lid; i < 256; i += lsz)
        lh[i] = 0;
    barrier(CLK_LOCAL_MEM_FENCE);
    /* A 64-bit index: with n near 2^32, a uint i + the global size would
     * wrap below n and the loop would never end. */
    for (ulong i = get_global_id(0); i < n; i += get_global_size(0)) {
        uint v = channel_value(rgba[i], channel);
        value[i] = (uchar)v;
        if (rgba[i].w) /* nodata (alpha 0) stays out of the threshold */
            atomic_inc(&lh[v]);
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint i = lid; i < 256; i += lsz)
        if (lh[i])
            atomic_add(&hist[i], lh[i]);
}

#ifdef CANOPY_HAVE_FP64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#pragma OPENCL FP_CONTRACT OFF

/* Otsu's threshold from the histogram; one work-group of exactly 256 items,
 * item t evaluating threshold t. Class 0 is v <= t. Prefix sums are exact
 * integers; the between-class variance (S w0 - N s0)^2 / (w0 w1) uses only
 * correctly rounded double operations, so the host reference gets the same
 * bits. Ties go to the smallest t. Writes the threshold to *out. */
__kernel __attribute__((reqd_work_group_size(256, 1, 1)))
void otsu(__global const uint *hist, __global int *out)
{
    __local ulong w[256];
    __local ulong s[256];
    __local double best_v[256];
    __local int best_t[256];
    int t = get_local_id(0);
    w[t] = hist[t];
    s[t] = (ulong)t * hist[t];
    barrier(CLK_LOCAL_MEM_FENCE);
    /* Hillis-Steele inclusive scan over 256 entries. */
    for (int off = 1; off < 256; off <<= 1) {
        ulong wa = t >= off ? w[t - off] : 0;
        ulong sa = t >= off ? s[t - off] : 0;
        barrier(CLK_LOCAL_MEM_FENCE);
        w[t] += wa;
        s[t] += sa;
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    ulong n = w[255];
    ulong total = s[255];
    ulong w0 = w[t];
    ulong w1 = n - w0;
    double var = -1.0;
    if (w0 > 0 && w1 > 0) {
        double d = (double)w0 * (double)total - (double)n * (double)s[t];
        var = d * d / ((double)w0 * (double)w1);
    }
    best_v[t] = var;
    best_t[t] = t;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int span = 128; span > 0; span >>= 1) {
        if (t < span) {
            double a = best_v[t], b = best_v[t + span];
            if (b > a || (b == a && best_t[t + span] < best_t[t])) {
                best_v[t] = b;
                best_t[t] = best_t[t + span];
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (t == 0)
        *out = best_v[0] < 0.0 ? 0 : best_t[0];
}
#endif

/* mask = value > *thr ? 255 : 0, counting foreground pixels into *count. */
__kernel void threshold_mask(__global const uchar *value, uint n, __global const int *thr,
                             __global uchar *mask, __global uint *count)
{
    __local uint lc;
    if (get_local_id(0) == 0)
        lc = 0;
    barrier(CLK_LOCAL_MEM_FENCE);
    int t = *thr;
    uint mine = 0;
    for (ulong i = get_global_id(0); i < n; i += get_global_size(0)) { /* 64-bit: see above */
        uchar m = (int)value[i] > t ? 255 : 0;
        mask[i] = m;
        mine += m & 1;
    }
    if (mine)
        atomic_add(&lc, mine);
    barrier(CLK_LOCAL_MEM_FENCE);
    if (get_local_id(0) == 0 && lc)
        atomic_add(count, lc);
}

/* Horizontal box sums: hsum[y][x] = sum of value[y][x-r .. x+r], clipped to
 * the row. A work-group covers TILE_W columns of one row and stages them with
 * their halo in local memory. Launch: global (round_up(w, lsz), h), local
 * (lsz, 1) with lsz == TILE_W. */
#ifndef TILE_W
#define TILE_W 256
#endif
#ifndef MAX_R
#define MAX_R 127
#endif
__kernel __attribute__((reqd_work_group_size(TILE_W, 1, 1)))
void box_h(__global const uchar *value, uint w, uint h, int r, __global ushort *hsum)
{
    __local uchar tile[TILE_W + 2 * MAX_R];
    int lx = get_local_id(0);
    int x0 = get_group_id(0) * TILE_W;
    int y = get_global_id(1);
    __global const uchar *row = value + (size_t)y * w;
    for (int i = lx; i < TILE_W + 2 * r; i += TILE_W) {
        int x = x0 - r + i;
        tile[i] = (x >= 0 && x < (int)w) ? row[x] : 0;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    int x = x0 + lx;
    if (x >= (int)w)
        return;
    uint sum = 0;
    for (int k = 0; k <= 2 * r; k++)
        sum += tile[lx + k];
    hsum[(size_t)y * w + x] = (ushort)sum;
}

/* Vertical box sums of hsum and the adaptive decision: a pixel is foreground
 * when (value + offset) * count > sum, i.e. value > window mean - offset,
 * with the window clipped to the image and count its pixel count. Each work
 * item slides down ROWS rows of one column (coalesced across the group). */
#ifndef ROWS
#define ROWS 64
#endif
__kernel void box_v_mask(__global const uchar *value, __global const ushort *hsum, uint w,
                         uint h, int r, int offset, __global uchar *mask,
                         __global uint *count)
{
    __local uint lc;
    if (get_local_id(0) == 0)
        lc = 0;
    barrier(CLK_LOCAL_MEM_FENCE);
    int x = get_global_id(0);
    int y0 = get_global_id(1) * ROWS;
    uint mine = 0;
    if (x < (int)w && y0 < (int)h) {
        int y1 = min(y0 + ROWS, (int)h);
        int cw = min(x + r, (int)w - 1) - max(x - r, 0) + 1;
        uint sum = 0;
        for (int y = max(y0 - r, 0); y <= min(y0 + r, (int)h - 1); y++)
            sum += hsum[(size_t)y * w + x];
        for (int y = y0; y < y1; y++) {
            if (y > y0) {
                int add = y + r, sub = y - r - 1;
                if (add < (int)h)
                    sum += hsum[(size_t)add * w + x];
                if (sub >= 0)
                    sum -= hsum[(size_t)sub * w + x];
            }
            int ch = min(y + r, (int)h - 1) - max(y - r, 0) + 1;
            long lhs = (long)((int)value[(size_t)y * w + x] + offset) * (long)(cw * ch);
            uchar m = lhs > (long)sum ? 255 : 0;
            mask[(size_t)y * w + x] = m;
            mine += m & 1;
        }
    }
    if (mine)
        atomic_add(&lc, mine);
    barrier(CLK_LOCAL_MEM_FENCE);
    if (get_local_id(0) == 0 && lc)
        atomic_add(count, lc);
}
