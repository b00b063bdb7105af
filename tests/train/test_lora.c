/* kohya's LoRA network (train/lora.h): module counts and names over the full SD1.5 tables against an
 * independent listing of kohya's module paths, file shapes, initialisation, dropout state, optimizer
 * registration, save -> load round trips in F32/F16/BF16, load errors, the metadata for a sample config,
 * kohya's model hash, and a UNet with a fresh LoRA giving exactly its base output. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers.h"
#include "lora.h"
#include "sdtune/diag.h"
#include "sdtune/safetensors.h"
#include "sdtune/sha256.h"
#include "unet.h"
#include "unit/check.h"
#include "unit/test_engine.h"

#include "lora_internal.h"
#include "sdtune/config.h"

#define TMP_DIR "/tmp"

static const sdt_lora_module *find_module(const sdt_lora_network *net, const char *name)
{
    for (size_t i = 0; i < net->count; i++)
        if (strcmp(net->modules[i].name, name) == 0)
            return &net->modules[i];
    return NULL;
}

/* ---- kohya's module paths for SD1.5, listed from the diffusers UNet structure ---------------------- */

typedef struct name_list {
    char names[400][128];
    size_t count;
} name_list;

static void add_name(name_list *l, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    vsnprintf(l->names[l->count++], sizeof l->names[0], fmt, args);
    va_end(args);
}

static void add_transformer(name_list *l, const char *base)
{
    static const char *const parts[] = {"proj_in",
                                        "transformer_blocks_0_attn1_to_q",
                                        "transformer_blocks_0_attn1_to_k",
                                        "transformer_blocks_0_attn1_to_v",
                                        "transformer_blocks_0_attn1_to_out_0",
                                        "transformer_blocks_0_attn2_to_q",
                                        "transformer_blocks_0_attn2_to_k",
                                        "transformer_blocks_0_attn2_to_v",
                                        "transformer_blocks_0_attn2_to_out_0",
                                        "transformer_blocks_0_ff_net_0_proj",
                                        "transformer_blocks_0_ff_net_2",
                                        "proj_out"};
    for (size_t i = 0; i < 12; i++)
        add_name(l, "lora_unet_%s_%s", base, parts[i]);
}

static void add_resnet(name_list *l, const char *base, int shortcut)
{
    add_name(l, "lora_unet_%s_conv1", base);
    add_name(l, "lora_unet_%s_conv2", base);
    add_name(l, "lora_unet_%s_time_emb_proj", base);
    if (shortcut)
        add_name(l, "lora_unet_%s_conv_shortcut", base);
}

/* diffusers' UNet2DConditionModel for SD1.x: 4 down blocks (attention in the first 3), mid block, 4 up
 * blocks (attention in the last 3); channels change at the first resnet of down blocks 1 and 2, and every
 * up resnet takes a concatenated skip, so it has a shortcut. */
static void sd1_unet_names(name_list *l, int locon)
{
    char base[64];
    for (int i = 0; i < 4; i++) {
        for (int j = 0; j < 2; j++) {
            if (locon) {
                snprintf(base, sizeof base, "down_blocks_%d_resnets_%d", i, j);
                add_resnet(l, base, j == 0 && (i == 1 || i == 2));
            }
            if (i < 3) {
                snprintf(base, sizeof base, "down_blocks_%d_attentions_%d", i, j);
                add_transformer(l, base);
            }
        }
        if (locon && i < 3)
            add_name(l, "lora_unet_down_blocks_%d_downsamplers_0_conv", i);
    }
    add_transformer(l, "mid_block_attentions_0");
    if (locon) {
        add_resnet(l, "mid_block_resnets_0", 0);
        add_resnet(l, "mid_block_resnets_1", 0);
    }
    for (int i = 0; i < 4; i++) {
        for (int j = 0; j < 3; j++) {
            if (locon) {
                snprintf(base, sizeof base, "up_blocks_%d_resnets_%d", i, j);
                add_resnet(l, base, 1);
            }
            if (i > 0) {
                snprintf(base, sizeof base, "up_blocks_%d_attentions_%d", i, j);
                add_transformer(l, base);
            }
        }
        if (locon && i < 3)
            add_name(l, "lora_unet_up_blocks_%d_upsamplers_0_conv", i);
    }
}

static void sd1_text_names(name_list *l)
{
    static const char *const parts[] = {"self_attn_q_proj",   "self_attn_k_proj", "self_attn_v_proj",
                                        "self_attn_out_proj", "mlp_fc1",          "mlp_fc2"};
    for (int layer = 0; layer < 12; layer++)
        for (size_t p = 0; p < 6; p++)
            add_name(l, "lora_te_text_model_encoder_layers_%d_%s", layer, parts[p]);
}

static void check_file_shapes(test_state *t, const sdt_lora_network *net, const char *name, int down_ndim,
                              const int64_t *down, int up_ndim, const int64_t *up)
{
    const sdt_lora_module *m = find_module(net, name);
    CHECK_MSG(t, m != NULL, "no module %s", name);
    if (!m)
        return;
    int64_t shape[4];
    int n = sdt_lora_file_down_shape(m, shape);
    CHECK_MSG(t, n == down_ndim, "%s: down has %d dims", name, n);
    for (int i = 0; i < n && i < down_ndim; i++)
        CHECK_MSG(t, shape[i] == down[i], "%s: down dim %d is %lld", name, i, (long long)shape[i]);
    n = sdt_lora_file_up_shape(m, shape);
    CHECK_MSG(t, n == up_ndim, "%s: up has %d dims", name, n);
    for (int i = 0; i < n && i < up_ndim; i++)
        CHECK_MSG(t, shape[i] == up[i], "%s: up dim %d is %lld", name, i, (long long)shape[i]);
}

static void check_names(test_state *t, const sdt_lora_network *net, const name_list *expected, size_t from,
                        size_t count)
{
    CHECK_MSG(t, count == expected->count, "%zu modules, expected %zu", count, expected->count);
    for (size_t i = 0; i < expected->count; i++)
        CHECK_MSG(t, find_module(net, expected->names[i]) != NULL, "no module %s", expected->names[i]);
    for (size_t i = from; i < from + count; i++) {
        int listed = 0;
        for (size_t k = 0; k < expected->count && !listed; k++)
            listed = strcmp(expected->names[k], net->modules[i].name) == 0;
        CHECK_MSG(t, listed, "unexpected module %s", net->modules[i].name);
    }
}

static void counts_and_names_sd15(test_state *t)
{
    const sdt_model_arch *arch = sdt_model_arch_find("sd15");
    sdt_model model;
    char *error = NULL;
    CHECK(t, arch != NULL);
    if (!arch || sdt_model_init(&model, arch, &error) != 0) {
        CHECK_MSG(t, 0, "%s", error ? error : "no sd15");
        free(error);
        return;
    }
    static name_list unet, unet_locon, text;
    unet.count = unet_locon.count = text.count = 0;
    sd1_unet_names(&unet, 0);
    sd1_unet_names(&unet_locon, 1);
    sd1_text_names(&text);

    sdt_lora_options o;
    sdt_lora_options_default(&o);
    o.network_dim = 8;
    sdt_lora_network net;
    CHECK_MSG(t, sdt_lora_plan(&model, &o, &net, &error) == 0, "%s", error ? error : "");
    CHECK_MSG(t, net.unet_count == 192, "UNet modules: %zu", net.unet_count);
    CHECK_MSG(t, net.text_encoder_count == 72, "text encoder modules: %zu", net.text_encoder_count);
    check_names(t, &net, &unet, 0, net.unet_count);
    check_names(t, &net, &text, net.unet_count, net.text_encoder_count);
    /* inventory §6.2's examples */
    check_file_shapes(t, &net, "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q", 2,
                      (int64_t[]){8, 320}, 2, (int64_t[]){320, 8});
    check_file_shapes(t, &net, "lora_te_text_model_encoder_layers_0_mlp_fc1", 2, (int64_t[]){8, 768}, 2,
                      (int64_t[]){3072, 8});
    check_file_shapes(t, &net, "lora_unet_down_blocks_0_attentions_0_proj_in", 4, (int64_t[]){8, 320, 1, 1},
                      4, (int64_t[]){320, 8, 1, 1});
    check_file_shapes(t, &net, "lora_unet_up_blocks_1_attentions_2_transformer_blocks_0_attn2_to_k", 2,
                      (int64_t[]){8, 768}, 2, (int64_t[]){1280, 8});
    check_file_shapes(t, &net, "lora_unet_mid_block_attentions_0_transformer_blocks_0_ff_net_0_proj", 2,
                      (int64_t[]){8, 1280}, 2, (int64_t[]){10240, 8});
    CHECK(t, find_module(&net, "lora_unet_down_blocks_0_resnets_0_conv1") == NULL);
    const sdt_lora_module *q =
        find_module(&net, "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q");
    CHECK(t, q && q->alpha == 1.0f && q->adapter.scale == 1.0f / 8 && q->adapter.rank == 8 &&
                 q->conv_kernel == 0);
    CHECK(t, q && strcmp(q->target->name, "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight") == 0);
    sdt_lora_free(NULL, &net);

    /* LoCon: ResNet blocks, downsamplers and upsamplers too. */
    o.conv_dim = 4;
    o.conv_alpha = 0; /* alpha = rank */
    o.network_alpha = 0;
    CHECK_MSG(t, sdt_lora_plan(&model, &o, &net, &error) == 0, "%s", error ? error : "");
    CHECK_MSG(t, net.unet_count == 278, "LoCon UNet modules: %zu", net.unet_count);
    CHECK_MSG(t, net.text_encoder_count == 72, "text encoder modules: %zu", net.text_encoder_count);
    check_names(t, &net, &unet_locon, 0, net.unet_count);
    check_file_shapes(t, &net, "lora_unet_down_blocks_0_resnets_0_conv1", 4, (int64_t[]){4, 320, 3, 3}, 4,
                      (int64_t[]){320, 4, 1, 1});
    check_file_shapes(t, &net, "lora_unet_down_blocks_1_resnets_0_conv_shortcut", 4,
                      (int64_t[]){8, 320, 1, 1}, 4, (int64_t[]){640, 8, 1, 1});
    check_file_shapes(t, &net, "lora_unet_up_blocks_0_resnets_0_time_emb_proj", 2, (int64_t[]){8, 1280}, 2,
                      (int64_t[]){1280, 8});
    check_file_shapes(t, &net, "lora_unet_up_blocks_3_resnets_2_conv1", 4, (int64_t[]){4, 640, 3, 3}, 4,
                      (int64_t[]){320, 4, 1, 1});
    check_file_shapes(t, &net, "lora_unet_down_blocks_2_downsamplers_0_conv", 4, (int64_t[]){4, 1280, 3, 3},
                      4, (int64_t[]){1280, 4, 1, 1});
    const sdt_lora_module *c = find_module(&net, "lora_unet_up_blocks_2_upsamplers_0_conv");
    CHECK(t, c && c->alpha == 4.0f && c->adapter.scale == 1.0f && c->conv_kernel == 3);
    CHECK(t, c && strcmp(c->target->name, "output_blocks.8.2.conv.weight") == 0);
    /* Every module: the file shapes follow from the wrapped weight's file shape. */
    for (size_t i = 0; i < net.count; i++) {
        const sdt_lora_module *m = &net.modules[i];
        int64_t down[4], up[4];
        int nd = sdt_lora_file_down_shape(m, down), nu = sdt_lora_file_up_shape(m, up);
        const sdt_param *p = m->target;
        int ok = nd == p->file_ndim && nu == p->file_ndim && down[1] == p->file_shape[1] &&
                 up[0] == p->file_shape[0];
        if (ok && nd == 4)
            ok = down[2] == p->file_shape[2] && down[3] == p->file_shape[3] && up[2] == 1 && up[3] == 1;
        ok = ok && down[0] == (m->conv_kernel == 3 ? 4 : 8) && up[1] == down[0];
        CHECK_MSG(t, ok, "%s: file shapes do not fit %s", m->name, p->name);
        CHECK_MSG(t, strchr(m->name, '.') == NULL, "%s has a dot", m->name);
    }
    sdt_lora_free(NULL, &net);

    /* Only one of the two networks. */
    o.text_encoder = 0;
    CHECK(t, sdt_lora_plan(&model, &o, &net, NULL) == 0 && net.count == 278 && net.text_encoder_count == 0);
    sdt_lora_free(NULL, &net);
    o.text_encoder = 1;
    o.unet = 0;
    CHECK(t, sdt_lora_plan(&model, &o, &net, NULL) == 0 && net.count == 72 && net.unet_count == 0);
    sdt_lora_free(NULL, &net);
    sdt_model_free(NULL, &model);
    free(error);
}

/* ---- a tiny model with values --------------------------------------------------------------------- */

typedef struct tiny {
    sdt_engine *e;
    sdt_model model;
    const sdt_model_arch *arch;
} tiny;

static int tiny_open(test_state *t, tiny *m)
{
    char *error = NULL;
    memset(m, 0, sizeof *m);
    m->e = test_cpu_engine(t, 1);
    m->arch = sdt_model_arch_find("sd15-tiny");
    if (!m->e || !m->arch)
        return -1;
    if (sdt_model_init(&m->model, m->arch, &error) != 0 ||
        sdt_model_alloc(m->e, &m->model, SDT_F32, &error) != 0 ||
        sdt_model_init_random(m->e, &m->model, 7, &error) != 0) {
        CHECK_MSG(t, 0, "%s", error);
        free(error);
        return -1;
    }
    return 0;
}

static void tiny_close(tiny *m)
{
    sdt_model_free(m->e, &m->model);
    if (m->e)
        sdt_engine_free(m->e);
}

static sdt_lora_options locon_options(uint64_t seed)
{
    sdt_lora_options o;
    sdt_lora_options_default(&o);
    o.network_dim = 4;
    o.network_alpha = 2;
    o.conv_dim = 2;
    o.conv_alpha = 1;
    o.seed = seed;
    return o;
}

static void init_statistics(test_state *t)
{
    tiny m;
    if (tiny_open(t, &m) != 0)
        goto done;
    sdt_lora_options o = locon_options(11);
    sdt_lora_network a, b, c;
    char *error = NULL;
    CHECK_MSG(t, sdt_lora_create(m.e, &m.model, &o, &a, &error) == 0, "%s", error ? error : "");
    /* sd15-tiny: SD1.5's topology, but its first two levels have the same width, so one down resnet fewer
     * has a shortcut (277 = 278 - 1); 3 text encoder layers. */
    CHECK_MSG(t, a.count == 277 + 18 && a.unet_count == 277 && a.text_encoder_count == 18,
              "%zu + %zu modules", a.unet_count, a.text_encoder_count);
    /* A second network on the same model is refused: its weights already carry adapters. */
    CHECK(t, sdt_lora_create(m.e, &m.model, &o, &b, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "already has an adapter");
    size_t in_bound = 0, total = 0, near_edge = 0;
    double sum = 0;
    for (size_t i = 0; i < a.count; i++) {
        const sdt_lora_module *mod = &a.modules[i];
        CHECK(t, mod->target->adapter == &mod->adapter);
        const float *down = mod->adapter.down.data, *up = mod->adapter.up.data;
        size_t nd = (size_t)sdt_tensor_numel(&mod->adapter.down),
               nu = (size_t)sdt_tensor_numel(&mod->adapter.up);
        int64_t k = mod->conv_kernel > 1 ? mod->conv_kernel : 1;
        double bound = 1.0 / sqrt((double)(mod->in_features * k * k));
        CHECK(t, nd == (size_t)(mod->adapter.rank * mod->in_features * k * k));
        for (size_t j = 0; j < nd; j++) {
            in_bound += fabs(down[j]) <= bound;
            near_edge += fabs(down[j]) > 0.9 * bound;
            sum += down[j] / bound;
        }
        total += nd;
        size_t zeros = 0;
        for (size_t j = 0; j < nu; j++)
            zeros += up[j] == 0.0f;
        CHECK_MSG(t, zeros == nu, "%s: up not zero", mod->name);
        const float *dg = mod->adapter.down_grad.data;
        CHECK(t, dg && dg[0] == 0.0f && dg[nd - 1] == 0.0f);
    }
    CHECK_MSG(t, in_bound == total, "%zu of %zu outside the bound", total - in_bound, total);
    /* U(-b, b): a tenth of the values lie beyond 0.9 b, the mean is 0 (scaled by b). */
    double edge = (double)near_edge / (double)total, mean = sum / (double)total;
    CHECK_MSG(t, edge > 0.09 && edge < 0.11, "fraction beyond 0.9 b: %g of %zu", edge, total);
    CHECK_MSG(t, fabs(mean) < 0.01, "mean / b: %g", mean);

    /* The same seed gives the same values, another seed others. */
    sdt_lora_options o2 = o;
    o2.seed = 12;
    sdt_model other;
    CHECK(t,
          sdt_model_init(&other, m.arch, &error) == 0 && sdt_model_alloc(m.e, &other, SDT_F32, &error) == 0);
    CHECK(t, sdt_lora_create(m.e, &other, &o, &b, &error) == 0);
    const sdt_adapter *x = &a.modules[5].adapter, *y = &b.modules[5].adapter;
    CHECK(t, memcmp(x->down.data, y->down.data, sdt_tensor_bytes(&x->down)) == 0);
    sdt_lora_free(m.e, &b);
    CHECK(t, sdt_lora_create(m.e, &other, &o2, &c, &error) == 0);
    CHECK(t, memcmp(x->down.data, c.modules[5].adapter.down.data, sdt_tensor_bytes(&x->down)) != 0);
    sdt_lora_free(m.e, &c);
    sdt_model_free(m.e, &other);

    sdt_lora_free(m.e, &a);
    for (size_t i = 0; i < m.model.unet.count; i++)
        CHECK(t, m.model.unet.items[i].adapter == NULL);
    free(error);
done:
    tiny_close(&m);
}

static void training_state_and_optimizer(test_state *t)
{
    tiny m;
    sdt_optimizer opt;
    memset(&opt, 0, sizeof opt);
    if (tiny_open(t, &m) != 0)
        goto done;
    sdt_lora_options o = locon_options(3);
    o.module_dropout = 0.5f;
    o.dropout = 0.1f;
    sdt_lora_network net;
    char *error = NULL;
    CHECK(t, sdt_lora_create(m.e, &m.model, &o, &net, &error) == 0);
    sdt_lora_set_training(&net, 1, 1234);
    size_t enabled = 0;
    int first[400];
    for (size_t i = 0; i < net.count; i++) {
        first[i] = net.modules[i].adapter.enabled;
        enabled += (size_t)first[i];
        CHECK(t, net.modules[i].adapter.training == 1 && net.modules[i].adapter.seed == 1234 &&
                     net.modules[i].adapter.index == i && net.modules[i].adapter.dropout == 0.1f);
    }
    CHECK_MSG(t, enabled > net.count * 4 / 10 && enabled < net.count * 6 / 10, "%zu of %zu enabled", enabled,
              net.count);
    sdt_lora_set_training(&net, 1, 1234);
    size_t same = 0;
    for (size_t i = 0; i < net.count; i++)
        same += net.modules[i].adapter.enabled == first[i];
    CHECK(t, same == net.count);
    sdt_lora_set_training(&net, 1, 1235);
    same = 0;
    for (size_t i = 0; i < net.count; i++)
        same += net.modules[i].adapter.enabled == first[i];
    CHECK(t, same < net.count);
    sdt_lora_set_training(&net, 0, 99);
    enabled = 0;
    for (size_t i = 0; i < net.count; i++)
        enabled += net.modules[i].adapter.enabled && !net.modules[i].adapter.training;
    CHECK(t, enabled == net.count);

    sdt_optim_config cfg;
    sdt_optim_config_default(&cfg, SDT_OPTIM_ADAMW);
    CHECK(t, sdt_optim_init(&opt, &cfg, 2, &error) == 0);
    CHECK_MSG(t, sdt_lora_add_to_optimizer(&net, &opt, 0, -1, &error) == 0, "%s", error ? error : "");
    CHECK_MSG(t, opt.count == 2 * net.unet_count, "%zu entries", opt.count);
    CHECK(t, opt.count > 0 && strcmp(opt.entries[0].name, net.modules[0].name) > 0 &&
                 strstr(opt.entries[0].name, ".lora_down.weight"));
    CHECK(t, net.modules[net.count - 1].adapter.down_grad.data == NULL);
    CHECK(t, net.modules[0].adapter.down_grad.data != NULL);
    float *g = net.modules[0].adapter.up_grad.data;
    g[0] = 3.0f;
    sdt_lora_zero_grads(&net);
    CHECK(t, g[0] == 0.0f);
    sdt_lora_free(m.e, &net);
    free(error);
done:
    sdt_optim_free(&opt);
    tiny_close(&m);
}

/* Fills every up with a pattern (a trained network), so that the round trips carry something. */
static void fill_ups(sdt_lora_network *net)
{
    for (size_t i = 0; i < net->count; i++) {
        float *up = net->modules[i].adapter.up.data;
        size_t n = (size_t)sdt_tensor_numel(&net->modules[i].adapter.up);
        for (size_t j = 0; j < n; j++)
            up[j] = (float)sin((double)(i * 131 + j)) * 0.37f;
    }
}

static float round_to(sdt_dtype dtype, float v)
{
    return dtype == SDT_F16    ? sdt_f16_to_f32(sdt_f32_to_f16(v))
           : dtype == SDT_BF16 ? sdt_bf16_to_f32(sdt_f32_to_bf16(v))
                               : v;
}

static void save_load_round_trip(test_state *t)
{
    tiny m;
    if (tiny_open(t, &m) != 0)
        goto done;
    sdt_lora_options o = locon_options(5);
    sdt_lora_network a, b;
    memset(&b, 0, sizeof b);
    char *error = NULL;
    CHECK(t, sdt_lora_create(m.e, &m.model, &o, &a, &error) == 0);
    fill_ups(&a);
    a.modules[3].alpha = 3.0f; /* alphas travel too */
    sdt_model other;
    CHECK(t,
          sdt_model_init(&other, m.arch, &error) == 0 && sdt_model_alloc(m.e, &other, SDT_F32, &error) == 0);
    sdt_lora_options ob = o;
    ob.seed = 99;
    CHECK(t, sdt_lora_create(m.e, &other, &ob, &b, &error) == 0);
    const sdt_dtype dtypes[3] = {SDT_F32, SDT_F16, SDT_BF16};
    const char *path = TMP_DIR "/sdtune_test_lora_roundtrip.safetensors";
    for (int d = 0; d < 3; d++) {
        CHECK_MSG(t, sdt_lora_save(m.e, &a, path, dtypes[d], NULL, &error) == 0, "%s", error ? error : "");
        CHECK_MSG(t, sdt_lora_load(m.e, &b, path, &error) == 0, "%s", error ? error : "");
        size_t mismatches = 0;
        for (size_t i = 0; i < a.count; i++) {
            const sdt_adapter *x = &a.modules[i].adapter, *y = &b.modules[i].adapter;
            size_t nd = (size_t)sdt_tensor_numel(&x->down), nu = (size_t)sdt_tensor_numel(&x->up);
            const float *xd = x->down.data, *yd = y->down.data, *xu = x->up.data, *yu = y->up.data;
            for (size_t j = 0; j < nd; j++)
                mismatches += round_to(dtypes[d], xd[j]) != yd[j];
            for (size_t j = 0; j < nu; j++)
                mismatches += round_to(dtypes[d], xu[j]) != yu[j];
            mismatches += b.modules[i].alpha != round_to(dtypes[d], a.modules[i].alpha);
            mismatches += y->scale != b.modules[i].alpha / (float)y->rank;
        }
        CHECK_MSG(t, mismatches == 0, "%s: %zu values differ", sdt_dtype_name(dtypes[d]), mismatches);
    }
    CHECK(t, b.modules[3].alpha == 3.0f && b.modules[3].adapter.scale == 3.0f / 4);

    /* The file: 3 tensors per module, conv downs as [R, C, KH, KW] (checked element by element), alpha
     * 0-d, the dtype of the save. */
    sdt_safetensors *st = NULL;
    CHECK(t, sdt_lora_save(m.e, &a, path, SDT_F32, NULL, &error) == 0);
    CHECK(t, sdt_safetensors_open(path, &st, &error) == 0);
    if (st) {
        CHECK(t, sdt_safetensors_count(st) == 3 * a.count);
        const sdt_lora_module *conv = find_module(&a, "lora_unet_down_blocks_1_resnets_0_conv1");
        const sdt_st_tensor *down =
            sdt_safetensors_find(st, "lora_unet_down_blocks_1_resnets_0_conv1.lora_down.weight");
        const sdt_st_tensor *alpha =
            sdt_safetensors_find(st, "lora_unet_down_blocks_1_resnets_0_conv1.alpha");
        CHECK(t, conv && down && alpha && down->ndim == 4 && alpha->ndim == 0 && alpha->dtype == SDT_F32);
        if (conv && down && down->ndim == 4) {
            int64_t r = down->shape[0], c = down->shape[1], k = down->shape[2];
            CHECK(t, r == 2 && c == 32 && k == 3 && down->shape[3] == 3);
            const float *engine = conv->adapter.down.data; /* [R, K, K, C] */
            size_t bad = 0;
            for (int64_t oi = 0; oi < r; oi++)
                for (int64_t ci = 0; ci < c; ci++)
                    for (int64_t yi = 0; yi < k; yi++)
                        for (int64_t xi = 0; xi < k; xi++) {
                            float v;
                            memcpy(&v, (const char *)down->data + 4 * (((oi * c + ci) * k + yi) * k + xi), 4);
                            bad += v != engine[((oi * k + yi) * k + xi) * c + ci];
                        }
            CHECK_MSG(t, bad == 0, "%zu conv elements misplaced", bad);
        }
        const sdt_st_tensor *up =
            sdt_safetensors_find(st, "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight");
        CHECK(t, up && up->ndim == 4 && up->shape[0] == 32 && up->shape[1] == 4 && up->shape[2] == 1);
        sdt_safetensors_close(st);
    }
    sdt_lora_free(m.e, &b);
    sdt_model_free(m.e, &other);
    sdt_lora_free(m.e, &a);
    remove(path);
    free(error);
done:
    tiny_close(&m);
}

/* Writes the tensors of src except skip (NULL: none), with replace_shape for the tensor named reshape and
 * an extra tensor named extra (NULL: none). */
static int rewrite(const char *src, const char *dst, const char *skip, const char *reshape, const char *extra)
{
    sdt_safetensors *st = NULL;
    char *error = NULL;
    if (sdt_safetensors_open(src, &st, &error) != 0) {
        free(error);
        return -1;
    }
    size_t n = sdt_safetensors_count(st), k = 0;
    sdt_st_write_tensor *w = calloc(n + 1, sizeof *w);
    static const int64_t odd_shape[2] = {3, 5};
    static const float zeros[15];
    for (size_t i = 0; i < n; i++) {
        const sdt_st_tensor *s = sdt_safetensors_tensor(st, i);
        if (skip && strcmp(s->name, skip) == 0)
            continue;
        w[k] = (sdt_st_write_tensor){
            .name = s->name, .dtype = s->dtype, .ndim = s->ndim, .shape = s->shape, .data = s->data};
        if (reshape && strcmp(s->name, reshape) == 0)
            w[k] = (sdt_st_write_tensor){
                .name = s->name, .dtype = SDT_F32, .ndim = 2, .shape = odd_shape, .data = zeros};
        k++;
    }
    if (extra)
        w[k++] = (sdt_st_write_tensor){
            .name = extra, .dtype = SDT_F32, .ndim = 2, .shape = odd_shape, .data = zeros};
    int rc = sdt_safetensors_write(dst, w, k, NULL, 0, &error);
    free(error);
    free(w);
    sdt_safetensors_close(st);
    return rc;
}

static void load_errors(test_state *t)
{
    tiny m;
    if (tiny_open(t, &m) != 0)
        goto done;
    sdt_lora_options o = locon_options(5);
    sdt_lora_network a;
    char *error = NULL;
    CHECK(t, sdt_lora_create(m.e, &m.model, &o, &a, &error) == 0);
    const char *good = TMP_DIR "/sdtune_test_lora_good.safetensors";
    const char *bad = TMP_DIR "/sdtune_test_lora_bad.safetensors";
    CHECK(t, sdt_lora_save(m.e, &a, good, SDT_F16, NULL, &error) == 0);
    const char *key = "lora_te_text_model_encoder_layers_1_mlp_fc2.lora_up.weight";

    CHECK(t, rewrite(good, bad, key, NULL, NULL) == 0);
    CHECK(t, sdt_lora_load(m.e, &a, bad, &error) == -1);
    CHECK_STR_CONTAINS(t, error, key);
    CHECK_STR_CONTAINS(t, error, "missing");
    CHECK_STR_CONTAINS(t, error, bad);
    free(error);
    error = NULL;

    CHECK(t, rewrite(good, bad, NULL, key, NULL) == 0);
    CHECK(t, sdt_lora_load(m.e, &a, bad, &error) == -1);
    CHECK_STR_CONTAINS(t, error, key);
    CHECK_STR_CONTAINS(t, error, "is [3, 5], expected [48, 4]");
    free(error);
    error = NULL;

    const char *extra = "lora_unet_conv_in.lora_down.weight";
    CHECK(t, rewrite(good, bad, NULL, NULL, extra) == 0);
    CHECK(t, sdt_lora_load(m.e, &a, bad, &error) == -1);
    CHECK_STR_CONTAINS(t, error, extra);
    CHECK_STR_CONTAINS(t, error, "1 unexpected");
    free(error);
    error = NULL;

    /* A network without LoCon cannot take a LoCon file (the conv modules are extra). */
    sdt_lora_options plain = o;
    plain.conv_dim = 0;
    sdt_lora_free(m.e, &a);
    CHECK(t, sdt_lora_create(m.e, &m.model, &plain, &a, &error) == 0);
    CHECK(t, sdt_lora_load(m.e, &a, good, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "unexpected");
    free(error);
    error = NULL;
    CHECK(t, sdt_lora_load(m.e, &a, TMP_DIR "/sdtune_test_lora_none.safetensors", &error) == -1);
    CHECK_STR_CONTAINS(t, error, "sdtune_test_lora_none.safetensors");
    free(error);
    sdt_lora_free(m.e, &a);
    remove(good);
    remove(bad);
done:
    tiny_close(&m);
}

static const char sample_config[] = "[folders]\n"
                                    "output_name = \"my_lora\"\n"
                                    "[model]\n"
                                    "pretrained_model_name_or_path = \"/models/v1-5-pruned.safetensors\"\n"
                                    "[dataset]\n"
                                    "resolution = [512, 768]\n"
                                    "[optimizer]\n"
                                    "learning_rate = 0.0001\n"
                                    "unet_lr = 0.0002\n"
                                    "[network]\n"
                                    "network_dim = 16\n"
                                    "network_alpha = 8\n"
                                    "conv_dim = 4\n"
                                    "conv_alpha = 1\n"
                                    "[noise_loss]\n"
                                    "noise_offset = 0.05\n"
                                    "[metadata]\n"
                                    "metadata_author = \"someone\"\n";

static struct sdt_config *load_config(test_state *t, const char *text)
{
    sdt_diag_list diags;
    sdt_diag_list_init(&diags);
    struct sdt_config *cfg = sdt_config_load_text(text, strlen(text), "sample.toml", &diags);
    CHECK_MSG(t, cfg && sdt_diag_count(&diags, SDT_SEV_ERROR) == 0, "sample config has errors");
    if (sdt_diag_count(&diags, SDT_SEV_ERROR))
        sdt_diag_list_print(&diags, stderr);
    sdt_diag_list_free(&diags);
    return cfg;
}

static void expect_value(test_state *t, const sdt_kv_list *l, const char *key, const char *value)
{
    const char *v = sdt_kv_get(l, key);
    CHECK_MSG(t, v && strcmp(v, value) == 0, "%s = \"%s\", expected \"%s\"", key, v ? v : "(absent)", value);
}

static void metadata(test_state *t)
{
    struct sdt_config *cfg = load_config(t, sample_config);
    if (!cfg)
        return;
    sdt_lora_run_info info = {.session_id = "1234567890",
                              .training_started_at = 1700000000,
                              .training_finished_at = 1700003600,
                              .num_train_images = 40,
                              .num_batches_per_epoch = 40,
                              .num_epochs = 10,
                              .epoch = 10,
                              .steps = 400,
                              .max_train_steps = 400,
                              .dataset_dirs_json = "{\"10_cat\": {\"n_repeats\": 10, \"img_count\": 4}}",
                              .optimizer_text = "torch.optim.adamw.AdamW(weight_decay=0.01)",
                              .datetime_iso = "2023-11-14T22:13:20"};
    sdt_kv_list l = {0};
    char *error = NULL;
    CHECK(t, sdt_lora_metadata(cfg, NULL, &info, &l, &error) == 0);
    expect_value(t, &l, "ss_network_module", "networks.lora");
    expect_value(t, &l, "ss_network_dim", "16");
    expect_value(t, &l, "ss_network_alpha", "8.0");
    expect_value(t, &l, "ss_network_args", "{\"conv_dim\": \"4\", \"conv_alpha\": \"1.0\"}");
    expect_value(t, &l, "ss_v2", "False");
    expect_value(t, &l, "ss_base_model_version", "sd_v1");
    expect_value(t, &l, "ss_learning_rate", "0.0001");
    expect_value(t, &l, "ss_unet_lr", "0.0002");
    expect_value(t, &l, "ss_text_encoder_lr", "None");
    expect_value(t, &l, "ss_noise_offset", "0.05");
    expect_value(t, &l, "ss_min_snr_gamma", "None");
    expect_value(t, &l, "ss_output_name", "my_lora");
    expect_value(t, &l, "ss_session_id", "1234567890");
    expect_value(t, &l, "ss_training_started_at", "1700000000.0");
    expect_value(t, &l, "ss_steps", "400");
    expect_value(t, &l, "ss_seed", "42");
    expect_value(t, &l, "ss_gradient_checkpointing", "False");
    expect_value(t, &l, "ss_cache_latents", "True");
    expect_value(t, &l, "ss_resolution", "(512, 768)");
    expect_value(t, &l, "ss_sd_model_name", "v1-5-pruned.safetensors");
    expect_value(t, &l, "ss_optimizer", "torch.optim.adamw.AdamW(weight_decay=0.01)");
    expect_value(t, &l, "ss_dataset_dirs", info.dataset_dirs_json);
    expect_value(t, &l, "ss_training_comment", "None");
    expect_value(t, &l, "ss_max_grad_norm", "1.0");
    expect_value(t, &l, "modelspec.sai_model_spec", "1.0.1");
    expect_value(t, &l, "modelspec.architecture", "stable-diffusion-v1/lora");
    expect_value(t, &l, "modelspec.implementation", "diffusers");
    expect_value(t, &l, "modelspec.title", "my_lora");
    expect_value(t, &l, "modelspec.resolution", "512x768");
    expect_value(t, &l, "modelspec.prediction_type", "epsilon");
    expect_value(t, &l, "modelspec.date", "2023-11-14T22:13:20");
    expect_value(t, &l, "modelspec.author", "someone");
    CHECK(t, sdt_kv_get(&l, "modelspec.license") == NULL);
    static const char *const present[] = {"ss_training_finished_at",
                                          "ss_num_train_images",
                                          "ss_num_reg_images",
                                          "ss_lr_scheduler",
                                          "ss_mixed_precision",
                                          "ss_clip_skip",
                                          "ss_multires_noise_discount",
                                          "ss_zero_terminal_snr",
                                          "ss_loss_type",
                                          "ss_huber_c",
                                          "ss_fp8_base",
                                          "ss_flip_aug",
                                          "ss_bucket_no_upscale",
                                          "ss_keep_tokens",
                                          "ss_tag_frequency",
                                          "ss_total_batch_size"};
    for (size_t i = 0; i < sizeof present / sizeof present[0]; i++)
        CHECK_MSG(t, sdt_kv_get(&l, present[i]) != NULL, "no %s", present[i]);
    size_t before = l.count;
    sdt_kv_list_free(&l);
    sdt_config_free(cfg);

    /* no_metadata: the network keys and modelspec only. */
    char text[2048];
    snprintf(text, sizeof text, "%s[saving]\nno_metadata = true\n", sample_config);
    cfg = load_config(t, text);
    if (!cfg)
        return;
    CHECK(t, sdt_lora_metadata(cfg, NULL, &info, &l, &error) == 0);
    size_t ss = 0;
    for (size_t i = 0; i < l.count; i++)
        ss += strncmp(l.items[i].key, "ss_", 3) == 0;
    CHECK_MSG(t, ss == 6, "%zu ss_ keys with no_metadata", ss);
    CHECK(t, sdt_kv_get(&l, "ss_learning_rate") == NULL && sdt_kv_get(&l, "modelspec.title") != NULL);
    CHECK(t, l.count < before);
    sdt_kv_list_free(&l);
    sdt_config_free(cfg);
    free(error);
}

static void python_floats(test_state *t)
{
    static const struct {
        double v;
        const char *text;
    } cases[] = {{0.0001, "0.0001"},  {1e-05, "1e-05"},
                 {16, "16.0"},        {0.05, "0.05"},
                 {1e16, "1e+16"},     {123.25, "123.25"},
                 {0, "0.0"},          {-2.5, "-2.5"},
                 {1.5e-7, "1.5e-07"}, {1234567890123456.0, "1234567890123456.0"},
                 {0.1, "0.1"},        {1.0 / 3, "0.3333333333333333"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[64];
        sdt_lora_python_float(cases[i].v, buf, sizeof buf);
        CHECK_MSG(t, strcmp(buf, cases[i].text) == 0, "%s, expected %s", buf, cases[i].text);
    }
}

/* kohya's hashes: sshs_model_hash is the sha256 of the data after the header, which the final file shares
 * with the ss_*-only file kohya hashes; the legacy hash of a file under 1 MiB is that of nothing. Larger
 * files are checked against kohya's own function by tools/train/check_lora_file.py. */
static void hashes(test_state *t)
{
    tiny m;
    if (tiny_open(t, &m) != 0)
        goto done;
    sdt_lora_options o = locon_options(5);
    sdt_lora_network a;
    char *error = NULL;
    CHECK(t, sdt_lora_create(m.e, &m.model, &o, &a, &error) == 0);
    fill_ups(&a);
    sdt_kv_list l = {0};
    CHECK(t, sdt_kv_set(&l, "ss_network_dim", "%d", 4) == 0 && sdt_kv_set(&l, "modelspec.title", "x") == 0);
    CHECK(t, sdt_kv_set(&l, "ss_network_dim", "%s", "4") == 0 && l.count == 2);
    const char *path = TMP_DIR "/sdtune_test_lora_hash.safetensors";
    CHECK_MSG(t, sdt_lora_save(m.e, &a, path, SDT_F16, &l, &error) == 0, "%s", error ? error : "");
    sdt_safetensors *st = NULL;
    CHECK(t, sdt_safetensors_open(path, &st, &error) == 0);
    if (st) {
        const char *model_hash = sdt_safetensors_metadata(st, "sshs_model_hash");
        const char *legacy = sdt_safetensors_metadata(st, "sshs_legacy_hash");
        FILE *f = fopen(path, "rb");
        char *bytes = malloc(4 << 20);
        size_t n = f && bytes ? fread(bytes, 1, 4 << 20, f) : 0;
        if (f)
            fclose(f);
        uint64_t header = sdt_safetensors_data_start(st);
        char hex[65];
        sdt_sha256_hex(bytes + header, n - header, hex);
        CHECK(t, n > header && n < 0x100000);
        CHECK_MSG(t, model_hash && strcmp(model_hash, hex) == 0, "%s vs %s", model_hash ? model_hash : "-",
                  hex);
        CHECK(t, legacy && strcmp(legacy, "e3b0c442") == 0);
        CHECK(t, sdt_safetensors_metadata(st, "modelspec.title") &&
                     sdt_safetensors_metadata(st, "ss_network_dim"));
        free(bytes);
        sdt_safetensors_close(st);
    }
    /* The F16 file the checker tool reads (tools/train/check_lora_file.py). */
    CHECK(t, sdt_lora_save(m.e, &a, TMP_DIR "/sdtune_test_lora_sd15_tiny.safetensors", SDT_F16, &l, &error) ==
                 0);
    sdt_lora_free(m.e, &a);

    /* Over 1 MiB: the legacy hash covers real bytes (tools/train/check_lora_file.py compares it with
     * kohya's function on this file). */
    o.network_dim = 32;
    o.conv_dim = 16;
    const char *big = TMP_DIR "/sdtune_test_lora_sd15_tiny_big.safetensors";
    CHECK(t, sdt_lora_create(m.e, &m.model, &o, &a, &error) == 0);
    fill_ups(&a);
    /* With the full metadata: JSON values (escaped quotes) and non-ASCII text change the header's length,
     * which the legacy hash depends on. */
    struct sdt_config *cfg = load_config(t, sample_config);
    sdt_lora_run_info info = {.session_id = "42",
                              .dataset_dirs_json =
                                  "{\"10_caf\u00e9\": {\"n_repeats\": 10, \"img_count\": 4}}",
                              .tag_frequency_json = "{\"10_caf\u00e9\": {\"caf\u00e9 \\\"au lait\\\"\": 3}}"};
    CHECK(t, cfg && sdt_lora_metadata(cfg, &a, &info, &l, &error) == 0);
    CHECK(t, sdt_kv_set(&l, "modelspec.description", "%s", "caf\xc3\xa9") == 0);
    sdt_config_free(cfg);
    CHECK(t, sdt_lora_save(m.e, &a, big, SDT_F32, &l, &error) == 0);
    st = NULL;
    CHECK(t, sdt_safetensors_open(big, &st, &error) == 0);
    if (st) {
        const sdt_st_tensor *last = sdt_safetensors_tensor(st, sdt_safetensors_count(st) - 1);
        CHECK(t, sdt_safetensors_data_start(st) + last->offset + last->nbytes > 0x110000);
        const char *legacy = sdt_safetensors_metadata(st, "sshs_legacy_hash");
        CHECK(t, legacy && strlen(legacy) == 8 && strcmp(legacy, "e3b0c442") != 0);
        sdt_safetensors_close(st);
    }
    sdt_kv_list_free(&l);
    sdt_lora_free(m.e, &a);
    remove(path);
    free(error);
done:
    tiny_close(&m);
}

/* A fresh LoRA (up = 0) leaves the UNet's output bit for bit unchanged; a trained one changes it. */
static void fresh_lora_keeps_output(test_state *t)
{
    tiny m;
    sdt_unet *u = NULL;
    sdt_tensor x = {0}, ts = {0}, ctx = {0}, base = {0}, with = {0}, changed = {0};
    if (tiny_open(t, &m) != 0)
        goto done;
    char *error = NULL;
    if (sdt_unet_create(&m.arch->unet, &m.model.unet, &u, &error) != 0) {
        CHECK_MSG(t, 0, "%s", error);
        free(error);
        goto done;
    }
    CHECK(t, sdt_act_alloc(m.e, &x, SDT_F32, 4, (int64_t[]){1, 8, 8, 4}) == 0 &&
                 sdt_act_alloc(m.e, &ts, SDT_F32, 1, (int64_t[]){1}) == 0 &&
                 sdt_act_alloc(m.e, &ctx, SDT_F32, 3, (int64_t[]){1, 3, 48}) == 0);
    float *xv = x.data, *cv = ctx.data;
    for (int i = 0; i < 256; i++)
        xv[i] = (float)sin(i * 0.7);
    for (int i = 0; i < 144; i++)
        cv[i] = (float)cos(i * 0.3);
    ((float *)ts.data)[0] = 500.0f;
    CHECK(t, sdt_unet_forward(m.e, u, &base, &x, &ts, &ctx, NULL, 0) == 0);
    sdt_lora_options o = locon_options(5);
    sdt_lora_network net;
    CHECK(t, sdt_lora_create(m.e, &m.model, &o, &net, &error) == 0);
    sdt_lora_set_training(&net, 0, 0);
    CHECK(t, sdt_unet_forward(m.e, u, &with, &x, &ts, &ctx, NULL, 0) == 0);
    CHECK(t, base.data && with.data && memcmp(base.data, with.data, sdt_tensor_bytes(&base)) == 0);
    fill_ups(&net);
    CHECK(t, sdt_unet_forward(m.e, u, &changed, &x, &ts, &ctx, NULL, 0) == 0);
    CHECK(t, base.data && changed.data && memcmp(base.data, changed.data, sdt_tensor_bytes(&base)) != 0);
    sdt_lora_free(m.e, &net);
done:
    if (m.e) {
        sdt_act_free(m.e, &x);
        sdt_act_free(m.e, &ts);
        sdt_act_free(m.e, &ctx);
        sdt_act_free(m.e, &base);
        sdt_act_free(m.e, &with);
        sdt_act_free(m.e, &changed);
        sdt_unet_free(m.e, u);
    }
    tiny_close(&m);
}

TEST_MAIN("lora", TEST(counts_and_names_sd15), TEST(init_statistics), TEST(training_state_and_optimizer),
          TEST(save_load_round_trip), TEST(load_errors), TEST(metadata), TEST(python_floats), TEST(hashes),
          TEST(fresh_lora_keeps_output))
