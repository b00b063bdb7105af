/* Finding a live run from its journal (tui/run/live_run.c) and following it (tui/run/attached_run.c):
 * journals written here (the last of several runs, an ended run, a dead pid, a pid of another program, a
 * missing journal), then the real engine (SDT_ENGINE_PATH) on copies of config.toml: its run is found live
 * from the config, followed from the journal into a run state, stopped with SIGTERM (done, saved, no longer
 * live) or aborted with SIGTERM and SIGINT (exit 3). */
#define _GNU_SOURCE /* mkdtemp, setenv */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "run/attached_run.h"
#include "run/engine_client.h"
#include "run/live_run.h"
#include "run/run_state.h"
#include "sdtune/atomic_file.h"
#include "sdtune/config.h"
#include "sdtune/diag.h"
#include "sdtune/strutil.h"
#include "unit/check.h"
#include "unit/test_files.h"

static char *make_temp_dir(void)
{
    char *dir = sdt_format("%s/sdtune-live-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (dir && !mkdtemp(dir)) {
        free(dir);
        return NULL;
    }
    return dir;
}

static void write_text(test_state *t, const char *path, const char *text)
{
    char *error = NULL;
    CHECK_MSG(t, sdt_atomic_write(path, text, strlen(text), &error) == 0, "%s", error ? error : "");
    free(error);
}

static char *hello_line(long long pid)
{
    return sdt_format(
        "{\"t\":\"hello\",\"v\":1,\"time\":1764000000,\"backend\":\"cpu\",\"device\":\"x\",\"pid\":%lld}\n",
        pid);
}

/* A pid that was a process and is no more (reaped). */
static pid_t dead_pid(void)
{
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    if (pid > 0)
        waitpid(pid, NULL, 0);
    return pid;
}

static void test_written_journals(test_state *t)
{
    char *dir = make_temp_dir();
    CHECK(t, dir != NULL);
    if (!dir)
        return;
    char *path = sdt_format("%s/demo.events.jsonl", dir);
    live_run r;

    /* No journal: nothing found, no error. */
    char *error = NULL;
    CHECK(t, live_run_scan(path, &r, &error) == 0 && !error);
    CHECK(t, !r.journal_exists && !r.have_hello && !r.live && r.pid == -1);
    live_run_free(&r);

    /* An ended run, then a second one whose pid is dead: the second (last) counts; not live. */
    pid_t gone = dead_pid();
    char *first = hello_line(getpid()), *second = hello_line(gone);
    const char *progress = "{\"t\":\"progress\",\"time\":1764000001,\"step\":1,\"total_steps\":8,\"epoch\":1,"
                           "\"total_epochs\":1,\"loss\":0.1,\"loss_avg\":0.1,\"lr\":0.0001,"
                           "\"samples_per_s\":1,\"eta_s\":7}\n";
    const char *done = "{\"t\":\"done\",\"time\":1764000002,\"outputs\":[],\"exit_code\":0}\n";
    char *text = sdt_format("%s%s%s%s%s", first, progress, done, second, progress);
    write_text(t, path, text);
    CHECK(t, live_run_scan(path, &r, NULL) == 0);
    CHECK(t, r.journal_exists && r.have_hello && r.pid == gone && !r.done && !r.engine_alive && !r.live);
    CHECK_MSG(t, r.hello_offset == strlen(first) + strlen(progress) + strlen(done), "offset %llu",
              (unsigned long long)r.hello_offset);
    live_run_free(&r);
    free(text);

    /* A living pid of another program (this test) is not an engine. */
    text = sdt_format("%s%s", first, progress);
    write_text(t, path, text);
    CHECK(t, live_run_scan(path, &r, NULL) == 0);
    CHECK(t, r.have_hello && r.pid == getpid() && r.hello_offset == 0 && !r.engine_alive && !r.live);
    live_run_free(&r);
    free(text);
    CHECK(t, !live_run_pid_is_engine(getpid()));
    CHECK(t, !live_run_pid_is_engine(gone));
    CHECK(t, !live_run_pid_is_engine(0) && !live_run_pid_is_engine(-1));

    /* An ended run: `done` after the last hello; an `error` is noted (the pid decides). */
    text =
        sdt_format("%s%s%s", second, progress, "{\"t\":\"error\",\"time\":1764000002,\"message\":\"x\"}\n");
    write_text(t, path, text);
    CHECK(t, live_run_scan(path, &r, NULL) == 0);
    CHECK(t, r.have_hello && r.error && !r.done && !r.live);
    live_run_free(&r);
    free(text);
    text = sdt_format("%s%s%s", first, progress, done);
    write_text(t, path, text);
    CHECK(t, live_run_scan(path, &r, NULL) == 0);
    CHECK(t, r.have_hello && r.done && !r.live);
    live_run_free(&r);
    free(text);

    /* A cut last line (being written) and garbage do not confuse the scan. */
    text = sdt_format("not json\n%s{\"t\":\"do", second);
    write_text(t, path, text);
    CHECK(t, live_run_scan(path, &r, NULL) == 0);
    CHECK(t, r.have_hello && r.hello_offset == 9 && r.pid == gone && !r.done);
    live_run_free(&r);
    free(text);

    /* The journal's path from a config: output_dir/output_name.events.jsonl. */
    char *toml = sdt_format("[folders]\noutput_dir = \"%s\"\noutput_name = \"demo\"\n", dir);
    sdt_diag_list diags;
    sdt_diag_list_init(&diags);
    sdt_config *cfg = sdt_config_load_text(toml, strlen(toml), "x.toml", &diags);
    CHECK(t, cfg != NULL);
    char *from_cfg = cfg ? live_run_journal_path(cfg, NULL) : NULL;
    CHECK_MSG(t, from_cfg && strcmp(from_cfg, path) == 0, "%s", from_cfg ? from_cfg : "(null)");
    free(from_cfg);
    sdt_config_free(cfg);
    sdt_diag_list_free(&diags);
    free(toml);

    free(first);
    free(second);
    free(path);
    test_remove_tree(dir);
    free(dir);
}

/* ---- the real engine ---------------------------------------------------------------------------- */

/* A copy of config.toml training many steps of batch 1 into dir/name, no samples; loaded. */
static sdt_config *make_config(test_state *t, const char *dir, const char *name, char **path_out)
{
    char *text = NULL, *error = NULL;
    size_t len = 0;
    *path_out = NULL;
    if (sdt_read_file("config.toml", 1 << 20, &text, &len, &error) != 0) {
        CHECK_MSG(t, false, "config.toml: %s", error ? error : "");
        free(error);
        return NULL;
    }
    char *out_dir = sdt_format("\"%s/%s\"", dir, name);
    text = test_toml_set_key(text, "folders", "output_dir", out_dir);
    text = test_toml_set_key(text, "folders", "output_name", "\"demo\"");
    text = test_toml_set_key(text, "training", "max_train_steps", "100000");
    text = test_toml_set_key(text, "training", "train_batch_size", "1");
    text = test_toml_set_key(text, "sampling", "sample_every_n_steps", "0");
    text = test_toml_set_key(text, "dataset", "cache_latents_to_disk", "true");
    char *path = sdt_format("%s/%s.toml", dir, name);
    CHECK_MSG(t, text && sdt_atomic_write(path, text, strlen(text), &error) == 0, "%s", error ? error : "");
    free(error);
    free(out_dir);
    free(text);
    sdt_diag_list diags;
    sdt_diag_list_init(&diags);
    sdt_config *cfg = sdt_config_load_file(path, &diags);
    sdt_diag_list_free(&diags);
    CHECK(t, cfg != NULL);
    *path_out = path;
    return cfg;
}

static void drop_line(void *ctx, engine_stream stream, const char *text, size_t len, bool truncated)
{
    (void)ctx, (void)stream, (void)text, (void)len, (void)truncated;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The engine's own stdout and stderr, read so its pipes never fill; what the test checks comes from the
 * journal. */
static void drain(engine_client *c) { engine_client_pump(c, drop_line, NULL, NULL); }

/* Starts the engine on the config and waits until the config's run is found live with a step done. */
static engine_client *start_live(test_state *t, const sdt_config *cfg, const char *config_path,
                                 live_run *found)
{
    engine_client_options options = {.engine_path = SDT_ENGINE_PATH, .config_path = config_path};
    engine_client *c = NULL;
    char *error = NULL;
    CHECK_MSG(t, engine_client_start(&options, &c, &error) == 0, "%s", error ? error : "");
    free(error);
    if (!c)
        return NULL;
    run_state seen;
    run_state_init(&seen, NULL, NULL);
    double end = engine_client_now() + 60;
    bool live = false;
    while (!live && engine_client_now() < end &&
           engine_client_tick(c, engine_client_now()) == ENGINE_CLIENT_RUNNING) {
        engine_client_pump(c, run_state_on_line, &seen, NULL);
        live_run_free(found);
        live = live_run_find(cfg, found, NULL) == 0 && found->live && seen.have_progress;
        if (!live)
            sleep_ms(50);
    }
    CHECK_MSG(t, live, "the run was not found live (%zu engine log lines)", run_state_log_count(&seen));
    for (size_t i = 0; !live && i < run_state_log_count(&seen); i++)
        fprintf(stderr, "  engine log: %s\n", run_state_log_at(&seen, i)->text);
    run_state_free(&seen);
    return c;
}

/* Our own view of the engine (it is our child here, unlike in the UI): its exit status, once reaped. */
static bool reaped(engine_client *c, engine_exit *status)
{
    double end = engine_client_now() + 30;
    while (!engine_client_exit(c, status) && engine_client_now() < end) {
        drain(c);
        engine_client_tick(c, engine_client_now());
        sleep_ms(20);
    }
    return engine_client_exit(c, status);
}

/* Pumps the attached run into state and ticks it (and the engine client, which reaps our child) until
 * the attached run ends or timeout_s passes. */
static bool follow_until_ended(attached_run *ar, engine_client *c, run_state *state, double timeout_s)
{
    double end = engine_client_now() + timeout_s;
    while (engine_client_now() < end) {
        drain(c);
        engine_client_tick(c, engine_client_now());
        attached_run_pump(ar, run_state_on_line, state, NULL, NULL);
        if (attached_run_tick(ar, engine_client_now()) == ATTACHED_ENDED) {
            attached_run_pump(ar, run_state_on_line, state, NULL, NULL);
            return true;
        }
        sleep_ms(20);
    }
    return false;
}

static void test_real_stop(test_state *t, const char *dir)
{
    char *config_path = NULL;
    sdt_config *cfg = make_config(t, dir, "stopped", &config_path);
    live_run found = {0};
    engine_client *c = cfg ? start_live(t, cfg, config_path, &found) : NULL;
    if (c && found.live) {
        CHECK(t, found.pid == engine_client_pid(c) && found.hello_offset == 0 && !found.done);
        CHECK(t, live_run_pid_is_engine(found.pid));
        attached_run *ar = NULL;
        CHECK(t, attached_run_open(&found, NULL, &ar, NULL) == 0 && ar);
        run_state state;
        run_state_init(&state, NULL, NULL);
        /* The replay: hello, the phases, the steps so far. */
        CHECK(t, attached_run_pump(ar, run_state_on_line, &state, NULL, NULL) > 0);
        CHECK(t, state.have_hello && state.engine_pid == found.pid && state.have_progress && state.step >= 1);
        CHECK(t, attached_run_tick(ar, engine_client_now()) == ATTACHED_RUNNING);
        int64_t first_step = state.step;
        /* It grows: more steps come through the journal. */
        double end = engine_client_now() + 30;
        while (state.step <= first_step + 2 && engine_client_now() < end) {
            drain(c);
            attached_run_pump(ar, run_state_on_line, &state, NULL, NULL);
            sleep_ms(20);
        }
        CHECK_MSG(t, state.step > first_step + 2, "steps %lld -> %lld", (long long)first_step,
                  (long long)state.step);
        char *error = NULL;
        CHECK(t, attached_run_stop(ar, &error) == 0 && attached_run_stop_sent(ar));
        CHECK(t, attached_run_stop(ar, &error) == 0); /* a second stop sends nothing more */
        free(error);
        CHECK(t, follow_until_ended(ar, c, &state, 60));
        CHECK(t, state.have_done && state.done_exit_code == 0 && state.malformed_lines == 0);
        engine_exit status = {0};
        CHECK_MSG(t, reaped(c, &status) && !status.signaled && status.code == 0, "signaled %d code %d",
                  status.signaled, status.code);
        char *lora = sdt_format("%s/stopped/demo.safetensors", dir);
        struct stat st;
        CHECK(t, lora && stat(lora, &st) == 0 && st.st_size > 0);
        free(lora);
        /* Ended: found again, it is no longer live. */
        live_run again;
        CHECK(t, live_run_find(cfg, &again, NULL) == 0 && again.have_hello && again.done && !again.live);
        live_run_free(&again);
        CHECK(t, attached_run_stop(ar, &error) == 0 || error); /* ended: no signal to a gone pid */
        free(error);
        error = NULL;
        CHECK(t, attached_run_abort(ar, engine_client_now(), &error) == -1 && error);
        free(error);
        run_state_free(&state);
        attached_run_free(ar);
    }
    live_run_free(&found);
    engine_client_free(c);
    sdt_config_free(cfg);
    free(config_path);
}

static void test_real_abort(test_state *t, const char *dir)
{
    char *config_path = NULL;
    sdt_config *cfg = make_config(t, dir, "aborted", &config_path);
    live_run found = {0};
    engine_client *c = cfg ? start_live(t, cfg, config_path, &found) : NULL;
    if (c && found.live) {
        attached_run *ar = NULL;
        attached_run_options options = {.kill_after_s = 10};
        CHECK(t, attached_run_open(&found, &options, &ar, NULL) == 0 && ar);
        run_state state;
        run_state_init(&state, NULL, NULL);
        CHECK(t, attached_run_abort(ar, engine_client_now(), NULL) == 0 && attached_run_abort_sent(ar));
        CHECK(t, follow_until_ended(ar, c, &state, 30));
        engine_exit status = {0};
        CHECK_MSG(t, reaped(c, &status) && !status.signaled && status.code == 3, "signaled %d code %d",
                  status.signaled, status.code);
        char *lora = sdt_format("%s/aborted/demo.safetensors", dir);
        struct stat st;
        CHECK_MSG(t, lora && stat(lora, &st) != 0, "an aborted run saved %s", lora ? lora : "");
        free(lora);
        run_state_free(&state);
        attached_run_free(ar);
    }
    live_run_free(&found);
    engine_client_free(c);
    sdt_config_free(cfg);
    free(config_path);
}

static void test_real_engine(test_state *t)
{
    signal(SIGPIPE, SIG_IGN);
    char *dir = make_temp_dir();
    CHECK(t, dir != NULL);
    if (!dir)
        return;
    char *cache = sdt_format("%s/cache", dir);
    setenv("SDTUNE_CACHE_DIR", cache, 1);
    test_real_stop(t, dir);
    test_real_abort(t, dir);
    unsetenv("SDTUNE_CACHE_DIR");
    test_remove_tree(dir);
    free(cache);
    free(dir);
}

TEST_MAIN("live_run", TEST(test_written_journals), TEST(test_real_engine))
