/* The schema table is data the whole program trusts: prove it is consistent. */
#include <math.h>

#include "check.h"
#include "sdtune/config.h"

static void size_and_sections(test_state *t)
{
    size_t n = sdt_schema_count();
    CHECK_MSG(t, n >= 150, "only %zu settings", n);
    const sdt_setting *s = sdt_schema_settings();
    int per_section[SDT_SEC_COUNT] = {0};
    for (size_t k = 0; k < n; k++) {
        CHECK_MSG(t, (unsigned)s[k].section < SDT_SEC_COUNT, "%s", s[k].key);
        if ((unsigned)s[k].section < SDT_SEC_COUNT)
            per_section[s[k].section]++;
        /* Rows are grouped by section, in section order (the file and the TUI follow the table). */
        if (k > 0)
            CHECK_MSG(t, s[k].section >= s[k - 1].section, "%s is out of section order", s[k].key);
    }
    for (int sec = 0; sec < SDT_SEC_COUNT; sec++)
        CHECK_MSG(t, per_section[sec] > 0, "section %s is empty", sdt_section_name((sdt_section)sec));
    CHECK(t, sdt_schema_find_section("noise_loss") == SDT_SEC_NOISE_LOSS);
    CHECK(t, sdt_schema_find_section("trainng") == -1);
}

static void keys_unique_and_findable(test_state *t)
{
    const sdt_setting *s = sdt_schema_settings();
    size_t n = sdt_schema_count();
    for (size_t k = 0; k < n; k++) {
        CHECK_MSG(t, sdt_schema_find(s[k].key) == (int)k, "%s is not unique", s[k].key);
        /* A kohya alias must not also be one of our keys, or the alias message would be wrong. */
        if (s[k].kohya_aliases) {
            char aliases[256];
            snprintf(aliases, sizeof aliases, "%s", s[k].kohya_aliases);
            for (char *w = strtok(aliases, " "); w; w = strtok(NULL, " ")) {
                CHECK_MSG(t, sdt_schema_find(w) < 0, "alias %s of %s is also a key", w, s[k].key);
                CHECK_MSG(t, sdt_schema_find_alias(w) == (int)k, "alias %s belongs to two settings", w);
            }
        }
    }
}

static void rows_are_well_formed(test_state *t)
{
    const sdt_setting *s = sdt_schema_settings();
    size_t n = sdt_schema_count();
    for (size_t k = 0; k < n; k++) {
        const sdt_setting *r = &s[k];
        size_t help_len = r->help ? strlen(r->help) : 0;
        CHECK_MSG(t, help_len > 0 && help_len <= 90, "%s: help length %zu", r->key, help_len);
        CHECK_MSG(t, help_len == 0 || r->help[help_len - 1] != '.', "%s: help ends with a full stop", r->key);
        CHECK_MSG(t, (r->type == SDT_T_ENUM) == (r->enum_values != NULL), "%s: enum values", r->key);
        CHECK_MSG(t, r->default_text != NULL, "%s: no default", r->key);
        CHECK_MSG(t, (unsigned)r->relevance < SDT_REL_COUNT, "%s: relevance", r->key);
        if (r->has_min && r->has_max)
            CHECK_MSG(t, r->min <= r->max, "%s: empty range", r->key);
        if (r->type == SDT_T_LIST)
            CHECK_MSG(t, r->elem_type != SDT_T_LIST && r->elem_type != SDT_T_ENUM, "%s: list items", r->key);
    }
}

/* Every default, for every family and training type, parses and passes its own range check. */
static void defaults_are_valid_everywhere(test_state *t)
{
    const sdt_setting *s = sdt_schema_settings();
    size_t n = sdt_schema_count();
    int family_key = sdt_schema_find("model_family"), training_key = sdt_schema_find("training_type");
    for (int f = 0; f < SDT_FAMILY_COUNT; f++) {
        for (int tr = 0; tr < SDT_TRAIN_COUNT; tr++) {
            sdt_config *cfg = sdt_config_new();
            sdt_diag_list diags;
            sdt_diag_list_init(&diags);
            CHECK(t, sdt_config_set_text(cfg, family_key, sdt_family_name((sdt_family)f), &diags) == 0);
            CHECK(t,
                  sdt_config_set_text(cfg, training_key, sdt_training_name((sdt_training)tr), &diags) == 0);
            for (size_t k = 0; k < n; k++) {
                char *problem = sdt_value_check(&s[k], sdt_config_default(cfg, (int)k));
                CHECK_MSG(t, problem == NULL, "%s/%s: %s", sdt_family_name((sdt_family)f),
                          sdt_training_name((sdt_training)tr), problem);
                free(problem);
                CHECK_MSG(t, sdt_config_default(cfg, (int)k)->type == s[k].type, "%s: default type",
                          s[k].key);
            }
            CHECK(t, diags.count == 0);
            sdt_diag_list_free(&diags);
            sdt_config_free(cfg);
        }
    }
}

static void defaults_follow_family_and_training(test_state *t)
{
    sdt_diag_list diags;
    sdt_diag_list_init(&diags);
    sdt_config *cfg = sdt_config_new();
    int lr = sdt_schema_find("learning_rate"), res = sdt_schema_find("resolution");
    CHECK(t, fabs(sdt_config_get(cfg, lr)->f - 1e-4) < 1e-12);
    CHECK(t, sdt_config_set_text(cfg, sdt_schema_find("training_type"), "dreambooth", &diags) == 0);
    CHECK(t, fabs(sdt_config_get(cfg, lr)->f - 1e-6) < 1e-15);
    CHECK(t, sdt_config_set_text(cfg, sdt_schema_find("training_type"), "finetune", &diags) == 0);
    CHECK(t, fabs(sdt_config_get(cfg, lr)->f - 2e-6) < 1e-15);
    CHECK(t, sdt_config_get(cfg, res)->count == 1 && sdt_config_get(cfg, res)->items[0].i == 512);
    CHECK(t, sdt_config_set_text(cfg, sdt_schema_find("model_family"), "sdxl", &diags) == 0);
    CHECK(t, sdt_config_get(cfg, res)->items[0].i == 1024);
    CHECK(t, sdt_config_int(cfg, "bucket_reso_steps") == 32);
    /* An explicit value wins over any default. */
    CHECK(t, sdt_config_set_text(cfg, lr, "3e-5", &diags) == 0);
    CHECK(t, sdt_config_set_text(cfg, sdt_schema_find("training_type"), "lora", &diags) == 0);
    CHECK(t, fabs(sdt_config_get(cfg, lr)->f - 3e-5) < 1e-15);
    sdt_config_unset(cfg, lr);
    CHECK(t, fabs(sdt_config_get(cfg, lr)->f - 1e-4) < 1e-12);
    CHECK(t, diags.count == 0);
    sdt_diag_list_free(&diags);
    sdt_config_free(cfg);
}

static void text_forms(test_state *t)
{
    const sdt_setting *s = sdt_schema_settings();
    sdt_value v;
    char *error = NULL;
    int k = sdt_schema_find("network_dim");
    CHECK(t, sdt_value_parse_text(&s[k], " 32 ", &v, &error) == 0 && v.i == 32);
    sdt_value_free(&v);
    CHECK(t, sdt_value_parse_text(&s[k], "32.5", &v, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "network_dim: expected an integer");
    free(error);
    k = sdt_schema_find("optimizer_type");
    CHECK(t, sdt_value_parse_text(&s[k], "adamw8bit", &v, &error) == 0); /* case is forgiven... */
    CHECK(t, strcmp(v.s, "AdamW8bit") == 0);                             /* ...and made canonical */
    sdt_value_free(&v);
    k = sdt_schema_find("resolution");
    CHECK(t,
          sdt_value_parse_text(&s[k], "[768, 512]", &v, &error) == 0 && v.count == 2 && v.items[1].i == 512);
    char *text = sdt_value_to_text(&v);
    CHECK(t, text && strcmp(text, "[768, 512]") == 0);
    free(text);
    sdt_value_free(&v);
    CHECK(t, sdt_value_parse_text(&s[k], "[768, \"x\"]", &v, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "item 2");
    free(error);
    k = sdt_schema_find("learning_rate");
    CHECK(t, sdt_value_parse_text(&s[k], "nan", &v, &error) == -1);
    free(error);
    CHECK(t, sdt_value_parse_text(&s[k], "1e-4", &v, &error) == 0);
    text = sdt_value_to_text(&v);
    CHECK(t, text && strcmp(text, "0.0001") == 0);
    free(text);
    sdt_value_free(&v);
}

TEST_MAIN("schema", TEST(size_and_sections), TEST(keys_unique_and_findable), TEST(rows_are_well_formed),
          TEST(defaults_are_valid_everywhere), TEST(defaults_follow_family_and_training), TEST(text_forms))
