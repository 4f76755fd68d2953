/* Fixed-size top-k of 64-bit keys, ascending, in two launches whatever the
 * number of keys (the graph engine's per-level candidates: score bits
 * inverted in the high word, flat index in the low word, so every key is
 * unique and ascending order is score descending, then index ascending,
 * torch.topk's order). ~0 is padding and never a key.
 *
 * The number of keys is read on the device (count[slot], e.g. written by
 * graph_scores's atomics), so the host launches both kernels at sizes fixed
 * by the room (cap) without reading it back; the work follows the count.
 *
 *  topk_runs:  work-group g sorts keys [g * TOPK_CHUNK, (g + 1) * TOPK_CHUNK)
 *              in local memory (bitonic, barriers only) and writes its first
 *              r = min(k, TOPK_CHUNK) as run g.
 *  topk_merge: each run element finds its rank among all keys by binary
 *              search in the other runs and, when the rank is below k, is
 *              written there. Exact because keys are unique: an element of
 *              the top k has fewer than k smaller keys in any chunk, so all
 *              of them are inside that chunk's run. */
#ifndef TOPK_CHUNK
#define TOPK_CHUNK 2048
#endif

#define TOPK_PAD (~(ulong)0)

/* The number of keys: count[slot] (written on the device), within 0..cap. */
static inline int topk_count(__global const int *count, const int slot, const int cap)
{
    return clamp(count[slot], 0, cap);
}

/* Any number of work-groups (fixed by the host from the room, not the
 * count), any power-of-two local size up to TOPK_CHUNK / 2: work-group g
 * sorts chunks g, g + groups, .. below the device's n = count[slot]
 * (<= cap). n keys at keys[base]; runs: one run of r keys per chunk. */
__kernel void topk_runs(__global const ulong *keys, const int base,
                        __global const int *count, const int slot, const int cap, const int r,
                        __global ulong *runs)
{
    __local ulong s[TOPK_CHUNK];
    const int lid = get_local_id(0), lsz = get_local_size(0);
    const int n = topk_count(count, slot, cap), chunks = (n + TOPK_CHUNK - 1) / TOPK_CHUNK;
    for (int g = get_group_id(0); g < chunks; g += get_num_groups(0)) { /* uniform */
        const int first = g * TOPK_CHUNK;
        for (int t = lid; t < TOPK_CHUNK; t += lsz)
            s[t] = first + t < n ? keys[base + first + t] : TOPK_PAD;
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int size = 2; size <= TOPK_CHUNK; size <<= 1)
            for (int j = size >> 1; j > 0; j >>= 1) {
                for (int t = lid; t < TOPK_CHUNK / 2; t += lsz) {
                    const int i = 2 * t - (t & (j - 1)), l = i + j;
                    const ulong a = s[i], b = s[l];
                    const bool up = (i & size) == 0;
                    if (up ? a > b : a < b) {
                        s[i] = b;
                        s[l] = a;
                    }
                }
                barrier(CLK_LOCAL_MEM_FENCE);
            }
        for (int t = lid; t < r; t += lsz)
            runs[(size_t)g * r + t] = s[t];
        barrier(CLK_LOCAL_MEM_FENCE); /* s is refilled by the next chunk */
    }
}

/* Keys of runs[run] below key (the run is ascending, r long). */
static inline int topk_below(__global const ulong *run, const int r, const ulong key)
{
    int lo = 0, hi = r;
    while (lo < hi) {
        const int mid = (lo + hi) >> 1;
        if (run[mid] < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Any global size (fixed by the host): the runs' elements gid, gid +
 * global, .. below chunks(n) * r, n = count[slot] as topk_runs read it; the
 * first min(n, k) keys, ascending, to out[base]. */
__kernel void topk_merge(__global const ulong *runs, __global const int *count, const int slot,
                         const int cap, const int r, const int k, __global ulong *out,
                         const int base)
{
    const int n = topk_count(count, slot, cap), groups = (n + TOPK_CHUNK - 1) / TOPK_CHUNK;
    for (int gid = get_global_id(0); gid < groups * r; gid += get_global_size(0)) {
        const int g = gid / r, i = gid % r;
        const ulong key = runs[gid];
        if (key == TOPK_PAD || i >= k)
            continue;
        int rank = i;
        for (int h = 0; h < groups && rank < k; h++)
            if (h != g)
                rank += topk_below(runs + (size_t)h * r, r, key);
        if (rank < k)
            out[base + rank] = key;
    }
}
