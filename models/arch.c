/* The presets and the parameter tables each config yields. Names are the single-file (LDM) keys without
 * the component prefix (sd_arch_spec §7.2-7.6); tensors are registered in the order the network uses
 * them. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "arch.h"
#include "sdtune/strutil.h"

/* ---- presets ------------------------------------------------------------------------------------- */

/* Every SD1.x network: the topology and constants shared by the real model and its tiny twin. Only the
 * widths differ, so they are the macro arguments. */
#define SD1X_UNET(boc0, boc1, boc2, boc3, context_dim, groups)                                               \
    {                                                                                                        \
        .in_channels = 4, .out_channels = 4, .levels = 4, .block_out_channels = {boc0, boc1, boc2, boc3},    \
        .layers_per_block = 2, .level_has_attention = {1, 1, 1, 0}, .transformer_depth = {1, 1, 1, 0},       \
        .mid_transformer_depth = 1, .heads = {8, 8, 8, 8}, .mid_heads = 8,                                   \
        .cross_attention_dim = context_dim, .use_linear_projection = 0, .norm_groups = groups,               \
        .norm_eps = 1e-5f, .transformer_norm_eps = 1e-6f, .prediction = SDT_PREDICT_EPSILON,                 \
    }

/* CLIP ViT-L/14's vocabulary, context and special tokens; the width and depth are the arguments. */
#define SD1X_TEXT_ENCODER(hidden, depth, n_heads, mlp)                                                       \
    {                                                                                                        \
        .vocab_size = 49408, .max_positions = 77, .width = hidden, .layers = depth, .heads = n_heads,        \
        .mlp_width = mlp, .act = SDT_ACT_QUICK_GELU, .norm_eps = 1e-5f, .bos_id = 49406, .eos_id = 49407,    \
        .layout = SDT_TEXT_HF,                                                                               \
    }

#define SD1X_VAE(boc0, boc1, boc2, boc3, groups)                                                             \
    {                                                                                                        \
        .in_channels = 3, .latent_channels = 4, .levels = 4, .block_out_channels = {boc0, boc1, boc2, boc3}, \
        .layers_per_block = 2, .norm_groups = groups, .norm_eps = 1e-6f, .scaling_factor = 0.18215f,         \
    }

static const sdt_model_arch presets[] = {
    {
        .name = "sd15",
        .description = "Stable Diffusion 1.5 (UNet 860M, CLIP ViT-L/14 text encoder, VAE)",
        .unet = SD1X_UNET(320, 640, 1280, 1280, 768, 32),
        .text_encoder = SD1X_TEXT_ENCODER(768, 12, 12, 3072),
        .vae = SD1X_VAE(128, 256, 512, 512, 32),
        .clip_skip_default = 1,
        .pad_id = 49407,
    },
    {
        /* The SD1.5 topology at test size (docs/models.md): every block type, skip and head split of the
         * real model, small enough to run in milliseconds. The text encoder keeps the real vocabulary so
         * the real tokenizer works with it. */
        .name = "sd15-tiny",
        .description = "SD1.5 topology at tiny width, for tests and the demo",
        .unet = SD1X_UNET(32, 32, 64, 64, 48, 8),
        .text_encoder = SD1X_TEXT_ENCODER(48, 3, 4, 192),
        .vae = SD1X_VAE(16, 16, 32, 32, 8),
        .clip_skip_default = 1,
        .pad_id = 49407,
    },
};

#define PRESET_COUNT (sizeof presets / sizeof presets[0])

const sdt_model_arch *sdt_model_arch_find(const char *name)
{
    for (size_t i = 0; i < PRESET_COUNT; i++)
        if (strcmp(presets[i].name, name) == 0)
            return &presets[i];
    return NULL;
}

const sdt_model_arch *sdt_model_arch_at(size_t i) { return i < PRESET_COUNT ? &presets[i] : NULL; }

const char *sdt_model_arch_names(void) { return "sd15, sd15-tiny"; }

int sdt_unet_time_embed_dim(const sdt_unet_config *c) { return 4 * c->block_out_channels[0]; }

/* ---- UNet ---------------------------------------------------------------------------------------- */

/* Adds to the table, turning the first failure into an error message. */
typedef struct builder {
    sdt_param_table *t;
    int failed;
    char name[256];
} builder;

static const char *named(builder *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const char *named(builder *b, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    vsnprintf(b->name, sizeof b->name, fmt, args);
    va_end(args);
    return b->name;
}

static void check(builder *b, int status)
{
    if (status != 0)
        b->failed = 1;
}

/* ResBlock (ldm names): in_layers.0 norm, in_layers.2 conv, emb_layers.1 time projection, out_layers.0
 * norm, out_layers.3 conv, skip_connection when the channel count changes. */
static void unet_resnet(builder *b, const char *base, int in, int out, int emb_dim)
{
    char root[200];
    snprintf(root, sizeof root, "%s", base);
    check(b, sdt_param_add_norm(b->t, named(b, "%s.in_layers.0", root), in));
    check(b, sdt_param_add_conv(b->t, named(b, "%s.in_layers.2", root), out, in, 3, 3, 1));
    check(b, sdt_param_add_linear(b->t, named(b, "%s.emb_layers.1", root), out, emb_dim, 1));
    check(b, sdt_param_add_norm(b->t, named(b, "%s.out_layers.0", root), out));
    check(b, sdt_param_add_conv(b->t, named(b, "%s.out_layers.3", root), out, out, 3, 3, 1));
    if (in != out)
        check(b, sdt_param_add_linear_conv1x1(b->t, named(b, "%s.skip_connection", root), out, in, 1));
}

/* SpatialTransformer: norm, proj_in, depth x BasicTransformerBlock, proj_out. */
static void unet_transformer(builder *b, const sdt_unet_config *c, const char *base, int ch, int depth)
{
    char root[200];
    snprintf(root, sizeof root, "%s", base);
    int ctx = c->cross_attention_dim;
    check(b, sdt_param_add_norm(b->t, named(b, "%s.norm", root), ch));
    if (c->use_linear_projection)
        check(b, sdt_param_add_linear(b->t, named(b, "%s.proj_in", root), ch, ch, 1));
    else
        check(b, sdt_param_add_linear_conv1x1(b->t, named(b, "%s.proj_in", root), ch, ch, 1));
    for (int d = 0; d < depth; d++) {
        char blk[240];
        snprintf(blk, sizeof blk, "%s.transformer_blocks.%d", root, d);
        check(b, sdt_param_add_norm(b->t, named(b, "%s.norm1", blk), ch));
        check(b, sdt_param_add_linear(b->t, named(b, "%s.attn1.to_q", blk), ch, ch, 0));
        check(b, sdt_param_add_linear(b->t, named(b, "%s.attn1.to_k", blk), ch, ch, 0));
        check(b, sdt_param_add_linear(b->t, named(b, "%s.attn1.to_v", blk), ch, ch, 0));
        check(b, sdt_param_add_linear(b->t, named(b, "%s.attn1.to_out.0", blk), ch, ch, 1));
        check(b, sdt_param_add_norm(b->t, named(b, "%s.norm2", blk), ch));
        check(b, sdt_param_add_linear(b->t, named(b, "%s.attn2.to_q", blk), ch, ch, 0));
        check(b, sdt_param_add_linear(b->t, named(b, "%s.attn2.to_k", blk), ch, ctx, 0));
        check(b, sdt_param_add_linear(b->t, named(b, "%s.attn2.to_v", blk), ch, ctx, 0));
        check(b, sdt_param_add_linear(b->t, named(b, "%s.attn2.to_out.0", blk), ch, ch, 1));
        check(b, sdt_param_add_norm(b->t, named(b, "%s.norm3", blk), ch));
        check(b, sdt_param_add_linear(b->t, named(b, "%s.ff.net.0.proj", blk), 8 * ch, ch, 1));
        check(b, sdt_param_add_linear(b->t, named(b, "%s.ff.net.2", blk), ch, 4 * ch, 1));
    }
    if (c->use_linear_projection)
        check(b, sdt_param_add_linear(b->t, named(b, "%s.proj_out", root), ch, ch, 1));
    else
        check(b, sdt_param_add_linear_conv1x1(b->t, named(b, "%s.proj_out", root), ch, ch, 1));
}

static int config_error(const char *what, char **error, const char *fmt, int value)
{
    char detail[160];
    snprintf(detail, sizeof detail, fmt, value);
    *error = sdt_format("%s config: %s", what, detail);
    return -1;
}

static int check_unet_config(const sdt_unet_config *c, char **error)
{
    if (c->levels < 1 || c->levels > SDT_UNET_MAX_LEVELS)
        return config_error("unet", error, "levels is %d, expected 1..4", c->levels);
    if (c->norm_groups < 1)
        return config_error("unet", error, "norm_groups is %d", c->norm_groups);
    for (int i = 0; i < c->levels; i++) {
        int ch = c->block_out_channels[i];
        if (ch < 1 || ch % c->norm_groups != 0)
            return config_error("unet", error, "level channels %d are not a multiple of the norm groups", ch);
        if (c->level_has_attention[i] &&
            (c->heads[i] < 1 || ch % c->heads[i] != 0 || c->transformer_depth[i] < 1))
            return config_error("unet", error, "level of %d channels has bad heads or transformer depth", ch);
    }
    if (c->layers_per_block < 1 || c->layers_per_block > SDT_UNET_MAX_LAYERS)
        return config_error("unet", error, "layers_per_block is %d, expected 1..8", c->layers_per_block);
    return 0;
}

int sdt_unet_params(const sdt_unet_config *c, sdt_param_table *t, char **error)
{
    sdt_param_table_init(t, "unet", SDT_PREFIX_UNET);
    if (check_unet_config(c, error) != 0)
        return -1;
    builder b = {.t = t};
    int ch0 = c->block_out_channels[0];
    int emb = sdt_unet_time_embed_dim(c);
    check(&b, sdt_param_add_linear(t, "time_embed.0", emb, ch0, 1));
    check(&b, sdt_param_add_linear(t, "time_embed.2", emb, emb, 1));
    if (c->adm_in_channels > 0) {
        check(&b, sdt_param_add_linear(t, "label_emb.0.0", emb, c->adm_in_channels, 1));
        check(&b, sdt_param_add_linear(t, "label_emb.0.2", emb, emb, 1));
    }
    check(&b, sdt_param_add_conv(t, "input_blocks.0.0", ch0, c->in_channels, 3, 3, 1));

    /* Down path; skip[] mirrors the skip stack (channels of each pushed tensor). */
    int skip[(SDT_UNET_MAX_LAYERS + 1) * SDT_UNET_MAX_LEVELS + 1];
    int n_skip = 0;
    skip[n_skip++] = ch0;
    int ch = ch0, block = 1;
    char base[128];
    for (int i = 0; i < c->levels; i++) {
        int out = c->block_out_channels[i];
        for (int j = 0; j < c->layers_per_block; j++, block++) {
            snprintf(base, sizeof base, "input_blocks.%d.0", block);
            unet_resnet(&b, base, ch, out, emb);
            ch = out;
            if (c->level_has_attention[i]) {
                snprintf(base, sizeof base, "input_blocks.%d.1", block);
                unet_transformer(&b, c, base, ch, c->transformer_depth[i]);
            }
            skip[n_skip++] = ch;
        }
        if (i < c->levels - 1) {
            snprintf(base, sizeof base, "input_blocks.%d.0.op", block);
            check(&b, sdt_param_add_conv(t, base, ch, ch, 3, 3, 1));
            skip[n_skip++] = ch;
            block++;
        }
    }
    unet_resnet(&b, "middle_block.0", ch, ch, emb);
    unet_transformer(&b, c, "middle_block.1", ch, c->mid_transformer_depth);
    unet_resnet(&b, "middle_block.2", ch, ch, emb);

    /* Up path: levels in reverse, layers_per_block + 1 resnets each, every one eating one skip. */
    block = 0;
    for (int k = 0; k < c->levels; k++) {
        int i = c->levels - 1 - k;
        int out = c->block_out_channels[i];
        for (int j = 0; j <= c->layers_per_block; j++, block++) {
            int s = skip[--n_skip];
            snprintf(base, sizeof base, "output_blocks.%d.0", block);
            unet_resnet(&b, base, ch + s, out, emb);
            ch = out;
            int sub = 1;
            if (c->level_has_attention[i]) {
                snprintf(base, sizeof base, "output_blocks.%d.1", block);
                unet_transformer(&b, c, base, ch, c->transformer_depth[i]);
                sub = 2;
            }
            if (j == c->layers_per_block && k < c->levels - 1) {
                snprintf(base, sizeof base, "output_blocks.%d.%d.conv", block, sub);
                check(&b, sdt_param_add_conv(t, base, ch, ch, 3, 3, 1));
            }
        }
    }
    check(&b, sdt_param_add_norm(t, "out.0", ch));
    check(&b, sdt_param_add_conv(t, "out.2", c->out_channels, ch, 3, 3, 1));
    if (b.failed) {
        *error = sdt_format("unet: could not build the parameter table (duplicate name or out of memory)");
        return -1;
    }
    return 0;
}

/* ---- text encoder (CLIP, Hugging Face names) ------------------------------------------------------ */

int sdt_clip_params(const sdt_clip_config *c, const char *component, const char *prefix, sdt_param_table *t,
                    char **error)
{
    sdt_param_table_init(t, component, prefix);
    if (c->layout != SDT_TEXT_HF) {
        *error = sdt_format("%s: OpenCLIP text encoders are not supported yet", component);
        return -1;
    }
    if (c->width < 1 || c->heads < 1 || c->width % c->heads != 0 || c->layers < 1 || c->vocab_size < 1) {
        *error = sdt_format("%s config: width %d, heads %d, layers %d, vocab %d do not make a text encoder",
                            component, c->width, c->heads, c->layers, c->vocab_size);
        return -1;
    }
    builder b = {.t = t};
    int w = c->width;
    check(&b, sdt_param_add_embedding(t, "text_model.embeddings.token_embedding.weight", c->vocab_size, w));
    check(&b,
          sdt_param_add_embedding(t, "text_model.embeddings.position_embedding.weight", c->max_positions, w));
    for (int l = 0; l < c->layers; l++) {
        char base[96];
        snprintf(base, sizeof base, "text_model.encoder.layers.%d", l);
        check(&b, sdt_param_add_norm(t, named(&b, "%s.layer_norm1", base), w));
        check(&b, sdt_param_add_linear(t, named(&b, "%s.self_attn.q_proj", base), w, w, 1));
        check(&b, sdt_param_add_linear(t, named(&b, "%s.self_attn.k_proj", base), w, w, 1));
        check(&b, sdt_param_add_linear(t, named(&b, "%s.self_attn.v_proj", base), w, w, 1));
        check(&b, sdt_param_add_linear(t, named(&b, "%s.self_attn.out_proj", base), w, w, 1));
        check(&b, sdt_param_add_norm(t, named(&b, "%s.layer_norm2", base), w));
        check(&b, sdt_param_add_linear(t, named(&b, "%s.mlp.fc1", base), c->mlp_width, w, 1));
        check(&b, sdt_param_add_linear(t, named(&b, "%s.mlp.fc2", base), w, c->mlp_width, 1));
    }
    check(&b, sdt_param_add_norm(t, "text_model.final_layer_norm", w));
    if (c->projection_dim > 0)
        check(&b, sdt_param_add_linear(t, "text_projection", c->projection_dim, w, 0));
    if (b.failed) {
        *error = sdt_format("%s: could not build the parameter table", component);
        return -1;
    }
    return 0;
}

/* ---- VAE (LDM names) ----------------------------------------------------------------------------- */

static void vae_resnet(builder *b, const char *base, int in, int out)
{
    char root[160];
    snprintf(root, sizeof root, "%s", base);
    check(b, sdt_param_add_norm(b->t, named(b, "%s.norm1", root), in));
    check(b, sdt_param_add_conv(b->t, named(b, "%s.conv1", root), out, in, 3, 3, 1));
    check(b, sdt_param_add_norm(b->t, named(b, "%s.norm2", root), out));
    check(b, sdt_param_add_conv(b->t, named(b, "%s.conv2", root), out, out, 3, 3, 1));
    if (in != out)
        check(b, sdt_param_add_linear_conv1x1(b->t, named(b, "%s.nin_shortcut", root), out, in, 1));
}

/* Mid block: resnet, single-head attention (1x1 convs in the file), resnet. */
static void vae_mid(builder *b, const char *side, int ch)
{
    char base[96];
    snprintf(base, sizeof base, "%s.mid.block_1", side);
    vae_resnet(b, base, ch, ch);
    check(b, sdt_param_add_norm(b->t, named(b, "%s.mid.attn_1.norm", side), ch));
    static const char *const proj[] = {"q", "k", "v", "proj_out"};
    for (int p = 0; p < 4; p++)
        check(b, sdt_param_add_linear_conv1x1(b->t, named(b, "%s.mid.attn_1.%s", side, proj[p]), ch, ch, 1));
    snprintf(base, sizeof base, "%s.mid.block_2", side);
    vae_resnet(b, base, ch, ch);
}

int sdt_vae_params(const sdt_vae_config *c, sdt_param_table *t, char **error)
{
    sdt_param_table_init(t, "vae", SDT_PREFIX_VAE);
    if (c->levels < 1 || c->levels > SDT_VAE_MAX_LEVELS || c->norm_groups < 1 || c->layers_per_block < 1) {
        *error = sdt_format("vae config: levels %d, norm groups %d, layers per block %d do not make a VAE",
                            c->levels, c->norm_groups, c->layers_per_block);
        return -1;
    }
    builder b = {.t = t};
    const int *boc = c->block_out_channels;
    int top = boc[c->levels - 1];
    int latent = c->latent_channels;
    char base[96];

    check(&b, sdt_param_add_conv(t, "encoder.conv_in", boc[0], c->in_channels, 3, 3, 1));
    int ch = boc[0];
    for (int i = 0; i < c->levels; i++) {
        for (int j = 0; j < c->layers_per_block; j++) {
            snprintf(base, sizeof base, "encoder.down.%d.block.%d", i, j);
            vae_resnet(&b, base, ch, boc[i]);
            ch = boc[i];
        }
        if (i < c->levels - 1)
            check(&b,
                  sdt_param_add_conv(t, named(&b, "encoder.down.%d.downsample.conv", i), ch, ch, 3, 3, 1));
    }
    vae_mid(&b, "encoder", ch);
    check(&b, sdt_param_add_norm(t, "encoder.norm_out", ch));
    check(&b, sdt_param_add_conv(t, "encoder.conv_out", 2 * latent, ch, 3, 3, 1));
    check(&b, sdt_param_add_linear_conv1x1(t, "quant_conv", 2 * latent, 2 * latent, 1));

    check(&b, sdt_param_add_linear_conv1x1(t, "post_quant_conv", latent, latent, 1));
    check(&b, sdt_param_add_conv(t, "decoder.conv_in", top, latent, 3, 3, 1));
    ch = top;
    vae_mid(&b, "decoder", ch);
    /* The decoder's levels run from the deepest (up.{levels-1}) to up.0 (sd_arch_spec §7.5). */
    for (int i = c->levels - 1; i >= 0; i--) {
        for (int j = 0; j <= c->layers_per_block; j++) {
            snprintf(base, sizeof base, "decoder.up.%d.block.%d", i, j);
            vae_resnet(&b, base, ch, boc[i]);
            ch = boc[i];
        }
        if (i > 0)
            check(&b, sdt_param_add_conv(t, named(&b, "decoder.up.%d.upsample.conv", i), ch, ch, 3, 3, 1));
    }
    check(&b, sdt_param_add_norm(t, "decoder.norm_out", ch));
    check(&b, sdt_param_add_conv(t, "decoder.conv_out", c->in_channels, ch, 3, 3, 1));
    if (b.failed) {
        *error = sdt_format("vae: could not build the parameter table");
        return -1;
    }
    return 0;
}
