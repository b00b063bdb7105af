/* float8 e4m3fn: every one of the 256 codes against an independent decoding in double precision and back,
 * every rounding tie between neighbouring codes, saturation, the subnormal edge, random floats against a
 * nearest-value search, and the per-tensor scale of the bulk conversions. */
#include <float.h>
#include <math.h>
#include <stdint.h>

#include "check.h"
#include "sdtune/dtype.h"

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float float_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static float next_up(float x) { return float_of(bits_of(x) + 1); }
static float next_down(float x) { return float_of(bits_of(x) - 1); }

/* The value of a code from the format's definition, in double: NaN for S.1111.111. */
static double reference_value(unsigned code)
{
    unsigned exponent = (code >> 3) & 0xfu, mantissa = code & 7u;
    double sign = (code & 0x80u) ? -1.0 : 1.0;
    if (exponent == 15 && mantissa == 7)
        return NAN;
    if (exponent == 0)
        return sign * ldexp(mantissa / 8.0, -6);
    return sign * ldexp(1.0 + mantissa / 8.0, (int)exponent - 7);
}

static int is_nan_code(unsigned code) { return (code & 0x7fu) == 0x7fu; }

static void every_code(test_state *t)
{
    int bad_value = 0, bad_round_trip = 0;
    for (unsigned code = 0; code < 256; code++) {
        float value = sdt_f8e4m3_to_f32((uint8_t)code);
        if (is_nan_code(code)) {
            CHECK_MSG(t, isnan(value), "code 0x%02x should be NaN, got %g", code, (double)value);
            CHECK(t, (sdt_f32_to_f8e4m3(value) & 0x7fu) == 0x7fu);
            continue;
        }
        if ((double)value != reference_value(code) || (signbit(value) != 0) != ((code & 0x80u) != 0))
            bad_value++;
        if (sdt_f32_to_f8e4m3(value) != code)
            bad_round_trip++;
    }
    CHECK_MSG(t, bad_value == 0, "%d codes decode to the wrong value", bad_value);
    CHECK_MSG(t, bad_round_trip == 0, "%d codes do not survive f32 and back", bad_round_trip);
    CHECK(t, sdt_f8e4m3_to_f32(0x7e) == 448.0f);
    CHECK(t, sdt_f8e4m3_to_f32(0x08) == 0x1p-6f);
    CHECK(t, sdt_f8e4m3_to_f32(0x01) == 0x1p-9f);
    CHECK(t, sdt_f8e4m3_to_f32(0x38) == 1.0f);
    /* Codes 0..0x7e are the non-negative values in increasing order. */
    for (unsigned code = 0; code < 0x7e; code++)
        CHECK(t, sdt_f8e4m3_to_f32((uint8_t)code) < sdt_f8e4m3_to_f32((uint8_t)(code + 1)));
}

/* The midpoint of every two neighbouring codes is exact in f32; it goes to the code with the even last
 * bit, and the floats just beside it go to their side. Both signs. */
static void ties_everywhere(test_state *t)
{
    int bad = 0;
    for (unsigned code = 0; code < 0x7e; code++) {
        float low = sdt_f8e4m3_to_f32((uint8_t)code), high = sdt_f8e4m3_to_f32((uint8_t)(code + 1));
        float mid = (low + high) / 2; /* exact: both have 4 significant bits */
        unsigned even = (code & 1u) ? code + 1 : code;
        for (unsigned sign = 0; sign <= 0x80u; sign += 0x80u) {
            float s = sign ? -1.0f : 1.0f;
            if (sdt_f32_to_f8e4m3(s * mid) != (even | sign))
                bad++;
            if (sdt_f32_to_f8e4m3(s * next_up(mid)) != ((code + 1) | sign))
                bad++;
            if (mid > 0 && sdt_f32_to_f8e4m3(s * next_down(mid)) != (code | sign))
                bad++;
        }
    }
    CHECK_MSG(t, bad == 0, "%d ties or near-ties round the wrong way", bad);
}

static void saturation_and_specials(test_state *t)
{
    CHECK(t, sdt_f32_to_f8e4m3(448.0f) == 0x7e);
    CHECK(t, sdt_f32_to_f8e4m3(next_up(448.0f)) == 0x7e);
    CHECK(t, sdt_f32_to_f8e4m3(464.0f) == 0x7e); /* the tie with the missing 480 */
    CHECK(t, sdt_f32_to_f8e4m3(1e30f) == 0x7e);
    CHECK(t, sdt_f32_to_f8e4m3(FLT_MAX) == 0x7e);
    CHECK(t, sdt_f32_to_f8e4m3(INFINITY) == 0x7e);
    CHECK(t, sdt_f32_to_f8e4m3(-INFINITY) == 0xfe);
    CHECK(t, sdt_f32_to_f8e4m3(-1000.0f) == 0xfe);
    CHECK(t, sdt_f32_to_f8e4m3(NAN) == 0x7f);
    CHECK(t, sdt_f32_to_f8e4m3(-NAN) == 0xff);
    CHECK(t, sdt_f32_to_f8e4m3(0.0f) == 0x00);
    CHECK(t, sdt_f32_to_f8e4m3(-0.0f) == 0x80);
    /* 432 is the tie between 416 (0x7d) and 448 (0x7e): even is 448. */
    CHECK(t, sdt_f32_to_f8e4m3(432.0f) == 0x7e);
}

static void subnormals(test_state *t)
{
    CHECK(t, sdt_f32_to_f8e4m3(0x1p-9f) == 0x01);
    CHECK(t, sdt_f32_to_f8e4m3(0x1p-10f) == 0x00); /* half the smallest: ties to even zero */
    CHECK(t, sdt_f32_to_f8e4m3(next_up(0x1p-10f)) == 0x01);
    CHECK(t, sdt_f32_to_f8e4m3(next_down(0x1p-10f)) == 0x00);
    CHECK(t, sdt_f32_to_f8e4m3(3 * 0x1p-10f) == 0x02);  /* 1.5 * 2^-9: tie, to even 2 */
    CHECK(t, sdt_f32_to_f8e4m3(5 * 0x1p-10f) == 0x02);  /* 2.5 * 2^-9: tie, to even 2 */
    CHECK(t, sdt_f32_to_f8e4m3(15 * 0x1p-10f) == 0x08); /* 7.5 * 2^-9: tie, to 8 = the smallest normal */
    CHECK(t, sdt_f32_to_f8e4m3(7 * 0x1p-9f) == 0x07);
    CHECK(t, sdt_f32_to_f8e4m3(-0x1p-9f) == 0x81);
    CHECK(t, sdt_f32_to_f8e4m3(1e-30f) == 0x00);
    CHECK(t, sdt_f32_to_f8e4m3(FLT_MIN / 4) == 0x00);
    CHECK(t, sdt_f32_to_f8e4m3(-1e-30f) == 0x80);
}

static uint64_t next_random(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* The code a value should get: the nearest of the 127 non-negative finite codes (ties to the even code),
 * found by a search in double; beyond 448 the largest. */
static unsigned reference_round(float x)
{
    double a = fabs((double)x);
    unsigned sign = signbit(x) ? 0x80u : 0u;
    if (a >= 448.0)
        return sign | 0x7eu;
    unsigned best = 0;
    for (unsigned code = 1; code <= 0x7e; code++) {
        double d = fabs(reference_value(code) - a), db = fabs(reference_value(best) - a);
        if (d < db || (d == db && !(code & 1u)))
            best = code;
    }
    return sign | best;
}

static void random_against_reference(test_state *t)
{
    uint64_t state = 0x5eed;
    int bad = 0;
    for (int i = 0; i < 20000; i++) {
        uint64_t r = next_random(&state);
        /* Magnitudes from 2^-12 to 2^10: the subnormals, every binade and the saturation range. */
        float m = 1.0f + (float)(r >> 41) * 0x1p-23f;
        int e = (int)((r >> 8) % 23) - 12;
        float x = ldexpf(m, e) * ((r & 1) ? -1.0f : 1.0f);
        if (sdt_f32_to_f8e4m3(x) != reference_round(x))
            bad++;
    }
    CHECK_MSG(t, bad == 0, "%d random floats round differently from the nearest-value search", bad);
}

/* Per-tensor scaling: amax lands on 448, small weights keep about 3 mantissa bits instead of flushing to
 * zero, and dequantising is the one fp32 product code * scale. */
static void scaled_bulk(test_state *t)
{
    enum { N = 4096 };
    static float src[N], back[N];
    static uint8_t codes[N];
    uint64_t state = 99;
    for (int i = 0; i < N; i++) {
        uint64_t r = next_random(&state);
        /* Weights of a typical layer: magnitudes around 1e-2, far below e4m3's 2^-6 normal range. */
        src[i] = ((float)(r >> 40) * 0x1p-24f - 0.5f) * 0.05f;
    }
    src[17] = -0.04f; /* the largest magnitude */
    float scale = sdt_f8e4m3_scale_for(src, N);
    CHECK(t, scale == 0.04f / 448.0f);
    sdt_f32_to_f8e4m3_scaled(codes, src, N, scale);
    sdt_f8e4m3_to_f32_scaled(back, codes, N, scale);
    CHECK(t, codes[17] == 0xfe);
    int bad = 0, bad_exact = 0;
    for (int i = 0; i < N; i++) {
        /* Normal e4m3 values are within half an ulp, 2^-4 relative; subnormals within 2^-10 * scale. */
        double err = fabs((double)back[i] - (double)src[i]);
        if (err > fabs((double)src[i]) * 0x1p-4 + 0x1p-10 * scale)
            bad++;
        if (back[i] != sdt_f8e4m3_to_f32(codes[i]) * scale)
            bad_exact++;
    }
    CHECK_MSG(t, bad == 0, "%d scaled values are further than half an e4m3 ulp from the original", bad);
    CHECK_MSG(t, bad_exact == 0, "%d dequantised values are not code * scale", bad_exact);
    /* Without the scale, most of these weights would be subnormal or zero in e4m3. */
    int flushed_unscaled = 0, flushed_scaled = 0;
    for (int i = 0; i < N; i++) {
        flushed_unscaled += src[i] != 0 && sdt_f32_to_f8e4m3(src[i]) == (signbit(src[i]) ? 0x80 : 0x00);
        flushed_scaled += src[i] != 0 && (codes[i] & 0x7f) == 0;
    }
    CHECK_MSG(t, flushed_scaled * 100 < flushed_unscaled, "scaled %d vs unscaled %d zeros", flushed_scaled,
              flushed_unscaled);

    /* Degenerate tensors: all zeros, non-finite values ignored for amax, an empty tensor. */
    float zeros[4] = {0, -0.0f, 0, 0};
    CHECK(t, sdt_f8e4m3_scale_for(zeros, 4) == 1.0f);
    CHECK(t, sdt_f8e4m3_scale_for(zeros, 0) == 1.0f);
    float odd[3] = {NAN, INFINITY, -2.0f};
    CHECK(t, sdt_f8e4m3_scale_for(odd, 3) == 2.0f / 448.0f);
    CHECK(t, sdt_dtype_is_weight(SDT_F8_E4M3) && sdt_dtype_is_weight(SDT_BF16));
    CHECK(t, !sdt_dtype_is_weight(SDT_F8_E5M2) && !sdt_dtype_is_compute(SDT_F8_E4M3));
    CHECK(t, sdt_dtype_bits(SDT_F8_E4M3) == 8);
}

TEST_MAIN("dtype_f8", TEST(every_code), TEST(ties_everywhere), TEST(saturation_and_specials),
          TEST(subnormals), TEST(random_against_reference), TEST(scaled_bulk))
