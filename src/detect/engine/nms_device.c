/* Greedy NMS on the device for both detector engines (nms_device.h). The
 * order kernel sorts the boxes, then per chunk of rows the mask kernel sets
 * the overlap bits and the select kernel walks the rows in order; the
 * suppressed rows and the kept count carry across chunks on the device. */
#include <stdlib.h>

#include "detect/engine/nms_device.h"

/* Bytes of the overlap mask computed per pass: bounds device memory for
 * very many boxes (n^2 / 8 bytes in all). */
#define NMS_MASK_BYTES ((size_t)32 << 20)
/* Rows per work-group of detect_nms_order / _mask (detect.cl's NMS_BLOCK). */
#define NMS_BLOCK 64
/* Work-groups of detect_nms_order / _mask at most: each loops over the
 * blocks past its own, below the count the device holds. */
#define NMS_MAX_GROUPS 1024

struct det_nms_device {
    cl_context cl;
    cl_kernel order, mask, select;
    cl_mem box, score, label;   /* input: boxes, scores, labels */
    cl_mem index, sbox, slabel; /* sorted: original index, box, label */
    cl_mem bits, removed;       /* overlap mask (one chunk of rows), suppressed rows */
    cl_mem keep, count;         /* kept indices, their number */
    cl_mem n;                   /* the box count of det_nms_device_enqueue */
    size_t cap, bits_bytes;     /* boxes the buffers hold; bytes of `bits` */
    size_t bytes;               /* device bytes held */
    uint32_t chunk_override;    /* tests: rows per pass, 0 = by bytes */
    size_t select_local;        /* work-group size of detect_nms_select */
};

static cnp_status create_buffer(det_nms_device *nm, size_t bytes, cl_mem *out, const char *what,
                                cnp_err *err)
{
    cl_int rc;
    *out = ocl_buffer_create(nm->cl, CL_MEM_READ_WRITE, bytes, NULL, &rc);
    if (rc == CL_SUCCESS)
        nm->bytes += bytes;
    return ocl_check(rc, what, err);
}

cnp_status det_nms_device_create(ocl_ctx *ctx, const char *options, det_nms_device **out,
                                 cnp_err *err)
{
    *out = NULL;
    det_nms_device *nm = calloc(1, sizeof *nm);
    if (!nm) {
        cnp_err_set(err, "device NMS: out of memory");
        return CNP_ERR_NOMEM;
    }
    nm->cl = ocl_ctx_context(ctx);
    static const char *names[] = {"detect_nms_order", "detect_nms_mask", "detect_nms_select"};
    cl_kernel *ks[] = {&nm->order, &nm->mask, &nm->select};
    cnp_status result = CNP_OK;
    for (size_t i = 0; result == CNP_OK && i < 3; i++)
        result = ocl_kernel_create(ctx, "detect", options, names[i], ks[i], err);
    size_t mwg = ocl_ctx_max_work_group(ctx);
    nm->select_local = mwg >= 256 ? 256 : mwg;
    if (result == CNP_OK && mwg < NMS_BLOCK) {
        cnp_err_set(err, "device NMS: the device's work-groups (%zu) are smaller than %d", mwg,
                    NMS_BLOCK);
        result = CNP_ERR_OPENCL;
    }
    if (result == CNP_OK)
        result = create_buffer(nm, sizeof(cl_int), &nm->count, "NMS count", err);
    if (result == CNP_OK)
        result = create_buffer(nm, sizeof(cl_int), &nm->n, "NMS boxes", err);
    if (result != CNP_OK) {
        det_nms_device_free(nm);
        return result;
    }
    *out = nm;
    return CNP_OK;
}

/* Releases the buffers sized by the room (all but the count). */
static void release_room(det_nms_device *nm)
{
    cl_mem *bufs[] = {&nm->box,  &nm->score, &nm->label,   &nm->index, &nm->sbox,
                      &nm->slabel, &nm->bits, &nm->removed, &nm->keep};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        ocl_buffer_release(*bufs[i]);
        *bufs[i] = NULL;
    }
    nm->cap = 0;
    nm->bits_bytes = 0;
    nm->bytes = (nm->count ? sizeof(cl_int) : 0) + (nm->n ? sizeof(cl_int) : 0);
}

void det_nms_device_free(det_nms_device *nm)
{
    if (!nm)
        return;
    release_room(nm);
    ocl_buffer_release(nm->count);
    ocl_buffer_release(nm->n);
    cl_kernel ks[] = {nm->order, nm->mask, nm->select};
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++)
        if (ks[i])
            clReleaseKernel(ks[i]);
    free(nm);
}

static size_t nms_words(size_t n)
{
    return (n + 63) / 64;
}

/* Rows of the mask per pass for n boxes: as many as the mask buffer holds
 * (at least one block of 64; NMS_MASK_BYTES bounds it), fewer when a test
 * asks. */
static size_t chunk_rows(const det_nms_device *nm, size_t n)
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

cnp_status det_nms_device_reserve(det_nms_device *nm, size_t n, cnp_err *err)
{
    if (n <= nm->cap)
        return CNP_OK;
    size_t cap = n > 2 * nm->cap ? n : 2 * nm->cap;
    release_room(nm);
    size_t words = nms_words(cap), row_bytes = words * sizeof(cl_ulong);
    /* The whole mask when it fits NMS_MASK_BYTES, else chunks of rows. */
    size_t rows = NMS_MASK_BYTES / row_bytes / 64 * 64;
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
    };
    cnp_status result = CNP_OK;
    for (size_t i = 0; result == CNP_OK && i < sizeof want / sizeof want[0]; i++)
        result = create_buffer(nm, want[i].bytes, want[i].buf, want[i].what, err);
    if (result != CNP_OK) {
        release_room(nm);
        return result;
    }
    nm->cap = cap;
    return CNP_OK;
}

size_t det_nms_device_cap(const det_nms_device *nm)
{
    return nm->cap;
}

size_t det_nms_device_bytes(const det_nms_device *nm)
{
    return nm->bytes;
}

det_nms_io det_nms_device_io(const det_nms_device *nm)
{
    return (det_nms_io){.box = nm->box, .score = nm->score, .label = nm->label,
                        .keep = nm->keep, .count = nm->count};
}

void det_nms_device_set_chunk_rows(det_nms_device *nm, uint32_t rows)
{
    nm->chunk_override = rows;
}

/* Zeroes the kept count and the suppressed rows: select carries both
 * across chunks. */
static cnp_status enqueue_clear(det_nms_device *nm, cl_command_queue q, cl_int words,
                                cnp_err *err)
{
    cl_int zero = 0;
    cl_ulong zero64 = 0;
    cnp_status result = ocl_check(clEnqueueFillBuffer(q, nm->count, &zero, sizeof zero, 0,
                                                      sizeof zero, 0, NULL, NULL),
                                  "clEnqueueFillBuffer", err);
    if (result == CNP_OK)
        result = ocl_check(clEnqueueFillBuffer(q, nm->removed, &zero64, sizeof zero64, 0,
                                               (size_t)words * sizeof zero64, 0, NULL, NULL),
                           "clEnqueueFillBuffer", err);
    return result;
}

/* Work-groups for `blocks` blocks of 64 work: one each up to
 * NMS_MAX_GROUPS, past that each loops. */
static size_t nms_groups(size_t blocks)
{
    return blocks < 1 ? 1 : blocks < NMS_MAX_GROUPS ? blocks : NMS_MAX_GROUPS;
}

/* The mask of sorted rows [row0, row0 + rows) below the device's count,
 * then the greedy pass over them. */
static cnp_status enqueue_chunk(det_nms_device *nm, cl_command_queue q, cl_mem count,
                                cl_int slot, cl_int room, cl_int ul, cl_float iou,
                                cl_float contain, cl_int words, cl_int r0, cl_int nr,
                                cnp_err *err)
{
    cnp_status result = OCL_SET_ARGS(nm->mask, "detect_nms_mask", err, OCL_ARG(nm->sbox),
                                     OCL_ARG(nm->slabel), OCL_ARG(ul), OCL_ARG(count),
                                     OCL_ARG(slot), OCL_ARG(room), OCL_ARG(r0), OCL_ARG(nr),
                                     OCL_ARG(iou), OCL_ARG(contain), OCL_ARG(words),
                                     OCL_ARG(nm->bits));
    size_t g2 = nms_groups((size_t)words * ((size_t)nr / NMS_BLOCK)) * NMS_BLOCK, l2 = NMS_BLOCK;
    if (result == CNP_OK)
        result = ocl_enqueue(q, nm->mask, 1, &g2, &l2, "detect_nms_mask", err);
    if (result == CNP_OK)
        result = OCL_SET_ARGS(nm->select, "detect_nms_select", err, OCL_ARG(nm->bits),
                              OCL_ARG(count), OCL_ARG(slot), OCL_ARG(room), OCL_ARG(r0),
                              OCL_ARG(nr), OCL_ARG(words), OCL_ARG(nm->removed),
                              OCL_ARG(nm->index), OCL_ARG(nm->keep), OCL_ARG(nm->count));
    size_t g3 = nm->select_local;
    if (result == CNP_OK)
        result = ocl_enqueue(q, nm->select, 1, &g3, &g3, "detect_nms_select", err);
    return result;
}

cnp_status det_nms_device_enqueue_count(det_nms_device *nm, cl_command_queue q, cl_mem count,
                                        size_t slot, size_t room, float iou, float contain,
                                        int use_label, cnp_err *err)
{
    if (room == 0 || room > nm->cap || slot > INT32_MAX) {
        cnp_err_set(err, "device NMS: %zu boxes for room of %zu", room, nm->cap);
        return CNP_ERR_INTERNAL;
    }
    cl_int croom = (cl_int)room, cslot = (cl_int)slot, ul = use_label,
           words = (cl_int)nms_words(room);
    cl_float fiou = iou, fcontain = contain;
    cnp_status result = enqueue_clear(nm, q, words, err);
    if (result == CNP_OK)
        result = OCL_SET_ARGS(nm->order, "detect_nms_order", err, OCL_ARG(nm->box),
                              OCL_ARG(nm->score), OCL_ARG(nm->label), OCL_ARG(ul),
                              OCL_ARG(count), OCL_ARG(cslot), OCL_ARG(croom), OCL_ARG(nm->index),
                              OCL_ARG(nm->sbox), OCL_ARG(nm->slabel));
    size_t g1 = nms_groups((room + NMS_BLOCK - 1) / NMS_BLOCK) * NMS_BLOCK, l1 = NMS_BLOCK;
    if (result == CNP_OK)
        result = ocl_enqueue(q, nm->order, 1, &g1, &l1, "detect_nms_order", err);
    size_t chunk = chunk_rows(nm, room);
    for (size_t row0 = 0; result == CNP_OK && row0 < room; row0 += chunk) {
        size_t rows = room - row0 < chunk ? ocl_round_up(room - row0, NMS_BLOCK) : chunk;
        result = enqueue_chunk(nm, q, count, cslot, croom, ul, fiou, fcontain, words,
                               (cl_int)row0, (cl_int)rows, err);
    }
    return result;
}

cnp_status det_nms_device_enqueue(det_nms_device *nm, cl_command_queue q, size_t n, float iou,
                                  float contain, int use_label, cnp_err *err)
{
    if (n == 0 || n > nm->cap) {
        cnp_err_set(err, "device NMS: %zu boxes for room of %zu", n, nm->cap);
        return CNP_ERR_INTERNAL;
    }
    cl_int cn = (cl_int)n;
    cnp_status result = ocl_check(clEnqueueFillBuffer(q, nm->n, &cn, sizeof cn, 0, sizeof cn, 0,
                                                      NULL, NULL),
                                  "clEnqueueFillBuffer", err);
    if (result == CNP_OK)
        result = det_nms_device_enqueue_count(nm, q, nm->n, 0, n, iou, contain, use_label, err);
    return result;
}
