/* The device NMS with its box count on the device
 * (det_nms_device_enqueue_count, kernels/detect.cl's detect_nms_*) against
 * its C reference det_nms_contain: the same kept indices in the same order,
 * exactly. The launches are sized for a room the host knows; the count the
 * kernels read is 0, 1, odd sizes across the 64-box blocks, and the room
 * itself; the boxes past the count (up to the room) would change the
 * result if read. With labels and without, with the crowns' containment
 * test, the whole mask at once and in chunks of 64 rows. `small` (the
 * Oclgrind run, tests/oclgrind) keeps to sizes a simulator finishes. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "canopy/config.h"
#include "canopy/detect.h"
#include "canopy/gpu.h"
#include "detect/detect_internal.h"
#include "detect/engine/nms_device.h"
#include "testutil.h"

static uint32_t g_seed = 4242;

static float randf(void)
{
    g_seed = g_seed * 1103515245u + 12345u;
    return (float)(g_seed >> 8) / 16777216.0f;
}

/* Random clustered boxes (about 3 per 40 x 40 cell), scores on a coarse grid
 * (ties), some exact duplicates, labels 0..3. */
static void make_boxes(det_box *b, float *sc, int *lab, size_t n)
{
    float side = 40.0f * sqrtf((float)n / 3.0f + 1.0f);
    for (size_t i = 0; i < n; i++) {
        float x = randf() * side, y = randf() * side, r = 4.0f + 16.0f * randf();
        b[i] = (det_box){x - r, y - r, x + r, y + r};
        sc[i] = (float)(1 + (int)(randf() * 20)) / 20.0f;
        lab[i] = (int)(randf() * 4);
        if (i > 0 && randf() < 0.05f) {
            b[i] = b[i - 1];
            sc[i] = sc[i - 1];
        }
    }
}

static void upload(cl_command_queue q, cl_mem buf, const void *p, size_t bytes)
{
    CHECK_FATAL(clEnqueueWriteBuffer(q, buf, CL_TRUE, 0, bytes, p, 0, NULL, NULL) ==
                CL_SUCCESS);
}

/* n boxes counted on the device (slot 1 of a count buffer whose other
 * slots are wrong), the launch for room >= n boxes: the device's kept
 * indices against the reference's on the first n. */
static void check_case(ocl_ctx *ctx, det_nms_device *nm, size_t n, size_t room, float iou,
                       float contain, int use_label)
{
    cl_command_queue q = ocl_ctx_queue(ctx);
    det_box *b = malloc(room * sizeof *b);
    float *sc = malloc(room * sizeof *sc);
    int *lab = malloc(room * sizeof *lab);
    cl_float4 *b4 = malloc(room * sizeof *b4);
    uint32_t *ref = malloc(room * sizeof *ref);
    cl_int *dev = malloc(room * sizeof *dev);
    CHECK_FATAL(b && sc && lab && b4 && ref && dev);
    make_boxes(b, sc, lab, room);
    for (size_t i = n; i < room; i++) { /* past the count: would win every overlap */
        b[i] = i > n ? b[i - 1 - n] : b[0];
        sc[i] = 2.0f;
    }
    for (size_t i = 0; i < room; i++)
        b4[i] = (cl_float4){{b[i].x0, b[i].y0, b[i].x1, b[i].y1}};
    size_t nr = 0;
    cnp_err err;
    CHECK_FATAL(det_nms_contain(b, sc, use_label ? lab : NULL, n, iou, contain, ref, &nr,
                                &err) == CNP_OK);
    det_nms_io io = det_nms_device_io(nm);
    upload(q, io.box, b4, room * sizeof *b4);
    upload(q, io.score, sc, room * sizeof *sc);
    upload(q, io.label, lab, room * sizeof *lab);
    cl_int counts[3] = {(cl_int)room, (cl_int)n, -1}, rc;
    cl_mem cbuf = ocl_buffer_create(ocl_ctx_context(ctx), CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                                    sizeof counts, counts, &rc);
    CHECK_FATAL(rc == CL_SUCCESS);
    cnp_status st = det_nms_device_enqueue_count(nm, q, cbuf, 1, room, iou, contain, use_label,
                                                 &err);
    CHECK(st == CNP_OK, ": %s", err.msg);
    cl_int kept = -1;
    CHECK_FATAL(clEnqueueReadBuffer(q, io.count, CL_TRUE, 0, sizeof kept, &kept, 0, NULL, NULL) ==
                CL_SUCCESS);
    CHECK_FATAL(kept >= 0 && (size_t)kept <= room, ": kept %d", kept);
    if (kept > 0)
        CHECK_FATAL(clEnqueueReadBuffer(q, io.keep, CL_TRUE, 0, (size_t)kept * sizeof *dev, dev,
                                        0, NULL, NULL) == CL_SUCCESS);
    size_t same = 0;
    while (same < nr && same < (size_t)kept && (uint32_t)dev[same] == ref[same])
        same++;
    CHECK((size_t)kept == nr && same == nr,
          ": n %zu room %zu iou %.1f contain %.2f labels %d: reference keeps %zu, device %d, "
          "first difference at %zu",
          n, room, iou, contain, use_label, nr, kept, same);
    if (n >= 127) /* only a case that suppresses something and keeps something says much */
        CHECK(nr > 0 && nr < n, ": n %zu: kept %zu", n, nr);
    ocl_buffer_release(cbuf);
    free(b);
    free(sc);
    free(lab);
    free(b4);
    free(ref);
    free(dev);
}

static void run_room(ocl_ctx *ctx, det_nms_device *nm, size_t room, const size_t *ns,
                     size_t count)
{
    static const float ious[] = {0.3f, 0.5f};
    for (size_t i = 0; i < count; i++)
        for (int k = 0; k < 2; k++)
            for (int lab = 0; lab < 2; lab++) {
                check_case(ctx, nm, ns[i], room, ious[k], 1.0f, lab);
                check_case(ctx, nm, ns[i], room, ious[k], DET_NMS_CONTAIN, lab);
            }
}

int main(int argc, char **argv)
{
    bool small = argc > 1 && strcmp(argv[1], "small") == 0;
    cnp_config cfg;
    cnp_err err;
    if (cnp_config_load(&cfg, NULL, &err) != CNP_OK) {
        fprintf(stderr, "configuration: %s\n", err.msg);
        return 1;
    }
    ocl_ctx *ctx = NULL;
    if (ocl_ctx_create(&cfg.opencl, &ctx, &err) != CNP_OK)
        return test_skip_or_fail(err.msg);
    det_nms_device *nm = NULL;
    CHECK_FATAL(det_nms_device_create(ctx, "", &nm, &err) == CNP_OK, ": %s", err.msg);
    size_t big = small ? 130 : 2049;
    CHECK_FATAL(det_nms_device_reserve(nm, big, &err) == CNP_OK, ": %s", err.msg);
    /* Over the room: refused. */
    CHECK(det_nms_device_enqueue_count(nm, ocl_ctx_queue(ctx), NULL, 0, big + 1, 0.5f, 1.0f, 0,
                                       &err) == CNP_ERR_INTERNAL);
    for (int chunked = 0; chunked < 2; chunked++) {
        det_nms_device_set_chunk_rows(nm, chunked ? 64 : 0);
        static const size_t small_ns[] = {0, 1, 2, 63, 65, 130};
        static const size_t big_ns[] = {0, 1, 3, 64, 127, 1000, 2049};
        if (small) {
            run_room(ctx, nm, 130, small_ns, sizeof small_ns / sizeof small_ns[0]);
            run_room(ctx, nm, 1, small_ns, 2);
        } else {
            run_room(ctx, nm, 2049, big_ns, sizeof big_ns / sizeof big_ns[0]);
            run_room(ctx, nm, 65, small_ns, 5);
            run_room(ctx, nm, 1, small_ns, 2);
        }
    }
    det_nms_device_free(nm);
    ocl_ctx_free(ctx);
    return TEST_RESULT();
}
