/* Reads a run's settings from its config (see trainer_config.h for why this is one place). */
#include <stdlib.h>
#include <string.h>

#include "sdtune/config.h"
#include "sdtune/schema.h"
#include "sdtune/strutil.h"
#include "sdtune/value.h"
#include "trainer_config.h"

/* What shapes the weights, the data order or the random numbers: changing any of these between a save and
 * its resume would not continue the same run. Step counts, saving and sampling settings may change. */
static const char *const resume_keys[] = {"pretrained_model_name_or_path",
                                          "training_type",
                                          "v_parameterization",
                                          "clip_skip",
                                          "max_token_length",
                                          "train_text_encoder",
                                          "train_data_dir",
                                          "reg_data_dir",
                                          "dataset_config",
                                          "in_json",
                                          "resolution",
                                          "enable_bucket",
                                          "min_bucket_reso",
                                          "max_bucket_reso",
                                          "bucket_reso_steps",
                                          "bucket_no_upscale",
                                          "train_batch_size",
                                          "seed",
                                          "gradient_accumulation_steps",
                                          "optimizer_type",
                                          "optimizer_args",
                                          "network_dim",
                                          "network_alpha",
                                          "conv_dim",
                                          "conv_alpha",
                                          "network_train_unet_only",
                                          "network_train_text_encoder_only",
                                          NULL};

static uint64_t resume_hash(const sdt_config *cfg)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a over "key=value\n" */
    for (size_t k = 0; resume_keys[k]; k++) {
        int idx = sdt_schema_find(resume_keys[k]);
        if (idx < 0)
            continue;
        char *text = sdt_value_to_text(sdt_config_get(cfg, idx));
        char *line = sdt_format("%s=%s\n", resume_keys[k], text ? text : "");
        for (const char *c = line; c && *c; c++)
            h = (h ^ (unsigned char)*c) * 0x100000001b3ULL;
        free(line);
        free(text);
    }
    return h;
}

static const char *str(const sdt_config *cfg, const char *key)
{
    const char *v = sdt_config_str(cfg, key);
    return v ? v : "";
}

void sdt_train_settings_read(const sdt_config *cfg, sdt_train_settings *s)
{
    memset(s, 0, sizeof *s);
    s->family_sdxl = sdt_config_family(cfg) == SDT_FAMILY_SDXL;
    sdt_training tt = sdt_config_training(cfg);
    s->kind = tt == SDT_TRAIN_LORA         ? SDT_KIND_LORA
              : tt == SDT_TRAIN_DREAMBOOTH ? SDT_KIND_DREAMBOOTH
                                           : SDT_KIND_FINETUNE;
    s->model_path = str(cfg, "pretrained_model_name_or_path");
    s->vae_path = str(cfg, "vae");
    s->tokenizer_dir = str(cfg, "tokenizer_dir");
    s->backend = str(cfg, "backend");
    s->v_parameterization = sdt_config_bool(cfg, "v_parameterization");
    s->no_half_vae = sdt_config_bool(cfg, "no_half_vae");
    s->full_bf16 = sdt_config_bool(cfg, "full_bf16");
    s->full_fp16 = sdt_config_bool(cfg, "full_fp16");
    s->clip_skip = (int)sdt_config_int(cfg, "clip_skip");
    s->max_token_length = (int)sdt_config_int(cfg, "max_token_length");
    s->train_text_encoder = sdt_config_bool(cfg, "train_text_encoder");
    s->stop_text_encoder_training = sdt_config_int(cfg, "stop_text_encoder_training");
    s->cpu_threads = (int)sdt_config_int(cfg, "cpu_threads");
    s->gpu_index = (int)sdt_config_int(cfg, "gpu_index");
    s->deterministic = sdt_config_bool(cfg, "deterministic");
    s->vram_limit_gb = sdt_config_float(cfg, "vram_limit_gb");
    s->output_dir = str(cfg, "output_dir");
    s->output_name = str(cfg, "output_name");
    s->logging_dir = str(cfg, "logging_dir");
    s->log_prefix = str(cfg, "log_prefix");
    s->cache_latents = sdt_config_bool(cfg, "cache_latents");
    s->cache_latents_to_disk = sdt_config_bool(cfg, "cache_latents_to_disk");
    s->vae_batch_size = (int)sdt_config_int(cfg, "vae_batch_size");
    s->skip_cache_check = sdt_config_bool(cfg, "skip_cache_check");
    s->cache_text_encoder_outputs_to_disk = sdt_config_bool(cfg, "cache_text_encoder_outputs_to_disk");
    s->max_train_steps = sdt_config_int(cfg, "max_train_steps");
    s->max_train_epochs = sdt_config_int(cfg, "max_train_epochs");
    s->seed = sdt_config_int(cfg, "seed");
    s->gradient_accumulation_steps = (int)sdt_config_int(cfg, "gradient_accumulation_steps");
    s->gradient_checkpointing = sdt_config_bool(cfg, "gradient_checkpointing");
    s->optimizer_type = str(cfg, "optimizer_type");
    s->lr_scheduler = str(cfg, "lr_scheduler");
    s->learning_rate = sdt_config_float(cfg, "learning_rate");
    s->unet_lr = sdt_config_float(cfg, "unet_lr");
    s->text_encoder_lr = sdt_config_float(cfg, "text_encoder_lr");
    s->max_grad_norm = sdt_config_float(cfg, "max_grad_norm");
    s->lr_warmup_steps = sdt_config_float(cfg, "lr_warmup_steps");
    s->lr_scheduler_power = sdt_config_float(cfg, "lr_scheduler_power");
    s->lr_scheduler_num_cycles = (int)sdt_config_int(cfg, "lr_scheduler_num_cycles");
    s->network_dim = (int)sdt_config_int(cfg, "network_dim");
    s->network_alpha = sdt_config_float(cfg, "network_alpha");
    s->conv_dim = (int)sdt_config_int(cfg, "conv_dim");
    s->conv_alpha = sdt_config_float(cfg, "conv_alpha");
    s->network_dropout = sdt_config_float(cfg, "network_dropout");
    s->rank_dropout = sdt_config_float(cfg, "rank_dropout");
    s->module_dropout = sdt_config_float(cfg, "module_dropout");
    s->network_train_unet_only = sdt_config_bool(cfg, "network_train_unet_only");
    s->network_train_text_encoder_only = sdt_config_bool(cfg, "network_train_text_encoder_only");
    s->network_weights = str(cfg, "network_weights");
    s->prior_loss_weight = sdt_config_float(cfg, "prior_loss_weight");
    s->min_snr_gamma = sdt_config_float(cfg, "min_snr_gamma");
    s->noise_offset = sdt_config_float(cfg, "noise_offset");
    s->noise_offset_random_strength = sdt_config_bool(cfg, "noise_offset_random_strength");
    s->adaptive_noise_scale = sdt_config_float(cfg, "adaptive_noise_scale");
    s->multires_noise_iterations = (int)sdt_config_int(cfg, "multires_noise_iterations");
    s->multires_noise_discount = sdt_config_float(cfg, "multires_noise_discount");
    s->debiased_estimation_loss = sdt_config_bool(cfg, "debiased_estimation_loss");
    s->loss_type = str(cfg, "loss_type");
    s->huber_schedule = str(cfg, "huber_schedule");
    s->huber_c = sdt_config_float(cfg, "huber_c");
    s->huber_scale = sdt_config_float(cfg, "huber_scale");
    s->ip_noise_gamma = sdt_config_float(cfg, "ip_noise_gamma");
    s->ip_noise_gamma_random_strength = sdt_config_bool(cfg, "ip_noise_gamma_random_strength");
    s->zero_terminal_snr = sdt_config_bool(cfg, "zero_terminal_snr");
    s->min_timestep = (int)sdt_config_int(cfg, "min_timestep");
    s->max_timestep = (int)sdt_config_int(cfg, "max_timestep");
    s->scale_v_pred_loss_like_noise_pred = sdt_config_bool(cfg, "scale_v_pred_loss_like_noise_pred");
    s->v_pred_like_loss = sdt_config_float(cfg, "v_pred_like_loss");
    s->sample_prompts = str(cfg, "sample_prompts");
    s->sample_sampler = str(cfg, "sample_sampler");
    s->sample_every_n_epochs = sdt_config_int(cfg, "sample_every_n_epochs");
    s->sample_every_n_steps = sdt_config_int(cfg, "sample_every_n_steps");
    s->sample_at_first = sdt_config_bool(cfg, "sample_at_first");
    s->save_model_as = str(cfg, "save_model_as");
    s->save_precision = str(cfg, "save_precision");
    s->resume = str(cfg, "resume");
    s->save_every_n_epochs = sdt_config_int(cfg, "save_every_n_epochs");
    s->save_every_n_steps = sdt_config_int(cfg, "save_every_n_steps");
    s->save_last_n_epochs = sdt_config_int(cfg, "save_last_n_epochs");
    s->save_last_n_steps = sdt_config_int(cfg, "save_last_n_steps");
    s->save_last_n_epochs_state = sdt_config_int(cfg, "save_last_n_epochs_state");
    s->save_last_n_steps_state = sdt_config_int(cfg, "save_last_n_steps_state");
    s->save_state = sdt_config_bool(cfg, "save_state");
    s->save_state_on_train_end = sdt_config_bool(cfg, "save_state_on_train_end");
    /* nan_policy may not exist in an older schema: "stop" then */
    s->nan_stop = sdt_schema_find("nan_policy") < 0 || strcmp(str(cfg, "nan_policy"), "skip") != 0;
    s->resume_hash = resume_hash(cfg);
}

char *sdt_train_settings_toml(const sdt_config *cfg) { return sdt_config_to_toml(cfg); }
