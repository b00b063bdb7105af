// The sum of squares of a list of tensors (sdt_sum_squares): the gradient norm of clipping and the
// overflow check of fp16 training, reduced on the device so that the host downloads 4 bytes.
//
// Deterministic without atomics, in two kernels on the one stream:
//   1. every tensor is cut into slabs of SLAB elements, one thread block per slab, numbered across the
//      list (a chunk of up to CHUNK tensors per launch, passed by value as in cuda_optim.cu); a block adds
//      x * x of its slab in double (each thread every THREADS-th element in index order, then a fixed
//      warp-shuffle and shared-memory tree) and writes one partial to the workspace at its slab number;
//   2. one block adds the partials in a fixed order (thread i takes partials i, i + THREADS, ... in
//      order, then the same tree) and writes the F32 result.
// The partition depends only on the tensors' sizes, not on the device, so two runs give the same bits.
//
// Why double: squares of F32 values are exact in double, and with double sums the result differs from the
// CPU's (one sequential double sum, kernels/cpu/cpu_reduce.c) by double rounding only, i.e. it is the same
// F32 value in all but rare ties. The kernel reads 2 or 4 bytes per element and does one double
// multiply-add, so it stays memory-bound on sm_90 (FP64 at half the FP32 rate). NaN and Inf propagate
// through every addition; a finite sum beyond F32's range becomes Inf when it is rounded at the end.
//
// Faster, not written: vector loads (8 or 16 bytes) and more elements per block for large tensors.
#include <cstdint>

#include "cuda_internal.h"

namespace
{

constexpr int THREADS = 256;
constexpr int64_t SLAB =
    int64_t(THREADS) * 16; // elements per block: 16 per thread, a block-wide stride apart
// 24 bytes per tensor plus its block offset: 96 tensors stay well under the 4 KiB kernel parameter limit.
constexpr int CHUNK = 96;

struct squares_tensor {
    const void *data; // [n] F32, F16 or BF16
    int64_t n;
    int dtype; // sdt_dtype
};

struct squares_chunk {
    squares_tensor tensors[CHUNK];
    int64_t block_start[CHUNK + 1]; // tensor t has blocks block_start[t] .. block_start[t + 1] - 1
    int count;
    int64_t first_partial; // where this launch's blocks write in the partials
};

static_assert(sizeof(squares_chunk) <= 4096, "kernel parameters are limited to 4 KiB");

__device__ __forceinline__ double square_of(const squares_tensor &u, int64_t i)
{
    float x;
    if (u.dtype == SDT_F16)
        x = __half2float(static_cast<const __half *>(u.data)[i]);
    else if (u.dtype == SDT_BF16)
        x = __bfloat162float(static_cast<const __nv_bfloat16 *>(u.data)[i]);
    else
        x = static_cast<const float *>(u.data)[i];
    const double d = double(x);
    return d * d; // exact: a 24-bit mantissa squared fits in 53 bits
}

// The sum of v over the block's THREADS threads, in a fixed order: warp shuffles, then warp 0 adds the
// eight warp sums. The result is valid in thread 0.
__device__ double block_sum(double v)
{
    __shared__ double warp_sums[THREADS / 32];
    for (int offset = 16; offset > 0; offset /= 2)
        v += __shfl_down_sync(0xffffffffu, v, offset);
    const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
    if (lane == 0)
        warp_sums[warp] = v;
    __syncthreads();
    double total = 0.0;
    if (warp == 0) {
        total = lane < THREADS / 32 ? warp_sums[lane] : 0.0;
        for (int offset = 16; offset > 0; offset /= 2)
            total += __shfl_down_sync(0xffffffffu, total, offset);
    }
    return total;
}

// partials [first_partial + blocks of this launch] double: one per slab.
__global__ void __launch_bounds__(THREADS)
    squares_partials_kernel(const squares_chunk chunk, double *partials)
{
    const int64_t block = int64_t(blockIdx.x);
    // The tensor of this block: the last t with block_start[t] <= block (empty tensors own no block).
    int lo = 0, hi = chunk.count - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (chunk.block_start[mid] <= block)
            lo = mid;
        else
            hi = mid - 1;
    }
    const squares_tensor u = chunk.tensors[lo];
    const int64_t begin = (block - chunk.block_start[lo]) * SLAB;
    const int64_t end = begin + SLAB < u.n ? begin + SLAB : u.n;
    double sum = 0.0;
    for (int64_t i = begin + threadIdx.x; i < end; i += THREADS)
        sum += square_of(u, i);
    sum = block_sum(sum);
    if (threadIdx.x == 0)
        partials[chunk.first_partial + block] = sum;
}

// out [1] F32 = the sum of partials [count] in a fixed order (one block).
__global__ void __launch_bounds__(THREADS)
    squares_total_kernel(const double *partials, int64_t count, float *out)
{
    double sum = 0.0;
    for (int64_t i = threadIdx.x; i < count; i += THREADS)
        sum += partials[i];
    sum = block_sum(sum);
    if (threadIdx.x == 0)
        out[0] = float(sum); // round to nearest; beyond F32's range gives Inf
}

} // namespace

int cuda_sum_squares(sdt_engine *e, sdt_tensor *out, const sdt_tensor *tensors, size_t count)
{
    cuda_state *s = cuda_of(e);
    // The partials live in the workspace (8 bytes each; 64 MiB hold 8M slabs, 34 G elements): nothing else
    // runs on the stream between the two kernels.
    double *partials = static_cast<double *>(s->workspace); // [total slabs] double
    const size_t max_partials = s->workspace_bytes / sizeof(double);
    int64_t total = 0;
    size_t next = 0;
    while (next < count) {
        squares_chunk chunk{};
        chunk.first_partial = total;
        int64_t blocks = 0;
        while (next < count && chunk.count < CHUNK) {
            const int64_t n = sdt_tensor_numel(&tensors[next]);
            squares_tensor &u = chunk.tensors[chunk.count];
            u.data = tensors[next].data;
            u.n = n;
            u.dtype = int(tensors[next].dtype);
            chunk.block_start[chunk.count] = blocks;
            blocks += (n + SLAB - 1) / SLAB;
            chunk.count++;
            next++;
        }
        chunk.block_start[chunk.count] = blocks;
        if (blocks == 0)
            continue; // only empty tensors
        if (size_t(total + blocks) > max_partials || blocks > int64_t(INT32_MAX))
            return sdt_engine_fail(e, "sum_squares: %lld elements are more than one call can reduce",
                                   (long long)((total + blocks) * SLAB));
        squares_partials_kernel<<<unsigned(blocks), THREADS, 0, s->stream>>>(chunk, partials);
        CUDA_TRY_LAUNCH(e, "sum_squares");
        total += blocks;
    }
    // Also with no partials at all (an empty list, or only empty tensors): the result is then 0.
    squares_total_kernel<<<1, THREADS, 0, s->stream>>>(partials, total, static_cast<float *>(out->data));
    CUDA_TRY_LAUNCH(e, "sum_squares");
    return 0;
}
