/* Greedy NMS on the device (kernels/detect.cl, "Non-maximum suppression":
 * detect_nms_order, detect_nms_mask, detect_nms_select), one module for
 * both detector engines: the crown engine (engine.c) and the box engine
 * (graph_decode.c). It owns the kernels and buffers; the caller fills the
 * input buffers on its queue, enqueues the NMS and runs its own gather on
 * the kept indices. Nothing is read back here. Not part of any API. */
#ifndef CANOPY_DETECT_NMS_DEVICE_H
#define CANOPY_DETECT_NMS_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include "canopy/gpu.h"
#include "canopy/status.h"

typedef struct det_nms_device det_nms_device;

/* The buffers a caller writes and reads, valid until a reserve grows them:
 * inputs for up to det_nms_device_cap boxes, outputs of the last enqueue. */
typedef struct det_nms_io {
    cl_mem box;   /* in: float4 (x0, y0, x1, y1) per box */
    cl_mem score; /* in: float per box */
    cl_mem label; /* in: int per box, read only with use_label */
    cl_mem keep;  /* out: the kept boxes' original indices, in NMS order */
    cl_mem count; /* out: one int, the number kept */
} det_nms_io;

/* Creates the NMS kernels from program "detect" built with `options` (the
 * caller's options, so that its own detect kernels share one program) and
 * the count buffer; no room for boxes until det_nms_device_reserve. The
 * device's work-groups must hold 64 work-items. Free with
 * det_nms_device_free. */
cnp_status det_nms_device_create(ocl_ctx *ctx, const char *options, det_nms_device **out,
                                 cnp_err *err);

/* Releases the kernels and buffers; accepts NULL. The caller finishes its
 * queue first. */
void det_nms_device_free(det_nms_device *nm);

/* Room for at least n boxes: grown (to n, or twice the room when that is
 * more), never shrunk. The overlap mask is bounded (32 MiB, at least 64
 * rows): past that the enqueue computes it in chunks of rows. On failure
 * the room is 0 and the buffers are released. */
cnp_status det_nms_device_reserve(det_nms_device *nm, size_t n, cnp_err *err);

/* Boxes the buffers hold now. */
size_t det_nms_device_cap(const det_nms_device *nm);

/* Bytes of the device buffers held now. */
size_t det_nms_device_bytes(const det_nms_device *nm);

det_nms_io det_nms_device_io(const det_nms_device *nm);

/* Enqueues on q the NMS of the first n (>= 1, <= the room) boxes of the
 * input buffers: boxes overlapping a kept box of higher rank by IoU > iou,
 * or one inside the other by det_nms_contains's contain (>= 1: IoU only),
 * (and of the same label with use_label) are dropped. The kept indices end
 * in io.keep, their number in io.count; nothing is read back. */
cnp_status det_nms_device_enqueue(det_nms_device *nm, cl_command_queue q, size_t n, float iou,
                                  float contain, int use_label, cnp_err *err);

/* As det_nms_device_enqueue, for the first n = count[slot] boxes where the
 * count is what the device holds when the kernels run (clamped to
 * 0..room; room >= 1, <= the room reserved): every launch is sized from
 * room alone, so the caller need not read n back first, and the work
 * follows n. n = 0 keeps nothing (io.count 0). */
cnp_status det_nms_device_enqueue_count(det_nms_device *nm, cl_command_queue q, cl_mem count,
                                        size_t slot, size_t room, float iou, float contain,
                                        int use_label, cnp_err *err);

/* Tests: rows of the mask per pass (a multiple of 64; 0 restores the
 * default, sized by bytes). */
void det_nms_device_set_chunk_rows(det_nms_device *nm, uint32_t rows);

#endif
