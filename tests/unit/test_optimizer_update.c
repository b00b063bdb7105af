/* The optimizer_update op on the CPU backend: AdamW, Lion and SGD over lists of tensors of different sizes
 * against reference loops written here from the published update rules, the stochastic rounding of the
 * low-precision copies (deterministic for a seed, unbiased over seeds, exact for representable values),
 * and the checks that refuse a malformed list. */
#include "../splitmix64.h"
#include "backend.h"
#include "check.h"
#include "sdtune/dtype.h"
#include "stochastic_round.h"

#include <math.h>
#include <stdint.h>

enum { TENSORS = 3 };
/* One small, one odd and one large enough for the threaded path. */
static const int64_t sizes[TENSORS] = {1, 37, 70001};

typedef struct list {
    float *param[TENSORS], *grad[TENSORS], *m[TENSORS], *v[TENSORS];
    uint16_t *copy[TENSORS];
    sdt_tensor params[TENSORS], grads[TENSORS], ms[TENSORS], vs[TENSORS], copies[TENSORS];
} list;

static float uniform(uint64_t *s)
{
    return (float)((double)(splitmix64_next(s) >> 11) / 4503599627370496.0 - 1.0);
}

static float *filled(uint64_t *s, int64_t n, float lo_abs)
{
    float *a = malloc((size_t)n * sizeof *a);
    for (int64_t i = 0; i < n; i++)
        a[i] = uniform(s) + (lo_abs > 0 ? lo_abs + 1.0f : 0.0f); /* lo_abs > 0: positive (second moments) */
    return a;
}

static sdt_tensor view(void *data, sdt_dtype dtype, int64_t n) { return sdt_tensor_view(data, dtype, 1, &n); }

static void list_make(list *l, uint64_t seed, sdt_dtype copy_dtype)
{
    uint64_t s = seed;
    for (int t = 0; t < TENSORS; t++) {
        int64_t n = sizes[t];
        l->param[t] = filled(&s, n, 0);
        l->grad[t] = filled(&s, n, 0);
        l->m[t] = filled(&s, n, 0);
        l->v[t] = filled(&s, n, 1e-3f);
        l->copy[t] = calloc((size_t)n, sizeof(uint16_t));
        l->params[t] = view(l->param[t], SDT_F32, n);
        l->grads[t] = view(l->grad[t], SDT_F32, n);
        l->ms[t] = view(l->m[t], SDT_F32, n);
        l->vs[t] = view(l->v[t], SDT_F32, n);
        l->copies[t] = view(l->copy[t], copy_dtype, n);
    }
}

static void list_free(list *l)
{
    for (int t = 0; t < TENSORS; t++) {
        free(l->param[t]);
        free(l->grad[t]);
        free(l->m[t]);
        free(l->v[t]);
        free(l->copy[t]);
    }
}

static sdt_engine *cpu_engine(void)
{
    sdt_engine_options o = {.device = SDT_DEVICE_CPU};
    sdt_engine *e = NULL;
    char *error = NULL;
    if (sdt_engine_create(&o, &e, &error) != 0) {
        fprintf(stderr, "engine: %s\n", error);
        exit(1);
    }
    return e;
}

static sdt_optimizer_update_args args_for(list *l, sdt_optimizer_update_kind kind)
{
    sdt_optimizer_update_args a;
    memset(&a, 0, sizeof a);
    a.kind = kind;
    a.count = TENSORS;
    a.params = l->params;
    a.grads = l->grads;
    a.state[0] = l->ms;
    a.state[1] = l->vs;
    return a;
}

static int same_bits(const float *a, const float *b, int64_t n)
{
    return memcmp(a, b, (size_t)n * sizeof *a) == 0;
}

/* AdamW as torch.optim.AdamW's single-tensor loop writes it, with lr 1e-3, betas (0.9, 0.999), eps 1e-8,
 * weight decay 0.01 at step 3. */
static void adamw_matches_reference(test_state *t)
{
    const double lr = 1e-3, wd = 0.01, beta1 = 0.9, beta2 = 0.999;
    const int64_t step = 3;
    list op, ref;
    list_make(&op, 11, SDT_BF16);
    list_make(&ref, 11, SDT_BF16);
    sdt_optimizer_update_args a = args_for(&op, SDT_UPDATE_ADAMW);
    a.decay = (float)(1.0 - lr * wd);
    a.b1 = (float)beta1;
    a.one_b1 = (float)(1.0 - beta1);
    a.b2 = (float)beta2;
    a.one_b2 = (float)(1.0 - beta2);
    a.step_size = (float)(-lr / (1.0 - pow(beta1, (double)step)));
    a.bc2_sqrt = (float)sqrt(1.0 - pow(beta2, (double)step));
    a.eps = 1e-8f;
    sdt_engine *e = cpu_engine();
    CHECK_MSG(t, sdt_optimizer_update(e, &a) == 0, "%s", sdt_engine_error(e));
    for (int k = 0; k < TENSORS; k++) {
        for (int64_t i = 0; i < sizes[k]; i++) {
            float *p = &ref.param[k][i], g = ref.grad[k][i], *m = &ref.m[k][i], *v = &ref.v[k][i];
            *p = *p * a.decay;
            *m = *m * a.b1 + a.one_b1 * g;
            *v = *v * a.b2 + a.one_b2 * g * g;
            *p = *p + a.step_size * (*m / (sqrtf(*v) / a.bc2_sqrt + a.eps));
        }
        CHECK_MSG(t, same_bits(op.param[k], ref.param[k], sizes[k]), "tensor %d: parameters", k);
        CHECK_MSG(t, same_bits(op.m[k], ref.m[k], sizes[k]), "tensor %d: exp_avg", k);
        CHECK_MSG(t, same_bits(op.v[k], ref.v[k], sizes[k]), "tensor %d: exp_avg_sq", k);
    }
    sdt_engine_free(e);
    list_free(&op);
    list_free(&ref);
}

static float sign_of(float x) { return x > 0 ? 1.0f : x < 0 ? -1.0f : 0.0f; }

/* Lion (lion-pytorch) with lr 1e-4, betas (0.9, 0.99), weight decay 0.1. */
static void lion_matches_reference(test_state *t)
{
    const double lr = 1e-4, wd = 0.1;
    list op, ref;
    list_make(&op, 12, SDT_BF16);
    list_make(&ref, 12, SDT_BF16);
    sdt_optimizer_update_args a = args_for(&op, SDT_UPDATE_LION);
    a.state[1] = NULL;
    a.decay = (float)(1.0 - lr * wd);
    a.neg_lr = (float)-lr;
    a.b1 = 0.9f;
    a.one_b1 = (float)(1.0 - 0.9);
    a.b2 = 0.99f;
    a.one_b2 = (float)(1.0 - 0.99);
    sdt_engine *e = cpu_engine();
    CHECK_MSG(t, sdt_optimizer_update(e, &a) == 0, "%s", sdt_engine_error(e));
    for (int k = 0; k < TENSORS; k++) {
        for (int64_t i = 0; i < sizes[k]; i++) {
            float *p = &ref.param[k][i], g = ref.grad[k][i], *m = &ref.m[k][i];
            float direction = sign_of(*m * a.b1 + a.one_b1 * g);
            *p = *p * a.decay + a.neg_lr * direction;
            *m = *m * a.b2 + a.one_b2 * g;
        }
        CHECK_MSG(t, same_bits(op.param[k], ref.param[k], sizes[k]), "tensor %d: parameters", k);
        CHECK_MSG(t, same_bits(op.m[k], ref.m[k], sizes[k]), "tensor %d: exp_avg", k);
    }
    sdt_engine_free(e);
    list_free(&op);
    list_free(&ref);
}

/* SGD with Nesterov momentum and weight decay, a first step then a second (the buffer's two rules). */
static void sgd_matches_reference(test_state *t)
{
    list op, ref;
    list_make(&op, 13, SDT_BF16);
    list_make(&ref, 13, SDT_BF16);
    sdt_optimizer_update_args a = args_for(&op, SDT_UPDATE_SGD);
    a.state[1] = NULL;
    a.neg_lr = -0.01f;
    a.weight_decay = 1e-4f;
    a.momentum = 0.9f;
    a.one_dampening = 1.0f;
    a.use_weight_decay = a.use_momentum = a.nesterov = 1;
    sdt_engine *e = cpu_engine();
    for (int step = 1; step <= 2; step++) {
        a.first_step = step == 1;
        CHECK_MSG(t, sdt_optimizer_update(e, &a) == 0, "%s", sdt_engine_error(e));
        for (int k = 0; k < TENSORS; k++)
            for (int64_t i = 0; i < sizes[k]; i++) {
                float *p = &ref.param[k][i], *b = &ref.m[k][i];
                float d = fmaf(a.weight_decay, *p, ref.grad[k][i]);
                *b = step == 1 ? d : fmaf(1.0f, d, *b * a.momentum);
                *p = fmaf(a.neg_lr, fmaf(a.momentum, *b, d), *p);
            }
    }
    for (int k = 0; k < TENSORS; k++) {
        CHECK_MSG(t, same_bits(op.param[k], ref.param[k], sizes[k]), "tensor %d: parameters", k);
        CHECK_MSG(t, same_bits(op.m[k], ref.m[k], sizes[k]), "tensor %d: momentum", k);
    }
    sdt_engine_free(e);
    list_free(&op);
    list_free(&ref);
}

/* Runs an update that leaves the masters as they are (SGD, lr 0) and writes the copies. */
static void write_copies(sdt_engine *e, list *l, uint64_t seed, int64_t step)
{
    sdt_optimizer_update_args a = args_for(l, SDT_UPDATE_SGD);
    a.state[0] = a.state[1] = NULL;
    a.neg_lr = 0.0f;
    a.seed = seed;
    a.step = step;
    a.copies = l->copies;
    if (sdt_optimizer_update(e, &a) != 0) {
        fprintf(stderr, "update: %s\n", sdt_engine_error(e));
        exit(1);
    }
}

/* The same seed and step give the same copy; another seed or step gives another one. */
static void rounding_is_deterministic(test_state *t)
{
    sdt_engine *e = cpu_engine();
    for (int bf16 = 0; bf16 <= 1; bf16++) {
        list a, b;
        list_make(&a, 21, bf16 ? SDT_BF16 : SDT_F16);
        list_make(&b, 21, bf16 ? SDT_BF16 : SDT_F16);
        const int k = TENSORS - 1;
        const size_t bytes = (size_t)sizes[k] * sizeof(uint16_t);
        write_copies(e, &a, 5, 7);
        write_copies(e, &b, 5, 7);
        CHECK_MSG(t, memcmp(a.copy[k], b.copy[k], bytes) == 0, "bf16 %d: same seed, other bits", bf16);
        write_copies(e, &b, 6, 7);
        CHECK_MSG(t, memcmp(a.copy[k], b.copy[k], bytes) != 0, "bf16 %d: another seed, same bits", bf16);
        write_copies(e, &b, 5, 8);
        CHECK_MSG(t, memcmp(a.copy[k], b.copy[k], bytes) != 0, "bf16 %d: another step, same bits", bf16);
        /* every copy is one of the two neighbours of its master */
        int neighbours = 1;
        for (int64_t i = 0; i < sizes[k]; i++) {
            float x = a.param[k][i];
            float c = bf16 ? sdt_bf16_to_f32(a.copy[k][i]) : sdt_f16_to_f32(a.copy[k][i]);
            float nearest = bf16 ? sdt_bf16_to_f32(sdt_f32_to_bf16(x)) : sdt_f16_to_f32(sdt_f32_to_f16(x));
            float ulp = fabsf(x) * (bf16 ? 1.0f / 128 : 1.0f / 1024) + 1e-7f;
            neighbours &= fabsf(c - x) <= ulp && fabsf(c - nearest) <= ulp;
        }
        CHECK_MSG(t, neighbours, "bf16 %d: a copy that is not a neighbour of its master", bf16);
        list_free(&a);
        list_free(&b);
    }
    sdt_engine_free(e);
}

/* A value the narrow type holds exactly comes back exactly, whatever the random bits. */
static void rounding_keeps_representable_values(test_state *t)
{
    const float exact[] = {0.0f, -0.0f, 1.0f, -2.5f, 0.15625f, 3.0e-5f /* f16 subnormal range */};
    for (size_t v = 0; v < sizeof exact / sizeof exact[0]; v++) {
        float b = sdt_bf16_to_f32(sdt_f32_to_bf16(exact[v])); /* held by bf16 */
        float h = sdt_f16_to_f32(sdt_f32_to_f16(exact[v]));   /* held by f16 */
        for (uint32_t r = 0; r < 65536; r += 257) {
            CHECK_MSG(t, sdt_sr_bf16(b, r) == sdt_f32_to_bf16(b), "bf16 %g, bits %u", (double)b, r);
            CHECK_MSG(t, sdt_sr_f16(h, r) == sdt_f32_to_f16(h), "f16 %g, bits %u", (double)h, r);
        }
    }
    CHECK(t, sdt_sr_bf16(INFINITY, 65535) == sdt_f32_to_bf16(INFINITY));
    CHECK(t, sdt_sr_f16(-INFINITY, 65535) == sdt_f32_to_f16(-INFINITY));
    CHECK(t, isnan(sdt_bf16_to_f32(sdt_sr_bf16(NAN, 3))));
    CHECK(t, isnan(sdt_f16_to_f32(sdt_sr_f16(NAN, 3))));
}

/* Over many seeds the mean of the copies is the master value (nearest-even rounding would be off by the
 * whole distance to the nearer neighbour): normal values, an f16 subnormal and one under f16's step. */
static void rounding_is_unbiased(test_state *t)
{
    const float values[] = {1.0f + 1.0f / 384, -3.3f, 7.7e-6f, 2.0e-8f};
    const int draws = 20000;
    for (size_t v = 0; v < sizeof values / sizeof values[0]; v++)
        for (int bf16 = 0; bf16 <= 1; bf16++) {
            const float x = values[v];
            double sum = 0;
            for (int s = 0; s < draws; s++) {
                uint32_t r = sdt_sr_bits((uint64_t)s, 1, 0, 0);
                sum += bf16 ? sdt_bf16_to_f32(sdt_sr_bf16(x, r)) : sdt_f16_to_f32(sdt_sr_f16(x, r));
            }
            double mean = sum / draws;
            float nearest = bf16 ? sdt_bf16_to_f32(sdt_f32_to_bf16(x)) : sdt_f16_to_f32(sdt_f32_to_f16(x));
            /* the two neighbours are the copies with no noise and with all of it */
            float low = bf16 ? sdt_bf16_to_f32(sdt_sr_bf16(x, 0)) : sdt_f16_to_f32(sdt_sr_f16(x, 0));
            float high = bf16 ? sdt_bf16_to_f32(sdt_sr_bf16(x, 65535)) : sdt_f16_to_f32(sdt_sr_f16(x, 65535));
            double gap = fabs((double)high - low);
            CHECK_MSG(t, gap > 0, "%g: one neighbour only", (double)x);
            /* the spread of a two-point draw is at most half the gap: 5 sigma of the mean */
            double tolerance = 5 * 0.5 * gap / sqrt((double)draws);
            CHECK_MSG(t, fabs(mean - x) <= tolerance, "%s %g: mean %.9g, off by %g (tolerance %g)",
                      bf16 ? "bf16" : "f16", (double)x, mean, fabs(mean - x), tolerance);
            if (nearest != x)
                CHECK_MSG(t, fabs(mean - x) < fabs((double)nearest - x) / 4, "%g: as biased as nearest",
                          (double)x);
        }
}

/* Half parameters without a master (full_bf16 / full_fp16): a BF16/F16 weight updated in place equals
 * the stochastically rounded copy of an F32 master that starts at the same value and takes the same
 * update, bit for bit, for AdamW, Lion and SGD, with F32 and with half gradients (widened exactly). */
static void half_params_equal_rounded_masters(test_state *t)
{
    static const sdt_optimizer_update_kind kinds[] = {SDT_UPDATE_ADAMW, SDT_UPDATE_LION, SDT_UPDATE_SGD};
    sdt_engine *e = cpu_engine();
    for (int bf16 = 0; bf16 <= 1; bf16++)
        for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
            for (int half_grads = 0; half_grads <= 1; half_grads++) {
                const sdt_dtype half = bf16 ? SDT_BF16 : SDT_F16;
                list master, direct;
                list_make(&master, 41, half);
                list_make(&direct, 41, half);
                uint16_t *weights[TENSORS], *grads[TENSORS]; /* [sizes[i]] half bits each */
                sdt_tensor weight_views[TENSORS], grad_views[TENSORS];
                for (int i = 0; i < TENSORS; i++) {
                    int64_t n = sizes[i];
                    weights[i] = malloc((size_t)n * sizeof(uint16_t));
                    grads[i] = malloc((size_t)n * sizeof(uint16_t));
                    /* both lists start from values the half type holds: the master is the widened weight */
                    sdt_convert(weights[i], half, master.param[i], SDT_F32, (size_t)n);
                    sdt_convert(master.param[i], SDT_F32, weights[i], half, (size_t)n);
                    sdt_convert(grads[i], half, master.grad[i], SDT_F32, (size_t)n);
                    if (half_grads)
                        sdt_convert(master.grad[i], SDT_F32, grads[i], half, (size_t)n);
                    weight_views[i] = view(weights[i], half, n);
                    grad_views[i] = view(grads[i], half, n);
                }
                sdt_optimizer_update_args a = args_for(&master, kinds[k]);
                a.decay = 0.99f;
                a.b1 = 0.9f;
                a.one_b1 = 0.1f;
                a.b2 = 0.99f;
                a.one_b2 = 0.01f;
                a.step_size = -1e-3f;
                a.bc2_sqrt = 0.1f;
                a.eps = 1e-8f;
                a.neg_lr = -1e-3f;
                a.weight_decay = 1e-2f;
                a.momentum = 0.9f;
                a.one_dampening = 1.0f;
                a.use_weight_decay = a.use_momentum = a.nesterov = 1;
                a.first_step = 1;
                a.seed = 99;
                a.step = 4;
                a.copies = master.copies;
                int ok = sdt_optimizer_update(e, &a) == 0;
                sdt_optimizer_update_args b = a;
                b.params = weight_views;
                b.grads = half_grads ? grad_views : direct.grads;
                b.state[0] = direct.ms;
                b.state[1] = direct.vs;
                b.copies = NULL;
                if (!half_grads)
                    for (int i = 0; i < TENSORS; i++)
                        memcpy(direct.grad[i], master.grad[i], (size_t)sizes[i] * sizeof(float));
                ok = ok && sdt_optimizer_update(e, &b) == 0;
                CHECK_MSG(t, ok, "update: %s", sdt_engine_error(e));
                for (int i = 0; ok && i < TENSORS; i++) {
                    CHECK_MSG(t, memcmp(weights[i], master.copy[i], (size_t)sizes[i] * sizeof(uint16_t)) == 0,
                              "%s kind %d grads %s, tensor %d: the weight is not the master's copy",
                              bf16 ? "bf16" : "f16", (int)kinds[k], half_grads ? "half" : "f32", i);
                    CHECK_MSG(t, same_bits(direct.m[i], master.m[i], sizes[i]), "tensor %d: other state", i);
                }
                for (int i = 0; i < TENSORS; i++) {
                    free(weights[i]);
                    free(grads[i]);
                }
                list_free(&master);
                list_free(&direct);
            }
    sdt_engine_free(e);
}

/* The point of the stochastic rounding: SGD steps far below half a bf16 unit (1 - 2^-13 rounds back to 1
 * to nearest every time) still move a bf16 weight by the right amount on average. */
static void half_params_keep_small_updates(test_state *t)
{
    sdt_engine *e = cpu_engine();
    enum { N = 50000, STEPS = 8 };
    const float grad = 1.0f, lr = 1.0f / 8192; /* 2^-13 per step: 1/32 of bf16's unit just below 1 (2^-8) */
    uint16_t *w = malloc(N * sizeof *w);
    float *g = malloc(N * sizeof *g);
    for (int i = 0; i < N; i++) {
        w[i] = sdt_f32_to_bf16(1.0f);
        g[i] = grad;
    }
    sdt_tensor wv = view(w, SDT_BF16, N), gv = view(g, SDT_F32, N);
    sdt_optimizer_update_args a;
    memset(&a, 0, sizeof a);
    a.kind = SDT_UPDATE_SGD;
    a.neg_lr = -lr;
    a.count = 1;
    a.params = &wv;
    a.grads = &gv;
    a.seed = 3;
    for (int s = 1; s <= STEPS; s++) {
        a.step = s;
        CHECK_MSG(t, sdt_optimizer_update(e, &a) == 0, "%s", sdt_engine_error(e));
    }
    double mean = 0;
    for (int i = 0; i < N; i++)
        mean += sdt_bf16_to_f32(w[i]);
    mean /= N;
    const double want = 1.0 - STEPS * (double)lr * grad; /* 0.99902 */
    /* each step's rounding is a two-point draw a unit (2^-8) apart: a spread of at most 2^-9; 5 sigma of
     * the mean of N weights after STEPS independent roundings */
    const double tolerance = 5 * (1.0 / 512) * sqrt((double)STEPS) / sqrt((double)N);
    CHECK_MSG(t, fabs(mean - want) <= tolerance, "mean %.8f, want %.8f (tolerance %.2g)", mean, want,
              tolerance);
    free(w);
    free(g);
    sdt_engine_free(e);
}

/* Malformed lists fail with a message naming the tensor; nothing is written. */
static void malformed_lists_are_refused(test_state *t)
{
    sdt_engine *e = cpu_engine();
    list l;
    list_make(&l, 31, SDT_F32);
    float before = l.param[1][0];
    sdt_optimizer_update_args a = args_for(&l, SDT_UPDATE_ADAMW);
    a.copies = l.copies; /* f32 copies */
    CHECK(t, sdt_optimizer_update(e, &a) != 0);
    CHECK_STR_CONTAINS(t, sdt_engine_error(e), "copy 0");
    a.copies = NULL;
    a.state[1] = NULL;
    CHECK(t, sdt_optimizer_update(e, &a) != 0);
    CHECK_STR_CONTAINS(t, sdt_engine_error(e), "state buffer 2");
    a.state[1] = l.vs;
    l.grads[1].shape[0] = 36;
    CHECK(t, sdt_optimizer_update(e, &a) != 0);
    CHECK_STR_CONTAINS(t, sdt_engine_error(e), "gradient 1");
    l.grads[1].shape[0] = 37;
    l.ms[2].dtype = SDT_BF16;
    CHECK(t, sdt_optimizer_update(e, &a) != 0);
    CHECK_STR_CONTAINS(t, sdt_engine_error(e), "state 1 of tensor 2");
    CHECK(t, l.param[1][0] == before);
    /* a half parameter is updated in place: it takes no copy */
    l.ms[2].dtype = SDT_F32;
    uint16_t half_weight[37] = {0};
    sdt_tensor saved = l.params[1];
    l.params[1] = view(half_weight, SDT_BF16, 37);
    a.copies = l.copies;
    for (int i = 0; i < TENSORS; i++)
        l.copies[i].dtype = SDT_BF16;
    CHECK(t, sdt_optimizer_update(e, &a) != 0);
    CHECK_STR_CONTAINS(t, sdt_engine_error(e), "parameter 1");
    CHECK_STR_CONTAINS(t, sdt_engine_error(e), "takes no copy");
    l.params[1] = saved;
    list_free(&l);
    sdt_engine_free(e);
}

TEST_MAIN("optimizer_update", TEST(adamw_matches_reference), TEST(lion_matches_reference),
          TEST(sgd_matches_reference), TEST(rounding_is_deterministic),
          TEST(rounding_keeps_representable_values), TEST(rounding_is_unbiased),
          TEST(half_params_equal_rounded_masters), TEST(half_params_keep_small_updates),
          TEST(malformed_lists_are_refused))
