/* The one table of every setting sdtune knows.
 *
 * Each row describes one key of one section of the config TOML. The TUI's form panes, the validator in
 * both processes, the default config.toml, docs/config.md and the kohya import are all generated from
 * this table, so a setting is defined exactly once (src/config/schema_table.c). */
#ifndef SDTUNE_SCHEMA_H
#define SDTUNE_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Sections follow kohya's grouping of its arguments; the order here is the order of the TUI's section
 * list, of config.toml and of docs/config.md. */
typedef enum sdt_section {
    SDT_SEC_MODEL,
    SDT_SEC_FOLDERS,
    SDT_SEC_DATASET,
    SDT_SEC_TRAINING,
    SDT_SEC_OPTIMIZER,
    SDT_SEC_LR_SCHEDULER,
    SDT_SEC_NETWORK,
    SDT_SEC_NOISE_LOSS,
    SDT_SEC_SAMPLING,
    SDT_SEC_SAVING,
    SDT_SEC_LOGGING,
    SDT_SEC_PRECISION_MEMORY,
    SDT_SEC_HARDWARE,
    SDT_SEC_METADATA,
    SDT_SEC_COUNT
} sdt_section;

typedef enum sdt_type {
    SDT_T_BOOL,
    SDT_T_INT,
    SDT_T_FLOAT,
    SDT_T_STRING,
    SDT_T_PATH, /* a string naming a file or folder; "~/" is expanded when used */
    SDT_T_ENUM, /* a string from a fixed list of values */
    SDT_T_LIST, /* a TOML array whose items are all of elem_type (bool/int/float/string/path) */
} sdt_type;

/* When a setting has an effect. The TUI greys out irrelevant fields and the validator warns when an
 * irrelevant setting is given a value, because a value that has no effect is a mistake the user wants
 * to hear about (kohya silently ignores them). */
typedef enum sdt_relevance {
    SDT_REL_ALWAYS,
    SDT_REL_LORA,         /* training_type = lora */
    SDT_REL_FULL,         /* training_type = dreambooth or finetune */
    SDT_REL_DREAMBOOTH,   /* training_type = dreambooth */
    SDT_REL_FINETUNE,     /* training_type = finetune */
    SDT_REL_SDXL,         /* model_family = sdxl */
    SDT_REL_NOT_SDXL,     /* model_family = sd1 or sd2 */
    SDT_REL_CONV,         /* training_type = lora and conv_dim > 0 */
    SDT_REL_BUCKETS,      /* enable_bucket = true */
    SDT_REL_HUBER,        /* loss_type = huber or smooth_l1 */
    SDT_REL_NOISE_OFFSET, /* noise_offset > 0 */
    SDT_REL_MULTIRES,     /* multires_noise_iterations > 0 */
    SDT_REL_IP_NOISE,     /* ip_noise_gamma > 0 */
    SDT_REL_RESTARTS,     /* lr_scheduler = cosine_with_restarts */
    SDT_REL_POLYNOMIAL,   /* lr_scheduler = polynomial */
    SDT_REL_SAMPLING,     /* sample_every_n_steps, sample_every_n_epochs or sample_at_first set */
    SDT_REL_STATE,        /* save_state or save_state_on_train_end */
    SDT_REL_TRACKER,      /* log_with != none */
    SDT_REL_WANDB,        /* log_with = wandb or all */
    SDT_REL_VALIDATION,   /* validation_split > 0 */
    SDT_REL_TEXT_ENCODER, /* the text encoder is trained (LoRA or full) */
    SDT_REL_COUNT
} sdt_relevance;

/* How far the engine is with a setting. A setting the engine does not implement yet is accepted by the
 * schema (so configs stay stable), shown in the UI, and refused by the preflight of a run when the user
 * gives it a value other than its default: never silently ignored. */
typedef enum sdt_impl {
    SDT_IMPL_PLANNED, /* accepted; a run refuses a non-default value until the engine implements it */
    SDT_IMPL_DONE,    /* the engine honours it */
} sdt_impl;

/* Model families and training types, the two settings other defaults depend on. SDT_FAMILY_COUNT counts
 * the values of model_family; SDT_FAMILY_DEMO is not one of them: the defaults follow it when
 * pretrained_model_name_or_path is the built-in demo model "builtin:tiny-sd15" (docs/demo.md), so the same
 * config pointed at a real checkpoint gets that family's defaults without other edits. */
typedef enum sdt_family {
    SDT_FAMILY_SD1,
    SDT_FAMILY_SD2,
    SDT_FAMILY_SDXL,
    SDT_FAMILY_COUNT,
    SDT_FAMILY_DEMO = SDT_FAMILY_COUNT, /* "tiny-sd15" */
} sdt_family;
/* The model path that selects SDT_FAMILY_DEMO. */
#define SDT_DEMO_MODEL_NAME "builtin:tiny-sd15"
typedef enum sdt_training {
    SDT_TRAIN_LORA,
    SDT_TRAIN_DREAMBOOTH,
    SDT_TRAIN_FINETUNE,
    SDT_TRAIN_COUNT
} sdt_training;

#define SDT_ANY (-1)

/* A default that depends on the family and/or the training type. A row's dynamic_defaults is a list
 * ended by an entry whose value is NULL; the first entry that matches wins, the row's default_text
 * applies when none does. family/training are SDT_ANY or one of the enums above. */
typedef struct sdt_dynamic_default {
    int family;
    int training;
    const char *value; /* text form, as default_text */
} sdt_dynamic_default;

/* Flags of a row. */
enum {
    SDT_FLAG_TEMPLATE = 1u << 0, /* written uncommented in the generated config.toml */
    SDT_FLAG_SECRET = 1u << 1,   /* never echoed in logs or metadata (API keys) */
    SDT_FLAG_ADVANCED = 1u << 2, /* the TUI folds it under "advanced" */
};

/* One setting.
 *
 * Text forms (default_text, dynamic defaults, the TUI's edit buffer):
 *   bool    true | false
 *   int     decimal integer            float  decimal or exponent form (1e-4)
 *   string, path, enum: the raw text, no quotes
 *   list    a TOML array literal: [0.9, 0.999] or ["a=1", "b=2"]; [] for empty
 * An empty default_text for a string/path means "unset" (the empty string). */
typedef struct sdt_setting {
    sdt_section section;
    const char *key; /* unique over the whole table, not only within its section */
    sdt_type type;
    sdt_type elem_type;                          /* for SDT_T_LIST: the type of its items; otherwise unused */
    const char *default_text;                    /* text form of the default (see above) */
    const sdt_dynamic_default *dynamic_defaults; /* NULL, or a NULL-value-terminated list */
    bool has_min, has_max; /* inclusive bounds, for int, float and the items of numeric lists */
    double min, max;
    int list_min, list_max;         /* item count bounds for lists; 0/0 = any */
    const char *const *enum_values; /* NULL-terminated, for SDT_T_ENUM */
    const char *help;               /* one line, imperative or descriptive, no trailing full stop */
    sdt_relevance relevance;
    const char *kohya_aliases; /* space-separated names kohya (sd-scripts or the kohya_ss GUI) uses */
    sdt_impl impl;
    unsigned flags;
    const char *template_text; /* the value config.toml starts with when not the default; NULL = default */
} sdt_setting;

/* The table. Index i of these is the setting's id everywhere (config values, TUI fields). */
const sdt_setting *sdt_schema_settings(void);
size_t sdt_schema_count(void);

const char *sdt_section_name(sdt_section section);  /* "model", "noise_loss", ... (the TOML table) */
const char *sdt_section_title(sdt_section section); /* "Model", "Noise & loss", ... (for people) */
const char *sdt_type_name(sdt_type type);           /* "bool", "int", ... */
/* One line saying when a setting is relevant ("when training_type = lora"); "" for SDT_REL_ALWAYS. */
const char *sdt_relevance_text(sdt_relevance relevance);

const char *sdt_family_name(sdt_family family); /* "sd1", "sd2", "sdxl" (model_family), "tiny-sd15" (demo) */
const char *sdt_training_name(sdt_training training); /* "lora", ...: values of training_type */

/* Lookups; -1 when absent. */
int sdt_schema_find(const char *key);
int sdt_schema_find_section(const char *name);
/* A setting whose kohya_aliases contains name; -1 when none. */
int sdt_schema_find_alias(const char *name);

#ifdef __cplusplus
}
#endif
#endif
