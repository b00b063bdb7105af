/* Shared between the LoRA files (train/lora*.c); not part of the interface. */
#ifndef SDTUNE_TRAIN_LORA_INTERNAL_H
#define SDTUNE_TRAIN_LORA_INTERNAL_H

#include <stddef.h>

#include "lora.h"

/* What sdt_lora_network.storage points at: one engine block holding every module's values, then every
 * module's gradients (F32). */
typedef struct sdt_lora_storage {
    sdt_engine *engine;
    float *block;        /* [value_floats + grad_floats] on the engine's device */
    size_t value_floats; /* downs and ups, module after module */
    size_t grad_floats;  /* the same layout again */
} sdt_lora_storage;

/* Whether entry p of a component's table gets a module (kohya's target rules, inventory §6.1): 1 and its
 * kohya name (without suffix) in name and its file kernel in *conv_kernel (0 linear, 1 1x1 conv, 3 3x3
 * conv); 0 when it gets none; -1 with *error set when its name follows no rule. with_conv: LoCon (conv_dim
 * > 0): ResNet blocks, downsamplers and upsamplers too. */
int sdt_lora_target(const sdt_model_arch *arch, int component, const sdt_param *p, int with_conv, char *name,
                    size_t size, int *conv_kernel, char **error);

/* ---- config values as kohya's metadata prints them (lora_config.c) ----------------------------------------
 * Keys must be schema settings. */
struct sdt_config;
/* Whether the setting was written in the config (kohya: the argument was given; unset ones are None). */
int sdt_lora_cfg_is_set(const struct sdt_config *cfg, const char *key);
/* The effective value as Python's str() prints the corresponding argparse value: "True"/"False", "42",
 * "0.0001", the string itself; a list as "a,b". Caller frees; NULL when out of memory or not a setting. */
char *sdt_lora_cfg_python(const struct sdt_config *cfg, const char *key);
/* The same, or "None" when the setting is not set. */
char *sdt_lora_cfg_python_or_none(const struct sdt_config *cfg, const char *key);
/* resolution as width, height ([size] means square). */
void sdt_lora_cfg_resolution(const struct sdt_config *cfg, long long *width, long long *height);
/* Python's repr of a float ("0.0001", "1e-05", "16.0", "1e+16") into buf (at least 32 bytes). */
void sdt_lora_python_float(double value, char *buf, size_t size);

#endif
