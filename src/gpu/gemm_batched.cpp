// Strided-batched SGEMM that always runs CLBlast's Xgemm kernel (see
// canopy/gpu.h, ocl_sgemm_batched_xgemm). CLBlast picks XgemmDirect below
// XGEMM_MIN_INDIRECT_SIZE^3 = m * n * k, because its Xgemm path then pays
// pad, copy and transpose kernels (and temporary buffers) around the
// multiply; the caller here lays its matrices out so that Xgemm needs none
// of them, so the threshold only costs it the slower direct kernel (on
// PoCL: 8 against 73 GFLOP/s for Winograd F(4x4)'s 36 products of 640 x 256
// x 256). The threshold is per device in CLBlast's parameter database, with
// no per-call switch: it is lowered around the call and put back, under one
// process-wide lock.
#include <clblast.h>
#include <clblast_c.h>

#include <mutex>
#include <string>
#include <unordered_map>

extern "C" {
#include "canopy/gpu.h"
}

namespace {
std::mutex g_route_lock;
}

extern "C" int ocl_sgemm_batched_xgemm(
    cl_command_queue q, size_t m, size_t n, size_t k, cl_mem a, size_t a_ld, size_t a_stride,
    cl_mem b, size_t b_ld, size_t b_stride, cl_mem c, size_t c_ld, size_t c_stride,
    size_t batch)
{
    cl_device_id dev = nullptr;
    if (clGetCommandQueueInfo(q, CL_QUEUE_DEVICE, sizeof dev, &dev, nullptr) != CL_SUCCESS)
        return (int)CLBlastInvalidCommandQueue;
    std::lock_guard<std::mutex> hold(g_route_lock);
    std::unordered_map<std::string, size_t> route;
    bool lowered = false;
    if (clblast::RetrieveParameters(dev, "GemmRoutine", clblast::Precision::kSingle, route) ==
            clblast::StatusCode::kSuccess &&
        route.size() == 1 && route.begin()->second > 1) {
        lowered = clblast::OverrideParameters(dev, "GemmRoutine", clblast::Precision::kSingle,
                                              {{route.begin()->first, 1}}) ==
                  clblast::StatusCode::kSuccess;
    }
    CLBlastStatusCode st = CLBlastSgemmStridedBatched(
        CLBlastLayoutColMajor, CLBlastTransposeNo, CLBlastTransposeYes, m, n, k, 1.0f, a, 0,
        a_ld, a_stride, b, 0, b_ld, b_stride, 0.0f, c, 0, c_ld, c_stride, batch, &q, nullptr);
    if (lowered)
        clblast::OverrideParameters(dev, "GemmRoutine", clblast::Precision::kSingle, route);
    return (int)st;
}
