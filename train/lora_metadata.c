/* kohya's LoRA metadata (inventory §6.5): the ss_* keys of train_network.py (the form without a
 * dataset_config) and the modelspec.* keys of sai_model_spec.py, every value a string as Python's str()
 * writes the argument ("True", "None", "0.0001"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lora_internal.h"
#include "sdtune/config.h"
#include "sdtune/strutil.h"

#ifndef SDTUNE_VERSION
#define SDTUNE_VERSION "unknown"
#endif

typedef struct writer {
    const struct sdt_config *cfg;
    sdt_kv_list *out;
    int failed;
} writer;

static void put(writer *w, const char *key, const char *value)
{
    if (!value || sdt_kv_set(w->out, key, "%s", value) != 0)
        w->failed = 1;
}

static void put_owned(writer *w, const char *key, char *value)
{
    put(w, key, value);
    free(value);
}

/* ss_key from the setting key: the effective value, or "None" when none_when_unset and the setting is
 * not set (kohya's arguments whose default is None). */
static void setting(writer *w, const char *ss_key, const char *key, int none_when_unset)
{
    put_owned(w, ss_key,
              none_when_unset ? sdt_lora_cfg_python_or_none(w->cfg, key) : sdt_lora_cfg_python(w->cfg, key));
}

/* A setting kohya takes as None by default where this trainer's 0 means the same (unset, off): unet_lr and
 * text_encoder_lr (0: use learning_rate), min_snr_gamma, noise_offset, ... (0: off). "None" when the config
 * leaves it unset or at 0, else the value. */
static void zero_is_none(writer *w, const char *ss_key, const char *key)
{
    char *value = sdt_lora_cfg_python(w->cfg, key);
    int unset = !sdt_lora_cfg_is_set(w->cfg, key) || (value && strtod(value, NULL) == 0.0);
    if (unset) {
        free(value);
        value = sdt_strdup("None");
    }
    put_owned(w, ss_key, value);
}

static void put_int(writer *w, const char *key, long long value)
{
    if (sdt_kv_set(w->out, key, "%lld", value) != 0)
        w->failed = 1;
}

static void put_float(writer *w, const char *key, double value)
{
    char buf[64];
    sdt_lora_python_float(value, buf, sizeof buf);
    put(w, key, buf);
}

/* The file name of a path (kohya: os.path.basename). */
static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash && slash[1] ? slash + 1 : path;
}

static const char *model_version(writer *w)
{
    const char *family = sdt_family_name(sdt_config_family(w->cfg));
    if (strcmp(family, "sdxl") == 0)
        return "sdxl_base_v1-0";
    if (strcmp(family, "sd2") == 0)
        return sdt_config_bool(w->cfg, "v_parameterization") ? "sd_v2_v" : "sd_v2";
    return "sd_v1";
}

/* kohya_ss passes LoCon and the dropouts as network_args; ss_network_args is json.dumps of them (all
 * values strings). NULL when there are none. */
static char *network_args_json(writer *w)
{
    static const char *const keys[] = {"conv_dim",
                                       "conv_alpha",
                                       "rank_dropout",
                                       "module_dropout",
                                       "loraplus_lr_ratio",
                                       "loraplus_unet_lr_ratio",
                                       "loraplus_text_encoder_lr_ratio"};
    sdt_buf json;
    sdt_buf_init(&json);
    size_t n = 0;
    int conv = 0;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char *value = sdt_lora_cfg_python(w->cfg, keys[i]);
        if (!value)
            continue;
        /* conv_alpha only comes with conv_dim; everything else only when switched on (not zero). */
        int zero = strcmp(value, "0") == 0 || strcmp(value, "0.0") == 0;
        int wanted = strcmp(keys[i], "conv_alpha") == 0 ? conv : !zero;
        if (strcmp(keys[i], "conv_dim") == 0)
            conv = !zero;
        if (wanted) {
            sdt_buf_printf(&json, "%s\"%s\": \"%s\"", n ? ", " : "{", keys[i], value);
            n++;
        }
        free(value);
    }
    if (!n) {
        sdt_buf_free(&json);
        return NULL;
    }
    sdt_buf_puts(&json, "}");
    return sdt_buf_take(&json);
}

static void network_keys(writer *w)
{
    const char *family = sdt_family_name(sdt_config_family(w->cfg));
    put(w, "ss_v2", strcmp(family, "sd2") == 0 ? "True" : "False");
    put(w, "ss_base_model_version", model_version(w));
    put_owned(w, "ss_network_module", sdt_format("networks.%s", sdt_config_str(w->cfg, "network_module")));
    setting(w, "ss_network_dim", "network_dim", 0);
    setting(w, "ss_network_alpha", "network_alpha", 0);
    char *args = network_args_json(w);
    if (args)
        put_owned(w, "ss_network_args", args);
}

static void modelspec(writer *w, const sdt_lora_run_info *info)
{
    const char *family = sdt_family_name(sdt_config_family(w->cfg));
    int v_pred = sdt_config_bool(w->cfg, "v_parameterization");
    const char *arch = "stable-diffusion-v1/lora";
    if (strcmp(family, "sd2") == 0)
        arch = v_pred ? "stable-diffusion-v2-768-v/lora" : "stable-diffusion-v2-512/lora";
    else if (strcmp(family, "sdxl") == 0)
        arch = "stable-diffusion-xl-v1-base/lora";
    put(w, "modelspec.sai_model_spec", "1.0.1");
    put(w, "modelspec.architecture", arch);
    put(w, "modelspec.implementation",
        strcmp(family, "sdxl") == 0 ? "https://github.com/Stability-AI/generative-models" : "diffusers");
    const char *title = sdt_config_str(w->cfg, "metadata_title");
    if (!*title && sdt_lora_cfg_is_set(w->cfg, "output_name"))
        title = sdt_config_str(w->cfg, "output_name");
    if (*title) {
        put(w, "modelspec.title", title);
    } else {
        /* kohya: "LoRA@" and the save's time.time() */
        char stamp[64];
        sdt_lora_python_float(info->training_finished_at ? info->training_finished_at
                                                         : info->training_started_at,
                              stamp, sizeof stamp);
        put_owned(w, "modelspec.title", sdt_format("LoRA@%s", stamp));
    }
    long long width, height;
    sdt_lora_cfg_resolution(w->cfg, &width, &height);
    put_owned(w, "modelspec.resolution", sdt_format("%lldx%lld", width, height));
    put(w, "modelspec.prediction_type", v_pred ? "v" : "epsilon");
    if (info->datetime_iso)
        put(w, "modelspec.date", info->datetime_iso);
    if (sdt_lora_cfg_is_set(w->cfg, "min_timestep") || sdt_lora_cfg_is_set(w->cfg, "max_timestep")) {
        char *lo = sdt_lora_cfg_python(w->cfg, "min_timestep"),
             *hi = sdt_lora_cfg_python(w->cfg, "max_timestep");
        put_owned(w, "modelspec.timestep_range", lo && hi ? sdt_format("%s,%s", lo, hi) : NULL);
        free(lo);
        free(hi);
    }
    if (sdt_lora_cfg_is_set(w->cfg, "clip_skip"))
        put_owned(w, "modelspec.encoder_layer", sdt_lora_cfg_python(w->cfg, "clip_skip"));
    put(w, "modelspec.implementation_version", "sdtune/" SDTUNE_VERSION);
    static const char *const optional[][2] = {
        {"modelspec.author", "metadata_author"},
        {"modelspec.description", "metadata_description"},
        {"modelspec.license", "metadata_license"},
        {"modelspec.tags", "metadata_tags"},
        {"modelspec.usage_hint", "metadata_usage_hint"},
        {"modelspec.merged_from", "metadata_merged_from"},
        {"modelspec.trigger_phrase", "metadata_trigger_phrase"},
        {"modelspec.preprocessor", "metadata_preprocessor"},
    };
    for (size_t i = 0; i < sizeof optional / sizeof optional[0]; i++) {
        const char *value = sdt_config_str(w->cfg, optional[i][1]);
        if (*value)
            put(w, optional[i][0], value);
    }
    if (sdt_config_bool(w->cfg, "metadata_is_negative_embedding"))
        put(w, "modelspec.is_negative_embedding", "True");
}

static void training_keys(writer *w, const sdt_lora_run_info *info)
{
    if (info->session_id)
        put(w, "ss_session_id", info->session_id);
    put_float(w, "ss_training_started_at", info->training_started_at);
    if (info->training_finished_at)
        put_float(w, "ss_training_finished_at", info->training_finished_at);
    /* kohya's output_name defaults to None (the file is then named "last") */
    setting(w, "ss_output_name", "output_name", 1);
    setting(w, "ss_learning_rate", "learning_rate", 0);
    zero_is_none(w, "ss_text_encoder_lr", "text_encoder_lr");
    zero_is_none(w, "ss_unet_lr", "unet_lr");
    put_int(w, "ss_num_train_images", info->num_train_images);
    put_int(w, "ss_num_validation_images", 0);
    put_int(w, "ss_num_reg_images", info->num_reg_images);
    put_int(w, "ss_num_batches_per_epoch", info->num_batches_per_epoch);
    put_int(w, "ss_num_epochs", info->num_epochs);
    put_int(w, "ss_epoch", info->epoch);
    put_int(w, "ss_steps", info->steps);
    setting(w, "ss_gradient_checkpointing", "gradient_checkpointing", 0);
    setting(w, "ss_gradient_accumulation_steps", "gradient_accumulation_steps", 0);
    put_int(w, "ss_max_train_steps", info->max_train_steps);
    put_int(w, "ss_lr_warmup_steps", info->lr_warmup_steps);
    setting(w, "ss_lr_scheduler", "lr_scheduler", 0);
    zero_is_none(w, "ss_network_dropout", "network_dropout");
    if (info->mixed_precision)
        put(w, "ss_mixed_precision", info->mixed_precision);
    else
        setting(w, "ss_mixed_precision", "mixed_precision", 0);
    setting(w, "ss_full_fp16", "full_fp16", 0);
    setting(w, "ss_clip_skip", "clip_skip", 1);
    setting(w, "ss_max_token_length", "max_token_length", 1);
    setting(w, "ss_cache_latents", "cache_latents", 0);
    setting(w, "ss_seed", "seed", 0);
    put(w, "ss_lowram", "False");
    zero_is_none(w, "ss_noise_offset", "noise_offset");
    zero_is_none(w, "ss_multires_noise_iterations", "multires_noise_iterations");
    setting(w, "ss_multires_noise_discount", "multires_noise_discount", 0);
    zero_is_none(w, "ss_adaptive_noise_scale", "adaptive_noise_scale");
    setting(w, "ss_zero_terminal_snr", "zero_terminal_snr", 0);
    const char *comment = sdt_config_str(w->cfg, "training_comment");
    put(w, "ss_training_comment", *comment ? comment : "None");
    put(w, "ss_sd_scripts_commit_hash", "sdtune/" SDTUNE_VERSION);
    if (info->optimizer_text)
        put(w, "ss_optimizer", info->optimizer_text);
    else
        setting(w, "ss_optimizer", "optimizer_type", 0);
    setting(w, "ss_max_grad_norm", "max_grad_norm", 0);
    setting(w, "ss_caption_dropout_rate", "caption_dropout_rate", 0);
    setting(w, "ss_caption_dropout_every_n_epochs", "caption_dropout_every_n_epochs", 1);
    setting(w, "ss_caption_tag_dropout_rate", "caption_tag_dropout_rate", 0);
    setting(w, "ss_face_crop_aug_range", "face_crop_aug_range", 1);
    setting(w, "ss_prior_loss_weight", "prior_loss_weight", 0);
    zero_is_none(w, "ss_min_snr_gamma", "min_snr_gamma");
    zero_is_none(w, "ss_scale_weight_norms", "scale_weight_norms");
    zero_is_none(w, "ss_ip_noise_gamma", "ip_noise_gamma");
    setting(w, "ss_debiased_estimation", "debiased_estimation_loss", 0);
    setting(w, "ss_noise_offset_random_strength", "noise_offset_random_strength", 0);
    setting(w, "ss_ip_noise_gamma_random_strength", "ip_noise_gamma_random_strength", 0);
    setting(w, "ss_loss_type", "loss_type", 0);
    setting(w, "ss_huber_schedule", "huber_schedule", 0);
    setting(w, "ss_huber_scale", "huber_scale", 0);
    setting(w, "ss_huber_c", "huber_c", 0);
    setting(w, "ss_fp8_base", "fp8_base", 0);
    setting(w, "ss_fp8_base_unet", "fp8_base_unet", 0);
    setting(w, "ss_validation_seed", "validation_seed", 1);
    setting(w, "ss_validation_split", "validation_split", 0);
    zero_is_none(w, "ss_max_validation_steps", "max_validation_steps");
    zero_is_none(w, "ss_validate_every_n_epochs", "validate_every_n_epochs");
    zero_is_none(w, "ss_validate_every_n_steps", "validate_every_n_steps");
    setting(w, "ss_resize_interpolation", "resize_interpolation", 1);
    const char *model = sdt_config_str(w->cfg, "pretrained_model_name_or_path");
    /* kohya hashes the model only when the path exists (model_hash, calculate_sha256) */
    if (info->sd_model_hash)
        put(w, "ss_sd_model_hash", info->sd_model_hash);
    if (info->new_sd_model_hash)
        put(w, "ss_new_sd_model_hash", info->new_sd_model_hash);
    if (*model)
        put(w, "ss_sd_model_name", base_name(model));
    else if (info->base_model_name)
        put(w, "ss_sd_model_name", info->base_model_name);
    const char *vae = sdt_config_str(w->cfg, "vae");
    if (*vae)
        put(w, "ss_vae_name", base_name(vae));
}

/* The dataset keys of the form without dataset_config. */
static void dataset_keys(writer *w, const sdt_lora_run_info *info)
{
    long long batch = 0, accumulation = 0, width, height;
    char *text = sdt_lora_cfg_python(w->cfg, "train_batch_size");
    batch = text ? atoll(text) : 0;
    free(text);
    text = sdt_lora_cfg_python(w->cfg, "gradient_accumulation_steps");
    accumulation = text ? atoll(text) : 0;
    free(text);
    put_int(w, "ss_batch_size_per_device", batch);
    put_int(w, "ss_total_batch_size", batch * accumulation);
    sdt_lora_cfg_resolution(w->cfg, &width, &height);
    put_owned(w, "ss_resolution", sdt_format("(%lld, %lld)", width, height));
    setting(w, "ss_color_aug", "color_aug", 0);
    setting(w, "ss_flip_aug", "flip_aug", 0);
    setting(w, "ss_random_crop", "random_crop", 0);
    setting(w, "ss_shuffle_caption", "shuffle_caption", 0);
    setting(w, "ss_enable_bucket", "enable_bucket", 0);
    setting(w, "ss_bucket_no_upscale", "bucket_no_upscale", 0);
    setting(w, "ss_min_bucket_reso", "min_bucket_reso", 0);
    setting(w, "ss_max_bucket_reso", "max_bucket_reso", 0);
    setting(w, "ss_keep_tokens", "keep_tokens", 0);
    put(w, "ss_dataset_dirs", info->dataset_dirs_json ? info->dataset_dirs_json : "{}");
    put(w, "ss_reg_dataset_dirs", info->reg_dataset_dirs_json ? info->reg_dataset_dirs_json : "{}");
    put(w, "ss_tag_frequency", info->tag_frequency_json ? info->tag_frequency_json : "{}");
    /* json.dumps(None) when bucketing is off: kohya's dataset leaves bucket_info None then */
    put(w, "ss_bucket_info", info->bucket_info_json ? info->bucket_info_json : "null");
}

int sdt_lora_metadata(const struct sdt_config *cfg, const sdt_lora_network *net,
                      const sdt_lora_run_info *info, sdt_kv_list *out, char **error)
{
    (void)net;
    static const sdt_lora_run_info empty;
    writer w = {cfg, out, 0};
    if (!info)
        info = &empty;
    network_keys(&w);
    if (!sdt_config_bool(cfg, "no_metadata")) {
        training_keys(&w, info);
        dataset_keys(&w, info);
    }
    modelspec(&w, info);
    if (w.failed)
        return sdt_set_error(error, "LoRA metadata: out of memory");
    return 0;
}
