/* AdamW8bit, Adafactor and Prodigy against their references (tests/data/train/optim_reference_more.json,
 * made by tools/train/make_optim_fixtures.py): Adafactor from transformers and Prodigy from prodigyopt
 * over 20 steps in two groups with changing learning rates, the options given as kohya's optimizer_args;
 * AdamW8bit from a numpy reimplementation of bitsandbytes' block-wise algorithm on hash-made tensors. Then
 * state export/import continuing bit for bit, and AdamW8bit tracking F32 AdamW on a quadratic. */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optim.h"
#include "unit/check.h"

static test_state state;
#define EXPECT(cond, ...) CHECK_MSG(&state, cond, __VA_ARGS__)

/* One optimizer over two tensors (one per group) with its configuration from a fixture case. */
typedef struct run {
    sdt_optimizer opt;
    float *value[2], *grad[2]; /* [n[g]] */
    size_t n[2];
} run;

static sdt_optim_kind kind_of(const char *kind)
{
    return strcmp(kind, "adafactor") == 0 ? SDT_OPTIM_ADAFACTOR
           : strcmp(kind, "prodigy") == 0 ? SDT_OPTIM_PRODIGY
                                          : SDT_OPTIM_ADAMW8BIT;
}

/* The same values as hash_floats in the fixture script: uniform [-1, 1), exact in F32. */
static void hash_floats(uint64_t seed, float *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t x = ((uint64_t)i * 2654435761u + seed * 97531u) & 0xFFFFFFFFu;
        x ^= x >> 15;
        x = (x * 2246822519u) & 0xFFFFFFFFu;
        x ^= x >> 13;
        out[i] = (float)(((double)(x >> 8) / 16777216.0 - 0.5) * 2.0);
    }
}

static void run_init(run *r, json_t *c)
{
    memset(r, 0, sizeof *r);
    sdt_optim_config cfg;
    sdt_optim_config_default(&cfg, kind_of(json_string_value(json_object_get(c, "kind"))));
    json_t *args = json_object_get(c, "args");
    const char *list[16];
    size_t count = json_array_size(args);
    for (size_t i = 0; i < count && i < 16; i++)
        list[i] = json_string_value(json_array_get(args, i));
    char *error = NULL;
    EXPECT(sdt_optim_apply_args(&cfg, list, count, &error) == 0, "args: %s", error ? error : "");
    free(error);
    error = NULL;
    EXPECT(sdt_optim_init(&r->opt, &cfg, 2, &error) == 0, "init: %s", error ? error : "");
    free(error);
    json_t *initial = json_object_get(c, "initial"), *shapes = json_object_get(c, "shapes");
    for (int g = 0; g < 2; g++) {
        if (initial) {
            json_t *a = json_array_get(initial, (size_t)g);
            r->n[g] = json_array_size(a);
        } else {
            r->n[g] = (size_t)json_integer_value(json_array_get(json_object_get(c, "sizes"), (size_t)g));
        }
        r->value[g] = calloc(r->n[g], sizeof(float));
        r->grad[g] = calloc(r->n[g], sizeof(float));
        if (initial)
            for (size_t i = 0; i < r->n[g]; i++)
                r->value[g][i] =
                    (float)json_number_value(json_array_get(json_array_get(initial, (size_t)g), i));
        else
            hash_floats(99 + 7 * (uint64_t)g, r->value[g], r->n[g]);
        const char *name = g == 0 ? "unet.w" : "text_encoder.w";
        error = NULL;
        EXPECT(sdt_optim_add(&r->opt, name, r->value[g], r->grad[g], r->n[g], g, &error) == 0, "add: %s",
               error ? error : "");
        free(error);
        if (shapes) {
            json_t *shape = json_array_get(shapes, (size_t)g);
            int64_t dims[8];
            int ndim = (int)json_array_size(shape);
            for (int d = 0; d < ndim && d < 8; d++)
                dims[d] = json_integer_value(json_array_get(shape, (size_t)d));
            error = NULL;
            EXPECT(sdt_optim_set_shape(&r->opt, name, ndim, dims, &error) == 0, "shape: %s",
                   error ? error : "");
            free(error);
        }
    }
}

static void run_free(run *r)
{
    sdt_optim_free(&r->opt);
    for (int g = 0; g < 2; g++) {
        free(r->value[g]);
        free(r->grad[g]);
    }
}

static void run_step(run *r, json_t *c, size_t s)
{
    json_t *step = json_array_get(json_object_get(c, "steps"), s);
    for (int g = 0; g < 2; g++) {
        json_t *grads = json_array_get(json_object_get(step, "grads"), (size_t)g);
        if (grads)
            for (size_t i = 0; i < r->n[g]; i++)
                r->grad[g][i] = (float)json_number_value(json_array_get(grads, i));
        else
            hash_floats(1000 * (s + 1) + 7 * (uint64_t)g + 1, r->grad[g], r->n[g]);
        sdt_optim_set_lr(&r->opt, g,
                         json_number_value(json_array_get(json_object_get(step, "lrs"), (size_t)g)), NULL);
    }
    char *error = NULL;
    EXPECT(sdt_optim_step(&r->opt, &error) == 0, "step: %s", error ? error : "");
    free(error);
}

/* Relative error, measured against at least `floor` (values crossing zero). */
static double rel_error(double got, double want, double floor)
{
    return fabs(got - want) / fmax(fabs(want), floor);
}

static void test_reference_case(json_t *c)
{
    const char *name = json_string_value(json_object_get(c, "name"));
    run r;
    run_init(&r, c);
    json_t *steps = json_object_get(c, "steps"), *samples = json_object_get(c, "sample_index");
    double worst = 0;
    for (size_t s = 0; s < json_array_size(steps); s++) {
        run_step(&r, c, s);
        json_t *step = json_array_get(steps, s);
        json_t *params = json_object_get(step, samples ? "samples" : "params");
        for (int g = 0; g < 2; g++) {
            json_t *want_g = json_array_get(params, (size_t)g);
            /* Errors are relative to each value, with a floor of a tenth of the tensor's scale: values
               crossing zero carry the rounding of the whole tensor (the reference's F32 dot products and
               sums, or numpy's powf, differ from ours by an ulp). */
            double floor = 1e-3;
            for (size_t k = 0; k < json_array_size(want_g); k++)
                floor = fmax(floor, 0.1 * fabs(json_number_value(json_array_get(want_g, k))));
            for (size_t k = 0; k < json_array_size(want_g); k++) {
                size_t i =
                    samples
                        ? (size_t)json_integer_value(json_array_get(json_array_get(samples, (size_t)g), k))
                        : k;
                double want = json_number_value(json_array_get(want_g, k));
                double err = rel_error(r.value[g][i], want, floor);
                worst = fmax(worst, err);
                EXPECT(err <= 1e-6, "%s step %zu group %d [%zu]: %.9g, expected %.9g", name, s, g, i,
                       r.value[g][i], want);
            }
        }
        json_t *d = json_object_get(step, "d");
        if (d)
            EXPECT(fabs(r.opt.last_d - json_number_value(d)) <= 1e-6 * json_number_value(d),
                   "%s step %zu: d %.9g, expected %.9g", name, s, r.opt.last_d, json_number_value(d));
    }
    json_t *absmax = json_object_get(c, "final_absmax");
    if (absmax) {
        sdt_optim_state st;
        sdt_optim_state_list(&r.opt, &st, NULL);
        for (int g = 0; g < 2; g++) {
            json_t *want = json_array_get(absmax, (size_t)g);
            size_t k = 0;
            char prefix[64];
            snprintf(prefix, sizeof prefix, "%s.absmax", g == 0 ? "unet.w" : "text_encoder.w");
            for (size_t i = 0; i < st.count; i++)
                if (strncmp(st.items[i].name, prefix, strlen(prefix)) == 0)
                    for (size_t j = 0; j < st.items[i].count; j++, k++)
                        EXPECT(rel_error(st.items[i].data[j], json_number_value(json_array_get(want, k)),
                                         1e-3) <= 1e-6,
                               "%s group %d absmax %zu: %.9g", name, g, k, st.items[i].data[j]);
            EXPECT(k == json_array_size(want), "%s group %d: %zu absmax values, expected %zu", name, g, k,
                   json_array_size(want));
        }
        sdt_optim_state_free(&st);
    }
    printf("%-24s worst relative error %.3g\n", name, worst);
    run_free(&r);
}

/* Interrupt after `cut` steps, export into plain copies, rebuild, import, continue: bit for bit. */
static void test_resume(json_t *c, size_t cut)
{
    const char *name = json_string_value(json_object_get(c, "name"));
    size_t total = json_array_size(json_object_get(c, "steps"));
    run a, b;
    run_init(&a, c);
    run_init(&b, c);
    for (size_t s = 0; s < cut; s++) {
        run_step(&a, c, s);
        run_step(&b, c, s);
    }
    sdt_optim_state st;
    char *error = NULL;
    EXPECT(sdt_optim_state_list(&b.opt, &st, &error) == 0, "list: %s", error ? error : "");
    int64_t step = b.opt.step;
    float *copies[64];
    for (size_t i = 0; i < st.count && i < 64; i++) {
        copies[i] = malloc(st.items[i].count * sizeof(float) + 1);
        memcpy(copies[i], st.items[i].data, st.items[i].count * sizeof(float));
    }
    float *values[2];
    for (int g = 0; g < 2; g++) {
        values[g] = malloc(b.n[g] * sizeof(float));
        memcpy(values[g], b.value[g], b.n[g] * sizeof(float));
    }
    run_free(&b);
    run_init(&b, c);
    for (int g = 0; g < 2; g++) {
        memcpy(b.value[g], values[g], b.n[g] * sizeof(float));
        free(values[g]);
    }
    for (size_t i = 0; i < st.count && i < 64; i++)
        st.items[i].data = copies[i];
    EXPECT(sdt_optim_state_import(&b.opt, &st, step, &error) == 0, "import: %s", error ? error : "");
    free(error);
    for (size_t s = cut; s < total; s++) {
        run_step(&a, c, s);
        run_step(&b, c, s);
    }
    for (int g = 0; g < 2; g++)
        EXPECT(memcmp(a.value[g], b.value[g], a.n[g] * sizeof(float)) == 0,
               "%s: resumed run differs (group %d)", name, g);
    sdt_optim_state sa, sb;
    sdt_optim_state_list(&a.opt, &sa, NULL);
    sdt_optim_state_list(&b.opt, &sb, NULL);
    EXPECT(sa.count == sb.count && sa.count == st.count, "%s: state count", name);
    for (size_t i = 0; i < sa.count && i < sb.count; i++)
        EXPECT(strcmp(sa.items[i].name, sb.items[i].name) == 0 &&
                   memcmp(sa.items[i].data, sb.items[i].data, sa.items[i].count * sizeof(float)) == 0,
               "%s: state %s differs", name, sa.items[i].name);
    sdt_optim_state_free(&sa);
    sdt_optim_state_free(&sb);
    for (size_t i = 0; i < st.count && i < 64; i++)
        free(copies[i]);
    sdt_optim_state_free(&st);
    run_free(&a);
    run_free(&b);
}

/* 200 steps on f(x) = sum(a_i (x_i - t_i)^2) / 2: AdamW8bit stays close to F32 AdamW (same formula) and
 * converges. */
static void test_8bit_tracks_adamw(void)
{
    enum { N = 5000, STEPS = 200 };
    float *a = malloc(N * sizeof(float)), *t = malloc(N * sizeof(float));
    float *x8 = malloc(N * sizeof(float)), *g8 = malloc(N * sizeof(float));
    float *x32 = malloc(N * sizeof(float)), *g32 = malloc(N * sizeof(float));
    hash_floats(5, a, N);
    hash_floats(6, t, N);
    hash_floats(7, x8, N);
    for (size_t i = 0; i < N; i++)
        a[i] = 0.5f + fabsf(a[i]) * 2.0f; /* curvature 0.5 .. 2.5 */
    memcpy(x32, x8, N * sizeof(float));
    sdt_optim_config c8, c32;
    sdt_optim_config_default(&c8, SDT_OPTIM_ADAMW8BIT);
    c8.weight_decay = 0.0;
    c32 = c8;
    c32.min_8bit_size = N + 1; /* the same optimizer with F32 moments */
    sdt_optimizer o8, o32;
    sdt_optim_init(&o8, &c8, 1, NULL);
    sdt_optim_init(&o32, &c32, 1, NULL);
    sdt_optim_add(&o8, "x", x8, g8, N, 0, NULL);
    sdt_optim_add(&o32, "x", x32, g32, N, 0, NULL);
    double start = 0, end = 0, end32 = 0, worst_gap = 0;
    for (int s = 0; s < STEPS; s++) {
        double loss = 0, loss32 = 0;
        for (size_t i = 0; i < N; i++) {
            g8[i] = a[i] * (x8[i] - t[i]);
            g32[i] = a[i] * (x32[i] - t[i]);
            loss += 0.5 * a[i] * (x8[i] - t[i]) * (x8[i] - t[i]);
            loss32 += 0.5 * a[i] * (x32[i] - t[i]) * (x32[i] - t[i]);
        }
        end32 = loss32;
        if (s == 0)
            start = loss;
        end = loss;
        double lr = 0.02 * (1.0 - s / (double)STEPS);
        sdt_optim_set_lr(&o8, 0, lr, NULL);
        sdt_optim_set_lr(&o32, 0, lr, NULL);
        sdt_optim_step(&o8, NULL);
        sdt_optim_step(&o32, NULL);
        double gap = 0;
        for (size_t i = 0; i < N; i++)
            gap = fmax(gap, fabs((double)x8[i] - x32[i]));
        worst_gap = fmax(worst_gap, gap);
    }
    printf("8-bit vs F32 AdamW over %d steps: loss %.4g -> %.4g (F32 moments: %.4g), largest parameter gap "
           "%.3g\n",
           STEPS, start, end, end32, worst_gap);
    EXPECT(end < 0.01 * start, "AdamW8bit converges: %g -> %g", start, end);
    EXPECT(end < 1.5 * end32 + 1e-3 * start, "AdamW8bit ends near F32 AdamW: %g vs %g", end, end32);
    /* The parameters travel ~1 (lr 0.02 x 200 steps, decaying); quantised moments may move a parameter a
       few percent of that away from the F32 path, not more. */
    EXPECT(worst_gap < 0.15, "AdamW8bit tracks F32 AdamW: gap %g", worst_gap);
    EXPECT(worst_gap > 0.0, "the 8-bit moments do differ from F32 ones");
    sdt_optim_free(&o8);
    sdt_optim_free(&o32);
    free(a);
    free(t);
    free(x8);
    free(g8);
    free(x32);
    free(g32);
}

int main(void)
{
    json_error_t jerr;
    json_t *root = json_load_file("tests/data/train/optim_reference_more.json", 0, &jerr);
    EXPECT(root != NULL, "cannot read fixture: %s", jerr.text);
    if (root) {
        json_t *cases = json_object_get(root, "cases");
        for (size_t i = 0; i < json_array_size(cases); i++) {
            test_reference_case(json_array_get(cases, i));
            test_resume(json_array_get(cases, i), 7);
        }
        json_decref(root);
    }
    test_8bit_tracks_adamw();
    if (state.failures) {
        fprintf(stderr, "%d failure(s)\n", state.failures);
        return 1;
    }
    printf("optim_more: ok\n");
    return 0;
}
