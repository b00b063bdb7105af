/* The training benchmark behind `sdtune-engine bench`: a randomly initialised UNet of a preset arch,
 * trained on random cached latents [B, res/8, res/8, 4] and random text-encoder outputs [B, 77, D] (no VAE,
 * no text encoder: kohya with cached latents and a frozen text encoder), with a LoRA at the config defaults
 * or a full fine-tune, through the trainer's own pass (diffusion_pass.h) and optimizer. The settings the
 * trainer takes from its config (mixed_precision, fp8_base_unet, gradient_checkpointing) come from the
 * options through a config, so the frozen UNet, the inputs and the loss scaling are what a training run
 * with those settings has. Each run reports the step time, the analytic FLOPs (models/flops.h), a GEMM peak
 * measured on the same engine in the compute dtype for the MFU, the peak memory next to the memory plan's
 * prediction (memory_plan.h) and where the time went per layer family. See docs/perf.md. */
#ifndef SDTUNE_TRAIN_BENCH_H
#define SDTUNE_TRAIN_BENCH_H

#include <stdint.h>

#include "arch.h"
#include "backend.h"
#include "memory_plan.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Where a step's time goes. Engine ops are sorted by name (op timing, backend.h); the optimizer is the
 * clipping, update and zeroing on the host; other is the rest of the step (objective sampling, the loss on
 * the host, uploads, LoRA dropout masks). */
typedef enum sdt_bench_family {
    SDT_BENCH_CONV,
    SDT_BENCH_LINEAR,
    SDT_BENCH_ATTENTION,
    SDT_BENCH_NORM,
    SDT_BENCH_ELEMENTWISE,
    SDT_BENCH_OPTIMIZER,
    SDT_BENCH_OTHER,
    SDT_BENCH_FAMILY_COUNT
} sdt_bench_family;

const char *sdt_bench_family_name(sdt_bench_family f); /* "conv", "linear", ... */
/* The family an engine op ("conv2d_backward") belongs to. */
sdt_bench_family sdt_bench_family_of_op(const char *op);

typedef struct sdt_bench_options {
    const sdt_model_arch *arch;
    sdt_device_kind device;
    int threads;    /* CPU threads; 0 = all cores */
    int resolution; /* image side in pixels; the latents are resolution / 8 */
    int full;       /* 0: LoRA at the config defaults; 1: full fine-tune of the UNet */
    int steps;      /* timed steps per batch size (>= 1) */
    int warmup;     /* untimed steps before them */
    uint64_t seed;
    /* mixed_precision as a run would set it: "auto" (NULL too: bf16 for a LoRA on CUDA, fp32 otherwise,
     * precision.h), "no", "bf16" or "fp16". Full fine-tune takes fp32 only, as the trainer does. */
    const char *mixed_precision;
    int fp8;           /* fp8_base_unet: the frozen UNet's linear and conv weights in F8 (LoRA only) */
    int checkpointing; /* gradient_checkpointing: -1 the config's default, 0 off, 1 on */
} sdt_bench_options;

/* What the session trains, for the report. */
typedef struct sdt_bench_info {
    const char *backend;      /* "cpu", "cuda" */
    const char *optimizer;    /* "AdamW", ... */
    int64_t unet_params;      /* elements of the UNet */
    int64_t trainable_params; /* LoRA modules' or the UNet's */
    int lora_rank;            /* 0 for full fine-tune */
    double lora_alpha;
    size_t lora_modules;
    int checkpointing;
    sdt_dtype compute_dtype; /* frozen weights, inputs and activations; LoRA masters stay F32 */
    const char *precision;   /* "fp32", "bf16", "fp16": compute_dtype's name in the report */
    int fp8;                 /* frozen UNet linear/conv weights in F8_E4M3 */
    int optimizer_skipped;   /* the update does not run on this device yet (bench.c): steps omit it */
    int latent_side, context_length, context_width;
} sdt_bench_info;

typedef struct sdt_bench_result {
    int batch;
    int steps;
    double step_seconds;      /* mean wall time of a timed step */
    double images_per_second; /* batch / step_seconds */
    double flops_per_step;    /* analytic training FLOPs of one step */
    double forward_flops;     /* analytic FLOPs of one forward of the batch */
    double flops_per_second;  /* flops_per_step / step_seconds */
    double mfu;               /* flops_per_second / the GEMM peak; 0 when no peak was measured */
    double family_seconds[SDT_BENCH_FAMILY_COUNT]; /* per step */
    double loss;                                   /* of the last step */
    /* CPU: the process's peak resident memory so far (getrusage); CUDA: engine_peak_bytes, the device's */
    int64_t peak_bytes;
    /* The engine allocator's high-water mark over this batch size's steps (sdt_engine_peak_bytes, reset
     * before the warm-up): the model, LoRA, optimizer state and the step's activations, plus the CUDA
     * library workspace; what the memory plan predicts. */
    int64_t engine_peak_bytes;
    sdt_memory_plan plan; /* the memory plan of a training run with the bench's settings at this batch */
} sdt_bench_result;

typedef struct sdt_bench sdt_bench;

/* Creates the engine, the random model, the LoRA (or the UNet's gradients) and the optimizer. Returns 0,
 * or -1 with *error set (caller frees). */
int sdt_bench_create(const sdt_bench_options *o, sdt_bench **out, char **error);
void sdt_bench_free(sdt_bench *b);
const sdt_bench_info *sdt_bench_get_info(const sdt_bench *b);

/* The GEMM peak of this engine: FLOP/s of out [n, n] = a [n, n] @ w [n, n]^T through sdt_linear_forward in
 * the compute dtype (bf16 GEMMs for a bf16 run), the best of `repeats` after one warm-up. n 0: a size that
 * fills the device (1024 on the CPU, 8192 on CUDA, where bf16 tensor cores reach their peak at that size).
 * *n_used gets the size (may be NULL). */
int sdt_bench_gemm_peak(sdt_bench *b, int n, int repeats, double *flops_per_second, int *n_used,
                        char **error);

/* Warm-up and timed steps at one batch size; peak_flops (from sdt_bench_gemm_peak, 0: none) gives the MFU.
 * The model keeps training across calls (the numbers do not depend on its values). */
int sdt_bench_run(sdt_bench *b, int batch, double peak_flops, sdt_bench_result *r, char **error);

#ifdef __cplusplus
}
#endif
#endif
