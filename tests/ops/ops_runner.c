/* ops-runner: every numeric check of the ops, one line per case, a closing "N passed, N failed".
 *
 *   --mode grad    each backward against central finite differences of its forward (fp32)
 *   --mode golden  the CPU backend against PyTorch fixtures (tests/data/ops, tools/golden)
 *   --mode test    a backend against the CPU reference, per op and dtype (f32, f16, bf16), and the
 *                  optimizer update bit for bit (optimizer_cases.c)
 *
 * Every output and gradient buffer sits between guard bytes that must survive the call; non-finite values
 * are reported before any error metric. Errors are normalised MSE, sum (a - b)^2 / sum b^2, which does not
 * depend on the scale of the values. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../splitmix64.h"
#include "backend.h"
#include "device.h"
#include "op_defs.h"
#include "optimizer_cases.h"
#include "sdtune/safetensors.h"

enum { GUARD_BYTES = 512, FD_SAMPLES = 96 };
static const unsigned char GUARD_PATTERN = 0xA5;

typedef struct runner_options {
    const char *mode;
    const char *ops;       /* comma-separated op names, or NULL for all */
    const char *case_part; /* substring a case name must contain, or NULL */
    const char *backend;
    const char *dir;
    const char *inject; /* a fault to plant (gradient, overrun, nan, input), proving the checks catch it */
    int threads;
    int skip_without_device; /* exit 77 (a skipped test) when the build or the machine has no such device */
} runner_options;

typedef struct tally {
    int passed, failed, skipped;
} tally;

/* ---- random numbers (splitmix64): the same values on every machine ------------------------------------- */

typedef struct rng {
    uint64_t state;
} rng;

static uint64_t rng_next(rng *r) { return splitmix64_next(&r->state); }

static double rng_uniform(rng *r) { return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }

static float rng_normal(rng *r)
{
    double u1 = rng_uniform(r), u2 = rng_uniform(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static uint64_t hash_text(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* ---- guarded device buffers ---------------------------------------------------------------------------- */

typedef struct guarded {
    sdt_tensor t;
    void *block; /* GUARD | data | GUARD on the engine's device; NULL when the slot is absent */
    size_t bytes;
} guarded;

static int64_t shape_numel(const op_shape *s)
{
    int64_t n = 1;
    for (int i = 0; i < s->ndim; i++)
        n *= s->d[i];
    return n;
}

static int guarded_alloc(sdt_engine *e, guarded *g, const op_shape *shape, sdt_dtype dtype)
{
    memset(g, 0, sizeof *g);
    if (shape->ndim < 0)
        return 0;
    g->t = sdt_tensor_view(NULL, dtype, shape->ndim, shape->d);
    g->t.device = sdt_engine_device(e);
    g->bytes = sdt_tensor_bytes(&g->t);
    g->block = sdt_engine_alloc(e, g->bytes + 2 * GUARD_BYTES);
    if (!g->block)
        return -1;
    g->t.data = (char *)g->block + GUARD_BYTES;
    unsigned char pattern[GUARD_BYTES];
    memset(pattern, GUARD_PATTERN, sizeof pattern);
    sdt_tensor front = sdt_tensor_view(g->block, SDT_U8, 1, (int64_t[]){GUARD_BYTES});
    sdt_tensor back = sdt_tensor_view((char *)g->t.data + g->bytes, SDT_U8, 1, (int64_t[]){GUARD_BYTES});
    front.device = back.device = g->t.device;
    if (sdt_engine_upload(e, &front, pattern, GUARD_BYTES) != 0 ||
        sdt_engine_upload(e, &back, pattern, GUARD_BYTES))
        return -1;
    return 0;
}

static void guarded_free(sdt_engine *e, guarded *g)
{
    sdt_engine_dealloc(e, g->block);
    memset(g, 0, sizeof *g);
}

/* 1 when both guards still hold the pattern. */
static int guards_intact(sdt_engine *e, const guarded *g)
{
    if (!g->block)
        return 1;
    unsigned char seen[2 * GUARD_BYTES];
    sdt_tensor front = sdt_tensor_view(g->block, SDT_U8, 1, (int64_t[]){GUARD_BYTES});
    sdt_tensor back = sdt_tensor_view((char *)g->t.data + g->bytes, SDT_U8, 1, (int64_t[]){GUARD_BYTES});
    front.device = back.device = g->t.device;
    if (sdt_engine_download(e, seen, &front, GUARD_BYTES) != 0 ||
        sdt_engine_download(e, seen + GUARD_BYTES, &back, GUARD_BYTES) != 0)
        return 0;
    for (size_t i = 0; i < sizeof seen; i++)
        if (seen[i] != GUARD_PATTERN)
            return 0;
    return 1;
}

/* Host fp32 values in and out of a tensor of any compute dtype, or of an F8_E4M3 weight: its scale is
 * computed from the values (random_inputs makes them exactly representable with that scale). */
static int put_values(sdt_engine *e, guarded *g, const float *values)
{
    size_t n = (size_t)sdt_tensor_numel(&g->t);
    void *raw = malloc(g->bytes ? g->bytes : 1);
    if (!raw)
        return -1;
    if (g->t.dtype == SDT_F8_E4M3) {
        g->t.scale = sdt_f8e4m3_scale_for(values, n);
        sdt_f32_to_f8e4m3_scaled(raw, values, n, g->t.scale);
    } else {
        sdt_convert(raw, g->t.dtype, values, SDT_F32, n);
    }
    int rc = sdt_engine_upload(e, &g->t, raw, g->bytes);
    free(raw);
    return rc;
}

static int get_values(sdt_engine *e, const guarded *g, float *values)
{
    size_t n = (size_t)sdt_tensor_numel(&g->t);
    void *raw = malloc(g->bytes ? g->bytes : 1);
    if (!raw)
        return -1;
    int rc = sdt_engine_download(e, raw, &g->t, g->bytes);
    if (rc == 0 && g->t.dtype == SDT_F8_E4M3)
        sdt_f8e4m3_to_f32_scaled(values, raw, n, sdt_tensor_scale(&g->t));
    else if (rc == 0)
        sdt_convert(values, SDT_F32, raw, g->t.dtype, n);
    free(raw);
    return rc;
}

/* ---- one case: its dims, shapes and tensors on one engine ---------------------------------------------- */

typedef struct op_case {
    const op_def *def;
    op_dims dims;
    op_shape in_shape[OP_MAX_INPUTS], out_shape, saved_shape[OP_MAX_SAVED];
    int n_inputs;
    sdt_dtype dtype;
    guarded in[OP_MAX_INPUTS], out, saved[OP_MAX_SAVED], grad[OP_MAX_INPUTS], dout;
    op_tensors t;
} op_case;

static int has_grad(const op_case *c, int i)
{
    return c->def->backward && (c->def->differentiable >> i & 1) && c->in_shape[i].ndim >= 0;
}

/* Fills dims-derived shapes; -1 with why. */
static int case_shapes(op_case *c, char *why, size_t why_size)
{
    c->n_inputs = 0;
    while (c->n_inputs < OP_MAX_INPUTS && c->def->inputs[c->n_inputs])
        c->n_inputs++;
    char keys[128];
    snprintf(keys, sizeof keys, "%s", c->def->keys);
    for (char *save = NULL, *k = strtok_r(keys, " ", &save); k; k = strtok_r(NULL, " ", &save)) {
        if (!op_dims_has(&c->dims, k)) {
            snprintf(why, why_size, "%s needs the dimension %s", c->def->name, k);
            return -1;
        }
    }
    for (int i = 0; i < OP_MAX_INPUTS; i++)
        c->in_shape[i].ndim = -1;
    for (int i = 0; i < OP_MAX_SAVED; i++)
        c->saved_shape[i].ndim = -1;
    return c->def->shapes(&c->dims, c->in_shape, &c->out_shape, c->saved_shape, why, why_size);
}

static void case_free(sdt_engine *e, op_case *c)
{
    for (int i = 0; i < OP_MAX_INPUTS; i++) {
        guarded_free(e, &c->in[i]);
        guarded_free(e, &c->grad[i]);
    }
    for (int i = 0; i < OP_MAX_SAVED; i++)
        guarded_free(e, &c->saved[i]);
    guarded_free(e, &c->out);
    guarded_free(e, &c->dout);
}

/* Allocates every tensor of the case in c->dtype (saved statistics, and the slots the op keeps in F32, stay
 * F32) and wires up c->t. */
static int case_alloc(sdt_engine *e, op_case *c)
{
    const op_def *def = c->def;
    sdt_dtype out_type = def->out_f32 ? SDT_F32 : c->dtype;
    int rc = 0;
    memset(&c->t, 0, sizeof c->t);
    for (int i = 0; i < c->n_inputs; i++) {
        sdt_dtype type = (def->f8_inputs >> i & 1)    ? SDT_F8_E4M3
                         : (def->f32_inputs >> i & 1) ? SDT_F32
                                                      : c->dtype;
        rc |= guarded_alloc(e, &c->in[i], &c->in_shape[i], type);
        c->t.in[i] = c->in[i].t;
        c->t.present[i] = c->in_shape[i].ndim >= 0;
        if (has_grad(c, i)) {
            rc |= guarded_alloc(e, &c->grad[i], &c->in_shape[i], type);
            c->t.grad[i] = c->grad[i].t;
            c->t.grad_present[i] = 1;
        }
    }
    rc |= guarded_alloc(e, &c->out, &c->out_shape, out_type);
    rc |= guarded_alloc(e, &c->dout, &c->out_shape, out_type);
    c->t.out = c->out.t;
    c->t.dout = c->dout.t;
    for (int i = 0; i < def->saved; i++) {
        rc |= guarded_alloc(e, &c->saved[i], &c->saved_shape[i], SDT_F32);
        c->t.saved[i] = c->saved[i].t;
    }
    return rc ? -1 : 0;
}

static int case_guards_intact(sdt_engine *e, const op_case *c)
{
    int ok = guards_intact(e, &c->out) && guards_intact(e, &c->dout);
    for (int i = 0; i < OP_MAX_INPUTS; i++)
        ok = ok && guards_intact(e, &c->in[i]) && guards_intact(e, &c->grad[i]);
    for (int i = 0; i < OP_MAX_SAVED; i++)
        ok = ok && guards_intact(e, &c->saved[i]);
    return ok;
}

/* Host copies of a case's values, fp32. */
typedef struct host_values {
    float *in[OP_MAX_INPUTS];
    float *grad[OP_MAX_INPUTS];
    float *out, *dout;
} host_values;

static void host_free(host_values *h)
{
    for (int i = 0; i < OP_MAX_INPUTS; i++) {
        free(h->in[i]);
        free(h->grad[i]);
    }
    free(h->out);
    free(h->dout);
    memset(h, 0, sizeof *h);
}

static float *alloc_floats(const op_shape *s)
{
    int64_t n = s->ndim >= 0 ? shape_numel(s) : 0;
    return calloc((size_t)(n ? n : 1), sizeof(float));
}

static int host_alloc(const op_case *c, host_values *h)
{
    memset(h, 0, sizeof *h);
    int ok = 1;
    for (int i = 0; i < c->n_inputs; i++) {
        ok = ok && (h->in[i] = alloc_floats(&c->in_shape[i])) != NULL;
        ok = ok && (h->grad[i] = alloc_floats(&c->in_shape[i])) != NULL;
    }
    ok = ok && (h->out = alloc_floats(&c->out_shape)) != NULL;
    ok = ok && (h->dout = alloc_floats(&c->out_shape)) != NULL;
    if (!ok)
        host_free(h);
    return ok ? 0 : -1;
}

/* Values exactly representable in dtype, so two backends computing in different precisions see the same
 * inputs. */
static void round_to(float *values, int64_t n, sdt_dtype dtype)
{
    for (int64_t i = 0; i < n && dtype != SDT_F32; i++)
        values[i] = dtype == SDT_F16 ? sdt_f16_to_f32(sdt_f32_to_f16(values[i]))
                                     : sdt_bf16_to_f32(sdt_f32_to_bf16(values[i]));
}

/* Values an F8_E4M3 weight holds exactly, scale included: quantised with a scale of 8 significant bits, so
 * that amax lands on 448 * scale exactly and put_values, recomputing amax / 448, finds the same scale and
 * the same codes (every code * scale is then exact in fp32, as both backends dequantise it). */
static void round_to_f8(float *values, int64_t n)
{
    float scale = sdt_bf16_to_f32(sdt_f32_to_bf16(sdt_f8e4m3_scale_for(values, (size_t)n)));
    for (int64_t i = 0; i < n; i++)
        values[i] = sdt_f8e4m3_to_f32(sdt_f32_to_f8e4m3(values[i] / scale)) * scale;
}

static void random_inputs(const op_case *c, host_values *h, rng *r)
{
    for (int i = 0; i < c->n_inputs; i++) {
        if (c->in_shape[i].ndim < 0)
            continue;
        int64_t n = shape_numel(&c->in_shape[i]);
        for (int64_t j = 0; j < n; j++)
            h->in[i][j] = rng_normal(r);
        if (c->def->prepare)
            c->def->prepare(&c->dims, i, h->in[i], n);
        if (c->def->f8_inputs >> i & 1)
            round_to_f8(h->in[i], n);
        else if (!(c->def->f32_inputs >> i & 1))
            round_to(h->in[i], n, c->dtype);
    }
    int64_t n = shape_numel(&c->out_shape);
    for (int64_t j = 0; j < n; j++)
        h->dout[j] = rng_normal(r);
    round_to(h->dout, n, c->def->out_f32 ? SDT_F32 : c->dtype);
}

static int upload_inputs(sdt_engine *e, op_case *c, const host_values *h)
{
    for (int i = 0; i < c->n_inputs; i++) {
        if (c->in[i].block && put_values(e, &c->in[i], h->in[i]) != 0)
            return -1;
        c->t.in[i].scale = c->in[i].t.scale; /* an F8 weight's scale comes with its values */
    }
    return put_values(e, &c->dout, h->dout);
}

/* Plants the fault named by inject after the case ran, as a broken op would: a wrong gradient value, a
 * byte written past the output, a NaN in the output, a changed input. */
static void inject_fault(sdt_engine *e, op_case *c, host_values *h, const char *inject)
{
    if (!inject)
        return;
    if (strcmp(inject, "nan") == 0)
        h->out[0] = NAN;
    if (strcmp(inject, "input") == 0 && c->in[0].block) {
        /* Element 0 of the first input as the op would leave it if it used the input as scratch. */
        float changed = h->in[0][0] + 1.0f;
        sdt_tensor first = sdt_tensor_view(c->in[0].t.data, c->in[0].t.dtype, 1, (int64_t[]){1});
        void *raw = malloc(sdt_tensor_bytes(&first));
        first.device = c->in[0].t.device;
        if (raw) {
            sdt_convert(raw, first.dtype, &changed, SDT_F32, 1);
            sdt_engine_upload(e, &first, raw, sdt_tensor_bytes(&first));
        }
        free(raw);
    }
    if (strcmp(inject, "overrun") == 0) {
        unsigned char byte = 0;
        sdt_tensor past = sdt_tensor_view((char *)c->out.t.data + c->out.bytes, SDT_U8, 1, (int64_t[]){1});
        past.device = c->out.t.device;
        sdt_engine_upload(e, &past, &byte, 1);
    }
    for (int i = 0; strcmp(inject, "gradient") == 0 && i < c->n_inputs; i++) {
        if (c->grad[i].block) {
            /* Sized by the whole gradient's norm, so that one wrong element shows in large tensors too. */
            double norm2 = 0;
            for (int64_t j = 0; j < shape_numel(&c->in_shape[i]); j++)
                norm2 += (double)h->grad[i][j] * (double)h->grad[i][j];
            h->grad[i][0] += 0.5f * (1.0f + fabsf(h->grad[i][0]) + (float)sqrt(norm2));
            break;
        }
    }
}

/* 1 when two host values are the same number (NaN equals NaN). */
static int same_value(float a, float b) { return a == b || (isnan(a) && isnan(b)); }

/* The inputs and dout are read-only: after the op they must still hold exactly what was uploaded (an op
 * that uses an input as scratch space, or writes through the wrong pointer, fails here). */
static int inputs_unchanged(sdt_engine *e, const op_case *c, const host_values *h, char *why, size_t why_size)
{
    for (int i = -1; i < c->n_inputs; i++) {
        const guarded *g = i < 0 ? &c->dout : &c->in[i];
        const float *want = i < 0 ? h->dout : h->in[i];
        if (!g->block)
            continue;
        int64_t n = sdt_tensor_numel(&g->t);
        float *now = malloc((size_t)(n ? n : 1) * sizeof(float));
        if (!now || get_values(e, g, now) != 0) {
            free(now);
            snprintf(why, why_size, "download: %s", sdt_engine_error(e));
            return -1;
        }
        int64_t bad = -1;
        for (int64_t j = 0; j < n && bad < 0; j++)
            if (!same_value(now[j], want[j]))
                bad = j;
        if (bad >= 0)
            snprintf(why, why_size, "the op changed its input %s: [%lld] is %g, was %g",
                     i < 0 ? "dout" : c->def->inputs[i], (long long)bad, (double)now[bad], (double)want[bad]);
        free(now);
        if (bad >= 0)
            return -1;
    }
    return 0;
}

/* Runs forward, then (when the op has one) backward into zeroed gradients; downloads out and gradients.
 * Checks that the guard bytes around every tensor and the values of the inputs survived. */
static int run_case(sdt_engine *e, op_case *c, host_values *h, const char *inject, char *why, size_t why_size)
{
    if (c->def->forward(e, &c->dims, &c->t) != 0) {
        snprintf(why, why_size, "forward: %s", sdt_engine_error(e));
        return -1;
    }
    if (get_values(e, &c->out, h->out) != 0) {
        snprintf(why, why_size, "download: %s", sdt_engine_error(e));
        return -1;
    }
    if (c->def->backward) {
        for (int i = 0; i < c->n_inputs; i++)
            if (c->grad[i].block && sdt_fill(e, &c->grad[i].t, 0.0f) != 0)
                return snprintf(why, why_size, "fill: %s", sdt_engine_error(e)), -1;
        if (c->def->backward(e, &c->dims, &c->t) != 0) {
            snprintf(why, why_size, "backward: %s", sdt_engine_error(e));
            return -1;
        }
        for (int i = 0; i < c->n_inputs; i++)
            if (c->grad[i].block && get_values(e, &c->grad[i], h->grad[i]) != 0)
                return snprintf(why, why_size, "download: %s", sdt_engine_error(e)), -1;
    }
    inject_fault(e, c, h, inject);
    if (!case_guards_intact(e, c)) {
        snprintf(why, why_size, "an op wrote outside its tensors (guard bytes changed)");
        return -1;
    }
    return inputs_unchanged(e, c, h, why, why_size);
}

/* ---- comparisons --------------------------------------------------------------------------------------- */

/* Index of the first value that is NaN or Inf where the reference is finite; -1 if none. Infinities must
 * match the reference's in sign. */
static int64_t first_bad_value(const float *got, const float *want, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        if (isnan(got[i]) && !isnan(want[i]))
            return i;
        if (isinf(got[i]) && got[i] != want[i])
            return i;
    }
    return -1;
}

static double nmse(const float *got, const float *want, int64_t n)
{
    double err = 0, norm = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(want[i]))
            continue;
        double d = (double)got[i] - (double)want[i];
        err += d * d;
        norm += (double)want[i] * (double)want[i];
    }
    if (norm == 0)
        return err == 0 ? 0 : INFINITY;
    return err / norm;
}

/* Compares one tensor; appends "name=1.2e-14" to the report. Returns 0 when within limit. */
static int compare(const char *name, const float *got, const float *want, int64_t n, double limit,
                   char *report, size_t report_size)
{
    size_t len = strlen(report);
    int64_t bad = first_bad_value(got, want, n);
    if (bad >= 0) {
        snprintf(report + len, report_size - len, " %s[%lld]=%g (want %g)", name, (long long)bad,
                 (double)got[bad], (double)want[bad]);
        return -1;
    }
    double err = nmse(got, want, n);
    snprintf(report + len, report_size - len, " %s=%.1e", name, err);
    return err <= limit ? 0 : -1;
}

/* Compares a case's output and every gradient with the expected values. Returns 0 when all are within
 * limit; otherwise -1 with why set. */
static int compare_case(const op_case *c, const host_values *got, const host_values *want, double limit,
                        char *report, size_t report_size, char *why, size_t why_size)
{
    int within =
        compare("out", got->out, want->out, shape_numel(&c->out_shape), limit, report, report_size) == 0;
    for (int i = 0; i < c->n_inputs; i++) {
        if (!has_grad(c, i))
            continue;
        char name[64];
        snprintf(name, sizeof name, "grad.%s", c->def->inputs[i]);
        within &= compare(name, got->grad[i], want->grad[i], shape_numel(&c->in_shape[i]), limit, report,
                          report_size) == 0;
    }
    if (within)
        return 0;
    snprintf(why, why_size, "normalised MSE above %.0e", limit);
    return -1;
}

/* ---- mode: grad ---------------------------------------------------------------------------------------- */

/* sum(out * dout) in double: the scalar whose gradient backward computes when handed dout. */
static int probe_loss(sdt_engine *e, op_case *c, const float *dout, float *out_scratch, double *loss)
{
    if (c->def->forward(e, &c->dims, &c->t) != 0 || get_values(e, &c->out, out_scratch) != 0)
        return -1;
    double sum = 0;
    int64_t n = shape_numel(&c->out_shape);
    for (int64_t i = 0; i < n; i++)
        sum += (double)out_scratch[i] * (double)dout[i];
    *loss = sum;
    return 0;
}

/* Relative L2 distance between backward's gradient and a 4-point central difference, over up to
 * FD_SAMPLES evenly spread elements of input slot. */
static int finite_difference(sdt_engine *e, op_case *c, host_values *h, int slot, double *rel_err)
{
    const double step = 1.0 / 128.0; /* a power of two: x +- step is exact for |x| < 2^16 */
    int64_t n = shape_numel(&c->in_shape[slot]);
    int64_t samples = n < FD_SAMPLES ? n : FD_SAMPLES;
    float *out_scratch = alloc_floats(&c->out_shape);
    if (!out_scratch)
        return -1;
    double diff2 = 0, ref2 = 0;
    int rc = 0;
    for (int64_t s = 0; s < samples && rc == 0; s++) {
        int64_t idx = samples == n ? s : s * n / samples + (n / samples) / 2;
        float original = h->in[slot][idx];
        double losses[4];
        const double offsets[4] = {-2 * step, -step, step, 2 * step};
        for (int k = 0; k < 4 && rc == 0; k++) {
            h->in[slot][idx] = (float)(original + offsets[k]);
            rc = put_values(e, &c->in[slot], h->in[slot]);
            if (rc == 0)
                rc = probe_loss(e, c, h->dout, out_scratch, &losses[k]);
        }
        h->in[slot][idx] = original;
        double numeric = (losses[0] - 8 * losses[1] + 8 * losses[2] - losses[3]) / (12 * step);
        double analytic = h->grad[slot][idx];
        diff2 += (numeric - analytic) * (numeric - analytic);
        ref2 += analytic * analytic;
    }
    /* Restore the input, and the output and saved tensors of the unperturbed forward that backward reads. */
    double unused;
    if (rc == 0)
        rc = put_values(e, &c->in[slot], h->in[slot]);
    if (rc == 0)
        rc = probe_loss(e, c, h->dout, out_scratch, &unused);
    free(out_scratch);
    *rel_err = sqrt(diff2 / (ref2 > 1e-20 ? ref2 : 1e-20));
    return rc;
}

static void grad_case(sdt_engine *e, const char *text, const runner_options *o, tally *t)
{
    char op_name[32], why[512] = "", report[768] = "";
    op_case c;
    memset(&c, 0, sizeof c);
    host_values h;
    memset(&h, 0, sizeof h);
    int ok = op_dims_parse(text, op_name, sizeof op_name, &c.dims, why, sizeof why) == 0;
    if (ok && !(c.def = op_find(op_name))) {
        snprintf(why, sizeof why, "unknown op %s", op_name);
        ok = 0;
    }
    if (ok && !c.def->backward) {
        printf("skip %s (no backward: its inputs are data)\n", text);
        t->skipped++;
        return;
    }
    c.dtype = SDT_F32;
    ok = ok && case_shapes(&c, why, sizeof why) == 0;
    if (ok && (case_alloc(e, &c) != 0 || host_alloc(&c, &h) != 0)) {
        snprintf(why, sizeof why, "out of memory");
        ok = 0;
    }
    if (ok) {
        rng r = {hash_text(text)};
        random_inputs(&c, &h, &r);
        ok = upload_inputs(e, &c, &h) == 0 && run_case(e, &c, &h, o->inject, why, sizeof why) == 0;
    }
    /* The forward first: nothing is worth comparing if it gives NaN or Inf on ordinary inputs. */
    for (int64_t j = 0; ok && j < shape_numel(&c.out_shape); j++) {
        if (!isfinite(h.out[j])) {
            snprintf(why, sizeof why, "out[%lld] = %g on finite inputs", (long long)j, (double)h.out[j]);
            ok = 0;
        }
    }
    double worst = 0;
    for (int i = 0; ok && i < c.n_inputs; i++) {
        double rel;
        if (!has_grad(&c, i))
            continue;
        if (finite_difference(e, &c, &h, i, &rel) != 0) {
            snprintf(why, sizeof why, "finite differences: %s", sdt_engine_error(e));
            ok = 0;
            break;
        }
        size_t len = strlen(report);
        snprintf(report + len, sizeof report - len, " grad.%s=%.1e", c.def->inputs[i], rel);
        if (rel > worst)
            worst = rel;
    }
    /* fp32 forward passes carry ~1e-7 relative noise; divided by the step that is the floor here. */
    const double limit = 2e-3;
    if (ok && worst > limit) {
        snprintf(why, sizeof why, "gradient differs from finite differences by more than %.0e", limit);
        ok = 0;
    }
    /* Accumulation: a second backward on top of the first must give twice the first. */
    if (ok && c.def->backward(e, &c.dims, &c.t) != 0) {
        snprintf(why, sizeof why, "backward: %s", sdt_engine_error(e));
        ok = 0;
    }
    for (int i = 0; ok && i < c.n_inputs; i++) {
        if (!has_grad(&c, i))
            continue;
        int64_t n = shape_numel(&c.in_shape[i]);
        float *twice = alloc_floats(&c.in_shape[i]);
        ok = twice && get_values(e, &c.grad[i], twice) == 0;
        for (int64_t j = 0; ok && j < n; j++) {
            /* Not bit-exact: a blocked GEMM adds its partial sums onto the existing gradient in pieces. */
            if (fabs((double)twice[j] - 2.0 * h.grad[i][j]) > 1e-5 * fabs(2.0 * h.grad[i][j]) + 1e-6) {
                snprintf(why, sizeof why,
                         "grad.%s[%lld]: backward does not add into the gradient (%g after two calls, %g "
                         "after one)",
                         c.def->inputs[i], (long long)j, (double)twice[j], (double)h.grad[i][j]);
                ok = 0;
            }
        }
        free(twice);
    }
    printf("%s %s %s%s%s\n", ok ? "ok  " : "FAIL", text, report, ok ? "" : " -- ", ok ? "" : why);
    ok ? t->passed++ : t->failed++;
    host_free(&h);
    case_free(e, &c);
}

/* Whether the --op and --case filters let a case through: op is its op's name, name its case name. */
static int case_selected(const char *op, const char *name, const runner_options *o)
{
    if (o->case_part && !strstr(name, o->case_part))
        return 0;
    if (!o->ops)
        return 1;
    size_t op_len = strlen(op);
    for (const char *p = o->ops; *p;) {
        size_t len = strcspn(p, ",");
        if (len == op_len && strncmp(p, op, len) == 0)
            return 1;
        p += len + (p[len] == ',');
    }
    return 0;
}

/* ---- mode: golden -------------------------------------------------------------------------------------- */

/* Copies a fixture tensor (unaligned, F32) into host floats after checking its shape. */
static int fixture_values(const sdt_safetensors *st, const char *name, const op_shape *shape, float *values,
                          char *why, size_t why_size)
{
    const sdt_st_tensor *ft = sdt_safetensors_find(st, name);
    if (!ft) {
        snprintf(why, why_size, "no tensor \"%s\"", name);
        return -1;
    }
    int same = ft->dtype == SDT_F32 && ft->ndim == shape->ndim;
    for (int i = 0; same && i < shape->ndim; i++)
        same = ft->shape[i] == shape->d[i];
    if (!same) {
        char want[128] = "[";
        for (int i = 0; i < shape->ndim; i++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", i ? ", " : "",
                     (long long)shape->d[i]);
        snprintf(why, why_size, "tensor \"%s\" is not F32 %s]", name, want);
        return -1;
    }
    memcpy(values, ft->data, ft->nbytes);
    return 0;
}

static void golden_file(sdt_engine *e, const char *dir, const char *file, const runner_options *o, tally *t)
{
    char path[1024], why[512] = "", report[1024] = "";
    snprintf(path, sizeof path, "%s/%s", dir, file);
    sdt_safetensors *st = NULL;
    char *error = NULL;
    op_case c;
    memset(&c, 0, sizeof c);
    host_values h, want;
    memset(&h, 0, sizeof h);
    memset(&want, 0, sizeof want);
    int ok = sdt_safetensors_open(path, &st, &error) == 0;
    if (!ok) {
        snprintf(why, sizeof why, "%s", error);
        free(error);
    }
    const char *op_name = ok ? sdt_safetensors_metadata(st, "op") : NULL;
    const char *case_name = ok ? sdt_safetensors_metadata(st, "case") : NULL;
    if (ok && (!op_name || !(c.def = op_find(op_name)))) {
        snprintf(why, sizeof why, "metadata \"op\" is %s%s%s: not an op of docs/ops.md", op_name ? "\"" : "",
                 op_name ? op_name : "missing", op_name ? "\"" : "");
        ok = 0;
    }
    if (ok && !case_selected(op_name, file, o)) {
        sdt_safetensors_close(st);
        return;
    }
    /* The dimensions come from the metadata, as strings. */
    for (size_t i = 0; ok && i < sdt_safetensors_metadata_count(st); i++) {
        const char *key, *value;
        sdt_safetensors_metadata_at(st, i, &key, &value);
        if (strcmp(key, "op") == 0 || strcmp(key, "case") == 0)
            continue;
        char *end;
        double v = strtod(value, &end);
        if (*end || end == value || op_dims_set(&c.dims, key, v) != 0) {
            snprintf(why, sizeof why, "metadata \"%s\" = \"%s\" is not a number", key, value);
            ok = 0;
        }
    }
    c.dtype = SDT_F32;
    ok = ok && case_shapes(&c, why, sizeof why) == 0;
    if (ok && (case_alloc(e, &c) != 0 || host_alloc(&c, &h) != 0 || host_alloc(&c, &want) != 0)) {
        snprintf(why, sizeof why, "out of memory");
        ok = 0;
    }
    for (int i = 0; ok && i < c.n_inputs; i++) {
        if (c.in_shape[i].ndim < 0)
            continue;
        ok = fixture_values(st, c.def->inputs[i], &c.in_shape[i], h.in[i], why, sizeof why) == 0;
        char grad_name[64];
        snprintf(grad_name, sizeof grad_name, "grad.%s", c.def->inputs[i]);
        if (ok && has_grad(&c, i))
            ok = fixture_values(st, grad_name, &c.in_shape[i], want.grad[i], why, sizeof why) == 0;
    }
    ok = ok && fixture_values(st, "out", &c.out_shape, want.out, why, sizeof why) == 0;
    ok = ok && fixture_values(st, "dout", &c.out_shape, h.dout, why, sizeof why) == 0;
    ok = ok && upload_inputs(e, &c, &h) == 0 && run_case(e, &c, &h, o->inject, why, sizeof why) == 0;
    /* PyTorch computed in float64; fp32 with different summation orders lands around 1e-14. */
    const double limit = 1e-10;
    if (ok && compare_case(&c, &h, &want, limit, report, sizeof report, why, sizeof why) != 0)
        ok = 0;
    printf("%s %s%s%s%s\n", ok ? "ok  " : "FAIL", case_name ? case_name : file, report, ok ? "" : " -- ",
           ok ? "" : why);
    ok ? t->passed++ : t->failed++;
    host_free(&h);
    host_free(&want);
    case_free(e, &c);
    sdt_safetensors_close(st);
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int golden_mode(sdt_engine *e, const runner_options *o, tally *t)
{
    DIR *dir = opendir(o->dir);
    if (!dir) {
        fprintf(stderr, "ops-runner: cannot open the fixture folder %s\n", o->dir);
        return -1;
    }
    char **names = NULL;
    size_t count = 0, capacity = 0;
    for (struct dirent *entry; (entry = readdir(dir));) {
        size_t len = strlen(entry->d_name);
        if (len < 12 || strcmp(entry->d_name + len - 12, ".safetensors") != 0)
            continue;
        if (count == capacity) {
            capacity = capacity ? 2 * capacity : 64;
            char **grown = realloc(names, capacity * sizeof *names);
            if (!grown)
                break;
            names = grown;
        }
        names[count++] = strdup(entry->d_name);
    }
    closedir(dir);
    qsort(names, count, sizeof *names, compare_names);
    for (size_t i = 0; i < count; i++) {
        golden_file(e, o->dir, names[i], o, t);
        free(names[i]);
    }
    free(names);
    if (count == 0) {
        fprintf(stderr, "ops-runner: no fixtures in %s\n", o->dir);
        return -1;
    }
    return 0;
}

/* ---- mode: test (a backend against the CPU) ------------------------------------------------------------ */

static const char *dtype_label(sdt_dtype dtype)
{
    return dtype == SDT_F16 ? "f16" : dtype == SDT_BF16 ? "bf16" : "f32";
}

/* Frozen weights (LoRA's base layers) call backward with some gradients NULL, and every backward adds
 * into what its gradients hold. For an op with more than one gradient, asks for one gradient at a time,
 * with that gradient already holding the reference value: the result must be twice the reference (and
 * the op must not touch the absent ones, which it could only do through a NULL pointer). Appends
 * "acc.grad.x=..." to the report; 0 when all are within limit. */
static int single_gradients(sdt_engine *e, op_case *c, const host_values *want, double limit, char *report,
                            size_t report_size, char *why, size_t why_size)
{
    int grads = 0;
    for (int i = 0; i < c->n_inputs; i++)
        grads += has_grad(c, i);
    if (grads < 2 || c->def->all_grads)
        return 0;
    for (int i = 0; i < c->n_inputs; i++) {
        if (!has_grad(c, i))
            continue;
        int64_t n = shape_numel(&c->in_shape[i]);
        float *twice = alloc_floats(&c->in_shape[i]), *got = alloc_floats(&c->in_shape[i]);
        op_tensors only = c->t;
        for (int j = 0; j < OP_MAX_INPUTS; j++)
            only.grad_present[j] = j == i;
        int rc = twice && got ? 0 : -1;
        if (rc != 0)
            snprintf(why, why_size, "out of memory");
        if (rc == 0 && (put_values(e, &c->grad[i], want->grad[i]) != 0 ||
                        c->def->backward(e, &c->dims, &only) != 0 || get_values(e, &c->grad[i], got) != 0)) {
            snprintf(why, why_size, "backward with only grad.%s: %s", c->def->inputs[i], sdt_engine_error(e));
            rc = -1;
        }
        if (rc == 0) {
            for (int64_t j = 0; j < n; j++)
                twice[j] = 2.0f * want->grad[i][j];
            char name[64];
            snprintf(name, sizeof name, "acc.grad.%s", c->def->inputs[i]);
            if (compare(name, got, twice, n, limit, report, report_size) != 0) {
                snprintf(
                    why, why_size,
                    "backward with only grad.%s, onto the reference gradient, is not twice the reference",
                    c->def->inputs[i]);
                rc = -1;
            }
        }
        free(twice);
        free(got);
        if (rc != 0)
            return -1;
    }
    if (!case_guards_intact(e, c)) {
        snprintf(why, why_size, "an op wrote outside its tensors (guard bytes changed)");
        return -1;
    }
    return 0;
}

static void backend_case(sdt_engine *cpu, sdt_engine *e, const char *text, sdt_dtype dtype,
                         const runner_options *o, tally *t)
{
    char op_name[32], why[512] = "", report[1024] = "";
    op_case ref, dut;
    memset(&ref, 0, sizeof ref);
    memset(&dut, 0, sizeof dut);
    host_values want, got;
    memset(&want, 0, sizeof want);
    memset(&got, 0, sizeof got);
    int ok = op_dims_parse(text, op_name, sizeof op_name, &ref.dims, why, sizeof why) == 0;
    if (ok && !(ref.def = op_find(op_name))) {
        snprintf(why, sizeof why, "unknown op %s", op_name);
        ok = 0;
    }
    ok = ok && case_shapes(&ref, why, sizeof why) == 0;
    dut = ref;
    ref.dtype = SDT_F32;
    dut.dtype = dtype;
    if (ok && (case_alloc(cpu, &ref) != 0 || case_alloc(e, &dut) != 0 || host_alloc(&ref, &want) != 0 ||
               host_alloc(&ref, &got) != 0)) {
        snprintf(why, sizeof why, "out of memory");
        ok = 0;
    }
    if (ok) {
        /* Both sides get the inputs as the tested dtype holds them. */
        rng r = {hash_text(text) ^ (uint64_t)dtype};
        random_inputs(&dut, &want, &r);
        for (int i = 0; i < OP_MAX_INPUTS; i++)
            if (want.in[i])
                memcpy(got.in[i], want.in[i], (size_t)shape_numel(&ref.in_shape[i]) * sizeof(float));
        memcpy(got.dout, want.dout, (size_t)shape_numel(&ref.out_shape) * sizeof(float));
        ok = upload_inputs(cpu, &ref, &want) == 0 && run_case(cpu, &ref, &want, NULL, why, sizeof why) == 0;
        if (ok &&
            (upload_inputs(e, &dut, &got) != 0 || run_case(e, &dut, &got, o->inject, why, sizeof why) != 0)) {
            size_t len = strlen(why);
            snprintf(why + len, sizeof why - len, " (%s backend)", sdt_engine_backend_name(e));
            ok = 0;
        }
    }
    int dtype_index = dtype == SDT_F16 ? 1 : dtype == SDT_BF16 ? 2 : 0;
    double limit = ok ? ref.def->max_nmse[dtype_index] : 0;
    if (ok && compare_case(&ref, &got, &want, limit, report, sizeof report, why, sizeof why) != 0)
        ok = 0;
    /* Skipped with a planted fault: the fault is planted after run_case, which this pass does not use. */
    if (ok && !o->inject &&
        single_gradients(e, &dut, &want, limit, report, sizeof report, why, sizeof why) != 0)
        ok = 0;
    printf("%s %s [%s]%s%s%s\n", ok ? "ok  " : "FAIL", text, dtype_label(dtype), report, ok ? "" : " -- ",
           ok ? "" : why);
    ok ? t->passed++ : t->failed++;
    host_free(&want);
    host_free(&got);
    case_free(cpu, &ref);
    case_free(e, &dut);
}

/* ---- main ---------------------------------------------------------------------------------------------- */

/* Whether this build has the CUDA ops and the machine a CUDA device; says why not on stdout. */
static int cuda_usable(void)
{
#if !defined(SDTUNE_HAVE_CUDA_OPS)
    printf("this build has no CUDA ops\n");
    return 0;
#else
    char *why = NULL;
    int count = sdt_cuda_device_count(&why);
    if (count == 0)
        printf("%s\n", why ? why : "no CUDA device found");
    free(why);
    return count > 0;
#endif
}

static void usage(FILE *out)
{
    fputs(
        "usage: ops-runner [--mode grad|golden|test] [--op NAME[,NAME...]] [--case TEXT]\n"
        "                  [--backend cpu|cuda|guarded] [--dir FIXTURES] [--threads N] [--inject F]\n"
        "                  [--skip-without-device] [--list]\n"
        "\n"
        "  --mode grad    check every backward against central finite differences (default)\n"
        "  --mode golden  check the CPU backend against the PyTorch fixtures in --dir\n"
        "  --mode test    check --backend against the CPU reference in f32, f16 and bf16\n"
        "                 (--backend guarded: the CPU ops on memory the host cannot touch between ops)\n"
        "  --op NAME      only these ops; --case TEXT: only cases whose name contains TEXT\n"
        "  --inject F     plant a fault (gradient, overrun, nan, input) after each op: every case must fail\n"
        "  --skip-without-device\n"
        "                 exit 77 (skipped) instead of 1 when the build has no ops for --backend or the\n"
        "                 machine has no such device (for ctest; a plain run fails loudly)\n"
        "  --list         print the ops and the built-in cases\n",
        out);
}

int main(int argc, char **argv)
{
    runner_options o = {.mode = "grad", .backend = "cpu", .dir = "tests/data/ops"};
    int list = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(arg, "--list") == 0) {
            list = 1;
        } else if (strcmp(arg, "--skip-without-device") == 0) {
            o.skip_without_device = 1;
        } else if (next && strcmp(arg, "--mode") == 0) {
            o.mode = argv[++i];
        } else if (next && strcmp(arg, "--op") == 0) {
            o.ops = argv[++i];
        } else if (next && strcmp(arg, "--case") == 0) {
            o.case_part = argv[++i];
        } else if (next && strcmp(arg, "--backend") == 0) {
            o.backend = argv[++i];
        } else if (next && strcmp(arg, "--dir") == 0) {
            o.dir = argv[++i];
        } else if (next && strcmp(arg, "--inject") == 0) {
            o.inject = argv[++i];
        } else if (next && strcmp(arg, "--threads") == 0) {
            o.threads = atoi(argv[++i]);
        } else {
            fprintf(stderr, "ops-runner: unknown argument '%s'\n", arg);
            usage(stderr);
            return 2;
        }
    }
    if (list) {
        for (size_t i = 0; i < op_count(); i++)
            printf("op %s: %s\n", op_at(i)->name, op_at(i)->keys);
        for (size_t i = 0; i < op_case_count(); i++)
            printf("case %s\n", op_case_at(i));
        for (size_t i = 0; i < op_device_case_count(); i++)
            printf("case %s (--mode test only)\n", op_device_case_at(i));
        for (size_t i = 0; i < optimizer_case_count(); i++)
            printf("case %s (--mode test only)\n", optimizer_case_name(i));
        return 0;
    }
    int grad = strcmp(o.mode, "grad") == 0, golden = strcmp(o.mode, "golden") == 0;
    int test = strcmp(o.mode, "test") == 0;
    if (!grad && !golden && !test) {
        fprintf(stderr, "ops-runner: unknown mode '%s'\n", o.mode);
        return 2;
    }
    sdt_device_kind device;
    if (strcmp(o.backend, "cpu") == 0) {
        device = SDT_DEVICE_CPU;
    } else if (strcmp(o.backend, "cuda") == 0) {
        device = SDT_DEVICE_CUDA;
    } else if (strcmp(o.backend, "guarded") == 0) {
        device = SDT_DEVICE_GUARDED;
    } else {
        fprintf(stderr, "ops-runner: unknown backend '%s' (cpu, cuda or guarded)\n", o.backend);
        return 2;
    }
    sdt_engine *cpu = NULL, *e = NULL;
    char *error = NULL;
    sdt_engine_options cpu_options = {.device = SDT_DEVICE_CPU, .threads = o.threads};
    sdt_engine_options options = {.device = device, .threads = o.threads};
    if (sdt_engine_create(&cpu_options, &cpu, &error) != 0) {
        fprintf(stderr, "ops-runner: %s\n", error);
        free(error);
        return 1;
    }
    if (sdt_engine_create(&options, &e, &error) != 0) {
        int rc = 1;
        if (o.skip_without_device && device == SDT_DEVICE_CUDA && !cuda_usable()) {
            /* Nothing to test here: a skip, not a failure. With a GPU and the ops built, a failing
             * engine (a library that does not load, a bad driver) is a failure. */
            printf("skipped: %s\n", error);
            rc = 77;
        } else {
            fprintf(stderr, "ops-runner: %s\n", error);
        }
        free(error);
        sdt_engine_free(cpu);
        return rc;
    }
    tally t = {0, 0, 0};
    int rc = 0;
    if (golden) {
        rc = golden_mode(e, &o, &t);
    } else {
        static const sdt_dtype dtypes[] = {SDT_F32, SDT_F16, SDT_BF16};
        for (size_t i = 0; i < op_case_count(); i++) {
            const char *text = op_case_at(i);
            char op[32];
            snprintf(op, sizeof op, "%.*s", (int)strcspn(text, " "), text);
            if (!case_selected(op, text, &o))
                continue;
            if (grad)
                grad_case(e, text, &o, &t);
            else
                for (size_t d = 0; d < sizeof dtypes / sizeof dtypes[0]; d++)
                    backend_case(cpu, e, text, dtypes[d], &o, &t);
        }
        /* The larger cases at the models' own shapes: too slow for finite differences. */
        for (size_t i = 0; test && i < op_device_case_count(); i++) {
            const char *text = op_device_case_at(i);
            char op[32];
            snprintf(op, sizeof op, "%.*s", (int)strcspn(text, " "), text);
            if (!case_selected(op, text, &o))
                continue;
            for (size_t d = 0; d < sizeof dtypes / sizeof dtypes[0]; d++)
                backend_case(cpu, e, text, dtypes[d], &o, &t);
        }
        /* The optimizer update: an in-place update of a tensor list, compared bit for bit. A planted fault
         * (--inject) targets the forward/backward cases only. */
        for (size_t i = 0; test && !o.inject && i < optimizer_case_count(); i++) {
            const char *text = optimizer_case_name(i);
            if (case_selected("optimizer_update", text, &o))
                optimizer_case_run(cpu, e, i) ? t.passed++ : t.failed++;
        }
    }
    if (t.skipped)
        printf("%d passed, %d failed, %d skipped\n", t.passed, t.failed, t.skipped);
    else
        printf("%d passed, %d failed\n", t.passed, t.failed);
    sdt_engine_free(e);
    sdt_engine_free(cpu);
    if (rc != 0 || t.passed + t.failed == 0)
        return 1;
    return t.failed ? 1 : 0;
}
