/* Dataset scanning: kohya folder mode with repeats and reg folders, captions present, missing, empty and
 * not UTF-8, bad image files skipped and counted, dataset_config TOML/JSON precedence and errors,
 * fine-tune metadata (.json and .jsonl), and the report. Every test builds its own folders of small PNGs. */
#define _DEFAULT_SOURCE

#include <errno.h>
#include <jansson.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataset.h"
#include "test_images.h"
#include "unit/check.h"

static char root[256];

static void write_png(const char *path, int w, int h) { (void)test_write_gray_png(path, w, h); }

static void write_bytes(const char *path, const void *data, size_t len)
{
    (void)test_write_file(path, data, len);
}

static void write_text(const char *path, const char *text) { write_bytes(path, text, strlen(text)); }

static char *at(const char *rel)
{
    static char buf[8][512];
    static int next;
    char *b = buf[next++ % 8];
    snprintf(b, 512, "%s/%s", root, rel);
    return b;
}

static void make_dir(const char *rel) { mkdir(at(rel), 0755); }

/* A PNG cut after 20 bytes: the signature and half an IHDR. */
static void write_truncated_png(const char *path)
{
    char full[512];
    snprintf(full, sizeof full, "%s.tmp", path);
    write_png(full, 16, 16);
    FILE *f = fopen(full, "rb");
    unsigned char head[20] = {0};
    size_t n = f ? fread(head, 1, sizeof head, f) : 0;
    if (f)
        fclose(f);
    remove(full);
    write_bytes(path, head, n);
}

static sdt_config *load_config(const char *text, sdt_diag_list *diags)
{
    return sdt_config_load_text(text, strlen(text), "test.toml", diags);
}

/* The folder tree of the folder-mode tests. */
static void make_folders(void)
{
    make_dir("train");
    make_dir("train/10_sks dog");
    make_dir("train/2_cat");
    make_dir("train/nonum");
    make_dir("reg");
    make_dir("reg/1_dog");
    write_png(at("train/10_sks dog/a.png"), 64, 48);
    write_text(at("train/10_sks dog/a.txt"), "  sks dog, smiling \r\nsecond line\n\nthird\n");
    write_png(at("train/10_sks dog/b.png"), 48, 64);
    write_png(at("train/10_sks dog/c.png"), 32, 32);
    write_text(at("train/10_sks dog/c.txt"), "");
    write_png(at("train/10_sks dog/d.png"), 32, 32);
    write_bytes(at("train/10_sks dog/d.txt"), "caf\xe9", 4);
    write_bytes(at("train/10_sks dog/e.png"), "", 0);
    write_text(at("train/10_sks dog/f.jpg"), "this is not a jpeg");
    write_truncated_png(at("train/10_sks dog/g.png"));
    write_text(at("train/10_sks dog/notes.md"), "not an image extension: ignored");
    write_png(at("train/2_cat/h_1_2_3_4.PNG"), 64, 64);
    write_text(at("train/2_cat/h.txt"), "a cat (face-crop name)");
    write_png(at("train/nonum/x.png"), 8, 8);
    write_png(at("reg/1_dog/r1.png"), 64, 64);
    write_png(at("reg/1_dog/r2.png"), 64, 64);
}

static const sdt_ds_sample *find_sample(const sdt_ds_subset *sub, const char *name)
{
    for (size_t i = 0; i < sub->sample_count; i++) {
        const char *slash = strrchr(sub->samples[i].path, '/');
        if (strcmp(slash ? slash + 1 : sub->samples[i].path, name) == 0)
            return &sub->samples[i];
    }
    return NULL;
}

static bool diags_mention(const sdt_diag_list *diags, const char *file_part, const char *message_part)
{
    for (size_t i = 0; i < diags->count; i++)
        if (strstr(diags->items[i].file, file_part) && strstr(diags->items[i].message, message_part))
            return true;
    return false;
}

static void test_folder_mode(test_state *t)
{
    char text[2048];
    snprintf(text, sizeof text,
             "[folders]\ntrain_data_dir = \"%s\"\nreg_data_dir = \"%s\"\n[dataset]\nresolution = [128]\n"
             "min_bucket_reso = 64\nmax_bucket_reso = 256\nbucket_reso_steps = 64\n",
             at("train"), at("reg"));
    sdt_diag_list diags;
    sdt_diag_list_init(&diags);
    sdt_config *cfg = load_config(text, &diags);
    CHECK(t, cfg && sdt_diag_count(&diags, SDT_SEV_ERROR) == 0);
    sdt_dataset *ds = sdt_dataset_scan(cfg, NULL, &diags);
    CHECK(t, ds != NULL);
    if (!ds) {
        sdt_config_free(cfg);
        sdt_diag_list_free(&diags);
        return;
    }
    CHECK(t, ds->mode == SDT_DATASET_FOLDERS);
    CHECK(t, ds->dataset_count == 1);
    const sdt_ds_dataset *set = &ds->datasets[0];
    CHECK_MSG(t, set->subset_count == 3, "%zu subsets", set->subset_count);
    if (set->subset_count == 3) {
        const sdt_ds_subset *dog = &set->subsets[0], *cat = &set->subsets[1], *reg = &set->subsets[2];
        CHECK(t, dog->num_repeats == 10 && dog->class_tokens && strcmp(dog->class_tokens, "sks dog") == 0);
        CHECK(t, !dog->is_reg && reg->is_reg && cat->num_repeats == 2);
        CHECK_MSG(t, dog->sample_count == 2, "%zu dog samples", dog->sample_count);
        const sdt_ds_sample *a = find_sample(dog, "a.png"), *b = find_sample(dog, "b.png");
        CHECK(t, a && a->width == 64 && a->height == 48 && a->caption_source == SDT_CAPTION_FILE);
        CHECK(t, a && strcmp(a->caption, "sks dog, smiling") == 0);
        CHECK(t, b && b->caption_source == SDT_CAPTION_CLASS_TOKENS && strcmp(b->caption, "sks dog") == 0);
        const sdt_ds_sample *h = find_sample(cat, "h_1_2_3_4.PNG");
        CHECK(t, h && h->caption_source == SDT_CAPTION_FILE &&
                     strcmp(h->caption, "a cat (face-crop name)") == 0);
        CHECK(t, reg->sample_count == 2 && reg->num_repeats == 1);
        /* 22 train images with repeats: the two reg images are repeated to 11 each. */
        CHECK(t,
              reg->effective_repeats && reg->effective_repeats[0] == 11 && reg->effective_repeats[1] == 11);
    }
    CHECK(t, sdt_dataset_images_with_repeats(ds, false) == 22);
    CHECK(t, sdt_dataset_images_with_repeats(ds, true) == 2);
    CHECK(t, ds->skipped[SDT_SKIP_CAPTION_EMPTY] == 1);
    CHECK(t, ds->skipped[SDT_SKIP_CAPTION_NOT_UTF8] == 1);
    CHECK(t, ds->skipped[SDT_SKIP_EMPTY_FILE] == 1);
    CHECK(t, ds->skipped[SDT_SKIP_NOT_IMAGE] == 1);
    CHECK(t, ds->skipped[SDT_SKIP_CORRUPT_IMAGE] == 1);
    sdt_buf summary;
    sdt_buf_init(&summary);
    sdt_dataset_skip_summary(ds, &summary);
    CHECK_STR_CONTAINS(t, summary.data,
                       "skipped 5 files: 1 corrupt image, 1 empty file, 1 not an image, 1 caption not UTF-8, "
                       "1 empty caption file");
    sdt_buf_free(&summary);
    /* Every skip names its file; the folder without repeats is a warning; nothing is an error. */
    CHECK(t, diags_mention(&diags, "c.txt", "empty"));
    CHECK(t, diags_mention(&diags, "d.txt", "not UTF-8"));
    CHECK(t, diags_mention(&diags, "e.png", "empty file"));
    CHECK(t, diags_mention(&diags, "f.jpg", "not an image"));
    CHECK(t, diags_mention(&diags, "g.png", "corrupt image"));
    CHECK(t, diags_mention(&diags, "train/nonum", "repeat count"));
    CHECK(t, sdt_diag_count(&diags, SDT_SEV_ERROR) == 0);

    sdt_dataset_report_options ro;
    sdt_dataset_report_options_from_config(cfg, &ro);
    char *report = sdt_dataset_report(ds, &ro, false, &diags);
    CHECK_STR_CONTAINS(t, report, "Using DreamBooth method.");
    CHECK_STR_CONTAINS(t, report, "[Subset 0 of Dataset 0]");
    CHECK_STR_CONTAINS(t, report, "    class_tokens: sks dog\n");
    CHECK_STR_CONTAINS(t, report, "22 train images with repeats.");
    CHECK_STR_CONTAINS(t, report, "2 reg images with repeats.");
    CHECK_STR_CONTAINS(t, report, "bucket 0: resolution (");
    CHECK_STR_CONTAINS(t, report, "mean ar error (without repeats): ");
    CHECK_STR_CONTAINS(t, report, "total optimization steps: 1600");
    CHECK_STR_CONTAINS(t, report, "skipped 5 files");
    free(report);
    char *json = sdt_dataset_report(ds, &ro, true, &diags);
    json_error_t jerr;
    json_t *j = json ? json_loads(json, 0, &jerr) : NULL;
    CHECK(t, j != NULL);
    CHECK(t, json_integer_value(json_object_get(j, "train_images_with_repeats")) == 22);
    CHECK(t, json_integer_value(json_object_get(json_object_get(j, "skipped"), "total")) == 5);
    /* 2 + 1 train images and 22 balanced reg samples in batches of 1: 22 + 22 = 44 batches. */
    CHECK_MSG(t, json_integer_value(json_object_get(j, "batches_per_epoch")) == 44, "%lld batches",
              (long long)json_integer_value(json_object_get(j, "batches_per_epoch")));
    json_decref(j);
    free(json);
    sdt_dataset_free(ds);

    /* --strict: the same skips are errors. */
    sdt_diag_list_clear(&diags);
    sdt_dataset_options strict = {.strict = true};
    ds = sdt_dataset_scan(cfg, &strict, &diags);
    CHECK(t, ds && sdt_diag_count(&diags, SDT_SEV_ERROR) == 6);
    sdt_dataset_free(ds);
    sdt_config_free(cfg);

    /* enable_wildcard: every non-empty line. */
    snprintf(text, sizeof text, "[folders]\ntrain_data_dir = \"%s\"\n[dataset]\nenable_wildcard = true\n",
             at("train"));
    sdt_diag_list_clear(&diags);
    cfg = load_config(text, &diags);
    ds = cfg ? sdt_dataset_scan(cfg, NULL, &diags) : NULL;
    const sdt_ds_sample *a =
        ds && ds->dataset_count ? find_sample(&ds->datasets[0].subsets[0], "a.png") : NULL;
    CHECK(t, a && strcmp(a->caption, "sks dog, smiling\nsecond line\nthird") == 0);
    sdt_dataset_free(ds);
    sdt_config_free(cfg);
    sdt_diag_list_free(&diags);
}

static void test_empty_and_missing(test_state *t)
{
    make_dir("empty");
    make_dir("empty/5_nothing");
    char text[1024];
    snprintf(text, sizeof text, "[folders]\ntrain_data_dir = \"%s\"\n", at("empty"));
    sdt_diag_list diags;
    sdt_diag_list_init(&diags);
    sdt_config *cfg = load_config(text, &diags);
    sdt_dataset *ds = sdt_dataset_scan(cfg, NULL, &diags);
    CHECK(t,
          ds && sdt_diag_count(&diags, SDT_SEV_ERROR) == 1 && diags_mention(&diags, "", "dataset is empty"));
    sdt_dataset_free(ds);
    sdt_config_free(cfg);

    snprintf(text, sizeof text, "[folders]\ntrain_data_dir = \"%s\"\n", at("does-not-exist"));
    sdt_diag_list_clear(&diags);
    cfg = load_config(text, &diags);
    ds = sdt_dataset_scan(cfg, NULL, &diags);
    CHECK(t, ds && diags_mention(&diags, "test.toml", "cannot open"));
    sdt_dataset_free(ds);
    sdt_config_free(cfg);

    /* An unreadable subfolder is skipped and counted (root can read anything: then it is simply read). */
    make_dir("locked");
    make_dir("locked/3_x");
    make_dir("locked/4_y");
    write_png(at("locked/4_y/ok.png"), 16, 16);
    chmod(at("locked/3_x"), 0);
    snprintf(text, sizeof text, "[folders]\ntrain_data_dir = \"%s\"\n", at("locked"));
    sdt_diag_list_clear(&diags);
    cfg = load_config(text, &diags);
    ds = sdt_dataset_scan(cfg, NULL, &diags);
    CHECK(t, ds && sdt_dataset_image_count(ds, false) == 1);
    if (geteuid() != 0)
        CHECK(t, ds && ds->skipped[SDT_SKIP_UNREADABLE] == 1 && diags_mention(&diags, "3_x", "cannot open"));
    chmod(at("locked/3_x"), 0755);
    sdt_dataset_free(ds);
    sdt_config_free(cfg);
    sdt_diag_list_free(&diags);
}

static void test_dataset_config(test_state *t)
{
    make_dir("dc");
    make_dir("dc/imgs");
    make_dir("dc/imgs2");
    write_png(at("dc/imgs/one.png"), 64, 64);
    write_text(at("dc/imgs/one.cap"), "one caption");
    write_png(at("dc/imgs2/two.png"), 64, 32);
    char toml[2048];
    snprintf(toml, sizeof toml,
             "[general]\nshuffle_caption = true\nkeep_tokens = 1\ncaption_extension = \".cap\"\n\n"
             "[[datasets]]\nresolution = [96, 64]\nbatch_size = 2\nkeep_tokens = 2\nenable_bucket = false\n\n"
             "  [[datasets.subsets]]\n  image_dir = \"%s\"\n  num_repeats = 3\n  keep_tokens = 3\n\n"
             "  [[datasets.subsets]]\n  image_dir = \"%s\"\n  class_tokens = \"zzz\"\n"
             "  [[datasets.subsets]]\n  image_dir = \"%s\"\n",
             at("dc/imgs"), at("dc/imgs2"), at("dc/imgs"));
    write_text(at("dc/ds.toml"), toml);
    char text[1024];
    snprintf(text, sizeof text, "[folders]\ntrain_data_dir = \"%s\"\ndataset_config = \"%s\"\n", at("train"),
             at("dc/ds.toml"));
    sdt_diag_list diags;
    sdt_diag_list_init(&diags);
    sdt_config *cfg = load_config(text, &diags);
    sdt_dataset *ds = sdt_dataset_scan(cfg, NULL, &diags);
    CHECK(t, ds && ds->mode == SDT_DATASET_CONFIG_FILE && ds->dataset_count == 1);
    CHECK(t, diags_mention(&diags, "test.toml", "train_data_dir is ignored because dataset_config is set"));
    CHECK(t, diags_mention(&diags, "ds.toml", "appears twice"));
    if (ds && ds->dataset_count == 1) {
        const sdt_ds_dataset *set = &ds->datasets[0];
        CHECK(t, set->resolution[0] == 96 && set->resolution[1] == 64 && set->batch_size == 2);
        CHECK(t, !set->enable_bucket);
        CHECK_MSG(t, set->subset_count == 2, "%zu subsets", set->subset_count);
        if (set->subset_count == 2) {
            const sdt_ds_subset *s0 = &set->subsets[0], *s1 = &set->subsets[1];
            CHECK(t, s0->keep_tokens == 3 && s1->keep_tokens == 2); /* subset > dataset > general */
            CHECK(t, s0->shuffle_caption && s1->shuffle_caption);   /* general */
            CHECK(t, strcmp(s0->caption_extension, ".cap") == 0);
            CHECK(t, s0->num_repeats == 3 && s1->num_repeats == 1); /* folder names are not parsed */
            CHECK(t, s0->sample_count == 1 && strcmp(s0->samples[0].caption, "one caption") == 0);
            CHECK(t, s1->sample_count == 1 && strcmp(s1->samples[0].caption, "zzz") == 0);
        }
    }
    sdt_dataset_free(ds);

    /* Unknown keys, keys at the wrong level and wrong types are errors with their places. */
    snprintf(toml, sizeof toml,
             "[general]\nshufle_caption = true\n[[datasets]]\nbatch_size = \"two\"\n"
             "  [[datasets.subsets]]\n  imag_dir = \"x\"\n  batch_size = 2\n");
    write_text(at("dc/bad.toml"), toml);
    snprintf(text, sizeof text, "[folders]\ndataset_config = \"%s\"\n", at("dc/bad.toml"));
    sdt_config_free(cfg);
    sdt_diag_list_clear(&diags);
    cfg = load_config(text, &diags);
    ds = sdt_dataset_scan(cfg, NULL, &diags);
    CHECK(t, ds != NULL);
    bool typo = false, wrong_type = false, level = false, imag = false;
    for (size_t i = 0; i < diags.count; i++) {
        const sdt_diag *g = &diags.items[i];
        if (strstr(g->message, "did you mean 'shuffle_caption'") && g->line == 2)
            typo = true;
        if (strstr(g->message, "batch_size: expected an integer") && g->line == 4)
            wrong_type = true;
        if (strstr(g->message, "'batch_size' is not allowed in [[datasets.subsets]]") && g->line == 7)
            level = true;
        if (strstr(g->message, "did you mean 'image_dir'") && g->line == 6)
            imag = true;
    }
    CHECK(t, typo && wrong_type && level && imag);
    sdt_dataset_free(ds);

    /* The same config as JSON. */
    char json[1024];
    snprintf(json, sizeof json,
             "{\"general\": {\"flip_aug\": true}, \"datasets\": [{\"batch_size\": 4, \"subsets\": "
             "[{\"image_dir\": \"%s\", \"num_repeats\": 5, \"caption_extension\": \".cap\"}]}]}",
             at("dc/imgs"));
    write_text(at("dc/ds.json"), json);
    snprintf(text, sizeof text, "[folders]\ndataset_config = \"%s\"\n", at("dc/ds.json"));
    sdt_config_free(cfg);
    sdt_diag_list_clear(&diags);
    cfg = load_config(text, &diags);
    ds = sdt_dataset_scan(cfg, NULL, &diags);
    CHECK(t, ds && ds->dataset_count == 1 && ds->datasets[0].batch_size == 4 &&
                 ds->datasets[0].subset_count == 1);
    if (ds && ds->dataset_count == 1 && ds->datasets[0].subset_count == 1) {
        const sdt_ds_subset *s = &ds->datasets[0].subsets[0];
        CHECK(t, s->flip_aug && s->num_repeats == 5 && s->sample_count == 1);
        CHECK(t, s->sample_count == 1 && strcmp(s->samples[0].caption, "one caption") == 0);
    }
    CHECK(t, sdt_diag_count(&diags, SDT_SEV_ERROR) == 0);
    sdt_dataset_free(ds);
    sdt_config_free(cfg);
    sdt_diag_list_free(&diags);
}

static void test_metadata(test_state *t)
{
    make_dir("ft");
    write_png(at("ft/img1.png"), 80, 40);
    write_png(at("ft/img2.png"), 40, 80);
    write_text(at("ft/meta.json"), "{\"img1\": {\"caption\": \"a cat\", \"tags\": \"cute, small\"},\n"
                                   " \"img2.png\": {\"tags\": \"only tags\"},\n"
                                   " \"gone\": {\"caption\": \"missing image\"}}");
    char text[1024];
    snprintf(text, sizeof text,
             "[model]\ntraining_type = \"finetune\"\n[folders]\ntrain_data_dir = \"%s\"\nin_json = \"%s\"\n"
             "[dataset]\ndataset_repeats = 4\n",
             at("ft"), at("ft/meta.json"));
    sdt_diag_list diags;
    sdt_diag_list_init(&diags);
    sdt_config *cfg = load_config(text, &diags);
    CHECK(t, cfg && sdt_diag_count(&diags, SDT_SEV_ERROR) == 0);
    sdt_dataset *ds = cfg ? sdt_dataset_scan(cfg, NULL, &diags) : NULL;
    CHECK(t, ds && ds->mode == SDT_DATASET_METADATA && ds->dataset_count == 1);
    if (ds && ds->dataset_count == 1) {
        const sdt_ds_subset *s = &ds->datasets[0].subsets[0];
        CHECK(t, s->num_repeats == 4 && s->sample_count == 2 && ds->datasets[0].finetune);
        const sdt_ds_sample *a = find_sample(s, "img1.png"), *b = find_sample(s, "img2.png");
        CHECK(t,
              a && strcmp(a->caption, "a cat,cute, small") == 0 && a->caption_source == SDT_CAPTION_METADATA);
        CHECK(t, a && a->width == 80 && a->height == 40);
        CHECK(t, b && strcmp(b->caption, "only tags") == 0);
        CHECK(t, ds->skipped[SDT_SKIP_IMAGE_NOT_FOUND] == 1 && diags_mention(&diags, "gone", "no image"));
    }
    sdt_dataset_free(ds);
    sdt_config_free(cfg);

    /* .jsonl: one object per line with image_path. */
    write_text(at("ft/meta.jsonl"), "{\"image_path\": \"img1.png\", \"caption\": \"line one\"}\n\n"
                                    "{\"image_path\": \"img2.png\", \"caption\": \"two\", \"tags\": \"t\"}\n"
                                    "{not json}\n");
    snprintf(text, sizeof text,
             "[model]\ntraining_type = \"finetune\"\n[folders]\ntrain_data_dir = \"%s\"\nin_json = \"%s\"\n",
             at("ft"), at("ft/meta.jsonl"));
    sdt_diag_list_clear(&diags);
    cfg = load_config(text, &diags);
    ds = cfg ? sdt_dataset_scan(cfg, NULL, &diags) : NULL;
    CHECK(t, ds && ds->datasets[0].subsets[0].sample_count == 2);
    if (ds && ds->datasets[0].subsets[0].sample_count == 2)
        CHECK(t, strcmp(ds->datasets[0].subsets[0].samples[1].caption, "two,t") == 0);
    CHECK(t, sdt_diag_count(&diags, SDT_SEV_ERROR) == 1 && diags_mention(&diags, "meta.jsonl", ""));
    sdt_dataset_free(ds);
    sdt_config_free(cfg);
    sdt_diag_list_free(&diags);
}

static void remove_tree(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(root, sizeof root, "%s/sdtune-dataset-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    make_folders();
    static const test_case cases[] = {
        TEST(test_folder_mode),
        TEST(test_empty_and_missing),
        TEST(test_dataset_config),
        TEST(test_metadata),
    };
    int rc = run_tests("dataset", cases, sizeof cases / sizeof cases[0]);
    remove_tree();
    return rc;
}
