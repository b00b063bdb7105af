/* kohya's LoRA metadata value by value (train_network.py, the form without dataset_config): a config and a
 * run info into sdt_lora_metadata, and kohya's optimizer text. The dataset keys and a real run are in
 * test_lora_metadata_run.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lora.h"
#include "sdtune/diag.h"
#include "unit/check.h"

#include "optim_settings.h"
#include "sdtune/config.h"

static sdt_config *load_config(test_state *t, const char *text)
{
    sdt_diag_list diags;
    sdt_diag_list_init(&diags);
    sdt_config *cfg = sdt_config_load_text(text, strlen(text), "meta.toml", &diags);
    int errors = (int)sdt_diag_count(&diags, SDT_SEV_ERROR);
    if (errors)
        sdt_diag_list_print(&diags, stderr);
    CHECK_MSG(t, cfg && errors == 0, "config does not load");
    sdt_diag_list_free(&diags);
    return cfg;
}

static void expect(test_state *t, const sdt_kv_list *l, const char *key, const char *value)
{
    const char *v = sdt_kv_get(l, key);
    CHECK_MSG(t, v && strcmp(v, value) == 0, "%s = \"%s\", expected \"%s\"", key, v ? v : "(absent)", value);
}

static const char base_config[] = "[folders]\noutput_name = \"cat\"\n"
                                  "[model]\npretrained_model_name_or_path = \"/m/v1-5.safetensors\"\n"
                                  "[optimizer]\nlearning_rate = 0.0001\n";

/* Values from the run info and the config, and what the config leaves unset. */
static void values_from_run_info(test_state *t)
{
    sdt_config *cfg = load_config(t, base_config);
    if (!cfg)
        return;
    sdt_lora_run_info info = {.session_id = "s",
                              .training_started_at = 1700000000.25,
                              .training_finished_at = 1700000123.5,
                              .epoch = 0,
                              .steps = 2,
                              .optimizer_text = "torch.optim.adamw.AdamW",
                              .mixed_precision = "no",
                              .sd_model_hash = "e3b0c442",
                              .datetime_iso = "2023-11-14T22:13:20"};
    sdt_kv_list l = {0};
    char *error = NULL;
    CHECK(t, sdt_lora_metadata(cfg, NULL, &info, &l, &error) == 0);
    expect(t, &l, "ss_training_started_at", "1700000000.25");
    expect(t, &l, "ss_training_finished_at", "1700000123.5");
    expect(t, &l, "ss_epoch", "0");
    expect(t, &l, "ss_steps", "2");
    /* unet_lr / text_encoder_lr default to 0 here, None in kohya */
    expect(t, &l, "ss_unet_lr", "None");
    expect(t, &l, "ss_text_encoder_lr", "None");
    expect(t, &l, "ss_learning_rate", "0.0001");
    /* the config says auto; the run computed in fp32 */
    expect(t, &l, "ss_mixed_precision", "no");
    expect(t, &l, "ss_optimizer", "torch.optim.adamw.AdamW");
    expect(t, &l, "ss_sd_model_hash", "e3b0c442");
    CHECK(t, sdt_kv_get(&l, "ss_new_sd_model_hash") == NULL);
    expect(t, &l, "ss_sd_model_name", "v1-5.safetensors");
    expect(t, &l, "ss_training_comment", "None");
    /* no bucket info: json.dumps(None) */
    expect(t, &l, "ss_bucket_info", "null");
    expect(t, &l, "ss_tag_frequency", "{}");
    expect(t, &l, "ss_reg_dataset_dirs", "{}");
    expect(t, &l, "modelspec.title", "cat");
    expect(t, &l, "modelspec.resolution", "512x512");
    expect(t, &l, "modelspec.date", "2023-11-14T22:13:20");
    sdt_kv_list_free(&l);
    sdt_config_free(cfg);

    /* set learning rates and a comment; no output_name: the title is "LoRA@" and the save's time */
    cfg = load_config(t, "[optimizer]\nlearning_rate = 0.0001\nunet_lr = 0.0003\ntext_encoder_lr = 5e-5\n"
                         "[saving]\ntraining_comment = \"first try\"\n"
                         "[dataset]\nresolution = [768, 512]\n");
    if (!cfg)
        return;
    info.mixed_precision = NULL;
    info.sd_model_hash = info.new_sd_model_hash = "IsADirectory";
    CHECK(t, sdt_lora_metadata(cfg, NULL, &info, &l, &error) == 0);
    expect(t, &l, "ss_unet_lr", "0.0003");
    expect(t, &l, "ss_text_encoder_lr", "5e-05");
    expect(t, &l, "ss_training_comment", "first try");
    expect(t, &l, "ss_mixed_precision", "auto"); /* without run info: the config's value */
    expect(t, &l, "ss_new_sd_model_hash", "IsADirectory");
    expect(t, &l, "modelspec.title", "LoRA@1700000123.5");
    expect(t, &l, "modelspec.resolution", "768x512");
    expect(t, &l, "ss_resolution", "(768, 512)");
    sdt_kv_list_free(&l);
    sdt_config_free(cfg);

    /* written out at their "off" value (as a full config file does): kohya's None */
    cfg = load_config(t, "[noise_loss]\nmin_snr_gamma = 0\nnoise_offset = 0.0\n"
                         "[dataset]\nface_crop_aug_range = []\nvalidate_every_n_steps = 0\n"
                         "[optimizer]\nunet_lr = 0.0\n");
    if (!cfg)
        return;
    CHECK(t, sdt_lora_metadata(cfg, NULL, &info, &l, &error) == 0);
    expect(t, &l, "ss_min_snr_gamma", "None");
    expect(t, &l, "ss_noise_offset", "None");
    expect(t, &l, "ss_face_crop_aug_range", "None");
    expect(t, &l, "ss_validate_every_n_steps", "None");
    expect(t, &l, "ss_unet_lr", "None");
    sdt_kv_list_free(&l);
    sdt_config_free(cfg);
    cfg = load_config(t, "[noise_loss]\nmin_snr_gamma = 5\n[dataset]\nface_crop_aug_range = [2.0, 4.0]\n");
    if (!cfg)
        return;
    CHECK(t, sdt_lora_metadata(cfg, NULL, &info, &l, &error) == 0);
    expect(t, &l, "ss_min_snr_gamma", "5.0");
    expect(t, &l, "ss_face_crop_aug_range", "2.0,4.0");
    sdt_kv_list_free(&l);
    sdt_config_free(cfg);
    free(error);
}

/* ss_optimizer: kohya's "<module>.<Class>(<args>)" with every value as Python's str() of its literal. */
static void optimizer_text(test_state *t)
{
    static const struct {
        const char *config, *expected;
    } cases[] = {
        {"[optimizer]\noptimizer_args = [\"weight_decay=0.01\", \"betas=0.9,0.999\", \"eps = 1e-8\"]\n",
         "torch.optim.adamw.AdamW(weight_decay=0.01,betas=(0.9, 0.999),eps=1e-08)"},
        {"[optimizer]\nlearning_rate = 0.0001\n", "torch.optim.adamw.AdamW"},
        /* SGDNesterov: kohya adds momentum=0.9 unless given */
        {"[optimizer]\noptimizer_type = \"SGDNesterov\"\n", "torch.optim.sgd.SGD(momentum=0.9)"},
        {"[optimizer]\noptimizer_type = \"SGDNesterov\"\noptimizer_args = [\"momentum=0.5\"]\n",
         "torch.optim.sgd.SGD(momentum=0.5)"},
        {"[optimizer]\noptimizer_type = \"Lion\"\n", "lion_pytorch.lion_pytorch.Lion"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sdt_config *cfg = load_config(t, cases[i].config);
        char *s = cfg ? sdt_optim_settings_text(cfg) : NULL;
        CHECK_MSG(t, s && strcmp(s, cases[i].expected) == 0, "case %zu: %s", i, s ? s : "(null)");
        free(s);
        sdt_config_free(cfg);
    }
}

TEST_MAIN("lora_metadata", TEST(values_from_run_info), TEST(optimizer_text))
