/* Sample images during training (kohya_inventory §5): the prompt file (.txt lines with --n/--w/--h/--d/
 * --l/--s/--ss options, .toml, .json), the samplers, classifier-free guidance, the VAE decode and the PNG
 * with its text chunks, named like kohya's. See docs/training.md, "Sample images". */
#ifndef SDTUNE_TRAIN_SAMPLE_H
#define SDTUNE_TRAIN_SAMPLE_H

#include <stddef.h>
#include <stdint.h>

#include "clip_text.h"
#include "objective.h"
#include "text_cache.h"
#include "tokenizer.h"
#include "unet.h"
#include "vae.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sdt_sampler_kind {
    SDT_SAMPLER_DDIM,
    SDT_SAMPLER_EULER,
    SDT_SAMPLER_EULER_A,
    SDT_SAMPLER_DPMPP_2M,        /* DPM-Solver++(2M), diffusers' DPMSolverMultistepScheduler */
    SDT_SAMPLER_DPMPP_2M_KARRAS, /* the same on Karras sigmas */
} sdt_sampler_kind;

/* kohya's sample_sampler names (ddim, euler, euler_a, k_euler, k_euler_a, dpmsolver++) and ours
 * (dpm++2m, dpm++2m_karras). Names kohya knows that are not implemented (pndm, lms, heun, dpm_2, ...)
 * return -1 with "sampler X is not implemented yet"; others are unknown. */
int sdt_sampler_parse(const char *name, sdt_sampler_kind *out, char **error);
const char *sdt_sampler_name(sdt_sampler_kind kind);

typedef struct sdt_sample_prompt {
    char *prompt;
    char *negative; /* "" when none */
    int width, height; /* floored to a multiple of 8, at least 64 */
    int64_t seed;      /* < 0: drawn from the run's generator */
    int steps;         /* 1..1000 */
    float scale;       /* classifier-free guidance scale */
    int has_sampler;   /* --ss given */
    sdt_sampler_kind sampler;
} sdt_sample_prompt;

typedef struct sdt_sample_prompts {
    sdt_sample_prompt *items;
    size_t count;
} sdt_sample_prompts;

/* The defaults a prompt starts from: kohya's 512x512 (the family's resolution), 30 steps, scale 7.5, no
 * seed, the config's sampler. */
typedef struct sdt_sample_defaults {
    int width, height, steps;
    float scale;
    sdt_sampler_kind sampler;
} sdt_sample_defaults;

/* Parses a prompt file by its extension (.txt, .toml, .json). Errors name the file and line. The file is
 * re-read for every sampling round so that it can be edited during a run. */
int sdt_sample_prompts_load(const char *path, const sdt_sample_defaults *defaults, sdt_sample_prompts *out,
                            char **error);
/* One .txt line ("a cat --n blurry --w 768 --d 5"); name and line for messages. */
int sdt_sample_prompt_parse_line(const char *line, const sdt_sample_defaults *defaults, const char *name,
                                 int line_number, sdt_sample_prompt *out, char **error);
void sdt_sample_prompt_free(sdt_sample_prompt *p);
void sdt_sample_prompts_free(sdt_sample_prompts *p);

/* What generation uses; every pointer outlives the call. The UNet may carry a LoRA (switched to
 * inference by the caller). */
typedef struct sdt_sample_models {
    sdt_engine *e;
    sdt_unet *unet;
    sdt_text_cache *text; /* encodes prompts (sdt_text_cache_encode, no caching) */
    const sdt_vae *vae;
    int clip_skip;
    int max_token_length;
    sdt_prediction prediction; /* epsilon or v */
    int zero_terminal_snr;     /* the schedule the model was trained with */
} sdt_sample_models;

/* An 8-bit RGB image, row-major [height, width, 3]. */
typedef struct sdt_rgb_image {
    uint8_t *pixels;
    int width, height;
} sdt_rgb_image;
void sdt_rgb_image_free(sdt_rgb_image *img);

/* Generates one image: encodes prompt and negative, starts from N(0,1) latents drawn from seed, runs the
 * sampler with classifier-free guidance (uncond and cond in one batch of 2), decodes with the VAE and
 * converts to 8-bit ((x + 1) / 2, clamped, rounded). Deterministic for a given seed. */
int sdt_sample_generate(const sdt_sample_models *m, const sdt_sample_prompt *p, sdt_sampler_kind sampler,
                        uint64_t seed, sdt_rgb_image *out, char **error);

/* kohya's file name: "[<output_name>_]<tag>_<idx:02d>_<YYYYmmddHHMMSS>[_<seed>].png" where tag is
 * "e%06d" for an epoch (at_epoch set) or "%06d" for a step. seed < 0: no seed part. Caller frees. */
char *sdt_sample_file_name(const char *output_name, int at_epoch, int64_t number, int index, int64_t unix_time,
                           int64_t seed);

/* Writes the image as a PNG with tEXt chunks: "prompt", "negative_prompt", "seed", "steps", "scale",
 * "sampler", "width", "height", "step" (the training step) and "parameters" (an AUTOMATIC1111-style
 * summary line). Atomic. */
int sdt_sample_write_png(const char *path, const sdt_rgb_image *img, const sdt_sample_prompt *p,
                         sdt_sampler_kind sampler, uint64_t seed, int64_t training_step, char **error);

#ifdef __cplusplus
}
#endif
#endif
