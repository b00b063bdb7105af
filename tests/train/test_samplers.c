/* The samplers against tests/data/train/samplers.json (tools/train/make_sampler_fixtures.py: diffusers
 * 0.30.3 schedulers as kohya builds them, run with a deterministic fake model): the timestep and sigma
 * grids exactly, the final latents to 1e-5 relative; and the sampler names. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "samplers.h"
#include "unit/check.h"

#define FIXTURE "tests/data/train/samplers.json"

typedef struct fake_model {
    size_t n;
} fake_model;

/* out[i] = 0.1 * x_in[i] + 0.01 * t / 1000 + 0.05 * sin(i), as the fixture script computes it (float32) */
static int fake_predict(void *ctx, const float *x_in, double timestep, float *out, char **error)
{
    (void)error;
    fake_model *m = ctx;
    for (size_t i = 0; i < m->n; i++)
        out[i] = 0.1f * x_in[i] + (float)(0.01 * timestep / 1000.0) + 0.05f * sinf((float)i);
    return 0;
}

typedef struct fixed_noise {
    json_t *blocks; /* [steps][n] */
    size_t n;
    int draws;
} fixed_noise;

static void fixed_noise_fill(void *ctx, int step, float *noise, size_t n)
{
    fixed_noise *f = ctx;
    json_t *block = json_array_get(f->blocks, (size_t)step);
    for (size_t i = 0; i < n; i++)
        noise[i] = (float)json_number_value(json_array_get(block, i));
    f->draws++;
}

static void test_fixture_cases(test_state *t)
{
    json_error_t err;
    json_t *root = json_load_file(FIXTURE, 0, &err);
    CHECK_MSG(t, root != NULL, "%s: %s", FIXTURE, err.text);
    if (!root)
        return;
    size_t n = (size_t)json_integer_value(json_object_get(root, "elements"));
    json_t *x_init = json_object_get(root, "x_init");
    json_t *cases = json_object_get(root, "cases");
    CHECK(t, n == 64 && json_array_size(cases) == 20);
    float *x = malloc(sizeof(float) * n);
    size_t index;
    json_t *c;
    json_array_foreach(cases, index, c)
    {
        const char *name = json_string_value(json_object_get(c, "sampler"));
        int v = strcmp(json_string_value(json_object_get(c, "prediction")), "v") == 0;
        int steps = (int)json_integer_value(json_object_get(c, "steps"));
        sdt_sampler_kind kind;
        char *error = NULL;
        CHECK_MSG(t, sdt_sampler_parse(name, &kind, &error) == 0, "%s", error);
        free(error);
        sdt_sampler_plan plan;
        CHECK(t, sdt_sampler_plan_init(&plan, kind, steps, false, NULL) == 0);
        CHECK_MSG(
            t, fabs(plan.init_noise_sigma - json_number_value(json_object_get(c, "init_noise_sigma"))) < 1e-5,
            "%s init sigma %g", name, plan.init_noise_sigma);
        json_t *ts = json_object_get(c, "timesteps");
        CHECK(t, json_array_size(ts) == (size_t)steps);
        int ts_bad = 0;
        for (int k = 0; k < steps; k++) /* diffusers keeps Euler's float timesteps in float32 */
            if (fabs(plan.timesteps[k] - json_number_value(json_array_get(ts, (size_t)k))) > 1e-4)
                ts_bad++;
        CHECK_MSG(t, ts_bad == 0, "%s %d steps: %d timesteps differ", name, steps, ts_bad);
        json_t *sigmas = json_object_get(c, "sigmas");
        if (sigmas) {
            CHECK(t, plan.sigmas && json_array_size(sigmas) == (size_t)steps + 1);
            int bad = 0;
            for (int k = 0; k <= steps && plan.sigmas; k++) {
                double want = json_number_value(json_array_get(sigmas, (size_t)k));
                if (fabs(plan.sigmas[k] - want) > 1e-6 * fmax(1.0, fabs(want)))
                    bad++;
            }
            CHECK_MSG(t, bad == 0, "%s %d steps: %d sigmas differ", name, steps, bad);
        } else {
            CHECK(t, plan.sigmas == NULL);
        }

        for (size_t i = 0; i < n; i++)
            x[i] = (float)json_number_value(json_array_get(x_init, i));
        fake_model model = {n};
        fixed_noise noise = {json_object_get(root, "noise"), n, 0};
        error = NULL;
        int rc = sdt_sampler_run(&plan, v ? SDT_PREDICT_V : SDT_PREDICT_EPSILON, x, n, fake_predict, &model,
                                 fixed_noise_fill, &noise, &error);
        CHECK_MSG(t, rc == 0, "%s", error);
        free(error);
        CHECK(t, noise.draws == (kind == SDT_SAMPLER_EULER_A ? steps : 0));
        json_t *final = json_object_get(c, "final");
        double worst = 0;
        for (size_t i = 0; i < n; i++) {
            double want = json_number_value(json_array_get(final, i));
            /* relative, with a floor of 0.1 for the elements near zero (float32 noise is ~4e-7) */
            double rel = fabs(x[i] - want) / fmax(fabs(want), 0.1);
            worst = fmax(worst, rel);
        }
        CHECK_MSG(t, worst < 1e-5, "%s %s %d steps: final latents off by %.3g relative", name,
                  v ? "v" : "eps", steps, worst);
        sdt_sampler_plan_free(&plan);
    }
    free(x);
    json_decref(root);
}

static void test_names(test_state *t)
{
    sdt_sampler_kind k;
    char *error = NULL;
    CHECK(t, sdt_sampler_parse("k_euler_a", &k, NULL) == 0 && k == SDT_SAMPLER_EULER_A);
    CHECK(t, sdt_sampler_parse("k_euler", &k, NULL) == 0 && k == SDT_SAMPLER_EULER);
    CHECK(t, sdt_sampler_parse("dpmsolver++", &k, NULL) == 0 && k == SDT_SAMPLER_DPMPP_2M);
    CHECK(t, sdt_sampler_parse("dpm++2m_karras", &k, NULL) == 0 && k == SDT_SAMPLER_DPMPP_2M_KARRAS);
    CHECK(t, sdt_sampler_parse("ddim", &k, NULL) == 0 && k == SDT_SAMPLER_DDIM);
    for (int i = 0; i <= SDT_SAMPLER_DPMPP_2M_KARRAS; i++) {
        CHECK(t, sdt_sampler_parse(sdt_sampler_name((sdt_sampler_kind)i), &k, NULL) == 0 && (int)k == i);
    }
    CHECK(t, sdt_sampler_parse("heun", &k, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "sampler heun is not implemented yet");
    free(error);
    error = NULL;
    CHECK(t, sdt_sampler_parse("bogus", &k, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "unknown sampler \"bogus\"");
    free(error);
}

static void test_bad_steps(test_state *t)
{
    sdt_sampler_plan plan;
    char *error = NULL;
    CHECK(t, sdt_sampler_plan_init(&plan, SDT_SAMPLER_EULER, 0, false, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "sample steps 0 out of range");
    free(error);
    /* one step: DDIM goes t = 1 straight to x0 */
    CHECK(t, sdt_sampler_plan_init(&plan, SDT_SAMPLER_DDIM, 1, false, NULL) == 0);
    CHECK(t, plan.steps == 1 && plan.timesteps[0] == 1.0);
    sdt_sampler_plan_free(&plan);
}

int main(void)
{
    static const test_case cases[] = {TEST(test_fixture_cases), TEST(test_names), TEST(test_bad_steps)};
    return run_tests("train.samplers", cases, sizeof cases / sizeof cases[0]);
}
