/* Element types: the safetensors dtype names, their sizes, and conversion between f32, f16 and bf16. */
#ifndef SDTUNE_DTYPE_H
#define SDTUNE_DTYPE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Every dtype a safetensors file may declare. The engine computes with F32, F16 and BF16; the others are
 * read (and rejected by the models where they make no sense) so that any valid file opens. */
typedef enum sdt_dtype {
    SDT_F32 = 0,
    SDT_F16,
    SDT_BF16,
    SDT_F64,
    SDT_F8_E4M3,
    SDT_F8_E5M2,
    SDT_F8_E8M0,
    SDT_F8_E4M3FNUZ,
    SDT_F8_E5M2FNUZ,
    SDT_F6_E2M3,
    SDT_F6_E3M2,
    SDT_F4,
    SDT_C64,
    SDT_I64,
    SDT_I32,
    SDT_I16,
    SDT_I8,
    SDT_U64,
    SDT_U32,
    SDT_U16,
    SDT_U8,
    SDT_BOOL,
    SDT_DTYPE_COUNT
} sdt_dtype;

/* The safetensors spelling ("F32", "BF16", ...). */
const char *sdt_dtype_name(sdt_dtype dtype);
/* Parses a safetensors spelling (exact, case-sensitive as the format requires); -1 when unknown. */
int sdt_dtype_from_name(const char *name, sdt_dtype *out);
/* Bits per element: 4, 6, 8, 16, 32, 64. */
unsigned sdt_dtype_bits(sdt_dtype dtype);
/* True for F32, F16, BF16: the types tensors of the backends may have. */
int sdt_dtype_is_compute(sdt_dtype dtype);
/* True for the compute dtypes and F8_E4M3: the types the weight of a linear or conv2d op may have. An F8
 * weight is a frozen one (stored with a per-tensor scale, sdt_tensor.scale) and never has a gradient. */
int sdt_dtype_is_weight(sdt_dtype dtype);

/* Scalar conversions, round-to-nearest-even; NaN stays NaN (quiet, sign kept), +-Inf stays +-Inf,
 * values too large for the target become +-Inf, subnormals are produced and read exactly. */
uint16_t sdt_f32_to_f16(float value);
float sdt_f16_to_f32(uint16_t bits);
uint16_t sdt_f32_to_bf16(float value);
float sdt_bf16_to_f32(uint16_t bits);

/* float8 e4m3fn (F8_E4M3): 1 sign, 4 exponent (bias 7), 3 mantissa bits; no infinities, NaN = S.1111.111,
 * largest finite 448, smallest normal 2^-6, subnormals m * 2^-9. f32 -> e4m3 rounds to nearest even and
 * SATURATES: finite values beyond 448 and +-Inf become +-448 (torch's .to(float8_e4m3fn) gives NaN
 * there instead; CUDA's __NV_SATFINITE conversion saturates like this). Weights are quantised with a
 * per-tensor scale (sdt_f8e4m3_scale_for) that keeps every finite value within 448, so saturation only
 * ever absorbs the last rounding of amax / scale. NaN stays NaN (sign kept); e4m3 -> f32 is exact. */
uint8_t sdt_f32_to_f8e4m3(float value);
float sdt_f8e4m3_to_f32(uint8_t bits);

/* The per-tensor scale of n values stored as F8_E4M3: amax / 448 over the finite values, so the largest
 * lands on e4m3's largest finite value and small weights keep their 3 mantissa bits instead of flushing
 * to zero; 1 when there is no finite non-zero value. */
float sdt_f8e4m3_scale_for(const float *values, size_t count);
/* dst[i] = e4m3(src[i] / scale) (scale > 0, finite). */
void sdt_f32_to_f8e4m3_scaled(uint8_t *dst, const float *src, size_t count, float scale);
/* dst[i] = f32(src[i]) * scale, one fp32 rounding: the dequantised weight every backend computes with. */
void sdt_f8e4m3_to_f32_scaled(float *dst, const uint8_t *src, size_t count, float scale);

/* Bulk conversions between any two compute dtypes (F32, F16, BF16; same type = copy). src and dst must not
 * overlap. Returns 0, or -1 when a dtype is not a compute dtype. */
int sdt_convert(void *dst, sdt_dtype dst_type, const void *src, sdt_dtype src_type, size_t count);

#ifdef __cplusplus
}
#endif
#endif
