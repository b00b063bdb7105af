/* The UNet's part of a training micro-batch, shared by the trainer (trainer_step.c) and the benchmark
 * (bench.c): from latents and a context already on the engine, draw the noise and timesteps, build the
 * noisy input and the target (objective.h), run the UNet forward, the loss and the backward, which adds
 * into the gradients of every trainable entry (and of the LoRA adapters attached to the table). The
 * caller owns the data side (latents, captions, text encoder) and the optimizer.
 *
 * The host side (noise, target, loss) is F32 whatever the compute dtype; the pass converts on the engine
 * (sdt_copy) between the F32 tensors it uploads and downloads and the compute-dtype tensors the UNet takes
 * and gives, so no host code ever reads a half-precision device tensor.
 *
 * Where the loss is computed (docs/training.md, "Where the loss is computed"): the l2 loss, whose every
 * weighting (prior_loss_weight, min-SNR, v-pred-like, debiased estimation, v-pred scaling) is a factor per
 * sample known from the timesteps, runs on the engine (sdt_mse_loss_forward/backward): target and weights
 * are uploaded with the input, and nothing crosses between the host and the device from the forward's
 * start to the backward's end; the loss comes back in one 4-byte download after the backward is queued.
 * The l1, huber and smooth_l1 losses keep the host path: the prediction is downloaded, the loss and its
 * gradient computed by sdt_objective_loss, the gradient uploaded. Both give the same numbers to F32
 * rounding (tests/train/test_diffusion_pass.c). */
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
    int host_loss;               /* 1: the host path even where the engine could compute the loss (tests) */
} sdt_diffusion_pass;

/* 1 when the pass computes a loss of these options on the engine, 0 when on the host. */
int sdt_diffusion_loss_on_engine(const sdt_loss_options *o);

/* Runs the pass (prepare, compute, finish below); *loss gets the batch loss. Returns 0; 1 when the loss is
 * not finite: the gradients must then be discarded (on the host path no backward ran, on the engine path
 * it ran with the non-finite loss); or -1 with *error set (caller frees). The UNet holds no forward state
 * afterwards. */
int sdt_diffusion_pass_run(sdt_engine *e, sdt_unet *u, const sdt_diffusion_pass *p, double *loss,
                           char **error);

/* The pass in three stages, for callers that queue more work between the backward and the loss download
 * (the text encoder's backward) and for tests that count the host transfers of each stage:
 * - prepare draws noise and timesteps, builds the input, target and weights and uploads them;
 * - compute runs forward, loss and backward; on the engine path it makes no upload, download or sync
 *   (the stretch a CUDA graph would capture, docs/cuda.md "Towards CUDA graphs"); on the host path it
 *   returns 1 without a backward when the loss is not finite;
 * - finish gives the loss (the engine path's one download) and returns 1 when it is not finite.
 * Each returns 0, 1 as said, or -1 with *error set. A batch is freed with sdt_diffusion_batch_free
 * (NULL is allowed); a forward whose backward did not run is the caller's to release (sdt_unet_release). */
typedef struct sdt_diffusion_batch sdt_diffusion_batch;
int sdt_diffusion_pass_prepare(sdt_engine *e, const sdt_diffusion_pass *p, sdt_diffusion_batch **out,
                               char **error);
int sdt_diffusion_pass_compute(sdt_engine *e, sdt_unet *u, const sdt_diffusion_pass *p,
                               sdt_diffusion_batch *b, char **error);
int sdt_diffusion_pass_finish(sdt_engine *e, const sdt_diffusion_pass *p, sdt_diffusion_batch *b,
                              double *loss, char **error);
void sdt_diffusion_batch_free(sdt_engine *e, sdt_diffusion_batch *b);

#ifdef __cplusplus
}
#endif
#endif
