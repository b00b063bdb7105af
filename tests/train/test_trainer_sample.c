/* Sample images and TensorBoard logs during training: files and events where kohya puts them, and the
 * training's random numbers untouched by sampling (the same losses with and without samples). */
#include <dirent.h>

#include "trainer_fixture.h"

/* Files in dir whose name ends with suffix. */
static int count_suffix(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    size_t ls = strlen(suffix);
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        n += l > ls && strcmp(e->d_name + l - ls, suffix) == 0;
    }
    closedir(d);
    return n;
}

/* The one subfolder of dir whose name starts with prefix, into out. */
static int find_subdir(const char *dir, const char *prefix, char *out, size_t size)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    struct dirent *e;
    int found = -1;
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) {
            snprintf(out, size, "%s/%s", dir, e->d_name);
            found = 0;
        }
    closedir(d);
    return found;
}

static void test_samples_and_tensorboard(test_state *t)
{
    trainer_fixture f;
    if (trainer_fixture_open(t, &f, "train-sample", 2, 1) != 0) {
        trainer_fixture_close(&f);
        return;
    }
    char prompts[200], logs[200];
    snprintf(prompts, sizeof prompts, "%s/prompts.txt", f.root);
    snprintf(logs, sizeof logs, "%s/logs", f.root);
    const char *text = "a red cat --w 64 --h 64 --d 5 --s 3\n# a comment\na blue cat --w 64 --h 64 --s 3\n";
    CHECK(t, test_write_file(prompts, text, strlen(text)) == 0);

    event_log plain = {0}, sampled = {0};
    char *error = NULL;
    sdt_config *cfg = trainer_fixture_config(t, &f, NULL, "[training]\nmax_train_steps = 4\n");
    CHECK_MSG(t, cfg && trainer_fixture_run(cfg, &plain, NULL, &error) == SDT_TRAIN_DONE, "%s",
              error ? error : "");
    sdt_config_free(cfg);
    free(error);
    error = NULL;
    test_remove_tree(f.out);

    /* logging_dir belongs to [folders], so this config is written whole rather than through the fixture */
    cfg = NULL;
    {
        char *full = sdt_format(
            "[model]\npretrained_model_name_or_path = \"%s\"\ntokenizer_dir = \"%s\"\n"
            "[folders]\ntrain_data_dir = \"%s\"\noutput_dir = \"%s\"\noutput_name = \"tiny\"\n"
            "logging_dir = \"%s\"\n"
            "[dataset]\nresolution = [64]\nenable_bucket = false\n[hardware]\ncpu_threads = 1\n"
            "[training]\nmax_train_steps = 4\n"
            "[sampling]\nsample_prompts = \"%s\"\nsample_every_n_steps = 2\n"
            "sample_at_first = true\nsample_sampler = \"euler\"\n[logging]\nlog_prefix = \"tiny-\"\n",
            f.demo.model_path, f.demo.tokenizer_dir, f.data, f.out, logs, prompts);
        sdt_diag_list d;
        sdt_diag_list_init(&d);
        cfg = sdt_config_load_text(full, strlen(full), "sample.toml", &d);
        if (sdt_diag_count(&d, SDT_SEV_ERROR))
            sdt_diag_list_print(&d, stderr);
        CHECK(t, cfg && sdt_diag_count(&d, SDT_SEV_ERROR) == 0);
        sdt_diag_list_free(&d);
        free(full);
    }
    CHECK_MSG(t, cfg && trainer_fixture_run(cfg, &sampled, NULL, &error) == SDT_TRAIN_DONE, "%s",
              error ? error : "");
    free(error);
    sdt_config_free(cfg);

    /* at first (step 0), after steps 2 and 4: 3 rounds of 2 prompts */
    char sample_dir[200];
    snprintf(sample_dir, sizeof sample_dir, "%s/sample", f.out);
    CHECK_MSG(t, count_suffix(sample_dir, ".png") == 6, "%d samples", count_suffix(sample_dir, ".png"));
    CHECK(t, event_log_count(&sampled, SDT_EV_SAMPLE) == 6);
    /* kohya's names: tiny_<step:06d>_<index:02d>_<time>[_<seed>].png; the --d prompt carries its seed */
    CHECK(t, count_suffix(sample_dir, "_5.png") == 3);
    int named = 0;
    for (size_t i = 0; i < sampled.count; i++)
        if (sampled.items[i].type == SDT_EV_SAMPLE && sampled.items[i].text &&
            strstr(sampled.items[i].text, "/sample/tiny_000002_01_"))
            named++;
    CHECK(t, named == 1);

    /* sampling does not move the training's generator */
    double a[8], b[8];
    size_t na = event_log_losses(&plain, a, 8), nb = event_log_losses(&sampled, b, 8);
    CHECK(t, na == 4 && nb == 4 && memcmp(a, b, 4 * sizeof *a) == 0);

    /* TensorBoard: <logging_dir>/<log_prefix><timestamp>/events.out.tfevents.* */
    char run_dir[512];
    CHECK(t, find_subdir(logs, "tiny-", run_dir, sizeof run_dir) == 0);
    CHECK(t, test_count_files_named(run_dir, "events.out.tfevents.") == 1);

    event_log_free(&plain);
    event_log_free(&sampled);
    trainer_fixture_close(&f);
}

TEST_MAIN("trainer_sample", TEST(test_samples_and_tensorboard))
