/* The engine's child process: start, pipes, line assembly, commands, abort escalation, detach, reaping.
 * See engine_client.h and docs/tui.md, "Running the engine". */
#define _GNU_SOURCE /* pipe2, close_range */
#include "run/engine_client.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sdtune/strutil.h"

#define ENGINE_PROGRAM_NAME "sdtune-engine"
/* At most this much is read from one stream per pump, so a flood of output cannot starve the UI's loop. */
#define PUMP_BYTES_PER_STREAM (1 << 20)

/* One output stream of the child and the line it is in the middle of. */
typedef struct line_reader {
    int fd;          /* -1 once at EOF (or closed by detach) */
    char *line;      /* [max_line + 1]: the bytes of the current line so far, NUL room at the end */
    size_t len;      /* bytes in line */
    bool overflowed; /* the current line passed max_line: the rest of it is dropped until '\n' */
} line_reader;

struct engine_client {
    pid_t pid;
    int stdin_fd;           /* our write end of the child's stdin; -1 once closed */
    line_reader streams[2]; /* [ENGINE_STREAM_EVENTS], [ENGINE_STREAM_LOG] */
    size_t max_line;
    double term_after_s, kill_after_s;
    bool detached;
    bool waited_after_eof; /* reap_after_eof ran */
    bool reaped;
    engine_exit exit;
    bool aborting;   /* abort sent: the escalation clock runs */
    double abort_at; /* when abort was asked for */
    bool term_sent, kill_sent;
    double term_sent_at;
};

double engine_client_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

/* ---- the child, between fork and exec: only async-signal-safe calls ------------------------------------ */

/* Marks every fd from 3 up close-on-exec, so the engine inherits only its three pipes (and the exec-error
 * pipe, already close-on-exec, stays writable until exec). */
static void child_mark_fds_cloexec(void)
{
#ifdef CLOSE_RANGE_CLOEXEC
    if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) == 0)
        return;
#endif
    long max_fd = sysconf(_SC_OPEN_MAX);
    if (max_fd < 0 || max_fd > 65536)
        max_fd = 65536; /* a limit in the millions would cost a second of fcntl calls */
    for (int fd = 3; fd < (int)max_fd; fd++)
        fcntl(fd, F_SETFD, FD_CLOEXEC);
}

/* Gives back the signal dispositions a UI changes (an ignored signal stays ignored across exec) and unblocks
 * every signal, so the engine starts as from a shell. */
static void child_reset_signals(void)
{
    static const int signals[] = {SIGPIPE, SIGINT,  SIGQUIT,  SIGTERM, SIGHUP,  SIGCHLD, SIGTSTP,
                                  SIGTTIN, SIGTTOU, SIGWINCH, SIGALRM, SIGUSR1, SIGUSR2};
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++)
        sigaction(signals[i], &dfl, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

static void child_fail(int report_fd, int err)
{
    ssize_t ignored = write(report_fd, &err, sizeof err);
    (void)ignored;
    _exit(127);
}

static void child_exec(int in_r, int out_w, int err_w, int report_fd, const char *dir, char *const *argv)
{
    /* A new session: its own process group, no controlling terminal, so the terminal's Ctrl-C (SIGINT to the
     * foreground group) and hangup do not reach the engine; only our signals and commands do. */
    setsid();
    if (dup2(in_r, STDIN_FILENO) < 0 || dup2(out_w, STDOUT_FILENO) < 0 || dup2(err_w, STDERR_FILENO) < 0)
        child_fail(report_fd, errno);
    if (dir && chdir(dir) != 0)
        child_fail(report_fd, errno);
    child_reset_signals();
    child_mark_fds_cloexec();
    execvp(argv[0], argv);
    child_fail(report_fd, errno);
}

/* ---- start ------------------------------------------------------------------------------------------------
 */

static int set_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    return flags < 0 ? -1 : fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

/* argv for execvp: engine_path, then options->args or `train --protocol CONFIG`, then NULL. The strings are
 * the caller's (nothing is allocated between fork and exec). */
static char **build_argv(const engine_client_options *options)
{
    size_t n_args = 0;
    if (options->args)
        while (options->args[n_args])
            n_args++;
    else
        n_args = 3;
    char **argv = calloc(n_args + 2, sizeof *argv);
    if (!argv)
        return NULL;
    argv[0] = (char *)options->engine_path;
    if (options->args) {
        for (size_t i = 0; i < n_args; i++)
            argv[i + 1] = (char *)options->args[i];
    } else {
        argv[1] = "train";
        argv[2] = "--protocol";
        argv[3] = (char *)options->config_path;
    }
    return argv;
}

static void close_pipes(int pipes[4][2])
{
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 2; j++)
            close_fd(&pipes[i][j]);
}

int engine_client_start(const engine_client_options *options, engine_client **out, char **error)
{
    *out = NULL;
    if (!options || !options->engine_path || !options->engine_path[0])
        return sdt_set_error(error, "engine client: no engine program given");
    if (!options->args && (!options->config_path || !options->config_path[0]))
        return sdt_set_error(error, "engine client: no config given to train");
    engine_client *c = calloc(1, sizeof *c);
    char **argv = build_argv(options);
    if (!c || !argv) {
        free(c);
        free(argv);
        return sdt_set_error(error, "engine client: out of memory");
    }
    c->pid = -1;
    c->stdin_fd = -1;
    c->max_line = options->max_line ? options->max_line : ENGINE_CLIENT_MAX_LINE_DEFAULT;
    c->term_after_s = options->term_after_s > 0 ? options->term_after_s : ENGINE_CLIENT_TERM_AFTER_DEFAULT;
    c->kill_after_s = options->kill_after_s > 0 ? options->kill_after_s : ENGINE_CLIENT_KILL_AFTER_DEFAULT;
    for (int s = 0; s < 2; s++) {
        c->streams[s].fd = -1;
        c->streams[s].line = malloc(c->max_line + 1);
        if (!c->streams[s].line) {
            free(argv);
            engine_client_free(c);
            return sdt_set_error(error, "engine client: out of memory for a %zu-byte line", c->max_line);
        }
    }

    /* [0] stdin, [1] stdout, [2] stderr, [3] exec-error report; all close-on-exec in this process, so an
     * engine started later (or any other child) does not inherit them. */
    int pipes[4][2] = {{-1, -1}, {-1, -1}, {-1, -1}, {-1, -1}};
    for (int i = 0; i < 4; i++) {
        if (pipe2(pipes[i], O_CLOEXEC) != 0) {
            int err = errno;
            close_pipes(pipes);
            free(argv);
            engine_client_free(c);
            return sdt_set_error(error, "engine client: cannot make a pipe: %s", strerror(err));
        }
    }
    pid_t pid = fork();
    if (pid < 0) {
        int err = errno;
        close_pipes(pipes);
        free(argv);
        engine_client_free(c);
        return sdt_set_error(error, "engine client: cannot start %s: fork: %s", options->engine_path,
                             strerror(err));
    }
    if (pid == 0)
        child_exec(pipes[0][0], pipes[1][1], pipes[2][1], pipes[3][1], options->working_dir, argv);
    free(argv);
    c->pid = pid;
    close_fd(&pipes[0][0]);
    close_fd(&pipes[1][1]);
    close_fd(&pipes[2][1]);
    close_fd(&pipes[3][1]);

    /* The report pipe closes at a successful exec (close-on-exec) or carries the errno of a failed one. */
    int child_errno = 0;
    ssize_t got;
    do
        got = read(pipes[3][0], &child_errno, sizeof child_errno);
    while (got < 0 && errno == EINTR);
    close_fd(&pipes[3][0]);
    c->stdin_fd = pipes[0][1];
    c->streams[ENGINE_STREAM_EVENTS].fd = pipes[1][0];
    c->streams[ENGINE_STREAM_LOG].fd = pipes[2][0];
    if (got == (ssize_t)sizeof child_errno) {
        engine_client_free(c); /* reaps the child, which has already left with 127 */
        return sdt_set_error(error, "cannot run the engine %s: %s", options->engine_path,
                             strerror(child_errno));
    }
    if (set_nonblocking(c->stdin_fd) != 0 || set_nonblocking(pipes[1][0]) != 0 ||
        set_nonblocking(pipes[2][0]) != 0) {
        int err = errno;
        engine_client_free(c);
        return sdt_set_error(error, "engine client: cannot make the engine's pipes non-blocking: %s",
                             strerror(err));
    }
    *out = c;
    return 0;
}

/* ---- reading ----------------------------------------------------------------------------------------------
 */

int engine_client_fds(const engine_client *c, int fds[2])
{
    int open = 0;
    for (int s = 0; s < 2; s++) {
        fds[s] = c->streams[s].fd;
        open += fds[s] >= 0;
    }
    return open;
}

static void deliver_line(engine_client *c, engine_stream stream, engine_line_fn on_line, void *ctx,
                         int *delivered)
{
    line_reader *r = &c->streams[stream];
    if (!r->overflowed && r->len > 0 && r->line[r->len - 1] == '\r')
        r->len--;
    r->line[r->len] = '\0';
    if (on_line)
        on_line(ctx, stream, r->line, r->len, r->overflowed);
    (*delivered)++;
    r->len = 0;
    r->overflowed = false;
}

/* Adds bytes to the stream's current line, delivering each line a '\n' ends. */
static void assemble(engine_client *c, engine_stream stream, const char *bytes, size_t n,
                     engine_line_fn on_line, void *ctx, int *delivered)
{
    line_reader *r = &c->streams[stream];
    while (n > 0) {
        const char *newline = memchr(bytes, '\n', n);
        size_t piece = newline ? (size_t)(newline - bytes) : n;
        if (!r->overflowed) {
            size_t room = c->max_line - r->len;
            size_t keep = piece < room ? piece : room;
            memcpy(r->line + r->len, bytes, keep);
            r->len += keep;
            if (piece > room)
                r->overflowed = true;
        }
        if (!newline)
            break;
        deliver_line(c, stream, on_line, ctx, delivered);
        bytes += piece + 1;
        n -= piece + 1;
    }
}

/* Reaps the child when it has exited; never blocks. */
static void try_reap(engine_client *c)
{
    if (c->reaped || c->pid <= 0)
        return;
    int status = 0;
    pid_t got;
    do
        got = waitpid(c->pid, &status, WNOHANG);
    while (got < 0 && errno == EINTR);
    if (got == c->pid) {
        c->reaped = true;
        if (WIFSIGNALED(status)) {
            c->exit.signaled = true;
            c->exit.signal = WTERMSIG(status);
        } else {
            c->exit.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        }
    } else if (got < 0 && errno == ECHILD) {
        /* Someone else reaped it (a SIGCHLD handler set to SIG_IGN does that): the status is lost. */
        c->reaped = true;
        c->exit.code = -1;
    }
}

/* Both streams closed: the engine is leaving (it closes them when it exits). A short wait turns "at EOF" into
 * "exited with code N" within the same pump, so the UI shows the status at once. */
static void reap_after_eof(engine_client *c)
{
    for (int i = 0; i < 50 && !c->reaped; i++) {
        try_reap(c);
        if (!c->reaped) {
            struct timespec ms = {0, 1000000};
            nanosleep(&ms, NULL);
        }
    }
}

int engine_client_pump(engine_client *c, engine_line_fn on_line, void *ctx, char **error)
{
    int delivered = 0, result = 0;
    char chunk[16384];
    for (int s = 0; s < 2; s++) {
        line_reader *r = &c->streams[s];
        size_t budget = PUMP_BYTES_PER_STREAM;
        while (r->fd >= 0 && budget > 0) {
            ssize_t n = read(r->fd, chunk, sizeof chunk);
            if (n > 0) {
                assemble(c, (engine_stream)s, chunk, (size_t)n, on_line, ctx, &delivered);
                budget -= (size_t)n < budget ? (size_t)n : budget;
                continue;
            }
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                break;
            if (n < 0) {
                result = sdt_set_error(error, "reading the engine's %s: %s", s == 0 ? "stdout" : "stderr",
                                       strerror(errno));
            }
            /* EOF (or a read error, treated the same): a last line without '\n' still counts. */
            if (r->len > 0 || r->overflowed)
                deliver_line(c, (engine_stream)s, on_line, ctx, &delivered);
            close_fd(&r->fd);
        }
    }
    bool both_closed = c->streams[0].fd < 0 && c->streams[1].fd < 0;
    if (both_closed && !c->waited_after_eof && !c->detached) {
        c->waited_after_eof = true; /* once: an engine that closed both and lives on is left to the ticks */
        reap_after_eof(c);
    } else if (c->streams[ENGINE_STREAM_EVENTS].fd < 0) {
        try_reap(c);
    }
    return result < 0 ? -1 : delivered;
}

/* ---- commands ---------------------------------------------------------------------------------------------
 */

int engine_client_send(engine_client *c, sdt_command_type type, const char *id, char **error)
{
    const char *name = sdt_command_type_name(type);
    if (c->stdin_fd < 0)
        return sdt_set_error(error, "cannot send %s: the engine's command input is closed", name);
    sdt_command command = {.type = type, .id = (char *)id};
    char *line = NULL;
    if (sdt_command_encode(&command, &line, error) != 0)
        return -1;
    size_t len = strlen(line), done = 0;
    int result = 0;
    while (done < len) {
        ssize_t n = write(c->stdin_fd, line + done, len - done);
        if (n > 0) {
            done += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EPIPE) {
            /* The engine closed its stdin or died: nothing more can reach it this way. */
            close_fd(&c->stdin_fd);
            result = sdt_set_error(error,
                                   "cannot send %s: the engine no longer reads commands (it has exited "
                                   "or is exiting)",
                                   name);
            break;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            /* A command line is far below PIPE_BUF, so this means 64 KiB of unread commands: a hung engine.
             */
            result = sdt_set_error(error, "cannot send %s: the engine is not reading its commands", name);
            break;
        } else {
            result = sdt_set_error(error, "cannot send %s to the engine: %s", name,
                                   n < 0 ? strerror(errno) : "nothing written");
            break;
        }
    }
    free(line);
    return result;
}

int engine_client_stop(engine_client *c, char **error)
{
    return engine_client_send(c, SDT_CMD_STOP, NULL, error);
}

int engine_client_abort(engine_client *c, double now, char **error)
{
    if (!c->aborting) {
        c->aborting = true;
        c->abort_at = now;
    }
    return engine_client_send(c, SDT_CMD_ABORT, NULL, error);
}

/* To the child's process group (what the engine may have started goes too); to the child alone when the
 * group is not there yet (the child had not reached setsid). Never after reaping: the pid may be reused. */
static void signal_child(engine_client *c, int sig)
{
    if (c->reaped || c->pid <= 0)
        return;
    if (kill(-c->pid, sig) != 0)
        kill(c->pid, sig);
}

engine_client_phase engine_client_tick(engine_client *c, double now)
{
    try_reap(c);
    if (c->aborting && !c->reaped) {
        if (!c->term_sent && now >= c->abort_at + c->term_after_s) {
            signal_child(c, SIGTERM);
            c->term_sent = true;
            c->term_sent_at = now;
        } else if (c->term_sent && !c->kill_sent && now >= c->term_sent_at + c->kill_after_s) {
            signal_child(c, SIGKILL);
            c->kill_sent = true;
        }
    }
    return engine_client_phase_of(c);
}

void engine_client_detach(engine_client *c)
{
    c->detached = true;
    c->aborting = false; /* a detached engine is never signalled */
    close_fd(&c->stdin_fd);
    for (int s = 0; s < 2; s++) {
        close_fd(&c->streams[s].fd);
        c->streams[s].len = 0;
        c->streams[s].overflowed = false;
    }
    try_reap(c);
}

/* ---- state ------------------------------------------------------------------------------------------------
 */

engine_client_phase engine_client_phase_of(const engine_client *c)
{
    if (c->detached)
        return ENGINE_CLIENT_DETACHED;
    return c->reaped ? ENGINE_CLIENT_EXITED : ENGINE_CLIENT_RUNNING;
}

pid_t engine_client_pid(const engine_client *c) { return c->pid; }

bool engine_client_exit(const engine_client *c, engine_exit *out)
{
    if (!c->reaped)
        return false;
    *out = c->exit;
    return true;
}

char *engine_exit_describe(const engine_exit *e)
{
    if (e->signaled) {
        const char *name = strsignal(e->signal);
        return sdt_format("killed by signal %d (%s)", e->signal, name ? name : "unknown");
    }
    static const char *const meanings[] = {"done or stopped", "failed", "usage or config error", "aborted"};
    if (e->code >= 0 && e->code < 4)
        return sdt_format("exit code %d (%s)", e->code, meanings[e->code]);
    if (e->code < 0)
        return sdt_strdup("exited, status unknown");
    return sdt_format("exit code %d", e->code);
}

void engine_client_free(engine_client *c)
{
    if (!c)
        return;
    close_fd(&c->stdin_fd);
    for (int s = 0; s < 2; s++) {
        close_fd(&c->streams[s].fd);
        free(c->streams[s].line);
    }
    if (c->pid > 0 && !c->reaped && !c->detached) {
        signal_child(c, SIGKILL);
        int status;
        while (waitpid(c->pid, &status, 0) < 0 && errno == EINTR) {
        }
    } else if (c->detached) {
        try_reap(c);
    }
    free(c);
}

/* ---- where the engine is ----------------------------------------------------------------------------------
 */

static bool is_executable_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

char *engine_client_find_engine(const char *self_exe, char **error)
{
    char self[PATH_MAX];
    if (!self_exe) {
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n > 0) {
            self[n] = '\0';
            self_exe = self;
        }
    }
    char *beside = NULL;
    if (self_exe) {
        const char *slash = strrchr(self_exe, '/');
        beside = slash ? sdt_format("%.*s/%s", (int)(slash - self_exe), self_exe, ENGINE_PROGRAM_NAME)
                       : sdt_format("./%s", ENGINE_PROGRAM_NAME);
        if (beside && is_executable_file(beside))
            return beside;
    }
    const char *path = getenv("PATH");
    for (const char *dir = path; dir && *dir != '\0';) {
        const char *end = strchr(dir, ':');
        size_t len = end ? (size_t)(end - dir) : strlen(dir);
        /* An empty PATH entry means the current directory. */
        char *candidate = len ? sdt_format("%.*s/%s", (int)len, dir, ENGINE_PROGRAM_NAME)
                              : sdt_format("./%s", ENGINE_PROGRAM_NAME);
        if (candidate && is_executable_file(candidate)) {
            free(beside);
            return candidate;
        }
        free(candidate);
        if (!end)
            break;
        dir = end + 1;
    }
    sdt_set_error(error, "no %s beside the UI (%s) or on PATH", ENGINE_PROGRAM_NAME,
                  beside ? beside : "its folder is unknown");
    free(beside);
    return NULL;
}
