/* `bench`: training steps of a random model on random cached latents (train/bench.h), one table row per
 * batch size: images/s, step time, the analytic TFLOP/s, MFU against a GEMM peak measured in the same run
 * in the compute dtype, peak memory next to the memory plan's prediction, and a per-layer-family
 * breakdown. --json prints the same numbers as one JSON object. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "cli.h"

#define MAX_BATCHES 16

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: sdtune-engine bench [--arch ARCH] [--res PX] [--batch B,B,...] [--mode lora|full]\n"
        "                           [--steps N] [--warmup N] [--device cpu|cuda|auto] [--threads N]\n"
        "                           [--precision fp32|bf16|fp16] [--fp8] [--checkpointing on|off]\n"
        "                           [--seed N] [--json] [--json-out FILE]\n"
        "  --arch ARCH    the architecture, randomly initialised: %s (default sd15)\n"
        "  --res PX       image side; the latents are PX/8 square (default 512)\n"
        "  --batch LIST   batch sizes, one table row each (default 1)\n"
        "  --mode M       lora: a LoRA at the config defaults (default); full: the whole UNet trains\n"
        "  --steps N      timed steps per batch size (default 5)\n"
        "  --warmup N     untimed steps before them (default 1)\n"
        "  --device D     cpu, cuda, or auto: cuda when this build and machine have it (default cpu)\n"
        "  --threads N    CPU threads (default: all cores)\n"
        "  --precision P  compute dtype of the frozen UNet, its inputs and activations; LoRA weights stay\n"
        "                 fp32 (default: what mixed_precision \"auto\" trains in: bf16 for a LoRA on cuda,\n"
        "                 fp32 on the cpu and for --mode full, which takes fp32 only)\n"
        "  --fp8          frozen UNet linear and conv weights in fp8 e4m3 (fp8_base_unet; LoRA only)\n"
        "  --checkpointing on|off  gradient checkpointing per UNet block (default: the config's,\n"
        "                 gradient_checkpointing)\n"
        "  --seed N       model and data seed (default 0)\n"
        "  --json         one JSON object instead of the tables\n"
        "  --json-out F   the tables, and the JSON object written to file F\n",
        sdt_model_arch_names());
}

static int parse_int(const char *text, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (!text[0] || *end != '\0' || errno == ERANGE || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

/* "1,4,8" -> {1, 4, 8}; returns the count, or -1 when malformed. */
static int parse_batches(const char *text, int *batches)
{
    int n = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", text);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (n == MAX_BATCHES || parse_int(tok, 1, 4096, &batches[n]) != 0)
            return -1;
        n++;
    }
    return n > 0 ? n : -1;
}

typedef struct bench_args {
    const char *arch, *mode, *device;
    const char *precision;  /* NULL: mixed_precision "auto" */
    const char *json_out;   /* --json-out: a file for the JSON object besides the tables; NULL: none */
    int fp8, checkpointing; /* checkpointing -1: the config's default */
    int resolution, steps, warmup, threads, json;
    int batches[MAX_BATCHES], batch_count;
    uint64_t seed;
} bench_args;

/* Returns 0, 1 for --help, or 2 on a usage error (printed). */
static int parse_args(int argc, char **argv, bench_args *a)
{
    *a = (bench_args){.arch = "sd15",
                      .mode = "lora",
                      .device = "cpu",
                      .resolution = 512,
                      .steps = 5,
                      .warmup = 1,
                      .checkpointing = -1,
                      .batches = {1},
                      .batch_count = 1};
    for (int i = 0; i < argc; i++) {
        const char *o = argv[i];
        if (strcmp(o, "-h") == 0 || strcmp(o, "--help") == 0)
            return 1;
        if (strcmp(o, "--json") == 0 || strcmp(o, "--fp8") == 0) { /* the flags without a value */
            if (strcmp(o, "--json") == 0)
                a->json = 1;
            else
                a->fp8 = 1;
            continue;
        }
        static const char *const with_value[] = {"--arch",      "--res",           "--batch",  "--mode",
                                                 "--steps",     "--warmup",        "--device", "--threads",
                                                 "--precision", "--checkpointing", "--seed",   "--json-out"};
        int known = 0;
        for (size_t k = 0; k < sizeof with_value / sizeof with_value[0]; k++)
            known |= strcmp(o, with_value[k]) == 0;
        if (!known) {
            fprintf(stderr, "sdtune-engine bench: unknown %s '%s'\n", o[0] == '-' ? "option" : "argument", o);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "sdtune-engine bench: %s needs a value\n", o);
            return 2;
        }
        const char *v = argv[++i];
        int bad = 0;
        if (strcmp(o, "--arch") == 0)
            a->arch = v;
        else if (strcmp(o, "--mode") == 0)
            a->mode = v, bad = strcmp(v, "lora") != 0 && strcmp(v, "full") != 0;
        else if (strcmp(o, "--device") == 0)
            a->device = v, bad = strcmp(v, "cpu") != 0 && strcmp(v, "cuda") != 0 && strcmp(v, "auto") != 0;
        else if (strcmp(o, "--precision") == 0)
            a->precision = v,
            bad = strcmp(v, "fp32") != 0 && strcmp(v, "bf16") != 0 && strcmp(v, "fp16") != 0;
        else if (strcmp(o, "--checkpointing") == 0)
            a->checkpointing = strcmp(v, "on") == 0, bad = strcmp(v, "on") != 0 && strcmp(v, "off") != 0;
        else if (strcmp(o, "--json-out") == 0)
            a->json_out = v, bad = !v[0];
        else if (strcmp(o, "--res") == 0)
            bad = parse_int(v, 8, 8192, &a->resolution) != 0;
        else if (strcmp(o, "--steps") == 0)
            bad = parse_int(v, 1, 1000000, &a->steps) != 0;
        else if (strcmp(o, "--warmup") == 0)
            bad = parse_int(v, 0, 1000000, &a->warmup) != 0;
        else if (strcmp(o, "--threads") == 0)
            bad = parse_int(v, 0, 4096, &a->threads) != 0;
        else if (strcmp(o, "--batch") == 0)
            bad = (a->batch_count = parse_batches(v, a->batches)) < 0;
        else {
            char *end;
            errno = 0;
            a->seed = strtoull(v, &end, 10);
            bad = !v[0] || v[0] == '-' || *end != '\0' || errno == ERANGE;
        }
        if (bad) {
            fprintf(stderr, "sdtune-engine bench: %s %s: not a valid value\n", o, v);
            return 2;
        }
    }
    /* A full fine-tune trains the UNet's own weights: fp32 masters, no fp8 (as the trainer refuses). */
    if (strcmp(a->mode, "full") == 0 && a->precision && strcmp(a->precision, "fp32") != 0) {
        fprintf(stderr, "sdtune-engine bench: --precision %s: --mode full trains in fp32 only\n",
                a->precision);
        return 2;
    }
    if (strcmp(a->mode, "full") == 0 && a->fp8) {
        fprintf(stderr, "sdtune-engine bench: --fp8: frozen weights in fp8 are for --mode lora only\n");
        return 2;
    }
    return 0;
}

/* mixed_precision's value for --precision. */
static const char *mixed_precision_of(const char *precision)
{
    if (!precision)
        return "auto";
    return strcmp(precision, "fp32") == 0 ? "no" : precision;
}

/* --device auto: CUDA when an engine can be made on it. */
static int create_session(const bench_args *a, sdt_bench_options *o, sdt_bench **b, char **error)
{
    if (strcmp(a->device, "auto") != 0) {
        o->device = strcmp(a->device, "cuda") == 0 ? SDT_DEVICE_CUDA : SDT_DEVICE_CPU;
        return sdt_bench_create(o, b, error);
    }
    o->device = SDT_DEVICE_CUDA;
    char *cuda_error = NULL;
    if (sdt_bench_create(o, b, &cuda_error) == 0)
        return 0;
    free(cuda_error);
    o->device = SDT_DEVICE_CPU;
    return sdt_bench_create(o, b, error);
}

static const char *mode_text(const sdt_bench_info *info, char *buf, size_t size)
{
    if (info->lora_rank > 0)
        snprintf(buf, size, "LoRA rank %d alpha %g, %zu modules, %.3g M trainable", info->lora_rank,
                 info->lora_alpha, info->lora_modules, (double)info->trainable_params / 1e6);
    else
        snprintf(buf, size, "full fine-tune, %.4g M trainable", (double)info->trainable_params / 1e6);
    return buf;
}

static double mib(size_t bytes) { return (double)bytes / (1024.0 * 1024.0); }

static void print_tables(const bench_args *a, const sdt_bench_info *info, int gemm_n, double peak,
                         const sdt_bench_result *r, int n)
{
    char mode[160];
    printf("bench: %s, %d px (latents %dx%dx4, context %dx%d), %s, %s%s\n", a->arch, a->resolution,
           info->latent_side, info->latent_side, info->context_length, info->context_width,
           mode_text(info, mode, sizeof mode), info->optimizer,
           info->checkpointing ? ", gradient checkpointing" : "");
    printf("precision: %s (frozen UNet weights %s, inputs and activations %s; trained weights fp32)\n",
           info->precision, info->fp8 ? "fp8 e4m3 for linear/conv" : info->precision, info->precision);
    printf("device: %s", info->backend);
    if (a->threads > 0)
        printf(" (%d threads)", a->threads);
    printf(", %d timed steps after %d warm-up per batch size, UNet %.4g M parameters\n", a->steps, a->warmup,
           (double)info->unet_params / 1e6);
    if (info->optimizer_skipped)
        printf("note: the %s update runs on the host only and is left out of the steps on %s (gradients "
               "are still zeroed); the optimizer column is that zeroing\n",
               info->optimizer, info->backend);
    printf("GEMM peak: %.4g TFLOP/s (%dx%dx%d %s linear_forward)\n", peak / 1e12, gemm_n, gemm_n, gemm_n,
           info->precision);
    printf("FLOPs: analytic, %s rules (docs/flops.md)\n\n", info->lora_rank > 0 ? "LoRA" : "full fine-tune");
    printf("%5s %10s %10s %12s %10s %8s %9s\n", "batch", "images/s", "step_ms", "TFLOP/step", "TFLOP/s",
           "MFU_%", "peak_MB");
    for (int i = 0; i < n; i++) {
        char peak_mb[32];
        if (r[i].peak_bytes >= 0)
            snprintf(peak_mb, sizeof peak_mb, "%.1f", (double)r[i].peak_bytes / 1e6);
        else
            snprintf(peak_mb, sizeof peak_mb, "n/a");
        printf("%5d %10.4g %10.1f %12.4g %10.4g %8.4g %9s\n", r[i].batch, r[i].images_per_second,
               r[i].step_seconds * 1e3, r[i].flops_per_step / 1e12, r[i].flops_per_second / 1e12,
               r[i].mfu * 100.0, peak_mb);
    }
    /* The plan is what a training run with these settings predicts before it starts (docs/training.md,
     * "Memory plan"); measured is the engine allocator's high-water mark over the batch size's steps. */
    printf("\nmemory (MiB): plan = the memory plan of a training run with these settings, measured = the "
           "engine allocator's peak\n");
    if (strcmp(info->backend, "cpu") == 0)
        printf("(cpu: the optimizer state is host memory, outside the engine's count; peak_MB above is the "
               "process's resident peak)\n");
    printf("%5s %10s %12s", "batch", "plan_MiB", "measured_MiB");
    for (int c = 0; c < SDT_MEM_COUNT; c++)
        printf(" %11s", sdt_mem_category_name(c));
    printf("\n");
    for (int i = 0; i < n; i++) {
        printf("%5d %10.1f %12.1f", r[i].batch, mib(sdt_memory_plan_total(&r[i].plan)),
               mib((size_t)r[i].engine_peak_bytes));
        for (int c = 0; c < SDT_MEM_COUNT; c++)
            printf(" %11.1f", mib(r[i].plan.bytes[c]));
        printf("\n");
    }
    printf("\ntime per step by layer family (ms)\n%5s", "batch");
    for (int f = 0; f < SDT_BENCH_FAMILY_COUNT; f++)
        printf(" %11s", sdt_bench_family_name(f));
    printf("\n");
    for (int i = 0; i < n; i++) {
        printf("%5d", r[i].batch);
        for (int f = 0; f < SDT_BENCH_FAMILY_COUNT; f++)
            printf(" %11.1f", r[i].family_seconds[f] * 1e3);
        printf("\n");
    }
}

static int print_json(FILE *out, const bench_args *a, const sdt_bench_info *info, int gemm_n, double peak,
                      const sdt_bench_result *r, int n)
{
    json_t *root = json_object();
    json_object_set_new(root, "arch", json_string(a->arch));
    json_object_set_new(root, "resolution", json_integer(a->resolution));
    json_object_set_new(root, "mode", json_string(info->lora_rank > 0 ? "lora" : "full"));
    json_object_set_new(root, "device", json_string(info->backend));
    json_object_set_new(root, "threads", json_integer(a->threads));
    json_object_set_new(root, "optimizer", json_string(info->optimizer));
    json_object_set_new(root, "lora_rank", json_integer(info->lora_rank));
    json_object_set_new(root, "lora_alpha", json_real(info->lora_alpha));
    json_object_set_new(root, "lora_modules", json_integer((json_int_t)info->lora_modules));
    json_object_set_new(root, "unet_params", json_integer(info->unet_params));
    json_object_set_new(root, "trainable_params", json_integer(info->trainable_params));
    json_object_set_new(root, "gradient_checkpointing", json_boolean(info->checkpointing));
    json_object_set_new(root, "precision", json_string(info->precision));
    json_object_set_new(root, "fp8", json_boolean(info->fp8));
    json_object_set_new(root, "optimizer_skipped", json_boolean(info->optimizer_skipped));
    json_object_set_new(root, "steps", json_integer(a->steps));
    json_object_set_new(root, "warmup", json_integer(a->warmup));
    json_object_set_new(root, "gemm_n", json_integer(gemm_n));
    json_object_set_new(root, "gemm_peak_flops", json_real(peak));
    json_t *rows = json_array();
    for (int i = 0; i < n; i++) {
        json_t *row = json_object();
        json_object_set_new(row, "batch", json_integer(r[i].batch));
        json_object_set_new(row, "images_per_second", json_real(r[i].images_per_second));
        json_object_set_new(row, "step_seconds", json_real(r[i].step_seconds));
        json_object_set_new(row, "flops_per_step", json_real(r[i].flops_per_step));
        json_object_set_new(row, "forward_flops", json_real(r[i].forward_flops));
        json_object_set_new(row, "flops_per_second", json_real(r[i].flops_per_second));
        json_object_set_new(row, "mfu", json_real(r[i].mfu));
        json_object_set_new(row, "peak_bytes",
                            r[i].peak_bytes >= 0 ? json_integer(r[i].peak_bytes) : json_null());
        json_object_set_new(row, "engine_peak_bytes", json_integer(r[i].engine_peak_bytes));
        json_object_set_new(row, "plan_bytes", json_integer((json_int_t)sdt_memory_plan_total(&r[i].plan)));
        json_t *plan = json_object();
        for (int c = 0; c < SDT_MEM_COUNT; c++)
            json_object_set_new(plan, sdt_mem_category_name(c), json_integer((json_int_t)r[i].plan.bytes[c]));
        json_object_set_new(row, "plan", plan);
        json_object_set_new(row, "loss", json_real(r[i].loss));
        json_t *families = json_object();
        for (int f = 0; f < SDT_BENCH_FAMILY_COUNT; f++)
            json_object_set_new(families, sdt_bench_family_name(f), json_real(r[i].family_seconds[f]));
        json_object_set_new(row, "family_seconds", families);
        json_array_append_new(rows, row);
    }
    json_object_set_new(root, "results", rows);
    int rc = json_dumpf(root, out, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
    json_decref(root);
    fprintf(out, "\n");
    return rc;
}

int cli_bench(int argc, char **argv)
{
    bench_args a;
    int parsed = parse_args(argc, argv, &a);
    if (parsed != 0) {
        usage(parsed == 1 ? stdout : stderr);
        return parsed == 1 ? 0 : 2;
    }
    const sdt_model_arch *arch = sdt_model_arch_find(a.arch);
    if (!arch) {
        fprintf(stderr, "sdtune-engine bench: unknown arch '%s' (known: %s)\n", a.arch,
                sdt_model_arch_names());
        return 2;
    }
    sdt_bench_options o = {.arch = arch,
                           .threads = a.threads,
                           .resolution = a.resolution,
                           .full = strcmp(a.mode, "full") == 0,
                           .steps = a.steps,
                           .warmup = a.warmup,
                           .seed = a.seed,
                           .mixed_precision = mixed_precision_of(a.precision),
                           .fp8 = a.fp8,
                           .checkpointing = a.checkpointing};
    sdt_bench *b = NULL;
    char *error = NULL;
    sdt_bench_result results[MAX_BATCHES];
    double peak = 0;
    int gemm_n = 0, status = 1;
    if (create_session(&a, &o, &b, &error) != 0 || sdt_bench_gemm_peak(b, 0, 10, &peak, &gemm_n, &error) != 0)
        goto done;
    for (int i = 0; i < a.batch_count; i++) {
        if (sdt_bench_run(b, a.batches[i], peak, &results[i], &error) != 0)
            goto done;
        if (!a.json)
            fprintf(stderr, "bench: batch %d done (%.4g s per step)\n", a.batches[i],
                    results[i].step_seconds);
    }
    const sdt_bench_info *info = sdt_bench_get_info(b);
    if (a.json)
        status = print_json(stdout, &a, info, gemm_n, peak, results, a.batch_count) == 0 ? 0 : 1;
    else {
        print_tables(&a, info, gemm_n, peak, results, a.batch_count);
        status = 0;
    }
    if (status == 0 && a.json_out) {
        FILE *f = fopen(a.json_out, "w");
        int written = f && print_json(f, &a, info, gemm_n, peak, results, a.batch_count) == 0;
        if ((f && fclose(f) != 0) || !written) {
            fprintf(stderr, "sdtune-engine bench: cannot write %s: %s\n", a.json_out, strerror(errno));
            status = 1;
        }
    }
done:
    if (error) {
        fprintf(stderr, "sdtune-engine bench: %s\n", error);
        free(error);
    }
    sdt_bench_free(b);
    return fflush(stdout) == 0 ? status : 1;
}
