/* Fixed-size device top-k of 64-bit keys (kernels/topk.cl): the first
 * min(n, k) keys in ascending order, n read on the device, in two
 * launches of sizes fixed by the room whatever n (a sort
 * per chunk of TOPK_CHUNK keys in local memory, then a merge by rank),
 * instead of a bitonic sort of m(m+1)/2 launches over the next power of
 * two. Keys must be unique and never ~0 (the graph engine's candidates:
 * inverted score bits, flat index); the result is then exactly the sort's.
 * Not part of any API. */
#ifndef CANOPY_DETECT_TOPK_H
#define CANOPY_DETECT_TOPK_H

#include <stddef.h>
#include <stdint.h>

#include "canopy/gpu.h"
#include "canopy/status.h"

/* Keys one work-group sorts (kernels/topk.cl's TOPK_CHUNK). */
#define DET_TOPK_CHUNK 2048

typedef struct det_topk det_topk;

/* Kernels and a run buffer for up to max_n keys and k at most max_k. */
cnp_status det_topk_create(ocl_ctx *ctx, size_t max_n, size_t max_k, det_topk **out,
                           cnp_err *err);
void det_topk_free(det_topk *t); /* accepts NULL; the caller finishes its queue first */
size_t det_topk_bytes(const det_topk *t);

/* Enqueues on q: keys[base .. base + min(n, k)) = the min(n, k) smallest of
 * keys[base .. base + n), ascending, where n = count[slot] as the device
 * holds it when the kernels run (clamped to 0..cap): the launches are sized
 * from cap and k alone, so nothing is read back and the work follows n.
 * cap <= max_n, k <= max_k. */
cnp_status det_topk_enqueue(det_topk *t, cl_command_queue q, cl_mem keys, size_t base,
                            cl_mem count, size_t slot, size_t cap, size_t k, cnp_err *err);

/* C reference: sorts the n keys ascending in place; the top k are the
 * first min(n, k). */
void det_topk_ref(uint64_t *keys, size_t n);

#endif
