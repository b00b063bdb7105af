/* Checkpoint key names at the edges: single-file (LDM) names <-> diffusers names, derived by rule from a
 * model's config (sd_arch_spec §7.2, §7.4, §7.5, §7.6), and the keys a checkpoint may carry that are not
 * weights (§7.1). The parameter tables use the LDM names; everything else is converted here. */
#ifndef SDTUNE_MODELS_KEYMAP_H
#define SDTUNE_MODELS_KEYMAP_H

#include <stddef.h>
#include <stdint.h>

#include "arch.h"
#include "params.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The diffusers name of one table entry (an LDM name without prefix) of the UNet or VAE described by the
 * config. Returns 0, or -1 when the name follows no rule (a table built from another config). */
int sdt_keymap_unet_to_diffusers(const sdt_unet_config *c, const char *ldm, char *out, size_t size);
int sdt_keymap_vae_to_diffusers(const sdt_vae_config *c, const char *ldm, char *out, size_t size);

/* Every entry of one component's table with its diffusers name and shape, and the reverse lookup. */
typedef struct sdt_keymap {
    sdt_param_table *table; /* borrowed */
    char **diffusers;       /* [table->count] diffusers name of entry i */
    int *diffusers_ndim;    /* [table->count] */
    int64_t (*diffusers_shape)[SDT_MAX_DIMS];
    sdt_name_index index; /* diffusers name -> entry */
} sdt_keymap;

/* Builds the map of t ("unet", "text_encoder" or "vae", by t->component) for the model arch describes.
 * Returns 0, or -1 with *error set (caller frees). */
int sdt_keymap_build(sdt_keymap *m, sdt_param_table *t, const sdt_model_arch *arch, char **error);
void sdt_keymap_free(sdt_keymap *m);
/* The entry whose diffusers name is name, or -1. Names written by diffusers before 0.17 for the VAE
 * attention (query, key, value, proj_attn) are accepted too. */
long long sdt_keymap_find(const sdt_keymap *m, const char *name);

/* Why a checkpoint key that is not a weight of any network can be ignored ("noise schedule buffer",
 * "EMA copy", ...), or NULL when it is not one of the known extra keys (sd_arch_spec §7.1). key is the
 * whole key as the file has it. */
const char *sdt_ckpt_ignore_reason(const char *key);

#ifdef __cplusplus
}
#endif
#endif
