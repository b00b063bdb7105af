/* The diffusion pass (train/diffusion_pass.h) on the tiny SD1.5 UNet with a LoRA:
 * - the engine path of the loss (mse_loss ops) gives the loss and the LoRA gradients of the host path
 *   (sdt_objective_loss) to F32 rounding, for the l2 weightings, prior weights and fp16's loss scale;
 * - the losses the ops cannot express take the host path whatever is asked;
 * - on the guarded backend the engine path's compute stage (forward, loss, backward) makes no upload,
 *   download or sync, also with network_dropout (its mask is drawn by an op), and the loss comes back in
 *   one 4-byte download; the host path does cross, which shows the count can see it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diffusion_pass.h"
#include "layers.h"
#include "lora.h"
#include "unet.h"
#include "unit/check.h"

enum { BATCH = 2, SIDE = 8, CHANNELS = 4, TOKENS = 3, WIDTH = 48 };

typedef struct fixture {
    sdt_engine *e;
    sdt_model model;
    sdt_unet *unet;
    sdt_lora_network net;
    sdt_tensor context;                       /* [BATCH, TOKENS, WIDTH] F32 on the engine */
    float x0[BATCH * SIDE * SIDE * CHANNELS]; /* [BATCH, SIDE, SIDE, CHANNELS] latents */
    size_t grad_count;                        /* floats in every module's down and up gradient together */
} fixture;

static void fixture_close(fixture *f)
{
    if (!f->e)
        return;
    sdt_act_free(f->e, &f->context);
    sdt_lora_free(f->e, &f->net);
    sdt_unet_free(f->e, f->unet);
    sdt_model_free(f->e, &f->model);
    sdt_engine_free(f->e);
    memset(f, 0, sizeof *f);
}

/* A deterministic fill in [-scale, scale]: values of a sine, so no generator is needed. */
static void fill_wave(float *v, size_t n, float scale, double phase)
{
    for (size_t i = 0; i < n; i++)
        v[i] = scale * (float)sin(0.37 * (double)i + phase);
}

/* Engine, tiny model, UNet-only LoRA (dim 4 / alpha 2, LoCon) with non-zero ups, so that every down gets
 * a gradient, and a context. dropout: network_dropout of the LoRA. */
static int fixture_open(test_state *t, fixture *f, sdt_device_kind device, float dropout)
{
    memset(f, 0, sizeof *f);
    char *error = NULL;
    sdt_engine_options eo = {.device = device, .threads = 1};
    const sdt_model_arch *arch = sdt_model_arch_find("sd15-tiny");
    sdt_lora_options lo;
    sdt_lora_options_default(&lo);
    lo.network_dim = 4;
    lo.network_alpha = 2;
    lo.conv_dim = 2;
    lo.conv_alpha = 1;
    lo.text_encoder = 0;
    lo.dropout = dropout;
    lo.seed = 21;
    int ok = arch && sdt_engine_create(&eo, &f->e, &error) == 0 &&
             sdt_model_init(&f->model, arch, &error) == 0 &&
             sdt_model_alloc(f->e, &f->model, SDT_F32, &error) == 0 &&
             sdt_model_init_random(f->e, &f->model, 7, &error) == 0 &&
             sdt_unet_create(&arch->unet, &f->model.unet, &f->unet, &error) == 0 &&
             sdt_lora_create(f->e, &f->model, &lo, &f->net, &error) == 0;
    CHECK_MSG(t, ok, "fixture: %s", error ? error : "no sd15-tiny");
    free(error);
    if (!ok)
        return -1;
    float *host = NULL;
    for (size_t i = 0; i < f->net.count && ok; i++) {
        sdt_adapter *a = &f->net.modules[i].adapter;
        size_t n = (size_t)sdt_tensor_numel(&a->up);
        host = realloc(host, n * sizeof *host);
        fill_wave(host, n, 0.05f, (double)i);
        ok = host && sdt_engine_upload(f->e, &a->up, host, n * sizeof *host) == 0;
        f->grad_count += (size_t)sdt_tensor_numel(&a->down_grad) + n;
    }
    float ctx[BATCH * TOKENS * WIDTH]; /* [BATCH, TOKENS, WIDTH] */
    fill_wave(ctx, sizeof ctx / sizeof *ctx, 1.0f, 0.5);
    ok = ok && sdt_act_alloc(f->e, &f->context, SDT_F32, 3, (int64_t[]){BATCH, TOKENS, WIDTH}) == 0 &&
         sdt_engine_upload(f->e, &f->context, ctx, sizeof ctx) == 0;
    free(host);
    fill_wave(f->x0, sizeof f->x0 / sizeof *f->x0, 0.8f, 1.5);
    CHECK_MSG(t, ok, "fixture: %s", sdt_engine_error(f->e));
    return ok ? 0 : -1;
}

/* Every module's down then up gradient, in module order, into grads [grad_count]. */
static int download_grads(fixture *f, float *grads)
{
    size_t at = 0;
    for (size_t i = 0; i < f->net.count; i++) {
        const sdt_adapter *a = &f->net.modules[i].adapter;
        const sdt_tensor *both[2] = {&a->down_grad, &a->up_grad};
        for (int k = 0; k < 2; k++) {
            if (sdt_engine_download(f->e, grads + at, both[k], sdt_tensor_bytes(both[k])) != 0)
                return -1;
            at += (size_t)sdt_tensor_numel(both[k]);
        }
    }
    return 0;
}

/* The pass's options; the caller sets loss and the rest. */
typedef struct pass_setup {
    sdt_schedule schedule;
    sdt_noise_options noise;
    sdt_loss_options loss;
    sdt_rng rng;
    float sample_weights[BATCH];
    sdt_diffusion_pass pass;
    int64_t uploads[2]; /* the uploads of run_once's last pass, by host_loss */
} pass_setup;

static void setup_init(pass_setup *s, fixture *f, sdt_prediction prediction)
{
    memset(s, 0, sizeof *s);
    sdt_schedule_init(&s->schedule, false);
    sdt_noise_options_default(&s->noise);
    sdt_loss_options_default(&s->loss);
    s->loss.prediction = prediction;
    s->sample_weights[0] = 1.0f;
    s->sample_weights[1] = 0.75f; /* a regularization image's prior_loss_weight */
    s->pass = (sdt_diffusion_pass){.schedule = &s->schedule,
                                   .noise = &s->noise,
                                   .loss = &s->loss,
                                   .prediction = prediction,
                                   .rng = &s->rng,
                                   .x0 = f->x0,
                                   .B = BATCH,
                                   .h = SIDE,
                                   .w = SIDE,
                                   .C = CHANNELS,
                                   .context = &f->context,
                                   .sample_weights = s->sample_weights};
}

/* One pass from a fresh generator (the same noise and timesteps every time) into zeroed gradients. */
static int run_once(fixture *f, pass_setup *s, int host_loss, double *loss, float *grads, char **error)
{
    sdt_rng_init(&s->rng, 99, 0);
    s->pass.host_loss = host_loss;
    sdt_lora_zero_grads(&f->net);
    sdt_lora_set_training(&f->net, 1, 5);
    int64_t before = sdt_engine_host_transfers(f->e).uploads;
    int rc = sdt_diffusion_pass_run(f->e, f->unet, &s->pass, loss, error);
    s->uploads[host_loss ? 0 : 1] = sdt_engine_host_transfers(f->e).uploads - before;
    if (rc != 0)
        return rc;
    return download_grads(f, grads) == 0 ? 0 : sdt_set_error(error, "%s", sdt_engine_error(f->e));
}

/* The largest |a - b| over the largest |b|: the gradients' error relative to their scale. */
static double relative_error(const float *a, const float *b, size_t n)
{
    double diff = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]), m = fabs((double)b[i]);
        diff = d > diff ? d : diff;
        scale = m > scale ? m : scale;
    }
    return scale > 0 ? diff / scale : diff;
}

typedef struct loss_case {
    const char *name;
    sdt_prediction prediction;
    double min_snr_gamma, v_pred_like_loss;
    int debiased, scale_v_pred;
    float loss_scale;
} loss_case;

static const loss_case CASES[] = {
    {"l2", SDT_PREDICT_EPSILON, 0, 0, 0, 0, 0},
    {"min-snr 5, debiased", SDT_PREDICT_EPSILON, 5, 0, 1, 0, 0},
    {"v-pred-like 0.2, fp16 loss scale 1024", SDT_PREDICT_EPSILON, 0, 0.2, 0, 0, 1024},
    {"v: min-snr 1, scale like noise, debiased", SDT_PREDICT_V, 1, 0, 1, 1, 0},
};

/* The l2 loss on the engine against the host path, on the CPU backend. The worst differences are logged
 * so the bounds below stay grounded in measurement. */
static void test_engine_matches_host(test_state *t)
{
    fixture f;
    if (fixture_open(t, &f, SDT_DEVICE_CPU, 0.0f) != 0) {
        fixture_close(&f);
        return;
    }
    float *host = malloc(f.grad_count * sizeof *host), *engine = malloc(f.grad_count * sizeof *engine);
    CHECK(t, host && engine);
    for (size_t c = 0; host && engine && c < sizeof CASES / sizeof *CASES; c++) {
        const loss_case *k = &CASES[c];
        pass_setup s;
        setup_init(&s, &f, k->prediction);
        s.loss.min_snr_gamma = k->min_snr_gamma;
        s.loss.v_pred_like_loss = k->v_pred_like_loss;
        s.loss.debiased_estimation_loss = k->debiased;
        s.loss.scale_v_pred_loss_like_noise_pred = k->scale_v_pred;
        s.pass.loss_scale = k->loss_scale;
        CHECK(t, sdt_diffusion_loss_on_engine(&s.loss));
        double host_loss = 0, engine_loss = 0;
        char *error = NULL;
        int rc = run_once(&f, &s, 1, &host_loss, host, &error);
        if (rc == 0)
            rc = run_once(&f, &s, 0, &engine_loss, engine, &error);
        CHECK_MSG(t, rc == 0, "%s: %s", k->name, error ? error : "non-finite loss");
        free(error);
        if (rc != 0)
            continue;
        double loss_error = fabs(engine_loss - host_loss) / fabs(host_loss);
        double grad_error = relative_error(engine, host, f.grad_count);
        printf("%s: loss %.9g (host) %.9g (engine), relative %.3g; gradients relative %.3g\n", k->name,
               host_loss, engine_loss, loss_error, grad_error);
        /* Measured: losses within 3e-8 (the engine's F32 result), gradients within 3.3e-7 of their largest
         * value (F32 products in the op against double ones on the host). */
        CHECK_MSG(t, loss_error < 1e-6, "%s: loss %.9g on the engine, %.9g on the host", k->name, engine_loss,
                  host_loss);
        CHECK_MSG(t, grad_error < 1e-6, "%s: gradients differ by %.3g relative", k->name, grad_error);
        /* The paths are told apart by their uploads: the engine path adds target and weights to the input
         * and timesteps, the host path only dL/dpred. */
        CHECK_MSG(t, s.uploads[0] == 3 && s.uploads[1] == 4,
                  "%s: %lld uploads on the host path, %lld on the engine's", k->name, (long long)s.uploads[0],
                  (long long)s.uploads[1]);
    }
    free(host);
    free(engine);
    fixture_close(&f);
}

/* huber, smooth_l1 and l1 take the host path whatever is asked: the same bits both ways. */
static void test_host_only_losses(test_state *t)
{
    fixture f;
    if (fixture_open(t, &f, SDT_DEVICE_CPU, 0.0f) != 0) {
        fixture_close(&f);
        return;
    }
    float *a = malloc(f.grad_count * sizeof *a), *b = malloc(f.grad_count * sizeof *b);
    const sdt_loss_type types[] = {SDT_LOSS_HUBER, SDT_LOSS_SMOOTH_L1, SDT_LOSS_L1};
    for (size_t i = 0; a && b && i < sizeof types / sizeof *types; i++) {
        pass_setup s;
        setup_init(&s, &f, SDT_PREDICT_EPSILON);
        s.loss.loss_type = types[i];
        CHECK(t, !sdt_diffusion_loss_on_engine(&s.loss));
        double la = 0, lb = 0;
        char *error = NULL;
        int rc = run_once(&f, &s, 1, &la, a, &error);
        if (rc == 0)
            rc = run_once(&f, &s, 0, &lb, b, &error);
        CHECK_MSG(t, rc == 0 && la == lb && memcmp(a, b, f.grad_count * sizeof *a) == 0,
                  "loss type %d: %s (losses %.17g, %.17g)", (int)types[i], error ? error : "differ", la, lb);
        free(error);
    }
    free(a);
    free(b);
    fixture_close(&f);
}

static sdt_host_transfers transfers_since(const sdt_host_transfers *from, const sdt_host_transfers *to)
{
    return (sdt_host_transfers){.uploads = to->uploads - from->uploads,
                                .downloads = to->downloads - from->downloads,
                                .syncs = to->syncs - from->syncs,
                                .upload_bytes = to->upload_bytes - from->upload_bytes,
                                .download_bytes = to->download_bytes - from->download_bytes};
}

/* The three stages on the guarded backend, counting the host's transfers of each. */
static int staged(test_state *t, fixture *f, pass_setup *s, sdt_host_transfers counts[3])
{
    sdt_rng_init(&s->rng, 99, 0);
    sdt_lora_zero_grads(&f->net);
    sdt_lora_set_training(&f->net, 1, 5);
    sdt_diffusion_batch *batch = NULL;
    char *error = NULL;
    double loss = 0;
    sdt_host_transfers at[4];
    at[0] = sdt_engine_host_transfers(f->e);
    int rc = sdt_diffusion_pass_prepare(f->e, &s->pass, &batch, &error);
    at[1] = sdt_engine_host_transfers(f->e);
    if (rc == 0)
        rc = sdt_diffusion_pass_compute(f->e, f->unet, &s->pass, batch, &error);
    at[2] = sdt_engine_host_transfers(f->e);
    if (rc == 0)
        rc = sdt_diffusion_pass_finish(f->e, &s->pass, batch, &loss, &error);
    at[3] = sdt_engine_host_transfers(f->e);
    sdt_diffusion_batch_free(f->e, batch);
    sdt_unet_release(f->e, f->unet);
    CHECK_MSG(t, rc == 0 && loss > 0, "%s (loss %g)", error ? error : "non-finite loss", loss);
    free(error);
    for (int i = 0; i < 3; i++)
        counts[i] = transfers_since(&at[i], &at[i + 1]);
    return rc;
}

static void test_compute_is_transfer_free(test_state *t)
{
    fixture f;
    if (fixture_open(t, &f, SDT_DEVICE_GUARDED, 0.0f) == 0) {
        pass_setup s;
        setup_init(&s, &f, SDT_PREDICT_EPSILON);
        s.loss.min_snr_gamma = 5;
        sdt_host_transfers c[3];
        if (staged(t, &f, &s, c) == 0) {
            /* prepare: input, timesteps, target and weights; nothing comes back. */
            CHECK_MSG(t, c[0].uploads == 4 && c[0].downloads == 0 && c[0].syncs == 0,
                      "prepare: %lld uploads, %lld downloads, %lld syncs", (long long)c[0].uploads,
                      (long long)c[0].downloads, (long long)c[0].syncs);
            CHECK_MSG(t, c[1].uploads == 0 && c[1].downloads == 0 && c[1].syncs == 0,
                      "forward, loss and backward: %lld uploads, %lld downloads, %lld syncs",
                      (long long)c[1].uploads, (long long)c[1].downloads, (long long)c[1].syncs);
            CHECK_MSG(t,
                      c[2].uploads == 0 && c[2].downloads == 1 && c[2].download_bytes == 4 && c[2].syncs == 0,
                      "finish: %lld uploads, %lld downloads of %lld bytes", (long long)c[2].uploads,
                      (long long)c[2].downloads, (long long)c[2].download_bytes);
        }
        /* The host path downloads the prediction and uploads its gradient in the middle. */
        s.pass.host_loss = 1;
        if (staged(t, &f, &s, c) == 0)
            CHECK_MSG(t, c[1].uploads == 1 && c[1].downloads == 1, "host path: %lld uploads, %lld downloads",
                      (long long)c[1].uploads, (long long)c[1].downloads);
    }
    fixture_close(&f);

    /* network_dropout: the mask is drawn on the device (the dropout_scale op), so the stretch stays free. */
    if (fixture_open(t, &f, SDT_DEVICE_GUARDED, 0.1f) == 0) {
        pass_setup s;
        setup_init(&s, &f, SDT_PREDICT_EPSILON);
        sdt_host_transfers c[3];
        if (staged(t, &f, &s, c) == 0)
            CHECK_MSG(t, c[1].uploads == 0 && c[1].downloads == 0 && c[1].syncs == 0,
                      "network_dropout: %lld uploads, %lld downloads, %lld syncs", (long long)c[1].uploads,
                      (long long)c[1].downloads, (long long)c[1].syncs);
    }
    fixture_close(&f);
}

TEST_MAIN("diffusion_pass", TEST(test_engine_matches_host), TEST(test_host_only_losses),
          TEST(test_compute_is_transfer_free))
