/* What the parts of a training run share (trainer*.c, train_state.c): the run's context. Not a public
 * interface; see trainer.h for the entry point and docs/training.md, "Training loop". */
#ifndef SDTUNE_TRAIN_TRAINER_INTERNAL_H
#define SDTUNE_TRAIN_TRAINER_INTERNAL_H

#include <stdint.h>
#include <time.h>

#include "checkpoint.h"
#include "clip_text.h"
#include "latent_cache.h"
#include "lora.h"
#include "lr_schedule.h"
#include "memory_plan.h"
#include "objective.h"
#include "optim.h"
#include "precision.h"
#include "sdtune/strutil.h"
#include "text_cache.h"
#include "tokenizer.h"
#include "trainer.h"
#include "trainer_config.h"
#include "trainer_data.h"
#include "unet.h"
#include "vae.h"

/* kohya's LossRecorder: the per-step losses of one epoch's worth of optimizer steps; the first epoch
 * appends, later epochs replace the value at the same index. */
typedef struct sdt_loss_recorder {
    double *values; /* [capacity] */
    size_t count, capacity;
    double sum;
} sdt_loss_recorder;

int sdt_loss_recorder_init(sdt_loss_recorder *r, size_t capacity);
void sdt_loss_recorder_free(sdt_loss_recorder *r);
void sdt_loss_recorder_add(sdt_loss_recorder *r, int first_epoch, size_t index, double loss);
double sdt_loss_recorder_average(const sdt_loss_recorder *r);

/* Full training under mixed precision: one trained weight's F32 master and the working copy in the
 * compute dtype that param->value shows while the model runs (trainer_masters.c). */
typedef struct sdt_full_copy {
    sdt_param *param;
    sdt_tensor master;  /* F32, the param's shape; owned by the model's table; the optimizer updates it */
    sdt_tensor working; /* compute dtype, the same shape; owned by the trainer */
} sdt_full_copy;

typedef struct sdt_trainer {
    const sdt_train_options *o;
    const sdt_config *cfg;
    sdt_train_settings s;
    char *output_dir, *output_name;

    /* models */
    sdt_engine *e;
    sdt_model model;
    sdt_unet *unet;
    sdt_clip_text *text_encoder;
    sdt_vae *vae;
    sdt_tokenizer *tokenizer;
    sdt_prediction prediction;
    int clip_skip, max_token_length;

    /* what trains */
    sdt_train_kind training_type;
    int train_unet, train_text_encoder; /* the text encoder trains (LoRA modules or its weights) */
    int64_t stop_text_encoder_step;     /* DreamBooth: the text encoder freezes after this step (0: never) */
    int has_lora;
    sdt_lora_network lora;
    void **full_grads; /* DreamBooth / fine-tune: gradient buffers the trainer attached to the UNet table */
    size_t full_grad_count;
    sdt_full_copy *full_copies; /* [full_copy_count]: bf16/fp16 full training only (trainer_masters.c) */
    int full_half; /* full_bf16 / full_fp16: the trained weights and their gradients are in compute_dtype,
                      without masters or working copies; the optimizer updates them in place */
    size_t full_copy_count;

    /* data */
    sdt_train_data data;
    sdt_batch batch;
    sdt_latent_cache *latents;
    sdt_text_cache *texts;
    int cache_text; /* text-encoder outputs come from the cache */

    /* objective and optimizer */
    sdt_schedule schedule;
    sdt_noise_options noise;
    sdt_loss_options loss;
    double prior_loss_weight;
    sdt_optimizer optim;
    int unet_group, text_encoder_group; /* -1 when that part has no group */
    double unet_lr, text_encoder_lr;
    sdt_lr_schedule lr_schedule;
    double max_grad_norm;
    int accumulation;

    /* precision (precision.h): the frozen weights, the UNet's inputs and its activations are in
     * compute_dtype; the trained parameters, their gradients and the loss stay F32 */
    sdt_dtype compute_dtype;
    sdt_loss_scaler scaler; /* fp16 only; its scale is saved in a state */

    /* where the run stands (saved in a state) */
    uint64_t seed;
    sdt_rng rng; /* noise and timesteps */
    sdt_epoch_cursor cursor;
    int64_t total_steps, global_step;
    int total_epochs, steps_per_epoch;
    sdt_loss_recorder recorder;
    double epoch_loss_sum;
    int64_t epoch_loss_steps;
    int64_t skipped_steps, skipped_in_row;
    int64_t overflow_steps; /* of skipped_steps: fp16 overflows the loss scaler skipped */

    /* the memory plan, made before the model is loaded (trainer_memory.c) */
    sdt_memory_plan memory_plan;
    int has_memory_plan;
    /* for `memory` events on CUDA (trainer.c): the device's size, and the allocator's peak of loading and
     * caching, which the first step's sdt_engine_reset_peak forgets */
    size_t device_memory_total; /* bytes; 0 unknown */
    size_t peak_before_steps;   /* bytes */

    /* reporting */
    double run_started;   /* monotonic seconds */
    double steps_seconds; /* time spent in optimizer steps of this process */
    int64_t steps_timed;
    int64_t training_started_at; /* unix seconds */
    char session_id[33];
    struct sdt_tb_writer *tensorboard; /* NULL without logging_dir */
    char **outputs;
    size_t output_count, output_capacity;
} sdt_trainer;

/* ---- events (trainer.c) ---- */
void sdt_trainer_log(sdt_trainer *t, sdt_log_level level, const char *fmt, ...) SDT_PRINTF(3, 4);
void sdt_trainer_phase(sdt_trainer *t, sdt_phase phase);
/* Any event: stamped with the time and passed to the run's emit callback. */
void sdt_trainer_emit(sdt_trainer *t, sdt_event *ev);
void sdt_trainer_checkpoint(sdt_trainer *t, const char *path, sdt_checkpoint_kind kind);
int sdt_trainer_add_output(sdt_trainer *t, const char *path);
void sdt_trainer_remove_output(sdt_trainer *t, const char *path);
double sdt_trainer_now(void);

/* ---- setup (trainer_setup.c) ---- */
/* The engine of the `backend` setting (auto: CUDA when the build has it and a device answers, else the
 * CPU; the guarded test device when the options ask for it), on `gpu_index`, with `deterministic`; logs
 * which and emits the `device` event (backend, device, memory, precision). -1 with *error naming the
 * backend and the GPU when it cannot start. */
int sdt_trainer_create_engine(sdt_trainer *t, char **error);
int sdt_trainer_setup_models(sdt_trainer *t, char **error);
int sdt_trainer_setup_data(sdt_trainer *t, char **error);
int sdt_trainer_setup_training(sdt_trainer *t, char **error);
int sdt_trainer_setup_caches(sdt_trainer *t, char **error);
void sdt_trainer_teardown(sdt_trainer *t);

/* ---- full training under mixed precision (trainer_masters.c) ---- */
/* Gives every trainable (F32, gradient attached) weight of the table a working copy in the compute dtype,
 * rounded to nearest from it, and points the param's value at the copy; nothing in an F32 run. */
int sdt_trainer_make_working_copies(sdt_trainer *t, sdt_param_table *table, char **error);
/* Rounds every master to its working copy again: after an optimizer step or a restore of the masters. */
int sdt_trainer_refresh_working_copies(sdt_trainer *t, char **error);
/* masters 1: the params' values show the F32 masters (to register them with the optimizer, to save the
 * model); 0: the working copies again (to run the model). */
void sdt_trainer_show_masters(sdt_trainer *t, int masters);
/* Shows the masters again and frees the working copies (teardown). */
void sdt_trainer_free_working_copies(sdt_trainer *t);

/* ---- the memory plan (trainer_memory.c) ---- */
/* Plans the run's memory from the model's headers and the config and logs the table. Returns 0 when it
 * fits (or the free memory is unknown), 1 when it does not (the suggestion is logged, *error says how far
 * off it is and *setting names the setting that helps most, or NULL), -1 on an error. */
int sdt_trainer_plan_memory(sdt_trainer *t, const char **setting, char **error);
/* Logs the engine allocator's peak of the first step (above live_before) beside the plan's. */
void sdt_trainer_report_step_memory(sdt_trainer *t, size_t live_before);

/* ---- one optimizer step (trainer_step.c) ---- */
typedef enum sdt_step_outcome {
    SDT_STEP_TAKEN,   /* the optimizer updated the weights */
    SDT_STEP_SKIPPED, /* a non-finite loss or gradient norm: nothing changed (nan_policy skip) */
    SDT_STEP_FAILED,  /* an error, or a non-finite value under nan_policy stop (*error says which) */
} sdt_step_outcome;
/* Runs the micro-batches of one optimizer step from the cursor; *loss gets their mean loss. */
sdt_step_outcome sdt_trainer_step(sdt_trainer *t, double *loss, char **error);

/* ---- saving (trainer_save.c) ---- */
typedef enum sdt_save_kind { SDT_SAVE_EPOCH, SDT_SAVE_STEP, SDT_SAVE_FINAL } sdt_save_kind;
/* The model (LoRA or whole checkpoint) under the kind's name, then the rotation. */
int sdt_trainer_save_model(sdt_trainer *t, sdt_save_kind kind, int number, char **error);
/* A resumable state folder under the kind's name, then the rotation of state folders. */
int sdt_trainer_save_state(sdt_trainer *t, sdt_save_kind kind, int number, char **error);
/* Restores a state folder written by sdt_trainer_save_state. */
int sdt_trainer_load_state(sdt_trainer *t, const char *dir, char **error);
/* Removes a file or folder tree (rotation); 0 when it did not exist. */
int sdt_trainer_remove_path(const char *path);

/* ---- sampling (trainer_sample.c) ---- */
/* Writes the sample images of the prompts file; at_epoch: named by epoch, else by step. */
int sdt_trainer_sample(sdt_trainer *t, int at_epoch, int64_t number, char **error);

/* ---- train_state.json (train_state.c) ---- */
char *sdt_train_state_to_json(const sdt_trainer *t);
int sdt_train_state_from_json(sdt_trainer *t, const char *text, const char *path, char **error);

#endif
