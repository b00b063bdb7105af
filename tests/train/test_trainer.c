/* The training loop end to end on the sd15-tiny model: a LoRA run whose loss falls, the events and their
 * order, the files a run leaves where kohya leaves them, the stop command, rotation of saved files, the
 * non-finite guards with both policies, a DreamBooth run. */
#include "sdtune/safetensors.h"
#include "trainer_fixture.h"

static double mean(const double *v, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += v[i];
    return n ? s / (double)n : NAN;
}

static void test_lora_loss_falls(test_state *t)
{
    trainer_fixture f;
    if (trainer_fixture_open(t, &f, "train-falls", 2, 1) == 0) {
        sdt_config *cfg = trainer_fixture_config(t, &f, NULL,
                                                 "[training]\nmax_train_steps = 60\nseed = 3\n"
                                                 "[optimizer]\nlearning_rate = 0.01\n"
                                                 "[network]\nnetwork_dim = 4\nnetwork_alpha = 4.0\n"
                                                 "[saving]\nsave_precision = \"fp32\"\n");
        event_log log = {0};
        char *error = NULL;
        sdt_train_result r = cfg ? trainer_fixture_run(cfg, &log, NULL, &error) : SDT_TRAIN_FAILED;
        CHECK_MSG(t, r == SDT_TRAIN_DONE, "%s", error ? error : "");
        double losses[64];
        size_t n = event_log_losses(&log, losses, 64);
        CHECK(t, n == 60);
        if (n == 60) {
            double first = mean(losses, 6), last = mean(losses + 54, 6);
            printf("loss: first 10%% %.4f, last 10%% %.4f\n", first, last);
            CHECK_MSG(t, last < 0.8 * first, "first %g last %g", first, last);
        }
        free(error);
        event_log_free(&log);
        sdt_config_free(cfg);
    }
    trainer_fixture_close(&f);
}

/* The per-step losses of a 6-step LoRA run with extra settings; the count, or 0 with a failed check. */
static size_t run_losses(test_state *t, trainer_fixture *f, const char *extra, double *losses, size_t max)
{
    event_log log = {0};
    char *error = NULL;
    sdt_train_result r = trainer_fixture_run_with(t, f, "", extra, &log, NULL, &error);
    CHECK_MSG(t, r == SDT_TRAIN_DONE, "%s", error ? error : "");
    size_t n = r == SDT_TRAIN_DONE ? event_log_losses(&log, losses, max) : 0;
    free(error);
    event_log_free(&log);
    return n;
}

/* Every CPU op has a fixed summation order (OpenMP splits only independent outputs), so two runs of one
 * config give the same losses bit for bit, and `deterministic = true` (which restricts the GPU's
 * algorithms) changes nothing on the CPU. */
static void test_runs_are_deterministic(test_state *t)
{
    trainer_fixture f;
    if (trainer_fixture_open(t, &f, "train-determinism", 2, 1) == 0) {
        const char *base = "[training]\nmax_train_steps = 6\nseed = 5\n"
                           "[optimizer]\nlearning_rate = 0.01\nmax_grad_norm = 0.5\n";
        char *det = sdt_format("deterministic = true\n%s", base);
        double a[8], b[8], c[8];
        size_t na = run_losses(t, &f, base, a, 8), nb = run_losses(t, &f, base, b, 8);
        size_t nc = det ? run_losses(t, &f, det, c, 8) : 0;
        CHECK(t, na == 6 && nb == 6 && nc == 6);
        if (na == 6 && nb == 6 && nc == 6) {
            CHECK_MSG(t, memcmp(a, b, sizeof a[0] * 6) == 0, "two runs differ: step 0 %.17g vs %.17g", a[0],
                      b[0]);
            CHECK_MSG(t, memcmp(a, c, sizeof a[0] * 6) == 0, "deterministic = true changed the losses");
        }
        free(det);
    }
    trainer_fixture_close(&f);
}

/* Events come in the documented order and the files are where kohya puts them. */
static void test_events_and_files(test_state *t)
{
    trainer_fixture f;
    if (trainer_fixture_open(t, &f, "train-files", 2, 2) == 0) {
        event_log log = {0};
        char *error = NULL;
        /* 2 images x 2 repeats, batch 1: 4 batches per epoch; 2 epochs = 8 steps */
        sdt_train_result r =
            trainer_fixture_run_with(t, &f, NULL,
                                     "[training]\nmax_train_epochs = 2\n"
                                     "[saving]\nsave_every_n_epochs = 1\nsave_state = true\n",
                                     &log, NULL, &error);
        CHECK_MSG(t, r == SDT_TRAIN_DONE, "%s", error ? error : "");
        CHECK(t,
              log.count > 3 && log.items[0].type == SDT_EV_PHASE && log.items[0].phase == SDT_PHASE_LOADING);
        CHECK(t, log.count > 0 && log.items[log.count - 1].type == SDT_EV_DONE);
        CHECK(t, log.count > 1 && log.items[log.count - 2].type == SDT_EV_PHASE &&
                     log.items[log.count - 2].phase == SDT_PHASE_DONE);
        /* loading, caching and training in this order; progress only while training */
        int seen_caching = 0, seen_training = 0, order_ok = 1;
        int64_t step = 0;
        for (size_t i = 0; i < log.count; i++) {
            const recorded_event *e = &log.items[i];
            if (e->type == SDT_EV_PHASE && e->phase == SDT_PHASE_CACHING)
                seen_caching = 1;
            if (e->type == SDT_EV_PHASE && e->phase == SDT_PHASE_TRAINING) {
                order_ok &= seen_caching;
                seen_training = 1;
            }
            if (e->type == SDT_EV_PROGRESS) {
                order_ok &= seen_training && e->step == step + 1;
                step = e->step;
            }
        }
        CHECK(t, order_ok && step == 8);
        CHECK(t, event_log_count(&log, SDT_EV_PROGRESS) == 8);
        CHECK(t, event_log_count(&log, SDT_EV_MEMORY) >= 1);
        /* One device event, while loading (before the caches and the first memory event), saying what
         * the run computes on: the CPU in fp32 without fp8 weights. */
        CHECK(t, event_log_count(&log, SDT_EV_DEVICE) == 1);
        const char *device = event_log_text(&log, SDT_EV_DEVICE);
        CHECK_MSG(t, device && strcmp(device, "backend=cpu precision=fp32 fp8_weights=0") == 0, "%s",
                  device ? device : "(none)");
        size_t device_at = log.count, caching_at = log.count, memory_at = log.count;
        for (size_t i = log.count; i-- > 0;) {
            const recorded_event *e = &log.items[i];
            device_at = e->type == SDT_EV_DEVICE ? i : device_at;
            caching_at = e->type == SDT_EV_PHASE && e->phase == SDT_PHASE_CACHING ? i : caching_at;
            memory_at = e->type == SDT_EV_MEMORY ? i : memory_at;
        }
        CHECK_MSG(t, device_at < caching_at && device_at < memory_at, "device %zu, caching %zu, memory %zu",
                  device_at, caching_at, memory_at);
        /* On the CPU the memory events are the process's RAM. */
        const char *memory = event_log_text(&log, SDT_EV_MEMORY);
        CHECK_MSG(t, memory && strncmp(memory, "kind=ram used=", 14) == 0, "%s", memory ? memory : "(none)");
        CHECK(t, event_log_has_text(&log, "total optimization steps: 8"));
        CHECK(t, event_log_has_text(&log, "num train images * repeats: 4"));
        CHECK(t, event_log_has_text(&log, "num batches per epoch: 4"));
        /* epoch 1 saved (not the last epoch), then the final model and state */
        const char *const expected[] = {"tiny.config.toml",
                                        "tiny-000001.safetensors",
                                        "tiny-000001-state",
                                        "tiny-000001-state/train_state.json",
                                        "tiny-000001-state/weights.safetensors",
                                        "tiny-000001-state/optimizer.safetensors",
                                        "tiny.safetensors",
                                        "tiny-state"};
        for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
            char path[256];
            snprintf(path, sizeof path, "%s/%s", f.out, expected[i]);
            CHECK_MSG(t, file_exists(path), "%s is missing", path);
        }
        char path[256];
        snprintf(path, sizeof path, "%s/tiny-000002.safetensors", f.out);
        CHECK(t, !file_exists(path));
        /* no temporary state folder is left */
        CHECK(t, test_count_files_named(f.out, ".state-tmp") == 0);
        /* checkpoint events: 2 models, 2 states */
        size_t models = 0, states = 0;
        for (size_t i = 0; i < log.count; i++)
            if (log.items[i].type == SDT_EV_CHECKPOINT) {
                models += log.items[i].kind == SDT_CHECKPOINT_MODEL;
                states += log.items[i].kind == SDT_CHECKPOINT_STATE;
            }
        CHECK(t, models == 2 && states == 2);
        /* the LoRA file carries kohya's metadata */
        snprintf(path, sizeof path, "%s/tiny.safetensors", f.out);
        sdt_safetensors *st = NULL;
        if (sdt_safetensors_open(path, &st, &error) == 0) {
            const char *steps = sdt_safetensors_metadata(st, "ss_steps");
            CHECK(t, steps && strcmp(steps, "8") == 0);
            CHECK(t, sdt_safetensors_metadata(st, "sshs_model_hash") != NULL);
            const sdt_st_tensor *alpha = NULL;
            for (size_t i = 0; i < sdt_safetensors_count(st) && !alpha; i++)
                if (strstr(sdt_safetensors_tensor(st, i)->name, ".alpha"))
                    alpha = sdt_safetensors_tensor(st, i);
            CHECK(t, alpha && alpha->dtype == SDT_F16); /* save_precision's default, fp16 */
            sdt_safetensors_close(st);
        } else {
            CHECK_MSG(t, 0, "%s", error);
        }
        free(error);
        event_log_free(&log);
    }
    trainer_fixture_close(&f);
}

/* Formats other than safetensors are refused with a config error before anything is loaded. */
static void test_refuses_pickle_formats(test_state *t)
{
    trainer_fixture f;
    if (trainer_fixture_open(t, &f, "train-ckpt", 1, 1) == 0) {
        event_log log = {0};
        char *error = NULL;
        sdt_train_result r =
            trainer_fixture_run_with(t, &f, NULL, "[saving]\nsave_model_as = \"ckpt\"\n", &log, NULL, &error);
        CHECK(t, r == SDT_TRAIN_CONFIG_ERROR);
        CHECK_STR_CONTAINS(t, error, "save_model_as");
        CHECK(t, event_log_count(&log, SDT_EV_CONFIG_ERROR) == 1);
        CHECK(t, !file_exists(f.out));
        free(error);
        event_log_free(&log);
    }
    trainer_fixture_close(&f);
}

TEST_MAIN("trainer", TEST(test_lora_loss_falls), TEST(test_runs_are_deterministic),
          TEST(test_events_and_files), TEST(test_refuses_pickle_formats))
