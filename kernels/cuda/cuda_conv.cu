// 2D convolutions through cuDNN 9's legacy convolution API (cudnn_cnn.h).
//
// Layouts: activations are NHWC and weights [OC, KH, KW, C], which is cuDNN's NHWC filter layout (KRSC),
// so every tensor goes to cuDNN as it is stored; descriptors take dims in NCHW order with
// CUDNN_TENSOR_NHWC. The CPU backend computes a cross-correlation (no kernel flip): CUDNN_CROSS_CORRELATION.
//
// Asymmetric padding: the legacy API pads top = bottom and left = right. When the layer's pads are
// symmetric cuDNN pads; otherwise (SD's downsampling conv can pad (0, 1, 0, 1)) the input is copied into a
// zero-bordered scratch [B, H + top + bottom, W + left + right, C] and cuDNN convolves it unpadded. That
// gives exactly the CPU's output size (H + top + bottom - KH) / stride + 1 and alignment, which no
// symmetric padding plus cropping gives in general. Backward data then computes the gradient of the padded
// input in scratch and adds its interior into dinp; backward filter reads the padded copy.
//
// Precision: compute type f32. f32 tensors use CUDNN_FMA_MATH, not CUDNN_DEFAULT_MATH: on Ampere and later
// the default math type permits TF32 tensor cores for f32 data, whose 10-bit mantissa would not match the
// CPU reference; FMA math keeps f32 convolutions in full fp32. f16/bf16 use CUDNN_TENSOR_OP_MATH (or
// whatever math type the chosen algorithm reports) with fp32 accumulation.
//
// Mixed dtypes: cuDNN wants x, w and y of one dtype. When a layer's tensors (the bias aside) share a dtype
// that dtype is used; otherwise all of them are staged as f32 in scratch (see cuda_gemm_conv.h). The bias
// is added by our own kernel in any dtype combination; with a staged f32 output it is added before the one
// rounding to the output's dtype.
//
// Gradients add: backward data and filter run with beta = 1 into the gradient when it can be written
// directly, else into scratch that is then added. dbias is the deterministic column sum of dout over
// B * OH * OW rows (cuda_gemm.cu).
//
// F8_E4M3 weights (frozen, with a per-tensor scale) are dequantised into scratch of the activations'
// dtype by the entry points below before anything else (cuda_gemm.cu says why and where a native FP8 path
// would go), so the rest of this file only ever sees compute dtypes.
//
// Pointwise convolutions (1x1, stride 1, no padding) are linear layers over the pixels and go to
// cuBLASLt (cuda_gemm.cu) instead, as on the CPU.
//
// Plans: descriptors and, per direction, the algorithm and the math type it runs with, kept per shape
// and dtype in cuda_state::conv_plans. Algorithms come from the cudnnGet*_v7 heuristics (no timing run,
// which would need sacrificial output buffers): the first one that succeeds, fits CUDA_WORKSPACE_BYTES
// (the state's workspace) and is deterministic, else the first that fits (not with the `deterministic`
// engine option: then only deterministic algorithms, and a shape without one is an error). For f32 any
// algorithm reported with a tensor-op math type is skipped. When cuDNN offers nothing for an f16/bf16 shape,
// the call falls back to staging everything as f32 (and remembers that for the shape).
#include "cuda_gemm_conv.h"

#include <climits>
#include <cstdlib>
#include <cstring>

// ---- kernels -------------------------------------------------------------------------------------------

// dst [B, Hp, Wp, C] = src [B, H, W, C] placed at (pad_top, pad_left), zeros around it, converted to D.
template <typename S, typename D>
__global__ void pad_kernel(D *dst, const S *src, int64_t B, int64_t H, int64_t W, int64_t C, int64_t Hp,
                           int64_t Wp, int64_t pad_top, int64_t pad_left)
{
    const int64_t total = B * Hp * Wp * C;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
         i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t c = i % C, p = i / C;
        const int64_t wp = p % Wp, q = p / Wp;
        const int64_t hp = q % Hp, b = q / Hp;
        const int64_t h = hp - pad_top, w = wp - pad_left;
        float v = 0.0f;
        if (h >= 0 && h < H && w >= 0 && w < W)
            v = to_f32(src[((b * H + h) * W + w) * C + c]);
        dst[i] = from_f32<D>(v);
    }
}

// dst [B, H, W, C] += the interior of src [B, Hp, Wp, C] at (pad_top, pad_left), in fp32, rounded once.
template <typename S, typename D>
__global__ void crop_add_kernel(D *dst, const S *src, int64_t B, int64_t H, int64_t W, int64_t C, int64_t Hp,
                                int64_t Wp, int64_t pad_top, int64_t pad_left)
{
    const int64_t total = B * H * W * C;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
         i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t c = i % C, p = i / C;
        const int64_t w = p % W, q = p / W;
        const int64_t h = q % H, b = q / H;
        const float v = to_f32(src[((b * Hp + h + pad_top) * Wp + w + pad_left) * C + c]);
        dst[i] = from_f32<D>(to_f32(dst[i]) + v);
    }
}

// out [rows, OC] += bias [OC] in every row.
template <typename TO, typename TB>
__global__ void bias_add_kernel(TO *out, const TB *bias, int64_t total, int64_t OC)
{
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
         i += int64_t(gridDim.x) * blockDim.x)
        out[i] = from_f32<TO>(to_f32(out[i]) + to_f32(bias[i % OC]));
}

// out [rows, OC] = bias [OC] in every row, or zeros without a bias (a conv over zero input channels).
template <typename TO, typename TB>
__global__ void bias_fill_kernel(TO *out, const TB *bias, int64_t total, int64_t OC)
{
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
         i += int64_t(gridDim.x) * blockDim.x)
        out[i] = from_f32<TO>(bias ? to_f32(bias[i % OC]) : 0.0f);
}

// ---- geometry ------------------------------------------------------------------------------------------

struct conv_geom {
    int64_t B, H, W, C, OC, KH, KW, OH, OW;
    int64_t stride, pad_top, pad_left, pad_bottom, pad_right;
    int explicit_pad;       // asymmetric pads: cuDNN sees the padded copy [B, Hp, Wp, C] with no padding
    int64_t Hp, Wp;         // the input dims cuDNN sees
    int64_t dnn_ph, dnn_pw; // cuDNN's symmetric pads
};

static conv_geom conv_geometry(const sdt_tensor *inp, const sdt_tensor *weight, const sdt_conv2d_params *p)
{
    conv_geom g;
    std::memset(&g, 0, sizeof g);
    g.B = inp->shape[0];
    g.H = inp->shape[1];
    g.W = inp->shape[2];
    g.C = inp->shape[3];
    g.OC = weight->shape[0];
    g.KH = weight->shape[1];
    g.KW = weight->shape[2];
    g.stride = p->stride;
    g.pad_top = p->pad_top;
    g.pad_left = p->pad_left;
    g.pad_bottom = p->pad_bottom;
    g.pad_right = p->pad_right;
    g.OH = (g.H + g.pad_top + g.pad_bottom - g.KH) / g.stride + 1;
    g.OW = (g.W + g.pad_left + g.pad_right - g.KW) / g.stride + 1;
    g.explicit_pad = g.pad_top != g.pad_bottom || g.pad_left != g.pad_right;
    g.Hp = g.explicit_pad ? g.H + g.pad_top + g.pad_bottom : g.H;
    g.Wp = g.explicit_pad ? g.W + g.pad_left + g.pad_right : g.W;
    g.dnn_ph = g.explicit_pad ? 0 : g.pad_top;
    g.dnn_pw = g.explicit_pad ? 0 : g.pad_left;
    return g;
}

static cudnnDataType_t dnn_type(sdt_dtype t)
{
    return t == SDT_F16 ? CUDNN_DATA_HALF : t == SDT_BF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
}

// ---- plans ---------------------------------------------------------------------------------------------

struct conv_key {
    int64_t B, Hp, Wp, C, OC, KH, KW, stride, ph, pw;
    int32_t dtype;
    int32_t pad_; // zeroed: keys are compared bytewise
};

struct conv_algo_choice {
    int ready;  // chosen (on the direction's first use)
    int failed; // no usable algorithm: later calls go straight to the f32 fallback
    int algo;   // cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t
    cudnnMathType_t math;
};

struct conv_plan {
    conv_key key;
    cudnnTensorDescriptor_t x, y; // x [B, C, Hp, Wp] and y [B, OC, OH, OW], both NHWC in memory
    cudnnFilterDescriptor_t w;    // [OC, C, KH, KW], NHWC in memory = our [OC, KH, KW, C]
    cudnnConvolutionDescriptor_t conv;
    conv_algo_choice fwd, bwd_data, bwd_filter;
};

// cuda_state::conv_plans points at this table. The state declares the member as the shared opaque type
// cuda_plan_cache, which cuda_gemm.cu defines for its own plans; this file keeps its table under a type of
// its own (so the two files never define one type twice) and converts the pointer at the two places below.
struct conv_plan_table {
    conv_plan *plans; // [count], capacity cap
    int count, cap;
};

static conv_plan_table *conv_table(cuda_state *s)
{
    return reinterpret_cast<conv_plan_table *>(s->conv_plans);
}

static void conv_plan_destroy(conv_plan *p)
{
    if (p->x)
        cudnnDestroyTensorDescriptor(p->x);
    if (p->y)
        cudnnDestroyTensorDescriptor(p->y);
    if (p->w)
        cudnnDestroyFilterDescriptor(p->w);
    if (p->conv)
        cudnnDestroyConvolutionDescriptor(p->conv);
    std::memset(p, 0, sizeof *p);
}

void cuda_conv_plans_free(cuda_state *s)
{
    conv_plan_table *t = conv_table(s);
    if (!t)
        return;
    for (int i = 0; i < t->count; i++)
        conv_plan_destroy(&t->plans[i]);
    std::free(t->plans);
    std::free(t);
    s->conv_plans = nullptr;
}

// The workspace the algorithms may use (none when the state has no workspace buffer).
static size_t ws_bytes(const cuda_state *s) { return s->workspace ? s->workspace_bytes : 0; }

static cudnnMathType_t base_math(sdt_dtype t) { return t == SDT_F32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH; }

static int conv_plan_build(sdt_engine *e, conv_plan *p, const conv_geom *g)
{
    const conv_key *k = &p->key;
    const cudnnDataType_t dt = dnn_type(sdt_dtype(k->dtype));
    CUDNN_TRY(e, cudnnCreateTensorDescriptor(&p->x));
    CUDNN_TRY(e, cudnnCreateTensorDescriptor(&p->y));
    CUDNN_TRY(e, cudnnCreateFilterDescriptor(&p->w));
    CUDNN_TRY(e, cudnnCreateConvolutionDescriptor(&p->conv));
    CUDNN_TRY(e, cudnnSetTensor4dDescriptor(p->x, CUDNN_TENSOR_NHWC, dt, int(k->B), int(k->C), int(k->Hp),
                                            int(k->Wp)));
    CUDNN_TRY(e, cudnnSetFilter4dDescriptor(p->w, dt, CUDNN_TENSOR_NHWC, int(k->OC), int(k->C), int(k->KH),
                                            int(k->KW)));
    CUDNN_TRY(e,
              cudnnSetConvolution2dDescriptor(p->conv, int(k->ph), int(k->pw), int(k->stride), int(k->stride),
                                              1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    CUDNN_TRY(e, cudnnSetConvolutionMathType(p->conv, base_math(sdt_dtype(k->dtype))));
    int n = 0, c = 0, h = 0, w = 0;
    CUDNN_TRY(e, cudnnGetConvolution2dForwardOutputDim(p->conv, p->x, p->w, &n, &c, &h, &w));
    if (n != g->B || c != g->OC || h != g->OH || w != g->OW)
        return sdt_engine_fail(
            e, "conv2d: cuDNN's output [%d, %d, %d, %d] is not the expected [%lld, %lld, %lld, %lld]", n, h,
            w, c, (long long)g->B, (long long)g->OH, (long long)g->OW, (long long)g->OC);
    CUDNN_TRY(e, cudnnSetTensor4dDescriptor(p->y, CUDNN_TENSOR_NHWC, dt, n, c, h, w));
    return 0;
}

// The legacy API takes int dims, and its kernels index tensors of fewer than 2^31 elements.
static int conv_fits_int(sdt_engine *e, const conv_geom *g)
{
    const int64_t big[] = {g->B * g->Hp * g->Wp * g->C, g->B * g->OH * g->OW * g->OC,
                           g->OC * g->KH * g->KW * g->C};
    for (int64_t v : big)
        if (v > INT_MAX)
            return sdt_engine_fail(e, "conv2d: a tensor of %lld elements exceeds cuDNN's 32-bit indexing",
                                   (long long)v);
    return 0;
}

static int conv_plan_get(sdt_engine *e, cuda_state *s, const conv_geom *g, sdt_dtype dtype, conv_plan **out)
{
    if (conv_fits_int(e, g) != 0)
        return -1;
    conv_key key;
    std::memset(&key, 0, sizeof key);
    key.B = g->B;
    key.Hp = g->Hp;
    key.Wp = g->Wp;
    key.C = g->C;
    key.OC = g->OC;
    key.KH = g->KH;
    key.KW = g->KW;
    key.stride = g->stride;
    key.ph = g->dnn_ph;
    key.pw = g->dnn_pw;
    key.dtype = int32_t(dtype);
    conv_plan_table *t = conv_table(s);
    if (!t) {
        t = static_cast<conv_plan_table *>(std::calloc(1, sizeof *t));
        if (!t)
            return sdt_engine_fail(e, "out of memory for the convolution plan cache");
        s->conv_plans = reinterpret_cast<cuda_plan_cache *>(t);
    }
    for (int i = 0; i < t->count; i++)
        if (std::memcmp(&t->plans[i].key, &key, sizeof key) == 0) {
            *out = &t->plans[i];
            return 0;
        }
    if (t->count == t->cap) {
        int cap = t->cap ? 2 * t->cap : 32;
        void *grown = std::realloc(t->plans, size_t(cap) * sizeof *t->plans);
        if (!grown)
            return sdt_engine_fail(e, "out of memory for the convolution plan cache");
        t->plans = static_cast<conv_plan *>(grown);
        t->cap = cap;
    }
    conv_plan *p = &t->plans[t->count];
    std::memset(p, 0, sizeof *p);
    p->key = key;
    if (conv_plan_build(e, p, g) != 0) {
        conv_plan_destroy(p);
        return -1;
    }
    t->count++;
    *out = p;
    return 0;
}

// Whether a heuristic's candidate is usable: it ran the query successfully, f32 stays off tensor cores,
// and (first pass) it is deterministic.
static int candidate_ok(cudnnStatus_t status, cudnnMathType_t math, cudnnDeterminism_t det, sdt_dtype dtype,
                        int want_deterministic)
{
    if (status != CUDNN_STATUS_SUCCESS)
        return 0;
    if (dtype == SDT_F32 && (math == CUDNN_TENSOR_OP_MATH || math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION))
        return 0;
    return !want_deterministic || det == CUDNN_DETERMINISTIC;
}

// The math type to run a candidate with: f32 always FMA math (see the top), halves as reported.
static cudnnMathType_t run_math(cudnnMathType_t reported, sdt_dtype dtype)
{
    return dtype == SDT_F32 ? CUDNN_FMA_MATH : reported;
}

// What differs between the three directions when an algorithm is chosen: cuDNN's perf record, its
// heuristic, its workspace query, where the choice is kept, and the words of the error.
struct conv_fwd_dir {
    using perf_t = cudnnConvolutionFwdAlgoPerf_t;
    static constexpr int max_algos = CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
    static constexpr const char *missing = "conv2d: cuDNN has no forward algorithm";
    static cudnnStatus_t heuristic(cudnnHandle_t h, const conv_plan *p, int *n, perf_t *perf)
    {
        return cudnnGetConvolutionForwardAlgorithm_v7(h, p->x, p->w, p->conv, p->y, max_algos, n, perf);
    }
    static cudnnStatus_t workspace(cudnnHandle_t h, const conv_plan *p, const perf_t &perf, size_t *bytes)
    {
        return cudnnGetConvolutionForwardWorkspaceSize(h, p->x, p->w, p->conv, p->y, perf.algo, bytes);
    }
    static conv_algo_choice &choice(conv_plan *p) { return p->fwd; }
};

struct conv_bwd_data_dir {
    using perf_t = cudnnConvolutionBwdDataAlgoPerf_t;
    static constexpr int max_algos = CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
    static constexpr const char *missing = "conv2d backward: cuDNN has no data-gradient algorithm";
    static cudnnStatus_t heuristic(cudnnHandle_t h, const conv_plan *p, int *n, perf_t *perf)
    {
        return cudnnGetConvolutionBackwardDataAlgorithm_v7(h, p->w, p->y, p->conv, p->x, max_algos, n, perf);
    }
    static cudnnStatus_t workspace(cudnnHandle_t h, const conv_plan *p, const perf_t &perf, size_t *bytes)
    {
        return cudnnGetConvolutionBackwardDataWorkspaceSize(h, p->w, p->y, p->conv, p->x, perf.algo, bytes);
    }
    static conv_algo_choice &choice(conv_plan *p) { return p->bwd_data; }
};

struct conv_bwd_filter_dir {
    using perf_t = cudnnConvolutionBwdFilterAlgoPerf_t;
    static constexpr int max_algos = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
    static constexpr const char *missing = "conv2d backward: cuDNN has no weight-gradient algorithm";
    static cudnnStatus_t heuristic(cudnnHandle_t h, const conv_plan *p, int *n, perf_t *perf)
    {
        return cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, p->x, p->y, p->conv, p->w, max_algos, n,
                                                             perf);
    }
    static cudnnStatus_t workspace(cudnnHandle_t h, const conv_plan *p, const perf_t &perf, size_t *bytes)
    {
        return cudnnGetConvolutionBackwardFilterWorkspaceSize(h, p->x, p->y, p->conv, p->w, perf.algo, bytes);
    }
    static conv_algo_choice &choice(conv_plan *p) { return p->bwd_filter; }
};

// The heuristic's candidates in its order: first the deterministic ones, then any; the first whose
// workspace fits is kept in the plan. An engine made with `deterministic` (sdt_engine_options) stops after
// the first pass: a non-deterministic algorithm (atomics in the weight or data gradient) is refused, with
// the convolution's shape in the message, rather than used silently.
template <typename Dir> static int choose_algo(sdt_engine *e, cuda_state *s, conv_plan *p)
{
    const sdt_dtype dtype = sdt_dtype(p->key.dtype);
    typename Dir::perf_t perf[Dir::max_algos];
    int n = 0;
    CUDNN_TRY(e, cudnnSetConvolutionMathType(p->conv, base_math(dtype)));
    CUDNN_TRY(e, Dir::heuristic(s->dnn, p, &n, perf));
    const int passes = e->options.deterministic ? 1 : 2;
    for (int pass = 0; pass < passes; pass++)
        for (int i = 0; i < n; i++) {
            if (!candidate_ok(perf[i].status, perf[i].mathType, perf[i].determinism, dtype, pass == 0))
                continue;
            const cudnnMathType_t math = run_math(perf[i].mathType, dtype);
            size_t bytes = 0;
            if (cudnnSetConvolutionMathType(p->conv, math) != CUDNN_STATUS_SUCCESS ||
                Dir::workspace(s->dnn, p, perf[i], &bytes) != CUDNN_STATUS_SUCCESS || bytes > ws_bytes(s))
                continue;
            conv_algo_choice &c = Dir::choice(p);
            c.algo = int(perf[i].algo);
            c.math = math;
            c.ready = 1;
            return 0;
        }
    const conv_key &k = p->key;
    if (e->options.deterministic)
        return sdt_engine_fail(
            e,
            "%s that is deterministic (the deterministic setting is on) within %zu bytes of "
            "workspace for the convolution of input [%lld, %lld, %lld, %lld] %s (padded as "
            "cuDNN sees it) by weight [%lld, %lld, %lld, %lld], stride %lld, padding %lld x "
            "%lld; turn deterministic off to allow it",
            Dir::missing, ws_bytes(s), (long long)k.B, (long long)k.Hp, (long long)k.Wp, (long long)k.C,
            sdt_dtype_name(dtype), (long long)k.OC, (long long)k.KH, (long long)k.KW, (long long)k.C,
            (long long)k.stride, (long long)k.ph, (long long)k.pw);
    return sdt_engine_fail(e, "%s within %zu bytes of workspace for this shape", Dir::missing, ws_bytes(s));
}

enum { CONV_FWD = 1, CONV_BWD_DATA = 2, CONV_BWD_FILTER = 4 };

static int choose_once(sdt_engine *e, cuda_state *s, conv_plan *p, conv_algo_choice *c,
                       int (*choose)(sdt_engine *, cuda_state *, conv_plan *))
{
    if (c->ready)
        return 0;
    if (c->failed)
        return sdt_engine_fail(e, "conv2d: cuDNN has no algorithm for this shape in %s",
                               sdt_dtype_name(sdt_dtype(p->key.dtype)));
    if (choose(e, s, p) != 0) {
        c->failed = 1;
        return -1;
    }
    return 0;
}

// The plan for the geometry with algorithms for the directions in `dirs`, in dtype *ct. When cuDNN has no
// algorithm for f16/bf16 (its NHWC half kernels want channel counts it may not support, e.g. an RGB
// input's C = 3), *ct falls back to f32 and the caller stages every tensor as f32.
static int conv_prepare(sdt_engine *e, cuda_state *s, const conv_geom *g, int dirs, sdt_dtype *ct,
                        conv_plan **out)
{
    for (;;) {
        conv_plan *p = nullptr;
        int rc = conv_plan_get(e, s, g, *ct, &p);
        if (rc == 0 && (dirs & CONV_FWD))
            rc = choose_once(e, s, p, &p->fwd, choose_algo<conv_fwd_dir>);
        if (rc == 0 && (dirs & CONV_BWD_DATA))
            rc = choose_once(e, s, p, &p->bwd_data, choose_algo<conv_bwd_data_dir>);
        if (rc == 0 && (dirs & CONV_BWD_FILTER))
            rc = choose_once(e, s, p, &p->bwd_filter, choose_algo<conv_bwd_filter_dir>);
        if (rc == 0) {
            *out = p;
            return 0;
        }
        if (*ct == SDT_F32)
            return -1;
        *ct = SDT_F32;
    }
}

// ---- staging -------------------------------------------------------------------------------------------

static int launch_pad(sdt_engine *e, void *dst, sdt_dtype dst_type, const sdt_tensor *src, const conv_geom *g)
{
    cuda_state *s = cuda_of(e);
    const int64_t total = g->B * g->Hp * g->Wp * g->C;
    if (total == 0)
        return 0;
    const int threads = 256;
    const unsigned blocks = cuda_blocks(s, total, threads);
    CUDA_DISPATCH(src->dtype, S, CUDA_DISPATCH(dst_type, D, {
                      pad_kernel<S, D><<<blocks, threads, 0, s->stream>>>(
                          static_cast<D *>(dst), static_cast<const S *>(src->data), g->B, g->H, g->W, g->C,
                          g->Hp, g->Wp, g->pad_top, g->pad_left);
                  }));
    CUDA_TRY_LAUNCH(e, "conv2d (padded input)");
    return 0;
}

// The input as cuDNN sees it: t itself, or a converted and/or zero-bordered copy in scratch.
static int staged_conv_input(sdt_engine *e, gemmconv_scratch *sc, const sdt_tensor *inp, sdt_dtype want,
                             const conv_geom *g, const void **out)
{
    if (inp->dtype == want && !g->explicit_pad) {
        *out = inp->data;
        return 0;
    }
    void *p = nullptr;
    if (gemmconv_scratch_alloc(e, sc, size_t(g->B * g->Hp * g->Wp * g->C) * gemmconv_dtype_size(want), &p) !=
            0 ||
        launch_pad(e, p, want, inp, g) != 0)
        return -1;
    *out = p;
    return 0;
}

static int launch_bias(sdt_engine *e, void *out, sdt_dtype out_type, const sdt_tensor *bias, int64_t total,
                       int64_t OC, int fill)
{
    cuda_state *s = cuda_of(e);
    if (total == 0)
        return 0;
    const int threads = 256;
    const unsigned blocks = cuda_blocks(s, total, threads);
    const sdt_dtype bias_type = bias ? bias->dtype : out_type;
    const void *b = bias ? bias->data : nullptr;
    CUDA_DISPATCH(out_type, TO, CUDA_DISPATCH(bias_type, TB, {
                      if (fill)
                          bias_fill_kernel<TO, TB><<<blocks, threads, 0, s->stream>>>(
                              static_cast<TO *>(out), static_cast<const TB *>(b), total, OC);
                      else
                          bias_add_kernel<TO, TB><<<blocks, threads, 0, s->stream>>>(
                              static_cast<TO *>(out), static_cast<const TB *>(b), total, OC);
                  }));
    CUDA_TRY_LAUNCH(e, "conv2d (bias)");
    return 0;
}

// ---- pointwise convolutions ---------------------------------------------------------------------------
// A 1x1, stride-1, unpadded conv over channels-last pixels is a linear layer over the B*H*W pixels with the
// weight [OC, 1, 1, C] read as [OC, C] (the CPU backend does the same); cuBLASLt runs it without cuDNN.

static int conv_is_pointwise(const conv_geom *g)
{
    return g->KH == 1 && g->KW == 1 && g->stride == 1 && g->pad_top == 0 && g->pad_left == 0 &&
           g->pad_bottom == 0 && g->pad_right == 0;
}

// t seen as a 2D [rows, cols] tensor (same data, dtype and device).
static sdt_tensor as_matrix(const sdt_tensor *t, int64_t rows, int64_t cols)
{
    sdt_tensor v = *t;
    std::memset(v.shape, 0, sizeof v.shape);
    v.ndim = 2;
    v.shape[0] = rows;
    v.shape[1] = cols;
    return v;
}

// ---- forward -------------------------------------------------------------------------------------------

static int conv_forward_staged(sdt_engine *e, cuda_state *s, gemmconv_scratch *sc, sdt_tensor *out,
                               const sdt_tensor *inp, const sdt_tensor *weight, const sdt_tensor *bias,
                               const sdt_conv2d_params *params)
{
    const conv_geom g = conv_geometry(inp, weight, params);
    const int64_t out_numel = g.B * g.OH * g.OW * g.OC;
    if (out_numel == 0)
        return 0;
    if (conv_is_pointwise(&g)) {
        const int64_t pixels = g.B * g.H * g.W;
        sdt_tensor o2 = as_matrix(out, pixels, g.OC), x2 = as_matrix(inp, pixels, g.C),
                   w2 = as_matrix(weight, g.OC, g.C);
        return cuda_linear_forward(e, &o2, &x2, &w2, bias);
    }
    if (g.C == 0) // an empty sum: the output is the bias (or zero)
        return launch_bias(e, out->data, out->dtype, bias, out_numel, g.OC, 1);
    sdt_dtype ct = inp->dtype == weight->dtype && inp->dtype == out->dtype ? inp->dtype : SDT_F32;
    conv_plan *p = nullptr;
    if (conv_prepare(e, s, &g, CONV_FWD, &ct, &p) != 0)
        return -1;
    const void *x = nullptr, *w = nullptr;
    if (staged_conv_input(e, sc, inp, ct, &g, &x) != 0 || gemmconv_staged(e, sc, weight, ct, &w) != 0)
        return -1;
    void *y = out->data;
    if (ct != out->dtype &&
        gemmconv_scratch_alloc(e, sc, size_t(out_numel) * gemmconv_dtype_size(ct), &y) != 0)
        return -1;
    const float alpha = 1.0f, beta = 0.0f;
    CUDNN_TRY(e, cudnnSetStream(s->dnn, s->stream));
    CUDNN_TRY(e, cudnnSetConvolutionMathType(p->conv, p->fwd.math));
    CUDNN_TRY(e, cudnnConvolutionForward(s->dnn, &alpha, p->x, x, p->w, w, p->conv,
                                         cudnnConvolutionFwdAlgo_t(p->fwd.algo), s->workspace, ws_bytes(s),
                                         &beta, p->y, y));
    if (bias && launch_bias(e, y, ct, bias, out_numel, g.OC, 0) != 0)
        return -1;
    if (y != out->data)
        return gemmconv_convert(e, out->data, out->dtype, y, ct, out_numel);
    return 0;
}

int cuda_conv2d_forward(sdt_engine *e, sdt_tensor *out, const sdt_tensor *inp, const sdt_tensor *weight,
                        const sdt_tensor *bias, const sdt_conv2d_params *p)
{
    cuda_state *s = cuda_of(e);
    gemmconv_scratch sc = {};
    sdt_tensor w; // weight, or its dequantised copy in the input's dtype (cuda_gemm.cu)
    int rc = gemmconv_dequantized_weight(e, &sc, weight, inp->dtype, &w);
    if (rc == 0)
        rc = conv_forward_staged(e, s, &sc, out, inp, &w, bias, p);
    gemmconv_scratch_release(s, &sc);
    return rc;
}

// ---- backward ------------------------------------------------------------------------------------------

static int launch_crop_add(sdt_engine *e, sdt_tensor *dinp, const void *src, sdt_dtype src_type,
                           const conv_geom *g)
{
    cuda_state *s = cuda_of(e);
    const int64_t total = g->B * g->H * g->W * g->C;
    if (total == 0)
        return 0;
    const int threads = 256;
    const unsigned blocks = cuda_blocks(s, total, threads);
    // Offsets into the padded gradient: the interior starts at (pad_top, pad_left) only when it was padded.
    const int64_t top = g->explicit_pad ? g->pad_top : 0, left = g->explicit_pad ? g->pad_left : 0;
    CUDA_DISPATCH(src_type, S, CUDA_DISPATCH(dinp->dtype, D, {
                      crop_add_kernel<S, D><<<blocks, threads, 0, s->stream>>>(
                          static_cast<D *>(dinp->data), static_cast<const S *>(src), g->B, g->H, g->W, g->C,
                          g->Hp, g->Wp, top, left);
                  }));
    CUDA_TRY_LAUNCH(e, "conv2d backward (input gradient)");
    return 0;
}

static int conv_backward_staged(sdt_engine *e, cuda_state *s, gemmconv_scratch *sc, sdt_tensor *dinp,
                                sdt_tensor *dweight, sdt_tensor *dbias, const sdt_tensor *dout,
                                const sdt_tensor *inp, const sdt_tensor *weight,
                                const sdt_conv2d_params *params)
{
    const conv_geom g = conv_geometry(inp, weight, params);
    const int64_t out_rows = g.B * g.OH * g.OW;
    if (conv_is_pointwise(&g)) {
        const int64_t pixels = g.B * g.H * g.W;
        sdt_tensor dy2 = as_matrix(dout, pixels, g.OC), x2 = as_matrix(inp, pixels, g.C),
                   w2 = as_matrix(weight, g.OC, g.C);
        sdt_tensor dx2 = dinp ? as_matrix(dinp, pixels, g.C) : sdt_tensor{};
        sdt_tensor dw2 = dweight ? as_matrix(dweight, g.OC, g.C) : sdt_tensor{};
        return cuda_linear_backward(e, dinp ? &dx2 : nullptr, dweight ? &dw2 : nullptr, dbias, &dy2, &x2,
                                    &w2);
    }
    if (dbias && gemmconv_add_column_sums(e, sc, dbias, dout->data, dout->dtype, out_rows, g.OC) != 0)
        return -1;
    if ((!dinp && !dweight) || out_rows == 0 || g.OC == 0 || g.C == 0)
        return 0; // nothing to add (an empty sum, or empty gradients)
    // One dtype for cuDNN: the tensors' shared dtype, else f32.
    sdt_dtype ct = dout->dtype;
    if (inp->dtype != ct || weight->dtype != ct || (dinp && dinp->dtype != ct) ||
        (dweight && dweight->dtype != ct))
        ct = SDT_F32;
    conv_plan *p = nullptr;
    const int dirs = (dinp ? CONV_BWD_DATA : 0) | (dweight ? CONV_BWD_FILTER : 0);
    if (conv_prepare(e, s, &g, dirs, &ct, &p) != 0)
        return -1;
    const void *dy = nullptr;
    if (gemmconv_staged(e, sc, dout, ct, &dy) != 0)
        return -1;
    CUDNN_TRY(e, cudnnSetStream(s->dnn, s->stream));
    const float alpha = 1.0f, zero = 0.0f, one = 1.0f;
    if (dinp) {
        const void *w = nullptr;
        if (gemmconv_staged(e, sc, weight, ct, &w) != 0)
            return -1;
        // Straight into dinp (adding) when cuDNN's dx is dinp itself; else the padded/f32 gradient in
        // scratch.
        const int direct = dinp->dtype == ct && !g.explicit_pad;
        void *dx = dinp->data;
        if (!direct && gemmconv_scratch_alloc(
                           e, sc, size_t(g.B * g.Hp * g.Wp * g.C) * gemmconv_dtype_size(ct), &dx) != 0)
            return -1;
        CUDNN_TRY(e, cudnnSetConvolutionMathType(p->conv, p->bwd_data.math));
        CUDNN_TRY(e,
                  cudnnConvolutionBackwardData(s->dnn, &alpha, p->w, w, p->y, dy, p->conv,
                                               cudnnConvolutionBwdDataAlgo_t(p->bwd_data.algo), s->workspace,
                                               ws_bytes(s), direct ? &one : &zero, p->x, dx));
        if (!direct && launch_crop_add(e, dinp, dx, ct, &g) != 0)
            return -1;
    }
    if (dweight) {
        const void *x = nullptr;
        if (staged_conv_input(e, sc, inp, ct, &g, &x) != 0)
            return -1;
        const int direct = dweight->dtype == ct;
        const int64_t wn = sdt_tensor_numel(dweight);
        void *dw = dweight->data;
        if (!direct && gemmconv_scratch_alloc(e, sc, size_t(wn) * gemmconv_dtype_size(ct), &dw) != 0)
            return -1;
        CUDNN_TRY(e, cudnnSetConvolutionMathType(p->conv, p->bwd_filter.math));
        CUDNN_TRY(e,
                  cudnnConvolutionBackwardFilter(s->dnn, &alpha, p->x, x, p->y, dy, p->conv,
                                                 cudnnConvolutionBwdFilterAlgo_t(p->bwd_filter.algo),
                                                 s->workspace, ws_bytes(s), direct ? &one : &zero, p->w, dw));
        if (!direct && gemmconv_add(e, dweight->data, dweight->dtype, dw, ct, wn) != 0)
            return -1;
    }
    return 0;
}

int cuda_conv2d_backward(sdt_engine *e, sdt_tensor *dinp, sdt_tensor *dweight, sdt_tensor *dbias,
                         const sdt_tensor *dout, const sdt_tensor *inp, const sdt_tensor *weight,
                         const sdt_conv2d_params *p)
{
    cuda_state *s = cuda_of(e);
    gemmconv_scratch sc = {};
    // weight, or its dequantised copy in dout's dtype (an F8 weight has no dweight: backend.c refuses it)
    sdt_tensor w;
    int rc = dinp ? gemmconv_dequantized_weight(e, &sc, weight, dout->dtype, &w) : (w = *weight, 0);
    if (rc == 0)
        rc = conv_backward_staged(e, s, &sc, dinp, dweight, dbias, dout, inp, &w, p);
    gemmconv_scratch_release(s, &sc);
    return rc;
}
