/* Whole networks with low-rank adapters (models/adapter.h) on some of their weights, dropout on:
 * - the sd15-tiny UNet with adapters on proj_in, an attn2.to_k, a resnet conv (LoCon) and a stride-2
 *   downsampler: checkpointing on and off give bit-identical outputs, input and adapter gradients (the
 *   recomputed forward draws the same masks), and the adapter gradients through the whole network equal
 *   finite differences;
 * - the sd15-tiny text encoder with adapters on q_proj, out_proj, mlp.fc1 and fc2: the same two checks. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "adapter.h"
#include "arch.h"
#include "checkpoint.h"
#include "clip_text.h"
#include "layers.h"
#include "models/adapter_fixture.h"
#include "models/gradcheck.h"
#include "unet.h"
#include "unit/check.h"
#include "unit/test_engine.h"

#define GC_STEP (1.0 / 64.0)
#define GC_LIMIT 1e-3

/* ---- a whole UNet -------------------------------------------------------------------------------- */

typedef struct unet_case {
    sdt_engine *e;
    sdt_unet *u;
    sdt_tensor x, ts, ctx; /* [1, 8, 8, 4], [1], [1, 3, 48] */
} unet_case;

static int unet_forward(void *self, sdt_tensor *out)
{
    unet_case *c = self;
    return sdt_unet_forward(c->e, c->u, out, &c->x, &c->ts, &c->ctx, NULL, 0);
}

static void unet_free_out(void *self, sdt_tensor *out) { sdt_act_free(((unet_case *)self)->e, out); }

/* The weights that get adapters: a 1x1 proj_in run as linear, a cross-attention key, a resnet's 3x3 conv
 * (LoCon) and a stride-2 downsampler. */
static const char *const adapted[] = {
    "input_blocks.1.1.proj_in.weight",
    "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
    "input_blocks.1.0.in_layers.2.weight",
    "input_blocks.3.0.op.weight",
};
#define N_ADAPTED (sizeof adapted / sizeof adapted[0])

/* One step: out and every adapter gradient, concatenated (malloc'ed). */
static float *unet_step(test_state *t, unet_case *c, sdt_adapter *adapters, const sdt_tensor *dout, size_t *n)
{
    sdt_tensor out = {0}, dx = {0};
    float *result = NULL;
    for (size_t i = 0; i < N_ADAPTED; i++) {
        sdt_fill(c->e, &adapters[i].down_grad, 0.0f);
        sdt_fill(c->e, &adapters[i].up_grad, 0.0f);
    }
    if (sdt_unet_forward(c->e, c->u, &out, &c->x, &c->ts, &c->ctx, NULL, 1) != 0 ||
        sdt_act_zeros_like(c->e, &dx, &c->x) != 0 ||
        sdt_unet_backward(c->e, c->u, &dx, NULL, NULL, dout) != 0) {
        CHECK_MSG(t, 0, "UNet step: %s", sdt_engine_error(c->e));
        goto done;
    }
    *n = (size_t)(sdt_tensor_numel(&out) + sdt_tensor_numel(&dx));
    for (size_t i = 0; i < N_ADAPTED; i++)
        *n += (size_t)(sdt_tensor_numel(&adapters[i].down_grad) + sdt_tensor_numel(&adapters[i].up_grad));
    result = malloc(*n * sizeof *result);
    if (!result)
        goto done;
    size_t off = 0;
    const sdt_tensor *parts[2 + 2 * N_ADAPTED] = {&out, &dx};
    for (size_t i = 0; i < N_ADAPTED; i++) {
        parts[2 + 2 * i] = &adapters[i].down_grad;
        parts[3 + 2 * i] = &adapters[i].up_grad;
    }
    for (size_t i = 0; i < 2 + 2 * N_ADAPTED; i++) {
        memcpy(result + off, parts[i]->data, sdt_tensor_bytes(parts[i]));
        off += (size_t)sdt_tensor_numel(parts[i]);
    }
done:
    sdt_unet_release(c->e, c->u);
    sdt_act_free(c->e, &out);
    sdt_act_free(c->e, &dx);
    return result;
}

static void test_unet(test_state *t)
{
    sdt_engine *e = test_cpu_engine(t, 1);
    if (!e)
        return;
    const sdt_model_arch *arch = sdt_model_arch_find("sd15-tiny");
    CHECK(t, arch != NULL);
    sdt_model model;
    sdt_adapter adapters[N_ADAPTED];
    memset(adapters, 0, sizeof adapters);
    unet_case c = {.e = e};
    sdt_tensor dout = {0}; /* [1, 8, 8, 4] */
    float *plain = NULL, *checkpointed = NULL;
    char *error = NULL;
    uint64_t rng = 500;
    if (!arch)
        goto done;
    if (sdt_model_init(&model, arch, &error) != 0 || sdt_model_alloc(e, &model, SDT_F32, &error) != 0 ||
        sdt_model_init_random(e, &model, 42, &error) != 0 ||
        sdt_unet_create(&arch->unet, &model.unet, &c.u, &error) != 0) {
        CHECK_MSG(t, 0, "%s", error);
        goto done;
    }
    for (size_t i = 0; i < N_ADAPTED; i++) {
        sdt_param *p = sdt_param_find(&model.unet, adapted[i]);
        CHECK_MSG(t, p != NULL, "no %s", adapted[i]);
        if (!p)
            goto done;
        int64_t down[4] = {4, p->shape[1], p->shape[2], p->shape[3]};
        if (p->ndim == 2)
            down[1] = p->shape[1];
        if (adapter_alloc(e, &adapters[i], p->ndim, down, p->shape[0], i, &rng) != 0) {
            CHECK_MSG(t, 0, "%s", sdt_engine_error(e));
            goto done;
        }
        adapters[i].training = 1; /* dropout on: the masks must survive checkpointing's recomputation */
        p->adapter = &adapters[i];
    }
    if (alloc_filled(e, &c.x, 4, SDT_SHAPE(1, 8, 8, 4), 1.0f, &rng) != 0 ||
        sdt_act_alloc(e, &c.ts, SDT_F32, 1, SDT_SHAPE(1)) != 0 ||
        alloc_filled(e, &c.ctx, 3, SDT_SHAPE(1, 3, 48), 1.0f, &rng) != 0 ||
        alloc_filled(e, &dout, 4, SDT_SHAPE(1, 8, 8, 4), 1.0f, &rng) != 0)
        goto done;
    ((float *)c.ts.data)[0] = 300.0f;

    size_t n_plain = 0, n_ckpt = 0;
    plain = unet_step(t, &c, adapters, &dout, &n_plain);
    sdt_unet_set_checkpointing(c.u, 1);
    checkpointed = unet_step(t, &c, adapters, &dout, &n_ckpt);
    if (!plain || !checkpointed)
        goto done;
    size_t differ = count_different(plain, checkpointed, (int64_t)n_plain);
    printf("checkpointing on against off: %zu of %zu values (output, dx, adapter gradients) differ\n", differ,
           n_plain);
    CHECK(t, n_plain == n_ckpt && differ == 0);

    /* The checkpointed step's adapter gradients (left in the adapters) against finite differences. */
    gc_model m = {.e = e, .self = &c, .forward = unet_forward, .free_out = unet_free_out, .w = dout.data};
    for (size_t i = 0; i < N_ADAPTED; i++) {
        char what[160];
        snprintf(what, sizeof what, "%s up", adapted[i]);
        CHECK_MSG(t, !all_zero(&adapters[i].up_grad), "%s: zero gradient", what);
        double score = gc_check(&m, what, adapters[i].up.data, adapters[i].up_grad.data,
                                sdt_tensor_numel(&adapters[i].up), GC_STEP, GC_LIMIT, 11 + i);
        CHECK_MSG(t, score <= 1.0, "%s", what);
    }
    char what[160];
    snprintf(what, sizeof what, "%s down", adapted[2]);
    double score = gc_check(&m, what, adapters[2].down.data, adapters[2].down_grad.data,
                            sdt_tensor_numel(&adapters[2].down), GC_STEP, GC_LIMIT, 21);
    CHECK_MSG(t, score <= 1.0, "%s", what);
done:
    free(error);
    free(plain);
    free(checkpointed);
    for (size_t i = 0; i < N_ADAPTED; i++) {
        sdt_param *p = arch ? sdt_param_find(&model.unet, adapted[i]) : NULL;
        if (p)
            p->adapter = NULL;
        adapter_free(e, &adapters[i]);
    }
    sdt_act_free(e, &c.x);
    sdt_act_free(e, &c.ts);
    sdt_act_free(e, &c.ctx);
    sdt_act_free(e, &dout);
    sdt_unet_free(e, c.u);
    if (arch)
        sdt_model_free(e, &model);
    sdt_engine_free(e);
}

/* ---- the text encoder ---------------------------------------------------------------------------- */

static const char *const clip_adapted[] = {
    "text_model.encoder.layers.0.self_attn.q_proj.weight",
    "text_model.encoder.layers.1.self_attn.out_proj.weight",
    "text_model.encoder.layers.1.mlp.fc1.weight",
    "text_model.encoder.layers.2.mlp.fc2.weight",
};
#define N_CLIP_ADAPTED (sizeof clip_adapted / sizeof clip_adapted[0])

typedef struct clip_case {
    sdt_engine *e;
    sdt_clip_text *m;
    int32_t ids[2 * 8]; /* [2, 8] */
} clip_case;

/* out = the context (hidden_states[layers] after the final norm), [2, 8, W]. */
static int clip_run(clip_case *c, sdt_clip_text_result *r, int keep, int checkpoint)
{
    sdt_clip_text_options options = {
        .clip_skip = 1, .hidden_layer = -1, .keep_for_backward = keep, .checkpoint = checkpoint};
    memset(r, 0, sizeof *r);
    return sdt_clip_text_forward(c->e, c->m, r, c->ids, 2, 8, &options);
}

static int clip_forward(void *self, sdt_tensor *out)
{
    clip_case *c = self;
    sdt_clip_text_result r;
    if (clip_run(c, &r, 0, 0) != 0)
        return -1;
    *out = r.context; /* taken over from the result */
    memset(&r.context, 0, sizeof r.context);
    sdt_clip_text_result_free(c->e, &r);
    return 0;
}

static void clip_free_out(void *self, sdt_tensor *out) { sdt_act_free(((clip_case *)self)->e, out); }

/* One step: the context and every adapter gradient, concatenated (malloc'ed). */
static float *clip_step(test_state *t, clip_case *c, sdt_adapter *adapters, const sdt_tensor *dcontext,
                        int checkpoint, size_t *n)
{
    sdt_clip_text_result r;
    float *result = NULL;
    for (size_t i = 0; i < N_CLIP_ADAPTED; i++) {
        sdt_fill(c->e, &adapters[i].down_grad, 0.0f);
        sdt_fill(c->e, &adapters[i].up_grad, 0.0f);
    }
    if (clip_run(c, &r, 1, checkpoint) != 0 ||
        sdt_clip_text_backward(c->e, c->m, &r, dcontext, NULL, NULL, NULL) != 0) {
        CHECK_MSG(t, 0, "text encoder step: %s", sdt_engine_error(c->e));
        sdt_clip_text_result_free(c->e, &r);
        return NULL;
    }
    *n = (size_t)sdt_tensor_numel(&r.context);
    for (size_t i = 0; i < N_CLIP_ADAPTED; i++)
        *n += (size_t)(sdt_tensor_numel(&adapters[i].down_grad) + sdt_tensor_numel(&adapters[i].up_grad));
    result = malloc(*n * sizeof *result);
    size_t off = 0;
    if (result) {
        memcpy(result, r.context.data, sdt_tensor_bytes(&r.context));
        off += (size_t)sdt_tensor_numel(&r.context);
        for (size_t i = 0; i < N_CLIP_ADAPTED; i++) {
            memcpy(result + off, adapters[i].down_grad.data, sdt_tensor_bytes(&adapters[i].down_grad));
            off += (size_t)sdt_tensor_numel(&adapters[i].down_grad);
            memcpy(result + off, adapters[i].up_grad.data, sdt_tensor_bytes(&adapters[i].up_grad));
            off += (size_t)sdt_tensor_numel(&adapters[i].up_grad);
        }
    }
    sdt_clip_text_result_free(c->e, &r);
    return result;
}

static void test_text_encoder(test_state *t)
{
    sdt_engine *e = test_cpu_engine(t, 1);
    if (!e)
        return;
    const sdt_model_arch *arch = sdt_model_arch_find("sd15-tiny");
    CHECK(t, arch != NULL);
    sdt_model model;
    sdt_adapter adapters[N_CLIP_ADAPTED];
    memset(adapters, 0, sizeof adapters);
    clip_case c = {.e = e};
    sdt_tensor dcontext = {0}; /* [2, 8, W] */
    float *plain = NULL, *checkpointed = NULL;
    char *error = NULL;
    uint64_t rng = 600;
    if (!arch)
        goto done;
    if (sdt_model_init(&model, arch, &error) != 0 || sdt_model_alloc(e, &model, SDT_F32, &error) != 0 ||
        sdt_model_init_random(e, &model, 43, &error) != 0 ||
        sdt_clip_text_create(&arch->text_encoder, &model.text_encoder, &c.m, &error) != 0) {
        CHECK_MSG(t, 0, "%s", error);
        goto done;
    }
    for (size_t i = 0; i < N_CLIP_ADAPTED; i++) {
        sdt_param *p = sdt_param_find(&model.text_encoder, clip_adapted[i]);
        CHECK_MSG(t, p != NULL, "no %s", clip_adapted[i]);
        if (!p)
            goto done;
        if (adapter_alloc(e, &adapters[i], 2, SDT_SHAPE(4, p->shape[1]), p->shape[0], i, &rng) != 0) {
            CHECK_MSG(t, 0, "%s", sdt_engine_error(e));
            goto done;
        }
        adapters[i].training = 1;
        p->adapter = &adapters[i];
    }
    for (int i = 0; i < 16; i++)
        c.ids[i] = i % 8 == 0 ? 49406 : i % 8 == 7 ? 49407 : 300 + (int32_t)(splitmix64_next(&rng) % 1000);
    int64_t width = arch->text_encoder.width;
    if (alloc_filled(e, &dcontext, 3, SDT_SHAPE(2, 8, width), 1.0f, &rng) != 0)
        goto done;

    size_t n_plain = 0, n_ckpt = 0;
    plain = clip_step(t, &c, adapters, &dcontext, 0, &n_plain);
    checkpointed = clip_step(t, &c, adapters, &dcontext, 1, &n_ckpt);
    if (!plain || !checkpointed)
        goto done;
    size_t differ = count_different(plain, checkpointed, (int64_t)n_plain);
    printf("text encoder checkpointing on against off: %zu of %zu values differ\n", differ, n_plain);
    CHECK(t, n_plain == n_ckpt && differ == 0);

    gc_model m = {.e = e, .self = &c, .forward = clip_forward, .free_out = clip_free_out, .w = dcontext.data};
    for (size_t i = 0; i < N_CLIP_ADAPTED; i++) {
        char what[160];
        snprintf(what, sizeof what, "%s up", clip_adapted[i]);
        CHECK_MSG(t, !all_zero(&adapters[i].up_grad), "%s: zero gradient", what);
        double score = gc_check(&m, what, adapters[i].up.data, adapters[i].up_grad.data,
                                sdt_tensor_numel(&adapters[i].up), GC_STEP, GC_LIMIT, 31 + i);
        CHECK_MSG(t, score <= 1.0, "%s", what);
    }
    char what[160];
    snprintf(what, sizeof what, "%s down", clip_adapted[0]);
    double score = gc_check(&m, what, adapters[0].down.data, adapters[0].down_grad.data,
                            sdt_tensor_numel(&adapters[0].down), GC_STEP, GC_LIMIT, 41);
    CHECK_MSG(t, score <= 1.0, "%s", what);
done:
    free(error);
    free(plain);
    free(checkpointed);
    for (size_t i = 0; i < N_CLIP_ADAPTED; i++) {
        sdt_param *p = arch ? sdt_param_find(&model.text_encoder, clip_adapted[i]) : NULL;
        if (p)
            p->adapter = NULL;
        adapter_free(e, &adapters[i]);
    }
    sdt_act_free(e, &dcontext);
    sdt_clip_text_free(c.m);
    if (arch)
        sdt_model_free(e, &model);
    sdt_engine_free(e);
}

TEST_MAIN("adapter_network", TEST(test_unet), TEST(test_text_encoder))
