/* The command reader fed through a pipe: every command sets its flag and is answered (ack, pong), a
 * malformed or overlong line gets an error event, end of input is logged and ends the thread. Also the
 * signal handlers: first signal stops, second aborts, SIGPIPE is ignored. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "command_reader.h"
#include "sdtune/strutil.h"
#include "signals.h"

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

static void write_text(int fd, const char *text)
{
    size_t len = strlen(text);
    while (len > 0) {
        ssize_t n = write(fd, text, len);
        if (n <= 0)
            return;
        text += n;
        len -= (size_t)n;
    }
}

static void test_commands_through_a_pipe(test_state *t)
{
    int in[2], out[2];
    CHECK(t, pipe(in) == 0 && pipe(out) == 0);
    sdt_event_sink_options options;
    sdt_event_sink_options_init(&options);
    options.protocol = true;
    options.stdout_fd = out[1];
    options.stderr_fd = -1;
    sdt_event_sink *sink = NULL;
    char *error = NULL;
    CHECK(t, sdt_event_sink_open(&options, &sink, &error) == 0);
    sdt_run_control control;
    sdt_run_control_init(&control);
    sdt_command_reader *reader = NULL;
    CHECK(t, sdt_command_reader_start(in[0], &control, sink, &reader, &error) == 0);

    write_text(in[1], "{\"t\":\"pause\",\"id\":\"1\"}\n");
    /* The flag is set by the thread: wait for it (at most 5 s). */
    for (int i = 0; i < 500 && !atomic_load(&control.paused); i++)
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    CHECK(t, atomic_load(&control.paused) == 1);
    write_text(in[1], "{\"t\":\"resume\"}\n\n{\"t\":\"sample_now\",\"id\":\"s\"}\r\n{\"t\":\"save_now\"}\n"
                      "{\"t\":\"ping\",\"id\":\"p1\"}\nthis is not json\n{\"t\":\"stpo\"}\n");
    char *long_line = malloc(70001);
    memset(long_line, 'x', 70000);
    long_line[70000] = '\0';
    write_text(in[1], long_line);
    write_text(in[1],
               "\n{\"t\":\"stop\",\"id\":\"2\"}\n{\"t\":\"abort\"}"); /* the last line has no newline */
    free(long_line);
    close(in[1]);
    for (int i = 0; i < 500 && !sdt_command_reader_at_eof(reader); i++)
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    CHECK(t, sdt_command_reader_at_eof(reader));
    sdt_command_reader_stop(reader);
    sdt_event_sink_close(sink);
    close(out[1]);

    CHECK(t, atomic_load(&control.paused) == 0);
    CHECK(t, atomic_load(&control.sample_now) == 1);
    CHECK(t, atomic_load(&control.save_now) == 1);
    CHECK(t, atomic_load(&control.stop) == 1);
    CHECK(t, atomic_load(&control.abort) == 1);
    CHECK(t, atomic_load(&control.signal) == 0);

    char *text = drain(out[0]);
    close(out[0]);
    static const char *const expected[] = {
        "{\"t\":\"ack\",\"time\":",
        ",\"command\":\"pause\",\"id\":\"1\"}\n",
        ",\"command\":\"resume\"}\n",
        ",\"command\":\"sample_now\",\"id\":\"s\"}\n",
        ",\"command\":\"save_now\"}\n",
        "{\"t\":\"pong\",\"time\":",
        ",\"id\":\"p1\"}\n",
        "{\"t\":\"error\",\"time\":",
        "\"message\":\"malformed command line:",
        "\"message\":\"unknown command \\\"stpo\\\"",
        "\"message\":\"command line longer than 65536 bytes; ignored\"}\n",
        ",\"command\":\"stop\",\"id\":\"2\"}\n",
        ",\"command\":\"abort\"}\n",
        "\"text\":\"command input closed",
    };
    /* In this order. */
    const char *at = text;
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        const char *found = at ? strstr(at, expected[i]) : NULL;
        CHECK_MSG(t, found != NULL, "missing (in order) %s in\n%s", expected[i], text);
        if (found)
            at = found + strlen(expected[i]);
    }
    int lines = 0;
    for (const char *p = text; p && *p; p++)
        lines += *p == '\n';
    CHECK_MSG(t, lines == 11, "%d lines", lines); /* 6 acks, 1 pong, 3 errors, 1 log */
    free(text);
    free(error);
}

static void test_stop_without_input(test_state *t)
{
    /* The UI is alive but silent: stopping the reader must not wait for input. */
    int in[2];
    CHECK(t, pipe(in) == 0);
    sdt_event_sink_options options;
    sdt_event_sink_options_init(&options);
    options.stdout_fd = -1;
    options.stderr_fd = -1;
    sdt_event_sink *sink = NULL;
    char *error = NULL;
    CHECK(t, sdt_event_sink_open(&options, &sink, &error) == 0);
    sdt_run_control control;
    sdt_run_control_init(&control);
    sdt_command_reader *reader = NULL;
    CHECK(t, sdt_command_reader_start(in[0], &control, sink, &reader, &error) == 0);
    sdt_command_reader_stop(reader);
    CHECK(t, atomic_load(&control.stop) == 0);
    close(in[0]);
    close(in[1]);

    /* Nor on an endless input: /dev/zero is one line that never ends (an overlong-line error, once). */
    int zero = open("/dev/zero", O_RDONLY);
    CHECK(t, zero >= 0);
    CHECK(t, sdt_command_reader_start(zero, &control, sink, &reader, &error) == 0);
    nanosleep(&(struct timespec){0, 20000000}, NULL);
    sdt_command_reader_stop(reader);
    CHECK(t, !atomic_load(&control.stop) && !atomic_load(&control.abort));
    close(zero);
    sdt_event_sink_close(sink);
}

static void test_signals(test_state *t)
{
    sdt_run_control control;
    sdt_run_control_init(&control);
    char *error = NULL;
    CHECK(t, sdt_signals_install(&control, &error) == 0);
    raise(SIGTERM);
    CHECK(t, atomic_load(&control.stop) == 1);
    CHECK(t, atomic_load(&control.signal) == SIGTERM);
    CHECK(t, atomic_load(&control.abort) == 0);
    raise(SIGPIPE); /* ignored: the test goes on */
    CHECK(t, atomic_load(&control.abort) == 0);
    raise(SIGINT);
    CHECK(t, atomic_load(&control.abort) == 1);
    CHECK(t, atomic_load(&control.signal) == SIGTERM); /* the first one is recorded */
    CHECK(t, strcmp(sdt_signal_name(SIGHUP), "SIGHUP") == 0);

    /* A stop asked by a command, then a signal: the signal aborts. */
    sdt_run_control_init(&control);
    atomic_store(&control.stop, 1);
    raise(SIGHUP);
    CHECK(t, atomic_load(&control.abort) == 1);
    sdt_signals_restore();

    /* After restore the previous disposition is back. */
    struct sigaction now;
    sigaction(SIGINT, NULL, &now);
    CHECK(t, now.sa_handler == SIG_DFL);
    free(error);
}

TEST_MAIN("command_reader", TEST(test_commands_through_a_pipe), TEST(test_stop_without_input),
          TEST(test_signals))
