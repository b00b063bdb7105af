/* One optimizer step: gradient_accumulation_steps micro-batches (fewer at the end of an epoch, as
 * accelerate syncs there), each latents + captions -> noise, timesteps, noisy input and target -> UNet
 * forward and backward (and the text encoder's when it trains); then the guards, 1/accumulation, clipping,
 * the learning rates of the schedule, the update and zeroed gradients. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "diffusion_pass.h"
#include "layers.h"
#include "trainer_internal.h"

/* A 64-bit mix (splitmix64's finaliser) to derive keys from (seed, counters). */
static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* The buffers of one micro-batch. */
typedef struct micro_batch {
    int B, h, w, C;
    float *x0;       /* [B, h, w, C] latents */
    float *weights;  /* [B] prior_loss_weight for regularization images, else 1 */
    char **captions; /* [B] */
    float *context;  /* [B, L, W] from the text cache (frozen encoder) */
    int context_length, context_width;
    sdt_clip_text_result text; /* the encoder's forward when it trains */
    sdt_tensor ctx_t, dctx_t;
    int ctx_borrowed; /* ctx_t is the text result's context */
} micro_batch;

static void micro_batch_free(sdt_trainer *t, micro_batch *m)
{
    free(m->x0);
    free(m->weights);
    if (m->captions)
        for (int b = 0; b < m->B; b++)
            free(m->captions[b]);
    free(m->captions);
    free(m->context);
    sdt_clip_text_result_free(t->e, &m->text);
    if (!m->ctx_borrowed)
        sdt_act_free(t->e, &m->ctx_t);
    sdt_act_free(t->e, &m->dctx_t);
    sdt_unet_release(t->e, t->unet);
    memset(m, 0, sizeof *m);
}

static int engine_error(sdt_trainer *t, char **error, const char *what)
{
    return sdt_set_error(error, "%s: %s", what, sdt_engine_error(t->e));
}

/* Latents of every sample of the batch into m->x0 (allocated here, from the first sample's size). */
static int load_latents(sdt_trainer *t, micro_batch *m, uint64_t attempt, char **error)
{
    for (int b = 0; b < m->B; b++) {
        const sdt_train_image *im = &t->data.images[t->batch.images[b]];
        sdt_latent_request r = {0};
        r.path = im->path;
        r.resized_width = im->resized_width;
        r.resized_height = im->resized_height;
        r.crop_left = im->crop_left;
        r.crop_top = im->crop_top;
        r.crop_width = im->crop_width;
        r.crop_height = im->crop_height;
        /* flip_aug: a coin per sample keyed by the run's seed and the step, so a resumed run flips alike. */
        r.flip = im->flip_aug && (mix64(t->seed ^ mix64(attempt * 1024 + (uint64_t)b)) & 1);
        sdt_latents l = {0};
        if (sdt_latent_cache_get(t->latents, &r, &l, error) != 0)
            return -1;
        if (b == 0) {
            m->h = l.height;
            m->w = l.width;
            m->C = l.channels;
            size_t n = (size_t)m->B * (size_t)m->h * (size_t)m->w * (size_t)m->C;
            m->x0 = malloc(n * sizeof *m->x0);
            if (!m->x0) {
                sdt_latents_free(&l);
                return sdt_set_error(error, "out of memory");
            }
        } else if (l.height != m->h || l.width != m->w || l.channels != m->C) {
            sdt_latents_free(&l);
            return sdt_set_error(error, "%s: latents of another size in one batch", r.path);
        }
        size_t per = (size_t)m->h * (size_t)m->w * (size_t)m->C;
        if (l.dtype != SDT_F32) {
            sdt_latents_free(&l);
            return sdt_set_error(error, "%s: the latent cache returned non-F32 latents", r.path);
        }
        float *dst = m->x0 + (size_t)b * per;
        memcpy(dst, l.data, per * sizeof *dst);
        /* kohya: "NaN found in latents, replacing with zeros" */
        for (size_t i = 0; i < per; i++)
            if (!isfinite(dst[i]))
                dst[i] = 0.0f;
        sdt_latents_free(&l);
    }
    return 0;
}

static int make_captions(sdt_trainer *t, micro_batch *m, int epoch, size_t batch_index, char **error)
{
    size_t count = (unsigned)m->B; /* B >= 1: a batch of the plan */
    m->captions = calloc(count, sizeof *m->captions);
    m->weights = malloc(count * sizeof *m->weights);
    if (!m->captions || !m->weights)
        return sdt_set_error(error, "out of memory");
    for (int b = 0; b < m->B; b++) {
        const sdt_train_image *im = &t->data.images[t->batch.images[b]];
        sdt_caption_context ctx = {.seed = t->seed,
                                   .epoch = epoch,
                                   .step = t->global_step,
                                   .max_train_steps = t->total_steps,
                                   .sample = (uint64_t)(batch_index * t->data.batch_size + (size_t)b)};
        if (sdt_caption_process(&im->caption_options, im->caption, &ctx, &m->captions[b], error) != 0)
            return -1;
        m->weights[b] = im->is_reg ? (float)t->prior_loss_weight : 1.0f;
    }
    return 0;
}

/* The context [B, L, W] on the engine: through the encoder kept for backward when it trains, else from
 * the text cache. */
static int make_context(sdt_trainer *t, micro_batch *m, int encoder_trains, char **error)
{
    if (encoder_trains) {
        int L = 77;
        int32_t *ids = malloc((size_t)m->B * (size_t)L * sizeof *ids); /* [B, 77] */
        if (!ids)
            return sdt_set_error(error, "out of memory");
        for (int b = 0; b < m->B; b++)
            if (sdt_tokenizer_encode_padded(t->tokenizer, m->captions[b], strlen(m->captions[b]), (size_t)L,
                                            t->model.arch.pad_id, ids + (size_t)b * (size_t)L, NULL,
                                            error) != 0) {
                free(ids);
                return -1;
            }
        sdt_clip_text_options o = {.clip_skip = t->clip_skip,
                                   .hidden_layer = -1,
                                   .keep_for_backward = 1,
                                   .checkpoint = sdt_unet_checkpointing(t->unet),
                                   .dtype = t->compute_dtype};
        int rc = sdt_clip_text_forward(t->e, t->text_encoder, &m->text, ids, m->B, L, &o);
        free(ids);
        if (rc != 0)
            return engine_error(t, error, "text encoder forward");
        m->ctx_t = m->text.context; /* a view: the result owns it */
        m->ctx_borrowed = 1;
        return sdt_act_zeros_like(t->e, &m->dctx_t, &m->ctx_t) == 0
                   ? 0
                   : engine_error(t, error, "context gradient");
    }
    for (int b = 0; b < m->B; b++) {
        sdt_text_request r = {.caption = m->captions[b],
                              .clip_skip = t->clip_skip,
                              .max_token_length = t->max_token_length,
                              .pooled = 0};
        sdt_text_embedding emb = {0};
        int rc = t->cache_text ? sdt_text_cache_get(t->texts, &r, &emb, error)
                               : sdt_text_cache_encode(t->texts, &r, &emb, error);
        if (rc != 0)
            return -1;
        if (b == 0) {
            m->context_length = emb.length;
            m->context_width = emb.width;
            m->context = malloc((size_t)m->B * (size_t)emb.length * (size_t)emb.width * sizeof *m->context);
            if (!m->context) {
                sdt_text_embedding_free(&emb);
                return sdt_set_error(error, "out of memory");
            }
        }
        if (emb.dtype != SDT_F32 || emb.length != m->context_length || emb.width != m->context_width) {
            sdt_text_embedding_free(&emb);
            return sdt_set_error(error, "caption \"%s\": unexpected text-encoder output", m->captions[b]);
        }
        size_t per = (size_t)emb.length * (size_t)emb.width;
        memcpy(m->context + (size_t)b * per, emb.context, per * sizeof(float));
        sdt_text_embedding_free(&emb);
    }
    int64_t shape[3] = {m->B, m->context_length, m->context_width};
    /* The cache holds F32 outputs; the UNet's cross-attention takes the context in the compute dtype. */
    if (sdt_act_upload_f32(t->e, &m->ctx_t, t->compute_dtype, 3, shape, m->context) != 0)
        return engine_error(t, error, "context upload");
    return 0;
}

/* Whether this attempt is one the test options poison. */
static int injected(const sdt_trainer *t, int64_t attempt, int grad)
{
    const sdt_train_options *o = t->o;
    return o->inject_nan_step > 0 && !o->inject_nan_grad == !grad && attempt >= o->inject_nan_step &&
           attempt < o->inject_nan_step + (o->inject_nan_count > 0 ? o->inject_nan_count : 1);
}

/* One micro-batch: forward, loss, backward (gradients added). *loss: its loss. Returns 0, 1 when the loss
 * is not finite (nothing was added), -1 on error. */
static int micro_step(sdt_trainer *t, int micro, int64_t attempt, double *loss, char **error)
{
    micro_batch m = {0};
    sdt_diffusion_batch *diffusion = NULL;
    int rc = -1;
    int epoch = t->cursor.epoch;
    size_t batch_index = t->cursor.batch;
    if (sdt_epoch_next(t->data.plan, &t->cursor, &t->batch, error) != 0)
        return -1;
    m.B = (int)t->batch.count;
    int encoder_trains = t->train_text_encoder &&
                         !(t->stop_text_encoder_step > 0 && t->global_step >= t->stop_text_encoder_step);
    if (t->has_lora)
        sdt_lora_set_training(&t->lora, 1, mix64(t->seed ^ mix64((uint64_t)attempt * 64 + (uint64_t)micro)));
    if (load_latents(t, &m, (uint64_t)attempt * 64 + (uint64_t)micro, error) != 0 ||
        make_captions(t, &m, epoch, batch_index, error) != 0 ||
        make_context(t, &m, encoder_trains, error) != 0)
        goto done;
    sdt_diffusion_pass pass = {.schedule = &t->schedule,
                               .noise = &t->noise,
                               .loss = &t->loss,
                               .prediction = t->prediction,
                               .rng = &t->rng,
                               .x0 = m.x0,
                               .B = m.B,
                               .h = m.h,
                               .w = m.w,
                               .C = m.C,
                               .context = &m.ctx_t,
                               .sample_weights = m.weights,
                               .dcontext = encoder_trains ? &m.dctx_t : NULL,
                               .poison_loss = injected(t, attempt, 0),
                               .dtype = t->compute_dtype,
                               .loss_scale = (float)t->scaler.scale};
    /* In stages, so that the text encoder's backward is queued before the loss comes back: on the engine
     * path nothing between the UNet's forward and the encoder's backward waits for the host. */
    rc = sdt_diffusion_pass_prepare(t->e, &pass, &diffusion, error);
    if (rc == 0)
        rc = sdt_diffusion_pass_compute(t->e, t->unet, &pass, diffusion, error);
    if (rc == 0 && encoder_trains &&
        sdt_clip_text_backward(t->e, t->text_encoder, &m.text, &m.dctx_t, NULL, NULL, NULL) != 0)
        rc = engine_error(t, error, "text encoder backward");
    if (rc >= 0) {
        int finished = sdt_diffusion_pass_finish(t->e, &pass, diffusion, loss, error);
        rc = finished != 0 ? finished : rc;
    }
done:
    sdt_diffusion_batch_free(t->e, diffusion);
    micro_batch_free(t, &m);
    return rc;
}

sdt_step_outcome sdt_trainer_step(sdt_trainer *t, double *loss, char **error)
{
    int64_t attempt = t->global_step + t->skipped_steps + 1;
    size_t remaining = t->data.batches_per_epoch - t->cursor.batch;
    int micro = (size_t)t->accumulation < remaining ? t->accumulation : (int)remaining;
    double sum = 0;
    const char *bad = NULL;
    for (int i = 0; i < micro; i++) {
        double l = 0;
        int rc = micro_step(t, i, attempt, &l, error);
        if (rc < 0) {
            sdt_optim_zero_grads(&t->optim);
            return SDT_STEP_FAILED;
        }
        if (rc == 1) {
            bad = "loss";
            sum = NAN;
            /* the rest of the step's micro-batches are still drawn, so the data order stays that of the
             * plan: the next step starts at the same batch whatever happened here */
            for (int j = i + 1; j < micro; j++)
                if (sdt_epoch_next(t->data.plan, &t->cursor, &t->batch, error) != 0)
                    return SDT_STEP_FAILED;
            break;
        }
        sum += l;
    }
    *loss = sum / micro;
    double norm = 0;
    int grads_bad = 0; /* the loss was finite, the gradient norm is not */
    if (!bad) {
        /* 1/accumulation and, in fp16, the loss scale's unscaling in one pass, before clipping (as
         * GradScaler.unscale_ comes before clip_grad_norm_). The scale is a power of two: exact. */
        sdt_optim_scale_grads(&t->optim, (float)(1.0 / ((double)t->accumulation * t->scaler.scale)));
        sdt_optim_clip_grad_norm(&t->optim, t->max_grad_norm, &norm);
        if (injected(t, attempt, 1))
            norm = NAN;
        if (!isfinite(norm)) {
            bad = "gradient norm";
            grads_bad = 1;
        }
    }
    /* fp16: gradients that overflowed at a scale above 1 say the scale is too large, not that training
     * diverged: GradScaler skips the step and halves the scale. At scale 1 nothing is left to blame on the
     * scaling, and nan_policy decides. */
    if (grads_bad && t->scaler.enabled && t->scaler.scale > 1.0) {
        double scale = t->scaler.scale;
        sdt_loss_scaler_update(&t->scaler, 0);
        sdt_optim_zero_grads(&t->optim);
        t->skipped_steps++;
        t->overflow_steps++;
        sdt_trainer_log(
            t, SDT_LOG_WARNING,
            "step %lld: fp16 gradients overflowed at loss scale %.17g; step skipped, the loss scale "
            "is now %.17g",
            (long long)(t->global_step + 1), scale, t->scaler.scale);
        return SDT_STEP_SKIPPED;
    }
    if (bad) {
        sdt_optim_zero_grads(&t->optim);
        if (t->s.nan_stop) {
            sdt_set_error(error,
                          "step %lld: the %s is not finite; stopping (nan_policy \"stop\"), the last saved "
                          "checkpoint is kept",
                          (long long)(t->global_step + 1), bad);
            return SDT_STEP_FAILED;
        }
        t->skipped_steps++;
        t->skipped_in_row++;
        sdt_trainer_log(t, SDT_LOG_WARNING,
                        "step %lld: the %s is not finite; step skipped (nan_policy \"skip\")",
                        (long long)(t->global_step + 1), bad);
        if (t->skipped_in_row >= 10) {
            sdt_set_error(error, "%lld steps in a row had a non-finite %s: stopping",
                          (long long)t->skipped_in_row, bad);
            return SDT_STEP_FAILED;
        }
        return SDT_STEP_SKIPPED;
    }
    int te_frozen = t->stop_text_encoder_step > 0 && t->global_step >= t->stop_text_encoder_step;
    if (t->unet_group >= 0)
        sdt_optim_set_lr(&t->optim, t->unet_group, sdt_lr_at(&t->lr_schedule, t->unet_lr, t->global_step),
                         NULL);
    if (t->text_encoder_group >= 0)
        sdt_optim_set_lr(&t->optim, t->text_encoder_group,
                         te_frozen ? 0.0 : sdt_lr_at(&t->lr_schedule, t->text_encoder_lr, t->global_step),
                         NULL);
    if (sdt_optim_step(&t->optim, error) != 0 || sdt_trainer_refresh_working_copies(t, error) != 0)
        return SDT_STEP_FAILED;
    sdt_optim_zero_grads(&t->optim);
    t->skipped_in_row = 0;
    if (sdt_loss_scaler_update(&t->scaler, 1))
        sdt_trainer_log(
            t, SDT_LOG_INFO, "step %lld: %lld steps without overflow; the loss scale is now %.17g",
            (long long)(t->global_step + 1), (long long)t->scaler.growth_interval, t->scaler.scale);
    return SDT_STEP_TAKEN;
}
