/* The memory plan: exact sizes of the parameter memory (weights, LoRA block, gradients, optimizer state),
 * the analytic walk's activations and workspace (memory_plan_walk.c), the table, the suggestion and the
 * free memory of the device. See memory_plan.h. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"
#include "fp8_base.h"
#include "lora_internal.h"
#include "memory_plan_internal.h"
#include "optim_internal.h"
#include "optim_settings.h"
#include "precision.h"
#include "sdtune/config.h"

/* The CUDA backend's library workspace (kernels/cuda/cuda_internal.h CUDA_WORKSPACE_BYTES): allocated
 * with the engine, outside the activation pool. */
#define CUDA_LIBRARY_WORKSPACE ((size_t)64 << 20)

static const char *const category_names[SDT_MEM_COUNT] = {"weights",   "trainable",   "grads",
                                                          "optimizer", "activations", "workspace"};

const char *sdt_mem_category_name(sdt_mem_category c)
{
    return c >= 0 && c < SDT_MEM_COUNT ? category_names[c] : "?";
}

size_t sdt_memory_plan_total(const sdt_memory_plan *p)
{
    size_t total = 0;
    for (int c = 0; c < SDT_MEM_COUNT; c++)
        total += p->bytes[c];
    return total;
}

/* ---- parameters ---- */

static size_t elem_bytes(sdt_dtype dtype) { return sdt_dtype_bits(dtype) / 8; }

/* A table's values as sdt_param_table_alloc lays them out: one arena tensor per entry, padded; with
 * f8_weights the frozen linear and conv weights take 1 byte each (fp8_base). */
static size_t stored_table_bytes(const sdt_param_table *t, sdt_dtype dtype, int f8_weights)
{
    size_t bytes = 0;
    for (size_t i = 0; i < t->count; i++) {
        sdt_dtype stored = sdt_param_storage_dtype(&t->items[i], dtype, f8_weights);
        size_t raw = (size_t)sdt_param_numel(&t->items[i]) * elem_bytes(stored);
        bytes += (raw + SDT_ARENA_ALIGN - 1) / SDT_ARENA_ALIGN * SDT_ARENA_ALIGN;
    }
    return bytes;
}

static size_t table_bytes(const sdt_param_table *t, sdt_dtype dtype)
{
    return stored_table_bytes(t, dtype, 0);
}

/* The optimizer's state for one registered tensor of `ndim` dims, as sdt_optim_add + sdt_optim_set_shape
 * lay it out (optim.c). */
static size_t optimizer_bytes(const sdt_optim_config *c, int ndim, const int64_t *shape, size_t *largest)
{
    sdt_optim_entry e;
    memset(&e, 0, sizeof e);
    e.count = 1;
    for (int d = 0; d < ndim; d++)
        e.count *= (size_t)shape[d];
    e.outer = 1;
    if (ndim >= 2) {
        e.rows = (size_t)shape[ndim - 2];
        e.cols = (size_t)shape[ndim - 1];
        e.outer = e.rows * e.cols > 0 ? e.count / (e.rows * e.cols) : 1;
    }
    sdt_optim_layout(c, &e);
    size_t floats = 0;
    for (int s = 0; s < 4 && e.state_names[s]; s++)
        floats += e.state_count[s] ? e.state_count[s] : 1; /* calloc of at least one float */
    if (e.count > *largest)
        *largest = e.count;
    return floats * sizeof(float);
}

static int lora_parameters(const sdt_memory_plan_input *in, sdt_memory_plan *p, size_t *largest,
                           int *unet_rank, int *unet_conv_rank, int *te_rank, char **error)
{
    sdt_lora_options o = in->lora_options;
    o.unet = in->train_unet;
    o.text_encoder = in->train_text_encoder;
    sdt_lora_network net;
    if (sdt_lora_plan(in->model, &o, &net, error) != 0)
        return -1;
    size_t values = 0;
    for (size_t i = 0; i < net.count; i++) {
        const sdt_adapter *a = &net.modules[i].adapter;
        size_t n = (size_t)sdt_tensor_numel(&a->down) + (size_t)sdt_tensor_numel(&a->up);
        values += n;
        p->bytes[SDT_MEM_OPTIMIZER] += optimizer_bytes(&in->optim, a->down.ndim, a->down.shape, largest);
        p->bytes[SDT_MEM_OPTIMIZER] += optimizer_bytes(&in->optim, a->up.ndim, a->up.shape, largest);
    }
    /* train/lora.c: one block of the values, then the gradients, both F32. */
    p->bytes[SDT_MEM_TRAINABLE] = values * sizeof(float);
    p->bytes[SDT_MEM_GRADS] = values * sizeof(float);
    p->trainable_parameters = (int64_t)values;
    *unet_rank = in->train_unet && net.unet_count ? o.network_dim : 0;
    *unet_conv_rank = in->train_unet && o.conv_dim > 0 ? o.conv_dim : 0;
    *te_rank = in->train_text_encoder && net.text_encoder_count ? o.network_dim : 0;
    sdt_lora_free(NULL, &net);
    return 0;
}

/* DreamBooth / fine-tune: the UNet's (and the text encoder's) F32 values train, each with a gradient of
 * its size (train/trainer_setup.c attach_full_grads) and its optimizer state (F32 in every case); with
 * full_bf16 / full_fp16 the values and gradients are in the compute dtype and nothing else is kept. Under
 * mixed precision the F32 values are the masters and the model runs on working copies in the compute dtype
 * (train/trainer_masters.c), counted with the weights of their component. */
static void full_parameters(const sdt_memory_plan_input *in, int component, const sdt_param_table *t,
                            sdt_memory_plan *p, size_t *largest)
{
    /* full_bf16 / full_fp16: the weights train in the compute dtype themselves, gradients alike */
    sdt_dtype trained = in->full_half ? in->weight_dtype : SDT_F32;
    if (in->weight_dtype != SDT_F32 && !in->full_half) {
        p->weights_by_component[component] = table_bytes(t, in->weight_dtype);
        p->bytes[SDT_MEM_WEIGHTS] += p->weights_by_component[component];
    }
    p->bytes[SDT_MEM_TRAINABLE] += table_bytes(t, trained);
    for (size_t i = 0; i < t->count; i++) {
        const sdt_param *q = &t->items[i];
        p->bytes[SDT_MEM_GRADS] += (size_t)sdt_param_numel(q) * elem_bytes(trained);
        p->bytes[SDT_MEM_OPTIMIZER] += optimizer_bytes(&in->optim, q->ndim, q->shape, largest);
    }
    p->trainable_parameters += sdt_param_table_numel(t);
}

/* ---- the plan ---- */

int sdt_memory_plan_build(const sdt_memory_plan_input *in, sdt_memory_plan *out, char **error)
{
    memset(out, 0, sizeof *out);
    const sdt_model *m = in->model;
    size_t largest = 0; /* elements of the largest optimizer entry (Adafactor's update buffer) */
    int unet_rank = 0, unet_conv_rank = 0, te_rank = 0;
    for (int c = 0; c < SDT_COMPONENT_COUNT; c++) {
        const sdt_param_table *t = sdt_model_table_const(m, c);
        int trains = !in->lora && ((c == SDT_COMPONENT_UNET && in->train_unet) ||
                                   (c == SDT_COMPONENT_TEXT_ENCODER && in->train_text_encoder));
        if (trains) {
            full_parameters(in, c, t, out, &largest);
            continue;
        }
        if (c == SDT_COMPONENT_VAE && !in->vae_resident)
            continue;
        out->weights_by_component[c] =
            stored_table_bytes(t, c == SDT_COMPONENT_VAE && in->vae_f32 ? SDT_F32 : in->weight_dtype,
                               (in->f8_components >> c) & 1u);
        out->bytes[SDT_MEM_WEIGHTS] += out->weights_by_component[c];
    }
    if (in->lora && lora_parameters(in, out, &largest, &unet_rank, &unet_conv_rank, &te_rank, error) != 0)
        return -1;
    if (!in->lora)
        unet_rank = unet_conv_rank = 0; /* no adapters: full training has no branch temporaries */

    /* One micro-step as the trainer runs it (train/trainer_step.c): the latents and timesteps, the
     * context (from the cache, or from the text encoder kept for backward, which the trainer runs on 77
     * tokens), the UNet with the output gradient, the text encoder's backward. */
    const sdt_unet_config *uc = &m->arch.unet;
    int te_trains = in->train_text_encoder;
    sdt_walk w = {.act_bytes = elem_bytes(in->activation_dtype),
                  .batch = in->batch < 1 ? 1 : in->batch,
                  .context_length = te_trains                ? 77
                                    : in->context_length > 0 ? in->context_length
                                                             : 77,
                  .checkpointing = in->gradient_checkpointing,
                  .unet_rank = unet_rank,
                  .unet_conv_rank = unet_conv_rank};
    /* the latent grid, rounded up to what the UNet accepts */
    int64_t multiple = (int64_t)1 << (uc->levels > 0 ? uc->levels - 1 : 0);
    int64_t lh = (in->height / 8 + multiple - 1) / multiple * multiple;
    int64_t lw = (in->width / 8 + multiple - 1) / multiple * multiple;
    size_t context = w.act_bytes * (size_t)(w.batch * w.context_length * uc->cross_attention_dim);
    sdt_walk_take(&w, w.act_bytes * (size_t)(w.batch * lh * lw * uc->in_channels)); /* x_t */
    sdt_walk_take(&w, (size_t)w.batch * sizeof(float));                             /* ts_t */
    sdt_walk_clip clip = {0};
    if (te_trains)
        sdt_walk_text_encoder_forward(&w, &m->arch.text_encoder, 77, te_rank, &clip); /* ctx_t: its output */
    sdt_walk_take(&w, context); /* te_trains: dctx_t; else ctx_t */
    if (sdt_walk_unet(&w, uc, lh, lw, error) != 0)
        return -1;
    if (te_trains)
        sdt_walk_text_encoder_backward(&w, &m->arch.text_encoder, 77, te_rank, &clip);
    out->unet_saved = w.unet_saved;
    out->text_encoder_saved = te_trains ? clip.saved : 0;
    out->step_peak = w.peak;
    out->bytes[SDT_MEM_ACTIVATIONS] = out->unet_saved + out->text_encoder_saved;
    size_t workspace =
        w.peak > out->bytes[SDT_MEM_ACTIVATIONS] ? w.peak - out->bytes[SDT_MEM_ACTIVATIONS] : 0;
    /* Adafactor's update buffer (one entry at a time) runs after the step's activations are gone. */
    if (in->optim.kind == SDT_OPTIM_ADAFACTOR && largest * sizeof(float) > workspace)
        workspace = largest * sizeof(float);
    if (in->device == SDT_DEVICE_CUDA)
        workspace += CUDA_LIBRARY_WORKSPACE;
    out->bytes[SDT_MEM_WORKSPACE] = workspace;
    return 0;
}

/* ---- from a config ---- */

int sdt_memory_plan_input_from_config(const sdt_config *cfg, const sdt_model *model, sdt_device_kind device,
                                      sdt_memory_plan_input *in, char **error)
{
    memset(in, 0, sizeof *in);
    in->model = model;
    in->device = device;
    /* Frozen weights and activations in the run's compute dtype (precision.h); the trained parameters,
     * their gradients and the optimizer state are F32 whatever it is. */
    in->weight_dtype = sdt_train_compute_dtype(cfg, device);
    in->activation_dtype = in->weight_dtype;
    in->vae_f32 = sdt_config_bool(cfg, "no_half_vae");
    in->lora = sdt_config_training(cfg) == SDT_TRAIN_LORA;
    in->f8_components = in->lora ? sdt_fp8_base_components(cfg) : 0; /* full training refuses fp8_base */
    if (in->lora) {
        sdt_lora_options_default(&in->lora_options);
        in->lora_options.network_dim = (int)sdt_config_int(cfg, "network_dim");
        in->lora_options.network_alpha = (float)sdt_config_float(cfg, "network_alpha");
        in->lora_options.conv_dim = (int)sdt_config_int(cfg, "conv_dim");
        in->lora_options.conv_alpha = (float)sdt_config_float(cfg, "conv_alpha");
        in->train_unet = !sdt_config_bool(cfg, "network_train_text_encoder_only");
        in->train_text_encoder = !sdt_config_bool(cfg, "network_train_unet_only");
    } else {
        in->train_unet = 1;
        in->train_text_encoder = sdt_config_bool(cfg, "train_text_encoder");
        in->full_half = sdt_config_bool(cfg, "full_bf16") || sdt_config_bool(cfg, "full_fp16");
    }
    if (sdt_optim_from_settings(cfg, &in->optim, NULL, error) != 0)
        return -1;
    in->batch = (int)sdt_config_int(cfg, "train_batch_size");
    long long width, height;
    sdt_lora_cfg_resolution(cfg, &width, &height);
    in->width = (int)width;
    in->height = (int)height;
    long long tokens = sdt_config_int(cfg, "max_token_length");
    in->context_length = (int)(tokens > 75 ? tokens / 75 * 77 : 77);
    in->gradient_checkpointing = sdt_config_bool(cfg, "gradient_checkpointing");
    /* The CPU trainer keeps the VAE loaded for the whole run today (latents are cached with it first and
     * sample images decode with it). The CUDA plan counts it only when a step or a sample needs it: the
     * latents are not cached, or sample images are made. */
    in->vae_resident = 1;
    if (device == SDT_DEVICE_CUDA)
        in->vae_resident =
            !sdt_config_bool(cfg, "cache_latents") || sdt_config_int(cfg, "sample_every_n_steps") > 0 ||
            sdt_config_int(cfg, "sample_every_n_epochs") > 0 || sdt_config_bool(cfg, "sample_at_first");
    return 0;
}

/* ---- the table and the suggestion ---- */

static double mib(size_t bytes) { return (double)bytes / (1024.0 * 1024.0); }

void sdt_memory_plan_table(const sdt_memory_plan_input *in, const sdt_memory_plan *p, size_t free_bytes,
                           const char *free_source, sdt_buf *out)
{
    sdt_buf_printf(out,
                   "memory plan: %s, %s weights, %s activations, batch %d at %dx%d, gradient "
                   "checkpointing %s\n",
                   in->device == SDT_DEVICE_CUDA ? "cuda" : "cpu", sdt_dtype_name(in->weight_dtype),
                   sdt_dtype_name(in->activation_dtype), in->batch, in->width, in->height,
                   in->gradient_checkpointing ? "on" : "off");
    for (int c = 0; c < SDT_MEM_COUNT; c++) {
        sdt_buf_printf(out, "  %-12s %11.2f MiB", category_names[c], mib(p->bytes[c]));
        if (c == SDT_MEM_WEIGHTS) {
            const char *sep = "  ";
            for (int k = 0; k < SDT_COMPONENT_COUNT; k++)
                if (p->weights_by_component[k]) {
                    int working = !in->lora && ((k == SDT_COMPONENT_UNET && in->train_unet) ||
                                                (k == SDT_COMPONENT_TEXT_ENCODER && in->train_text_encoder));
                    sdt_buf_printf(out, "%s%s %.2f%s", sep, sdt_component_name(k),
                                   mib(p->weights_by_component[k]),
                                   (in->f8_components >> k) & 1u ? " (linear/conv weights in fp8)"
                                   : working                     ? " (working copy of the fp32 masters)"
                                                                 : "");
                    sep = ", ";
                }
        } else if (c == SDT_MEM_TRAINABLE) {
            sdt_buf_printf(out, "  %lld parameters", (long long)p->trainable_parameters);
            if (!in->lora && in->full_half)
                sdt_buf_printf(out, " (%s weights and gradients, no fp32 masters)",
                               in->weight_dtype == SDT_BF16 ? "bf16" : "fp16");
            if (in->lora)
                sdt_buf_printf(out, " (LoRA rank %d%s)", in->lora_options.network_dim,
                               in->train_text_encoder && in->train_unet ? ", unet and text encoder"
                               : in->train_unet                         ? ", unet"
                                                                        : ", text encoder");
        } else if (c == SDT_MEM_OPTIMIZER) {
            sdt_buf_printf(out, "  %s", sdt_optim_kind_name(in->optim.kind));
        } else if (c == SDT_MEM_ACTIVATIONS) {
            sdt_buf_printf(out, "  unet %.2f", mib(p->unet_saved));
            if (p->text_encoder_saved)
                sdt_buf_printf(out, ", text_encoder %.2f", mib(p->text_encoder_saved));
        }
        sdt_buf_printf(out, "\n");
    }
    sdt_buf_printf(out, "  %-12s %11.2f MiB", "total", mib(sdt_memory_plan_total(p)));
    if (free_bytes)
        sdt_buf_printf(out, "  of %.2f MiB free (%s)", mib(free_bytes), free_source ? free_source : "?");
    else
        sdt_buf_printf(out, "  (free memory unknown)");
    sdt_buf_printf(out, "\n");
}

typedef struct option {
    const char *key; /* the setting */
    char text[160];
    size_t total;
} option;

static void try_option(const sdt_memory_plan_input *in, option *opts, int *n, const char *key,
                       const char *text)
{
    sdt_memory_plan p;
    char *error = NULL;
    if (sdt_memory_plan_build(in, &p, &error) == 0) {
        opts[*n].key = key;
        snprintf(opts[*n].text, sizeof opts[*n].text, "%s", text);
        opts[*n].total = sdt_memory_plan_total(&p);
        (*n)++;
    }
    free(error);
}

const char *sdt_memory_plan_suggest(const sdt_memory_plan_input *in, const sdt_memory_plan *p,
                                    size_t free_bytes, sdt_buf *out)
{
    option opts[12];
    int n = 0;
    char text[160];
    sdt_memory_plan_input alt;
    if (!in->gradient_checkpointing) {
        alt = *in;
        alt.gradient_checkpointing = 1;
        try_option(&alt, opts, &n, "gradient_checkpointing", "gradient_checkpointing = true");
    }
    if (in->batch > 1) {
        alt = *in;
        alt.batch = in->batch / 2;
        snprintf(text, sizeof text, "train_batch_size = %d", alt.batch);
        try_option(&alt, opts, &n, "train_batch_size", text);
        alt.batch = 1;
        if (in->batch / 2 != 1) {
            snprintf(text, sizeof text, "train_batch_size = 1");
            try_option(&alt, opts, &n, "train_batch_size", text);
        }
    }
    if (in->width >= 512 && in->height >= 512) {
        alt = *in;
        alt.width = in->width * 3 / 4 / 64 * 64;
        alt.height = in->height * 3 / 4 / 64 * 64;
        snprintf(text, sizeof text, "resolution = [%d, %d] (and max_bucket_reso to match)", alt.width,
                 alt.height);
        try_option(&alt, opts, &n, "resolution", text);
    }
    /* (full_bf16 / full_fp16 train with the fused AdamW, Lion or SGD only: no 8-bit or factored state) */
    if ((in->optim.kind == SDT_OPTIM_ADAMW || in->optim.kind == SDT_OPTIM_PRODIGY) && !in->full_half) {
        alt = *in;
        sdt_optim_config_default(&alt.optim, SDT_OPTIM_ADAMW8BIT);
        try_option(&alt, opts, &n, "optimizer_type", "optimizer_type = \"AdamW8bit\"");
        sdt_optim_config_default(&alt.optim, SDT_OPTIM_ADAFACTOR);
        alt.optim.relative_step = 0;
        alt.optim.scale_parameter = 0;
        try_option(&alt, opts, &n, "optimizer_type", "optimizer_type = \"Adafactor\"");
    }
    if (in->lora && in->train_text_encoder && in->train_unet) {
        alt = *in;
        alt.train_text_encoder = 0;
        try_option(&alt, opts, &n, "network_train_unet_only", "network_train_unet_only = true");
    }
    const unsigned all_fp8 = (1u << SDT_COMPONENT_UNET) | (1u << SDT_COMPONENT_TEXT_ENCODER);
    if (in->lora && in->f8_components != all_fp8) {
        alt = *in;
        alt.f8_components = all_fp8;
        try_option(&alt, opts, &n, "fp8_base", "fp8_base = true");
    }
    /* full training in bf16 / fp16 with masters: the weights themselves in half precision instead */
    if (!in->lora && !in->full_half && (in->weight_dtype == SDT_BF16 || in->weight_dtype == SDT_F16) &&
        (in->optim.kind == SDT_OPTIM_ADAMW || in->optim.kind == SDT_OPTIM_LION ||
         in->optim.kind == SDT_OPTIM_SGD)) {
        alt = *in;
        alt.full_half = 1;
        int bf16 = in->weight_dtype == SDT_BF16;
        try_option(&alt, opts, &n, bf16 ? "full_bf16" : "full_fp16",
                   bf16 ? "full_bf16 = true" : "full_fp16 = true");
    }
    /* best first */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && opts[j].total < opts[j - 1].total; j--) {
            option tmp = opts[j];
            opts[j] = opts[j - 1];
            opts[j - 1] = tmp;
        }
    size_t total = sdt_memory_plan_total(p);
    const char *best = NULL;
    int shown = 0;
    for (int i = 0; i < n; i++) {
        if (opts[i].total >= total)
            continue;
        if (!shown++) {
            sdt_buf_printf(out, "settings that lower the plan (one at a time):\n");
            best = opts[i].key;
        }
        sdt_buf_printf(out, "  %-52s total %10.2f MiB (saves %.2f MiB)%s\n", opts[i].text, mib(opts[i].total),
                       mib(total - opts[i].total), free_bytes && opts[i].total <= free_bytes ? ", fits" : "");
    }
    if (!shown)
        sdt_buf_printf(out, "no single setting makes the plan smaller: a smaller model or a device with more "
                            "memory is needed\n");
    if (p->weights_by_component[SDT_COMPONENT_VAE])
        sdt_buf_printf(out, "  (the VAE's %.2f MiB stay loaded for caching latents and sampling)\n",
                       mib(p->weights_by_component[SDT_COMPONENT_VAE]));
    return best;
}

/* ---- the device ---- */

size_t sdt_memory_plan_cap(double limit_gib, size_t free_bytes, const char **source)
{
    if (!(limit_gib > 0))
        return free_bytes;
    double limit = limit_gib * 1024.0 * 1024.0 * 1024.0;
    if (free_bytes != 0 && (double)free_bytes <= limit)
        return free_bytes;
    *source = "vram_limit_gb";
    return limit < 1.0 ? 1 : limit >= (double)SIZE_MAX ? SIZE_MAX : (size_t)limit;
}

int sdt_memory_plan_free_bytes(sdt_device_kind device, int index, size_t *free_bytes, const char **source,
                               char **error)
{
    size_t total = 0;
    *free_bytes = 0;
    if (device == SDT_DEVICE_CUDA) {
        *source = "cudaMemGetInfo";
        return sdt_cuda_memory_info(index, free_bytes, &total, error);
    }
    *source = "MemAvailable";
    return sdt_cpu_memory_info(free_bytes, &total, error);
}
