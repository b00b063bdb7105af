/* The analytic FLOP count of the networks: the multiply-accumulates (MAC) of one forward, per layer family,
 * found by walking the network's own parameter table (models/arch.c builds it from the config) and giving
 * every weight the number of positions it is applied at; plus the training FLOPs of a step under the rules
 * of perf_anchors.md sec. 1.3. docs/flops.md explains the method and the numbers.
 *
 * Counted: every convolution and linear layer (1x1 convs run as linear count as linear), the LoRA adapters
 * attached to the table (models/adapter.h), and the two activation-by-activation products of attention
 * (Q K^T and P V). Not counted: norms, activations, softmax, residual adds, biases, the timestep sinusoid
 * and embedding lookups; they move bytes but have no GEMM-sized arithmetic. */
#ifndef SDTUNE_MODELS_FLOPS_H
#define SDTUNE_MODELS_FLOPS_H

#include <stdint.h>

#include "arch.h"
#include "params.h"

#ifdef __cplusplus
extern "C" {
#endif

/* MACs of one forward over the whole batch (one MAC = 2 FLOP). Doubles: SDXL batches exceed 2^53 FLOP
 * only in theory, and a count is an estimate anyway. */
typedef struct sdt_flop_count {
    double conv_mac;      /* convolutions with a kernel larger than 1x1 (3x3 convs, strided downsamplers) */
    double linear_mac;    /* linear layers and 1x1 convs: attention projections, FF, proj_in/out, shortcuts */
    double attention_mac; /* Q K^T and P V: activation x activation, no weights */
    double adapter_mac;   /* LoRA down and up products of the adapters attached to the table */
    int64_t params;       /* elements of the table walked (adapters not included) */
} sdt_flop_count;

/* Forward MACs with weights (conv + linear), without adapters. */
double sdt_flop_weight_mac(const sdt_flop_count *f);
/* Everything of one forward, adapters included. */
double sdt_flop_forward_mac(const sdt_flop_count *f);

/* The UNet over latents [batch, latent_h, latent_w, C] with a context of context_len tokens. table: the
 * table sdt_unet_params built from c (possibly allocated, possibly with adapters attached); NULL builds a
 * fresh one here. latent_h and latent_w must be multiples of 2^(levels-1). Returns 0, or -1 with *error
 * set (caller frees). */
int sdt_flops_unet(const sdt_unet_config *c, const sdt_param_table *table, int64_t batch, int64_t latent_h,
                   int64_t latent_w, int64_t context_len, sdt_flop_count *out, char **error);
/* The CLIP text encoder over [batch, tokens] (all layers; clip skip does not change the count much and is
 * ignored). table NULL: built here. */
int sdt_flops_clip(const sdt_clip_config *c, const sdt_param_table *table, int64_t batch, int64_t tokens,
                   sdt_flop_count *out, char **error);
/* The VAE: encoder (image [batch, image_h, image_w, 3] -> moments, quant_conv included) when encoder, else
 * the decoder (latents of image_h/8 x image_w/8 -> image, post_quant_conv included). table NULL: built
 * here. */
int sdt_flops_vae(const sdt_vae_config *c, const sdt_param_table *table, int encoder, int64_t batch,
                  int64_t image_h, int64_t image_w, sdt_flop_count *out, char **error);

/* What a training step computes (perf_anchors.md sec. 1.3):
 *   full fine-tune: weights 3x forward (forward, input gradient, weight gradient), attention 3.5x (a
 *                   flash-style backward recomputes Q K^T: 1 + 2.5);
 *   LoRA:           frozen weights 2x (no weight gradient), attention 3.5x, adapters 3x;
 *   checkpointing:  one more forward (adapters included).
 * Every layer counts its input gradient, even where nothing upstream needs it (the first conv, the
 * context projections), as the anchors do. */
typedef enum sdt_flop_training {
    SDT_FLOP_TRAIN_FULL,
    SDT_FLOP_TRAIN_LORA,
} sdt_flop_training;

/* FLOPs (not MACs) of one training step over the batch f was counted for. */
double sdt_flops_training(const sdt_flop_count *f, sdt_flop_training kind, int checkpointing);

#ifdef __cplusplus
}
#endif
#endif
