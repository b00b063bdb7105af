/* The full-size SD1.5 UNet on the CPU backend: one inference forward, and training steps (forward kept for
 * backward, then backward into the input, the context and every parameter) with and without gradient
 * checkpointing. The weights are random (uniform +-1/sqrt(fan_in), norms at 1 and 0, from a fixed seed):
 * the timing does not depend on their values and no checkpoint file is needed.
 *
 * usage: bench_unet [--size N] [--batch B] [--runs R] [--frozen] [--skip-plain] [--forward-only]
 *   --size N        latent side (default 64: 512 px images)
 *   --batch B       images per step (default 1)
 *   --runs R        timed runs of each phase, the best is reported (default 1; a phase takes seconds)
 *   --frozen        no parameter gradients (a frozen base, as under LoRA): backward computes input
 *                   gradients only
 *   --skip-plain    no training step without checkpointing (it keeps every block's activations)
 *   --forward-only  the inference forward only
 *
 * FLOPs come from the analytic count of models/flops.h (2 per multiply-add of every conv, linear and
 * attention product; norms and elementwise ops are left out), the same rules as sd_arch_spec's perf anchors:
 * 401.6 G multiply-adds for a 64x64 forward. A backward counts 2x the forward's weight products (input and
 * weight gradients; 1x when frozen) and 2.5x its attention products (scores and probabilities are recomputed,
 * flash style); checkpointing re-runs the forward once more. "model" GFLOP/s divides the FLOPs of forward +
 * backward by the time; the recomputation is the price of the memory saved. Peak RSS is the process's
 * high-water mark after the phase (the phases run in order of growing memory). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "arch.h"
#include "flops.h"
#include "layers.h"
#include "unet.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double peak_rss_gib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / (1024.0 * 1024.0); /* ru_maxrss is in KiB on Linux */
}

/* splitmix64 -> uniform [-1, 1) */
static float uniform(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)((double)(z >> 40) / (double)(1u << 23) - 1.0);
}

static void fill_uniform(float *p, int64_t n, float scale, uint64_t *state)
{
    for (int64_t i = 0; i < n; i++)
        p[i] = scale * uniform(state);
}

/* ---- FLOP count ----------------------------------------------------------------------------------- */

typedef struct macs {
    double weights;   /* products with a weight: convs, linears */
    double attention; /* activation x activation: Q K^T and P V */
} macs;

/* Multiply-adds of one forward of one image at side x side latents, context of l tokens (models/flops.h). */
static macs count_forward(const sdt_unet_config *c, int64_t side, int64_t l)
{
    sdt_flop_count f;
    char *error = NULL;
    if (sdt_flops_unet(c, NULL, 1, side, side, l, &f, &error) != 0) {
        fprintf(stderr, "bench_unet: %s\n", error);
        exit(1);
    }
    return (macs){sdt_flop_weight_mac(&f), f.attention_mac};
}

/* ---- the run -------------------------------------------------------------------------------------- */

typedef struct options {
    int size, batch, runs, frozen, skip_plain, forward_only;
} options;

static int parse(int argc, char **argv, options *o)
{
    *o = (options){.size = 64, .batch = 1, .runs = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--size") == 0 && i + 1 < argc)
            o->size = atoi(argv[++i]);
        else if (strcmp(a, "--batch") == 0 && i + 1 < argc)
            o->batch = atoi(argv[++i]);
        else if (strcmp(a, "--runs") == 0 && i + 1 < argc)
            o->runs = atoi(argv[++i]);
        else if (strcmp(a, "--frozen") == 0)
            o->frozen = 1;
        else if (strcmp(a, "--skip-plain") == 0)
            o->skip_plain = 1;
        else if (strcmp(a, "--forward-only") == 0)
            o->forward_only = 1;
        else
            return -1;
    }
    return o->size >= 8 && o->size % 8 == 0 && o->batch >= 1 && o->runs >= 1 ? 0 : -1;
}

typedef struct bench {
    sdt_engine *e;
    sdt_unet *u;
    sdt_param_table table;
    sdt_tensor x, t, context; /* [B, S, S, 4], [B], [B, 77, 768] */
} bench;

static int fail(bench *b, const char *what)
{
    fprintf(stderr, "bench_unet: %s: %s\n", what, sdt_engine_error(b->e));
    return -1;
}

/* One inference forward; seconds in *s. */
static int run_forward(bench *b, double *s)
{
    sdt_tensor out = {0}; /* [B, S, S, 4] */
    double t0 = now_s();
    if (sdt_unet_forward(b->e, b->u, &out, &b->x, &b->t, &b->context, NULL, 0) != 0)
        return fail(b, "forward");
    *s = now_s() - t0;
    float first = ((float *)out.data)[0];
    sdt_act_free(b->e, &out);
    if (!isfinite(first)) {
        fprintf(stderr, "bench_unet: the output is not finite\n");
        return -1;
    }
    return 0;
}

/* One training step: forward (kept), backward into dx, dcontext and the parameters. */
static int run_step(bench *b, int checkpointing, double *fwd_s, double *bwd_s)
{
    sdt_tensor out = {0}, dout = {0}, dx = {0}; /* [B, S, S, 4] */
    sdt_tensor dctx = {0};                      /* [B, 77, 768] */
    int status = -1;
    sdt_unet_set_checkpointing(b->u, checkpointing);
    double t0 = now_s();
    if (sdt_unet_forward(b->e, b->u, &out, &b->x, &b->t, &b->context, NULL, 1) != 0) {
        fail(b, "training forward");
        goto done;
    }
    double t1 = now_s();
    if (sdt_act_alloc(b->e, &dout, SDT_F32, 4, out.shape) != 0 || sdt_act_zeros_like(b->e, &dx, &b->x) != 0 ||
        sdt_act_zeros_like(b->e, &dctx, &b->context) != 0) {
        fail(b, "gradients");
        goto done;
    }
    uint64_t rng = 99;
    fill_uniform(dout.data, sdt_tensor_numel(&dout), 1.0f, &rng);
    double t2 = now_s();
    if (sdt_unet_backward(b->e, b->u, &dx, &dctx, NULL, &dout) != 0) {
        fail(b, "backward");
        goto done;
    }
    *fwd_s = t1 - t0;
    *bwd_s = now_s() - t2;
    status = isfinite(((float *)dx.data)[0]) ? 0 : -1;
    if (status != 0)
        fprintf(stderr, "bench_unet: the input gradient is not finite\n");
done:
    sdt_unet_release(b->e, b->u);
    sdt_act_free(b->e, &out);
    sdt_act_free(b->e, &dout);
    sdt_act_free(b->e, &dx);
    sdt_act_free(b->e, &dctx);
    return status;
}

int main(int argc, char **argv)
{
    options o;
    if (parse(argc, argv, &o) != 0) {
        fprintf(stderr, "usage: bench_unet [--size N (multiple of 8)] [--batch B] [--runs R] [--frozen] "
                        "[--skip-plain] [--forward-only]\n");
        return 2;
    }
    bench b;
    memset(&b, 0, sizeof b);
    char *error = NULL;
    sdt_engine_options eo = {.device = SDT_DEVICE_CPU, .threads = 0};
    const sdt_model_arch *arch = sdt_model_arch_find("sd15");
    if (!arch || sdt_engine_create(&eo, &b.e, &error) != 0 ||
        sdt_unet_params(&arch->unet, &b.table, &error) != 0) {
        fprintf(stderr, "bench_unet: %s\n", error ? error : "no sd15 preset");
        return 1;
    }
    int train = !o.forward_only;
    for (size_t i = 0; i < b.table.count; i++)
        b.table.items[i].trainable = train && !o.frozen;
    double t0 = now_s();
    if (sdt_param_table_alloc(b.e, &b.table, SDT_F32, &error) != 0 ||
        sdt_unet_create(&arch->unet, &b.table, &b.u, &error) != 0) {
        fprintf(stderr, "bench_unet: %s\n", error);
        return 1;
    }
    uint64_t rng = 1;
    for (size_t i = 0; i < b.table.count; i++) {
        sdt_param *p = &b.table.items[i];
        if (p->kind == SDT_PARAM_NORM_WEIGHT)
            sdt_fill(b.e, &p->value, 1.0f);
        else if (p->kind == SDT_PARAM_NORM_BIAS)
            sdt_fill(b.e, &p->value, 0.0f);
        else
            fill_uniform(p->value.data, sdt_param_numel(p), 1.0f / sqrtf((float)p->fan_in), &rng);
    }
    const int64_t B = o.batch, S = o.size, L = 77, D = arch->unet.cross_attention_dim;
    if (sdt_act_alloc(b.e, &b.x, SDT_F32, 4, (int64_t[]){B, S, S, 4}) != 0 ||
        sdt_act_alloc(b.e, &b.t, SDT_F32, 1, (int64_t[]){B}) != 0 ||
        sdt_act_alloc(b.e, &b.context, SDT_F32, 3, (int64_t[]){B, L, D}) != 0)
        return fail(&b, "inputs"), 1;
    fill_uniform(b.x.data, sdt_tensor_numel(&b.x), 1.0f, &rng);
    fill_uniform(b.context.data, sdt_tensor_numel(&b.context), 1.0f, &rng);
    for (int64_t i = 0; i < B; i++)
        ((float *)b.t.data)[i] = 500.0f + (float)i;
    double setup_s = now_s() - t0;

    macs m = count_forward(&arch->unet, S, L);
    double fwd_flop = 2.0 * (m.weights + m.attention) * (double)B;
    double bwd_flop = 2.0 * ((o.frozen ? 1.0 : 2.0) * m.weights + 2.5 * m.attention) * (double)B;
    printf("SD1.5 UNet, batch %lld, %lldx%lld latents, context [%lld, %lld, %lld], %s parameters "
           "(%.1f M, %.2f GiB F32)\n",
           (long long)B, (long long)S, (long long)S, (long long)B, (long long)L, (long long)D,
           train ? (o.frozen ? "frozen" : "trainable") : "inference",
           (double)sdt_param_table_numel(&b.table) / 1e6,
           (double)sdt_param_table_numel(&b.table) * 4.0 / (1024.0 * 1024.0 * 1024.0));
    printf("forward: %.1f G multiply-adds per image (%.1f G weight products, %.1f G attention)\n",
           (m.weights + m.attention) / 1e9, m.weights / 1e9, m.attention / 1e9);
    printf("setup (allocate + random init): %.1f s, peak RSS %.2f GiB\n\n", setup_s, peak_rss_gib());

    printf("| phase | seconds | TFLOP (model) | GFLOP/s (model) | peak RSS GiB |\n");
    printf("|---|---:|---:|---:|---:|\n");
    double best = 1e30, s = 0;
    for (int r = 0; r < o.runs; r++) {
        if (run_forward(&b, &s) != 0)
            return 1;
        best = s < best ? s : best;
    }
    printf("| forward (inference) | %.2f | %.3f | %.1f | %.2f |\n", best, fwd_flop / 1e12,
           fwd_flop / best / 1e9, peak_rss_gib());
    fflush(stdout);
    for (int ckpt = 1; train && ckpt >= 0; ckpt--) {
        if (!ckpt && o.skip_plain)
            break;
        double bf = 1e30, bb = 1e30, fs = 0, bs = 0;
        for (int r = 0; r < o.runs; r++) {
            if (run_step(&b, ckpt, &fs, &bs) != 0)
                return 1;
            if (fs + bs < bf + bb) {
                bf = fs;
                bb = bs;
            }
        }
        const char *how = ckpt ? "checkpointed" : "not checkpointed";
        printf("| training forward, %s | %.2f | %.3f | %.1f | |\n", how, bf, fwd_flop / 1e12,
               fwd_flop / bf / 1e9);
        printf("| backward, %s%s | %.2f | %.3f | %.1f | |\n", how,
               ckpt ? " (re-runs each block's forward)" : "", bb, bwd_flop / 1e12, bwd_flop / bb / 1e9);
        printf("| training step, %s | %.2f | %.3f | %.1f | %.2f |\n", how, bf + bb,
               (fwd_flop + bwd_flop) / 1e12, (fwd_flop + bwd_flop) / (bf + bb) / 1e9, peak_rss_gib());
        fflush(stdout);
    }
    sdt_act_free(b.e, &b.x);
    sdt_act_free(b.e, &b.t);
    sdt_act_free(b.e, &b.context);
    sdt_unet_free(b.e, b.u);
    sdt_param_table_free(b.e, &b.table);
    sdt_engine_free(b.e);
    return 0;
}
