/* The UNet's spatial transformer: forward with saved tensors, backward, binding. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sdtune/strutil.h"
#include "unet_blocks.h"

/* diffusers' BasicTransformerBlock keeps LayerNorm's default eps whatever the UNet config says. */
#define TRANSFORMER_LN_EPS 1e-5f

static const char *const attention_names[4] = {"to_q", "to_k", "to_v", "to_out.0"};

/* ---- binding ------------------------------------------------------------------------------------- */

int sdt_transformer2d_bind(sdt_transformer2d *tf, sdt_param_table *t, const char *base, int depth, int heads,
                           int groups, float norm_eps, char **error)
{
    memset(tf, 0, sizeof *tf);
    char name[320];
    snprintf(name, sizeof name, "%s.norm", base);
    if (sdt_norm_bind(&tf->norm, t, name, groups, norm_eps, error) != 0)
        return -1;
    snprintf(name, sizeof name, "%s.proj_in", base);
    if (sdt_linear_bind(&tf->proj_in, t, name, error) != 0)
        return -1;
    snprintf(name, sizeof name, "%s.proj_out", base);
    if (sdt_linear_bind(&tf->proj_out, t, name, error) != 0)
        return -1;
    if (depth < 1) {
        *error = sdt_format("%s: transformer depth %d", base, depth);
        return -1;
    }
    tf->blocks = calloc((size_t)depth, sizeof *tf->blocks);
    if (!tf->blocks) {
        *error = sdt_format("%s: out of memory", base);
        return -1;
    }
    tf->depth = depth;
    for (int d = 0; d < depth; d++) {
        sdt_transformer_block *b = &tf->blocks[d];
        char blk[300];
        snprintf(blk, sizeof blk, "%s.transformer_blocks.%d", base, d);
#define BIND(expr, part) (snprintf(name, sizeof name, "%s.%s", blk, part), (expr) != 0)
        if (BIND(sdt_norm_bind(&b->norm1, t, name, 0, TRANSFORMER_LN_EPS, error), "norm1") ||
            BIND(sdt_mha_bind(&b->attn1, t, name, attention_names, heads, 0, error), "attn1") ||
            BIND(sdt_norm_bind(&b->norm2, t, name, 0, TRANSFORMER_LN_EPS, error), "norm2") ||
            BIND(sdt_mha_bind(&b->attn2, t, name, attention_names, heads, 0, error), "attn2") ||
            BIND(sdt_norm_bind(&b->norm3, t, name, 0, TRANSFORMER_LN_EPS, error), "norm3") ||
            BIND(sdt_linear_bind(&b->ff_in, t, name, error), "ff.net.0.proj") ||
            BIND(sdt_linear_bind(&b->ff_out, t, name, error), "ff.net.2")) {
            sdt_transformer2d_free(tf);
            return -1;
        }
#undef BIND
    }
    return 0;
}

void sdt_transformer2d_free(sdt_transformer2d *tf)
{
    free(tf->blocks);
    memset(tf, 0, sizeof *tf);
}

/* ---- one BasicTransformerBlock --------------------------------------------------------------------- */

static void block_saved_free(sdt_engine *e, sdt_transformer_block_saved *s)
{
    sdt_norm_saved_free(e, &s->ln1);
    sdt_norm_saved_free(e, &s->ln2);
    sdt_norm_saved_free(e, &s->ln3);
    sdt_act_free(e, &s->n1);
    sdt_act_free(e, &s->n2);
    sdt_act_free(e, &s->n3);
    sdt_act_free(e, &s->x1);
    sdt_act_free(e, &s->x2);
    sdt_mha_saved_free(e, &s->attn1);
    sdt_mha_saved_free(e, &s->attn2);
    sdt_act_free(e, &s->ff_h);
    sdt_act_free(e, &s->ff_g);
}

/* out [B, L, C] (allocated) from x [B, L, C]. With saved NULL each intermediate is freed once used. */
static int block_fwd(sdt_engine *e, const sdt_transformer_block *b, sdt_tensor *out,
                     sdt_transformer_block_saved *saved, const sdt_tensor *x, const sdt_tensor *context)
{
    sdt_transformer_block_saved local;
    sdt_transformer_block_saved *s = saved ? saved : &local;
    memset(s, 0, sizeof *s);
    memset(out, 0, sizeof *out);
    int keep = saved != NULL;

    /* x1 = x + attn1(LN1(x)); the attention output's buffer becomes x1. */
    if (sdt_norm_fwd(e, &b->norm1, &s->n1, keep ? &s->ln1 : NULL, x, 0) != 0 ||
        sdt_mha_fwd(e, &b->attn1, &s->x1, keep ? &s->attn1 : NULL, &s->n1, &s->n1) != 0 ||
        sdt_add_forward(e, &s->x1, &s->x1, x) != 0)
        goto fail;
    if (!keep)
        sdt_act_free(e, &s->n1);

    /* x2 = x1 + attn2(LN2(x1), context) */
    if (sdt_norm_fwd(e, &b->norm2, &s->n2, keep ? &s->ln2 : NULL, &s->x1, 0) != 0 ||
        sdt_mha_fwd(e, &b->attn2, &s->x2, keep ? &s->attn2 : NULL, &s->n2, context) != 0 ||
        sdt_add_forward(e, &s->x2, &s->x2, &s->x1) != 0)
        goto fail;
    if (!keep) {
        sdt_act_free(e, &s->n2);
        sdt_act_free(e, &s->x1);
    }

    /* out = x2 + ff.net.2(GEGLU(ff.net.0.proj(LN3(x2)))) */
    if (sdt_norm_fwd(e, &b->norm3, &s->n3, keep ? &s->ln3 : NULL, &s->x2, 0) != 0 ||
        sdt_linear_fwd(e, &b->ff_in, &s->ff_h, &s->n3) != 0)
        goto fail;
    if (!keep)
        sdt_act_free(e, &s->n3);
    int64_t g_shape[SDT_MAX_DIMS];
    memcpy(g_shape, s->ff_h.shape, sizeof g_shape);
    g_shape[s->ff_h.ndim - 1] /= 2;
    if (sdt_act_alloc(e, &s->ff_g, s->ff_h.dtype, s->ff_h.ndim, g_shape) != 0 ||
        sdt_geglu_forward(e, &s->ff_g, &s->ff_h) != 0)
        goto fail;
    if (!keep)
        sdt_act_free(e, &s->ff_h);
    if (sdt_linear_fwd(e, &b->ff_out, out, &s->ff_g) != 0 || sdt_add_forward(e, out, out, &s->x2) != 0)
        goto fail;
    if (!keep)
        block_saved_free(e, s);
    return 0;
fail:
    sdt_act_free(e, out);
    block_saved_free(e, s);
    return -1;
}

/* dstream [B, L, C] holds d(out) on entry and d(x) on return (the residual stream's gradient is updated in
 * place: each sub-layer's backward adds its input gradient into it). */
static int block_bwd(sdt_engine *e, const sdt_transformer_block *b, sdt_tensor *dstream, sdt_tensor *dcontext,
                     const sdt_tensor *x, const sdt_tensor *context, const sdt_transformer_block_saved *s)
{
    sdt_tensor dg = {0}; /* [B, L, 4C] */
    sdt_tensor dh = {0}; /* [B, L, 8C] */
    sdt_tensor dn = {0}; /* [B, L, C] gradient of a LN output, reused by the three sub-layers */
    int status = -1;
    /* feed-forward */
    if (sdt_act_zeros_like(e, &dg, &s->ff_g) != 0 ||
        sdt_linear_bwd(e, &b->ff_out, &dg, dstream, &s->ff_g) != 0 ||
        sdt_act_zeros_like(e, &dh, &s->ff_h) != 0 || sdt_geglu_backward(e, &dh, &dg, &s->ff_h) != 0)
        goto done;
    sdt_act_free(e, &dg);
    if (sdt_act_zeros_like(e, &dn, &s->n3) != 0 || sdt_linear_bwd(e, &b->ff_in, &dn, &dh, &s->n3) != 0 ||
        sdt_norm_bwd(e, &b->norm3, dstream, &dn, &s->x2, &s->ln3, 0) != 0)
        goto done;
    sdt_act_free(e, &dh);
    /* cross-attention */
    if (sdt_fill(e, &dn, 0.0f) != 0 ||
        sdt_mha_bwd(e, &b->attn2, &dn, dcontext, dstream, &s->n2, context, &s->attn2) != 0 ||
        sdt_norm_bwd(e, &b->norm2, dstream, &dn, &s->x1, &s->ln2, 0) != 0)
        goto done;
    /* self-attention: queries, keys and values all come from n1, so all three add into dn */
    if (sdt_fill(e, &dn, 0.0f) != 0 ||
        sdt_mha_bwd(e, &b->attn1, &dn, NULL, dstream, &s->n1, &s->n1, &s->attn1) != 0 ||
        sdt_norm_bwd(e, &b->norm1, dstream, &dn, x, &s->ln1, 0) != 0)
        goto done;
    status = 0;
done:
    sdt_act_free(e, &dg);
    sdt_act_free(e, &dh);
    sdt_act_free(e, &dn);
    return status;
}

/* ---- Transformer2D --------------------------------------------------------------------------------- */

void sdt_transformer2d_saved_free(sdt_engine *e, sdt_transformer2d_saved *saved)
{
    sdt_norm_saved_free(e, &saved->gn);
    sdt_act_free(e, &saved->gn_out);
    if (saved->stream)
        for (int d = 0; d <= saved->depth; d++)
            sdt_act_free(e, &saved->stream[d]);
    if (saved->blocks)
        for (int d = 0; d < saved->depth; d++)
            block_saved_free(e, &saved->blocks[d]);
    free(saved->stream);
    free(saved->blocks);
    memset(saved, 0, sizeof *saved);
}

/* An image [B, H, W, C] as its tokens [B, H*W, C] (the same memory). */
static sdt_tensor as_tokens(const sdt_tensor *x)
{
    return sdt_view(x, 3, SDT_SHAPE(x->shape[0], x->shape[1] * x->shape[2], x->shape[3]));
}

int sdt_transformer2d_fwd(sdt_engine *e, const sdt_transformer2d *tf, sdt_tensor *out,
                          sdt_transformer2d_saved *saved, const sdt_tensor *x, const sdt_tensor *context)
{
    memset(out, 0, sizeof *out);
    if (x->ndim != 4)
        return sdt_engine_fail(e, "transformer %s: input has rank %d, expected [B, H, W, C]",
                               tf->norm.weight->name, x->ndim);
    sdt_transformer2d_saved local = {0};
    sdt_transformer2d_saved *s = saved ? saved : &local;
    memset(s, 0, sizeof *s);
    int keep = saved != NULL;
    sdt_tensor tokens = as_tokens(x); /* [B, H*W, C] */
    sdt_tensor cur = {0};             /* [B, H*W, C] the residual stream (inference) */
    sdt_tensor proj = {0};            /* [B, H*W, C] proj_out's output */
    if (keep) {
        s->depth = tf->depth;
        s->stream = calloc((size_t)tf->depth + 1, sizeof *s->stream);
        s->blocks = calloc((size_t)tf->depth, sizeof *s->blocks);
        if (!s->stream || !s->blocks) {
            sdt_engine_fail(e, "transformer %s: out of memory", tf->norm.weight->name);
            goto fail;
        }
    }
    if (sdt_norm_fwd(e, &tf->norm, &s->gn_out, keep ? &s->gn : NULL, &tokens, 0) != 0 ||
        sdt_linear_fwd(e, &tf->proj_in, keep ? &s->stream[0] : &cur, &s->gn_out) != 0)
        goto fail;
    if (!keep)
        sdt_act_free(e, &s->gn_out);
    for (int d = 0; d < tf->depth; d++) {
        if (keep) {
            if (block_fwd(e, &tf->blocks[d], &s->stream[d + 1], &s->blocks[d], &s->stream[d], context) != 0)
                goto fail;
        } else {
            sdt_tensor next = {0}; /* [B, H*W, C] */
            int status = block_fwd(e, &tf->blocks[d], &next, NULL, &cur, context);
            sdt_act_free(e, &cur);
            if (status != 0)
                goto fail;
            cur = next;
        }
    }
    if (sdt_linear_fwd(e, &tf->proj_out, &proj, keep ? &s->stream[tf->depth] : &cur) != 0)
        goto fail;
    sdt_act_free(e, &cur);
    *out = sdt_view(&proj, 4, x->shape);
    if (sdt_add_forward(e, out, out, x) != 0)
        goto fail;
    sdt_transformer2d_saved_free(e, &local);
    return 0;
fail:
    sdt_act_free(e, &cur);
    sdt_act_free(e, &proj);
    memset(out, 0, sizeof *out);
    sdt_transformer2d_saved_free(e, s);
    return -1;
}

int sdt_transformer2d_bwd(sdt_engine *e, const sdt_transformer2d *tf, sdt_tensor *dx, sdt_tensor *dcontext,
                          const sdt_tensor *dout, const sdt_tensor *x, const sdt_tensor *context,
                          const sdt_transformer2d_saved *s)
{
    if (!s->stream || s->depth != tf->depth)
        return sdt_engine_fail(e, "transformer %s: backward without the saved forward",
                               tf->norm.weight->name);
    sdt_tensor tokens = as_tokens(x);                            /* [B, H*W, C] */
    sdt_tensor dout_tokens = as_tokens(dout);                    /* [B, H*W, C] */
    sdt_tensor dx_tokens = dx ? as_tokens(dx) : (sdt_tensor){0}; /* [B, H*W, C] view of dx */
    sdt_tensor dstream = {0};                                    /* [B, H*W, C] */
    sdt_tensor dgn = {0};                                        /* [B, H*W, C] */
    int status = -1;
    /* out = proj_out(stream) + x */
    if (dx && sdt_axpy(e, dx, 1.0f, dout) != 0)
        goto done;
    if (sdt_act_zeros_like(e, &dstream, &s->stream[tf->depth]) != 0 ||
        sdt_linear_bwd(e, &tf->proj_out, &dstream, &dout_tokens, &s->stream[tf->depth]) != 0)
        goto done;
    for (int d = tf->depth - 1; d >= 0; d--)
        if (block_bwd(e, &tf->blocks[d], &dstream, dcontext, &s->stream[d], context, &s->blocks[d]) != 0)
            goto done;
    if (sdt_act_zeros_like(e, &dgn, &s->gn_out) != 0 ||
        sdt_linear_bwd(e, &tf->proj_in, &dgn, &dstream, &s->gn_out) != 0 ||
        sdt_norm_bwd(e, &tf->norm, dx ? &dx_tokens : NULL, &dgn, &tokens, &s->gn, 0) != 0)
        goto done;
    status = 0;
done:
    sdt_act_free(e, &dstream);
    sdt_act_free(e, &dgn);
    return status;
}
