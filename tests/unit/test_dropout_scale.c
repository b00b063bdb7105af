/* The dropout_scale op (kernels/backend.h), the LoRA adapters' network and rank dropout: on the CPU and
 * guarded backends it gives, bit for bit, the mask models/adapter.c used to build on the host (written
 * out here again from its definition: splitmix64 keys per adapter and stream, 24-bit uniforms, kept values
 * times 1 / (1 - p)); the rank mask is shared by every position of a sample; both probabilities 0 is plain
 * scaling; and the refusals. */
#include "backend.h"
#include "check.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { B = 3, L = 7, R = 4, N = B * L * R };

static uint64_t splitmix(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The key of (step seed, adapter index, stream) and a draw of it, as the adapters have always made them. */
static uint64_t stream_key(uint64_t seed, uint64_t index, uint64_t stream)
{
    uint64_t key = splitmix(splitmix(seed) ^ index);
    return splitmix(key ^ (stream * 0xD1B54A32D192ED03ull));
}

static float draw(uint64_t key, uint64_t element)
{
    return (float)(splitmix(key + element) >> 40) * (1.0f / 16777216.0f);
}

/* want [N] = values [N] of a [B, L, R] tensor times the reference mask times factor. */
static void reference(float *want, const float *values, const sdt_dropout_args *a)
{
    float keep = a->p > 0 ? 1.0f / (1.0f - a->p) : 1.0f,
          keep_rank = a->rank_p > 0 ? 1.0f / (1.0f - a->rank_p) : 1.0f;
    for (int64_t i = 0; i < N; i++) {
        float m = 1.0f;
        if (a->p > 0)
            m = draw(a->key, (uint64_t)i) < a->p ? 0.0f : keep;
        if (a->rank_p > 0)
            m *= draw(a->rank_key, (uint64_t)((i / (L * R)) * R + i % R)) < a->rank_p ? 0.0f : keep_rank;
        want[i] = values[i] * (m * a->factor);
    }
}

static sdt_engine *engine(test_state *t, sdt_device_kind device)
{
    sdt_engine_options options = {.device = device, .threads = 1};
    sdt_engine *e = NULL;
    CHECK(t, sdt_engine_create(&options, &e, NULL) == 0);
    return e;
}

/* got [N] = the op on e over values [N] shaped [B, L, R]. Returns 0, or -1 with a failed check. */
static int run_op(test_state *t, sdt_engine *e, float *got, const float *values, const sdt_dropout_args *a)
{
    int64_t shape[3] = {B, L, R};
    sdt_tensor x = {.data = sdt_engine_alloc(e, N * sizeof(float)),
                    .dtype = SDT_F32,
                    .device = sdt_engine_device(e),
                    .ndim = 3,
                    .shape = {shape[0], shape[1], shape[2]}};
    int ok = x.data && sdt_engine_upload(e, &x, values, N * sizeof(float)) == 0 &&
             sdt_dropout_scale(e, &x, a) == 0 && sdt_engine_download(e, got, &x, N * sizeof(float)) == 0;
    CHECK_MSG(t, ok, "%s: %s", sdt_engine_backend_name(e), sdt_engine_error(e));
    sdt_engine_dealloc(e, x.data);
    return ok ? 0 : -1;
}

static void test_matches_reference(test_state *t)
{
    float values[N], want[N], got[N];
    for (int i = 0; i < N; i++)
        values[i] = (float)sin(0.9 * i) + 0.25f;
    const sdt_dropout_args cases[] = {
        {.factor = 0.5f, .p = 0.3f, .key = stream_key(77, 5, 1)},
        {.factor = 2.0f, .rank_p = 0.5f, .rank_key = stream_key(77, 5, 2)},
        {.factor = 0.8f,
         .p = 0.1f,
         .key = stream_key(9, 130, 1),
         .rank_p = 0.25f,
         .rank_key = stream_key(9, 130, 2)},
        {.factor = 1.5f},
    };
    sdt_device_kind devices[2] = {SDT_DEVICE_CPU, SDT_DEVICE_GUARDED};
    for (int d = 0; d < 2; d++) {
        sdt_engine *e = engine(t, devices[d]);
        for (size_t c = 0; e && c < sizeof cases / sizeof *cases; c++) {
            reference(want, values, &cases[c]);
            if (run_op(t, e, got, values, &cases[c]) != 0)
                continue;
            CHECK_MSG(t, memcmp(got, want, sizeof got) == 0, "%s, case %zu: not the reference's bits",
                      sdt_engine_backend_name(e), c);
            int dropped = 0;
            for (int i = 0; i < N; i++)
                dropped += got[i] == 0.0f;
            /* Something drops where a probability is set, nothing where none is. */
            CHECK_MSG(t, (cases[c].p > 0 || cases[c].rank_p > 0) == (dropped > 0), "case %zu: %d dropped", c,
                      dropped);
        }
        if (e)
            sdt_engine_free(e);
    }
}

/* Rank dropout alone: each (sample, rank channel) is kept or dropped at every position of the sample. */
static void test_rank_pattern(test_state *t)
{
    float values[N], got[N];
    for (int i = 0; i < N; i++)
        values[i] = 1.0f;
    sdt_dropout_args a = {.factor = 1.0f, .rank_p = 0.5f, .rank_key = stream_key(3, 4, 2)};
    sdt_engine *e = engine(t, SDT_DEVICE_CPU);
    if (e && run_op(t, e, got, values, &a) == 0)
        for (int b = 0; b < B; b++)
            for (int l = 1; l < L; l++)
                for (int r = 0; r < R; r++)
                    CHECK_MSG(t, got[(b * L + l) * R + r] == got[b * L * R + r],
                              "sample %d position %d rank %d", b, l, r);
    if (e)
        sdt_engine_free(e);
}

static void test_refusals(test_state *t)
{
    sdt_engine *e = engine(t, SDT_DEVICE_CPU);
    if (!e)
        return;
    uint16_t half[N] = {0};
    int64_t shape[3] = {B, L, R};
    sdt_tensor h = sdt_tensor_view(half, SDT_BF16, 3, shape);
    sdt_dropout_args a = {.factor = 1.0f, .p = 0.5f};
    CHECK(t, sdt_dropout_scale(e, &h, &a) == -1);
    CHECK_STR_CONTAINS(t, sdt_engine_error(e), "dropout_scale");
    float values[N] = {0};
    sdt_tensor x = sdt_tensor_view(values, SDT_F32, 3, shape);
    a.p = 1.0f;
    CHECK(t, sdt_dropout_scale(e, &x, &a) == -1);
    CHECK_STR_CONTAINS(t, sdt_engine_error(e), "[0, 1)");
    a.p = 0.0f;
    a.rank_p = -0.1f;
    CHECK(t, sdt_dropout_scale(e, &x, &a) == -1);
    sdt_engine_free(e);
}

TEST_MAIN("dropout_scale", TEST(test_matches_reference), TEST(test_rank_pattern), TEST(test_refusals))
