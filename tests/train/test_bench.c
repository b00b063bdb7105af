/* The training benchmark's library side (train/bench.h) on the tiny model: a LoRA session counts its
 * adapters' FLOPs on top of the base's, a full fine-tune counts exactly the analytic full-training FLOPs,
 * the results agree with each other, the family times add up to the step, bf16, fp16 and fp8 steps give
 * the fp32 step's loss within their precision, the memory plan matches what the engine held, and bad
 * options are refused. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "flops.h"
#include "unit/check.h"

static sdt_bench_options tiny_options(int full)
{
    return (sdt_bench_options){.arch = sdt_model_arch_find("sd15-tiny"),
                               .device = SDT_DEVICE_CPU,
                               .threads = 1,
                               .resolution = 64,
                               .full = full,
                               .steps = 2,
                               .warmup = 1,
                               .seed = 3};
}

/* Runs batch 2 and checks what holds for either mode; returns the result through r. */
static int run_session(test_state *t, int full, sdt_bench_result *r, sdt_bench_info *info)
{
    sdt_bench_options o = tiny_options(full);
    sdt_bench *b = NULL;
    char *error = NULL;
    double peak = 0;
    int n = 0;
    int rc = sdt_bench_create(&o, &b, &error);
    if (rc == 0)
        rc = sdt_bench_gemm_peak(b, 128, 2, &peak, &n, &error);
    if (rc == 0)
        rc = sdt_bench_run(b, 2, peak, r, &error);
    CHECK_MSG(t, rc == 0, "%s", error ? error : "");
    free(error);
    if (rc == 0) {
        *info = *sdt_bench_get_info(b);
        CHECK(t, n == 128 && peak > 0);
        CHECK(t, r->batch == 2 && r->steps == 2 && r->step_seconds > 0);
        CHECK(t, fabs(r->images_per_second * r->step_seconds - 2.0) < 1e-9);
        CHECK(t, fabs(r->flops_per_second * r->step_seconds / r->flops_per_step - 1.0) < 1e-9);
        CHECK(t, fabs(r->mfu * peak / r->flops_per_second - 1.0) < 1e-9);
        CHECK(t, isfinite(r->loss) && r->loss > 0);
        CHECK(t, r->peak_bytes > 0);
        double sum = 0;
        for (int f = 0; f < SDT_BENCH_FAMILY_COUNT; f++) {
            CHECK(t, r->family_seconds[f] >= 0);
            sum += r->family_seconds[f];
        }
        CHECK_MSG(t, fabs(sum / r->step_seconds - 1.0) < 1e-6, "families %g s, step %g s", sum,
                  r->step_seconds);
        CHECK(t, r->family_seconds[SDT_BENCH_CONV] > 0 && r->family_seconds[SDT_BENCH_OPTIMIZER] > 0);
        CHECK(t, !info->optimizer_skipped && info->latent_side == 8 && info->context_length == 77);
        CHECK(t, r->engine_peak_bytes > 0 && sdt_memory_plan_total(&r->plan) > 0);
    }
    sdt_bench_free(b);
    return rc;
}

static void test_lora_counts_adapters(test_state *t)
{
    sdt_bench_result r;
    sdt_bench_info info;
    if (run_session(t, 0, &r, &info) != 0)
        return;
    const sdt_model_arch *a = sdt_model_arch_find("sd15-tiny");
    sdt_flop_count base;
    char *error = NULL;
    CHECK(t, sdt_flops_unet(&a->unet, NULL, 2, 8, 8, 77, &base, &error) == 0);
    free(error);
    double without = sdt_flops_training(&base, SDT_FLOP_TRAIN_LORA, 0);
    CHECK_MSG(t, r.flops_per_step > without, "LoRA step %g FLOP, base alone %g", r.flops_per_step, without);
    CHECK(t, info.lora_rank == 32 && info.lora_modules == 192 && info.trainable_params > 0);
    CHECK(t, info.trainable_params < info.unet_params);
}

static void test_full_counts_base(test_state *t)
{
    sdt_bench_result r;
    sdt_bench_info info;
    if (run_session(t, 1, &r, &info) != 0)
        return;
    const sdt_model_arch *a = sdt_model_arch_find("sd15-tiny");
    sdt_flop_count base;
    char *error = NULL;
    CHECK(t, sdt_flops_unet(&a->unet, NULL, 2, 8, 8, 77, &base, &error) == 0);
    free(error);
    CHECK(t, r.flops_per_step == sdt_flops_training(&base, SDT_FLOP_TRAIN_FULL, 0));
    CHECK(t, r.forward_flops == 2.0 * sdt_flop_forward_mac(&base));
    CHECK(t, info.lora_rank == 0 && info.trainable_params == info.unet_params);
}

/* One step (no warm-up) of a LoRA session at batch 2 with the given precision; returns its loss (NAN when
 * the session failed) and the result through r. */
static double one_step_loss(test_state *t, const char *mixed_precision, int fp8, sdt_bench_result *r,
                            sdt_bench_info *info)
{
    sdt_bench_options o = tiny_options(0);
    o.steps = 1;
    o.warmup = 0;
    o.mixed_precision = mixed_precision;
    o.fp8 = fp8;
    sdt_bench *b = NULL;
    char *error = NULL;
    int rc = sdt_bench_create(&o, &b, &error);
    if (rc == 0)
        rc = sdt_bench_run(b, 2, 0, r, &error);
    CHECK_MSG(t, rc == 0, "%s %s: %s", mixed_precision, fp8 ? "fp8" : "", error ? error : "");
    free(error);
    if (rc == 0)
        *info = *sdt_bench_get_info(b);
    sdt_bench_free(b);
    return rc == 0 ? r->loss : NAN;
}

/* The same seed gives the same model values, latents, context, noise and timesteps in every precision, so
 * a half-precision step's loss differs from the fp32 one by rounding only: bf16 keeps 8 significant bits
 * (relative 2^-8 per value), fp16 11, fp8 e4m3 weights 4. The bounds are about ten times the relative
 * loss differences measured on this model (bf16 4e-4, fp16 1e-6, fp8 weights with bf16 2e-3); a loss
 * equal to the fp32 one would say the precision was not applied. */
static void test_precision_losses(test_state *t)
{
    sdt_bench_result r32, r;
    sdt_bench_info info;
    double fp32 = one_step_loss(t, "no", 0, &r32, &info);
    CHECK(t, info.compute_dtype == SDT_F32 && strcmp(info.precision, "fp32") == 0 && !info.fp8);
    double bf16 = one_step_loss(t, "bf16", 0, &r, &info);
    CHECK(t, info.compute_dtype == SDT_BF16 && strcmp(info.precision, "bf16") == 0);
    CHECK_MSG(t, fabs(bf16 / fp32 - 1.0) < 5e-3 && bf16 != fp32, "bf16 loss %.9g, fp32 %.9g", bf16, fp32);
    /* frozen weights in bf16 halve the plan's weights; the trained parameters stay F32 */
    CHECK(t, r.plan.bytes[SDT_MEM_WEIGHTS] < r32.plan.bytes[SDT_MEM_WEIGHTS] * 3 / 4);
    CHECK(t, r.plan.bytes[SDT_MEM_TRAINABLE] == r32.plan.bytes[SDT_MEM_TRAINABLE]);
    double fp16 = one_step_loss(t, "fp16", 0, &r, &info);
    CHECK(t, info.compute_dtype == SDT_F16 && strcmp(info.precision, "fp16") == 0);
    CHECK_MSG(t, fabs(fp16 / fp32 - 1.0) < 1e-3, "fp16 loss %.9g, fp32 %.9g", fp16, fp32);
    double fp8 = one_step_loss(t, "bf16", 1, &r, &info);
    CHECK(t, info.compute_dtype == SDT_BF16 && info.fp8);
    CHECK_MSG(t, fabs(fp8 / fp32 - 1.0) < 2e-2 && fp8 != bf16, "fp8 loss %.9g, bf16 %.9g, fp32 %.9g", fp8,
              bf16, fp32);
    CHECK(t, r.plan.bytes[SDT_MEM_WEIGHTS] < r32.plan.bytes[SDT_MEM_WEIGHTS] * 2 / 5);
}

/* On the CPU backend the optimizer's state lives on the host, outside the engine's allocator: the rest
 * of the plan is what the engine held at its peak (the plan counts allocations as the code makes them;
 * measured here within 100 bytes of 20 MB), so the plan's input follows the bench's settings. */
static void test_plan_matches_engine(test_state *t)
{
    const char *precisions[] = {"no", "bf16"};
    for (int i = 0; i < 2; i++) {
        sdt_bench_result r;
        sdt_bench_info info;
        if (isnan(one_step_loss(t, precisions[i], 0, &r, &info)))
            continue;
        double planned = (double)(sdt_memory_plan_total(&r.plan) - r.plan.bytes[SDT_MEM_OPTIMIZER]);
        double measured = (double)r.engine_peak_bytes;
        CHECK_MSG(t, fabs(measured / planned - 1.0) < 0.02,
                  "%s: plan %.0f bytes without the optimizer, engine %.0f", precisions[i], planned, measured);
    }
}

static void test_bad_options(test_state *t)
{
    sdt_bench *b = NULL;
    char *error = NULL;
    sdt_bench_options o = tiny_options(0);
    o.resolution = 96;
    CHECK(t, sdt_bench_create(&o, &b, &error) == -1 && b == NULL);
    CHECK_STR_CONTAINS(t, error, "multiple of 64");
    free(error);
    error = NULL;
    o = tiny_options(0);
    o.steps = 0;
    CHECK(t, sdt_bench_create(&o, &b, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "timed step");
    free(error);
    error = NULL;
    o = tiny_options(1); /* a full fine-tune trains fp32 master weights only */
    o.mixed_precision = "bf16";
    CHECK(t, sdt_bench_create(&o, &b, &error) == -1 && b == NULL);
    CHECK_STR_CONTAINS(t, error, "stay fp32");
    free(error);
    error = NULL;
    o = tiny_options(1);
    o.fp8 = 1;
    CHECK(t, sdt_bench_create(&o, &b, &error) == -1 && b == NULL);
    CHECK(t, error != NULL);
    free(error);
    error = NULL;
    o = tiny_options(0);
    o.mixed_precision = "fp8";
    CHECK(t, sdt_bench_create(&o, &b, &error) == -1 && b == NULL);
    CHECK_STR_CONTAINS(t, error, "mixed_precision");
    free(error);
    CHECK(t, sdt_bench_family_of_op("conv2d_backward") == SDT_BENCH_CONV);
    CHECK(t, sdt_bench_family_of_op("softmax_forward") == SDT_BENCH_ATTENTION);
    CHECK(t, sdt_bench_family_of_op("group_norm_forward") == SDT_BENCH_NORM);
    CHECK(t, sdt_bench_family_of_op("geglu_backward") == SDT_BENCH_ELEMENTWISE);
    CHECK(t, sdt_bench_family_of_op("optimizer_update") == SDT_BENCH_OPTIMIZER);
    CHECK(t, strcmp(sdt_bench_family_name(SDT_BENCH_OTHER), "other") == 0);
}

TEST_MAIN("bench", TEST(test_lora_counts_adapters), TEST(test_full_counts_base), TEST(test_precision_losses),
          TEST(test_plan_matches_engine), TEST(test_bad_options))
