/* kohya's dataset keys of the LoRA metadata (ss_tag_frequency, ss_bucket_info as json.dumps writes them)
 * and the metadata of a real tiny run, intermediate and final saves (train_network.py's save_model). */
#include <ctype.h>

#include "buckets.h"
#include "dataset.h"
#include "run_metadata.h"
#include "sdtune/safetensors.h"
#include "sdtune/sha256.h"
#include "trainer_fixture.h"

static void json_strings(test_state *t)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"10_cat", "\"10_cat\""},
        {"say \"hi\"\\", "\"say \\\"hi\\\"\\\\\""},
        {"a\nb\tc\x01", "\"a\\nb\\tc\\u0001\""},
        {"caf\xc3\xa9", "\"caf\\u00e9\""},
        {"\xe7\x8c\xab", "\"\\u732b\""},
        {"\xf0\x9f\x90\x88", "\"\\ud83d\\udc08\""}, /* U+1F408 as a UTF-16 pair */
        {"\x7f\xff", "\"\\u007f\\ufffd\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sdt_buf b;
        sdt_buf_init(&b);
        sdt_json_append_string(&b, cases[i].in);
        CHECK_MSG(t, b.data && strcmp(b.data, cases[i].out) == 0, "%s, expected %s", b.data ? b.data : "",
                  cases[i].out);
        sdt_buf_free(&b);
    }
}

/* ss_tag_frequency from a hand-made dataset: per image, reg subsets too, same folder names merged,
 * tags stripped and lower-cased in first-seen order; ss_bucket_info from a bucket plan. */
static void dataset_keys(test_state *t)
{
    sdt_ds_sample a[] = {{.caption = "Red Cat, sitting"}, {.caption = "red cat,  outdoors ,"}};
    sdt_ds_sample b[] = {{.caption = "a dog"}};
    sdt_ds_sample c[] = {{.caption = "sitting, caf\xc3\xa9"}};
    sdt_ds_subset subsets[3] = {
        {.image_dir = "/d/10_cat", .num_repeats = 10, .samples = a, .sample_count = 2},
        {.image_dir = "/r/1_dog", .num_repeats = 1, .is_reg = true, .samples = b, .sample_count = 1},
        {.image_dir = "/other/10_cat", .num_repeats = 5, .samples = c, .sample_count = 1},
    };
    sdt_ds_dataset set = {.subsets = subsets, .subset_count = 3};
    sdt_dataset ds = {.datasets = &set, .dataset_count = 1};
    sdt_train_data d = {.dataset = &ds};
    char *json = NULL, *error = NULL;
    CHECK(t, sdt_run_tag_frequency_json(&d, &json, &error) == 0);
    const char *want = "{\"10_cat\": {\"red cat\": 2, \"sitting\": 2, \"outdoors\": 1, \"caf\\u00e9\": 1}, "
                       "\"1_dog\": {\"a dog\": 1}}";
    CHECK_MSG(t, json && strcmp(json, want) == 0, "%s", json ? json : "");
    free(json);

    /* bucketing off: no bucket info */
    sdt_bucket buckets[3] = {{.width = 512, .height = 512, .images = 2, .samples = 20},
                             {.width = 576, .height = 448, .images = 0, .samples = 0},
                             {.width = 640, .height = 384, .images = 1, .samples = 5}};
    sdt_bucket_plan plan = {.buckets = buckets, .bucket_count = 3, .mean_ar_error = 0.0125};
    d.buckets = &plan;
    json = (char *)"x";
    CHECK(t, sdt_run_bucket_info_json(&d, &json, &error) == 0 && json == NULL);
    plan.settings.enable_bucket = 1;
    CHECK(t, sdt_run_bucket_info_json(&d, &json, &error) == 0);
    want = "{\"buckets\": {\"0\": {\"resolution\": [512, 512], \"count\": 20}, \"2\": {\"resolution\": [640, "
           "384], \"count\": 5}}, \"mean_img_ar_error\": 0.0125}";
    CHECK_MSG(t, json && strcmp(json, want) == 0, "%s", json ? json : "");
    free(json);
    free(error);
}

/* ---- a real run ---- */

static int all_hex(const char *s, size_t n)
{
    if (!s || strlen(s) != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i]))
            return 0;
    return 1;
}

static void check_file(test_state *t, const char *path, const char *steps, const char *epoch,
                       const char *model_hash)
{
    sdt_safetensors *st = NULL;
    char *error = NULL;
    CHECK_MSG(t, sdt_safetensors_open(path, &st, &error) == 0, "%s", error ? error : "");
    free(error);
    if (!st)
        return;
#define MD(key) sdt_safetensors_metadata(st, key)
#define EXPECT_MD(key, value)                                                                                \
    CHECK_MSG(t, MD(key) && strcmp(MD(key), value) == 0, "%s: %s = %s, expected %s", path, key,              \
              MD(key) ? MD(key) : "(absent)", value)
    EXPECT_MD("ss_steps", steps);
    EXPECT_MD("ss_epoch", epoch);
    EXPECT_MD("ss_num_epochs", "1");
    EXPECT_MD("ss_max_train_steps", "4");
    EXPECT_MD("ss_num_train_images", "4");
    EXPECT_MD("ss_num_batches_per_epoch", "4");
    EXPECT_MD("ss_mixed_precision", "no");
    EXPECT_MD("ss_optimizer", "torch.optim.adamw.AdamW");
    EXPECT_MD("ss_unet_lr", "None");
    EXPECT_MD("ss_text_encoder_lr", "None");
    EXPECT_MD("ss_tag_frequency", "{\"2_cat\": {\"a red cat\": 1, \"a blue cat sitting\": 1}}");
    EXPECT_MD("ss_dataset_dirs", "{\"2_cat\": {\"n_repeats\": 2, \"img_count\": 2}}");
    EXPECT_MD("ss_reg_dataset_dirs", "{}");
    EXPECT_MD("ss_bucket_info", "null");
    EXPECT_MD("ss_enable_bucket", "False");
    EXPECT_MD("ss_training_comment", "tiny run");
    EXPECT_MD("modelspec.resolution", "64x64");
    /* kohya's model_hash: the SHA-256 of the model's 64 KiB at 1 MiB, 8 hex digits */
    EXPECT_MD("ss_sd_model_hash", model_hash);
    EXPECT_MD("ss_sd_model_name", "tiny-sd15.safetensors");
    CHECK(t, MD("ss_new_sd_model_hash") == NULL);
    const char *started = MD("ss_training_started_at"), *finished = MD("ss_training_finished_at");
    CHECK_MSG(t,
              started && finished && strtod(finished, NULL) >= strtod(started, NULL) &&
                  strtod(started, NULL) > 1.6e9 && strchr(started, '.'),
              "started %s finished %s", started ? started : "-", finished ? finished : "-");
    const char *date = MD("modelspec.date");
    CHECK_MSG(t, date && strlen(date) == 19 && date[4] == '-' && date[10] == 'T' && date[16] == ':',
              "date %s", date ? date : "-");
    CHECK(t, all_hex(MD("sshs_model_hash"), 64) && all_hex(MD("sshs_legacy_hash"), 8));
#undef EXPECT_MD
#undef MD
    sdt_safetensors_close(st);
}

static void real_run(test_state *t)
{
    trainer_fixture f;
    if (trainer_fixture_open(t, &f, "lora-meta", 2, 2) != 0) {
        trainer_fixture_close(&f);
        return;
    }
    sdt_config *cfg =
        trainer_fixture_config(t, &f, NULL,
                               "[training]\nmax_train_steps = 4\n"
                               "[network]\nnetwork_dim = 2\n"
                               "[saving]\nsave_every_n_steps = 2\ntraining_comment = \"tiny run\"\n");
    event_log log = {0};
    char *error = NULL;
    CHECK_MSG(t, cfg && trainer_fixture_run(cfg, &log, NULL, &error) == SDT_TRAIN_DONE, "%s",
              error ? error : "");
    free(error);
    char step_file[256], final_file[256];
    snprintf(step_file, sizeof step_file, "%s/tiny-step00000002.safetensors", f.out);
    snprintf(final_file, sizeof final_file, "%s/tiny.safetensors", f.out);
    /* step 2 lies in the first epoch: kohya reports its 0-based index at step saves */
    char model_hash[65] = "";
    size_t len = 0;
    char *model = test_read_file(f.demo.model_path, &len);
    CHECK(t, model && len > 0x110000);
    if (model && len > 0x110000)
        sdt_sha256_hex(model + 0x100000, 0x10000, model_hash);
    model_hash[8] = '\0';
    free(model);
    check_file(t, step_file, "2", "0", model_hash);
    check_file(t, final_file, "4", "1", model_hash);
    event_log_free(&log);
    sdt_config_free(cfg);
    trainer_fixture_close(&f);
}

TEST_MAIN("lora_metadata_run", TEST(json_strings), TEST(dataset_keys), TEST(real_run))
