/* The memory plan of a training run: what the run will hold on its device, by category, computed from the
 * config and the model's parameter tables before anything heavy is loaded, so that a run that would not
 * fit stops with the table and a suggestion instead of running out of memory mid-run. See
 * docs/training.md, "Memory plan".
 *
 * Weights, trainable parameters, gradients and optimizer state are counted exactly as the code allocates
 * them (the parameter arenas, the LoRA block, the optimizer's state layout); activations and workspace come
 * from an analytic walk over the UNet's blocks (and the text encoder's layers when it trains) that follows
 * what each layer allocates, keeps for backward and frees, at the largest bucket and the batch size. */
#ifndef SDTUNE_TRAIN_MEMORY_PLAN_H
#define SDTUNE_TRAIN_MEMORY_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "checkpoint.h"
#include "lora.h"
#include "optim.h"
#include "sdtune/strutil.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sdt_mem_category {
    SDT_MEM_WEIGHTS,     /* frozen weights, in the dtype they are loaded in */
    SDT_MEM_TRAINABLE,   /* trained parameters (fp32 master copies) */
    SDT_MEM_GRADS,       /* their gradients (fp32) */
    SDT_MEM_OPTIMIZER,   /* optimizer state */
    SDT_MEM_ACTIVATIONS, /* what the forward keeps for backward, at the end of the forward */
    SDT_MEM_WORKSPACE,   /* the transient peak above that: gradients of activations, temporaries, the
                            step's inputs, library workspaces */
    SDT_MEM_COUNT
} sdt_mem_category;

/* "weights", "trainable", "grads", "optimizer", "activations", "workspace". */
const char *sdt_mem_category_name(sdt_mem_category c);

/* What the plan is computed from. sdt_memory_plan_input_from_config fills it from a config. */
typedef struct sdt_memory_plan_input {
    const sdt_model *model; /* parameter tables built (values not needed: a header-only load will do) */
    sdt_device_kind device; /* CUDA adds the library workspace */
    sdt_dtype weight_dtype; /* frozen weights as loaded */
    unsigned f8_components; /* bit c (1u << SDT_COMPONENT_*): frozen linear/conv weights in F8 (fp8_base) */
    sdt_dtype activation_dtype; /* activations (the compute dtype, like weight_dtype) */
    int vae_resident;           /* the VAE's weights stay loaded during training */
    int vae_f32;                /* no_half_vae: the VAE's weights are F32 whatever weight_dtype */
    int lora;                   /* LoRA (else the UNet's own weights train: DreamBooth / fine-tune) */
    int full_half; /* full training with full_bf16 / full_fp16: the trained weights and their gradients in
                      weight_dtype, no F32 masters or working copies */
    sdt_lora_options lora_options;
    int train_unet, train_text_encoder;
    sdt_optim_config optim;
    int batch;                  /* train_batch_size */
    int width, height;          /* pixels of the largest bucket (the resolution's area) */
    int context_length;         /* tokens of the UNet's context: 77 per 75-token chunk */
    int gradient_checkpointing; /* per UNet block (and per text-encoder layer) */
} sdt_memory_plan_input;

typedef struct sdt_memory_plan {
    size_t bytes[SDT_MEM_COUNT];
    size_t weights_by_component[SDT_COMPONENT_COUNT]; /* of bytes[SDT_MEM_WEIGHTS] */
    int64_t trainable_parameters;
    /* The analytic walk's parts: the UNet's saved tensors at the end of its forward, and the most the
     * engine allocator holds during one micro-step (forward, loss, backward) above what it held before. */
    size_t unet_saved, text_encoder_saved;
    size_t step_peak;
} sdt_memory_plan;

/* Fills *in from a config (train_batch_size, resolution, gradient_checkpointing, the LoRA and optimizer
 * settings, what trains, cache_latents and sampling) for model on device. The VAE counts as resident on the
 * CPU backend (the trainer keeps it loaded); on CUDA only when latents are not cached or samples are made.
 * weight_dtype and activation_dtype: the compute dtype of mixed_precision on device
 * (sdt_train_compute_dtype: "auto" is F32 on the CPU backend, BF16 on CUDA). Returns 0, or -1 with *error
 * set (an optimizer the engine does not know, ...). */
struct sdt_config;
int sdt_memory_plan_input_from_config(const struct sdt_config *cfg, const sdt_model *model,
                                      sdt_device_kind device, sdt_memory_plan_input *in, char **error);

/* Computes the plan. Returns 0, or -1 with *error set (a UNet config the walk cannot follow). */
int sdt_memory_plan_build(const sdt_memory_plan_input *in, sdt_memory_plan *out, char **error);
size_t sdt_memory_plan_total(const sdt_memory_plan *p);

/* Appends the table, one line per category and a total, in MiB, then the free memory of the device
 * (free_bytes 0: unknown) named by free_source ("MemAvailable", "cudaMemGetInfo"):
 *   weights          3348.25 MiB  unet 3279.49, text_encoder 469.47, vae 319.14 */
void sdt_memory_plan_table(const sdt_memory_plan_input *in, const sdt_memory_plan *p, size_t free_bytes,
                           const char *free_source, sdt_buf *out);

/* Appends what would make the run fit: each setting that lowers the total (gradient_checkpointing,
 * train_batch_size, resolution, optimizer_type, network_train_unet_only), with the total it gives and what
 * it saves, best first; or a line saying no single change helps. Returns the key of the best setting
 * (static), or NULL. */
const char *sdt_memory_plan_suggest(const sdt_memory_plan_input *in, const sdt_memory_plan *p,
                                    size_t free_bytes, sdt_buf *out);

/* The free memory of a device: the host's MemAvailable for the CPU backend, cudaMemGetInfo for CUDA
 * device index. *source names where the figure comes from (static). Returns 0, or -1 with *error set. */
/* `vram_limit_gb`: a limit of limit_gib GiB (> 0; 0 is no limit) caps free_bytes (0: unknown). Returns the
 * smaller of the two and sets *source to "vram_limit_gb" when the limit decides. */
size_t sdt_memory_plan_cap(double limit_gib, size_t free_bytes, const char **source);
int sdt_memory_plan_free_bytes(sdt_device_kind device, int index, size_t *free_bytes, const char **source,
                               char **error);

#ifdef __cplusplus
}
#endif
#endif
