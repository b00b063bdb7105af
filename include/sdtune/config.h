/* A configuration: one value per schema setting, loaded from and saved to TOML, and validated.
 *
 * A setting is either set (explicitly, in the file or by the user) or unset, in which case its value is
 * the schema default for the config's model family and training type. Saving writes set settings as
 * `key = value` and unset ones as a commented `# key = default`, so a saved file keeps following the
 * defaults where the user never chose a value. */
#ifndef SDTUNE_CONFIG_H
#define SDTUNE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "sdtune/diag.h"
#include "sdtune/schema.h"
#include "sdtune/value.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The largest config file accepted. Configs are a few KiB; anything near this is not a config. */
#define SDT_CONFIG_MAX_BYTES (1024 * 1024)

typedef struct sdt_config sdt_config;

/* A config with every setting unset (all defaults). NULL when out of memory. */
sdt_config *sdt_config_new(void);
/* The starting point of a new config file: the settings flagged SDT_FLAG_TEMPLATE set to their
 * defaults, everything else unset. config.toml at the repository root is this, saved. */
sdt_config *sdt_config_new_template(void);
void sdt_config_free(sdt_config *cfg);

/* Loading. Every problem goes to diags with file:line:column: syntax errors, unknown sections and keys
 * (with a did-you-mean), wrong types, values out of range. Settings with bad values stay unset.
 * Returns the config (also when it has errors, so a UI can show and fix it) or NULL when the file could
 * not be read or parsed at all; the caller checks sdt_diag_count(diags, SDT_SEV_ERROR). */
sdt_config *sdt_config_load_file(const char *path, sdt_diag_list *diags);
sdt_config *sdt_config_load_text(const char *text, size_t len, const char *name, sdt_diag_list *diags);

/* The file the config came from or was last saved to; "" for a new one. */
const char *sdt_config_source(const sdt_config *cfg);

/* Values. `setting` is a schema index. get returns the effective value (set, or the current default). */
bool sdt_config_is_set(const sdt_config *cfg, int setting);
/* Set, and to a value other than the current default: the user chose something. */
bool sdt_config_is_changed(const sdt_config *cfg, int setting);
const sdt_value *sdt_config_get(const sdt_config *cfg, int setting);
const sdt_value *sdt_config_default(const sdt_config *cfg, int setting);
/* Where a set value was written in its file (line, col 1-based); 0,0 when unknown or unset. */
void sdt_config_origin(const sdt_config *cfg, int setting, int *line, int *col);

/* Convenience reads by key; the key must exist in the schema (asserted). */
bool sdt_config_bool(const sdt_config *cfg, const char *key);
long long sdt_config_int(const sdt_config *cfg, const char *key);
double sdt_config_float(const sdt_config *cfg, const char *key);
const char *sdt_config_str(const sdt_config *cfg, const char *key); /* string, path or enum */
sdt_family sdt_config_family(const sdt_config *cfg);
sdt_training sdt_config_training(const sdt_config *cfg);

/* Sets from the text form (type and range checked); on a bad value returns -1, adds the problem to
 * diags and leaves the setting as it was. */
int sdt_config_set_text(sdt_config *cfg, int setting, const char *text, sdt_diag_list *diags);
/* Sets a copy of value, which must already have been checked; -1 when out of memory. */
int sdt_config_set_value(sdt_config *cfg, int setting, const sdt_value *value);
void sdt_config_unset(sdt_config *cfg, int setting);

/* Whether the setting has an effect with the config's other values (schema relevance). */
bool sdt_config_relevant(const sdt_config *cfg, int setting);

/* The whole config as TOML, every section and every setting, help as comments. NULL when out of memory. */
char *sdt_config_to_toml(const sdt_config *cfg);
/* Writes sdt_config_to_toml atomically (temp file, fsync, rename). -1 on failure with *error set (caller
 * frees). On success the config's source becomes path. */
int sdt_config_save(sdt_config *cfg, const char *path, char **error);

/* docs/config.md: every setting with type, default, range, help. NULL when out of memory. */
char *sdt_schema_markdown(void);

/* What the validator knows about the compute device. */
typedef struct sdt_device_info {
    bool known; /* false: device checks are skipped (validate without a GPU) */
    bool is_gpu;
    int cc_major, cc_minor; /* CUDA compute capability */
    char name[64];
    double memory_gib;
} sdt_device_info;

typedef struct sdt_validate_options {
    /* Check paths: files that must exist, folders that must be writable. */
    bool check_filesystem;
    /* The preflight of a run: also require what a run needs (a model, data, an output folder), and
     * refuse settings the engine does not implement yet when given a non-default value. */
    bool preflight;
    const sdt_device_info *device; /* NULL when unknown */
} sdt_validate_options;

/* Cross-field rules, relevance warnings and (per options) filesystem, device and preflight checks.
 * Per-value type and range problems are found when loading or setting; this adds the rest. */
void sdt_config_validate(const sdt_config *cfg, const sdt_validate_options *options, sdt_diag_list *diags);

#ifdef __cplusplus
}
#endif
#endif
