/* Optimizers against PyTorch (tests/data/train/optim_reference.json, made by
 * tools/train/make_optim_fixtures.py): parameters after each of 20 steps in two groups with changing
 * learning rates, with weight decay, momentum, Nesterov and gradient clipping; then state export/import
 * continuing bit for bit, the accumulation helpers and name parsing. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optim.h"
#include "unit/check.h"

/* One state for the whole file: the checks run from plain functions. */
static test_state state;
#define EXPECT(cond, ...) CHECK_MSG(&state, cond, __VA_ARGS__)

#define MAXN 16

static void read_floats(json_t *a, float *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (float)json_number_value(json_array_get(a, i));
}

static double num(json_t *c, const char *key, double fallback)
{
    json_t *v = json_object_get(c, key);
    return v ? json_number_value(v) : fallback;
}

static void config_of(json_t *c, sdt_optim_config *cfg)
{
    const char *kind = json_string_value(json_object_get(c, "kind"));
    sdt_optim_config_default(cfg, strcmp(kind, "adamw") == 0 ? SDT_OPTIM_ADAMW
                                  : strcmp(kind, "sgd") == 0 ? SDT_OPTIM_SGD
                                                             : SDT_OPTIM_LION);
    cfg->beta1 = num(c, "beta1", cfg->beta1);
    cfg->beta2 = num(c, "beta2", cfg->beta2);
    cfg->eps = num(c, "eps", cfg->eps);
    cfg->weight_decay = num(c, "weight_decay", cfg->weight_decay);
    cfg->momentum = num(c, "momentum", cfg->momentum);
    cfg->dampening = num(c, "dampening", cfg->dampening);
    cfg->nesterov = (int)num(c, "nesterov", 0);
}

typedef struct run {
    sdt_optimizer opt;
    float value[2][MAXN], grad[2][MAXN];
    size_t n[2];
} run;

static void run_init(run *r, json_t *c)
{
    sdt_optim_config cfg;
    config_of(c, &cfg);
    char *error = NULL;
    EXPECT(sdt_optim_init(&r->opt, &cfg, 2, &error) == 0, "init: %s", error ? error : "");
    free(error);
    json_t *initial = json_object_get(c, "initial");
    for (int g = 0; g < 2; g++) {
        json_t *a = json_array_get(initial, (size_t)g);
        r->n[g] = json_array_size(a);
        read_floats(a, r->value[g], r->n[g]);
        error = NULL;
        EXPECT(sdt_optim_add(&r->opt, g == 0 ? "unet.w" : "text_encoder.w", r->value[g], r->grad[g], r->n[g],
                             g, &error) == 0,
               "add: %s", error ? error : "");
        free(error);
    }
}

/* One step s of the fixture: gradients, clipping, learning rates, update. */
static void run_step(run *r, json_t *c, size_t s)
{
    json_t *step = json_array_get(json_object_get(c, "steps"), s);
    double max_norm = num(c, "max_grad_norm", 0.0);
    for (int g = 0; g < 2; g++) {
        read_floats(json_array_get(json_object_get(step, "grads"), (size_t)g), r->grad[g], r->n[g]);
        sdt_optim_set_lr(&r->opt, g,
                         json_number_value(json_array_get(json_object_get(step, "lrs"), (size_t)g)), NULL);
    }
    if (max_norm > 0) {
        double norm = 0;
        sdt_optim_clip_grad_norm(&r->opt, max_norm, &norm);
        double want = num(step, "norm", 0);
        EXPECT(fabs(norm - want) <= 1e-6 * want, "step %zu: norm %.9g, expected %.9g", s, norm, want);
    }
    char *error = NULL;
    EXPECT(sdt_optim_step(&r->opt, &error) == 0, "step: %s", error ? error : "");
    free(error);
}

static void test_reference_case(json_t *c)
{
    const char *name = json_string_value(json_object_get(c, "name"));
    run *r = calloc(1, sizeof *r);
    run_init(r, c);
    json_t *steps = json_object_get(c, "steps");
    double worst = 0;
    for (size_t s = 0; s < json_array_size(steps); s++) {
        run_step(r, c, s);
        json_t *params = json_object_get(json_array_get(steps, s), "params");
        for (int g = 0; g < 2; g++)
            for (size_t i = 0; i < r->n[g]; i++) {
                double want = json_number_value(json_array_get(json_array_get(params, (size_t)g), i));
                double err = fabs((double)r->value[g][i] - want) / fmax(fabs(want), 1e-3);
                worst = fmax(worst, err);
                EXPECT(err <= 1e-6, "%s step %zu group %d [%zu]: %.9g, expected %.9g", name, s, g, i,
                       r->value[g][i], want);
            }
    }
    printf("%-20s worst relative error %.3g\n", name, worst);
    sdt_optim_free(&r->opt);
    free(r);
}

/* Interrupt after `cut` steps: export the state, build a fresh optimizer over copies of the parameters,
 * import, continue; both must equal the uninterrupted run bit for bit. */
static void test_resume(json_t *c, size_t cut)
{
    const char *name = json_string_value(json_object_get(c, "name"));
    size_t total = json_array_size(json_object_get(c, "steps"));
    run *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    run_init(a, c);
    run_init(b, c);
    for (size_t s = 0; s < cut; s++) {
        run_step(a, c, s);
        run_step(b, c, s);
    }
    /* Save b's state into plain copies (what a checkpoint would hold), then restart it from scratch. */
    sdt_optim_state st;
    char *error = NULL;
    EXPECT(sdt_optim_state_list(&b->opt, &st, &error) == 0, "list: %s", error ? error : "");
    int64_t step = b->opt.step;
    float *saved = malloc(sizeof(float) * 4 * MAXN);
    size_t off = 0;
    for (size_t i = 0; i < st.count; i++) {
        memcpy(saved + off, st.items[i].data, st.items[i].count * sizeof(float));
        off += st.items[i].count;
    }
    float values[2][MAXN];
    memcpy(values, b->value, sizeof values);
    sdt_optim_free(&b->opt);
    memset(b, 0, sizeof *b);
    run_init(b, c);
    memcpy(b->value, values, sizeof values);
    off = 0;
    for (size_t i = 0; i < st.count; i++) {
        st.items[i].data = saved + off;
        off += st.items[i].count;
    }
    EXPECT(sdt_optim_state_import(&b->opt, &st, step, &error) == 0, "import: %s", error ? error : "");
    free(error);
    for (size_t s = cut; s < total; s++) {
        run_step(a, c, s);
        run_step(b, c, s);
    }
    EXPECT(memcmp(a->value, b->value, sizeof a->value) == 0, "%s: resumed run differs", name);
    sdt_optim_state sa, sb;
    sdt_optim_state_list(&a->opt, &sa, NULL);
    sdt_optim_state_list(&b->opt, &sb, NULL);
    EXPECT(sa.count == sb.count, "%s: state count", name);
    for (size_t i = 0; i < sa.count && i < sb.count; i++) {
        EXPECT(strcmp(sa.items[i].name, sb.items[i].name) == 0, "%s: state names", name);
        EXPECT(memcmp(sa.items[i].data, sb.items[i].data, sa.items[i].count * sizeof(float)) == 0,
               "%s: state %s differs", name, sa.items[i].name);
    }
    sdt_optim_state_free(&sa);
    sdt_optim_state_free(&sb);
    sdt_optim_state_free(&st);
    free(saved);
    sdt_optim_free(&a->opt);
    sdt_optim_free(&b->opt);
    free(a);
    free(b);
}

static void test_helpers(void)
{
    sdt_optim_config cfg;
    char *error = NULL;
    EXPECT(sdt_optim_parse_name("", &cfg, &error) == 0 && cfg.kind == SDT_OPTIM_ADAMW, "default AdamW");
    EXPECT(sdt_optim_parse_name("lion", &cfg, &error) == 0 && cfg.kind == SDT_OPTIM_LION && cfg.beta2 == 0.99,
           "Lion");
    EXPECT(sdt_optim_parse_name("SGDNesterov", &cfg, &error) == 0 && cfg.nesterov && cfg.momentum == 0.9,
           "SGDNesterov");
    EXPECT(sdt_optim_parse_name("adamw8bit", &cfg, &error) == 0 && cfg.kind == SDT_OPTIM_ADAMW8BIT &&
               cfg.min_8bit_size == 4096,
           "AdamW8bit");
    EXPECT(sdt_optim_parse_name("Adafactor", &cfg, &error) == 0 && cfg.kind == SDT_OPTIM_ADAFACTOR &&
               cfg.relative_step && cfg.scale_parameter && !cfg.use_first_moment,
           "Adafactor");
    EXPECT(sdt_optim_parse_name("prodigy", &cfg, &error) == 0 && cfg.kind == SDT_OPTIM_PRODIGY &&
               cfg.decouple && cfg.d0 == 1e-6 && isinf(cfg.growth_rate),
           "Prodigy");
    const char *later[] = {"DAdaptAdam", "PagedAdamW8bit", "Lion8bit"};
    for (int i = 0; i < 3; i++) {
        EXPECT(sdt_optim_parse_name(later[i], &cfg, &error) != 0 && error &&
                   strstr(error, "is not implemented yet") != NULL,
               "%s: %s", later[i], error ? error : "(no message)");
        free(error);
        error = NULL;
    }
    EXPECT(sdt_optim_parse_name("Nonsense", &cfg, &error) != 0 && error && strstr(error, "unknown"),
           "unknown");
    free(error);
    error = NULL;

    sdt_optim_config_default(&cfg, SDT_OPTIM_SGD);
    cfg.nesterov = 1;
    EXPECT(sdt_optim_config_check(&cfg, &error) != 0, "Nesterov without momentum is refused");
    free(error);
    error = NULL;

    sdt_optimizer o;
    sdt_optim_config_default(&cfg, SDT_OPTIM_ADAMW);
    sdt_optim_init(&o, &cfg, 1, NULL);
    float v[4] = {1, 2, 3, 4}, g[4] = {3, 0, 0, 4};
    EXPECT(sdt_optim_add(&o, "x", v, g, 4, 1, &error) != 0, "group out of range is refused");
    free(error);
    error = NULL;
    sdt_optim_add(&o, "x", v, g, 4, 0, NULL);
    EXPECT(sdt_optim_add(&o, "x", v, g, 4, 0, &error) != 0, "duplicate name is refused");
    free(error);
    error = NULL;
    double norm = 0;
    sdt_optim_clip_grad_norm(&o, 10.0, &norm);
    EXPECT(norm == 5.0 && g[0] == 3.0f, "no clipping below the limit");
    sdt_optim_scale_grads(&o, 0.5f);
    EXPECT(g[0] == 1.5f && g[3] == 2.0f, "scale");
    sdt_optim_zero_grads(&o);
    EXPECT(g[0] == 0.0f && g[3] == 0.0f, "zero");
    EXPECT(sdt_optim_state_set(&o, "x.nothing", v, 4, &error) != 0, "unknown state buffer");
    free(error);
    error = NULL;
    EXPECT(sdt_optim_state_set(&o, "x.exp_avg", v, 3, &error) != 0, "state size mismatch");
    free(error);
    sdt_optim_free(&o);
}

int main(void)
{
    json_error_t jerr;
    json_t *root = json_load_file("tests/data/train/optim_reference.json", 0, &jerr);
    EXPECT(root != NULL, "cannot read fixture: %s", jerr.text);
    if (root) {
        json_t *cases = json_object_get(root, "cases");
        for (size_t i = 0; i < json_array_size(cases); i++) {
            test_reference_case(json_array_get(cases, i));
            test_resume(json_array_get(cases, i), 7);
        }
        json_decref(root);
    }
    test_helpers();
    if (state.failures) {
        fprintf(stderr, "%d failure(s)\n", state.failures);
        return 1;
    }
    printf("optim: ok\n");
    return 0;
}
