/* Fixed-size top-k of 64-bit keys, ascending, in two launches whatever the
 * number of keys (the graph engine's per-level candidates: score bits
 * inverted in the high word, flat index in the low word, so every key is
 * unique and ascending order is score descending, then index ascending,
 * torch.topk's order). ~0 is padding and never a key.
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

/* Global (groups * local), any power-of-two local size up to TOPK_CHUNK / 2.
 * n keys at keys[base]; runs: groups * r keys. */
__kernel void topk_runs(__global const ulong *keys, const int base, const int n, const int r,
                        __global ulong *runs)
{
    __local ulong s[TOPK_CHUNK];
    const int lid = get_local_id(0), lsz = get_local_size(0), g = get_group_id(0);
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

/* Global (groups * r rounded): the first min(n, k) keys, ascending, to
 * out[base]. */
__kernel void topk_merge(__global const ulong *runs, const int groups, const int r,
                         const int k, __global ulong *out, const int base)
{
    const int gid = get_global_id(0);
    if (gid >= groups * r)
        return;
    const int g = gid / r, i = gid % r;
    const ulong key = runs[gid];
    if (key == TOPK_PAD || i >= k)
        return;
    int rank = i;
    for (int h = 0; h < groups && rank < k; h++)
        if (h != g)
            rank += topk_below(runs + (size_t)h * r, r, key);
    if (rank < k)
        out[base + rank] = key;
}
