// Helpers shared by the GEMM (cuda_gemm.cu) and convolution (cuda_conv.cu) ops: stream-ordered scratch,
// dtype conversion of whole buffers, and the deterministic bias-gradient sum. Defined in cuda_gemm.cu.
//
// cuBLASLt and cuDNN want their operands in one of a few dtype combinations, while a layer's tensors may
// mix dtypes (trainable weights and their gradients stay f32 while the activations are f16 or bf16). The
// ops then stage the odd ones out in scratch: converted on the way in, converted or added on the way out.
// A frozen F8_E4M3 weight is dequantised into scratch of the activations' dtype first.
#ifndef SDTUNE_KERNELS_CUDA_GEMM_CONV_H
#define SDTUNE_KERNELS_CUDA_GEMM_CONV_H

#include "cuda_internal.h"

// Scratch buffers of one op call, released together at its end (on every path, failed or not): device
// memory from the backend's stream-ordered pool, so a call after the first costs no real allocation.
constexpr int GEMMCONV_MAX_SCRATCH = 8;

struct gemmconv_scratch {
    void *ptr[GEMMCONV_MAX_SCRATCH];
    int count;
};

// *out = bytes of scratch on the stream (bytes 0 still returns a valid pointer). 0, or -1 with the error.
int gemmconv_scratch_alloc(sdt_engine *e, gemmconv_scratch *sc, size_t bytes, void **out);
// Frees every buffer of sc (stream-ordered: later work on the stream still sees them until it is done).
void gemmconv_scratch_release(cuda_state *s, gemmconv_scratch *sc);

// dst [n] (dst_type) = src [n] (src_type), rounded to nearest even when narrowing.
int gemmconv_convert(sdt_engine *e, void *dst, sdt_dtype dst_type, const void *src, sdt_dtype src_type,
                     int64_t n);
// dst [n] (dst_type) += src [n] (src_type), added in fp32 and rounded once.
int gemmconv_add(sdt_engine *e, void *dst, sdt_dtype dst_type, const void *src, sdt_dtype src_type,
                 int64_t n);
// *out = the data of t as dtype `want`: t's own buffer when it already is, else a converted copy in sc.
int gemmconv_staged(sdt_engine *e, gemmconv_scratch *sc, const sdt_tensor *t, sdt_dtype want,
                    const void **out);
// The weight a GEMM or convolution computes with: *out = *weight unless it is F8_E4M3 (a frozen weight
// with a per-tensor scale), else a view of scratch in sc holding its dequantised values, code * scale in
// fp32 rounded once to `want` (the activations' dtype, so the op then runs its usual path for that dtype).
int gemmconv_dequantized_weight(sdt_engine *e, gemmconv_scratch *sc, const sdt_tensor *weight, sdt_dtype want,
                                sdt_tensor *out);
// dbias [cols] += the sums over rows of x [rows, cols] (x_type), in double, in a fixed order (deterministic).
int gemmconv_add_column_sums(sdt_engine *e, gemmconv_scratch *sc, sdt_tensor *dbias, const void *x,
                             sdt_dtype x_type, int64_t rows, int64_t cols);

static inline size_t gemmconv_dtype_size(sdt_dtype t) { return t == SDT_F32 ? 4 : 2; }

#endif
