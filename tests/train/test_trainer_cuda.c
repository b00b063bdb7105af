/* Training on the GPU (label gpu; skipped, exit 77, without a CUDA device or without the CUDA ops in the
 * build): 20 LoRA steps of the tiny test model on the CPU and on the CUDA backend, both fp32, must give
 * losses that track each other, and two CUDA runs with `deterministic = true` must give the same losses
 * bit for bit.
 *
 * The tolerance: both backends compute in fp32 (cuBLASLt with 32-bit compute and cuDNN with FMA math, no
 * TF32), so they differ only by summation order, about 1e-6 relative per op. The first step's loss depends
 * on the forward pass alone: 1e-5 relative. Later steps carry the difference through the updates (AdamW
 * with a learning rate of 1e-2 amplifies it a little each step): 1e-3 relative per step, far below the
 * step-to-step change of the loss (several percent), so a wrong gradient or update still fails. */
#include "cuda_usable.h"
#include "trainer_fixture.h"

enum { STEPS = 20 };

static const char *const run_settings = "[training]\nmax_train_steps = 20\nseed = 11\n"
                                        "[optimizer]\nlearning_rate = 0.01\nmax_grad_norm = 1.0\n"
                                        "[network]\nnetwork_dim = 4\nnetwork_alpha = 4.0\n";

/* The losses of one run on `backend` (with `deterministic`); the count, or 0 with a failed check. */
static size_t losses_of(test_state *t, trainer_fixture *f, const char *backend, int deterministic,
                        double *losses)
{
    char *extra = sdt_format("backend = \"%s\"\ndeterministic = %s\n%s", backend,
                             deterministic ? "true" : "false", run_settings);
    event_log log = {0};
    char *error = NULL;
    sdt_train_result r =
        extra ? trainer_fixture_run_with(t, f, "", extra, &log, NULL, &error) : SDT_TRAIN_FAILED;
    CHECK_MSG(t, r == SDT_TRAIN_DONE, "%s run: %s", backend, error ? error : "");
    size_t n = r == SDT_TRAIN_DONE ? event_log_losses(&log, losses, STEPS) : 0;
    CHECK_MSG(t, n == STEPS, "%s run: %zu losses", backend, n);
    /* The device event names the backend; on CUDA the memory events are the GPU's: the allocator's live
     * and peak bytes against the device's size. */
    const char *device = event_log_text(&log, SDT_EV_DEVICE), *memory = event_log_text(&log, SDT_EV_MEMORY);
    char want[64];
    snprintf(want, sizeof want, "backend=%s ", backend);
    CHECK_MSG(t, device && strncmp(device, want, strlen(want)) == 0, "%s", device ? device : "(no device)");
    long long used = 0, peak = 0, total = 0;
    char kind[8] = "";
    int fields =
        memory ? sscanf(memory, "kind=%7s used=%lld peak=%lld total=%lld", kind, &used, &peak, &total) : 0;
    CHECK_MSG(t, fields == 4 && strcmp(kind, strcmp(backend, "cuda") == 0 ? "vram" : "ram") == 0, "%s",
              memory ? memory : "(no memory event)");
    CHECK_MSG(t, used > 0 && peak >= used && total > peak, "%s", memory ? memory : "(no memory event)");
    free(error);
    free(extra);
    event_log_free(&log);
    return n;
}

static double relative(double got, double want) { return fabs(got - want) / fmax(fabs(want), 1e-6); }

static void test_cuda_tracks_cpu(test_state *t)
{
    trainer_fixture f;
    if (trainer_fixture_open(t, &f, "train-cuda", 2, 1) == 0) {
        double cpu[STEPS], gpu[STEPS];
        if (losses_of(t, &f, "cpu", 0, cpu) == STEPS && losses_of(t, &f, "cuda", 0, gpu) == STEPS) {
            double worst = 0;
            for (int s = 0; s < STEPS; s++) {
                double r = relative(gpu[s], cpu[s]);
                worst = fmax(worst, r);
                CHECK_MSG(t, r <= (s == 0 ? 1e-5 : 1e-3), "step %d: CUDA loss %.9g, CPU %.9g (relative %.3g)",
                          s, gpu[s], cpu[s], r);
            }
            printf("CUDA vs CPU over %d steps: worst relative loss difference %.3g\n", STEPS, worst);
        }
    }
    trainer_fixture_close(&f);
}

static void test_cuda_deterministic(test_state *t)
{
    trainer_fixture f;
    if (trainer_fixture_open(t, &f, "train-cuda-det", 2, 1) == 0) {
        double a[STEPS], b[STEPS];
        if (losses_of(t, &f, "cuda", 1, a) == STEPS && losses_of(t, &f, "cuda", 1, b) == STEPS)
            for (int s = 0; s < STEPS; s++)
                CHECK_MSG(t, memcmp(&a[s], &b[s], sizeof a[s]) == 0, "step %d: %.17g, then %.17g", s, a[s],
                          b[s]);
    }
    trainer_fixture_close(&f);
}

int main(void)
{
    if (!cuda_usable())
        return 77;
    static const test_case cases[] = {TEST(test_cuda_tracks_cpu), TEST(test_cuda_deterministic)};
    return run_tests("trainer_cuda", cases, sizeof cases / sizeof cases[0]);
}
