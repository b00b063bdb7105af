/* The event sink: the journal gets the events emitted before it opened, then the rest, the same lines as
 * stdout; the human progress line looks like kohya's tqdm line; a closed stdout does not fail the run. */
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "event_sink.h"
#include "sdtune/strutil.h"

/* Everything readable on fd now (the writer closed it or wrote less than a pipe holds). */
static char *drain(int fd)
{
    sdt_buf b;
    sdt_buf_init(&b);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    char chunk[4096];
    ssize_t n;
    while ((n = read(fd, chunk, sizeof chunk)) > 0)
        sdt_buf_append(&b, chunk, (size_t)n);
    return sdt_buf_take(&b);
}

static char *read_file(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return NULL;
    char *text = drain(fd);
    close(fd);
    return text;
}

static int count_lines(const char *text)
{
    int n = 0;
    for (; text && *text; text++)
        n += *text == '\n';
    return n;
}

static sdt_event progress_event(int64_t step, int64_t total, double time)
{
    sdt_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = SDT_EV_PROGRESS;
    ev.time = time;
    ev.progress.step = step;
    ev.progress.total_steps = total;
    ev.progress.epoch = 1;
    ev.progress.total_epochs = 10;
    ev.progress.loss = 0.0912;
    ev.progress.loss_avg = 0.0821;
    ev.progress.lr = 1e-4;
    ev.progress.samples_per_s = 3.2;
    ev.progress.eta_s = -1;
    return ev;
}

static void test_journal_buffers_then_appends(test_state *t)
{
    int out[2];
    CHECK(t, pipe(out) == 0);
    char dir[] = "/tmp/sdtune-sink-XXXXXX";
    CHECK(t, mkdtemp(dir) != NULL);
    char *journal = sdt_format("%s/run.events.jsonl", dir);
    sdt_event_sink_options options;
    sdt_event_sink_options_init(&options);
    options.protocol = true;
    options.stdout_fd = out[1];
    options.stderr_fd = -1;
    sdt_event_sink *sink = NULL;
    char *error = NULL;
    CHECK(t, sdt_event_sink_open(&options, &sink, &error) == 0);
    CHECK(t, sdt_event_sink_hello(sink, "cpu", "test cpu", 0, 1LL << 34) == 0);
    CHECK(t, sdt_event_sink_logf(sink, SDT_LOG_INFO, "loaded %d files", 3) == 0);
    CHECK(t, access(journal, F_OK) != 0); /* nothing on disk before the journal opens */
    CHECK(t, sdt_event_sink_open_journal(sink, journal, &error) == 0);
    CHECK(t, sdt_event_sink_phase(sink, SDT_PHASE_TRAINING) == 0);
    sdt_event bad;
    memset(&bad, 0, sizeof bad);
    bad.type = SDT_EV_COUNT;
    CHECK(t, sdt_event_sink_emit(sink, &bad) == -1);
    sdt_event_sink_close(sink);
    close(out[1]);
    char *stdout_text = drain(out[0]);
    char *journal_text = read_file(journal);
    CHECK_MSG(t, count_lines(journal_text) == 3, "%s", journal_text);
    CHECK_MSG(t, stdout_text && journal_text && strcmp(stdout_text, journal_text) == 0,
              "stdout %s journal %s", stdout_text, journal_text);
    CHECK(t, journal_text && strncmp(journal_text, "{\"t\":\"hello\",\"v\":1,\"time\":17", 28) == 0);
    CHECK_STR_CONTAINS(t, journal_text, "\"level\":\"info\",\"text\":\"loaded 3 files\"}\n{\"t\":\"phase\"");
    CHECK_STR_CONTAINS(t, journal_text, "\"phase\":\"training\"}\n");
    CHECK_STR_CONTAINS(t, journal_text,
                       ",\"backend\":\"cpu\",\"device\":\"test cpu\",\"ram_total\":17179869184,\"pid\":");
    CHECK(t, sdt_event_sink_phase(NULL, SDT_PHASE_DONE) == 0); /* a NULL sink drops events */

    /* A second run into the same folder appends. */
    options.stdout_fd = -1;
    CHECK(t, sdt_event_sink_open(&options, &sink, &error) == 0);
    CHECK(t, sdt_event_sink_open_journal(sink, journal, &error) == 0);
    CHECK(t, sdt_event_sink_phase(sink, SDT_PHASE_DONE) == 0);
    sdt_event_sink_close(sink);
    free(journal_text);
    journal_text = read_file(journal);
    CHECK_MSG(t, count_lines(journal_text) == 4, "%s", journal_text);

    /* A journal that cannot be opened is an error naming it; the sink goes on. */
    CHECK(t, sdt_event_sink_open(&options, &sink, &error) == 0);
    CHECK(t, sdt_event_sink_open_journal(sink, "/nonexistent-dir/x.events.jsonl", &error) == -1);
    CHECK_STR_CONTAINS(t, error, "journal /nonexistent-dir/x.events.jsonl");
    CHECK(t, sdt_event_sink_phase(sink, SDT_PHASE_DONE) == 0);
    sdt_event_sink_close(sink);

    free(error);
    free(stdout_text);
    free(journal_text);
    unlink(journal);
    rmdir(dir);
    free(journal);
    close(out[0]);
}

static void test_progress_line_format(test_state *t)
{
    char text[32];
    sdt_format_duration(50, text, sizeof text);
    CHECK(t, strcmp(text, "00:50") == 0);
    sdt_format_duration(4014.9, text, sizeof text);
    CHECK(t, strcmp(text, "1:06:54") == 0);
    sdt_format_duration(659, text, sizeof text);
    CHECK(t, strcmp(text, "10:59") == 0);
    sdt_format_duration(-1, text, sizeof text);
    CHECK(t, strcmp(text, "?") == 0);

    sdt_event ev = progress_event(41, 3280, 0);
    ev.progress.eta_s = 4014;
    char *line = sdt_progress_line(&ev, 50.8, 1.24);
    CHECK_MSG(t,
              line && strcmp(line, "steps:   1%|▏         | 41/3280 [00:50<1:06:54,  1.24s/it, epoch=1/10, "
                                   "loss=0.0912, avr_loss=0.0821, lr=1.00e-04]") == 0,
              "%s", line);
    free(line);
    /* Faster than a step a second: it/s; no ETA from the engine: from the rate. NaN shows as nan. */
    ev = progress_event(1640, 3280, 0);
    ev.progress.loss = NAN;
    line = sdt_progress_line(&ev, 820, 0.5);
    CHECK_MSG(t,
              line && strcmp(line, "steps:  50%|█████     | 1640/3280 [13:40<13:40,  2.00it/s, epoch=1/10, "
                                   "loss=nan, avr_loss=0.0821, lr=1.00e-04]") == 0,
              "%s", line);
    free(line);
    ev = progress_event(3280, 3280, 0);
    line = sdt_progress_line(&ev, 0, 0);
    CHECK_STR_CONTAINS(t, line, "100%|██████████| 3280/3280 [00:00<?, ?it/s,");
    free(line);
}

static void test_human_mode(test_state *t)
{
    int err[2];
    CHECK(t, pipe(err) == 0);
    sdt_event_sink_options options;
    sdt_event_sink_options_init(&options);
    options.stdout_fd = -1;
    options.stderr_fd = err[1];
    options.human_tty = 0;
    options.progress_every = 2;
    sdt_event_sink *sink = NULL;
    char *error = NULL;
    CHECK(t, sdt_event_sink_open(&options, &sink, &error) == 0);
    sdt_event phase;
    memset(&phase, 0, sizeof phase);
    phase.type = SDT_EV_PHASE;
    phase.phase = SDT_PHASE_TRAINING;
    phase.time = 1000;
    sdt_event_sink_emit(sink, &phase);
    for (int step = 1; step <= 5; step++) {
        sdt_event ev = progress_event(step, 5, 1000 + 1.5 * step);
        sdt_event_sink_emit(sink, &ev);
    }
    sdt_event_sink_logf(sink, SDT_LOG_DEBUG, "not shown");
    sdt_event_sink_logf(sink, SDT_LOG_WARNING, "shown");
    sdt_event_sink_close(sink);
    close(err[1]);
    char *text = drain(err[0]);
    close(err[0]);
    CHECK_STR_CONTAINS(t, text, "INFO phase: training\nsteps:  20%|██        | 1/5 [00:01<00:06,  1.50s/it,");
    CHECK_STR_CONTAINS(t, text, "| 2/5 [00:03<00:04,  1.50s/it,");
    CHECK_STR_CONTAINS(t, text, "| 5/5 [00:07<00:00,  1.50s/it,");
    CHECK(t, text && !strstr(text, "3/5") && !strstr(text, "not shown") && !strchr(text, '\r'));
    CHECK_STR_CONTAINS(t, text, "WARNING shown\n");
    free(text);

    /* On a terminal the progress line is rewritten in place and stays below other lines. */
    CHECK(t, pipe(err) == 0);
    options.stderr_fd = err[1];
    options.human_tty = 1;
    CHECK(t, sdt_event_sink_open(&options, &sink, &error) == 0);
    sdt_event ev = progress_event(1, 5, 1000);
    sdt_event_sink_emit(sink, &ev);
    ev = progress_event(2, 5, 1001);
    sdt_event_sink_emit(sink, &ev);
    sdt_event_sink_logf(sink, SDT_LOG_INFO, "hello");
    sdt_event_sink_close(sink);
    close(err[1]);
    text = drain(err[0]);
    close(err[0]);
    CHECK_STR_CONTAINS(t, text, "\rsteps:  20%");
    CHECK_STR_CONTAINS(t, text, "\033[K\rsteps:  40%");
    CHECK_STR_CONTAINS(t, text, "\r\033[KINFO hello\n\rsteps:  40%");
    CHECK(t, text && text[strlen(text) - 1] == '\n');
    free(text);
}

static void test_closed_stdout(test_state *t)
{
    signal(SIGPIPE, SIG_IGN); /* as sdt_signals_install does in the engine */
    int out[2];
    CHECK(t, pipe(out) == 0);
    close(out[0]); /* the UI died */
    char path[] = "/tmp/sdtune-sink-journal-XXXXXX";
    int fd = mkstemp(path);
    CHECK(t, fd >= 0);
    close(fd);
    sdt_event_sink_options options;
    sdt_event_sink_options_init(&options);
    options.protocol = true;
    options.stdout_fd = out[1];
    sdt_event_sink *sink = NULL;
    char *error = NULL;
    CHECK(t, sdt_event_sink_open(&options, &sink, &error) == 0);
    CHECK(t, sdt_event_sink_open_journal(sink, path, &error) == 0);
    CHECK(t, !sdt_event_sink_stdout_dead(sink));
    CHECK(t, sdt_event_sink_logf(sink, SDT_LOG_INFO, "one") == 0);
    CHECK(t, sdt_event_sink_stdout_dead(sink));
    CHECK(t, sdt_event_sink_logf(sink, SDT_LOG_INFO, "two") == 0);
    sdt_event_sink_close(sink);
    close(out[1]);
    char *text = read_file(path);
    CHECK(t, count_lines(text) == 2);
    CHECK_STR_CONTAINS(t, text, "\"text\":\"two\"");
    free(text);
    unlink(path);
}

TEST_MAIN("event_sink", TEST(test_journal_buffers_then_appends), TEST(test_progress_line_format),
          TEST(test_human_mode), TEST(test_closed_stdout))
