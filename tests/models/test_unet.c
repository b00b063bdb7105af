/* The UNet (models/unet.h) against diffusers and against itself:
 *
 * - golden: the tiny SD1.5-topology checkpoint (sd15_tiny.safetensors) run on the inputs of
 *   unet_tiny_io.safetensors gives diffusers' output, input and context gradients and the recorded
 *   parameter gradients (NMSE <= 1e-8, fp32);
 * - the inference forward gives the training forward's output, bit for bit;
 * - an SDXL-like tiny config (3 levels, no attention at level 0, transformer depth 2, linear projections,
 *   added conditioning) gives bit-identical results with checkpointing on and off, and its gradients of x,
 *   context, added_cond and a few weights match finite differences;
 * - other topologies (attention at every level, a single level, three resnets per level) build and run;
 * - misuse (wrong shapes, a missing added conditioning, backward without a kept forward, a table of
 *   another config) is an error with a message, not a crash. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "arch.h"
#include "layers.h"
#include "models/fixture.h"
#include "models/gradcheck.h"
#include "unet.h"
#include "unit/check.h"
#include "unit/test_engine.h"

#define GOLDEN_LIMIT 1e-8
#define GC_STEP (1.0 / 64.0)
#define GC_LIMIT 1e-3

/* A CPU F32 tensor holding a copy of host values. */
static int tensor_from(sdt_engine *e, sdt_tensor *t, const float *values, int ndim, const int64_t *shape)
{
    if (sdt_act_alloc(e, t, SDT_F32, ndim, shape) != 0)
        return -1;
    memcpy(t->data, values, sdt_tensor_bytes(t));
    return 0;
}

/* ---- golden: the tiny SD1.5 UNet against diffusers ------------------------------------------------ */

typedef struct golden {
    sdt_tensor x;        /* [2, 16, 16, 4] */
    sdt_tensor t;        /* [2] */
    sdt_tensor context;  /* [2, 77, 48] */
    sdt_tensor dout;     /* [2, 16, 16, 4] */
    float *out;          /* [2, 16, 16, 4] expected */
    float *grad_x;       /* [2, 16, 16, 4] expected */
    float *grad_context; /* [2, 77, 48] expected */
} golden;

static void golden_free(sdt_engine *e, golden *g)
{
    sdt_act_free(e, &g->x);
    sdt_act_free(e, &g->t);
    sdt_act_free(e, &g->context);
    sdt_act_free(e, &g->dout);
    free(g->out);
    free(g->grad_x);
    free(g->grad_context);
    memset(g, 0, sizeof *g);
}

/* Reads an NCHW image tensor [B, C, H, W] into a new NHWC buffer. */
static float *read_image(const sdt_safetensors *st, const char *name, int64_t b, int64_t c, int64_t h,
                         int64_t w)
{
    float *nchw = fixture_read_f32(st, name, b * c * h * w);
    float *nhwc = nchw ? malloc((size_t)(b * c * h * w) * sizeof *nhwc) : NULL;
    if (nhwc)
        fixture_nchw_to_nhwc(nhwc, nchw, b, c, h, w);
    free(nchw);
    return nhwc;
}

static int golden_read(test_state *t, sdt_engine *e, const sdt_safetensors *st, golden *g)
{
    const int64_t B = 2, C = 4, H = 16, W = 16, L = 77, D = 48;
    float *x = read_image(st, "x", B, C, H, W);
    float *dout = read_image(st, "dout", B, C, H, W);
    float *ts = fixture_read_f32(st, "timesteps", B);
    float *ctx = fixture_read_f32(st, "context", B * L * D);
    g->out = read_image(st, "out", B, C, H, W);
    g->grad_x = read_image(st, "grad.x", B, C, H, W);
    g->grad_context = fixture_read_f32(st, "grad.context", B * L * D);
    int ok = x && dout && ts && ctx && g->out && g->grad_x && g->grad_context &&
             tensor_from(e, &g->x, x, 4, SDT_SHAPE(B, H, W, C)) == 0 &&
             tensor_from(e, &g->dout, dout, 4, SDT_SHAPE(B, H, W, C)) == 0 &&
             tensor_from(e, &g->t, ts, 1, SDT_SHAPE(B)) == 0 &&
             tensor_from(e, &g->context, ctx, 3, SDT_SHAPE(B, L, D)) == 0;
    free(x);
    free(dout);
    free(ts);
    free(ctx);
    CHECK_MSG(t, ok, "cannot read the UNet fixture");
    return ok ? 0 : -1;
}

/* The checkpoint's diffusers config is the sd15-tiny preset. */
static void check_config_metadata(test_state *t, const char *path, const sdt_unet_config *c)
{
    sdt_safetensors *st = NULL;
    char *error = NULL;
    if (sdt_safetensors_open(path, &st, &error) != 0) {
        CHECK_MSG(t, 0, "%s", error);
        free(error);
        return;
    }
    const char *text = sdt_safetensors_metadata(st, "unet_config");
    json_t *cfg = text ? json_loads(text, 0, NULL) : NULL;
    CHECK_MSG(t, cfg != NULL, "%s: no unet_config metadata", path);
    if (cfg) {
        json_t *boc = json_object_get(cfg, "block_out_channels");
        CHECK(t, json_array_size(boc) == (size_t)c->levels);
        for (int i = 0; i < c->levels && i < (int)json_array_size(boc); i++)
            CHECK(t, json_integer_value(json_array_get(boc, (size_t)i)) == c->block_out_channels[i]);
        CHECK(t, json_integer_value(json_object_get(cfg, "cross_attention_dim")) == c->cross_attention_dim);
        CHECK(t, json_integer_value(json_object_get(cfg, "norm_num_groups")) == c->norm_groups);
        CHECK(t, json_integer_value(json_object_get(cfg, "attention_head_dim")) == c->heads[0]);
        CHECK(t, json_integer_value(json_object_get(cfg, "layers_per_block")) == c->layers_per_block);
        CHECK(t, json_is_false(json_object_get(cfg, "use_linear_projection")));
        json_decref(cfg);
    }
    sdt_safetensors_close(st);
}

/* Everything one training step produces, copied out for comparison. */
typedef struct step_result {
    float *out, *dx, *dcontext, *grads; /* grads: every parameter gradient, in table order */
    size_t n_out, n_x, n_context, n_grads;
} step_result;

static void step_result_free(step_result *r)
{
    free(r->out);
    free(r->dx);
    free(r->dcontext);
    free(r->grads);
    memset(r, 0, sizeof *r);
}

static float *copy_out(const sdt_tensor *t, size_t *n)
{
    *n = (size_t)sdt_tensor_numel(t);
    float *p = malloc(*n * sizeof *p);
    if (p)
        memcpy(p, t->data, *n * sizeof *p);
    return p;
}

/* The inputs of a step. */
typedef struct step_inputs {
    const sdt_tensor *x, *t, *context, *added, *dout;
} step_inputs;

/* Forward (kept) + backward with zeroed gradients; the results are copied into r (the added-conditioning
 * gradient is not kept: the finite differences check it). */
static int train_step(test_state *t, sdt_engine *e, sdt_unet *u, sdt_param_table *table,
                      const step_inputs *in, step_result *r)
{
    sdt_tensor out = {0}, dx = {0}; /* [B, H, W, 4] */
    sdt_tensor dctx = {0};          /* [B, L, D] */
    int ok = sdt_param_table_zero_grads(e, table) == 0 &&
             sdt_unet_forward(e, u, &out, in->x, in->t, in->context, in->added, 1) == 0;
    CHECK_MSG(t, ok, "forward: %s", sdt_engine_error(e));
    ok = ok && sdt_act_zeros_like(e, &dx, in->x) == 0 && sdt_act_zeros_like(e, &dctx, in->context) == 0;
    if (ok) {
        ok = sdt_unet_backward(e, u, &dx, &dctx, NULL, in->dout) == 0;
        CHECK_MSG(t, ok, "backward: %s", sdt_engine_error(e));
    }
    CHECK(t, !sdt_unet_has_state(u));
    if (ok) {
        r->out = copy_out(&out, &r->n_out);
        r->dx = copy_out(&dx, &r->n_x);
        r->dcontext = copy_out(&dctx, &r->n_context);
        r->n_grads = 0;
        for (size_t i = 0; i < table->count; i++)
            if (table->items[i].grad.data)
                r->n_grads += (size_t)sdt_param_numel(&table->items[i]);
        r->grads = malloc((r->n_grads ? r->n_grads : 1) * sizeof *r->grads);
        size_t off = 0;
        for (size_t i = 0; r->grads && i < table->count; i++) {
            if (!table->items[i].grad.data)
                continue;
            size_t n = (size_t)sdt_param_numel(&table->items[i]);
            memcpy(r->grads + off, table->items[i].grad.data, n * sizeof *r->grads);
            off += n;
        }
        ok = r->out && r->dx && r->dcontext && r->grads;
    }
    sdt_unet_release(e, u);
    sdt_act_free(e, &out);
    sdt_act_free(e, &dx);
    sdt_act_free(e, &dctx);
    return ok ? 0 : -1;
}

static void expect_identical(test_state *t, const char *what, const float *a, const float *b, size_t n)
{
    size_t differ = 0;
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (memcmp(&a[i], &b[i], sizeof *a) != 0) {
            differ++;
            double d = fabs((double)a[i] - (double)b[i]);
            worst = d > worst ? d : worst;
        }
    }
    printf("%-6s %-60s %zu of %zu values differ (max %.2e)\n", differ ? "FAIL" : "ok", what, differ, n,
           worst);
    CHECK_MSG(t, differ == 0, "%s: %zu values differ", what, differ);
}

static void test_golden_sd15_tiny(test_state *t)
{
    const char *ckpt = FIXTURE_DIR "/sd15_tiny.safetensors", *io = FIXTURE_DIR "/unet_tiny_io.safetensors";
    sdt_engine *e = test_cpu_engine(t, 0);
    if (!e)
        return;
    const sdt_model_arch *arch = sdt_model_arch_find("sd15-tiny");
    CHECK(t, arch != NULL);
    if (!arch) {
        sdt_engine_free(e);
        return;
    }
    check_config_metadata(t, ckpt, &arch->unet);
    sdt_param_table table;
    char *error = NULL;
    sdt_unet *u = NULL;
    sdt_safetensors *st = NULL;
    golden g = {0};
    step_result plain = {0};
    if (sdt_unet_params(&arch->unet, &table, &error) != 0) {
        CHECK_MSG(t, 0, "%s", error);
        goto done;
    }
    for (size_t i = 0; i < table.count; i++)
        table.items[i].trainable = 1;
    if (fixture_load_params(e, &table, ckpt) != 0) {
        CHECK_MSG(t, 0, "cannot load %s", ckpt);
        goto done;
    }
    if (sdt_unet_create(&arch->unet, &table, &u, &error) != 0) {
        CHECK_MSG(t, 0, "%s", error);
        goto done;
    }
    if (sdt_safetensors_open(io, &st, &error) != 0) {
        CHECK_MSG(t, 0, "%s", error);
        goto done;
    }
    step_inputs in = {.x = &g.x, .t = &g.t, .context = &g.context, .dout = &g.dout};
    if (golden_read(t, e, st, &g) != 0 || train_step(t, e, u, &table, &in, &plain) != 0)
        goto done;

    printf("golden: sd15-tiny UNet against diffusers (fp32)\n");
    CHECK(t, !fixture_expect_close("out", plain.out, g.out, plain.n_out, GOLDEN_LIMIT));
    CHECK(t, !fixture_expect_close("grad.x", plain.dx, g.grad_x, plain.n_x, GOLDEN_LIMIT));
    CHECK(t, !fixture_expect_close("grad.context", plain.dcontext, g.grad_context, plain.n_context,
                                   GOLDEN_LIMIT));
    int recorded = 0;
    for (size_t i = 0; i < sdt_safetensors_count(st); i++) {
        const sdt_st_tensor *rec = sdt_safetensors_tensor(st, i);
        if (strncmp(rec->name, "grad.", 5) != 0 || strcmp(rec->name, "grad.x") == 0 ||
            strcmp(rec->name, "grad.context") == 0)
            continue;
        sdt_param *p = sdt_param_find(&table, rec->name + 5);
        CHECK_MSG(t, p != NULL, "%s names no UNet parameter", rec->name);
        if (!p)
            continue;
        size_t n = (size_t)sdt_param_numel(p);
        float *file = fixture_read_f32(st, rec->name, (int64_t)n);
        float *want = malloc(n * sizeof *want);
        if (file && want) {
            fixture_file_to_engine(p, want, file);
            CHECK(t, !fixture_expect_close(rec->name, p->grad.data, want, n, GOLDEN_LIMIT));
            recorded++;
        } else {
            CHECK_MSG(t, 0, "cannot read %s", rec->name);
        }
        free(file);
        free(want);
    }
    printf("%d parameter gradients compared\n", recorded);
    CHECK(t, recorded >= 10);
    /* Inference keeps nothing and computes the same output. */
    sdt_tensor out = {0}; /* [2, 16, 16, 4] */
    if (sdt_unet_forward(e, u, &out, &g.x, &g.t, &g.context, NULL, 0) == 0) {
        CHECK(t, !sdt_unet_has_state(u));
        expect_identical(t, "inference out", out.data, plain.out, plain.n_out);
    } else {
        CHECK_MSG(t, 0, "inference forward: %s", sdt_engine_error(e));
    }
    sdt_act_free(e, &out);

done:
    free(error);
    step_result_free(&plain);
    golden_free(e, &g);
    if (st)
        sdt_safetensors_close(st);
    sdt_unet_free(e, u);
    sdt_param_table_free(e, &table);
    sdt_engine_free(e);
}

/* ---- an SDXL-like tiny UNet against finite differences ------------------------------------------- */

/* SDXL's topology at toy size (§2): 3 levels, no attention at level 0, transformer depth 2 at level 1 and
 * in the middle, heads of 8 channels, linear projections, added conditioning. */
static const sdt_unet_config sdxl_like = {
    .in_channels = 4,
    .out_channels = 4,
    .levels = 3,
    .block_out_channels = {8, 16, 16},
    .layers_per_block = 2,
    .level_has_attention = {0, 1, 1},
    .transformer_depth = {0, 2, 1},
    .mid_transformer_depth = 2,
    .heads = {1, 2, 2},
    .mid_heads = 2,
    .cross_attention_dim = 12,
    .use_linear_projection = 1,
    .norm_groups = 4,
    .norm_eps = 1e-5f,
    .transformer_norm_eps = 1e-6f,
    .adm_in_channels = 10,
    .addition_time_embed_dim = 4,
    .prediction = SDT_PREDICT_EPSILON,
};

typedef struct sdxl_case {
    sdt_engine *e;
    sdt_unet *u;
    sdt_tensor x, t, context, added; /* [2, 8, 8, 4], [2], [2, 5, 12], [2, 10] */
} sdxl_case;

static int sdxl_forward(void *self, sdt_tensor *out)
{
    sdxl_case *c = self;
    return sdt_unet_forward(c->e, c->u, out, &c->x, &c->t, &c->context, &c->added, 0);
}

static void sdxl_free_out(void *self, sdt_tensor *out) { sdt_act_free(((sdxl_case *)self)->e, out); }

/* Weights uniform in +-1/sqrt(fan_in), norms 1 + U(+-0.2) / U(+-0.2). */
static void init_params(sdt_param_table *table, uint64_t *rng)
{
    for (size_t i = 0; i < table->count; i++) {
        sdt_param *p = &table->items[i];
        float *v = p->value.data;
        int64_t n = sdt_param_numel(p);
        if (p->kind == SDT_PARAM_NORM_WEIGHT) {
            gc_fill(v, n, 0.2f, rng);
            for (int64_t j = 0; j < n; j++)
                v[j] += 1.0f;
        } else if (p->kind == SDT_PARAM_NORM_BIAS) {
            gc_fill(v, n, 0.2f, rng);
        } else {
            gc_fill(v, n, 1.0f / sqrtf((float)p->fan_in), rng);
        }
    }
}

static void test_sdxl_like_gradients(test_state *t)
{
    sdt_engine *e = test_cpu_engine(t, 0);
    if (!e)
        return;
    sdt_param_table table;
    char *error = NULL;
    sdxl_case c = {.e = e};
    sdt_tensor out = {0}, dout = {0}, dx = {0}; /* [2, 8, 8, 4] */
    sdt_tensor dctx = {0}, dadded = {0};        /* [2, 5, 12], [2, 10] */
    step_result plain = {0}, ckpt = {0};
    uint64_t rng = 77;
    /* Gradients are checked for these weights: the second block of a depth-2 transformer, a linear
     * proj_in, the added-conditioning MLP, an up-path ResNet's skip connection and the output conv. */
    static const char *const checked[] = {
        "input_blocks.4.1.transformer_blocks.1.attn2.to_k.weight",
        "middle_block.1.proj_in.weight",
        "label_emb.0.0.weight",
        "output_blocks.5.0.skip_connection.weight",
        "out.2.weight",
    };
    if (sdt_unet_params(&sdxl_like, &table, &error) != 0) {
        CHECK_MSG(t, 0, "%s", error);
        goto done;
    }
    for (size_t i = 0; i < table.count; i++)
        table.items[i].trainable = 1;
    for (size_t i = 0; i < sizeof checked / sizeof checked[0]; i++)
        CHECK_MSG(t, sdt_param_find(&table, checked[i]) != NULL, "no %s", checked[i]);
    if (sdt_param_table_alloc(e, &table, SDT_F32, &error) != 0 ||
        sdt_unet_create(&sdxl_like, &table, &c.u, &error) != 0) {
        CHECK_MSG(t, 0, "%s", error);
        goto done;
    }
    init_params(&table, &rng);
    if (sdt_act_alloc(e, &c.x, SDT_F32, 4, SDT_SHAPE(2, 8, 8, 4)) != 0 ||
        sdt_act_alloc(e, &c.t, SDT_F32, 1, SDT_SHAPE(2)) != 0 ||
        sdt_act_alloc(e, &c.context, SDT_F32, 3, SDT_SHAPE(2, 5, 12)) != 0 ||
        sdt_act_alloc(e, &c.added, SDT_F32, 2, SDT_SHAPE(2, 10)) != 0)
        goto done;
    gc_fill(c.x.data, sdt_tensor_numel(&c.x), 1.0f, &rng);
    gc_fill(c.context.data, sdt_tensor_numel(&c.context), 1.0f, &rng);
    gc_fill(c.added.data, sdt_tensor_numel(&c.added), 1.0f, &rng);
    ((float *)c.t.data)[0] = 801.0f;
    ((float *)c.t.data)[1] = 3.25f;

    if (sdt_act_alloc(e, &dout, SDT_F32, 4, SDT_SHAPE(2, 8, 8, 4)) != 0)
        goto done;
    gc_fill(dout.data, sdt_tensor_numel(&dout), 1.0f, &rng);

    /* Checkpointing changes what is kept, not what is computed: bit-identical results. */
    step_inputs in = {.x = &c.x, .t = &c.t, .context = &c.context, .added = &c.added, .dout = &dout};
    if (train_step(t, e, c.u, &table, &in, &plain) != 0)
        goto done;
    printf("checkpointing on against off\n");
    sdt_unet_set_checkpointing(c.u, 1);
    CHECK(t, sdt_unet_checkpointing(c.u) == 1);
    if (train_step(t, e, c.u, &table, &in, &ckpt) != 0)
        goto done;
    expect_identical(t, "out", ckpt.out, plain.out, plain.n_out);
    expect_identical(t, "grad.x", ckpt.dx, plain.dx, plain.n_x);
    expect_identical(t, "grad.context", ckpt.dcontext, plain.dcontext, plain.n_context);
    expect_identical(t, "every parameter gradient", ckpt.grads, plain.grads, plain.n_grads);

    /* The gradients of a checkpointed step against finite differences. */
    sdt_param_table_zero_grads(e, &table);
    if (sdt_unet_forward(e, c.u, &out, &c.x, &c.t, &c.context, &c.added, 1) != 0) {
        CHECK_MSG(t, 0, "forward: %s", sdt_engine_error(e));
        goto done;
    }
    CHECK(t,
          out.ndim == 4 && out.shape[0] == 2 && out.shape[1] == 8 && out.shape[2] == 8 && out.shape[3] == 4);
    if (sdt_act_zeros_like(e, &dx, &c.x) != 0 || sdt_act_zeros_like(e, &dctx, &c.context) != 0 ||
        sdt_act_zeros_like(e, &dadded, &c.added) != 0)
        goto done;
    if (sdt_unet_backward(e, c.u, &dx, &dctx, &dadded, &dout) != 0) {
        CHECK_MSG(t, 0, "backward: %s", sdt_engine_error(e));
        goto done;
    }
    printf("SDXL-like tiny UNet: gradients against finite differences\n");
    gc_model m = {.e = e, .self = &c, .forward = sdxl_forward, .free_out = sdxl_free_out, .w = dout.data};
    struct {
        const char *name;
        float *values, *grad;
        int64_t n;
    } items[3 + sizeof checked / sizeof checked[0]] = {
        {"x", c.x.data, dx.data, sdt_tensor_numel(&c.x)},
        {"context", c.context.data, dctx.data, sdt_tensor_numel(&c.context)},
        {"added_cond", c.added.data, dadded.data, sdt_tensor_numel(&c.added)},
    };
    for (size_t i = 0; i < sizeof checked / sizeof checked[0]; i++) {
        sdt_param *p = sdt_param_find(&table, checked[i]);
        items[3 + i].name = checked[i];
        items[3 + i].values = p ? p->value.data : NULL;
        items[3 + i].grad = p ? p->grad.data : NULL;
        items[3 + i].n = p ? sdt_param_numel(p) : 0;
    }
    for (size_t i = 0; i < sizeof items / sizeof items[0]; i++) {
        if (!items[i].values || !items[i].grad) {
            CHECK_MSG(t, 0, "%s has no gradient", items[i].name);
            continue;
        }
        double score = gc_check(&m, items[i].name, items[i].values, items[i].grad, items[i].n, GC_STEP,
                                GC_LIMIT, 500 + i);
        CHECK_MSG(t, score <= 1.0, "%s: gradient differs from finite differences", items[i].name);
    }
done:
    free(error);
    step_result_free(&plain);
    step_result_free(&ckpt);
    sdt_act_free(e, &out);
    sdt_act_free(e, &dout);
    sdt_act_free(e, &dx);
    sdt_act_free(e, &dctx);
    sdt_act_free(e, &dadded);
    sdt_act_free(e, &c.x);
    sdt_act_free(e, &c.t);
    sdt_act_free(e, &c.context);
    sdt_act_free(e, &c.added);
    sdt_unet_free(e, c.u);
    sdt_param_table_free(e, &table);
    sdt_engine_free(e);
}

/* ---- other topologies ------------------------------------------------------------------------------ */

/* Attention at every level (SD2's block types at toy size), one level without samplers, three resnets
 * per level: each builds, and a training step gives the same results with and without checkpointing and
 * the inference output. */
static void test_topologies(test_state *t)
{
    sdt_engine *e = test_cpu_engine(t, 0);
    if (!e)
        return;
    sdt_unet_config configs[3];
    configs[0] = (sdt_unet_config){
        .in_channels = 4,
        .out_channels = 4,
        .levels = 4,
        .block_out_channels = {8, 8, 16, 16},
        .layers_per_block = 2,
        .level_has_attention = {1, 1, 1, 1},
        .transformer_depth = {1, 1, 1, 1},
        .mid_transformer_depth = 1,
        .heads = {2, 2, 2, 2},
        .mid_heads = 2,
        .cross_attention_dim = 6,
        .norm_groups = 4,
        .norm_eps = 1e-5f,
        .transformer_norm_eps = 1e-6f,
    };
    configs[1] = configs[0];
    configs[1].levels = 1;
    configs[1].transformer_depth[0] = 3;
    configs[2] = configs[0];
    configs[2].levels = 2;
    configs[2].layers_per_block = 3;
    configs[2].level_has_attention[0] = 0;
    configs[2].out_channels = 3;
    for (int k = 0; k < 3; k++) {
        const sdt_unet_config *cfg = &configs[k];
        sdt_param_table table;
        char *error = NULL;
        sdt_unet *u = NULL;
        sdt_tensor x = {0}, ts = {0}, ctx = {0}, dout = {0},
                   out = {0}; /* [1, 8, 8, 4], [1], [1, 3, 6], out */
        step_result plain = {0}, ckpt = {0};
        uint64_t rng = 900 + (uint64_t)k;
        printf("topology %d: %d levels, %d resnets per level\n", k, cfg->levels, cfg->layers_per_block);
        if (sdt_unet_params(cfg, &table, &error) == 0) {
            for (size_t i = 0; i < table.count; i++)
                table.items[i].trainable = 1;
        }
        if (error || sdt_param_table_alloc(e, &table, SDT_F32, &error) != 0 ||
            sdt_unet_create(cfg, &table, &u, &error) != 0) {
            CHECK_MSG(t, 0, "topology %d: %s", k, error);
            goto next;
        }
        init_params(&table, &rng);
        if (sdt_act_alloc(e, &x, SDT_F32, 4, SDT_SHAPE(1, 8, 8, 4)) != 0 ||
            sdt_act_alloc(e, &ts, SDT_F32, 1, SDT_SHAPE(1)) != 0 ||
            sdt_act_alloc(e, &ctx, SDT_F32, 3, SDT_SHAPE(1, 3, 6)) != 0 ||
            sdt_act_alloc(e, &dout, SDT_F32, 4, SDT_SHAPE(1, 8, 8, cfg->out_channels)) != 0)
            goto next;
        gc_fill(x.data, sdt_tensor_numel(&x), 1.0f, &rng);
        gc_fill(ctx.data, sdt_tensor_numel(&ctx), 1.0f, &rng);
        gc_fill(dout.data, sdt_tensor_numel(&dout), 1.0f, &rng);
        ((float *)ts.data)[0] = 250.0f;
        step_inputs in = {.x = &x, .t = &ts, .context = &ctx, .dout = &dout};
        if (train_step(t, e, u, &table, &in, &plain) != 0)
            goto next;
        sdt_unet_set_checkpointing(u, 1);
        if (train_step(t, e, u, &table, &in, &ckpt) != 0)
            goto next;
        expect_identical(t, "checkpointed out", ckpt.out, plain.out, plain.n_out);
        expect_identical(t, "checkpointed grad.x", ckpt.dx, plain.dx, plain.n_x);
        expect_identical(t, "checkpointed parameter gradients", ckpt.grads, plain.grads, plain.n_grads);
        if (sdt_unet_forward(e, u, &out, &x, &ts, &ctx, NULL, 0) == 0)
            expect_identical(t, "inference out", out.data, plain.out, plain.n_out);
        else
            CHECK_MSG(t, 0, "topology %d: inference: %s", k, sdt_engine_error(e));
    next:
        free(error);
        step_result_free(&plain);
        step_result_free(&ckpt);
        sdt_act_free(e, &x);
        sdt_act_free(e, &ts);
        sdt_act_free(e, &ctx);
        sdt_act_free(e, &dout);
        sdt_act_free(e, &out);
        sdt_unet_free(e, u);
        sdt_param_table_free(e, &table);
    }
    sdt_engine_free(e);
}

/* ---- misuse --------------------------------------------------------------------------------------- */

static void test_errors(test_state *t)
{
    sdt_engine *e = test_cpu_engine(t, 0);
    if (!e)
        return;
    sdt_param_table table;
    char *error = NULL;
    sdt_unet *u = NULL;
    sdt_tensor x = {0}, ts = {0}, ctx = {0}, added = {0}, out = {0};
    uint64_t rng = 5;
    if (sdt_unet_params(&sdxl_like, &table, &error) != 0 ||
        sdt_param_table_alloc(e, &table, SDT_F32, &error) != 0) {
        CHECK_MSG(t, 0, "%s", error);
        goto done;
    }
    init_params(&table, &rng);

    /* A table of another config: the missing names are reported. */
    sdt_unet_config other = sdxl_like;
    other.transformer_depth[1] = 3;
    CHECK(t, sdt_unet_create(&other, &table, &u, &error) == -1 && u == NULL);
    CHECK_STR_CONTAINS(t, error, "input_blocks.4.1.transformer_blocks.2");
    free(error);
    error = NULL;
    other = sdxl_like;
    other.adm_in_channels = 0;
    CHECK(t, sdt_unet_create(&other, &table, &u, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "another config");
    free(error);
    error = NULL;

    if (sdt_unet_create(&sdxl_like, &table, &u, &error) != 0) {
        CHECK_MSG(t, 0, "%s", error);
        goto done;
    }
    if (sdt_act_zeros(e, &x, SDT_F32, 4, SDT_SHAPE(1, 8, 8, 4)) != 0 ||
        sdt_act_zeros(e, &ts, SDT_F32, 1, SDT_SHAPE(1)) != 0 ||
        sdt_act_zeros(e, &ctx, SDT_F32, 3, SDT_SHAPE(1, 3, 12)) != 0 ||
        sdt_act_zeros(e, &added, SDT_F32, 2, SDT_SHAPE(1, 10)) != 0)
        goto done;

    CHECK(t, sdt_unet_backward(e, u, NULL, NULL, NULL, &x) == -1);
    CHECK_STR_CONTAINS(t, sdt_engine_error(e), "no forward state");
    CHECK(t, sdt_unet_forward(e, u, &out, &x, &ts, &ctx, NULL, 0) == -1 && out.data == NULL);
    CHECK_STR_CONTAINS(t, sdt_engine_error(e), "needs the added conditioning");
    sdt_tensor odd = sdt_view(&x, 4, SDT_SHAPE(1, 6, 8, 4));
    CHECK(t, sdt_unet_forward(e, u, &out, &odd, &ts, &ctx, &added, 0) == -1);
    CHECK_STR_CONTAINS(t, sdt_engine_error(e), "multiples of 4");
    sdt_tensor narrow = sdt_view(&ctx, 3, SDT_SHAPE(1, 4, 9));
    CHECK(t, sdt_unet_forward(e, u, &out, &x, &ts, &narrow, &added, 0) == -1);
    CHECK_STR_CONTAINS(t, sdt_engine_error(e), "context");

    /* A kept forward, abandoned; then one whose backward gets a wrong output gradient. */
    CHECK(t, sdt_unet_forward(e, u, &out, &x, &ts, &ctx, &added, 1) == 0 && sdt_unet_has_state(u));
    sdt_unet_release(e, u);
    CHECK(t, !sdt_unet_has_state(u));
    sdt_act_free(e, &out);
    CHECK(t, sdt_unet_forward(e, u, &out, &x, &ts, &ctx, &added, 1) == 0);
    sdt_tensor wrong = sdt_view(&ctx, 4, SDT_SHAPE(1, 3, 4, 3));
    CHECK(t, sdt_unet_backward(e, u, NULL, NULL, NULL, &wrong) == -1);
    CHECK_STR_CONTAINS(t, sdt_engine_error(e), "output gradient");
    CHECK(t, !sdt_unet_has_state(u));
    /* A forward kept and never released: sdt_unet_free releases it. */
    sdt_act_free(e, &out);
    CHECK(t, sdt_unet_forward(e, u, &out, &x, &ts, &ctx, &added, 1) == 0);
done:
    free(error);
    sdt_act_free(e, &out);
    sdt_act_free(e, &x);
    sdt_act_free(e, &ts);
    sdt_act_free(e, &ctx);
    sdt_act_free(e, &added);
    sdt_unet_free(e, u);
    sdt_param_table_free(e, &table);
    sdt_engine_free(e);
}

int main(void)
{
    static const test_case cases[] = {
        TEST(test_golden_sd15_tiny),
        TEST(test_sdxl_like_gradients),
        TEST(test_topologies),
        TEST(test_errors),
    };
    return run_tests("unet", cases, sizeof cases / sizeof cases[0]);
}
