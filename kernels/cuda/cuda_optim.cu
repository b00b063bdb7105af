// The optimizer update on the GPU: AdamW, Lion and SGD over a list of F32 master weights with their
// gradients and state, and the stochastic-rounded BF16/F16 copies of the result. Each loop is the CPU
// loop of kernels/cpu/cpu_optim.c expression by expression with the rounding spelled out (__fmul_rn,
// __fadd_rn, __fdiv_rn, __fsqrt_rn stop nvcc from contracting a multiply and an add into one fma where the
// CPU rounds twice; __fmaf_rn where the CPU calls fmaf), so the GPU's bits equal the CPU's. The copies
// use kernels/stochastic_round.h, the same code the CPU runs.
//
// Launch shape: the list is cut into chunks of up to CHUNK tensors passed by value in the kernel's
// parameter struct (no device-side table to upload and keep alive, and a CUDA graph can capture it); the
// grid's y index picks the tensor of the chunk and its x blocks stride over that tensor's elements.
#include <cstdint>

#include "cuda_internal.h"

extern "C" {
#include "stochastic_round.h"
}

namespace
{

constexpr int THREADS = 256;
// 48 bytes per tensor: 64 of them and the scalars stay under the 4 KiB kernel-parameter limit.
constexpr int CHUNK = 64;

struct update_tensor {
    float *param;      // [n] F32 master, updated in place
    const float *grad; // [n] F32
    float *state0;     // [n] F32 (AdamW exp_avg, Lion exp_avg, SGD momentum_buffer) or NULL
    float *state1;     // [n] F32 (AdamW exp_avg_sq) or NULL
    uint16_t *copy;    // [n] BF16 or F16 bits, or NULL
    int64_t n;
};

struct update_chunk {
    update_tensor tensors[CHUNK];
    int count;
    int copy_is_bf16[CHUNK];
    uint64_t first_tensor; // position of tensors[0] in the whole list (the rounding hash's tensor index)
};

static_assert(sizeof(update_chunk) + 128 <= 4096, "the chunk must fit the kernel-parameter limit");

// The scalars of sdt_optimizer_update_args, by value.
struct update_scalars {
    int kind;
    float decay, b1, one_b1, b2, one_b2, step_size, bc2_sqrt, eps, neg_lr;
    float weight_decay, momentum, one_dampening;
    int use_weight_decay, use_momentum, nesterov, first_step;
    uint64_t seed;
    int64_t step;
};

__device__ __forceinline__ float sign_of(float x) { return float((x > 0.0f) - (x < 0.0f)); }

__global__ void optimizer_update_kernel(const update_chunk chunk, const update_scalars a)
{
    const int t = int(blockIdx.y);
    if (t >= chunk.count)
        return;
    const update_tensor u = chunk.tensors[t];
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < u.n;
         i += int64_t(gridDim.x) * blockDim.x) {
        const float g = u.grad[i];
        float p = u.param[i];
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
        u.param[i] = p;
        if (u.copy) {
            const uint32_t r = sdt_sr_bits(a.seed, a.step, chunk.first_tensor + uint64_t(t), uint64_t(i));
            u.copy[i] = chunk.copy_is_bf16[t] ? sdt_sr_bf16(p, r) : sdt_sr_f16(p, r);
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
    for (size_t first = 0; first < args->count; first += CHUNK) {
        update_chunk chunk{};
        chunk.first_tensor = first;
        int64_t longest = 0;
        for (size_t i = first; i < args->count && chunk.count < CHUNK; i++) {
            update_tensor &u = chunk.tensors[chunk.count];
            u.param = static_cast<float *>(args->params[i].data);
            u.grad = static_cast<const float *>(args->grads[i].data);
            u.state0 = states > 0 ? static_cast<float *>(args->state[0][i].data) : nullptr;
            u.state1 = states > 1 ? static_cast<float *>(args->state[1][i].data) : nullptr;
            u.copy = args->copies ? static_cast<uint16_t *>(args->copies[i].data) : nullptr;
            chunk.copy_is_bf16[chunk.count] = args->copies && args->copies[i].dtype == SDT_BF16;
            u.n = sdt_tensor_numel(&args->params[i]);
            if (u.n > longest)
                longest = u.n;
            chunk.count++;
        }
        if (longest == 0)
            continue;
        // The x blocks are shared by the chunk's tensors: as many as the longest needs, capped so that the
        // whole grid stays near cuda_blocks' cap.
        unsigned x_blocks = cuda_blocks(s, longest, THREADS);
        unsigned x_cap = unsigned((s->sm_count > 0 ? s->sm_count : 1) * 32 / chunk.count);
        if (x_blocks > x_cap)
            x_blocks = x_cap > 0 ? x_cap : 1;
        const dim3 grid(x_blocks, unsigned(chunk.count));
        optimizer_update_kernel<<<grid, THREADS, 0, s->stream>>>(chunk, a);
        CUDA_TRY_LAUNCH(e, "optimizer_update");
    }
    return 0;
}
