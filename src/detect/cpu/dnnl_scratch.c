/* The CPU backend's scratchpad: every primitive is created with
 * dnnl_scratchpad_mode_user and run on one buffer of the engine's, grown
 * to the largest scratchpad any of its primitives asks for. oneDNN's own
 * (library-managed) scratchpad is per thread and kept past exit; this one is
 * freed with the engine. */
#include <stdlib.h>

#include "detect/cpu/dnnl_internal.h"

dnnl_status_t dg_attr_create(dnnl_primitive_attr_t *attr)
{
    dnnl_status_t st = dnnl_primitive_attr_create(attr);
    if (st == dnnl_success)
        st = dnnl_primitive_attr_set_scratchpad_mode(*attr, dnnl_scratchpad_mode_user);
    return st;
}

dnnl_status_t dg_scratch_fit(det_dnnl_graph *e, const_dnnl_primitive_desc_t pd)
{
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t bytes = md ? dnnl_memory_desc_get_size(md) : 0;
    if (bytes <= e->scratch_bytes)
        return dnnl_success;
    bytes = (bytes + 4095) / 4096 * 4096;
    dnnl_memory_destroy(e->scratch_mem);
    free(e->scratch);
    e->scratch_mem = NULL;
    e->scratch_bytes = 0;
    e->scratch = aligned_alloc(64, bytes);
    if (!e->scratch)
        return dnnl_out_of_memory;
    dnnl_memory_desc_t smd;
    dnnl_dims_t dims = {(dnnl_dim_t)bytes};
    dnnl_status_t st = dnnl_memory_desc_init_by_tag(&smd, 1, dims, dnnl_u8, dnnl_a);
    if (st == dnnl_success)
        st = dnnl_memory_create(&e->scratch_mem, &smd, e->eng, e->scratch);
    if (st == dnnl_success)
        e->scratch_bytes = bytes;
    return st;
}

dnnl_status_t dg_reorder_create(det_dnnl_graph *e, const dnnl_memory_desc_t *from,
                                const dnnl_memory_desc_t *to, dnnl_primitive_t *out)
{
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_status_t st = dg_attr_create(&attr);
    if (st == dnnl_success)
        st = dnnl_reorder_primitive_desc_create(&rpd, from, e->eng, to, e->eng, attr);
    if (st == dnnl_success)
        st = dg_scratch_fit(e, rpd);
    if (st == dnnl_success)
        st = dnnl_primitive_create(out, rpd);
    dnnl_primitive_desc_destroy(rpd);
    dnnl_primitive_attr_destroy(attr);
    return st;
}

dnnl_status_t dg_execute(det_dnnl_graph *e, dnnl_primitive_t prim, int nargs,
                         const dnnl_exec_arg_t *args)
{
    dnnl_exec_arg_t all[DG_MAX_ARGS + 1];
    if (nargs > DG_MAX_ARGS)
        return dnnl_invalid_arguments;
    for (int k = 0; k < nargs; k++)
        all[k] = args[k];
    if (e->scratch_mem)
        all[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, e->scratch_mem};
    dnnl_status_t st = dnnl_primitive_execute(prim, e->stream, nargs, all);
    return st == dnnl_success ? dnnl_stream_wait(e->stream) : st;
}
