/* Following a growing journal (see journal_follow.h). */
#include "run/journal_follow.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sdtune/strutil.h"

#define CHUNK 65536

struct journal_follow {
    char *path;
    int fd; /* -1 while the file is not open */
    dev_t dev;
    ino_t ino;
    uint64_t first_offset; /* where the first open starts; later opens (a new file) start at 0 */
    bool opened_once;
    uint64_t pos;        /* bytes of the file consumed (whole lines and the partial one) */
    uint64_t line_start; /* the offset where the line being assembled starts */
    size_t max_line, max_read;
    char *line; /* the partial line: [line_len] bytes, at most max_line kept */
    size_t line_len;
    bool cut; /* the partial line passed max_line: the rest up to its '\n' is dropped */
    char *chunk;
};

int journal_follow_open(const char *path, const journal_follow_options *options, journal_follow **out,
                        char **error)
{
    *out = NULL;
    journal_follow *j = calloc(1, sizeof *j);
    if (!j)
        return sdt_set_error(error, "out of memory");
    j->fd = -1;
    j->path = sdt_format("%s", path);
    j->first_offset = options ? options->offset : 0;
    j->max_line = options && options->max_line ? options->max_line : ENGINE_CLIENT_MAX_LINE_DEFAULT;
    j->max_read = options && options->max_read ? options->max_read : JOURNAL_FOLLOW_MAX_READ_DEFAULT;
    j->line = malloc(j->max_line + 1);
    j->chunk = malloc(CHUNK);
    if (!j->path || !j->line || !j->chunk) {
        journal_follow_free(j);
        return sdt_set_error(error, "out of memory");
    }
    *out = j;
    return 0;
}

static void forget_partial(journal_follow *j)
{
    j->line_len = 0;
    j->cut = false;
}

static void close_file(journal_follow *j)
{
    if (j->fd >= 0)
        close(j->fd);
    j->fd = -1;
    forget_partial(j);
}

/* Opens the file at the path; 1 opened, 0 not there, -1 error. */
static int open_file(journal_follow *j, char **error)
{
    int fd = open(j->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return 0;
        return sdt_set_error(error, "%s: cannot open: %s", j->path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return sdt_set_error(error, "%s: cannot stat: %s", j->path, strerror(e));
    }
    j->fd = fd;
    j->dev = st.st_dev;
    j->ino = st.st_ino;
    /* The first open starts where asked (a run's first line); a start past the end is a file that has
     * changed since the offset was found, so it is read from its start. */
    uint64_t start = j->opened_once ? 0 : j->first_offset;
    if (start > (uint64_t)st.st_size)
        start = 0;
    j->pos = j->line_start = start;
    j->opened_once = true;
    forget_partial(j);
    return 1;
}

/* Closes a file that is no longer the one at the path (replaced, removed) and rewinds one that shrank
 * below what was read. Returns true when reading starts over. */
static bool check_replaced(journal_follow *j)
{
    struct stat at_path, held;
    if (stat(j->path, &at_path) != 0 || at_path.st_dev != j->dev || at_path.st_ino != j->ino) {
        close_file(j);
        return true;
    }
    if (fstat(j->fd, &held) == 0 && (uint64_t)held.st_size < j->pos) {
        j->pos = j->line_start = 0;
        forget_partial(j);
        return true;
    }
    return false;
}

/* Splits bytes into lines, delivering each whole one. */
static int take_bytes(journal_follow *j, const char *bytes, size_t n, engine_line_fn on_line, void *ctx)
{
    int lines = 0;
    while (n > 0) {
        const char *nl = memchr(bytes, '\n', n);
        size_t part = nl ? (size_t)(nl - bytes) : n;
        if (!j->cut) {
            size_t room = j->max_line - j->line_len;
            size_t keep = part < room ? part : room;
            memcpy(j->line + j->line_len, bytes, keep);
            j->line_len += keep;
            if (part > room)
                j->cut = true;
        }
        j->pos += part + (nl ? 1 : 0);
        if (!nl)
            break;
        size_t len = j->line_len;
        if (!j->cut && len > 0 && j->line[len - 1] == '\r')
            len--;
        j->line[len] = '\0';
        bool cut = j->cut;
        forget_partial(j);
        j->line_start = j->pos;
        on_line(ctx, ENGINE_STREAM_EVENTS, j->line, len, cut);
        lines++;
        bytes += part + 1;
        n -= part + 1;
    }
    return lines;
}

int journal_follow_read(journal_follow *j, engine_line_fn on_line, void *ctx, journal_follow_status *status,
                        char **error)
{
    journal_follow_status st = {0};
    if (j->fd >= 0 && check_replaced(j))
        st.restarted = true;
    if (j->fd < 0) {
        bool reopening = j->opened_once;
        int opened = open_file(j, error);
        if (opened < 0) {
            if (status)
                *status = st;
            return -1;
        }
        if (opened > 0 && reopening)
            st.restarted = true;
    }
    st.present = j->fd >= 0;
    int lines = 0;
    size_t total = 0;
    while (j->fd >= 0) {
        if (total >= j->max_read) {
            st.more = true;
            break;
        }
        size_t want = j->max_read - total < CHUNK ? j->max_read - total : CHUNK;
        ssize_t got = pread(j->fd, j->chunk, want, (off_t)j->pos);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            if (status)
                *status = st;
            return sdt_set_error(error, "%s: cannot read: %s", j->path, strerror(errno));
        }
        if (got == 0)
            break;
        total += (size_t)got;
        lines += take_bytes(j, j->chunk, (size_t)got, on_line, ctx);
    }
    if (status)
        *status = st;
    return lines;
}

uint64_t journal_follow_offset(const journal_follow *j) { return j->line_start; }

const char *journal_follow_path(const journal_follow *j) { return j->path; }

void journal_follow_free(journal_follow *j)
{
    if (!j)
        return;
    if (j->fd >= 0)
        close(j->fd);
    free(j->path);
    free(j->line);
    free(j->chunk);
    free(j);
}
