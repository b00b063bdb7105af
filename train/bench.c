/* The training benchmark: one session (engine, random UNet, LoRA or full gradients, optimizer) and timed
 * steps per batch size. A step is what sdt_trainer_step does for one micro-batch with cached latents and
 * text outputs: the diffusion pass (diffusion_pass.c), gradient clipping, the optimizer update and zeroed
 * gradients. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench.h"
#include "checkpoint.h"
#include "diffusion_pass.h"
#include "flops.h"
#include "fp8_base.h"
#include "layers.h"
#include "lora.h"
#include "optim_settings.h"
#include "precision.h"
#include "sdtune/config.h"
#include "sdtune/diag.h"
#include "sdtune/schema.h"
#include "sdtune/strutil.h"
#include "trainer_config.h"
#include "unet.h"

#define CONTEXT_LENGTH 77 /* CLIP's padded prompt: what the text cache holds per caption */

struct sdt_bench {
    sdt_bench_options o;
    sdt_bench_info info;
    sdt_engine *e;
    /* The run's settings as a training config would hold them (defaults plus the options): the trainer's
     * own helpers read the compute dtype, fp8_base, the LoRA and optimizer and the memory plan from it. */
    sdt_config *cfg;
    sdt_model model; /* the UNet's table only: no text encoder, no VAE */
    sdt_unet *unet;
    int has_lora;
    sdt_lora_network lora;
    sdt_optimizer optim;
    double max_grad_norm;
    sdt_schedule schedule;
    sdt_noise_options noise;
    sdt_loss_options loss;
    sdt_rng rng;
    sdt_loss_scaler scaler; /* fp16 only, as in training */
    uint64_t step;          /* steps run, keys the LoRA dropout masks */
};

static const char *const family_names[SDT_BENCH_FAMILY_COUNT] = {
    "conv", "linear", "attention", "norm", "elementwise", "optimizer", "other",
};

const char *sdt_bench_family_name(sdt_bench_family f)
{
    return f >= 0 && f < SDT_BENCH_FAMILY_COUNT ? family_names[f] : "?";
}

static int starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

sdt_bench_family sdt_bench_family_of_op(const char *op)
{
    if (starts_with(op, "conv2d_"))
        return SDT_BENCH_CONV;
    if (starts_with(op, "linear_"))
        return SDT_BENCH_LINEAR;
    if (starts_with(op, "attention_") || starts_with(op, "softmax_"))
        return SDT_BENCH_ATTENTION;
    if (starts_with(op, "group_norm_") || starts_with(op, "layer_norm_"))
        return SDT_BENCH_NORM;
    if (strcmp(op, "optimizer_update") == 0)
        return SDT_BENCH_OPTIMIZER;
    return SDT_BENCH_ELEMENTWISE;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* splitmix64's finaliser: per-step keys from the seed. */
static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* ---- setup -----------------------------------------------------------------------------------------------
 */

/* Sets one setting of the bench's config from its text form. */
static int set_setting(sdt_config *cfg, const char *key, const char *text, char **error)
{
    sdt_diag_list diags;
    sdt_diag_list_init(&diags);
    int rc = sdt_config_set_text(cfg, sdt_schema_find(key), text, &diags);
    if (rc != 0)
        sdt_set_error(error, "%s \"%s\": %s", key, text,
                      diags.count > 0 ? diags.items[0].message : "not a valid value");
    sdt_diag_list_free(&diags);
    return rc != 0 ? -1 : 0;
}

/* The config a training run with the bench's settings would have: a new config's defaults, the training
 * type of the mode, the precision options, cached latents and a frozen text encoder (the bench trains the
 * UNet only), and the resolution. */
static int make_config(sdt_bench *b, char **error)
{
    const sdt_bench_options *o = &b->o;
    b->cfg = sdt_config_new();
    if (!b->cfg)
        return sdt_set_error(error, "out of memory");
    char resolution[32];
    snprintf(resolution, sizeof resolution, "[%d]", o->resolution);
    const char *mp = o->mixed_precision ? o->mixed_precision : "auto";
    if (set_setting(b->cfg, "training_type", o->full ? "finetune" : "lora", error) != 0 ||
        set_setting(b->cfg, "mixed_precision", mp, error) != 0 ||
        set_setting(b->cfg, "fp8_base_unet", o->fp8 ? "true" : "false", error) != 0 ||
        set_setting(b->cfg, "cache_latents", "true", error) != 0 ||
        set_setting(b->cfg, "network_train_unet_only", "true", error) != 0 ||
        set_setting(b->cfg, "resolution", resolution, error) != 0)
        return -1;
    if (o->checkpointing >= 0 &&
        set_setting(b->cfg, "gradient_checkpointing", o->checkpointing ? "true" : "false", error) != 0)
        return -1;
    /* What the trainer refuses, the bench refuses with the same rules (trainer_setup.c). */
    b->info.compute_dtype = sdt_train_compute_dtype(b->cfg, o->device);
    if (b->info.compute_dtype != SDT_F32 && o->full)
        return sdt_set_error(error,
                             "precision %s: a full fine-tune trains the model's own weights, which stay fp32 "
                             "for now (use fp32)",
                             sdt_train_precision_name(b->info.compute_dtype));
    if (sdt_fp8_base_check(b->cfg, error) != 0)
        return -1;
    b->info.precision = b->info.compute_dtype == SDT_BF16  ? "bf16"
                        : b->info.compute_dtype == SDT_F16 ? "fp16"
                                                           : "fp32";
    b->info.fp8 = (sdt_fp8_base_components(b->cfg) >> SDT_COMPONENT_UNET) & 1u;
    return 0;
}

/* The random model: the UNet table allocated and initialised as init-model does, in the compute dtype with
 * the linear and conv weights in F8 under fp8 (what sdt_model_load gives a training run); the text encoder
 * and VAE tables are emptied first, as the bench never runs them (cached latents and text outputs). */
static int make_model(sdt_bench *b, char **error)
{
    if (sdt_model_init(&b->model, b->o.arch, error) != 0)
        return -1;
    sdt_param_table_free(NULL, &b->model.text_encoder);
    sdt_param_table_init(&b->model.text_encoder, "text_encoder", SDT_PREFIX_CLIP_L);
    sdt_param_table_free(NULL, &b->model.vae);
    sdt_param_table_init(&b->model.vae, "vae", SDT_PREFIX_VAE);
    /* full fine-tune: every UNet entry trains, so the allocation adds its F32 gradient */
    for (size_t i = 0; b->o.full && i < b->model.unet.count; i++)
        b->model.unet.items[i].trainable = 1;
    b->model.unet.f8_weights = b->info.fp8;
    if (sdt_model_alloc(b->e, &b->model, b->info.compute_dtype, error) != 0 ||
        sdt_model_init_random(b->e, &b->model, b->o.seed, error) != 0)
        return -1;
    return sdt_unet_create(&b->o.arch->unet, &b->model.unet, &b->unet, error);
}

/* The objective, LoRA and optimizer at the defaults of a new config (what a run gets when it sets
 * nothing). */
static int make_training(sdt_bench *b, char **error)
{
    const sdt_config *cfg = b->cfg;
    sdt_train_settings s;
    sdt_train_settings_read(cfg, &s);
    sdt_optim_config oc;
    int rc = -1;
    if (sdt_optim_from_settings(cfg, &oc, NULL, error) != 0 || sdt_optim_init(&b->optim, &oc, 1, error) != 0)
        goto done;
    b->info.optimizer = sdt_optim_kind_name(oc.kind);
    double lr = s.unet_lr > 0 ? s.unet_lr : s.learning_rate;
    if (sdt_optim_set_lr(&b->optim, 0, lr, error) != 0)
        goto done;
    b->max_grad_norm = s.max_grad_norm;
    /* Off the CPU the optimizer runs on the bench's engine as in training (sdt_optim_use_engine: state in
     * device memory, the clipping norm and the update as ops). Only a host-only optimizer (AdamW8bit,
     * Adafactor, Prodigy; not the default) would leave the update out, zeroing the gradients on the
     * device instead, and the report says so. */
    b->info.optimizer_skipped = 0;
    if (b->o.device != SDT_DEVICE_CPU) {
        char *why = NULL;
        b->info.optimizer_skipped = sdt_optim_use_engine(&b->optim, b->e, &why) != 0;
        free(why);
    }
    b->info.checkpointing = s.gradient_checkpointing;
    sdt_unet_set_checkpointing(b->unet, s.gradient_checkpointing);
    sdt_schedule_init(&b->schedule, false);
    sdt_noise_options_default(&b->noise);
    sdt_loss_options_default(&b->loss);
    b->loss.prediction = b->o.arch->unet.prediction;
    sdt_rng_init(&b->rng, b->o.seed, 1);
    sdt_loss_scaler_init(&b->scaler, b->info.compute_dtype);
    if (b->o.full) {
        rc = sdt_optim_add_table(&b->optim, &b->model.unet, 0, error);
        goto done;
    }
    sdt_lora_options lo;
    sdt_lora_options_default(&lo);
    lo.network_dim = s.network_dim;
    lo.network_alpha = (float)s.network_alpha;
    lo.conv_dim = s.conv_dim;
    lo.conv_alpha = (float)s.conv_alpha;
    lo.dropout = (float)s.network_dropout;
    lo.rank_dropout = (float)s.rank_dropout;
    lo.module_dropout = (float)s.module_dropout;
    lo.unet = 1;
    lo.text_encoder = 0; /* frozen, its outputs cached */
    lo.seed = b->o.seed;
    if (sdt_lora_create(b->e, &b->model, &lo, &b->lora, error) != 0)
        goto done;
    b->has_lora = 1;
    b->info.lora_rank = lo.network_dim;
    b->info.lora_alpha = lo.network_alpha;
    b->info.lora_modules = b->lora.count;
    for (size_t i = 0; i < b->lora.count; i++)
        b->info.trainable_params += sdt_tensor_numel(&b->lora.modules[i].adapter.down) +
                                    sdt_tensor_numel(&b->lora.modules[i].adapter.up);
    rc = sdt_lora_add_to_optimizer(&b->lora, &b->optim, 0, -1, error);
done:
    return rc;
}

int sdt_bench_create(const sdt_bench_options *o, sdt_bench **out, char **error)
{
    *out = NULL;
    int align = 8 << (o->arch->unet.levels - 1); /* pixels: the VAE's 8 times the UNet's downsampling */
    if (o->resolution < align || o->resolution % align != 0)
        return sdt_set_error(error, "resolution %d: must be a positive multiple of %d for %s", o->resolution,
                             align, o->arch->name);
    if (o->steps < 1 || o->warmup < 0)
        return sdt_set_error(error, "steps %d, warmup %d: need at least one timed step", o->steps, o->warmup);
    sdt_bench *b = calloc(1, sizeof *b);
    if (!b)
        return sdt_set_error(error, "out of memory");
    b->o = *o;
    sdt_engine_options eo = {.device = o->device, .threads = o->threads};
    if (sdt_engine_create(&eo, &b->e, error) != 0) {
        free(b);
        return -1;
    }
    b->info.backend = sdt_engine_backend_name(b->e);
    b->info.latent_side = o->resolution / 8;
    b->info.context_length = CONTEXT_LENGTH;
    b->info.context_width = o->arch->unet.cross_attention_dim;
    if (make_config(b, error) != 0 || make_model(b, error) != 0 || make_training(b, error) != 0) {
        sdt_bench_free(b);
        return -1;
    }
    b->info.unet_params = sdt_param_table_numel(&b->model.unet);
    if (o->full)
        b->info.trainable_params = b->info.unet_params;
    *out = b;
    return 0;
}

void sdt_bench_free(sdt_bench *b)
{
    if (!b)
        return;
    sdt_optim_free(&b->optim);
    if (b->has_lora)
        sdt_lora_free(b->e, &b->lora);
    if (b->unet)
        sdt_unet_free(b->e, b->unet);
    sdt_model_free(b->e, &b->model);
    if (b->e)
        sdt_engine_free(b->e);
    sdt_config_free(b->cfg);
    free(b);
}

const sdt_bench_info *sdt_bench_get_info(const sdt_bench *b) { return &b->info; }

/* ---- GEMM peak -------------------------------------------------------------------------------------------
 */

int sdt_bench_gemm_peak(sdt_bench *b, int n, int repeats, double *flops_per_second, int *n_used, char **error)
{
    if (n <= 0)
        n = b->o.device == SDT_DEVICE_CPU ? 1024 : 8192;
    if (n_used)
        *n_used = n;
    /* The MFU compares the step with the GEMMs it runs: those of the compute dtype (fp8 weights are
     * dequantised to it before every GEMM, so fp8 changes nothing here). */
    sdt_dtype dtype = b->info.compute_dtype;
    sdt_tensor a = {0}, w = {0}, out = {0}; /* [n, n] each, compute dtype */
    int64_t shape[2] = {n, n};
    int rc = -1;
    if (sdt_act_alloc(b->e, &a, dtype, 2, shape) != 0 || sdt_act_alloc(b->e, &w, dtype, 2, shape) != 0 ||
        sdt_act_alloc(b->e, &out, dtype, 2, shape) != 0 || sdt_fill(b->e, &a, 0.5f) != 0 ||
        sdt_fill(b->e, &w, 0.25f) != 0) {
        sdt_set_error(error, "GEMM peak: %s", sdt_engine_error(b->e));
        goto done;
    }
    double best = 0;
    for (int i = 0; i <= repeats; i++) { /* the first is a warm-up */
        double start = now_seconds();
        if (sdt_linear_forward(b->e, &out, &a, &w, NULL) != 0 || sdt_engine_sync(b->e) != 0) {
            sdt_set_error(error, "GEMM peak: %s", sdt_engine_error(b->e));
            goto done;
        }
        double seconds = now_seconds() - start;
        if (i > 0 && (best == 0 || seconds < best))
            best = seconds;
    }
    *flops_per_second = best > 0 ? 2.0 * (double)n * (double)n * (double)n / best : 0;
    rc = 0;
done:
    sdt_act_free(b->e, &a);
    sdt_act_free(b->e, &w);
    sdt_act_free(b->e, &out);
    return rc;
}

/* ---- steps -----------------------------------------------------------------------------------------------
 */

/* Random stand-ins for what the caches would hold. */
typedef struct bench_batch {
    int B, side;
    float *x0;      /* [B, side, side, 4] latents */
    float *context; /* [B, 77, D] text-encoder outputs */
} bench_batch;

/* Zeroes the trainable gradients through the engine (they live in device memory off the CPU). */
static int zero_grads_on_engine(sdt_bench *b)
{
    for (size_t i = 0; b->has_lora && i < b->lora.count; i++)
        if (sdt_fill(b->e, &b->lora.modules[i].adapter.down_grad, 0.0f) != 0 ||
            sdt_fill(b->e, &b->lora.modules[i].adapter.up_grad, 0.0f) != 0)
            return -1;
    for (size_t i = 0; !b->has_lora && i < b->model.unet.count; i++)
        if (b->model.unet.items[i].grad.data && sdt_fill(b->e, &b->model.unet.items[i].grad, 0.0f) != 0)
            return -1;
    return 0;
}

/* One training step; *optimizer_seconds gets the time of clipping, update and zeroing. */
static int one_step(sdt_bench *b, const bench_batch *d, double *loss, double *optimizer_seconds, char **error)
{
    const sdt_unet_config *c = &b->o.arch->unet;
    if (b->has_lora)
        sdt_lora_set_training(&b->lora, 1, mix64(b->o.seed ^ mix64(++b->step)));
    /* [B, 77, D] F32, uploaded every step as the trainer does from its text cache, then converted to the
     * compute dtype the UNet's cross-attention takes (trainer_step.c, make_context) */
    sdt_tensor ctx = {0};
    int64_t cs[3] = {d->B, CONTEXT_LENGTH, c->cross_attention_dim};
    if (sdt_act_upload_f32(b->e, &ctx, b->info.compute_dtype, 3, cs, d->context) != 0)
        return sdt_set_error(error, "context upload: %s", sdt_engine_error(b->e));
    sdt_diffusion_pass pass = {.schedule = &b->schedule,
                               .noise = &b->noise,
                               .loss = &b->loss,
                               .prediction = c->prediction,
                               .rng = &b->rng,
                               .x0 = d->x0,
                               .B = d->B,
                               .h = d->side,
                               .w = d->side,
                               .C = c->in_channels,
                               .context = &ctx,
                               .dtype = b->info.compute_dtype,
                               .loss_scale = (float)b->scaler.scale};
    int rc = sdt_diffusion_pass_run(b->e, b->unet, &pass, loss, error);
    sdt_act_free(b->e, &ctx);
    if (rc == 1)
        return sdt_set_error(error, "the loss is not finite");
    if (rc != 0)
        return -1;
    double start = now_seconds(), norm = 0;
    if (b->info.optimizer_skipped) {
        if (zero_grads_on_engine(b) != 0)
            return sdt_set_error(error, "zeroing the gradients: %s", sdt_engine_error(b->e));
    } else {
        /* fp16: unscale before clipping, and a step whose gradients overflowed is skipped and halves the
         * scale, as sdt_trainer_step does with the same scaler (precision.h) */
        if (b->scaler.enabled)
            sdt_optim_scale_grads(&b->optim, (float)(1.0 / b->scaler.scale));
        sdt_optim_clip_grad_norm(&b->optim, b->max_grad_norm, &norm);
        int finite = isfinite(norm);
        if (!finite && !(b->scaler.enabled && b->scaler.scale > 1.0))
            return sdt_set_error(error, "the gradient norm is not finite");
        if (finite && sdt_optim_step(&b->optim, error) != 0)
            return -1;
        sdt_optim_zero_grads(&b->optim);
        sdt_loss_scaler_update(&b->scaler, finite);
    }
    *optimizer_seconds = now_seconds() - start;
    return 0;
}

static int64_t peak_rss_bytes(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return -1;
    return (int64_t)ru.ru_maxrss * 1024; /* Linux reports KiB */
}

/* Sums the op timing into families (per step over `steps`). */
static void collect_families(sdt_bench *b, int steps, double *family_seconds)
{
    sdt_op_time times[64];
    size_t n = sdt_engine_op_times(b->e, times, sizeof times / sizeof times[0]);
    for (size_t i = 0; i < n; i++)
        family_seconds[sdt_bench_family_of_op(times[i].op)] += times[i].seconds / steps;
}

/* The memory plan of a training run with the bench's settings at `batch`: the same config the session was
 * made from, with train_batch_size set, through the trainer's own plan. */
static int plan_memory(sdt_bench *b, int batch, sdt_memory_plan *plan, char **error)
{
    char text[32];
    snprintf(text, sizeof text, "%d", batch);
    sdt_memory_plan_input in;
    if (set_setting(b->cfg, "train_batch_size", text, error) != 0 ||
        sdt_memory_plan_input_from_config(b->cfg, &b->model, b->o.device, &in, error) != 0)
        return -1;
    return sdt_memory_plan_build(&in, plan, error);
}

int sdt_bench_run(sdt_bench *b, int batch, double peak_flops, sdt_bench_result *r, char **error)
{
    memset(r, 0, sizeof *r);
    if (batch < 1)
        return sdt_set_error(error, "batch %d: must be at least 1", batch);
    const sdt_unet_config *c = &b->o.arch->unet;
    bench_batch d = {.B = batch, .side = b->info.latent_side};
    size_t latents = (size_t)batch * (size_t)d.side * (size_t)d.side * (size_t)c->in_channels;
    size_t context = (size_t)batch * CONTEXT_LENGTH * (size_t)c->cross_attention_dim;
    d.x0 = malloc(latents * sizeof *d.x0);
    d.context = malloc(context * sizeof *d.context);
    if (!d.x0 || !d.context) {
        free(d.x0);
        free(d.context);
        return sdt_set_error(error, "out of memory");
    }
    sdt_rng data_rng;
    sdt_rng_init(&data_rng, b->o.seed ^ (uint64_t)batch, 2);
    sdt_rng_fill_normal(&data_rng, d.x0, latents);
    sdt_rng_fill_normal(&data_rng, d.context, context);

    sdt_flop_count count;
    int rc = sdt_flops_unet(c, &b->model.unet, batch, d.side, d.side, CONTEXT_LENGTH, &count, error);
    if (rc == 0)
        rc = plan_memory(b, batch, &r->plan, error);
    /* The high-water mark from here on: the model, LoRA and optimizer state already held, then what the
     * steps of this batch size add (the optimizer's device state on the first update, activations). */
    sdt_engine_reset_peak(b->e);
    double optimizer = 0, loss = 0;
    for (int i = 0; rc == 0 && i < b->o.warmup; i++)
        rc = one_step(b, &d, &loss, &optimizer, error);
    /* On the CPU the op timing costs two clock reads per op, so it stays on for the timed steps. A queued
     * device syncs around every timed op, so there the timed steps run without it and one more step,
     * untimed, gives the breakdown. */
    int separate_profile = b->o.device != SDT_DEVICE_CPU;
    double optimizer_total = 0, start = now_seconds();
    if (rc == 0 && !separate_profile)
        sdt_engine_set_op_timing(b->e, 1);
    for (int i = 0; rc == 0 && i < b->o.steps; i++) {
        rc = one_step(b, &d, &loss, &optimizer, error);
        optimizer_total += optimizer;
    }
    if (rc == 0 && sdt_engine_sync(b->e) != 0)
        rc = sdt_set_error(error, "%s", sdt_engine_error(b->e));
    double elapsed = now_seconds() - start;
    int profiled_steps = b->o.steps;
    double profiled_elapsed = elapsed, profiled_optimizer = optimizer_total;
    if (rc == 0 && separate_profile) {
        sdt_engine_set_op_timing(b->e, 1);
        double p0 = now_seconds();
        rc = one_step(b, &d, &loss, &profiled_optimizer, error);
        sdt_engine_sync(b->e);
        profiled_elapsed = now_seconds() - p0;
        profiled_steps = 1;
    }
    if (rc == 0) {
        collect_families(b, profiled_steps, r->family_seconds);
        r->family_seconds[SDT_BENCH_OPTIMIZER] = profiled_optimizer / profiled_steps;
        double accounted = 0;
        for (int f = 0; f < SDT_BENCH_OTHER; f++)
            accounted += r->family_seconds[f];
        double other = profiled_elapsed / profiled_steps - accounted;
        r->family_seconds[SDT_BENCH_OTHER] = other > 0 ? other : 0;
    }
    sdt_engine_set_op_timing(b->e, 0);
    free(d.x0);
    free(d.context);
    if (rc != 0)
        return -1;
    r->batch = batch;
    r->steps = b->o.steps;
    r->step_seconds = elapsed / b->o.steps;
    r->images_per_second = batch / r->step_seconds;
    r->forward_flops = 2.0 * sdt_flop_forward_mac(&count);
    r->flops_per_step = sdt_flops_training(&count, b->o.full ? SDT_FLOP_TRAIN_FULL : SDT_FLOP_TRAIN_LORA,
                                           b->info.checkpointing);
    r->flops_per_second = r->flops_per_step / r->step_seconds;
    r->mfu = peak_flops > 0 ? r->flops_per_second / peak_flops : 0;
    r->loss = loss;
    /* The engine's allocator counts device memory on CUDA (cuda_backend.cu) and host blocks on the CPU,
     * where the process's resident peak stays the headline figure: it includes what the allocator does
     * not see (the host-side optimizer state, the batch buffers, the runtime). */
    r->engine_peak_bytes = (int64_t)sdt_engine_peak_bytes(b->e);
    r->peak_bytes = b->o.device == SDT_DEVICE_CPU ? peak_rss_bytes() : r->engine_peak_bytes;
    return 0;
}
