/* Tree detector kernels (OpenCL 1.2). Each has a C reference in
 * src/detect/ref.c and a test in tests/detect that holds them together.
 *
 * The network itself runs on the graph engine's kernels (kernels/graph.cl:
 * graph_conv, im2col + CLBlast, graph_maxpool); here are the crown
 * model's preprocessing, peak decode and the NMS both engines share.
 *
 * Build options (per program variant, cached by the gpu module):
 *   -DNCH=4 -DCH0..CH3        input channel codes (0 r, 1 g, 2 b, 3 exg)
 *   -DOUT_HEAT.. -DOUT_DY     output channel indices for the decode
 * Defaults below let one program serve kernels that ignore them. */

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

static inline float channel_value(int code, float r, float g, float b)
{
    return code == 0 ? r : code == 1 ? g : code == 2 ? b : 2.0f * g - r - b;
}

/* RGBA8 region (x0, y0, w, h) of an image img_w wide -> normalized CHW
 * floats, as window bk of a batch of bn (channel c at plane c * bn + bk,
 * the graph engine's batch layout). mean/inv_std per channel. One
 * work-item per pixel. */
__kernel void detect_preprocess(__global const uchar4 *rgba, const int img_w, const int x0,
                                const int y0, const int w, const int h,
                                __global float *out, const float4 mean, const float4 inv_std,
                               const int bk, const int bn)
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
        out[((size_t)c * bn + bk) * plane + i] = (channel_value(codes[c], r, g, b) - mu[c]) * is[c];
}

static inline float det_sigmoid(float v)
{
    return 1.0f / (1.0f + exp(-v));
}

/* Decode and 3x3 peak extraction. A cell is a tree when its logit passes
 * logit_threshold (the host's det_logit_threshold: the score threshold as a
 * logit, so the device's exp does not decide it), its score is > every
 * neighbour before it in row-major order and >= every
 * neighbour after it, and its centre falls in the tile's owned region
 * own = (x_lo, y_lo, x_hi, y_hi). Trees are appended with an atomic counter;
 * slots past `cap` are counted but not written. head is window bk of a
 * batch of bn (channel c at plane c * bn + bk). Global (OW, OH). */
__kernel void detect_peaks(__global const float *head, const int OH, const int OW,
                           const int x0, const int y0, const float stride,
                           const float logit_threshold, const float4 own,
                           __global float4 *trees, __global volatile int *count,
                           const int cap, const int bk, const int bn)
{
    const int j = get_global_id(0), i = get_global_id(1);
    if (j >= OW || i >= OH)
        return;
    const size_t plane = (size_t)OH * OW, k = (size_t)i * OW + j;
    __global const float *heat = head + ((size_t)OUT_HEAT * bn + bk) * plane;
    if (!(heat[k] >= logit_threshold))
        return;
    const float score = det_sigmoid(heat[k]);
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
    const float x = (float)x0 + ((float)j + 0.5f + head[((size_t)OUT_DX * bn + bk) * plane + k]) * stride;
    const float y = (float)y0 + ((float)i + 0.5f + head[((size_t)OUT_DY * bn + bk) * plane + k]) * stride;
    if (x < own.s0 || y < own.s1 || x >= own.s2 || y >= own.s3)
        return;
    const int slot = atomic_inc(count);
    if (slot < cap)
        trees[slot] = (float4)(x, y, exp(head[((size_t)OUT_LR * bn + bk) * plane + k]), score);
}

/* ---- Non-maximum suppression -------------------------------------------
 * Greedy NMS over boxes (x0, y0, x1, y1), shared by every model family: the
 * crown model's boxes are centre +- radius; a box model passes its own boxes
 * and class labels (use_label = 1: boxes of different labels never suppress
 * each other). src/detect/nms.c is the C reference; both order the boxes
 * with the same total order and decide overlap with the same float
 * operations in the same sequence, so the kept set is identical.
 *
 * The number of boxes n is read on the device (count[slot], clamped to the
 * room the host launched for), so a caller need not read it back first:
 * every launch has a grid fixed by the room, and its work-groups loop over
 * the work below n (the work follows n, not the room).
 *
 * Steps:
 *   detect_nms_order   rank sort: position of each box in the order score
 *                      descending, then y0, x0, y1, x1, label ascending,
 *                      then index; writes the sorted boxes and labels
 *   detect_nms_mask    one bit per (row, later column) pair of the sorted
 *                      list: IoU > threshold, or (crowns, contain < 1) one
 *                      box inside the other (nms_contains); 64 x 64 blocks
 *                      per work-group
 *   detect_nms_select  one work-group walks the rows in order, 64 at a time,
 *                      keeping a row when no kept row has set its bit
 * For bounded memory the mask is computed and consumed in chunks of rows
 * (multiples of 64; the host sizes them from the room); `removed` and the
 * kept count carry across chunks. The mask's row stride is words(room).
 *
 * Contraction of a * b + c into fma would change roundings and break the
 * bit-for-bit agreement with the C reference (which the C compiler, in ISO
 * C mode, does not contract either). */
#pragma OPENCL FP_CONTRACT OFF

#define NMS_BLOCK 64

/* The intersection of a and b and their areas (s0: inter, s1: area a, s2:
 * area b); s0 is 0 when they do not overlap by a positive area. Keep in step
 * with nms_intersect in src/detect/nms.c. */
static inline float4 nms_intersect(const float4 a, const float4 b)
{
    const float iw = fmin(a.s2, b.s2) - fmax(a.s0, b.s0);
    const float ih = fmin(a.s3, b.s3) - fmax(a.s1, b.s1);
    if (!(iw > 0.0f && ih > 0.0f))
        return (float4)(0.0f);
    return (float4)(iw * ih, (a.s2 - a.s0) * (a.s3 - a.s1), (b.s2 - b.s0) * (b.s3 - b.s1), 0.0f);
}

/* True when box b overlaps box a by IoU > iou (det_nms_overlaps). */
static inline bool nms_overlaps(const float4 a, const float4 b, const float iou)
{
    const float4 i = nms_intersect(a, b);
    if (!(i.s0 > 0.0f))
        return false;
    float uni = i.s1 + i.s2;
    uni = uni - i.s0;
    return i.s0 > iou * uni;
}

/* True when one of a, b lies inside the other: intersection > contain x the
 * smaller area (crowns; contain >= 1: never; det_nms_contains). */
static inline bool nms_contains(const float4 a, const float4 b, const float contain)
{
    if (!(contain < 1.0f))
        return false;
    const float4 i = nms_intersect(a, b);
    return i.s0 > 0.0f && i.s0 > contain * fmin(i.s1, i.s2);
}

/* Whether box a (score sa, label la, index ia) comes before box b. */
static inline bool nms_before(const float sa, const float4 a, const int la, const int ia,
                              const float sb, const float4 b, const int lb, const int ib)
{
    if (sa != sb)
        return sa > sb;
    if (a.s1 != b.s1)
        return a.s1 < b.s1;
    if (a.s0 != b.s0)
        return a.s0 < b.s0;
    if (a.s3 != b.s3)
        return a.s3 < b.s3;
    if (a.s2 != b.s2)
        return a.s2 < b.s2;
    if (la != lb)
        return la < lb;
    return ia < ib;
}

/* The number of boxes: count[slot] as the device holds it, within 0..room. */
static inline int nms_count(__global const int *count, const int slot, const int room)
{
    return clamp(count[slot], 0, room);
}

/* Crown trees (x, y, radius, score) -> boxes (x - r, y - r, x + r, y + r)
 * and scores, the first n = count[slot] (<= room). Any global size. */
__kernel void detect_crown_boxes(__global const float4 *trees, __global const int *count,
                                 const int slot, const int room, __global float4 *box,
                                 __global float *score)
{
    const int n = nms_count(count, slot, room);
    for (int i = get_global_id(0); i < n; i += get_global_size(0)) {
        const float4 t = trees[i];
        box[i] = (float4)(t.x - t.z, t.y - t.z, t.x + t.z, t.y + t.z);
        score[i] = t.w;
    }
}

/* Rank sort. Each work-item counts the boxes that come before its own,
 * reading the list through local memory 64 boxes at a time (coalesced), and
 * scatters its box to that rank: order[rank] = index, sbox / slabel sorted.
 * n = count[slot] (<= room); work-group g takes boxes 64 g .. 64 g + 63,
 * then 64 (g + groups) .., below n. Any number of groups, local 64.
 * O(n^2) like the mask itself. */
__kernel __attribute__((reqd_work_group_size(NMS_BLOCK, 1, 1)))
void detect_nms_order(__global const float4 *box, __global const float *score,
                      __global const int *label, const int use_label,
                      __global const int *count, const int slot, const int room,
                      __global int *order, __global float4 *sbox, __global int *slabel)
{
    __local float4 lbox[NMS_BLOCK];
    __local float lscore[NMS_BLOCK];
    __local int llabel[NMS_BLOCK];
    const int n = nms_count(count, slot, room), lid = get_local_id(0);
    const int step = get_num_groups(0) * NMS_BLOCK;
    for (int i0 = get_group_id(0) * NMS_BLOCK; i0 < n; i0 += step) { /* uniform */
        const int i = i0 + lid;
        const float4 bi = i < n ? box[i] : (float4)(0.0f);
        const float si = i < n ? score[i] : 0.0f;
        const int li = i < n && use_label ? label[i] : 0;
        int rank = 0;
        for (int j0 = 0; j0 < n; j0 += NMS_BLOCK) {
            barrier(CLK_LOCAL_MEM_FENCE);
            const int j = j0 + lid;
            if (j < n) {
                lbox[lid] = box[j];
                lscore[lid] = score[j];
                llabel[lid] = use_label ? label[j] : 0;
            }
            barrier(CLK_LOCAL_MEM_FENCE);
            const int m = min(NMS_BLOCK, n - j0);
            for (int k = 0; k < m; k++)
                rank += nms_before(lscore[k], lbox[k], llabel[k], j0 + k, si, bi, li, i) ? 1 : 0;
        }
        if (i < n) {
            order[rank] = i;
            sbox[rank] = bi;
            slabel[rank] = li;
        }
    }
}

/* Overlap bits of sorted rows [row0, row0 + rows) below n = count[slot]
 * (<= room) against every later column: bit k of
 * mask[(r - row0) * words + cb] is set when column c = 64 cb + k > r has
 * the same label (or labels are off) and overlaps row r by IoU > iou.
 * words: the row stride, words(room). A work-group takes blocks (row block,
 * column block) p = g, g + groups, .. of the chunk's row blocks below n by
 * the column blocks below n: the 64 column boxes are staged in local
 * memory; blocks left of the diagonal are skipped (never read). Any number
 * of groups, local 64. */
__kernel __attribute__((reqd_work_group_size(NMS_BLOCK, 1, 1)))
void detect_nms_mask(__global const float4 *sbox, __global const int *slabel,
                     const int use_label, __global const int *count, const int slot,
                     const int room, const int row0, const int rows, const float iou,
                     const float contain, const int words, __global ulong *mask)
{
    __local float4 cbox[NMS_BLOCK];
    __local int clabel[NMS_BLOCK];
    const int n = nms_count(count, slot, room), lid = get_local_id(0);
    const int wn = (n + NMS_BLOCK - 1) / NMS_BLOCK;                 /* column blocks */
    const int rn = (max(min(n, row0 + rows) - row0, 0) + NMS_BLOCK - 1) / NMS_BLOCK;
    for (int p = get_group_id(0); p < rn * wn; p += get_num_groups(0)) { /* uniform */
        const int cb = p % wn, rb = row0 / NMS_BLOCK + p / wn;
        if (cb < rb)
            continue;
        const int c = cb * NMS_BLOCK + lid;
        barrier(CLK_LOCAL_MEM_FENCE); /* the last block's readers are done */
        if (c < n) {
            cbox[lid] = sbox[c];
            clabel[lid] = slabel[c];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        const int r = rb * NMS_BLOCK + lid;
        if (r < n) {
            const float4 rbox = sbox[r];
            const int rlabel = slabel[r];
            const int m = min(NMS_BLOCK, n - cb * NMS_BLOCK);
            ulong bits = 0;
            for (int k = 0; k < m; k++) {
                const int col = cb * NMS_BLOCK + k;
                if (col > r && (!use_label || clabel[k] == rlabel) &&
                    (nms_overlaps(rbox, cbox[k], iou) || nms_contains(rbox, cbox[k], contain)))
                    bits |= (ulong)1 << k;
            }
            mask[(size_t)(r - row0) * words + cb] = bits;
        }
    }
}

/* The greedy pass over sorted rows [row0, row0 + rows) below n =
 * count[slot] (<= room), one work-group of any size. Per block of 64
 * rows, work-item 0 resolves the block in order from its diagonal mask
 * words (a row is kept when no kept row before it
 * has set its bit); then all work-items OR the kept rows' masks into
 * `removed` for the later blocks (consecutive words: coalesced) and write
 * the kept boxes' original indices to keep[] in sorted order. words: the
 * mask's row stride; removed (words ulongs) and *kept must be zero before
 * the first chunk. */
__kernel void detect_nms_select(__global const ulong *mask, __global const int *count,
                                const int slot, const int room, const int row0,
                                const int rows, const int words, __global ulong *removed,
                                __global const int *order, __global int *keep,
                                __global int *kept)
{
    __local ulong keep_bits;
    __local int base;
    const int lid = get_local_id(0), ls = get_local_size(0);
    const int n = nms_count(count, slot, room), wn = (n + NMS_BLOCK - 1) / NMS_BLOCK;
    if (lid == 0)
        base = *kept;
    barrier(CLK_LOCAL_MEM_FENCE);
    const int end = min(n, row0 + rows);
    for (int b0 = row0; b0 < end; b0 += NMS_BLOCK) {
        const int blk = b0 / NMS_BLOCK;
        if (lid == 0) {
            ulong cur = removed[blk], kb = 0;
            const int m = min(NMS_BLOCK, n - b0);
            for (int k = 0; k < m; k++) {
                if (!((cur >> k) & 1)) {
                    kb |= (ulong)1 << k;
                    cur |= mask[(size_t)(b0 + k - row0) * words + blk];
                }
            }
            removed[blk] = cur;
            keep_bits = kb;
        }
        barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE);
        const ulong kb = keep_bits;
        for (int w = blk + 1 + lid; w < wn; w += ls) {
            ulong acc = removed[w];
            for (int k = 0; k < NMS_BLOCK; k++)
                if ((kb >> k) & 1)
                    acc |= mask[(size_t)(b0 + k - row0) * words + w];
            removed[w] = acc;
        }
        for (int k = lid; k < NMS_BLOCK; k += ls)
            if ((kb >> k) & 1)
                keep[base + (int)popcount(kb & (((ulong)1 << k) - 1))] = order[b0 + k];
        barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE);
        if (lid == 0)
            base += (int)popcount(kb);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0)
        *kept = base;
}

/* The crown model's result: out[0] holds the kept count and the device's
 * tree count (int bits in .x, .y), out[1 + k] = trees[keep[k]] for the
 * kept k (all = 1, no NMS: trees[k] for k below the tree count), so one
 * read brings all back. Only up to room trees are copied: a tree count
 * above room (.y) tells the host to run again with more room. Any global
 * size. */
__kernel void detect_crown_gather(__global const float4 *trees, __global const int *keep,
                                  __global const int *kept, __global const int *count,
                                  const int room, const int all, __global float4 *out)
{
    const int total = *count, n = clamp(total, 0, room);
    const int c = all ? n : clamp(*kept, 0, n);
    if (get_global_id(0) == 0)
        out[0] = as_float4((int4)(c, total, 0, 0));
    for (int k = get_global_id(0); k < c; k += get_global_size(0))
        out[1 + k] = trees[all ? k : keep[k]];
}
