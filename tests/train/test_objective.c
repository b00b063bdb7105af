/* The training objective against tests/data/train/objective.json (tools/train/make_objective_fixtures.py:
 * diffusers' DDPMScheduler and kohya's formulas in torch), plus finite-difference gradients of every loss
 * type and the properties of the random numbers and of batch sampling. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "objective.h"
#include "unit/check.h"

#define FIXTURE "tests/data/train/objective.json"

static json_t *load_fixture(test_state *t)
{
    json_error_t err;
    json_t *root = json_load_file(FIXTURE, 0, &err);
    CHECK_MSG(t, root != NULL, "%s: %s", FIXTURE, err.text);
    return root;
}

static size_t arr_f32(json_t *a, float **out)
{
    size_t n = json_array_size(a);
    *out = malloc((n ? n : 1) * sizeof **out);
    for (size_t i = 0; i < n; i++)
        (*out)[i] = (float)json_number_value(json_array_get(a, i));
    return n;
}

static double num(json_t *o, const char *key) { return json_number_value(json_object_get(o, key)); }

static bool close_rel(double got, double want, double rel, double abs_tol)
{
    return fabs(got - want) <= rel * fabs(want) + abs_tol;
}

/* Compares n floats with json array `want`; reports the first mismatch. */
static void check_array(test_state *t, const char *what, const float *got, json_t *want, size_t n, double rel,
                        double abs_tol)
{
    CHECK_MSG(t, json_array_size(want) == n, "%s: %zu values, fixture has %zu", what, n,
              json_array_size(want));
    for (size_t i = 0; i < n && i < json_array_size(want); i++) {
        double w = json_number_value(json_array_get(want, i));
        if (!close_rel(got[i], w, rel, abs_tol)) {
            CHECK_MSG(t, false, "%s[%zu]: got %.9g, want %.9g", what, i, got[i], w);
            return;
        }
    }
    t->checks++;
}

static void test_schedule(test_state *t)
{
    json_t *root = load_fixture(t);
    if (!root)
        return;
    json_t *s = json_object_get(root, "schedule"), *idx = json_object_get(s, "index");
    sdt_schedule plain, zt;
    sdt_schedule_init(&plain, false);
    sdt_schedule_init(&zt, true);
    int bad64 = 0, bad32 = 0, badsnr = 0;
    for (size_t k = 0; k < json_array_size(idx); k++) {
        int i = (int)json_integer_value(json_array_get(idx, k));
        double a = json_number_value(json_array_get(json_object_get(s, "alphas_cumprod"), k));
        double az =
            json_number_value(json_array_get(json_object_get(s, "alphas_cumprod_zero_terminal_snr"), k));
        double d = json_number_value(json_array_get(json_object_get(s, "diffusers_alphas_cumprod"), k));
        double dz = json_number_value(
            json_array_get(json_object_get(s, "diffusers_alphas_cumprod_zero_terminal_snr"), k));
        double snr = json_number_value(json_array_get(json_object_get(s, "snr"), k));
        bad64 += !close_rel(plain.alphas_cumprod[i], a, 1e-12, 0) ||
                 !close_rel(zt.alphas_cumprod[i], az, 1e-12, 0);
        /* diffusers builds the schedule in float32: agreement to float32 precision, relative to ac_0. */
        bad32 += !close_rel(plain.alphas_cumprod[i], d, 1e-5, 1e-7) ||
                 !close_rel(zt.alphas_cumprod[i], dz, 1e-5, 1e-7);
        badsnr += !close_rel(plain.snr[i], snr, 1e-10, 0) || plain.snr[i] != zt.snr[i];
    }
    CHECK_MSG(t, bad64 == 0, "%d float64 alphas_cumprod differ", bad64);
    CHECK_MSG(t, bad32 == 0, "%d alphas_cumprod differ from diffusers", bad32);
    CHECK_MSG(t, badsnr == 0, "%d SNR values differ", badsnr);
    /* The documented reference values of the schedule. */
    CHECK(t, fabs(plain.alphas_cumprod[0] - 0.99915) < 1e-12);
    CHECK(t, fabs(plain.snr[999] - 0.004682) < 1e-6);
    CHECK(t, zt.alphas_cumprod[999] == 0.0 || zt.alphas_cumprod[999] < 1e-30);
    CHECK(t, fabs(zt.alphas_cumprod[998] - 1.97e-7) < 0.01e-7);
    json_decref(root);
}

static void test_forward(test_state *t)
{
    json_t *root = load_fixture(t);
    if (!root)
        return;
    json_t *f = json_object_get(root, "forward");
    float *x0, *noise;
    size_t n = arr_f32(json_object_get(f, "x0"), &x0);
    arr_f32(json_object_get(f, "noise"), &noise);
    int B = 2;
    size_t per = n / B;
    sdt_schedule s;
    sdt_schedule_init(&s, false);
    float *noisy = malloc(n * sizeof *noisy), *vel = malloc(n * sizeof *vel);
    for (int b = 0; b < B; b++) {
        int ts = (int)json_integer_value(json_array_get(json_object_get(f, "t"), b));
        sdt_add_noise(&s, ts, x0 + b * per, noise + b * per, per, noisy + b * per);
        sdt_velocity(&s, ts, x0 + b * per, noise + b * per, per, vel + b * per);
    }
    check_array(t, "noisy", noisy, json_object_get(f, "noisy"), n, 1e-6, 1e-7);
    check_array(t, "velocity", vel, json_object_get(f, "velocity"), n, 1e-6, 1e-7);
    check_array(t, "diffusers noisy", noisy, json_object_get(f, "diffusers_noisy"), n, 1e-5, 1e-5);
    check_array(t, "diffusers velocity", vel, json_object_get(f, "diffusers_velocity"), n, 1e-5, 1e-5);
    free(x0), free(noise), free(noisy), free(vel);
    json_decref(root);
}

static void test_noise_offset(test_state *t)
{
    json_t *root = load_fixture(t);
    if (!root)
        return;
    json_t *f = json_object_get(root, "noise_offset");
    float *lat, *noise, *normals;
    size_t n = arr_f32(json_object_get(f, "latents"), &lat);
    arr_f32(json_object_get(f, "normals"), &normals);
    const int B = 2, C = 4;
    int64_t hw = (int64_t)n / (B * C);
    struct {
        const char *key;
        bool adaptive;
        double scale;
    } cases[] = {{"plain", false, 0},
                 {"adaptive", true, num(f, "adaptive_scale")},
                 {"adaptive_negative", true, num(f, "adaptive_negative_scale")}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        arr_f32(json_object_get(f, "noise"), &noise);
        sdt_noise_offset_apply(noise, lat, B, hw, C, num(f, "offset"), cases[k].adaptive, cases[k].scale,
                               normals);
        check_array(t, cases[k].key, noise, json_object_get(f, cases[k].key), n, 1e-6, 1e-7);
        free(noise);
    }
    free(lat), free(normals);
    json_decref(root);
}

static void test_multires(test_state *t)
{
    json_t *root = load_fixture(t);
    if (!root)
        return;
    json_t *f = json_object_get(root, "multires"), *shape = json_object_get(f, "shape");
    int B = (int)json_integer_value(json_array_get(shape, 0)),
        H = (int)json_integer_value(json_array_get(shape, 1));
    int W = (int)json_integer_value(json_array_get(shape, 2)),
        C = (int)json_integer_value(json_array_get(shape, 3));
    float *noise;
    size_t n = arr_f32(json_object_get(f, "noise"), &noise);
    json_t *levels = json_object_get(f, "levels"), *ratios = json_object_get(f, "ratios");
    double discount = num(f, "discount");
    for (size_t i = 0; i < json_array_size(levels); i++) {
        json_t *lv = json_array_get(levels, i);
        int hn, wn;
        sdt_multires_level_size(H, W, json_number_value(json_array_get(ratios, i)), (int)i, &hn, &wn);
        CHECK(t, hn == json_integer_value(json_array_get(json_object_get(lv, "size"), 0)));
        CHECK(t, wn == json_integer_value(json_array_get(json_object_get(lv, "size"), 1)));
        float *small;
        arr_f32(json_object_get(lv, "noise"), &small);
        sdt_noise_add_upsampled(noise, B, H, W, C, small, hn, wn, pow(discount, (double)i));
        free(small);
    }
    sdt_noise_normalize_std(noise, n);
    check_array(t, "multires", noise, json_object_get(f, "result"), n, 1e-6, 1e-6);
    free(noise);
    json_decref(root);
}

static bool opt_bool(json_t *o, const char *k) { return json_is_true(json_object_get(o, k)); }

static void options_from_json(json_t *o, sdt_loss_options *lo)
{
    sdt_loss_options_default(lo);
    const char *lt = json_string_value(json_object_get(o, "loss_type"));
    lo->loss_type = !strcmp(lt, "l1")          ? SDT_LOSS_L1
                    : !strcmp(lt, "huber")     ? SDT_LOSS_HUBER
                    : !strcmp(lt, "smooth_l1") ? SDT_LOSS_SMOOTH_L1
                                               : SDT_LOSS_L2;
    const char *hs = json_string_value(json_object_get(o, "huber_schedule"));
    if (hs)
        lo->huber_schedule = !strcmp(hs, "exponential") ? SDT_HUBER_EXPONENTIAL
                             : !strcmp(hs, "constant")  ? SDT_HUBER_CONSTANT
                                                        : SDT_HUBER_SNR;
    if (json_object_get(o, "huber_c"))
        lo->huber_c = num(o, "huber_c");
    if (json_object_get(o, "huber_scale"))
        lo->huber_scale = num(o, "huber_scale");
    lo->prediction = opt_bool(o, "v") ? SDT_PREDICT_V : SDT_PREDICT_EPSILON;
    lo->min_snr_gamma = num(o, "min_snr_gamma");
    lo->scale_v_pred_loss_like_noise_pred = opt_bool(o, "scale_v_pred");
    lo->v_pred_like_loss = num(o, "v_pred_like");
    lo->debiased_estimation_loss = opt_bool(o, "debiased");
}

static void test_losses(test_state *t)
{
    json_t *root = load_fixture(t);
    if (!root)
        return;
    json_t *f = json_object_get(root, "loss"), *shape = json_object_get(f, "shape");
    int B = (int)json_integer_value(json_array_get(shape, 0));
    int64_t hw = json_integer_value(json_array_get(shape, 1)) * json_integer_value(json_array_get(shape, 2));
    int C = (int)json_integer_value(json_array_get(shape, 3));
    float *pred, *target, *mask, *prior;
    size_t n = arr_f32(json_object_get(f, "pred"), &pred);
    arr_f32(json_object_get(f, "target"), &target);
    arr_f32(json_object_get(f, "mask"), &mask);
    arr_f32(json_object_get(f, "prior"), &prior);
    int ts[8];
    for (int b = 0; b < B; b++)
        ts[b] = (int)json_integer_value(json_array_get(json_object_get(f, "t"), b));
    float *grad = malloc(n * sizeof *grad);
    json_t *cases = json_object_get(f, "cases");
    for (size_t k = 0; k < json_array_size(cases); k++) {
        json_t *c = json_array_get(cases, k), *o = json_object_get(c, "options");
        sdt_loss_options lo;
        options_from_json(o, &lo);
        sdt_schedule s;
        sdt_schedule_init(&s, opt_bool(o, "zero_terminal_snr"));
        char msg[256] = "", what[64];
        double loss = 0, per[8];
        int rc = sdt_objective_loss(&s, &lo, B, hw, C, pred, target, ts, opt_bool(o, "prior") ? prior : NULL,
                                    opt_bool(o, "mask") ? mask : NULL, &loss, grad, per, msg, sizeof msg);
        CHECK_MSG(t, rc == 0, "case %zu: %s", k, msg);
        CHECK_MSG(t, close_rel(loss, num(c, "loss"), 1e-6, 0), "case %zu: loss %.12g, want %.12g", k, loss,
                  num(c, "loss"));
        for (int b = 0; b < B; b++) {
            double hc = json_number_value(json_array_get(json_object_get(c, "huber_c"), b));
            double ps = json_number_value(json_array_get(json_object_get(c, "per_sample"), b));
            CHECK_MSG(t, close_rel(sdt_huber_c(&s, &lo, ts[b]), hc, 1e-9, 0),
                      "case %zu b %d: huber_c %.12g vs %.12g", k, b, sdt_huber_c(&s, &lo, ts[b]), hc);
            CHECK_MSG(t, close_rel(per[b], ps, 1e-6, 0), "case %zu b %d: per-sample %.12g vs %.12g", k, b,
                      per[b], ps);
        }
        snprintf(what, sizeof what, "case %zu grad", k);
        check_array(t, what, grad, json_object_get(c, "grad"), n, 1e-6, 1e-12);
    }
    free(pred), free(target), free(mask), free(prior), free(grad);
    json_decref(root);
}

/* Central differences of the batch loss against the analytic gradient, for every loss type, with mask,
 * prior weights and a weighting enabled. Differences are taken in double on the element loss itself to
 * avoid float32 input rounding dominating. */
static void test_gradcheck(test_state *t)
{
    const int B = 2, C = 3;
    const int64_t hw = 4, n = B * hw * C;
    float pred[24], target[24], mask[8], prior[2] = {1.0f, 0.25f}, grad[24];
    int ts[2] = {37, 812};
    uint64_t st = 7;
    sdt_rng r;
    sdt_rng_init(&r, st, 0);
    for (int i = 0; i < n; i++) {
        pred[i] = (float)sdt_rng_normal(&r);
        target[i] = (float)sdt_rng_normal(&r);
    }
    for (int i = 0; i < B * hw; i++)
        mask[i] = (float)sdt_rng_uniform(&r);
    sdt_schedule s;
    sdt_schedule_init(&s, false);
    const sdt_loss_type types[] = {SDT_LOSS_L2, SDT_LOSS_L1, SDT_LOSS_HUBER, SDT_LOSS_SMOOTH_L1};
    for (size_t k = 0; k < 4; k++) {
        sdt_loss_options lo;
        sdt_loss_options_default(&lo);
        lo.loss_type = types[k];
        lo.min_snr_gamma = 5.0;
        double loss;
        char msg[128];
        CHECK(t, sdt_objective_loss(&s, &lo, B, hw, C, pred, target, ts, prior, mask, &loss, grad, NULL, msg,
                                    sizeof msg) == 0);
        int bad = 0;
        for (int i = 0; i < n; i++) {
            int b = (int)(i / (hw * C));
            int64_t p = (i % (hw * C)) / C;
            double c = sdt_huber_c(&s, &lo, ts[b]);
            double w = sdt_loss_timestep_weight(&s, &lo, ts[b]) * prior[b] * mask[b * hw + p] / (double)n;
            double d = (double)pred[i] - target[i], h = 1e-5;
            double fd =
                w * (sdt_loss_element(lo.loss_type, d + h, c) - sdt_loss_element(lo.loss_type, d - h, c)) /
                (2 * h);
            bad += !close_rel(grad[i], fd, 1e-5, 1e-9);
        }
        CHECK_MSG(t, bad == 0, "loss type %zu: %d gradients differ from finite differences", k, bad);
        /* And one full finite difference through sdt_objective_loss, in float, for element 5. */
        float saved = pred[5];
        double lp, lm, hstep = 1e-2;
        pred[5] = saved + (float)hstep;
        sdt_objective_loss(&s, &lo, B, hw, C, pred, target, ts, prior, mask, &lp, NULL, NULL, msg,
                           sizeof msg);
        pred[5] = saved - (float)hstep;
        sdt_objective_loss(&s, &lo, B, hw, C, pred, target, ts, prior, mask, &lm, NULL, NULL, msg,
                           sizeof msg);
        pred[5] = saved;
        double fd = (lp - lm) / (2 * hstep);
        CHECK_MSG(t, close_rel(grad[5], fd, 2e-2, 1e-6), "loss type %zu: full fd %.9g vs grad %.9g", k, fd,
                  grad[5]);
    }
}

static void test_rng(test_state *t)
{
    sdt_rng a, b, c;
    sdt_rng_init(&a, 42, 0);
    sdt_rng_init(&b, 42, 0);
    sdt_rng_init(&c, 42, 1);
    int same = 0, diff = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t x = sdt_rng_u64(&a), y = sdt_rng_u64(&b), z = sdt_rng_u64(&c);
        same += x == y;
        diff += x != z;
    }
    CHECK(t, same == 100 && diff == 100);
    /* Counter-based: resuming at a counter gives the same value as drawing up to it. */
    sdt_rng_init(&a, 9, 3);
    for (int i = 0; i < 10; i++)
        sdt_rng_u64(&a);
    uint64_t tenth = sdt_rng_u64(&a);
    sdt_rng_init(&b, 9, 3);
    b.counter = 10;
    CHECK(t, sdt_rng_u64(&b) == tenth);
    double m = 0, v = 0;
    const int N = 200000;
    sdt_rng_init(&a, 1, 0);
    for (int i = 0; i < N; i++) {
        double x = sdt_rng_normal(&a);
        m += x;
        v += x * x;
    }
    m /= N;
    v = v / N - m * m;
    CHECK_MSG(t, fabs(m) < 0.01 && fabs(v - 1) < 0.02, "normal mean %g var %g", m, v);
    int counts[5] = {0}, out = 0;
    for (int i = 0; i < 50000; i++) {
        int64_t k = sdt_rng_int(&a, 200, 205);
        if (k < 200 || k >= 205)
            out++;
        else
            counts[k - 200]++;
    }
    CHECK(t, out == 0);
    for (int k = 0; k < 5; k++)
        CHECK_MSG(t, abs(counts[k] - 10000) < 500, "bucket %d: %d", k, counts[k]);
}

static void test_sample_batch(test_state *t)
{
    enum { B = 2, H = 16, W = 12, C = 4, N = B * H * W * C };
    static float x0[N], noise[N], noisy[N], target[N], ref[N];
    int ts[B];
    sdt_rng r;
    sdt_rng_init(&r, 5, 0);
    sdt_rng_fill_normal(&r, x0, N);
    sdt_schedule s;
    sdt_schedule_init(&s, false);
    sdt_noise_options o;
    sdt_noise_options_default(&o);
    char msg[128];

    /* Plain: target is the noise, noisy is add_noise, t within range. */
    o.min_timestep = 100, o.max_timestep = 200;
    sdt_rng_init(&r, 11, 0);
    CHECK(t, sdt_objective_sample_batch(&s, &o, SDT_PREDICT_EPSILON, &r, x0, B, H, W, C, ts, noise, noisy,
                                        target, msg, sizeof msg) == 0);
    CHECK(t, ts[0] >= 100 && ts[0] < 200 && ts[1] >= 100 && ts[1] < 200);
    CHECK(t, memcmp(noise, target, sizeof noise) == 0);
    sdt_add_noise(&s, ts[1], x0 + N / 2, noise + N / 2, N / 2, ref);
    CHECK(t, memcmp(ref, noisy + N / 2, N / 2 * sizeof *ref) == 0);

    /* Everything on, v-prediction: deterministic, target is v of the modified noise, multires unit std. */
    o.noise_offset = 0.1, o.adaptive_noise = true, o.adaptive_noise_scale = 0.05;
    o.multires_noise_iterations = 6, o.ip_noise_gamma = 0.1, o.ip_noise_gamma_random_strength = true;
    sdt_rng_init(&r, 11, 0);
    CHECK(t, sdt_objective_sample_batch(&s, &o, SDT_PREDICT_V, &r, x0, B, H, W, C, ts, noise, noisy, target,
                                        msg, sizeof msg) == 0);
    memcpy(ref, target, sizeof ref);
    sdt_rng_init(&r, 11, 0);
    sdt_objective_sample_batch(&s, &o, SDT_PREDICT_V, &r, x0, B, H, W, C, ts, noise, noisy, target, msg,
                               sizeof msg);
    CHECK(t, memcmp(ref, target, sizeof ref) == 0);
    double m = 0, v = 0;
    for (int i = 0; i < N; i++)
        m += noise[i];
    m /= N;
    for (int i = 0; i < N; i++)
        v += (noise[i] - m) * (noise[i] - m);
    CHECK_MSG(t, fabs(sqrt(v / (N - 1)) - 1.0) < 1e-5, "std %g", sqrt(v / (N - 1)));
    sdt_velocity(&s, ts[0], x0, noise, N / 2, ref);
    CHECK(t, memcmp(ref, target, N / 2 * sizeof *ref) == 0);
    /* Input perturbation changes the input but not the target. */
    sdt_add_noise(&s, ts[0], x0, noise, N / 2, ref);
    CHECK(t, memcmp(ref, noisy, N / 2 * sizeof *ref) != 0);

    /* Bad options are refused with a message. */
    o.adaptive_noise = true, o.noise_offset = 0;
    CHECK(t, sdt_objective_sample_batch(&s, &o, SDT_PREDICT_V, &r, x0, B, H, W, C, ts, noise, noisy, target,
                                        msg, sizeof msg) == -1);
    CHECK(t, strstr(msg, "noise_offset") != NULL);
    sdt_noise_options_default(&o);
    o.min_timestep = 500, o.max_timestep = 500;
    CHECK(t, sdt_noise_options_check(&o, msg, sizeof msg) == -1);
    sdt_loss_options lo;
    sdt_loss_options_default(&lo);
    lo.scale_v_pred_loss_like_noise_pred = true;
    CHECK(t, sdt_loss_options_check(&lo, msg, sizeof msg) == -1);
    CHECK(t, strstr(msg, "v-prediction") != NULL);
    sdt_loss_options_default(&lo);
    lo.prediction = SDT_PREDICT_V, lo.v_pred_like_loss = 0.1;
    CHECK(t, sdt_loss_options_check(&lo, msg, sizeof msg) == -1);
}

TEST_MAIN("train.objective", TEST(test_schedule), TEST(test_forward), TEST(test_noise_offset),
          TEST(test_multires), TEST(test_losses), TEST(test_gradcheck), TEST(test_rng),
          TEST(test_sample_batch))
