/* What a training run computes in, and the loss scaler of fp16 runs. See docs/training.md, "Mixed
 * precision".
 *
 * mixed_precision picks the compute dtype: the frozen weights are loaded in it and the UNet's inputs and
 * activations are in it, while the trained parameters (LoRA down/up) stay F32 masters with F32 gradients
 * and the loss is accumulated in F32, as kohya's train_network.py does under --mixed_precision.
 * DreamBooth and fine-tuning keep F32 masters of the weights they train and run the model on working
 * copies in the compute dtype, rounded to nearest from the masters after every step (trainer_masters.c),
 * as kohya's train_db.py / fine_tune.py compute under autocast with fp32 weights.
 *
 * fp16 has too few exponent bits for small gradients, so an fp16 run multiplies the loss gradient by a
 * scale before the backward and divides the gradients by it afterwards, the way torch.cuda.amp.GradScaler
 * does: a step whose gradients overflowed (a non-finite norm) is skipped and halves the scale; a run of
 * good steps doubles it. */
#ifndef SDTUNE_TRAIN_PRECISION_H
#define SDTUNE_TRAIN_PRECISION_H

#include <stdint.h>

#include "backend.h"
#include "sdtune/config.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The compute dtype of mixed_precision on device: "no" F32, "bf16" BF16, "fp16" F16; "auto" BF16 on CUDA
 * (the backend is built for Hopper, whose tensor cores compute bf16; on a GPU without bf16, compute
 * capability below 8.0, auto means fp16, which the CUDA training loop is to decide from the device it
 * opens) for every training type, and F32 on the CPU backend, where low-precision tensors only cost
 * conversions. */
sdt_dtype sdt_train_compute_dtype(const sdt_config *cfg, sdt_device_kind device);

/* What kohya writes as ss_mixed_precision for a compute dtype: "no", "fp16" or "bf16". */
const char *sdt_train_precision_name(sdt_dtype compute);

/* full_bf16 / full_fp16 (DreamBooth and fine-tuning) train the weights themselves in the compute dtype,
 * without masters: the optimizer writes them with stochastic rounding (train/optim.h, half entries). */

/* GradScaler's defaults: init_scale 2^16, growth and backoff factors 2 and 0.5, growth_interval 2000. */
#define SDT_LOSS_SCALE_INIT 65536.0
#define SDT_LOSS_SCALE_GROWTH_INTERVAL 2000

typedef struct sdt_loss_scaler {
    int enabled;        /* fp16 runs; disabled, the scale stays 1 */
    double scale;       /* the loss gradient is multiplied by it before the backward */
    int64_t good_steps; /* consecutive steps with finite gradients since the scale last changed */
    int64_t growth_interval;
} sdt_loss_scaler;

/* Enabled for F16 compute (scale SDT_LOSS_SCALE_INIT), else disabled with scale 1. */
void sdt_loss_scaler_init(sdt_loss_scaler *s, sdt_dtype compute);

/* After the gradients of a step were unscaled and their norm taken: finite, the step goes ahead and every
 * growth_interval-th good step in a row doubles the scale; not finite, the scale halves and the good-step
 * count restarts. Returns 1 when the scale changed. A disabled scaler never changes. */
int sdt_loss_scaler_update(sdt_loss_scaler *s, int finite);

#ifdef __cplusplus
}
#endif
#endif
