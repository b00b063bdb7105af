/* Attention, softmax and the elementwise CPU ops against naive oracles written from the definitions in
 * double. Attention's oracle materialises the whole score matrix (the op never does) and differentiates it
 * the textbook way, so the op's blocked, recomputing backward is checked against an independent route.
 * Shapes are odd on purpose: query counts that are no multiple of the 64-row block (77, 130), Lq != Lk both
 * ways, head sizes 40/64/80/160 and ones no multiple of the 8-wide tile. Backward runs with gradients
 * pre-filled with nonzero values (the op must add to them) and with NULL gradients. The activations'
 * analytic derivatives are checked against central differences, and the ops must give bit-identical
 * results on 1, 2 and 3 threads. */
#include "../splitmix64.h"
#include "check.h"
#include "cpu/cpu_ops.h"

#include <math.h>
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* max |op - oracle| / max |oracle|: a few fp32 roundings of the largest value */
#define TOL 2e-5
/* strict C11 has no PI */
#define PI 3.14159265358979323846

/* ---- buffers ------------------------------------------------------------------------------------------- */

typedef struct rng {
    uint64_t s;
} rng;

/* splitmix64 step mapped to [-1, 1) */
static double uniform(rng *r) { return (double)(splitmix64_next(&r->s) >> 11) / 4503599627370496.0 - 1.0; }

static float *randf(rng *r, int64_t n, double amp)
{
    float *a = malloc((size_t)(n > 0 ? n : 1) * sizeof *a);
    for (int64_t i = 0; i < n; i++)
        a[i] = (float)(amp * uniform(r));
    return a;
}

/* Outputs start as NaN so that an element the op never writes fails the comparison. */
static float *nanf_buf(int64_t n)
{
    float *a = malloc((size_t)(n > 0 ? n : 1) * sizeof *a);
    for (int64_t i = 0; i < n; i++)
        a[i] = NAN;
    return a;
}

static float *copyf(const float *a, int64_t n)
{
    float *c = malloc((size_t)(n > 0 ? n : 1) * sizeof *c);
    memcpy(c, a, (size_t)n * sizeof *c);
    return c;
}

static double *todouble(const float *a, int64_t n)
{
    double *d = malloc((size_t)(n > 0 ? n : 1) * sizeof *d);
    for (int64_t i = 0; i < n; i++)
        d[i] = a[i];
    return d;
}

static double *zerod(int64_t n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(double)); }

/* max |a - b| / max |b| (an absolute error where b is all 0); a NaN in a makes it NaN, which fails every
 * "< TOL". */
static double rel_err(const float *a, const double *b, int64_t n)
{
    double diff = 0.0, ref = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (isnan(d))
            return NAN;
        diff = d > diff ? d : diff;
        ref = fabs(b[i]) > ref ? fabs(b[i]) : ref;
    }
    return diff / (ref > 0.0 ? ref : 1.0);
}

/* The gradient an op added: got - before, in double (exact enough: both are fp32 of similar size). */
static double added_err(const float *got, const float *before, const double *want, int64_t n)
{
    double diff = 0.0, ref = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(((double)got[i] - (double)before[i]) - want[i]);
        if (isnan(d))
            return NAN;
        diff = d > diff ? d : diff;
        ref = fabs(want[i]) > ref ? fabs(want[i]) : ref;
    }
    return diff / (ref > 0.0 ? ref : 1.0);
}

static int same_bits(const float *a, const float *b, int64_t n)
{
    return memcmp(a, b, (size_t)n * sizeof *a) == 0;
}

/* ---- attention ----------------------------------------------------------------------------------------- */

typedef struct attn_case {
    int64_t B, Lq, Lk, H, D;
    int causal;
    double amp; /* input amplitude: larger makes the softmax peakier */
} attn_case;

/* The whole probability matrix p [B, H, Lq, Lk] of the definition: masked entries are exactly 0. */
static void ref_attention_probs(double *p, double *lse, const double *q, const double *k, const attn_case *c,
                                double scale)
{
    int64_t HD = c->H * c->D;
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t h = 0; h < c->H; h++)
            for (int64_t i = 0; i < c->Lq; i++) {
                double *row = p + ((b * c->H + h) * c->Lq + i) * c->Lk; /* [Lk] */
                double mx = -INFINITY;
                for (int64_t j = 0; j < c->Lk; j++) {
                    if (c->causal && j > i) {
                        row[j] = -INFINITY;
                        continue;
                    }
                    double s = 0.0;
                    for (int64_t d = 0; d < c->D; d++)
                        s += q[(b * c->Lq + i) * HD + h * c->D + d] * k[(b * c->Lk + j) * HD + h * c->D + d];
                    row[j] = s * scale;
                    mx = row[j] > mx ? row[j] : mx;
                }
                double sum = 0.0;
                for (int64_t j = 0; j < c->Lk; j++)
                    sum += exp(row[j] - mx);
                for (int64_t j = 0; j < c->Lk; j++)
                    row[j] = exp(row[j] - mx) / sum;
                lse[(b * c->H + h) * c->Lq + i] = mx + log(sum);
            }
}

/* out = P V; then from dout: dV = P^T dO, dP = dO V^T, dS = P * (dP - rowsum(P * dP)), dQ = scale dS K,
 * dK = scale dS^T Q. */
static void ref_attention(double *out, double *dq, double *dk, double *dv, const double *p, const double *q,
                          const double *k, const double *v, const double *dout, const attn_case *c,
                          double scale)
{
    int64_t HD = c->H * c->D, Lq = c->Lq, Lk = c->Lk, D = c->D;
    double *dp = malloc((size_t)Lk * sizeof *dp); /* [Lk]: one row of dP, then of dS */
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t h = 0; h < c->H; h++)
            for (int64_t i = 0; i < Lq; i++) {
                const double *prow = p + ((b * c->H + h) * Lq + i) * Lk; /* [Lk] */
                const double *qi = q + (b * Lq + i) * HD + h * D, *doi = dout + (b * Lq + i) * HD + h * D;
                double *oi = out + (b * Lq + i) * HD + h * D, *dqi = dq + (b * Lq + i) * HD + h * D;
                for (int64_t d = 0; d < D; d++) {
                    double s = 0.0;
                    for (int64_t j = 0; j < Lk; j++)
                        s += prow[j] * v[(b * Lk + j) * HD + h * D + d];
                    oi[d] = s;
                }
                double pdp = 0.0;
                for (int64_t j = 0; j < Lk; j++) {
                    const double *vj = v + (b * Lk + j) * HD + h * D;
                    double *dvj = dv + (b * Lk + j) * HD + h * D;
                    dp[j] = 0.0;
                    for (int64_t d = 0; d < D; d++) {
                        dp[j] += doi[d] * vj[d];
                        dvj[d] += prow[j] * doi[d];
                    }
                    pdp += prow[j] * dp[j];
                }
                for (int64_t j = 0; j < Lk; j++) {
                    double ds = prow[j] * (dp[j] - pdp);
                    const double *kj = k + (b * Lk + j) * HD + h * D;
                    double *dkj = dk + (b * Lk + j) * HD + h * D;
                    for (int64_t d = 0; d < D; d++) {
                        dqi[d] += scale * ds * kj[d];
                        dkj[d] += scale * ds * qi[d];
                    }
                }
            }
    free(dp);
}

static void check_attention_case(test_state *t, rng *r, const attn_case *c)
{
    int64_t nq = c->B * c->Lq * c->H * c->D, nk = c->B * c->Lk * c->H * c->D, nl = c->B * c->H * c->Lq;
    float scale = 1.0f / sqrtf((float)c->D);
    float *q = randf(r, nq, c->amp), *k = randf(r, nk, c->amp), *v = randf(r, nk, 1.0),
          *dout = randf(r, nq, 1.0);
    float *out = nanf_buf(nq), *lse = nanf_buf(nl);
    CHECK(t, cpu_attention_forward(out, lse, q, k, v, c->B, c->Lq, c->Lk, c->H, c->D, scale, c->causal) == 0);

    double *qd = todouble(q, nq), *kd = todouble(k, nk), *vd = todouble(v, nk), *doutd = todouble(dout, nq);
    double *p = zerod(nl * c->Lk), *lse_ref = zerod(nl), *out_ref = zerod(nq);
    double *dq_ref = zerod(nq), *dk_ref = zerod(nk), *dv_ref = zerod(nk);
    ref_attention_probs(p, lse_ref, qd, kd, c, (double)scale);
    ref_attention(out_ref, dq_ref, dk_ref, dv_ref, p, qd, kd, vd, doutd, c, (double)scale);

    char name[96];
    snprintf(name, sizeof name, "B%lld Lq%lld Lk%lld H%lld D%lld causal%d", (long long)c->B, (long long)c->Lq,
             (long long)c->Lk, (long long)c->H, (long long)c->D, c->causal);
    double e = rel_err(out, out_ref, nq);
    CHECK_MSG(t, e < TOL, "attention %s: out error %g", name, e);
    e = rel_err(lse, lse_ref, nl);
    CHECK_MSG(t, e < TOL, "attention %s: lse error %g", name, e);

    /* All three gradients, pre-filled: each must be the old value plus the oracle's gradient. */
    float *dq0 = randf(r, nq, 0.5), *dk0 = randf(r, nk, 0.5), *dv0 = randf(r, nk, 0.5);
    float *dq = copyf(dq0, nq), *dk = copyf(dk0, nk), *dv = copyf(dv0, nk);
    CHECK(t, cpu_attention_backward(dq, dk, dv, dout, q, k, v, out, lse, c->B, c->Lq, c->Lk, c->H, c->D,
                                    scale, c->causal) == 0);
    e = added_err(dq, dq0, dq_ref, nq);
    CHECK_MSG(t, e < TOL, "attention %s: dq error %g", name, e);
    e = added_err(dk, dk0, dk_ref, nk);
    CHECK_MSG(t, e < TOL, "attention %s: dk error %g", name, e);
    e = added_err(dv, dv0, dv_ref, nk);
    CHECK_MSG(t, e < TOL, "attention %s: dv error %g", name, e);

    /* NULL gradients are skipped, and skipping some changes none of the others' bits. */
    float *only = copyf(dq0, nq);
    CHECK(t, cpu_attention_backward(only, NULL, NULL, dout, q, k, v, out, lse, c->B, c->Lq, c->Lk, c->H, c->D,
                                    scale, c->causal) == 0);
    CHECK_MSG(t, same_bits(only, dq, nq), "attention %s: dq alone differs", name);
    free(only);
    only = copyf(dk0, nk);
    CHECK(t, cpu_attention_backward(NULL, only, NULL, dout, q, k, v, out, lse, c->B, c->Lq, c->Lk, c->H, c->D,
                                    scale, c->causal) == 0);
    CHECK_MSG(t, same_bits(only, dk, nk), "attention %s: dk alone differs", name);
    free(only);
    only = copyf(dv0, nk);
    CHECK(t, cpu_attention_backward(NULL, NULL, only, dout, q, k, v, out, lse, c->B, c->Lq, c->Lk, c->H, c->D,
                                    scale, c->causal) == 0);
    CHECK_MSG(t, same_bits(only, dv, nk), "attention %s: dv alone differs", name);
    free(only);
    CHECK(t, cpu_attention_backward(NULL, NULL, NULL, dout, q, k, v, out, lse, c->B, c->Lq, c->Lk, c->H, c->D,
                                    scale, c->causal) == 0);

    free(q), free(k), free(v), free(dout), free(out), free(lse);
    free(qd), free(kd), free(vd), free(doutd), free(p), free(lse_ref), free(out_ref);
    free(dq_ref), free(dk_ref), free(dv_ref), free(dq0), free(dk0), free(dv0), free(dq), free(dk), free(dv);
}

static void attention(test_state *t)
{
    static const attn_case cases[] = {
        {1, 77, 77, 1, 40, 0, 1.0},   /* one head, one full block and a partial one */
        {2, 77, 77, 2, 64, 1, 2.0},   /* CLIP's causal self-attention */
        {1, 130, 130, 8, 40, 0, 1.0}, /* SD1.5's first level: three blocks, the last of 2 rows */
        {1, 130, 130, 2, 40, 1, 3.0}, /* causal over several blocks, peaky softmax */
        {1, 130, 77, 2, 80, 0, 1.0},  /* cross-attention to 77 text tokens */
        {2, 33, 130, 1, 160, 0, 1.0}, /* fewer queries than keys */
        {1, 70, 50, 2, 40, 1, 1.0},   /* causal, Lq > Lk: rows from 50 on see every key */
        {1, 50, 70, 2, 64, 1, 1.0},   /* causal, Lq < Lk: keys past Lq are never seen */
        {1, 129, 129, 2, 13, 1, 1.0}, /* a head size no multiple of the 8-wide tile */
        {1, 5, 1, 3, 7, 1, 1.0},      /* a single key */
        {1, 1, 5, 1, 3, 0, 1.0},      /* a single query */
        {1, 64, 64, 8, 160, 0, 4.0},  /* SD1.5's deepest level, exactly one block */
    };
    rng r = {42};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_attention_case(t, &r, &cases[i]);
}

/* ---- softmax ------------------------------------------------------------------------------------------- */

static void softmax(test_state *t)
{
    rng r = {7};
    const int64_t N = 6, C = 131;
    float *x = randf(&r, N * C, 10.0);
    for (int64_t c = 0; c < C; c++) /* a row far from 0: only subtracting the max keeps exp finite */
        x[2 * C + c] += 5000.0f;
    x[4 * C + 17] = 80.0f; /* a row with one dominant entry */
    float *y = nanf_buf(N * C);
    cpu_softmax_forward(y, x, N, C);
    double *want = zerod(N * C), *dwant = zerod(N * C);
    float *dy = randf(&r, N * C, 1.0), *dx0 = randf(&r, N * C, 0.5), *dx = copyf(dx0, N * C);
    for (int64_t n = 0; n < N; n++) {
        double mx = -INFINITY, sum = 0.0, dot = 0.0;
        for (int64_t c = 0; c < C; c++)
            mx = x[n * C + c] > mx ? x[n * C + c] : mx;
        for (int64_t c = 0; c < C; c++)
            sum += exp((double)x[n * C + c] - mx);
        for (int64_t c = 0; c < C; c++)
            want[n * C + c] = exp((double)x[n * C + c] - mx) / sum;
        for (int64_t c = 0; c < C; c++)
            dot += (double)dy[n * C + c] * y[n * C + c];
        for (int64_t c = 0; c < C; c++)
            dwant[n * C + c] = y[n * C + c] * (dy[n * C + c] - dot);
    }
    double e = rel_err(y, want, N * C);
    CHECK_MSG(t, e < TOL, "softmax forward error %g", e);
    cpu_softmax_backward(dx, dy, y, N, C);
    e = added_err(dx, dx0, dwant, N * C);
    CHECK_MSG(t, e < TOL, "softmax backward error %g", e);
    cpu_softmax_backward(NULL, dy, y, N, C);
    free(x), free(y), free(want), free(dwant), free(dy), free(dx0), free(dx);
}

/* ---- activations --------------------------------------------------------------------------------------- */

static double act_ref(cpu_activation act, double x)
{
    switch (act) {
    case CPU_ACT_SILU: return x / (1.0 + exp(-x));
    case CPU_ACT_GELU: return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    case CPU_ACT_GELU_TANH: return 0.5 * x * (1.0 + tanh(sqrt(2.0 / PI) * (x + 0.044715 * x * x * x)));
    case CPU_ACT_QUICK_GELU: return x / (1.0 + exp(-1.702 * x));
    }
    return NAN;
}

/* The derivatives written out by hand, independently of the op's formulas. */
static double act_grad_ref(cpu_activation act, double x)
{
    switch (act) {
    case CPU_ACT_SILU: {
        double s = 1.0 / (1.0 + exp(-x));
        return s * (1.0 + x * (1.0 - s));
    }
    case CPU_ACT_GELU: return 0.5 * (1.0 + erf(x / sqrt(2.0))) + x * exp(-0.5 * x * x) / sqrt(2.0 * PI);
    case CPU_ACT_GELU_TANH: {
        double k0 = sqrt(2.0 / PI), u = k0 * (x + 0.044715 * x * x * x), th = tanh(u);
        return 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * k0 * (1.0 + 3.0 * 0.044715 * x * x);
    }
    case CPU_ACT_QUICK_GELU: {
        double s = 1.0 / (1.0 + exp(-1.702 * x));
        return s + 1.702 * x * s * (1.0 - s);
    }
    }
    return NAN;
}

static void activations(test_state *t)
{
    static const cpu_activation acts[] = {CPU_ACT_SILU, CPU_ACT_GELU, CPU_ACT_GELU_TANH, CPU_ACT_QUICK_GELU};
    static const char *names[] = {"silu", "gelu", "gelu_tanh", "quick_gelu"};
    /* Where the functions bend (a fine grid over [-12, 12]) plus random points. */
    enum { GRID = 2401, N = GRID + 600 };
    rng r = {3};
    float x[N];
    for (int i = 0; i < GRID; i++)
        x[i] = (float)(-12.0 + 0.01 * i);
    for (int i = GRID; i < N; i++)
        x[i] = (float)(6.0 * uniform(&r));
    for (size_t a = 0; a < sizeof acts / sizeof acts[0]; a++) {
        cpu_activation act = acts[a];
        float *y = nanf_buf(N), *dy = randf(&r, N, 1.0), *dx0 = randf(&r, N, 0.5), *dx = copyf(dx0, N);
        double *want = zerod(N), *dwant = zerod(N);
        double fd_err = 0.0;
        for (int i = 0; i < N; i++) {
            double xi = x[i], h = 1e-5;
            want[i] = act_ref(act, xi);
            dwant[i] = dy[i] * act_grad_ref(act, xi);
            /* The hand-written derivative against central differences of the definition, in double. */
            double fd = (act_ref(act, xi + h) - act_ref(act, xi - h)) / (2.0 * h);
            double d = fabs(fd - act_grad_ref(act, xi));
            fd_err = d > fd_err ? d : fd_err;
        }
        CHECK_MSG(t, fd_err < 1e-8, "%s: derivative vs central differences %g", names[a], fd_err);
        cpu_activation_forward(y, x, N, act);
        double e = rel_err(y, want, N);
        CHECK_MSG(t, e < TOL, "%s forward error %g", names[a], e);
        cpu_activation_backward(dx, dy, x, N, act);
        e = added_err(dx, dx0, dwant, N);
        CHECK_MSG(t, e < TOL, "%s backward error %g", names[a], e);
        /* The op's fp32 derivative against central differences of the double definition, with dout = 1. */
        float ones[N], g[N];
        for (int i = 0; i < N; i++) {
            ones[i] = 1.0f;
            g[i] = 0.0f;
        }
        cpu_activation_backward(g, ones, x, N, act);
        double *fd = zerod(N);
        for (int i = 0; i < N; i++)
            fd[i] = (act_ref(act, (double)x[i] + 1e-5) - act_ref(act, (double)x[i] - 1e-5)) / 2e-5;
        e = rel_err(g, fd, N);
        CHECK_MSG(t, e < TOL, "%s derivative vs central differences: %g", names[a], e);
        cpu_activation_backward(NULL, dy, x, N, act);

        /* Far out, the safe forms must give the limits, never inf or NaN: f(x) -> x or 0, f'(x) -> 1 or 0. */
        static const float far[] = {-1e30f, -1e4f, -200.0f, 200.0f, 1e4f, 1e30f};
        enum { NF = sizeof far / sizeof far[0] };
        float fy[NF], fg[NF] = {0}, fone[NF];
        for (int i = 0; i < NF; i++)
            fone[i] = 1.0f;
        cpu_activation_forward(fy, far, NF, act);
        cpu_activation_backward(fg, fone, far, NF, act);
        for (int i = 0; i < NF; i++) {
            double lim = far[i] > 0 ? far[i] : 0.0, glim = far[i] > 0 ? 1.0 : 0.0;
            CHECK_MSG(t, fabs(fy[i] - lim) <= 1e-6 * fabs(lim), "%s(%g) = %g", names[a], far[i], fy[i]);
            CHECK_MSG(t, fabs(fg[i] - glim) < 1e-6, "%s'(%g) = %g", names[a], far[i], fg[i]);
        }
        free(y), free(dy), free(dx0), free(dx), free(want), free(dwant), free(fd);
    }
}

static void geglu(test_state *t)
{
    rng r = {11};
    const int64_t N = 5, F = 37;
    float *x = randf(&r, N * 2 * F, 4.0), *y = nanf_buf(N * F), *dy = randf(&r, N * F, 1.0);
    float *dx0 = randf(&r, N * 2 * F, 0.5), *dx = copyf(dx0, N * 2 * F);
    double *want = zerod(N * F), *dwant = zerod(N * 2 * F);
    for (int64_t n = 0; n < N; n++)
        for (int64_t f = 0; f < F; f++) {
            double a = x[n * 2 * F + f], g = x[n * 2 * F + F + f], d = dy[n * F + f];
            want[n * F + f] = a * act_ref(CPU_ACT_GELU, g);
            dwant[n * 2 * F + f] = d * act_ref(CPU_ACT_GELU, g);
            dwant[n * 2 * F + F + f] = d * a * act_grad_ref(CPU_ACT_GELU, g);
        }
    cpu_geglu_forward(y, x, N, F);
    double e = rel_err(y, want, N * F);
    CHECK_MSG(t, e < TOL, "geglu forward error %g", e);
    cpu_geglu_backward(dx, dy, x, N, F);
    e = added_err(dx, dx0, dwant, N * 2 * F);
    CHECK_MSG(t, e < TOL, "geglu backward error %g", e);
    cpu_geglu_backward(NULL, dy, x, N, F);
    free(x), free(y), free(dy), free(dx0), free(dx), free(want), free(dwant);
}

/* ---- adds, concat, upsample ---------------------------------------------------------------------------- */

static void add(test_state *t)
{
    rng r = {13};
    const int64_t n = 1000;
    float *a = randf(&r, n, 1.0), *b = randf(&r, n, 1.0), *out = nanf_buf(n), *d = randf(&r, n, 1.0);
    double *want = zerod(n), *dwant = todouble(d, n);
    for (int64_t i = 0; i < n; i++)
        want[i] = (double)a[i] + (double)b[i];
    cpu_add_forward(out, a, b, n);
    CHECK(t, rel_err(out, want, n) < 1e-7);
    float *alias = copyf(a, n);
    cpu_add_forward(alias, alias, b, n); /* out may be an input */
    CHECK(t, same_bits(alias, out, n));
    float *da0 = randf(&r, n, 1.0), *db0 = randf(&r, n, 1.0), *da = copyf(da0, n), *db = copyf(db0, n);
    cpu_add_backward(da, db, d, n);
    CHECK(t, added_err(da, da0, dwant, n) < 1e-6);
    CHECK(t, added_err(db, db0, dwant, n) < 1e-6);
    memcpy(da, da0, (size_t)n * sizeof *da);
    cpu_add_backward(da, NULL, d, n);
    CHECK(t, added_err(da, da0, dwant, n) < 1e-6);
    cpu_add_backward(NULL, NULL, d, n);
    free(a), free(b), free(out), free(d), free(want), free(dwant), free(alias), free(da0), free(db0),
        free(da), free(db);
}

static void add_channel_vector(test_state *t)
{
    rng r = {17};
    const int64_t B = 2, HW = 1000, C = 70; /* C spans a full 64-channel strip and a partial one */
    float *x = randf(&r, B * HW * C, 1.0), *vec = randf(&r, B * C, 1.0), *out = nanf_buf(B * HW * C);
    float *d = randf(&r, B * HW * C, 1.0);
    double *want = zerod(B * HW * C), *dvec_want = zerod(B * C), *dx_want = todouble(d, B * HW * C);
    for (int64_t b = 0; b < B; b++)
        for (int64_t p = 0; p < HW; p++)
            for (int64_t c = 0; c < C; c++) {
                int64_t i = (b * HW + p) * C + c;
                want[i] = (double)x[i] + (double)vec[b * C + c];
                dvec_want[b * C + c] += d[i];
            }
    cpu_add_channel_vector_forward(out, x, vec, B, HW, C);
    CHECK(t, rel_err(out, want, B * HW * C) < 1e-7);
    float *dx0 = randf(&r, B * HW * C, 1.0), *dv0 = randf(&r, B * C, 1.0);
    float *dx = copyf(dx0, B * HW * C), *dv = copyf(dv0, B * C);
    cpu_add_channel_vector_backward(dx, dv, d, B, HW, C);
    CHECK(t, added_err(dx, dx0, dx_want, B * HW * C) < 1e-6);
    double e = added_err(dv, dv0, dvec_want, B * C);
    CHECK_MSG(t, e < TOL, "dvec error %g", e);
    float *dv_only = copyf(dv0, B * C);
    cpu_add_channel_vector_backward(NULL, dv_only, d, B, HW, C);
    CHECK(t, same_bits(dv_only, dv, B * C));
    memcpy(dx, dx0, (size_t)(B * HW * C) * sizeof *dx);
    cpu_add_channel_vector_backward(dx, NULL, d, B, HW, C);
    CHECK(t, added_err(dx, dx0, dx_want, B * HW * C) < 1e-6);
    free(x), free(vec), free(out), free(d), free(want), free(dvec_want), free(dx_want), free(dx0), free(dv0),
        free(dx), free(dv), free(dv_only);
}

static void concat(test_state *t)
{
    rng r = {19};
    const int64_t N = 9, Ca = 5, Cb = 11, C = Ca + Cb;
    float *a = randf(&r, N * Ca, 1.0), *b = randf(&r, N * Cb, 1.0), *out = nanf_buf(N * C);
    cpu_concat_forward(out, a, b, N, Ca, Cb);
    int ok = 1;
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++)
            ok &= out[n * C + c] == (c < Ca ? a[n * Ca + c] : b[n * Cb + c - Ca]);
    CHECK(t, ok);
    float *d = randf(&r, N * C, 1.0), *da0 = randf(&r, N * Ca, 1.0), *db0 = randf(&r, N * Cb, 1.0);
    float *da = copyf(da0, N * Ca), *db = copyf(db0, N * Cb);
    double *da_want = zerod(N * Ca), *db_want = zerod(N * Cb);
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) {
            if (c < Ca)
                da_want[n * Ca + c] = d[n * C + c];
            else
                db_want[n * Cb + c - Ca] = d[n * C + c];
        }
    cpu_concat_backward(da, db, d, N, Ca, Cb);
    CHECK(t, added_err(da, da0, da_want, N * Ca) < 1e-6);
    CHECK(t, added_err(db, db0, db_want, N * Cb) < 1e-6);
    memcpy(db, db0, (size_t)(N * Cb) * sizeof *db);
    cpu_concat_backward(NULL, db, d, N, Ca, Cb);
    CHECK(t, added_err(db, db0, db_want, N * Cb) < 1e-6);
    cpu_concat_backward(NULL, NULL, d, N, Ca, Cb);
    free(a), free(b), free(out), free(d), free(da0), free(db0), free(da), free(db), free(da_want),
        free(db_want);
}

static void upsample2x(test_state *t)
{
    rng r = {23};
    const int64_t B = 2, H = 3, W = 5, C = 7, n = B * H * W * C, n2 = 4 * n;
    float *x = randf(&r, n, 1.0), *out = nanf_buf(n2);
    cpu_upsample2x_forward(out, x, B, H, W, C);
    int ok = 1;
    for (int64_t b = 0; b < B; b++)
        for (int64_t y = 0; y < 2 * H; y++)
            for (int64_t xx = 0; xx < 2 * W; xx++)
                for (int64_t c = 0; c < C; c++)
                    ok &= out[((b * 2 * H + y) * 2 * W + xx) * C + c] ==
                          x[((b * H + y / 2) * W + xx / 2) * C + c];
    CHECK(t, ok);
    float *d = randf(&r, n2, 1.0), *dx0 = randf(&r, n, 1.0), *dx = copyf(dx0, n);
    double *want = zerod(n);
    for (int64_t b = 0; b < B; b++)
        for (int64_t y = 0; y < 2 * H; y++)
            for (int64_t xx = 0; xx < 2 * W; xx++)
                for (int64_t c = 0; c < C; c++)
                    want[((b * H + y / 2) * W + xx / 2) * C + c] += d[((b * 2 * H + y) * 2 * W + xx) * C + c];
    cpu_upsample2x_backward(dx, d, B, H, W, C);
    double e = added_err(dx, dx0, want, n);
    CHECK_MSG(t, e < 1e-6, "upsample2x backward error %g", e);
    cpu_upsample2x_backward(NULL, d, B, H, W, C);
    free(x), free(out), free(d), free(dx0), free(dx), free(want);
}

/* ---- timestep embedding -------------------------------------------------------------------------------- */

static void check_embedding(test_state *t, int64_t dim, int flip, float shift, float max_period)
{
    static const float ts[] = {0.0f, 1.0f, 17.5f, 500.0f, 999.0f};
    enum { B = sizeof ts / sizeof ts[0] };
    int64_t half = dim / 2;
    float *out = nanf_buf(B * dim);
    cpu_timestep_embedding(out, ts, B, dim, flip, shift, max_period);
    double exact_err = 0.0, fp32_err = 0.0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < half; i++) {
            /* Exactly in double: the fp32 argument may be off by about an ulp of t (6e-5 at 999). */
            double freq = exp(-log((double)max_period) * (double)i / ((double)half - (double)shift));
            double arg = (double)ts[b] * freq;
            /* diffusers' fp32 steps: fl32(-ln P) * i, / (half - shift), exp, * t, each rounded to fp32 */
            float e32 = (float)-log((double)max_period) * (float)i;
            e32 = e32 / (float)((double)half - (double)shift);
            float arg32 = ts[b] * expf(e32);
            float s = out[b * dim + (flip ? half : 0) + i], c = out[b * dim + (flip ? 0 : half) + i];
            double d = fmax(fabs(s - sin(arg)), fabs(c - cos(arg)));
            exact_err = d > exact_err ? d : exact_err;
            d = fmax(fabs(s - sin((double)arg32)), fabs(c - cos((double)arg32)));
            fp32_err = d > fp32_err ? d : fp32_err;
        }
    CHECK_MSG(t, exact_err < 2e-4, "embedding dim %lld: error %g against the exact formula", (long long)dim,
              exact_err);
    CHECK_MSG(t, fp32_err < 1e-6, "embedding dim %lld: error %g against the fp32 steps", (long long)dim,
              fp32_err);
    for (int64_t b = 0; b < B && dim % 2; b++)
        CHECK_MSG(t, out[b * dim + dim - 1] == 0.0f, "embedding dim %lld: last column %g", (long long)dim,
                  out[b * dim + dim - 1]);
    /* t = 0: every sin is 0 and every cos 1, which pins the order of the halves. */
    CHECK(t, out[(flip ? 0 : half)] == 1.0f && out[(flip ? half : 0)] == 0.0f);
    free(out);
}

static void timestep_embedding(test_state *t)
{
    check_embedding(t, 320, 1, 0.0f, 10000.0f); /* SD's UNet */
    check_embedding(t, 256, 1, 0.0f, 10000.0f); /* SDXL's added-time embedding */
    check_embedding(t, 7, 0, 1.0f, 10000.0f);   /* odd dim, sin first, shift 1 */
}

/* ---- loss and helpers ---------------------------------------------------------------------------------- */

static void mse_loss(test_state *t)
{
    rng r = {29};
    const int64_t B = 3, N = 1000;
    float *pred = randf(&r, B * N, 1.0), *target = randf(&r, B * N, 1.0);
    const float weights[] = {0.25f, 1.0f, 3.5f};
    for (int weighted = 0; weighted < 2; weighted++) {
        const float *w = weighted ? weights : NULL;
        double per[3], loss = 0.0;
        for (int64_t b = 0; b < B; b++) {
            double s = 0.0;
            for (int64_t i = 0; i < N; i++)
                s += ((double)pred[b * N + i] - target[b * N + i]) *
                     ((double)pred[b * N + i] - target[b * N + i]);
            per[b] = s / (double)N;
            loss += (w ? w[b] : 1.0) * per[b];
        }
        loss /= (double)B;
        float got_per[3] = {NAN, NAN, NAN};
        float got = cpu_mse_loss_forward(got_per, pred, target, w, B, N);
        CHECK_MSG(t, fabs(got - loss) < 1e-6 * loss, "mse (weighted %d): %g, want %g", weighted, got, loss);
        CHECK(t, rel_err(got_per, per, B) < 1e-6);
        CHECK(t, cpu_mse_loss_forward(NULL, pred, target, w, B, N) == got);

        const float dloss = 0.7f;
        double *want = zerod(B * N);
        for (int64_t b = 0; b < B; b++)
            for (int64_t i = 0; i < N; i++)
                want[b * N + i] = (double)dloss * (w ? w[b] : 1.0) * 2.0 *
                                  ((double)pred[b * N + i] - target[b * N + i]) / (double)(B * N);
        float *d0 = randf(&r, B * N, 1e-3), *d = copyf(d0, B * N);
        cpu_mse_loss_backward(d, pred, target, w, dloss, B, N);
        double e = added_err(d, d0, want, B * N);
        CHECK_MSG(t, e < TOL, "mse backward (weighted %d) error %g", weighted, e);
        cpu_mse_loss_backward(NULL, pred, target, w, dloss, B, N);
        free(want), free(d0), free(d);
    }
    free(pred), free(target);
}

static void helpers(test_state *t)
{
    const int64_t n = 100000; /* past the size where the loops go parallel */
    rng r = {31};
    float *x = randf(&r, n, 1.0), *y = randf(&r, n, 1.0), *y0 = copyf(y, n), *f = nanf_buf(n);
    cpu_fill(f, 2.5f, n);
    int ok = 1;
    for (int64_t i = 0; i < n; i++)
        ok &= f[i] == 2.5f;
    CHECK(t, ok);
    double *want = zerod(n);
    for (int64_t i = 0; i < n; i++)
        want[i] = (double)y0[i] - 0.5 * (double)x[i];
    cpu_axpy(y, -0.5f, x, n);
    CHECK(t, rel_err(y, want, n) < 1e-7);
    for (int64_t i = 0; i < n; i++)
        want[i] = 3.0 * (double)y0[i];
    cpu_scale(y0, 3.0f, n);
    CHECK(t, rel_err(y0, want, n) < 1e-7);
    free(x), free(y), free(y0), free(f), free(want);
}

/* ---- thread-count independence ------------------------------------------------------------------------- */

/* Every op large enough to go parallel, run once, each result appended to one buffer that is then compared
 * bit for bit between thread counts. */
typedef struct run_out {
    float *buf; /* [cap] */
    int64_t n, cap;
    int failed; /* an op returned an error */
} run_out;

/* The next n floats of the record, zeroed (gradients start from 0). */
static float *take(run_out *o, int64_t n)
{
    if (o->n + n > o->cap) {
        fprintf(stderr, "thread-count record too small\n");
        abort();
    }
    float *p = o->buf + o->n;
    memset(p, 0, (size_t)n * sizeof *p);
    o->n += n;
    return p;
}

static run_out run_all(void)
{
    rng r = {99};
    const int64_t Lq = 200, Lk = 150, H = 4, D = 40, HD = H * D, n = 40000;
    run_out o = {malloc((size_t)(1 << 20) * sizeof(float)), 0, 1 << 20, 0};
    float *q = randf(&r, Lq * HD, 2.0), *k = randf(&r, Lk * HD, 2.0), *v = randf(&r, Lk * HD, 1.0);
    float *kv = randf(&r, Lq * HD, 1.0), *dout = randf(&r, Lq * HD, 1.0);
    float *x = randf(&r, 2 * n, 3.0), *g = randf(&r, 2 * n, 1.0);
    /* cross-attention forward and backward, causal self-attention forward and backward */
    for (int causal = 0; causal < 2; causal++) {
        const float *kk = causal ? kv : k, *vv = causal ? kv : v;
        int64_t L = causal ? Lq : Lk;
        float *out = take(&o, Lq * HD), *lse = take(&o, H * Lq);
        if (cpu_attention_forward(out, lse, q, kk, vv, 1, Lq, L, H, D, 0.158f, causal) != 0)
            o.failed = 1;
        float *dq = take(&o, Lq * HD), *dk = take(&o, L * HD), *dv = take(&o, L * HD);
        if (cpu_attention_backward(dq, dk, dv, dout, q, kk, vv, out, lse, 1, Lq, L, H, D, 0.158f, causal) !=
            0)
            o.failed = 1;
    }
    cpu_activation_forward(take(&o, n), x, n, CPU_ACT_GELU);
    cpu_activation_backward(take(&o, n), g, x, n, CPU_ACT_QUICK_GELU);
    cpu_geglu_forward(take(&o, n / 2), x, n / 100, 50);
    cpu_geglu_backward(take(&o, n), g, x, n / 100, 50);
    cpu_add_channel_vector_backward(NULL, take(&o, 2 * 96), x, 2, 400, 96);
    cpu_softmax_forward(take(&o, n), x, 40, 1000);
    cpu_softmax_backward(take(&o, n), g, x, 40, 1000);
    float *up = take(&o, 4 * n);
    cpu_upsample2x_forward(up, x, 2, 20, 25, 40);
    cpu_upsample2x_backward(take(&o, n), up, 2, 20, 25, 40);
    cpu_mse_loss_backward(take(&o, 2 * n), x, g, NULL, 0.3f, 2, n);
    free(q), free(k), free(v), free(kv), free(dout), free(x), free(g);
    return o;
}

static void thread_count_independence(test_state *t)
{
#ifdef _OPENMP
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    run_out one = run_all();
    CHECK(t, !one.failed);
    for (int threads = 2; threads <= 3; threads++) {
        omp_set_num_threads(threads);
        run_out many = run_all();
        CHECK(t, !many.failed);
        CHECK_MSG(t, many.n == one.n && same_bits(many.buf, one.buf, one.n), "%d threads differ from 1",
                  threads);
        free(many.buf);
    }
    omp_set_num_threads(saved);
    free(one.buf);
#else
    (void)t;
#endif
}

TEST_MAIN("cpu_ops_naive2", TEST(attention), TEST(softmax), TEST(activations), TEST(geglu), TEST(add),
          TEST(add_channel_vector), TEST(concat), TEST(upsample2x), TEST(timestep_embedding), TEST(mse_loss),
          TEST(helpers), TEST(thread_count_independence))
