/* Backend comparison of sdt_optimizer_update: AdamW, Lion and SGD over lists of tensors of mixed sizes
 * (more tensors than one CUDA launch takes, so the list is cut into chunks), with BF16 and F16 copies, and
 * BF16 / F16 weights without masters updated in place (full_bf16 / full_fp16) with F32 or half gradients. The
 * backends are written to agree exactly (no contraction, the same rounding hash), so the comparison is
 * bitwise: any difference is a bug, not a tolerance question. */
#include "optimizer_cases.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../splitmix64.h"
#include "sdtune/dtype.h"

enum { GUARD_BYTES = 256, STEPS = 3, MAX_TENSORS = 80 };
static const unsigned char GUARD_PATTERN = 0x5A;

typedef struct optimizer_case {
    const char *name;
    sdt_optimizer_update_kind kind;
    int tensors;
    sdt_dtype copies; /* SDT_F32: no copies */
    sdt_dtype params; /* SDT_F32 masters, or BF16 / F16 weights without masters (full_bf16 / full_fp16) */
    sdt_dtype grads;
} optimizer_case;

static const optimizer_case cases[] = {
    {"optimizer_update adamw tensors=5 copies=bf16", SDT_UPDATE_ADAMW, 5, SDT_BF16, SDT_F32, SDT_F32},
    {"optimizer_update adamw tensors=70 copies=f16", SDT_UPDATE_ADAMW, 70, SDT_F16, SDT_F32, SDT_F32},
    {"optimizer_update lion tensors=5 copies=bf16", SDT_UPDATE_LION, 5, SDT_BF16, SDT_F32, SDT_F32},
    {"optimizer_update lion tensors=3 copies=none", SDT_UPDATE_LION, 3, SDT_F32, SDT_F32, SDT_F32},
    {"optimizer_update sgd_nesterov tensors=5 copies=f16", SDT_UPDATE_SGD, 5, SDT_F16, SDT_F32, SDT_F32},
    {"optimizer_update adamw tensors=70 params=bf16 grads=bf16", SDT_UPDATE_ADAMW, 70, SDT_F32, SDT_BF16,
     SDT_BF16},
    {"optimizer_update adamw tensors=5 params=f16 grads=f32", SDT_UPDATE_ADAMW, 5, SDT_F32, SDT_F16, SDT_F32},
    {"optimizer_update lion tensors=5 params=bf16 grads=f32", SDT_UPDATE_LION, 5, SDT_F32, SDT_BF16, SDT_F32},
    {"optimizer_update sgd_nesterov tensors=5 params=f16 grads=f16", SDT_UPDATE_SGD, 5, SDT_F32, SDT_F16,
     SDT_F16},
};

size_t optimizer_case_count(void) { return sizeof cases / sizeof cases[0]; }
const char *optimizer_case_name(size_t i) { return cases[i].name; }

/* Sizes cycle through one element, an odd count, a vector-width multiple and one past a block size; the
 * last tensor is large enough for many blocks and the CPU's threaded path. */
static int64_t tensor_size(const optimizer_case *c, int t)
{
    static const int64_t cycle[] = {1, 37, 320, 4099};
    return t == c->tensors - 1 ? 70001 : cycle[t % 4];
}

/* One buffer on an engine, between guard bytes. */
typedef struct guarded_buffer {
    void *block;
    sdt_tensor t;
    size_t bytes;
} guarded_buffer;

static sdt_tensor bytes_view(sdt_engine *e, void *data, size_t bytes)
{
    sdt_tensor v = sdt_tensor_view(data, SDT_U8, 1, (int64_t[]){(int64_t)bytes});
    v.device = sdt_engine_device(e);
    return v;
}

/* Allocates [n] of dtype and uploads host (n values of its size). */
static int buffer_make(sdt_engine *e, guarded_buffer *b, sdt_dtype dtype, int64_t n, const void *host)
{
    b->t = sdt_tensor_view(NULL, dtype, 1, &n);
    b->t.device = sdt_engine_device(e);
    b->bytes = sdt_tensor_bytes(&b->t);
    b->block = sdt_engine_alloc(e, b->bytes + 2 * GUARD_BYTES);
    if (!b->block)
        return -1;
    b->t.data = (char *)b->block + GUARD_BYTES;
    unsigned char pattern[GUARD_BYTES];
    memset(pattern, GUARD_PATTERN, sizeof pattern);
    sdt_tensor front = bytes_view(e, b->block, GUARD_BYTES);
    sdt_tensor back = bytes_view(e, (char *)b->t.data + b->bytes, GUARD_BYTES);
    sdt_tensor body = bytes_view(e, b->t.data, b->bytes);
    if (sdt_engine_upload(e, &front, pattern, GUARD_BYTES) != 0 ||
        sdt_engine_upload(e, &back, pattern, GUARD_BYTES) != 0 ||
        sdt_engine_upload(e, &body, host, b->bytes) != 0)
        return -1;
    return 0;
}

/* 1 when the guards hold their pattern. */
static int buffer_guards_intact(sdt_engine *e, const guarded_buffer *b)
{
    unsigned char seen[2 * GUARD_BYTES];
    sdt_tensor front = bytes_view(e, b->block, GUARD_BYTES);
    sdt_tensor back = bytes_view(e, (char *)b->t.data + b->bytes, GUARD_BYTES);
    if (sdt_engine_download(e, seen, &front, GUARD_BYTES) != 0 ||
        sdt_engine_download(e, seen + GUARD_BYTES, &back, GUARD_BYTES) != 0)
        return 0;
    for (size_t i = 0; i < sizeof seen; i++)
        if (seen[i] != GUARD_PATTERN)
            return 0;
    return 1;
}

/* The buffers of one case on one engine: params, grads, two states and copies, [tensors] each. */
typedef struct case_buffers {
    guarded_buffer buf[5][MAX_TENSORS];
    sdt_tensor views[5][MAX_TENSORS];
} case_buffers;

enum { PARAMS, GRADS, STATE0, STATE1, COPIES };

static void buffers_free(sdt_engine *e, case_buffers *b, int tensors)
{
    for (int k = 0; k < 5; k++)
        for (int t = 0; t < tensors; t++)
            if (b->buf[k][t].block)
                sdt_engine_dealloc(e, b->buf[k][t].block);
}

/* Fills the buffers of both engines with the same values: masters and gradients in [-1, 1), the second
 * moment positive, the copies zero. */
static int buffers_make(sdt_engine *e, case_buffers *b, const optimizer_case *c)
{
    memset(b, 0, sizeof *b);
    uint64_t seed = 0x0b71u + (uint64_t)c->tensors * 977u + (uint64_t)c->kind;
    for (int t = 0; t < c->tensors; t++) {
        int64_t n = tensor_size(c, t);
        float *values = malloc((size_t)n * sizeof *values);
        if (!values)
            return -1;
        for (int k = 0; k < 5; k++) {
            for (int64_t i = 0; i < n; i++) {
                double u = (double)(splitmix64_next(&seed) >> 11) / 9007199254740992.0;
                values[i] = k == STATE1 ? (float)(u * 1e-2) : k == COPIES ? 0.0f : (float)(2.0 * u - 1.0);
            }
            sdt_dtype dtype = k == COPIES   ? (c->copies == SDT_F32 ? SDT_BF16 : c->copies)
                              : k == PARAMS ? c->params
                              : k == GRADS  ? c->grads
                                            : SDT_F32;
            int rc;
            if (dtype != SDT_F32 && k != COPIES) {
                uint16_t *half = malloc((size_t)n * sizeof *half); /* [n] the values rounded to dtype */
                rc = half ? sdt_convert(half, dtype, values, SDT_F32, (size_t)n) : -1;
                if (rc == 0)
                    rc = buffer_make(e, &b->buf[k][t], dtype, n, half);
                free(half);
            } else if (k == COPIES) {
                uint16_t *zero = calloc((size_t)n, sizeof *zero);
                rc = zero ? buffer_make(e, &b->buf[k][t], dtype, n, zero) : -1;
                free(zero);
            } else {
                rc = buffer_make(e, &b->buf[k][t], dtype, n, values);
            }
            if (rc != 0) {
                free(values);
                return -1;
            }
            b->views[k][t] = b->buf[k][t].t;
        }
        free(values);
    }
    return 0;
}

/* The scalars of a few steps, as train/optim.c derives them. */
static void step_args(const optimizer_case *c, case_buffers *b, int step, sdt_optimizer_update_args *a)
{
    const double lr = 1e-3, wd = c->kind == SDT_UPDATE_SGD ? 1e-4 : 0.05, beta1 = 0.9, beta2 = 0.99;
    memset(a, 0, sizeof *a);
    a->kind = c->kind;
    a->decay = (float)(1.0 - lr * wd);
    a->b1 = (float)beta1;
    a->one_b1 = (float)(1.0 - beta1);
    a->b2 = (float)beta2;
    a->one_b2 = (float)(1.0 - beta2);
    a->step_size = (float)(-(lr / (1.0 - pow(beta1, step))));
    a->bc2_sqrt = (float)sqrt(1.0 - pow(beta2, step));
    a->eps = 1e-8f;
    a->neg_lr = (float)-lr;
    a->weight_decay = (float)wd;
    a->momentum = 0.9f;
    a->one_dampening = 1.0f;
    a->use_weight_decay = a->use_momentum = a->nesterov = 1;
    a->first_step = step == 1;
    a->seed = 1234;
    a->step = step;
    a->count = (size_t)c->tensors;
    a->params = b->views[PARAMS];
    a->grads = b->views[GRADS];
    a->state[0] = b->views[STATE0];
    a->state[1] = c->kind == SDT_UPDATE_ADAMW ? b->views[STATE1] : NULL;
    a->copies = c->copies == SDT_F32 ? NULL : b->views[COPIES];
}

static const char *const buffer_names[5] = {"param", "grad", "state0", "state1", "copy"};

/* Compares every buffer of the two engines byte for byte; writes the first difference into why. */
static int buffers_equal(sdt_engine *cpu, const case_buffers *want, sdt_engine *e, const case_buffers *got,
                         const optimizer_case *c, char *why, size_t why_size)
{
    for (int t = 0; t < c->tensors; t++)
        for (int k = 0; k < 5; k++) {
            const guarded_buffer *w = &want->buf[k][t], *g = &got->buf[k][t];
            unsigned char *a = malloc(w->bytes), *b = malloc(w->bytes);
            sdt_tensor wv = bytes_view(cpu, w->t.data, w->bytes), gv = bytes_view(e, g->t.data, g->bytes);
            int rc = a && b && sdt_engine_download(cpu, a, &wv, w->bytes) == 0 &&
                             sdt_engine_download(e, b, &gv, g->bytes) == 0
                         ? 0
                         : -1;
            if (rc != 0)
                snprintf(why, why_size, "download of %s %d failed", buffer_names[k], t);
            size_t elem = (size_t)sdt_dtype_bits(w->t.dtype) / 8;
            for (size_t i = 0; rc == 0 && i < w->bytes; i += elem)
                if (memcmp(a + i, b + i, elem) != 0) {
                    snprintf(why, why_size, "%s %d differs from the CPU at element %zu", buffer_names[k], t,
                             i / elem);
                    rc = -1;
                }
            if (rc == 0 && !buffer_guards_intact(e, g)) {
                snprintf(why, why_size, "%s %d: guard bytes changed", buffer_names[k], t);
                rc = -1;
            }
            free(a);
            free(b);
            if (rc != 0)
                return -1;
        }
    return 0;
}

int optimizer_case_run(sdt_engine *cpu, sdt_engine *e, size_t i)
{
    const optimizer_case *c = &cases[i];
    char why[256] = "";
    case_buffers *want = malloc(sizeof *want), *got = malloc(sizeof *got);
    int ok = want && got;
    if (!ok)
        snprintf(why, sizeof why, "out of memory");
    if (ok && (buffers_make(cpu, want, c) != 0 || buffers_make(e, got, c) != 0)) {
        snprintf(why, sizeof why, "could not allocate or upload the buffers");
        ok = 0;
    }
    for (int step = 1; ok && step <= STEPS; step++) {
        sdt_optimizer_update_args a;
        step_args(c, want, step, &a);
        if (sdt_optimizer_update(cpu, &a) != 0) {
            snprintf(why, sizeof why, "cpu: %s", sdt_engine_error(cpu));
            ok = 0;
            break;
        }
        step_args(c, got, step, &a);
        if (sdt_optimizer_update(e, &a) != 0 || sdt_engine_sync(e) != 0) {
            snprintf(why, sizeof why, "%s: %s", sdt_engine_backend_name(e), sdt_engine_error(e));
            ok = 0;
        }
    }
    if (ok && buffers_equal(cpu, want, e, got, c, why, sizeof why) != 0)
        ok = 0;
    printf("%s %s [bitwise, %d steps]%s%s\n", ok ? "ok  " : "FAIL", c->name, STEPS, ok ? "" : " -- ", why);
    if (want) {
        buffers_free(cpu, want, c->tensors);
        free(want);
    }
    if (got) {
        buffers_free(e, got, c->tensors);
        free(got);
    }
    return ok;
}
