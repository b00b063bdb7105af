/* The optimizer on a training engine off the CPU (sdt_optim_use_engine), here the guarded test backend
 * whose memory the host may not touch: AdamW, Lion and SGD with gradient scaling, clipping and zeroing
 * must give the values and state of the host optimizer bit for bit, the state list and the value copies
 * must go through download and upload, and the host-only optimizers must refuse the engine. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optim.h"
#include "unit/check.h"

#define ENTRIES 3
#define STEPS 4

static const size_t sizes[ENTRIES] = {37, 1000, 5};
static const int groups_of[ENTRIES] = {0, 1, 1};

/* A deterministic value in [-1, 1) for (seed, index). */
static float pattern(uint32_t seed, size_t i)
{
    uint32_t x = seed * 2654435761u + (uint32_t)i * 40503u + 17u;
    x ^= x >> 13;
    x *= 0x5bd1e995u;
    x ^= x >> 15;
    return (float)(x % 20001u) / 10000.0f - 1.0f;
}

static sdt_tensor flat(float *data, size_t count, sdt_device_kind device)
{
    int64_t shape[1] = {(int64_t)count};
    sdt_tensor t = sdt_tensor_view(data, SDT_F32, 1, shape);
    t.device = device;
    return t;
}

typedef struct side {
    sdt_optimizer opt;
    sdt_engine *engine;                    /* NULL for the host optimizer */
    float *value[ENTRIES], *grad[ENTRIES]; /* [sizes[i]] each: host memory, or the engine's */
} side;

static void put(side *s, float *dst, const float *host, size_t count)
{
    if (!s->engine) {
        memcpy(dst, host, count * sizeof *host);
        return;
    }
    sdt_tensor t = flat(dst, count, sdt_engine_device(s->engine));
    (void)sdt_engine_upload(s->engine, &t, host, count * sizeof *host);
}

static void get(side *s, float *host, float *src, size_t count)
{
    if (!s->engine) {
        memcpy(host, src, count * sizeof *host);
        return;
    }
    sdt_tensor t = flat(src, count, sdt_engine_device(s->engine));
    (void)sdt_engine_download(s->engine, host, &t, count * sizeof *host);
}

static int side_init(test_state *t, side *s, const sdt_optim_config *cfg, sdt_engine *engine)
{
    memset(s, 0, sizeof *s);
    s->engine = engine;
    char *error = NULL;
    CHECK_MSG(t, sdt_optim_init(&s->opt, cfg, 2, &error) == 0, "%s", error ? error : "");
    if (engine)
        CHECK_MSG(t, sdt_optim_use_engine(&s->opt, engine, &error) == 0, "%s", error ? error : "");
    float host[1000]; /* [largest entry] */
    for (int i = 0; i < ENTRIES; i++) {
        s->value[i] = engine ? sdt_engine_alloc(engine, sizes[i] * sizeof(float)) : malloc(sizes[i] * 4);
        s->grad[i] = engine ? sdt_engine_alloc(engine, sizes[i] * sizeof(float)) : malloc(sizes[i] * 4);
        for (size_t j = 0; j < sizes[i]; j++)
            host[j] = pattern(1u + (uint32_t)i, j);
        put(s, s->value[i], host, sizes[i]);
        char name[16];
        snprintf(name, sizeof name, "w%d", i);
        CHECK_MSG(t,
                  sdt_optim_add(&s->opt, name, s->value[i], s->grad[i], sizes[i], groups_of[i], &error) == 0,
                  "%s", error ? error : "");
    }
    free(error);
    return t->failures;
}

static void side_free(side *s)
{
    sdt_optim_free(&s->opt);
    for (int i = 0; i < ENTRIES; i++) {
        if (s->engine) {
            sdt_engine_dealloc(s->engine, s->value[i]);
            sdt_engine_dealloc(s->engine, s->grad[i]);
        } else {
            free(s->value[i]);
            free(s->grad[i]);
        }
    }
}

/* One accumulation-style step: gradients set, halved, clipped to a norm that binds, the update, zeroed. */
static double side_step(test_state *t, side *s, int step)
{
    float host[1000]; /* [largest entry] */
    for (int i = 0; i < ENTRIES; i++) {
        for (size_t j = 0; j < sizes[i]; j++)
            host[j] = pattern(100u + (uint32_t)(step * ENTRIES + i), j);
        put(s, s->grad[i], host, sizes[i]);
    }
    sdt_optim_scale_grads(&s->opt, 0.5f);
    double norm = 0.0;
    sdt_optim_clip_grad_norm(&s->opt, 2.0, &norm);
    char *error = NULL;
    CHECK(t, sdt_optim_set_lr(&s->opt, 0, 1e-2 * (step + 1), &error) == 0);
    CHECK(t, sdt_optim_set_lr(&s->opt, 1, 3e-3, &error) == 0);
    CHECK_MSG(t, sdt_optim_step(&s->opt, &error) == 0, "%s", error ? error : "");
    free(error);
    sdt_optim_zero_grads(&s->opt);
    return norm;
}

static void compare_kind(test_state *t, sdt_optim_kind kind, int nesterov)
{
    sdt_optim_config cfg;
    sdt_optim_config_default(&cfg, kind);
    cfg.weight_decay = 0.05;
    if (kind == SDT_OPTIM_SGD) {
        cfg.momentum = 0.9;
        cfg.nesterov = nesterov;
    }
    sdt_engine_options options = {.device = SDT_DEVICE_GUARDED, .threads = 1};
    sdt_engine *engine = NULL;
    char *error = NULL;
    CHECK_MSG(t, sdt_engine_create(&options, &engine, &error) == 0, "%s", error ? error : "");
    free(error);
    if (!engine)
        return;
    side host, device;
    if (side_init(t, &host, &cfg, NULL) == 0 && side_init(t, &device, &cfg, engine) == 0) {
        for (int step = 0; step < STEPS; step++) {
            double a = side_step(t, &host, step), b = side_step(t, &device, step);
            CHECK_MSG(t, memcmp(&a, &b, sizeof a) == 0, "%s step %d: norm %.17g on the host, %.17g guarded",
                      sdt_optim_kind_name(kind), step, a, b);
        }
        float x[1000], y[1000]; /* [largest entry] */
        for (int i = 0; i < ENTRIES; i++) {
            get(&host, x, host.value[i], sizes[i]);
            get(&device, y, device.value[i], sizes[i]);
            CHECK_MSG(t, memcmp(x, y, sizes[i] * sizeof *x) == 0, "%s: values of w%d differ",
                      sdt_optim_kind_name(kind), i);
            get(&device, y, device.grad[i], sizes[i]);
            int zero = 1;
            for (size_t j = 0; j < sizes[i]; j++)
                zero &= y[j] == 0.0f;
            CHECK_MSG(t, zero, "%s: gradient of w%d not zeroed", sdt_optim_kind_name(kind), i);
            CHECK(t, sdt_optim_value_download(&device.opt, (size_t)i, y, &error) == 0);
            CHECK(t, memcmp(x, y, sizes[i] * sizeof *x) == 0);
        }
        /* The state list downloads; restoring a scaled copy uploads it. */
        sdt_optim_state a = {0}, b = {0};
        CHECK(t, sdt_optim_state_list(&host.opt, &a, &error) == 0);
        CHECK(t, sdt_optim_state_list(&device.opt, &b, &error) == 0);
        CHECK(t, a.count == b.count && a.count > 0);
        for (size_t k = 0; k < a.count && k < b.count; k++) {
            CHECK(t, strcmp(a.items[k].name, b.items[k].name) == 0 && a.items[k].count == b.items[k].count);
            CHECK_MSG(t, memcmp(a.items[k].data, b.items[k].data, a.items[k].count * sizeof(float)) == 0,
                      "%s: state %s differs", sdt_optim_kind_name(kind), a.items[k].name);
        }
        if (b.count > 0) {
            float *doubled = malloc(b.items[0].count * sizeof *doubled); /* [count] */
            for (size_t j = 0; j < b.items[0].count; j++)
                doubled[j] = 2.0f * b.items[0].data[j];
            CHECK(t,
                  sdt_optim_state_set(&device.opt, b.items[0].name, doubled, b.items[0].count, &error) == 0);
            sdt_optim_state c = {0};
            CHECK(t, sdt_optim_state_list(&device.opt, &c, &error) == 0);
            CHECK(t, c.count > 0 && memcmp(c.items[0].data, doubled, b.items[0].count * sizeof(float)) == 0);
            sdt_optim_state_free(&c);
            free(doubled);
        }
        sdt_optim_state_free(&a);
        sdt_optim_state_free(&b);
        for (size_t j = 0; j < sizes[0]; j++)
            x[j] = pattern(999u, j);
        CHECK(t, sdt_optim_value_upload(&device.opt, 0, x, &error) == 0);
        get(&device, y, device.value[0], sizes[0]);
        CHECK(t, memcmp(x, y, sizes[0] * sizeof *x) == 0);
        free(error);
    }
    side_free(&host);
    side_free(&device);
    sdt_engine_free(engine);
}

static void test_adamw(test_state *t) { compare_kind(t, SDT_OPTIM_ADAMW, 0); }
static void test_lion(test_state *t) { compare_kind(t, SDT_OPTIM_LION, 0); }
static void test_sgd(test_state *t) { compare_kind(t, SDT_OPTIM_SGD, 0); }
static void test_sgd_nesterov(test_state *t) { compare_kind(t, SDT_OPTIM_SGD, 1); }

/* The host-only optimizers name themselves when handed an engine off the CPU, and accept a CPU one. */
static void test_host_only_refuse(test_state *t)
{
    const sdt_optim_kind kinds[] = {SDT_OPTIM_ADAMW8BIT, SDT_OPTIM_ADAFACTOR, SDT_OPTIM_PRODIGY};
    sdt_engine_options guarded = {.device = SDT_DEVICE_GUARDED, .threads = 1};
    sdt_engine_options cpu = {.device = SDT_DEVICE_CPU, .threads = 1};
    sdt_engine *g = NULL, *c = NULL;
    CHECK(t, sdt_engine_create(&guarded, &g, NULL) == 0 && sdt_engine_create(&cpu, &c, NULL) == 0);
    for (size_t k = 0; g && c && k < sizeof kinds / sizeof kinds[0]; k++) {
        sdt_optim_config cfg;
        sdt_optim_config_default(&cfg, kinds[k]);
        sdt_optimizer o;
        char *error = NULL;
        CHECK(t, sdt_optim_init(&o, &cfg, 1, &error) == 0);
        CHECK(t, sdt_optim_use_engine(&o, g, &error) != 0);
        CHECK_STR_CONTAINS(t, error ? error : "", sdt_optim_kind_name(kinds[k]));
        CHECK_STR_CONTAINS(t, error ? error : "", "host only");
        free(error);
        error = NULL;
        CHECK_MSG(t, sdt_optim_use_engine(&o, c, &error) == 0, "%s", error ? error : "");
        free(error);
        sdt_optim_free(&o);
    }
    sdt_engine_free(g);
    sdt_engine_free(c);
}

TEST_MAIN("optim_device", TEST(test_adamw), TEST(test_lion), TEST(test_sgd), TEST(test_sgd_nesterov),
          TEST(test_host_only_refuse))
