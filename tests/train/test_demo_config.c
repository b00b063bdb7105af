/* The demo's config side: the defaults follow the model path ("builtin:tiny-sd15" -> the demo family, a
 * real path -> SD 1.x), the generated template starts on the demo, resolving replaces every builtin name
 * by real files and keeps the demo's defaults, the dataset library scans the demo's data, and validation
 * accepts the builtin names. */
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "demo.h"
#include "sdtune/config.h"
#include "unit/check.h"
#include "unit/test_files.h"

static sdt_config *load(const char *text)
{
    sdt_diag_list diags;
    sdt_diag_list_init(&diags);
    sdt_config *cfg = sdt_config_load_text(text, strlen(text), "c.toml", &diags);
    sdt_diag_list_free(&diags);
    return cfg;
}

static void test_family_follows_model_path(test_state *t)
{
    sdt_config *demo = load("[model]\npretrained_model_name_or_path = \"builtin:tiny-sd15\"\n");
    sdt_config *real = load("[model]\npretrained_model_name_or_path = \"/models/v1-5-pruned.safetensors\"\n");
    CHECK(t, demo && real);
    if (!demo || !real)
        return;
    CHECK(t, sdt_config_family(demo) == SDT_FAMILY_DEMO);
    CHECK(t, strcmp(sdt_family_name(SDT_FAMILY_DEMO), "tiny-sd15") == 0);
    CHECK(t, sdt_config_family(real) == SDT_FAMILY_SD1);
    CHECK(t, strcmp(sdt_config_str(demo, "backend"), "cpu") == 0);
    CHECK(t, strcmp(sdt_config_str(real, "backend"), "auto") == 0);
    CHECK(t, strcmp(sdt_config_str(demo, "train_data_dir"), "builtin:shapes") == 0);
    CHECK(t, strcmp(sdt_config_str(real, "train_data_dir"), "") == 0);
    CHECK(t, strcmp(sdt_config_str(demo, "sample_prompts"), "builtin:shapes") == 0);
    CHECK(t,
          sdt_config_float(demo, "learning_rate") == 1e-3 && sdt_config_float(real, "learning_rate") == 1e-4);
    CHECK(t, sdt_config_int(demo, "network_dim") == 8 && sdt_config_int(real, "network_dim") == 32);
    CHECK(t,
          sdt_config_int(demo, "max_train_steps") == 300 && sdt_config_int(real, "max_train_steps") == 1600);
    CHECK(t, sdt_config_int(demo, "train_batch_size") == 4 && sdt_config_int(real, "train_batch_size") == 1);
    CHECK(t, sdt_config_int(demo, "sample_every_n_steps") == 100);
    const sdt_value *res = sdt_config_get(demo, sdt_schema_find("resolution"));
    CHECK(t, res->count == 1 && res->items[0].i == 64);
    res = sdt_config_get(real, sdt_schema_find("resolution"));
    CHECK(t, res->count == 1 && res->items[0].i == 512);
    /* Every demo default passes its own range check. */
    const sdt_setting *s = sdt_schema_settings();
    for (size_t k = 0; k < sdt_schema_count(); k++) {
        char *problem = sdt_value_check(&s[k], sdt_config_default(demo, (int)k));
        CHECK_MSG(t, problem == NULL, "%s: %s", s[k].key, problem);
        free(problem);
    }
    /* model_family stays sd1/sd2/sdxl: the demo family is not a value a user picks. */
    sdt_diag_list diags;
    sdt_diag_list_init(&diags);
    CHECK(t, sdt_config_set_text(demo, sdt_schema_find("model_family"), "tiny-sd15", &diags) != 0);
    sdt_diag_list_free(&diags);
    sdt_config_free(demo);
    sdt_config_free(real);
}

static void test_template_starts_on_the_demo(test_state *t)
{
    sdt_config *cfg = sdt_config_new_template();
    CHECK(t, cfg != NULL);
    if (!cfg)
        return;
    int model = sdt_schema_find("pretrained_model_name_or_path"), data = sdt_schema_find("train_data_dir");
    CHECK(t, sdt_config_is_set(cfg, model) &&
                 strcmp(sdt_config_str(cfg, "pretrained_model_name_or_path"), "builtin:tiny-sd15") == 0);
    CHECK(t, sdt_config_is_set(cfg, data) &&
                 strcmp(sdt_config_str(cfg, "train_data_dir"), "builtin:shapes") == 0);
    /* Unset settings follow the family: resolution is the demo's until the model changes. */
    CHECK(t, !sdt_config_is_set(cfg, sdt_schema_find("resolution")));
    sdt_value real = {.type = SDT_T_PATH, .s = "/models/v1-5-pruned.safetensors"};
    CHECK(t, sdt_config_set_value(cfg, model, &real) == 0);
    CHECK(t, sdt_config_family(cfg) == SDT_FAMILY_SD1);
    CHECK(t, sdt_config_get(cfg, sdt_schema_find("resolution"))->items[0].i == 512);
    CHECK(t, strcmp(sdt_config_str(cfg, "backend"), "auto") == 0);
    sdt_config_free(cfg);
}

static void test_resolve_and_scan(test_state *t)
{
    char root[256];
    char *error = NULL;
    CHECK(t, test_make_temp_dir(root, sizeof root, "democfg") == 0);
    sdt_demo_assets assets;
    CHECK_MSG(t, sdt_demo_prepare(root, &assets, &error) == 0, "%s", error);
    sdt_config *cfg = load("[model]\npretrained_model_name_or_path = \"builtin:tiny-sd15\"\n"
                           "[folders]\ntrain_data_dir = \"builtin:shapes\"\n");
    CHECK(t, cfg != NULL);
    if (!cfg || !assets.model_path)
        goto done;

    /* Validation accepts the builtin names, also with the filesystem checks of a preflight. */
    sdt_diag_list diags;
    sdt_diag_list_init(&diags);
    sdt_validate_options preflight = {.check_filesystem = true, .preflight = true};
    sdt_config_validate(cfg, &preflight, &diags);
    for (size_t i = 0; i < diags.count; i++)
        CHECK_MSG(t, !strstr(diags.items[i].message, "builtin:"), "%s", diags.items[i].message);
    sdt_diag_list_free(&diags);

    CHECK_MSG(t, sdt_demo_resolve_config(cfg, &assets, &error) == 0, "%s", error);
    CHECK(t, strcmp(sdt_config_str(cfg, "pretrained_model_name_or_path"), assets.model_path) == 0);
    CHECK(t, strcmp(sdt_config_str(cfg, "train_data_dir"), assets.train_data_dir) == 0);
    CHECK(t, strcmp(sdt_config_str(cfg, "sample_prompts"), assets.sample_prompts) == 0);
    CHECK(t, strcmp(sdt_config_str(cfg, "tokenizer_dir"), assets.tokenizer_dir) == 0);
    /* The demo's defaults stay although the model path is now a plain file. */
    CHECK(t, strcmp(sdt_config_str(cfg, "backend"), "cpu") == 0);
    CHECK(t, sdt_config_int(cfg, "network_dim") == 8);
    CHECK(t, sdt_config_get(cfg, sdt_schema_find("resolution"))->items[0].i == 64);

    sdt_diag_list_init(&diags);
    sdt_dataset_options options = {.strict = true};
    sdt_dataset *ds = sdt_dataset_scan(cfg, &options, &diags);
    CHECK(t, ds != NULL);
    CHECK_MSG(t, sdt_diag_count(&diags, SDT_SEV_ERROR) == 0, "%s", diags.count ? diags.items[0].message : "");
    if (ds) {
        CHECK(t, sdt_dataset_image_count(ds, false) == SDT_DEMO_IMAGE_COUNT);
        CHECK(t, sdt_dataset_images_with_repeats(ds, false) == SDT_DEMO_IMAGE_COUNT * SDT_DEMO_REPEATS);
        CHECK(t, ds->missing_captions == 0);
        int captions_ok = ds->dataset_count == 1 && ds->datasets[0].subset_count == 1;
        for (size_t i = 0; captions_ok && i < ds->datasets[0].subsets[0].sample_count; i++) {
            const char *c = ds->datasets[0].subsets[0].samples[i].caption;
            captions_ok = c && (strstr(c, " background") || strstr(c, " stripes"));
        }
        CHECK(t, captions_ok);
    }
    sdt_dataset_free(ds);
    sdt_diag_list_free(&diags);

    /* An unknown builtin name is refused, naming the key. */
    sdt_config *bad = load("[folders]\ntrain_data_dir = \"builtin:faces\"\n");
    CHECK(t, bad && sdt_demo_resolve_config(bad, &assets, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "train_data_dir");
    sdt_config_free(bad);
    /* A config without builtin names is left alone by sdt_demo_resolve (no cache is touched). */
    sdt_config *plain = load("[model]\npretrained_model_name_or_path = \"/m.safetensors\"\n");
    CHECK(t, plain && sdt_demo_resolve(plain, &error) == 0);
    CHECK(t, plain && strcmp(sdt_config_str(plain, "pretrained_model_name_or_path"), "/m.safetensors") == 0);
    sdt_config_free(plain);
done:
    sdt_config_free(cfg);
    sdt_demo_assets_free(&assets);
    free(error);
    test_remove_tree(root);
}

TEST_MAIN("demo_config", TEST(test_family_follows_model_path), TEST(test_template_starts_on_the_demo),
          TEST(test_resolve_and_scan))
