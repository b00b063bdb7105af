/* The analytic walk behind the plan's activations and workspace: one training micro-step of the UNet (and
 * of the text encoder when it trains) replayed as a sequence of allocations and frees of the sizes the
 * layers use, in the order models/layers.c, models/unet_blocks.c, models/unet.c and models/clip_text.c
 * make them, while counting the live bytes and their peak. Nothing is allocated; only sizes are added.
 *
 * The walk mirrors the code, so a change to what a layer keeps for backward or to the order of its
 * temporaries must be made here too: tests/train/test_memory_plan.c compares the walk with the engine
 * allocator's measured peak of a real step and fails when they drift apart. */
#include <stdlib.h>
#include <string.h>

#include "memory_plan_internal.h"

/* The engine allocator's granularity (kernels/cpu/backend_cpu.c rounds every block to 64 bytes). */
enum { GRANULE = 64 };

static size_t rounded(size_t bytes)
{
    if (bytes == 0)
        bytes = 1; /* sdt_act_alloc asks for one byte for an empty tensor */
    return (bytes + GRANULE - 1) / GRANULE * GRANULE;
}

static void take(sdt_walk *w, size_t bytes)
{
    w->live += rounded(bytes);
    if (w->live > w->peak)
        w->peak = w->live;
}

static void give(sdt_walk *w, size_t bytes) { w->live -= rounded(bytes); }

void sdt_walk_take(sdt_walk *w, size_t bytes) { take(w, bytes); }

/* An activation of n elements (the activation dtype), and an F32 tensor of n elements. */
static size_t act(const sdt_walk *w, int64_t n) { return (size_t)n * w->act_bytes; }
static size_t f32(int64_t n) { return (size_t)n * 4; }

/* ---- layers (models/layers.c, models/adapter.c) ---- */

/* An adapter's forward on a layer with `rows` output positions of oc channels: h [rows, R] F32 and the
 * branch's delta [rows, oc], both freed before it returns. rank 0: the layer has no adapter. */
static void adapter_fwd(sdt_walk *w, int64_t rows, int64_t oc, int rank)
{
    if (rank <= 0)
        return;
    take(w, f32(rows * rank));
    take(w, act(w, rows * oc));
    give(w, act(w, rows * oc));
    give(w, f32(rows * rank));
}

/* Backward: the recomputed h and its gradient dh, both [rows, R] F32. */
static void adapter_bwd(sdt_walk *w, int64_t rows, int rank)
{
    if (rank <= 0)
        return;
    take(w, f32(rows * rank));
    take(w, f32(rows * rank));
    give(w, f32(rows * rank));
    give(w, f32(rows * rank));
}

/* A linear or conv layer's forward: the output [rows, oc] stays allocated (the caller's). */
static void layer_fwd(sdt_walk *w, int64_t rows, int64_t oc, int rank)
{
    take(w, act(w, rows * oc));
    adapter_fwd(w, rows, oc, rank);
}

/* A norm's statistics: mean and rstd of `stats` values each, F32. */
static void stats_take(sdt_walk *w, int64_t stats)
{
    take(w, f32(stats));
    take(w, f32(stats));
}

static void stats_give(sdt_walk *w, int64_t stats)
{
    give(w, f32(stats));
    give(w, f32(stats));
}

/* sdt_norm_fwd: the statistics, then the output [rows, c]; without keep the statistics go at once. */
static void norm_fwd(sdt_walk *w, int64_t rows, int64_t c, int64_t stats, int keep)
{
    stats_take(w, stats);
    take(w, act(w, rows * c));
    if (!keep)
        stats_give(w, stats);
}

/* ---- ResNet block ---- */

typedef struct resnet_dims {
    int64_t rows; /* B * H * W */
    int64_t in, out, batch, temb, groups;
    int shortcut; /* in != out: a 1x1 shortcut */
    int conv_rank, emb_rank;
} resnet_dims;

static size_t resnet_saved(const sdt_walk *w, const resnet_dims *d)
{
    return rounded(act(w, d->rows * d->in)) + 2 * rounded(act(w, d->rows * d->out)) +
           rounded(act(w, d->batch * d->temb)) + 4 * rounded(f32(d->batch * d->groups));
}

/* sdt_resnet_fwd: leaves the output [rows, out] and, with keep, the saved h1, h2, h3, emb_act and the two
 * norms' statistics. */
static void resnet_fwd(sdt_walk *w, const resnet_dims *d, int keep)
{
    int64_t gstats = d->batch * d->groups;
    norm_fwd(w, d->rows, d->in, gstats, keep);   /* h1 */
    layer_fwd(w, d->rows, d->out, d->conv_rank); /* h2 */
    if (!keep)
        give(w, act(w, d->rows * d->in));
    take(w, act(w, d->batch * d->temb));         /* emb_act */
    layer_fwd(w, d->batch, d->out, d->emb_rank); /* emb_vec */
    give(w, act(w, d->batch * d->out));
    norm_fwd(w, d->rows, d->out, gstats, keep); /* h3 */
    if (!keep)
        give(w, act(w, d->rows * d->out));       /* h2 */
    layer_fwd(w, d->rows, d->out, d->conv_rank); /* out */
    if (!keep)
        give(w, act(w, d->rows * d->out)); /* h3 */
    if (d->shortcut) {
        layer_fwd(w, d->rows, d->out, d->conv_rank);
        give(w, act(w, d->rows * d->out));
    }
    if (!keep)
        give(w, act(w, d->batch * d->temb)); /* emb_act */
}

/* sdt_resnet_bwd: dh3, dh2 (dh3 freed), demb_vec, demb_act, dh1, then all of them. */
static void resnet_bwd(sdt_walk *w, const resnet_dims *d)
{
    if (d->shortcut)
        adapter_bwd(w, d->rows, d->conv_rank);
    take(w, act(w, d->rows * d->out)); /* dh3 */
    adapter_bwd(w, d->rows, d->conv_rank);
    take(w, act(w, d->rows * d->out)); /* dh2 */
    give(w, act(w, d->rows * d->out));
    take(w, f32(d->batch * d->out));     /* demb_vec */
    take(w, act(w, d->batch * d->temb)); /* demb_act */
    adapter_bwd(w, d->batch, d->emb_rank);
    take(w, act(w, d->rows * d->in)); /* dh1 */
    adapter_bwd(w, d->rows, d->conv_rank);
    give(w, act(w, d->rows * d->out));
    give(w, act(w, d->rows * d->in));
    give(w, f32(d->batch * d->out));
    give(w, act(w, d->batch * d->temb));
}

/* ---- attention and the transformer (models/layers.c, models/unet_blocks.c) ---- */

typedef struct attn_dims {
    int64_t rows, ctx_rows; /* B * Lq, B * Lk */
    int64_t c, batch, lq, heads;
    int rank;
} attn_dims;

static size_t mha_saved(const sdt_walk *w, const attn_dims *a)
{
    return 2 * rounded(act(w, a->rows * a->c)) + 2 * rounded(act(w, a->ctx_rows * a->c)) +
           rounded(f32(a->batch * a->heads * a->lq));
}

/* sdt_mha_fwd: q, k, v, attn, lse, then the output projection (the caller's). */
static void mha_fwd(sdt_walk *w, const attn_dims *a, int keep)
{
    layer_fwd(w, a->rows, a->c, a->rank);
    layer_fwd(w, a->ctx_rows, a->c, a->rank);
    layer_fwd(w, a->ctx_rows, a->c, a->rank);
    take(w, act(w, a->rows * a->c));
    take(w, f32(a->batch * a->heads * a->lq));
    layer_fwd(w, a->rows, a->c, a->rank);
    if (!keep)
        w->live -= mha_saved(w, a);
}

/* sdt_mha_bwd: dattn, dq, dk, dv, all freed at the end. */
static void mha_bwd(sdt_walk *w, const attn_dims *a)
{
    take(w, act(w, a->rows * a->c));
    adapter_bwd(w, a->rows, a->rank);
    take(w, act(w, a->rows * a->c));
    take(w, act(w, a->ctx_rows * a->c));
    take(w, act(w, a->ctx_rows * a->c));
    adapter_bwd(w, a->rows, a->rank);
    adapter_bwd(w, a->ctx_rows, a->rank);
    adapter_bwd(w, a->ctx_rows, a->rank);
    give(w, act(w, a->rows * a->c));
    give(w, act(w, a->rows * a->c));
    give(w, act(w, a->ctx_rows * a->c));
    give(w, act(w, a->ctx_rows * a->c));
}

typedef struct transformer_dims {
    int64_t rows, ctx_rows, c, batch, tokens, heads, groups;
    int depth, rank;
} transformer_dims;

static attn_dims self_attention(const transformer_dims *t)
{
    return (attn_dims){t->rows, t->rows, t->c, t->batch, t->tokens, t->heads, t->rank};
}

static attn_dims cross_attention(const transformer_dims *t)
{
    return (attn_dims){t->rows, t->ctx_rows, t->c, t->batch, t->tokens, t->heads, t->rank};
}

/* One BasicTransformerBlock's saved tensors: n1, n2, n3, x1, x2, three layer norms' statistics, both
 * attentions' state, ff_h [rows, 8C] and ff_g [rows, 4C]. */
static size_t block_saved(const sdt_walk *w, const transformer_dims *t)
{
    attn_dims sa = self_attention(t), ca = cross_attention(t);
    return 5 * rounded(act(w, t->rows * t->c)) + 6 * rounded(f32(t->rows)) + mha_saved(w, &sa) +
           mha_saved(w, &ca) + rounded(act(w, t->rows * 8 * t->c)) + rounded(act(w, t->rows * 4 * t->c));
}

/* block_fwd: leaves its output [rows, C] and, with keep, block_saved. */
static void block_fwd(sdt_walk *w, const transformer_dims *t, int keep)
{
    attn_dims sa = self_attention(t), ca = cross_attention(t);
    int64_t rc = t->rows * t->c;
    norm_fwd(w, t->rows, t->c, t->rows, keep); /* n1 */
    mha_fwd(w, &sa, keep);                     /* x1 */
    if (!keep)
        give(w, act(w, rc));
    norm_fwd(w, t->rows, t->c, t->rows, keep); /* n2 */
    mha_fwd(w, &ca, keep);                     /* x2 */
    if (!keep) {
        give(w, act(w, rc));
        give(w, act(w, rc));
    }
    norm_fwd(w, t->rows, t->c, t->rows, keep); /* n3 */
    layer_fwd(w, t->rows, 8 * t->c, t->rank);  /* ff_h */
    if (!keep)
        give(w, act(w, rc));
    take(w, act(w, t->rows * 4 * t->c)); /* ff_g */
    if (!keep)
        give(w, act(w, t->rows * 8 * t->c));
    layer_fwd(w, t->rows, t->c, t->rank); /* the output */
    if (!keep) {
        give(w, act(w, rc));                 /* x2 */
        give(w, act(w, t->rows * 4 * t->c)); /* ff_g */
    }
}

static void block_bwd(sdt_walk *w, const transformer_dims *t)
{
    attn_dims sa = self_attention(t), ca = cross_attention(t);
    take(w, act(w, t->rows * 4 * t->c)); /* dg */
    adapter_bwd(w, t->rows, t->rank);
    take(w, act(w, t->rows * 8 * t->c)); /* dh */
    give(w, act(w, t->rows * 4 * t->c));
    take(w, act(w, t->rows * t->c)); /* dn */
    adapter_bwd(w, t->rows, t->rank);
    give(w, act(w, t->rows * 8 * t->c));
    mha_bwd(w, &ca);
    mha_bwd(w, &sa);
    give(w, act(w, t->rows * t->c));
}

static size_t transformer_saved(const sdt_walk *w, const transformer_dims *t)
{
    return rounded(act(w, t->rows * t->c)) + 2 * rounded(f32(t->batch * t->groups)) +
           (size_t)(t->depth + 1) * rounded(act(w, t->rows * t->c)) + (size_t)t->depth * block_saved(w, t);
}

/* sdt_transformer2d_fwd: leaves the output [rows, C] and, with keep, transformer_saved. */
static void transformer_fwd(sdt_walk *w, const transformer_dims *t, int keep)
{
    int64_t rc = t->rows * t->c;
    norm_fwd(w, t->rows, t->c, t->batch * t->groups, keep); /* gn_out */
    layer_fwd(w, t->rows, t->c, t->rank);                   /* stream[0] / cur */
    if (!keep)
        give(w, act(w, rc));
    for (int d = 0; d < t->depth; d++) {
        block_fwd(w, t, keep);
        if (!keep)
            give(w, act(w, rc)); /* the previous stream */
    }
    layer_fwd(w, t->rows, t->c, t->rank); /* proj: the output */
    if (!keep)
        give(w, act(w, rc));
}

static void transformer_bwd(sdt_walk *w, const transformer_dims *t)
{
    take(w, act(w, t->rows * t->c)); /* dstream */
    adapter_bwd(w, t->rows, t->rank);
    for (int d = 0; d < t->depth; d++)
        block_bwd(w, t);
    take(w, act(w, t->rows * t->c)); /* dgn */
    adapter_bwd(w, t->rows, t->rank);
    give(w, act(w, t->rows * t->c));
    give(w, act(w, t->rows * t->c));
}

/* ---- the UNet (models/unet.c) ---- */

typedef enum node_kind { CONV_IN, RESNET, TRANSFORMER, DOWNSAMPLE, UPSAMPLE, OUT } node_kind;

typedef struct node {
    node_kind kind;
    int64_t h, w, in, out; /* the input's grid and channels; the output's channels */
    int skip;              /* up-path ResNets: the activation concatenated; -1 otherwise */
    int64_t skip_c;
    int depth, heads;
} node;

enum { MAX_NODES = 1 + 3 + 1 + SDT_UNET_MAX_LEVELS * (2 * 8 + 1 + 2 * 9 + 1) };

typedef struct unet_walk {
    node nodes[MAX_NODES];
    int n;
    int64_t act_h[MAX_NODES], act_w[MAX_NODES], act_c[MAX_NODES]; /* acts[i]: enters node i */
    int skip_uses[MAX_NODES];
} unet_walk;

static int add(unet_walk *u, node_kind kind, int64_t out, int skip, int depth, int heads, char **error)
{
    if (u->n == MAX_NODES)
        return sdt_set_error(error, "memory plan: the UNet has more blocks than the walk follows");
    int i = u->n++;
    node *n = &u->nodes[i];
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->h = u->act_h[i];
    n->w = u->act_w[i];
    n->in = u->act_c[i];
    n->out = out;
    n->skip = skip;
    n->skip_c = skip >= 0 ? u->act_c[skip] : 0;
    n->depth = depth;
    n->heads = heads;
    int64_t h = n->h, wd = n->w;
    if (kind == DOWNSAMPLE)
        h /= 2, wd /= 2;
    if (kind == UPSAMPLE)
        h *= 2, wd *= 2;
    if (i + 1 < MAX_NODES) {
        u->act_h[i + 1] = h;
        u->act_w[i + 1] = wd;
        u->act_c[i + 1] = out;
    }
    if (skip >= 0)
        u->skip_uses[skip]++;
    return 0;
}

/* The blocks of models/unet.c's build(), in order, with their shapes. */
static int unet_nodes(const sdt_unet_config *c, int64_t lh, int64_t lw, unet_walk *u, char **error)
{
    memset(u, 0, sizeof *u);
    if (c->levels < 1 || c->levels > SDT_UNET_MAX_LEVELS || c->layers_per_block < 1 ||
        c->layers_per_block > 8)
        return sdt_set_error(error, "memory plan: a UNet of %d levels and %d layers per block", c->levels,
                             c->layers_per_block);
    int stack[3 * SDT_UNET_MAX_LEVELS + 2 + 8 * SDT_UNET_MAX_LEVELS], depth = 0;
    u->act_h[0] = lh;
    u->act_w[0] = lw;
    u->act_c[0] = c->in_channels;
    if (add(u, CONV_IN, c->block_out_channels[0], -1, 0, 0, error) != 0)
        return -1;
    stack[depth++] = u->n;
    for (int i = 0; i < c->levels; i++) {
        for (int j = 0; j < c->layers_per_block; j++) {
            if (add(u, RESNET, c->block_out_channels[i], -1, 0, 0, error) != 0)
                return -1;
            if (c->level_has_attention[i] && add(u, TRANSFORMER, c->block_out_channels[i], -1,
                                                 c->transformer_depth[i], c->heads[i], error) != 0)
                return -1;
            stack[depth++] = u->n;
        }
        if (i < c->levels - 1) {
            if (add(u, DOWNSAMPLE, c->block_out_channels[i], -1, 0, 0, error) != 0)
                return -1;
            stack[depth++] = u->n;
        }
    }
    int top = c->block_out_channels[c->levels - 1];
    if (add(u, RESNET, top, -1, 0, 0, error) != 0 ||
        add(u, TRANSFORMER, top, -1, c->mid_transformer_depth, c->mid_heads, error) != 0 ||
        add(u, RESNET, top, -1, 0, 0, error) != 0)
        return -1;
    for (int k = 0; k < c->levels; k++) {
        int i = c->levels - 1 - k;
        for (int j = 0; j <= c->layers_per_block; j++) {
            if (depth == 0)
                return sdt_set_error(error, "memory plan: the UNet's skip stack runs out");
            if (add(u, RESNET, c->block_out_channels[i], stack[--depth], 0, 0, error) != 0)
                return -1;
            if (c->level_has_attention[i] && add(u, TRANSFORMER, c->block_out_channels[i], -1,
                                                 c->transformer_depth[i], c->heads[i], error) != 0)
                return -1;
            if (j == c->layers_per_block && k < c->levels - 1 &&
                add(u, UPSAMPLE, c->block_out_channels[i], -1, 0, 0, error) != 0)
                return -1;
        }
    }
    return add(u, OUT, c->out_channels, -1, 0, 0, error);
}

static resnet_dims node_resnet(const sdt_walk *w, const sdt_unet_config *c, const node *n)
{
    int64_t in = n->in + n->skip_c;
    return (resnet_dims){.rows = w->batch * n->h * n->w,
                         .in = in,
                         .out = n->out,
                         .batch = w->batch,
                         .temb = sdt_unet_time_embed_dim(c),
                         .groups = c->norm_groups,
                         .shortcut = in != n->out,
                         .conv_rank = w->unet_conv_rank,
                         .emb_rank = w->unet_conv_rank};
}

static transformer_dims node_transformer(const sdt_walk *w, const sdt_unet_config *c, const node *n)
{
    return (transformer_dims){.rows = w->batch * n->h * n->w,
                              .ctx_rows = w->batch * w->context_length,
                              .c = n->out,
                              .batch = w->batch,
                              .tokens = n->h * n->w,
                              .heads = n->heads,
                              .groups = c->norm_groups,
                              .depth = n->depth,
                              .rank = w->unet_rank};
}

static int64_t node_rows(const sdt_walk *w, const node *n) { return w->batch * n->h * n->w; }

/* The node's "inner" tensor (models/unet.c node_saved.inner): the concatenation, the upsampled input or
 * the final norm's output; 0 for the others. */
static size_t node_inner(const sdt_walk *w, const node *n)
{
    int64_t rows = node_rows(w, n);
    switch (n->kind) {
    case RESNET: return n->skip >= 0 ? act(w, rows * (n->in + n->skip_c)) : 0;
    case UPSAMPLE: return act(w, 4 * rows * n->in);
    case OUT: return act(w, rows * n->in);
    default: return 0;
    }
}

/* node_forward: leaves the output and, with keep, the node's saved state. */
static void node_fwd(sdt_walk *w, const sdt_unet_config *c, const node *n, int keep)
{
    int64_t rows = node_rows(w, n);
    size_t inner = node_inner(w, n);
    switch (n->kind) {
    case CONV_IN: layer_fwd(w, rows, n->out, 0); return;
    case DOWNSAMPLE: layer_fwd(w, rows / 4, n->out, w->unet_conv_rank); return;
    case TRANSFORMER: {
        transformer_dims t = node_transformer(w, c, n);
        transformer_fwd(w, &t, keep);
        return;
    }
    case RESNET: {
        resnet_dims r = node_resnet(w, c, n);
        if (inner)
            take(w, inner);
        resnet_fwd(w, &r, keep);
        break;
    }
    case UPSAMPLE:
        take(w, inner);
        layer_fwd(w, 4 * rows, n->out, w->unet_conv_rank);
        break;
    case OUT:
        norm_fwd(w, rows, n->in, w->batch * c->norm_groups, keep);
        layer_fwd(w, rows, n->out, 0);
        break;
    }
    if (!keep && inner)
        give(w, inner);
}

static size_t node_saved(const sdt_walk *w, const sdt_unet_config *c, const node *n)
{
    size_t inner = node_inner(w, n) ? rounded(node_inner(w, n)) : 0;
    switch (n->kind) {
    case TRANSFORMER: {
        transformer_dims t = node_transformer(w, c, n);
        return transformer_saved(w, &t);
    }
    case RESNET: {
        resnet_dims r = node_resnet(w, c, n);
        return inner + resnet_saved(w, &r);
    }
    case OUT: return inner + 2 * rounded(f32(w->batch * c->norm_groups));
    default: return inner;
    }
}

static void node_bwd(sdt_walk *w, const sdt_unet_config *c, const node *n)
{
    int64_t rows = node_rows(w, n);
    size_t inner = node_inner(w, n);
    switch (n->kind) {
    case CONV_IN: return;
    case DOWNSAMPLE: adapter_bwd(w, rows / 4, w->unet_conv_rank); return;
    case TRANSFORMER: {
        transformer_dims t = node_transformer(w, c, n);
        transformer_bwd(w, &t);
        return;
    }
    case RESNET: {
        resnet_dims r = node_resnet(w, c, n);
        if (inner)
            take(w, inner); /* dinner */
        resnet_bwd(w, &r);
        break;
    }
    case UPSAMPLE:
        take(w, inner);
        adapter_bwd(w, 4 * rows, w->unet_conv_rank);
        break;
    case OUT: take(w, inner); break;
    }
    if (inner)
        give(w, inner);
}

static size_t act_bytes_of(const sdt_walk *w, const unet_walk *u, int i)
{
    return act(w, w->batch * u->act_h[i] * u->act_w[i] * u->act_c[i]);
}

/* Whether node i's backward reads only its inner tensor (models/unet.c backward_skips_input). */
static int skips_input(const node *n) { return (n->kind == RESNET && n->skip >= 0) || n->kind == UPSAMPLE; }

int sdt_walk_unet(sdt_walk *w, const sdt_unet_config *c, int64_t latent_h, int64_t latent_w, char **error)
{
    unet_walk *uw = calloc(1, sizeof *uw); /* sized for the largest config: too big for the stack */
    if (!uw)
        return sdt_set_error(error, "memory plan: out of memory");
    if (unet_nodes(c, latent_h, latent_w, uw, error) != 0) {
        free(uw);
        return -1;
    }
    int n = uw->n, ckpt = w->checkpointing;
    int64_t temb = sdt_unet_time_embed_dim(c), B = w->batch;
    size_t x_bytes = act(w, B * latent_h * latent_w * c->in_channels);
    size_t ctx_bytes = act(w, B * w->context_length * c->cross_attention_dim);
    size_t before = w->live;

    /* Forward: copies of x and the context, the time embedding's intermediates, then the nodes. */
    take(w, x_bytes);
    take(w, ctx_bytes);
    take(w, act(w, B * c->block_out_channels[0])); /* temb */
    take(w, act(w, B * temb));                     /* t_h */
    take(w, act(w, B * temb));                     /* t_act */
    take(w, act(w, B * temb));                     /* emb */
    int held[MAX_NODES] = {0};                     /* acts[i] still allocated */
    held[0] = 1;
    for (int i = 0; i < n; i++) {
        const node *nd = &uw->nodes[i];
        node_fwd(w, c, nd, !ckpt);
        if (i + 1 < n)
            held[i + 1] = 1;
        if (!ckpt && skips_input(nd) && uw->skip_uses[i] == 0) {
            give(w, act_bytes_of(w, uw, i));
            held[i] = 0;
        }
    }
    /* The output [B, h, w, out] is the caller's; everything else live now is kept for backward. */
    size_t out_bytes = act(w, B * latent_h * latent_w * c->out_channels);
    w->unet_saved = w->live - before - rounded(out_bytes);

    /* The loss gives the output's gradient (the caller's, like the output), then the backward. */
    take(w, out_bytes);
    take(w, act(w, B * temb)); /* demb */
    int grad_held[MAX_NODES] = {0};
    for (int i = n - 1; i >= 0; i--) {
        const node *nd = &uw->nodes[i];
        if (i > 0 && !grad_held[i]) {
            take(w, act_bytes_of(w, uw, i));
            grad_held[i] = 1;
        }
        if (nd->skip >= 0 && !grad_held[nd->skip]) {
            take(w, act_bytes_of(w, uw, nd->skip));
            grad_held[nd->skip] = 1;
        }
        if (ckpt) {
            node_fwd(w, c, nd, 1);                                       /* the recomputed state */
            give(w, i + 1 < n ? act_bytes_of(w, uw, i + 1) : out_bytes); /* its output again: discarded */
        }
        node_bwd(w, c, nd);
        w->live -= node_saved(w, c, nd);
        if (held[i]) {
            give(w, act_bytes_of(w, uw, i));
            held[i] = 0;
        }
        if (i + 1 < n && grad_held[i + 1]) {
            give(w, act_bytes_of(w, uw, i + 1));
            grad_held[i + 1] = 0;
        }
    }
    /* The time MLP's backward: dact and dh [B, T]. */
    take(w, act(w, B * temb));
    take(w, act(w, B * temb));
    give(w, act(w, B * temb));
    give(w, act(w, B * temb));
    give(w, act(w, B * temb)); /* demb */
    /* The state is released: the context's copy and the embedding's four tensors (the copy of x was
     * acts[0], freed with node 0). */
    give(w, ctx_bytes);
    give(w, act(w, B * c->block_out_channels[0]));
    give(w, act(w, B * temb));
    give(w, act(w, B * temb));
    give(w, act(w, B * temb));
    /* The caller frees the output and its gradient. */
    give(w, out_bytes);
    give(w, out_bytes);
    free(uw);
    return 0;
}

/* ---- the CLIP text encoder (models/clip_text.c) ---- */

typedef struct clip_dims {
    int64_t rows, width, mlp, batch, length, heads;
    int rank;
} clip_dims;

static attn_dims clip_attention(const clip_dims *d)
{
    return (attn_dims){d->rows, d->rows, d->width, d->batch, d->length, d->heads, d->rank};
}

/* A layer's saved state: a1, mid, a2 [rows, W], f1, g [rows, M], the attention's, two norms' stats. */
static size_t clip_layer_saved(const sdt_walk *w, const clip_dims *d)
{
    attn_dims a = clip_attention(d);
    return 3 * rounded(act(w, d->rows * d->width)) + 2 * rounded(act(w, d->rows * d->mlp)) +
           mha_saved(w, &a) + 4 * rounded(f32(d->rows));
}

/* layer_fwd: leaves the output [rows, W] and, with keep, clip_layer_saved. */
static void clip_layer_fwd(sdt_walk *w, const clip_dims *d, int keep)
{
    attn_dims a = clip_attention(d);
    int64_t rw = d->rows * d->width, rm = d->rows * d->mlp;
    norm_fwd(w, d->rows, d->width, d->rows, keep); /* a1 */
    mha_fwd(w, &a, keep);                          /* mid */
    if (!keep)
        give(w, act(w, rw));
    norm_fwd(w, d->rows, d->width, d->rows, keep); /* a2 */
    layer_fwd(w, d->rows, d->mlp, d->rank);        /* f1 */
    if (!keep)
        give(w, act(w, rw));
    take(w, act(w, rm)); /* g */
    if (!keep)
        give(w, act(w, rm));
    layer_fwd(w, d->rows, d->width, d->rank); /* the output */
    if (!keep) {
        give(w, act(w, rw)); /* mid */
        give(w, act(w, rm)); /* g */
    }
}

/* layer_bwd: dmid, dg, df1 (dg freed), da (df1 freed), then the attention's backward. */
static void clip_layer_bwd(sdt_walk *w, const clip_dims *d)
{
    attn_dims a = clip_attention(d);
    int64_t rw = d->rows * d->width, rm = d->rows * d->mlp;
    take(w, act(w, rw)); /* dmid */
    take(w, act(w, rm)); /* dg */
    adapter_bwd(w, d->rows, d->rank);
    take(w, act(w, rm)); /* df1 */
    give(w, act(w, rm));
    take(w, act(w, rw)); /* da */
    adapter_bwd(w, d->rows, d->rank);
    give(w, act(w, rm));
    give(w, act(w, rw));
    take(w, act(w, rw)); /* da again */
    mha_bwd(w, &a);
    give(w, act(w, rw)); /* dmid */
    give(w, act(w, rw));
}

void sdt_walk_text_encoder_forward(sdt_walk *w, const sdt_clip_config *c, int64_t length, int rank,
                                   sdt_walk_clip *state)
{
    clip_dims d = {w->batch * length, c->width, c->mlp_width, w->batch, length, c->heads, rank};
    int keep = !w->checkpointing;
    size_t before = w->live;
    size_t hidden = act(w, d.rows * d.width);
    take(w, hidden); /* hs[0], the embeddings */
    for (int n = 0; n < c->layers; n++)
        clip_layer_fwd(w, &d, keep);         /* hs[n + 1] */
    norm_fwd(w, d.rows, d.width, d.rows, 1); /* the context and its final norm's statistics */
    state->layers = c->layers;
    state->saved = w->live - before;
}

void sdt_walk_text_encoder_backward(sdt_walk *w, const sdt_clip_config *c, int64_t length, int rank,
                                    const sdt_walk_clip *state)
{
    clip_dims d = {w->batch * length, c->width, c->mlp_width, w->batch, length, c->heads, rank};
    size_t hidden = act(w, d.rows * d.width);
    size_t layer_saved = clip_layer_saved(w, &d);
    take(w, hidden); /* dh */
    for (int n = state->layers; n > 0; n--) {
        give(w, hidden); /* hs[n] */
        if (w->checkpointing) {
            clip_layer_fwd(w, &d, 1); /* redo, and its output */
            give(w, hidden);
        }
        take(w, hidden); /* dprev */
        clip_layer_bwd(w, &d);
        w->live -= layer_saved;
        give(w, hidden); /* dh; dprev becomes it */
    }
    give(w, hidden);       /* dh */
    give(w, hidden);       /* hs[0] */
    stats_give(w, d.rows); /* the final norm's statistics; the context stays until the step ends */
}
