/* The journal follower (tui/run/journal_follow.c) on a temporary file the test appends to: lines split
 * across reads, a partial last line held until its newline, a long line cut, a start offset, a read limit,
 * truncation and replacement (read again from the start), a missing file that appears later. */
#define _GNU_SOURCE /* mkdtemp */
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "run/journal_follow.h"
#include "sdtune/strutil.h"
#include "unit/check.h"

#define MAX_LINES 64

typedef struct got {
    char *lines[MAX_LINES];
    bool truncated[MAX_LINES];
    size_t n;
} got;

static void on_line(void *ctx, engine_stream stream, const char *text, size_t len, bool truncated)
{
    got *g = ctx;
    if (stream != ENGINE_STREAM_EVENTS || g->n >= MAX_LINES)
        return;
    g->lines[g->n] = sdt_strndup(text, len);
    g->truncated[g->n] = truncated;
    g->n++;
}

static void got_clear(got *g)
{
    for (size_t i = 0; i < g->n; i++)
        free(g->lines[i]);
    memset(g, 0, sizeof *g);
}

static char *temp_dir(void)
{
    char *dir = sdt_format("%s/sdtune-journal-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (dir && !mkdtemp(dir)) {
        free(dir);
        return NULL;
    }
    return dir;
}

/* Appends text to path with one write, as the engine does. */
static void append(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
        ssize_t n = write(fd, text, strlen(text));
        (void)n;
        close(fd);
    }
}

static int read_into(journal_follow *j, got *g, journal_follow_status *st)
{
    char *error = NULL;
    int n = journal_follow_read(j, on_line, g, st, &error);
    if (error)
        fprintf(stderr, "journal_follow_read: %s\n", error);
    free(error);
    return n;
}

static void test_split_and_partial(test_state *t)
{
    char *dir = temp_dir();
    CHECK(t, dir != NULL);
    char *path = sdt_format("%s/run.events.jsonl", dir);
    append(path, "{\"t\":\"hello\"}\n{\"t\":\"pha");
    journal_follow *j = NULL;
    CHECK(t, journal_follow_open(path, NULL, &j, NULL) == 0 && j);
    got g = {0};
    journal_follow_status st;
    CHECK(t, read_into(j, &g, &st) == 1);
    CHECK(t, st.present && !st.restarted && !st.more);
    CHECK(t, g.n == 1 && strcmp(g.lines[0], "{\"t\":\"hello\"}") == 0 && !g.truncated[0]);
    CHECK(t, journal_follow_offset(j) == 14);
    /* Nothing new: nothing delivered, the partial line still held. */
    CHECK(t, read_into(j, &g, &st) == 0 && g.n == 1);
    append(path, "se\"}\r\n{\"t\":\"progress\"}\n{\"t\"");
    CHECK(t, read_into(j, &g, &st) == 2);
    CHECK(t, g.n == 3 && strcmp(g.lines[1], "{\"t\":\"phase\"}") == 0); /* the \r goes too */
    CHECK(t, g.n == 3 && strcmp(g.lines[2], "{\"t\":\"progress\"}") == 0);
    append(path, ":\"done\"}\n\n");
    CHECK(t, read_into(j, &g, &st) == 2);
    CHECK(t, g.n == 5 && strcmp(g.lines[3], "{\"t\":\"done\"}") == 0 && strcmp(g.lines[4], "") == 0);
    journal_follow_free(j);
    got_clear(&g);

    /* Starting at an offset (a run's `hello`), and a read limit that leaves the rest for the next call. */
    journal_follow_options options = {.offset = 14, .max_read = 16};
    CHECK(t, journal_follow_open(path, &options, &j, NULL) == 0);
    CHECK(t, read_into(j, &g, &st) == 1 && st.more);
    CHECK(t, g.n == 1 && strcmp(g.lines[0], "{\"t\":\"phase\"}") == 0);
    while (st.more)
        read_into(j, &g, &st);
    CHECK(t, g.n == 4 && strcmp(g.lines[2], "{\"t\":\"done\"}") == 0);
    journal_follow_free(j);
    got_clear(&g);
    unlink(path);
    rmdir(dir);
    free(path);
    free(dir);
}

static void test_long_line(test_state *t)
{
    char *dir = temp_dir();
    char *path = sdt_format("%s/long.jsonl", dir);
    char line[301];
    memset(line, 'x', 300);
    line[300] = '\0';
    append(path, line);
    journal_follow_options options = {.max_line = 100};
    journal_follow *j = NULL;
    CHECK(t, journal_follow_open(path, &options, &j, NULL) == 0);
    got g = {0};
    CHECK(t, read_into(j, &g, NULL) == 0);
    append(path, "yyy\nnext\n");
    CHECK(t, read_into(j, &g, NULL) == 2);
    CHECK(t, g.n == 2 && strlen(g.lines[0]) == 100 && g.truncated[0] && g.lines[0][99] == 'x');
    CHECK(t, g.n == 2 && strcmp(g.lines[1], "next") == 0 && !g.truncated[1]);
    CHECK(t, journal_follow_offset(j) == 309);
    journal_follow_free(j);
    got_clear(&g);
    unlink(path);
    rmdir(dir);
    free(path);
    free(dir);
}

static void test_truncated_and_replaced(test_state *t)
{
    char *dir = temp_dir();
    char *path = sdt_format("%s/run.events.jsonl", dir);
    append(path, "one\ntwo\nthree\npart");
    journal_follow *j = NULL;
    CHECK(t, journal_follow_open(path, NULL, &j, NULL) == 0);
    got g = {0};
    journal_follow_status st;
    CHECK(t, read_into(j, &g, &st) == 3 && !st.restarted);
    /* Truncated below what was read: read again from the start; the held partial line is dropped. */
    CHECK(t, truncate(path, 0) == 0);
    append(path, "new\n");
    CHECK(t, read_into(j, &g, &st) == 1 && st.restarted && st.present);
    CHECK(t, g.n == 4 && strcmp(g.lines[3], "new") == 0);
    CHECK(t, read_into(j, &g, &st) == 0 && !st.restarted);
    /* Replaced by another file (a rename over it): the new file from its start. */
    char *other = sdt_format("%s/other", dir);
    append(other, "first of the new one\nsecond\nthird is longer than the old file\n");
    CHECK(t, rename(other, path) == 0);
    CHECK(t, read_into(j, &g, &st) == 3 && st.restarted);
    CHECK(t, g.n == 7 && strcmp(g.lines[4], "first of the new one") == 0);
    /* Removed: nothing, not an error; it comes back: read from its start. */
    CHECK(t, unlink(path) == 0);
    CHECK(t, read_into(j, &g, &st) == 0 && !st.present);
    append(path, "again\n");
    CHECK(t, read_into(j, &g, &st) == 1 && st.present && st.restarted);
    CHECK(t, g.n == 8 && strcmp(g.lines[7], "again") == 0);
    journal_follow_free(j);
    got_clear(&g);
    unlink(path);
    rmdir(dir);
    free(other);
    free(path);
    free(dir);
}

static void test_missing_file(test_state *t)
{
    char *dir = temp_dir();
    char *path = sdt_format("%s/not-yet.jsonl", dir);
    journal_follow *j = NULL;
    CHECK(t, journal_follow_open(path, NULL, &j, NULL) == 0);
    got g = {0};
    journal_follow_status st;
    char *error = NULL;
    CHECK(t, journal_follow_read(j, on_line, &g, &st, &error) == 0 && !error && !st.present);
    append(path, "{\"t\":\"hello\"}\n");
    CHECK(t, read_into(j, &g, &st) == 1 && st.present && !st.restarted);
    journal_follow_free(j);
    got_clear(&g);
    /* A folder that does not exist is the same: not there yet. */
    char *deep = sdt_format("%s/no/such/dir.jsonl", dir);
    CHECK(t, journal_follow_open(deep, NULL, &j, NULL) == 0);
    CHECK(t, journal_follow_read(j, on_line, &g, &st, &error) == 0 && !error && !st.present);
    journal_follow_free(j);
    /* A path that cannot be read for another reason (a folder) is an error naming it. */
    CHECK(t, journal_follow_open(dir, NULL, &j, NULL) == 0);
    int n = journal_follow_read(j, on_line, &g, &st, &error);
    CHECK_MSG(t, n == -1 && error && strstr(error, dir), "n %d, error %s", n, error ? error : "(none)");
    free(error);
    journal_follow_free(j);
    unlink(path);
    rmdir(dir);
    free(deep);
    free(path);
    free(dir);
}

TEST_MAIN("journal_follow", TEST(test_split_and_partial), TEST(test_long_line),
          TEST(test_truncated_and_replaced), TEST(test_missing_file))
