/* The fast CPU ops (sgemm linear layers, im2col convolutions, group and layer norm) against naive oracles:
 * direct loops in double written from the definitions, over odd shapes (channel counts that are not
 * multiples of 4, H != W, asymmetric padding, batch 2, convs large enough to take several im2col chunks).
 * Backward is checked with gradients pre-filled with nonzero values (they must be added to) and under
 * every combination of NULL gradients. The oracles' own backward passes are checked against central
 * differences of their forward, and the fast ops must give bit-identical results on 1, 2 and 3 OpenMP
 * threads. (Not across OpenBLAS thread counts: its sgemm gives different roundings on 1 and 2 threads at
 * some shapes, N = 19 for one, so a bit-reproducible run also needs a fixed OPENBLAS_NUM_THREADS.) */
#include "check.h"
#include "cpu/cpu_ops.h"

#include <math.h>
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* max |fast - oracle| / max |oracle|: a few float roundings of the largest value, whatever the sum length */
#define TOL 1e-5

/* ---- buffers ------------------------------------------------------------------------------------------ */

typedef struct rng {
    uint64_t s;
} rng;

/* xorshift64: uniform in [-1, 1) */
static double rng_uniform(rng *r)
{
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return (double)(r->s >> 11) * (2.0 / 9007199254740992.0) - 1.0;
}

static float *rand_floats(rng *r, int64_t n, double scale, double offset)
{
    float *a = malloc((size_t)(n ? n : 1) * sizeof *a);
    for (int64_t i = 0; i < n; i++)
        a[i] = (float)(offset + scale * rng_uniform(r));
    return a;
}

/* Output buffers start as NaN, so an element the op forgets to write fails the comparison. */
static float *nan_floats(int64_t n)
{
    float *a = malloc((size_t)(n ? n : 1) * sizeof *a);
    for (int64_t i = 0; i < n; i++)
        a[i] = NAN;
    return a;
}

static float *dup_floats(const float *a, int64_t n)
{
    float *d = malloc((size_t)(n ? n : 1) * sizeof *d);
    memcpy(d, a, (size_t)n * sizeof *d);
    return d;
}

/* NULL stays NULL: an absent bias */
static double *to_double(const float *a, int64_t n)
{
    if (!a)
        return NULL;
    double *d = malloc((size_t)(n ? n : 1) * sizeof *d);
    for (int64_t i = 0; i < n; i++)
        d[i] = a[i];
    return d;
}

static double *zeros(int64_t n) { return calloc((size_t)(n ? n : 1), sizeof(double)); }

/* max |a - b| / (max |b| + tiny); NaN in a makes it NaN, which fails every "< TOL" check. */
static double max_rel_err(const float *a, const double *b, int64_t n)
{
    double diff = 0.0, ref = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - b[i]);
        if (d > diff || isnan(d))
            diff = d;
        if (fabs(b[i]) > ref)
            ref = fabs(b[i]);
    }
    return diff / (ref + 1e-30);
}

/* A gradient that started as init [n] must now be init + ref [n]. */
static void check_added(test_state *t, const char *what, const char *name, const float *got,
                        const float *init, const double *ref, int64_t n)
{
    double *want = zeros(n);
    for (int64_t i = 0; i < n; i++)
        want[i] = (double)init[i] + ref[i];
    const double err = max_rel_err(got, want, n);
    CHECK_MSG(t, err < TOL, "%s %s: relative error %.3g", name, what, err);
    free(want);
}

/* ---- linear ----------------------------------------------------------------------------------------- */

/* out [N, OC] = x [N, C] @ w [OC, C]^T + bias [OC] */
static void ref_linear_forward(double *out, const double *x, const double *w, const double *bias, int64_t N,
                               int64_t C, int64_t OC)
{
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < OC; o++) {
            double acc = bias ? bias[o] : 0.0;
            for (int64_t c = 0; c < C; c++)
                acc += x[n * C + c] * w[o * C + c];
            out[n * OC + o] = acc;
        }
}

/* dx [N, C], dw [OC, C], db [OC] += */
static void ref_linear_backward(double *dx, double *dw, double *db, const double *dout, const double *x,
                                const double *w, int64_t N, int64_t C, int64_t OC)
{
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < OC; o++) {
            const double d = dout[n * OC + o];
            db[o] += d;
            for (int64_t c = 0; c < C; c++) {
                dx[n * C + c] += d * w[o * C + c];
                dw[o * C + c] += d * x[n * C + c];
            }
        }
}

static void check_linear_case(test_state *t, rng *r, int64_t N, int64_t C, int64_t OC, int with_bias)
{
    char name[64];
    snprintf(name, sizeof name, "linear N%lld C%lld OC%lld%s", (long long)N, (long long)C, (long long)OC,
             with_bias ? " bias" : "");
    float *x = rand_floats(r, N * C, 1.0, 0.0), *w = rand_floats(r, OC * C, 0.5, 0.0);
    float *bias = with_bias ? rand_floats(r, OC, 1.0, 0.0) : NULL, *dout = rand_floats(r, N * OC, 1.0, 0.0);
    double *xd = to_double(x, N * C), *wd = to_double(w, OC * C), *bd = to_double(bias, OC);
    double *doutd = to_double(dout, N * OC);

    float *out = nan_floats(N * OC);
    double *ref = zeros(N * OC);
    cpu_linear_forward(out, x, w, bias, N, C, OC);
    ref_linear_forward(ref, xd, wd, bd, N, C, OC);
    const double err = max_rel_err(out, ref, N * OC);
    CHECK_MSG(t, err < TOL, "%s forward: relative error %.3g", name, err);

    double *rdx = zeros(N * C), *rdw = zeros(OC * C), *rdb = zeros(OC);
    ref_linear_backward(rdx, rdw, rdb, doutd, xd, wd, N, C, OC);
    for (int mask = 0; mask < 8; mask++) { /* bit 0: dinp wanted, 1: dweight, 2: dbias */
        float *dx = mask & 1 ? rand_floats(r, N * C, 1.0, 0.0) : NULL;
        float *dw = mask & 2 ? rand_floats(r, OC * C, 1.0, 0.0) : NULL;
        float *db = mask & 4 ? rand_floats(r, OC, 1.0, 0.0) : NULL;
        float *dx0 = dx ? dup_floats(dx, N * C) : NULL, *dw0 = dw ? dup_floats(dw, OC * C) : NULL;
        float *db0 = db ? dup_floats(db, OC) : NULL;
        cpu_linear_backward(dx, dw, db, dout, x, w, N, C, OC);
        if (dx)
            check_added(t, "dinp", name, dx, dx0, rdx, N * C);
        if (dw)
            check_added(t, "dweight", name, dw, dw0, rdw, OC * C);
        if (db)
            check_added(t, "dbias", name, db, db0, rdb, OC);
        free(dx), free(dw), free(db), free(dx0), free(dw0), free(db0);
    }
    free(x), free(w), free(bias), free(dout), free(xd), free(wd), free(bd), free(doutd);
    free(out), free(ref), free(rdx), free(rdw), free(rdb);
}

static void linear(test_state *t)
{
    rng r = {0x1234567887654321u};
    check_linear_case(t, &r, 13, 37, 19, 1);
    check_linear_case(t, &r, 13, 37, 19, 0);
    check_linear_case(t, &r, 1, 5, 3, 1);
    check_linear_case(t, &r, 301, 67, 130, 1); /* past the threshold where the bias sums go parallel */
}

/* ---- conv2d ----------------------------------------------------------------------------------------- */

typedef struct conv_case {
    int64_t B, H, W, C, OC, KH, KW, stride, pad_top, pad_left, pad_bottom, pad_right;
    int bias;
} conv_case;

static cpu_conv2d_geometry geometry_of(const conv_case *k)
{
    cpu_conv2d_geometry g = {k->B,      k->H,       k->W,        k->C,          k->OC,        k->KH, k->KW,
                             k->stride, k->pad_top, k->pad_left, k->pad_bottom, k->pad_right, 0,     0};
    g.OH = (g.H + g.pad_top + g.pad_bottom - g.KH) / g.stride + 1;
    g.OW = (g.W + g.pad_left + g.pad_right - g.KW) / g.stride + 1;
    return g;
}

/* The definition, one output element at a time: out [B, OH, OW, OC] = sum over the taps that land inside
 * the image of x [B, H, W, C] * w [OC, KH, KW, C], + bias [OC]. */
static void ref_conv_forward(double *out, const double *x, const double *w, const double *bias,
                             const cpu_conv2d_geometry *g)
{
    for (int64_t b = 0; b < g->B; b++)
        for (int64_t oh = 0; oh < g->OH; oh++)
            for (int64_t ow = 0; ow < g->OW; ow++)
                for (int64_t o = 0; o < g->OC; o++) {
                    double acc = bias ? bias[o] : 0.0;
                    for (int64_t kh = 0; kh < g->KH; kh++)
                        for (int64_t kw = 0; kw < g->KW; kw++) {
                            const int64_t ih = oh * g->stride - g->pad_top + kh;
                            const int64_t iw = ow * g->stride - g->pad_left + kw;
                            if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W)
                                continue;
                            for (int64_t c = 0; c < g->C; c++)
                                acc += x[((b * g->H + ih) * g->W + iw) * g->C + c] *
                                       w[((o * g->KH + kh) * g->KW + kw) * g->C + c];
                        }
                    out[((b * g->OH + oh) * g->OW + ow) * g->OC + o] = acc;
                }
}

/* The same loops, each product's two partial derivatives added where they belong: dx, dw, db +=. */
static void ref_conv_backward(double *dx, double *dw, double *db, const double *dout, const double *x,
                              const double *w, const cpu_conv2d_geometry *g)
{
    for (int64_t b = 0; b < g->B; b++)
        for (int64_t oh = 0; oh < g->OH; oh++)
            for (int64_t ow = 0; ow < g->OW; ow++)
                for (int64_t o = 0; o < g->OC; o++) {
                    const double d = dout[((b * g->OH + oh) * g->OW + ow) * g->OC + o];
                    db[o] += d;
                    for (int64_t kh = 0; kh < g->KH; kh++)
                        for (int64_t kw = 0; kw < g->KW; kw++) {
                            const int64_t ih = oh * g->stride - g->pad_top + kh;
                            const int64_t iw = ow * g->stride - g->pad_left + kw;
                            if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W)
                                continue;
                            for (int64_t c = 0; c < g->C; c++) {
                                const int64_t xi = ((b * g->H + ih) * g->W + iw) * g->C + c;
                                const int64_t wi = ((o * g->KH + kh) * g->KW + kw) * g->C + c;
                                dx[xi] += d * w[wi];
                                dw[wi] += d * x[xi];
                            }
                        }
                }
}

static void check_conv_case(test_state *t, rng *r, const conv_case *k)
{
    const cpu_conv2d_geometry g = geometry_of(k);
    char name[160];
    snprintf(name, sizeof name, "conv B%lld %lldx%lldx%lld->%lld k%lldx%lld s%lld pad(%lld,%lld,%lld,%lld)%s",
             (long long)g.B, (long long)g.H, (long long)g.W, (long long)g.C, (long long)g.OC, (long long)g.KH,
             (long long)g.KW, (long long)g.stride, (long long)g.pad_top, (long long)g.pad_left,
             (long long)g.pad_bottom, (long long)g.pad_right, k->bias ? " bias" : "");
    const int64_t nx = g.B * g.H * g.W * g.C, nw = g.OC * g.KH * g.KW * g.C, no = g.B * g.OH * g.OW * g.OC;
    float *x = rand_floats(r, nx, 1.0, 0.0), *w = rand_floats(r, nw, 0.5, 0.0);
    float *bias = k->bias ? rand_floats(r, g.OC, 1.0, 0.0) : NULL, *dout = rand_floats(r, no, 1.0, 0.0);
    double *xd = to_double(x, nx), *wd = to_double(w, nw), *bd = to_double(bias, g.OC);
    double *doutd = to_double(dout, no);

    float *out = nan_floats(no);
    double *ref = zeros(no);
    CHECK(t, cpu_conv2d_forward(out, x, w, bias, &g) == 0);
    ref_conv_forward(ref, xd, wd, bd, &g);
    const double err = max_rel_err(out, ref, no);
    CHECK_MSG(t, err < TOL, "%s forward: relative error %.3g", name, err);

    double *rdx = zeros(nx), *rdw = zeros(nw), *rdb = zeros(g.OC);
    ref_conv_backward(rdx, rdw, rdb, doutd, xd, wd, &g);
    for (int mask = 0; mask < 8; mask++) { /* bit 0: dinp wanted, 1: dweight, 2: dbias */
        float *dx = mask & 1 ? rand_floats(r, nx, 1.0, 0.0) : NULL;
        float *dw = mask & 2 ? rand_floats(r, nw, 1.0, 0.0) : NULL;
        float *db = mask & 4 ? rand_floats(r, g.OC, 1.0, 0.0) : NULL;
        float *dx0 = dx ? dup_floats(dx, nx) : NULL, *dw0 = dw ? dup_floats(dw, nw) : NULL;
        float *db0 = db ? dup_floats(db, g.OC) : NULL;
        CHECK(t, cpu_conv2d_backward(dx, dw, db, dout, x, w, &g) == 0);
        if (dx)
            check_added(t, "dinp", name, dx, dx0, rdx, nx);
        if (dw)
            check_added(t, "dweight", name, dw, dw0, rdw, nw);
        if (db)
            check_added(t, "dbias", name, db, db0, rdb, g.OC);
        free(dx), free(dw), free(db), free(dx0), free(dw0), free(db0);
    }
    free(x), free(w), free(bias), free(dout), free(xd), free(wd), free(bd), free(doutd);
    free(out), free(ref), free(rdx), free(rdw), free(rdb);
}

static void conv2d(test_state *t)
{
    rng r = {0x9e3779b97f4a7c15u};
    static const conv_case cases[] = {
        /* B  H  W  C OC KH KW s  pt pl pb pr bias */
        {2, 7, 5, 3, 5, 3, 3, 1, 1, 1, 1, 1, 1}, /* UNet 3x3, H != W, odd channels */
        {2, 7, 5, 3, 5, 3, 3, 1, 1, 1, 1, 1, 0},
        {2, 9, 6, 5, 7, 3, 3, 2, 1, 1, 1, 1, 0}, /* UNet downsample: stride 2, pad 1 */
        {2, 8, 7, 6, 3, 3, 3, 2, 0, 0, 1, 1, 1}, /* VAE downsample: pad bottom/right only */
        {2, 9, 8, 6, 3, 3, 3, 2, 0, 0, 1, 1, 0},
        {2, 5, 3, 7, 9, 1, 1, 1, 0, 0, 0, 0, 1}, /* 1x1: the straight-to-GEMM path */
        {2, 5, 3, 7, 9, 1, 1, 1, 0, 0, 0, 0, 0},
        {2, 6, 5, 3, 6, 1, 1, 2, 0, 0, 0, 0, 1}, /* 1x1 with stride 2: im2col */
        {1, 6, 9, 5, 2, 2, 3, 1, 1, 0, 0, 2, 1}, /* 2x3 kernel, asymmetric padding on both axes */
        {2, 3, 4, 3, 5, 5, 5, 1, 2, 2, 2, 2, 1}, /* kernel larger than the image */
        {1, 7, 7, 2, 3, 3, 3, 3, 0, 0, 0, 0, 0}, /* stride 3, no padding */
        /* Columns of 35 and 38 MB: more than the 32 MiB the conv may allocate, so several im2col chunks
         * whatever the chunk policy; with today's (16 and 32 output rows) chunks straddle the two images,
         * and with stride 2 an input row is read by two chunks. */
        {2, 60, 64, 128, 4, 3, 3, 1, 1, 1, 1, 1, 1},
        {2, 130, 64, 256, 3, 3, 3, 2, 0, 0, 1, 1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_conv_case(t, &r, &cases[i]);
}

/* ---- group norm and layer norm ------------------------------------------------------------------------ */

static double silu(double y) { return y / (1.0 + exp(-y)); }

/* out [B, HW, C], mean and rstd [B, G]: two passes per group in double, then the affine map and SiLU. */
static void ref_group_norm_forward(double *out, double *mean, double *rstd, const double *x, const double *w,
                                   const double *bias, int64_t B, int64_t HW, int64_t C, int64_t G,
                                   double eps, int fuse_silu)
{
    const int64_t Cg = C / G, n = HW * Cg;
    for (int64_t b = 0; b < B; b++)
        for (int64_t grp = 0; grp < G; grp++) {
            double sum = 0.0, ss = 0.0;
            for (int64_t p = 0; p < HW; p++)
                for (int64_t c = grp * Cg; c < (grp + 1) * Cg; c++)
                    sum += x[(b * HW + p) * C + c];
            const double mu = sum / (double)n;
            for (int64_t p = 0; p < HW; p++)
                for (int64_t c = grp * Cg; c < (grp + 1) * Cg; c++)
                    ss += (x[(b * HW + p) * C + c] - mu) * (x[(b * HW + p) * C + c] - mu);
            const double r = 1.0 / sqrt(ss / (double)n + eps);
            mean[b * G + grp] = mu, rstd[b * G + grp] = r;
            for (int64_t p = 0; p < HW; p++)
                for (int64_t c = grp * Cg; c < (grp + 1) * Cg; c++) {
                    const int64_t i = (b * HW + p) * C + c;
                    const double y = (x[i] - mu) * r * w[c] + bias[c];
                    out[i] = fuse_silu ? silu(y) : y;
                }
        }
}

/* dx [B, HW, C], dw [C], db [C] +=. Written as the chain rule taken stage by stage (through SiLU, the
 * affine map, the variance and the mean, as a textbook derives it), not as the fused closed form the fast
 * op uses, and with its own statistics recomputed in double. */
static void ref_group_norm_backward(double *dx, double *dw, double *db, const double *dout, const double *x,
                                    const double *w, const double *bias, int64_t B, int64_t HW, int64_t C,
                                    int64_t G, double eps, int fuse_silu)
{
    const int64_t Cg = C / G, n = HW * Cg;
    double *dxhat = zeros(HW * Cg); /* [HW, Cg] of the current group */
    for (int64_t b = 0; b < B; b++)
        for (int64_t grp = 0; grp < G; grp++) {
            const int64_t c0 = grp * Cg;
            double sum = 0.0, ss = 0.0;
            for (int64_t p = 0; p < HW; p++)
                for (int64_t j = 0; j < Cg; j++)
                    sum += x[(b * HW + p) * C + c0 + j];
            const double mu = sum / (double)n;
            for (int64_t p = 0; p < HW; p++)
                for (int64_t j = 0; j < Cg; j++)
                    ss += (x[(b * HW + p) * C + c0 + j] - mu) * (x[(b * HW + p) * C + c0 + j] - mu);
            const double var = ss / (double)n, r = 1.0 / sqrt(var + eps);
            double dvar = 0.0, dmu = 0.0, sum_centered = 0.0;
            for (int64_t p = 0; p < HW; p++)
                for (int64_t j = 0; j < Cg; j++) {
                    const int64_t i = (b * HW + p) * C + c0 + j, c = c0 + j;
                    const double xhat = (x[i] - mu) * r, y = xhat * w[c] + bias[c];
                    double dy = dout[i];
                    if (fuse_silu) {
                        const double s = 1.0 / (1.0 + exp(-y));
                        dy *= s + y * s * (1.0 - s);
                    }
                    dw[c] += dy * xhat;
                    db[c] += dy;
                    dxhat[p * Cg + j] = dy * w[c];
                    dvar += dxhat[p * Cg + j] * (x[i] - mu) * -0.5 * pow(var + eps, -1.5);
                    sum_centered += x[i] - mu;
                }
            for (int64_t p = 0; p < HW; p++)
                for (int64_t j = 0; j < Cg; j++)
                    dmu += -dxhat[p * Cg + j] * r;
            dmu += dvar * -2.0 * sum_centered / (double)n;
            for (int64_t p = 0; p < HW; p++)
                for (int64_t j = 0; j < Cg; j++) {
                    const int64_t i = (b * HW + p) * C + c0 + j;
                    dx[i] += dxhat[p * Cg + j] * r + dvar * 2.0 * (x[i] - mu) / (double)n + dmu / (double)n;
                }
        }
    free(dxhat);
}

/* One norm case. Layer norm over [N, C] is group norm with B = N, HW = 1 and G = 1 (a row is one group and
 * weight and bias are per channel either way), so one oracle serves both. */
typedef struct norm_case {
    int layer; /* 0: group norm [B, HW, C] in G groups; 1: layer norm [B rows, C] */
    int64_t B, HW, C, G;
    float eps;
    int silu;
} norm_case;

static void check_norm_case(test_state *t, rng *r, const norm_case *k)
{
    const int64_t B = k->B, HW = k->layer ? 1 : k->HW, C = k->C, G = k->layer ? 1 : k->G, n = B * HW * C;
    char name[96];
    if (k->layer)
        snprintf(name, sizeof name, "layer_norm N%lld C%lld", (long long)B, (long long)C);
    else
        snprintf(name, sizeof name, "group_norm B%lld HW%lld C%lld G%lld%s", (long long)B, (long long)HW,
                 (long long)C, (long long)G, k->silu ? " silu" : "");
    /* An offset mean and a spread over 2: the statistics must not cancel. */
    float *x = rand_floats(r, n, 2.0, 3.0), *w = rand_floats(r, C, 1.0, 0.2),
          *bias = rand_floats(r, C, 1.0, 0.0);
    float *dout = rand_floats(r, n, 1.0, 0.0);
    double *xd = to_double(x, n), *wd = to_double(w, C), *bd = to_double(bias, C),
           *doutd = to_double(dout, n);

    float *out = nan_floats(n), *mean = nan_floats(B * G), *rstd = nan_floats(B * G);
    double *ref = zeros(n), *rmean = zeros(B * G), *rrstd = zeros(B * G);
    if (k->layer)
        cpu_layer_norm_forward(out, mean, rstd, x, w, bias, B, C, k->eps);
    else
        cpu_group_norm_forward(out, mean, rstd, x, w, bias, B, HW, C, G, k->eps, k->silu);
    ref_group_norm_forward(ref, rmean, rrstd, xd, wd, bd, B, HW, C, G, k->eps, k->silu);
    double err = max_rel_err(out, ref, n);
    CHECK_MSG(t, err < TOL, "%s forward: relative error %.3g", name, err);
    err = max_rel_err(mean, rmean, B * G);
    CHECK_MSG(t, err < TOL, "%s mean: relative error %.3g", name, err);
    err = max_rel_err(rstd, rrstd, B * G);
    CHECK_MSG(t, err < TOL, "%s rstd: relative error %.3g", name, err);

    double *rdx = zeros(n), *rdw = zeros(C), *rdb = zeros(C);
    ref_group_norm_backward(rdx, rdw, rdb, doutd, xd, wd, bd, B, HW, C, G, k->eps, k->silu);
    for (int mask = 0; mask < 8; mask++) { /* bit 0: dinp wanted, 1: dweight, 2: dbias */
        float *dx = mask & 1 ? rand_floats(r, n, 1.0, 0.0) : NULL;
        float *dw = mask & 2 ? rand_floats(r, C, 1.0, 0.0) : NULL;
        float *db = mask & 4 ? rand_floats(r, C, 1.0, 0.0) : NULL;
        float *dx0 = dx ? dup_floats(dx, n) : NULL, *dw0 = dw ? dup_floats(dw, C) : NULL;
        float *db0 = db ? dup_floats(db, C) : NULL;
        if (k->layer)
            cpu_layer_norm_backward(dx, dw, db, dout, x, w, mean, rstd, B, C);
        else
            cpu_group_norm_backward(dx, dw, db, dout, x, w, bias, mean, rstd, B, HW, C, G, k->silu);
        if (dx)
            check_added(t, "dinp", name, dx, dx0, rdx, n);
        if (dw)
            check_added(t, "dweight", name, dw, dw0, rdw, C);
        if (db)
            check_added(t, "dbias", name, db, db0, rdb, C);
        free(dx), free(dw), free(db), free(dx0), free(dw0), free(db0);
    }
    free(x), free(w), free(bias), free(dout), free(xd), free(wd), free(bd), free(doutd);
    free(out), free(mean), free(rstd), free(ref), free(rmean), free(rrstd), free(rdx), free(rdw), free(rdb);
}

static void group_norm(test_state *t)
{
    rng r = {0x0123456789abcdefu};
    static const norm_case cases[] = {
        {0, 2, 6, 64, 32, 1e-5f, 0},   /* SD's 32 groups, 2 channels each */
        {0, 2, 6, 64, 32, 1e-5f, 1},   /* fused SiLU */
        {0, 2, 35, 7, 1, 1e-6f, 1},    /* one group over everything */
        {0, 2, 35, 7, 1, 1e-6f, 0},    /* the same without SiLU */
        {0, 1, 5, 12, 3, 1e-5f, 0},    /* 3 groups of 4 */
        {0, 2, 20, 320, 32, 1e-6f, 1}, /* SD's 320 channels: groups of 10 across blocks of channels */
        {0, 2, 300, 64, 32, 1e-6f, 1}, /* past the threshold where the loops go parallel */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_norm_case(t, &r, &cases[i]);
}

static void layer_norm(test_state *t)
{
    rng r = {0xfedcba9876543210u};
    static const norm_case cases[] = {
        {1, 13, 1, 37, 1, 1e-5f, 0},
        {1, 4, 1, 1, 1, 1e-5f, 0}, /* one channel: xhat is 0, the output is the bias */
        {1, 300, 1, 130, 1, 1e-5f, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_norm_case(t, &r, &cases[i]);
}

/* ---- the oracles' backward against central differences of their forward ---------------------------- */

/* L = sum of dout * out(params), for one perturbed parameter array at a time. */
typedef struct fd_problem {
    int conv;
    cpu_conv2d_geometry g;     /* conv */
    int64_t B, HW, C, G;       /* group norm */
    int silu;                  /* group norm */
    double *x, *w, *bias;      /* the parameters being perturbed */
    const double *dout;        /* [size of out] */
    double *out, *mean, *rstd; /* scratch of the forward */
    int64_t nout;
} fd_problem;

static double fd_loss(const fd_problem *p)
{
    if (p->conv)
        ref_conv_forward(p->out, p->x, p->w, p->bias, &p->g);
    else
        ref_group_norm_forward(p->out, p->mean, p->rstd, p->x, p->w, p->bias, p->B, p->HW, p->C, p->G, 1e-5,
                               p->silu);
    double loss = 0.0;
    for (int64_t i = 0; i < p->nout; i++)
        loss += p->dout[i] * p->out[i];
    return loss;
}

/* max |numeric - analytic| / max |analytic| over param [n], by central differences with step 1e-6. */
static double fd_rel_err(fd_problem *p, double *param, const double *analytic, int64_t n)
{
    const double h = 1e-6;
    double diff = 0.0, ref = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const double saved = param[i];
        param[i] = saved + h;
        const double lp = fd_loss(p);
        param[i] = saved - h;
        const double lm = fd_loss(p);
        param[i] = saved;
        diff = fmax(diff, fabs((lp - lm) / (2.0 * h) - analytic[i]));
        ref = fmax(ref, fabs(analytic[i]));
    }
    return diff / (ref + 1e-30);
}

static void oracle_self_check(test_state *t)
{
    rng r = {0x5555aaaa5555aaaau};
    /* a VAE-style downsample conv */
    {
        const conv_case k = {1, 5, 4, 2, 3, 3, 3, 2, 0, 0, 1, 1, 1};
        fd_problem p = {.conv = 1, .g = geometry_of(&k)};
        const int64_t nx = 5 * 4 * 2, nw = 3 * 3 * 3 * 2;
        p.nout = p.g.OH * p.g.OW * 3;
        float *xf = rand_floats(&r, nx, 1.0, 0.0), *wf = rand_floats(&r, nw, 1.0, 0.0);
        float *bf = rand_floats(&r, 3, 1.0, 0.0), *df = rand_floats(&r, p.nout, 1.0, 0.0);
        p.x = to_double(xf, nx), p.w = to_double(wf, nw), p.bias = to_double(bf, 3);
        double *dout = to_double(df, p.nout);
        p.dout = dout, p.out = zeros(p.nout);
        double *dx = zeros(nx), *dw = zeros(nw), *db = zeros(3);
        ref_conv_backward(dx, dw, db, dout, p.x, p.w, &p.g);
        CHECK(t, fd_rel_err(&p, p.x, dx, nx) < 1e-7);
        CHECK(t, fd_rel_err(&p, p.w, dw, nw) < 1e-7);
        CHECK(t, fd_rel_err(&p, p.bias, db, 3) < 1e-7);
        free(xf), free(wf), free(bf), free(df), free(p.x), free(p.w), free(p.bias), free(dout), free(p.out);
        free(dx), free(dw), free(db);
    }
    /* group norm with and without SiLU, and a layer norm's shape (B rows, HW 1, G 1) */
    /* B HW C G silu */
    static const int64_t shapes[][5] = {{2, 3, 6, 2, 1}, {2, 3, 6, 2, 0}, {3, 1, 5, 1, 0}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t B = shapes[s][0], HW = shapes[s][1], C = shapes[s][2], G = shapes[s][3], n = B * HW * C;
        fd_problem p = {.B = B, .HW = HW, .C = C, .G = G, .silu = (int)shapes[s][4], .nout = n};
        float *xf = rand_floats(&r, n, 2.0, 1.0), *wf = rand_floats(&r, C, 1.0, 0.0);
        float *bf = rand_floats(&r, C, 1.0, 0.0), *df = rand_floats(&r, n, 1.0, 0.0);
        p.x = to_double(xf, n), p.w = to_double(wf, C), p.bias = to_double(bf, C);
        double *dout = to_double(df, n);
        p.dout = dout, p.out = zeros(n), p.mean = zeros(B * G), p.rstd = zeros(B * G);
        double *dx = zeros(n), *dw = zeros(C), *db = zeros(C);
        ref_group_norm_backward(dx, dw, db, dout, p.x, p.w, p.bias, B, HW, C, G, 1e-5, p.silu);
        CHECK_MSG(t, fd_rel_err(&p, p.x, dx, n) < 1e-6, "norm shape %zu dx", s);
        CHECK_MSG(t, fd_rel_err(&p, p.w, dw, C) < 1e-6, "norm shape %zu dw", s);
        CHECK_MSG(t, fd_rel_err(&p, p.bias, db, C) < 1e-6, "norm shape %zu db", s);
        free(xf), free(wf), free(bf), free(df), free(p.x), free(p.w), free(p.bias), free(dout), free(p.out);
        free(p.mean), free(p.rstd), free(dx), free(dw), free(db);
    }
}

/* ---- thread-count independence ------------------------------------------------------------------------ */

/* Floats in each random input pool of the thread test, and a quarter of its result buffer. */
#define POOL 250000

#ifdef _OPENMP
/* Every output and gradient of one run of the parallel paths, concatenated in a [4 * POOL] buffer. */
static float *run_parallel_paths(const float *x, const float *w, const float *dout, const float *vec)
{
    /* Sizes past the point where the norms' loops go parallel; the ops all read the same input pools. */
    static const conv_case convs[] = {{2, 40, 33, 37, 19, 3, 3, 1, 1, 1, 1, 1, 1},
                                      {2, 41, 30, 37, 19, 3, 3, 2, 0, 0, 1, 1, 1}};
    float *all = calloc((size_t)(4 * POOL), sizeof *all), *o = all; /* zeros where nothing is written */
    for (size_t i = 0; i < 2; i++) {
        const cpu_conv2d_geometry g = geometry_of(&convs[i]);
        const int64_t nx = g.B * g.H * g.W * g.C, nw = g.OC * g.KH * g.KW * g.C;
        float *out = o, *dx = out + g.B * g.OH * g.OW * g.OC, *dw = dx + nx, *db = dw + nw;
        memset(dx, 0, (size_t)(nx + nw + g.OC) * sizeof *dx);
        if (cpu_conv2d_forward(out, x, w, vec, &g) != 0 ||
            cpu_conv2d_backward(dx, dw, db, dout, x, w, &g) != 0) {
            free(all);
            return NULL; /* out of memory: the caller's check fails */
        }
        o = db + g.OC;
    }
    {
        const int64_t N = 301, C = 67, OC = 130;
        float *out = o, *dx = out + N * OC, *dw = dx + N * C, *db = dw + OC * C;
        memset(dx, 0, (size_t)(N * C + OC * C + OC) * sizeof *dx);
        cpu_linear_forward(out, x, w, vec, N, C, OC);
        cpu_linear_backward(dx, dw, db, dout, x, w, N, C, OC);
        o = db + OC;
    }
    {
        const int64_t B = 2, HW = 300, C = 320, G = 32, n = B * HW * C;
        float *out = o, *mean = out + n, *rstd = mean + B * G, *dx = rstd + B * G, *dw = dx + n, *db = dw + C;
        memset(dx, 0, (size_t)(n + 2 * C) * sizeof *dx);
        cpu_group_norm_forward(out, mean, rstd, x, w, vec, B, HW, C, G, 1e-6f, 1);
        cpu_group_norm_backward(dx, dw, db, dout, x, w, vec, mean, rstd, B, HW, C, G, 1);
        o = db + C;
    }
    {
        const int64_t N = 300, C = 130, n = N * C;
        float *out = o, *mean = out + n, *rstd = mean + N, *dx = rstd + N, *dw = dx + n, *db = dw + C;
        memset(dx, 0, (size_t)(n + 2 * C) * sizeof *dx);
        cpu_layer_norm_forward(out, mean, rstd, x, w, vec, N, C, 1e-5f);
        cpu_layer_norm_backward(dx, dw, db, dout, x, w, mean, rstd, N, C);
        o = db + C;
    }
    return all;
}
#endif

static void thread_count_independence(test_state *t)
{
#ifdef _OPENMP
    rng r = {0x2545f4914f6cdd1du};
    float *x = rand_floats(&r, POOL, 1.0, 0.5), *w = rand_floats(&r, POOL, 0.5, 0.0);
    float *dout = rand_floats(&r, POOL, 1.0, 0.0), *vec = rand_floats(&r, POOL, 1.0, 0.0);
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    float *one = run_parallel_paths(x, w, dout, vec);
    for (int threads = 2; threads <= 3; threads++) {
        omp_set_num_threads(threads);
        float *many = run_parallel_paths(x, w, dout, vec);
        CHECK_MSG(t, one && many && memcmp(one, many, (size_t)(4 * POOL) * sizeof *one) == 0,
                  "results on %d OpenMP threads differ from 1 thread", threads);
        free(many);
    }
    omp_set_num_threads(saved);
    free(one), free(x), free(w), free(dout), free(vec);
#else
    (void)t; /* one thread is all there is: nothing to compare */
#endif
}

TEST_MAIN("cpu_ops_naive", TEST(linear), TEST(conv2d), TEST(group_norm), TEST(layer_norm),
          TEST(oracle_self_check), TEST(thread_count_independence))
