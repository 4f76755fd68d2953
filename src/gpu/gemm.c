/* The engines' row-major SGEMM through CLBlast's column-major interface
 * (canopy/gpu.h, ocl_sgemm). */
#include <clblast_c.h>

#include "canopy/gpu.h"

/* C = A B row-major is C^T = B^T A^T column-major on the same memory:
 * CLBlast's kernel then writes C in place, where its row-major call
 * computed into a temporary and transposed it back, and reads the
 * activations (B) untransposed and, when n is a multiple of its M tile,
 * without a padded copy (RetinaNet's layer1 1x1 convs on PoCL, M 256,
 * N 40000, K 64: 116 -> 27 ms). */
size_t ocl_sgemm_temp_bytes(cl_command_queue q, size_t m, size_t n, size_t k)
{
    size_t need = 0;
    if (CLBlastSGemmTempBufferSize(CLBlastLayoutColMajor, CLBlastTransposeNo, CLBlastTransposeNo,
                                   n, m, k, 0, n, 0, k, 0, n, &q, &need) != CLBlastSuccess)
        return 0;
    return need;
}

int ocl_sgemm(cl_command_queue q, size_t m, size_t n, size_t k, cl_mem a, cl_mem b, cl_mem c,
              cl_mem tmp)
{
    if (tmp)
        return (int)CLBlastSgemmWithTempBuffer(CLBlastLayoutColMajor, CLBlastTransposeNo,
                                               CLBlastTransposeNo, n, m, k, 1.0f, b, 0, n, a, 0,
                                               k, 0.0f, c, 0, n, &q, NULL, tmp);
    return (int)CLBlastSgemm(CLBlastLayoutColMajor, CLBlastTransposeNo, CLBlastTransposeNo, n, m,
                             k, 1.0f, b, 0, n, a, 0, k, 0.0f, c, 0, n, &q, NULL);
}
