/* The config object: values per setting, defaults that follow the family and training type, loading. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "config_internal.h"
#include "sdtune/atomic_file.h"
#include "sdtune/strutil.h"

struct sdt_config {
    char *source;                           /* file loaded from or last saved to; "" for none */
    size_t count;                           /* = sdt_schema_count() */
    sdt_value *values;                      /* [count] the explicit values, meaningful where is_set */
    bool *is_set;                           /* [count] */
    int *line, *col;                        /* [count] where the value was written; 0 when unknown */
    sdt_value *defaults;                    /* [count] defaults for defaults_family/defaults_training */
    int defaults_family, defaults_training; /* -1 before the first computation */
};

static sdt_family family_from_name(const char *name)
{
    for (int k = 0; k < SDT_FAMILY_COUNT; k++)
        if (strcmp(sdt_family_name((sdt_family)k), name) == 0)
            return (sdt_family)k;
    return SDT_FAMILY_SD1;
}

static sdt_training training_from_name(const char *name)
{
    for (int k = 0; k < SDT_TRAIN_COUNT; k++)
        if (strcmp(sdt_training_name((sdt_training)k), name) == 0)
            return (sdt_training)k;
    return SDT_TRAIN_LORA;
}

/* The text of the default of setting s for a family and training type. */
static const char *default_text_for(const sdt_setting *s, int family, int training)
{
    for (const sdt_dynamic_default *d = s->dynamic_defaults; d && d->value; d++)
        if ((d->family == SDT_ANY || d->family == family) &&
            (d->training == SDT_ANY || d->training == training))
            return d->value;
    return s->default_text;
}

/* Recomputes the defaults when the family or training type changed. Returns -1 when out of memory. */
static int refresh_defaults(sdt_config *cfg)
{
    const sdt_setting *settings = sdt_schema_settings();
    int family_idx = sdt_schema_find("model_family"), training_idx = sdt_schema_find("training_type");
    assert(family_idx >= 0 && training_idx >= 0);
    /* The two keys have static defaults, so they can be read before the others are computed. */
    sdt_value fallback_family = {.type = SDT_T_ENUM, .s = (char *)settings[family_idx].default_text};
    sdt_value fallback_training = {.type = SDT_T_ENUM, .s = (char *)settings[training_idx].default_text};
    const sdt_value *fam = cfg->is_set[family_idx] ? &cfg->values[family_idx] : &fallback_family;
    const sdt_value *tr = cfg->is_set[training_idx] ? &cfg->values[training_idx] : &fallback_training;
    int family = (int)family_from_name(fam->s ? fam->s : "");
    /* The model path has a static default too; the built-in demo model brings the demo's defaults. */
    int model_idx = sdt_schema_find("pretrained_model_name_or_path");
    assert(model_idx >= 0);
    const char *model = cfg->is_set[model_idx] ? cfg->values[model_idx].s : settings[model_idx].default_text;
    if (model && strcmp(model, SDT_DEMO_MODEL_NAME) == 0)
        family = SDT_FAMILY_DEMO;
    int training = (int)training_from_name(tr->s ? tr->s : "");
    if (family == cfg->defaults_family && training == cfg->defaults_training)
        return 0;
    for (size_t k = 0; k < cfg->count; k++) {
        sdt_value value;
        char *error = NULL;
        const char *text = default_text_for(&settings[k], family, training);
        if (sdt_value_parse_text(&settings[k], text ? text : "", &value, &error) != 0) {
            /* The schema test proves every default parses; reaching here means out of memory. */
            free(error);
            return -1;
        }
        sdt_value_free(&cfg->defaults[k]);
        cfg->defaults[k] = value;
    }
    cfg->defaults_family = family;
    cfg->defaults_training = training;
    return 0;
}

sdt_config *sdt_config_new(void)
{
    sdt_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg)
        return NULL;
    cfg->count = sdt_schema_count();
    cfg->source = sdt_strdup("");
    cfg->values = calloc(cfg->count, sizeof *cfg->values);
    cfg->defaults = calloc(cfg->count, sizeof *cfg->defaults);
    cfg->is_set = calloc(cfg->count, sizeof *cfg->is_set);
    cfg->line = calloc(cfg->count, sizeof *cfg->line);
    cfg->col = calloc(cfg->count, sizeof *cfg->col);
    cfg->defaults_family = cfg->defaults_training = -1;
    if (!cfg->source || !cfg->values || !cfg->defaults || !cfg->is_set || !cfg->line || !cfg->col ||
        refresh_defaults(cfg) != 0) {
        sdt_config_free(cfg);
        return NULL;
    }
    return cfg;
}

sdt_config *sdt_config_new_template(void)
{
    sdt_config *cfg = sdt_config_new();
    if (!cfg)
        return NULL;
    const sdt_setting *settings = sdt_schema_settings();
    /* Template texts first (the model path picks the family), then the defaults they imply. */
    for (size_t k = 0; k < cfg->count; k++) {
        if (!(settings[k].flags & SDT_FLAG_TEMPLATE) || !settings[k].template_text)
            continue;
        sdt_value value;
        char *error = NULL;
        int rc = sdt_value_parse_text(&settings[k], settings[k].template_text, &value, &error);
        free(error);
        if (rc == 0) {
            rc = sdt_config_set_value(cfg, (int)k, &value);
            sdt_value_free(&value);
        }
        if (rc != 0) {
            sdt_config_free(cfg);
            return NULL;
        }
    }
    for (size_t k = 0; k < cfg->count; k++)
        if ((settings[k].flags & SDT_FLAG_TEMPLATE) && !settings[k].template_text &&
            sdt_config_set_value(cfg, (int)k, &cfg->defaults[k]) != 0) {
            sdt_config_free(cfg);
            return NULL;
        }
    return cfg;
}

void sdt_config_free(sdt_config *cfg)
{
    if (!cfg)
        return;
    for (size_t k = 0; k < cfg->count; k++) {
        if (cfg->values)
            sdt_value_free(&cfg->values[k]);
        if (cfg->defaults)
            sdt_value_free(&cfg->defaults[k]);
    }
    free(cfg->values);
    free(cfg->defaults);
    free(cfg->is_set);
    free(cfg->line);
    free(cfg->col);
    free(cfg->source);
    free(cfg);
}

const char *sdt_config_source(const sdt_config *cfg) { return cfg->source; }

void sdt_config_set_source(sdt_config *cfg, char *source)
{
    free(cfg->source);
    cfg->source = source;
}

static bool valid_index(const sdt_config *cfg, int setting)
{
    return setting >= 0 && (size_t)setting < cfg->count;
}

bool sdt_config_is_set(const sdt_config *cfg, int setting)
{
    return valid_index(cfg, setting) && cfg->is_set[setting];
}

bool sdt_config_is_changed(const sdt_config *cfg, int setting)
{
    return sdt_config_is_set(cfg, setting) &&
           !sdt_value_equal(&cfg->values[setting], &cfg->defaults[setting]);
}

const sdt_value *sdt_config_default(const sdt_config *cfg, int setting)
{
    assert(valid_index(cfg, setting));
    return &cfg->defaults[setting];
}

const sdt_value *sdt_config_get(const sdt_config *cfg, int setting)
{
    assert(valid_index(cfg, setting));
    return cfg->is_set[setting] ? &cfg->values[setting] : &cfg->defaults[setting];
}

void sdt_config_origin(const sdt_config *cfg, int setting, int *line, int *col)
{
    bool known = valid_index(cfg, setting) && cfg->is_set[setting];
    *line = known ? cfg->line[setting] : 0;
    *col = known ? cfg->col[setting] : 0;
}

static const sdt_value *get_by_key(const sdt_config *cfg, const char *key, sdt_type type)
{
    int k = sdt_schema_find(key);
    assert(k >= 0 && "unknown setting key");
    const sdt_value *v = sdt_config_get(cfg, k);
    assert(v->type == type || (type == SDT_T_STRING && (v->type == SDT_T_PATH || v->type == SDT_T_ENUM)));
    (void)type;
    return v;
}

bool sdt_config_bool(const sdt_config *cfg, const char *key) { return get_by_key(cfg, key, SDT_T_BOOL)->b; }
long long sdt_config_int(const sdt_config *cfg, const char *key)
{
    return get_by_key(cfg, key, SDT_T_INT)->i;
}
double sdt_config_float(const sdt_config *cfg, const char *key)
{
    return get_by_key(cfg, key, SDT_T_FLOAT)->f;
}

const char *sdt_config_str(const sdt_config *cfg, const char *key)
{
    const char *s = get_by_key(cfg, key, SDT_T_STRING)->s;
    return s ? s : "";
}

sdt_family sdt_config_family(const sdt_config *cfg)
{
    if (strcmp(sdt_config_str(cfg, "pretrained_model_name_or_path"), SDT_DEMO_MODEL_NAME) == 0)
        return SDT_FAMILY_DEMO;
    return family_from_name(sdt_config_str(cfg, "model_family"));
}

sdt_training sdt_config_training(const sdt_config *cfg)
{
    return training_from_name(sdt_config_str(cfg, "training_type"));
}

int sdt_config_set_value(sdt_config *cfg, int setting, const sdt_value *value)
{
    assert(valid_index(cfg, setting));
    sdt_value copy;
    if (sdt_value_copy(&copy, value) != 0)
        return -1;
    sdt_value_free(&cfg->values[setting]);
    cfg->values[setting] = copy;
    cfg->is_set[setting] = true;
    cfg->line[setting] = cfg->col[setting] = 0;
    return refresh_defaults(cfg);
}

void sdt_config_unset(sdt_config *cfg, int setting)
{
    assert(valid_index(cfg, setting));
    sdt_value_free(&cfg->values[setting]);
    cfg->is_set[setting] = false;
    cfg->line[setting] = cfg->col[setting] = 0;
    /* Out of memory here leaves the previous defaults in place; they are still valid values. */
    (void)refresh_defaults(cfg);
}

int sdt_config_set_text(sdt_config *cfg, int setting, const char *text, sdt_diag_list *diags)
{
    const sdt_setting *s = &sdt_schema_settings()[setting];
    sdt_value value;
    char *error = NULL;
    if (sdt_value_parse_text(s, text, &value, &error) != 0) {
        sdt_diag_add(diags, SDT_SEV_ERROR, cfg->source, 0, 0, setting, "%s", error ? error : "out of memory");
        free(error);
        return -1;
    }
    char *problem = sdt_value_check(s, &value);
    if (problem) {
        sdt_diag_add(diags, SDT_SEV_ERROR, cfg->source, 0, 0, setting, "%s", problem);
        free(problem);
        sdt_value_free(&value);
        return -1;
    }
    int rc = sdt_config_set_value(cfg, setting, &value);
    sdt_value_free(&value);
    if (rc != 0)
        sdt_diag_add(diags, SDT_SEV_ERROR, cfg->source, 0, 0, setting, "out of memory");
    return rc;
}

/* ---- loading ---------------------------------------------------------------------------------- */

static const char *setting_key(const void *ctx, size_t i) { return ((const sdt_setting *)ctx)[i].key; }

int sdt_schema_suggest(const char *name)
{
    return sdt_closest_match(name, setting_key, sdt_schema_settings(), sdt_schema_count());
}

static const char *section_name_at(const void *ctx, size_t i)
{
    (void)ctx;
    return sdt_section_name((sdt_section)i);
}

static int suggest_section(const char *name)
{
    return sdt_closest_match(name, section_name_at, NULL, SDT_SEC_COUNT);
}

typedef struct load_context {
    sdt_config *cfg;
    const char *file;
    sdt_diag_list *diags;
} load_context;

static void report_key_elsewhere(load_context *ctx, const sdt_toml_node *node, const char *where, int k)
{
    const sdt_setting *s = &sdt_schema_settings()[k];
    sdt_diag_add(ctx->diags, SDT_SEV_ERROR, ctx->file, node->key_line, node->key_col, k,
                 "%s belongs in [%s], not %s", s->key, sdt_section_name(s->section), where);
}

static void report_unknown_key(load_context *ctx, const sdt_toml_node *node, const char *where, int section)
{
    const sdt_setting *settings = sdt_schema_settings();
    int alias = sdt_schema_find_alias(node->key);
    if (alias >= 0) {
        sdt_diag_add(ctx->diags, SDT_SEV_ERROR, ctx->file, node->key_line, node->key_col, alias,
                     "unknown key '%s' %s: that is kohya's name; sdtune calls it '%s' (in [%s])", node->key,
                     where, settings[alias].key, sdt_section_name(settings[alias].section));
        return;
    }
    int guess = sdt_schema_suggest(node->key);
    if (guess >= 0 && (int)settings[guess].section == section)
        sdt_diag_add(ctx->diags, SDT_SEV_ERROR, ctx->file, node->key_line, node->key_col, guess,
                     "unknown key '%s' %s; did you mean '%s'?", node->key, where, settings[guess].key);
    else if (guess >= 0)
        sdt_diag_add(ctx->diags, SDT_SEV_ERROR, ctx->file, node->key_line, node->key_col, guess,
                     "unknown key '%s' %s; did you mean '%s' (in [%s])?", node->key, where,
                     settings[guess].key, sdt_section_name(settings[guess].section));
    else
        sdt_diag_add(ctx->diags, SDT_SEV_ERROR, ctx->file, node->key_line, node->key_col, -1,
                     "unknown key '%s' %s (docs/config.md lists every setting)", node->key, where);
}

static void load_setting(load_context *ctx, int k, const sdt_toml_node *node)
{
    const sdt_setting *s = &sdt_schema_settings()[k];
    sdt_value value;
    char *error = NULL;
    if (sdt_value_from_toml(s, node, &value, &error) != 0) {
        sdt_diag_add(ctx->diags, SDT_SEV_ERROR, ctx->file, node->line, node->col, k, "%s",
                     error ? error : "out of memory");
        free(error);
        return;
    }
    char *problem = sdt_value_check(s, &value);
    if (problem) {
        sdt_diag_add(ctx->diags, SDT_SEV_ERROR, ctx->file, node->line, node->col, k, "%s", problem);
        free(problem);
    } else if (sdt_config_set_value(ctx->cfg, k, &value) != 0) {
        sdt_diag_add(ctx->diags, SDT_SEV_ERROR, ctx->file, node->line, node->col, k, "out of memory");
    } else {
        ctx->cfg->line[k] = node->line;
        ctx->cfg->col[k] = node->col;
    }
    sdt_value_free(&value);
}

static void load_section(load_context *ctx, const sdt_toml_node *table, int section)
{
    const char *name = sdt_section_name((sdt_section)section);
    char where[64];
    snprintf(where, sizeof where, "in [%s]", name);
    for (size_t m = 0; m < table->count; m++) {
        const sdt_toml_node *member = &table->children[m];
        int k = sdt_schema_find(member->key);
        if (k < 0)
            report_unknown_key(ctx, member, where, section);
        else if ((int)sdt_schema_settings()[k].section != section)
            report_key_elsewhere(ctx, member, where, k);
        else
            load_setting(ctx, k, member);
    }
}

static void load_root(load_context *ctx, const sdt_toml_node *root)
{
    for (size_t m = 0; m < root->count; m++) {
        const sdt_toml_node *member = &root->children[m];
        int section = sdt_schema_find_section(member->key);
        if (section >= 0 && member->kind == SDT_TOML_TABLE) {
            load_section(ctx, member, section);
            continue;
        }
        if (section >= 0) {
            sdt_diag_add(ctx->diags, SDT_SEV_ERROR, ctx->file, member->key_line, member->key_col, -1,
                         "'%s' is a section: write it as a table, [%s]", member->key, member->key);
            continue;
        }
        int k = sdt_schema_find(member->key);
        if (k >= 0) {
            report_key_elsewhere(ctx, member, "at the top level", k);
            continue;
        }
        if (member->kind != SDT_TOML_TABLE) {
            report_unknown_key(ctx, member, "at the top level", -1);
            continue;
        }
        int guess = suggest_section(member->key);
        if (guess >= 0)
            sdt_diag_add(ctx->diags, SDT_SEV_ERROR, ctx->file, member->key_line, member->key_col, -1,
                         "unknown section [%s]; did you mean [%s]?", member->key,
                         sdt_section_name((sdt_section)guess));
        else
            sdt_diag_add(
                ctx->diags, SDT_SEV_ERROR, ctx->file, member->key_line, member->key_col, -1,
                "unknown section [%s]; the sections are model, folders, dataset, training, optimizer, "
                "lr_scheduler, network, noise_loss, sampling, saving, logging, precision_memory, "
                "hardware, metadata",
                member->key);
    }
}

/* Line and column (1-based, in bytes) of a byte offset. */
static void place_of(const char *text, size_t offset, int *line, int *col)
{
    *line = 1;
    *col = 1;
    for (size_t k = 0; k < offset; k++) {
        if (text[k] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

sdt_config *sdt_config_load_text(const char *text, size_t len, const char *name, sdt_diag_list *diags)
{
    const char *file = name ? name : "";
    size_t bad = sdt_utf8_invalid_at(text, len);
    if (bad < len) {
        int line, col;
        place_of(text, bad, &line, &col);
        sdt_diag_add(diags, SDT_SEV_ERROR, file, line, col, -1,
                     "not valid UTF-8 (byte 0x%02X); a config must be UTF-8 text", (unsigned char)text[bad]);
        return NULL;
    }
    sdt_toml_node *root = NULL;
    if (sdt_toml_parse(text, len, file, &root, diags) != 0)
        return NULL;
    sdt_config *cfg = sdt_config_new();
    char *source = cfg ? sdt_strdup(file) : NULL;
    if (!cfg || !source) {
        free(source);
        sdt_config_free(cfg);
        sdt_toml_free(root);
        sdt_diag_add(diags, SDT_SEV_ERROR, file, 0, 0, -1, "out of memory");
        return NULL;
    }
    sdt_config_set_source(cfg, source);
    load_context ctx = {.cfg = cfg, .file = file, .diags = diags};
    load_root(&ctx, root);
    sdt_toml_free(root);
    sdt_diag_list_sort(diags);
    return cfg;
}

sdt_config *sdt_config_load_file(const char *path, sdt_diag_list *diags)
{
    char *text = NULL, *error = NULL;
    size_t len = 0;
    if (sdt_read_file(path, SDT_CONFIG_MAX_BYTES, &text, &len, &error) != 0) {
        sdt_diag_add(diags, SDT_SEV_ERROR, path, 0, 0, -1, "%s", error ? error : "out of memory");
        free(error);
        return NULL;
    }
    sdt_config *cfg = sdt_config_load_text(text, len, path, diags);
    free(text);
    return cfg;
}

/* ---- relevance -------------------------------------------------------------------------------- */

static bool float_positive(const sdt_config *cfg, const char *key) { return sdt_config_float(cfg, key) > 0; }

bool sdt_config_relevant(const sdt_config *cfg, int setting)
{
    const sdt_setting *s = &sdt_schema_settings()[setting];
    sdt_training training = sdt_config_training(cfg);
    sdt_family family = sdt_config_family(cfg);
    const char *scheduler = sdt_config_str(cfg, "lr_scheduler");
    const char *log_with = sdt_config_str(cfg, "log_with");
    const char *loss = sdt_config_str(cfg, "loss_type");
    switch (s->relevance) {
    case SDT_REL_ALWAYS: return true;
    case SDT_REL_LORA: return training == SDT_TRAIN_LORA;
    case SDT_REL_FULL: return training != SDT_TRAIN_LORA;
    case SDT_REL_DREAMBOOTH: return training == SDT_TRAIN_DREAMBOOTH;
    case SDT_REL_FINETUNE: return training == SDT_TRAIN_FINETUNE;
    case SDT_REL_SDXL: return family == SDT_FAMILY_SDXL;
    case SDT_REL_NOT_SDXL: return family != SDT_FAMILY_SDXL;
    case SDT_REL_CONV: return training == SDT_TRAIN_LORA && sdt_config_int(cfg, "conv_dim") > 0;
    case SDT_REL_BUCKETS: return sdt_config_bool(cfg, "enable_bucket");
    case SDT_REL_HUBER: return strcmp(loss, "huber") == 0 || strcmp(loss, "smooth_l1") == 0;
    case SDT_REL_NOISE_OFFSET: return float_positive(cfg, "noise_offset");
    case SDT_REL_MULTIRES: return sdt_config_int(cfg, "multires_noise_iterations") > 0;
    case SDT_REL_IP_NOISE: return float_positive(cfg, "ip_noise_gamma");
    case SDT_REL_RESTARTS: return strcmp(scheduler, "cosine_with_restarts") == 0;
    case SDT_REL_POLYNOMIAL: return strcmp(scheduler, "polynomial") == 0;
    case SDT_REL_SAMPLING:
        return sdt_config_int(cfg, "sample_every_n_steps") > 0 ||
               sdt_config_int(cfg, "sample_every_n_epochs") > 0 || sdt_config_bool(cfg, "sample_at_first");
    case SDT_REL_STATE:
        return sdt_config_bool(cfg, "save_state") || sdt_config_bool(cfg, "save_state_on_train_end");
    case SDT_REL_TRACKER: return strcmp(log_with, "none") != 0;
    case SDT_REL_WANDB: return strcmp(log_with, "wandb") == 0 || strcmp(log_with, "all") == 0;
    case SDT_REL_VALIDATION: return float_positive(cfg, "validation_split");
    case SDT_REL_TEXT_ENCODER:
        if (training == SDT_TRAIN_LORA)
            return !sdt_config_bool(cfg, "network_train_unet_only");
        return sdt_config_bool(cfg, "train_text_encoder");
    case SDT_REL_COUNT: break;
    }
    return true;
}
