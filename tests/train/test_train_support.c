/* sdt_train_check_supported: planned settings given a value are refused with file:line and key; values the
 * engine cannot honour are refused; defaults and implemented values pass. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sdtune/config.h"
#include "sdtune/schema.h"
#include "train_support.h"
#include "unit/check.h"

/* Loads text as "run.toml" and runs the check; returns its status, diags filled. */
static int check_text(const char *text, sdt_diag_list *diags)
{
    sdt_diag_list load;
    sdt_diag_list_init(&load);
    sdt_config *cfg = sdt_config_load_text(text, strlen(text), "run.toml", &load);
    if (!cfg || sdt_diag_count(&load, SDT_SEV_ERROR) != 0) {
        sdt_diag_list_print(&load, stderr);
        sdt_diag_list_free(&load);
        sdt_config_free(cfg);
        return -2;
    }
    sdt_diag_list_free(&load);
    int status = sdt_train_check_supported(cfg, diags);
    sdt_config_free(cfg);
    return status;
}

/* The diagnostic about `key`, or NULL. */
static const sdt_diag *find_diag(const sdt_diag_list *diags, const char *key)
{
    int setting = sdt_schema_find(key);
    for (size_t i = 0; i < diags->count; i++)
        if (diags->items[i].setting == setting)
            return &diags->items[i];
    return NULL;
}

/* A planned bool setting whose default is false: setting it true must be refused. Found in the table, so the
 * test follows the schema as settings become implemented. */
static const sdt_setting *planned_bool(void)
{
    const sdt_setting *settings = sdt_schema_settings();
    for (size_t k = 0; k < sdt_schema_count(); k++)
        if (settings[k].impl == SDT_IMPL_PLANNED && settings[k].type == SDT_T_BOOL &&
            strcmp(settings[k].default_text, "false") == 0 && !settings[k].dynamic_defaults)
            return &settings[k];
    return NULL;
}

static void test_defaults_pass(test_state *t)
{
    sdt_config *cfg = sdt_config_new();
    sdt_diag_list diags;
    sdt_diag_list_init(&diags);
    CHECK(t, sdt_train_check_supported(cfg, &diags) == 0);
    CHECK_MSG(t, diags.count == 0, "%zu diagnostics, first: %s", diags.count,
              diags.count ? diags.items[0].message : "");
    sdt_diag_list_free(&diags);
    sdt_config_free(cfg);

    /* The template (config.toml) is trainable as it stands. */
    cfg = sdt_config_new_template();
    sdt_diag_list_init(&diags);
    CHECK(t, sdt_train_check_supported(cfg, &diags) == 0);
    sdt_diag_list_free(&diags);
    sdt_config_free(cfg);
}

static void test_planned_setting_refused(test_state *t)
{
    const sdt_setting *s = planned_bool();
    CHECK(t, s != NULL);
    if (!s)
        return;
    char text[256];
    snprintf(text, sizeof text, "# a comment\n[%s]\n%s = true\n", sdt_section_name(s->section), s->key);
    sdt_diag_list diags;
    sdt_diag_list_init(&diags);
    CHECK(t, check_text(text, &diags) == -1);
    CHECK(t, diags.count == 1);
    const sdt_diag *d = find_diag(&diags, s->key);
    CHECK(t, d != NULL);
    if (d) {
        char want[160];
        snprintf(want, sizeof want, "%s.%s = true: not implemented yet", sdt_section_name(s->section),
                 s->key);
        CHECK_MSG(t, strcmp(d->message, want) == 0, "got \"%s\", want \"%s\"", d->message, want);
        CHECK(t, d->severity == SDT_SEV_ERROR);
        CHECK(t, strcmp(d->file, "run.toml") == 0);
        CHECK(t, d->line == 3);
        CHECK_MSG(t, d->col == (int)strlen(s->key) + 4, "col %d", d->col); /* where the value starts */
    }
    sdt_diag_list_free(&diags);

    /* Written out but equal to the default: nothing to refuse. */
    snprintf(text, sizeof text, "[%s]\n%s = false\n", sdt_section_name(s->section), s->key);
    sdt_diag_list_init(&diags);
    CHECK(t, check_text(text, &diags) == 0);
    CHECK(t, diags.count == 0);
    sdt_diag_list_free(&diags);
}

/* One refused value: exactly one error, about `key`, on line 2, naming the value. */
static void expect_refused(test_state *t, const char *section, const char *key, const char *value_toml)
{
    char text[256];
    snprintf(text, sizeof text, "[%s]\n%s = %s\n", section, key, value_toml);
    sdt_diag_list diags;
    sdt_diag_list_init(&diags);
    CHECK_MSG(t, check_text(text, &diags) == -1, "%s = %s was accepted", key, value_toml);
    const sdt_diag *d = find_diag(&diags, key);
    CHECK_MSG(t, d != NULL, "no error about %s", key);
    if (d) {
        char prefix[160];
        snprintf(prefix, sizeof prefix, "%s.%s = %s: ", section, key, value_toml);
        CHECK_MSG(t, strncmp(d->message, prefix, strlen(prefix)) == 0, "\"%s\" does not start with \"%s\"",
                  d->message, prefix);
        CHECK(t, d->line == 2 && strcmp(d->file, "run.toml") == 0);
    }
    sdt_diag_list_free(&diags);
}

/* An accepted value, when the setting is implemented (a planned one is refused whatever its value). */
static void expect_accepted_if_done(test_state *t, const char *section, const char *key,
                                    const char *value_toml)
{
    if (sdt_schema_settings()[sdt_schema_find(key)].impl != SDT_IMPL_DONE)
        return;
    char text[256];
    snprintf(text, sizeof text, "[%s]\n%s = %s\n", section, key, value_toml);
    sdt_diag_list diags;
    sdt_diag_list_init(&diags);
    CHECK_MSG(t, check_text(text, &diags) == 0, "%s = %s refused: %s", key, value_toml,
              diags.count ? diags.items[0].message : "");
    sdt_diag_list_free(&diags);
}

static void test_value_refusals(test_state *t)
{
    expect_refused(t, "optimizer", "optimizer_type", "\"PagedAdamW8bit\"");
    expect_refused(t, "optimizer", "optimizer_type", "\"DAdaptAdam\"");
    expect_refused(t, "lr_scheduler", "lr_scheduler", "\"inverse_sqrt\"");
    expect_refused(t, "optimizer", "optimizer_args", "[\"amsgrad=True\"]");
    expect_refused(t, "sampling", "sample_sampler", "\"pndm\"");
    expect_refused(t, "saving", "save_model_as", "\"ckpt\"");
    expect_refused(t, "model", "model_family", "\"sdxl\"");
    expect_refused(t, "model", "model_family", "\"sd2\"");
#ifdef SDTUNE_HAVE_CUDA
    /* Accepted by the check; a machine without a GPU refuses it when the engine starts (cli.train). */
    expect_accepted_if_done(t, "hardware", "backend", "\"cuda\"");
#else
    expect_refused(t, "hardware", "backend", "\"cuda\"");
#endif
    expect_accepted_if_done(t, "precision_memory", "mixed_precision", "\"bf16\"");
    expect_accepted_if_done(t, "precision_memory", "mixed_precision", "\"fp16\"");
    expect_accepted_if_done(t, "model", "no_half_vae", "true");
    expect_accepted_if_done(t, "hardware", "deterministic", "true");
    expect_accepted_if_done(t, "hardware", "attention", "\"flash\"");
    expect_refused(t, "hardware", "attention", "\"math\"");
    expect_accepted_if_done(t, "hardware", "gpu_index", "1");
    expect_accepted_if_done(t, "precision_memory", "vram_limit_gb", "2.5");
    expect_accepted_if_done(t, "optimizer", "optimizer_type", "\"Lion\"");
    expect_accepted_if_done(t, "optimizer", "optimizer_type", "\"SGDNesterov\"");
    expect_accepted_if_done(t, "lr_scheduler", "lr_scheduler", "\"cosine\"");
    expect_accepted_if_done(t, "sampling", "sample_sampler", "\"ddim\"");
    expect_accepted_if_done(t, "precision_memory", "mixed_precision", "\"no\"");
    expect_accepted_if_done(t, "model", "training_type", "\"dreambooth\"");
    expect_accepted_if_done(t, "hardware", "backend", "\"cpu\"");
}

/* Mixed precision: every training type trains in bf16 or fp16 (on the CPU backend too): a LoRA with its
 * network in fp32, DreamBooth and fine-tuning with fp32 masters of the trained weights, or with
 * full_bf16 / full_fp16 the weights themselves in half precision; what does not go together is refused
 * at the setting's line, with the reason. */
static void test_mixed_precision(test_state *t)
{
    static const char *const accepted[] = {
        "[precision_memory]\nmixed_precision = \"bf16\"\n[hardware]\nbackend = \"cpu\"\n",
        "[precision_memory]\nmixed_precision = \"fp16\"\n",
        "[model]\ntraining_type = \"dreambooth\"\n[precision_memory]\nmixed_precision = \"auto\"\n",
        "[model]\ntraining_type = \"finetune\"\n[precision_memory]\nmixed_precision = \"no\"\n",
        "[model]\ntraining_type = \"dreambooth\"\n[precision_memory]\nmixed_precision = \"bf16\"\n",
        "[model]\ntraining_type = \"finetune\"\n[precision_memory]\nmixed_precision = \"fp16\"\n",
        "[model]\ntraining_type = \"dreambooth\"\ntrain_text_encoder = true\n[precision_memory]\n"
        "mixed_precision = \"fp16\"\n",
        "[model]\ntraining_type = \"dreambooth\"\n[precision_memory]\nmixed_precision = \"bf16\"\n"
        "full_bf16 = true\n",
        "[model]\ntraining_type = \"finetune\"\n[precision_memory]\nmixed_precision = \"fp16\"\nfull_fp16 = "
        "true\n"
        "[optimizer]\noptimizer_type = \"Lion\"\n",
        "[model]\ntraining_type = \"dreambooth\"\n[precision_memory]\nmixed_precision = \"bf16\"\n"
        "full_bf16 = true\n[optimizer]\noptimizer_type = \"SGDNesterov\"\n",
    };
    for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++) {
        sdt_diag_list diags;
        sdt_diag_list_init(&diags);
        CHECK_MSG(t, check_text(accepted[i], &diags) == 0, "%s: %s", accepted[i],
                  diags.count ? diags.items[0].message : "");
        sdt_diag_list_free(&diags);
    }
    /* refused: the text, the setting named, its line, a part of the reason */
    static const struct {
        const char *text, *key;
        int line;
        const char *why;
    } refused[] = {
        {"[precision_memory]\nmixed_precision = \"bf16\"\nfull_bf16 = true\n", "full_bf16", 3,
         "not implemented yet for LoRA"},
        {"[model]\ntraining_type = \"dreambooth\"\n[precision_memory]\nmixed_precision = \"fp16\"\n"
         "full_bf16 = true\n",
         "full_bf16", 5, "needs mixed_precision = \"bf16\" (it is \"fp16\")"},
        {"[model]\ntraining_type = \"finetune\"\n[precision_memory]\nmixed_precision = \"auto\"\n"
         "full_fp16 = true\n",
         "full_fp16", 5, "needs mixed_precision = \"fp16\" (it is \"auto\")"},
        {"[model]\ntraining_type = \"dreambooth\"\n[precision_memory]\nmixed_precision = \"bf16\"\n"
         "full_bf16 = true\nfull_fp16 = true\n",
         "full_bf16", 5, "both set"},
        {"[model]\ntraining_type = \"dreambooth\"\n[precision_memory]\nmixed_precision = \"bf16\"\n"
         "full_bf16 = true\n[optimizer]\noptimizer_type = \"Adafactor\"\n",
         "full_bf16", 5, "AdamW, Lion or SGD"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        sdt_diag_list diags;
        sdt_diag_list_init(&diags);
        CHECK_MSG(t, check_text(refused[i].text, &diags) == -1, "%s was accepted", refused[i].text);
        const sdt_diag *d = find_diag(&diags, refused[i].key);
        CHECK_MSG(t, d != NULL && d->line == refused[i].line, "%s: %s not refused at line %d",
                  refused[i].text, refused[i].key, refused[i].line);
        if (d)
            CHECK_STR_CONTAINS(t, d->message, refused[i].why);
        CHECK(t, find_diag(&diags, "mixed_precision") == NULL);
        sdt_diag_list_free(&diags);
    }
    /* fp8 storage of the frozen weights goes with mixed precision for LoRA */
    sdt_diag_list diags;
    sdt_diag_list_init(&diags);
    CHECK(t, check_text("[precision_memory]\nmixed_precision = \"bf16\"\nfp8_base = true\n", &diags) == 0);
    sdt_diag_list_free(&diags);
}

/* Metadata goes into LoRA files only: set for a full fine-tune it is refused, for a LoRA it is fine. */
static void test_metadata_needs_lora(test_state *t)
{
    sdt_diag_list diags;
    sdt_diag_list_init(&diags);
    CHECK(t, check_text("[model]\ntraining_type = \"dreambooth\"\n[metadata]\nmetadata_title = \"x\"\n",
                        &diags) == -1);
    const sdt_diag *d = find_diag(&diags, "metadata_title");
    CHECK(t, d != NULL && d->line == 4);
    if (d)
        CHECK_STR_CONTAINS(t, d->message,
                           "metadata.metadata_title = \"x\": not implemented yet for full checkpoints");
    sdt_diag_list_free(&diags);
    sdt_diag_list_init(&diags);
    CHECK(t, check_text("[metadata]\nmetadata_title = \"x\"\n[saving]\ntraining_comment = \"y\"\n", &diags) ==
                 0);
    sdt_diag_list_free(&diags);
}

/* A planned setting and a refused value in one config: every problem is reported, one error per key. */
static void test_every_problem_reported(test_state *t)
{
    const sdt_setting *s = planned_bool();
    if (!s)
        return;
    char text[320];
    snprintf(text, sizeof text,
             "[%s]\n%s = true\n[saving]\nsave_model_as = "
             "\"ckpt\"\n[lr_scheduler]\nlr_scheduler = \"inverse_sqrt\"\n",
             sdt_section_name(s->section), s->key);
    sdt_diag_list diags;
    sdt_diag_list_init(&diags);
    CHECK(t, check_text(text, &diags) == -1);
    CHECK_MSG(t, diags.count == 3, "%zu diagnostics", diags.count);
    CHECK(t, find_diag(&diags, s->key) && find_diag(&diags, "save_model_as") &&
                 find_diag(&diags, "lr_scheduler"));
    sdt_diag_list_free(&diags);
}

TEST_MAIN("train_support", TEST(test_defaults_pass), TEST(test_planned_setting_refused),
          TEST(test_value_refusals), TEST(test_every_problem_reported), TEST(test_mixed_precision),
          TEST(test_metadata_needs_lora))
