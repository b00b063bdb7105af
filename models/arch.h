/* Architectures as data: the config of each network, the presets (real models and tiny ones of the same
 * topology), and the parameter table each config yields. Values and their sources: sd_arch_spec.md §1
 * (UNet), §2 (SDXL), §3 (text encoders), §4 (VAE). */
#ifndef SDTUNE_MODELS_ARCH_H
#define SDTUNE_MODELS_ARCH_H

#include "params.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SDT_UNET_MAX_LEVELS 4
/* Resnets per down level the table builder accepts (SD models have 2). */
#define SDT_UNET_MAX_LAYERS 8

typedef enum sdt_prediction {
    SDT_PREDICT_EPSILON,
    SDT_PREDICT_V,
} sdt_prediction;

typedef struct sdt_unet_config {
    int in_channels, out_channels;
    int levels;                                   /* 4 for SD1.x/2.x, 3 for SDXL */
    int block_out_channels[SDT_UNET_MAX_LEVELS];  /* channels per level */
    int layers_per_block;                         /* resnets per down level; up levels have one more */
    int level_has_attention[SDT_UNET_MAX_LEVELS]; /* down level i (up levels mirror it) */
    int transformer_depth[SDT_UNET_MAX_LEVELS];   /* transformer blocks per attention of level i */
    int mid_transformer_depth;
    int heads[SDT_UNET_MAX_LEVELS]; /* attention heads at level i (head_dim = channels / heads) */
    int mid_heads;
    int cross_attention_dim;   /* width of the context (text encoder hidden size, or their concat) */
    int use_linear_projection; /* proj_in/proj_out: linear (SD2, SDXL) or 1x1 conv (SD1) in the file */
    int norm_groups;
    float norm_eps;             /* resnets and the output norm */
    float transformer_norm_eps; /* the GroupNorm in front of each transformer (1e-6) */
    /* Added ("vector") conditioning, SDXL: 0 = none. */
    int adm_in_channels;         /* projection_class_embeddings_input_dim: 2816 */
    int addition_time_embed_dim; /* 256 */
    sdt_prediction prediction;
} sdt_unet_config;

/* time_embed_dim = 4 * block_out_channels[0]. */
int sdt_unet_time_embed_dim(const sdt_unet_config *c);

typedef enum sdt_text_layout {
    SDT_TEXT_HF,       /* Hugging Face CLIPTextModel names (CLIP-L) */
    SDT_TEXT_OPENCLIP, /* OpenCLIP names (SD2's ViT-H, SDXL's bigG) */
} sdt_text_layout;

typedef struct sdt_clip_config {
    int vocab_size;
    int max_positions; /* 77 */
    int width;
    int layers;
    int heads;
    int mlp_width;
    sdt_activation act; /* quick_gelu (CLIP-L) or gelu (OpenCLIP) */
    float norm_eps;
    int projection_dim; /* text_projection output width; 0 = no projection */
    int bos_id, eos_id;
    sdt_text_layout layout;
} sdt_clip_config;

#define SDT_VAE_MAX_LEVELS 4

typedef struct sdt_vae_config {
    int in_channels; /* image channels (3) */
    int latent_channels;
    int levels;
    int block_out_channels[SDT_VAE_MAX_LEVELS];
    int layers_per_block; /* encoder resnets per level; decoder levels have one more */
    int norm_groups;
    float norm_eps; /* 1e-6 everywhere in the VAE */
    float scaling_factor;
} sdt_vae_config;

/* A whole model family: what a checkpoint holds and how the pieces fit. */
typedef struct sdt_model_arch {
    const char *name; /* "sd15", "sd15-tiny", "sd2", "sd2-tiny" */
    const char *description;
    sdt_unet_config unet;
    sdt_clip_config text_encoder;
    sdt_vae_config vae;
    int clip_skip_default; /* SD2 uses the penultimate layer */
    int pad_id;            /* tokenizer padding id */
} sdt_model_arch;

/* The presets; NULL when unknown. sdt_model_arch_names lists them for messages ("sd15, sd15-tiny, ..."). */
const sdt_model_arch *sdt_model_arch_find(const char *name);
const sdt_model_arch *sdt_model_arch_at(size_t i); /* NULL past the end */
const char *sdt_model_arch_names(void);

/* Parameter tables (names without prefix, engine shapes). Return 0, or -1 with *error set. The table is
 * initialised here with the component name and LDM prefix. */
int sdt_unet_params(const sdt_unet_config *c, sdt_param_table *t, char **error);
int sdt_clip_params(const sdt_clip_config *c, const char *component, const char *prefix, sdt_param_table *t,
                    char **error);
int sdt_vae_params(const sdt_vae_config *c, sdt_param_table *t, char **error);

/* LDM prefixes (sd_arch_spec §7.1). */
#define SDT_PREFIX_UNET "model.diffusion_model."
#define SDT_PREFIX_VAE "first_stage_model."
#define SDT_PREFIX_CLIP_L "cond_stage_model.transformer."

#ifdef __cplusplus
}
#endif
#endif
