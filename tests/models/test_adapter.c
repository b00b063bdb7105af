/* Low-rank adapters (models/adapter.h) in the layer functions:
 * - a linear layer and convolutions (3x3 stride 1 and 2, 1x1) with an adapter give the base layer with the
 *   merged weight W + sdt_adapter_delta, and their gradients of down, up and the input equal finite
 *   differences, with the dropouts off and on (a fixed seed makes the masked function deterministic);
 * - up == 0 leaves the output bit for bit; enabled == 0 adds nothing and no adapter gradient;
 * - the masks: the same seed gives the same ones, another seed others, training == 0 none; the dropped
 *   fraction, the 1 / (1 - p) scale of kept values and the per-(sample, rank) pattern of rank dropout.
 * Whole networks with adapters: test_adapter_network.c. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "adapter.h"
#include "layers.h"
#include "models/adapter_fixture.h"
#include "models/gradcheck.h"
#include "unit/check.h"
#include "unit/test_engine.h"

#define GC_STEP (1.0 / 64.0)
#define GC_LIMIT 1e-3

/* ---- one adapted layer --------------------------------------------------------------------------- */

typedef struct layer_shape {
    const char *name;
    int is_conv;
    int64_t in, out; /* channels */
    int kernel, stride, pad;
    int rank;
} layer_shape;

static const layer_shape shapes[] = {
    {"linear 12 -> 10, rank 4", 0, 12, 10, 0, 0, 0, 4},
    {"conv 3x3 stride 1, 6 -> 8, rank 3", 1, 6, 8, 3, 1, 1, 3},
    {"conv 3x3 stride 2, 6 -> 8, rank 3", 1, 6, 8, 3, 2, 1, 3},
    {"conv 1x1, 6 -> 5, rank 2", 1, 6, 5, 1, 1, 0, 2},
};

typedef struct fixture {
    sdt_engine *e;
    const layer_shape *s;
    sdt_param_table table; /* "layer.weight", "layer.bias": frozen */
    sdt_linear linear;
    sdt_conv conv;
    sdt_param *weight;
    sdt_adapter a;
    sdt_tensor x, dx,
        dout; /* linear [2, 5, C], [2, 5, C], [2, 5, OC]; conv [2, 6, 6, C], ..., [2, OH, OW, OC] */
    uint64_t rng;
} fixture;

static void fixture_free(fixture *f)
{
    adapter_free(f->e, &f->a);
    sdt_act_free(f->e, &f->x);
    sdt_act_free(f->e, &f->dx);
    sdt_act_free(f->e, &f->dout);
    sdt_param_table_free(f->e, &f->table);
}

static int fixture_init(test_state *t, fixture *f, sdt_engine *e, const layer_shape *s, uint64_t seed)
{
    memset(f, 0, sizeof *f);
    f->e = e;
    f->s = s;
    f->rng = seed;
    char *error = NULL;
    sdt_param_table_init(&f->table, "test", "");
    int rc = s->is_conv ? sdt_param_add_conv(&f->table, "layer", s->out, s->in, s->kernel, s->kernel, 1)
                        : sdt_param_add_linear(&f->table, "layer", s->out, s->in, 1);
    if (rc != 0 || sdt_param_table_alloc(e, &f->table, SDT_F32, &error) != 0) {
        CHECK_MSG(t, 0, "%s: %s", s->name, error ? error : "cannot add the layer");
        free(error);
        return -1;
    }
    for (size_t i = 0; i < f->table.count; i++) {
        sdt_param *p = &f->table.items[i];
        gc_fill((float *)p->value.data, sdt_param_numel(p), 1.0f / sqrtf((float)p->fan_in), &f->rng);
    }
    rc = s->is_conv ? sdt_conv_bind(&f->conv, &f->table, "layer", s->stride, s->pad, &error)
                    : sdt_linear_bind(&f->linear, &f->table, "layer", &error);
    if (rc != 0) {
        CHECK_MSG(t, 0, "%s: %s", s->name, error);
        free(error);
        return -1;
    }
    f->weight = s->is_conv ? f->conv.weight : f->linear.weight;
    int64_t out_shape[4];
    int ndim;
    if (s->is_conv) {
        int64_t oh = (6 + 2 * s->pad - s->kernel) / s->stride + 1;
        rc =
            adapter_alloc(e, &f->a, 4, SDT_SHAPE(s->rank, s->kernel, s->kernel, s->in), s->out, 3, &f->rng) ||
            alloc_filled(e, &f->x, 4, SDT_SHAPE(2, 6, 6, s->in), 1.0f, &f->rng);
        memcpy(out_shape, SDT_SHAPE(2, oh, oh, s->out), sizeof out_shape);
        ndim = 4;
    } else {
        rc = adapter_alloc(e, &f->a, 2, SDT_SHAPE(s->rank, s->in), s->out, 3, &f->rng) ||
             alloc_filled(e, &f->x, 3, SDT_SHAPE(2, 5, s->in), 1.0f, &f->rng);
        memcpy(out_shape, SDT_SHAPE(2, 5, s->out, 0), sizeof out_shape);
        ndim = 3;
    }
    rc = rc || sdt_act_zeros_like(e, &f->dx, &f->x) != 0 ||
         alloc_filled(e, &f->dout, ndim, out_shape, 1.0f, &f->rng);
    CHECK_MSG(t, rc == 0, "%s: %s", s->name, sdt_engine_error(e));
    f->weight->adapter = &f->a;
    return rc ? -1 : 0;
}

static int layer_forward(void *self, sdt_tensor *out)
{
    fixture *f = self;
    return f->s->is_conv ? sdt_conv_fwd(f->e, &f->conv, out, &f->x)
                         : sdt_linear_fwd(f->e, &f->linear, out, &f->x);
}

static void layer_free_out(void *self, sdt_tensor *out) { sdt_act_free(((fixture *)self)->e, out); }

/* Zeroes the gradients, then dx, down_grad, up_grad += the backward of dout. */
static int layer_backward(fixture *f)
{
    if (sdt_fill(f->e, &f->dx, 0.0f) != 0 || sdt_fill(f->e, &f->a.down_grad, 0.0f) != 0 ||
        sdt_fill(f->e, &f->a.up_grad, 0.0f) != 0)
        return -1;
    return f->s->is_conv ? sdt_conv_bwd(f->e, &f->conv, &f->dx, &f->dout, &f->x)
                         : sdt_linear_bwd(f->e, &f->linear, &f->dx, &f->dout, &f->x);
}

/* A forward's output copied out (malloc'ed; NULL on failure, recorded in t). */
static float *forward_copy(test_state *t, fixture *f, int64_t *n)
{
    sdt_tensor out = {0};
    if (layer_forward(f, &out) != 0) {
        CHECK_MSG(t, 0, "%s: forward: %s", f->s->name, sdt_engine_error(f->e));
        return NULL;
    }
    *n = sdt_tensor_numel(&out);
    float *copy = malloc((size_t)*n * sizeof *copy);
    if (copy)
        memcpy(copy, out.data, (size_t)*n * sizeof *copy);
    sdt_act_free(f->e, &out);
    return copy;
}

/* ---- tests of one layer -------------------------------------------------------------------------- */

/* The adapted layer equals the base layer with W + delta (dropout off). */
static void test_merged_forward(test_state *t)
{
    sdt_engine *e = test_cpu_engine(t, 1);
    if (!e)
        return;
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        fixture f;
        int64_t n = 0, n2 = 0;
        float *adapted = NULL, *merged = NULL, *saved_weight = NULL;
        sdt_tensor delta = {0}; /* like the weight */
        if (fixture_init(t, &f, e, &shapes[k], 100 + k) != 0)
            goto next;
        adapted = forward_copy(t, &f, &n);
        saved_weight = clone(&f.weight->value);
        if (!adapted || !saved_weight || sdt_act_zeros_like(e, &delta, &f.weight->value) != 0 ||
            sdt_adapter_delta(e, &f.a, &delta) != 0 || sdt_axpy(e, &f.weight->value, 1.0f, &delta) != 0) {
            CHECK_MSG(t, 0, "%s: %s", shapes[k].name, sdt_engine_error(e));
            goto next;
        }
        f.weight->adapter = NULL;
        merged = forward_copy(t, &f, &n2);
        memcpy(f.weight->value.data, saved_weight, sdt_tensor_bytes(&f.weight->value));
        if (!merged)
            goto next;
        double worst = 0.0, largest = 0.0, delta_size = 0.0;
        for (int64_t i = 0; i < n; i++) {
            double d = fabs((double)adapted[i] - (double)merged[i]);
            worst = d > worst ? d : worst;
            largest = fabs((double)merged[i]) > largest ? fabs((double)merged[i]) : largest;
        }
        for (int64_t i = 0; i < sdt_tensor_numel(&delta); i++)
            delta_size += fabs((double)((float *)delta.data)[i]);
        printf("%-40s merged weight: max diff %.2e of %.2e\n", shapes[k].name, worst, largest);
        CHECK(t, n == n2);
        CHECK_MSG(t, worst <= 1e-5 * largest, "%s: %.3e", shapes[k].name, worst / largest);
        CHECK_MSG(t, delta_size > 1e-3, "%s: the delta is zero",
                  shapes[k].name); /* the test sees the adapter */
    next:
        free(adapted);
        free(merged);
        free(saved_weight);
        sdt_act_free(e, &delta);
        fixture_free(&f);
    }
    sdt_engine_free(e);
}

/* down, up and the input against finite differences, dropout off and on. */
static void test_gradients(test_state *t)
{
    sdt_engine *e = test_cpu_engine(t, 1);
    if (!e)
        return;
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        for (int dropout = 0; dropout < 2; dropout++) {
            fixture f;
            if (fixture_init(t, &f, e, &shapes[k], 200 + k) != 0) {
                fixture_free(&f);
                continue;
            }
            f.a.training = dropout;
            if (layer_backward(&f) != 0) {
                CHECK_MSG(t, 0, "%s: backward: %s", shapes[k].name, sdt_engine_error(e));
                fixture_free(&f);
                continue;
            }
            gc_model m = {
                .e = e, .self = &f, .forward = layer_forward, .free_out = layer_free_out, .w = f.dout.data};
            struct {
                const char *what;
                sdt_tensor *value, *grad;
            } items[] = {
                {"down", &f.a.down, &f.a.down_grad}, {"up", &f.a.up, &f.a.up_grad}, {"input", &f.x, &f.dx}};
            for (size_t i = 0; i < 3; i++) {
                char what[128];
                snprintf(what, sizeof what, "%s, dropout %s: %s", shapes[k].name, dropout ? "on" : "off",
                         items[i].what);
                double score = gc_check(&m, what, items[i].value->data, items[i].grad->data,
                                        sdt_tensor_numel(items[i].value), GC_STEP, GC_LIMIT, 7 + i);
                CHECK_MSG(t, score <= 1.0, "%s", what);
                CHECK_MSG(t, !all_zero(items[i].grad), "%s: zero gradient", what);
            }
            fixture_free(&f);
        }
    }
    sdt_engine_free(e);
}

/* up == 0 and enabled == 0 leave the base layer bit for bit; a disabled adapter gets no gradient. */
static void test_identity(test_state *t)
{
    sdt_engine *e = test_cpu_engine(t, 1);
    if (!e)
        return;
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        fixture f;
        int64_t n = 0;
        float *base = NULL, *zero_up = NULL, *disabled = NULL, *base_dx = NULL;
        if (fixture_init(t, &f, e, &shapes[k], 300 + k) != 0)
            goto next;
        f.a.training = 1;
        f.weight->adapter = NULL;
        base = forward_copy(t, &f, &n);
        if (!base || layer_backward(&f) != 0 || !(base_dx = clone(&f.dx)))
            goto next;
        f.weight->adapter = &f.a;
        float *up = f.a.up.data;
        float *saved_up = clone(&f.a.up);
        memset(up, 0, sdt_tensor_bytes(&f.a.up));
        zero_up = forward_copy(t, &f, &n);
        memcpy(up, saved_up, sdt_tensor_bytes(&f.a.up));
        free(saved_up);
        f.a.enabled = 0;
        disabled = forward_copy(t, &f, &n);
        if (!zero_up || !disabled)
            goto next;
        CHECK_MSG(t, count_different(zero_up, base, n) == 0, "%s: up == 0 changed the output",
                  shapes[k].name);
        CHECK_MSG(t, count_different(disabled, base, n) == 0, "%s: disabled adapter changed the output",
                  shapes[k].name);
        CHECK(t, layer_backward(&f) == 0);
        CHECK_MSG(t, all_zero(&f.a.down_grad) && all_zero(&f.a.up_grad), "%s: disabled adapter got gradients",
                  shapes[k].name);
        CHECK_MSG(t, count_different(f.dx.data, base_dx, sdt_tensor_numel(&f.dx)) == 0,
                  "%s: disabled adapter changed the input gradient", shapes[k].name);
        f.a.enabled = 1; /* ... and enabled again it does change both */
        CHECK(t, layer_backward(&f) == 0);
        CHECK(t, !all_zero(&f.a.up_grad) && count_different(f.dx.data, base_dx, sdt_tensor_numel(&f.dx)) > 0);
    next:
        free(base);
        free(base_dx);
        free(zero_up);
        free(disabled);
        fixture_free(&f);
    }
    sdt_engine_free(e);
}

/* The masks, seen through a layer whose output is the masked down(x) itself: base weight and bias 0,
 * up = I, multiplier * scale = 1. */
static void test_masks(test_state *t)
{
    sdt_engine *e = test_cpu_engine(t, 1);
    if (!e)
        return;
    static const layer_shape square = {"linear 8 -> 8, rank 8", 0, 8, 8, 0, 0, 0, 8};
    fixture f;
    int64_t n = 0;
    float *plain = NULL, *first = NULL, *again = NULL, *other = NULL, *inference = NULL, *ranked = NULL;
    if (fixture_init(t, &f, e, &square, 400) != 0)
        goto done;
    /* 2 samples x 5 positions are too few to count; a longer input. */
    sdt_act_free(e, &f.x);
    if (alloc_filled(e, &f.x, 3, SDT_SHAPE(4, 64, 8), 1.0f, &f.rng) != 0)
        goto done;
    memset(f.weight->value.data, 0, sdt_tensor_bytes(&f.weight->value));
    memset(f.linear.bias->value.data, 0, sdt_tensor_bytes(&f.linear.bias->value));
    float *up = f.a.up.data;
    memset(up, 0, sdt_tensor_bytes(&f.a.up));
    for (int r = 0; r < 8; r++)
        up[r * 8 + r] = 1.0f;
    f.a.scale = 1.0f;
    f.a.multiplier = 1.0f;
    f.a.dropout = 0.5f;
    f.a.rank_dropout = 0.0f;
    f.a.training = 0;
    plain = forward_copy(t, &f, &n); /* down(x) */
    f.a.training = 1;
    first = forward_copy(t, &f, &n);
    again = forward_copy(t, &f, &n);
    f.a.seed++;
    other = forward_copy(t, &f, &n);
    f.a.seed--;
    f.a.training = 0;
    inference = forward_copy(t, &f, &n);
    if (!plain || !first || !again || !other || !inference)
        goto done;
    CHECK_MSG(t, count_different(first, again, n) == 0, "the same seed gave other masks");
    size_t changed = count_different(first, other, n);
    CHECK_MSG(t, changed > (size_t)n / 4, "another seed changed only %zu of %lld values", changed,
              (long long)n);
    CHECK_MSG(t, count_different(inference, plain, n) == 0, "training == 0 still dropped values");
    int64_t dropped = 0, wrong = 0;
    for (int64_t i = 0; i < n; i++) {
        if (first[i] == 0.0f)
            dropped++;
        else if (fabsf(first[i] - 2.0f * plain[i]) > 1e-6f * fabsf(plain[i]))
            wrong++; /* kept values are scaled by 1 / (1 - 0.5) */
    }
    printf("network dropout 0.5: %lld of %lld dropped, %lld kept values mis-scaled\n", (long long)dropped,
           (long long)n, (long long)wrong);
    CHECK(t, dropped > n * 45 / 100 && dropped < n * 55 / 100);
    CHECK(t, wrong == 0);

    /* Rank dropout: one draw per (sample, rank channel), the same at every position of the sample. */
    f.a.dropout = 0.0f;
    f.a.rank_dropout = 0.5f;
    f.a.training = 1;
    ranked = forward_copy(t, &f, &n);
    if (!ranked)
        goto done;
    int64_t inconsistent = 0, dropped_cells = 0;
    for (int b = 0; b < 4; b++)
        for (int r = 0; r < 8; r++) {
            int cell_dropped = ranked[(b * 64) * 8 + r] == 0.0f;
            dropped_cells += cell_dropped;
            for (int l = 0; l < 64; l++) {
                float v = ranked[(b * 64 + l) * 8 + r],
                      want = cell_dropped ? 0.0f : 2.0f * plain[(b * 64 + l) * 8 + r];
                inconsistent += fabsf(v - want) > 1e-6f * fabsf(want);
            }
        }
    printf("rank dropout 0.5: %lld of 32 (sample, rank) cells dropped, %lld values off the pattern\n",
           (long long)dropped_cells, (long long)inconsistent);
    CHECK(t, inconsistent == 0);
    CHECK(t, dropped_cells >= 6 && dropped_cells <= 26);
done:
    free(plain);
    free(first);
    free(again);
    free(other);
    free(inference);
    free(ranked);
    fixture_free(&f);
    sdt_engine_free(e);
}

TEST_MAIN("adapter", TEST(test_merged_forward), TEST(test_gradients), TEST(test_identity), TEST(test_masks))
