/* The layers of models/layers.h against finite differences: every backward (input, context, time
 * embedding and every trainable parameter) equals the directional derivative of its forward, the
 * inference forward (no saved state) gives the training forward's output, backward adds into the input
 * gradients it is handed, and a frozen parameter gets no gradient but still passes one to its input. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "layers.h"
#include "models/gradcheck.h"
#include "unit/check.h"
#include "unit/test_engine.h"

/* Step relative to each tensor's RMS, and the relative tolerance: directional derivatives agree to ~1e-5 in
 * fp32 with this step; a wrong term is off by far more. */
#define GC_STEP (1.0 / 64.0)
#define GC_LIMIT 1e-3

/* What is prefilled into an input gradient before backward: the check subtracts it again, so a backward
 * that overwrites instead of adding fails. */
#define GRAD_PREFILL 0.25f

typedef enum layer_kind { K_LINEAR, K_CONV, K_NORM, K_MHA, K_RESNET } layer_kind;

/* One layer under test, its inputs and the gradients of those inputs. */
typedef struct layer_case {
    const char *name;
    sdt_engine *e;
    sdt_param_table table;
    layer_kind kind;
    sdt_linear linear;
    sdt_conv conv;
    sdt_norm norm;
    int fuse_silu;
    sdt_mha mha;
    int self_attention; /* attention over x itself (ctx is x) */
    sdt_resnet resnet;
    sdt_tensor x, ctx, emb;    /* inputs: x always; ctx for cross-attention; emb for a time-embedded resnet */
    sdt_tensor dx, dctx, demb; /* their gradients */
    uint64_t rng;
} layer_case;

static void case_init(layer_case *c, sdt_engine *e, const char *name, layer_kind kind, uint64_t seed)
{
    memset(c, 0, sizeof *c);
    c->name = name;
    c->e = e;
    c->kind = kind;
    c->rng = seed;
    sdt_param_table_init(&c->table, "test", "");
}

/* Every parameter trainable except those named in `frozen` (NULL-terminated), allocated F32 and filled:
 * weights uniform in +-1/sqrt(fan_in) (the scale that keeps activations O(1)), biases the same, norm
 * weights 1 + U(+-0.2) and norm biases U(+-0.2), so that no parameter is a constant the check cannot see
 * through. */
static int case_alloc_params(test_state *t, layer_case *c, const char *const *frozen)
{
    for (size_t i = 0; i < c->table.count; i++) {
        sdt_param *p = &c->table.items[i];
        p->trainable = 1;
        for (const char *const *f = frozen; f && *f; f++)
            if (strcmp(*f, p->name) == 0)
                p->trainable = 0;
    }
    char *error = NULL;
    if (sdt_param_table_alloc(c->e, &c->table, SDT_F32, &error) != 0) {
        CHECK_MSG(t, 0, "%s", error);
        free(error);
        return -1;
    }
    for (size_t i = 0; i < c->table.count; i++) {
        sdt_param *p = &c->table.items[i];
        float *v = (float *)p->value.data;
        int64_t n = sdt_param_numel(p);
        float scale = 1.0f / sqrtf((float)p->fan_in);
        if (p->kind == SDT_PARAM_NORM_WEIGHT) {
            gc_fill(v, n, 0.2f, &c->rng);
            for (int64_t j = 0; j < n; j++)
                v[j] += 1.0f;
        } else if (p->kind == SDT_PARAM_NORM_BIAS) {
            gc_fill(v, n, 0.2f, &c->rng);
        } else {
            gc_fill(v, n, scale, &c->rng);
        }
    }
    return 0;
}

/* Allocates an input and its gradient, fills the input with U(+-1). */
static int case_input(layer_case *c, sdt_tensor *x, sdt_tensor *dx, int ndim, const int64_t *shape)
{
    if (sdt_act_alloc(c->e, x, SDT_F32, ndim, shape) != 0 ||
        sdt_act_alloc(c->e, dx, SDT_F32, ndim, shape) != 0)
        return -1;
    gc_fill((float *)x->data, sdt_tensor_numel(x), 1.0f, &c->rng);
    return 0;
}

static void case_free(layer_case *c)
{
    sdt_act_free(c->e, &c->x);
    sdt_act_free(c->e, &c->ctx);
    sdt_act_free(c->e, &c->emb);
    sdt_act_free(c->e, &c->dx);
    sdt_act_free(c->e, &c->dctx);
    sdt_act_free(c->e, &c->demb);
    sdt_param_table_free(c->e, &c->table);
}

/* The end of a case: no error from binding the layer, and its resources freed. */
static void case_end(test_state *t, layer_case *c, char *error)
{
    CHECK_MSG(t, error == NULL, "%s", error);
    free(error);
    case_free(c);
}

/* Saved state of any kind of layer. */
typedef struct any_saved {
    sdt_norm_saved norm;
    sdt_mha_saved mha;
    sdt_resnet_saved resnet;
} any_saved;

static void saved_free(layer_case *c, any_saved *s)
{
    sdt_norm_saved_free(c->e, &s->norm);
    sdt_mha_saved_free(c->e, &s->mha);
    sdt_resnet_saved_free(c->e, &s->resnet);
}

static const sdt_tensor *case_ctx(const layer_case *c) { return c->self_attention ? &c->x : &c->ctx; }

/* The forward; saved NULL runs the inference path. */
static int case_forward(layer_case *c, sdt_tensor *out, any_saved *s)
{
    switch (c->kind) {
    case K_LINEAR: return sdt_linear_fwd(c->e, &c->linear, out, &c->x);
    case K_CONV: return sdt_conv_fwd(c->e, &c->conv, out, &c->x);
    case K_NORM: return sdt_norm_fwd(c->e, &c->norm, out, s ? &s->norm : NULL, &c->x, c->fuse_silu);
    case K_MHA: return sdt_mha_fwd(c->e, &c->mha, out, s ? &s->mha : NULL, &c->x, case_ctx(c));
    case K_RESNET:
        return sdt_resnet_fwd(c->e, &c->resnet, out, s ? &s->resnet : NULL, &c->x,
                              c->emb.data ? &c->emb : NULL);
    }
    return -1;
}

/* inputs_too 0: no input gradient is asked for (a first layer), only the parameters'. */
static int case_backward(layer_case *c, const sdt_tensor *dout, any_saved *s, int inputs_too)
{
    sdt_tensor *dx = inputs_too ? &c->dx : NULL;
    sdt_tensor *dctx = inputs_too && !c->self_attention ? &c->dctx : NULL;
    sdt_tensor *demb = inputs_too && c->emb.data ? &c->demb : NULL;
    switch (c->kind) {
    case K_LINEAR: return sdt_linear_bwd(c->e, &c->linear, dx, dout, &c->x);
    case K_CONV: return sdt_conv_bwd(c->e, &c->conv, dx, dout, &c->x);
    case K_NORM: return sdt_norm_bwd(c->e, &c->norm, dx, dout, &c->x, &s->norm, c->fuse_silu);
    case K_MHA: return sdt_mha_bwd(c->e, &c->mha, dx, dctx, dout, &c->x, case_ctx(c), &s->mha);
    case K_RESNET:
        return sdt_resnet_bwd(c->e, &c->resnet, dx, demb, dout, &c->x, c->emb.data ? &c->emb : NULL,
                              &s->resnet);
    }
    return -1;
}

/* Backward again without input gradients: the parameter gradients must not change. */
static void check_params_only(test_state *t, layer_case *c, const sdt_tensor *dout, any_saved *saved)
{
    size_t total = 0;
    for (size_t i = 0; i < c->table.count; i++)
        if (c->table.items[i].grad.data)
            total += (size_t)sdt_param_numel(&c->table.items[i]);
    float *before = malloc((total ? total : 1) * sizeof *before);
    if (!before)
        return;
    size_t off = 0;
    for (size_t i = 0; i < c->table.count; i++) {
        sdt_param *p = &c->table.items[i];
        if (p->grad.data) {
            memcpy(before + off, p->grad.data, (size_t)sdt_param_numel(p) * sizeof *before);
            off += (size_t)sdt_param_numel(p);
        }
    }
    sdt_param_table_zero_grads(c->e, &c->table);
    CHECK_MSG(t, case_backward(c, dout, saved, 0) == 0, "%s: backward without input gradients: %s", c->name,
              sdt_engine_error(c->e));
    off = 0;
    for (size_t i = 0; i < c->table.count; i++) {
        sdt_param *p = &c->table.items[i];
        if (!p->grad.data)
            continue;
        size_t n = (size_t)sdt_param_numel(p);
        CHECK_MSG(t, memcmp(before + off, p->grad.data, n * sizeof *before) == 0,
                  "%s: %s differs when no input gradient is asked for", c->name, p->name);
        off += n;
    }
    free(before);
}

static int gc_forward(void *self, sdt_tensor *out) { return case_forward(self, out, NULL); }

static void gc_free_out(void *self, sdt_tensor *out) { sdt_act_free(((layer_case *)self)->e, out); }

static void prefill(sdt_engine *e, sdt_tensor *g)
{
    if (g->data)
        sdt_fill(e, g, GRAD_PREFILL);
}

static void unprefill(sdt_tensor *g)
{
    float *p = (float *)g->data;
    for (int64_t i = 0; p && i < sdt_tensor_numel(g); i++)
        p[i] -= GRAD_PREFILL;
}

static void check_grad(test_state *t, const gc_model *m, const char *layer, const char *what, float *values,
                       const float *grad, int64_t n, uint64_t seed)
{
    char label[160];
    snprintf(label, sizeof label, "%s: %s", layer, what);
    double score = gc_check(m, label, values, grad, n, GC_STEP, GC_LIMIT, seed);
    CHECK_MSG(t, score <= 1.0, "%s: gradient differs from finite differences", label);
}

/* Runs the training forward and backward, then checks every gradient against finite differences. */
static void run_case(test_state *t, layer_case *c)
{
    printf("%s\n", c->name);
    sdt_engine *e = c->e;
    any_saved saved;
    memset(&saved, 0, sizeof saved);
    sdt_tensor out = {0}, ref = {0};
    float *w = NULL;
    if (case_forward(c, &out, &saved) != 0) {
        CHECK_MSG(t, 0, "%s: forward: %s", c->name, sdt_engine_error(e));
        goto done;
    }
    /* The inference path computes the same thing while keeping nothing. */
    if (case_forward(c, &ref, NULL) != 0) {
        CHECK_MSG(t, 0, "%s: inference forward: %s", c->name, sdt_engine_error(e));
        goto done;
    }
    CHECK_MSG(t, memcmp(out.data, ref.data, sdt_tensor_bytes(&out)) == 0, "%s: inference output differs",
              c->name);
    int64_t n_out = sdt_tensor_numel(&out);
    w = malloc((size_t)n_out * sizeof *w);
    if (!w)
        goto done;
    gc_fill(w, n_out, 1.0f, &c->rng);
    memcpy(ref.data, w, (size_t)n_out * sizeof *w); /* ref becomes dout */
    sdt_param_table_zero_grads(e, &c->table);
    prefill(e, &c->dx);
    prefill(e, &c->dctx);
    prefill(e, &c->demb);
    if (case_backward(c, &ref, &saved, 1) != 0) {
        CHECK_MSG(t, 0, "%s: backward: %s", c->name, sdt_engine_error(e));
        goto done;
    }
    unprefill(&c->dx);
    unprefill(&c->dctx);
    unprefill(&c->demb);
    check_params_only(t, c, &ref, &saved);

    gc_model m = {.e = e, .self = c, .forward = gc_forward, .free_out = gc_free_out, .w = w};
    uint64_t seed = 1000;
    check_grad(t, &m, c->name, "x", c->x.data, c->dx.data, sdt_tensor_numel(&c->x), seed++);
    if (c->ctx.data)
        check_grad(t, &m, c->name, "ctx", c->ctx.data, c->dctx.data, sdt_tensor_numel(&c->ctx), seed++);
    if (c->emb.data)
        check_grad(t, &m, c->name, "emb", c->emb.data, c->demb.data, sdt_tensor_numel(&c->emb), seed++);
    for (size_t i = 0; i < c->table.count; i++) {
        sdt_param *p = &c->table.items[i];
        if (p->trainable)
            check_grad(t, &m, c->name, p->name, p->value.data, p->grad.data, sdt_param_numel(p), seed++);
        else
            CHECK_MSG(t, p->grad.data == NULL, "%s: frozen %s has a gradient", c->name, p->name);
    }
done:
    free(w);
    saved_free(c, &saved);
    sdt_act_free(e, &out);
    sdt_act_free(e, &ref);
}

/* Allocates a second input (want: the case has one), then runs the case. */
static void run_with_input(test_state *t, layer_case *c, int want, sdt_tensor *x, sdt_tensor *dx, int ndim,
                           const int64_t *shape)
{
    if (want && case_input(c, x, dx, ndim, shape) != 0)
        CHECK(t, 0);
    else
        run_case(t, c);
}

/* "block.<name>" in buf. */
static const char *block_name(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "block.%s", name);
    return buf;
}

/* ---- the cases ----------------------------------------------------------------------------------- */

static void test_linear(test_state *t)
{
    sdt_engine *e = test_cpu_engine(t, 0);
    if (!e)
        return;
    layer_case c;
    case_init(&c, e, "linear [2, 3, 5] -> 4, bias", K_LINEAR, 1);
    CHECK(t, sdt_param_add_linear(&c.table, "fc", 4, 5, 1) == 0);
    char *error = NULL;
    if (case_alloc_params(t, &c, NULL) == 0 && sdt_linear_bind(&c.linear, &c.table, "fc", &error) == 0 &&
        case_input(&c, &c.x, &c.dx, 3, SDT_SHAPE(2, 3, 5)) == 0)
        run_case(t, &c);
    case_end(t, &c, error);

    /* No bias, frozen weight: the input still gets its gradient. */
    case_init(&c, e, "linear [6, 7] -> 3, no bias, frozen", K_LINEAR, 2);
    CHECK(t, sdt_param_add_linear(&c.table, "fc", 3, 7, 0) == 0);
    const char *const frozen[] = {"fc.weight", NULL};
    if (case_alloc_params(t, &c, frozen) == 0 && sdt_linear_bind(&c.linear, &c.table, "fc", &error) == 0 &&
        case_input(&c, &c.x, &c.dx, 2, SDT_SHAPE(6, 7)) == 0) {
        CHECK(t, c.linear.bias == NULL);
        run_case(t, &c);
    }
    free(error);
    case_free(&c);
    sdt_engine_free(e);
}

static void conv_case(test_state *t, sdt_engine *e, const char *name, int64_t h, int64_t w, int c_in,
                      int c_out, int k, int stride, sdt_conv2d_params pad)
{
    layer_case c;
    case_init(&c, e, name, K_CONV, 3 + (uint64_t)k + (uint64_t)stride);
    CHECK(t, sdt_param_add_conv(&c.table, "conv", c_out, c_in, k, k, 1) == 0);
    char *error = NULL;
    if (case_alloc_params(t, &c, NULL) == 0 &&
        sdt_conv_bind(&c.conv, &c.table, "conv", stride, 0, &error) == 0 &&
        case_input(&c, &c.x, &c.dx, 4, SDT_SHAPE(2, h, w, c_in)) == 0) {
        pad.stride = stride;
        c.conv.p = pad;
        run_case(t, &c);
    }
    case_end(t, &c, error);
}

static void test_conv(test_state *t)
{
    sdt_engine *e = test_cpu_engine(t, 0);
    if (!e)
        return;
    conv_case(t, e, "conv 3x3 pad 1, 5x6x3 -> 4", 5, 6, 3, 4, 3, 1, (sdt_conv2d_params){0, 1, 1, 1, 1});
    conv_case(t, e, "conv 3x3 stride 2 pad 1 (UNet downsample)", 6, 6, 4, 4, 3, 2,
              (sdt_conv2d_params){0, 1, 1, 1, 1});
    conv_case(t, e, "conv 3x3 stride 2 pad (0, 0, 1, 1) (VAE downsample)", 6, 6, 4, 4, 3, 2,
              (sdt_conv2d_params){0, 0, 0, 1, 1});
    sdt_engine_free(e);
}

static void norm_case(test_state *t, sdt_engine *e, const char *name, int groups, int fuse_silu, int ndim,
                      const int64_t *shape)
{
    layer_case c;
    case_init(&c, e, name, K_NORM, 10 + (uint64_t)groups + (uint64_t)fuse_silu);
    CHECK(t, sdt_param_add_norm(&c.table, "norm", shape[ndim - 1]) == 0);
    char *error = NULL;
    if (case_alloc_params(t, &c, NULL) == 0 &&
        sdt_norm_bind(&c.norm, &c.table, "norm", groups, groups ? 1e-5f : 1e-6f, &error) == 0 &&
        case_input(&c, &c.x, &c.dx, ndim, shape) == 0) {
        c.fuse_silu = fuse_silu;
        run_case(t, &c);
    }
    case_end(t, &c, error);
}

static void test_norms(test_state *t)
{
    sdt_engine *e = test_cpu_engine(t, 0);
    if (!e)
        return;
    norm_case(t, e, "group norm 4 groups [2, 3, 4, 8]", 4, 0, 4, SDT_SHAPE(2, 3, 4, 8));
    norm_case(t, e, "group norm + SiLU 2 groups [2, 5, 6]", 2, 1, 3, SDT_SHAPE(2, 5, 6));
    norm_case(t, e, "layer norm [2, 3, 10]", 0, 0, 3, SDT_SHAPE(2, 3, 10));

    /* Layer norms have no fused SiLU: a clear error, nothing allocated. */
    layer_case c;
    case_init(&c, e, "layer norm + SiLU", K_NORM, 20);
    CHECK(t, sdt_param_add_norm(&c.table, "norm", 4) == 0);
    char *error = NULL;
    if (case_alloc_params(t, &c, NULL) == 0 &&
        sdt_norm_bind(&c.norm, &c.table, "norm", 0, 1e-5f, &error) == 0 &&
        case_input(&c, &c.x, &c.dx, 2, SDT_SHAPE(3, 4)) == 0) {
        sdt_tensor out = {0};
        sdt_norm_saved s = {0};
        CHECK(t,
              sdt_norm_fwd(e, &c.norm, &out, &s, &c.x, 1) == -1 && out.data == NULL && s.mean.data == NULL);
        CHECK_STR_CONTAINS(t, sdt_engine_error(e), "SiLU");
    }
    free(error);
    case_free(&c);
    sdt_engine_free(e);
}

/* names: {q, k, v, out}; bias on q/k/v or not; ctx_dim 0 = self-attention. */
static void mha_case(test_state *t, sdt_engine *e, const char *name, int channels, int heads, int ctx_dim,
                     int qkv_bias, int causal, const char *const *frozen)
{
    static const char *const names[4] = {"to_q", "to_k", "to_v", "to_out.0"};
    layer_case c;
    case_init(&c, e, name, K_MHA, 30 + (uint64_t)channels + (uint64_t)ctx_dim + (uint64_t)causal);
    int kv_in = ctx_dim ? ctx_dim : channels;
    CHECK(t, sdt_param_add_linear(&c.table, "attn.to_q", channels, channels, qkv_bias) == 0);
    CHECK(t, sdt_param_add_linear(&c.table, "attn.to_k", channels, kv_in, qkv_bias) == 0);
    CHECK(t, sdt_param_add_linear(&c.table, "attn.to_v", channels, kv_in, qkv_bias) == 0);
    CHECK(t, sdt_param_add_linear(&c.table, "attn.to_out.0", channels, channels, 1) == 0);
    char *error = NULL;
    if (case_alloc_params(t, &c, frozen) == 0 &&
        sdt_mha_bind(&c.mha, &c.table, "attn", names, heads, causal, &error) == 0 &&
        case_input(&c, &c.x, &c.dx, 3, SDT_SHAPE(2, 6, channels)) == 0) {
        c.self_attention = ctx_dim == 0;
        run_with_input(t, &c, ctx_dim != 0, &c.ctx, &c.dctx, 3, SDT_SHAPE(2, 5, ctx_dim));
    }
    case_end(t, &c, error);
}

static void test_attention(test_state *t)
{
    sdt_engine *e = test_cpu_engine(t, 0);
    if (!e)
        return;
    mha_case(t, e, "self-attention, 2 heads, no q/k/v bias (UNet attn1)", 8, 2, 0, 0, 0, NULL);
    mha_case(t, e, "cross-attention, 4 heads, context width 6 (UNet attn2)", 8, 4, 6, 0, 0, NULL);
    mha_case(t, e, "causal self-attention with biases (CLIP)", 8, 2, 0, 1, 1, NULL);
    const char *const frozen[] = {"attn.to_q.weight", "attn.to_k.weight", "attn.to_v.weight",
                                  "attn.to_out.0.weight", NULL};
    mha_case(t, e, "cross-attention, frozen projections", 8, 2, 5, 0, 0, frozen);
    sdt_engine_free(e);
}

static const char *const unet_resnet_names[6] = {"in_layers.0",  "in_layers.2",  "emb_layers.1",
                                                 "out_layers.0", "out_layers.3", "skip_connection"};
static const char *const vae_resnet_names[6] = {"norm1", "conv1", NULL, "norm2", "conv2", "nin_shortcut"};

static void resnet_case(test_state *t, sdt_engine *e, const char *name, int c_in, int c_out, int emb_dim,
                        int groups)
{
    layer_case c;
    case_init(&c, e, name, K_RESNET, 50 + (uint64_t)c_in + (uint64_t)c_out + (uint64_t)emb_dim);
    const char *const *names = emb_dim ? unet_resnet_names : vae_resnet_names;
    char base[64];
    sdt_param_table *tb = &c.table;
    CHECK(t, sdt_param_add_norm(tb, block_name(base, sizeof base, names[0]), c_in) == 0);
    CHECK(t, sdt_param_add_conv(tb, block_name(base, sizeof base, names[1]), c_out, c_in, 3, 3, 1) == 0);
    if (emb_dim) {
        CHECK(t, sdt_param_add_linear(tb, block_name(base, sizeof base, names[2]), c_out, emb_dim, 1) == 0);
    }
    CHECK(t, sdt_param_add_norm(tb, block_name(base, sizeof base, names[3]), c_out) == 0);
    CHECK(t, sdt_param_add_conv(tb, block_name(base, sizeof base, names[4]), c_out, c_out, 3, 3, 1) == 0);
    if (c_in != c_out) {
        CHECK(t,
              sdt_param_add_linear_conv1x1(tb, block_name(base, sizeof base, names[5]), c_out, c_in, 1) == 0);
    }
    char *error = NULL;
    if (case_alloc_params(t, &c, NULL) == 0 &&
        sdt_resnet_bind(&c.resnet, tb, "block", names, groups, 1e-5f, &error) == 0 &&
        case_input(&c, &c.x, &c.dx, 4, SDT_SHAPE(2, 4, 3, c_in)) == 0) {
        CHECK(t, (c.resnet.shortcut.weight != NULL) == (c_in != c_out));
        CHECK(t, (c.resnet.emb_proj.weight != NULL) == (emb_dim != 0));
        run_with_input(t, &c, emb_dim != 0, &c.emb, &c.demb, 2, SDT_SHAPE(2, emb_dim));
    }
    case_end(t, &c, error);
}

static void test_resnet(test_state *t)
{
    sdt_engine *e = test_cpu_engine(t, 0);
    if (!e)
        return;
    resnet_case(t, e, "UNet resnet 4 -> 8 channels, time embedding 12", 4, 8, 12, 2);
    resnet_case(t, e, "UNet resnet 8 -> 8 channels (identity shortcut)", 8, 8, 6, 4);
    resnet_case(t, e, "VAE resnet 8 -> 4 channels, no time embedding", 8, 4, 0, 2);
    resnet_case(t, e, "VAE resnet 4 -> 4 channels", 4, 4, 0, 2);
    sdt_engine_free(e);
}

int main(void)
{
    static const test_case cases[] = {
        TEST(test_linear), TEST(test_conv), TEST(test_norms), TEST(test_attention), TEST(test_resnet),
    };
    return run_tests("layers", cases, sizeof cases / sizeof cases[0]);
}
