/* The UNet as a sequence of nodes (blocks) run in order, with the skip connections as references from an
 * up-path ResNet to an earlier activation. acts[i] is the activation that enters node i and acts[i + 1]
 * the one it produces; the last node's output is the caller's `out`.
 *
 * Memory. Inference counts, per activation, the nodes still to read it (the next node, and the up-path
 * ResNet that concatenates it as a skip) and frees it when the count reaches zero, so only the skip tensors
 * and the current block's working set are alive. Training keeps every node's input (each block's backward
 * reads it) plus, without checkpointing, each node's saved inner tensors; with checkpointing only the
 * inputs, and backward re-runs a node's forward right before its backward. Backward frees each node's
 * input, saved state and output gradient as soon as the node is done. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sdtune/strutil.h"
#include "unet.h"
#include "unet_blocks.h"

typedef enum node_kind {
    NODE_CONV_IN,     /* input_blocks.0.0: 3x3 conv in_channels -> C0 */
    NODE_RESNET,      /* a ResNet; on the up path it first concatenates [input | skip] on channels */
    NODE_TRANSFORMER, /* Transformer2D */
    NODE_DOWNSAMPLE,  /* 3x3 conv, stride 2, padding 1 */
    NODE_UPSAMPLE,    /* nearest 2x, then 3x3 conv */
    NODE_OUT,         /* GroupNorm + SiLU, then 3x3 conv C0 -> out_channels */
} node_kind;

typedef struct unet_node {
    node_kind kind;
    char name[48]; /* the LDM name of the block, for messages */
    int skip;      /* up-path ResNets: index of the activation concatenated after the input; -1 otherwise */
    sdt_conv conv; /* conv in, down/upsample, out */
    sdt_norm norm; /* out: the final GroupNorm */
    sdt_resnet resnet;
    sdt_transformer2d tf;
} unet_node;

/* What a node's backward needs besides its input (one of the members, by kind). */
typedef struct node_saved {
    sdt_resnet_saved resnet;
    sdt_transformer2d_saved tf;
    sdt_norm_saved norm; /* out: the final GroupNorm's statistics */
    /* up-path ResNet: the concatenation [B, H, W, Ch + Cs]; upsample: the upsampled input [B, 2H, 2W, C];
     * out: SiLU(GroupNorm(x)) [B, H, W, C0]. The input of the first two is not needed once this is kept. */
    sdt_tensor inner;
} node_saved;

/* One forward's tensors. Inference uses a local one and borrows the caller's x, context and added_cond;
 * a forward kept for backward owns copies of them. */
typedef struct unet_state {
    int held;         /* kept for backward */
    int checkpointed; /* node states were not kept */
    int borrowed;     /* acts[0], context and added are the caller's */
    int n;
    sdt_tensor *acts;   /* n: acts[i] [B, h, w, c] enters node i */
    sdt_tensor *shapes; /* n: the shape of acts[i] (kept after acts[i] is freed; data NULL) */
    node_saved *saved;  /* n; empty when checkpointed */
    int *uses;          /* n; inference: the nodes still to read acts[i] */
    sdt_tensor context; /* [B, L, D] */
    sdt_tensor added;   /* [B, adm_in_channels] or empty */
    sdt_tensor temb;    /* [B, C0] the timestep sinusoid, time_embed.0's input */
    sdt_tensor t_h;     /* [B, T] time_embed.0 output */
    sdt_tensor t_act;   /* [B, T] SiLU(t_h), time_embed.2's input */
    sdt_tensor a_h;     /* [B, T] label_emb.0.0 output */
    sdt_tensor a_act;   /* [B, T] SiLU(a_h), label_emb.0.2's input */
    sdt_tensor emb;     /* [B, T] the embedding every ResNet reads */
    int64_t out_shape[4];
} unet_state;

struct sdt_unet {
    sdt_unet_config cfg;
    sdt_param_table *params;
    int checkpointing;
    sdt_linear time1, time2;   /* time_embed.0, time_embed.2 */
    sdt_linear label1, label2; /* label_emb.0.0, label_emb.0.2 (added conditioning; weight NULL without) */
    unet_node *nodes;
    int n_nodes;
    int *skip_uses; /* n_nodes: how many up-path ResNets read acts[i] as their skip */
    unet_state st;  /* the forward kept for backward, if any */
};

/* ---- building ------------------------------------------------------------------------------------ */

static const char *const resnet_names[6] = {"in_layers.0",  "in_layers.2",  "emb_layers.1",
                                            "out_layers.0", "out_layers.3", "skip_connection"};

/* The skip stack of §1.7 holds activation indices. */
typedef struct builder {
    sdt_unet *u;
    sdt_param_table *t;
    char **error;
    int capacity;
    int stack[3 * SDT_UNET_MAX_LEVELS + 2];
    int depth;
} builder;

static unet_node *add_node(builder *b, node_kind kind, const char *name)
{
    sdt_unet *u = b->u;
    if (u->n_nodes == b->capacity) {
        *b->error = sdt_format("unet: more blocks than the config allows (%d)", b->capacity);
        return NULL;
    }
    unet_node *n = &u->nodes[u->n_nodes++];
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->skip = -1;
    snprintf(n->name, sizeof n->name, "%s", name);
    return n;
}

/* The activation the most recently added node produces. */
static int last_output(const builder *b) { return b->u->n_nodes; }

static int push_skip(builder *b)
{
    if (b->depth == (int)(sizeof b->stack / sizeof b->stack[0])) {
        *b->error = sdt_format("unet: skip stack overflow");
        return -1;
    }
    b->stack[b->depth++] = last_output(b);
    return 0;
}

static int add_conv(builder *b, node_kind kind, const char *block, const char *conv_name, int stride)
{
    unet_node *n = add_node(b, kind, block);
    return n ? sdt_conv_bind(&n->conv, b->t, conv_name, stride, 1, b->error) : -1;
}

static int add_resnet(builder *b, const char *base, int skip)
{
    unet_node *n = add_node(b, NODE_RESNET, base);
    if (!n)
        return -1;
    n->skip = skip;
    return sdt_resnet_bind(&n->resnet, b->t, base, resnet_names, b->u->cfg.norm_groups, b->u->cfg.norm_eps,
                           b->error);
}

static int add_transformer(builder *b, const char *base, int depth, int heads)
{
    unet_node *n = add_node(b, NODE_TRANSFORMER, base);
    if (!n)
        return -1;
    const sdt_unet_config *c = &b->u->cfg;
    return sdt_transformer2d_bind(&n->tf, b->t, base, depth, heads, c->norm_groups, c->transformer_norm_eps,
                                  b->error);
}

static int check_config(const sdt_unet_config *c, char **error)
{
    if (c->levels < 1 || c->levels > SDT_UNET_MAX_LEVELS || c->layers_per_block < 1 || c->norm_groups < 1 ||
        c->in_channels < 1 || c->out_channels < 1 || c->cross_attention_dim < 1) {
        *error = sdt_format("unet config: levels %d, layers per block %d, norm groups %d, channels %d -> %d, "
                            "context width %d do not make a UNet",
                            c->levels, c->layers_per_block, c->norm_groups, c->in_channels, c->out_channels,
                            c->cross_attention_dim);
        return -1;
    }
    for (int i = 0; i < c->levels; i++) {
        if (c->level_has_attention[i] && (c->transformer_depth[i] < 1 || c->heads[i] < 1)) {
            *error = sdt_format("unet config: level %d has attention with depth %d and %d heads", i,
                                c->transformer_depth[i], c->heads[i]);
            return -1;
        }
    }
    if (c->mid_transformer_depth < 1 || c->mid_heads < 1) {
        *error = sdt_format("unet config: the middle transformer has depth %d and %d heads",
                            c->mid_transformer_depth, c->mid_heads);
        return -1;
    }
    return 0;
}

static void free_nodes(sdt_unet *u)
{
    for (int i = 0; i < u->n_nodes; i++)
        sdt_transformer2d_free(&u->nodes[i].tf);
    free(u->nodes);
    free(u->skip_uses);
    u->nodes = NULL;
    u->skip_uses = NULL;
    u->n_nodes = 0;
}

/* Mirrors sdt_unet_params (models/arch.c) and §1.7: the same blocks in the same order. */
static int build(sdt_unet *u, sdt_param_table *t, char **error)
{
    const sdt_unet_config *c = &u->cfg;
    /* At most: conv_in; per level 2 x layers (resnet + transformer) + a downsample; the middle 3; per up
     * level 2 x (layers + 1) + an upsample; out. */
    int capacity = 1 + 3 + 1 + c->levels * (2 * c->layers_per_block + 1 + 2 * (c->layers_per_block + 1) + 1);
    u->nodes = calloc((size_t)capacity, sizeof *u->nodes);
    if (!u->nodes) {
        *error = sdt_format("unet: out of memory");
        return -1;
    }
    builder b = {.u = u, .t = t, .error = error, .capacity = capacity};
    char base[64], conv[80];

    if (add_conv(&b, NODE_CONV_IN, "input_blocks.0.0", "input_blocks.0.0", 1) != 0 || push_skip(&b) != 0)
        return -1;
    int block = 1;
    for (int i = 0; i < c->levels; i++) {
        for (int j = 0; j < c->layers_per_block; j++, block++) {
            snprintf(base, sizeof base, "input_blocks.%d.0", block);
            if (add_resnet(&b, base, -1) != 0)
                return -1;
            if (c->level_has_attention[i]) {
                snprintf(base, sizeof base, "input_blocks.%d.1", block);
                if (add_transformer(&b, base, c->transformer_depth[i], c->heads[i]) != 0)
                    return -1;
            }
            if (push_skip(&b) != 0)
                return -1;
        }
        if (i < c->levels - 1) {
            snprintf(base, sizeof base, "input_blocks.%d.0", block);
            snprintf(conv, sizeof conv, "input_blocks.%d.0.op", block);
            if (add_conv(&b, NODE_DOWNSAMPLE, base, conv, 2) != 0 || push_skip(&b) != 0)
                return -1;
            block++;
        }
    }
    if (add_resnet(&b, "middle_block.0", -1) != 0 ||
        add_transformer(&b, "middle_block.1", c->mid_transformer_depth, c->mid_heads) != 0 ||
        add_resnet(&b, "middle_block.2", -1) != 0)
        return -1;
    block = 0;
    for (int k = 0; k < c->levels; k++) {
        int i = c->levels - 1 - k;
        for (int j = 0; j <= c->layers_per_block; j++, block++) {
            snprintf(base, sizeof base, "output_blocks.%d.0", block);
            if (b.depth == 0) {
                *error = sdt_format("unet: skip stack underflow at %s", base);
                return -1;
            }
            if (add_resnet(&b, base, b.stack[--b.depth]) != 0)
                return -1;
            int sub = 1;
            if (c->level_has_attention[i]) {
                snprintf(base, sizeof base, "output_blocks.%d.1", block);
                if (add_transformer(&b, base, c->transformer_depth[i], c->heads[i]) != 0)
                    return -1;
                sub = 2;
            }
            if (j == c->layers_per_block && k < c->levels - 1) {
                snprintf(base, sizeof base, "output_blocks.%d.%d", block, sub);
                snprintf(conv, sizeof conv, "output_blocks.%d.%d.conv", block, sub);
                if (add_conv(&b, NODE_UPSAMPLE, base, conv, 1) != 0)
                    return -1;
            }
        }
    }
    unet_node *out = add_node(&b, NODE_OUT, "out");
    if (!out || sdt_norm_bind(&out->norm, t, "out.0", c->norm_groups, c->norm_eps, error) != 0 ||
        sdt_conv_bind(&out->conv, t, "out.2", 1, 1, error) != 0)
        return -1;

    u->skip_uses = calloc((size_t)u->n_nodes, sizeof *u->skip_uses);
    if (!u->skip_uses) {
        *error = sdt_format("unet: out of memory");
        return -1;
    }
    for (int i = 0; i < u->n_nodes; i++)
        if (u->nodes[i].skip >= 0)
            u->skip_uses[u->nodes[i].skip]++;
    return 0;
}

/* Parameters bound by the layers (to tell a table of another config, with tensors this one never reads). */
static size_t count_linear(const sdt_linear *l)
{
    return (size_t)(l->weight != NULL) + (size_t)(l->bias != NULL);
}

static size_t count_norm(const sdt_norm *n)
{
    return (size_t)(n->weight != NULL) + (size_t)(n->bias != NULL);
}

static size_t count_bound(const sdt_unet *u)
{
    size_t n = count_linear(&u->time1) + count_linear(&u->time2) + count_linear(&u->label1) +
               count_linear(&u->label2);
    for (int i = 0; i < u->n_nodes; i++) {
        const unet_node *node = &u->nodes[i];
        n +=
            (size_t)(node->conv.weight != NULL) + (size_t)(node->conv.bias != NULL) + count_norm(&node->norm);
        const sdt_resnet *r = &node->resnet;
        n += count_norm(&r->norm1) + count_norm(&r->norm2) + count_linear(&r->emb_proj) +
             count_linear(&r->shortcut);
        n += (size_t)(r->conv1.weight != NULL) + (size_t)(r->conv1.bias != NULL) +
             (size_t)(r->conv2.weight != NULL) + (size_t)(r->conv2.bias != NULL);
        const sdt_transformer2d *tf = &node->tf;
        n += count_norm(&tf->norm) + count_linear(&tf->proj_in) + count_linear(&tf->proj_out);
        for (int d = 0; d < tf->depth; d++) {
            const sdt_transformer_block *b = &tf->blocks[d];
            n += count_norm(&b->norm1) + count_norm(&b->norm2) + count_norm(&b->norm3) +
                 count_linear(&b->ff_in) + count_linear(&b->ff_out);
            const sdt_mha *m[2] = {&b->attn1, &b->attn2};
            for (int k = 0; k < 2; k++)
                n += count_linear(&m[k]->q) + count_linear(&m[k]->k) + count_linear(&m[k]->v) +
                     count_linear(&m[k]->out);
        }
    }
    return n;
}

int sdt_unet_create(const sdt_unet_config *config, sdt_param_table *params, sdt_unet **out, char **error)
{
    *out = NULL;
    if (check_config(config, error) != 0)
        return -1;
    sdt_unet *u = calloc(1, sizeof *u);
    if (!u) {
        *error = sdt_format("unet: out of memory");
        return -1;
    }
    u->cfg = *config;
    u->params = params;
    if (sdt_linear_bind(&u->time1, params, "time_embed.0", error) != 0 ||
        sdt_linear_bind(&u->time2, params, "time_embed.2", error) != 0 ||
        (config->adm_in_channels > 0 && (sdt_linear_bind(&u->label1, params, "label_emb.0.0", error) != 0 ||
                                         sdt_linear_bind(&u->label2, params, "label_emb.0.2", error) != 0)) ||
        build(u, params, error) != 0) {
        free_nodes(u);
        free(u);
        return -1;
    }
    size_t bound = count_bound(u);
    if (bound != params->count) {
        *error = sdt_format("unet: the parameter table has %zu tensors but this config reads %zu (a table of "
                            "another config?)",
                            params->count, bound);
        free_nodes(u);
        free(u);
        return -1;
    }
    *out = u;
    return 0;
}

const sdt_unet_config *sdt_unet_get_config(const sdt_unet *u) { return &u->cfg; }

void sdt_unet_set_checkpointing(sdt_unet *u, int on) { u->checkpointing = on != 0; }

int sdt_unet_checkpointing(const sdt_unet *u) { return u->checkpointing; }

/* ---- the nodes ----------------------------------------------------------------------------------- */

static void node_saved_free(sdt_engine *e, node_saved *s)
{
    sdt_resnet_saved_free(e, &s->resnet);
    sdt_transformer2d_saved_free(e, &s->tf);
    sdt_norm_saved_free(e, &s->norm);
    sdt_act_free(e, &s->inner);
}

/* out (allocated) from the node's input `in` (and `skip` for up-path ResNets). saved NULL: keep nothing. */
static int node_forward(sdt_engine *e, const unet_node *n, sdt_tensor *out, node_saved *saved,
                        const sdt_tensor *in, const sdt_tensor *skip, const sdt_tensor *emb,
                        const sdt_tensor *context)
{
    memset(out, 0, sizeof *out);
    sdt_tensor inner = {0}; /* see node_saved.inner */
    int status = -1;
    switch (n->kind) {
    case NODE_CONV_IN:
    case NODE_DOWNSAMPLE: return sdt_conv_fwd(e, &n->conv, out, in);
    case NODE_TRANSFORMER:
        return sdt_transformer2d_fwd(e, &n->tf, out, saved ? &saved->tf : NULL, in, context);
    case NODE_RESNET:
        if (!skip)
            return sdt_resnet_fwd(e, &n->resnet, out, saved ? &saved->resnet : NULL, in, emb);
        /* current features first, the skip second (§1.7) */
        if (sdt_act_alloc(
                e, &inner, in->dtype, 4,
                SDT_SHAPE(in->shape[0], in->shape[1], in->shape[2], in->shape[3] + skip->shape[3])) != 0)
            return -1;
        if (sdt_concat_forward(e, &inner, in, skip) == 0)
            status = sdt_resnet_fwd(e, &n->resnet, out, saved ? &saved->resnet : NULL, &inner, emb);
        break;
    case NODE_UPSAMPLE:
        if (sdt_act_alloc(e, &inner, in->dtype, 4,
                          SDT_SHAPE(in->shape[0], 2 * in->shape[1], 2 * in->shape[2], in->shape[3])) != 0)
            return -1;
        if (sdt_upsample2x_forward(e, &inner, in) == 0)
            status = sdt_conv_fwd(e, &n->conv, out, &inner);
        break;
    case NODE_OUT:
        if (sdt_norm_fwd(e, &n->norm, &inner, saved ? &saved->norm : NULL, in, 1) == 0)
            status = sdt_conv_fwd(e, &n->conv, out, &inner);
        break;
    }
    if (status == 0 && saved)
        saved->inner = inner;
    else
        sdt_act_free(e, &inner);
    return status;
}

/* din (+=; NULL for the first node when dx is not wanted), dskip (+=, up-path ResNets), demb (+=), dcontext
 * (+=, may be NULL) from dout. */
static int node_backward(sdt_engine *e, const unet_node *n, sdt_tensor *din, sdt_tensor *dskip,
                         sdt_tensor *demb, sdt_tensor *dcontext, const sdt_tensor *dout, const sdt_tensor *in,
                         const sdt_tensor *emb, const sdt_tensor *context, const node_saved *s)
{
    sdt_tensor dinner = {0}; /* shaped like s->inner */
    int status = -1;
    switch (n->kind) {
    case NODE_CONV_IN:
    case NODE_DOWNSAMPLE: return sdt_conv_bwd(e, &n->conv, din, dout, in);
    case NODE_TRANSFORMER: return sdt_transformer2d_bwd(e, &n->tf, din, dcontext, dout, in, context, &s->tf);
    case NODE_RESNET:
        if (n->skip < 0)
            return sdt_resnet_bwd(e, &n->resnet, din, demb, dout, in, emb, &s->resnet);
        if (sdt_act_zeros_like(e, &dinner, &s->inner) == 0 &&
            sdt_resnet_bwd(e, &n->resnet, &dinner, demb, dout, &s->inner, emb, &s->resnet) == 0)
            status = sdt_concat_backward(e, din, dskip, &dinner);
        break;
    case NODE_UPSAMPLE:
        if (sdt_act_zeros_like(e, &dinner, &s->inner) == 0 &&
            sdt_conv_bwd(e, &n->conv, &dinner, dout, &s->inner) == 0)
            status = sdt_upsample2x_backward(e, din, &dinner);
        break;
    case NODE_OUT:
        if (sdt_act_zeros_like(e, &dinner, &s->inner) == 0 &&
            sdt_conv_bwd(e, &n->conv, &dinner, dout, &s->inner) == 0)
            status = sdt_norm_bwd(e, &n->norm, din, &dinner, in, &s->norm, 1);
        break;
    }
    sdt_act_free(e, &dinner);
    return status;
}

/* Prefixes the message of the op that failed with the block's name. */
static int node_fail(sdt_engine *e, const unet_node *n, const char *pass)
{
    char reason[512];
    snprintf(reason, sizeof reason, "%s", sdt_engine_error(e));
    return sdt_engine_fail(e, "unet %s %s: %s", n->name, pass, reason);
}

/* Nodes whose backward reads only their saved inner tensor, not their input. */
static int backward_skips_input(const unet_node *n)
{
    return (n->kind == NODE_RESNET && n->skip >= 0) || n->kind == NODE_UPSAMPLE;
}

/* ---- forward state ------------------------------------------------------------------------------- */

static void state_release(sdt_engine *e, unet_state *st)
{
    for (int i = 0; i < st->n; i++) {
        if (!(st->borrowed && i == 0))
            sdt_act_free(e, &st->acts[i]);
        if (st->saved)
            node_saved_free(e, &st->saved[i]);
    }
    if (!st->borrowed) {
        sdt_act_free(e, &st->context);
        sdt_act_free(e, &st->added);
    }
    sdt_act_free(e, &st->temb);
    sdt_act_free(e, &st->t_h);
    sdt_act_free(e, &st->t_act);
    sdt_act_free(e, &st->a_h);
    sdt_act_free(e, &st->a_act);
    sdt_act_free(e, &st->emb);
    free(st->acts);
    free(st->shapes);
    free(st->saved);
    free(st->uses);
    memset(st, 0, sizeof *st);
}

void sdt_unet_release(sdt_engine *e, sdt_unet *u)
{
    if (u->st.n || u->st.held)
        state_release(e, &u->st);
}

int sdt_unet_has_state(const sdt_unet *u) { return u->st.held; }

void sdt_unet_free(sdt_engine *e, sdt_unet *u)
{
    if (!u)
        return;
    if (e)
        sdt_unet_release(e, u);
    free_nodes(u);
    free(u);
}

/* dst (allocated) = a copy of src. */
static int copy_tensor(sdt_engine *e, sdt_tensor *dst, const sdt_tensor *src)
{
    if (sdt_act_alloc(e, dst, src->dtype, src->ndim, src->shape) != 0)
        return -1;
    if (sdt_copy(e, dst, src) != 0) {
        sdt_act_free(e, dst);
        return -1;
    }
    return 0;
}

/* emb [B, T] = time_embed(sinusoid(t)) (+ label_emb(y)); the intermediates stay in st when keep. */
static int embed(sdt_engine *e, const sdt_unet *u, unet_state *st, const sdt_tensor *timesteps,
                 sdt_dtype dtype, int keep)
{
    sdt_tensor added_out = {0}; /* [B, T] label_emb.0.2 output */
    int64_t batch = timesteps->shape[0];
    if (sdt_act_alloc(e, &st->temb, dtype, 2, SDT_SHAPE(batch, u->cfg.block_out_channels[0])) != 0 ||
        sdt_timestep_embedding(e, &st->temb, timesteps, 1, 0.0f, 10000.0f) != 0 ||
        sdt_linear_fwd(e, &u->time1, &st->t_h, &st->temb) != 0 ||
        sdt_act_alloc(e, &st->t_act, dtype, 2, st->t_h.shape) != 0 ||
        sdt_activation_forward(e, &st->t_act, &st->t_h, SDT_ACT_SILU) != 0 ||
        sdt_linear_fwd(e, &u->time2, &st->emb, &st->t_act) != 0)
        return -1;
    if (u->label1.weight) {
        if (sdt_linear_fwd(e, &u->label1, &st->a_h, &st->added) != 0 ||
            sdt_act_alloc(e, &st->a_act, dtype, 2, st->a_h.shape) != 0 ||
            sdt_activation_forward(e, &st->a_act, &st->a_h, SDT_ACT_SILU) != 0 ||
            sdt_linear_fwd(e, &u->label2, &added_out, &st->a_act) != 0)
            return -1;
        int status = sdt_add_forward(e, &st->emb, &st->emb, &added_out);
        sdt_act_free(e, &added_out);
        if (status != 0)
            return -1;
    }
    if (!keep) {
        sdt_act_free(e, &st->temb);
        sdt_act_free(e, &st->t_h);
        sdt_act_free(e, &st->t_act);
        sdt_act_free(e, &st->a_h);
        sdt_act_free(e, &st->a_act);
    }
    return 0;
}

static int check_inputs(sdt_engine *e, const sdt_unet *u, const sdt_tensor *x, const sdt_tensor *timesteps,
                        const sdt_tensor *context, const sdt_tensor *added)
{
    const sdt_unet_config *c = &u->cfg;
    char desc[96];
    if (!u->params->allocated)
        return sdt_engine_fail(e, "unet: the parameters are not allocated");
    int64_t multiple = (int64_t)1 << (c->levels - 1);
    if (x->ndim != 4 || x->shape[0] < 1 || x->shape[3] != c->in_channels || x->shape[1] < multiple ||
        x->shape[2] < multiple || x->shape[1] % multiple != 0 || x->shape[2] % multiple != 0) {
        sdt_tensor_describe(x, desc, sizeof desc);
        return sdt_engine_fail(
            e, "unet: the latents are %s, expected [B, H, W, %d] with H and W multiples of %lld", desc,
            c->in_channels, (long long)multiple);
    }
    int64_t batch = x->shape[0];
    if (timesteps->ndim != 1 || timesteps->shape[0] != batch) {
        sdt_tensor_describe(timesteps, desc, sizeof desc);
        return sdt_engine_fail(e, "unet: the timesteps are %s, expected [%lld]", desc, (long long)batch);
    }
    if (context->ndim != 3 || context->shape[0] != batch || context->shape[1] < 1 ||
        context->shape[2] != c->cross_attention_dim) {
        sdt_tensor_describe(context, desc, sizeof desc);
        return sdt_engine_fail(e, "unet: the context is %s, expected [%lld, L, %d]", desc, (long long)batch,
                               c->cross_attention_dim);
    }
    if (c->adm_in_channels > 0) {
        if (!added)
            return sdt_engine_fail(e, "unet: this UNet needs the added conditioning [%lld, %d]",
                                   (long long)batch, c->adm_in_channels);
        if (added->ndim != 2 || added->shape[0] != batch || added->shape[1] != c->adm_in_channels) {
            sdt_tensor_describe(added, desc, sizeof desc);
            return sdt_engine_fail(e, "unet: the added conditioning is %s, expected [%lld, %d]", desc,
                                   (long long)batch, c->adm_in_channels);
        }
    } else if (added) {
        return sdt_engine_fail(e, "unet: this UNet has no added conditioning");
    }
    return 0;
}

int sdt_unet_forward(sdt_engine *e, sdt_unet *u, sdt_tensor *out, const sdt_tensor *x,
                     const sdt_tensor *timesteps, const sdt_tensor *context, const sdt_tensor *added_cond,
                     int keep_for_backward)
{
    memset(out, 0, sizeof *out);
    sdt_unet_release(e, u);
    if (check_inputs(e, u, x, timesteps, context, added_cond) != 0)
        return -1;
    int n = u->n_nodes;
    int keep = keep_for_backward != 0, ckpt = keep && u->checkpointing;
    unet_state local = {0};
    unet_state *st = keep ? &u->st : &local;
    memset(st, 0, sizeof *st);
    st->n = n;
    st->borrowed = !keep;
    st->checkpointed = ckpt;
    st->acts = calloc((size_t)n, sizeof *st->acts);
    st->shapes = calloc((size_t)n, sizeof *st->shapes);
    st->uses = calloc((size_t)n, sizeof *st->uses);
    if (keep && !ckpt)
        st->saved = calloc((size_t)n, sizeof *st->saved);
    if (!st->acts || !st->shapes || !st->uses || (keep && !ckpt && !st->saved)) {
        sdt_engine_fail(e, "unet: out of memory");
        goto fail;
    }
    if (keep) {
        if (copy_tensor(e, &st->acts[0], x) != 0 || copy_tensor(e, &st->context, context) != 0 ||
            (added_cond && copy_tensor(e, &st->added, added_cond) != 0))
            goto fail;
    } else {
        st->acts[0] = *x;
        st->context = *context;
        if (added_cond)
            st->added = *added_cond;
    }
    if (embed(e, u, st, timesteps, x->dtype, keep) != 0)
        goto fail;
    for (int i = 0; i < n; i++)
        st->uses[i] = 1 + u->skip_uses[i];

    for (int i = 0; i < n; i++) {
        const unet_node *node = &u->nodes[i];
        const sdt_tensor *skip = node->skip >= 0 ? &st->acts[node->skip] : NULL;
        sdt_tensor *next = i + 1 < n ? &st->acts[i + 1] : out;
        st->shapes[i] = sdt_view(&st->acts[i], st->acts[i].ndim, st->acts[i].shape);
        st->shapes[i].data = NULL;
        if (node_forward(e, node, next, st->saved ? &st->saved[i] : NULL, &st->acts[i], skip, &st->emb,
                         &st->context) != 0) {
            node_fail(e, node, "forward");
            goto fail;
        }
        if (!keep) {
            /* Inference: drop what no later node reads. */
            if (--st->uses[i] == 0 && i > 0)
                sdt_act_free(e, &st->acts[i]);
            if (node->skip >= 0 && --st->uses[node->skip] == 0)
                sdt_act_free(e, &st->acts[node->skip]);
        } else if (!ckpt && backward_skips_input(node) && u->skip_uses[i] == 0) {
            sdt_act_free(e, &st->acts[i]);
        }
    }
    memcpy(st->out_shape, out->shape, sizeof st->out_shape);
    if (keep)
        st->held = 1;
    else
        state_release(e, st);
    return 0;
fail:
    sdt_act_free(e, out);
    state_release(e, st);
    return -1;
}

/* ---- backward ------------------------------------------------------------------------------------ */

/* The gradient buffer g, allocated and zeroed on first use, shaped like `like`. */
static sdt_tensor *grad_buffer(sdt_engine *e, sdt_tensor *g, const sdt_tensor *like)
{
    if (!g->data && sdt_act_zeros(e, g, like->dtype, like->ndim, like->shape) != 0)
        return NULL;
    return g;
}

/* Through the time MLP (and the added-conditioning MLP) from demb [B, T]. */
static int embed_backward(sdt_engine *e, const sdt_unet *u, const unet_state *st, const sdt_tensor *demb,
                          sdt_tensor *dadded)
{
    sdt_tensor dact = {0}, dh = {0}; /* [B, T] */
    int status = -1;
    if (sdt_act_zeros_like(e, &dact, &st->t_act) != 0 ||
        sdt_linear_bwd(e, &u->time2, &dact, demb, &st->t_act) != 0 ||
        sdt_act_zeros_like(e, &dh, &st->t_h) != 0 ||
        sdt_activation_backward(e, &dh, &dact, &st->t_h, SDT_ACT_SILU) != 0 ||
        sdt_linear_bwd(e, &u->time1, NULL, &dh, &st->temb) != 0)
        goto done;
    if (u->label1.weight) {
        if (sdt_fill(e, &dact, 0.0f) != 0 || sdt_fill(e, &dh, 0.0f) != 0 ||
            sdt_linear_bwd(e, &u->label2, &dact, demb, &st->a_act) != 0 ||
            sdt_activation_backward(e, &dh, &dact, &st->a_h, SDT_ACT_SILU) != 0 ||
            sdt_linear_bwd(e, &u->label1, dadded, &dh, &st->added) != 0)
            goto done;
    }
    status = 0;
done:
    sdt_act_free(e, &dact);
    sdt_act_free(e, &dh);
    return status;
}

int sdt_unet_backward(sdt_engine *e, sdt_unet *u, sdt_tensor *dx, sdt_tensor *dcontext,
                      sdt_tensor *dadded_cond, const sdt_tensor *dout)
{
    unet_state *st = &u->st;
    if (!st->held)
        return sdt_engine_fail(e, "unet backward: no forward state (run the forward with keep_for_backward)");
    int n = st->n, status = -1;
    sdt_tensor *grads = calloc((size_t)n, sizeof *grads); /* grads[i]: d acts[i], shaped like acts[i] */
    sdt_tensor demb = {0};                                /* [B, T] */
    char desc[96];
    if (!grads) {
        sdt_engine_fail(e, "unet backward: out of memory");
        goto done;
    }
    if (dout->ndim != 4 || memcmp(dout->shape, st->out_shape, sizeof st->out_shape) != 0) {
        sdt_tensor_describe(dout, desc, sizeof desc);
        sdt_engine_fail(e, "unet backward: the output gradient is %s, expected [%lld, %lld, %lld, %lld]",
                        desc, (long long)st->out_shape[0], (long long)st->out_shape[1],
                        (long long)st->out_shape[2], (long long)st->out_shape[3]);
        goto done;
    }
    if (sdt_act_zeros_like(e, &demb, &st->emb) != 0)
        goto done;
    for (int i = n - 1; i >= 0; i--) {
        const unet_node *node = &u->nodes[i];
        const sdt_tensor *d_out = i + 1 < n ? &grads[i + 1] : dout;
        sdt_tensor *din = i > 0 ? grad_buffer(e, &grads[i], &st->shapes[i]) : dx;
        sdt_tensor *dskip =
            node->skip >= 0 ? grad_buffer(e, &grads[node->skip], &st->shapes[node->skip]) : NULL;
        if ((i > 0 && !din) || (node->skip >= 0 && !dskip))
            goto done;
        if (!d_out->data) {
            sdt_engine_fail(e, "unet backward: %s has no output gradient", node->name);
            goto done;
        }
        node_saved recomputed;
        memset(&recomputed, 0, sizeof recomputed);
        const node_saved *saved = st->saved ? &st->saved[i] : &recomputed;
        const sdt_tensor *skip = node->skip >= 0 ? &st->acts[node->skip] : NULL;
        int rc = 0;
        if (st->checkpointed) {
            /* Checkpointing: re-run the block's forward to get what its backward needs. */
            sdt_tensor discard = {0}; /* the block's output again, not needed */
            rc = node_forward(e, node, &discard, &recomputed, &st->acts[i], skip, &st->emb, &st->context);
            sdt_act_free(e, &discard);
        }
        if (rc == 0)
            rc = node_backward(e, node, din, dskip, &demb, dcontext, d_out, &st->acts[i], &st->emb,
                               &st->context, saved);
        node_saved_free(e, &recomputed);
        if (rc != 0) {
            node_fail(e, node, "backward");
            goto done;
        }
        /* The node is done: its saved state, its input and its output gradient are not read again (the
         * up-path nodes that read acts[i] as a skip come later in the forward, so earlier here). */
        if (st->saved)
            node_saved_free(e, &st->saved[i]);
        sdt_act_free(e, &st->acts[i]);
        if (i + 1 < n)
            sdt_act_free(e, &grads[i + 1]);
    }
    if (embed_backward(e, u, st, &demb, dadded_cond) != 0)
        goto done;
    status = 0;
done:
    if (grads)
        for (int i = 0; i < n; i++)
            sdt_act_free(e, &grads[i]);
    free(grads);
    sdt_act_free(e, &demb);
    state_release(e, st);
    return status;
}
