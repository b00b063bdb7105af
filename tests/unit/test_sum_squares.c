/* The sum_squares op (kernels/backend.h) on the CPU backend: exact small sums, mixed dtypes, equality bit
 * for bit with a host loop in double over many tensors, NaN and Inf propagation (the fp16 overflow check
 * relies on it), overflow of the F32 result, empty tensors and lists, the output overwritten, the
 * refusals; and the guarded backend giving the CPU's bits. */
#include "../splitmix64.h"
#include "backend.h"
#include "check.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static sdt_tensor view(void *data, sdt_dtype dtype, int64_t n) { return sdt_tensor_view(data, dtype, 1, &n); }

static sdt_engine *cpu_engine(test_state *t)
{
    sdt_engine_options options = {.device = SDT_DEVICE_CPU, .threads = 1};
    sdt_engine *e = NULL;
    CHECK(t, sdt_engine_create(&options, &e, NULL) == 0);
    return e;
}

/* The op's result on e over the list, or NAN with a failed check. */
static float sum_of(test_state *t, sdt_engine *e, const sdt_tensor *list, size_t count)
{
    float result = -1.0f; /* [1] overwritten by the op */
    sdt_tensor out = view(&result, SDT_F32, 1);
    CHECK_MSG(t, sdt_sum_squares(e, &out, list, count) == 0, "%s", sdt_engine_error(e));
    return result;
}

static void test_small_exact(test_state *t)
{
    sdt_engine *e = cpu_engine(t);
    if (!e)
        return;
    float a[2] = {3.0f, -4.0f};                                         /* [2] */
    uint16_t h[3] = {sdt_f32_to_f16(0.5f), sdt_f32_to_f16(-2.0f), 0};   /* [3] f16 */
    uint16_t b[2] = {sdt_f32_to_bf16(1.5f), sdt_f32_to_bf16(-1024.0f)}; /* [2] bf16 */
    sdt_tensor list[3] = {view(a, SDT_F32, 2), view(h, SDT_F16, 3), view(b, SDT_BF16, 2)};
    CHECK(t, sum_of(t, e, list, 1) == 25.0f);
    CHECK(t, sum_of(t, e, list, 2) == 29.25f);
    CHECK(t, sum_of(t, e, list, 3) == 29.25f + 2.25f + 1048576.0f);
    /* Any shape: a [2] buffer seen as [1, 2]. */
    int64_t shape[2] = {1, 2};
    sdt_tensor matrix = sdt_tensor_view(a, SDT_F32, 2, shape);
    CHECK(t, sum_of(t, e, &matrix, 1) == 25.0f);
    sdt_engine_free(e);
}

/* Empty tensors add nothing (and may have no data); an empty list gives 0, overwriting the output. */
static void test_empty(test_state *t)
{
    sdt_engine *e = cpu_engine(t);
    if (!e)
        return;
    float a[1] = {2.0f}; /* [1] */
    sdt_tensor list[3] = {view(NULL, SDT_F32, 0), view(a, SDT_F32, 1), view(NULL, SDT_BF16, 0)};
    CHECK(t, sum_of(t, e, list, 3) == 4.0f);
    CHECK(t, sum_of(t, e, list, 1) == 0.0f);
    CHECK(t, sum_of(t, e, NULL, 0) == 0.0f);
    sdt_engine_free(e);
}

/* A NaN or an Inf anywhere makes the result non-finite: NaN stays NaN, Inf gives Inf, both give NaN; a
 * finite sum past F32's range is Inf. */
static void test_non_finite(test_state *t)
{
    sdt_engine *e = cpu_engine(t);
    if (!e)
        return;
    float clean[4] = {1.0f, 2.0f, 3.0f, 4.0f}; /* [4] */
    float with_nan[3] = {1.0f, NAN, 2.0f};     /* [3] */
    float with_inf[2] = {-INFINITY, 1.0f};     /* [2] */
    float huge[2] = {3e38f, 3e38f};            /* [2]: each finite, their squares far beyond F32 */
    uint16_t f16_inf[2] = {sdt_f32_to_f16(1.0f), sdt_f32_to_f16(1e6f)}; /* [2] f16: 1e6 overflows to Inf */
    CHECK(t, isinf(sdt_f16_to_f32(f16_inf[1])));

    sdt_tensor a[2] = {view(clean, SDT_F32, 4), view(with_nan, SDT_F32, 3)};
    CHECK(t, isnan(sum_of(t, e, a, 2)));
    sdt_tensor b[2] = {view(with_inf, SDT_F32, 2), view(clean, SDT_F32, 4)};
    float r = sum_of(t, e, b, 2);
    CHECK(t, isinf(r) && r > 0);
    sdt_tensor c[3] = {view(clean, SDT_F32, 4), view(with_inf, SDT_F32, 2), view(with_nan, SDT_F32, 3)};
    CHECK(t, isnan(sum_of(t, e, c, 3)));
    sdt_tensor d[1] = {view(huge, SDT_F32, 2)};
    r = sum_of(t, e, d, 1);
    CHECK_MSG(t, isinf(r) && r > 0, "overflowing sum gave %g", r);
    sdt_tensor f[2] = {view(clean, SDT_F32, 4), view(f16_inf, SDT_F16, 2)};
    r = sum_of(t, e, f, 2);
    CHECK(t, isinf(r) && r > 0);
    /* Only the value matters: the bf16 NaN of the last tensor of a long list still shows. */
    uint16_t bf16_nan = 0x7fc0; /* [1] bf16 NaN */
    sdt_tensor many[65];
    for (int i = 0; i < 64; i++)
        many[i] = view(clean, SDT_F32, 4);
    many[64] = view(&bf16_nan, SDT_BF16, 1);
    CHECK(t, isnan(sum_of(t, e, many, 65)));
    sdt_engine_free(e);
}

/* 300 tensors of sizes 0..~5000 in three dtypes: the op equals a host loop in double in list order,
 * rounded to F32 once, bit for bit (train/optim.c's host gradient norm relies on it); the guarded
 * backend gives the same bits. */
static void test_many_tensors(test_state *t)
{
    enum { COUNT = 300 };
    sdt_engine *e = cpu_engine(t);
    sdt_engine_options goptions = {.device = SDT_DEVICE_GUARDED, .threads = 1};
    sdt_engine *g = NULL;
    CHECK(t, sdt_engine_create(&goptions, &g, NULL) == 0);
    if (!e || !g) {
        sdt_engine_free(e);
        sdt_engine_free(g);
        return;
    }
    uint64_t seed = 42;
    void *host[COUNT];
    sdt_tensor list[COUNT], glist[COUNT];
    double want = 0.0;
    for (int i = 0; i < COUNT; i++) {
        int64_t n = (int64_t)(splitmix64_next(&seed) % 5000u) * (i % 7 != 3); /* every 7th one empty */
        sdt_dtype dtype = i % 3 == 0 ? SDT_F32 : i % 3 == 1 ? SDT_F16 : SDT_BF16;
        float *values = malloc((size_t)(n ? n : 1) * sizeof *values); /* [n] */
        for (int64_t j = 0; j < n; j++)
            values[j] = (float)((double)(splitmix64_next(&seed) >> 11) / 9007199254740992.0 * 8.0 - 4.0);
        host[i] = malloc((size_t)(n ? n : 1) * 4); /* [n] of dtype */
        sdt_convert(host[i], dtype, values, SDT_F32, (size_t)n);
        sdt_convert(values, SDT_F32, host[i], dtype, (size_t)n); /* the values the op sees */
        for (int64_t j = 0; j < n; j++)
            want += (double)values[j] * (double)values[j];
        free(values);
        list[i] = view(host[i], dtype, n);
        glist[i] = list[i];
        glist[i].device = SDT_DEVICE_GUARDED;
        glist[i].data = sdt_engine_alloc(g, (size_t)(n ? n : 1) * 4);
        CHECK(t, sdt_engine_upload(g, &glist[i], host[i], sdt_tensor_bytes(&list[i])) == 0);
    }
    float got = sum_of(t, e, list, COUNT), expected = (float)want;
    CHECK_MSG(t, memcmp(&got, &expected, sizeof got) == 0, "%.9g, a host loop gives %.9g", got, expected);

    float gresult = -1.0f, back = 0.0f;
    sdt_tensor gout = view(sdt_engine_alloc(g, sizeof(float)), SDT_F32, 1);
    gout.device = SDT_DEVICE_GUARDED;
    CHECK_MSG(t, sdt_sum_squares(g, &gout, glist, COUNT) == 0, "%s", sdt_engine_error(g));
    CHECK(t, sdt_engine_download(g, &back, &gout, sizeof back) == 0);
    gresult = back;
    CHECK_MSG(t, memcmp(&gresult, &got, sizeof got) == 0, "guarded %.9g, cpu %.9g", gresult, got);
    sdt_engine_dealloc(g, gout.data);
    for (int i = 0; i < COUNT; i++) {
        sdt_engine_dealloc(g, glist[i].data);
        free(host[i]);
    }
    sdt_engine_free(g);
    sdt_engine_free(e);
}

static void test_refusals(test_state *t)
{
    sdt_engine *e = cpu_engine(t);
    if (!e)
        return;
    float a[2] = {1.0f, 2.0f}, two[2] = {0}; /* [2] each */
    uint16_t half = 0;                       /* [1] f16 */
    sdt_tensor list[1] = {view(a, SDT_F32, 2)};
    sdt_tensor wide = view(two, SDT_F32, 2), narrow = view(&half, SDT_F16, 1);
    CHECK(t, sdt_sum_squares(e, &wide, list, 1) != 0);
    CHECK_STR_CONTAINS(t, sdt_engine_error(e), "sum_squares: output");
    CHECK(t, sdt_sum_squares(e, &narrow, list, 1) != 0);
    CHECK_STR_CONTAINS(t, sdt_engine_error(e), "must be f32");
    float result = 0.0f; /* [1] */
    sdt_tensor out = view(&result, SDT_F32, 1);
    CHECK(t, sdt_sum_squares(e, &out, NULL, 2) != 0);
    sdt_tensor bad[2] = {view(a, SDT_F32, 2), view(NULL, SDT_F32, 3)};
    CHECK(t, sdt_sum_squares(e, &out, bad, 2) != 0);
    CHECK_STR_CONTAINS(t, sdt_engine_error(e), "tensor 1");
    sdt_tensor guarded = view(a, SDT_F32, 2);
    guarded.device = SDT_DEVICE_GUARDED;
    CHECK(t, sdt_sum_squares(e, &out, &guarded, 1) != 0);
    CHECK_STR_CONTAINS(t, sdt_engine_error(e), "engine runs on the CPU");
    sdt_engine_free(e);
}

TEST_MAIN("sum_squares", TEST(test_small_exact), TEST(test_empty), TEST(test_non_finite),
          TEST(test_many_tensors), TEST(test_refusals))
