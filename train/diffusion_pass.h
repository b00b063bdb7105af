/* The UNet's part of a training micro-batch, shared by the trainer (trainer_step.c) and the benchmark
 * (bench.c): from latents and a context already on the engine, draw the noise and timesteps, build the
 * noisy input and the target (objective.h), run the UNet forward, the loss and the backward, which adds
 * into the gradients of every trainable entry (and of the LoRA adapters attached to the table). The
 * caller owns the data side (latents, captions, text encoder) and the optimizer.
 *
 * The host side (noise, target, loss) is F32 whatever the compute dtype; the pass converts on the engine
 * (sdt_copy) between the F32 tensors it uploads and downloads and the compute-dtype tensors the UNet takes
 * and gives, so no host code ever reads a half-precision device tensor. */
#ifndef SDTUNE_TRAIN_DIFFUSION_PASS_H
#define SDTUNE_TRAIN_DIFFUSION_PASS_H

#include "objective.h"
#include "unet.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdt_diffusion_pass {
    const sdt_schedule *schedule;
    const sdt_noise_options *noise;
    const sdt_loss_options *loss;
    sdt_prediction prediction;
    sdt_rng *rng;                /* noise and timesteps, advanced in kohya's order */
    const float *x0;             /* [B, h, w, C] latents, host memory */
    int B, h, w, C;              /* */
    const sdt_tensor *context;   /* [B, L, D] on the engine, in dtype */
    const float *sample_weights; /* [B] loss weight per sample (prior_loss_weight), or NULL: all 1 */
    sdt_tensor *dcontext;        /* [B, L, D] gradient added into, or NULL: not wanted */
    int poison_loss;             /* test hook: treat the loss as not finite */
    sdt_dtype dtype;             /* the compute dtype of the UNet's input and activations (F32 when zero) */
    float loss_scale;            /* fp16's loss scale: dL/dpred is multiplied by it (0: 1, no scaling) */
} sdt_diffusion_pass;

/* Runs the pass; *loss gets the batch loss. Returns 0, 1 when the loss is not finite (no backward ran,
 * nothing was added), or -1 with *error set (caller frees). The UNet holds no forward state afterwards. */
int sdt_diffusion_pass_run(sdt_engine *e, sdt_unet *u, const sdt_diffusion_pass *p, double *loss,
                           char **error);

#ifdef __cplusplus
}
#endif
#endif
