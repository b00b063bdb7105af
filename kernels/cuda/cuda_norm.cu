// Group norm (optionally fused with SiLU) and layer norm over channels-last data, forward and backward, with
// the semantics of kernels/cpu/cpu_norm.c.
//
// Statistics: two passes in fp32 (the mean, then the mean squared deviation), each thread summing its
// strided share and the block combining the shares in a fixed tree, so a result depends only on the launch
// shape, never on timing. The variance is the biased one and rstd = 1 / sqrt(var + eps); mean and rstd are
// saved as f32 and both the forward output and the backward use the saved values, as on the CPU.
//
// Backward, with xhat = (x - mean) * rstd, y = xhat * weight + bias, dy the gradient at y (through the
// fused SiLU when asked, y recomputed from the saved statistics) and g = dy * weight:
//     dx = rstd * (g - mean(g) - xhat * mean(g * xhat))   over the values of a group (or row),
//     dweight += sum of dy * xhat,  dbias += sum of dy     over every position that uses the channel.
// The parameter sums run over all images and positions. They are deterministic without atomics: a first
// kernel writes per-(row chunk, channel) partial sums to a scratch buffer, a second adds the chunks of each
// channel in order.
//
// Dtypes: inp, out, dout and dinp share the storage type T (a template); the parameters and their
// gradients (C values each) may have any compute dtype of their own and are read and written through
// param_load / param_store, which switch on the dtype at run time.
#include "cuda_internal.h"

#include <cmath>

namespace
{

constexpr int NORM_THREADS = 512; // one block per (image, group): 16 warps keep the loads in flight
constexpr int LN_THREADS = 256;   // layer norm: 8 warps, one row each
constexpr int PART_CH = 32;       // parameter partials: channels per block (threadIdx.x) ...
constexpr int PART_ROWS = 8;      // ... and rows in flight per block (threadIdx.y)
constexpr int PART_MAX_CHUNKS = 256;

// ---- small helpers -------------------------------------------------------------------------------------

__device__ __forceinline__ float param_load(const void *p, int dtype, int64_t i)
{
    switch (dtype) {
    case SDT_F16: return __half2float(static_cast<const __half *>(p)[i]);
    case SDT_BF16: return __bfloat162float(static_cast<const __nv_bfloat16 *>(p)[i]);
    default: return static_cast<const float *>(p)[i];
    }
}

__device__ __forceinline__ void param_store(void *p, int dtype, int64_t i, float v)
{
    switch (dtype) {
    case SDT_F16: static_cast<__half *>(p)[i] = __float2half_rn(v); break;
    case SDT_BF16: static_cast<__nv_bfloat16 *>(p)[i] = __float2bfloat16_rn(v); break;
    default: static_cast<float *>(p)[i] = v; break;
    }
}

// The gradient at the affine output y: dout itself, or through the fused SiLU, whose derivative is
// s (1 + y (1 - s)) with s = sigmoid(y).
__device__ __forceinline__ float grad_at_affine(float dout, float y, int fuse_silu)
{
    if (!fuse_silu)
        return dout;
    const float s = 1.0f / (1.0f + expf(-y));
    return dout * s * (1.0f + y * (1.0f - s));
}

__device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// The sums of a and b over the block, returned to every thread. scratch [2 * 32] shared floats; the block
// size is a multiple of 32 and at most 1024. Safe to call repeatedly (the leading barrier protects scratch).
__device__ float2 block_sum2(float a, float b, float *scratch)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    a = warp_sum(a);
    b = warp_sum(b);
    __syncthreads();
    if (lane == 0) {
        scratch[warp] = a;
        scratch[32 + warp] = b;
    }
    __syncthreads();
    a = lane < nwarps ? scratch[lane] : 0.0f;
    b = lane < nwarps ? scratch[32 + lane] : 0.0f;
    a = warp_sum(a);
    b = warp_sum(b);
    return make_float2(a, b);
}

// ---- group norm ----------------------------------------------------------------------------------------
// One block per (image b, group g): the group is HW rows of Cg channels, a row stride C apart, n = HW * Cg
// values (checked < 2^31 by the caller, so in-group indices are 32-bit). Element i of the group is at
// base + (i / Cg) * C + i % Cg. A faster version would split large groups over several blocks (a cluster
// with distributed shared memory on Hopper) and load vectors when Cg allows.

template <typename T>
__global__ void __launch_bounds__(NORM_THREADS)
    group_norm_forward_kernel(T *out, float *mean, float *rstd, const T *inp, const void *weight, int wdt,
                              const void *bias, int bdt, int64_t HW, int64_t C, int G, int Cg, float eps,
                              int fuse_silu)
{
    // out, inp [B, HW, C]; mean, rstd [B, G]; weight, bias [C]
    __shared__ float scratch[64];
    const int64_t bg = blockIdx.x, b = bg / G;
    const int g = int(bg % G), n = int(HW * Cg);
    const int64_t base = b * HW * C + int64_t(g) * Cg;

    float s = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        s += to_f32(inp[base + int64_t(i / Cg) * C + i % Cg]);
    // An empty group (HW = 0) gets mean 0 and variance 0, as on the CPU.
    const float mu = n ? block_sum2(s, 0.0f, scratch).x / float(n) : 0.0f;

    float ss = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const float d = to_f32(inp[base + int64_t(i / Cg) * C + i % Cg]) - mu;
        ss += d * d;
    }
    const float var = n ? block_sum2(ss, 0.0f, scratch).x / float(n) : 0.0f;
    const float m = mu, r = 1.0f / sqrtf(var + eps);
    if (threadIdx.x == 0) {
        mean[bg] = m;
        rstd[bg] = r;
    }

    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const int j = i % Cg;
        const int64_t idx = base + int64_t(i / Cg) * C + j, c = int64_t(g) * Cg + j;
        const float y = (to_f32(inp[idx]) - m) * r * param_load(weight, wdt, c) + param_load(bias, bdt, c);
        out[idx] = from_f32<T>(fuse_silu ? y / (1.0f + expf(-y)) : y);
    }
}

// dinp only: one block per (image, group), its two sums and then its dx.
template <typename T>
__global__ void __launch_bounds__(NORM_THREADS)
    group_norm_backward_input_kernel(T *dinp, const T *dout, const T *inp, const void *weight, int wdt,
                                     const void *bias, int bdt, const float *mean, const float *rstd,
                                     int64_t HW, int64_t C, int G, int Cg, int fuse_silu)
{
    // dinp, dout, inp [B, HW, C]; mean, rstd [B, G]; weight, bias [C]
    __shared__ float scratch[64];
    const int64_t bg = blockIdx.x, b = bg / G;
    const int g = int(bg % G), n = int(HW * Cg);
    const int64_t base = b * HW * C + int64_t(g) * Cg;
    const float m = mean[bg], r = rstd[bg];

    float sg = 0.0f, sgx = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const int j = i % Cg;
        const int64_t idx = base + int64_t(i / Cg) * C + j, c = int64_t(g) * Cg + j;
        const float w = param_load(weight, wdt, c);
        const float xhat = (to_f32(inp[idx]) - m) * r;
        const float gx =
            grad_at_affine(to_f32(dout[idx]), xhat * w + param_load(bias, bdt, c), fuse_silu) * w;
        sg += gx;
        sgx += gx * xhat;
    }
    const float2 sums = block_sum2(sg, sgx, scratch);
    const float mean_g = n ? sums.x / float(n) : 0.0f, mean_gx = n ? sums.y / float(n) : 0.0f;

    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const int j = i % Cg;
        const int64_t idx = base + int64_t(i / Cg) * C + j, c = int64_t(g) * Cg + j;
        const float w = param_load(weight, wdt, c);
        const float xhat = (to_f32(inp[idx]) - m) * r;
        const float gx =
            grad_at_affine(to_f32(dout[idx]), xhat * w + param_load(bias, bdt, c), fuse_silu) * w;
        dinp[idx] = from_f32<T>(to_f32(dinp[idx]) + r * (gx - mean_g - xhat * mean_gx));
    }
}

// ---- parameter gradients (both norms) ------------------------------------------------------------------
// First pass: block (PART_CH, PART_ROWS) owns PART_CH consecutive channels and chunk blockIdx.y of the
// rows; each thread sums its channel over every PART_ROWS-th row of the chunk, then the block adds the
// PART_ROWS partial sums in a fixed order. Row `row` of channel c uses statistics (row / HW) * G + c / Cg:
// group norm passes its HW, G and Cg; layer norm passes HW = 1, G = 1, Cg = C (statistics per row).

template <typename T>
__global__ void __launch_bounds__(PART_CH *PART_ROWS)
    norm_param_partials_kernel(float *part_w, float *part_b, const T *dout, const T *inp, const void *weight,
                               int wdt, const void *bias, int bdt, const float *mean, const float *rstd,
                               int64_t rows, int64_t C, int64_t HW, int64_t G, int64_t Cg,
                               int64_t rows_per_chunk, int fuse_silu)
{
    // part_w, part_b [chunks, C]; dout, inp [rows, C]; mean, rstd [rows / HW, G]; weight, bias [C]
    // (bias read only with fuse_silu)
    __shared__ float sw[PART_ROWS][PART_CH + 1], sb[PART_ROWS][PART_CH + 1];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int64_t c = int64_t(blockIdx.x) * PART_CH + tx, chunk = blockIdx.y;
    const int64_t r0 = chunk * rows_per_chunk;
    const int64_t r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
    float aw = 0.0f, ab = 0.0f;
    if (c < C) {
        const float w = param_load(weight, wdt, c);
        const float bi = fuse_silu ? param_load(bias, bdt, c) : 0.0f;
        const int64_t grp = c / Cg;
        for (int64_t row = r0 + ty; row < r1; row += PART_ROWS) {
            const int64_t st = (row / HW) * G + grp, idx = row * C + c;
            const float xhat = (to_f32(inp[idx]) - mean[st]) * rstd[st];
            const float dy = grad_at_affine(to_f32(dout[idx]), xhat * w + bi, fuse_silu);
            aw += dy * xhat;
            ab += dy;
        }
    }
    sw[ty][tx] = aw;
    sb[ty][tx] = ab;
    __syncthreads();
    if (ty == 0 && c < C) {
        for (int k = 1; k < PART_ROWS; k++) {
            aw += sw[k][tx];
            ab += sb[k][tx];
        }
        part_w[chunk * C + c] = aw;
        part_b[chunk * C + c] = ab;
    }
}

// Second pass: one thread per channel adds its chunks in order into dweight and dbias (either may be NULL).
__global__ void norm_param_finish_kernel(void *dweight, int dwdt, void *dbias, int dbdt, const float *part_w,
                                         const float *part_b, int64_t chunks, int64_t C)
{
    // dweight, dbias [C] (+=); part_w, part_b [chunks, C]
    for (int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < C;
         c += int64_t(gridDim.x) * blockDim.x) {
        float aw = 0.0f, ab = 0.0f;
        for (int64_t k = 0; k < chunks; k++) {
            aw += part_w[k * C + c];
            ab += part_b[k * C + c];
        }
        if (dweight)
            param_store(dweight, dwdt, c, param_load(dweight, dwdt, c) + aw);
        if (dbias)
            param_store(dbias, dbdt, c, param_load(dbias, dbdt, c) + ab);
    }
}

// ---- layer norm ----------------------------------------------------------------------------------------
// One warp per row of C (C up to a few thousand: each lane holds no state beyond its sums, so any C works).
// A faster version would keep the row in registers for C <= 2048 instead of reading it again per pass.

template <typename T>
__global__ void __launch_bounds__(LN_THREADS)
    layer_norm_forward_kernel(T *out, float *mean, float *rstd, const T *inp, const void *weight, int wdt,
                              const void *bias, int bdt, int64_t N, int64_t C, float eps)
{
    // out, inp [N, C]; mean, rstd [N]; weight, bias [C]
    const int lane = threadIdx.x & 31;
    const int64_t warps = int64_t(gridDim.x) * (blockDim.x >> 5);
    for (int64_t row = int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); row < N; row += warps) {
        const T *x = inp + row * C; // [C]
        T *o = out + row * C;       // [C]
        float s = 0.0f;
        for (int64_t c = lane; c < C; c += 32)
            s += to_f32(x[c]);
        const float mu = warp_sum(s) / float(C);
        float ss = 0.0f;
        for (int64_t c = lane; c < C; c += 32) {
            const float d = to_f32(x[c]) - mu;
            ss += d * d;
        }
        const float var = warp_sum(ss) / float(C);
        const float m = mu, r = 1.0f / sqrtf(var + eps);
        if (lane == 0) {
            mean[row] = m;
            rstd[row] = r;
        }
        for (int64_t c = lane; c < C; c += 32)
            o[c] =
                from_f32<T>((to_f32(x[c]) - m) * r * param_load(weight, wdt, c) + param_load(bias, bdt, c));
    }
}

template <typename T>
__global__ void __launch_bounds__(LN_THREADS)
    layer_norm_backward_input_kernel(T *dinp, const T *dout, const T *inp, const void *weight, int wdt,
                                     const float *mean, const float *rstd, int64_t N, int64_t C)
{
    // dinp, dout, inp [N, C]; mean, rstd [N]; weight [C]
    const int lane = threadIdx.x & 31;
    const int64_t warps = int64_t(gridDim.x) * (blockDim.x >> 5);
    for (int64_t row = int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); row < N; row += warps) {
        const T *x = inp + row * C, *dy = dout + row * C; // [C]
        T *dx = dinp + row * C;                           // [C]
        const float m = mean[row], r = rstd[row];
        float sg = 0.0f, sgx = 0.0f;
        for (int64_t c = lane; c < C; c += 32) {
            const float gx = to_f32(dy[c]) * param_load(weight, wdt, c);
            sg += gx;
            sgx += gx * ((to_f32(x[c]) - m) * r);
        }
        // C >= 1 here: a row exists only when C > 0.
        const float mean_g = warp_sum(sg) / float(C), mean_gx = warp_sum(sgx) / float(C);
        for (int64_t c = lane; c < C; c += 32) {
            const float xhat = (to_f32(x[c]) - m) * r;
            const float gx = to_f32(dy[c]) * param_load(weight, wdt, c);
            dx[c] = from_f32<T>(to_f32(dx[c]) + r * (gx - mean_g - xhat * mean_gx));
        }
    }
}

// ---- host side -----------------------------------------------------------------------------------------

// The activations of one op share one storage type (the kernels are templated on it); parameters may differ.
int same_dtype(sdt_engine *e, const char *op, const sdt_tensor *ref, const sdt_tensor *t, const char *role)
{
    if (t && t->dtype != ref->dtype)
        return sdt_engine_fail(
            e, "%s: %s has another dtype than the input; the CUDA backend needs them equal", op, role);
    return 0;
}

// dweight and dbias of either norm: partial sums per (row chunk, channel) into a scratch buffer, then the
// chunks of each channel in order. rows, C: the [rows, C] view of inp and dout; HW, G, Cg: see
// norm_param_partials_kernel.
int norm_param_grads(sdt_engine *e, const char *op, sdt_tensor *dweight, sdt_tensor *dbias,
                     const sdt_tensor *dout, const sdt_tensor *inp, const sdt_tensor *weight,
                     const sdt_tensor *bias, const float *mean, const float *rstd, int64_t rows, int64_t C,
                     int64_t HW, int64_t G, int64_t Cg, int fuse_silu)
{
    cuda_state *s = cuda_of(e);
    // Chunks of at least 64 rows, at most PART_MAX_CHUNKS of them (grid.y and the scratch stay small).
    int64_t chunks = (rows + 63) / 64;
    if (chunks > PART_MAX_CHUNKS)
        chunks = PART_MAX_CHUNKS;
    if (chunks < 1)
        chunks = 1;
    const int64_t rows_per_chunk = (rows + chunks - 1) / chunks;
    const int64_t cblocks = (C + PART_CH - 1) / PART_CH;
    if (cblocks > INT32_MAX)
        return sdt_engine_fail(e, "%s: %lld channels are too many", op, (long long)C);
    float *part = static_cast<float *>(sdt_engine_alloc(e, size_t(2 * chunks * C) * sizeof(float)));
    if (!part)
        return sdt_engine_fail(e, "%s: out of device memory for the parameter gradients' partial sums", op);
    float *part_w = part, *part_b = part + chunks * C; // [chunks, C] each

    const dim3 block{unsigned(PART_CH), unsigned(PART_ROWS)}, grid{unsigned(cblocks), unsigned(chunks)};
    const void *bias_data = bias ? bias->data : nullptr;
    const int bias_dt = bias ? int(bias->dtype) : int(SDT_F32);
    CUDA_DISPATCH(inp->dtype, T, {
        norm_param_partials_kernel<T><<<grid, block, 0, s->stream>>>(
            part_w, part_b, static_cast<const T *>(dout->data), static_cast<const T *>(inp->data),
            weight->data, int(weight->dtype), bias_data, bias_dt, mean, rstd, rows, C, HW, G, Cg,
            rows_per_chunk, fuse_silu);
    });
    cudaError_t rc = cudaGetLastError();
    if (rc == cudaSuccess) {
        norm_param_finish_kernel<<<cuda_blocks(s, C, 256), 256, 0, s->stream>>>(
            dweight ? dweight->data : nullptr, dweight ? int(dweight->dtype) : 0,
            dbias ? dbias->data : nullptr, dbias ? int(dbias->dtype) : 0, part_w, part_b, chunks, C);
        rc = cudaGetLastError();
    }
    sdt_engine_dealloc(e, part); // stream-ordered: freed after the kernels above have run
    if (rc != cudaSuccess)
        return sdt_engine_fail(e, "%s: kernel launch: %s", op, cudaGetErrorString(rc));
    return 0;
}

// B, HW, C of a channels-last [B, ..., C] tensor.
void image_dims(const sdt_tensor *t, int64_t *B, int64_t *HW, int64_t *C)
{
    *B = t->shape[0];
    *C = t->shape[t->ndim - 1];
    int64_t hw = 1;
    for (int i = 1; i < t->ndim - 1; i++)
        hw *= t->shape[i];
    *HW = hw;
}

// Group norm's in-group indices are 32-bit and its (image, group) count is grid.x.
int check_group_sizes(sdt_engine *e, const char *op, int64_t B, int64_t HW, int64_t C, int groups)
{
    if (HW * (C / groups) > INT32_MAX || B * groups > INT32_MAX)
        return sdt_engine_fail(e, "%s: groups of %lld values are too large for the CUDA kernels", op,
                               (long long)(HW * (C / groups)));
    return 0;
}

} // namespace

// ---- entry points --------------------------------------------------------------------------------------

int cuda_group_norm_forward(sdt_engine *e, sdt_tensor *out, sdt_tensor *mean, sdt_tensor *rstd,
                            const sdt_tensor *inp, const sdt_tensor *weight, const sdt_tensor *bias,
                            int groups, float eps, int fuse_silu)
{
    const char *op = "group_norm";
    cuda_state *s = cuda_of(e);
    int64_t B, HW, C;
    image_dims(inp, &B, &HW, &C);
    if (same_dtype(e, op, inp, out, "the output") != 0 || check_group_sizes(e, op, B, HW, C, groups) != 0)
        return -1;
    if (B * groups == 0)
        return 0;
    const int Cg = int(C / groups);
    CUDA_DISPATCH(inp->dtype, T, {
        group_norm_forward_kernel<T><<<unsigned(B * groups), NORM_THREADS, 0, s->stream>>>(
            static_cast<T *>(out->data), static_cast<float *>(mean->data), static_cast<float *>(rstd->data),
            static_cast<const T *>(inp->data), weight->data, int(weight->dtype), bias->data, int(bias->dtype),
            HW, C, groups, Cg, eps, fuse_silu);
    });
    CUDA_TRY_LAUNCH(e, op);
    return 0;
}

int cuda_group_norm_backward(sdt_engine *e, sdt_tensor *dinp, sdt_tensor *dweight, sdt_tensor *dbias,
                             const sdt_tensor *dout, const sdt_tensor *inp, const sdt_tensor *weight,
                             const sdt_tensor *bias, const sdt_tensor *mean, const sdt_tensor *rstd,
                             int groups, int fuse_silu)
{
    const char *op = "group_norm backward";
    cuda_state *s = cuda_of(e);
    int64_t B, HW, C;
    image_dims(inp, &B, &HW, &C);
    if (same_dtype(e, op, inp, dout, "the output gradient") != 0 ||
        same_dtype(e, op, inp, dinp, "the input gradient") != 0 ||
        check_group_sizes(e, op, B, HW, C, groups) != 0)
        return -1;
    if (B * groups == 0 || HW == 0 || C == 0)
        return 0; // nothing to normalise: every sum is empty
    const int Cg = int(C / groups);
    const float *m = static_cast<const float *>(mean->data), *r = static_cast<const float *>(rstd->data);
    if (dinp) {
        CUDA_DISPATCH(inp->dtype, T, {
            group_norm_backward_input_kernel<T><<<unsigned(B * groups), NORM_THREADS, 0, s->stream>>>(
                static_cast<T *>(dinp->data), static_cast<const T *>(dout->data),
                static_cast<const T *>(inp->data), weight->data, int(weight->dtype), bias->data,
                int(bias->dtype), m, r, HW, C, groups, Cg, fuse_silu);
        });
        CUDA_TRY_LAUNCH(e, op);
    }
    if (!dweight && !dbias)
        return 0;
    return norm_param_grads(e, op, dweight, dbias, dout, inp, weight, bias, m, r, B * HW, C, HW, groups, Cg,
                            fuse_silu);
}

int cuda_layer_norm_forward(sdt_engine *e, sdt_tensor *out, sdt_tensor *mean, sdt_tensor *rstd,
                            const sdt_tensor *inp, const sdt_tensor *weight, const sdt_tensor *bias,
                            float eps)
{
    const char *op = "layer_norm";
    cuda_state *s = cuda_of(e);
    if (same_dtype(e, op, inp, out, "the output") != 0)
        return -1;
    int64_t C;
    const int64_t N = cuda_rows(inp, &C);
    if (N == 0)
        return 0;
    const int warps = LN_THREADS / 32;
    CUDA_DISPATCH(inp->dtype, T, {
        layer_norm_forward_kernel<T><<<cuda_blocks(s, N, warps), LN_THREADS, 0, s->stream>>>(
            static_cast<T *>(out->data), static_cast<float *>(mean->data), static_cast<float *>(rstd->data),
            static_cast<const T *>(inp->data), weight->data, int(weight->dtype), bias->data, int(bias->dtype),
            N, C, eps);
    });
    CUDA_TRY_LAUNCH(e, op);
    return 0;
}

int cuda_layer_norm_backward(sdt_engine *e, sdt_tensor *dinp, sdt_tensor *dweight, sdt_tensor *dbias,
                             const sdt_tensor *dout, const sdt_tensor *inp, const sdt_tensor *weight,
                             const sdt_tensor *mean, const sdt_tensor *rstd)
{
    const char *op = "layer_norm backward";
    cuda_state *s = cuda_of(e);
    if (same_dtype(e, op, inp, dout, "the output gradient") != 0 ||
        same_dtype(e, op, inp, dinp, "the input gradient") != 0)
        return -1;
    int64_t C;
    const int64_t N = cuda_rows(inp, &C);
    if (N == 0)
        return 0;
    const float *m = static_cast<const float *>(mean->data), *r = static_cast<const float *>(rstd->data);
    if (dinp) {
        const int warps = LN_THREADS / 32;
        CUDA_DISPATCH(inp->dtype, T, {
            layer_norm_backward_input_kernel<T><<<cuda_blocks(s, N, warps), LN_THREADS, 0, s->stream>>>(
                static_cast<T *>(dinp->data), static_cast<const T *>(dout->data),
                static_cast<const T *>(inp->data), weight->data, int(weight->dtype), m, r, N, C);
        });
        CUDA_TRY_LAUNCH(e, op);
    }
    if (!dweight && !dbias)
        return 0;
    // Statistics per row: HW = 1, G = 1, Cg = C; no SiLU, so the bias is not read.
    return norm_param_grads(e, op, dweight, dbias, dout, inp, weight, nullptr, m, r, N, C, 1, 1, C, 0);
}
