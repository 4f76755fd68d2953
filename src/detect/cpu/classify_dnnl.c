/* The classifier table on the CPU backend (model_backend.h): crops cut and
 * transformed in C (classify.h, the reference's code), the ResNet through
 * oneDNN (dnnl_graph.h) in batches, softmax on the host. */
#include <stdlib.h>

#include "detect/classify.h"
#include "detect/detect_internal.h"
#include "detect/cpu/dnnl_graph.h"
#include "detect/model_backend.h"

enum { BATCH = 16 };

typedef struct classify_dnnl {
    const det_graph *g;
    det_dnnl_graph *e;
} classify_dnnl;

cnp_status det_classify_dnnl_create(const det_model *m, int threads, const char *cache_dir,
                                    void **self, cnp_err *err)
{
    classify_dnnl *c = calloc(1, sizeof *c);
    if (!c) {
        cnp_err_set(err, "out of memory for the classifier");
        return CNP_ERR_NOMEM;
    }
    c->g = det_model_graph(m);
    /* The measured Winograd / direct choices, remembered next to the kernel
     * cache as the detectors' are: later runs choose alike (the same crop,
     * the same score) and measure nothing. */
    char file[CNP_STR_LONG + 64] = "";
    if (cache_dir)
        det_cpu_choices_file(cache_dir, m, threads, 1, file, sizeof file);
    det_dnnl_opts o = {.threads = threads, .max_batch = BATCH,
                       .choices_file = file[0] ? file : NULL};
    cnp_status result = det_dnnl_graph_create(c->g, &o, &c->e, err);
    if (result != CNP_OK) {
        free(c);
        return result;
    }
    *self = c;
    return CNP_OK;
}

static void dnnl_free(void *self)
{
    classify_dnnl *c = self;
    if (c)
        det_dnnl_graph_free(c->e);
    free(c);
}

static cnp_status dnnl_forward(void *self, const float *crops, int n, float *logits,
                               cnp_err *err)
{
    classify_dnnl *c = self;
    int S = c->g->classify.size, oc, oh, ow;
    /* Batches of 1, 2, 4, 8 or 16 (the crops' buffer holds 16, the slots
     * past n earlier crops or zeros): a handful of oneDNN plans for any
     * number of trees rather than one per remainder. */
    int run = 1;
    while (run < n)
        run *= 2;
    if (run > det_dnnl_graph_max_batch(c->e))
        run = n;
    cnp_status result = det_dnnl_graph_run(c->e, crops, run, S, S, err);
    if (result == CNP_OK)
        result = det_dnnl_graph_output(c->e, c->g->n_nodes - 1, logits,
                                       (size_t)run * (size_t)c->g->classify.num_classes, &oc,
                                       &oh, &ow, err);
    return result;
}

static cnp_status dnnl_classify(void *self, const det_pixels *img, cnp_tree *trees, size_t n,
                                cnp_err *err)
{
    classify_dnnl *c = self;
    return det_classify_host(c->g, img, trees, n, det_dnnl_graph_max_batch(c->e), dnnl_forward,
                             c, err);
}

static bool dnnl_accepts(const det_model *m)
{
    return det_model_is_classifier(m);
}

const det_backend_i det_backend_classify_dnnl = {
    .name = "classify/cpu-onednn",
    .on_device = false,
    .accepts = dnnl_accepts,
    .free = dnnl_free,
    .classify = dnnl_classify,
};
