/* Throughput of the CPU backend's matrix products at SD1.5 shapes: the sgemm behind every linear layer,
 * the 3x3 convolutions (im2col + sgemm) of the UNet and the VAE, and the 1x1 convolutions that go straight
 * to one sgemm. Prints a Markdown table of the best wall time and its GFLOP/s (2 flops per multiply-add;
 * a backward pass computing dinp and dweight counts twice the forward's) next to the peak this machine's
 * sgemm reaches on large square products. A forward row also gives the rate of a bare sgemm of the same
 * [M, K] x [K, N] shape, so what the op adds (bias, im2col) is told apart from what the shape costs.
 *
 * usage: bench_cpu_ops [--quick] [--rounds R] [--reps N]
 *   --rounds R  passes over the whole table (default 3, every other one in reverse order); each case keeps
 *               its best time over all of them. On a shared VM the speed drifts over minutes, and passes
 *               spread out in time let every case see the quiet spells.
 *   --reps N    timed runs of a case per pass (default 3), after one untimed warm-up run
 *   --quick     one pass of one run: a smoke test, the numbers are noisy
 * Thread counts are OpenMP's and OpenBLAS's defaults (OMP_NUM_THREADS, OPENBLAS_NUM_THREADS). */
#include "cpu/cpu_ops.h"

#include <cblas.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Small values in [-0.1, 0.1) from a fixed LCG: no denormals, no overflow over repeated accumulation. */
static float *filled(int64_t n, uint64_t seed)
{
    float *a = malloc((size_t)(n ? n : 1) * sizeof *a);
    if (!a) {
        fprintf(stderr, "bench_cpu_ops: out of memory (%lld floats)\n", (long long)n);
        exit(1);
    }
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005u + 1442695040888963407u;
        a[i] = (float)((double)(seed >> 40) / (double)(1u << 24) - 0.5) * 0.2f;
    }
    return a;
}

/* ---- the cases ------------------------------------------------------------------------------------------
 */

typedef enum op_kind { OP_SQUARE_SGEMM, OP_LINEAR, OP_CONV } op_kind;

typedef struct bench_spec {
    const char *name;
    op_kind op;
    int64_t n, c, oc;          /* square sgemm: n; linear: n tokens, c -> oc; conv: n x n x c -> oc */
    int64_t k, stride, pad;    /* conv: a k x k kernel, pad on every side ... */
    int pad_bottom_right_only; /* ... or on the bottom and right only (the VAE encoder's downsample) */
} bench_spec;

/* Best times in seconds over every pass (0: none yet), and the forward's flops, 2 M N K. */
typedef struct bench_result {
    double fwd, bwd, gemm, flops;
} bench_result;

/* Every buffer a case needs. Linear: x [N, C], w [OC, C], out and dout [N, OC]; conv: x [B, H, W, C],
 * w [OC, KH, KW, C], out and dout [B, OH, OW, OC]; bias and db [OC], dx and dw shaped like x and w.
 * The bare sgemm of a forward's shape uses a [M, K] @ b [N, K]^T -> cm [M, N]. */
typedef struct bench_ctx {
    const bench_spec *spec;
    cpu_conv2d_geometry g;
    int64_t M, N, K; /* the forward's GEMM */
    float *x, *w, *bias, *out, *dout, *dx, *dw, *db;
    float *a, *b, *cm;
} bench_ctx;

static bench_ctx ctx_make(const bench_spec *s)
{
    bench_ctx c = {.spec = s};
    int64_t nx, nw, no;
    if (s->op == OP_CONV) {
        const int64_t pt = s->pad_bottom_right_only ? 0 : s->pad;
        cpu_conv2d_geometry g = {1,         s->n, s->n, s->c,   s->oc,  s->k, s->k,
                                 s->stride, pt,   pt,   s->pad, s->pad, 0,    0};
        g.OH = (g.H + g.pad_top + g.pad_bottom - g.KH) / g.stride + 1;
        g.OW = (g.W + g.pad_left + g.pad_right - g.KW) / g.stride + 1;
        c.g = g;
        c.M = g.B * g.OH * g.OW, c.N = g.OC, c.K = g.KH * g.KW * g.C;
        nx = g.B * g.H * g.W * g.C, nw = c.N * c.K, no = c.M * c.N;
    } else { /* a linear layer; a square sgemm only uses a, b and cm */
        c.M = s->n, c.N = s->op == OP_LINEAR ? s->oc : s->n, c.K = s->op == OP_LINEAR ? s->c : s->n;
        nx = c.M * c.K, nw = c.N * c.K, no = c.M * c.N;
    }
    if (s->op != OP_SQUARE_SGEMM) {
        c.x = filled(nx, 1), c.w = filled(nw, 2), c.bias = filled(c.N, 3), c.out = filled(no, 4);
        c.dout = filled(no, 5), c.dx = filled(nx, 6), c.dw = filled(nw, 7), c.db = filled(c.N, 8);
    }
    c.a = filled(c.M * c.K, 9), c.b = filled(c.N * c.K, 10), c.cm = filled(c.M * c.N, 11);
    return c;
}

static void ctx_free(bench_ctx *c)
{
    free(c->x), free(c->w), free(c->bias), free(c->out), free(c->dout), free(c->dx), free(c->dw), free(c->db);
    free(c->a), free(c->b), free(c->cm);
}

static void run_forward(const bench_ctx *c)
{
    if (c->spec->op == OP_CONV)
        cpu_conv2d_forward(c->out, c->x, c->w, c->bias, &c->g);
    else
        cpu_linear_forward(c->out, c->x, c->w, c->bias, c->M, c->K, c->N);
}

static void run_backward(const bench_ctx *c)
{
    if (c->spec->op == OP_CONV)
        cpu_conv2d_backward(c->dx, c->dw, c->db, c->dout, c->x, c->w, &c->g);
    else
        cpu_linear_backward(c->dx, c->dw, c->db, c->dout, c->x, c->w, c->M, c->K, c->N);
}

static void run_gemm(const bench_ctx *c)
{
    const int trans_b = c->spec->op != OP_SQUARE_SGEMM; /* a layer's weight is [N, K] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, (blasint)c->M,
                (blasint)c->N, (blasint)c->K, 1.0f, c->a, (blasint)c->K, c->b,
                (blasint)(trans_b ? c->K : c->N), 0.0f, c->cm, (blasint)c->N);
}

/* Best wall time of reps runs, after one untimed warm-up run (page faults, OpenBLAS's thread start). */
static double best_of(void (*run)(const bench_ctx *), const bench_ctx *c, int reps)
{
    run(c);
    double best = 1e30;
    for (int i = 0; i < reps; i++) {
        const double t0 = now_s();
        run(c);
        const double dt = now_s() - t0;
        if (dt < best)
            best = dt;
    }
    return best;
}

static double keep_min(double best, double t) { return best == 0.0 || t < best ? t : best; }

static const bench_spec specs[] = {
    /* The ceiling the other rows are measured against. */
    {"sgemm (square, NN)", OP_SQUARE_SGEMM, 1024, 0, 0, 0, 0, 0, 0},
    {"sgemm (square, NN)", OP_SQUARE_SGEMM, 2048, 0, 0, 0, 0, 0, 0},
    {"sgemm (square, NN)", OP_SQUARE_SGEMM, 3072, 0, 0, 0, 0, 0, 0},
    /* The linear layers of SD1.5's transformer blocks at 512 px, per image: tokens x in -> out. */
    {"linear: attn q/k/v/out", OP_LINEAR, 4096, 320, 320, 0, 0, 0, 0},
    {"linear: attn q/k/v/out", OP_LINEAR, 1024, 640, 640, 0, 0, 0, 0},
    {"linear: attn q/k/v/out", OP_LINEAR, 256, 1280, 1280, 0, 0, 0, 0},
    {"linear: GEGLU proj", OP_LINEAR, 4096, 320, 2560, 0, 0, 0, 0},
    {"linear: GEGLU proj", OP_LINEAR, 1024, 640, 5120, 0, 0, 0, 0},
    {"linear: GEGLU proj", OP_LINEAR, 256, 1280, 10240, 0, 0, 0, 0},
    {"linear: FF out", OP_LINEAR, 4096, 1280, 320, 0, 0, 0, 0},
    {"linear: FF out", OP_LINEAR, 1024, 2560, 640, 0, 0, 0, 0},
    {"linear: FF out", OP_LINEAR, 256, 5120, 1280, 0, 0, 0, 0},
    /* The UNet's ResNet 3x3 convs at each level (batch 1, 64x64 latent) and its stride-2 downsample; the
     * VAE decoder's 3x3 convs at 128 and 256 px and the encoder's bottom/right-padded downsample. */
    {"conv3x3: UNet", OP_CONV, 64, 320, 320, 3, 1, 1, 0},
    {"conv3x3: UNet", OP_CONV, 32, 640, 640, 3, 1, 1, 0},
    {"conv3x3: UNet", OP_CONV, 16, 1280, 1280, 3, 1, 1, 0},
    {"conv3x3: UNet", OP_CONV, 8, 1280, 1280, 3, 1, 1, 0},
    {"conv3x3: UNet downsample", OP_CONV, 64, 320, 320, 3, 2, 1, 0},
    {"conv3x3: VAE decoder", OP_CONV, 128, 256, 256, 3, 1, 1, 0},
    {"conv3x3: VAE decoder", OP_CONV, 256, 128, 128, 3, 1, 1, 0},
    {"conv3x3: VAE downsample", OP_CONV, 256, 256, 256, 3, 2, 1, 1},
    /* 1x1 convs, one sgemm each: the transformer's proj_in/proj_out and the ResNet shortcuts. */
    {"conv1x1: proj_in/out", OP_CONV, 64, 320, 320, 1, 1, 0, 0},
    {"conv1x1: shortcut", OP_CONV, 64, 640, 320, 1, 1, 0, 0},
    {"conv1x1: shortcut", OP_CONV, 32, 1280, 640, 1, 1, 0, 0},
};
enum { NSPECS = sizeof specs / sizeof specs[0] };

/* ---- the table ------------------------------------------------------------------------------------------
 */

static void print_row(const bench_spec *s, const char *pass, double flops, double seconds, double gemm_s,
                      double peak)
{
    char shape[96];
    if (s->op == OP_CONV)
        snprintf(shape, sizeof shape, "%lldx%lldx%lld -> %lld, k%lld s%lld", (long long)s->n, (long long)s->n,
                 (long long)s->c, (long long)s->oc, (long long)s->k, (long long)s->stride);
    else if (s->op == OP_LINEAR)
        snprintf(shape, sizeof shape, "%lld x %lld -> %lld", (long long)s->n, (long long)s->c,
                 (long long)s->oc);
    else
        snprintf(shape, sizeof shape, "%lld^3", (long long)s->n);
    char gemm[32] = "-";
    if (gemm_s > 0.0)
        snprintf(gemm, sizeof gemm, "%.1f", flops / gemm_s * 1e-9);
    const double rate = flops / seconds * 1e-9;
    printf("| %s | %s | %s | %.2f | %.2f | %.1f | %.0f%% | %s |\n", s->name, shape, pass, flops * 1e-9,
           seconds * 1e3, rate, 100.0 * rate / peak, gemm);
}

int main(int argc, char **argv)
{
    int rounds = 3, reps = 3;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            rounds = 1, reps = 1;
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc && atoi(argv[i + 1]) > 0)
            rounds = atoi(argv[++i]);
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc && atoi(argv[i + 1]) > 0)
            reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--quick] [--rounds R] [--reps N]\n", argv[0]);
            return 2;
        }
    }
    int omp_threads = 1;
#ifdef _OPENMP
    omp_threads = omp_get_max_threads();
#endif

    bench_result results[NSPECS] = {{0}};
    const double t0 = now_s();
    for (int round = 0; round < rounds; round++) {
        for (int j = 0; j < NSPECS; j++) {
            const int i =
                round % 2 ? NSPECS - 1 - j : j; /* every other pass backwards: spread each case out */
            bench_ctx c = ctx_make(&specs[i]);
            results[i].flops = 2.0 * (double)c.M * (double)c.N * (double)c.K;
            results[i].gemm = keep_min(results[i].gemm, best_of(run_gemm, &c, reps));
            if (specs[i].op != OP_SQUARE_SGEMM) {
                results[i].fwd = keep_min(results[i].fwd, best_of(run_forward, &c, reps));
                results[i].bwd = keep_min(results[i].bwd, best_of(run_backward, &c, reps));
            }
            ctx_free(&c);
        }
        fprintf(stderr, "pass %d of %d done, %.0f s\n", round + 1, rounds, now_s() - t0);
    }

    double peak = 0.0;
    for (int i = 0; i < NSPECS; i++)
        if (specs[i].op == OP_SQUARE_SGEMM && results[i].flops / results[i].gemm * 1e-9 > peak)
            peak = results[i].flops / results[i].gemm * 1e-9;
    printf("OpenBLAS: %s (core %s); %d OpenBLAS threads, %d OpenMP threads; best of %d passes x %d runs\n",
           openblas_get_config(), openblas_get_corename(), openblas_get_num_threads(), omp_threads, rounds,
           reps);
    printf("peak sgemm: %.1f GFLOP/s (best square product below)\n\n", peak);
    printf("| op | shape | pass | GFLOP | best ms | GFLOP/s | of peak | same-shape sgemm GFLOP/s |\n");
    printf("|---|---|---|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < NSPECS; i++) {
        const bench_result *r = &results[i];
        if (specs[i].op == OP_SQUARE_SGEMM) {
            print_row(&specs[i], "-", r->flops, r->gemm, 0.0, peak);
            continue;
        }
        print_row(&specs[i], "fwd", r->flops, r->fwd, r->gemm, peak);
        print_row(&specs[i], "bwd", 2.0 * r->flops, r->bwd, 0.0, peak);
    }
    return 0;
}
