/* LoRA training against PyTorch (tools/train/make_lora_fixtures.py; docs/training.md, "LoRA training against
 * PyTorch"): 20 steps of kohya's process_batch on the tiny SD1.5 model (sd15_tiny.safetensors, F32), with the
 * per-step latents, noise, timesteps and token ids of the fixture, a LoRA network made by sdt_lora_create and
 * loaded from the reference's initial kohya file, two parameter groups (text encoder, UNet) and each of four
 * optimizers / networks: AdamW, Lion, SGD with Nesterov momentum (clipping every step) and AdamW with LoCon.
 * Every step's loss and gradient norm must match diffusers + transformers within 1e-4 relative, and so must
 * the final weights of the stored modules. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "clip_text.h"
#include "layers.h"
#include "lora.h"
#include "objective.h"
#include "optim.h"
#include "sdtune/dtype.h"
#include "sdtune/safetensors.h"
#include "unet.h"
#include "unit/check.h"
#include "unit/test_engine.h"

#define MODEL_PATH "tests/data/models/sd15_tiny.safetensors"
#define DATA_DIR "tests/data/train/"
#define STEPS 20
#define BATCH 2
#define LATENT 8 /* latents [BATCH, LATENT, LATENT, CHANNELS] */
#define CHANNELS 4
#define TOKENS 77
#define WIDTH 48   /* the tiny text encoder's hidden size (context [BATCH, TOKENS, WIDTH]) */
#define LIMIT 1e-4 /* relative, for every compared number */

typedef struct reference_run {
    const char *name; /* lora_reference_<name>.safetensors */
    sdt_optim_kind kind;
    int locon;
    size_t unet_modules, text_encoder_modules;
} reference_run;

static const reference_run RUNS[] = {
    {"adamw", SDT_OPTIM_ADAMW, 0, 192, 18},
    {"lion", SDT_OPTIM_LION, 0, 192, 18},
    {"sgd_nesterov", SDT_OPTIM_SGD, 0, 192, 18},
    {"adamw_locon", SDT_OPTIM_ADAMW, 1, 277, 18},
};

/* The per-step inputs shared by every run. */
typedef struct step_inputs {
    float *latents;     /* [STEPS, BATCH, LATENT, LATENT, CHANNELS] */
    float *noise;       /* [STEPS, BATCH, LATENT, LATENT, CHANNELS] */
    int32_t *timesteps; /* [STEPS, BATCH] */
    int32_t *ids;       /* [STEPS, BATCH, TOKENS] */
} step_inputs;

/* The model and its two networks, loaded once for every run. */
typedef struct fixture {
    sdt_engine *e;
    sdt_model model;
    sdt_unet *unet;
    sdt_clip_text *text;
    step_inputs in;
} fixture;

/* A copy of tensor `name` of dtype `dtype` holding `count` elements, or NULL with a message. */
static void *read_raw(const sdt_safetensors *st, const char *name, sdt_dtype dtype, size_t count)
{
    const sdt_st_tensor *t = sdt_safetensors_find(st, name);
    if (!t || t->dtype != dtype || t->count != count) {
        fprintf(stderr, "%s: %s is missing or not %zu elements of the expected dtype\n",
                sdt_safetensors_name(st), name, count);
        return NULL;
    }
    size_t bytes = count * (sdt_dtype_bits(dtype) / 8);
    void *out = malloc(bytes);
    if (out)
        memcpy(out, t->data, bytes);
    return out;
}

/* Tensor `name` converted to F32 (any float dtype), or NULL. */
static float *read_f32(const sdt_safetensors *st, const char *name, size_t count)
{
    const sdt_st_tensor *t = sdt_safetensors_find(st, name);
    float *out = t && t->count == count ? malloc(count * sizeof *out) : NULL;
    if (!out || sdt_convert(out, SDT_F32, t->data, t->dtype, count) != 0) {
        fprintf(stderr, "%s: cannot read %s as %zu floats\n", sdt_safetensors_name(st), name, count);
        free(out);
        return NULL;
    }
    return out;
}

static double metadata_double(const sdt_safetensors *st, const char *key)
{
    const char *v = sdt_safetensors_metadata(st, key);
    return v ? strtod(v, NULL) : NAN;
}

static void fixture_close(fixture *f)
{
    sdt_unet_free(f->e, f->unet);
    sdt_clip_text_free(f->text);
    sdt_model_free(f->e, &f->model);
    free(f->in.latents);
    free(f->in.noise);
    free(f->in.timesteps);
    free(f->in.ids);
    if (f->e)
        sdt_engine_free(f->e);
    memset(f, 0, sizeof *f);
}

static int fixture_open(test_state *t, fixture *f)
{
    memset(f, 0, sizeof *f);
    f->e = test_cpu_engine(t, 1);
    if (!f->e)
        return -1;
    char *error = NULL;
    sdt_safetensors *st = NULL;
    sdt_model_load_options lo = {.dtype = SDT_F32};
    int ok =
        sdt_model_load(f->e, MODEL_PATH, &lo, &f->model, NULL, &error) == 0 &&
        sdt_unet_create(&f->model.arch.unet, &f->model.unet, &f->unet, &error) == 0 &&
        sdt_clip_text_create(&f->model.arch.text_encoder, &f->model.text_encoder, &f->text, &error) == 0 &&
        sdt_safetensors_open(DATA_DIR "lora_reference_inputs.safetensors", &st, &error) == 0;
    CHECK_MSG(t, ok, "%s", error ? error : "");
    free(error);
    if (ok) {
        size_t latent_count = (size_t)STEPS * BATCH * LATENT * LATENT * CHANNELS;
        f->in.latents = read_raw(st, "latents", SDT_F32, latent_count);
        f->in.noise = read_raw(st, "noise", SDT_F32, latent_count);
        f->in.timesteps = read_raw(st, "timesteps", SDT_I32, (size_t)STEPS * BATCH);
        f->in.ids = read_raw(st, "input_ids", SDT_I32, (size_t)STEPS * BATCH * TOKENS);
        ok = f->in.latents && f->in.noise && f->in.timesteps && f->in.ids;
        CHECK_MSG(t, ok, "cannot read the inputs");
    }
    if (st)
        sdt_safetensors_close(st);
    if (!ok)
        fixture_close(f);
    return ok ? 0 : -1;
}

/* ---- one training step ---------------------------------------------------------------------------- */

typedef struct step_buffers {
    sdt_tensor x;        /* [BATCH, LATENT, LATENT, CHANNELS] noisy latents */
    sdt_tensor ts;       /* [BATCH] timesteps as F32 */
    sdt_tensor dout;     /* [BATCH, LATENT, LATENT, CHANNELS] dL/dpred */
    sdt_tensor dcontext; /* [BATCH, TOKENS, WIDTH] */
} step_buffers;

static void step_buffers_free(sdt_engine *e, step_buffers *b)
{
    sdt_act_free(e, &b->x);
    sdt_act_free(e, &b->ts);
    sdt_act_free(e, &b->dout);
    sdt_act_free(e, &b->dcontext);
}

static int step_buffers_alloc(sdt_engine *e, step_buffers *b)
{
    memset(b, 0, sizeof *b);
    if (sdt_act_alloc(e, &b->x, SDT_F32, 4, SDT_SHAPE(BATCH, LATENT, LATENT, CHANNELS)) != 0 ||
        sdt_act_alloc(e, &b->ts, SDT_F32, 1, SDT_SHAPE(BATCH)) != 0 ||
        sdt_act_alloc(e, &b->dout, SDT_F32, 4, SDT_SHAPE(BATCH, LATENT, LATENT, CHANNELS)) != 0 ||
        sdt_act_alloc(e, &b->dcontext, SDT_F32, 3, SDT_SHAPE(BATCH, TOKENS, WIDTH)) != 0) {
        step_buffers_free(e, b);
        return -1;
    }
    return 0;
}

/* kohya's process_batch for step s: text encoder -> context, noisy latents, UNet, l2 loss against the noise,
 * then the backward through the UNet and the text encoder. Gradients are added into the network's; *loss
 * receives the step's loss. */
static int train_step(test_state *t, fixture *f, const sdt_schedule *schedule, step_buffers *b, int s,
                      double *loss)
{
    const size_t n = (size_t)LATENT * LATENT * CHANNELS;
    const float *latents = f->in.latents + (size_t)s * BATCH * n; /* [BATCH, LATENT, LATENT, CHANNELS] */
    const float *noise = f->in.noise + (size_t)s * BATCH * n;     /* the target (epsilon) */
    int t_step[BATCH];
    for (int i = 0; i < BATCH; i++) {
        t_step[i] = f->in.timesteps[s * BATCH + i];
        ((float *)b->ts.data)[i] = (float)t_step[i];
        sdt_add_noise(schedule, t_step[i], latents + i * n, noise + i * n, n, (float *)b->x.data + i * n);
    }
    sdt_clip_text_result text = {0};
    sdt_tensor pred = {0}; /* [BATCH, LATENT, LATENT, CHANNELS] */
    sdt_clip_text_options to = {.clip_skip = 1, .hidden_layer = -1, .keep_for_backward = 1};
    sdt_loss_options lo;
    sdt_loss_options_default(&lo);
    char msg[256] = "";
    int rc = -1;
    if (sdt_clip_text_forward(f->e, f->text, &text, f->in.ids + (size_t)s * BATCH * TOKENS, BATCH, TOKENS,
                              &to) != 0 ||
        sdt_unet_forward(f->e, f->unet, &pred, &b->x, &b->ts, &text.context, NULL, 1) != 0) {
        CHECK_MSG(t, 0, "step %d forward: %s", s, sdt_engine_error(f->e));
        goto done;
    }
    if (sdt_objective_loss(schedule, &lo, BATCH, LATENT * LATENT, CHANNELS, pred.data, noise, t_step, NULL,
                           NULL, loss, b->dout.data, NULL, msg, sizeof msg) != 0) {
        CHECK_MSG(t, 0, "step %d loss: %s", s, msg);
        goto done;
    }
    memset(b->dcontext.data, 0, sdt_tensor_bytes(&b->dcontext)); /* the backward adds into it */
    if (sdt_unet_backward(f->e, f->unet, NULL, &b->dcontext, NULL, &b->dout) != 0 ||
        sdt_clip_text_backward(f->e, f->text, &text, &b->dcontext, NULL, NULL, NULL) != 0) {
        CHECK_MSG(t, 0, "step %d backward: %s", s, sdt_engine_error(f->e));
        goto done;
    }
    rc = 0;
done:
    sdt_unet_release(f->e, f->unet);
    sdt_clip_text_result_free(f->e, &text);
    sdt_act_free(f->e, &pred);
    return rc;
}

/* ---- comparisons ------------------------------------------------------------------------------------- */

static double relative(double got, double want) { return fabs(got - want) / fmax(fabs(want), 1e-30); }

/* ||got - want|| / ||want|| over n values. */
static double relative_norm(const float *got, const float *want, size_t n)
{
    double diff = 0, ref = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - (double)want[i];
        diff += d * d;
        ref += (double)want[i] * (double)want[i];
    }
    return sqrt(diff) / fmax(sqrt(ref), 1e-30);
}

static const sdt_lora_module *find_module(const sdt_lora_network *net, const char *name, size_t length)
{
    for (size_t i = 0; i < net->count; i++)
        if (strlen(net->modules[i].name) == length && strncmp(net->modules[i].name, name, length) == 0)
            return &net->modules[i];
    return NULL;
}

/* Compares every "final.<module>.lora_down.weight" / ".lora_up.weight" of the reference with the network's
 * values; returns the worst relative error and the count compared. */
static double compare_final_weights(test_state *t, const sdt_lora_network *net, const sdt_safetensors *ref,
                                    int *compared)
{
    double worst = 0;
    *compared = 0;
    for (size_t i = 0; i < sdt_safetensors_count(ref); i++) {
        const sdt_st_tensor *rec = sdt_safetensors_tensor(ref, i);
        if (strncmp(rec->name, "final.", 6) != 0)
            continue;
        const char *key = rec->name + 6;
        const char *suffix = strstr(key, ".lora_");
        int is_down = suffix && strcmp(suffix, ".lora_down.weight") == 0;
        const sdt_lora_module *m = suffix ? find_module(net, key, (size_t)(suffix - key)) : NULL;
        CHECK_MSG(t, m != NULL, "%s names no module of the network", rec->name);
        if (!m)
            continue;
        const sdt_tensor *mine = is_down ? &m->adapter.down : &m->adapter.up;
        size_t n = (size_t)sdt_tensor_numel(mine);
        float *file = read_f32(ref, rec->name, n);
        float *want = malloc(n * sizeof *want);
        CHECK_MSG(t, file && want, "%s: %zu values expected", rec->name, n);
        if (file && want) {
            if (is_down && m->conv_kernel == 3) {
                /* file [R, C, KH, KW] -> engine [R, KH, KW, C]; the others have the same memory order */
                int64_t r = m->adapter.rank, c = m->in_features, k = 3;
                for (int64_t a = 0; a < r; a++)
                    for (int64_t ch = 0; ch < c; ch++)
                        for (int64_t y = 0; y < k; y++)
                            for (int64_t x = 0; x < k; x++)
                                want[((a * k + y) * k + x) * c + ch] = file[((a * c + ch) * k + y) * k + x];
            } else {
                memcpy(want, file, n * sizeof *want);
            }
            double err = relative_norm((const float *)mine->data, want, n);
            CHECK_MSG(t, err <= LIMIT, "%s: relative error %.3e", rec->name, err);
            worst = fmax(worst, err);
            (*compared)++;
        }
        free(file);
        free(want);
    }
    return worst;
}

/* ---- one reference run ----------------------------------------------------------------------------- */

static void run_reference(test_state *t, fixture *f, const reference_run *run)
{
    char path[256];
    snprintf(path, sizeof path, DATA_DIR "lora_reference_%s.safetensors", run->name);
    char *error = NULL;
    sdt_safetensors *ref = NULL;
    sdt_lora_network net = {0};
    sdt_optimizer opt = {0};
    step_buffers b = {0};
    double *want_loss = NULL, *want_norm = NULL;
    if (sdt_safetensors_open(path, &ref, &error) != 0) {
        CHECK_MSG(t, 0, "%s", error);
        goto done;
    }
    want_loss = read_raw(ref, "loss", SDT_F64, STEPS);
    want_norm = read_raw(ref, "grad_norm", SDT_F64, STEPS);
    double te_lr = metadata_double(ref, "text_encoder_lr"), unet_lr = metadata_double(ref, "unet_lr");
    double max_norm = metadata_double(ref, "max_grad_norm");
    const char *init = sdt_safetensors_metadata(ref, "init");
    if (!want_loss || !want_norm || !(te_lr > 0) || !(unet_lr > 0) || !(max_norm > 0) || !init) {
        CHECK_MSG(t, 0, "%s: incomplete reference", path);
        goto done;
    }

    /* kohya's options: dim 4, alpha 2 (scale 0.5); LoCon adds conv_dim 4, conv_alpha 1. */
    sdt_lora_options lo;
    sdt_lora_options_default(&lo);
    lo.network_dim = 4;
    lo.network_alpha = 2.0f;
    lo.conv_dim = run->locon ? 4 : 0;
    lo.conv_alpha = 1.0f;
    char init_path[256];
    snprintf(init_path, sizeof init_path, DATA_DIR "%s", init);
    if (sdt_lora_create(f->e, &f->model, &lo, &net, &error) != 0 ||
        sdt_lora_load(f->e, &net, init_path, &error) != 0) {
        CHECK_MSG(t, 0, "%s", error);
        goto done;
    }
    CHECK_MSG(t, net.unet_count == run->unet_modules && net.text_encoder_count == run->text_encoder_modules,
              "%zu UNet and %zu text-encoder modules, expected %zu and %zu", net.unet_count,
              net.text_encoder_count, run->unet_modules, run->text_encoder_modules);

    /* Group 0: text encoder, group 1: UNet (kohya's order); constant learning rates. */
    sdt_optim_config oc;
    sdt_optim_config_default(&oc, run->kind);
    if (run->kind == SDT_OPTIM_ADAMW || run->kind == SDT_OPTIM_LION)
        oc.weight_decay = 0.01;
    if (run->kind == SDT_OPTIM_SGD) {
        oc.momentum = 0.9;
        oc.nesterov = 1;
    }
    if (sdt_optim_init(&opt, &oc, 2, &error) != 0 ||
        sdt_lora_add_to_optimizer(&net, &opt, 1, 0, &error) != 0 ||
        sdt_optim_set_lr(&opt, 0, te_lr, &error) != 0 || sdt_optim_set_lr(&opt, 1, unet_lr, &error) != 0) {
        CHECK_MSG(t, 0, "%s", error);
        goto done;
    }
    if (step_buffers_alloc(f->e, &b) != 0) {
        CHECK_MSG(t, 0, "out of memory");
        goto done;
    }
    sdt_schedule schedule;
    sdt_schedule_init(&schedule, false);
    double worst_loss = 0, worst_norm = 0;
    int steps_done = 0;
    for (int s = 0; s < STEPS; s++) {
        sdt_lora_set_training(&net, 1, (uint64_t)s);
        double loss = 0, norm = 0;
        if (train_step(t, f, &schedule, &b, s, &loss) != 0)
            break;
        sdt_optim_clip_grad_norm(&opt, max_norm, &norm);
        if (sdt_optim_step(&opt, &error) != 0) {
            CHECK_MSG(t, 0, "step %d: %s", s, error);
            break;
        }
        sdt_lora_zero_grads(&net);
        double el = relative(loss, want_loss[s]), en = relative(norm, want_norm[s]);
        CHECK_MSG(t, el <= LIMIT, "%s step %d: loss %.9g, PyTorch %.9g (relative %.3e)", run->name, s, loss,
                  want_loss[s], el);
        CHECK_MSG(t, en <= LIMIT, "%s step %d: gradient norm %.9g, PyTorch %.9g (relative %.3e)", run->name,
                  s, norm, want_norm[s], en);
        worst_loss = fmax(worst_loss, el);
        worst_norm = fmax(worst_norm, en);
        steps_done++;
    }
    CHECK(t, steps_done == STEPS);
    int compared = 0;
    double worst_weight = compare_final_weights(t, &net, ref, &compared);
    CHECK(t, compared >= 16);
    printf("%-13s %d steps: loss %.6f -> %.6f, worst relative error: loss %.2e, "
           "gradient norm %.2e, "
           "%d final weights %.2e (limit %.0e)\n",
           run->name, steps_done, want_loss[0], want_loss[STEPS - 1], worst_loss, worst_norm, compared,
           worst_weight, LIMIT);
done:
    free(error);
    free(want_loss);
    free(want_norm);
    step_buffers_free(f->e, &b);
    sdt_optim_free(&opt);
    sdt_lora_free(f->e, &net);
    if (ref)
        sdt_safetensors_close(ref);
}

static void test_reference_runs(test_state *t)
{
    fixture f;
    if (fixture_open(t, &f) != 0)
        return;
    size_t runs = sizeof RUNS / sizeof RUNS[0];
#ifdef SDTUNE_SANITIZED_BUILD
    /* The sanitizers make a run ~40x slower; the first run exercises every code path the others do, and
     * the release build checks all of them. */
    runs = 1;
#endif
    for (size_t i = 0; i < runs; i++)
        run_reference(t, &f, &RUNS[i]);
    fixture_close(&f);
}

TEST_MAIN("lora_reference", TEST(test_reference_runs))
