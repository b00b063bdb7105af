/* Setting a run up: the engine and the model, the data (buckets, epochs, step counts), what trains (LoRA
 * network or the UNet's own weights) with its optimizer and schedule, and the caches. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "device.h"
#include "fp8_base.h"
#include "optim_settings.h"
#include "precision.h"
#include "trainer_internal.h"

/* DreamBooth / fine-tune: the loaded table's entries become trainable. sdt_model_load allocates the
 * values, so the gradients are attached here: one zeroed buffer per entry of the value's dtype (F32, or
 * the compute dtype under full_bf16 / full_fp16), owned by the trainer. */
static int attach_full_grads(sdt_trainer *t, sdt_param_table *table, char **error)
{
    void **grads = realloc(t->full_grads, (t->full_grad_count + table->count) * sizeof *grads);
    if (!grads)
        return sdt_set_error(error, "out of memory");
    t->full_grads = grads;
    for (size_t i = 0; i < table->count; i++) {
        sdt_param *p = &table->items[i];
        if (p->value.dtype != SDT_F32 && !(t->full_half && p->value.dtype == t->compute_dtype))
            return sdt_set_error(error, "%s.%s: full training needs F32 weights", table->component, p->name);
        size_t bytes = sdt_tensor_bytes(&p->value);
        void *g = sdt_engine_alloc(t->e, bytes); /* same shape and dtype as the value */
        if (!g)
            return sdt_set_error(error, "out of memory for the gradient of %s.%s", table->component, p->name);
        t->full_grads[t->full_grad_count++] = g;
        p->trainable = 1;
        p->grad = p->value;
        p->grad.data = g;
        /* Zeroed by an op: the buffer is device memory (engine's device), not the host's to memset. */
        if (sdt_fill(t->e, &p->grad, 0.0f) != 0)
            return sdt_set_error(error, "%s.%s: %s", table->component, p->name, sdt_engine_error(t->e));
    }
    return 0;
}

static void detach_full_grads(sdt_trainer *t)
{
    for (int c = 0; c < SDT_COMPONENT_COUNT; c++) {
        sdt_param_table *table = sdt_model_table(&t->model, c);
        for (size_t i = 0; i < table->count; i++) {
            for (size_t k = 0; k < t->full_grad_count; k++)
                if (table->items[i].grad.data == t->full_grads[k]) {
                    table->items[i].grad.data = NULL;
                    table->items[i].trainable = 0;
                }
        }
    }
    for (size_t k = 0; k < t->full_grad_count; k++)
        sdt_engine_dealloc(t->e, t->full_grads[k]);
    free(t->full_grads);
    t->full_grads = NULL;
    t->full_grad_count = 0;
}

/* ---- the engine ---- */

/* `backend = "auto"`: CUDA when the build has it and a device answers, else the CPU (and the CPU too when
 * the CUDA engine then cannot start: sdt_trainer_create_engine). Why goes to reason, for the `device`
 * event. */
static sdt_device_kind auto_device(sdt_trainer *t, char *reason, size_t reason_size)
{
#ifdef SDTUNE_HAVE_CUDA
    char *why = NULL;
    int devices = sdt_cuda_device_count(&why);
    if (devices > 0) {
        free(why);
        snprintf(reason, reason_size, "auto: CUDA device %d answers", (int)t->s.gpu_index);
        return SDT_DEVICE_CUDA;
    }
    snprintf(reason, reason_size, "auto: %s", why ? why : "no CUDA device");
    sdt_trainer_log(t, SDT_LOG_INFO, "backend auto: no CUDA device (%s), training on the CPU",
                    why ? why : "none found");
    free(why);
#else
    snprintf(reason, reason_size, "auto: this build has no CUDA backend");
    sdt_trainer_log(t, SDT_LOG_INFO, "backend auto: this build has no CUDA backend, training on the CPU");
#endif
    return SDT_DEVICE_CPU;
}

/* The wire names of the compute dtypes (docs/protocol.md, `device`), not kohya's "no" for fp32. */
static const char *precision_wire_name(sdt_dtype compute)
{
    return compute == SDT_BF16 ? "bf16" : compute == SDT_F16 ? "fp16" : "fp32";
}

/* The `device` event: what the engine just created trains on. The precision is the one setup_models
 * computes in (the same function of the config and the device). */
static void emit_device(sdt_trainer *t, int gpu_index, const char *reason)
{
    sdt_device_kind kind = sdt_engine_device(t->e);
    sdt_device_info info;
    memset(&info, 0, sizeof info);
    if (kind == SDT_DEVICE_CUDA) {
        char *why = NULL;
        if (sdt_cuda_device_info(gpu_index, &info, &why) != 0)
            snprintf(info.name, sizeof info.name, "CUDA device %d", gpu_index);
        free(why);
    } else {
        sdt_cpu_device_info(&info);
    }
    size_t free_bytes = 0, total_bytes = 0;
    if (sdt_engine_memory_info(t->e, &free_bytes, &total_bytes) != 0)
        free_bytes = total_bytes = 0; /* unknown: the fields are left out */
    t->device_memory_total = total_bytes;
    sdt_event ev = {.type = SDT_EV_DEVICE};
    ev.device.backend = (char *)sdt_engine_backend_name(t->e);
    ev.device.name = info.name[0] ? info.name : (char *)"CPU";
    ev.device.gpu_index = kind == SDT_DEVICE_CUDA ? gpu_index : -1;
    ev.device.memory_total = (int64_t)total_bytes;
    ev.device.memory_free = (int64_t)free_bytes;
    ev.device.precision = (char *)precision_wire_name(sdt_train_compute_dtype(t->cfg, kind));
    ev.device.fp8_weights = sdt_fp8_base_components(t->cfg) != 0;
    ev.device.reason = reason && reason[0] ? (char *)reason : NULL;
    sdt_trainer_emit(t, &ev);
}

int sdt_trainer_create_engine(sdt_trainer *t, char **error)
{
    int threads = t->o->threads ? t->o->threads : (int)t->s.cpu_threads;
    const char *backend = t->s.backend;
    sdt_engine_options eo = {.device = SDT_DEVICE_CPU,
                             .device_index = t->s.gpu_index,
                             .threads = threads,
                             .deterministic = t->s.deterministic};
    char reason[256] = ""; /* why auto chose; empty when the config named the backend */
    if (t->o->test_device == SDT_DEVICE_GUARDED)
        eo.device = SDT_DEVICE_GUARDED;
    else if (strcmp(backend, "cuda") == 0)
        eo.device = SDT_DEVICE_CUDA;
    else if (strcmp(backend, "auto") == 0)
        eo.device = auto_device(t, reason, sizeof reason);
    char *why = NULL;
    int created = sdt_engine_create(&eo, &t->e, &why) == 0;
    if (!created && eo.device == SDT_DEVICE_CUDA && strcmp(backend, "auto") == 0) {
        /* A device answers but the backend cannot start on it (a build without the CUDA ops, a driver
         * problem): auto means the CPU then, said at WARNING level. */
        sdt_trainer_log(t, SDT_LOG_WARNING,
                        "backend auto: CUDA device %d cannot be used (%s), training on the CPU",
                        eo.device_index, why ? why : "unknown error");
        snprintf(reason, sizeof reason, "auto: CUDA device %d cannot be used (%s)", eo.device_index,
                 why ? why : "unknown error");
        free(why);
        why = NULL;
        eo.device = SDT_DEVICE_CPU;
        created = sdt_engine_create(&eo, &t->e, &why) == 0;
    }
    if (!created) {
        if (eo.device == SDT_DEVICE_CUDA)
            sdt_set_error(error, "backend \"%s\" with gpu_index %d: the GPU cannot be used: %s", backend,
                          eo.device_index, why ? why : "unknown error");
        else
            sdt_set_error(error, "the %s engine cannot start: %s", sdt_device_kind_name(eo.device),
                          why ? why : "unknown error");
        free(why);
        return -1;
    }
    if (eo.device == SDT_DEVICE_CUDA) {
        sdt_device_info info;
        char *info_error = NULL;
        if (sdt_cuda_device_info(eo.device_index, &info, &info_error) == 0)
            sdt_trainer_log(t, SDT_LOG_INFO, "training on CUDA device %d: %s%s", eo.device_index, info.name,
                            eo.deterministic ? " (deterministic algorithms only)" : "");
        else
            sdt_trainer_log(t, SDT_LOG_INFO, "training on CUDA device %d%s", eo.device_index,
                            eo.deterministic ? " (deterministic algorithms only)" : "");
        free(info_error);
    } else {
        sdt_trainer_log(t, SDT_LOG_INFO, "training on the %s backend", sdt_engine_backend_name(t->e));
    }
    emit_device(t, eo.device_index, reason);
    return 0;
}

/* ---- models ---- */

int sdt_trainer_setup_models(sdt_trainer *t, char **error)
{
    if (!t->e && sdt_trainer_create_engine(t, error) != 0)
        return -1;
    if (t->s.family_sdxl)
        return sdt_set_error(error, "model_family \"sdxl\": training SDXL is not implemented yet");

    const char *path = t->s.model_path;
    if (!path || !*path)
        return sdt_set_error(error,
                             "pretrained_model_name_or_path is not set: which model should be trained?");
    /* Mixed precision: the frozen weights are stored in the compute dtype (kohya casts the UNet and the
     * text encoder to weight_dtype, and the VAE too unless no_half_vae); the LoRA network made later keeps
     * F32 masters. */
    t->compute_dtype = sdt_train_compute_dtype(t->cfg, sdt_engine_device(t->e));
    sdt_loss_scaler_init(&t->scaler, t->compute_dtype);
    if (t->scaler.enabled && t->o->loss_scale_init > 0)
        t->scaler.scale = t->o->loss_scale_init;
    int full = t->s.kind != SDT_KIND_LORA;
    t->full_half = full && (t->s.full_bf16 || t->s.full_fp16);
    if (t->full_half && t->compute_dtype != (t->s.full_bf16 ? SDT_BF16 : SDT_F16))
        return sdt_set_error(error, "%s needs mixed_precision \"%s\" (the run computes in %s)",
                             t->s.full_bf16 ? "full_bf16" : "full_fp16", t->s.full_bf16 ? "bf16" : "fp16",
                             sdt_train_precision_name(t->compute_dtype));
    if (t->compute_dtype != SDT_F32 && !full)
        sdt_trainer_log(t, SDT_LOG_INFO,
                        "mixed precision %s: frozen weights and activations in %s%s; LoRA weights, gradients "
                        "and the loss in fp32",
                        sdt_train_precision_name(t->compute_dtype),
                        sdt_train_precision_name(t->compute_dtype),
                        t->s.no_half_vae ? " (the VAE in fp32: no_half_vae)" : "");
    if (t->full_half)
        sdt_trainer_log(t, SDT_LOG_INFO,
                        "%s: the trained weights and their gradients in %s, updated in place with stochastic "
                        "rounding (no fp32 masters); optimizer state and the loss in fp32",
                        t->s.full_bf16 ? "full_bf16" : "full_fp16",
                        sdt_train_precision_name(t->compute_dtype));
    else if (t->compute_dtype != SDT_F32 && full)
        sdt_trainer_log(t, SDT_LOG_INFO,
                        "mixed precision %s: the trained weights keep fp32 masters and run as %s copies "
                        "(rounded to nearest after each step); gradients and the loss in fp32; frozen "
                        "weights and activations in %s%s",
                        sdt_train_precision_name(t->compute_dtype),
                        sdt_train_precision_name(t->compute_dtype),
                        sdt_train_precision_name(t->compute_dtype),
                        t->s.no_half_vae ? " (the VAE in fp32: no_half_vae)" : "");
    if (t->scaler.enabled)
        sdt_trainer_log(t, SDT_LOG_INFO, "fp16 loss scaling: initial loss scale %.17g", t->scaler.scale);
    /* fp8_base / fp8_base_unet: the frozen weights of those components load as F8 (LoRA only). */
    if (sdt_fp8_base_check(t->cfg, error) != 0)
        return -1;
    sdt_model_load_options lo = {.dtype = t->compute_dtype,
                                 .vae_f32 = t->s.no_half_vae,
                                 .f8_components = sdt_fp8_base_components(t->cfg)};
    /* Full training: the networks that train load F32 from the file, their masters (their working
     * copies in the compute dtype are made below, once the gradients are attached). */
    if (full && !t->full_half)
        lo.f32_components =
            1u << SDT_COMPONENT_UNET | (t->s.train_text_encoder ? 1u << SDT_COMPONENT_TEXT_ENCODER : 0u);
    const char *vae = t->s.vae_path;
    if (vae && *vae)
        lo.vae_path = vae;
    sdt_trainer_log(t, SDT_LOG_INFO, "loading the model from %s", path);
    if (sdt_model_load(t->e, path, &lo, &t->model, NULL, error) != 0)
        return -1;

    t->training_type = t->s.kind;
    t->prediction = t->s.v_parameterization ? SDT_PREDICT_V : SDT_PREDICT_EPSILON;
    t->clip_skip = t->s.clip_skip;
    t->max_token_length = t->s.max_token_length;
    if (t->training_type != SDT_KIND_LORA) {
        t->train_unet = 1;
        t->train_text_encoder = t->s.train_text_encoder;
        t->stop_text_encoder_step = t->s.stop_text_encoder_training;
        if (attach_full_grads(t, &t->model.unet, error) != 0)
            return -1;
        if (t->train_text_encoder && attach_full_grads(t, &t->model.text_encoder, error) != 0)
            return -1;
        if (!t->full_half && (sdt_trainer_make_working_copies(t, &t->model.unet, error) != 0 ||
                              (t->train_text_encoder &&
                               sdt_trainer_make_working_copies(t, &t->model.text_encoder, error) != 0)))
            return -1;
    } else {
        t->train_unet = !t->s.network_train_text_encoder_only;
        t->train_text_encoder = !t->s.network_train_unet_only;
    }
    if (t->train_text_encoder && t->max_token_length > 75)
        return sdt_set_error(error,
                             "max_token_length %d: training the text encoder with long prompts is not "
                             "implemented yet (use 75, or freeze the text encoder)",
                             t->max_token_length);

    if (sdt_unet_create(&t->model.arch.unet, &t->model.unet, &t->unet, error) != 0 ||
        sdt_clip_text_create(&t->model.arch.text_encoder, &t->model.text_encoder, &t->text_encoder, error) !=
            0 ||
        sdt_vae_create(&t->model.arch.vae, &t->model.vae, &t->vae, error) != 0)
        return -1;
    if (t->s.gradient_checkpointing)
        sdt_unet_set_checkpointing(t->unet, 1);

    struct stat st;
    const char *model_dir = stat(path, &st) == 0 && S_ISDIR(st.st_mode) ? path : NULL;
    if (sdt_tokenizer_open(t->s.tokenizer_dir, model_dir, NULL, &t->tokenizer, error) != 0)
        return -1;
    return 0;
}

/* ---- data ---- */

static void log_line(void *ctx, int warning, const char *text)
{
    sdt_trainer_log(ctx, warning ? SDT_LOG_WARNING : SDT_LOG_INFO, "%s", text);
}

int sdt_trainer_setup_data(sdt_trainer *t, char **error)
{
    if (sdt_train_data_load(t->cfg, t->seed, log_line, t, &t->data, error) != 0)
        return -1;
    if (sdt_batch_alloc(t->data.plan, &t->batch, error) != 0)
        return -1;
    sdt_epoch_cursor_start(t->data.plan, &t->cursor);
    t->accumulation = t->s.gradient_accumulation_steps < 1 ? 1 : t->s.gradient_accumulation_steps;
    t->steps_per_epoch =
        (int)((t->data.batches_per_epoch + (size_t)t->accumulation - 1) / (size_t)t->accumulation);
    if (t->s.max_train_epochs > 0) {
        t->total_epochs = (int)t->s.max_train_epochs;
        t->total_steps = t->s.max_train_epochs * t->steps_per_epoch;
    } else {
        t->total_steps = t->s.max_train_steps;
        t->total_epochs = (int)((t->total_steps + t->steps_per_epoch - 1) / t->steps_per_epoch);
    }
    if (t->total_steps < 1)
        return sdt_set_error(error, "max_train_steps is %lld: nothing to train", (long long)t->total_steps);

    sdt_trainer_log(t, SDT_LOG_INFO, "running training");
    sdt_trainer_log(t, SDT_LOG_INFO, "  num train images * repeats: %zu", t->data.num_train_images);
    sdt_trainer_log(t, SDT_LOG_INFO, "  num reg images: %zu", t->data.num_reg_images);
    sdt_trainer_log(t, SDT_LOG_INFO, "  num batches per epoch: %zu", t->data.batches_per_epoch);
    sdt_trainer_log(t, SDT_LOG_INFO, "  num epochs: %d", t->total_epochs);
    sdt_trainer_log(t, SDT_LOG_INFO, "  batch size per device: %zu", t->data.batch_size);
    sdt_trainer_log(t, SDT_LOG_INFO, "  gradient accumulation steps: %d", t->accumulation);
    sdt_trainer_log(t, SDT_LOG_INFO, "  total optimization steps: %lld", (long long)t->total_steps);
    return sdt_loss_recorder_init(&t->recorder, (size_t)t->steps_per_epoch) == 0
               ? 0
               : sdt_set_error(error, "out of memory");
}

/* ---- what trains ---- */

static int setup_objective(sdt_trainer *t, char **error)
{
    char msg[256];
    sdt_schedule_init(&t->schedule, t->s.zero_terminal_snr);
    sdt_noise_options_default(&t->noise);
    t->noise.noise_offset = t->s.noise_offset;
    t->noise.noise_offset_random_strength = t->s.noise_offset_random_strength;
    t->noise.adaptive_noise_scale = t->s.adaptive_noise_scale;
    t->noise.adaptive_noise = t->noise.adaptive_noise_scale != 0;
    t->noise.multires_noise_iterations = t->s.multires_noise_iterations;
    t->noise.multires_noise_discount = t->s.multires_noise_discount;
    t->noise.ip_noise_gamma = t->s.ip_noise_gamma;
    t->noise.ip_noise_gamma_random_strength = t->s.ip_noise_gamma_random_strength;
    t->noise.min_timestep = t->s.min_timestep;
    t->noise.max_timestep = t->s.max_timestep;
    if (sdt_noise_options_check(&t->noise, msg, sizeof msg) != 0)
        return sdt_set_error(error, "%s", msg);
    sdt_loss_options_default(&t->loss);
    t->loss.prediction = t->prediction;
    const char *lt = t->s.loss_type;
    t->loss.loss_type = strcmp(lt, "l1") == 0          ? SDT_LOSS_L1
                        : strcmp(lt, "huber") == 0     ? SDT_LOSS_HUBER
                        : strcmp(lt, "smooth_l1") == 0 ? SDT_LOSS_SMOOTH_L1
                                                       : SDT_LOSS_L2;
    const char *hs = t->s.huber_schedule;
    t->loss.huber_schedule = strcmp(hs, "constant") == 0      ? SDT_HUBER_CONSTANT
                             : strcmp(hs, "exponential") == 0 ? SDT_HUBER_EXPONENTIAL
                                                              : SDT_HUBER_SNR;
    t->loss.huber_c = t->s.huber_c;
    t->loss.huber_scale = t->s.huber_scale;
    t->loss.min_snr_gamma = t->s.min_snr_gamma;
    t->loss.scale_v_pred_loss_like_noise_pred = t->s.scale_v_pred_loss_like_noise_pred;
    t->loss.v_pred_like_loss = t->s.v_pred_like_loss;
    t->loss.debiased_estimation_loss = t->s.debiased_estimation_loss;
    if (sdt_loss_options_check(&t->loss, msg, sizeof msg) != 0)
        return sdt_set_error(error, "%s", msg);
    t->prior_loss_weight = t->s.prior_loss_weight;
    return 0;
}

static int setup_lora(sdt_trainer *t, char **error)
{
    sdt_lora_options lo;
    sdt_lora_options_default(&lo);
    lo.network_dim = t->s.network_dim;
    lo.network_alpha = (float)t->s.network_alpha;
    lo.conv_dim = t->s.conv_dim;
    lo.conv_alpha = (float)t->s.conv_alpha;
    lo.dropout = (float)t->s.network_dropout;
    lo.rank_dropout = (float)t->s.rank_dropout;
    lo.module_dropout = (float)t->s.module_dropout;
    lo.unet = t->train_unet;
    lo.text_encoder = t->train_text_encoder;
    lo.seed = t->seed;
    if (sdt_lora_create(t->e, &t->model, &lo, &t->lora, error) != 0)
        return -1;
    t->has_lora = 1;
    sdt_trainer_log(t, SDT_LOG_INFO, "create LoRA network. base dim (rank): %d, alpha: %g", lo.network_dim,
                    (double)lo.network_alpha);
    sdt_trainer_log(t, SDT_LOG_INFO, "neuron dropout: p=%g, rank dropout: p=%g, module dropout: p=%g",
                    (double)lo.dropout, (double)lo.rank_dropout, (double)lo.module_dropout);
    sdt_trainer_log(t, SDT_LOG_INFO, "create LoRA for Text Encoder: %zu modules.",
                    t->lora.text_encoder_count);
    sdt_trainer_log(t, SDT_LOG_INFO, "create LoRA for U-Net: %zu modules.", t->lora.unet_count);
    const char *weights = t->s.network_weights;
    if (weights && *weights) {
        if (sdt_lora_load(t->e, &t->lora, weights, error) != 0)
            return -1;
        sdt_trainer_log(t, SDT_LOG_INFO, "load network weights from %s", weights);
    }
    return sdt_lora_add_to_optimizer(&t->lora, &t->optim, t->unet_group, t->text_encoder_group, error);
}

/* Adafactor factors over the last two dimensions of each tensor: give the optimizer the LoRA shapes. */
static int set_lora_shapes(sdt_trainer *t, char **error)
{
    for (size_t i = 0; i < t->lora.count; i++) {
        const sdt_lora_module *mod = &t->lora.modules[i];
        const sdt_tensor *parts[2] = {&mod->adapter.down, &mod->adapter.up};
        const char *suffix[2] = {"lora_down.weight", "lora_up.weight"};
        for (int k = 0; k < 2; k++) {
            char name[400];
            snprintf(name, sizeof name, "%s.%s", mod->name, suffix[k]);
            int found = 0;
            for (size_t e = 0; e < t->optim.count && !found; e++)
                found = strcmp(t->optim.entries[e].name, name) == 0;
            if (found && sdt_optim_set_shape(&t->optim, name, parts[k]->ndim, parts[k]->shape, error) != 0)
                return -1;
        }
    }
    return 0;
}

int sdt_trainer_setup_training(sdt_trainer *t, char **error)
{
    if (setup_objective(t, error) != 0)
        return -1;
    sdt_optim_config oc;
    if (sdt_optim_from_settings(t->cfg, &oc, NULL, error) != 0)
        return -1;
    double lr = t->s.learning_rate;
    t->unet_lr = t->s.unet_lr > 0 ? t->s.unet_lr : lr;
    t->text_encoder_lr = t->s.text_encoder_lr > 0 ? t->s.text_encoder_lr : lr;
    /* Group 0 is the text encoder's when it trains (kohya lists it first), then the UNet's. */
    int groups = 0;
    t->text_encoder_group = t->train_text_encoder ? groups++ : -1;
    t->unet_group = t->train_unet ? groups++ : -1;
    if (groups == 0)
        return sdt_set_error(error,
                             "network_train_unet_only and network_train_text_encoder_only are both set: "
                             "nothing would train");
    if (sdt_optim_init(&t->optim, &oc, groups, error) != 0)
        return -1;
    t->optim.rounding_seed = t->seed; /* full_bf16 / full_fp16: the updates' stochastic rounding */
    /* Off the CPU the optimizer works where the trained tensors live (on the CPU its own engine keeps
     * the update's op timings apart from the step's). */
    if (sdt_engine_device(t->e) != SDT_DEVICE_CPU && sdt_optim_use_engine(&t->optim, t->e, error) != 0)
        return -1;
    sdt_trainer_log(t, SDT_LOG_INFO, "use %s optimizer", sdt_optim_kind_name(oc.kind));
    if (oc.kind == SDT_OPTIM_ADAFACTOR && oc.relative_step)
        sdt_trainer_log(t, SDT_LOG_INFO,
                        "Adafactor with relative_step=True computes its own step size: the learning rate and "
                        "its schedule are not used");
    /* prodigyopt refuses groups whose learning rates differ (other than 0): say so before training. */
    if (oc.kind == SDT_OPTIM_PRODIGY && groups == 2 && t->unet_lr != t->text_encoder_lr && t->unet_lr != 0 &&
        t->text_encoder_lr != 0)
        return sdt_set_error(
            error,
            "Prodigy needs the same learning rate for the U-Net and the text encoder (or 0 for "
            "one of them); got unet_lr %g and text_encoder_lr %g",
            t->unet_lr, t->text_encoder_lr);
    if (t->training_type == SDT_KIND_LORA) {
        if (setup_lora(t, error) != 0 || set_lora_shapes(t, error) != 0)
            return -1;
    } else {
        /* The optimizer updates the F32 masters (under mixed precision the tables show the working
         * copies, except while they are registered). */
        sdt_trainer_show_masters(t, 1);
        int added = sdt_optim_add_table(&t->optim, &t->model.unet, t->unet_group, error) == 0 &&
                    (!t->train_text_encoder || sdt_optim_add_table(&t->optim, &t->model.text_encoder,
                                                                   t->text_encoder_group, error) == 0);
        sdt_trainer_show_masters(t, 0);
        if (!added)
            return -1;
    }
    sdt_lr_kind kind;
    if (sdt_lr_kind_parse(t->s.lr_scheduler, &kind, error) != 0)
        return -1;
    if (kind == SDT_LR_ADAFACTOR && oc.kind != SDT_OPTIM_ADAFACTOR)
        return sdt_set_error(error, "lr_scheduler adafactor needs optimizer_type Adafactor (got %s)",
                             sdt_optim_kind_name(oc.kind));
    sdt_lr_schedule_default(&t->lr_schedule, kind, t->total_steps, lr);
    t->lr_schedule.warmup_steps = sdt_lr_resolve_warmup(t->s.lr_warmup_steps, t->total_steps);
    t->lr_schedule.num_cycles = (double)t->s.lr_scheduler_num_cycles;
    t->lr_schedule.power = t->s.lr_scheduler_power;
    if (sdt_lr_schedule_check(&t->lr_schedule, error) != 0)
        return -1;
    t->max_grad_norm = t->s.max_grad_norm;
    return 0;
}

/* ---- caches ---- */

static void on_cache_warn(void *ctx, const char *message)
{
    sdt_trainer_log(ctx, SDT_LOG_WARNING, "%s", message);
}

int sdt_trainer_setup_caches(sdt_trainer *t, char **error)
{
    char *latent_dir = sdt_format("%s/.cache/latents", t->output_dir);
    char *text_dir = sdt_format("%s/.cache/text", t->output_dir);
    sdt_hash128 vae_id, te_id;
    int rc = -1;
    if (!latent_dir || !text_dir) {
        sdt_set_error(error, "out of memory");
        goto done;
    }
    if (sdt_hash_weights(t->e, &t->model.vae, &vae_id, error) != 0 ||
        sdt_hash_weights(t->e, &t->model.text_encoder, &te_id, error) != 0)
        goto done;
    sdt_latent_cache_options lo = {0};
    lo.keep_in_memory = t->s.cache_latents;
    lo.cache_dir = t->s.cache_latents_to_disk ? latent_dir : NULL;
    lo.vae_batch_size = t->s.vae_batch_size;
    lo.skip_cache_check = t->s.skip_cache_check;
    lo.warn = on_cache_warn;
    lo.warn_ctx = t;
    if (sdt_latent_cache_create(t->e, t->vae, vae_id, &lo, &t->latents, error) != 0)
        goto done;
    /* Text outputs are cached when the encoder is frozen for the whole run and captions never change;
     * otherwise the encoder runs every step. */
    t->cache_text = !t->train_text_encoder && t->data.static_captions;
    sdt_text_cache_options to = {0};
    to.keep_in_memory = t->cache_text;
    to.cache_dir = t->cache_text && t->s.cache_text_encoder_outputs_to_disk ? text_dir : NULL;
    to.skip_cache_check = t->s.skip_cache_check;
    to.warn = on_cache_warn;
    to.warn_ctx = t;
    if (sdt_text_cache_create(t->e, t->text_encoder, t->tokenizer, t->model.arch.pad_id, te_id, &to,
                              &t->texts, error) != 0)
        goto done;
    if (lo.keep_in_memory || lo.cache_dir) {
        sdt_trainer_log(t, SDT_LOG_INFO, "caching latents.");
        /* one request per image, prepared together so vae_batch_size images share a VAE forward */
        sdt_latent_request *requests = calloc(t->data.image_count, sizeof *requests);
        if (!requests) {
            sdt_set_error(error, "out of memory");
            goto done;
        }
        for (size_t i = 0; i < t->data.image_count; i++) {
            const sdt_train_image *im = &t->data.images[i];
            requests[i].path = im->path;
            requests[i].resized_width = im->resized_width;
            requests[i].resized_height = im->resized_height;
            requests[i].crop_left = im->crop_left;
            requests[i].crop_top = im->crop_top;
            requests[i].crop_width = im->crop_width;
            requests[i].crop_height = im->crop_height;
        }
        int prepared = sdt_latent_cache_prepare(t->latents, requests, t->data.image_count, error);
        free(requests);
        if (prepared != 0)
            goto done;
    }
    rc = 0;
done:
    free(latent_dir);
    free(text_dir);
    return rc;
}

void sdt_trainer_teardown(sdt_trainer *t)
{
    sdt_text_cache_free(t->texts);
    sdt_latent_cache_free(t->latents);
    sdt_batch_free(&t->batch);
    sdt_train_data_free(&t->data);
    sdt_optim_free(&t->optim);
    if (t->has_lora)
        sdt_lora_free(t->e, &t->lora);
    if (t->full_copy_count)
        sdt_trainer_free_working_copies(t);
    if (t->full_grad_count)
        detach_full_grads(t);
    sdt_tokenizer_free(t->tokenizer);
    if (t->unet)
        sdt_unet_free(t->e, t->unet);
    sdt_clip_text_free(t->text_encoder);
    sdt_vae_free(t->vae);
    sdt_model_free(t->e, &t->model);
    sdt_loss_recorder_free(&t->recorder);
    if (t->e)
        sdt_engine_free(t->e);
}
