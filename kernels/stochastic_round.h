/* Stochastic rounding of an F32 master value to its BF16/F16 copy, shared by the CPU backend (C) and the
 * CUDA kernels (compiled as __host__ __device__ there) so that both write the same bits.
 *
 * The random bits come from a counter-based hash of (seed, step, tensor, element): no generator state,
 * the same bits for the same coordinates on any device and any thread count, different bits every step.
 * 16 of them are added just below the mantissa bits the narrow type keeps and the result is truncated:
 * a value between two neighbours a < x < b becomes b with probability (x - a) / (b - a) (to 2^-16), so
 * the copy is unbiased on average, and a value the narrow type holds exactly is kept as it is (nothing
 * below the kept bits to carry). */
#ifndef SDTUNE_KERNELS_STOCHASTIC_ROUND_H
#define SDTUNE_KERNELS_STOCHASTIC_ROUND_H

#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__)
#define SDT_SR_FN static __host__ __device__ __forceinline__
#else
#define SDT_SR_FN static inline
#endif

/* splitmix64's finaliser: every input bit reaches every output bit. */
SDT_SR_FN uint64_t sdt_sr_mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

/* 16 random bits for one element of one tensor at one step. */
SDT_SR_FN uint32_t sdt_sr_bits(uint64_t seed, int64_t step, uint64_t tensor, uint64_t element)
{
    uint64_t x = sdt_sr_mix64(seed ^ ((uint64_t)step * 0x9e3779b97f4a7c15ull));
    x = sdt_sr_mix64(x ^ (tensor * 0xd1b54a32d192ed03ull));
    x = sdt_sr_mix64(x ^ (element * 0xaef17502108ef2d9ull));
    return (uint32_t)(x >> 48);
}

SDT_SR_FN uint32_t sdt_sr_float_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

/* BF16 keeps the top 16 bits of an F32: the 16 random bits fill the 16 it drops. NaN stays a (quiet)
 * NaN and infinities stay; a finite value may carry into the next binade or to infinity, as rounding
 * up does. */
SDT_SR_FN uint16_t sdt_sr_bf16(float x, uint32_t random16)
{
    uint32_t u = sdt_sr_float_bits(x);
    uint32_t magnitude = u & 0x7fffffffu;
    if (magnitude > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40u);
    if (magnitude == 0x7f800000u)
        return (uint16_t)(u >> 16);
    return (uint16_t)((u + random16) >> 16);
}

/* F16 truncation toward zero of an F32 given as bits (normal, subnormal and overflowing values). */
SDT_SR_FN uint16_t sdt_sr_f16_truncate(uint32_t u)
{
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t magnitude = u & 0x7fffffffu;
    int exponent = (int)(magnitude >> 23) - 127;
    if (exponent >= 16)
        return (uint16_t)(sign | 0x7c00u);
    if (exponent >= -14)
        return (uint16_t)(sign | (uint32_t)((exponent + 15) << 10) | ((magnitude >> 13) & 0x3ffu));
    if (exponent >= -24) /* an F16 subnormal: units of 2^-24 */
        return (uint16_t)(sign | (((magnitude & 0x7fffffu) | 0x800000u) >> (-1 - exponent)));
    return sign;
}

/* F16 keeps 10 mantissa bits of a normal value, fewer of an F16 subnormal: the 16 random bits go just
 * below the kept ones (their top bits when more than 16 are dropped). Values under 2^-24, the smallest
 * F16 step, round to 0 or 2^-24 with the probability of their fraction of it. */
SDT_SR_FN uint16_t sdt_sr_f16(float x, uint32_t random16)
{
    uint32_t u = sdt_sr_float_bits(x);
    uint32_t magnitude = u & 0x7fffffffu;
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    if (magnitude > 0x7f800000u)
        return (uint16_t)(sign | 0x7e00u);
    if (magnitude >= 0x7f800000u)
        return (uint16_t)(sign | 0x7c00u);
    int exponent = (int)(magnitude >> 23) - 127;
    if (exponent < -24) {
        /* |x| * 2^40 < 2^16 is exact (a power-of-two scale); its integer part is the threshold. */
        float scaled = (x < 0 ? -x : x) * 1099511627776.0f;
        uint32_t threshold = (uint32_t)scaled;
        return (uint16_t)(sign | (random16 < threshold ? 1u : 0u));
    }
    int dropped = exponent >= -14 ? 13 : -1 - exponent; /* 13 .. 23 bits below the kept ones */
    uint32_t noise = dropped >= 16 ? random16 << (dropped - 16) : random16 >> (16 - dropped);
    return sdt_sr_f16_truncate(u + noise);
}

#undef SDT_SR_FN
#endif
