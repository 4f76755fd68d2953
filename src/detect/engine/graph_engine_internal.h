/* The graph engine's insides, shared by its four files: graph_engine.c
 * (creation, buffers, running the graph), graph_nodes.c (each node's
 * kernels), graph_paths.c (the convolution path
 * of each node, timed once and remembered) and graph_decode.c (RetinaNet's
 * decode, NMS and the predict entry points). Not part of any API. */
#ifndef CANOPY_DETECT_GRAPH_ENGINE_INTERNAL_H
#define CANOPY_DETECT_GRAPH_ENGINE_INTERNAL_H

#include <clblast_c.h>

#include "detect/graph.h"
#include "detect/engine/nms_device.h"
#include "detect/engine/topk.h"
#include "detect/engine/conv_px.h"
#include "detect/engine/winograd.h"

typedef struct gnode {
    int slot;          /* activation buffer holding the output */
    size_t need;       /* floats at the largest size */
    cl_mem weight;     /* conv: shared by nodes with the same weight pointer */
    cl_mem bias;
    bool owns_weights;
    cl_kernel direct;  /* conv: graph_conv for its k and dilation, NULL when it does not apply */
    cl_mem wino_u[2];  /* conv: Winograd filters of F(2x2), F(4x4) (winograd.c), NULL when
                        * it does not apply */
    cl_kernel px;      /* conv: graph_conv_px or graph_conv_pxv (conv_px.c), NULL when
                        * neither applies */
    cl_mem px_w;       /* its re-laid weights, px_cob output channels per work-item */
    int px_cob;
    int px_vw;         /* pixels per work-item of graph_conv_pxv, 0: graph_conv_px */
    bool px_owns;      /* px_w is this node's (else an earlier node's, same weights) */
    enum det_conv_path chosen;
    /* Seconds per path (index: DET_CONV_*) measured at creation, 0: not
     * measured; the paths file's columns. */
    double path_s[DET_CONV_PATHS];
} gnode;

/* Whether conv node n's GEMM path makes an im2col matrix (else the SGEMM
 * reads its input as it lies: 1x1, stride 1, no padding). */
static inline bool ge_im2col(const det_node *n)
{
    return n->k != 1 || n->stride != 1 || n->pad != 0;
}

/* The columns of conv node n's im2col matrix and SGEMM for np output
 * pixels (the batch's): np where the SGEMM reads the input itself (1x1,
 * stride 1, no padding), else np rounded up to a multiple of 128, so that
 * CLBlast's Xgemm reads the matrix and writes C without padded copies (C
 * then goes to gemm_out). */
static inline size_t ge_gemm_cols(const det_node *n, size_t np)
{
    return ge_im2col(n) ? ocl_round_up(np, 128) : np;
}

/* Whether conv node gn has path p: im2col + SGEMM always, the others
 * where their kernel or filters were made (not DET_CONV_AUTO). */
static inline bool ge_path_applies(const gnode *gn, enum det_conv_path p)
{
    return p == DET_CONV_GEMM || (p == DET_CONV_DIRECT && gn->direct) ||
           (p == DET_CONV_WINOGRAD && gn->wino_u[0]) || (p == DET_CONV_WINOGRAD4 && gn->wino_u[1]) ||
           (p == DET_CONV_PIXEL && gn->px);
}

/* The paths conv node gn has, as bits 1 << DET_CONV_*. */
static inline unsigned ge_paths(const gnode *gn)
{
    unsigned set = 0;
    for (int p = DET_CONV_DIRECT; p < DET_CONV_PATHS; p++)
        if (ge_path_applies(gn, (enum det_conv_path)p))
            set |= 1u << p;
    return set;
}

struct det_graph_engine {
    ocl_ctx *ctx;
    const det_graph *g;
    cl_context cl;
    cl_command_queue q;
    uint32_t max_w, max_h;
    gnode *nodes;
    int n_slots;
    cl_mem *slots;
    int *shape; /* c, h, w of every node for the current input (3 * n_nodes) */
    cl_mem col, gemm_tmp;
    size_t col_floats, gemm_tmp_bytes;
    /* The SGEMM's C where its columns are padded (ge_gemm_cols), read by
     * the epilogue into the node's buffer; 0 / NULL when no node needs it. */
    cl_mem gemm_out;
    size_t gemm_out_floats;
    cl_kernel input, im2col, epilogue, maxpool, maxpool2, upsample, relu;
    cl_kernel scores, decode, gather;
    /* Decode: candidate keys per level (level l at key_base[l], room for
     * every score of the level), counts (GE_COUNT_STRIDE per patch: one per
     * level, then the patch's NMS box count), base anchors; their top-k. */
    cl_mem keys, counts, anchors[DET_GRAPH_MAX_LEVELS];
    int key_base[DET_GRAPH_MAX_LEVELS], key_cap[DET_GRAPH_MAX_LEVELS];
    size_t key_total; /* keys of one patch: patch b's at b * key_total */
    det_topk *topk;
    /* NMS of up to n_levels * topk boxes: graph_decode writes its input
     * buffers, graph_gather reads its kept indices into `out`. */
    det_nms_device *nms;
    cl_mem out, outs; /* outs: one `out` per patch of a batch, host-mapped */
    /* Bench hooks: bytes of the buffers created, stage timing when on. */
    size_t device_bytes;
    det_graph_times *times;
    double tick;
    unsigned long waits; /* blocking reads and maps of predict (tests) */
    /* Convolution paths: forced (AUTO: each node's chosen), the input size
     * they were measured at, conv nodes timed at creation. */
    enum det_conv_path force;
    int meas_h, meas_w;
    int plan_h, plan_w; /* the first size the buffers were planned for */
    /* Batches: activations hold up to max_batch patches (planes c * N + n),
     * `batch` the N of the current run. */
    int max_batch, batch;
    size_t timed_nodes;
    size_t refined_shapes; /* distinct conv shapes timed again at the plan size */
    det_wino wino; /* Winograd kernels and scratch */
    int px_width;  /* graph_conv_pxv's pixels per work-item (opts), 0: by device */
};

/* Ints of e->counts per patch: its levels' candidate counts, then at
 * GE_COUNT_TOTAL the boxes its NMS gets (graph_decode writes it). */
#define GE_COUNT_TOTAL DET_GRAPH_MAX_LEVELS
#define GE_COUNT_STRIDE (DET_GRAPH_MAX_LEVELS + 1)

/* Work-group geometry of graph_conv (kernels/graph.cl). */
#define GTX 16
#define GTY 8
#define GCOB 8
#define GCIB 4

cnp_status ge_enqueue(det_graph_engine *e, cl_kernel k, cl_uint dims, const size_t *global,
                      const size_t *local, const char *what, cnp_err *err);
cl_mem ge_node_buf(const det_graph_engine *e, int i);
enum det_conv_path ge_node_path(const det_graph_engine *e, int i);
cnp_status ge_run_conv(det_graph_engine *e, int i, cnp_err *err);
/* Node i on the current shapes and batch (graph_nodes.c). */
cnp_status ge_run_node(det_graph_engine *e, int i, cnp_err *err);
/* Transform and nodes 0..last on the np windows (equal sizes) as one batch. */
cnp_status ge_run_graph(det_graph_engine *e, cl_mem rgba, uint32_t img_w, const det_tile *p,
                        size_t np, int last, int *rh, int *rw, int *ph, int *pw, cnp_err *err);
void ge_stamp(det_graph_engine *e, double *acc);
/* Picks each conv node's path (graph_paths.c). */
cnp_status ge_choose_paths(det_graph_engine *e, enum det_conv_path configured, cnp_err *err);

#endif
