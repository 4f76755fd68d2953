/* OpenCL inference of the detector: preprocessing, convolutions (direct
 * tiled kernel or im2col + CLBlast SGEMM, whichever measured faster per
 * layer), max pools, and decode with 3x3 peak extraction, all on the device
 * queue. Per image the host reads back only the tree count and the list.
 *
 * Device buffers (two activation buffers, the im2col matrix, the tree list)
 * are sized once for the largest tile at creation and reused. */
#include <clblast_c.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "canopy/log.h"
#include "detect/detect_internal.h"

typedef struct eng_layer {
    const det_layer *l;
    cl_kernel conv;     /* detect_conv (conv layers) */
    cl_kernel im2col;   /* detect_im2col (conv layers with k > 1) */
    cl_kernel bias_act; /* detect_bias_act (GEMM path) */
    cl_kernel pool;     /* detect_maxpool (pool layers) */
    cl_mem weight, bias;
    bool direct_ok;     /* the direct kernel's local memory fits the device */
    enum det_conv_path chosen;
    double direct_s, gemm_s;
    uint32_t in_w, in_h, out_w, out_h; /* at the largest tile */
    uint32_t meas_w, meas_h;           /* input size the path choice is timed at */
} eng_layer;

/* Device NMS (kernels/detect.cl, "Non-maximum suppression"): kernels and
 * buffers for up to `cap` boxes, grown when an image has more. */
typedef struct eng_nms {
    cl_kernel boxes, order, mask, select, gather;
    cl_mem box, score, label;    /* input: boxes, scores, labels */
    cl_mem index, sbox, slabel;  /* sorted: original index, box, label */
    cl_mem bits, removed;        /* overlap mask (one chunk of rows), suppressed rows */
    cl_mem keep, count, out;     /* kept indices, their number, crowns read back */
    size_t cap, bits_bytes;      /* boxes the buffers hold; bytes of `bits` */
    uint32_t chunk_override;     /* tests: rows per pass, 0 = by bytes */
    size_t select_local;         /* work-group size of detect_nms_select */
} eng_nms;

/* Bytes of the overlap mask computed per pass: bounds device memory for
 * images with very many crowns (n^2 / 8 bytes in all). */
#define ENG_NMS_MASK_BYTES ((size_t)32 << 20)

struct det_engine {
    ocl_ctx *ctx;
    const det_model *m;
    cl_context cl;
    cl_command_queue q;
    uint32_t tile;
    uint32_t measure_tile; /* tile side the path choice is timed at */
    int overlap;
    float threshold;
    size_t n_layers;
    eng_layer *layers;
    cl_kernel pre, peaks;
    cl_mem act[2];
    cl_mem col;
    cl_mem gemm_tmp; /* CLBlast's scratch (padding/transposes), sized once */
    size_t gemm_tmp_bytes;
    cl_mem trees, count;
    size_t tree_cap;
    enum det_conv_path force;
    size_t timed_layers; /* conv layers timed at creation (0: remembered) */
    float nms_iou;
    eng_nms nms;
};

/* Geometry of the direct kernel (kernels/detect.cl). */
#define ENG_TX 16
#define ENG_TY 8
#define ENG_COB 8
#define ENG_CIB 4

static cnp_status cl_ok(cl_int code, const char *what, cnp_err *err)
{
    return ocl_check(code, what, err);
}

static void base_options(const det_model *m, char *buf, size_t len)
{
    int ch[4] = {0, 0, 0, 0};
    for (int i = 0; i < m->n_channels; i++)
        ch[i] = m->channel[i];
    snprintf(buf, len,
             "-DNCH=%d -DCH0=%d -DCH1=%d -DCH2=%d -DCH3=%d -DOUT_HEAT=%d -DOUT_LR=%d "
             "-DOUT_DX=%d -DOUT_DY=%d",
             m->n_channels, ch[0], ch[1], ch[2], ch[3], m->out_index[DET_OUT_HEATMAP],
             m->out_index[DET_OUT_LOG_RADIUS], m->out_index[DET_OUT_DX],
             m->out_index[DET_OUT_DY]);
}

static cnp_status create_buffer(det_engine *e, size_t bytes, const void *host, cl_mem *out,
                                const char *what, cnp_err *err)
{
    cl_int rc;
    cl_mem_flags flags = host ? CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR : CL_MEM_READ_WRITE;
    *out = ocl_buffer_create(e->cl, flags, bytes ? bytes : 4, (void *)host, &rc);
    return cl_ok(rc, what, err);
}

static cnp_status layer_kernels(det_engine *e, eng_layer *el, const char *base, cnp_err *err)
{
    const det_layer *l = el->l;
    char opts[512];
    snprintf(opts, sizeof opts, "%s -DK=%d -DDIL=%d -DRELU=%d", base,
             l->type == DET_LAYER_CONV ? l->k : 1,
             l->type == DET_LAYER_CONV ? l->dilation : 1, l->relu ? 1 : 0);
    if (l->type == DET_LAYER_MAXPOOL)
        return ocl_kernel_create(e->ctx, "detect", base, "detect_maxpool", &el->pool, err);
    cnp_status result = ocl_kernel_create(e->ctx, "detect", opts, "detect_conv", &el->conv, err);
    if (result == CNP_OK)
        result = ocl_kernel_create(e->ctx, "detect", opts, "detect_bias_act", &el->bias_act,
                                   err);
    if (result == CNP_OK && l->k > 1)
        result = ocl_kernel_create(e->ctx, "detect", opts, "detect_im2col", &el->im2col, err);
    if (result != CNP_OK)
        return result;
    size_t wbytes = sizeof(float) * (size_t)l->out * l->in * l->k * l->k;
    result = create_buffer(e, wbytes, l->weight, &el->weight, "conv weights", err);
    if (result == CNP_OK)
        result = create_buffer(e, sizeof(float) * (size_t)l->out, l->bias, &el->bias,
                               "conv bias", err);
    int rad = l->dilation * (l->k / 2);
    size_t local = sizeof(float) * ((size_t)ENG_CIB * (ENG_TY + 2 * rad) * (ENG_TX + 2 * rad) +
                                    (size_t)ENG_COB * ENG_CIB * l->k * l->k);
    el->direct_ok = local <= ocl_ctx_local_mem(e->ctx) &&
                    ocl_ctx_max_work_group(e->ctx) >= ENG_TX * ENG_TY;
    return result;
}

/* One kernel argument: its size and the address of its value. */
typedef struct karg {
    size_t size;
    const void *value;
} karg;

#define KARG(v) ((karg){sizeof(v), &(v)})

/* Sets arguments 0..n-1 of kernel k in order. On the first failing call,
 * reports that call's own OpenCL code, the kernel and the argument index
 * (OR-ing the codes of several calls would name a wrong error). */
static cnp_status set_args(cl_kernel k, const char *name, const karg *args, size_t n,
                           cnp_err *err)
{
    for (size_t i = 0; i < n; i++) {
        cl_int rc = clSetKernelArg(k, (cl_uint)i, args[i].size, args[i].value);
        if (rc != CL_SUCCESS) {
            char what[96];
            snprintf(what, sizeof what, "clSetKernelArg(%s, %zu)", name, i);
            return cl_ok(rc, what, err);
        }
    }
    return CNP_OK;
}

#define SET_ARGS(k, name, err, ...)                                                   \
    set_args((k), (name), (const karg[]){__VA_ARGS__},                                \
             sizeof((const karg[]){__VA_ARGS__}) / sizeof(karg), (err))

static cnp_status enqueue(det_engine *e, cl_kernel k, cl_uint dims, const size_t *global,
                          const size_t *local, const char *what, cnp_err *err)
{
    for (cl_uint d = 0; d < dims; d++)
        if (global[d] == 0)
            return CNP_OK;
    return cl_ok(clEnqueueNDRangeKernel(e->q, k, dims, NULL, global, local, 0, NULL, NULL),
                 what, err);
}

static cnp_status run_conv_direct(det_engine *e, eng_layer *el, cl_mem in, cl_mem out, int w,
                                  int h, cnp_err *err)
{
    const det_layer *l = el->l;
    cnp_status result = SET_ARGS(el->conv, "detect_conv", err, KARG(in), KARG(el->weight),
                     KARG(el->bias), KARG(out), KARG(l->in), KARG(h), KARG(w), KARG(l->out));
    if (result != CNP_OK)
        return result;
    size_t global[3] = {ocl_round_up((size_t)w, ENG_TX), ocl_round_up((size_t)h, ENG_TY),
                        (size_t)(l->out + ENG_COB - 1) / ENG_COB};
    size_t local[3] = {ENG_TX, ENG_TY, 1};
    if (w == 0 || h == 0)
        return CNP_OK;
    return enqueue(e, el->conv, 3, global, local, "detect_conv", err);
}

/* Scratch bytes CLBlast needs for out x n x kdim (row-major, as we call it). */
static CLBlastStatusCode gemm_tmp_size(det_engine *e, size_t m, size_t n, size_t kdim,
                                       size_t *bytes)
{
    /* In bytes (1000^3 gives 3 x 1024^2 x 4: A, B and C padded). Zero when
     * CLBlast runs its direct kernel without scratch. */
    return CLBlastSGemmTempBufferSize(CLBlastLayoutRowMajor, CLBlastTransposeNo,
                                      CLBlastTransposeNo, m, n, kdim, 0, kdim, 0, n, 0, n, &e->q,
                                      bytes);
}

static cnp_status run_conv_gemm(det_engine *e, eng_layer *el, cl_mem in, cl_mem out, int w,
                                int h, cnp_err *err)
{
    const det_layer *l = el->l;
    int n = w * h;
    if (n == 0)
        return CNP_OK;
    cl_mem b = in;
    cnp_status result;
    if (l->k > 1) {
        result = SET_ARGS(el->im2col, "detect_im2col", err, KARG(in), KARG(e->col), KARG(l->in),
                         KARG(h), KARG(w));
        if (result != CNP_OK)
            return result;
        size_t global[2] = {ocl_round_up((size_t)n, 64), (size_t)l->in};
        result = enqueue(e, el->im2col, 2, global, NULL, "detect_im2col", err);
        if (result != CNP_OK)
            return result;
        b = e->col;
    }
    size_t kdim = (size_t)l->in * l->k * l->k, need = 0;
    CLBlastStatusCode st = gemm_tmp_size(e, (size_t)l->out, (size_t)n, kdim, &need);
    if (st == CLBlastSuccess && need <= e->gemm_tmp_bytes && e->gemm_tmp)
        st = CLBlastSgemmWithTempBuffer(CLBlastLayoutRowMajor, CLBlastTransposeNo,
                                        CLBlastTransposeNo, (size_t)l->out, (size_t)n, kdim,
                                        1.0f, el->weight, 0, kdim, b, 0, (size_t)n, 0.0f, out,
                                        0, (size_t)n, &e->q, NULL, e->gemm_tmp);
    else if (st == CLBlastSuccess) /* not expected: sizes only shrink below the tile */
        st = CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo,
                          (size_t)l->out, (size_t)n, kdim, 1.0f, el->weight, 0, kdim, b, 0,
                          (size_t)n, 0.0f, out, 0, (size_t)n, &e->q, NULL);
    if (st != CLBlastSuccess) {
        cnp_err_set(err, "layer %s: CLBlastSgemm(%d x %d x %zu) failed: status %d", l->name,
                    l->out, n, kdim, (int)st);
        return CNP_ERR_OPENCL;
    }
    result = SET_ARGS(el->bias_act, "detect_bias_act", err, KARG(out), KARG(el->bias), KARG(n),
                     KARG(l->out));
    if (result != CNP_OK)
        return result;
    size_t global[2] = {ocl_round_up((size_t)n, 64), (size_t)l->out};
    return enqueue(e, el->bias_act, 2, global, NULL, "detect_bias_act", err);
}

static cnp_status run_pool(det_engine *e, eng_layer *el, cl_mem in, cl_mem out, int w, int h,
                           cnp_err *err)
{
    cnp_status result = SET_ARGS(el->pool, "detect_maxpool", err, KARG(in), KARG(out), KARG(h),
                     KARG(w));
    if (result != CNP_OK)
        return result;
    size_t global[3] = {(size_t)w / 2, (size_t)h / 2, (size_t)el->l->in};
    return enqueue(e, el->pool, 3, global, NULL, "detect_maxpool", err);
}

static enum det_conv_path layer_path(const det_engine *e, const eng_layer *el)
{
    enum det_conv_path p = e->force != DET_CONV_AUTO ? e->force : el->chosen;
    if (p == DET_CONV_DIRECT && !el->direct_ok)
        p = DET_CONV_GEMM;
    return p;
}

/* Enqueues layer i on a w x h input held in `in`, writing `out`. */
static cnp_status run_layer(det_engine *e, size_t i, enum det_conv_path path, cl_mem in,
                            cl_mem out, int w, int h, cnp_err *err)
{
    eng_layer *el = &e->layers[i];
    if (el->l->type == DET_LAYER_MAXPOOL)
        return run_pool(e, el, in, out, w, h, err);
    if (path == DET_CONV_DIRECT && el->direct_ok)
        return run_conv_direct(e, el, in, out, w, h, err);
    return run_conv_gemm(e, el, in, out, w, h, err);
}

static cnp_status run_preprocess(det_engine *e, cl_mem rgba, uint32_t img_w, uint32_t x0,
                                 uint32_t y0, uint32_t w, uint32_t h, cnp_err *err)
{
    const det_model *m = e->m;
    cl_float4 mean = {{0, 0, 0, 0}}, inv = {{1, 1, 1, 1}};
    for (int c = 0; c < m->n_channels; c++) {
        mean.s[c] = m->mean[c];
        inv.s[c] = 1.0f / m->std[c];
    }
    cl_int iw = (cl_int)img_w, ix = (cl_int)x0, iy = (cl_int)y0, tw = (cl_int)w,
           th = (cl_int)h;
    cnp_status result = SET_ARGS(e->pre, "detect_preprocess", err, KARG(rgba), KARG(iw),
                     KARG(ix), KARG(iy), KARG(tw), KARG(th), KARG(e->act[0]), KARG(mean),
                     KARG(inv));
    if (result != CNP_OK)
        return result;
    size_t global[2] = {ocl_round_up(w, 16), ocl_round_up(h, 8)};
    size_t local[2] = {16, 8};
    return enqueue(e, e->pre, 2, global, local, "detect_preprocess", err);
}

/* Runs preprocessing and every layer on one region; *which is the index
 * of the activation buffer holding the output, *ow / *oh its size. */
static cnp_status run_network(det_engine *e, cl_mem rgba, uint32_t img_w, uint32_t x0,
                              uint32_t y0, uint32_t w, uint32_t h, int *which, uint32_t *ow,
                              uint32_t *oh, cnp_err *err)
{
    cnp_status result = run_preprocess(e, rgba, img_w, x0, y0, w, h, err);
    int cur = 0;
    for (size_t i = 0; result == CNP_OK && i < e->n_layers; i++) {
        eng_layer *el = &e->layers[i];
        result = run_layer(e, i, layer_path(e, el), e->act[cur], e->act[1 - cur], (int)w,
                           (int)h, err);
        if (el->l->type == DET_LAYER_MAXPOOL) {
            w /= 2;
            h /= 2;
        }
        cur = 1 - cur;
    }
    *which = cur;
    *ow = w;
    *oh = h;
    return result;
}

/* Median of the wall time of `repeats` runs of layer i at the largest tile
 * (full) or at the measurement tile (each run finished before the next). A warm-up on a small region first:
 * the first use of a path compiles kernels (CLBlast's at run time). */
static cnp_status time_layer(det_engine *e, size_t i, enum det_conv_path path, int repeats,
                             bool full, double *seconds, cnp_err *err)
{
    eng_layer *el = &e->layers[i];
    double t[16];
    if (repeats < 1)
        repeats = 1;
    if (repeats > 16)
        repeats = 16;
    int ww = el->in_w < 64 ? (int)el->in_w : 64, wh = el->in_h < 64 ? (int)el->in_h : 64;
    cnp_status result = run_layer(e, i, path, e->act[0], e->act[1], ww, wh, err);
    if (result == CNP_OK)
        result = cl_ok(clFinish(e->q), "clFinish", err);
    int tw = full ? (int)el->in_w : (int)el->meas_w, th = full ? (int)el->in_h : (int)el->meas_h;
    for (int r = 0; result == CNP_OK && r < repeats; r++) {
        double t0 = cnp_now();
        result = run_layer(e, i, path, e->act[0], e->act[1], tw, th, err);
        if (result == CNP_OK)
            result = cl_ok(clFinish(e->q), "clFinish", err);
        t[r] = cnp_now() - t0;
    }
    if (result != CNP_OK)
        return result;
    for (int a = 1; a < repeats; a++)
        for (int b = a; b > 0 && t[b] < t[b - 1]; b--) {
            double x = t[b];
            t[b] = t[b - 1];
            t[b - 1] = x;
        }
    *seconds = t[repeats / 2];
    return CNP_OK;
}

/* The file that remembers the auto choice for this device and these conv
 * shapes at this measurement size (the kernel cache directory): what decides
 * the timing, not the weights. */
static void paths_file(const det_engine *e, char *out, size_t len)
{
    int key[4 + 6 * 256];
    size_t n = 0;
    key[n++] = 1; /* format of the file */
    for (size_t i = 0; i < e->n_layers && n + 6 <= sizeof key / sizeof key[0]; i++) {
        const eng_layer *el = &e->layers[i];
        if (el->l->type != DET_LAYER_CONV)
            continue;
        key[n++] = (int)i;
        key[n++] = el->l->in;
        key[n++] = el->l->out;
        key[n++] = el->l->k * 100 + el->l->dilation;
        key[n++] = (int)el->meas_w;
        key[n++] = (int)el->meas_h * 2 + (el->direct_ok ? 1 : 0);
    }
    ocl_cache_file(e->ctx, "conv-paths", key, n * sizeof key[0], out, len);
}

/* Reads the remembered choice: true when the file names a path for every
 * conv layer (lines "<layer> direct|gemm <direct ms> <gemm ms>"). */
static bool paths_load(det_engine *e, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t convs = 0, read = 0;
    for (size_t i = 0; i < e->n_layers; i++)
        convs += e->layers[i].l->type == DET_LAYER_CONV;
    bool seen[256] = {false};
    char line[160], name[16];
    while (fgets(line, sizeof line, f)) {
        unsigned idx;
        double dm, gm;
        if (sscanf(line, "%u %15s %lf %lf", &idx, name, &dm, &gm) != 4 || idx >= e->n_layers ||
            idx >= 256 || seen[idx] || e->layers[idx].l->type != DET_LAYER_CONV)
            break;
        eng_layer *el = &e->layers[idx];
        if (strcmp(name, "direct") == 0 && el->direct_ok)
            el->chosen = DET_CONV_DIRECT;
        else if (strcmp(name, "gemm") == 0)
            el->chosen = DET_CONV_GEMM;
        else
            break;
        el->direct_s = dm / 1e3;
        el->gemm_s = gm / 1e3;
        seen[idx] = true;
        read++;
    }
    fclose(f);
    return read == convs;
}

/* Writes the choice (temporary file, then rename: concurrent workers never
 * read half a file). A failure only costs the next start a measurement. */
static void paths_store(const det_engine *e, const char *path)
{
    char tmp[CNP_STR_LONG + 400];
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    bool ok = true;
    for (size_t i = 0; i < e->n_layers; i++) {
        const eng_layer *el = &e->layers[i];
        if (el->l->type == DET_LAYER_CONV)
            ok = fprintf(f, "%zu %s %.6f %.6f\n", i,
                         el->chosen == DET_CONV_DIRECT ? "direct" : "gemm", el->direct_s * 1e3,
                         el->gemm_s * 1e3) > 0 && ok;
    }
    if (fclose(f) != 0 || !ok || rename(tmp, path) != 0)
        remove(tmp);
}

/* Picks the convolution path per layer: the configured one, or (auto) the
 * faster at the measurement tile: the largest tile on a GPU; on a CPU device
 * (PoCL) at most 128 px, where the full tile would cost seconds of start-up
 * and the ranking is the same. The auto choice is remembered on disk next
 * to the kernel cache (paths_file) and measured only when that file is
 * missing, stale or unreadable. */
static cnp_status choose_paths(det_engine *e, int configured, cnp_err *err)
{
    char file[CNP_STR_LONG + 300];
    bool remembered = false;
    if (configured != DET_CONV_DIRECT && configured != DET_CONV_GEMM) {
        paths_file(e, file, sizeof file);
        if ((remembered = paths_load(e, file))) {
            LOG_DEBUG("detect", "convolution paths from %s", file);
            return CNP_OK;
        }
    }
    for (size_t i = 0; i < e->n_layers; i++) {
        eng_layer *el = &e->layers[i];
        if (el->l->type != DET_LAYER_CONV)
            continue;
        if (configured == DET_CONV_DIRECT || configured == DET_CONV_GEMM) {
            el->chosen = (enum det_conv_path)configured;
            continue;
        }
        /* One timed run each: on a GPU both take milliseconds, on a CPU
         * device (PoCL) more runs would dominate start-up. */
        cnp_status result = time_layer(e, i, DET_CONV_GEMM, 1, false, &el->gemm_s, err);
        if (result == CNP_OK && el->direct_ok)
            result = time_layer(e, i, DET_CONV_DIRECT, 1, false, &el->direct_s, err);
        if (result != CNP_OK)
            return result;
        el->chosen = el->direct_ok && el->direct_s <= el->gemm_s ? DET_CONV_DIRECT
                                                                 : DET_CONV_GEMM;
        e->timed_layers++;
        LOG_DEBUG("detect", "layer %s %ux%u: direct %.3f ms, gemm %.3f ms -> %s", el->l->name,
                  el->meas_w, el->meas_h, el->direct_s * 1e3, el->gemm_s * 1e3,
                  el->chosen == DET_CONV_DIRECT ? "direct" : "gemm");
    }
    if (!remembered && configured != DET_CONV_DIRECT && configured != DET_CONV_GEMM)
        paths_store(e, file);
    return CNP_OK;
}

void det_engine_conv_paths_file(const det_engine *e, char *out, size_t len)
{
    paths_file(e, out, len);
}

size_t det_engine_timed_layers(const det_engine *e)
{
    return e->timed_layers;
}

static cnp_status size_buffers(det_engine *e, cnp_err *err)
{
    const det_model *m = e->m;
    uint32_t w = e->tile, h = e->tile;
    size_t act = (size_t)m->n_channels * w * h, col = 1;
    for (size_t i = 0; i < e->n_layers; i++) {
        eng_layer *el = &e->layers[i];
        el->in_w = w;
        el->in_h = h;
        if (el->l->type == DET_LAYER_MAXPOOL) {
            w /= 2;
            h /= 2;
        } else if (el->l->k > 1) {
            size_t c = (size_t)el->l->in * el->l->k * el->l->k * w * h;
            col = c > col ? c : col;
        }
        el->out_w = w;
        el->out_h = h;
        size_t a = (size_t)el->l->out * w * h;
        act = a > act ? a : act;
    }
    e->tree_cap = (size_t)w * h * 4 + 64;
    w = h = e->measure_tile;
    for (size_t i = 0; i < e->n_layers; i++) {
        e->layers[i].meas_w = w;
        e->layers[i].meas_h = h;
        if (e->layers[i].l->type == DET_LAYER_MAXPOOL) {
            w /= 2;
            h /= 2;
        }
    }
    cnp_status result = create_buffer(e, act * sizeof(float), NULL, &e->act[0], "activations", err);
    if (result == CNP_OK)
        result = create_buffer(e, act * sizeof(float), NULL, &e->act[1], "activations", err);
    if (result == CNP_OK)
        result = create_buffer(e, col * sizeof(float), NULL, &e->col, "im2col matrix", err);
    for (size_t i = 0; result == CNP_OK && i < e->n_layers; i++) {
        const eng_layer *el = &e->layers[i];
        size_t need = 0;
        if (el->l->type == DET_LAYER_CONV &&
            gemm_tmp_size(e, (size_t)el->l->out, (size_t)el->out_w * el->out_h,
                          (size_t)el->l->in * el->l->k * el->l->k, &need) == CLBlastSuccess &&
            need > e->gemm_tmp_bytes)
            e->gemm_tmp_bytes = need;
    }
    if (result == CNP_OK && e->gemm_tmp_bytes)
        result = create_buffer(e, e->gemm_tmp_bytes, NULL, &e->gemm_tmp, "CLBlast scratch", err);
    if (result == CNP_OK)
        result = create_buffer(e, e->tree_cap * sizeof(cl_float4), NULL, &e->trees,
                               "tree list", err);
    if (result == CNP_OK)
        result = create_buffer(e, sizeof(cl_int), NULL, &e->count, "tree count", err);
    /* Defined contents for the timing runs. */
    float zero = 0.0f;
    for (int i = 0; result == CNP_OK && i < 2; i++)
        result = cl_ok(clEnqueueFillBuffer(e->q, e->act[i], &zero, sizeof zero, 0,
                                           act * sizeof(float), 0, NULL, NULL),
                       "clEnqueueFillBuffer", err);
    return result;
}

static void release_kernel(cl_kernel k);
static void release_mem(cl_mem b);

static cnp_status nms_kernels(det_engine *e, const char *base, cnp_err *err)
{
    eng_nms *nm = &e->nms;
    static const char *names[] = {"detect_crown_boxes", "detect_nms_order", "detect_nms_mask",
                                  "detect_nms_select", "detect_crown_gather"};
    cl_kernel *ks[] = {&nm->boxes, &nm->order, &nm->mask, &nm->select, &nm->gather};
    cnp_status result = CNP_OK;
    for (size_t i = 0; result == CNP_OK && i < 5; i++)
        result = ocl_kernel_create(e->ctx, "detect", base, names[i], ks[i], err);
    size_t mwg = ocl_ctx_max_work_group(e->ctx);
    nm->select_local = mwg >= 256 ? 256 : mwg;
    if (result == CNP_OK && mwg < 64) {
        cnp_err_set(err, "detector NMS: the device's work-groups (%zu) are smaller than 64", mwg);
        result = CNP_ERR_OPENCL;
    }
    if (result == CNP_OK)
        result = create_buffer(e, sizeof(cl_int), NULL, &nm->count, "NMS count", err);
    return result;
}

static void nms_release_buffers(eng_nms *nm)
{
    cl_mem *bufs[] = {&nm->box,  &nm->score,   &nm->label, &nm->index, &nm->sbox,
                      &nm->slabel, &nm->bits, &nm->removed, &nm->keep, &nm->out};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        release_mem(*bufs[i]);
        *bufs[i] = NULL;
    }
    nm->cap = 0;
}

static size_t nms_words(size_t n)
{
    return (n + 63) / 64;
}

/* Rows of the mask per pass for n boxes: as many as the mask buffer holds
 * (at least one block of 64; ENG_NMS_MASK_BYTES bounds it), fewer when a
 * test asks. */
static size_t nms_chunk_rows(const eng_nms *nm, size_t n)
{
    size_t rows = nm->bits_bytes / (nms_words(n) * sizeof(cl_ulong));
    if (nm->chunk_override && nm->chunk_override < rows)
        rows = nm->chunk_override;
    rows = rows / 64 * 64;
    if (rows < 64) /* the buffer always holds 64 rows */
        rows = 64;
    size_t all = nms_words(n) * 64;
    return rows < all ? rows : all;
}

/* Sizes the NMS buffers for n boxes (grown, never shrunk; at least 1024
 * boxes, so that typical images allocate once). */
static cnp_status nms_reserve(det_engine *e, size_t n, cnp_err *err)
{
    eng_nms *nm = &e->nms;
    if (n <= nm->cap)
        return CNP_OK;
    size_t cap = n > 1024 ? n : 1024;
    if (cap < 2 * nm->cap)
        cap = 2 * nm->cap;
    nms_release_buffers(nm);
    size_t words = nms_words(cap), row_bytes = words * sizeof(cl_ulong);
    /* The whole mask when it fits ENG_NMS_MASK_BYTES, else chunks of rows. */
    size_t rows = ENG_NMS_MASK_BYTES / row_bytes / 64 * 64;
    if (rows < 64)
        rows = 64;
    if (rows > words * 64)
        rows = words * 64;
    nm->bits_bytes = rows * row_bytes;
    struct {
        cl_mem *buf;
        size_t bytes;
        const char *what;
    } want[] = {
        {&nm->box, cap * sizeof(cl_float4), "NMS boxes"},
        {&nm->score, cap * sizeof(cl_float), "NMS scores"},
        {&nm->label, cap * sizeof(cl_int), "NMS labels"},
        {&nm->index, cap * sizeof(cl_int), "NMS order"},
        {&nm->sbox, cap * sizeof(cl_float4), "NMS sorted boxes"},
        {&nm->slabel, cap * sizeof(cl_int), "NMS sorted labels"},
        {&nm->bits, nm->bits_bytes, "NMS overlap mask"},
        {&nm->removed, words * sizeof(cl_ulong), "NMS suppressed rows"},
        {&nm->keep, cap * sizeof(cl_int), "NMS kept indices"},
        {&nm->out, (cap + 1) * sizeof(cl_float4), "NMS result"},
    };
    cnp_status result = CNP_OK;
    for (size_t i = 0; result == CNP_OK && i < sizeof want / sizeof want[0]; i++)
        result = create_buffer(e, want[i].bytes, NULL, want[i].buf, want[i].what, err);
    if (result != CNP_OK) {
        nms_release_buffers(nm);
        return result;
    }
    nm->cap = cap;
    return CNP_OK;
}

/* Enqueues the NMS of the n boxes in nm->box / score / label (kernels
 * order, then mask + select per chunk of rows); the kept original indices
 * end in nm->keep, their number in nm->count. Nothing is read back. */
static cnp_status nms_enqueue(det_engine *e, size_t n, float iou, int use_label, cnp_err *err)
{
    eng_nms *nm = &e->nms;
    cl_int in = (cl_int)n, ul = use_label, words = (cl_int)nms_words(n);
    cl_float fiou = iou;
    cl_int zero = 0;
    cl_ulong zero64 = 0;
    cnp_status result = cl_ok(clEnqueueFillBuffer(e->q, nm->count, &zero, sizeof zero, 0,
                                                  sizeof zero, 0, NULL, NULL),
                              "clEnqueueFillBuffer", err);
    if (result == CNP_OK)
        result = cl_ok(clEnqueueFillBuffer(e->q, nm->removed, &zero64, sizeof zero64, 0,
                                           (size_t)words * sizeof zero64, 0, NULL, NULL),
                       "clEnqueueFillBuffer", err);
    if (result == CNP_OK)
        result = SET_ARGS(nm->order, "detect_nms_order", err, KARG(nm->box), KARG(nm->score),
                          KARG(nm->label), KARG(ul), KARG(in), KARG(nm->index), KARG(nm->sbox),
                          KARG(nm->slabel));
    size_t g1 = ocl_round_up(n, 64), l1 = 64;
    if (result == CNP_OK)
        result = enqueue(e, nm->order, 1, &g1, &l1, "detect_nms_order", err);
    size_t chunk = nms_chunk_rows(nm, n);
    for (size_t row0 = 0; result == CNP_OK && row0 < n; row0 += chunk) {
        size_t rows = n - row0 < chunk ? ocl_round_up(n - row0, 64) : chunk;
        cl_int r0 = (cl_int)row0, nr = (cl_int)rows;
        result = SET_ARGS(nm->mask, "detect_nms_mask", err, KARG(nm->sbox), KARG(nm->slabel),
                          KARG(ul), KARG(in), KARG(r0), KARG(fiou), KARG(words), KARG(nm->bits));
        size_t g2[2] = {(size_t)words * 64, rows / 64}, l2[2] = {64, 1};
        if (result == CNP_OK)
            result = enqueue(e, nm->mask, 2, g2, l2, "detect_nms_mask", err);
        if (result == CNP_OK)
            result = SET_ARGS(nm->select, "detect_nms_select", err, KARG(nm->bits), KARG(in),
                              KARG(r0), KARG(nr), KARG(words), KARG(nm->removed),
                              KARG(nm->index), KARG(nm->keep), KARG(nm->count));
        size_t g3 = nm->select_local;
        if (result == CNP_OK)
            result = enqueue(e, nm->select, 1, &g3, &g3, "detect_nms_select", err);
    }
    return result;
}

cnp_status det_engine_create(ocl_ctx *ctx, const det_model *m, const cnp_detector_config *dc,
                             det_engine **out, cnp_err *err)
{
    *out = NULL;
    int stride = m->stride;
    int tile = dc->tile / stride * stride;
    if (tile <= 0 || dc->tile_overlap < 0 || dc->tile_overlap >= tile) {
        cnp_err_set(err, "[detector] tile %d / tile_overlap %d: need 0 <= overlap < tile",
                    dc->tile, dc->tile_overlap);
        return CNP_ERR_CONFIG;
    }
    det_engine *e = calloc(1, sizeof *e);
    eng_layer *layers = calloc((size_t)m->n_layers, sizeof *layers);
    if (!e || !layers) {
        free(e);
        free(layers);
        cnp_err_set(err, "detector engine: out of memory");
        return CNP_ERR_NOMEM;
    }
    e->ctx = ctx;
    e->m = m;
    e->cl = ocl_ctx_context(ctx);
    e->q = ocl_ctx_queue(ctx);
    e->tile = (uint32_t)tile;
    cl_device_type type = 0;
    clGetDeviceInfo(ocl_ctx_device(ctx), CL_DEVICE_TYPE, sizeof type, &type, NULL);
    e->measure_tile = (type & CL_DEVICE_TYPE_CPU) && tile > 128 ? 128 : (uint32_t)tile;
    e->overlap = dc->tile_overlap;
    e->threshold = det_score_threshold(m, dc->score_threshold);
    /* [detector] nms_iou, or the model's own value when it is negative. */
    e->nms_iou = dc->nms_iou >= 0 ? (float)dc->nms_iou : (float)det_model_nms_iou(m);
    e->layers = layers;
    e->n_layers = (size_t)m->n_layers;
    int rf = det_model_receptive_field(m);
    if (e->overlap < rf)
        LOG_INFO("detect",
                 "[detector] tile_overlap %d is below the receptive field (%d px) of %s: "
                 "trees within ~%d px of tile borders may differ from untiled results",
                 e->overlap, rf, m->version, (rf - e->overlap) / 2);
    char base[256];
    base_options(m, base, sizeof base);
    cnp_status result = ocl_kernel_create(ctx, "detect", base, "detect_preprocess", &e->pre, err);
    if (result == CNP_OK)
        result = ocl_kernel_create(ctx, "detect", base, "detect_peaks", &e->peaks, err);
    if (result == CNP_OK)
        result = nms_kernels(e, base, err);
    for (size_t i = 0; result == CNP_OK && i < e->n_layers; i++) {
        layers[i].l = &m->layers[i];
        result = layer_kernels(e, &layers[i], base, err);
    }
    if (result == CNP_OK)
        result = size_buffers(e, err);
    if (result == CNP_OK)
        result = choose_paths(e, dc->conv, err);
    if (result != CNP_OK) {
        cnp_err_prefix(err, "%s", m->path);
        det_engine_free(e);
        return result;
    }
    *out = e;
    return CNP_OK;
}

static void release_kernel(cl_kernel k)
{
    if (k)
        clReleaseKernel(k);
}

static void release_mem(cl_mem b)
{
    if (b)
        ocl_buffer_release(b);
}

void det_engine_free(det_engine *e)
{
    if (!e)
        return;
    if (e->q)
        clFinish(e->q);
    for (size_t i = 0; i < e->n_layers; i++) {
        eng_layer *el = &e->layers[i];
        release_kernel(el->conv);
        release_kernel(el->im2col);
        release_kernel(el->bias_act);
        release_kernel(el->pool);
        release_mem(el->weight);
        release_mem(el->bias);
    }
    free(e->layers);
    release_kernel(e->pre);
    release_kernel(e->peaks);
    release_mem(e->act[0]);
    release_mem(e->act[1]);
    release_mem(e->col);
    release_mem(e->gemm_tmp);
    release_mem(e->trees);
    release_mem(e->count);
    eng_nms *nm = &e->nms;
    cl_kernel nk[] = {nm->boxes, nm->order, nm->mask, nm->select, nm->gather};
    for (size_t i = 0; i < sizeof nk / sizeof nk[0]; i++)
        release_kernel(nk[i]);
    nms_release_buffers(nm);
    release_mem(nm->count);
    free(e);
}

void det_engine_set_conv_path(det_engine *e, enum det_conv_path path)
{
    e->force = path;
}

static cnp_status check_image(cl_mem rgba, uint32_t w, uint32_t h, cnp_err *err)
{
    size_t size = 0;
    cnp_status result = cl_ok(clGetMemObjectInfo(rgba, CL_MEM_SIZE, sizeof size, &size, NULL),
                              "clGetMemObjectInfo", err);
    if (result == CNP_OK && size < (size_t)w * h * 4) {
        cnp_err_set(err, "detector: image buffer of %zu bytes is smaller than %ux%u RGBA",
                    size, w, h);
        result = CNP_ERR_INVALID;
    }
    return result;
}

static cnp_status ensure_tree_cap(det_engine *e, size_t need, cnp_err *err)
{
    if (need <= e->tree_cap)
        return CNP_OK;
    release_mem(e->trees);
    e->trees = NULL;
    e->tree_cap = need;
    return create_buffer(e, need * sizeof(cl_float4), NULL, &e->trees, "tree list", err);
}

static cnp_status run_peaks(det_engine *e, int which, uint32_t ow, uint32_t oh,
                            const det_tile *t, cnp_err *err)
{
    cl_int ioh = (cl_int)oh, iow = (cl_int)ow, x0 = (cl_int)t->x0, y0 = (cl_int)t->y0,
           cap = (cl_int)e->tree_cap;
    cl_float stride = (cl_float)e->m->stride, thr = e->threshold;
    cl_float4 own = {{t->own[0], t->own[1], t->own[2], t->own[3]}};
    cnp_status result = SET_ARGS(e->peaks, "detect_peaks", err, KARG(e->act[which]), KARG(ioh),
                     KARG(iow), KARG(x0), KARG(y0), KARG(stride), KARG(thr), KARG(own),
                     KARG(e->trees), KARG(e->count), KARG(cap));
    if (result != CNP_OK)
        return result;
    size_t global[2] = {ocl_round_up(ow, 16), ocl_round_up(oh, 4)};
    size_t local[2] = {16, 4};
    return enqueue(e, e->peaks, 2, global, local, "detect_peaks", err);
}

/* NMS of the count crowns in e->trees, on the device: their boxes, the
 * shared NMS kernels, and a gather of the kept crowns into nm->out (count
 * first, then the crowns). */
static cnp_status crown_nms_enqueue(det_engine *e, size_t count, cnp_err *err)
{
    eng_nms *nm = &e->nms;
    cl_int in = (cl_int)count;
    size_t global = ocl_round_up(count, 64);
    cnp_status result = nms_reserve(e, count, err);
    if (result == CNP_OK)
        result = SET_ARGS(nm->boxes, "detect_crown_boxes", err, KARG(e->trees), KARG(in),
                          KARG(nm->box), KARG(nm->score));
    if (result == CNP_OK)
        result = enqueue(e, nm->boxes, 1, &global, NULL, "detect_crown_boxes", err);
    if (result == CNP_OK)
        result = nms_enqueue(e, count, e->nms_iou, 0, err);
    if (result == CNP_OK)
        result = SET_ARGS(nm->gather, "detect_crown_gather", err, KARG(e->trees),
                          KARG(nm->keep), KARG(nm->count), KARG(in), KARG(nm->out));
    if (result == CNP_OK)
        result = enqueue(e, nm->gather, 1, &global, NULL, "detect_crown_gather", err);
    return result;
}

/* Reads the tree count back, runs NMS on the device when it can remove
 * anything, then reads the final list back (one read: with NMS the kept
 * count comes first in the same buffer) and converts it. */
static cnp_status read_trees(det_engine *e, cnp_tree **trees, size_t *n, cnp_err *err)
{
    cl_int count = 0;
    cnp_status result = cl_ok(clEnqueueReadBuffer(e->q, e->count, CL_TRUE, 0, sizeof count,
                                                  &count, 0, NULL, NULL),
                              "reading the tree count", err);
    if (result != CNP_OK || count <= 0)
        return result;
    if ((size_t)count > e->tree_cap) {
        cnp_err_set(err, "detector: %d trees overflow the list of %zu", count, e->tree_cap);
        return CNP_ERR_INTERNAL;
    }
    size_t nt = (size_t)count;
    bool nms = nt >= 2 && e->nms_iou < 1.0f;
    cl_float4 *raw = malloc((nt + 1) * sizeof *raw);
    cnp_tree *out = malloc(nt * sizeof *out);
    if (!raw || !out) {
        free(raw);
        free(out);
        cnp_err_set(err, "detector: out of memory for %zu trees", nt);
        return CNP_ERR_NOMEM;
    }
    const cl_float4 *list = raw;
    if (nms) {
        result = crown_nms_enqueue(e, nt, err);
        if (result == CNP_OK)
            result = cl_ok(clEnqueueReadBuffer(e->q, e->nms.out, CL_TRUE, 0,
                                               (nt + 1) * sizeof *raw, raw, 0, NULL, NULL),
                           "reading the tree list", err);
        cl_int kept = 0;
        memcpy(&kept, &raw[0], sizeof kept);
        if (result == CNP_OK && (kept < 1 || (size_t)kept > nt)) {
            cnp_err_set(err, "detector NMS: kept %d of %zu trees", kept, nt);
            result = CNP_ERR_INTERNAL;
        }
        nt = (size_t)kept;
        list = raw + 1;
    } else {
        result = cl_ok(clEnqueueReadBuffer(e->q, e->trees, CL_TRUE, 0, nt * sizeof *raw, raw,
                                           0, NULL, NULL),
                       "reading the tree list", err);
    }
    for (size_t i = 0; result == CNP_OK && i < nt; i++)
        out[i] = (cnp_tree){.x = list[i].s[0], .y = list[i].s[1], .radius = list[i].s[2],
                            .score = list[i].s[3]};
    free(raw);
    if (result != CNP_OK) {
        free(out);
        return result;
    }
    det_trees_sort(out, nt);
    *trees = out;
    *n = nt;
    return CNP_OK;
}

cnp_status det_engine_nms(det_engine *e, const det_box *boxes, const float *scores,
                          const int *labels, size_t n, float iou, uint32_t *keep,
                          size_t *n_keep, cnp_err *err)
{
    *n_keep = 0;
    if (n == 0)
        return CNP_OK;
    if (n > INT32_MAX / 2) {
        cnp_err_set(err, "detector NMS: %zu boxes is more than supported", n);
        return CNP_ERR_INVALID;
    }
    eng_nms *nm = &e->nms;
    cl_float4 *b4 = malloc(n * sizeof *b4);
    cl_int *idx = malloc(n * sizeof *idx);
    if (!b4 || !idx) {
        free(b4);
        free(idx);
        cnp_err_set(err, "detector NMS: out of memory for %zu boxes", n);
        return CNP_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++)
        b4[i] = (cl_float4){{boxes[i].x0, boxes[i].y0, boxes[i].x1, boxes[i].y1}};
    cnp_status result = nms_reserve(e, n, err);
    if (result == CNP_OK)
        result = cl_ok(clEnqueueWriteBuffer(e->q, nm->box, CL_TRUE, 0, n * sizeof *b4, b4, 0,
                                            NULL, NULL),
                       "uploading NMS boxes", err);
    if (result == CNP_OK)
        result = cl_ok(clEnqueueWriteBuffer(e->q, nm->score, CL_TRUE, 0, n * sizeof *scores,
                                            scores, 0, NULL, NULL),
                       "uploading NMS scores", err);
    if (result == CNP_OK && labels)
        result = cl_ok(clEnqueueWriteBuffer(e->q, nm->label, CL_TRUE, 0, n * sizeof *labels,
                                            labels, 0, NULL, NULL),
                       "uploading NMS labels", err);
    if (result == CNP_OK)
        result = nms_enqueue(e, n, iou, labels != NULL, err);
    cl_int kept = 0;
    if (result == CNP_OK)
        result = cl_ok(clEnqueueReadBuffer(e->q, nm->count, CL_TRUE, 0, sizeof kept, &kept, 0,
                                           NULL, NULL),
                       "reading the NMS count", err);
    if (result == CNP_OK && (kept < 0 || (size_t)kept > n)) {
        cnp_err_set(err, "detector NMS: kept %d of %zu boxes", kept, n);
        result = CNP_ERR_INTERNAL;
    }
    if (result == CNP_OK && kept > 0)
        result = cl_ok(clEnqueueReadBuffer(e->q, nm->keep, CL_TRUE, 0, (size_t)kept * sizeof *idx,
                                           idx, 0, NULL, NULL),
                       "reading the NMS result", err);
    for (cl_int k = 0; result == CNP_OK && k < kept; k++)
        keep[k] = (uint32_t)idx[k];
    if (result == CNP_OK)
        *n_keep = (size_t)kept;
    free(b4);
    free(idx);
    return result;
}

void det_engine_set_nms_iou(det_engine *e, float iou)
{
    e->nms_iou = iou;
}

float det_engine_nms_iou(const det_engine *e)
{
    return e->nms_iou;
}

void det_engine_tiling(const det_engine *e, int *tile, int *overlap, int *stride)
{
    *tile = (int)e->tile;
    *overlap = e->overlap;
    *stride = e->m->stride;
}

void det_engine_set_nms_chunk_rows(det_engine *e, uint32_t rows)
{
    e->nms.chunk_override = rows;
}

cnp_status det_engine_run(det_engine *e, cl_mem rgba, uint32_t w, uint32_t h,
                          cnp_tree **trees, size_t *n, cnp_err *err)
{
    *trees = NULL;
    *n = 0;
    det_tile *tiles = NULL;
    size_t nt = 0;
    cnp_status result = check_image(rgba, w, h, err);
    if (result == CNP_OK)
        result = det_tiles_plan(w, h, (int)e->tile, e->overlap, e->m->stride, &tiles, &nt, err);
    if (result != CNP_OK)
        return result;
    /* Every cell of every tile could at most be one tree. */
    size_t need = 0;
    for (size_t i = 0; i < nt; i++) {
        uint32_t ow, oh;
        det_model_out_size(e->m, tiles[i].w, tiles[i].h, &ow, &oh);
        need += (size_t)ow * oh;
    }
    result = ensure_tree_cap(e, need, err);
    cl_int zero = 0;
    if (result == CNP_OK)
        result = cl_ok(clEnqueueFillBuffer(e->q, e->count, &zero, sizeof zero, 0, sizeof zero,
                                           0, NULL, NULL),
                       "clEnqueueFillBuffer", err);
    for (size_t i = 0; result == CNP_OK && i < nt; i++) {
        uint32_t ow, oh;
        det_model_out_size(e->m, tiles[i].w, tiles[i].h, &ow, &oh);
        if (ow == 0 || oh == 0)
            continue;
        int which;
        result = run_network(e, rgba, w, tiles[i].x0, tiles[i].y0, tiles[i].w, tiles[i].h,
                             &which, &ow, &oh, err);
        if (result == CNP_OK)
            result = run_peaks(e, which, ow, oh, &tiles[i], err);
    }
    free(tiles);
    if (result == CNP_OK)
        result = read_trees(e, trees, n, err);
    return result;
}

cnp_status det_engine_forward(det_engine *e, cl_mem rgba, uint32_t img_w, uint32_t x0,
                              uint32_t y0, uint32_t w, uint32_t h, float **out, uint32_t *oh,
                              uint32_t *ow, cnp_err *err)
{
    *out = NULL;
    *ow = *oh = 0;
    if (w > e->tile || h > e->tile || x0 + w > img_w) {
        cnp_err_set(err, "detector: region %ux%u at (%u, %u) exceeds the tile %u or the image",
                    w, h, x0, y0, e->tile);
        return CNP_ERR_INVALID;
    }
    cnp_status result = check_image(rgba, img_w, y0 + h, err);
    if (result != CNP_OK)
        return result;
    uint32_t fw, fh;
    det_model_out_size(e->m, w, h, &fw, &fh);
    if (fw == 0 || fh == 0)
        return CNP_OK;
    int which;
    result = run_network(e, rgba, img_w, x0, y0, w, h, &which, ow, oh, err);
    if (result != CNP_OK)
        return result;
    size_t bytes = sizeof(float) * 4 * (size_t)*ow * *oh;
    *out = malloc(bytes);
    if (!*out) {
        cnp_err_set(err, "detector: out of memory");
        return CNP_ERR_NOMEM;
    }
    result = cl_ok(clEnqueueReadBuffer(e->q, e->act[which], CL_TRUE, 0, bytes, *out, 0, NULL,
                                       NULL),
                   "reading the output tensor", err);
    if (result != CNP_OK) {
        free(*out);
        *out = NULL;
    }
    return result;
}

size_t det_engine_layer_count(const det_engine *e)
{
    return e->n_layers;
}

void det_engine_layer_info(const det_engine *e, size_t i, det_layer_info *info)
{
    const eng_layer *el = &e->layers[i];
    const det_layer *l = el->l;
    bool conv = l->type == DET_LAYER_CONV;
    *info = (det_layer_info){
        .name = l->name,
        .is_conv = conv,
        .in = l->in,
        .out = l->out,
        .k = conv ? l->k : 2,
        .dilation = conv ? l->dilation : 1,
        .out_w = el->out_w,
        .out_h = el->out_h,
        .flops = conv ? 2.0 * l->in * l->out * l->k * l->k * (double)el->out_w * el->out_h
                      : (double)l->in * el->out_w * el->out_h * 3,
        .chosen = conv ? layer_path(e, el) : DET_CONV_AUTO,
        .direct_s = el->direct_s,
        .gemm_s = el->gemm_s,
    };
}

cnp_status det_engine_time_layer(det_engine *e, size_t i, enum det_conv_path path,
                                 int repeats, double *seconds, cnp_err *err)
{
    if (path == DET_CONV_AUTO)
        path = layer_path(e, &e->layers[i]);
    if (path == DET_CONV_DIRECT && !e->layers[i].direct_ok)
        path = DET_CONV_GEMM;
    return time_layer(e, i, path, repeats, true, seconds, err);
}

uint32_t det_engine_tile(const det_engine *e)
{
    return e->tile;
}
