/* The VAE (AutoencoderKL; sd_arch_spec §4): the encoder from images to the latent distribution, the
 * sampling of latents from it, and the decoder back to images. Forward only: the trainers encode images
 * once per step (or cache the latents) and decode only for sample images, so nothing is kept and every
 * intermediate is freed as soon as the next one exists; the peak is about two activations of the largest
 * level (plus a ResNet block's inner ones).
 *
 * Images are channels-last [B, H, W, 3] in [-1, 1]; latents [B, H/8, W/8, 4] for the 4-level models.
 * Activations take the dtype of the input tensor. */
#ifndef SDTUNE_MODELS_VAE_H
#define SDTUNE_MODELS_VAE_H

#include "arch.h"
#include "layers.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A mid block: ResNet, single-head self-attention over the pixels (GroupNorm in front, residual), ResNet. */
typedef struct sdt_vae_mid {
    sdt_resnet block_1, block_2;
    sdt_norm attn_norm;
    sdt_mha attn; /* q, k, v, proj_out: linear layers (1x1 convs in the file), one head */
} sdt_vae_mid;

typedef struct sdt_vae {
    sdt_vae_config config;
    /* encoder */
    sdt_conv enc_conv_in;
    sdt_resnet *enc_blocks;                /* [levels * layers_per_block]: down.i.block.j at i * lpb + j */
    sdt_conv enc_down[SDT_VAE_MAX_LEVELS]; /* down.i.downsample for i < levels - 1: pad (0,1,0,1), stride 2 */
    sdt_vae_mid enc_mid;
    sdt_norm enc_norm_out;
    sdt_conv enc_conv_out;
    sdt_linear quant_conv;
    /* decoder */
    sdt_linear post_quant_conv;
    sdt_conv dec_conv_in;
    sdt_vae_mid dec_mid;
    sdt_resnet *dec_blocks;              /* [levels * (lpb + 1)]: up.i.block.j at i * (lpb + 1) + j */
    sdt_conv dec_up[SDT_VAE_MAX_LEVELS]; /* up.i.upsample.conv for i >= 1 (after a nearest 2x upsample) */
    sdt_norm dec_norm_out;
    sdt_conv dec_conv_out;
} sdt_vae;

/* Binds every layer to its parameters in `t` (built by sdt_vae_params from the same config; the table
 * outlives the VAE). Returns 0, or -1 with *error set (caller frees). */
int sdt_vae_create(const sdt_vae_config *c, sdt_param_table *t, sdt_vae **out, char **error);
void sdt_vae_free(sdt_vae *v);

/* moments [B, H/f, W/f, 2 * latent] (allocated; f = 2^(levels - 1)) = quant_conv(encoder(image)), image
 * [B, H, W, in_channels] in [-1, 1] with H and W multiples of f. Channels 0..latent-1 are the mean, the
 * rest the log-variance (not clamped). Returns 0, or -1 with the reason in sdt_engine_error(). */
int sdt_vae_encode(sdt_engine *e, const sdt_vae *v, sdt_tensor *moments, const sdt_tensor *image);

/* latents [B, h, w, latent] (allocated, moments' dtype) = (mean + exp(0.5 * clamp(logvar, -30, 20)) * noise)
 * * scaling_factor, with noise [B, h, w, latent] N(0, 1) from the caller (so the caller owns the random
 * stream); noise NULL gives the mode, mean * scaling_factor. Computed on the host (the tensors are small). */
int sdt_vae_latents(sdt_engine *e, const sdt_vae *v, sdt_tensor *latents, const sdt_tensor *moments,
                    const sdt_tensor *noise);

/* image [B, h f, w f, in_channels] (allocated) = decoder(post_quant_conv(latents / scaling_factor)): latents
 * are in the UNet's space (as sdt_vae_latents makes them); the division happens here. No clamp: the
 * caller maps to pixels with clamp((x + 1) / 2, 0, 1). */
int sdt_vae_decode(sdt_engine *e, const sdt_vae *v, sdt_tensor *image, const sdt_tensor *latents);

#ifdef __cplusplus
}
#endif
#endif
