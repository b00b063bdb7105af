/* The UI's side of a training run's process: starts `sdtune-engine train --protocol CONFIG` as a child with
 * three pipes, assembles its stdout (protocol events) and stderr (human log lines) into lines without ever
 * blocking, sends commands, stops, aborts (command, then SIGTERM, then SIGKILL, escalated by a tick the
 * caller drives), detaches, and notices and reaps the child's death.
 *
 * No curses, no global state, no signal handlers. The calling process must ignore SIGPIPE
 * (signal(SIGPIPE, SIG_IGN)): a command written to an engine that has died is then an EPIPE error that
 * engine_client_send reports, instead of a signal that kills the UI.
 *
 * The event loop polls the fds from engine_client_fds (POLLIN), calls engine_client_pump when one is ready,
 * and calls engine_client_tick every so often (a few times a second while a client exists): the tick reaps
 * the child once it has exited and escalates an abort. docs/tui.md, "Running the engine", has the details. */
#ifndef SDTUNE_TUI_ENGINE_CLIENT_H
#define SDTUNE_TUI_ENGINE_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "sdtune/protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ENGINE_CLIENT_MAX_LINE_DEFAULT 65536  /* bytes; the protocol's own limit for a command line */
#define ENGINE_CLIENT_TERM_AFTER_DEFAULT 10.0 /* seconds from `abort` to SIGTERM */
#define ENGINE_CLIENT_KILL_AFTER_DEFAULT 5.0  /* seconds from SIGTERM to SIGKILL */

typedef enum engine_stream {
    ENGINE_STREAM_EVENTS, /* the child's stdout: protocol events, JSON Lines */
    ENGINE_STREAM_LOG,    /* the child's stderr: human log lines */
} engine_stream;

typedef struct engine_client_options {
    const char *engine_path; /* the program to run (see engine_client_find_engine) */
    const char *config_path; /* CONFIG in `train --protocol CONFIG` */
    /* When set, the whole argument list after argv[0] instead of `train --protocol CONFIG` (NULL-ended);
     * config_path is then ignored. For tests and other subcommands. */
    const char *const *args;
    const char *working_dir; /* the child's working directory; NULL keeps ours */
    size_t max_line;         /* longest line delivered, in bytes; 0 = ENGINE_CLIENT_MAX_LINE_DEFAULT */
    double term_after_s;     /* abort -> SIGTERM; 0 = ENGINE_CLIENT_TERM_AFTER_DEFAULT */
    double kill_after_s;     /* SIGTERM -> SIGKILL; 0 = ENGINE_CLIENT_KILL_AFTER_DEFAULT */
} engine_client_options;

/* One whole line of the child's output, without its '\n' (and without a '\r' before it). text is
 * NUL-terminated and valid only during the call. truncated: the line was longer than max_line, and text
 * holds its first max_line bytes (the rest was dropped). A last line without '\n' is delivered at EOF. */
typedef void (*engine_line_fn)(void *ctx, engine_stream stream, const char *text, size_t len, bool truncated);

typedef enum engine_client_phase {
    ENGINE_CLIENT_RUNNING,  /* the child runs; we hold its pipes */
    ENGINE_CLIENT_EXITED,   /* the child exited (or was killed) and was reaped: see engine_client_exit */
    ENGINE_CLIENT_DETACHED, /* we let it go: pipes closed, it trains on and journals on its own */
} engine_client_phase;

typedef struct engine_exit {
    bool signaled; /* killed by a signal: `signal` is set, `code` is not */
    int code;      /* exit code: 0 done or stopped, 1 failed, 2 config error, 3 aborted (docs/protocol.md) */
    int signal;
} engine_exit;

typedef struct engine_client engine_client;

/* Starts the engine with fresh stdin/stdout/stderr pipes, in a new session (so its own process group: a
 * Ctrl-C or a hangup of the UI's terminal does not reach it), with every other fd closed and the signals the
 * UI may have changed back to their defaults. Fails (-1, *error) when the program cannot be executed. */
int engine_client_start(const engine_client_options *options, engine_client **out, char **error);

/* The fds to poll for POLLIN: the child's stdout and stderr, -1 for one already at EOF. Returns how many
 * are still open (0 once both reached EOF or after detach). */
int engine_client_fds(const engine_client *c, int fds[2]);

/* Reads what the child has written without blocking and calls on_line for each whole line, in order per
 * stream. At EOF on stdout it checks (without blocking) whether the child has exited. Returns the number of
 * lines delivered, or -1 with *error on a read error (the stream is then treated as closed). */
int engine_client_pump(engine_client *c, engine_line_fn on_line, void *ctx, char **error);

/* Sends one command (sdt_command_encode). A child that no longer reads its stdin (it died, or closed it) is
 * an error (-1, *error says so), never a signal; the client stays usable to read the child's last lines. */
int engine_client_send(engine_client *c, sdt_command_type type, const char *id, char **error);

/* `stop`: the engine finishes its step, saves and exits 0. The same as engine_client_send(STOP). */
int engine_client_stop(engine_client *c, char **error);

/* `abort`, and starts the escalation clock at now (seconds, any monotonic origin: engine_client_now()):
 * engine_client_tick sends SIGTERM term_after_s later and SIGKILL kill_after_s after that, to the child's
 * process group, while the child lives. A failed write of the command only skips to the timeouts. */
int engine_client_abort(engine_client *c, double now, char **error);

/* Reaps the child if it has exited and escalates an abort due by now. Returns the client's phase. */
engine_client_phase engine_client_tick(engine_client *c, double now);

/* Lets the engine run on without us: closes our ends of its pipes. The engine ignores SIGPIPE and goes on
 * after EOF on stdin, so it keeps training and writing its journal. It stays our child: later ticks still
 * reap it when it ends; a UI that exits leaves it to init. */
void engine_client_detach(engine_client *c);

engine_client_phase engine_client_phase_of(const engine_client *c);
pid_t engine_client_pid(const engine_client *c);
/* true and *out set once the child has been reaped. */
bool engine_client_exit(const engine_client *c, engine_exit *out);
/* "exit code 0", "exit code 3 (aborted)", "killed by signal 9 (Killed)": a new string, caller frees. */
char *engine_exit_describe(const engine_exit *e);

/* Frees the client. A child still running (and not detached) is killed (SIGKILL to its group) and reaped,
 * so no zombie is left; a detached one is left running. */
void engine_client_free(engine_client *c);

/* Monotonic seconds (CLOCK_MONOTONIC), for engine_client_abort and engine_client_tick. */
double engine_client_now(void);

/* Where the engine is: `sdtune-engine` beside self_exe (NULL: this process's /proc/self/exe), else the first
 * executable `sdtune-engine` on PATH. A new string (caller frees), or NULL with *error naming the places
 * looked in. */
char *engine_client_find_engine(const char *self_exe, char **error);

#ifdef __cplusplus
}
#endif
#endif
