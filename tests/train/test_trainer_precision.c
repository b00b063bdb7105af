/* Mixed precision end to end on the sd15-tiny model (train/precision.h, docs/training.md "Mixed
 * precision"): bf16 and fp16 LoRA runs track the fp32 run step by step and end with close LoRA weights;
 * fp16 runs with GradScaler's loss scale; a scale so large that the gradients overflow skips the step,
 * halves the scale, leaves the weights as they were and is saved in the state; the metadata names the
 * precision that ran. */
#include "precision.h"
#include "sdtune/dtype.h"
#include "sdtune/safetensors.h"
#include "trainer_fixture.h"

enum { STEPS = 12 };

/* An optimizer and a learning rate large enough that the LoRA weights move in a few steps. */
typedef struct optimizer_choice {
    const char *name, *learning_rate;
} optimizer_choice;

static const optimizer_choice ADAMW = {"AdamW", "0.005"}, NESTEROV = {"SGDNesterov", "0.5"};

/* The settings shared by the runs (after the fixture's [model] lines): a few steps of `opt` in
 * `precision`, then extra [network] and [saving] lines. */
static char *run_settings(optimizer_choice opt, const char *precision, const char *network,
                          const char *saving)
{
    return sdt_format("[training]\nmax_train_steps = %d\nseed = 5\n"
                      "[optimizer]\noptimizer_type = \"%s\"\nlearning_rate = %s\n"
                      "[precision_memory]\nmixed_precision = \"%s\"\n"
                      "[network]\nnetwork_dim = 4\nnetwork_alpha = 4.0\n%s"
                      "[saving]\nsave_precision = \"fp32\"\n%s",
                      STEPS, opt.name, opt.learning_rate, precision, network ? network : "",
                      saving ? saving : "");
}

/* What a run left: its per-step losses, its LoRA's up weights (all F32, in file order) and its
 * ss_mixed_precision. */
typedef struct run_result {
    sdt_train_result status;
    double losses[STEPS];
    size_t steps;
    float *up; /* [up_count] every lora_up weight of the saved file, concatenated */
    size_t up_count;
    char precision[16];
    event_log log;
} run_result;

static void run_result_free(run_result *r)
{
    free(r->up);
    event_log_free(&r->log);
    memset(r, 0, sizeof *r);
}

/* Reads every tensor of the LoRA file at path whose name contains `part` into *out (F32). */
static int read_lora(test_state *t, const char *path, const char *part, float **out, size_t *count,
                     char *precision, size_t precision_size)
{
    sdt_safetensors *st = NULL;
    char *error = NULL;
    if (sdt_safetensors_open(path, &st, &error) != 0) {
        CHECK_MSG(t, 0, "%s", error);
        free(error);
        return -1;
    }
    const char *md = sdt_safetensors_metadata(st, "ss_mixed_precision");
    snprintf(precision, precision_size, "%s", md ? md : "");
    size_t total = 0;
    for (size_t i = 0; i < sdt_safetensors_count(st); i++)
        if (strstr(sdt_safetensors_tensor(st, i)->name, part))
            total += sdt_safetensors_tensor(st, i)->count;
    float *values = malloc((total ? total : 1) * sizeof *values);
    size_t at = 0;
    int rc = values ? 0 : -1;
    for (size_t i = 0; i < sdt_safetensors_count(st) && rc == 0; i++) {
        const sdt_st_tensor *x = sdt_safetensors_tensor(st, i);
        if (strstr(x->name, part)) {
            rc = sdt_convert(values + at, SDT_F32, x->data, x->dtype, x->count);
            at += x->count;
        }
    }
    sdt_safetensors_close(st);
    CHECK_MSG(t, rc == 0 && total > 0, "%s: no readable %s tensors", path, part);
    if (rc != 0 || total == 0) {
        free(values);
        return -1;
    }
    *out = values;
    *count = total;
    return 0;
}

/* Runs the fixture in `precision` ("no", "bf16", "fp16"). The VAE stays fp32 (no_half_vae): the latent
 * cache keys its entries, and the posterior noise it draws for them, by the VAE's weights, so a half VAE
 * would give other latents altogether rather than rounded ones. */
static void run_precision(test_state *t, trainer_fixture *f, optimizer_choice opt, const char *precision,
                          run_result *r)
{
    memset(r, 0, sizeof *r);
    char *settings = run_settings(opt, precision, NULL, NULL);
    sdt_config *cfg = settings ? trainer_fixture_config(t, f, "no_half_vae = true\n", settings) : NULL;
    free(settings);
    r->status = SDT_TRAIN_FAILED;
    if (!cfg)
        return;
    sdt_train_options o = {0};
    o.cfg = cfg;
    o.emit = event_log_emit;
    o.emit_ctx = &r->log;
    char *error = NULL;
    r->status = sdt_train_run(&o, &error);
    CHECK_MSG(t, r->status == SDT_TRAIN_DONE, "%s: %s", precision, error ? error : "");
    free(error);
    sdt_config_free(cfg);
    r->steps = event_log_losses(&r->log, r->losses, STEPS);
    /* The device event names the precision the run computed in ("no" is fp32 on the wire). */
    char want[64];
    snprintf(want, sizeof want, "precision=%s", strcmp(precision, "no") == 0 ? "fp32" : precision);
    const char *device = event_log_text(&r->log, SDT_EV_DEVICE);
    CHECK_MSG(t, device && strstr(device, want), "%s: %s", want, device ? device : "(no device event)");
    char path[256];
    snprintf(path, sizeof path, "%s/tiny.safetensors", f->out);
    if (r->status == SDT_TRAIN_DONE)
        read_lora(t, path, "lora_up", &r->up, &r->up_count, r->precision, sizeof r->precision);
}

/* The largest relative difference of the per-step losses. */
static double loss_deviation(const run_result *a, const run_result *ref)
{
    double worst = 0;
    for (size_t i = 0; i < a->steps && i < ref->steps; i++) {
        double d = fabs(a->losses[i] - ref->losses[i]) / fabs(ref->losses[i]);
        worst = d > worst ? d : worst;
    }
    return worst;
}

/* ||a - ref|| / ||ref|| over the LoRA up weights (zero at the start, so ||ref|| is the fp32 run's
 * update). */
static double weight_deviation(const run_result *a, const run_result *ref)
{
    if (!a->up || !ref->up || a->up_count != ref->up_count)
        return INFINITY;
    double diff = 0, norm = 0;
    for (size_t i = 0; i < ref->up_count; i++) {
        double d = (double)a->up[i] - (double)ref->up[i];
        diff += d * d;
        norm += (double)ref->up[i] * (double)ref->up[i];
    }
    return norm > 0 ? sqrt(diff / norm) : INFINITY;
}

/* How far a half-precision run may be from the fp32 run: the largest relative difference of a step's
 * loss, and ||up - up_fp32|| / ||up_fp32|| of the saved LoRA up weights (docs/training.md, "Mixed
 * precision", has the figures seen).
 *
 * bf16 keeps 8 significant bits, so every rounding of a weight or an activation is off by up to 2^-9
 * (0.2%) relative; the UNet adds such errors up over its layers, but they are independent and mostly
 * average out in a mean-squared loss: the losses were seen within 0.13% of fp32's. fp16 keeps 11 bits, 8x
 * fewer errors: 0.015%. With SGD (Nesterov) the weights move with the gradients, linearly, so their
 * difference measures the gradients' error: 1% (bf16) and 0.14% (fp16) seen. AdamW's first steps move
 * every weight by about the learning rate times the sign of its gradient, so a weight whose gradient is
 * near zero can go either way on a rounding: 9% and 3% seen. The bounds leave room of 3-4x above what was
 * seen and stay far below what a broken path gives (a gradient left scaled by 65536 or scaled twice, a
 * lost LoRA gradient: 100% and more). */
typedef struct tolerances {
    double bf16_loss, bf16_weights, fp16_loss, fp16_weights;
} tolerances;

static void check_tracks_fp32(test_state *t, optimizer_choice opt, tolerances tol)
{
    trainer_fixture f;
    if (trainer_fixture_open(t, &f, "train-precision", 2, 1) == 0) {
        run_result fp32, bf16, fp16;
        run_precision(t, &f, opt, "no", &fp32);
        run_precision(t, &f, opt, "bf16", &bf16);
        run_precision(t, &f, opt, "fp16", &fp16);
        CHECK(t, fp32.steps == STEPS && bf16.steps == STEPS && fp16.steps == STEPS);
        double bl = loss_deviation(&bf16, &fp32), bw = weight_deviation(&bf16, &fp32);
        double hl = loss_deviation(&fp16, &fp32), hw = weight_deviation(&fp16, &fp32);
        printf("%s, bf16 vs fp32: losses within %.3g (relative), up weights within %.3g\n", opt.name, bl, bw);
        printf("%s, fp16 vs fp32: losses within %.3g (relative), up weights within %.3g\n", opt.name, hl, hw);
        CHECK_MSG(t, bl <= tol.bf16_loss, "bf16 losses off by %g", bl);
        CHECK_MSG(t, bw <= tol.bf16_weights, "bf16 weights off by %g", bw);
        CHECK_MSG(t, hl <= tol.fp16_loss, "fp16 losses off by %g", hl);
        CHECK_MSG(t, hw <= tol.fp16_weights, "fp16 weights off by %g", hw);
        /* the runs really differ: a half-precision path that silently ran in fp32 would match exactly */
        CHECK_MSG(t, bl > 0 && hl > 0, "bf16 %g and fp16 %g losses equal fp32's", bl, hl);
        /* the metadata says what ran */
        CHECK(t, strcmp(fp32.precision, "no") == 0);
        CHECK(t, strcmp(bf16.precision, "bf16") == 0 && strcmp(fp16.precision, "fp16") == 0);
        CHECK(t, event_log_has_text(&bf16.log, "mixed precision bf16"));
        CHECK(t, !event_log_has_text(&bf16.log, "loss scale"));
        /* fp16 scales the loss by GradScaler's 65536 and the tiny model never overflows at it */
        CHECK(t, event_log_has_text(&fp16.log, "initial loss scale 65536"));
        CHECK(t, !event_log_has_text(&fp16.log, "overflowed"));
        /* the memory plan counts the frozen weights and the activations in 2 bytes */
        CHECK(t, event_log_has_text(&bf16.log, "BF16 weights, BF16 activations"));
        CHECK(t, event_log_has_text(&fp16.log, "F16 weights, F16 activations"));
        CHECK(t, event_log_has_text(&fp32.log, "F32 weights, F32 activations"));
        run_result_free(&fp32);
        run_result_free(&bf16);
        run_result_free(&fp16);
    }
    trainer_fixture_close(&f);
}

static void test_half_precision_tracks_fp32_sgd(test_state *t)
{
#ifdef SDTUNE_SANITIZED_BUILD
    /* three more runs take a minute under the sanitizers; the AdamW comparison runs the same code paths
     * there, and the release build runs this one */
    (void)t;
    printf("skipped under the sanitizers: SGDNesterov precision comparison\n");
    return;
#endif
    check_tracks_fp32(t, NESTEROV, (tolerances){0.005, 0.03, 0.0005, 0.005});
}

static void test_half_precision_tracks_fp32_adamw(test_state *t)
{
    check_tracks_fp32(t, ADAMW, (tolerances){0.005, 0.30, 0.0005, 0.10});
}

/* Stops the run at the first skipped overflow, so the saved LoRA is what that step left. */
static void stop_on_overflow(void *ctx, const sdt_event *ev)
{
    event_log *log = ctx;
    event_log_emit(ctx, ev);
    if (ev->type == SDT_EV_LOG && strstr(ev->log.text, "overflowed") && log->control)
        atomic_store(&log->control->stop, 1);
}

/* An fp16 run from the LoRA at start_path with extra [saving] lines, stopped at its first overflow;
 * events in *log. */
static sdt_train_result run_to_overflow(test_state *t, trainer_fixture *f, const char *start_path,
                                        const char *saving, double loss_scale_init, event_log *log,
                                        sdt_run_control *control)
{
    char *network = sdt_format("network_weights = \"%s\"\n", start_path);
    char *settings = network ? run_settings(ADAMW, "fp16", network, saving) : NULL;
    sdt_config *cfg = settings ? trainer_fixture_config(t, f, "no_half_vae = true\n", settings) : NULL;
    free(network);
    free(settings);
    memset(control, 0, sizeof *control);
    log->control = control;
    sdt_train_options o = {0};
    o.cfg = cfg;
    o.emit = stop_on_overflow;
    o.emit_ctx = log;
    o.control = control;
    o.loss_scale_init = loss_scale_init;
    char *error = NULL;
    sdt_train_result r = cfg ? sdt_train_run(&o, &error) : SDT_TRAIN_FAILED;
    CHECK_MSG(t, r == SDT_TRAIN_DONE, "%s", error ? error : "");
    free(error);
    sdt_config_free(cfg);
    return r;
}

/* A loss scale of 2^40 makes dL/dpred overflow fp16 for real: the step is skipped, the scale halves, the
 * weights are those the run started from, and the state keeps the halved scale for a resumed run. */
static void test_fp16_overflow_skips_and_halves(test_state *t)
{
    trainer_fixture f;
    if (trainer_fixture_open(t, &f, "train-overflow", 2, 1) == 0) {
        /* weights to start from, with non-zero up weights: a short fp32 run's LoRA */
        run_result start;
        run_precision(t, &f, ADAMW, "no", &start);
        char start_path[256], path[256], state_dir[256];
        snprintf(start_path, sizeof start_path, "%s/start.safetensors", f.root);
        snprintf(path, sizeof path, "%s/tiny.safetensors", f.out);
        snprintf(state_dir, sizeof state_dir, "%s/overflow-state", f.root);
        CHECK(t, rename(path, start_path) == 0);

        event_log log = {0};
        sdt_run_control control;
        run_to_overflow(t, &f, start_path, "save_state = true\n", 1099511627776.0 /* 2^40 */, &log, &control);
        CHECK(t, event_log_has_text(&log, "initial loss scale 1099511627776"));
        CHECK(t, event_log_has_text(&log, "overflowed at loss scale 1099511627776; step skipped, the loss "
                                          "scale is now 549755813888"));
        CHECK(t, event_log_count(&log, SDT_EV_PROGRESS) == 0); /* no step was taken */
        event_log_free(&log);

        /* the skipped step left the weights as loaded: the saved LoRA equals the start, bit for bit */
        float *before = NULL, *after = NULL;
        size_t n_before = 0, n_after = 0;
        char md[16];
        if (read_lora(t, start_path, "lora_", &before, &n_before, md, sizeof md) == 0 &&
            read_lora(t, path, "lora_", &after, &n_after, md, sizeof md) == 0) {
            CHECK(t, n_before == n_after);
            CHECK(t, n_before == n_after && memcmp(before, after, n_before * sizeof *before) == 0);
            double norm = 0;
            for (size_t i = 0; i < n_before; i++)
                norm += fabs((double)before[i]);
            CHECK(t, norm > 0);
        }
        free(before);
        free(after);

        /* the state keeps the halved scale */
        snprintf(path, sizeof path, "%s/tiny-state/train_state.json", f.out);
        size_t len = 0;
        char *state = test_read_file(path, &len);
        CHECK_MSG(t, state != NULL, "%s is missing", path);
        if (state) {
            CHECK_STR_CONTAINS(t, state, "\"loss_scale\": 549755813888");
            CHECK_STR_CONTAINS(t, state, "\"loss_scale_good_steps\": 0");
            CHECK_STR_CONTAINS(t, state, "\"overflow_steps\": 1");
        }
        free(state);
        snprintf(path, sizeof path, "%s/tiny-state", f.out);
        CHECK(t, rename(path, state_dir) == 0);

        /* a run resumed from it starts at the saved scale, not at the initial one given (which it
         * ignores), overflows again and halves once more */
        char *resume = sdt_format("save_state = true\nresume = \"%s\"\n", state_dir);
        run_to_overflow(t, &f, start_path, resume, 4.0, &log, &control);
        free(resume);
        CHECK(t, event_log_has_text(&log, "resume: fp16 loss scale 549755813888"));
        CHECK(t, event_log_has_text(&log, "overflowed at loss scale 549755813888; step skipped, the loss "
                                          "scale is now 274877906944"));
        event_log_free(&log);
        run_result_free(&start);
    }
    trainer_fixture_close(&f);
}

/* The scaler by itself: GradScaler's schedule. */
static void test_loss_scaler_schedule(test_state *t)
{
    sdt_loss_scaler s;
    sdt_loss_scaler_init(&s, SDT_BF16);
    CHECK(t, !s.enabled && s.scale == 1.0);
    CHECK(t, sdt_loss_scaler_update(&s, 0) == 0 && s.scale == 1.0);
    sdt_loss_scaler_init(&s, SDT_F16);
    CHECK(t, s.enabled && s.scale == 65536.0);
    CHECK(t, sdt_loss_scaler_update(&s, 0) == 1 && s.scale == 32768.0);
    int changed = 0;
    for (int i = 0; i < 1999; i++)
        changed += sdt_loss_scaler_update(&s, 1);
    CHECK(t, changed == 0 && s.scale == 32768.0 && s.good_steps == 1999);
    CHECK(t, sdt_loss_scaler_update(&s, 1) == 1 && s.scale == 65536.0 && s.good_steps == 0);
    /* an overflow restarts the count of good steps */
    for (int i = 0; i < 1500; i++)
        sdt_loss_scaler_update(&s, 1);
    sdt_loss_scaler_update(&s, 0);
    for (int i = 0; i < 1999; i++)
        sdt_loss_scaler_update(&s, 1);
    CHECK(t, s.scale == 32768.0);
}

/* mixed_precision to a compute dtype: auto is bf16 on CUDA for every training type (full training keeps
 * F32 masters and runs on bf16 copies), fp32 on the CPU; an explicit choice holds on either device. */
static void test_compute_dtype(test_state *t)
{
    static const struct {
        const char *training, *precision;
        sdt_device_kind device;
        sdt_dtype want;
    } cases[] = {
        {"lora", "auto", SDT_DEVICE_CUDA, SDT_BF16},     {"dreambooth", "auto", SDT_DEVICE_CUDA, SDT_BF16},
        {"finetune", "auto", SDT_DEVICE_CUDA, SDT_BF16}, {"dreambooth", "auto", SDT_DEVICE_CPU, SDT_F32},
        {"dreambooth", "fp16", SDT_DEVICE_CPU, SDT_F16}, {"finetune", "bf16", SDT_DEVICE_CPU, SDT_BF16},
        {"dreambooth", "no", SDT_DEVICE_CUDA, SDT_F32},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *text =
            sdt_format("[model]\ntraining_type = \"%s\"\n[precision_memory]\nmixed_precision = \"%s\"\n",
                       cases[i].training, cases[i].precision);
        sdt_diag_list diags;
        sdt_diag_list_init(&diags);
        sdt_config *cfg = text ? sdt_config_load_text(text, strlen(text), "test.toml", &diags) : NULL;
        CHECK(t, cfg && sdt_diag_count(&diags, SDT_SEV_ERROR) == 0);
        if (cfg)
            CHECK_MSG(t, sdt_train_compute_dtype(cfg, cases[i].device) == cases[i].want, "%s, %s: %s",
                      cases[i].training, cases[i].precision,
                      sdt_dtype_name(sdt_train_compute_dtype(cfg, cases[i].device)));
        sdt_config_free(cfg);
        sdt_diag_list_free(&diags);
        free(text);
    }
}

TEST_MAIN("trainer_precision", TEST(test_loss_scaler_schedule), TEST(test_compute_dtype),
          TEST(test_half_precision_tracks_fp32_sgd), TEST(test_half_precision_tracks_fp32_adamw),
          TEST(test_fp16_overflow_skips_and_halves))
