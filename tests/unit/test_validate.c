/* Cross-field rules: each fires on the config that breaks it, at the line of the setting to change, and the
 * default config is clean. */
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "diag_text.h"
#include "sdtune/config.h"

typedef struct rule_case {
    const char *name;
    const char *toml;
    const char *expect; /* printed as it must appear, with file:line:col and severity */
} rule_case;

static const rule_case cases[] = {
    {"sdxl-only setting on sd1", "[training]\nfused_backward_pass = true\n",
     "c.toml:2:23: error: fused_backward_pass has no effect: it applies only when model_family = sdxl"},
    {"irrelevant setting", "[model]\ntraining_type = \"dreambooth\"\n[network]\nnetwork_dim = 8\n",
     "c.toml:4:15: warning: network_dim has no effect: it applies only when training_type = lora"},
    {"cache_latents with random_crop", "[dataset]\nrandom_crop = true\n",
     "c.toml:2:15: error: random_crop changes every epoch, so its latents cannot be cached"},
    {"cache_latents with color_aug", "[dataset]\ncache_latents = true\ncolor_aug = true\n",
     "c.toml:3:13: error: color_aug changes the pixels every epoch"},
    {"bucket steps for sd1", "[dataset]\nbucket_reso_steps = 32\n",
     "c.toml:2:21: error: bucket_reso_steps = 32 must be a multiple of 64 for model_family = sd1"},
    {"bucket steps for sdxl", "[model]\nmodel_family = \"sdxl\"\n[dataset]\nbucket_reso_steps = 48\n",
     "c.toml:4:21: error: bucket_reso_steps = 48 must be a multiple of 32 for model_family = sdxl"},
    {"alpha above dim", "[network]\nnetwork_dim = 8\nnetwork_alpha = 16\n",
     "c.toml:3:17: warning: network_alpha = 16 is larger than network_dim = 8"},
    {"max_token_length", "[model]\nmax_token_length = 100\n",
     "c.toml:2:20: error: max_token_length = 100 is not allowed: must be 75, 150 or 225"},
    {"clip_skip below 1", "[model]\nclip_skip = 0\n", "c.toml:2:13: error: clip_skip = 0 is not allowed"},
    {"save on both schedules", "[saving]\nsave_every_n_epochs = 1\nsave_every_n_steps = 100\n",
     "c.toml:3:22: warning: both save_every_n_epochs and save_every_n_steps are set"},
    {"resume missing", "[saving]\nresume = \"/nonexistent/sdtune/state\"\n",
     "c.toml:2:10: error: resume = \"/nonexistent/sdtune/state\" does not exist"},
    {"output_dir not creatable", "[folders]\noutput_dir = \"/dev/null/out\"\n",
     "c.toml:2:14: error: output_dir = \"/dev/null/out\" cannot be created: /dev/null is not a folder"},
    {"min bucket above max", "[dataset]\nmin_bucket_reso = 1024\nmax_bucket_reso = 512\n",
     "c.toml:2:19: error: min_bucket_reso = 1024 is larger than max_bucket_reso = 512"},
    {"fp8 with full training",
     "[model]\ntraining_type = \"dreambooth\"\n[precision_memory]\nfp8_base = true\n",
     "c.toml:4:12: error: fp8_base stores the frozen weights in fp8; training_type = dreambooth trains them"},
    {"bf16 on a turing gpu", "[precision_memory]\nmixed_precision = \"bf16\"\n",
     "c.toml:2:19: error: mixed_precision = bf16 needs an Ampere or newer GPU"},
    {"full_fp16 needs fp16", "[precision_memory]\nfull_fp16 = true\nmixed_precision = \"bf16\"\n",
     "c.toml:2:13: error: full_fp16 needs mixed_precision = fp16 (it is bf16)"},
    {"adaptive noise needs offset", "[noise_loss]\nadaptive_noise_scale = 0.01\n",
     "c.toml:2:24: error: adaptive_noise_scale needs noise_offset > 0"},
    {"v-pred scaling needs v", "[noise_loss]\nscale_v_pred_loss_like_noise_pred = true\n",
     "c.toml:2:37: error: scale_v_pred_loss_like_noise_pred needs v_parameterization = true"},
    {"v_pred_like_loss with v",
     "[model]\nv_parameterization = true\nmodel_family = \"sd2\"\n[noise_loss]\n"
     "v_pred_like_loss = 0.1\n",
     "c.toml:5:20: error: v_pred_like_loss adds a v-prediction-like term"},
    {"zero terminal snr without v", "[noise_loss]\nzero_terminal_snr = true\n",
     "c.toml:2:21: warning: zero_terminal_snr without v_parameterization"},
    {"te cache with trained te",
     "[model]\nmodel_family = \"sdxl\"\n[training]\ncache_text_encoder_outputs = true\n",
     "c.toml:4:30: error: cache_text_encoder_outputs needs a frozen text encoder: set "
     "network_train_unet_only"},
    {"te cache with shuffled captions",
     "[model]\nmodel_family = \"sdxl\"\n[network]\nnetwork_train_unet_only = true\n[training]\n"
     "cache_text_encoder_outputs = true\n[dataset]\nshuffle_caption = true\n",
     "c.toml:8:19: error: shuffle_caption cannot be used with cache_text_encoder_outputs"},
    {"nothing to train",
     "[network]\nnetwork_train_unet_only = true\nnetwork_train_text_encoder_only = true\n",
     "c.toml:3:35: error: network_train_unet_only and network_train_text_encoder_only together"},
    {"timestep range", "[noise_loss]\nmin_timestep = 500\nmax_timestep = 400\n",
     "c.toml:2:16: error: min_timestep = 500 must be below max_timestep = 400"},
    {"fractional warmup steps", "[lr_scheduler]\nlr_warmup_steps = 10.5\n",
     "c.toml:2:19: error: lr_warmup_steps = 10.5: a value of 1 or more is a number of steps and must be "
     "whole"},
    {"fused backward needs adafactor",
     "[model]\nmodel_family = \"sdxl\"\ntraining_type = \"finetune\"\n[training]\nfused_backward_pass = "
     "true\n",
     "c.toml:5:23: error: fused_backward_pass works only with optimizer_type = Adafactor"},
    {"epochs override steps", "[training]\nmax_train_steps = 100\nmax_train_epochs = 10\n",
     "c.toml:2:19: warning: max_train_epochs = 10 decides the length of the run"},
    {"dataset_config ignores folders", "[folders]\ntrain_data_dir = \"/\"\ndataset_config = \"/dev/null\"\n",
     "c.toml:2:18: warning: train_data_dir is ignored when dataset_config is given"},
    {"resolution off the vae grid", "[dataset]\nresolution = [516]\n",
     "c.toml:2:14: error: resolution 516 is not a multiple of 8"},
    {"block dims count", "[network]\nblock_dims = [4, 4, 4]\n",
     "c.toml:2:14: error: block_dims has 3 values; model_family = sd1 needs 25"},
    {"samples without prompts", "[sampling]\nsample_every_n_steps = 100\n",
     "c.toml:2:24: warning: sample images are requested but sample_prompts is empty"},
    {"sdxl fp16 vae",
     "[model]\nmodel_family = \"sdxl\"\nno_half_vae = false\n[precision_memory]\n"
     "mixed_precision = \"fp16\"\n",
     "c.toml:3:15: warning: the SDXL VAE overflows in fp16"},
    {"offload needs checkpointing", "[precision_memory]\ncpu_offload_checkpointing = true\n",
     "c.toml:2:29: error: cpu_offload_checkpointing needs gradient_checkpointing = true"},
};

static char *run(const char *toml, const sdt_validate_options *options, size_t *errors, size_t *warnings)
{
    sdt_diag_list diags;
    sdt_diag_list_init(&diags);
    sdt_config *cfg = sdt_config_load_text(toml, strlen(toml), "c.toml", &diags);
    if (cfg)
        sdt_config_validate(cfg, options, &diags);
    char *text = diag_text(&diags);
    *errors = sdt_diag_count(&diags, SDT_SEV_ERROR);
    *warnings = sdt_diag_count(&diags, SDT_SEV_WARNING);
    sdt_diag_list_free(&diags);
    sdt_config_free(cfg);
    return text;
}

static void each_rule_fires(test_state *t)
{
    sdt_device_info turing = {.known = true, .is_gpu = true, .cc_major = 7, .cc_minor = 5, .name = "T4"};
    sdt_validate_options options = {.check_filesystem = true, .device = &turing};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t errors, warnings;
        char *text = run(cases[i].toml, &options, &errors, &warnings);
        CHECK_MSG(t, text && strstr(text, cases[i].expect), "rule '%s': expected\n  %s\ngot\n%s",
                  cases[i].name, cases[i].expect, text ? text : "(null)");
        free(text);
    }
}

static void defaults_are_clean(test_state *t)
{
    sdt_device_info hopper = {.known = true, .is_gpu = true, .cc_major = 9, .cc_minor = 0, .name = "H200"};
    sdt_validate_options options = {.check_filesystem = true, .device = &hopper};
    const char *families[] = {"sd1", "sd2", "sdxl"};
    const char *types[] = {"lora", "dreambooth", "finetune"};
    for (int f = 0; f < 3; f++) {
        for (int k = 0; k < 3; k++) {
            char toml[200];
            snprintf(toml, sizeof toml, "[model]\nmodel_family = \"%s\"\ntraining_type = \"%s\"\n",
                     families[f], types[k]);
            size_t errors, warnings;
            char *text = run(toml, &options, &errors, &warnings);
            CHECK_MSG(t, errors == 0 && warnings == 0, "%s/%s:\n%s", families[f], types[k], text);
            free(text);
        }
    }
}

static void device_rules_wait_for_a_device(test_state *t)
{
    /* Without a known device, bf16 is not judged; on a Hopper GPU it is fine. fp8_base is fine on any
     * device (the backends dequantise the weights before use), in any precision. */
    const char *toml = "[precision_memory]\nmixed_precision = \"bf16\"\nfp8_base = true\n";
    size_t errors, warnings;
    sdt_validate_options unknown = {0};
    char *text = run(toml, &unknown, &errors, &warnings);
    CHECK_MSG(t, errors == 0, "%s", text);
    free(text);
    sdt_device_info hopper = {.known = true, .is_gpu = true, .cc_major = 9, .cc_minor = 0, .name = "H200"};
    sdt_validate_options on_hopper = {.device = &hopper};
    text = run(toml, &on_hopper, &errors, &warnings);
    CHECK_MSG(t, errors == 0, "%s", text);
    free(text);
    sdt_device_info cpu = {.known = true, .is_gpu = false, .name = "CPU (2 cores)"};
    sdt_validate_options on_cpu = {.device = &cpu};
    text = run("[precision_memory]\nmixed_precision = \"no\"\nfp8_base_unet = true\n", &on_cpu, &errors,
               &warnings);
    CHECK_MSG(t, errors == 0, "%s", text);
    free(text);
    sdt_device_info turing = {.known = true, .is_gpu = true, .cc_major = 7, .cc_minor = 5, .name = "T4"};
    sdt_validate_options on_turing = {.device = &turing};
    text = run("[precision_memory]\nmixed_precision = \"fp16\"\nfp8_base = true\n", &on_turing, &errors,
               &warnings);
    CHECK_MSG(t, errors == 0, "%s", text);
    free(text);
}

static void preflight_requires_a_runnable_config(test_state *t)
{
    size_t errors, warnings;
    sdt_validate_options preflight = {.preflight = true};
    char *text = run("[model]\ntraining_type = \"finetune\"\n", &preflight, &errors, &warnings);
    CHECK_STR_CONTAINS(t, text, "error: pretrained_model_name_or_path is empty");
    CHECK_STR_CONTAINS(t, text,
                       "error: training_type = finetune needs in_json (caption metadata) or dataset_config");
    free(text);
    /* A setting the engine does not implement yet is refused, not ignored. */
    text = run("[network]\nloraplus_lr_ratio = 16\n", &preflight, &errors, &warnings);
    CHECK_STR_CONTAINS(t, text, "c.toml:2:21: error: loraplus_lr_ratio is not implemented by the engine yet");
    free(text);
    /* ...but only when given a value other than its default. */
    text = run("[network]\nloraplus_lr_ratio = 0\n", &preflight, &errors, &warnings);
    CHECK(t, text && !strstr(text, "not implemented"));
    free(text);
}

TEST_MAIN("validate", TEST(each_rule_fires), TEST(defaults_are_clean), TEST(device_rules_wait_for_a_device),
          TEST(preflight_requires_a_runnable_config))
