/* The diffusion training objective, as kohya's sd-scripts computes it for SD1.x/SD2.x/SDXL
 * (docs/training.md, section "Objective"): the DDPM noise schedule, the forward process and its targets,
 * the noise modifications (noise offset, adaptive offset, multi-resolution noise, input perturbation),
 * timestep sampling, the per-sample loss weightings, the per-element loss types and the reduction to one
 * number, with its gradient with respect to the prediction for the UNet backward.
 *
 * Tensors are latents [B, h, w, C] channels-last F32 in host memory. The schedule is kept in float64.
 * Nothing here holds global state: random numbers come from an sdt_rng the caller owns. Functions that
 * can fail return 0 on success or -1 with a one-line message in `msg`. */
#ifndef SDTUNE_TRAIN_OBJECTIVE_H
#define SDTUNE_TRAIN_OBJECTIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arch.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SDT_TRAIN_TIMESTEPS 1000

/* ---- schedule ---- */

typedef struct sdt_schedule {
    bool zero_terminal_snr;
    double betas[SDT_TRAIN_TIMESTEPS];
    double alphas_cumprod[SDT_TRAIN_TIMESTEPS]; /* after the zero-terminal-SNR rescale when enabled */
    double sqrt_alphas_cumprod[SDT_TRAIN_TIMESTEPS];
    double sqrt_one_minus_alphas_cumprod[SDT_TRAIN_TIMESTEPS];
    /* SNR_t = ac/(1-ac) of the ORIGINAL schedule: kohya computes its SNR table before the zero-terminal-
     * SNR fix, so the loss weightings never see the infinite/zero terminal values. */
    double snr[SDT_TRAIN_TIMESTEPS];
} sdt_schedule;

/* DDPM "scaled_linear" betas (0.00085 -> 0.012, 1000 steps), optionally rescaled to zero terminal SNR. */
void sdt_schedule_init(sdt_schedule *s, bool zero_terminal_snr);

/* ---- random numbers (counter-based: value k of a stream is a pure function of (seed, stream, k)) ---- */

typedef struct sdt_rng {
    uint64_t key;
    uint64_t counter;
} sdt_rng;

void sdt_rng_init(sdt_rng *r, uint64_t seed, uint64_t stream);
uint64_t sdt_rng_u64(sdt_rng *r);
double sdt_rng_uniform(sdt_rng *r); /* [0, 1) with 53 random bits */
double sdt_rng_normal(sdt_rng *r);  /* N(0, 1) */
/* Uniform integer in [lo, hi), unbiased; requires lo < hi. */
int64_t sdt_rng_int(sdt_rng *r, int64_t lo, int64_t hi);
void sdt_rng_fill_normal(sdt_rng *r, float *out, size_t n);

/* ---- forward process and targets (one sample of n elements at timestep t) ---- */

void sdt_add_noise(const sdt_schedule *s, int t, const float *x0, const float *noise, size_t n, float *out);
void sdt_velocity(const sdt_schedule *s, int t, const float *x0, const float *noise, size_t n, float *out);

/* ---- noise modifications (deterministic cores; the random draws are inputs) ---- */

/* noise[b,:,:,c] += o_bc * normals[b*C + c] with o_bc = offset, or, when `adaptive`,
 * o_bc = max(0, offset + adaptive_scale * |mean_{h,w} latents[b,:,:,c]|). */
void sdt_noise_offset_apply(float *noise, const float *latents, int B, int64_t hw, int C, double offset,
                            bool adaptive, double adaptive_scale, const float *normals);

/* Size of multires level i for the drawn ratio r: max(1, (int)(side / r^i)) per side, as kohya truncates. */
void sdt_multires_level_size(int H, int W, double r, int i, int *hn, int *wn);

/* noise[B,H,W,C] += scale * bilinear_upsample(small[B,hn,wn,C]) (PyTorch align_corners=False). */
void sdt_noise_add_upsampled(float *noise, int B, int H, int W, int C, const float *small, int hn, int wn,
                             double scale);

/* noise /= std(noise) over all n elements (unbiased, as torch.std). Nothing happens when the std is 0. */
void sdt_noise_normalize_std(float *noise, size_t n);

/* ---- per-step noise, timesteps and targets for a batch ---- */

/* sdt_prediction (epsilon or v) is the models' one, arch.h. */

typedef struct sdt_noise_options {
    double noise_offset; /* 0 = off */
    bool noise_offset_random_strength;
    bool adaptive_noise; /* adaptive_noise_scale given (needs noise_offset) */
    double adaptive_noise_scale;
    int multires_noise_iterations; /* 0 = off */
    double multires_noise_discount;
    double ip_noise_gamma; /* 0 = off */
    bool ip_noise_gamma_random_strength;
    int min_timestep, max_timestep; /* [min, max) */
} sdt_noise_options;

void sdt_noise_options_default(sdt_noise_options *o);
int sdt_noise_options_check(const sdt_noise_options *o, char *msg, size_t msg_size);

/* Draws, in kohya's order, the noise (with offset and multires applied), one timestep per sample, the
 * input-perturbation noise, then writes the noisy latents and the target (the modified noise, or v).
 * x0, noise_out, noisy_out, target_out: [B, h, w, C]; t_out: [B]. */
int sdt_objective_sample_batch(const sdt_schedule *s, const sdt_noise_options *o, sdt_prediction prediction,
                               sdt_rng *rng, const float *x0, int B, int h, int w, int C, int *t_out,
                               float *noise_out, float *noisy_out, float *target_out, char *msg,
                               size_t msg_size);

/* ---- loss ---- */

typedef enum sdt_loss_type { SDT_LOSS_L2, SDT_LOSS_L1, SDT_LOSS_HUBER, SDT_LOSS_SMOOTH_L1 } sdt_loss_type;
typedef enum sdt_huber_schedule {
    SDT_HUBER_CONSTANT,
    SDT_HUBER_EXPONENTIAL,
    SDT_HUBER_SNR
} sdt_huber_schedule;

typedef struct sdt_loss_options {
    sdt_prediction prediction;
    sdt_loss_type loss_type;
    sdt_huber_schedule huber_schedule;
    double huber_c, huber_scale;
    double min_snr_gamma; /* 0 = off */
    bool scale_v_pred_loss_like_noise_pred;
    double v_pred_like_loss; /* 0 = off */
    bool debiased_estimation_loss;
} sdt_loss_options;

void sdt_loss_options_default(sdt_loss_options *o); /* l2, snr schedule, huber_c 0.1, scale 1 */
int sdt_loss_options_check(const sdt_loss_options *o, char *msg, size_t msg_size);

/* The Huber threshold c of a sample at timestep t under the options' schedule. */
double sdt_huber_c(const sdt_schedule *s, const sdt_loss_options *o, int t);

/* The product of the post-reduction weights of a sample at t (min-SNR, v-pred scaling, v-pred-like,
 * debiased estimation); 1 when none is enabled. The prior weight is not included. */
double sdt_loss_timestep_weight(const sdt_schedule *s, const sdt_loss_options *o, int t);

/* Per-element loss and its derivative with respect to the prediction, for d = pred - target. */
double sdt_loss_element(sdt_loss_type type, double d, double c);
double sdt_loss_element_grad(sdt_loss_type type, double d, double c);

/* The batch loss: mean over b of w_b * mean_{h,w,C}(mask * loss(pred - target)), with
 * w_b = sample_weight[b] (prior_loss_weight for regularization images; NULL = all 1) times the timestep
 * weight. mask: [B, h*w] in [0, 1] at latent resolution, broadcast over channels, or NULL. The mean is
 * not mask-normalized, as in kohya. grad (optional, [B, hw, C]) receives dL/dpred; per_sample (optional,
 * [B]) the weighted loss of each sample. */
int sdt_objective_loss(const sdt_schedule *s, const sdt_loss_options *o, int B, int64_t hw, int C,
                       const float *pred, const float *target, const int *t, const float *sample_weight,
                       const float *mask, double *loss, float *grad, double *per_sample, char *msg,
                       size_t msg_size);

#ifdef __cplusplus
}
#endif

#endif
