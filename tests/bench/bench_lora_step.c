/* One kohya LoRA training step on the tiny SD1.5 model
 * (tests/data/models/sd15_tiny.safetensors, F32), the step of
 * tests/train/test_lora_reference.c at a chosen batch and latent size: text
 * encoder (with its LoRA)
 * -> context, noisy latents, UNet (with its LoRA), MSE against the noise,
 * backward through both, clip the gradient norm at 1, AdamW (two parameter
 * groups), zero the gradients. The network is kohya's dim 4 / alpha 2 on the
 * attention blocks of both models (192 UNet + 18 text-encoder modules). The
 * inputs are random (latents and noise N(0, 1), timesteps in [0, 1000),
 * captions of 1-39 tokens): timing does not depend on their values.
 * tools/train/bench_lora_peer.py runs PyTorch on the same step and this program
 * next to it (docs/perf.md, "LoRA training step vs PyTorch (CPU)").
 *
 * usage: bench_lora_step [--steps N] [--warmup W] [--batch B] [--latent S]
 * [--threads T] [--unet-only]
 *                        [--json]
 *   --steps N     timed steps (default 50)
 *   --warmup W    untimed steps first (default 3)
 *   --batch B     images per step (default 2)
 *   --latent S    latent side: 8, 16 or 32 (default 8)
 *   --threads T   OpenMP and OpenBLAS threads (default 1). OpenBLAS reads
 * OPENBLAS_NUM_THREADS when it loads, so the program re-executes itself once
 * with that variable (and OMP_WAIT_POLICY=passive, see docs/perf.md) set when
 * they differ.
 *   --unet-only   kohya's network_train_unet_only: no text-encoder modules, the
 * context is computed once (frozen text encoder) and only the UNet runs forward
 * and backward
 *   --json        one JSON object instead of the text report
 *
 * Reported: ms/step (median and best of the timed steps), steps/s from the
 * median, the median of each phase (text encoder forward, UNet forward, loss,
 * UNet backward, text encoder backward, clip + optimizer + zero) and the
 * process's peak RSS. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "checkpoint.h"
#include "clip_text.h"
#include "layers.h"
#include "lora.h"
#include "objective.h"
#include "optim.h"
#include "sdtune/strutil.h"
#include "unet.h"

#define MODEL_PATH "tests/data/models/sd15_tiny.safetensors"
#define CHANNELS 4
#define TOKENS 77
#define BOS 998 /* the tiny vocabulary's (1000 ids); padding is EOS as in SD1.5 */
#define EOS 999
#define INPUT_SETS 4 /* distinct random batches, cycled through */

enum { PHASE_TEXT_FWD, PHASE_UNET_FWD, PHASE_LOSS, PHASE_UNET_BWD, PHASE_TEXT_BWD, PHASE_OPTIM, PHASES };
static const char *const PHASE_NAMES[PHASES] = {"text_forward",  "unet_forward",  "loss",
                                                "unet_backward", "text_backward", "optimizer"};

typedef struct bench_options {
    int steps, warmup, batch, latent, threads, unet_only, json;
} bench_options;

typedef struct bench_inputs {
    float *latents;     /* [INPUT_SETS, B, S, S, CHANNELS] */
    float *noise;       /* [INPUT_SETS, B, S, S, CHANNELS] */
    int32_t *timesteps; /* [INPUT_SETS, B] */
    int32_t *ids;       /* [INPUT_SETS, B, TOKENS] */
} bench_inputs;

typedef struct bench_state {
    sdt_engine *e;
    sdt_model model;
    sdt_unet *unet;
    sdt_clip_text *text;
    sdt_lora_network net;
    sdt_optimizer opt;
    sdt_schedule schedule;
    bench_inputs in;
    sdt_tensor x;                /* [B, S, S, CHANNELS] noisy latents */
    sdt_tensor ts;               /* [B] timesteps as F32 */
    sdt_tensor dout;             /* [B, S, S, CHANNELS] dL/dpred */
    sdt_tensor dcontext;         /* [B, TOKENS, width] */
    sdt_clip_text_result frozen; /* --unet-only: the context of input set 0, computed once */
} bench_state;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double peak_rss_mib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0; /* ru_maxrss is in KiB on Linux */
}

/* splitmix64 */
static uint64_t next_u64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t *state)
{
    return ((double)(next_u64(state) >> 11) + 0.5) / 9007199254740992.0;
}

/* Box-Muller: one N(0, 1) draw. */
static float normal(uint64_t *state)
{
    double u = uniform01(state), v = uniform01(state);
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

static int parse_int(const char *flag, const char *value, int low, int *out)
{
    char *end = NULL;
    long v = value ? strtol(value, &end, 10) : 0;
    if (!value || *end || v < low || v > 1 << 20) {
        fprintf(stderr, "bench_lora_step: %s wants an integer >= %d\n", flag, low);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int parse_args(int argc, char **argv, bench_options *o)
{
    *o = (bench_options){.steps = 50, .warmup = 3, .batch = 2, .latent = 8, .threads = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (strcmp(a, "--steps") == 0)
            rc = parse_int(a, v, 1, &o->steps), i++;
        else if (strcmp(a, "--warmup") == 0)
            rc = parse_int(a, v, 0, &o->warmup), i++;
        else if (strcmp(a, "--batch") == 0)
            rc = parse_int(a, v, 1, &o->batch), i++;
        else if (strcmp(a, "--latent") == 0)
            rc = parse_int(a, v, 8, &o->latent), i++;
        else if (strcmp(a, "--threads") == 0)
            rc = parse_int(a, v, 1, &o->threads), i++;
        else if (strcmp(a, "--unet-only") == 0)
            o->unet_only = 1;
        else if (strcmp(a, "--json") == 0)
            o->json = 1;
        else {
            fprintf(stderr,
                    "bench_lora_step: unknown option %s (see the comment at the top of "
                    "tests/bench/bench_lora_step.c)\n",
                    a);
            return -1;
        }
        if (rc != 0)
            return -1;
    }
    /* The tiny UNet halves the latents three times. */
    if (o->latent % 8 != 0) {
        fprintf(stderr, "bench_lora_step: --latent %d is not a multiple of 8\n", o->latent);
        return -1;
    }
    return 0;
}

/* OpenBLAS takes its thread count from the environment when it loads, before
 * main: re-executes this program with OPENBLAS_NUM_THREADS / OMP_NUM_THREADS =
 * threads (and OMP_WAIT_POLICY=passive unless set) when they differ. Returns
 * only when nothing had to change or exec failed. */
static void match_thread_environment(int threads, char **argv)
{
    char want[16];
    snprintf(want, sizeof want, "%d", threads);
    const char *blas = getenv("OPENBLAS_NUM_THREADS"), *omp = getenv("OMP_NUM_THREADS");
    if (blas && omp && strcmp(blas, want) == 0 && strcmp(omp, want) == 0 && getenv("OMP_WAIT_POLICY"))
        return;
    setenv("OPENBLAS_NUM_THREADS", want, 1);
    setenv("OMP_NUM_THREADS", want, 1);
    setenv("OMP_WAIT_POLICY", "passive", 0);
    execv("/proc/self/exe", argv);
    perror("bench_lora_step: re-executing with the thread variables set");
}

static int make_inputs(bench_inputs *in, int batch, int side)
{
    size_t n = (size_t)INPUT_SETS * batch * side * side * CHANNELS;
    in->latents = malloc(n * sizeof *in->latents);
    in->noise = malloc(n * sizeof *in->noise);
    in->timesteps = malloc((size_t)INPUT_SETS * batch * sizeof *in->timesteps);
    in->ids = malloc((size_t)INPUT_SETS * batch * TOKENS * sizeof *in->ids);
    if (!in->latents || !in->noise || !in->timesteps || !in->ids)
        return -1;
    uint64_t rng = 3601;
    for (size_t i = 0; i < n; i++) {
        in->latents[i] = normal(&rng);
        in->noise[i] = normal(&rng);
    }
    for (int r = 0; r < INPUT_SETS * batch; r++) {
        in->timesteps[r] = (int32_t)(next_u64(&rng) % 1000);
        int32_t *row = in->ids + (size_t)r * TOKENS;
        int words = 1 + (int)(next_u64(&rng) % 39);
        row[0] = BOS;
        for (int k = 1; k < TOKENS; k++)
            row[k] = k <= words ? (int32_t)(next_u64(&rng) % BOS) : EOS;
    }
    return 0;
}

static void state_free(bench_state *s)
{
    sdt_clip_text_result_free(s->e, &s->frozen);
    sdt_act_free(s->e, &s->x);
    sdt_act_free(s->e, &s->ts);
    sdt_act_free(s->e, &s->dout);
    sdt_act_free(s->e, &s->dcontext);
    sdt_optim_free(&s->opt);
    sdt_lora_free(s->e, &s->net);
    sdt_unet_free(s->e, s->unet);
    sdt_clip_text_free(s->text);
    sdt_model_free(s->e, &s->model);
    free(s->in.latents);
    free(s->in.noise);
    free(s->in.timesteps);
    free(s->in.ids);
    if (s->e)
        sdt_engine_free(s->e);
}

/* Engine, model, network (kohya dim 4 / alpha 2, as the reference), AdamW
 * (weight decay 0.01; text encoder 5e-5, UNet 1e-4), buffers and inputs. */
static int state_open(bench_state *s, const bench_options *o, char **error)
{
    memset(s, 0, sizeof *s);
    sdt_engine_options eo = {.device = SDT_DEVICE_CPU, .threads = o->threads};
    if (sdt_engine_create(&eo, &s->e, error) != 0)
        return -1;
    sdt_model_load_options mo = {.dtype = SDT_F32};
    if (sdt_model_load(s->e, MODEL_PATH, &mo, &s->model, NULL, error) != 0 ||
        sdt_unet_create(&s->model.arch.unet, &s->model.unet, &s->unet, error) != 0 ||
        sdt_clip_text_create(&s->model.arch.text_encoder, &s->model.text_encoder, &s->text, error) != 0)
        return -1;
    sdt_lora_options lo;
    sdt_lora_options_default(&lo);
    lo.network_dim = 4;
    lo.network_alpha = 2.0f;
    lo.text_encoder = !o->unet_only;
    lo.seed = 3602;
    if (sdt_lora_create(s->e, &s->model, &lo, &s->net, error) != 0)
        return -1;
    sdt_optim_config oc;
    sdt_optim_config_default(&oc, SDT_OPTIM_ADAMW);
    oc.weight_decay = 0.01;
    int groups = o->unet_only ? 1 : 2, unet_group = o->unet_only ? 0 : 1;
    if (sdt_optim_init(&s->opt, &oc, groups, error) != 0 ||
        sdt_lora_add_to_optimizer(&s->net, &s->opt, unet_group, o->unet_only ? -1 : 0, error) != 0 ||
        sdt_optim_set_lr(&s->opt, unet_group, 1e-4, error) != 0 ||
        (!o->unet_only && sdt_optim_set_lr(&s->opt, 0, 5e-5, error) != 0))
        return -1;
    sdt_schedule_init(&s->schedule, false);
    int b = o->batch, side = o->latent;
    int64_t width = s->model.arch.text_encoder.width;
    if (make_inputs(&s->in, b, side) != 0 ||
        sdt_act_alloc(s->e, &s->x, SDT_F32, 4, SDT_SHAPE(b, side, side, CHANNELS)) != 0 ||
        sdt_act_alloc(s->e, &s->ts, SDT_F32, 1, SDT_SHAPE(b)) != 0 ||
        sdt_act_alloc(s->e, &s->dout, SDT_F32, 4, SDT_SHAPE(b, side, side, CHANNELS)) != 0 ||
        sdt_act_alloc(s->e, &s->dcontext, SDT_F32, 3, SDT_SHAPE(b, TOKENS, width)) != 0)
        return sdt_set_error(error, "out of memory for the inputs and buffers");
    if (o->unet_only) {
        sdt_clip_text_options to = {.clip_skip = 1, .hidden_layer = -1, .keep_for_backward = 0};
        if (sdt_clip_text_forward(s->e, s->text, &s->frozen, s->in.ids, b, TOKENS, &to) != 0)
            return sdt_set_error(error, "text encoder: %s", sdt_engine_error(s->e));
    }
    return 0;
}

/* One training step on input set `set`; adds each phase's seconds into phase[].
 */
static int train_step(bench_state *s, const bench_options *o, int set, double phase[PHASES], double *loss,
                      char **error)
{
    const int b = o->batch;
    const size_t n = (size_t)o->latent * o->latent * CHANNELS;
    const float *latents = s->in.latents + (size_t)set * b * n; /* [B, S, S, CHANNELS] */
    const float *noise = s->in.noise + (size_t)set * b * n;     /* the target (epsilon) */
    int *t_step = malloc((size_t)b * sizeof *t_step);
    if (!t_step)
        return sdt_set_error(error, "out of memory");
    sdt_lora_set_training(&s->net, 1, (uint64_t)set);
    double t0 = now_s();
    for (int i = 0; i < b; i++) {
        t_step[i] = s->in.timesteps[set * b + i];
        ((float *)s->ts.data)[i] = (float)t_step[i];
        sdt_add_noise(&s->schedule, t_step[i], latents + i * n, noise + i * n, n, (float *)s->x.data + i * n);
    }
    sdt_clip_text_result text = {0};
    sdt_tensor pred = {0}; /* [B, S, S, CHANNELS] */
    sdt_clip_text_options to = {.clip_skip = 1, .hidden_layer = -1, .keep_for_backward = 1};
    sdt_loss_options lopt;
    sdt_loss_options_default(&lopt);
    char msg[256] = "";
    int rc = -1;
    const sdt_tensor *context = &s->frozen.context;
    if (!o->unet_only) {
        if (sdt_clip_text_forward(s->e, s->text, &text, s->in.ids + (size_t)set * b * TOKENS, b, TOKENS,
                                  &to) != 0) {
            sdt_set_error(error, "text encoder forward: %s", sdt_engine_error(s->e));
            goto done;
        }
        context = &text.context;
    }
    double t1 = now_s();
    if (sdt_unet_forward(s->e, s->unet, &pred, &s->x, &s->ts, context, NULL, 1) != 0) {
        sdt_set_error(error, "UNet forward: %s", sdt_engine_error(s->e));
        goto done;
    }
    double t2 = now_s();
    if (sdt_objective_loss(&s->schedule, &lopt, b, (int64_t)o->latent * o->latent, CHANNELS, pred.data, noise,
                           t_step, NULL, NULL, loss, s->dout.data, NULL, msg, sizeof msg) != 0) {
        sdt_set_error(error, "loss: %s", msg);
        goto done;
    }
    double t3 = now_s();
    memset(s->dcontext.data, 0, sdt_tensor_bytes(&s->dcontext)); /* the backward adds into it */
    if (sdt_unet_backward(s->e, s->unet, NULL, o->unet_only ? NULL : &s->dcontext, NULL, &s->dout) != 0) {
        sdt_set_error(error, "UNet backward: %s", sdt_engine_error(s->e));
        goto done;
    }
    double t4 = now_s();
    if (!o->unet_only && sdt_clip_text_backward(s->e, s->text, &text, &s->dcontext, NULL, NULL, NULL) != 0) {
        sdt_set_error(error, "text encoder backward: %s", sdt_engine_error(s->e));
        goto done;
    }
    double t5 = now_s();
    double norm = 0;
    sdt_optim_clip_grad_norm(&s->opt, 1.0, &norm);
    if (sdt_optim_step(&s->opt, error) != 0)
        goto done;
    sdt_lora_zero_grads(&s->net);
    double t6 = now_s();
    phase[PHASE_TEXT_FWD] += t1 - t0; /* noising included: microseconds */
    phase[PHASE_UNET_FWD] += t2 - t1;
    phase[PHASE_LOSS] += t3 - t2;
    phase[PHASE_UNET_BWD] += t4 - t3;
    phase[PHASE_TEXT_BWD] += t5 - t4;
    phase[PHASE_OPTIM] += t6 - t5;
    rc = 0;
done:
    sdt_unet_release(s->e, s->unet);
    sdt_clip_text_result_free(s->e, &text);
    sdt_act_free(s->e, &pred);
    free(t_step);
    return rc;
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, compare_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void report(const bench_options *o, const bench_state *s, double *step_ms, double (*phase_ms)[PHASES],
                   double first_loss, double last_loss)
{
    int n = o->steps;
    double phase_median[PHASES];
    double *column = malloc((size_t)n * sizeof *column);
    for (int p = 0; p < PHASES; p++) {
        for (int i = 0; i < n && column; i++)
            column[i] = phase_ms[i][p];
        phase_median[p] = column ? median(column, n) : NAN;
    }
    free(column);
    double med = median(step_ms, n), best = step_ms[0]; /* sorted by median() */
    if (o->json) {
        printf("{\"batch\":%d,\"latent\":%d,\"threads\":%d,\"unet_only\":%s,"
               "\"steps\":%d,\"warmup\":%d,"
               "\"modules\":%zu,\"median_ms\":%.4f,\"best_ms\":%.4f,\"steps_per_"
               "s\":%.4f,\"peak_rss_mib\":%.1f,"
               "\"loss_first\":%.6f,\"loss_last\":%.6f,\"phases_median_ms\":{",
               o->batch, o->latent, o->threads, o->unet_only ? "true" : "false", o->steps, o->warmup,
               s->net.count, med, best, 1000.0 / med, peak_rss_mib(), first_loss, last_loss);
        for (int p = 0; p < PHASES; p++)
            printf("%s\"%s\":%.4f", p ? "," : "", PHASE_NAMES[p], phase_median[p]);
        printf("}}\n");
        return;
    }
    printf("LoRA training step, sd15_tiny: batch %d, latents %dx%d, %d thread%s, "
           "%s, %zu modules\n",
           o->batch, o->latent, o->latent, o->threads, o->threads == 1 ? "" : "s",
           o->unet_only ? "UNet only (frozen text encoder)" : "text encoder + UNet", s->net.count);
    printf("%d steps after %d warm-up: median %.3f ms/step, best %.3f ms/step, "
           "%.2f steps/s\n",
           o->steps, o->warmup, med, best, 1000.0 / med);
    printf("phases (median ms):");
    for (int p = 0; p < PHASES; p++)
        printf(" %s %.3f%s", PHASE_NAMES[p], phase_median[p], p + 1 < PHASES ? "," : "\n");
    printf("loss %.5f (first timed step) -> %.5f (last); peak RSS %.1f MiB\n", first_loss, last_loss,
           peak_rss_mib());
}

int main(int argc, char **argv)
{
    bench_options o;
    if (parse_args(argc, argv, &o) != 0)
        return 2;
    match_thread_environment(o.threads, argv);
    bench_state s;
    char *error = NULL;
    int rc = 1;
    double *step_ms = malloc((size_t)o.steps * sizeof *step_ms);
    double(*phase_ms)[PHASES] = calloc((size_t)o.steps, sizeof *phase_ms); /* [steps][PHASES] */
    if (!step_ms || !phase_ms) {
        fprintf(stderr, "bench_lora_step: out of memory\n");
        free(step_ms);
        free(phase_ms);
        return 1;
    }
    if (state_open(&s, &o, &error) != 0) {
        fprintf(stderr, "bench_lora_step: %s\n", error ? error : "setup failed");
        goto done;
    }
    double first_loss = 0, last_loss = 0;
    for (int i = 0; i < o.warmup + o.steps; i++) {
        double phase[PHASES] = {0}, loss = 0;
        /* --unet-only keeps input set 0's captions: its context was computed once
         * for them */
        int set = o.unet_only ? 0 : i % INPUT_SETS;
        double t0 = now_s();
        if (train_step(&s, &o, set, phase, &loss, &error) != 0) {
            fprintf(stderr, "bench_lora_step: step %d: %s\n", i, error);
            goto done;
        }
        double ms = 1000.0 * (now_s() - t0);
        if (i < o.warmup)
            continue;
        int k = i - o.warmup;
        step_ms[k] = ms;
        for (int p = 0; p < PHASES; p++)
            phase_ms[k][p] = 1000.0 * phase[p];
        if (k == 0)
            first_loss = loss;
        last_loss = loss;
    }
    report(&o, &s, step_ms, phase_ms, first_loss, last_loss);
    rc = 0;
done:
    free(error);
    free(step_ms);
    free(phase_ms);
    state_free(&s);
    return rc;
}
