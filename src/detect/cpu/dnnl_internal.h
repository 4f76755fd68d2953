/* The CPU backend's insides, shared by dnnl_graph.c (engine, plans,
 * primitives, runs), dnnl_plan.c (activation buffers and convolution
 * primitives of one input size) and dnnl_ops.c (the C loops over the
 * blocked layout). Not part of any API. */
#ifndef CANOPY_DETECT_CPU_DNNL_INTERNAL_H
#define CANOPY_DETECT_CPU_DNNL_INTERNAL_H

#include <dnnl.h>

#include "detect/cpu/dnnl_graph.h"

/* Channels per block of the activations' layout (nChw16c): AVX-512's
 * width, what oneDNN's f32 convolutions and Winograd read and write. */
#define DG_BLOCK 16
#define DG_MAX_PLANS 4

/* Floats of an n x c x h x w tensor in nChw16c (channels padded to the
 * block). */
static inline size_t dg_blocked_floats(int n, int c, int h, int w)
{
    return (size_t)n * (size_t)((c + DG_BLOCK - 1) / DG_BLOCK) * DG_BLOCK * (size_t)h *
           (size_t)w;
}

/* One node of one plan. */
typedef struct dg_node {
    dnnl_primitive_t prim;    /* conv */
    dnnl_memory_t wmem, bias; /* conv: weights in the primitive's format (the
                               * engine's cache owns them), bias (plain) */
    enum det_dnnl_conv algo;  /* conv: what it runs */
    size_t off, floats;       /* its output in the arena (floats) */
    dnnl_memory_t mem;        /* that output as nChw16c (handle set per run) */
    bool in_place;            /* conv: the residual is already in its buffer */
    bool alive;               /* its output survives the whole run */
    dnnl_primitive_t to_plain; /* reorder of the output to NCHW (made on demand) */
    dnnl_memory_t plain;
} dg_node;

/* Everything of one input size and batch. */
typedef struct dg_plan {
    int n, h, w;
    int *shape;               /* c, h, w of every node (3 * n_nodes) */
    dg_node *nodes;
    size_t arena_floats;
    dnnl_memory_t in_plain;   /* node 0 as the caller's NCHW */
    dnnl_primitive_t in_block; /* node 0 to nChw16c, when a non-conv node reads it */
    unsigned long used;
} dg_plan;

typedef struct dg_weights {
    const float *src;
    dnnl_memory_desc_t md;
    dnnl_memory_t mem;
} dg_weights;

/* A measured choice between Winograd and direct for one conv shape. */
typedef struct dg_choice {
    int key[11];
    enum det_dnnl_conv algo;
} dg_choice;

struct det_dnnl_graph {
    const det_graph *g;
    det_dnnl_opts opts;
    int threads, max_batch;
    dnnl_engine_t eng;
    dnnl_stream_t stream;
    dg_plan *plans[DG_MAX_PLANS];
    dg_plan *current; /* the plan of the last run */
    unsigned long tick;
    float *arena;
    size_t arena_floats;
    float *input, *heads; /* predict_batch's transformed inputs and head outputs */
    size_t input_floats, heads_floats;
    dg_weights *wc;
    size_t n_wc, cap_wc;
    dg_choice *choices;
    size_t n_choices, cap_choices;
    char choices_file[CNP_STR_LONG + 64];
    bool choices_new; /* measured since the file was read or written */
    det_dnnl_times *times;
    void *scratch;              /* the primitives' scratchpad (dnnl_scratch.c) */
    size_t scratch_bytes;
    dnnl_memory_t scratch_mem;
};

/* The remembered choices: read (a bad line ends the reading: measure
 * again) and written atomically. */
void dg_choices_load(det_dnnl_graph *e);
void dg_choices_save(det_dnnl_graph *e);

/* *buf grown to at least floats floats (*have: its size; contents
 * dropped when it grows). */
cnp_status dg_reserve(float **buf, size_t *have, size_t floats, cnp_err *err);

/* oneDNN status -> canopy status with "oneDNN <what>: <reason>" in err. */
cnp_status dg_check(dnnl_status_t st, const char *what, cnp_err *err);

/* Makes the plan of n inputs of h x w (shapes, buffers, primitives,
 * weights; Winograd chosen by measurement where asked, on `input`, the
 * run's NCHW input). */
cnp_status dg_plan_create(det_dnnl_graph *e, const float *input, int n, int h, int w,
                          dg_plan **out, cnp_err *err);
void dg_plan_free(const det_dnnl_graph *e, dg_plan *p);
/* Points every node's memory at the arena (it may have moved). */
cnp_status dg_plan_bind(det_dnnl_graph *e, dg_plan *p, const float *input, cnp_err *err);
/* Runs conv node i of plan p (residual copied in first where needed). */
cnp_status dg_plan_conv(det_dnnl_graph *e, dg_plan *p, int i, cnp_err *err);

/* ---- dnnl_scratch.c: one user-managed scratchpad per engine ---- */

#define DG_MAX_ARGS 8
/* A primitive attribute with dnnl_scratchpad_mode_user. */
dnnl_status_t dg_attr_create(dnnl_primitive_attr_t *attr);
/* Grows e's scratchpad to what pd asks for (call once per descriptor made). */
dnnl_status_t dg_scratch_fit(det_dnnl_graph *e, const_dnnl_primitive_desc_t pd);
/* A reorder primitive from -> to on e's engine, with the user scratchpad. */
dnnl_status_t dg_reorder_create(det_dnnl_graph *e, const dnnl_memory_desc_t *from,
                                const dnnl_memory_desc_t *to, dnnl_primitive_t *out);
/* Runs prim with args and e's scratchpad, and waits for it. */
dnnl_status_t dg_execute(det_dnnl_graph *e, dnnl_primitive_t prim, int nargs,
                         const dnnl_exec_arg_t *args);

/* ---- dnnl_ops.c: C loops on nChw16c tensors (nb = n * channel blocks) ---- */

/* PyTorch's MaxPool2d (floor mode, padded cells never win). */
void dg_maxpool(const float *in, float *out, int nb, int ih, int iw, int oh, int ow, int k,
                int s, int p);
/* out = max(in, 0), `floats` of them (may be in place). */
void dg_relu(const float *in, float *out, size_t floats);
/* out = in + nearest(top) (ATen's index rule); out may be in. */
void dg_upsample_add(const float *in, const float *top, float *out, int nb, int h, int w,
                     int th, int tw);

#endif
