/* Network configs as files carry them: diffusers' config.json for UNet2DConditionModel and AutoencoderKL,
 * transformers' CLIPTextConfig for the text encoder (the same JSON sits in a single-file checkpoint's
 * metadata when sdtune wrote it), and comparisons between configs (a loaded model against the presets). */
#ifndef SDTUNE_MODELS_MODEL_CONFIG_H
#define SDTUNE_MODELS_MODEL_CONFIG_H

#include "arch.h"
#include "sdtune/dtype.h"
#include "sdtune/strutil.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What a checkpoint is, as far as its names and shapes tell (sd_arch_spec §7.1). */
typedef enum sdt_model_family {
    SDT_MODEL_FAMILY_UNKNOWN,
    SDT_MODEL_FAMILY_SD1,            /* SD 1.x: CLIP ViT-L text encoder, 768-wide context */
    SDT_MODEL_FAMILY_SD1_INPAINTING, /* SD 1.x UNet with 9 input channels */
    SDT_MODEL_FAMILY_SD2,            /* SD 2.x: OpenCLIP ViT-H text encoder, 1024-wide context */
    SDT_MODEL_FAMILY_SD2_INPAINTING,
    SDT_MODEL_FAMILY_SDXL,         /* SDXL base: two text encoders, added conditioning */
    SDT_MODEL_FAMILY_SDXL_REFINER, /* SDXL refiner: bigG only */
} sdt_model_family;

/* "sd1", "sd1-inpainting", "sd2", ... and a description ("Stable Diffusion 1.x"). */
const char *sdt_model_family_name(sdt_model_family f);
const char *sdt_model_family_description(sdt_model_family f);

/* Parse one config.json. Settings that are absent take the library's defaults (diffusers' for the UNet and
 * the VAE, transformers' for CLIPTextConfig). Returns 0 with *out set, or -1 with *error set (caller frees)
 * when the text is not JSON or a value has the wrong type; messages start with source. When the file
 * describes a network the parameter tables cannot express (another block type, an unsupported option), the
 * parse still succeeds as far as it can and *unsupported gets a message (caller frees; NULL when none), so
 * the caller can first say what family the model is. unsupported may be NULL. */
int sdt_unet_config_from_json(const char *text, const char *source, sdt_unet_config *out, char **unsupported,
                              char **error);
int sdt_clip_config_from_json(const char *text, const char *source, sdt_clip_config *out, char **unsupported,
                              char **error);
int sdt_vae_config_from_json(const char *text, const char *source, sdt_vae_config *out, char **unsupported,
                             char **error);

/* config.json text as diffusers / transformers write it (every key they write, sorted, indented by 2), or
 * compact on one line for safetensors metadata. NULL when out of memory. dtype goes into the text
 * encoder's torch_dtype. */
char *sdt_unet_config_to_json(const sdt_unet_config *c, int compact);
char *sdt_clip_config_to_json(const sdt_clip_config *c, int pad_id, sdt_dtype dtype, int compact);
char *sdt_vae_config_to_json(const sdt_vae_config *c, int compact);
/* A scheduler/scheduler_config.json for the SD1.x noise schedule (sd_arch_spec §5.1, §6.1). */
char *sdt_scheduler_config_to_json(sdt_prediction prediction);

/* Append "field a (b)" for every field where a differs from b, separated by ", ", to out; return the
 * number of differences. The text encoder comparison can leave out the vocabulary (its size and the BOS
 * and EOS ids), which the tiny fixtures shrink. */
int sdt_unet_config_diff(const sdt_unet_config *a, const sdt_unet_config *b, sdt_buf *out);
int sdt_clip_config_diff(const sdt_clip_config *a, const sdt_clip_config *b, int ignore_vocab, sdt_buf *out);
int sdt_vae_config_diff(const sdt_vae_config *a, const sdt_vae_config *b, sdt_buf *out);

#ifdef __cplusplus
}
#endif
#endif
