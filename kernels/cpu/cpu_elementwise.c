/* The elementwise ops of the fp32 reference backend: activations, GEGLU, adds, concat, upsample, the
 * timestep embedding, the loss and small vector helpers.
 *
 * Every loop here either writes each output element from its own inputs (so splitting it across OpenMP
 * threads cannot change a bit) or reduces in one fixed serial order per output element; nothing sums
 * across threads, so the results do not depend on the thread count. */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "backend.h"
#include "cpu_ops.h"
#include "keyed_dropout.h"

/* OpenMP is optional at build time: without it the pragmas vanish instead of tripping -Wunknown-pragmas. */
#ifdef _OPENMP
#define CPU_PRAGMA(x) _Pragma(#x)
#define CPU_PARALLEL_FOR(cond) CPU_PRAGMA(omp parallel for schedule(static) if (cond))
#else
#define CPU_PARALLEL_FOR(cond)
#endif

/* Below this many elements a loop stays on the calling thread: waking the team costs more than the work. */
#define CPU_PAR_MIN ((int64_t)1 << 15)

/* ---- activations --------------------------------------------------------------------------------------- */

/* sigmoid(z) and 1 - sigmoid(z) from one exp of -|z|, so neither overflows and 1 - s keeps its precision
 * where s rounds to 1 (the derivatives need s * (1 - s)). */
static inline void sigmoid_pair(float z, float *s, float *one_minus_s)
{
    float e = expf(-fabsf(z));
    float p = 1.0f / (1.0f + e), q = e / (1.0f + e);
    if (z >= 0.0f) {
        *s = p;
        *one_minus_s = q;
    } else {
        *s = q;
        *one_minus_s = p;
    }
}

#define GELU_RSQRT2 0.70710678118654752440f   /* 1 / sqrt(2) */
#define GELU_RSQRT2PI 0.39894228040143267794f /* 1 / sqrt(2 pi) */
#define GELU_TANH_K0 0.79788456080286535588f  /* sqrt(2 / pi) */
#define GELU_TANH_K1 0.044715f
#define QUICK_GELU_K 1.702f

static inline float gelu_exact(float x) { return 0.5f * x * (1.0f + erff(x * GELU_RSQRT2)); }

/* d/dx x Phi(x) = Phi(x) + x phi(x). For huge |x| the exp underflows to 0, which is the right limit. */
static inline float gelu_exact_grad(float x)
{
    return 0.5f * (1.0f + erff(x * GELU_RSQRT2)) + x * GELU_RSQRT2PI * expf(-0.5f * x * x);
}

/* tanh(u) and sech^2(u) = 1 - tanh^2(u) from e = exp(-2|u|): 1 - tanh^2 computed directly would cancel to 0
 * long before the true value is negligible, and 1 + tanh(u) for u << 0 likewise. */
static inline void tanh_sech2(float u, float *t, float *one_plus_t, float *sech2)
{
    float e = expf(-2.0f * fabsf(u));
    float r = 1.0f / (1.0f + e);
    float mag = (1.0f - e) * r;
    *t = u >= 0.0f ? mag : -mag;
    *one_plus_t = u >= 0.0f ? 1.0f + mag : 2.0f * e * r;
    *sech2 = 4.0f * e * r * r;
}

static inline float gelu_tanh(float x)
{
    float t, one_plus_t, sech2;
    tanh_sech2(GELU_TANH_K0 * (x + GELU_TANH_K1 * x * x * x), &t, &one_plus_t, &sech2);
    return 0.5f * x * one_plus_t;
}

static inline float gelu_tanh_grad(float x)
{
    float t, one_plus_t, sech2;
    tanh_sech2(GELU_TANH_K0 * (x + GELU_TANH_K1 * x * x * x), &t, &one_plus_t, &sech2);
    float g = 0.5f * one_plus_t;
    /* Where sech^2 underflowed, x^2 may be inf; skipping keeps 0 * inf from turning the gradient into NaN. */
    if (sech2 > 0.0f)
        g += 0.5f * x * sech2 * GELU_TANH_K0 * (1.0f + 3.0f * GELU_TANH_K1 * x * x);
    return g;
}

/* x * sigmoid(k x) and its derivative sigmoid(k x) + k x sigmoid(k x) (1 - sigmoid(k x)); k = 1 is SiLU. */
static inline float x_sigmoid(float x, float k)
{
    float s, one_minus_s;
    sigmoid_pair(k * x, &s, &one_minus_s);
    return x * s;
}

static inline float x_sigmoid_grad(float x, float k)
{
    float s, one_minus_s;
    sigmoid_pair(k * x, &s, &one_minus_s);
    /* x multiplies last: for a huge finite x, k x may overflow while s (1 - s) is already 0. */
    return s + x * (k * s * one_minus_s);
}

void cpu_activation_forward(float *out, const float *inp, int64_t n, cpu_activation act)
{
    /* out [n], inp [n]. One switch outside the loop keeps each loop body branch-free. */
    switch (act) {
    case CPU_ACT_SILU:
        CPU_PARALLEL_FOR(n >= CPU_PAR_MIN)
        for (int64_t i = 0; i < n; i++)
            out[i] = x_sigmoid(inp[i], 1.0f);
        break;
    case CPU_ACT_GELU:
        CPU_PARALLEL_FOR(n >= CPU_PAR_MIN)
        for (int64_t i = 0; i < n; i++)
            out[i] = gelu_exact(inp[i]);
        break;
    case CPU_ACT_GELU_TANH:
        CPU_PARALLEL_FOR(n >= CPU_PAR_MIN)
        for (int64_t i = 0; i < n; i++)
            out[i] = gelu_tanh(inp[i]);
        break;
    case CPU_ACT_QUICK_GELU:
        CPU_PARALLEL_FOR(n >= CPU_PAR_MIN)
        for (int64_t i = 0; i < n; i++)
            out[i] = x_sigmoid(inp[i], QUICK_GELU_K);
        break;
    }
}

void cpu_activation_backward(float *dinp, const float *dout, const float *inp, int64_t n, cpu_activation act)
{
    /* dinp [n] +=, dout [n], inp [n]. */
    if (!dinp)
        return;
    switch (act) {
    case CPU_ACT_SILU:
        CPU_PARALLEL_FOR(n >= CPU_PAR_MIN)
        for (int64_t i = 0; i < n; i++)
            dinp[i] += dout[i] * x_sigmoid_grad(inp[i], 1.0f);
        break;
    case CPU_ACT_GELU:
        CPU_PARALLEL_FOR(n >= CPU_PAR_MIN)
        for (int64_t i = 0; i < n; i++)
            dinp[i] += dout[i] * gelu_exact_grad(inp[i]);
        break;
    case CPU_ACT_GELU_TANH:
        CPU_PARALLEL_FOR(n >= CPU_PAR_MIN)
        for (int64_t i = 0; i < n; i++)
            dinp[i] += dout[i] * gelu_tanh_grad(inp[i]);
        break;
    case CPU_ACT_QUICK_GELU:
        CPU_PARALLEL_FOR(n >= CPU_PAR_MIN)
        for (int64_t i = 0; i < n; i++)
            dinp[i] += dout[i] * x_sigmoid_grad(inp[i], QUICK_GELU_K);
        break;
    }
}

void cpu_geglu_forward(float *out, const float *inp, int64_t N, int64_t F)
{
    /* out [N, F], inp [N, 2F] = [a | g] per row. */
    CPU_PARALLEL_FOR(N * F >= CPU_PAR_MIN)
    for (int64_t r = 0; r < N; r++) {
        const float *a = inp + r * 2 * F, *g = a + F;
        float *o = out + r * F;
        for (int64_t f = 0; f < F; f++)
            o[f] = a[f] * gelu_exact(g[f]);
    }
}

void cpu_geglu_backward(float *dinp, const float *dout, const float *inp, int64_t N, int64_t F)
{
    /* dinp [N, 2F] += [da | dg], dout [N, F], inp [N, 2F]. */
    if (!dinp)
        return;
    CPU_PARALLEL_FOR(N * F >= CPU_PAR_MIN)
    for (int64_t r = 0; r < N; r++) {
        const float *a = inp + r * 2 * F, *g = a + F, *d = dout + r * F;
        float *da = dinp + r * 2 * F, *dg = da + F;
        for (int64_t f = 0; f < F; f++) {
            da[f] += d[f] * gelu_exact(g[f]);
            dg[f] += d[f] * a[f] * gelu_exact_grad(g[f]);
        }
    }
}

/* ---- adds, concat, upsample ---------------------------------------------------------------------------- */

void cpu_add_forward(float *out, const float *a, const float *b, int64_t n)
{
    /* out [n], a [n], b [n]; out may alias either input, which an elementwise loop tolerates. */
    CPU_PARALLEL_FOR(n >= CPU_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}

void cpu_add_backward(float *da, float *db, const float *dout, int64_t n)
{
    /* da [n] +=, db [n] +=, dout [n]. */
    if (da)
        cpu_axpy(da, 1.0f, dout, n);
    if (db)
        cpu_axpy(db, 1.0f, dout, n);
}

void cpu_add_channel_vector_forward(float *out, const float *inp, const float *vec, int64_t B, int64_t HW,
                                    int64_t C)
{
    /* out [B, HW, C], inp [B, HW, C], vec [B, C]. Rows are (b, hw) pairs. */
    CPU_PARALLEL_FOR(B * HW * C >= CPU_PAR_MIN)
    for (int64_t r = 0; r < B * HW; r++) {
        const float *x = inp + r * C, *v = vec + (r / HW) * C;
        float *o = out + r * C;
        for (int64_t c = 0; c < C; c++)
            o[c] = x[c] + v[c];
    }
}

/* Channels summed together by one task of the dvec reduction: a stack-sized strip of accumulators. */
#define CHANNEL_STRIP 64

void cpu_add_channel_vector_backward(float *dinp, float *dvec, const float *dout, int64_t B, int64_t HW,
                                     int64_t C)
{
    /* dinp [B, HW, C] +=, dvec [B, C] +=, dout [B, HW, C]. */
    if (dinp)
        cpu_axpy(dinp, 1.0f, dout, B * HW * C);
    if (!dvec)
        return;
    /* Each task owns a strip of channels of one sample and sums its HW rows in order, in double: the split is
     * by output element, never over HW, so the sum is the same whatever the thread count. */
    int64_t strips = (C + CHANNEL_STRIP - 1) / CHANNEL_STRIP;
    CPU_PARALLEL_FOR(B * HW * C >= CPU_PAR_MIN)
    for (int64_t task = 0; task < B * strips; task++) {
        int64_t b = task / strips, c0 = (task % strips) * CHANNEL_STRIP;
        int64_t nc = C - c0 < CHANNEL_STRIP ? C - c0 : CHANNEL_STRIP;
        double acc[CHANNEL_STRIP] = {0}; /* [nc] */
        for (int64_t p = 0; p < HW; p++) {
            const float *d = dout + (b * HW + p) * C + c0;
            for (int64_t c = 0; c < nc; c++)
                acc[c] += d[c];
        }
        for (int64_t c = 0; c < nc; c++)
            dvec[b * C + c0 + c] += (float)acc[c];
    }
}

void cpu_concat_forward(float *out, const float *a, const float *b, int64_t N, int64_t Ca, int64_t Cb)
{
    /* out [N, Ca + Cb], a [N, Ca], b [N, Cb]. */
    int64_t C = Ca + Cb;
    CPU_PARALLEL_FOR(N * C >= CPU_PAR_MIN)
    for (int64_t r = 0; r < N; r++) {
        memcpy(out + r * C, a + r * Ca, (size_t)Ca * sizeof(float));
        memcpy(out + r * C + Ca, b + r * Cb, (size_t)Cb * sizeof(float));
    }
}

void cpu_concat_backward(float *da, float *db, const float *dout, int64_t N, int64_t Ca, int64_t Cb)
{
    /* da [N, Ca] +=, db [N, Cb] +=, dout [N, Ca + Cb]. */
    int64_t C = Ca + Cb;
    CPU_PARALLEL_FOR(N * C >= CPU_PAR_MIN)
    for (int64_t r = 0; r < N; r++) {
        const float *d = dout + r * C;
        if (da)
            for (int64_t c = 0; c < Ca; c++)
                da[r * Ca + c] += d[c];
        if (db)
            for (int64_t c = 0; c < Cb; c++)
                db[r * Cb + c] += d[Ca + c];
    }
}

void cpu_upsample2x_forward(float *out, const float *inp, int64_t B, int64_t H, int64_t W, int64_t C)
{
    /* out [B, 2H, 2W, C], inp [B, H, W, C]. One task per input row (b, y) writes its two output rows. */
    CPU_PARALLEL_FOR(B * H * W * C * 4 >= CPU_PAR_MIN)
    for (int64_t by = 0; by < B * H; by++) {
        const float *src = inp + by * W * C;
        float *top = out + by * 2 * (2 * W * C), *bottom = top + 2 * W * C;
        for (int64_t x = 0; x < W; x++) {
            memcpy(top + (2 * x) * C, src + x * C, (size_t)C * sizeof(float));
            memcpy(top + (2 * x + 1) * C, src + x * C, (size_t)C * sizeof(float));
        }
        memcpy(bottom, top, (size_t)(2 * W * C) * sizeof(float));
    }
}

void cpu_upsample2x_backward(float *dinp, const float *dout, int64_t B, int64_t H, int64_t W, int64_t C)
{
    /* dinp [B, H, W, C] +=, dout [B, 2H, 2W, C]. Each input element sums its 2x2 block in a fixed order. */
    if (!dinp)
        return;
    CPU_PARALLEL_FOR(B * H * W * C * 4 >= CPU_PAR_MIN)
    for (int64_t by = 0; by < B * H; by++) {
        const float *top = dout + by * 2 * (2 * W * C), *bottom = top + 2 * W * C;
        float *dst = dinp + by * W * C;
        for (int64_t x = 0; x < W; x++)
            for (int64_t c = 0; c < C; c++) {
                int64_t l = (2 * x) * C + c, r = (2 * x + 1) * C + c;
                dst[x * C + c] += (top[l] + top[r]) + (bottom[l] + bottom[r]);
            }
    }
}

/* ---- timestep embedding -------------------------------------------------------------------------------- */

void cpu_timestep_embedding(float *out, const float *timesteps, int64_t B, int64_t dim, int flip_sin_to_cos,
                            float freq_shift, float max_period)
{
    /* out [B, dim], timesteps [B]. The frequencies follow diffusers' fp32 steps one by one, so that a model
     * sees the same embedding it was trained with: exponent = fl32(-ln max_period) * i, divided by
     * (half - shift), exponentiated, multiplied by t; each step rounds to fp32. */
    int64_t half = dim / 2;
    float neg_log_period = (float)-log((double)max_period);
    float denom = (float)((double)half - (double)freq_shift);
    for (int64_t b = 0; b < B; b++) {
        float t = timesteps[b];
        float *row = out + b * dim;
        float *sin_part = row + (flip_sin_to_cos ? half : 0), *cos_part = row + (flip_sin_to_cos ? 0 : half);
        for (int64_t i = 0; i < half; i++) {
            float exponent = neg_log_period * (float)i;
            float freq = expf(exponent / denom);
            float arg = t * freq;
            sin_part[i] = sinf(arg);
            cos_part[i] = cosf(arg);
        }
        if (dim % 2)
            row[dim - 1] = 0.0f;
    }
}

/* ---- loss ---------------------------------------------------------------------------------------------- */

float cpu_mse_loss_forward(float *per_sample, const float *pred, const float *target, const float *weights,
                           int64_t B, int64_t N)
{
    /* per_sample [B] or NULL, pred [B, N], target [B, N], weights [B] or NULL. A sample is one latent
     * (4 x 64 x 64 at 512 px): summed serially in double it costs microseconds and is exact enough that the
     * order never matters. */
    double loss = 0.0;
    for (int64_t b = 0; b < B; b++) {
        const float *p = pred + b * N, *t = target + b * N;
        double sum = 0.0;
        for (int64_t i = 0; i < N; i++) {
            double d = (double)p[i] - (double)t[i];
            sum += d * d;
        }
        double mean = N > 0 ? sum / (double)N : 0.0;
        if (per_sample)
            per_sample[b] = (float)mean;
        loss += (weights ? (double)weights[b] : 1.0) * mean;
    }
    return B > 0 ? (float)(loss / (double)B) : 0.0f;
}

void cpu_mse_loss_backward(float *dpred, const float *pred, const float *target, const float *weights,
                           float dloss, int64_t B, int64_t N)
{
    /* dpred [B, N] +=, pred [B, N], target [B, N], weights [B] or NULL. */
    if (!dpred || B <= 0 || N <= 0)
        return;
    for (int64_t b = 0; b < B; b++) {
        double w = weights ? (double)weights[b] : 1.0;
        float coef = (float)((double)dloss * w * 2.0 / ((double)B * (double)N));
        const float *p = pred + b * N, *t = target + b * N;
        float *d = dpred + b * N;
        CPU_PARALLEL_FOR(N >= CPU_PAR_MIN)
        for (int64_t i = 0; i < N; i++)
            d[i] += coef * (p[i] - t[i]);
    }
}

/* ---- small helpers ------------------------------------------------------------------------------------- */

void cpu_fill(float *out, float value, int64_t n)
{
    /* out [n]. */
    CPU_PARALLEL_FOR(n >= CPU_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        out[i] = value;
}

void cpu_scale(float *inout, float alpha, int64_t n)
{
    /* inout [n]. */
    CPU_PARALLEL_FOR(n >= CPU_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        inout[i] *= alpha;
}

void cpu_dropout_scale(float *inout, int64_t n, int64_t per_sample, int64_t rank, const sdt_dropout_args *a)
{
    /* inout [n] = [B, per_sample / rank, rank]. The kept values' scales are computed once here (and so on
     * CUDA's host side), so every backend multiplies by the same floats. */
    float keep = a->p > 0.0f ? 1.0f / (1.0f - a->p) : 1.0f;
    float keep_rank = a->rank_p > 0.0f ? 1.0f / (1.0f - a->rank_p) : 1.0f;
    CPU_PARALLEL_FOR(n >= CPU_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        inout[i] *=
            sdt_dropout_mask_at(i, per_sample, rank, a->p, keep, a->key, a->rank_p, keep_rank, a->rank_key) *
            a->factor;
}

void cpu_axpy(float *y, float alpha, const float *x, int64_t n)
{
    /* y [n] +=, x [n]. */
    CPU_PARALLEL_FOR(n >= CPU_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        y[i] += alpha * x[i];
}
