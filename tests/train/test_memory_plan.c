/* The memory plan (train/memory_plan.h): its parameter, gradient and optimizer bytes equal what the built
 * objects allocate for the tiny model, exactly, for every optimizer; its activation walk stays within
 * ACTIVATION_TOLERANCE of the engine allocator's measured peak of a UNet training step and of a whole
 * trainer step, with and without gradient checkpointing (which lowers both); and a run whose plan exceeds
 * the free memory stops before loading the model with the table and the suggestion. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers.h"
#include "lora_internal.h"
#include "memory_plan.h"
#include "optim_internal.h"
#include "trainer_fixture.h"
#include "unet.h"
#include "unit/check.h"
#include "unit/test_engine.h"

/* How far the walk's step peak may be from the measured one, relative to the measured one. The walk
 * follows every allocation of the layers, so what is left is the allocator's rounding of small tensors
 * and the few temporaries the walk leaves out (the dropout masks live on the host). */
#define ACTIVATION_TOLERANCE 0.02

typedef struct tiny {
    sdt_engine *e;
    sdt_model model;
} tiny;

static int tiny_open(test_state *t, tiny *m)
{
    memset(m, 0, sizeof *m);
    m->e = test_cpu_engine(t, 1);
    char *error = NULL;
    int rc = m->e ? 0 : -1;
    if (rc == 0 && (sdt_model_init(&m->model, sdt_model_arch_find("sd15-tiny"), &error) != 0 ||
                    sdt_model_alloc(m->e, &m->model, SDT_F32, &error) != 0 ||
                    sdt_model_init_random(m->e, &m->model, 11, &error) != 0))
        rc = -1;
    CHECK_MSG(t, rc == 0, "%s", error ? error : "tiny model");
    free(error);
    return rc;
}

static void tiny_close(tiny *m)
{
    sdt_model_free(m->e, &m->model);
    if (m->e)
        sdt_engine_free(m->e);
}

static void plan_input(sdt_memory_plan_input *in, const sdt_model *model, sdt_optim_kind kind)
{
    memset(in, 0, sizeof *in);
    in->model = model;
    in->device = SDT_DEVICE_CPU;
    in->weight_dtype = SDT_F32;
    in->activation_dtype = SDT_F32;
    in->vae_resident = 1;
    in->lora = 1;
    sdt_lora_options_default(&in->lora_options);
    in->train_unet = 1;
    in->train_text_encoder = 1;
    sdt_optim_config_default(&in->optim, kind);
    in->batch = 1;
    in->width = in->height = 64;
    in->context_length = 77;
}

static sdt_memory_plan build(test_state *t, const sdt_memory_plan_input *in)
{
    sdt_memory_plan p;
    char *error = NULL;
    CHECK_MSG(t, sdt_memory_plan_build(in, &p, &error) == 0, "%s", error ? error : "");
    free(error);
    return p;
}

/* ---- parameters ---- */

static void test_weights_equal_the_arenas(test_state *t)
{
    tiny m;
    if (tiny_open(t, &m) != 0) {
        tiny_close(&m);
        return;
    }
    sdt_memory_plan_input in;
    plan_input(&in, &m.model, SDT_OPTIM_ADAMW);
    sdt_memory_plan p = build(t, &in);
    size_t sum = 0;
    for (int c = 0; c < SDT_COMPONENT_COUNT; c++) {
        size_t allocated = sdt_model_table(&m.model, c)->plan.bytes[SDT_LIFE_FROZEN];
        CHECK_MSG(t, p.weights_by_component[c] == allocated, "%s: plan %zu, allocated %zu",
                  sdt_component_name(c), p.weights_by_component[c], allocated);
        sum += allocated;
    }
    CHECK(t, p.bytes[SDT_MEM_WEIGHTS] == sum);
    /* Without the VAE resident its weights are not counted; in bf16 every weight takes half. */
    in.vae_resident = 0;
    sdt_memory_plan q = build(t, &in);
    CHECK(t, q.bytes[SDT_MEM_WEIGHTS] == sum - p.weights_by_component[SDT_COMPONENT_VAE]);
    tiny_close(&m);
    /* bf16 weights: against the arenas of a model allocated in bf16 */
    sdt_engine *e = test_cpu_engine(t, 1);
    sdt_model half;
    memset(&half, 0, sizeof half);
    char *error = NULL;
    int rc = e && sdt_model_init(&half, sdt_model_arch_find("sd15-tiny"), &error) == 0 &&
                     sdt_model_alloc(e, &half, SDT_BF16, &error) == 0
                 ? 0
                 : -1;
    CHECK_MSG(t, rc == 0, "%s", error ? error : "bf16 model");
    free(error);
    if (rc == 0) {
        plan_input(&in, &half, SDT_OPTIM_ADAMW);
        in.weight_dtype = SDT_BF16;
        sdt_memory_plan r = build(t, &in);
        for (int c = 0; c < SDT_COMPONENT_COUNT; c++) {
            CHECK_MSG(t, r.weights_by_component[c] == sdt_model_table(&half, c)->plan.bytes[SDT_LIFE_FROZEN],
                      "bf16 %s", sdt_component_name(c));
            /* 2 bytes per element, each entry padded to the arena's alignment */
            const sdt_param_table *table = sdt_model_table(&half, c);
            size_t elements = (size_t)sdt_param_table_numel(table);
            CHECK_MSG(t,
                      r.weights_by_component[c] >= 2 * elements &&
                          r.weights_by_component[c] < 2 * elements + table->count * SDT_ARENA_ALIGN,
                      "bf16 %s: %zu bytes for %zu elements", sdt_component_name(c), r.weights_by_component[c],
                      elements);
        }
        CHECK(t, r.bytes[SDT_MEM_WEIGHTS] < q.bytes[SDT_MEM_WEIGHTS]);
        /* no_half_vae: the VAE alone stays 4 bytes per element */
        in.vae_f32 = 1;
        sdt_memory_plan v = build(t, &in);
        CHECK(t, v.weights_by_component[SDT_COMPONENT_VAE] == p.weights_by_component[SDT_COMPONENT_VAE]);
        CHECK(t, v.weights_by_component[SDT_COMPONENT_UNET] == r.weights_by_component[SDT_COMPONENT_UNET]);
    }
    sdt_model_free(e, &half);
    if (e)
        sdt_engine_free(e);
}

/* fp8_base: one byte per frozen linear and conv weight of the chosen components, exactly as the arenas
 * of a model allocated with those tables' f8_weights set. */
static void test_fp8_weights_equal_the_arenas(test_state *t)
{
    sdt_engine *e = test_cpu_engine(t, 1);
    sdt_model m;
    memset(&m, 0, sizeof m);
    char *error = NULL;
    int rc = e && sdt_model_init(&m, sdt_model_arch_find("sd15-tiny"), &error) == 0 ? 0 : -1;
    if (rc == 0) {
        m.unet.f8_weights = 1;
        rc = sdt_model_alloc(e, &m, SDT_BF16, &error);
    }
    CHECK_MSG(t, rc == 0, "%s", error ? error : "fp8 model");
    free(error);
    if (rc == 0) {
        sdt_memory_plan_input in;
        plan_input(&in, &m, SDT_OPTIM_ADAMW);
        in.weight_dtype = SDT_BF16;
        in.f8_components = 1u << SDT_COMPONENT_UNET;
        sdt_memory_plan p = build(t, &in);
        for (int c = 0; c < SDT_COMPONENT_COUNT; c++)
            CHECK_MSG(t, p.weights_by_component[c] == sdt_model_table(&m, c)->plan.bytes[SDT_LIFE_FROZEN],
                      "fp8 %s: plan %zu, allocated %zu", sdt_component_name(c), p.weights_by_component[c],
                      sdt_model_table(&m, c)->plan.bytes[SDT_LIFE_FROZEN]);
        in.f8_components = 0;
        sdt_memory_plan q = build(t, &in);
        CHECK(t, p.weights_by_component[SDT_COMPONENT_UNET] < q.weights_by_component[SDT_COMPONENT_UNET]);
        CHECK(t, p.weights_by_component[SDT_COMPONENT_TEXT_ENCODER] ==
                     q.weights_by_component[SDT_COMPONENT_TEXT_ENCODER]);
        /* A LoRA run that does not fit is told about fp8_base, with what it saves; one that has it is not. */
        sdt_buf advice;
        sdt_buf_init(&advice);
        sdt_memory_plan_suggest(&in, &q, 1, &advice);
        CHECK_STR_CONTAINS(t, advice.data, "fp8_base = true");
        sdt_buf_free(&advice);
        sdt_buf_init(&advice);
        in.f8_components = (1u << SDT_COMPONENT_UNET) | (1u << SDT_COMPONENT_TEXT_ENCODER);
        sdt_memory_plan all = build(t, &in);
        sdt_memory_plan_suggest(&in, &all, 1, &advice);
        CHECK(t, !advice.data || !strstr(advice.data, "fp8_base"));
        sdt_buf_free(&advice);
    }
    sdt_model_free(e, &m);
    if (e)
        sdt_engine_free(e);
}

/* The optimizer's state as the trainer builds it: every module registered, then the LoRA shapes given
 * (train/trainer_setup.c set_lora_shapes). Bytes of every state buffer (at least one float each). */
static size_t optimizer_allocated(test_state *t, const sdt_lora_network *net, const sdt_optim_config *c)
{
    sdt_optimizer o;
    char *error = NULL;
    size_t bytes = 0;
    int rc = sdt_optim_init(&o, c, 2, &error);
    if (rc == 0)
        rc = sdt_lora_add_to_optimizer(net, &o, 1, 0, &error);
    for (size_t i = 0; rc == 0 && i < net->count; i++) {
        const sdt_lora_module *mod = &net->modules[i];
        char name[400];
        snprintf(name, sizeof name, "%s.lora_down.weight", mod->name);
        rc = sdt_optim_set_shape(&o, name, mod->adapter.down.ndim, mod->adapter.down.shape, &error);
        snprintf(name, sizeof name, "%s.lora_up.weight", mod->name);
        if (rc == 0)
            rc = sdt_optim_set_shape(&o, name, mod->adapter.up.ndim, mod->adapter.up.shape, &error);
    }
    CHECK_MSG(t, rc == 0, "%s", error ? error : "");
    free(error);
    for (size_t i = 0; rc == 0 && i < o.count; i++)
        for (int s = 0; s < 4 && o.entries[i].state_names[s]; s++)
            bytes += (o.entries[i].state_count[s] ? o.entries[i].state_count[s] : 1) * sizeof(float);
    sdt_optim_free(&o);
    return bytes;
}

static void check_lora(test_state *t, tiny *m, int conv_dim)
{
    sdt_memory_plan_input in;
    plan_input(&in, &m->model, SDT_OPTIM_ADAMW);
    in.lora_options.network_dim = 4;
    in.lora_options.conv_dim = conv_dim;
    sdt_memory_plan p = build(t, &in);
    sdt_lora_network net;
    sdt_lora_options o = in.lora_options;
    char *error = NULL;
    size_t live = sdt_engine_live_bytes(m->e);
    int rc = sdt_lora_create(m->e, &m->model, &o, &net, &error);
    CHECK_MSG(t, rc == 0, "%s", error ? error : "");
    free(error);
    if (rc != 0)
        return;
    const sdt_lora_storage *st = net.storage;
    CHECK_MSG(t, p.bytes[SDT_MEM_TRAINABLE] == st->value_floats * sizeof(float), "conv_dim %d: %zu vs %zu",
              conv_dim, p.bytes[SDT_MEM_TRAINABLE], st->value_floats * sizeof(float));
    CHECK(t, p.bytes[SDT_MEM_GRADS] == st->grad_floats * sizeof(float));
    CHECK(t, p.trainable_parameters == (int64_t)st->value_floats);
    /* the block really is that big: values, gradients and one spare float, rounded by the allocator */
    size_t block = (st->value_floats + st->grad_floats + 1) * sizeof(float);
    CHECK(t, sdt_engine_live_bytes(m->e) - live == (block + 63) / 64 * 64);

    static const sdt_optim_kind kinds[] = {SDT_OPTIM_ADAMW,     SDT_OPTIM_SGD,       SDT_OPTIM_LION,
                                           SDT_OPTIM_ADAMW8BIT, SDT_OPTIM_ADAFACTOR, SDT_OPTIM_PRODIGY};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        sdt_optim_config_default(&in.optim, kinds[k]);
        if (kinds[k] == SDT_OPTIM_SGD)
            in.optim.momentum = 0.9;
        if (kinds[k] == SDT_OPTIM_ADAMW8BIT)
            in.optim.min_8bit_size = 256; /* the tiny model's larger modules take the 8-bit layout */
        sdt_memory_plan q = build(t, &in);
        size_t allocated = optimizer_allocated(t, &net, &in.optim);
        CHECK_MSG(t, q.bytes[SDT_MEM_OPTIMIZER] == allocated, "%s, conv_dim %d: plan %zu, allocated %zu",
                  sdt_optim_kind_name(kinds[k]), conv_dim, q.bytes[SDT_MEM_OPTIMIZER], allocated);
        CHECK(t, q.bytes[SDT_MEM_OPTIMIZER] > 0);
    }
    /* SGD without momentum keeps nothing; AdamW keeps two floats per parameter. */
    sdt_optim_config_default(&in.optim, SDT_OPTIM_SGD);
    CHECK(t, build(t, &in).bytes[SDT_MEM_OPTIMIZER] == 0);
    sdt_optim_config_default(&in.optim, SDT_OPTIM_ADAMW);
    CHECK(t, build(t, &in).bytes[SDT_MEM_OPTIMIZER] == 2 * p.bytes[SDT_MEM_TRAINABLE]);
    sdt_lora_free(m->e, &net);
}

static void test_lora_and_optimizers_equal_the_allocations(test_state *t)
{
    tiny m;
    if (tiny_open(t, &m) == 0) {
        check_lora(t, &m, 0);
        check_lora(t, &m, 2);
    }
    tiny_close(&m);
}

static void test_full_training_equals_the_allocations(test_state *t)
{
    tiny m;
    if (tiny_open(t, &m) != 0) {
        tiny_close(&m);
        return;
    }
    sdt_memory_plan_input in;
    plan_input(&in, &m.model, SDT_OPTIM_ADAMW);
    in.lora = 0;
    in.train_text_encoder = 0;
    sdt_memory_plan p = build(t, &in);
    sdt_param_table *unet = &m.model.unet;
    CHECK(t, p.bytes[SDT_MEM_TRAINABLE] == unet->plan.bytes[SDT_LIFE_FROZEN]);
    CHECK(t, p.weights_by_component[SDT_COMPONENT_UNET] == 0);
    /* the gradients and the optimizer as train/trainer_setup.c attaches them */
    size_t grads = 0;
    void **buffers = calloc(unet->count, sizeof *buffers);
    for (size_t i = 0; buffers && i < unet->count; i++) {
        sdt_param *q = &unet->items[i];
        size_t bytes = sdt_tensor_bytes(&q->value);
        buffers[i] = calloc(1, bytes);
        q->trainable = 1;
        q->grad = q->value;
        q->grad.data = buffers[i];
        grads += bytes;
    }
    CHECK(t, p.bytes[SDT_MEM_GRADS] == grads);
    sdt_optimizer o;
    char *error = NULL;
    size_t state = 0;
    int rc = sdt_optim_init(&o, &in.optim, 1, &error);
    if (rc == 0)
        rc = sdt_optim_add_table(&o, unet, 0, &error);
    CHECK_MSG(t, rc == 0, "%s", error ? error : "");
    free(error);
    for (size_t i = 0; rc == 0 && i < o.count; i++)
        for (int s = 0; s < 4 && o.entries[i].state_names[s]; s++)
            state += o.entries[i].state_count[s] * sizeof(float);
    CHECK(t, p.bytes[SDT_MEM_OPTIMIZER] == state);
    sdt_optim_free(&o);
    for (size_t i = 0; buffers && i < unet->count; i++) {
        unet->items[i].grad.data = NULL;
        unet->items[i].trainable = 0;
        free(buffers[i]);
    }
    free(buffers);
    tiny_close(&m);
}

/* Full training under mixed precision: the F32 masters, their gradients and the optimizer state are what
 * an fp32 plan counts; the working copies in bf16 join the weights, each component's equal to what a bf16
 * allocation of its table takes (train/trainer_masters.c makes one per trained tensor). */
static void test_full_training_bf16_counts_working_copies(test_state *t)
{
    tiny m;
    if (tiny_open(t, &m) != 0) {
        tiny_close(&m);
        return;
    }
    sdt_memory_plan_input in;
    plan_input(&in, &m.model, SDT_OPTIM_ADAMW);
    in.lora = 0;
    in.train_text_encoder = 1;
    sdt_memory_plan fp32 = build(t, &in);
    in.weight_dtype = in.activation_dtype = SDT_BF16;
    sdt_memory_plan bf16 = build(t, &in);
    CHECK(t, bf16.bytes[SDT_MEM_TRAINABLE] == fp32.bytes[SDT_MEM_TRAINABLE]);
    CHECK(t, bf16.bytes[SDT_MEM_GRADS] == fp32.bytes[SDT_MEM_GRADS]);
    CHECK(t, bf16.bytes[SDT_MEM_OPTIMIZER] == fp32.bytes[SDT_MEM_OPTIMIZER]);
    CHECK(t, bf16.trainable_parameters == fp32.trainable_parameters);
    CHECK(t, fp32.weights_by_component[SDT_COMPONENT_UNET] == 0 &&
                 fp32.weights_by_component[SDT_COMPONENT_TEXT_ENCODER] == 0);
    sdt_engine *e = NULL;
    sdt_engine_options eo = {.device = SDT_DEVICE_CPU};
    sdt_model half;
    memset(&half, 0, sizeof half);
    char *error = NULL;
    int rc = sdt_engine_create(&eo, &e, &error) == 0 &&
                     sdt_model_init(&half, sdt_model_arch_find("sd15-tiny"), &error) == 0 &&
                     sdt_model_alloc(e, &half, SDT_BF16, &error) == 0
                 ? 0
                 : -1;
    CHECK_MSG(t, rc == 0, "%s", error ? error : "bf16 model");
    free(error);
    for (int c = 0; rc == 0 && c < SDT_COMPONENT_COUNT; c++)
        CHECK_MSG(t, bf16.weights_by_component[c] == sdt_model_table(&half, c)->plan.bytes[SDT_LIFE_FROZEN],
                  "bf16 %s: plan %zu, allocated %zu", sdt_component_name(c), bf16.weights_by_component[c],
                  sdt_model_table(&half, c)->plan.bytes[SDT_LIFE_FROZEN]);
    /* full_bf16: the weights and gradients of the trained networks in bf16, no working copies; the AdamW
     * state as before */
    in.full_half = 1;
    sdt_memory_plan half_weights = build(t, &in);
    CHECK(t, half_weights.weights_by_component[SDT_COMPONENT_UNET] == 0 &&
                 half_weights.weights_by_component[SDT_COMPONENT_TEXT_ENCODER] == 0);
    CHECK(t,
          rc != 0 || half_weights.bytes[SDT_MEM_TRAINABLE] ==
                         sdt_model_table(&half, SDT_COMPONENT_UNET)->plan.bytes[SDT_LIFE_FROZEN] +
                             sdt_model_table(&half, SDT_COMPONENT_TEXT_ENCODER)->plan.bytes[SDT_LIFE_FROZEN]);
    CHECK(t, half_weights.bytes[SDT_MEM_GRADS] * 2 == fp32.bytes[SDT_MEM_GRADS]);
    CHECK(t, half_weights.bytes[SDT_MEM_OPTIMIZER] == fp32.bytes[SDT_MEM_OPTIMIZER]);
    /* a bf16 run with masters that does not fit is told about full_bf16 (and what it saves); one that
     * has it is not, nor about optimizers full_bf16 cannot use */
    sdt_buf advice;
    sdt_buf_init(&advice);
    sdt_memory_plan_suggest(&in, &half_weights, 1, &advice);
    CHECK(t, !advice.data || (!strstr(advice.data, "full_bf16") && !strstr(advice.data, "AdamW8bit")));
    sdt_buf_free(&advice);
    in.full_half = 0;
    sdt_buf_init(&advice);
    sdt_memory_plan_suggest(&in, &bf16, 1, &advice);
    CHECK_STR_CONTAINS(t, advice.data, "full_bf16 = true");
    sdt_buf_free(&advice);
    /* the table says what the UNet's and the text encoder's weights are */
    sdt_buf table;
    sdt_buf_init(&table);
    sdt_memory_plan_table(&in, &bf16, 0, NULL, &table);
    CHECK_STR_CONTAINS(t, table.data, "unet");
    CHECK_STR_CONTAINS(t, table.data, "(working copy of the fp32 masters)");
    sdt_buf_free(&table);
    sdt_model_free(e, &half);
    if (e)
        sdt_engine_free(e);
    tiny_close(&m);
}

/* ---- activations ---- */

/* One UNet micro-step as train/trainer_step.c runs it (latents, timesteps and context on the engine, the
 * forward kept for backward, the output gradient, the backward), returning the allocator's peak above
 * what was live before. */
static size_t measure_unet_step(test_state *t, tiny *m, sdt_unet *u, int batch, int side)
{
    sdt_engine *e = m->e;
    int64_t lh = side / 8, lw = side / 8;
    const sdt_unet_config *c = &m->model.arch.unet;
    sdt_tensor x = {0}, ts = {0}, ctx = {0}, out = {0}, dout = {0};
    size_t live = sdt_engine_live_bytes(e);
    sdt_engine_reset_peak(e);
    int rc = sdt_act_alloc(e, &x, SDT_F32, 4, SDT_SHAPE(batch, lh, lw, c->in_channels)) != 0 ||
             sdt_act_alloc(e, &ts, SDT_F32, 1, SDT_SHAPE(batch)) != 0 ||
             sdt_act_alloc(e, &ctx, SDT_F32, 3, SDT_SHAPE(batch, 77, c->cross_attention_dim)) != 0;
    if (rc == 0) {
        sdt_fill(e, &x, 0.5f);
        sdt_fill(e, &ts, 500.0f);
        sdt_fill(e, &ctx, 0.1f);
        rc = sdt_unet_forward(e, u, &out, &x, &ts, &ctx, NULL, 1) != 0 ||
             sdt_act_alloc(e, &dout, SDT_F32, 4, out.shape) != 0 || sdt_fill(e, &dout, 0.01f) != 0 ||
             sdt_unet_backward(e, u, NULL, NULL, NULL, &dout) != 0;
    }
    CHECK_MSG(t, rc == 0, "%s", sdt_engine_error(e));
    size_t peak = sdt_engine_peak_bytes(e) - live;
    sdt_act_free(e, &x);
    sdt_act_free(e, &ts);
    sdt_act_free(e, &ctx);
    sdt_act_free(e, &out);
    sdt_act_free(e, &dout);
    CHECK(t, sdt_engine_live_bytes(e) == live);
    return peak;
}

static int within(double planned, double measured)
{
    return measured > 0 && fabs(planned - measured) <= ACTIVATION_TOLERANCE * measured;
}

static void check_unet_step(test_state *t, tiny *m, sdt_unet *u, int conv_dim, int batch, int side)
{
    sdt_memory_plan_input in;
    plan_input(&in, &m->model, SDT_OPTIM_ADAMW);
    in.train_text_encoder = 0;
    in.lora_options.conv_dim = conv_dim;
    in.batch = batch;
    in.width = in.height = side;
    size_t saved[2];
    for (int ckpt = 0; ckpt < 2; ckpt++) {
        in.gradient_checkpointing = ckpt;
        sdt_unet_set_checkpointing(u, ckpt);
        sdt_memory_plan p = build(t, &in);
        size_t measured = measure_unet_step(t, m, u, batch, side);
        CHECK_MSG(t, within((double)p.step_peak, (double)measured),
                  "conv_dim %d, batch %d at %d, checkpointing %d: planned %zu, measured %zu (%.1f%%)",
                  conv_dim, batch, side, ckpt, p.step_peak, measured,
                  100.0 * ((double)p.step_peak - (double)measured) / (double)measured);
        CHECK(t, p.bytes[SDT_MEM_ACTIVATIONS] == p.unet_saved);
        CHECK(t, p.bytes[SDT_MEM_ACTIVATIONS] + p.bytes[SDT_MEM_WORKSPACE] == p.step_peak);
        saved[ckpt] = p.bytes[SDT_MEM_ACTIVATIONS];
    }
    CHECK_MSG(t, saved[1] * 2 < saved[0], "checkpointing keeps %zu of %zu bytes", saved[1], saved[0]);
}

static void test_activations_match_a_measured_unet_step(test_state *t)
{
    tiny m;
    if (tiny_open(t, &m) != 0) {
        tiny_close(&m);
        return;
    }
    sdt_unet *u = NULL;
    char *error = NULL;
    int rc = sdt_unet_create(&m.model.arch.unet, &m.model.unet, &u, &error);
    CHECK_MSG(t, rc == 0, "%s", error ? error : "");
    free(error);
    for (int conv_dim = 0; rc == 0 && conv_dim <= 2; conv_dim += 2) {
        sdt_lora_options o;
        sdt_lora_options_default(&o);
        o.text_encoder = 0;
        o.conv_dim = conv_dim;
        sdt_lora_network net;
        error = NULL;
        if (sdt_lora_create(m.e, &m.model, &o, &net, &error) != 0) {
            CHECK_MSG(t, 0, "%s", error ? error : "");
            free(error);
            break;
        }
        check_unet_step(t, &m, u, conv_dim, 2, 128);
        if (conv_dim == 0)
            check_unet_step(t, &m, u, conv_dim, 1, 64);
        sdt_lora_free(m.e, &net);
    }
    sdt_unet_free(m.e, u);
    tiny_close(&m);
}

/* The config's mixed_precision sets the plan's dtypes: the run's compute dtype (precision.h) for the
 * frozen weights and the activations; "auto" is fp32 on the CPU backend and bf16 on CUDA. In bf16 the
 * weights take half (to the arena's padding) and so do the activations, but for the F32 statistics the
 * norms and attention keep. */
static void test_mixed_precision_from_config(test_state *t)
{
    tiny m;
    if (tiny_open(t, &m) != 0) {
        tiny_close(&m);
        return;
    }
    static const struct {
        const char *toml;
        sdt_device_kind device;
        sdt_dtype expected;
        int vae_f32;
    } cases[] = {
        {"", SDT_DEVICE_CPU, SDT_F32, 0},
        {"", SDT_DEVICE_CUDA, SDT_BF16, 0},
        {"mixed_precision = \"no\"\n", SDT_DEVICE_CUDA, SDT_F32, 0},
        {"mixed_precision = \"bf16\"\n", SDT_DEVICE_CPU, SDT_BF16, 0},
        {"mixed_precision = \"fp16\"\n", SDT_DEVICE_CPU, SDT_F16, 0},
        {"mixed_precision = \"bf16\"\n[model]\nno_half_vae = true\n", SDT_DEVICE_CPU, SDT_BF16, 1},
    };
    sdt_memory_plan plans[2];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[200];
        snprintf(text, sizeof text, "[precision_memory]\n%s", cases[i].toml);
        sdt_diag_list diags;
        sdt_diag_list_init(&diags);
        sdt_config *cfg = sdt_config_load_text(text, strlen(text), "plan.toml", &diags);
        sdt_diag_list_free(&diags);
        sdt_memory_plan_input in;
        char *error = NULL;
        int rc = cfg ? sdt_memory_plan_input_from_config(cfg, &m.model, cases[i].device, &in, &error) : -1;
        CHECK_MSG(t, rc == 0, "%s", error ? error : text);
        free(error);
        sdt_config_free(cfg);
        if (rc != 0)
            continue;
        CHECK_MSG(t, in.weight_dtype == cases[i].expected && in.activation_dtype == cases[i].expected,
                  "case %zu: %s weights, %s activations", i, sdt_dtype_name(in.weight_dtype),
                  sdt_dtype_name(in.activation_dtype));
        CHECK(t, in.vae_f32 == cases[i].vae_f32);
        if (i == 0 || i == 3) {
            in.gradient_checkpointing = 0;
            plans[i == 3] = build(t, &in);
        }
    }
    /* bf16 against fp32, same config otherwise */
    size_t w32 = plans[0].bytes[SDT_MEM_WEIGHTS], w16 = plans[1].bytes[SDT_MEM_WEIGHTS];
    size_t a32 = plans[0].bytes[SDT_MEM_ACTIVATIONS], a16 = plans[1].bytes[SDT_MEM_ACTIVATIONS];
    CHECK_MSG(t, w16 * 2 >= w32 && w16 * 2 < w32 + w32 / 20, "weights fp32 %zu, bf16 %zu", w32, w16);
    CHECK_MSG(t, a16 < a32 * 3 / 4 && a16 * 2 >= a32, "activations fp32 %zu, bf16 %zu", a32, a16);
    CHECK(t, plans[1].bytes[SDT_MEM_TRAINABLE] == plans[0].bytes[SDT_MEM_TRAINABLE]);
    CHECK(t, plans[1].bytes[SDT_MEM_GRADS] == plans[0].bytes[SDT_MEM_GRADS]);
    CHECK(t, plans[1].bytes[SDT_MEM_OPTIMIZER] == plans[0].bytes[SDT_MEM_OPTIMIZER]);
    tiny_close(&m);
}

/* ---- the trainer ---- */

static sdt_train_result run(test_state *t, trainer_fixture *f, const char *extra, size_t free_bytes,
                            event_log *log)
{
    sdt_config *cfg = trainer_fixture_config(t, f, NULL, extra);
    if (!cfg)
        return SDT_TRAIN_FAILED;
    sdt_train_options o = {
        .cfg = cfg, .emit = event_log_emit, .emit_ctx = log, .memory_free_bytes = free_bytes};
    char *error = NULL;
    sdt_train_result r = sdt_train_run(&o, &error);
    free(error);
    sdt_config_free(cfg);
    return r;
}

static const char *find_log(const event_log *l, const char *needle)
{
    for (size_t i = 0; i < l->count; i++)
        if (l->items[i].type == SDT_EV_LOG && l->items[i].text && strstr(l->items[i].text, needle))
            return l->items[i].text;
    return NULL;
}

static void test_a_run_that_does_not_fit_is_refused(test_state *t)
{
    trainer_fixture f;
    if (trainer_fixture_open(t, &f, "memplan", 2, 1) != 0) {
        trainer_fixture_close(&f);
        return;
    }
    event_log log = {0};
    sdt_train_result r = run(t, &f, "[training]\nmax_train_steps = 1\n", (size_t)1 << 20, &log);
    CHECK_MSG(t, r == SDT_TRAIN_CONFIG_ERROR, "result %d", (int)r);
    CHECK(t, event_log_count(&log, SDT_EV_CONFIG_ERROR) == 1);
    CHECK(t, find_log(&log, "memory plan: cpu") != NULL);
    CHECK(t, find_log(&log, "activations") != NULL);
    CHECK(t, find_log(&log, "of 1.00 MiB free (given limit)") != NULL);
    CHECK(t, find_log(&log, "settings that lower the plan") != NULL);
    CHECK(t, find_log(&log, "gradient_checkpointing = true") != NULL);
    CHECK_MSG(t, find_log(&log, "loading the model") == NULL, "the model was loaded");
    int errors = 0;
    for (size_t i = 0; i < log.count; i++)
        if (log.items[i].type == SDT_EV_ERROR && log.items[i].text &&
            strstr(log.items[i].text, "by its memory plan but 1.00 MiB are free"))
            errors++;
    CHECK(t, errors == 1);
    event_log_free(&log);
    trainer_fixture_close(&f);
}

/* The trainer logs the plan and, after the first step, the measured peak beside the plan's: the whole
 * step (text encoder trained with LoRA, UNet, the step's inputs) within the tolerance. */
static void test_a_run_reports_its_plan_and_measured_peak(test_state *t)
{
    trainer_fixture f;
    if (trainer_fixture_open(t, &f, "memplan2", 2, 1) != 0) {
        trainer_fixture_close(&f);
        return;
    }
    static const char *const extras[3] = {"[training]\nmax_train_steps = 1\ntrain_batch_size = 2\n",
                                          "[training]\nmax_train_steps = 1\ntrain_batch_size = 2\n"
                                          "gradient_checkpointing = true\n",
                                          "[training]\nmax_train_steps = 1\ntrain_batch_size = 2\n"
                                          "[precision_memory]\nmixed_precision = \"bf16\"\n"};
    for (int k = 0; k < 3; k++) {
        event_log log = {0};
        sdt_train_result r = run(t, &f, extras[k], 0, &log);
        CHECK_MSG(t, r == SDT_TRAIN_DONE, "result %d", (int)r);
        CHECK(t, find_log(&log, "memory plan: cpu") != NULL);
        const char *line = find_log(&log, "memory: the first step held at most");
        double measured = 0, planned = 0;
        CHECK_MSG(t,
                  line && sscanf(line,
                                 "memory: the first step held at most %lf MiB above the model (the "
                                 "plan's activations and workspace: %lf MiB)",
                                 &measured, &planned) == 2,
                  "%s", line ? line : "no measured peak");
        CHECK_MSG(t, within(planned, measured), "checkpointing %d: planned %.2f MiB, measured %.2f MiB", k,
                  planned, measured);
        event_log_free(&log);
    }
    trainer_fixture_close(&f);
}

/* vram_limit_gb caps the free memory: the smaller of the two decides, a limit over an unknown free memory
 * (0) applies, 0 is no limit; the source names the limit only when it decides. */
static void test_vram_limit_caps_free_memory(test_state *t)
{
    const char *source = "MemAvailable";
    CHECK(t, sdt_memory_plan_cap(0.0, 5000, &source) == 5000 && strcmp(source, "MemAvailable") == 0);
    CHECK(t, sdt_memory_plan_cap(1.0, 5000, &source) == 5000 && strcmp(source, "MemAvailable") == 0);
    CHECK(t, sdt_memory_plan_cap(0.5, (size_t)4 << 30, &source) == (size_t)1 << 29);
    CHECK(t, strcmp(source, "vram_limit_gb") == 0);
    source = "cudaMemGetInfo";
    CHECK(t, sdt_memory_plan_cap(2.0, 0, &source) == (size_t)2 << 30 && strcmp(source, "vram_limit_gb") == 0);
    CHECK(t, sdt_memory_plan_cap(1e-12, 100, &source) == 1);
}

int main(void)
{
    static const test_case cases[] = {
        TEST(test_weights_equal_the_arenas),
        TEST(test_fp8_weights_equal_the_arenas),
        TEST(test_lora_and_optimizers_equal_the_allocations),
        TEST(test_full_training_equals_the_allocations),
        TEST(test_full_training_bf16_counts_working_copies),
        TEST(test_activations_match_a_measured_unet_step),
        TEST(test_mixed_precision_from_config),
        TEST(test_a_run_that_does_not_fit_is_refused),
        TEST(test_a_run_reports_its_plan_and_measured_peak),
        TEST(test_vram_limit_caps_free_memory),
    };
    return run_tests("memory_plan", cases, sizeof cases / sizeof cases[0]);
}
