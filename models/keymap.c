/* LDM <-> diffusers key names by rule (sd_arch_spec §7.2-7.6), and the extra keys checkpoints carry. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keymap.h"
#include "sdtune/strutil.h"

/* ---- rules --------------------------------------------------------------------------------------------- */

/* Writes printf-style into out; -1 when it does not fit. */
static int put(char *out, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int put(char *out, size_t size, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    int n = vsnprintf(out, size, fmt, args);
    va_end(args);
    return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* Splits "N.M.rest" (two block indices after a fixed head): returns 0 with *n, *m and *rest set. */
static int two_indices(const char *s, int *n, int *m, const char **rest)
{
    char *end;
    long a = strtol(s, &end, 10);
    if (end == s || *end != '.')
        return -1;
    const char *s2 = end + 1;
    long b = strtol(s2, &end, 10);
    if (end == s2 || *end != '.' || a < 0 || b < 0 || a > 1000 || b > 1000)
        return -1;
    *n = (int)a;
    *m = (int)b;
    *rest = end + 1;
    return 0;
}

static int starts(const char *s, const char *prefix, const char **rest)
{
    size_t n = strlen(prefix);
    if (strncmp(s, prefix, n) != 0)
        return 0;
    *rest = s + n;
    return 1;
}

/* ResBlock layers (§7.4): the LDM Sequential indices -> diffusers module names. */
static int unet_resnet(const char *head, const char *rest, char *out, size_t size)
{
    static const char *const map[][2] = {
        {"in_layers.0.", "norm1."},  {"in_layers.2.", "conv1."},  {"emb_layers.1.", "time_emb_proj."},
        {"out_layers.0.", "norm2."}, {"out_layers.3.", "conv2."}, {"skip_connection.", "conv_shortcut."},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        const char *leaf;
        if (starts(rest, map[i][0], &leaf))
            return put(out, size, "%s.%s%s", head, map[i][1], leaf);
    }
    return -1;
}

int sdt_keymap_unet_to_diffusers(const sdt_unet_config *c, const char *ldm, char *out, size_t size)
{
    const char *rest;
    /* Both block lists are flat in LDM: a down level spans layers_per_block resnets plus its downsampler,
     * an up level layers_per_block + 1 resnets (its upsampler shares the last entry), so both step by
     * layers_per_block + 1 (§7.2). */
    int step = c->layers_per_block + 1;
    if (starts(ldm, "time_embed.0.", &rest))
        return put(out, size, "time_embedding.linear_1.%s", rest);
    if (starts(ldm, "time_embed.2.", &rest))
        return put(out, size, "time_embedding.linear_2.%s", rest);
    if (starts(ldm, "label_emb.0.0.", &rest))
        return put(out, size, "add_embedding.linear_1.%s", rest);
    if (starts(ldm, "label_emb.0.2.", &rest))
        return put(out, size, "add_embedding.linear_2.%s", rest);
    if (starts(ldm, "out.0.", &rest))
        return put(out, size, "conv_norm_out.%s", rest);
    if (starts(ldm, "out.2.", &rest))
        return put(out, size, "conv_out.%s", rest);
    int n, sub;
    char head[96];
    if (starts(ldm, "input_blocks.", &rest)) {
        if (two_indices(rest, &n, &sub, &rest) != 0)
            return -1;
        if (n == 0 && sub == 0)
            return put(out, size, "conv_in.%s", rest);
        const char *leaf;
        if (n % step == 0 && sub == 0 && starts(rest, "op.", &leaf))
            return put(out, size, "down_blocks.%d.downsamplers.0.conv.%s", n / step - 1, leaf);
        int i = (n - 1) / step, j = (n - 1) % step;
        if (n < 1 || i >= c->levels)
            return -1;
        if (sub == 0) {
            snprintf(head, sizeof head, "down_blocks.%d.resnets.%d", i, j);
            return unet_resnet(head, rest, out, size);
        }
        if (sub == 1)
            return put(out, size, "down_blocks.%d.attentions.%d.%s", i, j, rest);
        return -1;
    }
    if (starts(ldm, "middle_block.", &rest)) {
        char *end;
        long k = strtol(rest, &end, 10);
        if (end == rest || *end != '.')
            return -1;
        rest = end + 1;
        if (k == 0 || k == 2) {
            snprintf(head, sizeof head, "mid_block.resnets.%d", k == 0 ? 0 : 1);
            return unet_resnet(head, rest, out, size);
        }
        if (k == 1)
            return put(out, size, "mid_block.attentions.0.%s", rest);
        return -1;
    }
    if (starts(ldm, "output_blocks.", &rest)) {
        if (two_indices(rest, &n, &sub, &rest) != 0)
            return -1;
        int i = n / step, j = n % step;
        if (i >= c->levels)
            return -1;
        /* up level i mirrors down level levels - 1 - i */
        int attention = c->level_has_attention[c->levels - 1 - i];
        const char *leaf;
        if (sub == 0) {
            snprintf(head, sizeof head, "up_blocks.%d.resnets.%d", i, j);
            return unet_resnet(head, rest, out, size);
        }
        if (sub == 1 && attention)
            return put(out, size, "up_blocks.%d.attentions.%d.%s", i, j, rest);
        if (sub == (attention ? 2 : 1) && starts(rest, "conv.", &leaf))
            return put(out, size, "up_blocks.%d.upsamplers.0.conv.%s", i, leaf);
        return -1;
    }
    return -1;
}

static int vae_resnet(const char *head, const char *rest, char *out, size_t size)
{
    const char *leaf;
    if (starts(rest, "nin_shortcut.", &leaf))
        return put(out, size, "%s.conv_shortcut.%s", head, leaf);
    static const char *const same[] = {"norm1.", "conv1.", "norm2.", "conv2."};
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++)
        if (starts(rest, same[i], &leaf))
            return put(out, size, "%s.%s", head, rest);
    return -1;
}

int sdt_keymap_vae_to_diffusers(const sdt_vae_config *c, const char *ldm, char *out, size_t size)
{
    const char *rest, *side;
    char sidebuf[8];
    if (strcmp(ldm, "quant_conv.weight") == 0 || strcmp(ldm, "quant_conv.bias") == 0 ||
        strcmp(ldm, "post_quant_conv.weight") == 0 || strcmp(ldm, "post_quant_conv.bias") == 0)
        return put(out, size, "%s", ldm);
    if (starts(ldm, "encoder.", &rest))
        side = "encoder";
    else if (starts(ldm, "decoder.", &rest))
        side = "decoder";
    else
        return -1;
    snprintf(sidebuf, sizeof sidebuf, "%s", side);
    const char *leaf;
    if (starts(rest, "conv_in.", &leaf) || starts(rest, "conv_out.", &leaf))
        return put(out, size, "%s", ldm);
    if (starts(rest, "norm_out.", &leaf))
        return put(out, size, "%s.conv_norm_out.%s", sidebuf, leaf);
    char head[96];
    if (starts(rest, "mid.block_1.", &leaf) || starts(rest, "mid.block_2.", &leaf)) {
        snprintf(head, sizeof head, "%s.mid_block.resnets.%d", sidebuf, rest[10] == '1' ? 0 : 1);
        return vae_resnet(head, leaf, out, size);
    }
    if (starts(rest, "mid.attn_1.", &leaf)) {
        static const char *const map[][2] = {
            {"norm.", "group_norm."},   {"q.", "to_q."}, {"k.", "to_k."}, {"v.", "to_v."},
            {"proj_out.", "to_out.0."},
        };
        for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
            const char *tail;
            if (starts(leaf, map[i][0], &tail))
                return put(out, size, "%s.mid_block.attentions.0.%s%s", sidebuf, map[i][1], tail);
        }
        return -1;
    }
    int level, j;
    if (strcmp(sidebuf, "encoder") == 0 && starts(rest, "down.", &leaf)) {
        char *end;
        long l = strtol(leaf, &end, 10);
        if (end == leaf || *end != '.' || l < 0 || l >= c->levels)
            return -1;
        level = (int)l;
        leaf = end + 1;
        const char *tail;
        if (starts(leaf, "downsample.conv.", &tail))
            return put(out, size, "encoder.down_blocks.%d.downsamplers.0.conv.%s", level, tail);
        if (starts(leaf, "block.", &tail)) {
            j = (int)strtol(tail, &end, 10);
            if (end == tail || *end != '.')
                return -1;
            snprintf(head, sizeof head, "encoder.down_blocks.%d.resnets.%d", level, j);
            return vae_resnet(head, end + 1, out, size);
        }
        return -1;
    }
    if (strcmp(sidebuf, "decoder") == 0 && starts(rest, "up.", &leaf)) {
        /* LDM numbers decoder levels by resolution (up.0 runs last), diffusers in processing order. */
        char *end;
        long l = strtol(leaf, &end, 10);
        if (end == leaf || *end != '.' || l < 0 || l >= c->levels)
            return -1;
        level = c->levels - 1 - (int)l;
        leaf = end + 1;
        const char *tail;
        if (starts(leaf, "upsample.conv.", &tail))
            return put(out, size, "decoder.up_blocks.%d.upsamplers.0.conv.%s", level, tail);
        if (starts(leaf, "block.", &tail)) {
            j = (int)strtol(tail, &end, 10);
            if (end == tail || *end != '.')
                return -1;
            snprintf(head, sizeof head, "decoder.up_blocks.%d.resnets.%d", level, j);
            return vae_resnet(head, end + 1, out, size);
        }
        return -1;
    }
    return -1;
}

/* ---- keymap -------------------------------------------------------------------------------------------- */

void sdt_keymap_free(sdt_keymap *m)
{
    if (m->diffusers && m->table)
        for (size_t i = 0; i < m->table->count; i++)
            free(m->diffusers[i]);
    free(m->diffusers);
    free(m->diffusers_ndim);
    free(m->diffusers_shape);
    sdt_name_index_free(&m->index);
    memset(m, 0, sizeof *m);
}

int sdt_keymap_build(sdt_keymap *m, sdt_param_table *t, const sdt_model_arch *arch, char **error)
{
    memset(m, 0, sizeof *m);
    sdt_name_index_init(&m->index);
    m->table = t;
    size_t n = t->count ? t->count : 1;
    m->diffusers = calloc(n, sizeof *m->diffusers);
    m->diffusers_ndim = calloc(n, sizeof *m->diffusers_ndim);
    m->diffusers_shape = calloc(n, sizeof *m->diffusers_shape);
    if (!m->diffusers || !m->diffusers_ndim || !m->diffusers_shape)
        goto oom;
    int unet = strcmp(t->component, "unet") == 0, vae = strcmp(t->component, "vae") == 0;
    for (size_t i = 0; i < t->count; i++) {
        const sdt_param *p = &t->items[i];
        char name[512];
        int rc;
        if (unet)
            rc = sdt_keymap_unet_to_diffusers(&arch->unet, p->name, name, sizeof name);
        else if (vae)
            rc = sdt_keymap_vae_to_diffusers(&arch->vae, p->name, name, sizeof name);
        else /* the CLIP text encoder keeps its Hugging Face names in both layouts (§7.6) */
            rc = put(name, sizeof name, "%s", p->name);
        if (rc != 0) {
            *error = sdt_format("%s: no diffusers name for %s (the table does not follow the config)",
                                t->component, p->name);
            sdt_keymap_free(m);
            return -1;
        }
        if (!(m->diffusers[i] = sdt_strdup(name)))
            goto oom;
        /* Shapes agree except the VAE attention projections: 1x1 convs in LDM files, Linear in diffusers
         * since 0.17 (§7.5). SD1.5's UNet proj_in/proj_out are 1x1 convs in both. */
        m->diffusers_ndim[i] = p->file_ndim;
        memcpy(m->diffusers_shape[i], p->file_shape, sizeof m->diffusers_shape[i]);
        if (vae && p->kind == SDT_PARAM_LINEAR_WEIGHT && p->file_ndim == 4 && strstr(p->name, ".mid.attn_1."))
            m->diffusers_ndim[i] = 2;
        int put_rc = sdt_name_index_put(&m->index, m->diffusers[i], i);
        if (put_rc < 0)
            goto oom;
        if (put_rc > 0) {
            *error = sdt_format("%s: two tensors map to the diffusers name %s", t->component, name);
            sdt_keymap_free(m);
            return -1;
        }
    }
    return 0;
oom:
    *error = sdt_format("%s: out of memory building the key map", t->component);
    sdt_keymap_free(m);
    return -1;
}

long long sdt_keymap_find(const sdt_keymap *m, const char *name)
{
    long long i = sdt_name_index_get(&m->index, name);
    if (i >= 0)
        return i;
    /* diffusers < 0.17 named the VAE attention projections query/key/value/proj_attn. */
    static const char *const old[][2] = {
        {".attentions.0.query.", ".attentions.0.to_q."},
        {".attentions.0.key.", ".attentions.0.to_k."},
        {".attentions.0.value.", ".attentions.0.to_v."},
        {".attentions.0.proj_attn.", ".attentions.0.to_out.0."},
    };
    for (size_t k = 0; k < sizeof old / sizeof old[0]; k++) {
        const char *at = strstr(name, old[k][0]);
        if (!at)
            continue;
        char renamed[512];
        if (put(renamed, sizeof renamed, "%.*s%s%s", (int)(at - name), name, old[k][1],
                at + strlen(old[k][0])) != 0)
            return -1;
        return sdt_name_index_get(&m->index, renamed);
    }
    return -1;
}

/* ---- keys that are not weights ------------------------------------------------------------------------- */

const char *sdt_ckpt_ignore_reason(const char *key)
{
    static const char *const schedule[] = {
        "betas",
        "alphas_cumprod",
        "alphas_cumprod_prev",
        "sqrt_alphas_cumprod",
        "sqrt_one_minus_alphas_cumprod",
        "log_one_minus_alphas_cumprod",
        "sqrt_recip_alphas_cumprod",
        "sqrt_recipm1_alphas_cumprod",
        "posterior_variance",
        "posterior_log_variance_clipped",
        "posterior_mean_coef1",
        "posterior_mean_coef2",
    };
    for (size_t i = 0; i < sizeof schedule / sizeof schedule[0]; i++)
        if (strcmp(key, schedule[i]) == 0)
            return "noise schedule buffer";
    if (strcmp(key, "logvar") == 0)
        return "training buffer (logvar)";
    if (strncmp(key, "model_ema.", 10) == 0)
        return "EMA copy";
    size_t n = strlen(key);
    if ((n >= 12 && strcmp(key + n - 12, "position_ids") == 0 && (n == 12 || key[n - 13] == '.')))
        return "position_ids buffer";
    if (strcmp(key, "logit_scale") == 0 || (n > 12 && strcmp(key + n - 12, ".logit_scale") == 0))
        return "CLIP logit scale";
    return NULL;
}
