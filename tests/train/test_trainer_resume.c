/* Exact resume on the CPU backend: N steps, a saved state, a resumed run of M more steps give the same
 * per-step losses and final weights, bit for bit, as N + M steps in one run (with and without the LoRA
 * dropouts). Also: a state from other settings is refused. */
#include "sdtune/safetensors.h"
#include "trainer_fixture.h"

#define STEPS 6
#define SPLIT 3

/* Every tensor of a and b has the same bytes. */
static int same_tensors(test_state *t, const char *a, const char *b)
{
    sdt_safetensors *x = NULL, *y = NULL;
    char *error = NULL;
    int same = sdt_safetensors_open(a, &x, &error) == 0 && sdt_safetensors_open(b, &y, &error) == 0;
    CHECK_MSG(t, same, "%s", error ? error : "");
    free(error);
    if (same) {
        same = sdt_safetensors_count(x) == sdt_safetensors_count(y) && sdt_safetensors_count(x) > 0;
        for (size_t i = 0; same && i < sdt_safetensors_count(x); i++) {
            const sdt_st_tensor *tx = sdt_safetensors_tensor(x, i);
            const sdt_st_tensor *ty = sdt_safetensors_find(y, tx->name);
            same = ty && tx->nbytes == ty->nbytes && memcmp(tx->data, ty->data, tx->nbytes) == 0;
            if (!same)
                fprintf(stderr, "tensor %s differs\n", tx->name);
        }
    }
    if (x)
        sdt_safetensors_close(x);
    if (y)
        sdt_safetensors_close(y);
    return same;
}

static void resume_case(test_state *t, const char *tag, const char *network)
{
    trainer_fixture f;
    if (trainer_fixture_open(t, &f, tag, 2, 1) != 0) {
        trainer_fixture_close(&f);
        return;
    }
    char *common = sdt_format("[training]\nmax_train_steps = %d\nseed = 11\n"
                              "[optimizer]\nlearning_rate = 0.005\n"
                              "[lr_scheduler]\nlr_scheduler = \"cosine\"\nlr_warmup_steps = 2\n"
                              "[network]\nnetwork_dim = 4\nnetwork_alpha = 2.0\n%s"
                              "[saving]\nsave_precision = \"fp32\"\nsave_state = true\n",
                              STEPS, network);
    /* one run of STEPS steps */
    sdt_config *whole = trainer_fixture_config(t, &f, NULL, common);
    event_log a = {0}, b = {0}, c = {0};
    char *error = NULL;
    CHECK_MSG(t, whole && trainer_fixture_run(whole, &a, NULL, &error) == SDT_TRAIN_DONE, "%s",
              error ? error : "");
    free(error);
    error = NULL;
    char whole_file[256], first_state[256], part_dir[200], part_file[256];
    snprintf(whole_file, sizeof whole_file, "%s/tiny.safetensors", f.out);
    snprintf(first_state, sizeof first_state, "%s-first/tiny-state", f.out);
    snprintf(part_dir, sizeof part_dir, "%s-second", f.out);
    snprintf(part_file, sizeof part_file, "%s/tiny.safetensors", part_dir);
    CHECK(t, file_exists(whole_file));

    /* SPLIT steps, stopped by the control (which saves the model and the state) */
    char *first_extra = sdt_format("%s[folders]\noutput_dir = \"%s-first\"\n", common, f.out);
    sdt_config *first = NULL;
    if (first_extra) {
        /* output_dir is set twice in one file otherwise: build the config by hand */
        char *text = sdt_format(
            "[model]\npretrained_model_name_or_path = \"%s\"\ntokenizer_dir = \"%s\"\n"
            "[folders]\ntrain_data_dir = \"%s\"\noutput_dir = \"%s-first\"\noutput_name = \"tiny\"\n"
            "[dataset]\nresolution = [64]\nenable_bucket = false\n[hardware]\ncpu_threads = 1\n%s",
            f.demo.model_path, f.demo.tokenizer_dir, f.data, f.out, common);
        sdt_diag_list d;
        sdt_diag_list_init(&d);
        first = sdt_config_load_text(text, strlen(text), "first.toml", &d);
        CHECK(t, first && sdt_diag_count(&d, SDT_SEV_ERROR) == 0);
        sdt_diag_list_free(&d);
        free(text);
    }
    sdt_run_control control;
    sdt_run_control_init(&control);
    b.stop_at_step = SPLIT;
    CHECK_MSG(t, first && trainer_fixture_run(first, &b, &control, &error) == SDT_TRAIN_DONE, "%s",
              error ? error : "");
    free(error);
    error = NULL;
    CHECK(t, file_exists(first_state));

    /* resume from the state for the rest */
    char *text =
        sdt_format("[model]\npretrained_model_name_or_path = \"%s\"\ntokenizer_dir = \"%s\"\n"
                   "[folders]\ntrain_data_dir = \"%s\"\noutput_dir = \"%s\"\noutput_name = \"tiny\"\n"
                   "[dataset]\nresolution = [64]\nenable_bucket = false\n[hardware]\ncpu_threads = 1\n"
                   "%s\nresume = \"%s\"\n",
                   f.demo.model_path, f.demo.tokenizer_dir, f.data, part_dir, common, first_state);
    sdt_diag_list d;
    sdt_diag_list_init(&d);
    sdt_config *second = sdt_config_load_text(text, strlen(text), "second.toml", &d);
    if (sdt_diag_count(&d, SDT_SEV_ERROR))
        sdt_diag_list_print(&d, stderr);
    CHECK(t, second && sdt_diag_count(&d, SDT_SEV_ERROR) == 0);
    sdt_diag_list_free(&d);
    free(text);
    CHECK_MSG(t, second && trainer_fixture_run(second, &c, NULL, &error) == SDT_TRAIN_DONE, "%s",
              error ? error : "");
    free(error);
    error = NULL;

    double la[16], lb[16], lc[16];
    size_t na = event_log_losses(&a, la, 16), nb = event_log_losses(&b, lb, 16),
           nc = event_log_losses(&c, lc, 16);
    CHECK_MSG(t, na == STEPS && nb == SPLIT && nc == STEPS - SPLIT, "%zu %zu %zu steps", na, nb, nc);
    if (na == STEPS && nb == SPLIT && nc == STEPS - SPLIT) {
        for (int i = 0; i < SPLIT; i++)
            CHECK_MSG(t, memcmp(&la[i], &lb[i], sizeof(double)) == 0, "step %d: %.17g vs %.17g", i + 1, la[i],
                      lb[i]);
        for (int i = SPLIT; i < STEPS; i++)
            CHECK_MSG(t, memcmp(&la[i], &lc[i - SPLIT], sizeof(double)) == 0, "step %d: %.17g vs %.17g",
                      i + 1, la[i], lc[i - SPLIT]);
    }
    /* the resumed run continues the step count */
    int64_t last_step = 0;
    for (size_t i = 0; i < c.count; i++)
        if (c.items[i].type == SDT_EV_PROGRESS)
            last_step = c.items[i].step;
    CHECK(t, last_step == STEPS);
    CHECK(t, file_exists(part_file) && same_tensors(t, whole_file, part_file));

    /* a state is refused by a run with other settings (another seed) */
    if (second) {
        sdt_config_set_text(second, sdt_schema_find("seed"), "12", NULL);
        event_log e = {0};
        CHECK(t, trainer_fixture_run(second, &e, NULL, &error) == SDT_TRAIN_FAILED);
        CHECK_STR_CONTAINS(t, error, "other settings");
        free(error);
        error = NULL;
        event_log_free(&e);
    }
    event_log_free(&a);
    event_log_free(&b);
    event_log_free(&c);
    sdt_config_free(whole);
    sdt_config_free(first);
    sdt_config_free(second);
    free(first_extra);
    free(common);
    trainer_fixture_close(&f);
}

static void test_resume_exact(test_state *t) { resume_case(t, "resume", ""); }

static void test_resume_exact_with_dropout(test_state *t)
{
    resume_case(t, "resume-dropout", "network_dropout = 0.1\nrank_dropout = 0.2\nmodule_dropout = 0.2\n");
}

TEST_MAIN("trainer_resume", TEST(test_resume_exact), TEST(test_resume_exact_with_dropout))
