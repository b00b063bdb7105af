/* What a model is, from its files: the family from tensor names and shapes (single files) or from config
 * values (diffusers folders), refused with what was detected when the tables cannot express it yet; and
 * the configs derived from the shapes of the tensors, with what shapes cannot tell from the config JSON
 * the files carry, the preset of the same topology, or SD1.x's values. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint_internal.h"

/* Bounds on what a file may claim, so that a malformed header cannot make a table absurdly large. */
#define MAX_CHANNELS (1 << 20)
#define MAX_VOCAB (1 << 24)

/* ---- family -------------------------------------------------------------------------------------------- */

int any_key_starts(const sdt_safetensors *st, const char *prefix)
{
    for (size_t i = 0; i < sdt_safetensors_count(st); i++)
        if (starts(sdt_safetensors_tensor(st, i)->name, prefix, NULL))
            return 1;
    return 0;
}

int any_key_contains(const sdt_safetensors *st, const char *part)
{
    for (size_t i = 0; i < sdt_safetensors_count(st); i++)
        if (strstr(sdt_safetensors_tensor(st, i)->name, part))
            return 1;
    return 0;
}

/* What a file without UNet tensors is, for the message. */
static void refuse_not_a_checkpoint(session *s, const sdt_safetensors *st, const char *path)
{
    if (any_key_starts(st, "lora_unet_") || any_key_starts(st, "lora_te"))
        fatal(s, "%s is a LoRA (lora_unet_* / lora_te* keys), not a model checkpoint", path);
    else if (any_key_starts(st, SDT_PREFIX_VAE) || any_key_starts(st, "encoder.down") ||
             any_key_starts(st, "decoder.up"))
        fatal(s, "%s is a VAE on its own, not a model checkpoint; give it with --vae", path);
    else if (any_key_starts(st, "down_blocks.") || any_key_starts(st, "mid_block."))
        fatal(s,
              "%s holds diffusers UNet weights; open the diffusers model folder (the one with unet/, "
              "text_encoder/ and vae/) instead",
              path);
    else if (any_key_starts(st, "text_model."))
        fatal(s, "%s holds a text encoder on its own, not a model checkpoint", path);
    else
        fatal(s, "%s: no Stable Diffusion UNet in the file (no %s* keys)", path, SDT_PREFIX_UNET);
}

/* Detection from the keys of a single file (§7.1); sets fatal for what is not SD1.x. */
void detect_ldm_family(session *s, const sdt_safetensors *st, const char *path)
{
    sdt_ckpt_report *r = s->r;
    if (any_key_starts(st, "conditioner.embedders.")) {
        int base = any_key_starts(st, "conditioner.embedders.1.model.");
        r->family = base ? SDT_MODEL_FAMILY_SDXL : SDT_MODEL_FAMILY_SDXL_REFINER;
        fatal(s, "%s: %s checkpoints are not supported yet (detected by its conditioner.embedders.* keys)",
              path, base ? "SDXL" : "SDXL refiner");
        return;
    }
    comp_state *u = &s->comp[SDT_COMPONENT_UNET];
    if (u->n == 0) {
        refuse_not_a_checkpoint(s, st, path);
        return;
    }
    int sd2 = any_key_starts(st, "cond_stage_model.model.");
    const char *why = "its OpenCLIP text encoder, cond_stage_model.model.*";
    for (size_t i = 0; i < u->n && !sd2; i++) {
        const sdt_st_tensor *t = u->cands[i].t;
        if (ends_with(u->cands[i].name, ".attn2.to_k.weight") && t->ndim == 2 && t->shape[1] == 1024) {
            sd2 = 1;
            why = "cross-attention keys 1024 wide";
        }
    }
    const sdt_st_tensor *conv_in = sdt_safetensors_find(st, SDT_PREFIX_UNET "input_blocks.0.0.weight");
    long long in_ch = conv_in && conv_in->ndim == 4 ? (long long)conv_in->shape[1] : 4;
    if (in_ch == 9) {
        r->family = sd2 ? SDT_MODEL_FAMILY_SD2_INPAINTING : SDT_MODEL_FAMILY_SD1_INPAINTING;
        fatal(s, "%s: %s inpainting checkpoints are not supported yet (the UNet takes 9 input channels)",
              path, sd2 ? "SD2.x" : "SD1.x");
        return;
    }
    if (sd2) {
        r->family = SDT_MODEL_FAMILY_SD2;
        fatal(s, "%s: SD2.x checkpoints are not supported yet (detected by %s)", path, why);
        return;
    }
    if (any_key_starts(st, SDT_PREFIX_UNET "label_emb.")) {
        fatal(s,
              "%s: the UNet has a class/vector embedding (label_emb.*, as SDXL and SD2 unCLIP models do); "
              "not supported yet",
              path);
        return;
    }
    r->family = SDT_MODEL_FAMILY_SD1;
    if (in_ch != 4)
        fatal(s, "%s: the UNet takes %lld input channels; only 4 (text-to-image) are supported", path, in_ch);
}

/* Refuses what the tables cannot express from a folder's configs (sd_arch_spec §7.1 by config values). */
void detect_diffusers_family(session *s, const sdt_unet_config *u, const sdt_clip_config *t, int have_text)
{
    sdt_ckpt_report *r = s->r;
    if (u->adm_in_channels > 0 || u->cross_attention_dim == 2048) {
        r->family = SDT_MODEL_FAMILY_SDXL;
        fatal(s,
              "%s: SDXL models are not supported yet (the UNet has added conditioning / a 2048-wide context)",
              s->path);
        return;
    }
    int sd2 = u->cross_attention_dim == 1024 || (have_text && t->width == 1024);
    if (u->in_channels == 9) {
        r->family = sd2 ? SDT_MODEL_FAMILY_SD2_INPAINTING : SDT_MODEL_FAMILY_SD1_INPAINTING;
        fatal(s, "%s: %s inpainting models are not supported yet (the UNet takes 9 input channels)", s->path,
              sd2 ? "SD2.x" : "SD1.x");
        return;
    }
    if (sd2) {
        r->family = SDT_MODEL_FAMILY_SD2;
        fatal(s, "%s: SD2.x models are not supported yet (1024-wide text encoder / cross-attention)",
              s->path);
        return;
    }
    r->family = SDT_MODEL_FAMILY_SD1;
    if (u->in_channels != 4)
        fatal(s, "%s: the UNet takes %d input channels; only 4 (text-to-image) are supported", s->path,
              u->in_channels);
}

/* ---- config probes ------------------------------------------------------------------------------------- */

void build_probe_index(session *s, int c)
{
    comp_state *cs = &s->comp[c];
    for (size_t i = 0; i < cs->n; i++)
        if (sdt_name_index_put(&cs->by_name, cs->cands[i].name, i) < 0)
            s->oom = 1;
}

static const sdt_st_tensor *probe(const comp_state *cs, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static const sdt_st_tensor *probe(const comp_state *cs, const char *fmt, ...)
{
    char name[512];
    va_list args;
    va_start(args, fmt);
    int n = vsnprintf(name, sizeof name, fmt, args);
    va_end(args);
    if (n < 0 || (size_t)n >= sizeof name)
        return NULL;
    long long i = sdt_name_index_get(&cs->by_name, name);
    return i >= 0 ? cs->cands[i].t : NULL;
}

/* Dimension d of a probed tensor of rank ndim, if it is a sane size; else -1. */
static long long dim_of(const sdt_st_tensor *t, int ndim, int d, long long max)
{
    if (!t || t->ndim != ndim || d >= ndim || t->shape[d] < 1 || t->shape[d] > max)
        return -1;
    return (long long)t->shape[d];
}

/* Sets *field from the first value >= 1 among the candidates. */
static void set_first(int *field, long long a, long long b, long long c)
{
    if (a > 0)
        *field = (int)a;
    else if (b > 0)
        *field = (int)b;
    else if (c > 0)
        *field = (int)c;
}

static int largest_divisor_at_most(int n, int limit)
{
    for (int g = limit; g > 1; g--)
        if (n % g == 0)
            return g;
    return 1;
}

/* The UNet's shape-given fields from LDM names (§7.2); the rest keep *c's values. */
static void derive_unet(session *s, const comp_state *cs, sdt_unet_config *c)
{
    const sdt_st_tensor *t = probe(cs, "input_blocks.0.0.weight");
    set_first(&c->in_channels, dim_of(t, 4, 1, 64), -1, -1);
    int ch0 = c->block_out_channels[0];
    set_first(&ch0, dim_of(t, 4, 0, MAX_CHANNELS),
              dim_of(probe(cs, "input_blocks.0.0.bias"), 1, 0, MAX_CHANNELS),
              dim_of(probe(cs, "time_embed.0.weight"), 2, 1, MAX_CHANNELS));
    set_first(&c->out_channels, dim_of(probe(cs, "out.2.weight"), 4, 0, 64),
              dim_of(probe(cs, "out.2.bias"), 1, 0, 64), -1);

    /* The first downsampler sits at input_blocks.{layers_per_block + 1} (§7.2). */
    int step = 0;
    for (int n = 2; n <= 17 && !step; n++)
        if (probe(cs, "input_blocks.%d.0.op.weight", n) || probe(cs, "input_blocks.%d.0.op.bias", n))
            step = n;
    int levels = 1;
    if (step) {
        while (probe(cs, "input_blocks.%d.0.op.weight", step * levels) ||
               probe(cs, "input_blocks.%d.0.op.bias", step * levels))
            levels++;
        if (levels > SDT_UNET_MAX_LEVELS) {
            fatal(s, "%s: the UNet has %d levels; at most %d are supported", s->path, levels,
                  SDT_UNET_MAX_LEVELS);
            return;
        }
    } else {
        /* One level and no downsampler: count its resnets. */
        int n = 1;
        while (n < 17 && probe(cs, "input_blocks.%d.0.in_layers.2.weight", n))
            n++;
        step = n > 1 ? n : c->layers_per_block + 1;
        levels = n > 1 ? 1 : c->levels;
    }
    c->layers_per_block = step - 1;
    c->levels = levels;
    int prev = ch0;
    for (int i = 0; i < levels; i++) {
        int first = step * i + 1;
        int ch = prev;
        set_first(&ch, dim_of(probe(cs, "input_blocks.%d.0.in_layers.2.weight", first), 4, 0, MAX_CHANNELS),
                  dim_of(probe(cs, "input_blocks.%d.0.out_layers.3.weight", first), 4, 0, MAX_CHANNELS),
                  dim_of(probe(cs, "input_blocks.%d.0.in_layers.2.bias", first), 1, 0, MAX_CHANNELS));
        c->block_out_channels[i] = ch;
        prev = ch;
        int attention = 0, depth = 0;
        for (int j = 0; j < c->layers_per_block; j++)
            if (probe(cs, "input_blocks.%d.1.norm.weight", first + j) ||
                probe(cs, "input_blocks.%d.1.proj_in.weight", first + j))
                attention = 1;
        if (attention) {
            while (depth < MAX_COUNT &&
                   (probe(cs, "input_blocks.%d.1.transformer_blocks.%d.norm1.weight", first, depth) ||
                    probe(cs, "input_blocks.%d.1.transformer_blocks.%d.attn1.to_q.weight", first, depth)))
                depth++;
            if (depth == 0)
                depth = 1;
        }
        c->level_has_attention[i] = attention;
        c->transformer_depth[i] = depth;
    }
    int mid = 0;
    while (mid < MAX_COUNT && (probe(cs, "middle_block.1.transformer_blocks.%d.norm1.weight", mid) ||
                               probe(cs, "middle_block.1.transformer_blocks.%d.attn1.to_q.weight", mid)))
        mid++;
    c->mid_transformer_depth = mid ? mid : 1;
    /* Context width and projection kind: from the first transformer found. */
    for (size_t i = 0; i < cs->n; i++) {
        const char *name = cs->cands[i].name;
        const sdt_st_tensor *k = cs->cands[i].t;
        if (ends_with(name, ".attn2.to_k.weight") && dim_of(k, 2, 1, MAX_CHANNELS) > 0) {
            c->cross_attention_dim = (int)k->shape[1];
            break;
        }
    }
    for (size_t i = 0; i < cs->n; i++) {
        if (ends_with(cs->cands[i].name, ".proj_in.weight")) {
            c->use_linear_projection = cs->cands[i].t->ndim == 2;
            break;
        }
    }
}

static void derive_clip(const comp_state *cs, sdt_clip_config *c)
{
    const sdt_st_tensor *tok = probe(cs, "text_model.embeddings.token_embedding.weight");
    set_first(&c->vocab_size, dim_of(tok, 2, 0, MAX_VOCAB), -1, -1);
    set_first(&c->width, dim_of(tok, 2, 1, MAX_CHANNELS),
              dim_of(probe(cs, "text_model.final_layer_norm.weight"), 1, 0, MAX_CHANNELS), -1);
    set_first(&c->max_positions,
              dim_of(probe(cs, "text_model.embeddings.position_embedding.weight"), 2, 0, 1 << 16), -1, -1);
    int layers = 0;
    while (layers < MAX_COUNT && (probe(cs, "text_model.encoder.layers.%d.self_attn.q_proj.weight", layers) ||
                                  probe(cs, "text_model.encoder.layers.%d.layer_norm1.weight", layers)))
        layers++;
    if (layers)
        c->layers = layers;
    set_first(&c->mlp_width,
              dim_of(probe(cs, "text_model.encoder.layers.0.mlp.fc1.weight"), 2, 0, MAX_CHANNELS), -1, -1);
    const sdt_st_tensor *proj = probe(cs, "text_projection.weight");
    c->projection_dim = proj ? (int)(dim_of(proj, 2, 0, MAX_CHANNELS) > 0 ? proj->shape[0] : c->width) : 0;
}

static void derive_vae(const comp_state *cs, sdt_vae_config *c)
{
    int diffusers = cs->layout == LAYOUT_DIFFUSERS;
    set_first(&c->in_channels, dim_of(probe(cs, "encoder.conv_in.weight"), 4, 1, 64), -1, -1);
    int levels = 0;
    while (levels < SDT_VAE_MAX_LEVELS) {
        const sdt_st_tensor *t = diffusers
                                     ? probe(cs, "encoder.down_blocks.%d.resnets.0.conv1.weight", levels)
                                     : probe(cs, "encoder.down.%d.block.0.conv1.weight", levels);
        long long ch = dim_of(t, 4, 0, MAX_CHANNELS);
        if (ch < 1)
            break;
        c->block_out_channels[levels++] = (int)ch;
    }
    if (levels)
        c->levels = levels;
    int layers = 0;
    while (layers < MAX_COUNT &&
           (diffusers ? probe(cs, "encoder.down_blocks.0.resnets.%d.conv1.weight", layers)
                      : probe(cs, "encoder.down.0.block.%d.conv1.weight", layers)))
        layers++;
    if (layers)
        c->layers_per_block = layers;
    long long enc_out = dim_of(probe(cs, "encoder.conv_out.weight"), 4, 0, MAX_CHANNELS);
    set_first(&c->latent_channels, dim_of(probe(cs, "decoder.conv_in.weight"), 4, 1, MAX_CHANNELS),
              dim_of(probe(cs, "post_quant_conv.weight"), 4, 0, MAX_CHANNELS),
              enc_out > 0 ? enc_out / 2 : -1);
}

/* The fields shapes cannot tell. */
static void unet_take_hidden(sdt_unet_config *dst, const sdt_unet_config *src)
{
    memcpy(dst->heads, src->heads, sizeof dst->heads);
    dst->mid_heads = src->mid_heads;
    dst->norm_groups = src->norm_groups;
    dst->norm_eps = src->norm_eps;
    dst->transformer_norm_eps = src->transformer_norm_eps;
    dst->prediction = src->prediction;
    dst->addition_time_embed_dim = src->addition_time_embed_dim;
}

static void clip_take_hidden(sdt_clip_config *dst, const sdt_clip_config *src, int ids)
{
    dst->heads = src->heads;
    dst->act = src->act;
    dst->norm_eps = src->norm_eps;
    dst->layout = src->layout;
    if (ids) {
        dst->bos_id = src->bos_id;
        dst->eos_id = src->eos_id;
    }
}

static void vae_take_hidden(sdt_vae_config *dst, const sdt_vae_config *src)
{
    dst->norm_groups = src->norm_groups;
    dst->norm_eps = src->norm_eps;
    dst->scaling_factor = src->scaling_factor;
}

/* Heads that divide the channels and groups that divide every channel count, whatever the hints said. */
static void unet_make_valid(sdt_unet_config *c)
{
    int groups = c->norm_groups >= 1 ? c->norm_groups : 32;
    for (int i = 0; i < c->levels; i++)
        if (c->block_out_channels[i] % groups != 0)
            groups = largest_divisor_at_most(c->block_out_channels[i], groups);
    c->norm_groups = groups;
    for (int i = 0; i < c->levels; i++) {
        int ch = c->block_out_channels[i];
        if (c->heads[i] < 1 || ch % c->heads[i] != 0)
            c->heads[i] = largest_divisor_at_most(ch, c->heads[i] >= 1 ? c->heads[i] : 8);
    }
    int top = c->block_out_channels[c->levels - 1];
    if (c->mid_heads < 1 || top % c->mid_heads != 0)
        c->mid_heads = largest_divisor_at_most(top, c->mid_heads >= 1 ? c->mid_heads : 8);
}

static void clip_make_valid(sdt_clip_config *c)
{
    if (c->heads < 1 || c->width % c->heads != 0)
        c->heads = c->width % 64 == 0 ? c->width / 64 : largest_divisor_at_most(c->width, 12);
    if (c->bos_id < 0 || c->bos_id >= c->vocab_size || c->eos_id < 0 || c->eos_id >= c->vocab_size) {
        c->bos_id = c->vocab_size >= 2 ? c->vocab_size - 2 : 0;
        c->eos_id = c->vocab_size - 1;
    }
}

static void vae_make_valid(sdt_vae_config *c)
{
    int groups = c->norm_groups >= 1 ? c->norm_groups : 32;
    for (int i = 0; i < c->levels; i++)
        if (c->block_out_channels[i] % groups != 0)
            groups = largest_divisor_at_most(c->block_out_channels[i], groups);
    c->norm_groups = groups;
}

/* The preset whose UNet has the same shapes, or NULL. */
const sdt_model_arch *preset_for_unet(const sdt_unet_config *c)
{
    for (size_t i = 0; sdt_model_arch_at(i); i++) {
        const sdt_model_arch *p = sdt_model_arch_at(i);
        sdt_unet_config tmp = *c;
        unet_take_hidden(&tmp, &p->unet);
        if (sdt_unet_config_diff(&tmp, &p->unet, NULL) == 0)
            return p;
    }
    return NULL;
}

static const sdt_model_arch *preset_for_clip(const sdt_clip_config *c)
{
    for (size_t i = 0; sdt_model_arch_at(i); i++) {
        const sdt_model_arch *p = sdt_model_arch_at(i);
        sdt_clip_config tmp = *c;
        clip_take_hidden(&tmp, &p->text_encoder, 0);
        if (sdt_clip_config_diff(&tmp, &p->text_encoder, 1, NULL) == 0)
            return p;
    }
    return NULL;
}

static const sdt_model_arch *preset_for_vae(const sdt_vae_config *c)
{
    for (size_t i = 0; sdt_model_arch_at(i); i++) {
        const sdt_model_arch *p = sdt_model_arch_at(i);
        sdt_vae_config tmp = *c;
        vae_take_hidden(&tmp, &p->vae);
        if (sdt_vae_config_diff(&tmp, &p->vae, NULL) == 0)
            return p;
    }
    return NULL;
}

/* Parses a component's config hint (file metadata) for its hidden fields; a bad hint is not an error, the
 * other sources take over. */
static int hint_unet(const comp_state *cs, sdt_unet_config *out)
{
    char *err = NULL;
    int ok = cs->config_json &&
             sdt_unet_config_from_json(cs->config_json, cs->config_origin, out, NULL, &err) == 0;
    free(err);
    return ok;
}

static int hint_clip(const comp_state *cs, sdt_clip_config *out)
{
    char *err = NULL;
    int ok = cs->config_json &&
             sdt_clip_config_from_json(cs->config_json, cs->config_origin, out, NULL, &err) == 0;
    free(err);
    return ok;
}

static int hint_vae(const comp_state *cs, sdt_vae_config *out)
{
    char *err = NULL;
    int ok =
        cs->config_json && sdt_vae_config_from_json(cs->config_json, cs->config_origin, out, NULL, &err) == 0;
    free(err);
    return ok;
}

/* Configs of a single-file checkpoint (and of a VAE given on its own) from shapes and hints. The VAE and
 * text encoder only when want_text / want_vae: a diffusers folder has config.json files for them. */
void derive_configs(session *s, sdt_model_arch *arch, int want_unet, int want_text, int want_vae)
{
    const sdt_model_arch *sd15 = sdt_model_arch_find("sd15");
    comp_state *cu = &s->comp[SDT_COMPONENT_UNET], *ct = &s->comp[SDT_COMPONENT_TEXT_ENCODER],
               *cv = &s->comp[SDT_COMPONENT_VAE];
    if (want_unet) {
        sdt_unet_config hint;
        arch->unet = sd15->unet;
        derive_unet(s, cu, &arch->unet);
        if (s->r->fatal)
            return;
        const sdt_model_arch *pu = preset_for_unet(&arch->unet);
        if (hint_unet(cu, &hint))
            unet_take_hidden(&arch->unet, &hint);
        else if (pu)
            unet_take_hidden(&arch->unet, &pu->unet);
        arch->unet.prediction = s->prediction;
        unet_make_valid(&arch->unet);
    }
    /* An absent component takes the configuration of the preset the UNet matches. */
    const sdt_model_arch *pu = preset_for_unet(&arch->unet);
    const sdt_model_arch *fallback = pu ? pu : sd15;

    if (want_text && ct->n) {
        sdt_clip_config th;
        arch->text_encoder = fallback->text_encoder;
        derive_clip(ct, &arch->text_encoder);
        const sdt_model_arch *pt = preset_for_clip(&arch->text_encoder);
        if (hint_clip(ct, &th))
            clip_take_hidden(&arch->text_encoder, &th, 1);
        else if (pt)
            clip_take_hidden(&arch->text_encoder, &pt->text_encoder,
                             arch->text_encoder.vocab_size == pt->text_encoder.vocab_size);
        else
            arch->text_encoder.bos_id = -1; /* the vocabulary's last two ids, below */
        clip_make_valid(&arch->text_encoder);
    } else if (want_text) {
        arch->text_encoder = fallback->text_encoder;
    }

    if (want_vae && cv->n && cv->config_json && cv->config_is_file) {
        char *err = NULL, *uns = NULL;
        if (sdt_vae_config_from_json(cv->config_json, cv->config_origin, &arch->vae, &uns, &err) != 0)
            fatal(s, "%s", err);
        else if (uns)
            fatal(s, "%s", uns);
        free(err);
        free(uns);
    } else if (want_vae && cv->n) {
        sdt_vae_config vh;
        arch->vae = fallback->vae;
        derive_vae(cv, &arch->vae);
        const sdt_model_arch *pv = preset_for_vae(&arch->vae);
        if (hint_vae(cv, &vh))
            vae_take_hidden(&arch->vae, &vh);
        else if (pv)
            vae_take_hidden(&arch->vae, &pv->vae);
        vae_make_valid(&arch->vae);
    } else if (want_vae) {
        arch->vae = fallback->vae;
    }
}

/* Names the arch after the preset it matches (the vocabulary aside) and notes the differences. */
void name_arch(sdt_model *m)
{
    const sdt_model_arch *best = NULL;
    int best_diffs = 1 << 30;
    for (size_t i = 0; sdt_model_arch_at(i); i++) {
        const sdt_model_arch *p = sdt_model_arch_at(i);
        int d = sdt_unet_config_diff(&m->arch.unet, &p->unet, NULL) +
                sdt_clip_config_diff(&m->arch.text_encoder, &p->text_encoder, 1, NULL) +
                sdt_vae_config_diff(&m->arch.vae, &p->vae, NULL);
        if (d < best_diffs) {
            best = p;
            best_diffs = d;
        }
    }
    sdt_buf notes;
    sdt_buf_init(&notes);
    if (best && best_diffs == 0) {
        m->arch.name = best->name;
        m->arch.description = best->description;
        m->arch.clip_skip_default = best->clip_skip_default;
        sdt_clip_config_diff(&m->arch.text_encoder, &best->text_encoder, 0, &notes);
    } else {
        m->arch.name = "sd1-custom";
        m->arch.description = "an SD1.x-family model of its own size";
        if (best) {
            sdt_buf_printf(&notes, "closest preset %s: ", best->name);
            sdt_buf parts[3];
            for (int k = 0; k < 3; k++)
                sdt_buf_init(&parts[k]);
            sdt_unet_config_diff(&m->arch.unet, &best->unet, &parts[0]);
            sdt_clip_config_diff(&m->arch.text_encoder, &best->text_encoder, 0, &parts[1]);
            sdt_vae_config_diff(&m->arch.vae, &best->vae, &parts[2]);
            int any = 0;
            for (int k = 0; k < 3; k++) {
                if (parts[k].len) {
                    sdt_buf_printf(&notes, "%s%s", any ? ", " : "", parts[k].data);
                    any = 1;
                }
                sdt_buf_free(&parts[k]);
            }
        }
    }
    m->arch.pad_id = m->arch.text_encoder.eos_id; /* SD1.x pads with the end-of-text token */
    m->arch_notes = notes.len ? sdt_buf_take(&notes) : NULL;
    sdt_buf_free(&notes);
}
