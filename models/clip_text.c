/* The CLIP text encoder: forward with the outputs SD asks for, backward for text-encoder training, the
 * long-prompt windows. See clip_text.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clip_text.h"
#include "sdtune/strutil.h"

/* Tokens of one kohya window (the CLIP context length). */
#define WINDOW_TOKENS 77
/* The end-of-text id of the real CLIP vocabulary; §3.1's argmax rule keys on it. */
#define CLIP_EOT_ID 49407

/* ---- small helpers ------------------------------------------------------------------------------ */

/* Row `row` of a tensor seen as [rows, width]: a one-dimensional view of `count` rows' worth of elements. */
static sdt_tensor rows_view(const sdt_tensor *t, int64_t row, int64_t width, int64_t count)
{
    sdt_tensor v = *t;
    size_t element = sdt_dtype_bits(t->dtype) / 8;
    v.data = (char *)t->data + (size_t)(row * width) * element;
    v.ndim = 1;
    memset(v.shape, 0, sizeof v.shape);
    v.shape[0] = width * count;
    return v;
}

static sdt_tensor *grad_of(sdt_param *p) { return p && p->grad.data ? &p->grad : NULL; }

static int same_shape(const sdt_tensor *a, const sdt_tensor *b)
{
    if (a->ndim != b->ndim)
        return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return 0;
    return 1;
}

static int expect_like(sdt_engine *e, const char *what, const sdt_tensor *got, const sdt_tensor *want)
{
    if (same_shape(got, want))
        return 0;
    char g[96], w[96];
    sdt_tensor_describe(got, g, sizeof g);
    sdt_tensor_describe(want, w, sizeof w);
    return sdt_engine_fail(e, "text encoder backward: %s is %s, expected the shape of %s", what, g, w);
}

/* ---- create ------------------------------------------------------------------------------------- */

int sdt_clip_text_create(const sdt_clip_config *c, sdt_param_table *t, sdt_clip_text **out, char **error)
{
    *out = NULL;
    if (c->layers < 1 || c->heads < 1 || c->width % c->heads != 0 || c->max_positions < 1) {
        *error = sdt_format("%s: %d layers of width %d with %d heads do not make a text encoder",
                            t->component, c->layers, c->width, c->heads);
        return -1;
    }
    sdt_clip_text *m = calloc(1, sizeof *m);
    if (m)
        m->layers = calloc((size_t)c->layers, sizeof *m->layers);
    if (!m || !m->layers) {
        sdt_clip_text_free(m);
        *error = sdt_format("%s: out of memory", t->component);
        return -1;
    }
    m->config = *c;
    int failed = 0;
    m->token_embedding = sdt_bind_param(t, "text_model.embeddings.token_embedding.weight", error);
    m->position_embedding = sdt_bind_param(t, "text_model.embeddings.position_embedding.weight", error);
    failed |= !m->token_embedding || !m->position_embedding;
    static const char *const attn_names[4] = {"q_proj", "k_proj", "v_proj", "out_proj"};
    for (int l = 0; l < c->layers && !failed; l++) {
        sdt_clip_layer *layer = &m->layers[l];
        char base[96], name[128];
        snprintf(base, sizeof base, "text_model.encoder.layers.%d", l);
        snprintf(name, sizeof name, "%s.layer_norm1", base);
        failed |= sdt_norm_bind(&layer->ln1, t, name, 0, c->norm_eps, error) != 0;
        snprintf(name, sizeof name, "%s.self_attn", base);
        failed |= sdt_mha_bind(&layer->attn, t, name, attn_names, c->heads, 1, error) != 0;
        snprintf(name, sizeof name, "%s.layer_norm2", base);
        failed |= sdt_norm_bind(&layer->ln2, t, name, 0, c->norm_eps, error) != 0;
        snprintf(name, sizeof name, "%s.mlp.fc1", base);
        failed |= sdt_linear_bind(&layer->fc1, t, name, error) != 0;
        snprintf(name, sizeof name, "%s.mlp.fc2", base);
        failed |= sdt_linear_bind(&layer->fc2, t, name, error) != 0;
    }
    if (!failed)
        failed |= sdt_norm_bind(&m->final_norm, t, "text_model.final_layer_norm", 0, c->norm_eps, error) != 0;
    if (!failed && c->projection_dim > 0)
        failed |= sdt_linear_bind(&m->projection, t, "text_projection", error) != 0;
    if (!failed) {
        /* The table decides the shapes; a table built from another config must not run. */
        const sdt_tensor *tok = &m->token_embedding->value, *pos = &m->position_embedding->value;
        if (tok->shape[0] != c->vocab_size || tok->shape[1] != c->width || pos->shape[0] < c->max_positions ||
            pos->shape[1] != c->width) {
            *error = sdt_format("%s: the embeddings do not match a vocabulary of %d and width %d",
                                t->component, c->vocab_size, c->width);
            failed = 1;
        }
    }
    if (failed) {
        sdt_clip_text_free(m);
        return -1;
    }
    *out = m;
    return 0;
}

void sdt_clip_text_free(sdt_clip_text *m)
{
    if (!m)
        return;
    free(m->layers);
    free(m);
}

/* ---- one encoder layer -------------------------------------------------------------------------- */

static void layer_saved_free(sdt_engine *e, sdt_clip_layer_saved *s)
{
    sdt_norm_saved_free(e, &s->n1);
    sdt_norm_saved_free(e, &s->n2);
    sdt_act_free(e, &s->a1);
    sdt_mha_saved_free(e, &s->attn);
    sdt_act_free(e, &s->mid);
    sdt_act_free(e, &s->a2);
    sdt_act_free(e, &s->f1);
    sdt_act_free(e, &s->g);
}

/* out [B, L, W] (allocated) = layer(x [B, L, W]). With s NULL (inference, or a checkpointed layer) every
 * intermediate is freed as soon as the next one exists. */
static int layer_fwd(sdt_engine *e, const sdt_clip_layer *l, sdt_activation act, sdt_tensor *out,
                     sdt_clip_layer_saved *s, const sdt_tensor *x)
{
    sdt_clip_layer_saved local;
    sdt_clip_layer_saved *k = s ? s : &local;
    memset(k, 0, sizeof *k);
    memset(out, 0, sizeof *out);
    sdt_tensor f2 = {0}; /* [B, L, W] fc2 output, then the layer output */
    if (sdt_norm_fwd(e, &l->ln1, &k->a1, s ? &k->n1 : NULL, x, 0) != 0 ||
        sdt_mha_fwd(e, &l->attn, &k->mid, s ? &k->attn : NULL, &k->a1, &k->a1) != 0)
        goto fail;
    if (!s)
        sdt_act_free(e, &k->a1);
    /* mid = x + attention, in the attention output's buffer. */
    if (sdt_add_forward(e, &k->mid, x, &k->mid) != 0 ||
        sdt_norm_fwd(e, &l->ln2, &k->a2, s ? &k->n2 : NULL, &k->mid, 0) != 0 ||
        sdt_linear_fwd(e, &l->fc1, &k->f1, &k->a2) != 0)
        goto fail;
    if (!s)
        sdt_act_free(e, &k->a2);
    if (sdt_act_alloc(e, &k->g, k->f1.dtype, k->f1.ndim, k->f1.shape) != 0 ||
        sdt_activation_forward(e, &k->g, &k->f1, act) != 0)
        goto fail;
    if (!s)
        sdt_act_free(e, &k->f1);
    if (sdt_linear_fwd(e, &l->fc2, &f2, &k->g) != 0 || sdt_add_forward(e, &f2, &k->mid, &f2) != 0)
        goto fail;
    if (!s)
        layer_saved_free(e, k);
    *out = f2;
    return 0;
fail:
    sdt_act_free(e, &f2);
    layer_saved_free(e, k);
    return -1;
}

/* dx [B, L, W] += the layer's input gradient given dout; parameter gradients into the trainable ones. */
static int layer_bwd(sdt_engine *e, const sdt_clip_layer *l, sdt_activation act, sdt_tensor *dx,
                     const sdt_tensor *dout, const sdt_tensor *x, const sdt_clip_layer_saved *s)
{
    sdt_tensor dmid = {0}; /* [B, L, W] gradient of mid = x + attention */
    sdt_tensor dg = {0};   /* [B, L, M] gradient of act(f1) */
    sdt_tensor df1 = {0};  /* [B, L, M] gradient of fc1's output */
    sdt_tensor da = {0};   /* [B, L, W] gradient of a norm's output (a2, then a1) */
    int status = -1;
    /* out = mid + fc2(g): dout reaches mid directly and through the MLP. */
    if (sdt_act_alloc(e, &dmid, dout->dtype, dout->ndim, dout->shape) != 0 || sdt_copy(e, &dmid, dout) != 0)
        goto done;
    if (sdt_act_zeros_like(e, &dg, &s->g) != 0 || sdt_linear_bwd(e, &l->fc2, &dg, dout, &s->g) != 0)
        goto done;
    if (sdt_act_zeros_like(e, &df1, &s->f1) != 0 || sdt_activation_backward(e, &df1, &dg, &s->f1, act) != 0)
        goto done;
    sdt_act_free(e, &dg);
    if (sdt_act_zeros_like(e, &da, &s->a2) != 0 || sdt_linear_bwd(e, &l->fc1, &da, &df1, &s->a2) != 0)
        goto done;
    sdt_act_free(e, &df1);
    if (sdt_norm_bwd(e, &l->ln2, &dmid, &da, &s->mid, &s->n2, 0) != 0)
        goto done;
    sdt_act_free(e, &da);
    /* mid = x + attention(layer_norm1(x)). */
    if (dx && sdt_axpy(e, dx, 1.0f, &dmid) != 0)
        goto done;
    if (sdt_act_zeros_like(e, &da, &s->a1) != 0 ||
        sdt_mha_bwd(e, &l->attn, &da, NULL, &dmid, &s->a1, &s->a1, &s->attn) != 0)
        goto done;
    sdt_act_free(e, &dmid);
    if (sdt_norm_bwd(e, &l->ln1, dx, &da, x, &s->n1, 0) != 0)
        goto done;
    status = 0;
done:
    sdt_act_free(e, &dmid);
    sdt_act_free(e, &dg);
    sdt_act_free(e, &df1);
    sdt_act_free(e, &da);
    return status;
}

/* ---- forward ------------------------------------------------------------------------------------ */

void sdt_clip_eos_positions(const int32_t *ids, int batch, int length, int eos_id, int *positions)
{
    int all_eot = 1;
    for (int b = 0; b < batch; b++) {
        int32_t best = ids[(size_t)b * length];
        for (int i = 1; i < length; i++)
            if (ids[(size_t)b * length + i] > best)
                best = ids[(size_t)b * length + i];
        all_eot &= best == CLIP_EOT_ID;
    }
    /* With the real vocabulary both rules pick the same token; the argmax one also holds when eos_id is
     * set to something else (transformers' legacy configs carry eos_token_id 2). */
    int32_t target = all_eot ? CLIP_EOT_ID : eos_id;
    for (int b = 0; b < batch; b++) {
        positions[b] = 0;
        for (int i = 0; i < length; i++)
            if (ids[(size_t)b * length + i] == target) {
                positions[b] = i;
                break;
            }
    }
}

void sdt_clip_text_result_free(sdt_engine *e, sdt_clip_text_result *r)
{
    sdt_act_free(e, &r->context);
    sdt_act_free(e, &r->hidden);
    sdt_act_free(e, &r->pooled);
    free(r->eos_position);
    free(r->ids);
    if (r->hs)
        for (int n = 0; n <= r->top; n++)
            sdt_act_free(e, &r->hs[n]);
    free(r->hs);
    if (r->saved)
        for (int n = 0; n < r->top; n++)
            layer_saved_free(e, &r->saved[n]);
    free(r->saved);
    sdt_norm_saved_free(e, &r->context_norm);
    sdt_act_free(e, &r->pool_rows);
    sdt_norm_saved_free(e, &r->pool_norm);
    sdt_act_free(e, &r->pool_normed);
    memset(r, 0, sizeof *r);
}

/* x [B, L, W] (allocated) = token_embedding[ids] + position_embedding[0..L-1]. */
static int embed(sdt_engine *e, const sdt_clip_text *m, sdt_tensor *x, const int32_t *ids, int batch,
                 int length, sdt_dtype dtype)
{
    int64_t w = m->config.width;
    if (sdt_act_alloc(e, x, dtype, 3, SDT_SHAPE(batch, length, w)) != 0)
        return -1;
    for (int b = 0; b < batch; b++)
        for (int i = 0; i < length; i++) {
            int64_t row = (int64_t)b * length + i;
            sdt_tensor dst = rows_view(x, row, w, 1);
            sdt_tensor tok = rows_view(&m->token_embedding->value, ids[row], w, 1);
            sdt_tensor pos = rows_view(&m->position_embedding->value, i, w, 1);
            if (sdt_copy(e, &dst, &tok) != 0 || sdt_axpy(e, &dst, 1.0f, &pos) != 0) {
                sdt_act_free(e, x);
                return -1;
            }
        }
    return 0;
}

static int check_forward_args(sdt_engine *e, const sdt_clip_text *m, const int32_t *ids, int batch,
                              int length, const sdt_clip_text_options *o)
{
    const sdt_clip_config *c = &m->config;
    if (batch < 1 || length < 1 || length > c->max_positions)
        return sdt_engine_fail(e, "text encoder: %d sequences of %d tokens (at most %d tokens)", batch,
                               length, c->max_positions);
    for (int64_t i = 0; i < (int64_t)batch * length; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab_size)
            return sdt_engine_fail(
                e, "text encoder: token id %d at position %lld is outside the vocabulary of %d", ids[i],
                (long long)(i % length), c->vocab_size);
    if (o->clip_skip < 0 || o->clip_skip > c->layers)
        return sdt_engine_fail(e, "text encoder: clip_skip %d (1..%d, or 0 for no context)", o->clip_skip,
                               c->layers);
    if (o->hidden_layer < -1 || o->hidden_layer > c->layers)
        return sdt_engine_fail(e, "text encoder: hidden state %d (0..%d, or -1 for none)", o->hidden_layer,
                               c->layers);
    if (o->clip_skip == 0 && o->hidden_layer < 0 && !o->pooled)
        return sdt_engine_fail(e, "text encoder: no output requested");
    if (!sdt_dtype_is_compute(o->dtype))
        return sdt_engine_fail(e, "text encoder: activations must be f32, f16 or bf16");
    return 0;
}

/* The pooled output from hidden_states[layers]: gather the EOS rows, final layer norm, projection. */
static int pool(sdt_engine *e, const sdt_clip_text *m, sdt_clip_text_result *r, const sdt_tensor *last,
                int keep)
{
    int64_t w = m->config.width;
    if (sdt_act_alloc(e, &r->pool_rows, last->dtype, 2, SDT_SHAPE(r->batch, w)) != 0)
        return -1;
    for (int b = 0; b < r->batch; b++) {
        sdt_tensor dst = rows_view(&r->pool_rows, b, w, 1);
        sdt_tensor src = rows_view(last, (int64_t)b * r->length + r->eos_position[b], w, 1);
        if (sdt_copy(e, &dst, &src) != 0)
            return -1;
    }
    /* The layer norm is per row, so normalising the gathered rows equals gathering normalised rows. */
    if (sdt_norm_fwd(e, &m->final_norm, &r->pool_normed, keep ? &r->pool_norm : NULL, &r->pool_rows, 0) != 0)
        return -1;
    if (!keep)
        sdt_act_free(e, &r->pool_rows);
    if (!m->projection.weight) {
        r->pooled = r->pool_normed;
        memset(&r->pool_normed, 0, sizeof r->pool_normed);
        return 0;
    }
    if (sdt_linear_fwd(e, &m->projection, &r->pooled, &r->pool_normed) != 0)
        return -1;
    if (!keep)
        sdt_act_free(e, &r->pool_normed);
    return 0;
}

int sdt_clip_text_forward(sdt_engine *e, const sdt_clip_text *m, sdt_clip_text_result *r, const int32_t *ids,
                          int batch, int length, const sdt_clip_text_options *options)
{
    memset(r, 0, sizeof *r);
    if (check_forward_args(e, m, ids, batch, length, options) != 0)
        return -1;
    const sdt_clip_config *c = &m->config;
    int keep = options->keep_for_backward;
    int ctx_index = options->clip_skip > 0 ? c->layers + 1 - options->clip_skip : -1;
    r->options = *options;
    r->batch = batch;
    r->length = length;
    r->top = ctx_index;
    if (options->hidden_layer > r->top)
        r->top = options->hidden_layer;
    if (options->pooled)
        r->top = c->layers;
    size_t tokens = (size_t)batch * length;
    r->ids = malloc(tokens * sizeof *r->ids);
    r->eos_position = malloc((size_t)batch * sizeof *r->eos_position);
    r->hs = calloc((size_t)r->top + 1, sizeof *r->hs);
    r->saved = calloc((size_t)r->top + 1, sizeof *r->saved);
    if (!r->ids || !r->eos_position || !r->hs || !r->saved) {
        sdt_clip_text_result_free(e, r);
        return sdt_engine_fail(e, "text encoder: out of memory");
    }
    memcpy(r->ids, ids, tokens * sizeof *ids);
    sdt_clip_eos_positions(ids, batch, length, c->eos_id, r->eos_position);

    /* hs[n] is hidden_states[n]; without keep only the current one lives. */
    if (embed(e, m, &r->hs[0], ids, batch, length, options->dtype) != 0)
        goto fail;
    for (int n = 0;; n++) {
        sdt_tensor *x = &r->hs[n];
        if (n == ctx_index &&
            sdt_norm_fwd(e, &m->final_norm, &r->context, keep ? &r->context_norm : NULL, x, 0) != 0)
            goto fail;
        if (n == options->hidden_layer && (sdt_act_alloc(e, &r->hidden, x->dtype, x->ndim, x->shape) != 0 ||
                                           sdt_copy(e, &r->hidden, x) != 0))
            goto fail;
        if (n == c->layers && options->pooled && pool(e, m, r, x, keep) != 0)
            goto fail;
        if (n == r->top)
            break;
        sdt_clip_layer_saved *s = keep && !options->checkpoint ? &r->saved[n] : NULL;
        if (layer_fwd(e, &m->layers[n], c->act, &r->hs[n + 1], s, x) != 0)
            goto fail;
        if (!keep)
            sdt_act_free(e, x);
    }
    if (!keep)
        sdt_act_free(e, &r->hs[r->top]);
    r->kept = keep;
    return 0;
fail:
    sdt_clip_text_result_free(e, r);
    return -1;
}

/* ---- backward ----------------------------------------------------------------------------------- */

/* Adds the pooled output's gradient into dh [B, L, W] (the gradient of hidden_states[layers]). */
static int pool_bwd(sdt_engine *e, const sdt_clip_text *m, sdt_clip_text_result *r, sdt_tensor *dh,
                    const sdt_tensor *dpooled)
{
    int64_t w = m->config.width;
    sdt_tensor dnormed = {0}; /* [B, W] gradient of the final layer norm's output */
    sdt_tensor drows = {0};   /* [B, W] gradient of the gathered rows */
    int status = -1;
    const sdt_tensor *dn = dpooled;
    if (m->projection.weight) {
        if (sdt_act_zeros_like(e, &dnormed, &r->pool_normed) != 0 ||
            sdt_linear_bwd(e, &m->projection, &dnormed, dpooled, &r->pool_normed) != 0)
            goto done;
        dn = &dnormed;
    }
    if (sdt_act_zeros_like(e, &drows, &r->pool_rows) != 0 ||
        sdt_norm_bwd(e, &m->final_norm, &drows, dn, &r->pool_rows, &r->pool_norm, 0) != 0)
        goto done;
    for (int b = 0; b < r->batch; b++) {
        sdt_tensor dst = rows_view(dh, (int64_t)b * r->length + r->eos_position[b], w, 1);
        sdt_tensor src = rows_view(&drows, b, w, 1);
        if (sdt_axpy(e, &dst, 1.0f, &src) != 0)
            goto done;
    }
    status = 0;
done:
    sdt_act_free(e, &dnormed);
    sdt_act_free(e, &drows);
    return status;
}

/* The embedding lookup's backward: rows of dh [B, L, W] into the embedding tables' gradients. */
static int embed_bwd(sdt_engine *e, const sdt_clip_text *m, const sdt_clip_text_result *r,
                     const sdt_tensor *dh)
{
    sdt_tensor *dtok = grad_of(m->token_embedding), *dpos = grad_of(m->position_embedding);
    int64_t w = m->config.width;
    for (int b = 0; b < r->batch && (dtok || dpos); b++)
        for (int i = 0; i < r->length; i++) {
            int64_t row = (int64_t)b * r->length + i;
            sdt_tensor src = rows_view(dh, row, w, 1);
            if (dtok) {
                sdt_tensor dst = rows_view(dtok, r->ids[row], w, 1);
                if (sdt_axpy(e, &dst, 1.0f, &src) != 0)
                    return -1;
            }
            if (dpos) {
                sdt_tensor dst = rows_view(dpos, i, w, 1);
                if (sdt_axpy(e, &dst, 1.0f, &src) != 0)
                    return -1;
            }
        }
    return 0;
}

int sdt_clip_text_backward(sdt_engine *e, const sdt_clip_text *m, sdt_clip_text_result *r,
                           const sdt_tensor *dcontext, const sdt_tensor *dhidden, const sdt_tensor *dpooled,
                           sdt_tensor *dembed)
{
    if (!r->kept)
        return sdt_engine_fail(e, "text encoder backward: the forward kept nothing (keep_for_backward unset, "
                                  "or the backward already ran)");
    if ((dcontext && !r->context.data) || (dhidden && !r->hidden.data) || (dpooled && !r->pooled.data))
        return sdt_engine_fail(e,
                               "text encoder backward: a gradient for an output the forward did not produce");
    if ((dcontext && expect_like(e, "the context gradient", dcontext, &r->context) != 0) ||
        (dhidden && expect_like(e, "the hidden state gradient", dhidden, &r->hidden) != 0) ||
        (dpooled && expect_like(e, "the pooled gradient", dpooled, &r->pooled) != 0) ||
        (dembed && expect_like(e, "the embedding gradient", dembed, &r->hs[0]) != 0))
        return -1;
    const sdt_clip_config *c = &m->config;
    int ctx_index = r->options.clip_skip > 0 ? c->layers + 1 - r->options.clip_skip : -1;
    sdt_tensor dh = {0};    /* [B, L, W] gradient of hidden_states[n] */
    sdt_tensor dprev = {0}; /* [B, L, W] gradient of hidden_states[n - 1] */
    sdt_clip_layer_saved redo = {0};
    sdt_tensor redo_out = {0}; /* [B, L, W] a checkpointed layer's recomputed output (unused) */
    int status = -1;
    r->kept = 0;
    /* Start at the deepest hidden state an output gradient reaches: the layers above it add nothing. */
    int start = 0;
    if (dpooled)
        start = c->layers;
    if (dcontext && ctx_index > start)
        start = ctx_index;
    if (dhidden && r->options.hidden_layer > start)
        start = r->options.hidden_layer;
    if (sdt_act_zeros_like(e, &dh, &r->hs[start]) != 0)
        goto done;
    for (int n = start;; n--) {
        if (n == c->layers && dpooled && pool_bwd(e, m, r, &dh, dpooled) != 0)
            goto done;
        if (n == ctx_index && dcontext &&
            sdt_norm_bwd(e, &m->final_norm, &dh, dcontext, &r->hs[n], &r->context_norm, 0) != 0)
            goto done;
        if (n == r->options.hidden_layer && dhidden && sdt_axpy(e, &dh, 1.0f, dhidden) != 0)
            goto done;
        if (n == 0)
            break;
        /* Layer n - 1 took hs[n - 1] to hs[n]; hs[n] is no longer needed. */
        sdt_act_free(e, &r->hs[n]);
        const sdt_clip_layer_saved *s = &r->saved[n - 1];
        if (r->options.checkpoint) {
            if (layer_fwd(e, &m->layers[n - 1], c->act, &redo_out, &redo, &r->hs[n - 1]) != 0)
                goto done;
            sdt_act_free(e, &redo_out);
            s = &redo;
        }
        if (sdt_act_zeros_like(e, &dprev, &dh) != 0 ||
            layer_bwd(e, &m->layers[n - 1], c->act, &dprev, &dh, &r->hs[n - 1], s) != 0)
            goto done;
        layer_saved_free(e, &redo);
        layer_saved_free(e, &r->saved[n - 1]);
        sdt_act_free(e, &dh);
        dh = dprev;
        memset(&dprev, 0, sizeof dprev);
    }
    if (dembed && sdt_axpy(e, dembed, 1.0f, &dh) != 0)
        goto done;
    if (embed_bwd(e, m, r, &dh) != 0)
        goto done;
    status = 0;
done:
    sdt_act_free(e, &dh);
    sdt_act_free(e, &dprev);
    sdt_act_free(e, &redo_out);
    layer_saved_free(e, &redo);
    /* The saved state is spent either way; the outputs stay until sdt_clip_text_result_free. */
    for (int n = 0; n <= r->top; n++)
        sdt_act_free(e, &r->hs[n]);
    for (int n = 0; n < r->top; n++)
        layer_saved_free(e, &r->saved[n]);
    sdt_norm_saved_free(e, &r->context_norm);
    sdt_norm_saved_free(e, &r->pool_norm);
    sdt_act_free(e, &r->pool_rows);
    sdt_act_free(e, &r->pool_normed);
    return status;
}

/* ---- kohya long prompts ------------------------------------------------------------------------- */

void sdt_clip_make_windows(const int32_t *ids, int batch, int windows, int eos_id, int pad_id, int32_t *out)
{
    const int inner = WINDOW_TOKENS - 2;
    const int length = 2 + inner * windows;
    for (int b = 0; b < batch; b++) {
        const int32_t *seq = ids + (size_t)b * length;
        for (int w = 0; w < windows; w++) {
            int32_t *win = out + ((size_t)b * windows + w) * WINDOW_TOKENS;
            win[0] = seq[0];
            memcpy(win + 1, seq + 1 + (size_t)inner * w, (size_t)inner * sizeof *win);
            win[WINDOW_TOKENS - 1] = seq[length - 1];
            if (pad_id != eos_id) {
                if (win[WINDOW_TOKENS - 2] != eos_id && win[WINDOW_TOKENS - 2] != pad_id)
                    win[WINDOW_TOKENS - 1] = eos_id;
                if (win[1] == pad_id)
                    win[1] = eos_id;
            }
        }
    }
}

/* Checks enc [B * n, T, W] against the stitched [B, 2 + (T - 2) n, W]; fills the sizes. */
static int stitch_shapes(sdt_engine *e, const char *op, const sdt_tensor *enc, int windows, int64_t *batch,
                         int64_t *stitched)
{
    if (enc->ndim != 3 || windows < 1 || enc->shape[0] % windows != 0 || enc->shape[1] < 3)
        return sdt_engine_fail(e, "%s: encodings must be [B * %d, T, W] with T >= 3", op, windows);
    *batch = enc->shape[0] / windows;
    *stitched = 2 + (enc->shape[1] - 2) * windows;
    return 0;
}

/* The three pieces of the stitch for sequence b: each (source row in enc, target row in out, rows). */
typedef struct stitch_piece {
    int64_t src, dst, rows;
} stitch_piece;

static int stitch_pieces(int64_t b, int windows, int64_t t, int64_t stitched, stitch_piece *p)
{
    int n = 0;
    int64_t first = b * windows; /* window 0 of sequence b, as a row of [B * n, T] */
    p[n++] = (stitch_piece){first * t, b * stitched, 1};
    for (int w = 0; w < windows; w++)
        p[n++] = (stitch_piece){(first + w) * t + 1, b * stitched + 1 + (t - 2) * w, t - 2};
    p[n++] = (stitch_piece){(first + windows) * t - 1, b * stitched + stitched - 1, 1};
    return n;
}

int sdt_clip_stitch_windows(sdt_engine *e, sdt_tensor *out, const sdt_tensor *enc, int windows)
{
    int64_t batch = 0, stitched = 0;
    memset(out, 0, sizeof *out);
    if (stitch_shapes(e, "stitch windows", enc, windows, &batch, &stitched) != 0)
        return -1;
    int64_t t = enc->shape[1], w = enc->shape[2];
    if (sdt_act_alloc(e, out, enc->dtype, 3, SDT_SHAPE(batch, stitched, w)) != 0)
        return -1;
    stitch_piece *pieces = malloc(((size_t)windows + 2) * sizeof *pieces);
    if (!pieces) {
        sdt_act_free(e, out);
        return sdt_engine_fail(e, "stitch windows: out of memory");
    }
    for (int64_t b = 0; b < batch; b++) {
        int n = stitch_pieces(b, windows, t, stitched, pieces);
        for (int i = 0; i < n; i++) {
            sdt_tensor dst = rows_view(out, pieces[i].dst, w, pieces[i].rows);
            sdt_tensor src = rows_view(enc, pieces[i].src, w, pieces[i].rows);
            if (sdt_copy(e, &dst, &src) != 0) {
                free(pieces);
                sdt_act_free(e, out);
                return -1;
            }
        }
    }
    free(pieces);
    return 0;
}

int sdt_clip_stitch_windows_backward(sdt_engine *e, sdt_tensor *denc, const sdt_tensor *dout, int windows)
{
    int64_t batch = 0, stitched = 0;
    if (stitch_shapes(e, "stitch windows backward", denc, windows, &batch, &stitched) != 0)
        return -1;
    int64_t t = denc->shape[1], w = denc->shape[2];
    if (dout->ndim != 3 || dout->shape[0] != batch || dout->shape[1] != stitched || dout->shape[2] != w)
        return sdt_engine_fail(e, "stitch windows backward: the gradient must be [%lld, %lld, %lld]",
                               (long long)batch, (long long)stitched, (long long)w);
    stitch_piece *pieces = malloc(((size_t)windows + 2) * sizeof *pieces);
    if (!pieces)
        return sdt_engine_fail(e, "stitch windows backward: out of memory");
    for (int64_t b = 0; b < batch; b++) {
        int n = stitch_pieces(b, windows, t, stitched, pieces);
        for (int i = 0; i < n; i++) {
            sdt_tensor dst = rows_view(denc, pieces[i].src, w, pieces[i].rows);
            sdt_tensor src = rows_view(dout, pieces[i].dst, w, pieces[i].rows);
            if (sdt_axpy(e, &dst, 1.0f, &src) != 0) {
                free(pieces);
                return -1;
            }
        }
    }
    free(pieces);
    return 0;
}
