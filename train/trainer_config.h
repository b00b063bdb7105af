/* The settings a training run reads from its config, as plain values: trainer_config.c reads every setting
 * once (with its kohya meaning of 0 / empty) and the rest of the trainer works from this struct. */
#ifndef SDTUNE_TRAIN_TRAINER_CONFIG_H
#define SDTUNE_TRAIN_TRAINER_CONFIG_H

#include <stdint.h>

typedef struct sdt_config sdt_config;

typedef enum sdt_train_kind { SDT_KIND_LORA, SDT_KIND_DREAMBOOTH, SDT_KIND_FINETUNE } sdt_train_kind;

/* Strings point into the config (valid while it lives); "" when unset. */
typedef struct sdt_train_settings {
    /* model */
    int family_sdxl;
    sdt_train_kind kind;
    const char *model_path, *vae_path, *tokenizer_dir, *backend;
    int v_parameterization, clip_skip, max_token_length, train_text_encoder;
    int no_half_vae; /* the VAE stays F32 under mixed precision */
    /* full training: the trained weights and gradients in bf16 / fp16, no masters */
    int full_bf16, full_fp16;
    int64_t stop_text_encoder_training;
    int cpu_threads;
    /* hardware and memory */
    int gpu_index, deterministic;
    double vram_limit_gb; /* 0: the device's free memory alone bounds the plan */
    /* folders */
    const char *output_dir, *output_name;
    const char *logging_dir, *log_prefix; /* TensorBoard when logging_dir is set */
    /* data and caches */
    int cache_latents, cache_latents_to_disk, vae_batch_size, skip_cache_check;
    int cache_text_encoder_outputs_to_disk;
    /* training */
    int64_t max_train_steps, max_train_epochs, seed;
    int gradient_accumulation_steps, gradient_checkpointing;
    /* optimizer and schedule */
    const char *optimizer_type, *lr_scheduler;
    double learning_rate, unet_lr, text_encoder_lr, max_grad_norm;
    double lr_warmup_steps, lr_scheduler_power;
    int lr_scheduler_num_cycles;
    /* network */
    int network_dim, conv_dim;
    double network_alpha, conv_alpha, network_dropout, rank_dropout, module_dropout;
    int network_train_unet_only, network_train_text_encoder_only;
    const char *network_weights;
    /* noise and loss */
    double prior_loss_weight, min_snr_gamma, noise_offset, adaptive_noise_scale, multires_noise_discount;
    int noise_offset_random_strength, multires_noise_iterations, debiased_estimation_loss;
    const char *loss_type, *huber_schedule;
    double huber_c, huber_scale, ip_noise_gamma, v_pred_like_loss;
    int ip_noise_gamma_random_strength, zero_terminal_snr, min_timestep, max_timestep;
    int scale_v_pred_loss_like_noise_pred;
    /* sampling */
    const char *sample_prompts, *sample_sampler;
    int64_t sample_every_n_epochs, sample_every_n_steps;
    int sample_at_first;
    /* saving */
    const char *save_model_as, *save_precision, *resume;
    int64_t save_every_n_epochs, save_every_n_steps;
    int64_t save_last_n_epochs, save_last_n_steps, save_last_n_epochs_state, save_last_n_steps_state;
    int save_state, save_state_on_train_end;
    /* guards */
    int nan_stop; /* nan_policy "stop" (also when the setting does not exist) */
    /* what a resumed run must share with the run that saved its state */
    uint64_t resume_hash;
} sdt_train_settings;

void sdt_train_settings_read(const sdt_config *cfg, sdt_train_settings *s);

/* The whole config as TOML (sdt_config_to_toml); NULL when out of memory. */
char *sdt_train_settings_toml(const sdt_config *cfg);

#endif
