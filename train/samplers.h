/* The sampler core behind sample images (docs/training.md, "Sample images"): diffusers 0.30.3's DDIM,
 * Euler, Euler ancestral and DPM-Solver++(2M) (plain and Karras) schedulers as kohya's get_my_scheduler
 * builds them (1000 training steps, scaled_linear 0.00085-0.012, steps_offset 1, clip_sample forced on
 * where the class has it), written against a model callback so that they are testable without a UNet.
 * Latents are flat F32 arrays: every sampler is elementwise. Internal to train/. */
#ifndef SDTUNE_TRAIN_SAMPLERS_H
#define SDTUNE_TRAIN_SAMPLERS_H

#include <stdbool.h>
#include <stddef.h>

#include "objective.h"
#include "sample.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out[n] = the model's prediction (epsilon or v) for x_in[n] (already scaled as the sampler wants it) at
 * the timestep handed to the UNet (fractional for Euler on non-integer grids). Returns 0 or -1 with
 * *error set. */
typedef int (*sdt_sampler_model_fn)(void *ctx, const float *x_in, double timestep, float *out, char **error);
/* noise[n] = N(0, 1) for ancestral step `step` (0-based); one draw per step, as diffusers draws it. */
typedef void (*sdt_sampler_noise_fn)(void *ctx, int step, float *noise, size_t n);

typedef struct sdt_sampler_plan {
    sdt_sampler_kind kind;
    int steps;
    double *timesteps;       /* [steps]: what the model receives */
    double *sigmas;          /* [steps + 1]: VE sigmas ending in 0 (Euler, DPM); NULL for DDIM */
    double init_noise_sigma; /* the N(0, 1) start is scaled by this */
    double alphas_cumprod[SDT_TRAIN_TIMESTEPS];
} sdt_sampler_plan;

/* The timestep and sigma grid for `steps` (1..1000) inference steps. zero_terminal_snr: the rescaled
 * schedule (the Euler and DPM grids then take alphas_cumprod[999] = 2^-24, as diffusers does). */
int sdt_sampler_plan_init(sdt_sampler_plan *p, sdt_sampler_kind kind, int steps, bool zero_terminal_snr,
                          char **error);
void sdt_sampler_plan_free(sdt_sampler_plan *p);

/* Runs the sampler: x [n] holds N(0, 1) on entry (scaled by init_noise_sigma here) and the final latents
 * on return. noise is needed by Euler ancestral only. Returns 0 or -1 with *error set. */
int sdt_sampler_run(const sdt_sampler_plan *p, sdt_prediction prediction, float *x, size_t n,
                    sdt_sampler_model_fn model, void *model_ctx, sdt_sampler_noise_fn noise, void *noise_ctx,
                    char **error);

#ifdef __cplusplus
}
#endif
#endif
