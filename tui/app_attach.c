/* Re-attaching to a run another sdtune started (see app.h, "Re-attaching", and docs/tui.md): the run is
 * found through its journal (run/live_run.h), replayed from its hello and followed as the journal grows
 * (run/attached_run.h), into the same run state and log the run view draws for an engine of our own. */
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "sdtune/strutil.h"

/* "what: error" in the run's log and as the message; frees error. */
static void attach_problem(app *a, const char *what, char *error)
{
    char *text = sdt_format("%s: %s", what, error ? error : "unknown error");
    if (text && a->have_run)
        run_state_log_add(&a->run, SDT_LOG_ERROR, text);
    app_set_message(a, text);
    free(error);
}

bool app_attached_running(const app *a)
{
    return a->attached && attached_run_phase(a->attached) == ATTACHED_RUNNING;
}

bool app_attach_if_live(app *a)
{
    if (app_engine_running(a) || app_attached_running(a))
        return false;
    live_run found;
    char *error = NULL;
    if (live_run_find(a->cfg, &found, &error) != 0 || !found.live) {
        free(error); /* no journal to read, or nothing live in it: there is nothing to attach to */
        live_run_free(&found);
        return false;
    }
    app_clear_run(a);
    if (run_state_init(&a->run, NULL, &error) != 0) {
        attach_problem(a, "cannot attach", error);
        live_run_free(&found);
        return false;
    }
    if (sb_init(&a->log, RUN_STATE_LOG_LINES_DEFAULT) != 0) {
        run_state_free(&a->run);
        app_set_message(a, sdt_format("cannot attach: out of memory"));
        live_run_free(&found);
        return false;
    }
    a->have_run = true;
    a->view = VIEW_RUN;
    if (attached_run_open(&found, NULL, &a->attached, &error) != 0) {
        attach_problem(a, "cannot attach", error);
        live_run_free(&found);
        return false;
    }
    char *text = sdt_format("attached to pid %lld: replaying %s from the run's start, then following it",
                            (long long)found.pid, found.journal);
    if (text)
        run_state_log_add(&a->run, SDT_LOG_INFO, text);
    free(text);
    app_set_message(a,
                    sdt_format("Attached to the run of pid %lld (from its journal)", (long long)found.pid));
    live_run_free(&found);
    return true;
}

static void pump_journal(app *a)
{
    bool restarted = false;
    char *error = NULL;
    if (attached_run_pump(a->attached, run_state_on_line, &a->run, &restarted, &error) < 0)
        attach_problem(a, "reading the journal", error);
    if (restarted)
        run_state_log_add(&a->run, SDT_LOG_WARNING,
                          "the journal was replaced or truncated: reading it again from its start");
}

void app_attach_service(app *a)
{
    if (!a->attached)
        return;
    bool was_running = app_attached_running(a);
    pump_journal(a);
    if (!was_running || attached_run_tick(a->attached, engine_client_now()) != ATTACHED_ENDED)
        return;
    pump_journal(a); /* the lines it wrote before it went */
    /* Not our child: its exit status cannot be known, only what its last events said. */
    a->run.engine_exited = true;
    a->run.died_silently = !a->run.have_done && !a->run.have_error;
    char *text =
        sdt_format("engine pid %lld ended%s; its exit status is unknown (not a child of this sdtune)",
                   (long long)attached_run_pid(a->attached),
                   a->run.died_silently ? " without a done or error event" : "");
    if (text)
        run_state_log_add(&a->run, a->run.died_silently ? SDT_LOG_WARNING : SDT_LOG_INFO, text);
    free(text);
}

void app_attach_stop(app *a)
{
    char *error = NULL;
    if (attached_run_stop(a->attached, &error) != 0) {
        attach_problem(a, "stop not sent", error);
        return;
    }
    a->run.stop_acked = true; /* the engine takes the signal as a stop: "stopping" until it is done */
    char *text = sdt_format("SIGTERM sent to pid %lld: it finishes its step, saves and exits",
                            (long long)attached_run_pid(a->attached));
    if (text)
        run_state_log_add(&a->run, SDT_LOG_INFO, text);
    app_set_message(a, text);
}

void app_attach_abort(app *a)
{
    char *error = NULL;
    if (attached_run_abort(a->attached, engine_client_now(), &error) != 0) {
        attach_problem(a, "abort not sent", error);
        return;
    }
    a->run.abort_acked = true;
    char *text =
        sdt_format("SIGTERM and SIGINT sent to pid %lld: it aborts without saving (SIGKILL if it hangs)",
                   (long long)attached_run_pid(a->attached));
    if (text)
        run_state_log_add(&a->run, SDT_LOG_INFO, text);
    app_set_message(a, text);
}

char *app_attach_engine_line(const app *a, bool *good, bool *bad)
{
    const run_state *r = &a->run;
    long long pid = (long long)attached_run_pid(a->attached);
    *good = *bad = false;
    /* With the `device` event the run view's label says where the run trains; before it, hello's guess. */
    if (app_attached_running(a) && r->have_device)
        return sdt_format("attached to pid %lld (from the journal)", pid);
    if (app_attached_running(a))
        return sdt_format("attached to pid %lld (from the journal)%s%s%s%s", pid, r->backend ? " on " : "",
                          r->backend ? r->backend : "", r->device ? " " : "", r->device ? r->device : "");
    const char *what = r->have_done    ? (r->done_exit_code == 3 ? "aborted" : "done")
                       : r->have_error ? "failed"
                                       : "gone without a done event";
    *good = r->have_done && r->done_exit_code == 0;
    *bad = !*good;
    return sdt_format(
        "engine pid %lld ended (%s)%s%s; exit status unknown: not our child.  F5 starts a new run", pid, what,
        r->have_error && r->error_message ? ": " : "",
        r->have_error && r->error_message ? r->error_message : "");
}
