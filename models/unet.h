/* The Stable Diffusion UNet (diffusers UNet2DConditionModel; sd_arch_spec §1, SDXL differences §2): forward,
 * backward into the input, context, added-conditioning and every trainable parameter, and gradient
 * checkpointing per block.
 *
 * The network is built from a config (models/arch.h) and binds its layers by name to a parameter table made
 * by sdt_unet_params; the table owns the weights and their gradients (entries marked trainable before
 * sdt_param_table_alloc get one). Activations are channels-last: latents [B, H, W, C], context [B, L, D].
 *
 * A forward asked to keep state for backward holds it inside the sdt_unet until the next
 * sdt_unet_backward (which uses and then releases it) or sdt_unet_release (an abandoned step); one forward
 * state at a time. Every function returns 0, or -1 with the reason in sdt_engine_error() (create: in
 * *error); nothing leaks on failure. */
#ifndef SDTUNE_MODELS_UNET_H
#define SDTUNE_MODELS_UNET_H

#include "arch.h"
#include "backend.h"
#include "params.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdt_unet sdt_unet;

/* Binds every layer of `config` to `params` (built by sdt_unet_params from the same config; it must
 * outlive the UNet and be allocated before the first forward). Returns 0 and *out, or -1 with *error set
 * (caller frees): a missing parameter, a config the UNet cannot run. */
int sdt_unet_create(const sdt_unet_config *config, sdt_param_table *params, sdt_unet **out, char **error);
/* Releases any forward state, then the UNet (not the table). e may be NULL when no forward state is held. */
void sdt_unet_free(sdt_engine *e, sdt_unet *u);

const sdt_unet_config *sdt_unet_get_config(const sdt_unet *u);

/* Gradient checkpointing, per block (each ResNet, transformer, up/downsampler, the input and output
 * convs): a forward keeps only each block's inputs, and backward re-runs a block's forward just before its
 * backward. Costs about one more forward; saves the blocks' inner activations (most of the memory of a
 * training step). Takes effect at the next forward. */
void sdt_unet_set_checkpointing(sdt_unet *u, int on);
int sdt_unet_checkpointing(const sdt_unet *u);

/* out [B, H, W, out_channels] (allocated here; free with sdt_act_free) from
 *   x          [B, H, W, in_channels], H and W multiples of 2^(levels-1),
 *   timesteps  [B] F32 (fractional values allowed),
 *   context    [B, L, cross_attention_dim],
 *   added_cond [B, adm_in_channels] when the config has added conditioning (SDXL: pooled text embedding
 *              and the size/crop sinusoids, built by the caller), otherwise NULL.
 * keep_for_backward: keep what sdt_unet_backward needs (copies of x, context and added_cond included, so
 * the caller's tensors may change meanwhile); otherwise every intermediate is freed as soon as it has been
 * used. A state left by an earlier forward is released first. */
int sdt_unet_forward(sdt_engine *e, sdt_unet *u, sdt_tensor *out, const sdt_tensor *x,
                     const sdt_tensor *timesteps, const sdt_tensor *context, const sdt_tensor *added_cond,
                     int keep_for_backward);

/* Backward of the last forward (kept for backward) given dout [B, H, W, out_channels]: dx, dcontext and
 * dadded_cond are added into (each may be NULL: not wanted); parameter gradients are added into the
 * table's grads of trainable entries. The forward state is released, whether or not this succeeds. */
int sdt_unet_backward(sdt_engine *e, sdt_unet *u, sdt_tensor *dx, sdt_tensor *dcontext,
                      sdt_tensor *dadded_cond, const sdt_tensor *dout);

/* Frees the state of a forward whose backward will not run (a no-op when none is held). */
void sdt_unet_release(sdt_engine *e, sdt_unet *u);
/* Whether a forward state is held. */
int sdt_unet_has_state(const sdt_unet *u);

#ifdef __cplusplus
}
#endif
#endif
