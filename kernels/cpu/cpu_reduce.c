/* Reductions over whole tensors: the sum of squares behind the gradient norm (sdt_sum_squares). One thread,
 * in index order, in double: the order is part of the result (the host loop of train/optim.c adds in the
 * same order, so the two are equal bit for bit), and a norm is taken once per step, so the single pass
 * over memory is not worth an OpenMP split that would change the sum. A parallel version would cut every
 * tensor into fixed chunks and add the chunk sums in order, as the CUDA kernel does. */
#include "cpu_ops.h"

double cpu_add_squares(double sum, const void *x, sdt_dtype dtype, int64_t n)
{
    /* A float squared in double is exact (24-bit mantissas give a 48-bit product), so only the additions
     * round; NaN and Inf stay NaN and Inf. */
    if (dtype == SDT_F32) {
        const float *v = x;
        for (int64_t i = 0; i < n; i++)
            sum += (double)v[i] * (double)v[i];
    } else {
        const uint16_t *v = x;
        for (int64_t i = 0; i < n; i++) {
            double d = dtype == SDT_F16 ? sdt_f16_to_f32(v[i]) : sdt_bf16_to_f32(v[i]);
            sum += d * d;
        }
    }
    return sum;
}
