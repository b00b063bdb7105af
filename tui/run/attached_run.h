/* A run the UI did not start, followed through its journal: an engine another sdtune started and left
 * training (live_run.h finds it). The journal is read as it grows (journal_follow.h) and the lines go to
 * the same callback as an engine client's stdout, so one run_state shows either kind of run.
 *
 * The engine's command input belongs to the UI that started it (or was closed when that UI left), so the
 * only controls are signals (docs/protocol.md, "Signals": SIGTERM, SIGINT and SIGHUP alike, the first a
 * stop, the second an abort): stop is one SIGTERM (the engine finishes its step, saves and exits 0); abort
 * is a SIGTERM and a SIGINT at once, then SIGKILL kill_after_s later while it lives. The abort's second
 * signal is another number because two SIGTERMs sent together can merge into one pending signal (a mere
 * stop), and waiting between them lets a quick engine save and exit before the second comes. Before every
 * signal the pid is checked to still be an sdtune-engine, so a pid reused by another program is never
 * signalled. The end is the pid disappearing; the exit status is not ours to know (the engine is not our
 * child), only what its `done` or `error` event says.
 *
 * No curses, no global state, no signal handlers. */
#ifndef SDTUNE_TUI_ATTACHED_RUN_H
#define SDTUNE_TUI_ATTACHED_RUN_H

#include <stdbool.h>
#include <stdint.h>

#include "run/engine_client.h"
#include "run/live_run.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct attached_run_options {
    double
        kill_after_s; /* abort: SIGKILL this long after the signals; 0 = ENGINE_CLIENT_KILL_AFTER_DEFAULT */
} attached_run_options;

typedef enum attached_phase {
    ATTACHED_RUNNING, /* the engine lives */
    ATTACHED_ENDED,   /* its pid is gone (or is no longer an sdtune-engine) */
} attached_phase;

typedef struct attached_run attached_run;

/* Follows the run found (found->live should be true) from its `hello`. options may be NULL. Returns 0, or -1
 * with *error when out of memory. */
int attached_run_open(const live_run *found, const attached_run_options *options, attached_run **out,
                      char **error);

/* Reads the journal's new lines into on_line. *restarted (may be NULL) is set when the journal was
 * replaced or truncated and is read again from its start. Returns the lines delivered, or -1 with *error
 * when the journal cannot be read. */
int attached_run_pump(attached_run *r, engine_line_fn on_line, void *ctx, bool *restarted, char **error);
/* The last pump stopped at its read limit: more lines are there now. */
bool attached_run_has_more(const attached_run *r);

/* Notices the engine's end and escalates an abort due by now. Returns the phase. After it first returns
 * ATTACHED_ENDED, pump once more: the engine's last lines were written before it went. */
attached_phase attached_run_tick(attached_run *r, double now);

/* One SIGTERM: a graceful stop that saves. A second call does nothing (a second SIGTERM would abort). */
int attached_run_stop(attached_run *r, char **error);
/* SIGTERM and SIGINT (only SIGINT after a stop), then SIGKILL kill_after_s later while the engine lives
 * (a tick sends it). */
int attached_run_abort(attached_run *r, double now, char **error);

attached_phase attached_run_phase(const attached_run *r);
int64_t attached_run_pid(const attached_run *r);
bool attached_run_stop_sent(const attached_run *r);
bool attached_run_abort_sent(const attached_run *r);
const char *attached_run_journal(const attached_run *r);

/* Frees the follower; the engine is left alone (it keeps training, or ends as it was told). */
void attached_run_free(attached_run *r);

#ifdef __cplusplus
}
#endif
#endif
