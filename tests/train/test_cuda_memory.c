/* Device memory accounting of the CUDA backend (label gpu; skipped, exit 77, without a CUDA device or
 * without the CUDA ops in the build): sdt_engine_live_bytes / peak_bytes / reset_peak count the engine's
 * device blocks in 256-byte units plus the library workspace, through enough blocks to grow the block
 * table and frees in an order that moves entries within it; then the training benchmark on the tiny model
 * in bf16 reports that peak, next to its memory plan. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "bench.h"
#include "cuda_usable.h"
#include "unit/check.h"

enum { BLOCKS = 3000 }; /* more than the block table's first 1024 slots hold at half load */

static void test_counts_blocks(test_state *t)
{
    sdt_engine_options o = {.device = SDT_DEVICE_CUDA};
    sdt_engine *e = NULL;
    char *error = NULL;
    int rc = sdt_engine_create(&o, &e, &error);
    CHECK_MSG(t, rc == 0, "%s", error ? error : "");
    free(error);
    if (rc != 0)
        return;
    size_t base = sdt_engine_live_bytes(e); /* the cuBLASLt/cuDNN workspace, held from the start */
    CHECK_MSG(t, base == (size_t)64 << 20, "live at start %zu", base);
    CHECK(t, sdt_engine_peak_bytes(e) == base);
    void *a = sdt_engine_alloc(e, 1000); /* 1024 */
    void *b = sdt_engine_alloc(e, 0);    /* 256: never a zero-byte block */
    CHECK(t, a && b);
    CHECK(t, sdt_engine_live_bytes(e) == base + 1280 && sdt_engine_peak_bytes(e) == base + 1280);
    sdt_engine_dealloc(e, a);
    CHECK(t, sdt_engine_live_bytes(e) == base + 256 && sdt_engine_peak_bytes(e) == base + 1280);
    sdt_engine_reset_peak(e);
    CHECK(t, sdt_engine_peak_bytes(e) == base + 256);

    void **blocks = calloc(BLOCKS, sizeof *blocks); /* [BLOCKS] device pointers */
    size_t expected = 0;
    for (int i = 0; blocks && i < BLOCKS; i++) {
        size_t bytes = (size_t)(i % 7 + 1) * 300; /* 300..2100: rounded up to 256 */
        blocks[i] = sdt_engine_alloc(e, bytes);
        CHECK(t, blocks[i] != NULL);
        expected += (bytes + 255) / 256 * 256;
    }
    CHECK_MSG(t, sdt_engine_live_bytes(e) == base + 256 + expected, "live %zu, want %zu",
              sdt_engine_live_bytes(e), base + 256 + expected);
    CHECK(t, sdt_engine_peak_bytes(e) == base + 256 + expected);
    /* every third block first, then the rest backwards: holes in the middle of probe runs */
    for (int i = 0; blocks && i < BLOCKS; i += 3)
        sdt_engine_dealloc(e, blocks[i]), blocks[i] = NULL;
    for (int i = BLOCKS - 1; blocks && i >= 0; i--)
        sdt_engine_dealloc(e, blocks[i]);
    free(blocks);
    CHECK_MSG(t, sdt_engine_live_bytes(e) == base + 256, "live %zu after the frees",
              sdt_engine_live_bytes(e));
    CHECK(t, sdt_engine_peak_bytes(e) == base + 256 + expected);
    sdt_engine_dealloc(e, b);
    CHECK(t, sdt_engine_live_bytes(e) == base);
    CHECK(t, sdt_engine_sync(e) == 0);
    sdt_engine_free(e);
}

/* The bench on CUDA reports the engine's peak (no longer "unknown") and prints it next to the plan. The
 * plan counts what the code allocates; staging buffers of the GEMMs and convolutions come on top, so the
 * check is loose: both within a factor of two of each other. The numbers are printed for docs/perf.md. */
static void test_bench_reports_peak(test_state *t)
{
    sdt_bench_options o = {.arch = sdt_model_arch_find("sd15-tiny"),
                           .device = SDT_DEVICE_CUDA,
                           .resolution = 64,
                           .steps = 2,
                           .warmup = 1,
                           .seed = 3,
                           .mixed_precision = "bf16",
                           .checkpointing = -1};
    sdt_bench *b = NULL;
    char *error = NULL;
    sdt_bench_result r;
    int rc = sdt_bench_create(&o, &b, &error);
    if (rc == 0)
        rc = sdt_bench_run(b, 2, 0, &r, &error);
    CHECK_MSG(t, rc == 0, "%s", error ? error : "");
    free(error);
    if (rc == 0) {
        double plan = (double)sdt_memory_plan_total(&r.plan), measured = (double)r.engine_peak_bytes;
        printf("bench sd15-tiny bf16 batch 2 on cuda: plan %.0f bytes, measured %.0f, loss %g\n", plan,
               measured, r.loss);
        CHECK(t, r.peak_bytes == r.engine_peak_bytes && measured > (double)((size_t)64 << 20));
        CHECK_MSG(t, measured < 2 * plan && plan < 2 * measured, "plan %.0f, measured %.0f", plan, measured);
        CHECK(t, strcmp(sdt_bench_get_info(b)->precision, "bf16") == 0);
    }
    sdt_bench_free(b);
}

int main(void)
{
    if (!cuda_usable())
        return 77;
    static const test_case cases[] = {TEST(test_counts_blocks), TEST(test_bench_reports_peak)};
    return run_tests("cuda_memory", cases, sizeof cases / sizeof cases[0]);
}
