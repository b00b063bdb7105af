/* The run's controls and guards: stop, abort and pause, the rotation of saved files, the non-finite guards
 * with both nan_policy values, and a DreamBooth run (the UNet's own weights). */
#include "sdtune/safetensors.h"
#include "trainer_fixture.h"

/* stop: the step finishes, the model is saved, the run returns DONE; abort leaves without saving. */
static void test_stop_and_abort(test_state *t)
{
    trainer_fixture f;
    if (trainer_fixture_open(t, &f, "train-stop", 2, 1) == 0) {
        sdt_run_control control;
        sdt_run_control_init(&control);
        event_log log = {0};
        log.stop_at_step = 2;
        char *error = NULL;
        sdt_train_result r = trainer_fixture_run_with(t, &f, NULL, "[training]\nmax_train_steps = 50\n", &log,
                                                      &control, &error);
        CHECK_MSG(t, r == SDT_TRAIN_DONE, "%s", error ? error : "");
        CHECK(t, event_log_count(&log, SDT_EV_PROGRESS) == 2);
        CHECK(t, log.count && log.items[log.count - 1].type == SDT_EV_DONE);
        char path[256];
        snprintf(path, sizeof path, "%s/tiny.safetensors", f.out);
        CHECK(t, file_exists(path));
        free(error);
        error = NULL;
        event_log_free(&log);
        test_remove_tree(f.out);

        sdt_run_control_init(&control);
        atomic_store(&control.abort, 1);
        event_log alog = {0};
        r = trainer_fixture_run_with(t, &f, NULL, "[training]\nmax_train_steps = 50\n", &alog, &control,
                                     &error);
        CHECK(t, r == SDT_TRAIN_ABORTED);
        /* The abort is announced as done with exit code 3 (docs/protocol.md), not as an error. */
        CHECK(t, event_log_count(&alog, SDT_EV_PROGRESS) == 0 && event_log_count(&alog, SDT_EV_DONE) == 1);
        CHECK(t, event_log_count(&alog, SDT_EV_ERROR) == 0);
        CHECK(t, !file_exists(path));
        free(error);
        event_log_free(&alog);
    }
    trainer_fixture_close(&f);
}

/* save_every_n_steps 1 with save_last_n_steps 2 keeps the files of the last two steps before the current
 * one (kohya's get_remove_step_no), the state folders likewise with save_last_n_steps_state 1. */
static void test_rotation(test_state *t)
{
    trainer_fixture f;
    if (trainer_fixture_open(t, &f, "train-rotate", 2, 1) == 0) {
        event_log log = {0};
        char *error = NULL;
        sdt_train_result r =
            trainer_fixture_run_with(t, &f, NULL,
                                     "[training]\nmax_train_steps = 5\n"
                                     "[saving]\nsave_every_n_steps = 1\nsave_last_n_steps = 2\n"
                                     "save_state = true\nsave_last_n_steps_state = 1\n",
                                     &log, NULL, &error);
        CHECK_MSG(t, r == SDT_TRAIN_DONE, "%s", error ? error : "");
        /* steps 1..4 saved (not the last step: the final save covers it); after step 4, step 1 is removed */
        for (int s = 1; s <= 5; s++) {
            char path[256];
            snprintf(path, sizeof path, "%s/tiny-step%08d.safetensors", f.out, s);
            CHECK_MSG(t, file_exists(path) == (s >= 2 && s <= 4), "%s", path);
            /* states: keep 1 -> after step k, k - 2 is removed: steps 3 and 4 remain */
            snprintf(path, sizeof path, "%s/tiny-step%08d-state", f.out, s);
            CHECK_MSG(t, file_exists(path) == (s >= 3 && s <= 4), "%s", path);
        }
        size_t removed = 0;
        for (size_t i = 0; i < log.count; i++)
            removed += log.items[i].type == SDT_EV_CHECKPOINT && log.items[i].kind == SDT_CHECKPOINT_REMOVED;
        CHECK_MSG(t, removed == 3, "%zu removed", removed);
        free(error);
        event_log_free(&log);
    }
    trainer_fixture_close(&f);
}

/* A non-finite loss or gradient: "stop" ends the run with an error and no new save; "skip" drops the step
 * and goes on; too many in a row stop the run. */
static void test_nan_guard(test_state *t)
{
    trainer_fixture f;
    if (trainer_fixture_open(t, &f, "train-nan", 2, 1) == 0) {
        int has_policy = sdt_schema_find("nan_policy") >= 0;
        for (int grad = 0; grad < 2; grad++) {
            sdt_config *cfg = trainer_fixture_config(t, &f, NULL,
                                                     "[training]\nmax_train_steps = 6\n"
                                                     "[saving]\nsave_every_n_steps = 2\n");
            if (!cfg)
                break;
            sdt_train_options o = {0};
            event_log log = {0};
            o.cfg = cfg;
            o.emit = event_log_emit;
            o.emit_ctx = &log;
            o.inject_nan_step = 3;
            o.inject_nan_count = 1;
            o.inject_nan_grad = grad;
            char *error = NULL;
            sdt_train_result r = sdt_train_run(&o, &error);
            CHECK(t, r == SDT_TRAIN_FAILED);
            CHECK_STR_CONTAINS(t, error, grad ? "gradient norm is not finite" : "loss is not finite");
            CHECK_STR_CONTAINS(t, error, "step 3");
            CHECK(t, event_log_count(&log, SDT_EV_PROGRESS) == 2);
            CHECK(t, log.count && log.items[log.count - 1].type == SDT_EV_ERROR);
            char path[256];
            snprintf(path, sizeof path, "%s/tiny-step00000002.safetensors", f.out);
            CHECK(t, file_exists(path)); /* the last good save stays */
            snprintf(path, sizeof path, "%s/tiny.safetensors", f.out);
            CHECK(t, !file_exists(path)); /* and nothing was saved after the bad step */
            free(error);
            event_log_free(&log);
            test_remove_tree(f.out);

            if (has_policy) {
                sdt_config_set_text(cfg, sdt_schema_find("nan_policy"), "skip", NULL);
                event_log slog = {0};
                o.emit_ctx = &slog;
                error = NULL;
                r = sdt_train_run(&o, &error);
                CHECK_MSG(t, r == SDT_TRAIN_DONE, "%s", error ? error : "");
                CHECK(t, event_log_count(&slog, SDT_EV_PROGRESS) == 6); /* all 6 steps, one attempt skipped */
                CHECK(t, event_log_has_text(&slog, "step skipped"));
                free(error);
                event_log_free(&slog);
                test_remove_tree(f.out);

                /* 10 bad steps in a row stop the run */
                o.inject_nan_count = 20;
                event_log many = {0};
                o.emit_ctx = &many;
                error = NULL;
                r = sdt_train_run(&o, &error);
                CHECK(t, r == SDT_TRAIN_FAILED);
                CHECK_STR_CONTAINS(t, error, "10 steps in a row");
                free(error);
                event_log_free(&many);
                test_remove_tree(f.out);
            }
            sdt_config_free(cfg);
        }
    }
    trainer_fixture_close(&f);
}

/* DreamBooth: the UNet's own weights train; the result is a whole single-file checkpoint. */
static void test_dreambooth(test_state *t)
{
    trainer_fixture f;
    if (trainer_fixture_open(t, &f, "train-db", 2, 1) == 0) {
        event_log log = {0};
        char *error = NULL;
        sdt_train_result r =
            trainer_fixture_run_with(t, &f, "training_type = \"dreambooth\"\n",
                                     "[training]\nmax_train_steps = 2\n[optimizer]\nlearning_rate = 0.0001\n"
                                     "[saving]\nsave_precision = \"fp32\"\n",
                                     &log, NULL, &error);
        CHECK_MSG(t, r == SDT_TRAIN_DONE, "%s", error ? error : "");
        double losses[4];
        CHECK(t, event_log_losses(&log, losses, 4) == 2 && isfinite(losses[0]) && isfinite(losses[1]));
        char path[256];
        snprintf(path, sizeof path, "%s/tiny.safetensors", f.out);
        sdt_safetensors *st = NULL, *base = NULL;
        if (sdt_safetensors_open(path, &st, &error) == 0 &&
            sdt_safetensors_open(f.demo.model_path, &base, &error) == 0) {
            CHECK(t, sdt_safetensors_count(st) == sdt_safetensors_count(base));
            /* some UNet weight moved, the VAE did not */
            const char *unet_key = "model.diffusion_model.out.2.weight";
            const char *vae_key = "first_stage_model.decoder.conv_out.weight";
            const sdt_st_tensor *a = sdt_safetensors_find(st, unet_key),
                                *b = sdt_safetensors_find(base, unet_key);
            CHECK(t, a && b && a->nbytes == b->nbytes && memcmp(a->data, b->data, a->nbytes) != 0);
            a = sdt_safetensors_find(st, vae_key);
            b = sdt_safetensors_find(base, vae_key);
            CHECK(t, a && b && a->nbytes == b->nbytes && memcmp(a->data, b->data, a->nbytes) == 0);
        } else {
            CHECK_MSG(t, 0, "%s", error ? error : "");
        }
        if (st)
            sdt_safetensors_close(st);
        if (base)
            sdt_safetensors_close(base);
        st = base = NULL;
        free(error);
        error = NULL;
        event_log_free(&log);

        /* with the text encoder for the first step only */
        test_remove_tree(f.out);
        r = trainer_fixture_run_with(
            t, &f,
            "training_type = \"dreambooth\"\ntrain_text_encoder = true\nstop_text_encoder_training = 1\n",
            "[training]\nmax_train_steps = 2\n[optimizer]\nlearning_rate = 0.0001\n"
            "[saving]\nsave_precision = \"fp32\"\n",
            &log, NULL, &error);
        CHECK_MSG(t, r == SDT_TRAIN_DONE, "%s", error ? error : "");
        if (sdt_safetensors_open(path, &st, &error) == 0 &&
            sdt_safetensors_open(f.demo.model_path, &base, &error) == 0) {
            const char *te_key = "cond_stage_model.transformer.text_model.final_layer_norm.weight";
            const sdt_st_tensor *a = sdt_safetensors_find(st, te_key),
                                *b = sdt_safetensors_find(base, te_key);
            CHECK_MSG(t, a && b && a->nbytes == b->nbytes && memcmp(a->data, b->data, a->nbytes) != 0,
                      "%s did not train", te_key);
        } else {
            CHECK_MSG(t, 0, "%s", error ? error : "");
        }
        if (st)
            sdt_safetensors_close(st);
        if (base)
            sdt_safetensors_close(base);
        free(error);
        event_log_free(&log);
    }
    trainer_fixture_close(&f);
}

/* pause: the loop waits (phase paused) until resumed, then goes on. */
static void test_pause(test_state *t)
{
    trainer_fixture f;
    if (trainer_fixture_open(t, &f, "train-pause", 2, 1) == 0) {
        sdt_run_control control;
        sdt_run_control_init(&control);
        atomic_store(&control.paused, 1);
        event_log log = {0};
        log.resume_when_paused = 1;
        char *error = NULL;
        sdt_train_result r = trainer_fixture_run_with(t, &f, NULL, "[training]\nmax_train_steps = 2\n", &log,
                                                      &control, &error);
        CHECK_MSG(t, r == SDT_TRAIN_DONE, "%s", error ? error : "");
        CHECK(t, event_log_count(&log, SDT_EV_PROGRESS) == 2);
        size_t paused_at = 0, progress_at = 0;
        for (size_t i = 0; i < log.count; i++) {
            if (log.items[i].type == SDT_EV_PHASE && log.items[i].phase == SDT_PHASE_PAUSED && !paused_at)
                paused_at = i;
            if (log.items[i].type == SDT_EV_PROGRESS && !progress_at)
                progress_at = i;
        }
        CHECK(t, paused_at > 0 && paused_at < progress_at);
        CHECK(t, log.items[paused_at + 1].type == SDT_EV_PHASE &&
                     log.items[paused_at + 1].phase == SDT_PHASE_TRAINING);
        free(error);
        event_log_free(&log);
    }
    trainer_fixture_close(&f);
}

TEST_MAIN("trainer_control", TEST(test_stop_and_abort), TEST(test_pause), TEST(test_rotation),
          TEST(test_nan_guard), TEST(test_dreambooth))
