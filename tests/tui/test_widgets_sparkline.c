/* The loss sparkline: exact glyphs for small known series in the three glyph sets, resampling, gaps,
 * flat and empty series, and the smoothing filters. */
#include <math.h>
#include <stdlib.h>
#include <time.h>

#include "unit/check.h"
#include "widgets/sparkline.h"

/* Renders and returns a static copy (one series at a time is enough for these tests). */
static const char *render(const float *v, size_t n, spark_glyphs glyphs, int width, int height)
{
    static char out[4096];
    spark_opts opts = {glyphs, width, height, false, 0, 0};
    if (spark_render(v, n, &opts, out, sizeof out, NULL, NULL) < 0)
        return "(error)";
    return out;
}

#define CHECK_RENDER(t, expected, ...)                                                                       \
    do {                                                                                                     \
        const char *got_ = render(__VA_ARGS__);                                                              \
        CHECK_MSG(t, strcmp(got_, expected) == 0, "got \"%s\", expected \"%s\"", got_, expected);            \
    } while (0)

static void test_ramp_in_each_glyph_set(test_state *t)
{
    const float ramp[] = {0, 1, 2, 3};
    CHECK_RENDER(t, "▁▃▆█", ramp, 4, SPARK_BLOCKS, 4, 1);
    CHECK_RENDER(t, "⡠⠊", ramp, 4, SPARK_BRAILLE, 2, 1);
    CHECK_RENDER(t, "_.-^", ramp, 4, SPARK_ASCII, 4, 1);
    /* Two rows: 16 block levels, 8 dot rows. */
    CHECK_RENDER(t, "  ▃█\n▁▆██", ramp, 4, SPARK_BLOCKS, 4, 2);
    /* Braille joins each dot column to the previous one: 0, 2, 5, 7 of 8 dot rows draw 0, 1-2, 3-5, 6-7. */
    CHECK_RENDER(t, " ⡜\n⡰⠁", ramp, 4, SPARK_BRAILLE, 2, 2);
    CHECK_RENDER(t, "  .^\n_-  ", ramp, 4, SPARK_ASCII, 4, 2);
}

static void test_short_series_is_right_aligned(test_state *t)
{
    const float two[] = {0, 3};
    CHECK_RENDER(t, "  ▁█", two, 2, SPARK_BLOCKS, 4, 1);
    CHECK_RENDER(t, "  ⡸", two, 2, SPARK_BRAILLE, 3, 1);
    CHECK_RENDER(t, "   ", two, 0, SPARK_BLOCKS, 3, 1);
}

static void test_resampling_keeps_spikes(test_state *t)
{
    /* 8 values into 4 columns: each column shows its bucket's max, so the lone 3 stays. */
    const float v[] = {0, 0, 3, 0, 1, 1, 2, 2};
    CHECK_RENDER(t, "▁█▃▆", v, 8, SPARK_BLOCKS, 4, 1);
    CHECK_RENDER(t, "_^.-", v, 8, SPARK_ASCII, 4, 1);
    /* Braille: 4 values into 2 dot columns; each spans its bucket's min..max. */
    const float w[] = {0, 3, 1, 2};
    CHECK_RENDER(t, "⡷", w, 4, SPARK_BRAILLE, 1, 1);
    /* Width 1 with blocks: one bucket of everything, drawn at its max. */
    CHECK_RENDER(t, "█", w, 4, SPARK_BLOCKS, 1, 1);

    /* Thousands of points: one spike among 5000 still reaches the top row. */
    float *many = malloc(5000 * sizeof *many);
    for (int i = 0; i < 5000; i++)
        many[i] = 1.0f + 0.001f * (float)(i % 7);
    many[2345] = 10;
    const char *out = render(many, 5000, SPARK_BLOCKS, 50, 2);
    CHECK_STR_CONTAINS(t, out, "█");
    /* Exactly one full cell in the top row: the spike's column. */
    int full = 0;
    for (const char *p = out; *p && *p != '\n'; p++)
        full += strncmp(p, "█", 3) == 0;
    CHECK_MSG(t, full == 1, "%d full cells in the top row", full);
    free(many);
}

static void test_flat_empty_and_gaps(test_state *t)
{
    const float flat[] = {5, 5, 5, 5};
    CHECK_RENDER(t, "▄▄▄▄", flat, 4, SPARK_BLOCKS, 4, 1);
    CHECK_RENDER(t, "⠤⠤", flat, 4, SPARK_BRAILLE, 2, 1);
    CHECK_RENDER(t, "....", flat, 4, SPARK_ASCII, 4, 1);

    const float nan3[] = {NAN, NAN, INFINITY};
    char out[64];
    double lo = 0, hi = 0;
    spark_opts opts = {SPARK_BLOCKS, 3, 1, false, 0, 0};
    CHECK(t, spark_render(nan3, 3, &opts, out, sizeof out, &lo, &hi) == 0);
    CHECK(t, strcmp(out, "   ") == 0);
    CHECK(t, isnan(lo) && isnan(hi));

    const float gap[] = {0, NAN, 3};
    CHECK_RENDER(t, "▁ █", gap, 3, SPARK_BLOCKS, 3, 1);
    CHECK_RENDER(t, "_ ^", gap, 3, SPARK_ASCII, 3, 1);
    /* NaN and Inf do not stretch the range. */
    const float inf[] = {0, INFINITY, 3, -INFINITY};
    CHECK(t, spark_render(inf, 4, &opts, out, sizeof out, &lo, &hi) == 0);
    CHECK(t, lo == 0 && hi == 3);
}

static void test_fixed_range_and_errors(test_state *t)
{
    char out[64];
    spark_opts opts = {SPARK_BLOCKS, 1, 1, true, 0, 10};
    const float mid[] = {5}, above[] = {20}, below[] = {-4};
    CHECK(t, spark_render(mid, 1, &opts, out, sizeof out, NULL, NULL) == 0 && strcmp(out, "▅") == 0);
    CHECK(t, spark_render(above, 1, &opts, out, sizeof out, NULL, NULL) == 0 && strcmp(out, "█") == 0);
    CHECK(t, spark_render(below, 1, &opts, out, sizeof out, NULL, NULL) == 0 && strcmp(out, "▁") == 0);

    opts.lo = 11; /* lo above hi */
    CHECK(t, spark_render(mid, 1, &opts, out, sizeof out, NULL, NULL) == -1);
    opts = (spark_opts){SPARK_BRAILLE, 0, 1, false, 0, 0};
    CHECK(t, spark_render(mid, 1, &opts, out, sizeof out, NULL, NULL) == -1);
    opts.width = 20;
    CHECK(t, spark_buffer_size(20, 1) == 62);
    CHECK(t, spark_render(mid, 1, &opts, out, 61, NULL, NULL) == -1 && out[0] == '\0');
}

static void test_smoothing(test_state *t)
{
    const float v[] = {1, NAN, 3, 5};
    float ema[4];
    spark_smooth_ema(v, 4, 0.5, ema);
    CHECK(t, ema[0] == 1 && isnan(ema[1]) && ema[2] == 2 && ema[3] == 3.5f);
    spark_smooth_ema(v, 4, 0, ema);
    CHECK(t, ema[0] == 1 && ema[2] == 3 && ema[3] == 5);

    const float w[] = {1, 2, 3, 4, NAN, 6};
    float mean[6];
    spark_smooth_window(w, 6, 2, mean);
    CHECK(t, mean[0] == 1 && mean[1] == 1.5f && mean[2] == 2.5f && mean[3] == 3.5f && mean[4] == 4 &&
                 mean[5] == 6);

    /* The running sum agrees with a direct mean over a long noisy series. */
    enum { N = 3000, WINDOW = 7 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    unsigned seed = 12345;
    for (int i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        x[i] = i % 97 == 0 ? NAN : (float)(seed >> 16) / 65536.0f;
    }
    spark_smooth_window(x, N, WINDOW, y);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        double sum = 0;
        int count = 0;
        for (int j = i - WINDOW + 1; j <= i; j++)
            if (j >= 0 && !isnan(x[j])) {
                sum += x[j];
                count++;
            }
        worst = fmax(worst, fabs(sum / count - y[i]));
    }
    CHECK_MSG(t, worst < 1e-6, "worst difference %g", worst);
    free(x);
    free(y);
}

static void test_fast_enough_for_10_hz(test_state *t)
{
    enum { N = 20000 };
    float *v = malloc(N * sizeof *v);
    for (int i = 0; i < N; i++)
        v[i] = 1.0f / (1.0f + 0.01f * (float)i) + 0.05f * sinf((float)i);
    static char out[200 * 4 * 3 + 16];
    spark_opts opts = {SPARK_BRAILLE, 200, 4, false, 0, 0};
    clock_t start = clock();
    for (int i = 0; i < 20; i++)
        spark_render(v, N, &opts, out, sizeof out, NULL, NULL);
    double ms = (double)(clock() - start) * 1000.0 / CLOCKS_PER_SEC / 20;
    printf("braille 200x4 over %d points: %.2f ms a render\n", N, ms);
    CHECK_MSG(t, ms < 50, "%.2f ms a render", ms);
    free(v);
}

TEST_MAIN("widgets_sparkline", TEST(test_ramp_in_each_glyph_set), TEST(test_short_series_is_right_aligned),
          TEST(test_resampling_keeps_spikes), TEST(test_flat_empty_and_gaps),
          TEST(test_fixed_range_and_errors), TEST(test_smoothing), TEST(test_fast_enough_for_10_hz))
