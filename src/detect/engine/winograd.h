/* Winograd F(2x2, 3x3) for 3x3 stride-1 undilated convolutions
 * (kernels/winograd.cl): filters transformed once at load (U = G g G^T,
 * [16][O][C]), per run the input transform (V = B^T d B, [16][C][P] for
 * P = N * ceil(OH/2) * ceil(OW/2) tiles), the 16 products M[e] = U[e] V[e]
 * as one CLBlastSgemmStridedBatched, and the output transform (Y = A^T M A)
 * with bias, residual and ReLU fused. 2.25x fewer multiplications than
 * im2col + SGEMM, at errors near float rounding (the transforms only add
 * and halve). Also a C reference of the same arithmetic. */
#ifndef CANOPY_DETECT_WINOGRAD_H
#define CANOPY_DETECT_WINOGRAD_H

#include <stdbool.h>
#include <stddef.h>

#include "canopy/gpu.h"
#include "detect/graph.h"

typedef struct det_wino {
    cl_kernel input, output;
    cl_mem v, m; /* scratch: transformed inputs and products */
    size_t v_floats, m_floats;
} det_wino;

/* Whether node n can run as Winograd F(2x2, 3x3). */
bool det_wino_applies(const det_node *n);

/* Scratch floats of V and M for one run. */
void det_wino_scratch(int c, int o, int oh, int ow, int n, size_t *v, size_t *m);

/* U = G g G^T of weight [o][c][3][3] into u [16][o][c]. */
void det_wino_filters(const float *weight, int o, int c, float *u);

/* The C transforms of one tile, the kernels' float operations in their
 * order: V = B^T d B of tile (ty, tx) of plane `in` (h x w, zero padding
 * pad) into v[16] (e = 4 i + j); and Y = A^T a A + bias (+ add) (ReLU) of
 * the products a into output plane `out` (oh x ow; add: the same plane of
 * the residual or NULL), the tile's 2 x 2 pixels that lie inside. */
void det_wino_input_tile(const float *in, int h, int w, int pad, int ty, int tx, float v[16]);
void det_wino_output_tile(const float a[4][4], float bias, const float *add, bool relu,
                          float *out, int oh, int ow, int ty, int tx);

/* The C reference: the same transforms and sums in float on planes
 * c * N + n of h x w (in), out planes o * N + n of (h + 2 pad - 2) squared
 * likewise; add (NULL: none) has out's layout. */
void det_wino_ref(const float *in, const float *weight, const float *bias, const float *add,
                  bool relu, float *out, int c, int o, int n, int h, int w, int pad);

/* Kernels (scratch empty). */
cnp_status det_wino_init(det_wino *w, ocl_ctx *ctx, cnp_err *err);
/* Grows the scratch to at least v and m floats. */
cnp_status det_wino_reserve(det_wino *w, cl_context cl, size_t v, size_t m, cnp_err *err);
void det_wino_release(det_wino *w);
/* Transforms weight and uploads U (caller releases *u). */
cnp_status det_wino_upload(cl_context cl, const float *weight, int o, int c, cl_mem *u,
                           cnp_err *err);
/* One convolution on q: in (c planes of n patches, h x w, zero padding pad)
 * to out, + bias, + add (NULL: none), ReLU when relu. The scratch must hold
 * det_wino_scratch's sizes. */
cnp_status det_wino_run(det_wino *w, cl_command_queue q, cl_mem in, cl_mem u, cl_mem bias,
                        cl_mem add, bool relu, cl_mem out, int c, int o, int n, int h, int wd,
                        int pad, cnp_err *err);

/* The graph engine's side (graph_engine_internal.h): U for every node it
 * applies to and scratch for the planned sizes; node i through Winograd. */
struct det_graph_engine;
cnp_status ge_wino_prepare(struct det_graph_engine *e, cnp_err *err);
cnp_status ge_run_conv_wino(struct det_graph_engine *e, int i, cnp_err *err);
void ge_wino_free(struct det_graph_engine *e);

#endif
