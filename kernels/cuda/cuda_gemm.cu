// Linear layers through cuBLASLt, and the staging helpers the convolutions share (cuda_gemm_conv.h).
//
// Row-major data as column-major GEMMs. cuBLASLt is column-major: a row-major matrix X [r, c] with leading
// dimension c is, read column-major, X^T [c, r] with the same leading dimension. So every row-major
// product Y = P @ Q becomes the column-major product Y^T = Q^T @ P^T, with the operands swapped and each
// buffer passed as it is stored. For a linear layer (N rows, C inputs, OC outputs):
//
//   forward   out [N, OC] = inp [N, C] @ W [OC, C]^T
//             column-major: out^T [OC, N] = W [OC, C] @ inp^T [C, N]
//             A = W buffer, stored (C x OC, ld C) col-major = W^T, op T -> m = OC, k = C
//             B = inp buffer, stored (C x N, ld C) = inp^T, op N        -> n = N
//             D = out buffer (OC x N, ld OC); the bias [OC] runs along D's rows, as CUBLASLT_EPILOGUE_BIAS
//             wants it.
//   dinp      dinp [N, C] += dout [N, OC] @ W [OC, C]
//             column-major: dinp^T [C, N] = W^T [C, OC] @ dout^T [OC, N]
//             A = W buffer (C x OC, ld C), op N -> m = C, k = OC; B = dout buffer (OC x N, ld OC), op N -> n
//             = N
//   dweight   dweight [OC, C] += dout^T [OC, N] @ inp [N, C]
//             column-major: dweight^T [C, OC] = inp^T [C, N] @ dout [N, OC]
//             A = inp buffer (C x N, ld C), op N -> m = C, k = N; B = dout buffer (OC x N, ld OC), op T -> n
//             = OC
//
// Precision: compute type CUBLAS_COMPUTE_32F with f32 scale; f32 operands are multiplied exactly in fp32
// (no TF32, which would be CUBLAS_COMPUTE_32F_FAST_TF32), f16/bf16 operands on tensor cores with fp32
// accumulation. The supported combinations are A = B type with D the same type or f32 (with a half A/B).
// A layer whose tensors mix dtypes (f32 trainable weights beside bf16 activations) stages the odd ones in
// scratch: A and B both as f32 when they differ, D as f32 when its dtype cannot pair with A/B or differs
// from the bias's, then converted (forward) or added (backward) into the real output, rounding once.
//
// Gradients add: the dinp and dweight GEMMs run with beta = 1 when they write the gradient directly. The
// bias gradient is a separate deterministic column-sum kernel rather than the BGRADB epilogue: the
// epilogue overwrites its vector (we must add) and ties dbias to the dweight GEMM's dtype.
//
// Determinism: the heuristic takes no timings, so a shape gets the same algorithm on every run on one
// device; with the `deterministic` engine option the split-K schemes are restricted (plan_build).
//
// Plans: cuBLASLt's heuristic query costs far more than the matmul for small layers, so the matmul
// descriptor, the three layouts and the chosen algorithm are kept per (shape, dtypes, transposes,
// epilogue, pointer alignments) in cuda_state::gemm_plans, a small array searched linearly (a model has
// at most a few hundred distinct GEMMs).
#include "cuda_gemm_conv.h"

#include <cstdlib>
#include <cstring>

// ---- scratch -------------------------------------------------------------------------------------------

int gemmconv_scratch_alloc(sdt_engine *e, gemmconv_scratch *sc, size_t bytes, void **out)
{
    cuda_state *s = cuda_of(e);
    *out = nullptr;
    if (sc->count >= GEMMCONV_MAX_SCRATCH)
        return sdt_engine_fail(e, "GEMM/conv staging: more than %d scratch buffers", GEMMCONV_MAX_SCRATCH);
    void *p = nullptr;
    size_t want = bytes ? bytes : 16;
    if (s->pool)
        CUDA_TRY(e, cudaMallocFromPoolAsync(&p, want, s->pool, s->stream));
    else
        CUDA_TRY(e, cudaMallocAsync(&p, want, s->stream));
    if (cuda_track_alloc(s, p, want) != 0) { // counted like any engine block (sdt_engine_peak_bytes)
        cudaFreeAsync(p, s->stream);
        return -1;
    }
    sc->ptr[sc->count++] = p;
    *out = p;
    return 0;
}

void gemmconv_scratch_release(cuda_state *s, gemmconv_scratch *sc)
{
    for (int i = 0; i < sc->count; i++)
        if (sc->ptr[i]) {
            cuda_track_free(s, sc->ptr[i]);
            cudaFreeAsync(sc->ptr[i], s->stream); // a failure here has nothing left to undo
        }
    sc->count = 0;
}

// ---- conversion and accumulation kernels ---------------------------------------------------------------

// dst [n] = src [n], converted through fp32.
template <typename S, typename D> __global__ void convert_kernel(D *dst, const S *src, int64_t n)
{
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += int64_t(gridDim.x) * blockDim.x)
        dst[i] = from_f32<D>(to_f32(src[i]));
}

// dst [n] += src [n], in fp32, rounded once into dst's type.
template <typename S, typename D> __global__ void add_kernel(D *dst, const S *src, int64_t n)
{
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += int64_t(gridDim.x) * blockDim.x)
        dst[i] = from_f32<D>(to_f32(dst[i]) + to_f32(src[i]));
}

int gemmconv_convert(sdt_engine *e, void *dst, sdt_dtype dst_type, const void *src, sdt_dtype src_type,
                     int64_t n)
{
    cuda_state *s = cuda_of(e);
    if (n <= 0)
        return 0;
    const int threads = 256;
    const unsigned blocks = cuda_blocks(s, n, threads);
    CUDA_DISPATCH(src_type, S, CUDA_DISPATCH(dst_type, D, {
                      convert_kernel<S, D><<<blocks, threads, 0, s->stream>>>(static_cast<D *>(dst),
                                                                              static_cast<const S *>(src), n);
                  }));
    CUDA_TRY_LAUNCH(e, "dtype conversion");
    return 0;
}

int gemmconv_add(sdt_engine *e, void *dst, sdt_dtype dst_type, const void *src, sdt_dtype src_type, int64_t n)
{
    cuda_state *s = cuda_of(e);
    if (n <= 0)
        return 0;
    const int threads = 256;
    const unsigned blocks = cuda_blocks(s, n, threads);
    CUDA_DISPATCH(src_type, S, CUDA_DISPATCH(dst_type, D, {
                      add_kernel<S, D><<<blocks, threads, 0, s->stream>>>(static_cast<D *>(dst),
                                                                          static_cast<const S *>(src), n);
                  }));
    CUDA_TRY_LAUNCH(e, "gradient accumulation");
    return 0;
}

// ---- F8_E4M3 weights -------------------------------------------------------------------------------------
// A frozen weight stored as e4m3fn codes with a per-tensor scale (docs/ops.md) is dequantised into scratch
// of the activations' dtype before every GEMM or convolution that reads it, and the op then runs its usual
// bf16 (or f16, f32) path: the memory saving is in the stored weights, the scratch lives for one call.
// The value is code * scale in fp32, rounded once into the scratch's dtype: in f32 the dequantised weight is
// the CPU backend's bit for bit; in bf16 it is that product rounded once more, as a bf16-stored weight is.
//
// A native FP8 GEMM would go here instead: cuBLASLt on Hopper multiplies e4m3 A and B with per-tensor
// scales (CUBLASLT_MATMUL_DESC_A_SCALE_POINTER / B_SCALE_POINTER) and fp32 accumulation, but it needs the
// activations (B) in fp8 too, i.e. a quantisation of every input with its own amax per call, and for the
// backward data GEMM of dout as well. That trades accuracy of the trained activations for speed; the
// dequantising path keeps the numerics of the bf16 model and only saves memory.

// e4m3fn code -> f32, exact: the same decoding as sdt_f8e4m3_to_f32 (src/util/dtype.c).
__device__ __forceinline__ float e4m3_to_f32(uint8_t code)
{
    const uint32_t sign = uint32_t(code & 0x80u) << 24, exponent = (code >> 3) & 0xfu, mantissa = code & 7u;
    if (exponent == 0xfu && mantissa == 7u)
        return __uint_as_float(sign | 0x7fc00000u); // NaN (e4m3fn has no infinities)
    if (exponent == 0) {
        const float magnitude = float(mantissa) * 0x1p-9f; // subnormal: m * 2^-9
        return sign ? -magnitude : magnitude;
    }
    return __uint_as_float(sign | ((exponent + 120u) << 23) | (mantissa << 20));
}

// dst [n] = code [n] * scale, one fp32 product rounded once into D.
template <typename D>
__global__ void dequantize_e4m3_kernel(D *dst /* [n] */, const uint8_t *codes /* [n] */, float scale,
                                       int64_t n)
{
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += int64_t(gridDim.x) * blockDim.x)
        dst[i] = from_f32<D>(__fmul_rn(e4m3_to_f32(codes[i]), scale)); // _rn: never fused into anything
}

int gemmconv_dequantized_weight(sdt_engine *e, gemmconv_scratch *sc, const sdt_tensor *weight, sdt_dtype want,
                                sdt_tensor *out)
{
    *out = *weight;
    if (weight->dtype != SDT_F8_E4M3)
        return 0;
    cuda_state *s = cuda_of(e);
    const int64_t n = sdt_tensor_numel(weight);
    void *p = nullptr; // [n] of want: the weight's shape, dequantised
    if (gemmconv_scratch_alloc(e, sc, size_t(n) * gemmconv_dtype_size(want), &p) != 0)
        return -1;
    out->data = p;
    out->dtype = want;
    out->scale = 0.0f;
    if (n == 0)
        return 0;
    const int threads = 256;
    const unsigned blocks = cuda_blocks(s, n, threads);
    const float scale = sdt_tensor_scale(weight);
    CUDA_DISPATCH(want, D, {
        dequantize_e4m3_kernel<D><<<blocks, threads, 0, s->stream>>>(
            static_cast<D *>(p), static_cast<const uint8_t *>(weight->data), scale, n);
    });
    CUDA_TRY_LAUNCH(e, "F8_E4M3 weight dequantisation");
    return 0;
}

// ---- bias gradient: column sums ------------------------------------------------------------------------
// Pass 1: block (32, 8) owns 32 columns of one chunk of rows; thread (tx, ty) sums rows ty, ty + 8, ... of
// the chunk in column tx (32 adjacent columns per warp row: coalesced), then the 8 partial sums are added
// in ty order. Pass 2: one thread per column adds the chunks' sums in chunk order. Every sum has a fixed
// order, so the result does not depend on scheduling. A faster version would keep the partials in f32 and
// use wider loads; this one is a small part of a layer's backward.

constexpr int COLSUM_TX = 32, COLSUM_TY = 8;
constexpr int64_t COLSUM_MAX_CHUNKS = 1024; // grid.y, far below the 65535 limit

template <typename T>
__global__ void colsum_partial_kernel(double *partial /* [chunks, cols] */, const T *x /* [rows, cols] */,
                                      int64_t rows, int64_t cols, int64_t rows_per_chunk)
{
    __shared__ double sums[COLSUM_TY][COLSUM_TX + 1]; // +1: no bank conflicts on the column read
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int64_t col = int64_t(blockIdx.x) * COLSUM_TX + tx;
    const int64_t r0 = int64_t(blockIdx.y) * rows_per_chunk;
    const int64_t r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
    double acc = 0.0;
    if (col < cols)
        for (int64_t r = r0 + ty; r < r1; r += COLSUM_TY)
            acc += double(to_f32(x[r * cols + col]));
    sums[ty][tx] = acc;
    __syncthreads();
    if (ty == 0 && col < cols) {
        double total = 0.0;
        for (int i = 0; i < COLSUM_TY; i++)
            total += sums[i][tx];
        partial[int64_t(blockIdx.y) * cols + col] = total;
    }
}

template <typename T>
__global__ void colsum_finish_kernel(T *dbias /* [cols] */, const double *partial /* [chunks, cols] */,
                                     int64_t chunks, int64_t cols)
{
    for (int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < cols;
         c += int64_t(gridDim.x) * blockDim.x) {
        double total = double(to_f32(dbias[c]));
        for (int64_t k = 0; k < chunks; k++)
            total += partial[k * cols + c];
        dbias[c] = from_f32<T>(float(total));
    }
}

int gemmconv_add_column_sums(sdt_engine *e, gemmconv_scratch *sc, sdt_tensor *dbias, const void *x,
                             sdt_dtype x_type, int64_t rows, int64_t cols)
{
    cuda_state *s = cuda_of(e);
    if (rows <= 0 || cols <= 0)
        return 0; // an empty sum adds nothing
    // Chunks of at least 256 rows, at most COLSUM_MAX_CHUNKS of them.
    int64_t chunks = (rows + 255) / 256;
    if (chunks > COLSUM_MAX_CHUNKS)
        chunks = COLSUM_MAX_CHUNKS;
    const int64_t rows_per_chunk = (rows + chunks - 1) / chunks;
    chunks = (rows + rows_per_chunk - 1) / rows_per_chunk;
    const int64_t col_blocks = (cols + COLSUM_TX - 1) / COLSUM_TX;
    if (col_blocks > 0x7fffffff)
        return sdt_engine_fail(e, "bias gradient: %lld columns is too many", (long long)cols);
    void *partial = nullptr; // [chunks, cols] doubles
    if (gemmconv_scratch_alloc(e, sc, size_t(chunks * cols) * sizeof(double), &partial) != 0)
        return -1;
    const dim3 grid{unsigned(col_blocks), unsigned(chunks), 1}, block{COLSUM_TX, COLSUM_TY, 1};
    CUDA_DISPATCH(x_type, T, {
        colsum_partial_kernel<T><<<grid, block, 0, s->stream>>>(
            static_cast<double *>(partial), static_cast<const T *>(x), rows, cols, rows_per_chunk);
    });
    CUDA_TRY_LAUNCH(e, "bias gradient (partial sums)");
    const int threads = 256;
    const unsigned blocks = cuda_blocks(s, cols, threads);
    CUDA_DISPATCH(dbias->dtype, T, {
        colsum_finish_kernel<T><<<blocks, threads, 0, s->stream>>>(
            static_cast<T *>(dbias->data), static_cast<const double *>(partial), chunks, cols);
    });
    CUDA_TRY_LAUNCH(e, "bias gradient (total)");
    return 0;
}

// ---- plans ---------------------------------------------------------------------------------------------

static cudaDataType_t lt_type(sdt_dtype t)
{
    return t == SDT_F16 ? CUDA_R_16F : t == SDT_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

// The largest power of two (at most 256) dividing the address: cuBLASLt's heuristic picks kernels for the
// alignment it is told, and a tensor view need not start at an allocation's 256-byte boundary.
static uint32_t ptr_alignment(const void *p)
{
    uintptr_t a = reinterpret_cast<uintptr_t>(p);
    uint32_t align = 256;
    while (align > 1 && (a & (align - 1)) != 0)
        align >>= 1;
    return align;
}

// Everything a plan depends on; compared bytewise, so always built from a zeroed struct.
struct gemm_key {
    int64_t m, n, k, lda, ldb, ldd;
    int32_t trans_a, trans_b;
    int32_t ab_type, d_type; // sdt_dtype of A and B (equal), of C = D
    int32_t bias;            // 1: CUBLASLT_EPILOGUE_BIAS with a bias of D's type
    uint32_t align_a, align_b, align_d, align_bias;
};

struct gemm_plan {
    gemm_key key;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, d; // C shares D's layout
    cublasLtMatmulAlgo_t algo;
};

struct cuda_plan_cache {
    gemm_plan *plans; // [count], capacity cap
    int count, cap;
};

static void plan_destroy(gemm_plan *p)
{
    if (p->desc)
        cublasLtMatmulDescDestroy(p->desc);
    if (p->a)
        cublasLtMatrixLayoutDestroy(p->a);
    if (p->b)
        cublasLtMatrixLayoutDestroy(p->b);
    if (p->d)
        cublasLtMatrixLayoutDestroy(p->d);
    std::memset(p, 0, sizeof *p);
}

void cuda_gemm_plans_free(cuda_state *s)
{
    cuda_plan_cache *c = s->gemm_plans;
    if (!c)
        return;
    for (int i = 0; i < c->count; i++)
        plan_destroy(&c->plans[i]);
    std::free(c->plans);
    std::free(c);
    s->gemm_plans = nullptr;
}

// Fills p (zeroed by the caller, key set) with descriptors and the heuristic's best algorithm. On failure
// the caller destroys whatever was created.
static int plan_build(sdt_engine *e, cuda_state *s, gemm_plan *p)
{
    const gemm_key *k = &p->key;
    CUBLAS_TRY(e, cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t ta = k->trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t tb = k->trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    CUBLAS_TRY(e, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CUBLAS_TRY(e, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    if (k->bias) {
        const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
        const int32_t bias_type = lt_type(sdt_dtype(k->d_type)); // the documented rule: bias type = D type
        CUBLAS_TRY(e,
                   cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
        CUBLAS_TRY(e, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type,
                                                     sizeof bias_type));
    }
    // Layouts describe the buffers as stored: op(A) is m x k, so A is stored k x m when transposed.
    const cudaDataType_t abt = lt_type(sdt_dtype(k->ab_type)), dt = lt_type(sdt_dtype(k->d_type));
    CUBLAS_TRY(e, cublasLtMatrixLayoutCreate(&p->a, abt, uint64_t(k->trans_a ? k->k : k->m),
                                             uint64_t(k->trans_a ? k->m : k->k), k->lda));
    CUBLAS_TRY(e, cublasLtMatrixLayoutCreate(&p->b, abt, uint64_t(k->trans_b ? k->n : k->k),
                                             uint64_t(k->trans_b ? k->k : k->n), k->ldb));
    CUBLAS_TRY(e, cublasLtMatrixLayoutCreate(&p->d, dt, uint64_t(k->m), uint64_t(k->n), k->ldd));

    cublasLtMatmulPreference_t pref = nullptr;
    CUBLAS_TRY(e, cublasLtMatmulPreferenceCreate(&pref));
    const uint64_t ws = s->workspace ? uint64_t(s->workspace_bytes) : 0;
    cublasStatus_t st =
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    const struct {
        cublasLtMatmulPreferenceAttributes_t attr;
        uint32_t value;
    } aligns[] = {{CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, k->align_a},
                  {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, k->align_b},
                  {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, k->align_d},
                  {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, k->align_d}};
    for (size_t i = 0; st == CUBLAS_STATUS_SUCCESS && i < sizeof aligns / sizeof aligns[0]; i++)
        st = cublasLtMatmulPreferenceSetAttribute(pref, aligns[i].attr, &aligns[i].value,
                                                  sizeof aligns[i].value);
    // The `deterministic` engine option: split-K only where the partial products go to the workspace and a
    // separate kernel adds them in a fixed order (the compute-type and output-type schemes); the in-place
    // scheme, which reduces into the output buffer coordinated through counters, is left out, so the sum
    // order cannot depend on which thread block finishes first. Unsplit algorithms (NONE) stay allowed.
    if (st == CUBLAS_STATUS_SUCCESS && e->options.deterministic) {
        const uint32_t schemes =
            CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE | CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE;
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &schemes,
                                                  sizeof schemes);
    }
    cublasLtMatmulHeuristicResult_t result;
    std::memset(&result, 0, sizeof result);
    int found = 0;
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulAlgoGetHeuristic(s->lt, p->desc, p->a, p->b, p->d, p->d, pref, 1, &result, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS)
        return sdt_engine_fail(e, "cuBLASLt heuristic for a %lldx%lldx%lld GEMM: %s", (long long)k->m,
                               (long long)k->n, (long long)k->k, cublasLtGetStatusString(st));
    if (found < 1 || result.state != CUBLAS_STATUS_SUCCESS)
        return sdt_engine_fail(
            e, "cuBLASLt has no algorithm for a %lldx%lldx%lld GEMM (types %d/%d, bias %d)", (long long)k->m,
            (long long)k->n, (long long)k->k, k->ab_type, k->d_type, k->bias);
    p->algo = result.algo;
    return 0;
}

// The plan for key, built on first use. The pointer stays valid until the next plan_get (realloc).
static int plan_get(sdt_engine *e, cuda_state *s, const gemm_key *key, gemm_plan **out)
{
    cuda_plan_cache *c = s->gemm_plans;
    if (!c) {
        c = static_cast<cuda_plan_cache *>(std::calloc(1, sizeof *c));
        if (!c)
            return sdt_engine_fail(e, "out of memory for the GEMM plan cache");
        s->gemm_plans = c;
    }
    for (int i = 0; i < c->count; i++)
        if (std::memcmp(&c->plans[i].key, key, sizeof *key) == 0) {
            *out = &c->plans[i];
            return 0;
        }
    if (c->count == c->cap) {
        int cap = c->cap ? 2 * c->cap : 32;
        void *grown = std::realloc(c->plans, size_t(cap) * sizeof *c->plans);
        if (!grown)
            return sdt_engine_fail(e, "out of memory for the GEMM plan cache");
        c->plans = static_cast<gemm_plan *>(grown);
        c->cap = cap;
    }
    gemm_plan *p = &c->plans[c->count];
    std::memset(p, 0, sizeof *p);
    p->key = *key;
    if (plan_build(e, s, p) != 0) {
        plan_destroy(p);
        return -1;
    }
    c->count++;
    *out = p;
    return 0;
}

// ---- one GEMM ------------------------------------------------------------------------------------------

// Column-major D [m, n] (ld ldd) = op(A) [m, k] @ op(B) [k, n] (+ bias [m] along the rows) + beta * D.
// A and B share ab_type; bias, when given, has D's type. beta is 0 or 1. k = 0 is an empty sum.
static int lt_gemm(sdt_engine *e, cuda_state *s, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                   const void *A, int64_t lda, const void *B, int64_t ldb, sdt_dtype ab_type, float beta,
                   void *D, int64_t ldd, sdt_dtype d_type, const void *bias)
{
    if (m == 0 || n == 0)
        return 0;
    if (k == 0)
        return sdt_engine_fail(e, "internal: empty GEMM reached cuBLASLt"); // callers handle k = 0 first
    gemm_key key;
    std::memset(&key, 0, sizeof key);
    key.m = m;
    key.n = n;
    key.k = k;
    key.lda = lda;
    key.ldb = ldb;
    key.ldd = ldd;
    key.trans_a = trans_a;
    key.trans_b = trans_b;
    key.ab_type = int32_t(ab_type);
    key.d_type = int32_t(d_type);
    key.bias = bias != nullptr;
    key.align_a = ptr_alignment(A);
    key.align_b = ptr_alignment(B);
    key.align_d = ptr_alignment(D);
    key.align_bias = bias ? ptr_alignment(bias) : 0;
    gemm_plan *p = nullptr;
    if (plan_get(e, s, &key, &p) != 0)
        return -1;
    if (bias)
        CUBLAS_TRY(e, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                     sizeof bias));
    const float alpha = 1.0f;
    CUBLAS_TRY(e, cublasLtMatmul(s->lt, p->desc, &alpha, A, p->a, B, p->b, &beta, D, p->d, D, p->d, &p->algo,
                                 s->workspace, s->workspace ? s->workspace_bytes : 0, s->stream));
    return 0;
}

// ---- staging -------------------------------------------------------------------------------------------

int gemmconv_staged(sdt_engine *e, gemmconv_scratch *sc, const sdt_tensor *t, sdt_dtype want,
                    const void **out)
{
    if (t->dtype == want) {
        *out = t->data;
        return 0;
    }
    const int64_t n = sdt_tensor_numel(t);
    void *p = nullptr;
    if (gemmconv_scratch_alloc(e, sc, size_t(n) * gemmconv_dtype_size(want), &p) != 0 ||
        gemmconv_convert(e, p, want, t->data, t->dtype, n) != 0)
        return -1;
    *out = p;
    return 0;
}

// cuBLASLt pairs A/B of type ab with D of the same type, or with f32 D when A/B are f16 or bf16.
static int d_type_pairs(sdt_dtype ab, sdt_dtype d) { return d == ab || d == SDT_F32; }

// One gradient GEMM that adds into grad: straight into it with beta = 1 when its dtype pairs with the
// operands, else into f32 scratch (beta = 0) that is then added into grad. Arguments as lt_gemm's.
static int gemm_accumulate(sdt_engine *e, cuda_state *s, gemmconv_scratch *sc, sdt_tensor *grad, int trans_a,
                           int trans_b, int64_t m, int64_t n, int64_t k, const void *A, int64_t lda,
                           const void *B, int64_t ldb, sdt_dtype ab_type)
{
    if (m == 0 || n == 0 || k == 0)
        return 0; // an empty sum adds nothing
    if (d_type_pairs(ab_type, grad->dtype))
        return lt_gemm(e, s, trans_a, trans_b, m, n, k, A, lda, B, ldb, ab_type, 1.0f, grad->data, m,
                       grad->dtype, nullptr);
    void *tmp = nullptr; // [n, m] row-major = the column-major m x n result
    if (gemmconv_scratch_alloc(e, sc, size_t(m * n) * sizeof(float), &tmp) != 0 ||
        lt_gemm(e, s, trans_a, trans_b, m, n, k, A, lda, B, ldb, ab_type, 0.0f, tmp, m, SDT_F32, nullptr) !=
            0)
        return -1;
    return gemmconv_add(e, grad->data, grad->dtype, tmp, SDT_F32, m * n);
}

// ---- linear forward ------------------------------------------------------------------------------------

// out [N, OC] = bias [OC] in every row (or zeros without a bias): the whole result when C = 0.
template <typename TO, typename TB>
__global__ void bias_rows_kernel(TO *out /* [N, OC] */, const TB *bias /* [OC] or NULL */, int64_t N,
                                 int64_t OC)
{
    const int64_t total = N * OC;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
         i += int64_t(gridDim.x) * blockDim.x)
        out[i] = from_f32<TO>(bias ? to_f32(bias[i % OC]) : 0.0f);
}

static int linear_forward_staged(sdt_engine *e, cuda_state *s, gemmconv_scratch *sc, sdt_tensor *out,
                                 const sdt_tensor *inp, const sdt_tensor *weight, const sdt_tensor *bias)
{
    int64_t C = 0;
    const int64_t N = cuda_rows(inp, &C), OC = weight->shape[0];
    if (N == 0 || OC == 0)
        return 0;
    if (C == 0) {
        const int threads = 256;
        const unsigned blocks = cuda_blocks(s, N * OC, threads);
        const sdt_dtype bias_type = bias ? bias->dtype : out->dtype;
        CUDA_DISPATCH(out->dtype, TO, CUDA_DISPATCH(bias_type, TB, {
                          bias_rows_kernel<TO, TB><<<blocks, threads, 0, s->stream>>>(
                              static_cast<TO *>(out->data),
                              bias ? static_cast<const TB *>(bias->data) : nullptr, N, OC);
                      }));
        CUDA_TRY_LAUNCH(e, "linear (no input features)");
        return 0;
    }
    // A/B: the shared dtype of input and weight, else both f32.
    const sdt_dtype ab = inp->dtype == weight->dtype ? inp->dtype : SDT_F32;
    // D: the output's own dtype when it pairs with A/B and matches the bias; else f32 scratch.
    sdt_dtype dt = d_type_pairs(ab, out->dtype) ? out->dtype : SDT_F32;
    if (bias && bias->dtype != dt)
        dt = SDT_F32;
    const void *x = nullptr, *w = nullptr, *b = nullptr;
    if (gemmconv_staged(e, sc, inp, ab, &x) != 0 || gemmconv_staged(e, sc, weight, ab, &w) != 0 ||
        (bias && gemmconv_staged(e, sc, bias, dt, &b) != 0))
        return -1;
    void *d = out->data;
    if (dt != out->dtype && gemmconv_scratch_alloc(e, sc, size_t(N * OC) * sizeof(float), &d) != 0)
        return -1;
    // out^T [OC, N] = W [OC, C] @ inp^T [C, N] (see the mapping at the top)
    if (lt_gemm(e, s, 1, 0, OC, N, C, w, C, x, C, ab, 0.0f, d, OC, dt, b) != 0)
        return -1;
    if (d != out->data)
        return gemmconv_convert(e, out->data, out->dtype, d, dt, N * OC);
    return 0;
}

int cuda_linear_forward(sdt_engine *e, sdt_tensor *out, const sdt_tensor *inp, const sdt_tensor *weight,
                        const sdt_tensor *bias)
{
    cuda_state *s = cuda_of(e);
    gemmconv_scratch sc = {};
    sdt_tensor w; // weight, or its dequantised copy in the input's dtype
    int rc = gemmconv_dequantized_weight(e, &sc, weight, inp->dtype, &w);
    if (rc == 0)
        rc = linear_forward_staged(e, s, &sc, out, inp, &w, bias);
    gemmconv_scratch_release(s, &sc);
    return rc;
}

// ---- linear backward -----------------------------------------------------------------------------------

static int linear_backward_staged(sdt_engine *e, cuda_state *s, gemmconv_scratch *sc, sdt_tensor *dinp,
                                  sdt_tensor *dweight, sdt_tensor *dbias, const sdt_tensor *dout,
                                  const sdt_tensor *inp, const sdt_tensor *weight)
{
    int64_t C = 0;
    const int64_t N = cuda_rows(inp, &C), OC = weight->shape[0];
    if (dinp) {
        // dinp^T [C, N] += W^T [C, OC] @ dout^T [OC, N]
        const sdt_dtype ab = dout->dtype == weight->dtype ? dout->dtype : SDT_F32;
        const void *dy = nullptr, *w = nullptr;
        if (gemmconv_staged(e, sc, dout, ab, &dy) != 0 || gemmconv_staged(e, sc, weight, ab, &w) != 0 ||
            gemm_accumulate(e, s, sc, dinp, 0, 0, C, N, OC, w, C, dy, OC, ab) != 0)
            return -1;
    }
    if (dweight) {
        // dweight^T [C, OC] += inp^T [C, N] @ dout [N, OC]
        const sdt_dtype ab = dout->dtype == inp->dtype ? dout->dtype : SDT_F32;
        const void *dy = nullptr, *x = nullptr;
        if (gemmconv_staged(e, sc, dout, ab, &dy) != 0 || gemmconv_staged(e, sc, inp, ab, &x) != 0 ||
            gemm_accumulate(e, s, sc, dweight, 0, 1, C, OC, N, x, C, dy, OC, ab) != 0)
            return -1;
    }
    if (dbias && gemmconv_add_column_sums(e, sc, dbias, dout->data, dout->dtype, N, OC) != 0)
        return -1;
    return 0;
}

int cuda_linear_backward(sdt_engine *e, sdt_tensor *dinp, sdt_tensor *dweight, sdt_tensor *dbias,
                         const sdt_tensor *dout, const sdt_tensor *inp, const sdt_tensor *weight)
{
    cuda_state *s = cuda_of(e);
    gemmconv_scratch sc = {};
    // weight, or its dequantised copy in dout's dtype (an F8 weight has no dweight: backend.c refuses it)
    sdt_tensor w;
    int rc = dinp ? gemmconv_dequantized_weight(e, &sc, weight, dout->dtype, &w) : (w = *weight, 0);
    if (rc == 0)
        rc = linear_backward_staged(e, s, &sc, dinp, dweight, dbias, dout, inp, &w);
    gemmconv_scratch_release(s, &sc);
    return rc;
}
