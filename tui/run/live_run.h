/* Finding a run that is still going: the engine another sdtune started and left training (quitting with
 * `l`, or a lost SSH session), found through its journal, `<output_dir>/<output_name>.events.jsonl`.
 *
 * A journal may hold several runs (a resumed run appends), each starting with a `hello` that names the
 * engine's pid. The run is the one from the last `hello`; it is live when no `done` follows that `hello`
 * and the pid is a living sdtune-engine process. An `error` event does not end a run by itself (a
 * malformed command gets one and the run goes on): an engine that failed exits, and its pid tells.
 *
 * No curses, no global state, no printing. */
#ifndef SDTUNE_TUI_LIVE_RUN_H
#define SDTUNE_TUI_LIVE_RUN_H

#include <stdbool.h>
#include <stdint.h>

#include "sdtune/config.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct live_run {
    char *journal;         /* the journal's path (owned) */
    bool journal_exists;   /* the file is there */
    bool have_hello;       /* a `hello` was found */
    uint64_t hello_offset; /* the byte offset of the last `hello` line: where the run starts */
    int64_t pid;           /* the pid of the last `hello`; -1 when none */
    bool done;             /* a `done` follows the last `hello` */
    bool error;            /* an `error` follows it */
    bool engine_alive;     /* pid is a living sdtune-engine */
    bool live;             /* have_hello && !done && engine_alive */
} live_run;

/* "<output_dir>/<output_name>.events.jsonl" of the config's effective values, as the engine names it
 * (relative paths are relative to the working directory, as for the engine the UI starts). A new string,
 * or NULL with *error. */
char *live_run_journal_path(const sdt_config *cfg, char **error);

/* Reads the journal at path and fills *out (live_run_free frees it). A missing journal is no error: the
 * run is then not live. Returns 0, or -1 with *error when the file cannot be read. */
int live_run_scan(const char *path, live_run *out, char **error);

/* live_run_scan of the config's journal. */
int live_run_find(const sdt_config *cfg, live_run *out, char **error);

/* Whether pid is a living process (not a zombie) running sdtune-engine: on Linux its /proc/PID/cmdline's
 * first argument or its /proc/PID/exe is named sdtune-engine, so a pid reused by another program does not
 * count. Without /proc only whether the pid exists is known. */
bool live_run_pid_is_engine(int64_t pid);

void live_run_free(live_run *r);

#ifdef __cplusplus
}
#endif
#endif
