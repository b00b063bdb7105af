/* The analytic FLOP count: every weight of a parameter table is applied at some number of positions per
 * image (the pixels of its output grid, the context tokens, or once for the per-sample vectors of the time
 * embedding); its MACs are that number times its elements. Where a weight runs follows from its name and
 * the config, mirroring how models/arch.c numbers the blocks, so a table the builders change is counted as
 * built. Attention's activation products are found through the query projection of each attention. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapter.h"
#include "flops.h"
#include "sdtune/strutil.h"

double sdt_flop_weight_mac(const sdt_flop_count *f) { return f->conv_mac + f->linear_mac; }

double sdt_flop_forward_mac(const sdt_flop_count *f)
{
    return f->conv_mac + f->linear_mac + f->attention_mac + f->adapter_mac;
}

double sdt_flops_training(const sdt_flop_count *f, sdt_flop_training kind, int checkpointing)
{
    double weights = sdt_flop_weight_mac(f);
    double mac = kind == SDT_FLOP_TRAIN_FULL ? 3.0 * weights : 2.0 * weights;
    mac += 3.5 * f->attention_mac + 3.0 * f->adapter_mac;
    if (checkpointing)
        mac += sdt_flop_forward_mac(f);
    return 2.0 * mac;
}

/* Where one weight runs, per image: positions (output pixels or tokens it is applied at) and, for the
 * query projection of an attention, the number of keys (0 for any other weight). */
typedef struct placement {
    int64_t positions;
    int64_t keys;
} placement;

/* Resolves a parameter name to its placement; returns 0, or -1 when the name is not one the walk knows. */
typedef int (*place_fn)(const void *geometry, const char *name, placement *out);

static int starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

/* Adds every weight of the table to *out. */
static int walk_table(const sdt_param_table *t, int64_t batch, place_fn place, const void *geometry,
                      sdt_flop_count *out, char **error)
{
    memset(out, 0, sizeof *out);
    out->params = sdt_param_table_numel(t);
    for (size_t i = 0; i < t->count; i++) {
        const sdt_param *p = &t->items[i];
        if (p->kind != SDT_PARAM_LINEAR_WEIGHT && p->kind != SDT_PARAM_CONV_WEIGHT)
            continue;
        placement at = {0, 0};
        if (place(geometry, p->name, &at) != 0)
            return sdt_set_error(error,
                                 "%s: cannot tell where %s runs (a layer the FLOP count does not know)",
                                 t->component, p->name);
        double rows = (double)batch * (double)at.positions;
        double per_row = (double)sdt_param_numel(p); /* [OC, C] or [OC, KH, KW, C]: MACs per output */
        int conv =
            p->kind == SDT_PARAM_CONV_WEIGHT && sdt_param_numel(p) != p->shape[0] * p->shape[p->ndim - 1];
        if (conv)
            out->conv_mac += rows * per_row;
        else
            out->linear_mac += rows * per_row;
        /* Q K^T and P V: each query row meets every key over the query's width (all heads together). */
        if (at.keys > 0)
            out->attention_mac += 2.0 * rows * (double)at.keys * (double)p->shape[0];
        if (p->adapter && p->adapter->rank > 0) {
            double out_ch = (double)p->shape[0], in_per_out = per_row / out_ch; /* C or KH*KW*C */
            out->adapter_mac += rows * (double)p->adapter->rank * (in_per_out + out_ch);
        }
    }
    return 0;
}

/* ---- UNet ---------------------------------------------------------------------------------------------- */

typedef struct unet_geometry {
    const sdt_unet_config *c;
    int64_t h, w, context_len;
} unet_geometry;

static int64_t grid(int64_t h, int64_t w, int level) { return (h >> level) * (w >> level); }

/* input_blocks.N: block 0 is the input conv; then per level layers_per_block resnet(+transformer) blocks
 * and, below the last level, a downsampler whose output lies one level down (models/arch.c's numbering). */
static int input_block_level(const sdt_unet_config *c, int n, int *downsampler)
{
    *downsampler = 0;
    if (n == 0)
        return 0;
    int block = 1;
    for (int i = 0; i < c->levels; i++) {
        for (int j = 0; j < c->layers_per_block; j++, block++)
            if (block == n)
                return i;
        if (i < c->levels - 1) {
            if (block == n) {
                *downsampler = 1;
                return i + 1;
            }
            block++;
        }
    }
    return -1;
}

static int unet_place(const void *geometry, const char *name, placement *out)
{
    const unet_geometry *g = geometry;
    const sdt_unet_config *c = g->c;
    if (starts_with(name, "time_embed.") || starts_with(name, "label_emb.") || strstr(name, ".emb_layers.")) {
        out->positions = 1; /* per-sample vectors */
        return 0;
    }
    if (strstr(name, ".attn2.to_k.") || strstr(name, ".attn2.to_v.")) {
        out->positions = g->context_len;
        return 0;
    }
    int level = -1, n = 0, sub = 0, used = 0;
    if (sscanf(name, "input_blocks.%d.%n", &n, &used) == 1 && used > 0) {
        int downsampler;
        level = input_block_level(c, n, &downsampler);
    } else if (starts_with(name, "middle_block.")) {
        level = c->levels - 1;
    } else if (sscanf(name, "output_blocks.%d.%d.%n", &n, &sub, &used) == 2 && used > 0) {
        level = c->levels - 1 - n / (c->layers_per_block + 1);
        /* the upsampler ("output_blocks.N.S.conv") runs on the grid one level up */
        if (starts_with(name + used, "conv."))
            level--;
    } else if (starts_with(name, "out.")) {
        level = 0;
    }
    if (level < 0 || level >= c->levels)
        return -1;
    out->positions = grid(g->h, g->w, level);
    if (strstr(name, ".attn1.to_q."))
        out->keys = out->positions;
    else if (strstr(name, ".attn2.to_q."))
        out->keys = g->context_len;
    return 0;
}

int sdt_flops_unet(const sdt_unet_config *c, const sdt_param_table *table, int64_t batch, int64_t latent_h,
                   int64_t latent_w, int64_t context_len, sdt_flop_count *out, char **error)
{
    int64_t align = (int64_t)1 << (c->levels - 1);
    if (batch < 1 || latent_h < align || latent_w < align || latent_h % align || latent_w % align ||
        context_len < 1)
        return sdt_set_error(error,
                             "unet FLOP count: batch %lld, latents %lldx%lld, context %lld (the latent sides "
                             "must be multiples of %lld)",
                             (long long)batch, (long long)latent_h, (long long)latent_w,
                             (long long)context_len, (long long)align);
    sdt_param_table own;
    int built = table == NULL;
    if (built) {
        if (sdt_unet_params(c, &own, error) != 0) {
            sdt_param_table_free(NULL, &own);
            return -1;
        }
        table = &own;
    }
    unet_geometry g = {c, latent_h, latent_w, context_len};
    int rc = walk_table(table, batch, unet_place, &g, out, error);
    if (built)
        sdt_param_table_free(NULL, &own);
    return rc;
}

/* ---- CLIP text encoder --------------------------------------------------------------------------------- */

static int clip_place(const void *geometry, const char *name, placement *out)
{
    int64_t tokens = *(const int64_t *)geometry;
    /* the projection runs on the pooled (end-of-text) token only */
    out->positions = strcmp(name, "text_projection.weight") == 0 ? 1 : tokens;
    /* causal attention: counted in full (the masked half is still computed by dense kernels) */
    if (strstr(name, ".self_attn.q_proj."))
        out->keys = tokens;
    return 0;
}

int sdt_flops_clip(const sdt_clip_config *c, const sdt_param_table *table, int64_t batch, int64_t tokens,
                   sdt_flop_count *out, char **error)
{
    if (batch < 1 || tokens < 1)
        return sdt_set_error(error, "text encoder FLOP count: batch %lld, tokens %lld", (long long)batch,
                             (long long)tokens);
    sdt_param_table own;
    int built = table == NULL;
    if (built) {
        if (sdt_clip_params(c, "text_encoder", SDT_PREFIX_CLIP_L, &own, error) != 0) {
            sdt_param_table_free(NULL, &own);
            return -1;
        }
        table = &own;
    }
    int rc = walk_table(table, batch, clip_place, &tokens, out, error);
    if (built)
        sdt_param_table_free(NULL, &own);
    return rc;
}

/* ---- VAE ----------------------------------------------------------------------------------------------- */

typedef struct vae_geometry {
    const sdt_vae_config *c;
    int64_t h, w; /* image */
    int encoder;
} vae_geometry;

/* Level i of the VAE works on the image grid divided by 2^i; the latents sit at level levels-1. */
static int vae_place(const void *geometry, const char *name, placement *out)
{
    const vae_geometry *g = geometry;
    int top = g->c->levels - 1, level = -1, i = 0, used = 0;
    int encoder_side = starts_with(name, "encoder.") || starts_with(name, "quant_conv.");
    if (encoder_side != g->encoder) {
        out->positions = 0; /* the other half of the VAE does not run */
        return 0;
    }
    if (sscanf(name, "encoder.down.%d.%n", &i, &used) == 1 && used > 0)
        level = strstr(name, ".downsample.") ? i + 1 : i;
    else if (sscanf(name, "decoder.up.%d.%n", &i, &used) == 1 && used > 0)
        level = strstr(name, ".upsample.") ? i - 1 : i;
    else if (strstr(name, ".mid.") || starts_with(name, "quant_conv.") ||
             starts_with(name, "post_quant_conv.") || starts_with(name, "encoder.conv_out.") ||
             starts_with(name, "decoder.conv_in."))
        level = top;
    else if (starts_with(name, "encoder.conv_in.") || starts_with(name, "decoder.conv_out."))
        level = 0;
    if (level < 0 || level > top)
        return -1;
    out->positions = grid(g->h, g->w, level);
    if (strstr(name, ".mid.attn_1.q."))
        out->keys = out->positions;
    return 0;
}

int sdt_flops_vae(const sdt_vae_config *c, const sdt_param_table *table, int encoder, int64_t batch,
                  int64_t image_h, int64_t image_w, sdt_flop_count *out, char **error)
{
    int64_t align = (int64_t)1 << (c->levels - 1);
    if (batch < 1 || image_h < align || image_w < align || image_h % align || image_w % align)
        return sdt_set_error(error, "vae FLOP count: batch %lld, image %lldx%lld (multiples of %lld)",
                             (long long)batch, (long long)image_h, (long long)image_w, (long long)align);
    sdt_param_table own;
    int built = table == NULL;
    if (built) {
        if (sdt_vae_params(c, &own, error) != 0) {
            sdt_param_table_free(NULL, &own);
            return -1;
        }
        table = &own;
    }
    vae_geometry g = {c, image_h, image_w, encoder != 0};
    int rc = walk_table(table, batch, vae_place, &g, out, error);
    /* params: the half that ran */
    if (rc == 0) {
        out->params = 0;
        for (size_t i = 0; i < table->count; i++) {
            const char *n = table->items[i].name;
            int enc = starts_with(n, "encoder.") || starts_with(n, "quant_conv.");
            if (enc == (encoder != 0))
                out->params += sdt_param_numel(&table->items[i]);
        }
    }
    if (built)
        sdt_param_table_free(NULL, &own);
    return rc;
}
