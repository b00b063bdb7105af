// The optimizer update on the GPU: AdamW, Lion and SGD over a list of F32 master weights with their
// gradients and state, and the stochastic-rounded BF16/F16 copies of the result; or over BF16/F16 weights
// without masters (full_bf16 / full_fp16), widened to F32 for the update and written back with the same
// stochastic rounding, with gradients in any compute dtype. Each loop is the CPU
// loop of kernels/cpu/cpu_optim.c expression by expression with the rounding spelled out (__fmul_rn,
// __fadd_rn, __fdiv_rn, __fsqrt_rn stop nvcc from contracting a multiply and an add into one fma where the
// CPU rounds twice; __fmaf_rn where the CPU calls fmaf), so the GPU's bits equal the CPU's. The copies
// use kernels/stochastic_round.h, the same code the CPU runs.
//
// Launch shape: the list is cut into chunks of up to CHUNK tensors passed by value in the kernel's
// parameter struct (no device-side table to upload and keep alive, and a CUDA graph can capture it). Each
// tensor is cut into slabs of SLAB elements, one thread block per slab, numbered across the chunk's
// tensors (block_start), so a chunk of one large and many small tensors keeps every block busy and no
// block idles on a tensor shorter than the longest.
#include <cstdint>

#include "cuda_internal.h"

extern "C" {
#include "stochastic_round.h"
}

namespace
{

constexpr int THREADS = 256;
constexpr int64_t SLAB = THREADS * 4; // elements per block: four per thread, a block-wide stride apart
// 48 bytes per tensor: 64 of them, their block offsets and the scalars stay under the 4 KiB limit on
// kernel parameters.
constexpr int CHUNK = 64;
// Blocks of one launch, at most (a chunk is closed early before it would pass this).
constexpr int64_t MAX_BLOCKS = int64_t(1) << 30;

struct update_tensor {
    void *param;      // [n] F32 master (or BF16 / F16 weight: the chunk's masks say), updated in place
    const void *grad; // [n] F32, BF16 or F16
    float *state0;    // [n] F32 (AdamW exp_avg, Lion exp_avg, SGD momentum_buffer) or NULL
    float *state1;    // [n] F32 (AdamW exp_avg_sq) or NULL
    uint16_t *copy;   // [n] BF16 or F16 bits, or NULL
    int64_t n;
};

struct update_chunk {
    update_tensor tensors[CHUNK];
    int32_t block_start[CHUNK + 1]; // tensor t has blocks block_start[t] .. block_start[t + 1] - 1
    int count;
    uint64_t copy_is_bf16;          // bit t: tensor t's copy is BF16 (else F16)
    uint64_t param_bf16, param_f16; // bit t: tensor t's parameter is BF16 / F16 (neither: F32)
    uint64_t grad_bf16, grad_f16;   // bit t: tensor t's gradient is BF16 / F16 (neither: F32)
    uint64_t first_tensor; // position of tensors[0] in the whole list (the rounding hash's tensor index)
};

// The scalars of sdt_optimizer_update_args, by value.
struct update_scalars {
    int kind;
    float decay, b1, one_b1, b2, one_b2, step_size, bc2_sqrt, eps, neg_lr;
    float weight_decay, momentum, one_dampening;
    int use_weight_decay, use_momentum, nesterov, first_step;
    uint64_t seed;
    int64_t step;
};

static_assert(sizeof(update_chunk) + sizeof(update_scalars) <= 4096,
              "kernel parameters are limited to 4 KiB");

__device__ __forceinline__ float sign_of(float x) { return float((x > 0.0f) - (x < 0.0f)); }

// Element i of a buffer of F32, BF16 (the top 16 bits of an F32) or F16 values, widened to F32 exactly.
__device__ __forceinline__ float load_f32(const void *data, int64_t i, bool bf16, bool f16)
{
    if (bf16)
        return __uint_as_float(uint32_t(static_cast<const uint16_t *>(data)[i]) << 16);
    if (f16)
        return __half2float(__ushort_as_half(static_cast<const uint16_t *>(data)[i]));
    return static_cast<const float *>(data)[i];
}

__global__ void optimizer_update_kernel(const update_chunk chunk, const update_scalars a)
{
    // The tensor of this block: the last t with block_start[t] <= blockIdx.x (binary search).
    const int32_t block = int32_t(blockIdx.x);
    int lo = 0, hi = chunk.count - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (chunk.block_start[mid] <= block)
            lo = mid;
        else
            hi = mid - 1;
    }
    const int t = lo;
    const update_tensor u = chunk.tensors[t];
    const int64_t begin = int64_t(block - chunk.block_start[t]) * SLAB;
    const int64_t end = begin + SLAB < u.n ? begin + SLAB : u.n;
    const bool copy_bf16 = (chunk.copy_is_bf16 >> t) & 1u;
    const bool p_bf16 = (chunk.param_bf16 >> t) & 1u, p_f16 = (chunk.param_f16 >> t) & 1u;
    const bool g_bf16 = (chunk.grad_bf16 >> t) & 1u, g_f16 = (chunk.grad_f16 >> t) & 1u;
    for (int64_t i = begin + threadIdx.x; i < end; i += THREADS) {
        const float g = load_f32(u.grad, i, g_bf16, g_f16);
        float p = load_f32(u.param, i, p_bf16, p_f16);
        if (a.kind == SDT_UPDATE_ADAMW) {
            const float pi = __fmul_rn(p, a.decay);
            const float mi = __fadd_rn(__fmul_rn(u.state0[i], a.b1), __fmul_rn(a.one_b1, g));
            const float vi = __fadd_rn(__fmul_rn(u.state1[i], a.b2), __fmul_rn(__fmul_rn(a.one_b2, g), g));
            const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), a.bc2_sqrt), a.eps);
            p = __fadd_rn(pi, __fmul_rn(a.step_size, __fdiv_rn(mi, denom)));
            u.state0[i] = mi;
            u.state1[i] = vi;
        } else if (a.kind == SDT_UPDATE_LION) {
            const float m = u.state0[i];
            const float pi = __fmul_rn(p, a.decay);
            const float dir = sign_of(__fadd_rn(__fmul_rn(m, a.b1), __fmul_rn(a.one_b1, g)));
            p = __fadd_rn(pi, __fmul_rn(a.neg_lr, dir));
            u.state0[i] = __fadd_rn(__fmul_rn(m, a.b2), __fmul_rn(a.one_b2, g));
        } else {
            float d = g;
            if (a.use_weight_decay)
                d = __fmaf_rn(a.weight_decay, p, d);
            if (a.use_momentum) {
                const float b =
                    a.first_step ? d : __fmaf_rn(a.one_dampening, d, __fmul_rn(u.state0[i], a.momentum));
                u.state0[i] = b;
                d = a.nesterov ? __fmaf_rn(a.momentum, b, d) : b;
            }
            p = __fmaf_rn(a.neg_lr, d, p);
        }
        if (p_bf16 || p_f16) {
            // no master: the weight itself takes the stochastically rounded result
            const uint32_t r = sdt_sr_bits(a.seed, a.step, chunk.first_tensor + uint64_t(t), uint64_t(i));
            static_cast<uint16_t *>(u.param)[i] = p_bf16 ? sdt_sr_bf16(p, r) : sdt_sr_f16(p, r);
            continue;
        }
        static_cast<float *>(u.param)[i] = p;
        if (u.copy) {
            const uint32_t r = sdt_sr_bits(a.seed, a.step, chunk.first_tensor + uint64_t(t), uint64_t(i));
            u.copy[i] = copy_bf16 ? sdt_sr_bf16(p, r) : sdt_sr_f16(p, r);
        }
    }
}

} // namespace

int cuda_optimizer_update(sdt_engine *e, const sdt_optimizer_update_args *args)
{
    cuda_state *s = cuda_of(e);
    const update_scalars a{int(args->kind),
                           args->decay,
                           args->b1,
                           args->one_b1,
                           args->b2,
                           args->one_b2,
                           args->step_size,
                           args->bc2_sqrt,
                           args->eps,
                           args->neg_lr,
                           args->weight_decay,
                           args->momentum,
                           args->one_dampening,
                           args->use_weight_decay,
                           args->use_momentum,
                           args->nesterov,
                           args->first_step,
                           args->seed,
                           args->step};
    const int states = sdt_optimizer_update_state_count(args);
    size_t next = 0;
    while (next < args->count) {
        update_chunk chunk{};
        chunk.first_tensor = next;
        int64_t blocks = 0;
        while (next < args->count && chunk.count < CHUNK) {
            const int64_t n = sdt_tensor_numel(&args->params[next]);
            const int64_t slabs = (n + SLAB - 1) / SLAB;
            if (chunk.count > 0 && blocks + slabs > MAX_BLOCKS)
                break;
            update_tensor &u = chunk.tensors[chunk.count];
            u.param = args->params[next].data;
            u.grad = args->grads[next].data;
            const uint64_t bit = uint64_t(1) << chunk.count;
            if (args->params[next].dtype == SDT_BF16)
                chunk.param_bf16 |= bit;
            else if (args->params[next].dtype == SDT_F16)
                chunk.param_f16 |= bit;
            if (args->grads[next].dtype == SDT_BF16)
                chunk.grad_bf16 |= bit;
            else if (args->grads[next].dtype == SDT_F16)
                chunk.grad_f16 |= bit;
            u.state0 = states > 0 ? static_cast<float *>(args->state[0][next].data) : nullptr;
            u.state1 = states > 1 ? static_cast<float *>(args->state[1][next].data) : nullptr;
            u.copy = args->copies ? static_cast<uint16_t *>(args->copies[next].data) : nullptr;
            u.n = n;
            if (args->copies && args->copies[next].dtype == SDT_BF16)
                chunk.copy_is_bf16 |= uint64_t(1) << chunk.count;
            chunk.block_start[chunk.count] = int32_t(blocks);
            blocks += slabs;
            chunk.count++;
            next++;
        }
        chunk.block_start[chunk.count] = int32_t(blocks);
        if (blocks == 0)
            continue; // only empty tensors
        if (blocks > MAX_BLOCKS)
            return sdt_engine_fail(e,
                                   "optimizer_update: a tensor of %lld elements is too large for one launch",
                                   (long long)chunk.tensors[0].n);
        optimizer_update_kernel<<<unsigned(blocks), THREADS, 0, s->stream>>>(chunk, a);
        CUDA_TRY_LAUNCH(e, "optimizer_update");
    }
    return 0;
}
