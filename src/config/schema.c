/* Names and lookups over the schema table (the table itself is schema_table.c). */
#include <string.h>

#include "sdtune/schema.h"

static const char *const section_names[SDT_SEC_COUNT] = {
    [SDT_SEC_MODEL] = "model",         [SDT_SEC_FOLDERS] = "folders",
    [SDT_SEC_DATASET] = "dataset",     [SDT_SEC_TRAINING] = "training",
    [SDT_SEC_OPTIMIZER] = "optimizer", [SDT_SEC_LR_SCHEDULER] = "lr_scheduler",
    [SDT_SEC_NETWORK] = "network",     [SDT_SEC_NOISE_LOSS] = "noise_loss",
    [SDT_SEC_SAMPLING] = "sampling",   [SDT_SEC_SAVING] = "saving",
    [SDT_SEC_LOGGING] = "logging",     [SDT_SEC_PRECISION_MEMORY] = "precision_memory",
    [SDT_SEC_HARDWARE] = "hardware",   [SDT_SEC_METADATA] = "metadata",
};

static const char *const section_titles[SDT_SEC_COUNT] = {
    [SDT_SEC_MODEL] = "Model",         [SDT_SEC_FOLDERS] = "Folders",
    [SDT_SEC_DATASET] = "Dataset",     [SDT_SEC_TRAINING] = "Training",
    [SDT_SEC_OPTIMIZER] = "Optimizer", [SDT_SEC_LR_SCHEDULER] = "LR schedule",
    [SDT_SEC_NETWORK] = "Network",     [SDT_SEC_NOISE_LOSS] = "Noise & loss",
    [SDT_SEC_SAMPLING] = "Sampling",   [SDT_SEC_SAVING] = "Saving",
    [SDT_SEC_LOGGING] = "Logging",     [SDT_SEC_PRECISION_MEMORY] = "Precision & memory",
    [SDT_SEC_HARDWARE] = "Hardware",   [SDT_SEC_METADATA] = "Metadata",
};

static const char *const relevance_texts[SDT_REL_COUNT] = {
    [SDT_REL_ALWAYS] = "",
    [SDT_REL_LORA] = "when training_type = lora",
    [SDT_REL_FULL] = "when training_type = dreambooth or finetune",
    [SDT_REL_DREAMBOOTH] = "when training_type = dreambooth",
    [SDT_REL_FINETUNE] = "when training_type = finetune",
    [SDT_REL_SDXL] = "when model_family = sdxl",
    [SDT_REL_NOT_SDXL] = "when model_family = sd1 or sd2",
    [SDT_REL_CONV] = "when training_type = lora and conv_dim > 0",
    [SDT_REL_BUCKETS] = "when enable_bucket = true",
    [SDT_REL_HUBER] = "when loss_type = huber or smooth_l1",
    [SDT_REL_NOISE_OFFSET] = "when noise_offset > 0",
    [SDT_REL_MULTIRES] = "when multires_noise_iterations > 0",
    [SDT_REL_IP_NOISE] = "when ip_noise_gamma > 0",
    [SDT_REL_RESTARTS] = "when lr_scheduler = cosine_with_restarts",
    [SDT_REL_POLYNOMIAL] = "when lr_scheduler = polynomial",
    [SDT_REL_SAMPLING] = "when sample images are made (sample_every_n_steps, _epochs or sample_at_first)",
    [SDT_REL_STATE] = "when save_state or save_state_on_train_end is on",
    [SDT_REL_TRACKER] = "when log_with is not none",
    [SDT_REL_WANDB] = "when log_with = wandb or all",
    [SDT_REL_VALIDATION] = "when validation_split > 0",
    [SDT_REL_TEXT_ENCODER] = "when the text encoder is trained",
};

static const char *const family_names[SDT_FAMILY_COUNT + 1] = {"sd1", "sd2", "sdxl", "tiny-sd15"};
static const char *const training_names[SDT_TRAIN_COUNT] = {"lora", "dreambooth", "finetune"};

const char *sdt_family_name(sdt_family family)
{
    return (unsigned)family <= SDT_FAMILY_DEMO ? family_names[family] : "?";
}

const char *sdt_training_name(sdt_training training)
{
    return (unsigned)training < SDT_TRAIN_COUNT ? training_names[training] : "?";
}

const char *sdt_section_name(sdt_section section)
{
    return (unsigned)section < SDT_SEC_COUNT ? section_names[section] : "?";
}

const char *sdt_section_title(sdt_section section)
{
    return (unsigned)section < SDT_SEC_COUNT ? section_titles[section] : "?";
}

const char *sdt_relevance_text(sdt_relevance relevance)
{
    return (unsigned)relevance < SDT_REL_COUNT ? relevance_texts[relevance] : "";
}

const char *sdt_type_name(sdt_type type)
{
    switch (type) {
    case SDT_T_BOOL: return "bool";
    case SDT_T_INT: return "int";
    case SDT_T_FLOAT: return "float";
    case SDT_T_STRING: return "string";
    case SDT_T_PATH: return "path";
    case SDT_T_ENUM: return "enum";
    case SDT_T_LIST: return "list";
    }
    return "?";
}

int sdt_schema_find(const char *key)
{
    const sdt_setting *settings = sdt_schema_settings();
    size_t n = sdt_schema_count();
    for (size_t i = 0; i < n; i++)
        if (strcmp(settings[i].key, key) == 0)
            return (int)i;
    return -1;
}

int sdt_schema_find_section(const char *name)
{
    for (int s = 0; s < SDT_SEC_COUNT; s++)
        if (strcmp(section_names[s], name) == 0)
            return s;
    return -1;
}

/* Whether the space-separated list contains word exactly. */
static int list_has_word(const char *list, const char *word)
{
    size_t len = strlen(word);
    for (const char *p = list; *p;) {
        while (*p == ' ')
            p++;
        const char *end = strchr(p, ' ');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == len && n && strncmp(p, word, n) == 0)
            return 1;
        p += n;
    }
    return 0;
}

int sdt_schema_find_alias(const char *name)
{
    const sdt_setting *settings = sdt_schema_settings();
    size_t n = sdt_schema_count();
    for (size_t i = 0; i < n; i++)
        if (settings[i].kohya_aliases && list_has_word(settings[i].kohya_aliases, name))
            return (int)i;
    return -1;
}
