/* dtype names and sizes, and the f32 <-> f16 / bf16 conversions: every 16-bit pattern, every rounding tie
 * between neighbouring f16 values, the overflow and subnormal edges, and random floats against two
 * independent references (a table of all f16 values searched in double precision, and the compiler's own
 * _Float16 conversion where the compiler has one). */
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

/* The next float toward +Inf / toward zero, for positive finite x (no libm needed). */
static float next_up(float x) { return float_of(bits_of(x) + 1); }
static float next_down(float x) { return float_of(bits_of(x) - 1); }

/* 2^e as a double, exactly. */
static double pow2(int e)
{
    double v = 1.0;
    for (; e > 0; e--)
        v *= 2.0;
    for (; e < 0; e++)
        v *= 0.5;
    return v;
}

/* A small deterministic generator (xorshift64*), state passed in: no globals. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static void names_and_bits(test_state *t)
{
    static const struct {
        const char *name;
        sdt_dtype type;
        unsigned bits;
    } expected[] = {
        {"F32", SDT_F32, 32},
        {"F16", SDT_F16, 16},
        {"BF16", SDT_BF16, 16},
        {"F64", SDT_F64, 64},
        {"F8_E4M3", SDT_F8_E4M3, 8},
        {"F8_E5M2", SDT_F8_E5M2, 8},
        {"F8_E8M0", SDT_F8_E8M0, 8},
        {"F8_E4M3FNUZ", SDT_F8_E4M3FNUZ, 8},
        {"F8_E5M2FNUZ", SDT_F8_E5M2FNUZ, 8},
        {"F6_E2M3", SDT_F6_E2M3, 6},
        {"F6_E3M2", SDT_F6_E3M2, 6},
        {"F4", SDT_F4, 4},
        {"C64", SDT_C64, 64},
        {"I64", SDT_I64, 64},
        {"I32", SDT_I32, 32},
        {"I16", SDT_I16, 16},
        {"I8", SDT_I8, 8},
        {"U64", SDT_U64, 64},
        {"U32", SDT_U32, 32},
        {"U16", SDT_U16, 16},
        {"U8", SDT_U8, 8},
        {"BOOL", SDT_BOOL, 8},
    };
    size_t n = sizeof expected / sizeof expected[0];
    CHECK(t, n == SDT_DTYPE_COUNT);
    for (size_t i = 0; i < n; i++) {
        sdt_dtype parsed = SDT_DTYPE_COUNT;
        CHECK_MSG(t, strcmp(sdt_dtype_name(expected[i].type), expected[i].name) == 0, "%s", expected[i].name);
        CHECK_MSG(t, sdt_dtype_from_name(expected[i].name, &parsed) == 0 && parsed == expected[i].type, "%s",
                  expected[i].name);
        CHECK_MSG(t, sdt_dtype_bits(expected[i].type) == expected[i].bits, "%s", expected[i].name);
        CHECK(t, sdt_dtype_is_compute(expected[i].type) ==
                     (expected[i].type == SDT_F32 || expected[i].type == SDT_F16 ||
                      expected[i].type == SDT_BF16));
    }
    sdt_dtype untouched = SDT_U8;
    CHECK(t, sdt_dtype_from_name("f32", &untouched) == -1 && untouched == SDT_U8); /* case-sensitive */
    CHECK(t, sdt_dtype_from_name("", &untouched) == -1);
    CHECK(t, sdt_dtype_from_name("F32 ", &untouched) == -1);
    CHECK(t, sdt_dtype_from_name("BOOL8", &untouched) == -1);
    CHECK(t, sdt_dtype_from_name(NULL, &untouched) == -1);
    CHECK(t, strcmp(sdt_dtype_name(SDT_DTYPE_COUNT), "?") == 0);
    CHECK(t, sdt_dtype_bits(SDT_DTYPE_COUNT) == 0);
}

/* The value of an f16 pattern computed independently, in double precision from the definition. */
static double f16_reference_value(uint16_t h)
{
    int exponent = (h >> 10) & 0x1f;
    int mantissa = h & 0x3ff;
    double v = exponent == 0 ? mantissa * pow2(-24) : (1024 + mantissa) * pow2(exponent - 25);
    return (h & 0x8000) ? -v : v;
}

/* Every f16 pattern -> f32 is exact (checked against the definition) and comes back to the same pattern;
 * NaNs stay NaN with their sign and come back quiet. */
static void f16_exhaustive(test_state *t)
{
    int bad_value = 0, bad_back = 0, bad_nan = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        float f = sdt_f16_to_f32(h);
        int is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0;
        int is_inf = (h & 0x7fff) == 0x7c00;
        if (is_nan) {
            uint32_t b = bits_of(f);
            uint16_t back = sdt_f32_to_f16(f);
            if (!isnan(f) || (b >> 31) != (uint32_t)(h >> 15) || !(b & 0x400000u))
                bad_nan++;
            if (back != (h | 0x200))
                bad_nan++;
            continue;
        }
        if (is_inf) {
            if (!isinf(f) || (signbit(f) != 0) != ((h & 0x8000) != 0))
                bad_value++;
        } else if ((double)f != f16_reference_value(h) || (signbit(f) != 0) != ((h & 0x8000) != 0)) {
            bad_value++;
        }
        if (sdt_f32_to_f16(f) != h)
            bad_back++;
    }
    CHECK_MSG(t, bad_value == 0, "%d f16 patterns with a wrong f32 value", bad_value);
    CHECK_MSG(t, bad_back == 0, "%d f16 patterns that do not round-trip", bad_back);
    CHECK_MSG(t, bad_nan == 0, "%d f16 NaN patterns mishandled", bad_nan);
}

/* Every bf16 pattern -> f32 is the pattern shifted up (NaN made quiet) and comes back unchanged. */
static void bf16_exhaustive(test_state *t)
{
    int bad_value = 0, bad_back = 0, bad_nan = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t b = (uint16_t)i;
        float f = sdt_bf16_to_f32(b);
        int is_nan = (b & 0x7f80) == 0x7f80 && (b & 0x7f) != 0;
        if (is_nan) {
            if (!isnan(f) || (bits_of(f) >> 31) != (uint32_t)(b >> 15) || sdt_f32_to_bf16(f) != (b | 0x40))
                bad_nan++;
            continue;
        }
        if (bits_of(f) != (uint32_t)b << 16)
            bad_value++;
        if (sdt_f32_to_bf16(f) != b)
            bad_back++;
    }
    CHECK_MSG(t, bad_value == 0, "%d bf16 patterns with a wrong f32 value", bad_value);
    CHECK_MSG(t, bad_back == 0, "%d bf16 patterns that do not round-trip", bad_back);
    CHECK_MSG(t, bad_nan == 0, "%d bf16 NaN patterns mishandled", bad_nan);
}

/* For every pair of neighbouring finite f16 values (both signs): the exact midpoint goes to the one with
 * an even pattern, one f32 ulp either side goes to the nearer one. Covers subnormals, the
 * subnormal/normal boundary and every binade. */
static void f16_ties_everywhere(test_state *t)
{
    int bad = 0;
    for (uint16_t h = 0; h < 0x7bff; h++) {
        float lo = sdt_f16_to_f32(h), hi = sdt_f16_to_f32((uint16_t)(h + 1));
        float mid = (float)(((double)lo + (double)hi) / 2); /* exact: needs 12 significant bits */
        uint16_t even = (h & 1) ? (uint16_t)(h + 1) : h;
        for (int negative = 0; negative < 2; negative++) {
            uint16_t sign = negative ? 0x8000 : 0;
            float s = negative ? -1.0f : 1.0f;
            if (sdt_f32_to_f16(s * mid) != (even | sign))
                bad++;
            if (sdt_f32_to_f16(s * next_up(mid)) != ((h + 1) | sign))
                bad++;
            if (sdt_f32_to_f16(s * next_down(mid)) != (h | sign))
                bad++;
        }
    }
    CHECK_MSG(t, bad == 0, "%d midpoint roundings wrong", bad);
}

static void f16_ties_named(test_state *t)
{
    /* 1 + 2^-11 lies halfway between 1 (0x3c00, even) and 1 + 2^-10 (0x3c01): goes down to even. */
    CHECK(t, sdt_f32_to_f16(1.0f + 0x1p-11f) == 0x3c00);
    /* 1 + 3 * 2^-11 lies halfway between 0x3c01 (odd) and 0x3c02 (even): goes up to even. */
    CHECK(t, sdt_f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3c02);
    CHECK(t, sdt_f32_to_f16(-(1.0f + 3 * 0x1p-11f)) == 0xbc02);
    /* 2049 is halfway between 2048 and 2050 (f16 spacing 2 there): to 2048, the even pattern. */
    CHECK(t, sdt_f32_to_f16(2049.0f) == 0x6800);
    CHECK(t, sdt_f32_to_f16(2051.0f) == 0x6802); /* halfway 2050 (odd) / 2052 (even) */
    CHECK(t, sdt_f32_to_f16(0.1f) == 0x2e66);
    CHECK(t, sdt_f32_to_f16(1.0f) == 0x3c00);
    CHECK(t, sdt_f32_to_f16(-2.0f) == 0xc000);
    CHECK(t, sdt_f32_to_f16(0.333333343f) == 0x3555);
}

static void f16_overflow(test_state *t)
{
    CHECK(t, sdt_f32_to_f16(65504.0f) == 0x7bff);            /* the largest f16 */
    CHECK(t, sdt_f32_to_f16(next_down(65520.0f)) == 0x7bff); /* just below the halfway point */
    CHECK(t, sdt_f32_to_f16(65520.0f) == 0x7c00);            /* halfway to 2^16: rounds to even = Inf */
    CHECK(t, sdt_f32_to_f16(-65520.0f) == 0xfc00);
    CHECK(t, sdt_f32_to_f16(65536.0f) == 0x7c00);
    CHECK(t, sdt_f32_to_f16(1e10f) == 0x7c00);
    CHECK(t, sdt_f32_to_f16(FLT_MAX) == 0x7c00);
    CHECK(t, sdt_f32_to_f16(-FLT_MAX) == 0xfc00);
    CHECK(t, sdt_f32_to_f16(INFINITY) == 0x7c00);
    CHECK(t, sdt_f32_to_f16(-INFINITY) == 0xfc00);
    CHECK(t, isinf(sdt_f16_to_f32(0x7c00)) && sdt_f16_to_f32(0x7c00) > 0);
    CHECK(t, isinf(sdt_f16_to_f32(0xfc00)) && sdt_f16_to_f32(0xfc00) < 0);
    CHECK(t, sdt_f16_to_f32(0x7bff) == 65504.0f);
}

static void f16_subnormals(test_state *t)
{
    CHECK(t, sdt_f32_to_f16(0x1p-24f) == 0x0001); /* the smallest subnormal */
    CHECK(t, sdt_f16_to_f32(0x0001) == 0x1p-24f);
    CHECK(t, sdt_f32_to_f16(-0x1p-24f) == 0x8001);
    CHECK(t, sdt_f32_to_f16(0x1p-25f) == 0x0000);          /* halfway to 0: even = 0 */
    CHECK(t, sdt_f32_to_f16(-0x1p-25f) == 0x8000);         /* keeps the sign */
    CHECK(t, sdt_f32_to_f16(next_up(0x1p-25f)) == 0x0001); /* just above halfway */
    CHECK(t, sdt_f32_to_f16(3 * 0x1p-25f) == 0x0002);      /* halfway 1 / 2: even */
    CHECK(t, sdt_f32_to_f16(5 * 0x1p-25f) == 0x0002);      /* halfway 2 / 3: even */
    CHECK(t, sdt_f32_to_f16(1e-30f) == 0x0000);
    CHECK(t, sdt_f32_to_f16(float_of(1)) == 0x0000);     /* the smallest f32 subnormal */
    CHECK(t, sdt_f32_to_f16(1023 * 0x1p-24f) == 0x03ff); /* the largest subnormal */
    CHECK(t, sdt_f16_to_f32(0x03ff) == 1023 * 0x1p-24f);
    CHECK(t, sdt_f32_to_f16(1023.5f * 0x1p-24f) == 0x0400); /* halfway to the smallest normal: even */
    CHECK(t, sdt_f32_to_f16(0x1p-14f) == 0x0400);           /* the smallest normal */
    CHECK(t, sdt_f16_to_f32(0x0400) == 0x1p-14f);
    CHECK(t, sdt_f32_to_f16(next_down(0x1p-14f)) == 0x0400); /* rounds up into the normals */
}

static void signed_zero_and_nan(test_state *t)
{
    CHECK(t, sdt_f32_to_f16(0.0f) == 0x0000);
    CHECK(t, sdt_f32_to_f16(-0.0f) == 0x8000);
    CHECK(t, sdt_f32_to_bf16(-0.0f) == 0x8000);
    float z = sdt_f16_to_f32(0x8000);
    CHECK(t, z == 0.0f && signbit(z));
    z = sdt_bf16_to_f32(0x8000);
    CHECK(t, z == 0.0f && signbit(z));

    /* Quiet and signalling NaNs of both signs, with and without payload. */
    static const uint32_t nans[] = {0x7fc00000u, 0xffc00000u, 0x7f800001u,
                                    0xff800001u, 0x7fbfffffu, 0x7fc02000u};
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        float f = float_of(nans[i]);
        uint16_t h = sdt_f32_to_f16(f), b = sdt_f32_to_bf16(f);
        uint16_t sign = (nans[i] >> 31) ? 0x8000 : 0;
        CHECK_MSG(t, (h & 0x7e00) == 0x7e00 && (h & 0x8000) == sign, "f16 of NaN %08x is %04x", nans[i], h);
        CHECK_MSG(t, (b & 0x7fc0) == 0x7fc0 && (b & 0x8000) == sign, "bf16 of NaN %08x is %04x", nans[i], b);
    }
    /* The payload's top bits survive. */
    CHECK(t, sdt_f32_to_f16(float_of(0x7fc02000u)) == 0x7e01);
    CHECK(t, sdt_f32_to_bf16(float_of(0x7fc10000u)) == 0x7fc1);
    /* A signalling f16 / bf16 NaN becomes a quiet f32 NaN. */
    CHECK(t, bits_of(sdt_f16_to_f32(0x7c01)) == 0x7fc02000u);
    CHECK(t, bits_of(sdt_bf16_to_f32(0xff81)) == 0xffc10000u);
}

static void bf16_rounding(test_state *t)
{
    CHECK(t, sdt_f32_to_bf16(1.0f) == 0x3f80);
    CHECK(t, sdt_f32_to_bf16(float_of(0x3f808000u)) == 0x3f80); /* tie, even below */
    CHECK(t, sdt_f32_to_bf16(float_of(0x3f818000u)) == 0x3f82); /* tie, even above */
    CHECK(t, sdt_f32_to_bf16(float_of(0x3f808001u)) == 0x3f81);
    CHECK(t, sdt_f32_to_bf16(float_of(0x3f807fffu)) == 0x3f80);
    CHECK(t, sdt_f32_to_bf16(float_of(0xbf818000u)) == 0xbf82);
    CHECK(t, sdt_f32_to_bf16(FLT_MAX) == 0x7f80);               /* within half an ulp of FLT_MAX: Inf */
    CHECK(t, sdt_f32_to_bf16(float_of(0x7f7f7fffu)) == 0x7f7f); /* the largest bf16 */
    CHECK(t, sdt_f32_to_bf16(-FLT_MAX) == 0xff80);
    CHECK(t, sdt_f32_to_bf16(INFINITY) == 0x7f80);
    CHECK(t, sdt_f32_to_bf16(float_of(0x00008000u)) == 0x0000); /* subnormal tie to 0 */
    CHECK(t, sdt_f32_to_bf16(float_of(0x00018000u)) == 0x0002); /* subnormal tie to even */
    CHECK(t, sdt_f32_to_bf16(float_of(0x00010000u)) == 0x0001); /* the smallest bf16 subnormal */
    CHECK(t, bits_of(sdt_bf16_to_f32(0x0001)) == 0x00010000u);
    CHECK(t, sdt_f32_to_bf16(float_of(0x007fffffu)) == 0x0080); /* rounds up into the normals */
}

/* All positive finite f16 values in increasing order, as doubles (the pattern is the index). */
static void fill_f16_table(double *table)
{
    for (uint16_t h = 0; h <= 0x7bff; h++)
        table[h] = f16_reference_value(h);
}

/* The f16 nearest to x, ties to the even pattern, found by binary search in the table: a reference that
 * shares no code with the bit manipulation under test. */
static uint16_t f16_reference_round(const double *table, float x)
{
    uint16_t sign = signbit(x) ? 0x8000 : 0;
    double a = x < 0 ? -(double)x : (double)x;
    if (a >= 65520.0)
        return sign | 0x7c00;
    size_t lo = 0, hi = 0x7bff; /* table[lo] <= a < table[hi] or a == table[hi] */
    if (a >= table[hi])
        return sign | (uint16_t)hi;
    while (hi - lo > 1) {
        size_t m = (lo + hi) / 2;
        if (table[m] <= a)
            lo = m;
        else
            hi = m;
    }
    double below = a - table[lo], above = table[hi] - a;
    if (below < above)
        return sign | (uint16_t)lo;
    if (above < below)
        return sign | (uint16_t)hi;
    return sign | (uint16_t)((lo & 1) ? hi : lo);
}

/* The bf16 nearest to x by comparing distances in double precision. */
static uint16_t bf16_reference_round(float x)
{
    uint32_t u = bits_of(x);
    uint32_t sign = u & 0x80000000u, a = u & 0x7fffffffu;
    if (a == 0x7f800000u)
        return (uint16_t)((sign | a) >> 16);
    uint32_t lo = a & 0xffff0000u, hi = lo + 0x10000u; /* hi may be the Inf pattern: a valid neighbour */
    double v = (double)float_of(a);
    double vlo = (double)float_of(lo);
    double vhi = hi == 0x7f800000u ? pow2(128) : (double)float_of(hi); /* 2^128: where Inf "is" */
    double below = v - vlo, above = vhi - v;
    uint32_t pick = below < above ? lo : above < below ? hi : (((lo >> 16) & 1) ? hi : lo);
    return (uint16_t)((sign | pick) >> 16);
}

/* A random float: half of them uniformly random patterns (every binade), half in and around the f16
 * range where the interesting rounding happens. */
static float random_float(uint64_t *state)
{
    uint64_t r = next_random(state);
    if (r & 1)
        return float_of((uint32_t)(r >> 32));
    uint32_t exponent = 127 - 27 + (uint32_t)((r >> 8) % 46); /* 2^-27 .. 2^18 */
    uint32_t bits = ((uint32_t)(r >> 63) << 31) | (exponent << 23) | ((uint32_t)(r >> 32) & 0x7fffffu);
    return float_of(bits);
}

static void random_against_references(test_state *t)
{
    double *table = malloc(0x7c00 * sizeof *table);
    CHECK(t, table != NULL);
    if (!table)
        return;
    fill_f16_table(table);
    uint64_t state = 0x9E3779B97F4A7C15ULL;
    int bad_f16 = 0, bad_bf16 = 0, compared = 0;
    for (int i = 0; i < 2000000; i++) {
        float x = random_float(&state);
        if (isnan(x))
            continue;
        compared++;
        uint16_t h = sdt_f32_to_f16(x), want = f16_reference_round(table, x);
        if (h != want && bad_f16++ < 5)
            fprintf(stderr, "f16(%a): %04x, reference %04x\n", (double)x, h, want);
        uint16_t b = sdt_f32_to_bf16(x), want_b = bf16_reference_round(x);
        if (b != want_b && bad_bf16++ < 5)
            fprintf(stderr, "bf16(%a): %04x, reference %04x\n", (double)x, b, want_b);
    }
    CHECK_MSG(t, bad_f16 == 0, "%d of %d f16 conversions differ from the table reference", bad_f16, compared);
    CHECK_MSG(t, bad_bf16 == 0, "%d of %d bf16 conversions differ from the reference", bad_bf16, compared);
    free(table);
}

/* The compiler's own conversion (gcc on x86_64 and aarch64 has _Float16; clang 14 on x86_64 does not, so
 * there the table reference above has to do). */
static void random_against_float16(test_state *t)
{
#ifdef __FLT16_MAX__
    uint64_t state = 0xD1B54A32D192ED03ULL;
    int bad = 0, compared = 0;
    for (int i = 0; i < 4000000; i++) {
        float x = random_float(&state);
        _Float16 c = (_Float16)x;
        uint16_t want;
        memcpy(&want, &c, sizeof want);
        uint16_t h = sdt_f32_to_f16(x);
        compared++;
        if (isnan(x)) {
            if ((h & 0x7c00) != 0x7c00 || !(h & 0x3ff) || (want & 0x7c00) != 0x7c00 || !(want & 0x3ff))
                bad++;
        } else if (h != want && bad++ < 5) {
            fprintf(stderr, "f16(%a): %04x, _Float16 %04x\n", (double)x, h, want);
        }
        /* and back: _Float16 -> float is exact */
        float back = (float)c;
        float ours = sdt_f16_to_f32(want);
        if (!isnan(back) && bits_of(back) != bits_of(ours))
            bad++;
    }
    CHECK_MSG(t, bad == 0, "%d of %d conversions differ from _Float16", bad, compared);
    printf("compared %d random floats with the compiler's _Float16\n", compared);
#else
    (void)t;
    printf("no _Float16 in this compiler: the table reference covers f16\n");
#endif
}

static void bulk_convert(test_state *t)
{
    enum { N = 1000 };
    float src[N], back[N];
    uint64_t state = 12345;
    for (int i = 0; i < N; i++)
        src[i] = random_float(&state);
    src[0] = 65520.0f;
    src[1] = -0.0f;
    src[2] = 0x1p-24f;
    src[3] = float_of(0x7fc00000u);

    /* Unaligned buffers on purpose: tensor data in a file has no alignment guarantee. */
    unsigned char *half = malloc(2 * N + 1), *bf = malloc(2 * N + 1), *other = malloc(2 * N + 1);
    unsigned char *f32 = malloc(4 * N + 1);
    CHECK(t, half && bf && other && f32);
    if (!half || !bf || !other || !f32)
        goto out;
    CHECK(t, sdt_convert(half + 1, SDT_F16, src, SDT_F32, N) == 0);
    CHECK(t, sdt_convert(bf + 1, SDT_BF16, src, SDT_F32, N) == 0);
    int bad = 0;
    for (int i = 0; i < N; i++) {
        uint16_t h, b;
        memcpy(&h, half + 1 + 2 * i, 2);
        memcpy(&b, bf + 1 + 2 * i, 2);
        if (h != sdt_f32_to_f16(src[i]) || b != sdt_f32_to_bf16(src[i]))
            bad++;
    }
    CHECK_MSG(t, bad == 0, "%d bulk f32 -> 16-bit conversions differ from the scalar ones", bad);

    CHECK(t, sdt_convert(f32 + 1, SDT_F32, half + 1, SDT_F16, N) == 0);
    memcpy(back, f32 + 1, sizeof back);
    bad = 0;
    for (int i = 0; i < N; i++) {
        uint16_t h;
        memcpy(&h, half + 1 + 2 * i, 2);
        if (bits_of(back[i]) != bits_of(sdt_f16_to_f32(h)))
            bad++;
    }
    CHECK_MSG(t, bad == 0, "%d bulk f16 -> f32 conversions differ", bad);

    /* f16 -> bf16 goes through f32 (exact) and rounds once. */
    CHECK(t, sdt_convert(other + 1, SDT_BF16, half + 1, SDT_F16, N) == 0);
    bad = 0;
    for (int i = 0; i < N; i++) {
        uint16_t h, b;
        memcpy(&h, half + 1 + 2 * i, 2);
        memcpy(&b, other + 1 + 2 * i, 2);
        if (b != sdt_f32_to_bf16(sdt_f16_to_f32(h)))
            bad++;
    }
    CHECK_MSG(t, bad == 0, "%d bulk f16 -> bf16 conversions differ", bad);
    CHECK(t, sdt_convert(other + 1, SDT_F16, bf + 1, SDT_BF16, N) == 0);
    bad = 0;
    for (int i = 0; i < N; i++) {
        uint16_t h, b;
        memcpy(&b, bf + 1 + 2 * i, 2);
        memcpy(&h, other + 1 + 2 * i, 2);
        if (h != sdt_f32_to_f16(sdt_bf16_to_f32(b)))
            bad++;
    }
    CHECK_MSG(t, bad == 0, "%d bulk bf16 -> f16 conversions differ", bad);

    /* Same type: a copy. */
    CHECK(t, sdt_convert(f32 + 1, SDT_F32, src, SDT_F32, N) == 0 && memcmp(f32 + 1, src, sizeof src) == 0);
    CHECK(t, sdt_convert(other, SDT_F16, half + 1, SDT_F16, N) == 0 && memcmp(other, half + 1, 2 * N) == 0);
    /* Not compute types; nothing to do. */
    CHECK(t, sdt_convert(other, SDT_F16, src, SDT_F64, N) == -1);
    CHECK(t, sdt_convert(other, SDT_I8, src, SDT_F32, N) == -1);
    CHECK(t, sdt_convert(NULL, SDT_F16, NULL, SDT_F32, 0) == 0);
out:
    free(half);
    free(bf);
    free(other);
    free(f32);
}

TEST_MAIN("dtype", TEST(names_and_bits), TEST(f16_exhaustive), TEST(bf16_exhaustive),
          TEST(f16_ties_everywhere), TEST(f16_ties_named), TEST(f16_overflow), TEST(f16_subnormals),
          TEST(signed_zero_and_nan), TEST(bf16_rounding), TEST(random_against_references),
          TEST(random_against_float16), TEST(bulk_convert))
