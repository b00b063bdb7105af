/* A whole Stable Diffusion model (UNet, text encoder, VAE) and its checkpoints: loading single-file (LDM)
 * safetensors and diffusers folders, with the family detected and the config derived from the files;
 * saving both layouts; random initialisation. See docs/checkpoints.md. */
#ifndef SDTUNE_MODELS_CHECKPOINT_H
#define SDTUNE_MODELS_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "arch.h"
#include "model_config.h"
#include "params.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The components, in the order of sdt_model_table. */
enum { SDT_COMPONENT_UNET, SDT_COMPONENT_TEXT_ENCODER, SDT_COMPONENT_VAE, SDT_COMPONENT_COUNT };
/* "unet", "text_encoder", "vae". */
const char *sdt_component_name(int component);

typedef struct sdt_model {
    /* The configs. For a loaded model they are derived from the files; name is the preset whose topology
     * they match ("sd15", "sd15-tiny") or "sd1-custom". */
    sdt_model_arch arch;
    sdt_model_family family;
    char *arch_notes; /* how the configs differ from the preset named (the vocabulary); NULL when equal */
    sdt_param_table unet, text_encoder, vae;
    int has_values; /* values allocated and filled (not after a header-only load) */
} sdt_model;

/* The table of a component (SDT_COMPONENT_*). */
sdt_param_table *sdt_model_table(sdt_model *m, int component);
const sdt_param_table *sdt_model_table_const(const sdt_model *m, int component);

/* Builds the three parameter tables for arch (no values). Returns 0, or -1 with *error set (caller frees).
 * m is always initialised: sdt_model_free it either way. */
int sdt_model_init(sdt_model *m, const sdt_model_arch *arch, char **error);
/* Frees the tables and their values (e may be NULL when nothing was allocated). */
void sdt_model_free(sdt_engine *e, sdt_model *m);
/* Allocates every table's values in dtype (values uninitialised). */
int sdt_model_alloc(sdt_engine *e, sdt_model *m, sdt_dtype dtype, char **error);

/* ---- random initialisation (model_init.c) ---------------------------------------------------------------
 * Linear and conv weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (PyTorch's defaults), norm weights 1
 * and biases 0, embeddings N(0, 0.02) (CLIP's). Every value is a function of (seed, component, parameter
 * index, element index) through splitmix64, so the result does not depend on threads or on the order of
 * work, and a file streamed from the generator equals one saved from an initialised model. */

/* Fills every allocated value of m. */
int sdt_model_init_random(sdt_engine *e, sdt_model *m, uint64_t seed, char **error);
/* The value of element `index` (engine layout) of parameter `param` of a component's table. */
float sdt_init_value(const sdt_param *p, uint64_t seed, int component, size_t param, uint64_t index);

/* ---- loading (checkpoint_load.c) ------------------------------------------------------------------------
 */

typedef struct sdt_model_load_options {
    const char *vae_path; /* a VAE that replaces the checkpoint's: single file (LDM or diffusers names, with
                             or without first_stage_model.), a diffusers vae/ folder or its weights file */
    sdt_dtype dtype;      /* of the loaded values: SDT_F32 (0, the default), SDT_F16 or SDT_BF16 */
    int vae_f32;          /* the VAE's values F32 whatever dtype (mixed precision's no_half_vae) */
    int header_only;      /* names, shapes and dtypes only (inspect): no engine needed, no value is read */
    /* Bit c (1u << SDT_COMPONENT_UNET, ...): that component's values F32 whatever dtype (the trained
     * networks of full training under mixed precision keep F32 masters read from the file). */
    unsigned f32_components;
    /* Bit c (1u << SDT_COMPONENT_UNET, ...): that component's frozen linear and conv weights are stored as
     * F8_E4M3 with a per-tensor scale computed from the loaded values (sdt_param_table.f8_weights). */
    unsigned f8_components;
} sdt_model_load_options;

typedef enum sdt_problem_kind {
    SDT_PROBLEM_MISSING,           /* a tensor of the network is not in the files */
    SDT_PROBLEM_MISSING_COMPONENT, /* a whole network is absent (its tensors are not listed one by one) */
    SDT_PROBLEM_UNEXPECTED,        /* a tensor that belongs to no network and is not a known extra key */
    SDT_PROBLEM_SHAPE,             /* a tensor of the wrong shape */
    SDT_PROBLEM_DTYPE,             /* a tensor of a dtype that is not F32, F16 or BF16 */
    SDT_PROBLEM_DUPLICATE,         /* two keys for one tensor */
} sdt_problem_kind;

const char *sdt_problem_kind_name(sdt_problem_kind kind); /* "missing", "unexpected", ... */

typedef struct sdt_ckpt_problem {
    sdt_problem_kind kind;
    int component; /* SDT_COMPONENT_*, or -1 for a key of no component */
    char *file;    /* the file that has (or should have) the tensor */
    char *key;     /* the key in that file */
    char *message; /* "file X: KEY is [320, 4, 3, 3], expected [320, 320, 3, 3]" */
} sdt_ckpt_problem;

typedef struct sdt_ckpt_ignored {
    char *file;
    char *key;
    const char *reason; /* static: "noise schedule buffer", "EMA copy", ... */
} sdt_ckpt_ignored;

typedef struct sdt_ckpt_component {
    char *source;       /* the file(s) the component came from ("a, b" for shards); NULL when none */
    size_t tensors;     /* in the table */
    size_t found;       /* of those, present with the right shape and a usable dtype */
    int64_t parameters; /* elements of the table */
    size_t dtypes[SDT_DTYPE_COUNT]; /* file dtypes of the tensors found */
    size_t missing, unexpected, bad_shape, bad_dtype, duplicate;
} sdt_ckpt_component;

typedef struct sdt_ckpt_report {
    const char *format; /* "ldm" (single file) or "diffusers" (folder); NULL when not recognised */
    sdt_model_family family;
    char *fatal; /* why nothing could be matched (a pickle, a malformed file, an unsupported family) */
    sdt_ckpt_component components[SDT_COMPONENT_COUNT];
    sdt_ckpt_problem *problems;
    size_t n_problems, cap_problems;
    size_t n_unexpected_other; /* unexpected keys of no component */
    sdt_ckpt_ignored *ignored;
    size_t n_ignored, cap_ignored;
} sdt_ckpt_report;

void sdt_ckpt_report_free(sdt_ckpt_report *r);

/* Opens the model at path: a single-file .safetensors checkpoint or a diffusers folder (see
 * docs/checkpoints.md), detects its family, derives the configs from it, builds the tables, matches every
 * tensor and, unless header_only, allocates the tables on e and reads the values (conv weights permuted to
 * the engine's layout, dtypes converted).
 *
 * Returns 0 when the model is complete (nothing missing, unexpected, misshapen or of a bad dtype), else -1
 * with *error set (caller frees): the problems, each naming the file and the tensor, up to a cap, and their
 * count. report (may be NULL) receives everything found, uncapped; free it with sdt_ckpt_report_free. m is
 * always initialised (with the tables when the configs could be derived): sdt_model_free it either way.
 * Pickle files (.ckpt, .pt, .pth, .bin, or zip/pickle contents) are refused unread, with how to convert
 * them. */
int sdt_model_load(sdt_engine *e, const char *path, const sdt_model_load_options *options, sdt_model *m,
                   sdt_ckpt_report *report, char **error);

/* ---- saving (checkpoint_save.c) -------------------------------------------------------------------------
 */

typedef enum sdt_ckpt_format {
    SDT_CKPT_LDM,       /* one .safetensors file, LDM names with prefixes */
    SDT_CKPT_DIFFUSERS, /* a folder: model_index.json, unet/, text_encoder/, vae/, scheduler/ */
} sdt_ckpt_format;

typedef struct sdt_model_save_options {
    sdt_ckpt_format format;
    sdt_dtype dtype; /* of the stored tensors: F32 (0, the default), F16 or BF16 */
} sdt_model_save_options;

/* Saves m's values (read through e). Each file is written atomically (a temporary file renamed into place);
 * for a folder, model_index.json is written last. Returns 0, or -1 with *error set (caller frees). */
int sdt_model_save(sdt_engine *e, const sdt_model *m, const char *path, const sdt_model_save_options *options,
                   char **error);
/* Saves the values sdt_model_init_random would give m (whose tables need no values), generating them while
 * writing: a model of any size in constant memory. */
int sdt_model_save_random(const sdt_model *m, uint64_t seed, const char *path,
                          const sdt_model_save_options *options, char **error);

#ifdef __cplusplus
}
#endif
#endif
