/* Which weights get a LoRA module and kohya's names for them (inventory §6.1, §6.2). The tables use LDM
 * names; kohya names SD1/SD2 UNet modules by their diffusers paths, so the UNet name goes through the
 * keymap's LDM -> diffusers rule first. */
#include <stdio.h>
#include <string.h>

#include "keymap.h"
#include "lora_internal.h"
#include "sdtune/strutil.h"

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* prefix + "_" + path without ".weight", '.' -> '_'. */
static int kohya_name(const char *prefix, const char *path, char *out, size_t size)
{
    size_t len = strlen(path) - strlen(".weight");
    int n = snprintf(out, size, "%s_%.*s", prefix, (int)len, path);
    if (n < 0 || (size_t)n >= size)
        return -1;
    for (char *c = out; *c; c++)
        if (*c == '.')
            *c = '_';
    return 0;
}

static int file_kernel(const sdt_param *p)
{
    if (p->kind == SDT_PARAM_CONV_WEIGHT)
        return (int)p->shape[1]; /* engine [OC, KH, KW, C] */
    return p->file_ndim == 4 ? 1 : 0;
}

int sdt_lora_target(const sdt_model_arch *arch, int component, const sdt_param *p, int with_conv, char *name,
                    size_t size, int *conv_kernel, char **error)
{
    if ((p->kind != SDT_PARAM_LINEAR_WEIGHT && p->kind != SDT_PARAM_CONV_WEIGHT) ||
        !ends_with(p->name, ".weight"))
        return 0;
    *conv_kernel = file_kernel(p);
    if (component == SDT_COMPONENT_UNET) {
        char diffusers[256];
        if (sdt_keymap_unet_to_diffusers(&arch->unet, p->name, diffusers, sizeof diffusers) != 0)
            return sdt_set_error(error, "LoRA: UNet weight %s has no diffusers name", p->name);
        /* Transformer2DModel: every linear and 1x1 conv. ResnetBlock2D, Downsample2D, Upsample2D: only
         * with LoCon, where 3x3 convs get conv_dim and the linear / 1x1 ones network_dim. */
        int in_transformer = strstr(diffusers, ".attentions.") != NULL;
        int in_conv_block = strstr(diffusers, ".resnets.") || strstr(diffusers, ".downsamplers.") ||
                            strstr(diffusers, ".upsamplers.");
        if (!in_transformer && !(with_conv && in_conv_block))
            return 0;
        if (*conv_kernel > 1 && !with_conv)
            return 0;
        if (kohya_name("lora_unet", diffusers, name, size) != 0)
            return sdt_set_error(error, "LoRA: name of %s too long", p->name);
        return 1;
    }
    if (component == SDT_COMPONENT_TEXT_ENCODER) {
        /* CLIPAttention and CLIPMLP of every layer, by their Hugging Face names. */
        if (!strstr(p->name, ".self_attn.") && !strstr(p->name, ".mlp."))
            return 0;
        if (arch->text_encoder.layout != SDT_TEXT_HF)
            return sdt_set_error(error,
                                 "LoRA: text encoder weight %s: kohya names exist only for the Hugging Face "
                                 "CLIP layout (SD1); the OpenCLIP encoder (SD2) is not supported yet",
                                 p->name);
        if (kohya_name("lora_te", p->name, name, size) != 0)
            return sdt_set_error(error, "LoRA: name of %s too long", p->name);
        return 1;
    }
    return 0;
}

int sdt_lora_file_down_shape(const sdt_lora_module *m, int64_t shape[4])
{
    shape[0] = m->adapter.rank;
    shape[1] = m->in_features;
    if (m->conv_kernel == 0)
        return 2;
    shape[2] = shape[3] = m->conv_kernel;
    return 4;
}

int sdt_lora_file_up_shape(const sdt_lora_module *m, int64_t shape[4])
{
    shape[0] = m->out_features;
    shape[1] = m->adapter.rank;
    if (m->conv_kernel == 0)
        return 2;
    shape[2] = shape[3] = 1;
    return 4;
}
