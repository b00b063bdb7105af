/* The VAE's encoder, latent sampling and decoder. See vae.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sdtune/strutil.h"
#include "vae.h"

/* ---- create ------------------------------------------------------------------------------------- */

static const char *const resnet_names[6] = {"norm1", "conv1", NULL, "norm2", "conv2", "nin_shortcut"};

static int bind_mid(sdt_vae_mid *mid, sdt_param_table *t, const char *side, const sdt_vae_config *c,
                    char **error)
{
    static const char *const attn_names[4] = {"q", "k", "v", "proj_out"};
    char name[96];
    snprintf(name, sizeof name, "%s.mid.block_1", side);
    if (sdt_resnet_bind(&mid->block_1, t, name, resnet_names, c->norm_groups, c->norm_eps, error) != 0)
        return -1;
    snprintf(name, sizeof name, "%s.mid.attn_1.norm", side);
    if (sdt_norm_bind(&mid->attn_norm, t, name, c->norm_groups, c->norm_eps, error) != 0)
        return -1;
    snprintf(name, sizeof name, "%s.mid.attn_1", side);
    if (sdt_mha_bind(&mid->attn, t, name, attn_names, 1, 0, error) != 0)
        return -1;
    snprintf(name, sizeof name, "%s.mid.block_2", side);
    return sdt_resnet_bind(&mid->block_2, t, name, resnet_names, c->norm_groups, c->norm_eps, error);
}

static int bind_all(sdt_vae *v, sdt_param_table *t, char **error)
{
    const sdt_vae_config *c = &v->config;
    int lpb = c->layers_per_block;
    char name[96];
    if (sdt_conv_bind(&v->enc_conv_in, t, "encoder.conv_in", 1, 1, error) != 0)
        return -1;
    for (int i = 0; i < c->levels; i++) {
        for (int j = 0; j < lpb; j++) {
            snprintf(name, sizeof name, "encoder.down.%d.block.%d", i, j);
            if (sdt_resnet_bind(&v->enc_blocks[i * lpb + j], t, name, resnet_names, c->norm_groups,
                                c->norm_eps, error) != 0)
                return -1;
        }
        if (i < c->levels - 1) {
            snprintf(name, sizeof name, "encoder.down.%d.downsample.conv", i);
            if (sdt_conv_bind(&v->enc_down[i], t, name, 2, 0, error) != 0)
                return -1;
            /* Zero padding on the bottom and right only (§4.2). */
            v->enc_down[i].p.pad_bottom = 1;
            v->enc_down[i].p.pad_right = 1;
        }
    }
    if (bind_mid(&v->enc_mid, t, "encoder", c, error) != 0 ||
        sdt_norm_bind(&v->enc_norm_out, t, "encoder.norm_out", c->norm_groups, c->norm_eps, error) != 0 ||
        sdt_conv_bind(&v->enc_conv_out, t, "encoder.conv_out", 1, 1, error) != 0 ||
        sdt_linear_bind(&v->quant_conv, t, "quant_conv", error) != 0)
        return -1;

    if (sdt_linear_bind(&v->post_quant_conv, t, "post_quant_conv", error) != 0 ||
        sdt_conv_bind(&v->dec_conv_in, t, "decoder.conv_in", 1, 1, error) != 0 ||
        bind_mid(&v->dec_mid, t, "decoder", c, error) != 0)
        return -1;
    for (int i = 0; i < c->levels; i++) {
        for (int j = 0; j <= lpb; j++) {
            snprintf(name, sizeof name, "decoder.up.%d.block.%d", i, j);
            if (sdt_resnet_bind(&v->dec_blocks[i * (lpb + 1) + j], t, name, resnet_names, c->norm_groups,
                                c->norm_eps, error) != 0)
                return -1;
        }
        if (i > 0) {
            snprintf(name, sizeof name, "decoder.up.%d.upsample.conv", i);
            if (sdt_conv_bind(&v->dec_up[i], t, name, 1, 1, error) != 0)
                return -1;
        }
    }
    if (sdt_norm_bind(&v->dec_norm_out, t, "decoder.norm_out", c->norm_groups, c->norm_eps, error) != 0 ||
        sdt_conv_bind(&v->dec_conv_out, t, "decoder.conv_out", 1, 1, error) != 0)
        return -1;
    return 0;
}

int sdt_vae_create(const sdt_vae_config *c, sdt_param_table *t, sdt_vae **out, char **error)
{
    *out = NULL;
    if (c->levels < 1 || c->levels > SDT_VAE_MAX_LEVELS || c->layers_per_block < 1 || c->norm_groups < 1 ||
        c->latent_channels < 1 || c->in_channels < 1 || !(c->scaling_factor > 0.0f)) {
        *error = sdt_format("vae config: levels %d, layers per block %d, norm groups %d, latent channels %d, "
                            "scaling factor %g do not make a VAE",
                            c->levels, c->layers_per_block, c->norm_groups, c->latent_channels,
                            (double)c->scaling_factor);
        return -1;
    }
    sdt_vae *v = calloc(1, sizeof *v);
    size_t lpb = (size_t)c->layers_per_block;
    if (v) {
        v->enc_blocks = calloc((size_t)c->levels * lpb, sizeof *v->enc_blocks);
        v->dec_blocks = calloc((size_t)c->levels * (lpb + 1), sizeof *v->dec_blocks);
    }
    if (!v || !v->enc_blocks || !v->dec_blocks) {
        sdt_vae_free(v);
        *error = sdt_format("vae: out of memory");
        return -1;
    }
    v->config = *c;
    if (bind_all(v, t, error) != 0) {
        sdt_vae_free(v);
        return -1;
    }
    *out = v;
    return 0;
}

void sdt_vae_free(sdt_vae *v)
{
    if (!v)
        return;
    free(v->enc_blocks);
    free(v->dec_blocks);
    free(v);
}

/* ---- forward pieces ----------------------------------------------------------------------------- */

/* Each stage reads *cur and replaces it with its output; the input is freed unless the caller owns it
 * (`borrowed`, the first stage's image or latents). */
static void advance(sdt_engine *e, sdt_tensor *cur, sdt_tensor *next, int *borrowed)
{
    if (!*borrowed)
        sdt_act_free(e, cur);
    *borrowed = 0;
    *cur = *next;
    memset(next, 0, sizeof *next);
}

/* out [B, H, W, C] (allocated) = x + proj_out(attention(q, k, v of group_norm(x))), one head over the H*W
 * pixels. */
static int mid_attention(sdt_engine *e, const sdt_vae_mid *mid, sdt_tensor *out, const sdt_tensor *x)
{
    const int64_t *s = x->shape;
    const int64_t tokens[3] = {s[0], s[1] * s[2], s[3]};
    sdt_tensor h = {0};   /* [B, H, W, C] group_norm(x) */
    sdt_tensor att = {0}; /* [B, H*W, C] attention output after proj_out */
    memset(out, 0, sizeof *out);
    if (sdt_norm_fwd(e, &mid->attn_norm, &h, NULL, x, 0) != 0)
        return -1;
    sdt_tensor ht = sdt_view(&h, 3, tokens);
    int status = sdt_mha_fwd(e, &mid->attn, &att, NULL, &ht, &ht);
    sdt_act_free(e, &h);
    if (status != 0)
        return -1;
    sdt_tensor xt = sdt_view(x, 3, tokens);
    if (sdt_add_forward(e, &att, &xt, &att) != 0) {
        sdt_act_free(e, &att);
        return -1;
    }
    *out = sdt_view(&att, 4, s);
    return 0;
}

/* block_1, attention, block_2 on *cur (replaced). */
static int mid_fwd(sdt_engine *e, const sdt_vae_mid *mid, sdt_tensor *cur, int *borrowed)
{
    sdt_tensor next = {0}; /* [B, H, W, C] */
    if (sdt_resnet_fwd(e, &mid->block_1, &next, NULL, cur, NULL) != 0)
        return -1;
    advance(e, cur, &next, borrowed);
    if (mid_attention(e, mid, &next, cur) != 0)
        return -1;
    advance(e, cur, &next, borrowed);
    if (sdt_resnet_fwd(e, &mid->block_2, &next, NULL, cur, NULL) != 0)
        return -1;
    advance(e, cur, &next, borrowed);
    return 0;
}

/* GroupNorm + SiLU then conv_out on *cur (replaced). */
static int out_fwd(sdt_engine *e, const sdt_norm *norm, const sdt_conv *conv, sdt_tensor *cur, int *borrowed)
{
    sdt_tensor next = {0}; /* [B, H, W, C], then [B, H, W, OC] */
    if (sdt_norm_fwd(e, norm, &next, NULL, cur, 1) != 0)
        return -1;
    advance(e, cur, &next, borrowed);
    if (sdt_conv_fwd(e, conv, &next, cur) != 0)
        return -1;
    advance(e, cur, &next, borrowed);
    return 0;
}

static int check_input(sdt_engine *e, const char *what, const sdt_tensor *x, int64_t channels,
                       int64_t multiple)
{
    if (x->ndim != 4 || x->shape[3] != channels || x->shape[0] < 1 || x->shape[1] < 1 || x->shape[2] < 1 ||
        x->shape[1] % multiple != 0 || x->shape[2] % multiple != 0) {
        char d[96];
        sdt_tensor_describe(x, d, sizeof d);
        return sdt_engine_fail(e, "vae: %s is %s, expected [B, H, W, %lld] with H and W multiples of %lld",
                               what, d, (long long)channels, (long long)multiple);
    }
    return 0;
}

/* ---- encode ------------------------------------------------------------------------------------- */

int sdt_vae_encode(sdt_engine *e, const sdt_vae *v, sdt_tensor *moments, const sdt_tensor *image)
{
    const sdt_vae_config *c = &v->config;
    int lpb = c->layers_per_block;
    memset(moments, 0, sizeof *moments);
    if (check_input(e, "the image", image, c->in_channels, (int64_t)1 << (c->levels - 1)) != 0)
        return -1;
    sdt_tensor cur = *image; /* the activation [B, H', W', C'] as it goes down */
    sdt_tensor next = {0};
    int borrowed = 1;
    if (sdt_conv_fwd(e, &v->enc_conv_in, &next, &cur) != 0)
        goto fail;
    advance(e, &cur, &next, &borrowed);
    for (int i = 0; i < c->levels; i++) {
        for (int j = 0; j < lpb; j++) {
            if (sdt_resnet_fwd(e, &v->enc_blocks[i * lpb + j], &next, NULL, &cur, NULL) != 0)
                goto fail;
            advance(e, &cur, &next, &borrowed);
        }
        if (i < c->levels - 1) {
            if (sdt_conv_fwd(e, &v->enc_down[i], &next, &cur) != 0)
                goto fail;
            advance(e, &cur, &next, &borrowed);
        }
    }
    if (mid_fwd(e, &v->enc_mid, &cur, &borrowed) != 0 ||
        out_fwd(e, &v->enc_norm_out, &v->enc_conv_out, &cur, &borrowed) != 0)
        goto fail;
    /* quant_conv: a 1x1 conv, run as a linear layer over the pixels. */
    if (sdt_linear_fwd(e, &v->quant_conv, moments, &cur) != 0)
        goto fail;
    sdt_act_free(e, &cur);
    return 0;
fail:
    if (!borrowed)
        sdt_act_free(e, &cur);
    return -1;
}

/* ---- latents ------------------------------------------------------------------------------------ */

/* A device tensor's values as host floats (malloc'd), or NULL with the engine error set. */
static float *to_host(sdt_engine *e, const sdt_tensor *t)
{
    size_t n = (size_t)sdt_tensor_numel(t), bytes = sdt_tensor_bytes(t);
    void *raw = malloc(bytes ? bytes : 1);
    float *values = malloc((n ? n : 1) * sizeof *values);
    if (!raw || !values) {
        free(raw);
        free(values);
        sdt_engine_fail(e, "vae: out of memory");
        return NULL;
    }
    int status = sdt_engine_download(e, raw, t, bytes);
    if (status == 0 && sdt_convert(values, SDT_F32, raw, t->dtype, n) != 0)
        status = sdt_engine_fail(e, "vae: cannot read a %s tensor", sdt_dtype_name(t->dtype));
    if (status != 0) {
        free(raw);
        free(values);
        return NULL;
    }
    free(raw);
    return values;
}

int sdt_vae_latents(sdt_engine *e, const sdt_vae *v, sdt_tensor *latents, const sdt_tensor *moments,
                    const sdt_tensor *noise)
{
    const sdt_vae_config *c = &v->config;
    int64_t z = c->latent_channels;
    memset(latents, 0, sizeof *latents);
    if (check_input(e, "the moments", moments, 2 * z, 1) != 0)
        return -1;
    const int64_t *s = moments->shape;
    if (noise && (noise->ndim != 4 || noise->shape[0] != s[0] || noise->shape[1] != s[1] ||
                  noise->shape[2] != s[2] || noise->shape[3] != z))
        return sdt_engine_fail(e, "vae: the noise must be [%lld, %lld, %lld, %lld]", (long long)s[0],
                               (long long)s[1], (long long)s[2], (long long)z);
    size_t pixels = (size_t)(s[0] * s[1] * s[2]);
    float *mom = to_host(e, moments); /* [pixels, 2z] */
    float *eps = noise ? to_host(e, noise) : NULL;
    float *out = malloc(pixels * (size_t)z * sizeof *out); /* [pixels, z] */
    void *raw = malloc(pixels * (size_t)z * sizeof(float));
    int status = -1;
    if (!mom || (noise && !eps))
        goto done;
    if (!out || !raw) {
        sdt_engine_fail(e, "vae: out of memory");
        goto done;
    }
    for (size_t p = 0; p < pixels; p++)
        for (int64_t ch = 0; ch < z; ch++) {
            float mean = mom[p * 2 * z + ch];
            float x = mean;
            if (eps) {
                float logvar = fminf(fmaxf(mom[p * 2 * z + z + ch], -30.0f), 20.0f);
                x = mean + expf(0.5f * logvar) * eps[p * z + ch];
            }
            out[p * z + ch] = x * c->scaling_factor;
        }
    if (sdt_act_alloc(e, latents, moments->dtype, 4, SDT_SHAPE(s[0], s[1], s[2], z)) != 0)
        goto done;
    if (sdt_convert(raw, moments->dtype, out, SDT_F32, pixels * (size_t)z) != 0 ||
        sdt_engine_upload(e, latents, raw, sdt_tensor_bytes(latents)) != 0) {
        sdt_act_free(e, latents);
        goto done;
    }
    status = 0;
done:
    free(mom);
    free(eps);
    free(out);
    free(raw);
    return status;
}

/* ---- decode ------------------------------------------------------------------------------------- */

int sdt_vae_decode(sdt_engine *e, const sdt_vae *v, sdt_tensor *image, const sdt_tensor *latents)
{
    const sdt_vae_config *c = &v->config;
    int lpb = c->layers_per_block;
    memset(image, 0, sizeof *image);
    if (check_input(e, "the latents", latents, c->latent_channels, 1) != 0)
        return -1;
    sdt_tensor cur = {0}; /* the activation [B, h', w', C'] as it goes up */
    sdt_tensor next = {0};
    int borrowed = 0;
    /* latents / scaling_factor, in a copy (the caller's latents stay as they are). */
    if (sdt_act_alloc(e, &cur, latents->dtype, 4, latents->shape) != 0)
        return -1;
    if (sdt_copy(e, &cur, latents) != 0 || sdt_scale(e, &cur, 1.0f / c->scaling_factor) != 0)
        goto fail;
    /* post_quant_conv: a 1x1 conv, run as a linear layer over the pixels. */
    if (sdt_linear_fwd(e, &v->post_quant_conv, &next, &cur) != 0)
        goto fail;
    advance(e, &cur, &next, &borrowed);
    if (sdt_conv_fwd(e, &v->dec_conv_in, &next, &cur) != 0)
        goto fail;
    advance(e, &cur, &next, &borrowed);
    if (mid_fwd(e, &v->dec_mid, &cur, &borrowed) != 0)
        goto fail;
    /* up.{levels-1} (the deepest) first, down to up.0. */
    for (int i = c->levels - 1; i >= 0; i--) {
        for (int j = 0; j <= lpb; j++) {
            if (sdt_resnet_fwd(e, &v->dec_blocks[i * (lpb + 1) + j], &next, NULL, &cur, NULL) != 0)
                goto fail;
            advance(e, &cur, &next, &borrowed);
        }
        if (i > 0) {
            const int64_t *s = cur.shape;
            if (sdt_act_alloc(e, &next, cur.dtype, 4, SDT_SHAPE(s[0], 2 * s[1], 2 * s[2], s[3])) != 0)
                goto fail;
            if (sdt_upsample2x_forward(e, &next, &cur) != 0) {
                sdt_act_free(e, &next);
                goto fail;
            }
            advance(e, &cur, &next, &borrowed);
            if (sdt_conv_fwd(e, &v->dec_up[i], &next, &cur) != 0)
                goto fail;
            advance(e, &cur, &next, &borrowed);
        }
    }
    if (out_fwd(e, &v->dec_norm_out, &v->dec_conv_out, &cur, &borrowed) != 0)
        goto fail;
    *image = cur;
    return 0;
fail:
    sdt_act_free(e, &cur);
    return -1;
}
