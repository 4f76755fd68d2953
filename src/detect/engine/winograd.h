/* Winograd F(m x m, 3x3) for 3x3 stride-1 undilated convolutions
 * (kernels/winograd.cl), m = 2 or 4 output pixels per tile side, tiles of
 * a = m + 2 input pixels: filters transformed once at load (U = G g G^T,
 * [a*a][C][O]), per run the input transform (V = B^T d B, [a*a][C][P] for
 * N * ceil(OH/m) * ceil(OW/m) tiles, P: that count rounded up by
 * det_wino_tile_stride), the a*a products M[e] = U[e]^T V[e] ([a*a][O][P])
 * as one strided-batched SGEMM, and the output transform (Y = A^T M A)
 * with bias, residual and ReLU fused.
 *
 * The SGEMM is column-major (M[e]^T = V[e]^T U[e]: V and M as they lie, U
 * transposed by its layout) through ocl_sgemm_batched_xgemm, so that
 * CLBlast's Xgemm kernel runs on the buffers themselves: CLBlast's
 * row-major call copied and transposed the products and padded the inputs
 * on every call, and below its XGEMM_MIN_INDIRECT_SIZE took the slow
 * XgemmDirect (F(4x4) at RetinaNet's P3 on PoCL: 340 against 40 ms).
 *
 * F(2x2, 3x3): 16 products per 4 output pixels, 2.25x fewer multiplications
 * than im2col + SGEMM, at errors near float rounding (the transforms only
 * add and halve). F(4x4, 3x3): 36 products per 16 output pixels, 4x fewer,
 * at errors about ten times larger (points 0, +-1, +-2: the transforms
 * scale by up to 8 and the filters by 1/24), still far inside the parity
 * bounds; the engine times both (DET_CONV_WINOGRAD, DET_CONV_WINOGRAD4).
 * Also a C reference of the same arithmetic. */
#ifndef CANOPY_DETECT_WINOGRAD_H
#define CANOPY_DETECT_WINOGRAD_H

#include <stdbool.h>
#include <stddef.h>

#include "canopy/gpu.h"
#include "detect/graph.h"

/* The tile sizes: m of F(m x m, 3x3) and a = m + 2. */
#define DET_WINO_M_MAX 4
#define DET_WINO_A_MAX (DET_WINO_M_MAX + 2)

typedef struct det_wino {
    cl_kernel input[2], output[2]; /* [0]: F(2x2), [1]: F(4x4) */
    cl_mem v, m; /* scratch: transformed inputs and products */
    size_t v_floats, m_floats;
} det_wino;

/* Whether node n can run as Winograd F(m x m, 3x3) (either m). */
bool det_wino_applies(const det_node *n);

/* The tile stride P of V and M for `tiles` tiles: a multiple of 128, which
 * covers the M tile (MWG, times VWM) of every Xgemm parameter set CLBlast's
 * tuners search. */
size_t det_wino_tile_stride(size_t tiles);

/* Scratch floats of V and M for one run of F(m x m). */
void det_wino_scratch(int m, int c, int o, int oh, int ow, int n, size_t *v, size_t *mf);

/* U = G g G^T of weight [o][c][3][3] into u [a*a][c][o] (F(4x4): computed
 * in double, rounded once). */
void det_wino_filters(int m, const float *weight, int o, int c, float *u);

/* The C transforms of one tile, the kernels' float operations in their
 * order: V = B^T d B of tile (ty, tx) of plane `in` (h x w, zero padding
 * pad) into v[a*a] (e = a i + j); and Y = A^T p A + bias (+ add) (ReLU) of
 * the products p[a*a] into output plane `out` (oh x ow; add: the same plane
 * of the residual or NULL), the tile's m x m pixels that lie inside. */
void det_wino_input_tile(int m, const float *in, int h, int w, int pad, int ty, int tx,
                         float *v);
void det_wino_output_tile(int m, const float *p, float bias, const float *add, bool relu,
                          float *out, int oh, int ow, int ty, int tx);

/* The C reference of F(m x m): the same transforms and sums in float on
 * planes c * N + n of h x w (in), out planes o * N + n of (h + 2 pad - 2)
 * squared likewise; add (NULL: none) has out's layout. */
void det_wino_ref(int m, const float *in, const float *weight, const float *bias,
                  const float *add, bool relu, float *out, int c, int o, int n, int h, int w,
                  int pad);

/* Kernels (scratch empty). */
cnp_status det_wino_init(det_wino *w, ocl_ctx *ctx, cnp_err *err);
/* Grows the scratch to at least v and m floats (new buffers zeroed on q). */
cnp_status det_wino_reserve(det_wino *w, cl_context cl, cl_command_queue q, size_t v, size_t m,
                            cnp_err *err);
void det_wino_release(det_wino *w);
/* Transforms weight for F(m x m) and uploads U (caller releases *u). */
cnp_status det_wino_upload(cl_context cl, int m, const float *weight, int o, int c, cl_mem *u,
                           cnp_err *err);
/* One convolution as F(m x m) on q (u: det_wino_upload's for the same m):
 * in (c planes of n patches, h x w, zero padding pad) to out, + bias, + add
 * (NULL: none), ReLU when relu. The scratch must hold det_wino_scratch's
 * sizes. */
cnp_status det_wino_run(det_wino *w, int m, cl_command_queue q, cl_mem in, cl_mem u, cl_mem bias,
                        cl_mem add, bool relu, cl_mem out, int c, int o, int n, int h, int wd,
                        int pad, cnp_err *err);

/* The graph engine's side (graph_engine_internal.h): U of both tile sizes
 * for every node it applies to and scratch for the planned sizes; node i
 * through F(m x m). */
struct det_graph_engine;
cnp_status ge_wino_prepare(struct det_graph_engine *e, cnp_err *err);
cnp_status ge_run_conv_wino(struct det_graph_engine *e, int i, int m, cnp_err *err);
void ge_wino_free(struct det_graph_engine *e);

#endif
