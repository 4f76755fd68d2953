/* The CPU backend: graph models (det_graph, detect/graph.h) on the host
 * through oneDNN (libdnnl 2.x, C API). Built when CANOPY_WITH_DNNL is on
 * (CANOPY_HAVE_DNNL defined); not part of the public API.
 *
 * Convolutions are oneDNN primitives with the bias, the residual add (a
 * `sum` post-op on a destination that already holds the residual) and the
 * ReLU fused; 3x3 stride-1 convolutions run on oneDNN's Winograd where it
 * offers one and it measured faster for the node's shape (or where forced).
 * Activations stay in oneDNN's blocked layout nChw16c from the first
 * convolution to the heads; the input (plain NCHW) and the outputs read
 * back (plain NCHW) are the only reorders. Max pool, ReLU nodes and nearest
 * upsample + add run as C loops over the blocked layout (PyTorch's index
 * rules, the same as graph_ref.c's). Primitives, reordered weights and the
 * activation plan are made once per input size and batch and reused; the
 * activations share one arena, each node's buffer reused once its readers
 * have run.
 *
 * RetinaNet graphs: the input transform (det_retina_input), the decode and
 * NMS (det_retina_ref_postprocess) are the C reference's, run per patch in
 * parallel. */
#ifndef CANOPY_DETECT_CPU_DNNL_GRAPH_H
#define CANOPY_DETECT_CPU_DNNL_GRAPH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "canopy/detect.h"
#include "canopy/status.h"
#include "detect/graph.h"

/* Convolution algorithm of 3x3 stride-1 convolutions (others: direct). */
enum det_dnnl_conv {
    DET_DNNL_CONV_AUTO = 0,     /* Winograd where offered and measured faster */
    DET_DNNL_CONV_DIRECT = 1,   /* oneDNN's direct (JIT / brgemm) convolutions */
    DET_DNNL_CONV_WINOGRAD = 2, /* Winograd wherever oneDNN offers it */
};

typedef struct det_dnnl_opts {
    int threads;             /* OpenMP threads; 0: every core */
    enum det_dnnl_conv conv;
    int max_batch;           /* patches per predict_batch call; 0 or 1: one */
    /* Keep every node's output to the end of a run (no buffer reuse), so
     * det_dnnl_graph_output reads any node. For tests. */
    bool keep_all;
    /* conv = auto: a file that remembers the measured choices (read at
     * creation, rewritten when a plan measured new shapes), so that runs
     * after the first choose alike and time nothing. NULL: none. */
    const char *choices_file;
} det_dnnl_opts;

typedef struct det_dnnl_graph det_dnnl_graph;

/* Checks g (shapes at its nominal size) and creates the oneDNN engine; the
 * per-size plans are made on first use. g and its weights must outlive the
 * engine. opts NULL: all defaults. */
cnp_status det_dnnl_graph_create(const det_graph *g, const det_dnnl_opts *opts,
                                 det_dnnl_graph **out, cnp_err *err);

/* Frees everything; accepts NULL. */
void det_dnnl_graph_free(det_dnnl_graph *e);

/* Patches one det_dnnl_graph_predict_batch call takes (>= 1). */
int det_dnnl_graph_max_batch(const det_dnnl_graph *e);

/* OpenMP threads the engine runs with. */
int det_dnnl_graph_threads(const det_dnnl_graph *e);

/* Runs the graph on n inputs of channels x h x w (plain NCHW, n of them
 * back to back; channels: node 0's). Outputs stay inside the engine until
 * the next run (det_dnnl_graph_output). */
cnp_status det_dnnl_graph_run(det_dnnl_graph *e, const float *input, int n, int h, int w,
                              cnp_err *err);

/* Node `node`'s output of the last run as plain NCHW (n x c x h x w, the
 * shape det_graph_ref_shapes gives; *c.. receive it) into dst, which holds
 * at least cap floats. The node must still hold its output: a head of a
 * RetinaNet, the last node, or any node with keep_all. */
cnp_status det_dnnl_graph_output(det_dnnl_graph *e, int node, float *dst, size_t cap, int *c,
                                 int *h, int *w, cnp_err *err);

/* det_retina_ref_predict of n windows of one size (patches[i].w x .h at
 * (.x0, .y0) of an RGBA8 image img_w x img_h, rows 4 * img_w bytes apart),
 * at most max_batch of them, through the network together. out[i] /
 * n_out[i]: window i's detections (malloc'd, NULL when 0) in window
 * coordinates, score descending. On failure every out[i] is NULL. */
cnp_status det_dnnl_graph_predict_batch(det_dnnl_graph *e, const uint8_t *rgba, uint32_t img_w,
                                        uint32_t img_h, const det_tile *patches, size_t n,
                                        det_detection **out, size_t *n_out, cnp_err *err);

/* The algorithm node i ran with in the last plan made for its size
 * (DET_DNNL_CONV_AUTO for non-conv nodes or when none was made yet), and
 * oneDNN's name of its implementation ("" when none). */
enum det_dnnl_conv det_dnnl_graph_node_conv(const det_dnnl_graph *e, int i, const char **impl);

/* Seconds spent per node over the runs made while timing is on (n_nodes
 * entries; node 0: the input transform of predict_batch; post: decode and
 * NMS). times NULL: off. For the bench. */
typedef struct det_dnnl_times {
    double *node;
    double post;
} det_dnnl_times;
void det_dnnl_graph_set_times(det_dnnl_graph *e, det_dnnl_times *times);

#endif
