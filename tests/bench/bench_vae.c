/* Wall time of the SD1.5 text encoder and VAE forwards on the CPU backend, at full size with random
 * weights held in memory (F32): the CLIP ViT-L text encoder on one 77-token prompt, the VAE encoder on one
 * 512x512 image, and (with --decode) the VAE decoder back from its 64x64 latents. Prints the best and the
 * mean time of each, and the process's peak resident memory.
 *
 * usage: bench_vae [--reps N] [--side S] [--decode]
 *   --reps N   timed runs of each forward (default 3; the text encoder gets one untimed warm-up run first)
 *   --side S   image side in pixels, a multiple of 8 (default 512)
 *   --decode   also time the decoder
 * Thread counts are OpenMP's and OpenBLAS's defaults; run with OMP_WAIT_POLICY=passive (docs/perf.md). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "arch.h"
#include "clip_text.h"
#include "vae.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Uniform in [-scale, scale) from a fixed LCG. */
static void fill_uniform(float *p, int64_t n, float scale, uint64_t *seed)
{
    for (int64_t i = 0; i < n; i++) {
        *seed = *seed * 6364136223846793005u + 1442695040888963407u;
        p[i] = (float)((double)(*seed >> 40) / (double)(1u << 24) * 2.0 - 1.0) * scale;
    }
}

/* Weights U(+-1/sqrt(fan_in)) (activations stay O(1) through the layers), norms 1 and 0, embeddings
 * U(+-0.02). */
static int fill_table(sdt_engine *e, sdt_param_table *t, uint64_t seed)
{
    char *error = NULL;
    if (sdt_param_table_alloc(e, t, SDT_F32, &error) != 0) {
        fprintf(stderr, "bench_vae: %s\n", error);
        free(error);
        return -1;
    }
    for (size_t i = 0; i < t->count; i++) {
        sdt_param *p = &t->items[i];
        float *v = p->value.data;
        int64_t n = sdt_param_numel(p);
        switch (p->kind) {
        case SDT_PARAM_NORM_WEIGHT:
            for (int64_t j = 0; j < n; j++)
                v[j] = 1.0f;
            break;
        case SDT_PARAM_NORM_BIAS: memset(v, 0, (size_t)n * sizeof *v); break;
        case SDT_PARAM_EMBEDDING: fill_uniform(v, n, 0.02f, &seed); break;
        default: fill_uniform(v, n, 1.0f / sqrtf((float)(p->fan_in > 0 ? p->fan_in : 1)), &seed); break;
        }
    }
    return 0;
}

static void report(const char *what, const double *times, int reps)
{
    double best = times[0], sum = 0.0;
    for (int i = 0; i < reps; i++) {
        best = times[i] < best ? times[i] : best;
        sum += times[i];
    }
    printf("| %-44s | %10.3f | %10.3f | %d |\n", what, best, sum / reps, reps);
}

static int bench_text(sdt_engine *e, const sdt_model_arch *arch, int reps)
{
    sdt_param_table table;
    char *error = NULL;
    sdt_clip_text *m = NULL;
    int status = -1;
    double *times = calloc((size_t)reps, sizeof *times);
    if (sdt_clip_params(&arch->text_encoder, "text_encoder", SDT_PREFIX_CLIP_L, &table, &error) != 0 ||
        fill_table(e, &table, 1) != 0 || sdt_clip_text_create(&arch->text_encoder, &table, &m, &error) != 0) {
        fprintf(stderr, "bench_vae: %s\n", error ? error : "cannot build the text encoder");
        goto done;
    }
    /* A prompt of 20 tokens padded with EOS to 77, as the SD1.5 tokenizer writes it. */
    int32_t ids[77];
    ids[0] = arch->text_encoder.bos_id;
    for (int i = 1; i < 77; i++)
        ids[i] = i <= 20 ? 320 + 17 * i : arch->text_encoder.eos_id;
    sdt_clip_text_options o = {.clip_skip = 1, .hidden_layer = -1};
    for (int rep = -1; rep < reps; rep++) {
        sdt_clip_text_result r;
        double t0 = now_s();
        if (sdt_clip_text_forward(e, m, &r, ids, 1, 77, &o) != 0) {
            fprintf(stderr, "bench_vae: %s\n", sdt_engine_error(e));
            goto done;
        }
        if (rep >= 0)
            times[rep] = now_s() - t0;
        sdt_clip_text_result_free(e, &r);
    }
    report("text encoder (CLIP ViT-L), B=1, 77 tokens", times, reps);
    status = 0;
done:
    free(error);
    free(times);
    sdt_clip_text_free(m);
    sdt_param_table_free(e, &table);
    return status;
}

static int bench_vae(sdt_engine *e, const sdt_model_arch *arch, int reps, int side, int decode)
{
    sdt_param_table table;
    char *error = NULL;
    sdt_vae *v = NULL;
    int status = -1;
    double *times = calloc((size_t)reps, sizeof *times);
    size_t pixels = (size_t)side * (size_t)side;
    float *image = malloc(pixels * 3 * sizeof *image); /* [1, side, side, 3] */
    uint64_t seed = 3;
    if (!times || !image) {
        fprintf(stderr, "bench_vae: out of memory\n");
        goto done;
    }
    fill_uniform(image, (int64_t)pixels * 3, 1.0f, &seed);
    if (sdt_vae_params(&arch->vae, &table, &error) != 0 || fill_table(e, &table, 2) != 0 ||
        sdt_vae_create(&arch->vae, &table, &v, &error) != 0) {
        fprintf(stderr, "bench_vae: %s\n", error ? error : "cannot build the VAE");
        goto done;
    }
    sdt_tensor in = sdt_tensor_view(image, SDT_F32, 4, (int64_t[]){1, side, side, 3});
    sdt_tensor moments = {0}, latents = {0}, out = {0};
    char what[96];
    for (int rep = 0; rep < reps; rep++) {
        sdt_act_free(e, &moments);
        double t0 = now_s();
        if (sdt_vae_encode(e, v, &moments, &in) != 0) {
            fprintf(stderr, "bench_vae: %s\n", sdt_engine_error(e));
            goto done;
        }
        times[rep] = now_s() - t0;
    }
    snprintf(what, sizeof what, "VAE encode, 1 image %dx%d", side, side);
    report(what, times, reps);
    if (decode) {
        if (sdt_vae_latents(e, v, &latents, &moments, NULL) != 0) {
            fprintf(stderr, "bench_vae: %s\n", sdt_engine_error(e));
            goto done;
        }
        for (int rep = 0; rep < reps; rep++) {
            sdt_act_free(e, &out);
            double t0 = now_s();
            if (sdt_vae_decode(e, v, &out, &latents) != 0) {
                fprintf(stderr, "bench_vae: %s\n", sdt_engine_error(e));
                goto done;
            }
            times[rep] = now_s() - t0;
        }
        snprintf(what, sizeof what, "VAE decode, %dx%d latents -> %dx%d", side / 8, side / 8, side, side);
        report(what, times, reps);
    }
    status = 0;
done:
    sdt_act_free(e, &moments);
    sdt_act_free(e, &latents);
    sdt_act_free(e, &out);
    free(error);
    free(times);
    free(image);
    sdt_vae_free(v);
    sdt_param_table_free(e, &table);
    return status;
}

int main(int argc, char **argv)
{
    int reps = 3, side = 512, decode = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--side") == 0 && i + 1 < argc)
            side = atoi(argv[++i]);
        else if (strcmp(argv[i], "--decode") == 0)
            decode = 1;
        else {
            fprintf(stderr, "usage: bench_vae [--reps N] [--side S] [--decode]\n");
            return 2;
        }
    }
    if (reps < 1 || side < 8 || side % 8 != 0) {
        fprintf(stderr, "bench_vae: --reps must be >= 1 and --side a multiple of 8\n");
        return 2;
    }
    sdt_engine_options options = {.device = SDT_DEVICE_CPU, .threads = 0};
    sdt_engine *e = NULL;
    char *error = NULL;
    if (sdt_engine_create(&options, &e, &error) != 0) {
        fprintf(stderr, "bench_vae: %s\n", error);
        free(error);
        return 1;
    }
    const sdt_model_arch *arch = sdt_model_arch_find("sd15");
    printf("| forward | best s | mean s | runs |\n|---|---|---|---|\n");
    int status = bench_text(e, arch, reps) == 0 && bench_vae(e, arch, reps, side, decode) == 0 ? 0 : 1;
    struct rusage usage;
    if (getrusage(RUSAGE_SELF, &usage) == 0)
        printf("peak resident memory: %.0f MiB (weights included)\n", (double)usage.ru_maxrss / 1024.0);
    sdt_engine_free(e);
    return status;
}
