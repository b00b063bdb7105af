/* kohya's LoRA network (networks/lora.py) over the engine's models: which layers get a module, kohya's
 * names and file shapes, initialisation, per-step dropout, loading (network_weights) and saving with the
 * ss_* / modelspec.* metadata. The math lives in models/adapter.h; this file decides where adapters go.
 * See docs/training.md, "LoRA". */
#ifndef SDTUNE_TRAIN_LORA_H
#define SDTUNE_TRAIN_LORA_H

#include <stddef.h>
#include <stdint.h>

#include "adapter.h"
#include "checkpoint.h"
#include "optim.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdt_lora_options {
    int network_dim;     /* rank of linear and 1x1-conv modules (kohya network_dim) */
    float network_alpha; /* 0: alpha = rank */
    int conv_dim;        /* rank of 3x3-conv modules (LoCon); 0: 3x3 convs get no module */
    float conv_alpha;    /* 0: alpha = conv_dim */
    float dropout;       /* network_dropout */
    float rank_dropout;
    float module_dropout;
    int unet;         /* create modules for the UNet */
    int text_encoder; /* create modules for the text encoder(s) */
    float multiplier; /* 1 */
    uint64_t seed;    /* initialisation of lora_down (kaiming-uniform a = sqrt(5)) */
} sdt_lora_options;

/* kohya's defaults: dim 4, alpha 1, conv off, no dropout, UNet and text encoder, multiplier 1. */
void sdt_lora_options_default(sdt_lora_options *o);

typedef struct sdt_lora_module {
    char *name;        /* kohya's name without suffix: "lora_unet_down_blocks_0_attentions_0_proj_in" */
    int component;     /* SDT_COMPONENT_UNET or SDT_COMPONENT_TEXT_ENCODER */
    sdt_param *target; /* the wrapped weight in the model's table */
    sdt_adapter adapter;
    float alpha;     /* as saved (the ".alpha" tensor) */
    int conv_kernel; /* 0: linear target; 1: 1x1 conv in the file (SD1 proj_in/proj_out); 3: 3x3 conv */
    int64_t in_features, out_features;
} sdt_lora_module;

/* The shapes of a module's tensors in a kohya file: down [R, C] (linear) or [R, C, K, K] (1x1 and 3x3
 * convs), up [OC, R] or [OC, R, 1, 1]. Return the number of dimensions. */
int sdt_lora_file_down_shape(const sdt_lora_module *m, int64_t shape[4]);
int sdt_lora_file_up_shape(const sdt_lora_module *m, int64_t shape[4]);

typedef struct sdt_lora_network {
    sdt_lora_module *modules; /* UNet modules first, then text encoder ones, in the model's table order */
    size_t count;
    size_t unet_count, text_encoder_count;
    sdt_lora_options options;
    void *storage; /* owned: the values and gradients of every module */
} sdt_lora_network;

/* Creates the modules for an allocated model, initialises them (down: kaiming-uniform from options->seed,
 * up: zeros, so the model's output is unchanged) and attaches them to their target weights. Gradients are
 * allocated (zeroed) for every module. Returns 0, or -1 with *error set (caller frees); on failure nothing
 * is attached. */
int sdt_lora_create(sdt_engine *e, sdt_model *m, const sdt_lora_options *o, sdt_lora_network *net,
                    char **error);
/* The modules sdt_lora_create would make for m, from its tables alone (no values needed): names, targets,
 * ranks, alphas, kernels, features and the adapters' shapes, with no storage (tensor data NULL) and nothing
 * attached. For listings and tests; free with sdt_lora_free(NULL, net). */
int sdt_lora_plan(const sdt_model *m, const sdt_lora_options *o, sdt_lora_network *net, char **error);
/* Detaches the modules from the model and frees them. Safe on a zeroed struct. */
void sdt_lora_free(sdt_engine *e, sdt_lora_network *net);

/* Training mode for the next forward/backward: dropouts on, keyed by step_seed (module dropout is drawn
 * here, once per module per step). training 0: dropouts off, every module enabled (sampling). */
void sdt_lora_set_training(sdt_lora_network *net, int training, uint64_t step_seed);

/* Registers every module's down and up with the optimizer: UNet modules in unet_group, text-encoder
 * modules in text_encoder_group (-1: those stay frozen and get no gradient). Names are the kohya keys
 * ("<module>.lora_down.weight"). */
int sdt_lora_add_to_optimizer(const sdt_lora_network *net, sdt_optimizer *o, int unet_group,
                              int text_encoder_group, char **error);
void sdt_lora_zero_grads(sdt_lora_network *net);

/* Loads module weights from a kohya LoRA file (network_weights): every module's lora_down, lora_up and
 * alpha must be present with the right shapes; extra keys or missing ones are errors naming the key and
 * the file. The alpha read replaces the module's. */
int sdt_lora_load(sdt_engine *e, sdt_lora_network *net, const char *path, char **error);

/* One metadata pair of a saved file. */
typedef struct sdt_kv {
    char *key, *value;
} sdt_kv;
typedef struct sdt_kv_list {
    sdt_kv *items;
    size_t count, capacity;
} sdt_kv_list;
/* Sets key (replacing an earlier value); printf-style value. Returns 0 or -1 (out of memory). */
int sdt_kv_set(sdt_kv_list *l, const char *key, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
const char *sdt_kv_get(const sdt_kv_list *l, const char *key);
void sdt_kv_list_free(sdt_kv_list *l);

/* Writes the network as a kohya LoRA safetensors file: "<module>.lora_down.weight" / ".lora_up.weight"
 * in the file layout (conv weights [OC, C, KH, KW]; 1x1/3x3 modules 4-D) cast to dtype (F32, F16, BF16),
 * ".alpha" as a 0-d tensor of that dtype, and the metadata given plus sshs_model_hash and
 * sshs_legacy_hash computed as kohya does (when metadata is not NULL). Atomic. */
int sdt_lora_save(sdt_engine *e, const sdt_lora_network *net, const char *path, sdt_dtype dtype,
                  const sdt_kv_list *metadata, char **error);

/* What a run knows that the ss_* metadata reports and the config does not. Strings may be NULL. */
typedef struct sdt_lora_run_info {
    const char *session_id;      /* random per run */
    double training_started_at;  /* unix seconds (kohya's time.time(), a float) */
    double training_finished_at; /* unix seconds of this save (kohya sets it at every save); 0: absent */
    int64_t num_train_images, num_reg_images, num_batches_per_epoch, num_epochs;
    int64_t epoch, steps, max_train_steps, lr_warmup_steps;
    const char *base_model_name;   /* the checkpoint's file name without folder and extension */
    const char *dataset_dirs_json; /* {"<dir>": {"n_repeats": N, "img_count": N}} */
    const char *reg_dataset_dirs_json;
    const char *tag_frequency_json; /* {"<dir>": {"tag": count}} */
    const char *bucket_info_json; /* {"buckets": {...}, "mean_img_ar_error": x}; NULL: "null" (no buckets) */
    const char *optimizer_text;   /* kohya's "<module>.<Class>(<k=v,...>)", "torch.optim.adamw.AdamW" */
    const char *datetime_iso;     /* modelspec.date */
    const char *mixed_precision;  /* what the run computes in ("no" for fp32); NULL: the config's value */
    /* kohya's model_hash (8 hex of the 64 KiB at 1 MiB) and calculate_sha256 (whole file) of the base
     * model; NULL: left out */
    const char *sd_model_hash, *new_sd_model_hash;
} sdt_lora_run_info;

/* Fills kohya's ss_* and modelspec.* metadata for a LoRA trained with cfg (kohya_inventory §6.5), honouring
 * no_metadata. Returns 0, or -1 with *error set. */
struct sdt_config;
int sdt_lora_metadata(const struct sdt_config *cfg, const sdt_lora_network *net,
                      const sdt_lora_run_info *info, sdt_kv_list *out, char **error);

#ifdef __cplusplus
}
#endif
#endif
