/* A run's faults (docs/training.md, "Faults"): a disk that fills up during a LoRA save or a state save
 * (simulated with RLIMIT_FSIZE in a child process, SIGXFSZ ignored so the write fails with EFBIG), and bad
 * paths: output_dir that cannot be created, a missing model, dataset or tokenizer, resume pointing at a
 * missing or incomplete state, network_weights of the wrong shape. Each fails with an error naming the
 * path or key, leaves no temporary file, and leaves earlier checkpoints and states intact. Every run is in
 * a child process: the file size limit must not reach the test itself, and OpenMP's threads do not survive
 * a fork. */
#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sdtune/safetensors.h"
#include "trainer_fixture.h"

typedef struct paths {
    const char *model, *tokenizer, *data, *out;
    int network_dim; /* 0: 2 */
} paths;

/* The fixture's run with its paths replaced where p says, then extra TOML lines. NULL on errors. */
static sdt_config *make_config(test_state *t, const trainer_fixture *f, paths p, const char *extra)
{
    char *text =
        sdt_format("[model]\npretrained_model_name_or_path = \"%s\"\ntokenizer_dir = \"%s\"\n"
                   "[folders]\ntrain_data_dir = \"%s\"\noutput_dir = \"%s\"\noutput_name = \"tiny\"\n"
                   "[dataset]\nresolution = [64]\nenable_bucket = false\n[hardware]\ncpu_threads = 1\n"
                   "[network]\nnetwork_dim = %d\n%s",
                   p.model ? p.model : f->demo.model_path, p.tokenizer ? p.tokenizer : f->demo.tokenizer_dir,
                   p.data ? p.data : f->data, p.out ? p.out : f->out, p.network_dim ? p.network_dim : 2,
                   extra ? extra : "");
    sdt_diag_list diags;
    sdt_diag_list_init(&diags);
    sdt_config *cfg = text ? sdt_config_load_text(text, strlen(text), "faults.toml", &diags) : NULL;
    int errors = (int)sdt_diag_count(&diags, SDT_SEV_ERROR);
    if (errors)
        sdt_diag_list_print(&diags, stderr);
    CHECK_MSG(t, cfg && errors == 0, "the test config does not load");
    sdt_diag_list_free(&diags);
    free(text);
    return cfg;
}

/* Runs cfg in a child whose files may grow to fsize_limit bytes (0: no limit). Returns the run's result
 * (sdt_train_result), -1 when the child did not exit; *message: the run's error ("" when none). */
static int run_in_child(const trainer_fixture *f, const sdt_config *cfg, long long fsize_limit,
                        char **message)
{
    char path[200];
    snprintf(path, sizeof path, "%s/child-error.txt", f->root);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        if (fsize_limit > 0) {
            struct rlimit r = {(rlim_t)fsize_limit, (rlim_t)fsize_limit};
            setrlimit(RLIMIT_FSIZE, &r);
        }
        event_log log = {0};
        char *error = NULL;
        sdt_train_result result = trainer_fixture_run(cfg, &log, NULL, &error);
        FILE *out = fopen(path, "w");
        if (out) {
            fputs(error ? error : "", out);
            fclose(out);
        }
        _exit((int)result);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid)
        status = -1;
    size_t len = 0;
    *message = test_read_file(path, &len);
    if (!*message)
        *message = strdup("");
    remove(path);
    return status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static long long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* Entries below dir (any depth) that a write in progress leaves: "*.tmp.*" files and ".state-tmp-*"
 * folders. */
static int leftovers(const char *dir)
{
    int count = test_count_files_named(dir, ".tmp.");
    DIR *d = opendir(dir);
    if (!d)
        return count;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        count += strncmp(e->d_name, ".state-tmp", 10) == 0;
    closedir(d);
    return count;
}

static int copy_file(const char *from, const char *to)
{
    size_t len = 0;
    char *data = test_read_file(from, &len);
    int rc = data ? test_write_file(to, data, len) : -1;
    free(data);
    return rc;
}

static const char *const state_files[] = {"train_state.json", "weights.safetensors", "optimizer.safetensors"};

static int copy_state(const char *from, const char *to, int skip)
{
    mkdir(to, 0755);
    int rc = 0;
    for (int i = 0; i < 3; i++) {
        if (i == skip)
            continue;
        char a[600], b[600];
        snprintf(a, sizeof a, "%s/%s", from, state_files[i]);
        snprintf(b, sizeof b, "%s/%s", to, state_files[i]);
        rc |= copy_file(a, b);
    }
    return rc;
}

static int same_file(const char *a, const char *b)
{
    size_t la = 0, lb = 0;
    char *x = test_read_file(a, &la), *y = test_read_file(b, &lb);
    int same = x && y && la == lb && memcmp(x, y, la) == 0;
    free(x);
    free(y);
    return same;
}

static int loads(const char *path)
{
    sdt_safetensors *st = NULL;
    char *error = NULL;
    int ok = sdt_safetensors_open(path, &st, &error) == 0 && sdt_safetensors_count(st) > 0;
    if (st)
        sdt_safetensors_close(st);
    free(error);
    return ok;
}

#define SAVES "[training]\nmax_train_steps = %d\n[saving]\nsave_precision = \"fp32\"\nsave_state = true\n%s"

static void disk_full(test_state *t)
{
    trainer_fixture f;
    if (trainer_fixture_open(t, &f, "faults-disk", 2, 1) != 0) {
        trainer_fixture_close(&f);
        return;
    }
    char good[200], a[200], b[200], c[200], path[512], other[512];
    snprintf(good, sizeof good, "%s/good", f.root);
    snprintf(a, sizeof a, "%s/a", f.root);
    snprintf(b, sizeof b, "%s/b", f.root);
    snprintf(c, sizeof c, "%s/c", f.root);
    char *message = NULL, *extra = NULL;

    /* A run without limits gives the sizes of what is written. */
    extra = sdt_format(SAVES, 2, "");
    sdt_config *cfg = make_config(t, &f, (paths){.out = good}, extra);
    int rc = cfg ? run_in_child(&f, cfg, 0, &message) : -1;
    CHECK_MSG(t, rc == SDT_TRAIN_DONE, "rc %d: %s", rc, message ? message : "");
    sdt_config_free(cfg);
    free(message);
    free(extra);
    char good_lora[256], good_state[256];
    snprintf(good_lora, sizeof good_lora, "%s/tiny.safetensors", good);
    snprintf(good_state, sizeof good_state, "%s/tiny-state", good);
    snprintf(path, sizeof path, "%s/weights.safetensors", good_state);
    long long lora = file_size(good_lora), weights = file_size(path);
    snprintf(path, sizeof path, "%s/optimizer.safetensors", good_state);
    long long optimizer = file_size(path);
    /* the optimizer state (two moments) is the largest file of a run */
    int sizes_ok = lora > 0 && weights > 0 && optimizer > lora + 1024 && optimizer > weights + 1024;
    CHECK_MSG(t, sizes_ok, "sizes: lora %lld, weights %lld, optimizer %lld", lora, weights, optimizer);
    if (!sizes_ok)
        goto done;
    long long between = (lora > weights ? lora : weights) + 512;

    /* 1. The disk fills up while the state of step 2 is saved: the LoRA of step 2 is there and loads, the
     * state folder is not, nothing temporary is left, and the run fails naming the state. */
    extra = sdt_format(SAVES, 4, "save_every_n_steps = 2\n");
    cfg = make_config(t, &f, (paths){.out = a}, extra);
    rc = cfg ? run_in_child(&f, cfg, between, &message) : -1;
    CHECK_MSG(t, rc == SDT_TRAIN_FAILED, "rc %d", rc);
    CHECK_STR_CONTAINS(t, message, "tiny-step00000002-state");
    CHECK_STR_CONTAINS(t, message, "File too large");
    snprintf(path, sizeof path, "%s/tiny-step00000002.safetensors", a);
    CHECK(t, loads(path));
    snprintf(path, sizeof path, "%s/tiny-step00000002-state", a);
    CHECK(t, !file_exists(path));
    CHECK_MSG(t, leftovers(a) == 0, "%d temporary entries left in %s", leftovers(a), a);
    sdt_config_free(cfg);
    free(message);
    free(extra);

    /* 2. The disk fills up while the final LoRA replaces an earlier one: the earlier file stays, byte for
     * byte; the run fails naming the file. */
    mkdir(b, 0755);
    snprintf(path, sizeof path, "%s/tiny.safetensors", b);
    CHECK(t, copy_file(good_lora, path) == 0);
    extra = sdt_format(SAVES, 2, "");
    cfg = make_config(t, &f, (paths){.out = b}, extra);
    rc = cfg ? run_in_child(&f, cfg, lora - 64, &message) : -1;
    CHECK_MSG(t, rc == SDT_TRAIN_FAILED, "rc %d", rc);
    CHECK_STR_CONTAINS(t, message, path);
    CHECK(t, same_file(path, good_lora) && loads(path));
    snprintf(other, sizeof other, "%s/tiny-state", b);
    CHECK(t, !file_exists(other)); /* the state comes after the model: never reached */
    CHECK_MSG(t, leftovers(b) == 0, "%d temporary entries left in %s", leftovers(b), b);
    sdt_config_free(cfg);
    free(message);
    free(extra);

    /* 3. The disk fills up while a final state replaces an earlier one: the earlier state stays whole, and a
     * run resumes from it. */
    mkdir(c, 0755);
    snprintf(path, sizeof path, "%s/tiny-state", c);
    CHECK(t, copy_state(good_state, path, -1) == 0);
    extra = sdt_format(SAVES, 2, "");
    cfg = make_config(t, &f, (paths){.out = c}, extra);
    rc = cfg ? run_in_child(&f, cfg, between, &message) : -1;
    CHECK_MSG(t, rc == SDT_TRAIN_FAILED, "rc %d", rc);
    CHECK_STR_CONTAINS(t, message, path);
    for (int i = 0; i < 3; i++) {
        char x[600], y[600];
        snprintf(x, sizeof x, "%s/%s", path, state_files[i]);
        snprintf(y, sizeof y, "%s/%s", good_state, state_files[i]);
        CHECK_MSG(t, same_file(x, y), "%s changed", x);
    }
    CHECK_MSG(t, leftovers(c) == 0, "%d temporary entries left in %s", leftovers(c), c);
    sdt_config_free(cfg);
    free(message);
    free(extra);
    char *resume = sdt_format(SAVES "resume = \"%s\"\n", 4, "", path);
    snprintf(other, sizeof other, "%s/resumed", f.root);
    cfg = make_config(t, &f, (paths){.out = other}, resume);
    rc = cfg ? run_in_child(&f, cfg, 0, &message) : -1;
    CHECK_MSG(t, rc == SDT_TRAIN_DONE, "resume from the kept state: rc %d: %s", rc, message);
    sdt_config_free(cfg);
    free(message);
    free(resume);
done:
    trainer_fixture_close(&f);
}

/* resume at a missing folder, at a folder without one of its files (a copy cut short, a temporary folder
 * of a save that died): refused, naming what is missing; nothing written. */
static void incomplete_state(test_state *t)
{
    trainer_fixture f;
    if (trainer_fixture_open(t, &f, "faults-state", 2, 1) != 0) {
        trainer_fixture_close(&f);
        return;
    }
    char good[200], state[300], partial[300], out[300];
    snprintf(good, sizeof good, "%s/good", f.root);
    snprintf(state, sizeof state, "%s/tiny-state", good);
    char *message = NULL, *extra = sdt_format(SAVES, 2, "");
    sdt_config *cfg = make_config(t, &f, (paths){.out = good}, extra);
    int rc = cfg ? run_in_child(&f, cfg, 0, &message) : -1;
    CHECK_MSG(t, rc == SDT_TRAIN_DONE, "rc %d: %s", rc, message);
    sdt_config_free(cfg);
    free(message);
    free(extra);
    snprintf(out, sizeof out, "%s/out", f.root);
    for (int missing = -2; missing < 3; missing++) {
        if (missing == -2)
            snprintf(partial, sizeof partial, "%s/no-such-state", f.root);
        else if (missing == -1)
            snprintf(partial, sizeof partial, "%s/.state-tmp-dead", f.root); /* json never written */
        else
            snprintf(partial, sizeof partial, "%s/partial%d", f.root, missing);
        if (missing == -1)
            CHECK(t, copy_state(state, partial, 0) == 0);
        else if (missing >= 0)
            CHECK(t, copy_state(state, partial, missing) == 0);
        extra = sdt_format(SAVES "resume = \"%s\"\n", 4, "", partial);
        cfg = make_config(t, &f, (paths){.out = out}, extra);
        rc = cfg ? run_in_child(&f, cfg, 0, &message) : -1;
        CHECK_MSG(t, rc == SDT_TRAIN_FAILED, "rc %d", rc);
        CHECK_STR_CONTAINS(t, message, partial);
        if (missing >= 0) {
            CHECK_STR_CONTAINS(t, message, "not a complete state");
            CHECK_STR_CONTAINS(t, message, state_files[missing]);
        }
        CHECK(t, test_count_files_named(out, ".safetensors") == 0 && leftovers(out) == 0);
        sdt_config_free(cfg);
        free(message);
        free(extra);
    }
    trainer_fixture_close(&f);
}

/* Paths that do not work: each run fails naming the path (or the tensor), writes no model or state and
 * leaves no temporary file. */
static void bad_paths(test_state *t)
{
    trainer_fixture f;
    if (trainer_fixture_open(t, &f, "faults-paths", 2, 1) != 0) {
        trainer_fixture_close(&f);
        return;
    }
    char good[200], lora[300], file[200], out_under_file[250], missing_model[200], missing_data[200],
        empty_data[200], missing_tokenizer[200], out[200];
    snprintf(good, sizeof good, "%s/good", f.root);
    snprintf(lora, sizeof lora, "%s/tiny.safetensors", good);
    snprintf(file, sizeof file, "%s/a-file", f.root);
    snprintf(out_under_file, sizeof out_under_file, "%s/out", file);
    snprintf(missing_model, sizeof missing_model, "%s/no-model.safetensors", f.root);
    snprintf(missing_data, sizeof missing_data, "%s/no-data", f.root);
    snprintf(empty_data, sizeof empty_data, "%s/empty-data", f.root);
    snprintf(missing_tokenizer, sizeof missing_tokenizer, "%s/no-tokenizer", f.root);
    snprintf(out, sizeof out, "%s/out", f.root);
    CHECK(t, test_write_file(file, "x", 1) == 0);
    mkdir(empty_data, 0755);
    char *message = NULL;
    /* a LoRA of dim 2 to load into a network of dim 4 */
    sdt_config *cfg = make_config(t, &f, (paths){.out = good}, "[training]\nmax_train_steps = 1\n");
    int rc = cfg ? run_in_child(&f, cfg, 0, &message) : -1;
    CHECK_MSG(t, rc == SDT_TRAIN_DONE && file_exists(lora), "rc %d: %s", rc, message);
    sdt_config_free(cfg);
    free(message);

    /* directly after the [network] line of make_config */
    char *weights = sdt_format("network_weights = \"%s\"\n[training]\nmax_train_steps = 1\n", lora);
    struct {
        const char *name;
        paths p;
        const char *extra, *expect, *expect2;
    } cases[] = {
        {"output_dir under a file", {.out = out_under_file}, NULL, file, NULL},
        {"missing model", {.model = missing_model}, NULL, missing_model, NULL},
        {"missing dataset", {.data = missing_data}, NULL, missing_data, NULL},
        /* the dataset scan's message names the config file, not the folder */
        {"empty dataset", {.data = empty_data}, NULL, "the dataset is empty", NULL},
        {"missing tokenizer", {.tokenizer = missing_tokenizer}, NULL, missing_tokenizer, NULL},
        {"network_weights of another shape", {.network_dim = 4}, weights, lora, "lora_"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        paths p = cases[i].p;
        if (!p.out)
            p.out = out;
        cfg = make_config(t, &f, p, cases[i].extra);
        rc = cfg ? run_in_child(&f, cfg, 0, &message) : -1;
        fprintf(stderr, "%s: rc %d: %s\n", cases[i].name, rc, message ? message : "");
        CHECK_MSG(t, rc == SDT_TRAIN_FAILED || rc == SDT_TRAIN_CONFIG_ERROR, "%s: rc %d", cases[i].name, rc);
        CHECK_MSG(t, message && strstr(message, cases[i].expect), "%s: \"%s\" does not name %s",
                  cases[i].name, message ? message : "", cases[i].expect);
        if (cases[i].expect2)
            CHECK_MSG(t, message && strstr(message, cases[i].expect2), "%s: \"%s\" does not name a tensor",
                      cases[i].name, message ? message : "");
        CHECK_MSG(t, test_count_files_named(p.out, ".safetensors") == 0 && leftovers(p.out) == 0,
                  "%s: files written in %s", cases[i].name, p.out);
        sdt_config_free(cfg);
        free(message);
        test_remove_tree(out);
    }
    free(weights);
    trainer_fixture_close(&f);
}

TEST_MAIN("trainer_faults", TEST(disk_full), TEST(incomplete_state), TEST(bad_paths))
