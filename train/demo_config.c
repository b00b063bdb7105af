/* Resolving a config's "builtin:" names to the demo's files. Kept apart from the asset code: the config
 * headers and the model headers both name families, and no file needs both. */
#include <stdlib.h>
#include <string.h>

#include "demo.h"
#include "sdtune/config.h"
#include "sdtune/strutil.h"

/* The path settings that may hold a builtin name, with the name each accepts. */
typedef struct builtin_key {
    const char *key;
    const char *builtin;
} builtin_key;

static const builtin_key builtin_keys[] = {
    {"pretrained_model_name_or_path", SDT_DEMO_MODEL},
    {"train_data_dir", SDT_DEMO_SHAPES},
    {"sample_prompts", SDT_DEMO_SHAPES},
    {"tokenizer_dir", SDT_DEMO_MODEL},
};
#define BUILTIN_KEY_COUNT (sizeof builtin_keys / sizeof builtin_keys[0])

static int set_path(sdt_config *cfg, int k, const char *path, char **error)
{
    sdt_value v = {.type = SDT_T_PATH, .s = (char *)path};
    if (sdt_config_set_value(cfg, k, &v) != 0)
        return sdt_set_error(error, "out of memory");
    return 0;
}

/* The demo's defaults follow the model path; once the path is a real file the config would fall back to
 * SD1.5's. Every unset setting is therefore set to its current default first, so the run keeps exactly
 * the defaults the user saw. */
static int pin_defaults(sdt_config *cfg, char **error)
{
    size_t n = sdt_schema_count();
    for (size_t k = 0; k < n; k++)
        if (!sdt_config_is_set(cfg, (int)k) &&
            sdt_config_set_value(cfg, (int)k, sdt_config_default(cfg, (int)k)) != 0)
            return sdt_set_error(error, "out of memory");
    return 0;
}

static int holds_builtin(const sdt_config *cfg)
{
    for (size_t i = 0; i < BUILTIN_KEY_COUNT; i++)
        if (sdt_builtin_is(sdt_config_str(cfg, builtin_keys[i].key)))
            return 1;
    return 0;
}

int sdt_demo_resolve_config(sdt_config *cfg, const sdt_demo_assets *a, char **error)
{
    for (size_t i = 0; i < BUILTIN_KEY_COUNT; i++) {
        const char *value = sdt_config_str(cfg, builtin_keys[i].key);
        if (sdt_builtin_is(value) && strcmp(value, builtin_keys[i].builtin) != 0)
            return sdt_set_error(error, "%s = \"%s\": unknown built-in name (the demo has %s)",
                                 builtin_keys[i].key, value, builtin_keys[i].builtin);
    }
    int model_is_builtin = strcmp(sdt_config_str(cfg, "pretrained_model_name_or_path"), SDT_DEMO_MODEL) == 0;
    if (pin_defaults(cfg, error) != 0)
        return -1;
    const char *paths[BUILTIN_KEY_COUNT] = {a->model_path, a->train_data_dir, a->sample_prompts,
                                            a->tokenizer_dir};
    for (size_t i = 0; i < BUILTIN_KEY_COUNT; i++) {
        int k = sdt_schema_find(builtin_keys[i].key);
        const char *value = sdt_config_str(cfg, builtin_keys[i].key);
        /* The built-in model's tokenizer is the demo's own unless the user named another. */
        int replace = sdt_builtin_is(value) || (strcmp(builtin_keys[i].key, "tokenizer_dir") == 0 &&
                                                model_is_builtin && value[0] == '\0');
        if (replace && set_path(cfg, k, paths[i], error) != 0)
            return -1;
    }
    return 0;
}

int sdt_demo_resolve(sdt_config *cfg, char **error)
{
    if (!holds_builtin(cfg))
        return 0;
    char *root = sdt_demo_cache_root(error);
    if (!root)
        return -1;
    sdt_demo_assets assets;
    int rc = sdt_demo_prepare(root, &assets, error);
    if (rc == 0)
        rc = sdt_demo_resolve_config(cfg, &assets, error);
    sdt_demo_assets_free(&assets);
    free(root);
    return rc;
}
