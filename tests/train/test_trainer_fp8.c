/* fp8_base on the sd15-tiny model: a LoRA run with the frozen UNet and text encoder weights in F8_E4M3
 * trains (its loss falls) and tracks the same run with f32 weights, its memory plan counts one byte per
 * such weight, and full training with fp8_base is refused before anything loads. */
#include "trainer_fixture.h"

enum { STEPS = 40 };

static double mean(const double *v, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += v[i];
    return n ? s / (double)n : NAN;
}

/* The losses of a LoRA run of STEPS steps with `extra` settings; 0 when it ran to the end. */
static int lora_losses(test_state *t, trainer_fixture *f, const char *extra, double *losses, event_log *log)
{
    char *settings = sdt_format("[training]\nmax_train_steps = %d\nseed = 3\n"
                                "[optimizer]\nlearning_rate = 0.01\n"
                                "[network]\nnetwork_dim = 4\nnetwork_alpha = 4.0\n"
                                "[saving]\nsave_precision = \"fp32\"\n%s",
                                STEPS, extra);
    char *error = NULL;
    sdt_train_result r = trainer_fixture_run_with(t, f, NULL, settings, log, NULL, &error);
    CHECK_MSG(t, r == SDT_TRAIN_DONE, "%s", error ? error : "");
    free(error);
    free(settings);
    size_t n = event_log_losses(log, losses, STEPS);
    CHECK(t, n == STEPS);
    return r == SDT_TRAIN_DONE && n == STEPS ? 0 : -1;
}

static void test_fp8_lora_tracks_f32(test_state *t)
{
    trainer_fixture f;
    if (trainer_fixture_open(t, &f, "train-fp8", 2, 1) != 0) {
        trainer_fixture_close(&f);
        return;
    }
    double full[STEPS], fp8[STEPS];
    event_log log_full = {0}, log_fp8 = {0};
    int ok = lora_losses(t, &f, "", full, &log_full) == 0 &&
             lora_losses(t, &f, "[precision_memory]\nfp8_base = true\n", fp8, &log_fp8) == 0;
    if (ok) {
        /* It trains: the same criterion as the f32 run's own test. */
        double first = mean(fp8, 4), last = mean(fp8 + STEPS - 4, 4);
        printf("fp8_base loss: first 10%% %.4f, last 10%% %.4f (f32 weights: %.4f, %.4f)\n", first, last,
               mean(full, 4), mean(full + STEPS - 4, 4));
        CHECK_MSG(t, last < 0.8 * first, "first %g last %g", first, last);
        /* It tracks the f32 run loosely: same batches, noise and timesteps (same seed), so the losses
         * differ only through the weights' quantisation (forward NMSE ~5e-3 on this model,
         * tests/models/test_f8_model.c) and what the adapters learn from it. The first step differs by
         * about the output's relative error; over the run the mean gap stays a few percent. */
        double gap = 0, scale = 0;
        for (int i = 0; i < STEPS; i++) {
            gap += fabs(fp8[i] - full[i]);
            scale += full[i];
        }
        printf("fp8_base: first-step losses %.5f vs %.5f, mean gap %.2f%% of the mean loss\n", fp8[0],
               full[0], 100 * gap / scale);
        CHECK_MSG(t, fabs(fp8[0] - full[0]) < 0.05 * full[0], "first step %g vs %g", fp8[0], full[0]);
        CHECK_MSG(t, gap < 0.10 * scale, "mean gap %g of %g", gap / STEPS, scale / STEPS);
        CHECK(t, fp8[0] != full[0]); /* the weights really were quantised */
        /* The memory plan counts the F8 weights. */
        CHECK(t, event_log_has_text(&log_fp8, "(linear/conv weights in fp8)"));
        CHECK(t, !event_log_has_text(&log_full, "(linear/conv weights in fp8)"));
        /* The device event says so. */
        const char *with = event_log_text(&log_fp8, SDT_EV_DEVICE),
                   *without = event_log_text(&log_full, SDT_EV_DEVICE);
        CHECK_MSG(t, with && strstr(with, "fp8_weights=1"), "%s", with ? with : "(none)");
        CHECK_MSG(t, without && strstr(without, "fp8_weights=0"), "%s", without ? without : "(none)");
    }
    event_log_free(&log_full);
    event_log_free(&log_fp8);
    trainer_fixture_close(&f);
}

/* DreamBooth trains the UNet's own weights: fp8_base is refused as a config error. */
static void test_fp8_refused_for_full_training(test_state *t)
{
    trainer_fixture f;
    if (trainer_fixture_open(t, &f, "train-fp8-db", 1, 1) == 0) {
        event_log log = {0};
        char *error = NULL;
        sdt_train_result r = trainer_fixture_run_with(
            t, &f, "training_type = \"dreambooth\"\n",
            "[training]\nmax_train_steps = 1\n[precision_memory]\nfp8_base_unet = true\n", &log, NULL,
            &error);
        CHECK(t, r == SDT_TRAIN_CONFIG_ERROR || r == SDT_TRAIN_FAILED);
        CHECK_STR_CONTAINS(t, error, "fp8_base_unet stores the frozen weights in fp8");
        free(error);
        event_log_free(&log);
    }
    trainer_fixture_close(&f);
}

TEST_MAIN("trainer_fp8", TEST(test_fp8_lora_tracks_f32), TEST(test_fp8_refused_for_full_training))
