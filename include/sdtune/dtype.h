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

/* Scalar conversions, round-to-nearest-even; NaN stays NaN (quiet, sign kept), +-Inf stays +-Inf,
 * values too large for the target become +-Inf, subnormals are produced and read exactly. */
uint16_t sdt_f32_to_f16(float value);
float sdt_f16_to_f32(uint16_t bits);
uint16_t sdt_f32_to_bf16(float value);
float sdt_bf16_to_f32(uint16_t bits);

/* Bulk conversions between any two compute dtypes (F32, F16, BF16; same type = copy). src and dst must not
 * overlap. Returns 0, or -1 when a dtype is not a compute dtype. */
int sdt_convert(void *dst, sdt_dtype dst_type, const void *src, sdt_dtype src_type, size_t count);

#ifdef __cplusplus
}
#endif
#endif
