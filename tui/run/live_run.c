/* Finding a live run from its journal (see live_run.h). */
#include "run/live_run.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "run/journal_follow.h"
#include "sdtune/protocol.h"
#include "sdtune/strutil.h"

#define ENGINE_NAME "sdtune-engine"

char *live_run_journal_path(const sdt_config *cfg, char **error)
{
    const char *dir = sdt_config_str(cfg, "output_dir");
    const char *name = sdt_config_str(cfg, "output_name");
    if (!dir || !dir[0] || !name || !name[0]) {
        sdt_set_error(error, "the config names no output_dir or output_name");
        return NULL;
    }
    char *path = sdt_format("%s/%s.events.jsonl", dir, name);
    if (!path)
        sdt_set_error(error, "out of memory");
    return path;
}

typedef struct scan {
    live_run *run;
    journal_follow *follow;
    uint64_t line_start; /* the offset of the line being delivered */
} scan;

static bool starts_with(const char *text, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(text, prefix, n) == 0;
}

static void scan_line(void *ctx, engine_stream stream, const char *text, size_t len, bool truncated)
{
    (void)stream;
    scan *s = ctx;
    live_run *r = s->run;
    /* Every event's first key is "t" (docs/protocol.md), so its type is known from the line's start;
     * only a `hello` is decoded, for its pid. */
    if (!truncated && starts_with(text, len, "{\"t\":\"hello\"")) {
        sdt_event ev;
        if (sdt_event_decode(text, len, &ev, NULL) == 0) {
            r->have_hello = true;
            r->hello_offset = s->line_start;
            r->pid = ev.hello.pid;
            r->done = r->error = false;
            sdt_event_clear(&ev);
        }
    } else if (r->have_hello && starts_with(text, len, "{\"t\":\"done\"")) {
        r->done = true;
    } else if (r->have_hello && starts_with(text, len, "{\"t\":\"error\"")) {
        r->error = true;
    }
    s->line_start = journal_follow_offset(s->follow);
}

int live_run_scan(const char *path, live_run *out, char **error)
{
    memset(out, 0, sizeof *out);
    out->pid = -1;
    out->journal = sdt_format("%s", path);
    if (!out->journal)
        return sdt_set_error(error, "out of memory");
    journal_follow_options options = {.max_read = SIZE_MAX};
    scan s = {.run = out};
    if (journal_follow_open(path, &options, &s.follow, error) != 0)
        return -1;
    journal_follow_status status;
    int rc = journal_follow_read(s.follow, scan_line, &s, &status, error);
    journal_follow_free(s.follow);
    if (rc < 0)
        return -1;
    out->journal_exists = status.present;
    out->engine_alive = out->have_hello && live_run_pid_is_engine(out->pid);
    out->live = out->have_hello && !out->done && out->engine_alive;
    return 0;
}

int live_run_find(const sdt_config *cfg, live_run *out, char **error)
{
    memset(out, 0, sizeof *out);
    out->pid = -1;
    char *path = live_run_journal_path(cfg, error);
    if (!path)
        return -1;
    int rc = live_run_scan(path, out, error);
    free(path);
    return rc;
}

/* The last path component of text, without the " (deleted)" that /proc/PID/exe gets when the binary
 * was replaced (a rebuild while it trains). */
static bool names_engine(const char *text)
{
    const char *slash = strrchr(text, '/');
    const char *base = slash ? slash + 1 : text;
    size_t n = strlen(ENGINE_NAME);
    return strncmp(base, ENGINE_NAME, n) == 0 && (base[n] == '\0' || strcmp(base + n, " (deleted)") == 0);
}

/* Up to size - 1 bytes of a /proc file (whose stat size is 0, so it is read, not sized), NUL-terminated.
 * Returns the bytes read, or -1. */
static ssize_t read_proc(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t got = 0;
    while (got + 1 < size) {
        ssize_t n = read(fd, buf + got, size - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    return (ssize_t)got;
}

/* The state letter of /proc/PID/stat (R, S, D, Z, ...), or 0 when it cannot be read. */
static char proc_state(const char *stat_path)
{
    char text[1024];
    if (read_proc(stat_path, text, sizeof text) <= 0)
        return 0;
    /* "PID (comm) S ...": comm may hold spaces and parentheses, so the state follows the last ')'. */
    const char *close_paren = strrchr(text, ')');
    return close_paren && close_paren[1] == ' ' ? close_paren[2] : 0;
}

bool live_run_pid_is_engine(int64_t pid)
{
    if (pid <= 0 || pid > INT_MAX)
        return false;
    struct stat st;
    if (stat("/proc/self/stat", &st) != 0) /* no /proc: only whether the pid exists */
        return kill((pid_t)pid, 0) == 0 || errno == EPERM;
    char *stat_path = sdt_format("/proc/%lld/stat", (long long)pid);
    char *cmdline_path = sdt_format("/proc/%lld/cmdline", (long long)pid);
    char *exe_path = sdt_format("/proc/%lld/exe", (long long)pid);
    bool engine = false;
    char state = stat_path ? proc_state(stat_path) : 0;
    if (state != 0 && state != 'Z' && state != 'X') {
        char cmdline[PATH_MAX + 1];
        /* argv[0] is the cmdline's first NUL-terminated string. */
        if (cmdline_path && read_proc(cmdline_path, cmdline, sizeof cmdline) > 0)
            engine = names_engine(cmdline);
        char exe[PATH_MAX + 1];
        ssize_t n = exe_path && !engine ? readlink(exe_path, exe, PATH_MAX) : -1;
        if (n > 0) {
            exe[n] = '\0';
            engine = names_engine(exe);
        }
    }
    free(stat_path);
    free(cmdline_path);
    free(exe_path);
    return engine;
}

void live_run_free(live_run *r)
{
    free(r->journal);
    memset(r, 0, sizeof *r);
    r->pid = -1;
}
