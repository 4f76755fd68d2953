/* The second direct convolution kernel, graph_conv_px (kernels/graph.cl),
 * for narrow layers: a work-item per output pixel for a block of PCOB
 * output channels in registers, no local memory, no barriers; any stride
 * (a build option, like the kernel size and dilation: RetinaNet's 7x7
 * stride-2 stem, ResNet's 3x3 and 1x1 stride-2 convs). Weights are
 * re-laid once at load ([ceil(O / cob)][C][k * k][cob], zeros past O).
 * Stride-1 nodes run its hand-vectorized form graph_conv_pxv instead (a
 * run of pixels per work-item as one vector: PoCL does not vectorize
 * graph_conv_px across work-items). For the graph engine both are the
 * pixel path (DET_CONV_PIXEL), timed against the others (graph_paths.c). */
#ifndef CANOPY_DETECT_CONV_PX_H
#define CANOPY_DETECT_CONV_PX_H

#include <stdbool.h>
#include <stddef.h>

#include "canopy/gpu.h"
#include "detect/graph.h"

/* Whether node n can run as graph_conv_px. */
bool det_px_applies(const det_node *n);

/* Whether node n runs as graph_conv_px's stride-1 form, graph_conv_pxv (a
 * run of 4, 8 or 16 pixels per work-item as one vector, fma): the pixel
 * path's kernel for every stride-1 node it applies to. */
bool det_px_vec_applies(const det_node *n);

/* graph_conv_pxv's output channels per work-item for o output channels. */
int det_px_vec_cob(int o);

/* The C reference of graph_conv_pxv, bit for bit: conv node n (weights
 * [o][c][k][k], stride 1) on in (cin x h x w) into out (cout x oh x ow),
 * each output an fmaf chain over c, ky, kx from 0 (rows in the padding
 * skipped, columns in it adding w * 0), then + bias, + add (NULL: none),
 * ReLU when n's act says so. */
void det_px_vec_ref(const det_node *n, const float *in, int h, int w, const float *add,
                    float *out, int oh, int ow);

/* Output channels per work-item for a node of o output channels. */
int det_px_cob(int o);

/* Floats of the re-laid weights of o x c x k x k in blocks of cob. */
size_t det_px_weight_floats(int o, int c, int k, int cob);

/* weight [o][c][k][k] into out [ceil(o / cob)][c][k * k][cob]. */
void det_px_weights(const float *weight, int o, int c, int k, int cob, float *out);

/* The graph engine's side (graph_engine_internal.h): kernels and re-laid
 * weights for every node it applies to; node i through graph_conv_px. */
struct det_graph_engine;
cnp_status ge_px_prepare(struct det_graph_engine *e, cnp_err *err);
cnp_status ge_run_conv_px(struct det_graph_engine *e, int i, cnp_err *err);
void ge_px_free(struct det_graph_engine *e);

#endif
