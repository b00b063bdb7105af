/* Element types: the safetensors names and sizes, and exact conversions between f32, f16 and bf16.
 *
 * The conversions work on the bit patterns (no FPU rounding mode, no compiler half-precision support
 * needed), so they give the same answer on every machine and compiler. */
#include "sdtune/dtype.h"

#include <float.h>
#include <string.h>

/* One row per enum value, in enum order. */
typedef struct dtype_info {
    const char *name;
    unsigned bits;
} dtype_info;

static const dtype_info dtype_table[SDT_DTYPE_COUNT] = {
    [SDT_F32] = {"F32", 32},
    [SDT_F16] = {"F16", 16},
    [SDT_BF16] = {"BF16", 16},
    [SDT_F64] = {"F64", 64},
    [SDT_F8_E4M3] = {"F8_E4M3", 8},
    [SDT_F8_E5M2] = {"F8_E5M2", 8},
    [SDT_F8_E8M0] = {"F8_E8M0", 8},
    [SDT_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", 8},
    [SDT_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", 8},
    [SDT_F6_E2M3] = {"F6_E2M3", 6},
    [SDT_F6_E3M2] = {"F6_E3M2", 6},
    [SDT_F4] = {"F4", 4},
    [SDT_C64] = {"C64", 64},
    [SDT_I64] = {"I64", 64},
    [SDT_I32] = {"I32", 32},
    [SDT_I16] = {"I16", 16},
    [SDT_I8] = {"I8", 8},
    [SDT_U64] = {"U64", 64},
    [SDT_U32] = {"U32", 32},
    [SDT_U16] = {"U16", 16},
    [SDT_U8] = {"U8", 8},
    [SDT_BOOL] = {"BOOL", 8},
};

/* True when dtype is one of the enum's values (callers may pass anything cast to the enum). */
static int dtype_valid(sdt_dtype dtype) { return (unsigned)dtype < (unsigned)SDT_DTYPE_COUNT; }

/* The table's name; "?" for a value outside the enum so that a message never prints NULL. */
const char *sdt_dtype_name(sdt_dtype dtype) { return dtype_valid(dtype) ? dtype_table[dtype].name : "?"; }

/* Exact, case-sensitive match against the table: "f32" is not a safetensors dtype. */
int sdt_dtype_from_name(const char *name, sdt_dtype *out)
{
    if (!name)
        return -1;
    for (int i = 0; i < SDT_DTYPE_COUNT; i++) {
        if (strcmp(name, dtype_table[i].name) == 0) {
            if (out)
                *out = (sdt_dtype)i;
            return 0;
        }
    }
    return -1;
}

/* The table's bit count; 0 for a value outside the enum. */
unsigned sdt_dtype_bits(sdt_dtype dtype) { return dtype_valid(dtype) ? dtype_table[dtype].bits : 0; }

/* The three types the backends compute with. */
int sdt_dtype_is_compute(sdt_dtype dtype)
{
    return dtype == SDT_F32 || dtype == SDT_F16 || dtype == SDT_BF16;
}

int sdt_dtype_is_weight(sdt_dtype dtype) { return sdt_dtype_is_compute(dtype) || dtype == SDT_F8_E4M3; }

/* The bit pattern of a float and back, without aliasing tricks. */
static uint32_t float_bits(float value)
{
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}

static float bits_float(uint32_t bits)
{
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

/* f32 -> IEEE binary16. Three ranges: NaN/Inf and values that round past 65504 (Inf); values whose
 * result is normal, rounded by adding just under half an f16 ulp plus the kept lowest bit (ties go to
 * even; a carry moves into the exponent as it should, up to Inf); values below 2^-14, whose result is a
 * multiple of 2^-24 computed by shifting the full significand and rounding the dropped bits by hand. */
uint16_t sdt_f32_to_f16(float value)
{
    uint32_t x = float_bits(value);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t a = x & 0x7fffffffu;
    if (a > 0x7f800000u) /* NaN: keep the top payload bits, force the quiet bit */
        return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    if (a >= 0x38800000u) { /* >= 2^-14: normal in f16 unless it overflows */
        uint32_t rebased = a - (112u << 23);
        uint32_t h = (rebased + 0xfffu + ((rebased >> 13) & 1u)) >> 13;
        return (uint16_t)(sign | (h >= 0x7c00u ? 0x7c00u : h));
    }
    if (a < 0x33000000u) /* below 2^-25 (half the smallest subnormal): rounds to a signed zero */
        return sign;
    uint32_t exponent = a >> 23; /* 102..112 */
    uint32_t significand = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - exponent; /* 14..24: value = significand * 2^(exponent - 150) */
    uint32_t q = significand >> shift;
    uint32_t rest = significand & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rest > half || (rest == half && (q & 1u)))
        q++; /* may become 0x400, the smallest normal: the encoding is still right */
    return (uint16_t)(sign | q);
}

/* binary16 -> f32 is exact: every f16 is an f32. Subnormals are normalised; a signalling NaN becomes quiet
 * as the hardware conversions do. */
float sdt_f16_to_f32(uint16_t bits)
{
    uint32_t sign = (uint32_t)(bits & 0x8000u) << 16;
    uint32_t exponent = (bits >> 10) & 0x1fu;
    uint32_t mantissa = bits & 0x3ffu;
    if (exponent == 0x1f) {
        uint32_t nan_quiet = mantissa ? 0x400000u : 0u;
        return bits_float(sign | 0x7f800000u | (mantissa << 13) | nan_quiet);
    }
    if (exponent == 0) {
        if (mantissa == 0)
            return bits_float(sign);
        uint32_t e = 113; /* the exponent of 2^-14 in f32, lowered by one per normalising shift */
        while (!(mantissa & 0x400u)) {
            mantissa <<= 1;
            e--;
        }
        return bits_float(sign | (e << 23) | ((mantissa & 0x3ffu) << 13));
    }
    return bits_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

/* f32 -> bfloat16: the top half of the f32, rounded to nearest even on the dropped 16 bits. bf16 has the
 * f32 exponent range, so only values within half an ulp of FLT_MAX overflow (the carry gives Inf). */
uint16_t sdt_f32_to_bf16(float value)
{
    uint32_t x = float_bits(value);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40u); /* NaN: truncated payload, quiet bit set */
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

/* bfloat16 -> f32 is exact; a signalling NaN becomes quiet. */
float sdt_bf16_to_f32(uint16_t bits)
{
    uint32_t x = (uint32_t)bits << 16;
    if ((x & 0x7fffffffu) > 0x7f800000u)
        x |= 0x400000u;
    return bits_float(x);
}

/* f32 -> e4m3fn. Values from 2^-6 up are normal in e4m3: the f32 significand is rounded to 3 bits by
 * adding just under half an e4m3 ulp plus the kept lowest bit (ties to even; a carry moves into the
 * exponent), and the f32 exponent is rebased from bias 127 to 7 (120 << 3 in the shifted encoding). Past
 * 448 (0x43e00000, code 0x7e) the result saturates. Below 2^-6 the result is a multiple of 2^-9: the full
 * significand is shifted down and the dropped bits rounded by hand (8 * 2^-9 = 2^-6 is the smallest
 * normal's code 0x08, so a carry there is still the right encoding). */
uint8_t sdt_f32_to_f8e4m3(float value)
{
    uint32_t x = float_bits(value);
    uint8_t sign = (uint8_t)((x >> 24) & 0x80u);
    uint32_t a = x & 0x7fffffffu;
    if (a > 0x7f800000u) /* NaN */
        return (uint8_t)(sign | 0x7fu);
    if (a >= 0x3c800000u) { /* >= 2^-6 (Inf included: it saturates with the overflowing values) */
        uint32_t rounded = (a + 0x7ffffu + ((a >> 20) & 1u)) >> 20;
        if (rounded > 0x43eu)
            return (uint8_t)(sign | 0x7eu);
        return (uint8_t)(sign | (rounded - 0x3c0u));
    }
    if (a <= 0x3a800000u) /* up to 2^-10, half the smallest subnormal (the tie goes to even: zero) */
        return sign;
    uint32_t exponent = a >> 23; /* 117..120 */
    uint32_t significand = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 141u - exponent; /* 21..24: value * 2^9 = significand * 2^(exponent - 141) */
    uint32_t q = significand >> shift;
    uint32_t rest = significand & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rest > half || (rest == half && (q & 1u)))
        q++;
    return (uint8_t)(sign | q);
}

float sdt_f8e4m3_to_f32(uint8_t bits)
{
    uint32_t sign = (uint32_t)(bits & 0x80u) << 24;
    uint32_t exponent = (bits >> 3) & 0xfu;
    uint32_t mantissa = bits & 0x7u;
    if (exponent == 0xfu && mantissa == 0x7u)
        return bits_float(sign | 0x7fc00000u);
    if (exponent == 0) { /* m * 2^-9, exact in f32 (m = 0: a signed zero) */
        float magnitude = (float)mantissa * 0x1p-9f;
        return sign ? -magnitude : magnitude;
    }
    return bits_float(sign | ((exponent + 120u) << 23) | (mantissa << 20));
}

float sdt_f8e4m3_scale_for(const float *values, size_t count)
{
    float amax = 0.0f;
    for (size_t i = 0; i < count; i++) {
        float a = values[i] < 0.0f ? -values[i] : values[i]; /* NaN fails both tests below */
        if (a > amax && a <= FLT_MAX)
            amax = a;
    }
    float scale = amax / 448.0f;
    /* A scale that is 0 (no non-zero value, or amax so small the division underflows) would divide by
     * zero when quantising; 1 stores zeros and tiny values as e4m3 would without a scale. */
    return scale > 0.0f ? scale : 1.0f;
}

void sdt_f32_to_f8e4m3_scaled(uint8_t *dst, const float *src, size_t count, float scale)
{
    for (size_t i = 0; i < count; i++)
        dst[i] = sdt_f32_to_f8e4m3(src[i] / scale);
}

void sdt_f8e4m3_to_f32_scaled(float *dst, const uint8_t *src, size_t count, float scale)
{
    for (size_t i = 0; i < count; i++)
        dst[i] = sdt_f8e4m3_to_f32(src[i]) * scale;
}

/* Loads and stores through memcpy: tensor data in a mapped file is not necessarily aligned. */
static float load_f32(const unsigned char *p)
{
    float v;
    memcpy(&v, p, sizeof v);
    return v;
}

static uint16_t load_u16(const unsigned char *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* One 16-bit element as f32 (exact for both 16-bit types). */
static float half_to_f32(uint16_t h, sdt_dtype type)
{
    return type == SDT_F16 ? sdt_f16_to_f32(h) : sdt_bf16_to_f32(h);
}

/* An f32 rounded to a 16-bit type. */
static uint16_t f32_to_half(float v, sdt_dtype type)
{
    return type == SDT_F16 ? sdt_f32_to_f16(v) : sdt_f32_to_bf16(v);
}

/* Every pair goes through f32, which holds f16 and bf16 values exactly, so f16 <-> bf16 is rounded once.
 * The dtype tests are outside the loops so that each loop stays simple for the compiler. */
int sdt_convert(void *dst, sdt_dtype dst_type, const void *src, sdt_dtype src_type, size_t count)
{
    if (!sdt_dtype_is_compute(dst_type) || !sdt_dtype_is_compute(src_type))
        return -1;
    if (count == 0)
        return 0;
    const unsigned char *in = src;
    unsigned char *out = dst;
    if (dst_type == src_type) {
        memcpy(out, in, count * (sdt_dtype_bits(src_type) / 8));
    } else if (src_type == SDT_F32) {
        for (size_t i = 0; i < count; i++) {
            uint16_t h = f32_to_half(load_f32(in + 4 * i), dst_type);
            memcpy(out + 2 * i, &h, sizeof h);
        }
    } else if (dst_type == SDT_F32) {
        for (size_t i = 0; i < count; i++) {
            float v = half_to_f32(load_u16(in + 2 * i), src_type);
            memcpy(out + 4 * i, &v, sizeof v);
        }
    } else {
        for (size_t i = 0; i < count; i++) {
            uint16_t h = f32_to_half(half_to_f32(load_u16(in + 2 * i), src_type), dst_type);
            memcpy(out + 2 * i, &h, sizeof h);
        }
    }
    return 0;
}
