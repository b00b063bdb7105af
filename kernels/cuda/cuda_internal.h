// The CUDA backend's shared state and helpers, for the .cu files of kernels/cuda only.
//
// One cuda_state per engine (sdt_engine.backend_state): the device, one stream every op is queued on,
// the library handles and one workspace they share. Memory comes from the stream-ordered allocator
// (cudaMallocAsync on a pool that keeps freed blocks), so the models' per-step activation allocations
// are cheap after the first step.
//
// Every op entry point has the signature of its slot in sdt_backend_ops (backend_impl.h) and may assume
// tensors that passed backend.c's checks: on this device, a compute dtype, the documented shapes.
// Tensors are dense and row-major; activations are channels-last, as on the CPU (kernels/cpu/cpu_ops.h
// states each op's layout and gradient rules: backward ADDS into every gradient, a NULL gradient is not
// computed). f16 and bf16 tensors are computed in fp32 registers and rounded once on store; statistics
// (mean, rstd, lse, loss) are always f32.
#ifndef SDTUNE_KERNELS_CUDA_INTERNAL_H
#define SDTUNE_KERNELS_CUDA_INTERNAL_H

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <cstddef>
#include <cstdint>

extern "C" {
#include "backend_impl.h"
}

// ---- state ---------------------------------------------------------------------------------------------

struct cuda_plan_cache; // per-shape cuBLASLt / cuDNN plans (cuda_gemm.cu, cuda_conv.cu own their parts)

struct cuda_state {
    int device;
    cudaStream_t stream;
    cudaMemPool_t pool;
    cublasLtHandle_t lt;
    cudnnHandle_t dnn;
    void *workspace; // [workspace_bytes] bytes, shared by cuBLASLt and cuDNN on the one stream
    size_t workspace_bytes;
    int sm_count;                       // multiprocessors, for grid sizes of reductions
    struct cuda_plan_cache *gemm_plans; // owned by cuda_gemm.cu (NULL until the first GEMM)
    struct cuda_plan_cache *conv_plans; // owned by cuda_conv.cu (NULL until the first convolution)
    // The live device blocks of this engine and their sizes, for sdt_engine_live_bytes / peak_bytes
    // (cuda_backend.cu): an open-addressing table (linear probing, power-of-two capacity, at most half
    // full) from block address to bytes, so that a free knows its size without asking the driver.
    sdt_engine *engine;    // the engine this state belongs to (its live/peak counters)
    uintptr_t *block_ptrs; // [block_capacity] block addresses, 0 = empty slot
    size_t *block_bytes;   // [block_capacity] their sizes as counted
    size_t block_capacity, block_count;
};

static inline cuda_state *cuda_of(sdt_engine *e) { return static_cast<cuda_state *>(e->backend_state); }

// Device memory accounting (cuda_backend.cu). Every stream-ordered allocation of the backend goes through
// these: cuda_track_alloc after a successful cudaMallocAsync adds the block to the engine's live bytes
// (and the peak); it returns -1 with the engine's error set when the table cannot grow, and the caller
// then frees the block. cuda_track_free before cudaFreeAsync takes it off; an unknown address is ignored.
int cuda_track_alloc(cuda_state *s, void *ptr, size_t bytes);
void cuda_track_free(cuda_state *s, void *ptr);

// The workspace cuBLASLt and cuDNN may use: 64 MiB covers the heuristics' best plans for SD shapes.
constexpr size_t CUDA_WORKSPACE_BYTES = size_t(64) << 20;

// ---- errors --------------------------------------------------------------------------------------------
// Each returns -1 from the calling op with the failed call and the library's reason in sdt_engine_error().

#define CUDA_TRY(e, call)                                                                                    \
    do {                                                                                                     \
        cudaError_t rc_ = (call);                                                                            \
        if (rc_ != cudaSuccess)                                                                              \
            return sdt_engine_fail((e), "%s: %s", #call, cudaGetErrorString(rc_));                           \
    } while (0)

// After a kernel launch: a bad configuration is reported at once, a fault in the kernel at the next sync.
#define CUDA_TRY_LAUNCH(e, what)                                                                             \
    do {                                                                                                     \
        cudaError_t rc_ = cudaGetLastError();                                                                \
        if (rc_ != cudaSuccess)                                                                              \
            return sdt_engine_fail((e), "%s: kernel launch: %s", (what), cudaGetErrorString(rc_));           \
    } while (0)

#define CUBLAS_TRY(e, call)                                                                                  \
    do {                                                                                                     \
        cublasStatus_t rc_ = (call);                                                                         \
        if (rc_ != CUBLAS_STATUS_SUCCESS)                                                                    \
            return sdt_engine_fail((e), "%s: %s", #call, cublasLtGetStatusString(rc_));                      \
    } while (0)

#define CUDNN_TRY(e, call)                                                                                   \
    do {                                                                                                     \
        cudnnStatus_t rc_ = (call);                                                                          \
        if (rc_ != CUDNN_STATUS_SUCCESS)                                                                     \
            return sdt_engine_fail((e), "%s: %s", #call, cudnnGetErrorString(rc_));                          \
    } while (0)

// ---- dtypes --------------------------------------------------------------------------------------------
// Kernels are templates over the storage type T (float, __half, __nv_bfloat16); loads widen to float,
// stores round to nearest even.

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_f32<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x)
{
    return __float2bfloat16_rn(x);
}

// Calls body with the storage type of dtype bound to the type name T:
//   CUDA_DISPATCH(t->dtype, T, { my_kernel<T><<<grid, block, 0, s->stream>>>(...); });
#define CUDA_DISPATCH(dtype, T, ...)                                                                         \
    do {                                                                                                     \
        switch (dtype) {                                                                                     \
        case SDT_F16: {                                                                                      \
            using T = __half;                                                                                \
            __VA_ARGS__;                                                                                     \
        } break;                                                                                             \
        case SDT_BF16: {                                                                                     \
            using T = __nv_bfloat16;                                                                         \
            __VA_ARGS__;                                                                                     \
        } break;                                                                                             \
        default: {                                                                                           \
            using T = float;                                                                                 \
            __VA_ARGS__;                                                                                     \
        } break;                                                                                             \
        }                                                                                                    \
    } while (0)

// ---- launch shapes -------------------------------------------------------------------------------------

// Blocks of `threads` covering n items with a grid-stride loop: at most 32 blocks per multiprocessor.
static inline unsigned cuda_blocks(const cuda_state *s, int64_t n, int threads)
{
    int64_t blocks = (n + threads - 1) / threads;
    int64_t cap = int64_t(s->sm_count > 0 ? s->sm_count : 1) * 32;
    if (blocks > cap)
        blocks = cap;
    return unsigned(blocks < 1 ? 1 : blocks);
}

// Rows and the length of the last dim, for the "rows" ops that flatten leading dims.
static inline int64_t cuda_rows(const sdt_tensor *t, int64_t *cols)
{
    *cols = t->ndim > 0 ? t->shape[t->ndim - 1] : 1;
    return *cols > 0 ? sdt_tensor_numel(t) / *cols : 0;
}

// ---- the op entry points, by file ----------------------------------------------------------------------
// Each file defines its entries; cuda_backend.cu puts them in the table.

// cuda_elementwise.cu
int cuda_fill(sdt_engine *e, sdt_tensor *t, float value);
int cuda_scale(sdt_engine *e, sdt_tensor *t, float alpha);
int cuda_dropout_scale(sdt_engine *e, sdt_tensor *t, const sdt_dropout_args *args);
int cuda_axpy(sdt_engine *e, sdt_tensor *y, float alpha, const sdt_tensor *x);
int cuda_copy(sdt_engine *e, sdt_tensor *dst, const sdt_tensor *src);
int cuda_add_forward(sdt_engine *e, sdt_tensor *out, const sdt_tensor *a, const sdt_tensor *b);
int cuda_add_backward(sdt_engine *e, sdt_tensor *da, sdt_tensor *db, const sdt_tensor *dout);
int cuda_add_channel_vector_forward(sdt_engine *e, sdt_tensor *out, const sdt_tensor *inp,
                                    const sdt_tensor *vec);
int cuda_add_channel_vector_backward(sdt_engine *e, sdt_tensor *dinp, sdt_tensor *dvec,
                                     const sdt_tensor *dout);
int cuda_concat_forward(sdt_engine *e, sdt_tensor *out, const sdt_tensor *a, const sdt_tensor *b);
int cuda_concat_backward(sdt_engine *e, sdt_tensor *da, sdt_tensor *db, const sdt_tensor *dout);
int cuda_upsample2x_forward(sdt_engine *e, sdt_tensor *out, const sdt_tensor *inp);
int cuda_upsample2x_backward(sdt_engine *e, sdt_tensor *dinp, const sdt_tensor *dout);
int cuda_timestep_embedding(sdt_engine *e, sdt_tensor *out, const sdt_tensor *timesteps, int flip_sin_to_cos,
                            float freq_shift, float max_period);
int cuda_activation_forward(sdt_engine *e, sdt_tensor *out, const sdt_tensor *inp, sdt_activation act);
int cuda_activation_backward(sdt_engine *e, sdt_tensor *dinp, const sdt_tensor *dout, const sdt_tensor *inp,
                             sdt_activation act);
int cuda_geglu_forward(sdt_engine *e, sdt_tensor *out, const sdt_tensor *inp);
int cuda_geglu_backward(sdt_engine *e, sdt_tensor *dinp, const sdt_tensor *dout, const sdt_tensor *inp);
int cuda_softmax_forward(sdt_engine *e, sdt_tensor *out, const sdt_tensor *inp);
int cuda_softmax_backward(sdt_engine *e, sdt_tensor *dinp, const sdt_tensor *dout, const sdt_tensor *out);
int cuda_mse_loss_forward(sdt_engine *e, sdt_tensor *loss, sdt_tensor *per_sample, const sdt_tensor *pred,
                          const sdt_tensor *target, const sdt_tensor *weights);
int cuda_mse_loss_backward(sdt_engine *e, sdt_tensor *dpred, const sdt_tensor *pred, const sdt_tensor *target,
                           const sdt_tensor *weights, float dloss);

// cuda_norm.cu
int cuda_group_norm_forward(sdt_engine *e, sdt_tensor *out, sdt_tensor *mean, sdt_tensor *rstd,
                            const sdt_tensor *inp, const sdt_tensor *weight, const sdt_tensor *bias,
                            int groups, float eps, int fuse_silu);
int cuda_group_norm_backward(sdt_engine *e, sdt_tensor *dinp, sdt_tensor *dweight, sdt_tensor *dbias,
                             const sdt_tensor *dout, const sdt_tensor *inp, const sdt_tensor *weight,
                             const sdt_tensor *bias, const sdt_tensor *mean, const sdt_tensor *rstd,
                             int groups, int fuse_silu);
int cuda_layer_norm_forward(sdt_engine *e, sdt_tensor *out, sdt_tensor *mean, sdt_tensor *rstd,
                            const sdt_tensor *inp, const sdt_tensor *weight, const sdt_tensor *bias,
                            float eps);
int cuda_layer_norm_backward(sdt_engine *e, sdt_tensor *dinp, sdt_tensor *dweight, sdt_tensor *dbias,
                             const sdt_tensor *dout, const sdt_tensor *inp, const sdt_tensor *weight,
                             const sdt_tensor *mean, const sdt_tensor *rstd);

// cuda_attention.cu
int cuda_attention_forward(sdt_engine *e, sdt_tensor *out, sdt_tensor *lse, const sdt_tensor *q,
                           const sdt_tensor *k, const sdt_tensor *v, int heads, float scale, int causal);
int cuda_attention_backward(sdt_engine *e, sdt_tensor *dq, sdt_tensor *dk, sdt_tensor *dv,
                            const sdt_tensor *dout, const sdt_tensor *q, const sdt_tensor *k,
                            const sdt_tensor *v, const sdt_tensor *out, const sdt_tensor *lse, int heads,
                            float scale, int causal);

// cuda_gemm.cu (cuBLASLt)
int cuda_linear_forward(sdt_engine *e, sdt_tensor *out, const sdt_tensor *inp, const sdt_tensor *weight,
                        const sdt_tensor *bias);
int cuda_linear_backward(sdt_engine *e, sdt_tensor *dinp, sdt_tensor *dweight, sdt_tensor *dbias,
                         const sdt_tensor *dout, const sdt_tensor *inp, const sdt_tensor *weight);
void cuda_gemm_plans_free(cuda_state *s);

// cuda_conv.cu (cuDNN)
int cuda_conv2d_forward(sdt_engine *e, sdt_tensor *out, const sdt_tensor *inp, const sdt_tensor *weight,
                        const sdt_tensor *bias, const sdt_conv2d_params *p);
int cuda_conv2d_backward(sdt_engine *e, sdt_tensor *dinp, sdt_tensor *dweight, sdt_tensor *dbias,
                         const sdt_tensor *dout, const sdt_tensor *inp, const sdt_tensor *weight,
                         const sdt_conv2d_params *p);
void cuda_conv_plans_free(cuda_state *s);

// cuda_optim.cu
int cuda_optimizer_update(sdt_engine *e, const sdt_optimizer_update_args *args);

// cuda_reduce.cu
int cuda_sum_squares(sdt_engine *e, sdt_tensor *out, const sdt_tensor *tensors, size_t count);

#endif
