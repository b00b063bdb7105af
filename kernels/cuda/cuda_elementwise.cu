// The memory-bound ops of the CUDA backend: fill, scale, axpy, copy, the adds, concat, upsample, the
// timestep embedding, the activations and GEGLU, row softmax and the MSE loss. Each matches its fp32
// reference in kernels/cpu/cpu_elementwise.c (softmax: cpu_attention.c) formula for formula.
//
// Kernel shapes: elementwise ops are grid-stride loops over 64-bit element indices (cuda_blocks caps the
// grid); the reductions (softmax rows, the channel sums of add_channel_vector's backward, the loss) give
// each output to one thread block that sums in a fixed order, so results never depend on scheduling and no
// float atomics are used.
//
// dtypes: the tensors of one call may differ in dtype (f32 loss weights and timesteps beside f16/bf16
// activations, an f32 gradient of a bf16 tensor), so each buffer carries its own dtype and every load
// widens to fp32 and every store rounds once (nearest even). The switch on the dtype is the same for every
// thread of a launch, so it costs a few uniform instructions per element; a faster version would template
// the common case where all tensors share one dtype and vectorise the loads (8 halves per 16 bytes).
#include <cmath>
#include <cstdint>

#include "cuda_internal.h"
#include "keyed_dropout.h"

namespace
{

// ---- typed buffers ------------------------------------------------------------------------------------

// A device buffer read as fp32, whatever its storage dtype. NULL p = an absent optional tensor.
struct in_buf {
    const void *p;
    int dtype; // sdt_dtype: SDT_F32, SDT_F16 or SDT_BF16
};

// A device buffer written (or read and written) as fp32.
struct out_buf {
    void *p;
    int dtype;
};

in_buf in_of(const sdt_tensor *t) { return t ? in_buf{t->data, int(t->dtype)} : in_buf{nullptr, SDT_F32}; }
out_buf out_of(sdt_tensor *t) { return t ? out_buf{t->data, int(t->dtype)} : out_buf{nullptr, SDT_F32}; }

__device__ __forceinline__ float ld(in_buf b, int64_t i)
{
    switch (b.dtype) {
    case SDT_F16: return to_f32(static_cast<const __half *>(b.p)[i]);
    case SDT_BF16: return to_f32(static_cast<const __nv_bfloat16 *>(b.p)[i]);
    default: return static_cast<const float *>(b.p)[i];
    }
}

__device__ __forceinline__ float ld(out_buf b, int64_t i) { return ld(in_buf{b.p, b.dtype}, i); }

__device__ __forceinline__ void st(out_buf b, int64_t i, float v)
{
    switch (b.dtype) {
    case SDT_F16: static_cast<__half *>(b.p)[i] = from_f32<__half>(v); break;
    case SDT_BF16: static_cast<__nv_bfloat16 *>(b.p)[i] = from_f32<__nv_bfloat16>(v); break;
    default: static_cast<float *>(b.p)[i] = v; break;
    }
}

// ---- launch shapes ------------------------------------------------------------------------------------

constexpr int THREADS = 256;     // elementwise kernels
constexpr int ROW_THREADS = 256; // one block per row (softmax) or per sample (loss); a multiple of 32

// Every index of [0, n) once, over the whole grid, with 64-bit arithmetic.
#define GRID_STRIDE(i, n)                                                                                    \
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n);                                \
         i += int64_t(gridDim.x) * blockDim.x)

// Blocks for one-block-per-row kernels: the rows themselves, capped (the kernels loop over the rest).
unsigned row_blocks(const cuda_state *s, int64_t rows)
{
    int64_t cap = int64_t(s->sm_count > 0 ? s->sm_count : 1) * 32;
    return unsigned(rows < cap ? (rows > 0 ? rows : 1) : cap);
}

// ---- block reductions ---------------------------------------------------------------------------------
// For 1-D blocks whose size is a multiple of 32 (at most 1024). Every thread gets the result; every warp
// combines the same partials in the same order, so all threads see the same bits. shared has 32 floats.

__device__ __forceinline__ float warp_sum(float v)
{
    for (int off = 16; off > 0; off >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

__device__ __forceinline__ float warp_max(float v)
{
    for (int off = 16; off > 0; off >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

__device__ float block_sum(float v, float *shared /* [32] */)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads(); // a previous reduction may still be reading shared
    if (lane == 0)
        shared[warp] = v;
    __syncthreads();
    return warp_sum(lane < warps ? shared[lane] : 0.0f);
}

__device__ float block_max(float v, float *shared /* [32] */)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0)
        shared[warp] = v;
    __syncthreads();
    return warp_max(lane < warps ? shared[lane] : -INFINITY);
}

// ---- activations (the formulas of cpu_elementwise.c) ---------------------------------------------------

constexpr float GELU_RSQRT2 = 0.70710678118654752440f;   // 1 / sqrt(2)
constexpr float GELU_RSQRT2PI = 0.39894228040143267794f; // 1 / sqrt(2 pi)
constexpr float GELU_TANH_K0 = 0.79788456080286535588f;  // sqrt(2 / pi)
constexpr float GELU_TANH_K1 = 0.044715f;
constexpr float QUICK_GELU_K = 1.702f;

// sigmoid(z) and 1 - sigmoid(z) from one exp of -|z|: neither overflows, and 1 - s keeps its precision
// where s rounds to 1.
__device__ __forceinline__ void sigmoid_pair(float z, float *s, float *one_minus_s)
{
    float e = expf(-fabsf(z));
    float p = 1.0f / (1.0f + e), q = e / (1.0f + e);
    *s = z >= 0.0f ? p : q;
    *one_minus_s = z >= 0.0f ? q : p;
}

__device__ __forceinline__ float gelu_exact(float x) { return 0.5f * x * (1.0f + erff(x * GELU_RSQRT2)); }

// d/dx x Phi(x) = Phi(x) + x phi(x); for huge |x| the exp underflows to 0, the right limit.
__device__ __forceinline__ float gelu_exact_grad(float x)
{
    return 0.5f * (1.0f + erff(x * GELU_RSQRT2)) + x * GELU_RSQRT2PI * expf(-0.5f * x * x);
}

// tanh(u), 1 + tanh(u) and sech^2(u) from e = exp(-2|u|), without the cancellations of 1 - tanh^2.
__device__ __forceinline__ void tanh_sech2(float u, float *one_plus_t, float *sech2)
{
    float e = expf(-2.0f * fabsf(u));
    float r = 1.0f / (1.0f + e);
    float mag = (1.0f - e) * r;
    *one_plus_t = u >= 0.0f ? 1.0f + mag : 2.0f * e * r;
    *sech2 = 4.0f * e * r * r;
}

__device__ __forceinline__ float gelu_tanh(float x)
{
    float one_plus_t, sech2;
    tanh_sech2(GELU_TANH_K0 * (x + GELU_TANH_K1 * x * x * x), &one_plus_t, &sech2);
    return 0.5f * x * one_plus_t;
}

__device__ __forceinline__ float gelu_tanh_grad(float x)
{
    float one_plus_t, sech2;
    tanh_sech2(GELU_TANH_K0 * (x + GELU_TANH_K1 * x * x * x), &one_plus_t, &sech2);
    float g = 0.5f * one_plus_t;
    // Where sech^2 underflowed x^2 may be inf: skipping keeps 0 * inf from making the gradient NaN.
    if (sech2 > 0.0f)
        g += 0.5f * x * sech2 * GELU_TANH_K0 * (1.0f + 3.0f * GELU_TANH_K1 * x * x);
    return g;
}

// x sigmoid(k x) and its derivative; k = 1 is SiLU, k = 1.702 quick GELU.
__device__ __forceinline__ float x_sigmoid(float x, float k)
{
    float s, one_minus_s;
    sigmoid_pair(k * x, &s, &one_minus_s);
    return x * s;
}

__device__ __forceinline__ float x_sigmoid_grad(float x, float k)
{
    float s, one_minus_s;
    sigmoid_pair(k * x, &s, &one_minus_s);
    // x multiplies last: for a huge finite x, k x may overflow while s (1 - s) is already 0.
    return s + x * (k * s * one_minus_s);
}

template <int ACT> __device__ __forceinline__ float act_value(float x)
{
    if (ACT == SDT_ACT_GELU)
        return gelu_exact(x);
    if (ACT == SDT_ACT_GELU_TANH)
        return gelu_tanh(x);
    if (ACT == SDT_ACT_QUICK_GELU)
        return x_sigmoid(x, QUICK_GELU_K);
    return x_sigmoid(x, 1.0f);
}

template <int ACT> __device__ __forceinline__ float act_grad(float x)
{
    if (ACT == SDT_ACT_GELU)
        return gelu_exact_grad(x);
    if (ACT == SDT_ACT_GELU_TANH)
        return gelu_tanh_grad(x);
    if (ACT == SDT_ACT_QUICK_GELU)
        return x_sigmoid_grad(x, QUICK_GELU_K);
    return x_sigmoid_grad(x, 1.0f);
}

// ---- kernels: small helpers ---------------------------------------------------------------------------

__global__ void fill_kernel(out_buf y /* [n] */, float value, int64_t n)
{
    GRID_STRIDE(i, n) { st(y, i, value); }
}

__global__ void scale_kernel(out_buf y /* [n] */, float alpha, int64_t n)
{
    GRID_STRIDE(i, n) { st(y, i, ld(y, i) * alpha); }
}

// t [n] = [B, per_sample / rank, rank] f32 *= mask * factor, the mask of keyed_dropout.h (the CPU's code,
// so the same elements drop); keep and keep_rank come from the host, as the CPU computes them.
__global__ void dropout_scale_kernel(float *t, int64_t n, int64_t per_sample, int64_t rank, float factor,
                                     float p, float keep, uint64_t key, float rank_p, float keep_rank,
                                     uint64_t rank_key)
{
    GRID_STRIDE(i, n)
    {
        t[i] *= sdt_dropout_mask_at(i, per_sample, rank, p, keep, key, rank_p, keep_rank, rank_key) * factor;
    }
}

// y [n] += alpha * x [n]. Also add's backward (alpha 1).
__global__ void axpy_kernel(out_buf y, float alpha, in_buf x, int64_t n)
{
    GRID_STRIDE(i, n) { st(y, i, ld(y, i) + alpha * ld(x, i)); }
}

// dst [n] = src [n] converted between dtypes.
__global__ void convert_kernel(out_buf dst, in_buf src, int64_t n)
{
    GRID_STRIDE(i, n) { st(dst, i, ld(src, i)); }
}

// out [n] = a [n] + b [n]; out may be a or b (each element is read before it is written, by one thread).
__global__ void add_kernel(out_buf out, in_buf a, in_buf b, int64_t n)
{
    GRID_STRIDE(i, n) { st(out, i, ld(a, i) + ld(b, i)); }
}

// out [B, HW, C] = inp [B, HW, C] + vec [B, C]; n = B * HW * C.
__global__ void channel_vector_forward_kernel(out_buf out, in_buf inp, in_buf vec, int64_t HW, int64_t C,
                                              int64_t n)
{
    GRID_STRIDE(i, n)
    {
        int64_t c = i % C, b = i / (HW * C);
        st(out, i, ld(inp, i) + ld(vec, b * C + c));
    }
}

// dvec [B, C] += sum over hw of dout [B, HW, C].
// Block (32, CV_ROWS): threadIdx.x a channel of a strip of 32 consecutive ones (coalesced loads of one
// position), threadIdx.y every CV_ROWS-th position. Grid (ceil(C / 32), min(B, 65535)); blockIdx.y loops
// over the samples. The CV_ROWS partial sums of a channel are added in a fixed order: deterministic.
// A faster version would split HW over several blocks and add their partials in a second pass.
constexpr int CV_ROWS = 8;

__global__ void channel_vector_backward_kernel(out_buf dvec, in_buf dout, int64_t B, int64_t HW, int64_t C)
{
    __shared__ float partial[CV_ROWS][32];
    int64_t c = int64_t(blockIdx.x) * 32 + threadIdx.x;
    for (int64_t b = blockIdx.y; b < B; b += gridDim.y) {
        float acc = 0.0f;
        if (c < C)
            for (int64_t p = threadIdx.y; p < HW; p += CV_ROWS)
                acc += ld(dout, (b * HW + p) * C + c);
        partial[threadIdx.y][threadIdx.x] = acc;
        __syncthreads();
        if (threadIdx.y == 0 && c < C) {
            float sum = 0.0f;
            for (int r = 0; r < CV_ROWS; r++)
                sum += partial[r][threadIdx.x];
            st(dvec, b * C + c, ld(dvec, b * C + c) + sum);
        }
        __syncthreads(); // partial is rewritten for the next sample
    }
}

// out [N, Ca + Cb] = [a [N, Ca] | b [N, Cb]]; n = N * (Ca + Cb).
__global__ void concat_forward_kernel(out_buf out, in_buf a, in_buf b, int64_t Ca, int64_t Cb, int64_t n)
{
    int64_t C = Ca + Cb;
    GRID_STRIDE(i, n)
    {
        int64_t r = i / C, c = i % C;
        st(out, i, c < Ca ? ld(a, r * Ca + c) : ld(b, r * Cb + (c - Ca)));
    }
}

// da [N, Ca] +=, db [N, Cb] += the two parts of dout [N, Ca + Cb]; either may be absent.
__global__ void concat_backward_kernel(out_buf da, out_buf db, in_buf dout, int64_t Ca, int64_t Cb, int64_t n)
{
    int64_t C = Ca + Cb;
    GRID_STRIDE(i, n)
    {
        int64_t r = i / C, c = i % C;
        if (c < Ca) {
            if (da.p)
                st(da, r * Ca + c, ld(da, r * Ca + c) + ld(dout, i));
        } else if (db.p) {
            int64_t j = r * Cb + (c - Ca);
            st(db, j, ld(db, j) + ld(dout, i));
        }
    }
}

// out [B, 2H, 2W, C] = inp [B, H, W, C] repeated 2x2; one thread per output element, n = B * 4HW * C.
__global__ void upsample_forward_kernel(out_buf out, in_buf inp, int64_t H, int64_t W, int64_t C, int64_t n)
{
    GRID_STRIDE(i, n)
    {
        int64_t c = i % C, pix = i / C;
        int64_t ox = pix % (2 * W), oy = (pix / (2 * W)) % (2 * H), b = pix / (4 * H * W);
        st(out, i, ld(inp, ((b * H + oy / 2) * W + ox / 2) * C + c));
    }
}

// dinp [B, H, W, C] += the sum of its 2x2 block of dout [B, 2H, 2W, C], in the CPU's order
// (top-left + top-right) + (bottom-left + bottom-right); one thread per input element, n = B * HW * C.
__global__ void upsample_backward_kernel(out_buf dinp, in_buf dout, int64_t H, int64_t W, int64_t C,
                                         int64_t n)
{
    GRID_STRIDE(i, n)
    {
        int64_t c = i % C, pix = i / C;
        int64_t x = pix % W, by = pix / W; // by = b * H + y
        int64_t row = 2 * W * C;           // one output row
        int64_t top = by * 2 * row, bottom = top + row;
        int64_t l = (2 * x) * C + c, r = (2 * x + 1) * C + c;
        float sum = (ld(dout, top + l) + ld(dout, top + r)) + (ld(dout, bottom + l) + ld(dout, bottom + r));
        st(dinp, i, ld(dinp, i) + sum);
    }
}

// out [B, dim] from timesteps [B] (f32): one thread per (b, i < half) writes the sine and the cosine of
// t * freq_i, the frequency rounded to fp32 step by step as the CPU does; odd dims get a zero last column.
// neg_log_period = fl32(-ln max_period), denom = fl32(half - shift), both computed on the host in double.
__global__ void timestep_kernel(out_buf out, const float *timesteps, int64_t B, int64_t dim, int64_t half,
                                int flip_sin_to_cos, float neg_log_period, float denom)
{
    GRID_STRIDE(k, B * half)
    {
        int64_t b = k / half, i = k % half;
        float exponent = neg_log_period * float(i);
        float freq = expf(exponent / denom);
        float arg = timesteps[b] * freq;
        int64_t row = b * dim;
        int64_t sin_at = row + (flip_sin_to_cos ? half : 0) + i,
                cos_at = row + (flip_sin_to_cos ? 0 : half) + i;
        st(out, sin_at, sinf(arg));
        st(out, cos_at, cosf(arg));
        if (i == 0 && (dim & 1))
            st(out, row + dim - 1, 0.0f);
    }
}

// ---- kernels: activations -----------------------------------------------------------------------------

template <int ACT> __global__ void activation_forward_kernel(out_buf out, in_buf inp, int64_t n)
{
    // out [n], inp [n].
    GRID_STRIDE(i, n) { st(out, i, act_value<ACT>(ld(inp, i))); }
}

template <int ACT>
__global__ void activation_backward_kernel(out_buf dinp, in_buf dout, in_buf inp, int64_t n)
{
    // dinp [n] +=, dout [n], inp [n].
    GRID_STRIDE(i, n) { st(dinp, i, ld(dinp, i) + ld(dout, i) * act_grad<ACT>(ld(inp, i))); }
}

// out [N, F] = a * gelu(g) with inp [N, 2F] = [a | g] per row; n = N * F.
__global__ void geglu_forward_kernel(out_buf out, in_buf inp, int64_t F, int64_t n)
{
    GRID_STRIDE(i, n)
    {
        int64_t r = i / F, f = i % F;
        int64_t ia = r * 2 * F + f, ig = ia + F;
        st(out, i, ld(inp, ia) * gelu_exact(ld(inp, ig)));
    }
}

// dinp [N, 2F] += [dout * gelu(g) | dout * a * gelu'(g)], dout [N, F], inp [N, 2F]; n = N * F.
__global__ void geglu_backward_kernel(out_buf dinp, in_buf dout, in_buf inp, int64_t F, int64_t n)
{
    GRID_STRIDE(i, n)
    {
        int64_t r = i / F, f = i % F;
        int64_t ia = r * 2 * F + f, ig = ia + F;
        float d = ld(dout, i), a = ld(inp, ia), g = ld(inp, ig);
        st(dinp, ia, ld(dinp, ia) + d * gelu_exact(g));
        st(dinp, ig, ld(dinp, ig) + d * a * gelu_exact_grad(g));
    }
}

// ---- kernels: softmax ---------------------------------------------------------------------------------
// One block per row (rows beyond the grid loop), three passes over the row in global memory: the maximum,
// the sum of exp(x - max), then the output. A faster version would keep short rows in registers or
// shared memory and give a warp to each row when C is small.

// out [rows, C] = softmax(inp [rows, C]) over the last dim; out may be inp (each element is read for the
// last time by the thread that writes it, after the block's reductions).
__global__ void softmax_forward_kernel(out_buf out, in_buf inp, int64_t rows, int64_t C)
{
    __shared__ float shared[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        int64_t base = r * C;
        float mx = -INFINITY;
        for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
            mx = fmaxf(mx, ld(inp, base + c));
        mx = block_max(mx, shared);
        float sum = 0.0f;
        for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
            sum += expf(ld(inp, base + c) - mx);
        sum = block_sum(sum, shared);
        float inv = 1.0f / sum; // the sum is at least 1: the maximum contributes exp(0)
        for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
            st(out, base + c, expf(ld(inp, base + c) - mx) * inv);
    }
}

// dinp [rows, C] += y * (dy - sum(dy * y)), dout [rows, C], out [rows, C] (the forward's y).
__global__ void softmax_backward_kernel(out_buf dinp, in_buf dout, in_buf out, int64_t rows, int64_t C)
{
    __shared__ float shared[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        int64_t base = r * C;
        float dot = 0.0f;
        for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
            dot += ld(dout, base + c) * ld(out, base + c);
        dot = block_sum(dot, shared);
        for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
            float y = ld(out, base + c);
            st(dinp, base + c, ld(dinp, base + c) + y * (ld(dout, base + c) - dot));
        }
    }
}

// ---- kernels: MSE loss --------------------------------------------------------------------------------

// means [B] (f32) = mean over n of (pred - target)^2 for each sample of pred, target [B, N]: one block per
// sample (samples beyond the grid loop), f32 partial sums per thread, then a block tree. A faster version
// would split each sample over several blocks (B is 1 to 8 in training) and add their partials in order.
__global__ void mse_sample_kernel(float *means, in_buf pred, in_buf target, int64_t B, int64_t N)
{
    __shared__ float shared[32];
    for (int64_t b = blockIdx.x; b < B; b += gridDim.x) {
        float acc = 0.0f;
        for (int64_t i = threadIdx.x; i < N; i += blockDim.x) {
            float d = ld(pred, b * N + i) - ld(target, b * N + i);
            acc += d * d;
        }
        acc = block_sum(acc, shared);
        if (threadIdx.x == 0)
            means[b] = acc / float(N);
    }
}

// loss [1] (f32) = mean over b of weights[b] * means[b]: one thread, in sample order, in double as the CPU
// does. weights [B] f32 or NULL.
__global__ void mse_total_kernel(float *loss, const float *means, const float *weights, int64_t B)
{
    if (blockIdx.x != 0 || threadIdx.x != 0)
        return;
    double total = 0.0;
    for (int64_t b = 0; b < B; b++)
        total += (weights ? double(weights[b]) : 1.0) * double(means[b]);
    loss[0] = float(total / double(B));
}

// dpred [B, N] += coef_b * (pred - target) with coef_b = fl32(weight_b * dloss * 2 / (B N)); without
// weights the host passes the coefficient (scale2 is then unused). n = B * N.
__global__ void mse_backward_kernel(out_buf dpred, in_buf pred, in_buf target, const float *weights,
                                    double scale2 /* dloss * 2 / (B N) */, float coef, int64_t N, int64_t n)
{
    GRID_STRIDE(i, n)
    {
        float k = weights ? float(double(weights[i / N]) * scale2) : coef;
        st(dpred, i, ld(dpred, i) + k * (ld(pred, i) - ld(target, i)));
    }
}

// [B, ..., C] seen as [B, HW, C], as the CPU backend's image_dims does.
void image_dims(const sdt_tensor *t, int64_t *B, int64_t *HW, int64_t *C)
{
    *B = t->shape[0];
    *C = t->ndim ? t->shape[t->ndim - 1] : 1;
    *HW = *B && *C ? sdt_tensor_numel(t) / (*B * *C) : 0;
}

// Clamps a grid dimension that must stay within the y/z limit; the kernels loop over the rest.
unsigned grid_yz(int64_t n) { return unsigned(n < 1 ? 1 : (n > 65535 ? 65535 : n)); }

} // namespace

// ---- entry points -------------------------------------------------------------------------------------

int cuda_fill(sdt_engine *e, sdt_tensor *t, float value)
{
    cuda_state *s = cuda_of(e);
    int64_t n = sdt_tensor_numel(t);
    if (n == 0)
        return 0;
    fill_kernel<<<cuda_blocks(s, n, THREADS), THREADS, 0, s->stream>>>(out_of(t), value, n);
    CUDA_TRY_LAUNCH(e, "fill");
    return 0;
}

int cuda_scale(sdt_engine *e, sdt_tensor *t, float alpha)
{
    cuda_state *s = cuda_of(e);
    int64_t n = sdt_tensor_numel(t);
    if (n == 0)
        return 0;
    scale_kernel<<<cuda_blocks(s, n, THREADS), THREADS, 0, s->stream>>>(out_of(t), alpha, n);
    CUDA_TRY_LAUNCH(e, "scale");
    return 0;
}

int cuda_dropout_scale(sdt_engine *e, sdt_tensor *t, const sdt_dropout_args *a)
{
    // t [B, ..., R] f32 (backend.c checks the dtype and that it is not empty).
    cuda_state *s = cuda_of(e);
    int64_t n = sdt_tensor_numel(t);
    if (n == 0)
        return 0;
    float keep = a->p > 0.0f ? 1.0f / (1.0f - a->p) : 1.0f;
    float keep_rank = a->rank_p > 0.0f ? 1.0f / (1.0f - a->rank_p) : 1.0f;
    dropout_scale_kernel<<<cuda_blocks(s, n, THREADS), THREADS, 0, s->stream>>>(
        static_cast<float *>(t->data), n, n / t->shape[0], t->shape[t->ndim - 1], a->factor, a->p, keep,
        a->key, a->rank_p, keep_rank, a->rank_key);
    CUDA_TRY_LAUNCH(e, "dropout_scale");
    return 0;
}

int cuda_axpy(sdt_engine *e, sdt_tensor *y, float alpha, const sdt_tensor *x)
{
    cuda_state *s = cuda_of(e);
    int64_t n = sdt_tensor_numel(y);
    if (n == 0)
        return 0;
    axpy_kernel<<<cuda_blocks(s, n, THREADS), THREADS, 0, s->stream>>>(out_of(y), alpha, in_of(x), n);
    CUDA_TRY_LAUNCH(e, "axpy");
    return 0;
}

int cuda_copy(sdt_engine *e, sdt_tensor *dst, const sdt_tensor *src)
{
    cuda_state *s = cuda_of(e);
    int64_t n = sdt_tensor_numel(dst);
    if (n == 0 || (dst->data == src->data && dst->dtype == src->dtype))
        return 0;
    if (dst->dtype == src->dtype) {
        CUDA_TRY(e, cudaMemcpyAsync(dst->data, src->data, sdt_tensor_bytes(dst), cudaMemcpyDeviceToDevice,
                                    s->stream));
        return 0;
    }
    // Converting in place would let one thread's store overwrite bytes another has still to read.
    if (dst->data == src->data)
        return sdt_engine_fail(e, "copy: cannot convert %s to %s in place", sdt_dtype_name(src->dtype),
                               sdt_dtype_name(dst->dtype));
    convert_kernel<<<cuda_blocks(s, n, THREADS), THREADS, 0, s->stream>>>(out_of(dst), in_of(src), n);
    CUDA_TRY_LAUNCH(e, "copy");
    return 0;
}

int cuda_add_forward(sdt_engine *e, sdt_tensor *out, const sdt_tensor *a, const sdt_tensor *b)
{
    cuda_state *s = cuda_of(e);
    int64_t n = sdt_tensor_numel(a);
    if (n == 0)
        return 0;
    add_kernel<<<cuda_blocks(s, n, THREADS), THREADS, 0, s->stream>>>(out_of(out), in_of(a), in_of(b), n);
    CUDA_TRY_LAUNCH(e, "add");
    return 0;
}

int cuda_add_backward(sdt_engine *e, sdt_tensor *da, sdt_tensor *db, const sdt_tensor *dout)
{
    // Two launches, da then db, as the CPU does: right even when da and db are the same buffer.
    cuda_state *s = cuda_of(e);
    int64_t n = sdt_tensor_numel(dout);
    if (n == 0)
        return 0;
    unsigned blocks = cuda_blocks(s, n, THREADS);
    if (da) {
        axpy_kernel<<<blocks, THREADS, 0, s->stream>>>(out_of(da), 1.0f, in_of(dout), n);
        CUDA_TRY_LAUNCH(e, "add backward");
    }
    if (db) {
        axpy_kernel<<<blocks, THREADS, 0, s->stream>>>(out_of(db), 1.0f, in_of(dout), n);
        CUDA_TRY_LAUNCH(e, "add backward");
    }
    return 0;
}

int cuda_add_channel_vector_forward(sdt_engine *e, sdt_tensor *out, const sdt_tensor *inp,
                                    const sdt_tensor *vec)
{
    cuda_state *s = cuda_of(e);
    int64_t B, HW, C;
    image_dims(inp, &B, &HW, &C);
    int64_t n = B * HW * C;
    if (n == 0)
        return 0;
    channel_vector_forward_kernel<<<cuda_blocks(s, n, THREADS), THREADS, 0, s->stream>>>(
        out_of(out), in_of(inp), in_of(vec), HW, C, n);
    CUDA_TRY_LAUNCH(e, "add_channel_vector");
    return 0;
}

int cuda_add_channel_vector_backward(sdt_engine *e, sdt_tensor *dinp, sdt_tensor *dvec,
                                     const sdt_tensor *dout)
{
    cuda_state *s = cuda_of(e);
    int64_t B, HW, C;
    image_dims(dout, &B, &HW, &C);
    int64_t n = B * HW * C;
    if (dinp && n > 0) {
        axpy_kernel<<<cuda_blocks(s, n, THREADS), THREADS, 0, s->stream>>>(out_of(dinp), 1.0f, in_of(dout),
                                                                           n);
        CUDA_TRY_LAUNCH(e, "add_channel_vector backward");
    }
    // HW = 0 still adds nothing to dvec; B = 0 or C = 0 leaves nothing to write.
    if (dvec && B > 0 && C > 0 && HW > 0) {
        dim3 grid(unsigned((C + 31) / 32), grid_yz(B));
        dim3 block(32, CV_ROWS);
        channel_vector_backward_kernel<<<grid, block, 0, s->stream>>>(out_of(dvec), in_of(dout), B, HW, C);
        CUDA_TRY_LAUNCH(e, "add_channel_vector backward");
    }
    return 0;
}

int cuda_concat_forward(sdt_engine *e, sdt_tensor *out, const sdt_tensor *a, const sdt_tensor *b)
{
    cuda_state *s = cuda_of(e);
    int64_t Ca, Cb;
    int64_t N = cuda_rows(a, &Ca);
    cuda_rows(b, &Cb);
    int64_t n = N * (Ca + Cb);
    if (n == 0)
        return 0;
    concat_forward_kernel<<<cuda_blocks(s, n, THREADS), THREADS, 0, s->stream>>>(out_of(out), in_of(a),
                                                                                 in_of(b), Ca, Cb, n);
    CUDA_TRY_LAUNCH(e, "concat");
    return 0;
}

int cuda_concat_backward(sdt_engine *e, sdt_tensor *da, sdt_tensor *db, const sdt_tensor *dout)
{
    // backend.c requires both gradients (they give the split); they are still treated as optional here.
    cuda_state *s = cuda_of(e);
    if (!da || !db)
        return sdt_engine_fail(e, "concat backward: both input gradients are needed to know the split");
    int64_t Ca, Cb;
    int64_t N = cuda_rows(da, &Ca);
    cuda_rows(db, &Cb);
    int64_t n = N * (Ca + Cb);
    if (n == 0)
        return 0;
    concat_backward_kernel<<<cuda_blocks(s, n, THREADS), THREADS, 0, s->stream>>>(out_of(da), out_of(db),
                                                                                  in_of(dout), Ca, Cb, n);
    CUDA_TRY_LAUNCH(e, "concat backward");
    return 0;
}

int cuda_upsample2x_forward(sdt_engine *e, sdt_tensor *out, const sdt_tensor *inp)
{
    cuda_state *s = cuda_of(e);
    int64_t H = inp->shape[1], W = inp->shape[2], C = inp->shape[3];
    int64_t n = sdt_tensor_numel(out);
    if (n == 0)
        return 0;
    upsample_forward_kernel<<<cuda_blocks(s, n, THREADS), THREADS, 0, s->stream>>>(out_of(out), in_of(inp), H,
                                                                                   W, C, n);
    CUDA_TRY_LAUNCH(e, "upsample2x");
    return 0;
}

int cuda_upsample2x_backward(sdt_engine *e, sdt_tensor *dinp, const sdt_tensor *dout)
{
    cuda_state *s = cuda_of(e);
    if (!dinp)
        return 0;
    int64_t H = dinp->shape[1], W = dinp->shape[2], C = dinp->shape[3];
    int64_t n = sdt_tensor_numel(dinp);
    if (n == 0)
        return 0;
    upsample_backward_kernel<<<cuda_blocks(s, n, THREADS), THREADS, 0, s->stream>>>(out_of(dinp), in_of(dout),
                                                                                    H, W, C, n);
    CUDA_TRY_LAUNCH(e, "upsample2x backward");
    return 0;
}

int cuda_timestep_embedding(sdt_engine *e, sdt_tensor *out, const sdt_tensor *timesteps, int flip_sin_to_cos,
                            float freq_shift, float max_period)
{
    cuda_state *s = cuda_of(e);
    int64_t B = out->shape[0], dim = out->shape[1], half = dim / 2;
    if (B == 0 || half == 0)
        return 0;
    // The same two fp32 constants as cpu_timestep_embedding, rounded from double on the host.
    float neg_log_period = float(-std::log(double(max_period)));
    float denom = float(double(half) - double(freq_shift));
    int64_t n = B * half;
    timestep_kernel<<<cuda_blocks(s, n, THREADS), THREADS, 0, s->stream>>>(
        out_of(out), static_cast<const float *>(timesteps->data), B, dim, half, flip_sin_to_cos,
        neg_log_period, denom);
    CUDA_TRY_LAUNCH(e, "timestep_embedding");
    return 0;
}

int cuda_activation_forward(sdt_engine *e, sdt_tensor *out, const sdt_tensor *inp, sdt_activation act)
{
    cuda_state *s = cuda_of(e);
    int64_t n = sdt_tensor_numel(inp);
    if (n == 0)
        return 0;
    unsigned blocks = cuda_blocks(s, n, THREADS);
    out_buf y = out_of(out);
    in_buf x = in_of(inp);
    switch (act) {
    case SDT_ACT_GELU:
        activation_forward_kernel<SDT_ACT_GELU><<<blocks, THREADS, 0, s->stream>>>(y, x, n);
        break;
    case SDT_ACT_GELU_TANH:
        activation_forward_kernel<SDT_ACT_GELU_TANH><<<blocks, THREADS, 0, s->stream>>>(y, x, n);
        break;
    case SDT_ACT_QUICK_GELU:
        activation_forward_kernel<SDT_ACT_QUICK_GELU><<<blocks, THREADS, 0, s->stream>>>(y, x, n);
        break;
    case SDT_ACT_SILU:
        activation_forward_kernel<SDT_ACT_SILU><<<blocks, THREADS, 0, s->stream>>>(y, x, n);
        break;
    default: return sdt_engine_fail(e, "activation: unknown activation %d", int(act));
    }
    CUDA_TRY_LAUNCH(e, "activation");
    return 0;
}

int cuda_activation_backward(sdt_engine *e, sdt_tensor *dinp, const sdt_tensor *dout, const sdt_tensor *inp,
                             sdt_activation act)
{
    cuda_state *s = cuda_of(e);
    int64_t n = sdt_tensor_numel(inp);
    if (!dinp || n == 0)
        return 0;
    unsigned blocks = cuda_blocks(s, n, THREADS);
    out_buf dx = out_of(dinp);
    in_buf dy = in_of(dout), x = in_of(inp);
    switch (act) {
    case SDT_ACT_GELU:
        activation_backward_kernel<SDT_ACT_GELU><<<blocks, THREADS, 0, s->stream>>>(dx, dy, x, n);
        break;
    case SDT_ACT_GELU_TANH:
        activation_backward_kernel<SDT_ACT_GELU_TANH><<<blocks, THREADS, 0, s->stream>>>(dx, dy, x, n);
        break;
    case SDT_ACT_QUICK_GELU:
        activation_backward_kernel<SDT_ACT_QUICK_GELU><<<blocks, THREADS, 0, s->stream>>>(dx, dy, x, n);
        break;
    case SDT_ACT_SILU:
        activation_backward_kernel<SDT_ACT_SILU><<<blocks, THREADS, 0, s->stream>>>(dx, dy, x, n);
        break;
    default: return sdt_engine_fail(e, "activation backward: unknown activation %d", int(act));
    }
    CUDA_TRY_LAUNCH(e, "activation backward");
    return 0;
}

int cuda_geglu_forward(sdt_engine *e, sdt_tensor *out, const sdt_tensor *inp)
{
    cuda_state *s = cuda_of(e);
    int64_t C2;
    int64_t N = cuda_rows(inp, &C2);
    int64_t F = C2 / 2, n = N * F;
    if (n == 0)
        return 0;
    geglu_forward_kernel<<<cuda_blocks(s, n, THREADS), THREADS, 0, s->stream>>>(out_of(out), in_of(inp), F,
                                                                                n);
    CUDA_TRY_LAUNCH(e, "geglu");
    return 0;
}

int cuda_geglu_backward(sdt_engine *e, sdt_tensor *dinp, const sdt_tensor *dout, const sdt_tensor *inp)
{
    cuda_state *s = cuda_of(e);
    int64_t C2;
    int64_t N = cuda_rows(inp, &C2);
    int64_t F = C2 / 2, n = N * F;
    if (!dinp || n == 0)
        return 0;
    geglu_backward_kernel<<<cuda_blocks(s, n, THREADS), THREADS, 0, s->stream>>>(out_of(dinp), in_of(dout),
                                                                                 in_of(inp), F, n);
    CUDA_TRY_LAUNCH(e, "geglu backward");
    return 0;
}

int cuda_softmax_forward(sdt_engine *e, sdt_tensor *out, const sdt_tensor *inp)
{
    cuda_state *s = cuda_of(e);
    int64_t C;
    int64_t rows = cuda_rows(inp, &C);
    if (rows == 0 || C == 0)
        return 0;
    softmax_forward_kernel<<<row_blocks(s, rows), ROW_THREADS, 0, s->stream>>>(out_of(out), in_of(inp), rows,
                                                                               C);
    CUDA_TRY_LAUNCH(e, "softmax");
    return 0;
}

int cuda_softmax_backward(sdt_engine *e, sdt_tensor *dinp, const sdt_tensor *dout, const sdt_tensor *out)
{
    cuda_state *s = cuda_of(e);
    int64_t C;
    int64_t rows = cuda_rows(out, &C);
    if (!dinp || rows == 0 || C == 0)
        return 0;
    softmax_backward_kernel<<<row_blocks(s, rows), ROW_THREADS, 0, s->stream>>>(out_of(dinp), in_of(dout),
                                                                                in_of(out), rows, C);
    CUDA_TRY_LAUNCH(e, "softmax backward");
    return 0;
}

int cuda_mse_loss_forward(sdt_engine *e, sdt_tensor *loss, sdt_tensor *per_sample, const sdt_tensor *pred,
                          const sdt_tensor *target, const sdt_tensor *weights)
{
    // loss [1] f32, per_sample [B] f32 or NULL, pred and target [B, ...], weights [B] f32 or NULL; backend.c
    // guarantees B >= 1 and a non-empty prediction.
    cuda_state *s = cuda_of(e);
    int64_t B = pred->shape[0], N = sdt_tensor_numel(pred) / B;
    // The per-sample means go to per_sample when the caller wants them, else to the front of the shared
    // workspace: every user of the workspace is queued on this one stream, so nothing else touches it
    // between these two kernels.
    float *means = per_sample ? static_cast<float *>(per_sample->data) : static_cast<float *>(s->workspace);
    if (!per_sample && size_t(B) * sizeof(float) > s->workspace_bytes)
        return sdt_engine_fail(e, "mse_loss: %lld samples do not fit the workspace", (long long)B);
    mse_sample_kernel<<<row_blocks(s, B), ROW_THREADS, 0, s->stream>>>(means, in_of(pred), in_of(target), B,
                                                                       N);
    CUDA_TRY_LAUNCH(e, "mse_loss");
    mse_total_kernel<<<1, 1, 0, s->stream>>>(static_cast<float *>(loss->data), means,
                                             weights ? static_cast<const float *>(weights->data) : nullptr,
                                             B);
    CUDA_TRY_LAUNCH(e, "mse_loss");
    return 0;
}

int cuda_mse_loss_backward(sdt_engine *e, sdt_tensor *dpred, const sdt_tensor *pred, const sdt_tensor *target,
                           const sdt_tensor *weights, float dloss)
{
    cuda_state *s = cuda_of(e);
    int64_t B = pred->shape[0];
    int64_t n = sdt_tensor_numel(pred);
    if (!dpred || B <= 0 || n == 0)
        return 0;
    int64_t N = n / B;
    double scale2 = double(dloss) * 2.0 / (double(B) * double(N));
    float coef = float(scale2); // the CPU's (dloss * 1 * 2) / (B N), rounded once
    mse_backward_kernel<<<cuda_blocks(s, n, THREADS), THREADS, 0, s->stream>>>(
        out_of(dpred), in_of(pred), in_of(target),
        weights ? static_cast<const float *>(weights->data) : nullptr, scale2, coef, N, n);
    CUDA_TRY_LAUNCH(e, "mse_loss backward");
    return 0;
}
