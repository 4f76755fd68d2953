/* The classifier table on the OpenCL device (model_backend.h,
 * "classify/opencl"): per batch of trees, crop_resize (kernels/crop.cl)
 * cuts, normalises and resizes every crop from the image already on the
 * device straight into the graph engine's batched input, the ResNet runs
 * through the graph engine (det_graph_engine_run_raw_batch: the same
 * convolution paths and tuned GEMM as the detectors), crop_softmax gives
 * each crop's type and score, and only those two numbers per tree are read
 * back. The host computes the crop rectangles (det_crop_rect), 16 bytes a
 * tree. */
#include <stdlib.h>
#include <string.h>

#include "detect/classify.h"
#include "detect/detect_internal.h"
#include "detect/model_backend.h"

enum { BATCH = 16 };

typedef struct classify_ocl {
    ocl_ctx *ctx;
    det_graph g; /* the model's graph, run as a raw graph of 3 input channels */
    det_graph_engine *ge;
    cl_kernel resize, softmax;
    cl_mem rect, type, score;
    int batch;
} classify_ocl;

static void ocl_free(void *self)
{
    classify_ocl *c = self;
    if (!c)
        return;
    det_graph_engine_free(c->ge);
    if (c->resize)
        clReleaseKernel(c->resize);
    if (c->softmax)
        clReleaseKernel(c->softmax);
    ocl_buffer_release(c->rect);
    ocl_buffer_release(c->type);
    ocl_buffer_release(c->score);
    free(c);
}

static cnp_status make_buffers(classify_ocl *c, cnp_err *err)
{
    cl_context cx = ocl_ctx_context(c->ctx);
    size_t n = (size_t)c->batch;
    cl_int rc = CL_SUCCESS;
    c->rect = ocl_buffer_create(cx, CL_MEM_READ_ONLY, n * sizeof(cl_int4), NULL, &rc);
    if (rc == CL_SUCCESS)
        c->type = ocl_buffer_create(cx, CL_MEM_WRITE_ONLY, n * sizeof(cl_int), NULL, &rc);
    if (rc == CL_SUCCESS)
        c->score = ocl_buffer_create(cx, CL_MEM_WRITE_ONLY, n * sizeof(cl_float), NULL, &rc);
    return ocl_check(rc, "clCreateBuffer(classifier)", err);
}

static cnp_status ocl_create(const det_model *m, ocl_ctx *dev, const cnp_detector_config *dc,
                             void **self, cnp_err *err)
{
    classify_ocl *c = calloc(1, sizeof *c);
    if (!c) {
        cnp_err_set(err, "out of memory for the classifier");
        return CNP_ERR_NOMEM;
    }
    c->ctx = dev;
    c->g = *det_model_graph(m);
    /* The engine runs it as it runs a crown graph: the caller fills node 0. */
    c->g.input.kind = DET_INPUT_CROWN;
    c->g.input.channels = 3;
    uint32_t S = (uint32_t)c->g.classify.size;
    /* On a CPU device the engine would time paths at 128 x 128, where the
     * folded fc (a kernel the size of the last map at S x S) does not fit:
     * GEMM everywhere there. */
    cl_device_type type = 0;
    clGetDeviceInfo(ocl_ctx_device(dev), CL_DEVICE_TYPE, sizeof type, &type, NULL);
    det_graph_engine_opts o = {
        .conv = (type & CL_DEVICE_TYPE_CPU) ? DET_CONV_GEMM : (enum det_conv_path)dc->conv,
        .max_batch = BATCH,
    };
    cnp_status result = det_graph_engine_create_opts(dev, &c->g, S, S, &o, &c->ge, err);
    if (result == CNP_OK) {
        c->batch = det_graph_engine_max_batch(c->ge);
        result = ocl_kernel_create(dev, "crop", "", "crop_resize", &c->resize, err);
    }
    if (result == CNP_OK)
        result = ocl_kernel_create(dev, "crop", "", "crop_softmax", &c->softmax, err);
    if (result == CNP_OK)
        result = make_buffers(c, err);
    if (result != CNP_OK) {
        ocl_free(c);
        return result;
    }
    *self = c;
    return CNP_OK;
}

/* One batch of m <= batch trees: crops, graph, softmax, read back. */
static cnp_status run_batch(classify_ocl *c, const det_pixels *img, cnp_tree *trees, int m,
                            cnp_err *err)
{
    const det_classifier *cl = &c->g.classify;
    cl_command_queue q = ocl_ctx_queue(c->ctx);
    cl_int4 rect[BATCH];
    for (int i = 0; i < m; i++) {
        uint32_t r[4];
        det_pixels_crop_rect(cl, img, &trees[i], r);
        rect[i] = (cl_int4){{(cl_int)r[0], (cl_int)r[1], (cl_int)r[2], (cl_int)r[3]}};
    }
    cnp_status result = ocl_check(clEnqueueWriteBuffer(q, c->rect, CL_FALSE, 0,
                                                       (size_t)m * sizeof *rect, rect, 0, NULL,
                                                       NULL),
                                  "uploading crop rectangles", err);
    cl_int img_w = (cl_int)img->w, S = cl->size, interp = cl->interp, N = m,
           K = cl->num_classes;
    cl_float4 mean = {{0, 0, 0, 0}}, std = {{1, 1, 1, 1}};
    if (cl->normalize) {
        mean = (cl_float4){{cl->mean[0], cl->mean[1], cl->mean[2], 0}};
        std = (cl_float4){{cl->std[0], cl->std[1], cl->std[2], 1}};
    }
    cl_mem in = det_graph_engine_input(c->ge), out = NULL;
    if (result == CNP_OK)
        result = OCL_SET_ARGS(c->resize, "crop_resize", err, OCL_ARG(img->dev), OCL_ARG(img_w),
                              OCL_ARG(c->rect), OCL_ARG(S), OCL_ARG(interp), OCL_ARG(mean),
                              OCL_ARG(std), OCL_ARG(in), OCL_ARG(N));
    size_t global[3] = {(size_t)S, (size_t)S, (size_t)m};
    if (result == CNP_OK)
        result = ocl_enqueue(q, c->resize, 3, global, NULL, "crop_resize", err);
    int oc, oh, ow;
    if (result == CNP_OK)
        result = det_graph_engine_run_raw_batch(c->ge, m, S, S, &out, &oc, &oh, &ow, err);
    if (result == CNP_OK)
        result = OCL_SET_ARGS(c->softmax, "crop_softmax", err, OCL_ARG(out), OCL_ARG(K),
                              OCL_ARG(N), OCL_ARG(c->type), OCL_ARG(c->score));
    size_t g1 = (size_t)m;
    if (result == CNP_OK)
        result = ocl_enqueue(q, c->softmax, 1, &g1, NULL, "crop_softmax", err);
    cl_int types[BATCH];
    cl_float scores[BATCH];
    if (result == CNP_OK)
        result = ocl_check(clEnqueueReadBuffer(q, c->type, CL_FALSE, 0, g1 * sizeof *types,
                                               types, 0, NULL, NULL),
                           "reading types", err);
    if (result == CNP_OK)
        result = ocl_check(clEnqueueReadBuffer(q, c->score, CL_TRUE, 0, g1 * sizeof *scores,
                                               scores, 0, NULL, NULL),
                           "reading type scores", err);
    for (int i = 0; result == CNP_OK && i < m; i++) {
        trees[i].type = types[i];
        trees[i].type_score = scores[i];
        trees[i].typed = true;
    }
    return result;
}

static cnp_status ocl_classify(void *self, const det_pixels *img, cnp_tree *trees, size_t n,
                               cnp_err *err)
{
    classify_ocl *c = self;
    cnp_status result = CNP_OK;
    if (!img->dev) {
        cnp_err_set(err, "classify/opencl: the image is not on the device");
        return CNP_ERR_INVALID;
    }
    for (size_t i = 0; result == CNP_OK && i < n; i += (size_t)c->batch) {
        int m = n - i < (size_t)c->batch ? (int)(n - i) : c->batch;
        result = run_batch(c, img, trees + i, m, err);
    }
    if (result != CNP_OK)
        clFinish(ocl_ctx_queue(c->ctx)); /* nothing left reading the host's arrays */
    return result;
}

static bool ocl_accepts(const det_model *m)
{
    return det_model_is_classifier(m);
}

const det_backend_i det_backend_classify_ocl = {
    .name = "classify/opencl",
    .on_device = true,
    .accepts = ocl_accepts,
    .create = ocl_create,
    .free = ocl_free,
    .classify = ocl_classify,
};
