// Fused scaled dot-product attention, forward and backward, with the semantics of
// kernels/cpu/cpu_attention.c: q [B, Lq, H*D], k, v [B, Lk, H*D], out [B, Lq, H*D], lse [B, H, Lq] f32,
// scores scale * q.k, an optional causal mask aligned top-left (query row i sees keys 0..i, and every key
// once i >= Lk - 1, so no row is ever fully masked).
//
// The [Lq, Lk] score matrix is never stored. Forward: a block owns BQ query rows of one (batch, head) and
// walks the visible keys in tiles of BK held in shared memory, keeping a running maximum, a running sum
// and the output accumulator per row in fp32 registers (online softmax); the output is divided by the
// sum at the end and lse = max + log(sum) is saved. Backward recomputes P = exp(S - lse) tile by tile:
//   Di = rowsum(dO * O),  dV += P^T dO,  dP = dO V^T,  dS = P * (dP - Di),
//   dQ += scale * dS K,  dK += scale * dS^T Q.
// dK and dV come from one kernel in which a block owns a key tile and walks the query tiles that can see
// it; dQ from a second kernel in which a block owns a query tile and walks its key tiles. Each gradient
// element is summed by one thread in a fixed order, so the results are deterministic (no atomics), at the
// price of computing the scores and dP twice.
//
// Thread layout (all three kernels): 128 threads, TPR = 4 threads per tile row. For the products over
// keys a thread owns row t / 4 and keys t % 4 + 4 k of the tile; for the products over the head dim it
// owns dims t % 4 + 4 m (m < DMAX / 4) of its row. DMAX, the largest head dim an instantiation handles,
// is chosen at run time from 64, 128, 160 and 256; loads and stores are masked to the real D.
//
// These are fp32 CUDA-core kernels. The fast path belongs in the two tile products of each kernel (the
// score loop and the accumulation loop): bf16/f16 mma.sync (or wgmma on Hopper) fragments with the
// tiles staged by cp.async / TMA would replace them without changing the surrounding structure.
#include "cuda_internal.h"

#include <cmath>

namespace
{

constexpr int BQ = 32;          // query rows per tile
constexpr int BK = 32;          // keys per tile
constexpr int TPR = 4;          // threads per tile row
constexpr int NT = BQ * TPR;    // threads per block (BK * TPR as well)
constexpr int KPT = BK / TPR;   // keys per thread in the score loop
constexpr int PLD = BK + 1;     // row stride of the [BQ, BK] score tiles: rows fall in different banks
constexpr int ATTN_MAX_D = 256; // largest head dim the kernels take
static_assert(BQ == BK, "one thread layout (NT threads, TPR per row) serves query and key tiles");

// Keys query row i may see: all Lk, or with the causal mask keys 0..i (every key from row Lk - 1 on).
__host__ __device__ __forceinline__ int attn_visible(int i, int Lk, int causal)
{
    return causal && i + 1 < Lk ? i + 1 : Lk;
}

// The row stride of a [rows, D] tile in shared memory: odd, so that threads reading one column of
// different rows hit different banks.
__host__ __device__ __forceinline__ int tile_ld(int D) { return D | 1; }

// dst [rows, ld] (shared) = rows row0 .. row0 + rows - 1 of src [L, D] (row stride HD), zero past row L.
template <typename T>
__device__ __forceinline__ void load_tile(float *dst, int ld, const T *src, int64_t HD, int row0, int L,
                                          int rows, int D)
{
    for (int idx = threadIdx.x; idx < rows * D; idx += blockDim.x) {
        const int r = idx / D, d = idx - r * D, gr = row0 + r;
        dst[r * ld + d] = gr < L ? to_f32(src[int64_t(gr) * HD + d]) : 0.0f;
    }
}

// ---- forward -------------------------------------------------------------------------------------------

template <typename T, int DMAX>
__global__ void __launch_bounds__(NT)
    attention_forward_kernel(T *out, float *lse, const T *q, const T *k, const T *v, int Lq, int Lk, int H,
                             int D, float scale, int causal, int qtiles)
{
    // out, q [B, Lq, H*D]; k, v [B, Lk, H*D]; lse [B, H, Lq]. Block: query tile blockIdx.x % qtiles of
    // (batch, head) blockIdx.x / qtiles.
    constexpr int DPT = DMAX / TPR;
    extern __shared__ float smem[];
    const int ld = tile_ld(D);
    float *sQ = smem;         // [BQ, ld]
    float *sK = sQ + BQ * ld; // [BK, ld]
    float *sV = sK + BK * ld; // [BK, ld]
    float *sP = sV + BK * ld; // [BQ, PLD] probabilities of the current key tile

    const int64_t bh = blockIdx.x / qtiles, b = bh / H;
    const int h = int(bh % H), i0 = int(blockIdx.x % qtiles) * BQ;
    const int64_t HD = int64_t(H) * D;
    const T *qh = q + b * Lq * HD + int64_t(h) * D; // [Lq, D], row stride HD
    const T *kh = k + b * Lk * HD + int64_t(h) * D; // [Lk, D], row stride HD
    const T *vh = v + b * Lk * HD + int64_t(h) * D; // [Lk, D], row stride HD

    const int t = threadIdx.x, r = t / TPR, sub = t % TPR, i = i0 + r;
    const int last = (i0 + BQ < Lq ? i0 + BQ : Lq) - 1;
    const int nk = attn_visible(last, Lk, causal); // no row of the tile sees key nk or later
    const int vis = attn_visible(i, Lk, causal);   // rows past Lq compute harmlessly and are not stored

    load_tile(sQ, ld, qh, HD, i0, Lq, BQ, D);
    float o[DPT];
#pragma unroll
    for (int m = 0; m < DPT; m++)
        o[m] = 0.0f;
    float row_max = -INFINITY, row_sum = 0.0f;

    for (int j0 = 0; j0 < nk; j0 += BK) {
        __syncthreads(); // the previous tile's readers are done (and sQ is complete on the first pass)
        load_tile(sK, ld, kh, HD, j0, Lk, BK, D);
        load_tile(sV, ld, vh, HD, j0, Lk, BK, D);
        __syncthreads();

        // Scores of row r against keys j0 + sub + TPR * kk.
        float sc[KPT];
#pragma unroll
        for (int kk = 0; kk < KPT; kk++)
            sc[kk] = 0.0f;
        for (int d = 0; d < D; d++) {
            const float qd = sQ[r * ld + d];
#pragma unroll
            for (int kk = 0; kk < KPT; kk++)
                sc[kk] += qd * sK[(sub + TPR * kk) * ld + d];
        }
        float tile_max = -INFINITY;
#pragma unroll
        for (int kk = 0; kk < KPT; kk++) {
            const int j = j0 + sub + TPR * kk;
            sc[kk] = j < vis ? scale * sc[kk] : -INFINITY;
            tile_max = fmaxf(tile_max, sc[kk]);
        }
        // The TPR threads of a row are adjacent lanes of one warp.
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
        const float new_max = fmaxf(row_max, tile_max);
        // While every key so far is masked (new_max = -inf) nothing has been summed: keep the scale at 1.
        const float alpha = new_max == -INFINITY ? 1.0f : expf(row_max - new_max);
        float psum = 0.0f;
#pragma unroll
        for (int kk = 0; kk < KPT; kk++) {
            const float p = sc[kk] == -INFINITY ? 0.0f : expf(sc[kk] - new_max);
            sP[r * PLD + sub + TPR * kk] = p;
            psum += p;
        }
        psum += __shfl_xor_sync(0xffffffffu, psum, 1);
        psum += __shfl_xor_sync(0xffffffffu, psum, 2);
        row_sum = row_sum * alpha + psum;
        row_max = new_max;
        __syncwarp(); // row r of sP was written by the lanes that read it below

        // o = o * alpha + P V for this thread's dims.
#pragma unroll
        for (int m = 0; m < DPT; m++)
            o[m] *= alpha;
        for (int jj = 0; jj < BK; jj++) {
            const float p = sP[r * PLD + jj];
#pragma unroll
            for (int m = 0; m < DPT; m++) {
                const int d = sub + TPR * m;
                if (d < D)
                    o[m] += p * sV[jj * ld + d];
            }
        }
    }

    if (i < Lq) {
        // Every stored row saw key 0, so row_sum >= 1.
        const float inv = 1.0f / row_sum;
        T *orow = out + (b * Lq + i) * HD + int64_t(h) * D; // [D]
#pragma unroll
        for (int m = 0; m < DPT; m++) {
            const int d = sub + TPR * m;
            if (d < D)
                orow[d] = from_f32<T>(o[m] * inv);
        }
        if (sub == 0)
            lse[bh * Lq + i] = row_max + logf(row_sum);
    }
}

// ---- backward ------------------------------------------------------------------------------------------

// Di = rowsum(dO * O) per (batch, query row, head): one warp per row of D.
template <typename T>
__global__ void attention_rowdot_kernel(float *di, const T *dout, const T *out, int64_t rows, int Lq, int H,
                                        int D)
{
    // di [B, H, Lq]; dout, out [B, Lq, H, D] = [rows, D] with rows = B * Lq * H
    const int lane = threadIdx.x & 31;
    const int64_t warps = int64_t(gridDim.x) * (blockDim.x >> 5);
    for (int64_t row = int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); row < rows;
         row += warps) {
        float s = 0.0f;
        for (int d = lane; d < D; d += 32)
            s += to_f32(dout[row * D + d]) * to_f32(out[row * D + d]);
        for (int off = 16; off > 0; off >>= 1)
            s += __shfl_xor_sync(0xffffffffu, s, off);
        if (lane == 0) {
            const int64_t h = row % H, i = (row / H) % Lq, b = row / (int64_t(H) * Lq);
            di[(b * H + h) * Lq + i] = s;
        }
    }
}

// dK and dV of one key tile: the block walks every query tile that can see it.
template <typename T, int DMAX>
__global__ void __launch_bounds__(NT)
    attention_backward_kv_kernel(T *dk, T *dv, const T *dout, const T *q, const T *k, const T *v,
                                 const float *lse, const float *di, int Lq, int Lk, int H, int D, float scale,
                                 int causal, int ktiles)
{
    // dk, dv [B, Lk, H*D] (+=, either may be NULL); dout, q [B, Lq, H*D]; k, v [B, Lk, H*D];
    // lse, di [B, H, Lq]. Block: key tile blockIdx.x % ktiles of (batch, head) blockIdx.x / ktiles.
    constexpr int DPT = DMAX / TPR;
    extern __shared__ float smem[];
    const int ld = tile_ld(D);
    float *sK = smem;           // [BK, ld]
    float *sV = sK + BK * ld;   // [BK, ld]
    float *sQ = sV + BK * ld;   // [BQ, ld]
    float *sdO = sQ + BQ * ld;  // [BQ, ld]
    float *sP = sdO + BQ * ld;  // [BQ, PLD]
    float *sdS = sP + BQ * PLD; // [BQ, PLD]
    float *sL = sdS + BQ * PLD; // [BQ] lse of the query tile
    float *sD = sL + BQ;        // [BQ] Di of the query tile

    const int64_t bh = blockIdx.x / ktiles, b = bh / H;
    const int h = int(bh % H), j0 = int(blockIdx.x % ktiles) * BK;
    const int64_t HD = int64_t(H) * D;
    const T *qh = q + b * Lq * HD + int64_t(h) * D;      // [Lq, D], row stride HD
    const T *doh = dout + b * Lq * HD + int64_t(h) * D;  // [Lq, D], row stride HD
    const T *kh = k + b * Lk * HD + int64_t(h) * D;      // [Lk, D], row stride HD
    const T *vh = v + b * Lk * HD + int64_t(h) * D;      // [Lk, D], row stride HD
    const float *lh = lse + bh * Lq, *dh = di + bh * Lq; // [Lq]

    const int t = threadIdx.x, r = t / TPR, sub = t % TPR;
    load_tile(sK, ld, kh, HD, j0, Lk, BK, D);
    load_tile(sV, ld, vh, HD, j0, Lk, BK, D);

    float acc_k[DPT], acc_v[DPT];
#pragma unroll
    for (int m = 0; m < DPT; m++) {
        acc_k[m] = 0.0f;
        acc_v[m] = 0.0f;
    }

    // Under the causal mask a row i < j0 sees only keys 0..i < j0: the first query tile that can see this
    // key tile is the one holding row j0.
    const int q_first = causal ? (j0 / BQ) * BQ : 0;
    for (int i0 = q_first; i0 < Lq; i0 += BQ) {
        __syncthreads(); // the previous query tile's readers are done
        load_tile(sQ, ld, qh, HD, i0, Lq, BQ, D);
        load_tile(sdO, ld, doh, HD, i0, Lq, BQ, D);
        if (t < BQ) {
            const int i = i0 + t;
            sL[t] = i < Lq ? lh[i] : 0.0f;
            sD[t] = i < Lq ? dh[i] : 0.0f;
        }
        __syncthreads();

        // P and dS of query row i0 + r against keys j0 + sub + TPR * kk.
        {
            const int i = i0 + r;
            const int vis = i < Lq ? attn_visible(i, Lk, causal) : 0;
            float s[KPT], dp[KPT];
#pragma unroll
            for (int kk = 0; kk < KPT; kk++) {
                s[kk] = 0.0f;
                dp[kk] = 0.0f;
            }
            for (int d = 0; d < D; d++) {
                const float qd = sQ[r * ld + d], dod = sdO[r * ld + d];
#pragma unroll
                for (int kk = 0; kk < KPT; kk++) {
                    s[kk] += qd * sK[(sub + TPR * kk) * ld + d];
                    dp[kk] += dod * sV[(sub + TPR * kk) * ld + d];
                }
            }
            const float l = sL[r], dif = sD[r];
#pragma unroll
            for (int kk = 0; kk < KPT; kk++) {
                const int jl = sub + TPR * kk;
                const float p = j0 + jl < vis ? expf(scale * s[kk] - l) : 0.0f;
                sP[r * PLD + jl] = p;
                sdS[r * PLD + jl] = p * (dp[kk] - dif);
            }
        }
        __syncthreads();

        // dV[key r] += sum_i P[i, r] dO[i];  dK[key r] += sum_i dS[i, r] Q[i] (scaled at the end).
        for (int ii = 0; ii < BQ; ii++) {
            const float p = sP[ii * PLD + r], ds = sdS[ii * PLD + r];
#pragma unroll
            for (int m = 0; m < DPT; m++) {
                const int d = sub + TPR * m;
                if (d < D) {
                    acc_v[m] += p * sdO[ii * ld + d];
                    acc_k[m] += ds * sQ[ii * ld + d];
                }
            }
        }
    }

    const int j = j0 + r;
    if (j < Lk) {
        const int64_t off = (b * Lk + j) * HD + int64_t(h) * D; // row j of the head's [Lk, D] slice
#pragma unroll
        for (int m = 0; m < DPT; m++) {
            const int d = sub + TPR * m;
            if (d < D) {
                if (dk)
                    dk[off + d] = from_f32<T>(to_f32(dk[off + d]) + scale * acc_k[m]);
                if (dv)
                    dv[off + d] = from_f32<T>(to_f32(dv[off + d]) + acc_v[m]);
            }
        }
    }
}

// dQ of one query tile: the block walks the key tiles its rows can see.
template <typename T, int DMAX>
__global__ void __launch_bounds__(NT)
    attention_backward_q_kernel(T *dq, const T *dout, const T *q, const T *k, const T *v, const float *lse,
                                const float *di, int Lq, int Lk, int H, int D, float scale, int causal,
                                int qtiles)
{
    // dq, dout, q [B, Lq, H*D] (dq +=); k, v [B, Lk, H*D]; lse, di [B, H, Lq]. Block: query tile
    // blockIdx.x % qtiles of (batch, head) blockIdx.x / qtiles.
    constexpr int DPT = DMAX / TPR;
    extern __shared__ float smem[];
    const int ld = tile_ld(D);
    float *sQ = smem;          // [BQ, ld]
    float *sdO = sQ + BQ * ld; // [BQ, ld]
    float *sK = sdO + BQ * ld; // [BK, ld]
    float *sV = sK + BK * ld;  // [BK, ld]
    float *sdS = sV + BK * ld; // [BQ, PLD]

    const int64_t bh = blockIdx.x / qtiles, b = bh / H;
    const int h = int(bh % H), i0 = int(blockIdx.x % qtiles) * BQ;
    const int64_t HD = int64_t(H) * D;
    const T *qh = q + b * Lq * HD + int64_t(h) * D;     // [Lq, D], row stride HD
    const T *doh = dout + b * Lq * HD + int64_t(h) * D; // [Lq, D], row stride HD
    const T *kh = k + b * Lk * HD + int64_t(h) * D;     // [Lk, D], row stride HD
    const T *vh = v + b * Lk * HD + int64_t(h) * D;     // [Lk, D], row stride HD

    const int t = threadIdx.x, r = t / TPR, sub = t % TPR, i = i0 + r;
    const int last = (i0 + BQ < Lq ? i0 + BQ : Lq) - 1;
    const int nk = attn_visible(last, Lk, causal);
    const int vis = i < Lq ? attn_visible(i, Lk, causal) : 0;
    const float l = i < Lq ? lse[bh * Lq + i] : 0.0f, dif = i < Lq ? di[bh * Lq + i] : 0.0f;

    load_tile(sQ, ld, qh, HD, i0, Lq, BQ, D);
    load_tile(sdO, ld, doh, HD, i0, Lq, BQ, D);
    float acc[DPT];
#pragma unroll
    for (int m = 0; m < DPT; m++)
        acc[m] = 0.0f;

    for (int j0 = 0; j0 < nk; j0 += BK) {
        __syncthreads(); // the previous key tile's readers are done (and sQ, sdO complete on the first pass)
        load_tile(sK, ld, kh, HD, j0, Lk, BK, D);
        load_tile(sV, ld, vh, HD, j0, Lk, BK, D);
        __syncthreads();

        float s[KPT], dp[KPT];
#pragma unroll
        for (int kk = 0; kk < KPT; kk++) {
            s[kk] = 0.0f;
            dp[kk] = 0.0f;
        }
        for (int d = 0; d < D; d++) {
            const float qd = sQ[r * ld + d], dod = sdO[r * ld + d];
#pragma unroll
            for (int kk = 0; kk < KPT; kk++) {
                s[kk] += qd * sK[(sub + TPR * kk) * ld + d];
                dp[kk] += dod * sV[(sub + TPR * kk) * ld + d];
            }
        }
#pragma unroll
        for (int kk = 0; kk < KPT; kk++) {
            const int jl = sub + TPR * kk;
            const float p = j0 + jl < vis ? expf(scale * s[kk] - l) : 0.0f;
            sdS[r * PLD + jl] = p * (dp[kk] - dif);
        }
        __syncwarp(); // row r of sdS was written by the lanes that read it below

        // dQ[row r] += sum_j dS[r, j] K[j] (scaled at the end).
        for (int jj = 0; jj < BK; jj++) {
            const float ds = sdS[r * PLD + jj];
#pragma unroll
            for (int m = 0; m < DPT; m++) {
                const int d = sub + TPR * m;
                if (d < D)
                    acc[m] += ds * sK[jj * ld + d];
            }
        }
    }

    if (i < Lq) {
        T *row = dq + (b * Lq + i) * HD + int64_t(h) * D; // [D]
#pragma unroll
        for (int m = 0; m < DPT; m++) {
            const int d = sub + TPR * m;
            if (d < D)
                row[d] = from_f32<T>(to_f32(row[d]) + scale * acc[m]);
        }
    }
}

// ---- host side -----------------------------------------------------------------------------------------

struct attn_dims {
    int64_t B;
    int Lq, Lk, H, D;
    int qtiles, ktiles; // ceil(Lq / BQ), ceil(Lk / BK)
};

size_t forward_smem(int D) { return sizeof(float) * (size_t(BQ + 2 * BK) * tile_ld(D) + size_t(BQ) * PLD); }
size_t backward_kv_smem(int D)
{
    return sizeof(float) * (size_t(2 * BK + 2 * BQ) * tile_ld(D) + size_t(2 * BQ) * PLD + size_t(2 * BQ));
}
size_t backward_q_smem(int D)
{
    return sizeof(float) * (size_t(2 * BQ + 2 * BK) * tile_ld(D) + size_t(BQ) * PLD);
}

// Kernels using more than the default 48 KiB of dynamic shared memory must say so first. The attribute
// belongs to the kernel, not to a stream or a call, so setting it again is harmless.
template <typename K> cudaError_t allow_smem(K *kernel, size_t bytes)
{
    if (bytes <= size_t(48) << 10)
        return cudaSuccess;
    return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
}

template <typename T, int DMAX>
cudaError_t launch_forward(cudaStream_t st, T *out, float *lse, const T *q, const T *k, const T *v,
                           const attn_dims &a, float scale, int causal)
{
    const size_t smem = forward_smem(a.D);
    cudaError_t rc = allow_smem(attention_forward_kernel<T, DMAX>, smem);
    if (rc != cudaSuccess)
        return rc;
    const unsigned blocks = unsigned(a.B * a.H * a.qtiles);
    attention_forward_kernel<T, DMAX>
        <<<blocks, NT, smem, st>>>(out, lse, q, k, v, a.Lq, a.Lk, a.H, a.D, scale, causal, a.qtiles);
    return cudaGetLastError();
}

template <typename T, int DMAX>
cudaError_t launch_backward(cudaStream_t st, T *dq, T *dk, T *dv, const T *dout, const T *q, const T *k,
                            const T *v, const float *lse, const float *di, const attn_dims &a, float scale,
                            int causal)
{
    cudaError_t rc = cudaSuccess;
    if (dk || dv) {
        const size_t smem = backward_kv_smem(a.D);
        rc = allow_smem(attention_backward_kv_kernel<T, DMAX>, smem);
        if (rc != cudaSuccess)
            return rc;
        attention_backward_kv_kernel<T, DMAX><<<unsigned(a.B * a.H * a.ktiles), NT, smem, st>>>(
            dk, dv, dout, q, k, v, lse, di, a.Lq, a.Lk, a.H, a.D, scale, causal, a.ktiles);
        rc = cudaGetLastError();
        if (rc != cudaSuccess)
            return rc;
    }
    if (dq) {
        const size_t smem = backward_q_smem(a.D);
        rc = allow_smem(attention_backward_q_kernel<T, DMAX>, smem);
        if (rc != cudaSuccess)
            return rc;
        attention_backward_q_kernel<T, DMAX><<<unsigned(a.B * a.H * a.qtiles), NT, smem, st>>>(
            dq, dout, q, k, v, lse, di, a.Lq, a.Lk, a.H, a.D, scale, causal, a.qtiles);
        rc = cudaGetLastError();
    }
    return rc;
}

// Calls body with DMAX bound to the smallest instantiated head-dim bound >= D (D <= ATTN_MAX_D).
#define ATTN_DISPATCH_D(D, DMAX, ...)                                                                        \
    do {                                                                                                     \
        if ((D) <= 64) {                                                                                     \
            constexpr int DMAX = 64;                                                                         \
            __VA_ARGS__;                                                                                     \
        } else if ((D) <= 128) {                                                                             \
            constexpr int DMAX = 128;                                                                        \
            __VA_ARGS__;                                                                                     \
        } else if ((D) <= 160) {                                                                             \
            constexpr int DMAX = 160;                                                                        \
            __VA_ARGS__;                                                                                     \
        } else {                                                                                             \
            constexpr int DMAX = 256;                                                                        \
            __VA_ARGS__;                                                                                     \
        }                                                                                                    \
    } while (0)

// Shapes, the supported range and the one storage type of q, k, v and the others; fills *a. Returns 1 when
// there is nothing to compute, 0 to go on, -1 on an error (message set).
int attn_setup(sdt_engine *e, const char *op, attn_dims *a, const sdt_tensor *q, const sdt_tensor *k,
               int heads, const sdt_tensor *const *same, int nsame, size_t smem)
{
    for (int n = 0; n < nsame; n++)
        if (same[n] && same[n]->dtype != q->dtype)
            return sdt_engine_fail(e,
                                   "%s: the CUDA backend needs q, k, v, the output and the gradients in one "
                                   "dtype",
                                   op);
    const int64_t B = q->shape[0], Lq = q->shape[1], Lk = k->shape[1], D = q->shape[2] / heads;
    if (B <= 0 || Lq <= 0 || Lk <= 0 || D <= 0)
        return 1;
    if (D > ATTN_MAX_D)
        return sdt_engine_fail(e, "%s: head dim %lld: the CUDA kernels take head dims up to %d", op,
                               (long long)D, ATTN_MAX_D);
    if (Lq > INT32_MAX - BQ || Lk > INT32_MAX - BK)
        return sdt_engine_fail(e, "%s: sequences of %lld x %lld tokens are too long", op, (long long)Lq,
                               (long long)Lk);
    a->B = B;
    a->Lq = int(Lq);
    a->Lk = int(Lk);
    a->H = heads;
    a->D = int(D);
    a->qtiles = int((Lq + BQ - 1) / BQ);
    a->ktiles = int((Lk + BK - 1) / BK);
    const int64_t tiles = a->qtiles > a->ktiles ? a->qtiles : a->ktiles;
    if (B * heads * tiles > INT32_MAX)
        return sdt_engine_fail(e, "%s: %lld batches x %d heads are too many tiles for one launch", op,
                               (long long)B, heads);
    int optin = 0;
    CUDA_TRY(e, cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, cuda_of(e)->device));
    if (smem > size_t(optin))
        return sdt_engine_fail(
            e, "%s: head dim %d needs %zu bytes of shared memory per block; the device has %d", op, a->D,
            smem, optin);
    return 0;
}

} // namespace

// ---- entry points --------------------------------------------------------------------------------------

int cuda_attention_forward(sdt_engine *e, sdt_tensor *out, sdt_tensor *lse, const sdt_tensor *q,
                           const sdt_tensor *k, const sdt_tensor *v, int heads, float scale, int causal)
{
    const char *op = "attention";
    cuda_state *s = cuda_of(e);
    attn_dims a;
    const sdt_tensor *same[] = {k, v, out};
    const int64_t D = q->shape[2] / heads;
    const int go = attn_setup(e, op, &a, q, k, heads, same, 3, forward_smem(int(D <= ATTN_MAX_D ? D : 1)));
    if (go != 0)
        return go < 0 ? -1 : 0;
    cudaError_t rc = cudaSuccess;
    CUDA_DISPATCH(q->dtype, T, {
        ATTN_DISPATCH_D(a.D, DMAX, {
            rc = launch_forward<T, DMAX>(s->stream, static_cast<T *>(out->data),
                                         static_cast<float *>(lse->data), static_cast<const T *>(q->data),
                                         static_cast<const T *>(k->data), static_cast<const T *>(v->data), a,
                                         scale, causal);
        });
    });
    if (rc != cudaSuccess)
        return sdt_engine_fail(e, "%s: kernel launch: %s", op, cudaGetErrorString(rc));
    return 0;
}

int cuda_attention_backward(sdt_engine *e, sdt_tensor *dq, sdt_tensor *dk, sdt_tensor *dv,
                            const sdt_tensor *dout, const sdt_tensor *q, const sdt_tensor *k,
                            const sdt_tensor *v, const sdt_tensor *out, const sdt_tensor *lse, int heads,
                            float scale, int causal)
{
    const char *op = "attention backward";
    cuda_state *s = cuda_of(e);
    if (!dq && !dk && !dv)
        return 0;
    attn_dims a;
    const sdt_tensor *same[] = {k, v, out, dout, dq, dk, dv};
    const int64_t D = q->shape[2] / heads;
    const int dc = int(D <= ATTN_MAX_D ? D : 1);
    const size_t smem =
        backward_kv_smem(dc) > backward_q_smem(dc) ? backward_kv_smem(dc) : backward_q_smem(dc);
    const int go = attn_setup(e, op, &a, q, k, heads, same, 7, smem);
    if (go != 0)
        return go < 0 ? -1 : 0;

    // di [B, H, Lq] = rowsum(dO * O), stream-ordered scratch.
    const int64_t rows = a.B * a.Lq * a.H;
    float *di = static_cast<float *>(sdt_engine_alloc(e, size_t(rows) * sizeof(float)));
    if (!di)
        return sdt_engine_fail(e, "%s: out of device memory for its row sums", op);
    cudaError_t rc = cudaSuccess;
    CUDA_DISPATCH(q->dtype, T, {
        attention_rowdot_kernel<T><<<cuda_blocks(s, rows, 8), 256, 0, s->stream>>>(
            di, static_cast<const T *>(dout->data), static_cast<const T *>(out->data), rows, a.Lq, a.H, a.D);
        rc = cudaGetLastError();
        if (rc == cudaSuccess) {
            ATTN_DISPATCH_D(a.D, DMAX, {
                rc = launch_backward<T, DMAX>(
                    s->stream, dq ? static_cast<T *>(dq->data) : nullptr,
                    dk ? static_cast<T *>(dk->data) : nullptr, dv ? static_cast<T *>(dv->data) : nullptr,
                    static_cast<const T *>(dout->data), static_cast<const T *>(q->data),
                    static_cast<const T *>(k->data), static_cast<const T *>(v->data),
                    static_cast<const float *>(lse->data), di, a, scale, causal);
            });
        }
    });
    sdt_engine_dealloc(e, di); // stream-ordered: freed after the kernels above have run
    if (rc != cudaSuccess)
        return sdt_engine_fail(e, "%s: kernel launch: %s", op, cudaGetErrorString(rc));
    return 0;
}
