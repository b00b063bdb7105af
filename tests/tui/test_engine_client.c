/* The engine client (tui/run/engine_client.c): fake engines (/bin/sh scripts written here) for line
 * assembly, commands, exit detection, abort escalation and reaping; then the real engine (SDT_ENGINE_PATH)
 * on the demo config: a whole run, pause/resume/stop, and a detached run that finishes on its own. */
#define _GNU_SOURCE /* mkdtemp, getpgid, setenv */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "run/engine_client.h"
#include "run/run_state.h"
#include "sdtune/atomic_file.h"
#include "sdtune/strutil.h"
#include "unit/check.h"
#include "unit/test_files.h"

#define MAX_KEPT_LINES 512

/* What a client delivered: the first lines of each stream, and a run state fed with every line. */
typedef struct collected {
    char *lines[2][MAX_KEPT_LINES];
    bool truncated[2][MAX_KEPT_LINES];
    size_t n[2];
    run_state *state;     /* NULL: lines are only kept */
    sdt_phase phases[64]; /* phase events in order */
    size_t n_phases;
    int64_t pause_step; /* the step shown when the run was seen paused */
} collected;

static void on_line(void *ctx, engine_stream stream, const char *text, size_t len, bool truncated)
{
    collected *col = ctx;
    if (col->n[stream] < MAX_KEPT_LINES) {
        col->lines[stream][col->n[stream]] = sdt_strndup(text, len);
        col->truncated[stream][col->n[stream]] = truncated;
    }
    col->n[stream]++;
    if (!col->state)
        return;
    run_state_on_line(col->state, stream, text, len, truncated);
    sdt_event ev;
    if (stream == ENGINE_STREAM_EVENTS && sdt_event_decode(text, len, &ev, NULL) == 0) {
        if (ev.type == SDT_EV_PHASE && col->n_phases < 64)
            col->phases[col->n_phases++] = ev.phase;
        sdt_event_clear(&ev);
    }
}

static void collected_free(collected *col)
{
    for (int s = 0; s < 2; s++)
        for (size_t i = 0; i < col->n[s] && i < MAX_KEPT_LINES; i++)
            free(col->lines[s][i]);
    memset(col, 0, sizeof *col);
}

typedef bool (*until_fn)(engine_client *c, collected *col);

/* Polls and pumps the client as the UI's loop would, ticking it, until done says so or timeout_s passes. */
static bool pump_until(engine_client *c, collected *col, until_fn done, double timeout_s)
{
    double end = engine_client_now() + timeout_s;
    for (;;) {
        if (done(c, col))
            return true;
        if (engine_client_now() > end)
            return false;
        int fds[2];
        engine_client_fds(c, fds);
        struct pollfd polled[2];
        nfds_t n = 0;
        for (int s = 0; s < 2; s++)
            if (fds[s] >= 0)
                polled[n++] = (struct pollfd){.fd = fds[s], .events = POLLIN};
        poll(polled, n, 20);
        char *error = NULL;
        engine_client_pump(c, on_line, col, &error);
        free(error);
        engine_exit status;
        if (engine_client_tick(c, engine_client_now()) != ENGINE_CLIENT_RUNNING && col->state &&
            !col->state->engine_exited && engine_client_exit(c, &status))
            run_state_engine_exited(col->state, &status);
    }
}

static bool until_exited(engine_client *c, collected *col)
{
    (void)col;
    return engine_client_phase_of(c) == ENGINE_CLIENT_EXITED;
}

static bool until_first_event_line(engine_client *c, collected *col)
{
    (void)c;
    return col->n[ENGINE_STREAM_EVENTS] >= 1;
}

/* ---- a scratch folder with fake engines ------------------------------------------------------------------
 */

static char *make_temp_dir(void)
{
    char pattern[] = "/tmp/sdtune-engine-client-XXXXXX";
    return mkdtemp(pattern) ? sdt_strdup(pattern) : NULL;
}

/* dir/name holding body after a #!/bin/sh line, executable. */
static char *write_script(test_state *t, const char *dir, const char *name, const char *body)
{
    char *path = sdt_format("%s/%s", dir, name);
    char *text = sdt_format("#!/bin/sh\n%s", body);
    char *error = NULL;
    int rc = sdt_atomic_write(path, text, strlen(text), &error);
    CHECK_MSG(t, rc == 0 && chmod(path, 0755) == 0, "writing %s: %s", path, error ? error : "chmod");
    free(error);
    free(text);
    return path;
}

static engine_client *start_script(test_state *t, const char *path, const char *const *args, size_t max_line)
{
    engine_client_options options = {.engine_path = path, .args = args, .max_line = max_line};
    static const char *const no_args[] = {NULL};
    if (!args)
        options.args = no_args;
    engine_client *c = NULL;
    char *error = NULL;
    int rc = engine_client_start(&options, &c, &error);
    CHECK_MSG(t, rc == 0 && c, "start %s: %s", path, error ? error : "");
    free(error);
    return c;
}

/* A process other than a zombie is in process group pgid (from /proc: an orphaned grandchild's zombie waits
 * for whatever reaps orphans here, which is no business of the client's). */
static bool group_has_live_process(pid_t pgid)
{
    DIR *proc = opendir("/proc");
    if (!proc)
        return kill(-pgid, 0) == 0;
    bool live = false;
    struct dirent *entry;
    while (!live && (entry = readdir(proc)) != NULL) {
        if (entry->d_name[0] < '1' || entry->d_name[0] > '9')
            continue;
        char path[300], text[512];
        snprintf(path, sizeof path, "/proc/%s/stat", entry->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t n = fread(text, 1, sizeof text - 1, f);
        fclose(f);
        text[n] = '\0';
        /* pid (comm) state ppid pgrp ...: comm may hold spaces, so parse from its closing parenthesis */
        const char *close = strrchr(text, ')');
        char state = 0;
        int ppid = 0, pgrp = 0;
        if (close && sscanf(close + 1, " %c %d %d", &state, &ppid, &pgrp) == 3)
            live = pgrp == pgid && state != 'Z' && state != 'X';
    }
    closedir(proc);
    return live;
}

/* The child is gone: reaped by us (no zombie of ours), and nothing of its process group still runs. */
static bool child_gone(pid_t pid)
{
    errno = 0;
    if (waitpid(pid, NULL, WNOHANG) != -1 || errno != ECHILD)
        return false;
    for (int i = 0; i < 100; i++) { /* a killed grandchild can take a moment to go */
        if (!group_has_live_process(pid))
            return true;
        struct timespec ms10 = {0, 10000000};
        nanosleep(&ms10, NULL);
    }
    return false;
}

/* ---- fake engines
 * ------------------------------------------------------------------------------------------ */

static void test_line_assembly(test_state *t)
{
    signal(SIGPIPE, SIG_IGN);
    char *dir = make_temp_dir();
    CHECK(t, dir != NULL);
    /* An event written in two pieces, stderr in two pieces, a 300-byte line, a CRLF line, a last line
     * without a newline, exit 5. */
    char *path = write_script(t, dir, "lines.sh",
                              "printf '{\"t\":\"pha'\n"
                              "sleep 0.1\n"
                              "printf 'se\",\"phase\":\"loading\"}\\n'\n"
                              "printf 'err-part' >&2\n"
                              "sleep 0.05\n"
                              "printf ' two\\n' >&2\n"
                              "printf '%0300d\\n' 0\n"
                              "printf 'short\\r\\n'\n"
                              "printf 'no newline at end'\n"
                              "exit 5\n");
    engine_client *c = start_script(t, path, NULL, 100);
    if (c) {
        collected col = {0};
        CHECK(t, pump_until(c, &col, until_exited, 10));
        CHECK(t, col.n[ENGINE_STREAM_EVENTS] == 4 && col.n[ENGINE_STREAM_LOG] == 1);
        if (col.n[ENGINE_STREAM_EVENTS] == 4) {
            CHECK(t, strcmp(col.lines[0][0], "{\"t\":\"phase\",\"phase\":\"loading\"}") == 0 &&
                         !col.truncated[0][0]);
            CHECK(t, strlen(col.lines[0][1]) == 100 && col.truncated[0][1]);
            CHECK(t, strspn(col.lines[0][1], "0") == 100);
            CHECK(t, strcmp(col.lines[0][2], "short") == 0 && !col.truncated[0][2]);
            CHECK(t, strcmp(col.lines[0][3], "no newline at end") == 0);
        }
        CHECK(t, col.n[1] == 1 && strcmp(col.lines[1][0], "err-part two") == 0);
        engine_exit status = {0};
        CHECK(t, engine_client_exit(c, &status) && !status.signaled && status.code == 5);
        int fds[2];
        CHECK(t, engine_client_fds(c, fds) == 0 && fds[0] == -1 && fds[1] == -1);
        pid_t pid = engine_client_pid(c);
        CHECK(t, child_gone(pid));
        engine_client_free(c);
        collected_free(&col);
    }
    free(path);
    test_remove_tree(dir);
    free(dir);
}

static void test_commands_and_exit(test_state *t)
{
    signal(SIGPIPE, SIG_IGN);
    char *dir = make_temp_dir();
    /* Echoes each command back; leaves with 0 at `stop`. Reports whether the fd given as $1 leaked in. */
    char *path = write_script(t, dir, "echo.sh",
                              "if [ -e /proc/$$/fd/$1 ]; then echo leaked; else echo clean; fi\n"
                              "while IFS= read -r line; do\n"
                              "  echo \"got:$line\"\n"
                              "  case \"$line\" in *'\"stop\"'*) exit 0;; esac\n"
                              "done\n"
                              "exit 9\n");
    int stray = open("/dev/null", O_RDONLY); /* not close-on-exec: the client must close it in the child */
    char stray_text[16];
    snprintf(stray_text, sizeof stray_text, "%d", stray);
    const char *args[] = {stray_text, NULL};
    engine_client *c = start_script(t, path, args, 0);
    if (c) {
        pid_t pid = engine_client_pid(c);
        /* its own session and process group: the terminal's Ctrl-C does not reach it */
        CHECK(t, getpgid(pid) == pid && getsid(pid) == pid && getpgrp() != pid);
        collected col = {0};
        CHECK(t, pump_until(c, &col, until_first_event_line, 10));
        CHECK(t, col.n[0] >= 1 && strcmp(col.lines[0][0], "clean") == 0);
        char *error = NULL;
        CHECK(t, engine_client_send(c, SDT_CMD_PING, "p1", &error) == 0);
        CHECK(t, engine_client_send(c, SDT_CMD_PAUSE, NULL, &error) == 0);
        CHECK(t, engine_client_stop(c, &error) == 0);
        CHECK_MSG(t, error == NULL, "%s", error);
        CHECK(t, pump_until(c, &col, until_exited, 10));
        CHECK(t, col.n[0] == 4);
        if (col.n[0] == 4) {
            CHECK(t, strcmp(col.lines[0][1], "got:{\"t\":\"ping\",\"id\":\"p1\"}") == 0);
            CHECK(t, strcmp(col.lines[0][2], "got:{\"t\":\"pause\"}") == 0);
            CHECK(t, strcmp(col.lines[0][3], "got:{\"t\":\"stop\"}") == 0);
        }
        engine_exit status = {0};
        CHECK(t, engine_client_exit(c, &status) && !status.signaled && status.code == 0);
        char *described = engine_exit_describe(&status);
        CHECK(t, described && strcmp(described, "exit code 0 (done or stopped)") == 0);
        free(described);
        /* a dead engine's stdin: an error, not a signal */
        CHECK(t, engine_client_send(c, SDT_CMD_PING, NULL, &error) == -1);
        CHECK_STR_CONTAINS(t, error, "ping");
        free(error);
        CHECK(t, child_gone(pid));
        engine_client_free(c);
        collected_free(&col);
    }
    close(stray);

    /* An engine that closes its stdin but lives on: EPIPE is reported and the client reads on. */
    char *deaf = write_script(t, dir, "deaf.sh", "exec 0<&-\necho closed\nsleep 0.3\necho bye\nexit 1\n");
    c = start_script(t, deaf, NULL, 0);
    if (c) {
        collected col = {0};
        CHECK(t, pump_until(c, &col, until_first_event_line, 10));
        char *error = NULL;
        CHECK(t, engine_client_send(c, SDT_CMD_PAUSE, NULL, &error) == -1);
        CHECK_STR_CONTAINS(t, error, "no longer reads commands");
        free(error);
        error = NULL;
        CHECK(t, engine_client_send(c, SDT_CMD_PAUSE, NULL, &error) == -1);
        CHECK_STR_CONTAINS(t, error, "closed");
        free(error);
        CHECK(t, pump_until(c, &col, until_exited, 10));
        CHECK(t, col.n[0] == 2 && col.n[0] == 2 && strcmp(col.lines[0][1], "bye") == 0);
        engine_exit status = {0};
        CHECK(t, engine_client_exit(c, &status) && status.code == 1);
        engine_client_free(c);
        collected_free(&col);
    }
    free(deaf);

    /* A program that cannot be run: the start fails and says why. */
    engine_client_options missing = {.engine_path = "/nonexistent/sdtune-engine", .config_path = "x.toml"};
    engine_client *none = NULL;
    char *error = NULL;
    CHECK(t, engine_client_start(&missing, &none, &error) == -1 && none == NULL);
    CHECK_STR_CONTAINS(t, error, "cannot run the engine /nonexistent/sdtune-engine");
    free(error);
    free(path);
    test_remove_tree(dir);
    free(dir);
}

static void test_abort_escalation(test_state *t)
{
    signal(SIGPIPE, SIG_IGN);
    char *dir = make_temp_dir();
    /* Ignores `abort` (never reads stdin) and survives SIGTERM (says so): only SIGKILL ends it. */
    char *stubborn = write_script(t, dir, "stubborn.sh",
                                  "trap 'echo got-term' TERM\n"
                                  "echo ready\n"
                                  "while :; do sleep 0.05; done\n");
    engine_client_options options = {.engine_path = stubborn,
                                     .args = (const char *const[]){NULL},
                                     .term_after_s = 0.3,
                                     .kill_after_s = 0.3};
    engine_client *c = NULL;
    CHECK(t, engine_client_start(&options, &c, NULL) == 0);
    if (c) {
        pid_t pid = engine_client_pid(c);
        collected col = {0};
        CHECK(t, pump_until(c, &col, until_first_event_line, 10));
        double start = engine_client_now();
        CHECK(t, engine_client_abort(c, start, NULL) == 0);
        CHECK(t, engine_client_tick(c, start + 0.1) == ENGINE_CLIENT_RUNNING); /* nothing due yet */
        CHECK(t, pump_until(c, &col, until_exited, 10));
        double took = engine_client_now() - start;
        CHECK_MSG(t, took >= 0.55 && took < 5, "took %.2f s", took);
        CHECK(t, col.n[0] == 2 && strcmp(col.lines[0][1], "got-term") == 0); /* SIGTERM came first */
        engine_exit status = {0};
        CHECK(t, engine_client_exit(c, &status) && status.signaled && status.signal == SIGKILL);
        CHECK(t, child_gone(pid));
        engine_client_free(c);
        collected_free(&col);
    }

    /* One that ignores `abort` but not SIGTERM: no SIGKILL needed. */
    char *deaf = write_script(t, dir, "deaf.sh", "echo ready\nwhile :; do sleep 0.05; done\n");
    options.engine_path = deaf;
    options.kill_after_s = 30;
    c = NULL;
    CHECK(t, engine_client_start(&options, &c, NULL) == 0);
    if (c) {
        pid_t pid = engine_client_pid(c);
        collected col = {0};
        CHECK(t, pump_until(c, &col, until_first_event_line, 10));
        CHECK(t, engine_client_abort(c, engine_client_now(), NULL) == 0);
        CHECK(t, pump_until(c, &col, until_exited, 10));
        engine_exit status = {0};
        CHECK(t, engine_client_exit(c, &status) && status.signaled && status.signal == SIGTERM);
        CHECK(t, child_gone(pid));
        engine_client_free(c);
        collected_free(&col);
    }

    /* Freeing a client whose engine still runs kills and reaps it. */
    c = NULL;
    options.engine_path = deaf;
    CHECK(t, engine_client_start(&options, &c, NULL) == 0);
    if (c) {
        pid_t pid = engine_client_pid(c);
        collected col = {0};
        CHECK(t, pump_until(c, &col, until_first_event_line, 10));
        CHECK(t, engine_client_tick(c, engine_client_now()) == ENGINE_CLIENT_RUNNING);
        engine_client_free(c);
        CHECK(t, child_gone(pid));
        collected_free(&col);
    }
    free(stubborn);
    free(deaf);
    test_remove_tree(dir);
    free(dir);
}

static void test_find_engine(test_state *t)
{
    char *dir = make_temp_dir();
    char *other = make_temp_dir();
    char *engine = write_script(t, dir, "sdtune-engine", "exit 0\n");
    char *self = sdt_format("%s/sdtune", dir);
    char *error = NULL;
    char *found = engine_client_find_engine(self, &error);
    CHECK(t, found && strcmp(found, engine) == 0);
    free(found);

    /* not beside the UI: PATH, skipping folders without it */
    char *self_elsewhere = sdt_format("%s/sdtune", other);
    const char *old_path = getenv("PATH");
    char *saved_path = old_path ? sdt_strdup(old_path) : NULL;
    char *path = sdt_format("/nonexistent:%s:%s", other, dir);
    setenv("PATH", path, 1);
    found = engine_client_find_engine(self_elsewhere, &error);
    CHECK(t, found && strcmp(found, engine) == 0);
    free(found);
    setenv("PATH", other, 1);
    found = engine_client_find_engine(self_elsewhere, &error);
    CHECK(t, found == NULL);
    CHECK_STR_CONTAINS(t, error, "no sdtune-engine beside the UI");
    if (saved_path)
        setenv("PATH", saved_path, 1);
    else
        unsetenv("PATH");
    /* a non-executable file of that name does not count */
    chmod(engine, 0644);
    found = engine_client_find_engine(self, &error);
    CHECK(t, found == NULL || strcmp(found, engine) != 0);
    free(found);
    free(error);
    free(saved_path);
    free(path);
    free(self_elsewhere);
    free(self);
    free(engine);
    test_remove_tree(dir);
    test_remove_tree(other);
    free(dir);
    free(other);
}

/* ---- the real engine
 * ------------------------------------------------------------------------------------------ */

/* A copy of the repository's config.toml writing to dir/name, `steps` steps of one image, no samples, the
 * latents cached on disk.
 * Returns the config's path. */
static char *make_config(test_state *t, const char *dir, const char *name, int steps)
{
    char *text = NULL, *error = NULL;
    size_t len = 0;
    if (sdt_read_file("config.toml", 1 << 20, &text, &len, &error) != 0) {
        CHECK_MSG(t, false, "config.toml: %s", error ? error : "");
        free(error);
        return NULL;
    }
    char *out_dir = sdt_format("\"%s/%s\"", dir, name);
    char *steps_text = sdt_format("%d", steps);
    text = test_toml_set_key(text, "folders", "output_dir", out_dir);
    text = test_toml_set_key(text, "folders", "output_name", "\"demo\"");
    text = test_toml_set_key(text, "training", "max_train_steps", steps_text);
    text = test_toml_set_key(text, "training", "train_batch_size", "1");
    text = test_toml_set_key(text, "sampling", "sample_every_n_steps", "0");
    /* The latents of the demo's images are encoded once, by the first run, into the test's cache. */
    text = test_toml_set_key(text, "dataset", "cache_latents_to_disk", "true");
    char *path = sdt_format("%s/%s.toml", dir, name);
    CHECK_MSG(t, text && sdt_atomic_write(path, text, strlen(text), &error) == 0, "%s", error ? error : "");
    free(error);
    free(out_dir);
    free(steps_text);
    free(text);
    return path;
}

static engine_client *start_engine(test_state *t, const char *config)
{
    engine_client_options options = {.engine_path = SDT_ENGINE_PATH, .config_path = config};
    engine_client *c = NULL;
    char *error = NULL;
    CHECK_MSG(t, engine_client_start(&options, &c, &error) == 0, "%s", error ? error : "");
    free(error);
    return c;
}

static bool file_exists(const char *dir, const char *name)
{
    char *path = sdt_format("%s/%s", dir, name);
    struct stat st;
    bool ok = path && stat(path, &st) == 0 && st.st_size > 0;
    free(path);
    return ok;
}

static void dump_log(const run_state *s)
{
    for (size_t i = 0; i < run_state_log_count(s); i++)
        fprintf(stderr, "  engine log: %s\n", run_state_log_at(s, i)->text);
}

static void test_real_run(test_state *t, const char *dir)
{
    char *config = make_config(t, dir, "whole", 8);
    engine_client *c = config ? start_engine(t, config) : NULL;
    if (!c) {
        free(config);
        return;
    }
    int failures_before = t->failures;
    run_state state;
    CHECK(t, run_state_init(&state, NULL, NULL) == 0);
    collected col = {.state = &state};
    CHECK(t, pump_until(c, &col, until_exited, 60));
    CHECK(t, col.n[0] > 0 && strncmp(col.lines[0][0], "{\"t\":\"hello\"", 12) == 0);
    CHECK(t, state.have_hello && state.backend && strcmp(state.backend, "cpu") == 0 &&
                 !state.version_unsupported);
    CHECK(t, state.engine_pid == engine_client_pid(c));
    static const sdt_phase expected[] = {SDT_PHASE_LOADING, SDT_PHASE_CACHING, SDT_PHASE_TRAINING,
                                         SDT_PHASE_SAVING, SDT_PHASE_DONE};
    CHECK_MSG(t, col.n_phases == 5, "%zu phases", col.n_phases);
    for (size_t i = 0; i < 5 && i < col.n_phases; i++)
        CHECK(t, col.phases[i] == expected[i]);
    CHECK(t, state.have_progress && state.step == 8 && state.total_steps == 8 && state.epoch == 1);
    CHECK(t, state.loss_history.count == 8 && isfinite(state.loss) && state.loss > 0);
    CHECK(t, state.have_memory && state.memory_kind == SDT_MEMORY_RAM && state.memory_total > 0);
    CHECK(t, state.have_done && state.done_exit_code == 0 && state.n_outputs >= 1);
    CHECK(t, state.engine_exited && !state.exit.signaled && state.exit.code == 0 && !state.died_silently);
    CHECK(t, state.malformed_lines == 0);
    CHECK(t, strcmp(run_state_status_text(&state), "done") == 0);
    char *out = sdt_format("%s/whole", dir);
    CHECK(t, file_exists(out, "demo.safetensors"));
    bool listed = false;
    for (size_t i = 0; i < state.n_outputs; i++)
        listed |= strstr(state.outputs[i], "demo.safetensors") != NULL;
    CHECK(t, listed);
    if (t->failures > failures_before)
        dump_log(&state);
    free(out);
    engine_client_free(c);
    run_state_free(&state);
    collected_free(&col);
    free(config);
}

static bool until_training(engine_client *c, collected *col)
{
    return col->state->have_progress || engine_client_phase_of(c) != ENGINE_CLIENT_RUNNING;
}

static bool until_paused(engine_client *c, collected *col)
{
    return col->state->pause == RUN_PAUSED || engine_client_phase_of(c) != ENGINE_CLIENT_RUNNING;
}

static bool until_stepped_on(engine_client *c, collected *col)
{
    return col->state->step > col->pause_step || engine_client_phase_of(c) != ENGINE_CLIENT_RUNNING;
}

static bool never(engine_client *c, collected *col)
{
    (void)c, (void)col;
    return false;
}

static void test_real_pause_resume_stop(test_state *t, const char *dir)
{
    char *config = make_config(t, dir, "paused", 100000);
    engine_client *c = config ? start_engine(t, config) : NULL;
    if (!c) {
        free(config);
        return;
    }
    int failures_before = t->failures;
    run_state state;
    CHECK(t, run_state_init(&state, NULL, NULL) == 0);
    collected col = {.state = &state};
    CHECK(t, pump_until(c, &col, until_training, 60) && state.have_progress);
    CHECK(t, engine_client_send(c, SDT_CMD_PAUSE, "a", NULL) == 0);
    CHECK(t, pump_until(c, &col, until_paused, 30) && state.pause == RUN_PAUSED);
    CHECK(t, strcmp(run_state_status_text(&state), "paused") == 0);
    col.pause_step = state.step;
    pump_until(c, &col, never, 0.5);
    CHECK_MSG(t, state.step == col.pause_step, "stepped while paused: %lld -> %lld",
              (long long)col.pause_step, (long long)state.step);
    CHECK(t, engine_client_send(c, SDT_CMD_RESUME, "b", NULL) == 0);
    CHECK(t, pump_until(c, &col, until_stepped_on, 30) && state.step > col.pause_step);
    CHECK(t, state.pause == RUN_NOT_PAUSED && state.phase == SDT_PHASE_TRAINING);
    CHECK(t, engine_client_stop(c, NULL) == 0);
    CHECK(t, pump_until(c, &col, until_exited, 30));
    CHECK(t, state.stop_acked && state.have_done && state.done_exit_code == 0);
    CHECK(t, state.engine_exited && !state.exit.signaled && state.exit.code == 0);
    CHECK(t, state.step < 100000 && state.malformed_lines == 0);
    char *out = sdt_format("%s/paused", dir);
    CHECK(t, file_exists(out, "demo.safetensors"));
    if (t->failures > failures_before)
        dump_log(&state);
    free(out);
    engine_client_free(c);
    run_state_free(&state);
    collected_free(&col);
    free(config);
}

/* The journal's last line is a `done` event. */
static bool journal_done(const char *journal)
{
    char *text = NULL, *error = NULL;
    size_t len = 0;
    if (sdt_read_file(journal, 64 << 20, &text, &len, &error) != 0) {
        free(error);
        return false;
    }
    while (len > 0 && text[len - 1] == '\n')
        text[--len] = '\0';
    const char *last = strrchr(text, '\n');
    last = last ? last + 1 : text;
    bool done = strncmp(last, "{\"t\":\"done\"", 11) == 0;
    free(text);
    return done;
}

static void test_real_detach(test_state *t, const char *dir)
{
    char *config = make_config(t, dir, "detached", 16);
    engine_client *c = config ? start_engine(t, config) : NULL;
    if (!c) {
        free(config);
        return;
    }
    int failures_before = t->failures;
    run_state state;
    CHECK(t, run_state_init(&state, NULL, NULL) == 0);
    collected col = {.state = &state};
    CHECK(t, pump_until(c, &col, until_training, 60) && state.have_progress);
    CHECK(t, state.step < 16);
    engine_client_detach(c);
    int fds[2];
    CHECK(t, engine_client_fds(c, fds) == 0);
    CHECK(t, engine_client_phase_of(c) == ENGINE_CLIENT_DETACHED);
    pid_t pid = engine_client_pid(c);
    char *journal = sdt_format("%s/detached/demo.events.jsonl", dir);
    double end = engine_client_now() + 60;
    engine_exit status = {0};
    bool stays_detached = true;
    while (!engine_client_exit(c, &status) && engine_client_now() < end) {
        struct timespec ms = {0, 20000000};
        nanosleep(&ms, NULL);
        stays_detached &= engine_client_tick(c, engine_client_now()) == ENGINE_CLIENT_DETACHED;
    }
    CHECK(t, stays_detached);
    CHECK(t, engine_client_exit(c, &status) && !status.signaled && status.code == 0);
    CHECK(t, journal_done(journal));
    char *out = sdt_format("%s/detached", dir);
    CHECK(t, file_exists(out, "demo.safetensors"));
    CHECK(t, child_gone(pid));
    if (t->failures > failures_before)
        dump_log(&state);
    free(out);
    free(journal);
    engine_client_free(c);
    run_state_free(&state);
    collected_free(&col);
    free(config);
}

static void test_real_engine(test_state *t)
{
    signal(SIGPIPE, SIG_IGN);
    char *dir = make_temp_dir();
    CHECK(t, dir != NULL);
    if (!dir)
        return;
    /* The demo's assets are made once here, not in the user's cache. */
    char *cache = sdt_format("%s/cache", dir);
    setenv("SDTUNE_CACHE_DIR", cache, 1);
    test_real_run(t, dir);
    test_real_pause_resume_stop(t, dir);
    test_real_detach(t, dir);
    unsetenv("SDTUNE_CACHE_DIR");
    test_remove_tree(dir);
    free(cache);
    free(dir);
}

TEST_MAIN("engine_client", TEST(test_line_assembly), TEST(test_commands_and_exit),
          TEST(test_abort_escalation), TEST(test_find_engine), TEST(test_real_engine))
