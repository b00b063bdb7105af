/* The CLIP text encoder against transformers' CLIPTextModel (tests/data/models/clip_tiny_io.safetensors, the
 * weights in sd15_tiny.safetensors): last_hidden_state, every hidden state, pooled, kohya's clip skip 2, the
 * gradient of the embedding output and of the parameters; checkpointing gives the same bits; the outputs
 * the fixture has no gradient for (pooled through a projection, a raw hidden state, clip skip 2) against
 * finite differences; the EOS rule, argument errors, and kohya's long-prompt windows and stitching on a
 * hand-computed case. */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "clip_text.h"
#include "models/fixture.h"
#include "models/gradcheck.h"
#include "unit/check.h"
#include "unit/test_engine.h"

#define NMSE_LIMIT 1e-8
/* Finite-difference step relative to each tensor's RMS, and the relative tolerance. Through three layers,
 * layer norms and a softmax the loss is less smooth than one layer's: 1/256 keeps the stencil's error near
 * 1e-5 where 1/64 reaches a few 1e-4 (embeddings: 1e-3); the rounding floor still allows the small
 * gradients. */
#define GC_STEP (1.0 / 256.0)
#define GC_LIMIT 1e-3
#define BATCH 2
#define TOKENS 77

typedef struct clip_fixture {
    sdt_engine *e;
    sdt_safetensors *io;
    sdt_clip_config config;
    sdt_param_table table;
    sdt_clip_text *model;
    int32_t ids[BATCH * TOKENS];
} clip_fixture;

static int json_int(json_t *root, const char *key, int *out)
{
    json_t *v = json_object_get(root, key);
    if (!json_is_integer(v))
        return -1;
    *out = (int)json_integer_value(v);
    return 0;
}

/* The transformers CLIPTextConfig the fixture was made with (the checkpoint's text_encoder_config). The
 * model is a CLIPTextModel, which has no projection whatever projection_dim says. */
static int config_from_checkpoint(test_state *t, const char *path, sdt_clip_config *c)
{
    sdt_safetensors *st = NULL;
    char *error = NULL;
    if (sdt_safetensors_open(path, &st, &error) != 0) {
        CHECK_MSG(t, 0, "%s", error);
        free(error);
        return -1;
    }
    const char *text = sdt_safetensors_metadata(st, "text_encoder_config");
    json_t *root = text ? json_loads(text, 0, NULL) : NULL;
    memset(c, 0, sizeof *c);
    int bad = !root;
    if (root) {
        bad |= json_int(root, "vocab_size", &c->vocab_size) | json_int(root, "hidden_size", &c->width) |
               json_int(root, "num_hidden_layers", &c->layers) |
               json_int(root, "num_attention_heads", &c->heads) |
               json_int(root, "intermediate_size", &c->mlp_width) |
               json_int(root, "max_position_embeddings", &c->max_positions) |
               json_int(root, "bos_token_id", &c->bos_id) | json_int(root, "eos_token_id", &c->eos_id);
        const char *act = json_string_value(json_object_get(root, "hidden_act"));
        bad |= !act || (strcmp(act, "quick_gelu") != 0 && strcmp(act, "gelu") != 0);
        c->act = act && strcmp(act, "gelu") == 0 ? SDT_ACT_GELU : SDT_ACT_QUICK_GELU;
        json_t *eps = json_object_get(root, "layer_norm_eps");
        bad |= !json_is_number(eps);
        c->norm_eps = (float)json_number_value(eps);
        c->layout = SDT_TEXT_HF;
        json_decref(root);
    }
    sdt_safetensors_close(st);
    CHECK_MSG(t, !bad, "%s: cannot read text_encoder_config", path);
    return bad ? -1 : 0;
}

static void fixture_close(clip_fixture *f)
{
    sdt_clip_text_free(f->model);
    fixture_release(f->e, &f->table, f->io);
    memset(f, 0, sizeof *f);
}

/* Every parameter trainable (so every gradient is computed), loaded from the checkpoint; projection_dim > 0
 * adds a text_projection of that width, filled with U(+-1/sqrt(W)) from `seed`. */
static int fixture_open(test_state *t, clip_fixture *f, int projection_dim, uint64_t seed)
{
    memset(f, 0, sizeof *f);
    char *error = NULL;
    f->e = test_cpu_engine(t, 1);
    if (!f->e || config_from_checkpoint(t, FIXTURE_DIR "/sd15_tiny.safetensors", &f->config) != 0)
        goto fail;
    if (fixture_step_failed(t, sdt_safetensors_open(FIXTURE_DIR "/clip_tiny_io.safetensors", &f->io, &error),
                            &error))
        goto fail;
    const sdt_st_tensor *ids = sdt_safetensors_find(f->io, "input_ids");
    CHECK(t, ids && ids->dtype == SDT_I64 && ids->count == BATCH * TOKENS);
    if (!ids || ids->dtype != SDT_I64 || ids->count != BATCH * TOKENS)
        goto fail;
    for (int i = 0; i < BATCH * TOKENS; i++) {
        int64_t id;
        memcpy(&id, (const char *)ids->data + i * sizeof id, sizeof id);
        f->ids[i] = (int32_t)id;
    }

    /* The checkpoint has no projection: load a table without one, then copy into the one asked for. */
    sdt_param_table plain;
    if (sdt_clip_params(&f->config, "text_encoder", SDT_PREFIX_CLIP_L, &plain, &error) != 0) {
        CHECK_MSG(t, 0, "%s", error);
        sdt_param_table_free(f->e, &plain);
        goto fail;
    }
    int loaded = fixture_load_params(f->e, &plain, FIXTURE_DIR "/sd15_tiny.safetensors") == 0;
    CHECK_MSG(t, loaded, "cannot load the text encoder weights");
    f->config.projection_dim = projection_dim;
    int built =
        loaded && sdt_clip_params(&f->config, "text_encoder", SDT_PREFIX_CLIP_L, &f->table, &error) == 0;
    if (built) {
        for (size_t i = 0; i < f->table.count; i++)
            f->table.items[i].trainable = 1;
        built = sdt_param_table_alloc(f->e, &f->table, SDT_F32, &error) == 0;
    }
    uint64_t rng = seed;
    for (size_t i = 0; built && i < f->table.count; i++) {
        sdt_param *p = &f->table.items[i];
        sdt_param *src = sdt_param_find(&plain, p->name);
        if (src)
            memcpy(p->value.data, src->value.data, (size_t)sdt_param_numel(p) * sizeof(float));
        else
            gc_fill((float *)p->value.data, sdt_param_numel(p), 1.0f / sqrtf((float)f->config.width), &rng);
    }
    sdt_param_table_free(f->e, &plain);
    if (!built) {
        CHECK_MSG(t, 0, "%s", error ? error : "cannot build the table");
        goto fail;
    }
    if (fixture_step_failed(t, sdt_clip_text_create(&f->config, &f->table, &f->model, &error), &error))
        goto fail;
    return 0;
fail:
    free(error);
    fixture_close(f);
    return -1;
}

/* Compares an engine tensor with a fixture tensor of the same memory order. */
static void expect_tensor(test_state *t, clip_fixture *f, const char *what, const sdt_tensor *got,
                          const char *name)
{
    /* Token sequences are [B, L, C] in both layouts: the NCHW helper has nothing to do here. */
    (void)fixture_nchw_to_nhwc;
    int64_t n = sdt_tensor_numel(got);
    float *want = fixture_read_f32(f->io, name, n);
    CHECK_MSG(t, want != NULL, "%s: no reference %s", what, name);
    if (want)
        CHECK(t, !fixture_expect_close(what, (const float *)got->data, want, (size_t)n, NMSE_LIMIT));
    free(want);
}

static int forward(test_state *t, clip_fixture *f, sdt_clip_text_result *r, const sdt_clip_text_options *o)
{
    int status = sdt_clip_text_forward(f->e, f->model, r, f->ids, BATCH, TOKENS, o);
    CHECK_MSG(t, status == 0, "forward: %s", sdt_engine_error(f->e));
    return status;
}

/* ---- forward against transformers -------------------------------------------------------------- */

static void test_forward(test_state *t)
{
    clip_fixture f;
    if (fixture_open(t, &f, 0, 1) != 0)
        return;
    sdt_clip_text_result r;
    sdt_clip_text_options o = {.clip_skip = 1, .hidden_layer = -1, .pooled = 1};
    if (forward(t, &f, &r, &o) == 0) {
        expect_tensor(t, &f, "last_hidden_state (clip_skip 1)", &r.context, "last_hidden_state");
        expect_tensor(t, &f, "pooled (first EOS)", &r.pooled, "pooled");
        CHECK(t, r.eos_position[0] == 21 && r.eos_position[1] == 76);
        CHECK(t, r.hidden.data == NULL && r.hs[r.top].data == NULL); /* inference keeps nothing */
    }
    sdt_clip_text_result_free(f.e, &r);

    o = (sdt_clip_text_options){.clip_skip = 2, .hidden_layer = -1};
    if (forward(t, &f, &r, &o) == 0) {
        expect_tensor(t, &f, "clip_skip 2 (final LN of hidden_states[-2])", &r.context, "clip_skip2");
        CHECK(t, r.top == f.config.layers - 1); /* the last layer is not run */
    }
    sdt_clip_text_result_free(f.e, &r);

    for (int k = 0; k <= f.config.layers; k++) {
        o = (sdt_clip_text_options){.hidden_layer = k};
        char what[64], name[64];
        snprintf(what, sizeof what, "hidden_states[%d] (no final LN)", k);
        snprintf(name, sizeof name, "hidden_states.%d", k);
        if (forward(t, &f, &r, &o) == 0)
            expect_tensor(t, &f, what, &r.hidden, name);
        sdt_clip_text_result_free(f.e, &r);
    }
    fixture_close(&f);
}

/* ---- backward against transformers, checkpointing ----------------------------------------------- */

typedef struct grads {
    float **param; /* per table entry, a copy of its gradient */
    float *dembed;
    float *context;
} grads;

static void grads_free(grads *g, size_t n)
{
    for (size_t i = 0; g->param && i < n; i++)
        free(g->param[i]);
    free(g->param);
    free(g->dembed);
    free(g->context);
    memset(g, 0, sizeof *g);
}

/* Zeroes the gradients, runs forward (clip skip 1) and backward with dcontext = the fixture's dout, and
 * copies every gradient out. */
static int run_backward(test_state *t, clip_fixture *f, int checkpoint, grads *g)
{
    size_t n_tok = (size_t)BATCH * TOKENS * (size_t)f->config.width;
    memset(g, 0, sizeof *g);
    float *dout = fixture_read_f32(f->io, "dout", (int64_t)n_tok);
    g->param = calloc(f->table.count, sizeof *g->param);
    g->dembed = calloc(n_tok, sizeof *g->dembed);
    g->context = malloc(n_tok * sizeof *g->context);
    int status = -1;
    sdt_clip_text_result r;
    memset(&r, 0, sizeof r);
    if (!dout || !g->param || !g->dembed || !g->context || sdt_param_table_zero_grads(f->e, &f->table) != 0)
        goto done;
    sdt_clip_text_options o = {
        .clip_skip = 1, .hidden_layer = -1, .keep_for_backward = 1, .checkpoint = checkpoint};
    if (forward(t, f, &r, &o) != 0)
        goto done;
    const int64_t shape[3] = {BATCH, TOKENS, f->config.width};
    sdt_tensor dctx = sdt_tensor_view(dout, SDT_F32, 3, shape);
    sdt_tensor demb = sdt_tensor_view(g->dembed, SDT_F32, 3, shape);
    int ok = sdt_clip_text_backward(f->e, f->model, &r, &dctx, NULL, NULL, &demb) == 0;
    CHECK_MSG(t, ok, "backward: %s", sdt_engine_error(f->e));
    if (!ok)
        goto done;
    memcpy(g->context, r.context.data, n_tok * sizeof *g->context);
    for (size_t i = 0; i < f->table.count; i++) {
        sdt_param *p = &f->table.items[i];
        size_t n = (size_t)sdt_param_numel(p);
        g->param[i] = malloc(n * sizeof(float));
        if (!g->param[i])
            goto done;
        memcpy(g->param[i], p->grad.data, n * sizeof(float));
    }
    /* A second backward has nothing to run on. */
    CHECK(t, sdt_clip_text_backward(f->e, f->model, &r, &dctx, NULL, NULL, NULL) == -1);
    status = 0;
done:
    sdt_clip_text_result_free(f->e, &r);
    free(dout);
    if (status != 0)
        grads_free(g, f->table.count);
    return status;
}

static void test_backward(test_state *t)
{
    clip_fixture f;
    if (fixture_open(t, &f, 0, 1) != 0)
        return;
    grads plain, ckpt;
    if (run_backward(t, &f, 0, &plain) != 0) {
        fixture_close(&f);
        return;
    }
    size_t n_tok = (size_t)BATCH * TOKENS * (size_t)f.config.width;
    float *want = fixture_read_f32(f.io, "grad.embeddings", (int64_t)n_tok);
    if (want)
        CHECK(t, !fixture_expect_close("grad of the embedding output (hidden_states[0])", plain.dembed, want,
                                       n_tok, NMSE_LIMIT));
    free(want);
    /* Every parameter gradient the fixture has. */
    int compared = 0;
    for (size_t i = 0; i < f.table.count; i++) {
        sdt_param *p = &f.table.items[i];
        char name[300];
        snprintf(name, sizeof name, "grad.%s", p->name);
        if (!sdt_safetensors_find(f.io, name))
            continue;
        int64_t n = sdt_param_numel(p);
        float *file = fixture_read_f32(f.io, name, n);
        float *engine = malloc((size_t)n * sizeof *engine);
        if (file && engine) {
            fixture_file_to_engine(p, engine, file);
            char what[320];
            snprintf(what, sizeof what, "grad %s", p->name);
            CHECK(t, !fixture_expect_close(what, plain.param[i], engine, (size_t)n, NMSE_LIMIT));
            compared++;
        }
        free(file);
        free(engine);
    }
    CHECK_MSG(t, compared == 7, "compared %d parameter gradients, the fixture has 7", compared);

    /* Checkpointing recomputes each layer from its input: the same ops on the same inputs, the same bits. */
    if (run_backward(t, &f, 1, &ckpt) == 0) {
        int same = memcmp(plain.context, ckpt.context, n_tok * sizeof(float)) == 0 &&
                   memcmp(plain.dembed, ckpt.dembed, n_tok * sizeof(float)) == 0;
        for (size_t i = 0; i < f.table.count; i++)
            same &=
                memcmp(plain.param[i], ckpt.param[i], (size_t)sdt_param_numel(&f.table.items[i]) * 4) == 0;
        CHECK_MSG(t, same, "checkpointing changed the output or a gradient");
        printf("%-6s %-60s\n", same ? "ok" : "FAIL", "checkpointing on/off: outputs and gradients identical");
        grads_free(&ckpt, f.table.count);
    }
    grads_free(&plain, f.table.count);
    fixture_close(&f);
}

/* ---- the other outputs against finite differences ----------------------------------------------- */

typedef struct gc_clip {
    clip_fixture *f;
    sdt_clip_text_options options;
    int which; /* 0 context, 1 hidden, 2 pooled */
} gc_clip;

static sdt_tensor *pick(sdt_clip_text_result *r, int which)
{
    return which == 0 ? &r->context : which == 1 ? &r->hidden : &r->pooled;
}

static int gc_forward(void *self, sdt_tensor *out)
{
    gc_clip *g = self;
    sdt_clip_text_result r;
    sdt_clip_text_options o = g->options;
    o.keep_for_backward = 0;
    if (sdt_clip_text_forward(g->f->e, g->f->model, &r, g->f->ids, BATCH, TOKENS, &o) != 0)
        return -1;
    sdt_tensor *picked = pick(&r, g->which);
    *out = *picked;
    memset(picked, 0, sizeof *picked);
    sdt_clip_text_result_free(g->f->e, &r);
    return 0;
}

static void gc_free_out(void *self, sdt_tensor *out) { sdt_act_free(((gc_clip *)self)->f->e, out); }

/* One output: backward with d(output) = w, then every named parameter's gradient against finite
 * differences; `untouched` names a parameter that must get no gradient (a layer above the output). */
static void check_output(test_state *t, clip_fixture *f, const char *label, sdt_clip_text_options o,
                         int which, const char *const *names, const char *untouched, uint64_t seed)
{
    gc_clip g = {.f = f, .options = o, .which = which};
    sdt_clip_text_result r;
    o.keep_for_backward = 1;
    sdt_param_table_zero_grads(f->e, &f->table);
    if (forward(t, f, &r, &o) != 0)
        return;
    sdt_tensor *out = pick(&r, which);
    int64_t n = sdt_tensor_numel(out);
    float *w = malloc((size_t)n * sizeof *w);
    uint64_t rng = seed;
    gc_fill(w, n, 1.0f, &rng);
    sdt_tensor dout = sdt_tensor_view(w, SDT_F32, out->ndim, out->shape);
    int ok = sdt_clip_text_backward(f->e, f->model, &r, which == 0 ? &dout : NULL, which == 1 ? &dout : NULL,
                                    which == 2 ? &dout : NULL, NULL) == 0;
    CHECK_MSG(t, ok, "%s backward: %s", label, sdt_engine_error(f->e));
    sdt_clip_text_result_free(f->e, &r);
    gc_model m = {.e = f->e, .self = &g, .forward = gc_forward, .free_out = gc_free_out, .w = w};
    for (const char *const *name = names; ok && *name; name++) {
        sdt_param *p = sdt_param_find(&f->table, *name);
        CHECK_MSG(t, p != NULL, "no parameter %s", *name);
        if (!p)
            continue;
        char what[200];
        snprintf(what, sizeof what, "%s: %s", label, *name);
        /* The token embedding's gradient lives on the ~150 rows the prompts use, so the direction
         * (which follows the gradient) moves those rows far more than the RMS step suggests: a smaller
         * step keeps them in the range where the stencil is exact. */
        double step = p->kind == SDT_PARAM_EMBEDDING ? GC_STEP / 2.0 : GC_STEP;
        double score = gc_check(&m, what, (float *)p->value.data, (const float *)p->grad.data,
                                sdt_param_numel(p), step, GC_LIMIT, seed + 17);
        CHECK_MSG(t, score <= 1.0, "%s: gradient differs from finite differences", what);
    }
    if (ok && untouched) {
        sdt_param *p = sdt_param_find(&f->table, untouched);
        int zero = 1;
        for (int64_t i = 0; p && i < sdt_param_numel(p); i++)
            zero &= ((const float *)p->grad.data)[i] == 0.0f;
        CHECK_MSG(t, p && zero, "%s: %s got a gradient from an output below it", label, untouched);
    }
    free(w);
}

static void test_backward_outputs(test_state *t)
{
    clip_fixture f;
    if (fixture_open(t, &f, 16, 7) != 0)
        return;
    static const char *const pooled_names[] = {"text_projection.weight",
                                               "text_model.final_layer_norm.weight",
                                               "text_model.encoder.layers.2.mlp.fc2.weight",
                                               "text_model.encoder.layers.0.self_attn.k_proj.weight",
                                               "text_model.embeddings.token_embedding.weight",
                                               "text_model.embeddings.position_embedding.weight",
                                               NULL};
    check_output(t, &f, "pooled, projected", (sdt_clip_text_options){.hidden_layer = -1, .pooled = 1}, 2,
                 pooled_names, NULL, 101);
    static const char *const hidden_names[] = {"text_model.encoder.layers.1.mlp.fc1.weight",
                                               "text_model.encoder.layers.1.self_attn.v_proj.bias",
                                               "text_model.encoder.layers.0.layer_norm1.weight",
                                               "text_model.embeddings.token_embedding.weight", NULL};
    check_output(t, &f, "hidden_states[2]", (sdt_clip_text_options){.hidden_layer = 2}, 1, hidden_names,
                 "text_model.final_layer_norm.weight", 202);
    static const char *const skip_names[] = {"text_model.final_layer_norm.bias",
                                             "text_model.encoder.layers.1.mlp.fc2.weight",
                                             "text_model.encoder.layers.0.self_attn.out_proj.weight", NULL};
    check_output(t, &f, "clip_skip 2", (sdt_clip_text_options){.clip_skip = 2, .hidden_layer = -1}, 0,
                 skip_names, "text_model.encoder.layers.2.mlp.fc1.weight", 303);

    /* Checkpointing with all three outputs at once: the same bits as without. */
    sdt_clip_text_options o = {.clip_skip = 2, .hidden_layer = 1, .pooled = 1, .keep_for_backward = 1};
    size_t n_tok = (size_t)BATCH * TOKENS * (size_t)f.config.width;
    float *dctx = malloc(n_tok * sizeof(float)), *dhid = malloc(n_tok * sizeof(float));
    float *dpool = malloc(BATCH * 16 * sizeof(float)), *demb[2] = {calloc(n_tok, 4), calloc(n_tok, 4)};
    float *grad[2] = {NULL, NULL};
    uint64_t rng = 5;
    if (dctx && dhid && dpool && demb[0] && demb[1]) {
        gc_fill(dctx, (int64_t)n_tok, 1.0f, &rng);
        gc_fill(dhid, (int64_t)n_tok, 1.0f, &rng);
        gc_fill(dpool, BATCH * 16, 1.0f, &rng);
        const int64_t shape[3] = {BATCH, TOKENS, f.config.width};
        sdt_tensor tc = sdt_tensor_view(dctx, SDT_F32, 3, shape),
                   th = sdt_tensor_view(dhid, SDT_F32, 3, shape);
        sdt_tensor tp = sdt_tensor_view(dpool, SDT_F32, 2, (int64_t[]){BATCH, 16});
        for (int run = 0; run < 2; run++) {
            o.checkpoint = run;
            sdt_clip_text_result r;
            sdt_param_table_zero_grads(f.e, &f.table);
            sdt_tensor te = sdt_tensor_view(demb[run], SDT_F32, 3, shape);
            if (forward(t, &f, &r, &o) == 0)
                CHECK(t, sdt_clip_text_backward(f.e, f.model, &r, &tc, &th, &tp, &te) == 0);
            sdt_clip_text_result_free(f.e, &r);
            sdt_param *p = sdt_param_find(&f.table, "text_model.encoder.layers.0.mlp.fc1.weight");
            grad[run] = malloc((size_t)sdt_param_numel(p) * sizeof(float));
            if (grad[run])
                memcpy(grad[run], p->grad.data, (size_t)sdt_param_numel(p) * sizeof(float));
        }
        CHECK(t, grad[0] && grad[1] &&
                     memcmp(grad[0], grad[1],
                            (size_t)sdt_param_numel(
                                sdt_param_find(&f.table, "text_model.encoder.layers.0.mlp.fc1.weight")) *
                                sizeof(float)) == 0);
        CHECK(t, memcmp(demb[0], demb[1], n_tok * sizeof(float)) == 0);
    }
    free(dctx);
    free(dhid);
    free(dpool);
    free(demb[0]);
    free(demb[1]);
    free(grad[0]);
    free(grad[1]);
    fixture_close(&f);
}

/* ---- EOS rule, errors --------------------------------------------------------------------------- */

static void test_eos_rule(test_state *t)
{
    /* Real vocabulary in every row: the first 49407, whatever eos_id says (transformers' legacy configs
     * say 2). */
    const int32_t real[2 * 5] = {49406, 5, 49407, 49407, 49407, 49406, 7, 8, 9, 49407};
    int pos[2] = {-1, -1};
    sdt_clip_eos_positions(real, 2, 5, 2, pos);
    CHECK(t, pos[0] == 2 && pos[1] == 4);
    /* Not every row holds 49407: the first eos_id, 0 when a row has none. */
    const int32_t tiny[3 * 4] = {998, 3, 999, 999, 998, 999, 4, 5, 998, 1, 2, 3};
    int tpos[3] = {-1, -1, -1};
    sdt_clip_eos_positions(tiny, 3, 4, 999, tpos);
    CHECK(t, tpos[0] == 2 && tpos[1] == 1 && tpos[2] == 0);
}

static void test_errors(test_state *t)
{
    clip_fixture f;
    if (fixture_open(t, &f, 0, 1) != 0)
        return;
    sdt_clip_text_result r;
    sdt_clip_text_options o = {.clip_skip = 1, .hidden_layer = -1};
    int32_t ids[78] = {0};
    ids[3] = f.config.vocab_size;
    CHECK(t, sdt_clip_text_forward(f.e, f.model, &r, ids, 1, 10, &o) == -1);
    CHECK_STR_CONTAINS(t, sdt_engine_error(f.e), "outside the vocabulary");
    ids[3] = 0;
    CHECK(t, sdt_clip_text_forward(f.e, f.model, &r, ids, 1, 78, &o) == -1);
    CHECK_STR_CONTAINS(t, sdt_engine_error(f.e), "at most 77 tokens");
    o.clip_skip = f.config.layers + 1;
    CHECK(t, sdt_clip_text_forward(f.e, f.model, &r, ids, 1, 10, &o) == -1);
    CHECK_STR_CONTAINS(t, sdt_engine_error(f.e), "clip_skip");
    o.clip_skip = 0;
    CHECK(t, sdt_clip_text_forward(f.e, f.model, &r, ids, 1, 10, &o) == -1);
    CHECK_STR_CONTAINS(t, sdt_engine_error(f.e), "no output");
    /* A shorter sequence runs; without keep_for_backward there is no backward. */
    o.clip_skip = 1;
    CHECK(t, sdt_clip_text_forward(f.e, f.model, &r, ids, 1, 10, &o) == 0);
    CHECK(t, r.context.ndim == 3 && r.context.shape[1] == 10);
    CHECK(t, sdt_clip_text_backward(f.e, f.model, &r, &r.context, NULL, NULL, NULL) == -1);
    CHECK_STR_CONTAINS(t, sdt_engine_error(f.e), "kept nothing");
    sdt_clip_text_result_free(f.e, &r);
    fixture_close(&f);
}

/* ---- long prompts --------------------------------------------------------------------------------- */

static void test_windows(test_state *t)
{
    /* Two prompts of 152 tokens (max_token_length 150): token i of prompt b is 1000 b + i, except where
     * noted. */
    enum { N = 2, LEN = 2 + 75 * N };
    int32_t ids[2 * LEN], win[2 * N * 77];
    for (int b = 0; b < 2; b++)
        for (int i = 0; i < LEN; i++)
            ids[b * LEN + i] = 1000 * b + i;
    sdt_clip_make_windows(ids, 2, N, 999999, 999999, win);
    for (int b = 0; b < 2; b++)
        for (int w = 0; w < N; w++) {
            const int32_t *x = win + (b * N + w) * 77;
            int ok = x[0] == 1000 * b && x[76] == 1000 * b + LEN - 1;
            for (int j = 1; j <= 75; j++)
                ok &= x[j] == 1000 * b + 75 * w + j;
            CHECK_MSG(t, ok, "window %d of prompt %d", w, b);
        }

    /* pad != eos (pad 0, eos 7): prompt 0 has 100 ids, prompt 1 has 3. */
    const int32_t bos = 6, eos = 7, pad = 0;
    for (int i = 0; i < 2 * LEN; i++)
        ids[i] = pad;
    ids[0] = bos;
    for (int i = 1; i <= 100; i++)
        ids[i] = 100 + i;
    ids[101] = eos;
    ids[LEN] = bos;
    ids[LEN + 1] = 11, ids[LEN + 2] = 12, ids[LEN + 3] = 13, ids[LEN + 4] = eos;
    sdt_clip_make_windows(ids, 2, N, eos, pad, win);
    const int32_t *w0 = win, *w1 = win + 77, *w2 = win + 2 * 77, *w3 = win + 3 * 77;
    /* Prompt 0, window 0: full of ids, token 75 is an id, so the window ends with EOS. */
    CHECK(t, w0[0] == bos && w0[1] == 101 && w0[75] == 175 && w0[76] == eos);
    /* Window 1: ids 176..200, EOS, padding; left as is (ends with PAD). */
    CHECK(t,
          w1[0] == bos && w1[1] == 176 && w1[25] == 200 && w1[26] == eos && w1[27] == pad && w1[76] == pad);
    /* Prompt 1, window 0: a short prompt, unchanged. */
    CHECK(t, w2[0] == bos && w2[1] == 11 && w2[4] == eos && w2[5] == pad && w2[76] == pad);
    /* Window 1 is empty: BOS, EOS, PAD... */
    CHECK(t, w3[0] == bos && w3[1] == eos && w3[2] == pad && w3[76] == pad);

    /* Stitching: enc [B * n, 77, 2] with value 1000 * row + 10 * token + channel. */
    sdt_engine *e = test_cpu_engine(t, 1);
    if (!e)
        return;
    enum { W = 2, ROWS = 2 * N };
    static float enc[ROWS * 77 * W];
    for (int r = 0; r < ROWS; r++)
        for (int j = 0; j < 77; j++)
            for (int c = 0; c < W; c++)
                enc[(r * 77 + j) * W + c] = (float)(1000 * r + 10 * j + c);
    sdt_tensor tenc = sdt_tensor_view(enc, SDT_F32, 3, (int64_t[]){ROWS, 77, W});
    sdt_tensor out = {0};
    CHECK_MSG(t, sdt_clip_stitch_windows(e, &out, &tenc, N) == 0, "%s", sdt_engine_error(e));
    CHECK(t, out.ndim == 3 && out.shape[0] == 2 && out.shape[1] == LEN && out.shape[2] == W);
    if (out.data) {
        const float *o = out.data;
        int ok = 1;
        for (int b = 0; b < 2; b++)
            for (int j = 0; j < LEN; j++) {
                /* By hand: token 0 = window 0's BOS; 1..75 = window 0's 1..75; 76..150 = window 1's 1..75;
                 * 151 = window 1's token 76. */
                int row = j == 0 ? 2 * b : j <= 75 ? 2 * b : 2 * b + 1;
                int tok = j == 0 ? 0 : j <= 75 ? j : j <= 150 ? j - 75 : 76;
                for (int c = 0; c < W; c++)
                    ok &= o[(b * LEN + j) * W + c] == (float)(1000 * row + 10 * tok + c);
            }
        CHECK_MSG(t, ok, "stitched tokens differ from the hand-computed ones");
        printf("%-6s %-60s\n", ok ? "ok" : "FAIL", "long prompt: 2 windows of 77 stitched into 152 tokens");
    }
    /* Backward: every stitched token's gradient lands on the window token it came from, once; window 0's
     * last token and window 1's first get nothing. */
    static float dout[2 * LEN * W], denc[ROWS * 77 * W];
    for (int i = 0; i < 2 * LEN * W; i++)
        dout[i] = 1.0f;
    for (int i = 0; i < ROWS * 77 * W; i++)
        denc[i] = 0.5f;
    sdt_tensor tdout = sdt_tensor_view(dout, SDT_F32, 3, (int64_t[]){2, LEN, W});
    sdt_tensor tdenc = sdt_tensor_view(denc, SDT_F32, 3, (int64_t[]){ROWS, 77, W});
    CHECK(t, sdt_clip_stitch_windows_backward(e, &tdenc, &tdout, N) == 0);
    int ok = 1;
    for (int r = 0; r < ROWS; r++)
        for (int j = 0; j < 77; j++) {
            int first = r % 2 == 0, used = (j >= 1 && j <= 75) || (first && j == 0) || (!first && j == 76);
            for (int c = 0; c < W; c++)
                ok &= denc[(r * 77 + j) * W + c] == (used ? 1.5f : 0.5f);
        }
    CHECK_MSG(t, ok, "stitch backward");
    sdt_act_free(e, &out);
    CHECK(t, sdt_clip_stitch_windows(e, &out, &tenc, 3) == -1);
    sdt_engine_free(e);
}

TEST_MAIN("clip", TEST(test_forward), TEST(test_backward), TEST(test_backward_outputs), TEST(test_eos_rule),
          TEST(test_errors), TEST(test_windows))
