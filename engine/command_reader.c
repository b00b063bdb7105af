/* The command reader thread. It waits in poll() on the input and on a wake-up pipe, so stopping it never
 * depends on the UI sending anything; a line is decoded and applied as soon as its newline arrives. */
#include "command_reader.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sdtune/strutil.h"

struct sdt_command_reader {
    int fd;
    int wake[2]; /* the stop request: a byte written to wake[1] */
    sdt_run_control *control;
    sdt_event_sink *sink;
    pthread_t thread;
    atomic_bool at_eof;
    char line[SDT_COMMAND_LINE_MAX];
    size_t len;
    bool overlong; /* skipping the rest of a line that was too long */
};

static void answer(sdt_event_sink *sink, sdt_event_type type, const char *command, const char *id)
{
    sdt_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = type;
    if (type == SDT_EV_ACK) {
        ev.ack.command = (char *)command;
        ev.ack.id = (char *)id;
    } else {
        ev.pong.id = (char *)id;
    }
    sdt_event_sink_emit(sink, &ev);
}

void sdt_command_reader_handle_line(const char *line, size_t len, sdt_run_control *control,
                                    sdt_event_sink *sink)
{
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    size_t start = 0;
    while (start < len && (line[start] == ' ' || line[start] == '\t'))
        start++;
    if (start == len)
        return; /* blank lines are allowed (a person typing) */
    sdt_command command;
    char *error = NULL;
    if (sdt_command_decode(line, len, &command, &error) != 0) {
        sdt_event_sink_error(sink, error ? error : "malformed command", NULL);
        free(error);
        return;
    }
    switch (command.type) {
    case SDT_CMD_STOP: atomic_store(&control->stop, 1); break;
    case SDT_CMD_ABORT: atomic_store(&control->abort, 1); break;
    case SDT_CMD_PAUSE: atomic_store(&control->paused, 1); break;
    case SDT_CMD_RESUME: atomic_store(&control->paused, 0); break;
    case SDT_CMD_SAMPLE_NOW: atomic_store(&control->sample_now, 1); break;
    case SDT_CMD_SAVE_NOW: atomic_store(&control->save_now, 1); break;
    case SDT_CMD_PING: break;
    case SDT_CMD_COUNT: break;
    }
    if (command.type == SDT_CMD_PING)
        answer(sink, SDT_EV_PONG, NULL, command.id);
    else
        answer(sink, SDT_EV_ACK, sdt_command_type_name(command.type), command.id);
    sdt_command_clear(&command);
}

/* Splits the bytes read into lines; a line over the limit is reported once and skipped to its newline. */
static void consume(sdt_command_reader *r, const char *data, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = data[i];
        if (c == '\n') {
            if (!r->overlong)
                sdt_command_reader_handle_line(r->line, r->len, r->control, r->sink);
            r->len = 0;
            r->overlong = false;
        } else if (r->overlong) {
            continue;
        } else if (r->len == sizeof r->line) {
            char *message = sdt_format("command line longer than %d bytes; ignored", SDT_COMMAND_LINE_MAX);
            sdt_event_sink_error(r->sink, message ? message : "command line too long; ignored", NULL);
            free(message);
            r->overlong = true;
            r->len = 0;
        } else {
            r->line[r->len++] = c;
        }
    }
}

static void *reader_main(void *arg)
{
    sdt_command_reader *r = arg;
    char chunk[4096];
    int reads_after_stop = 0; /* bounded, so an endless input (a flood, /dev/zero) cannot hold up a stop */
    for (;;) {
        struct pollfd fds[2] = {{r->fd, POLLIN, 0}, {r->wake[0], POLLIN, 0}};
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            sdt_event_sink_logf(r->sink, SDT_LOG_WARNING, "command input: poll failed: %s; commands are off",
                                strerror(errno));
            return NULL;
        }
        if (fds[1].revents && ++reads_after_stop > 16)
            return NULL;
        if (fds[0].revents) { /* input first: what was written before a stop is still applied */
            ssize_t n = read(r->fd, chunk, sizeof chunk);
            if (n < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (n > 0) {
                consume(r, chunk, (size_t)n);
                continue;
            }
            if (n < 0)
                sdt_event_sink_logf(r->sink, SDT_LOG_WARNING, "command input: %s; commands are off",
                                    strerror(errno));
            if (r->len > 0 && !r->overlong) /* a last line without its newline */
                sdt_command_reader_handle_line(r->line, r->len, r->control, r->sink);
            if (n == 0)
                sdt_event_sink_logf(
                    r->sink, SDT_LOG_INFO,
                    "command input closed (the UI went away); training goes on and every event "
                    "is in the journal");
            atomic_store(&r->at_eof, true);
            return NULL;
        }
        if (fds[1].revents)
            return NULL;
    }
}

int sdt_command_reader_start(int fd, sdt_run_control *control, sdt_event_sink *sink, sdt_command_reader **out,
                             char **error)
{
    *out = NULL;
    sdt_command_reader *r = calloc(1, sizeof *r);
    if (!r)
        return sdt_set_error(error, "out of memory starting the command reader");
    r->fd = fd;
    r->control = control;
    r->sink = sink;
    atomic_init(&r->at_eof, false);
    if (pipe(r->wake) != 0) {
        free(r);
        return sdt_set_error(error, "command reader: pipe: %s", strerror(errno));
    }
    fcntl(r->wake[0], F_SETFD, FD_CLOEXEC);
    fcntl(r->wake[1], F_SETFD, FD_CLOEXEC);
    int rc = pthread_create(&r->thread, NULL, reader_main, r);
    if (rc != 0) {
        close(r->wake[0]);
        close(r->wake[1]);
        free(r);
        return sdt_set_error(error, "command reader: cannot start its thread: %s", strerror(rc));
    }
    *out = r;
    return 0;
}

bool sdt_command_reader_at_eof(sdt_command_reader *reader) { return atomic_load(&reader->at_eof); }

void sdt_command_reader_stop(sdt_command_reader *reader)
{
    if (!reader)
        return;
    char byte = 1;
    while (write(reader->wake[1], &byte, 1) < 0 && errno == EINTR) {
    }
    pthread_join(reader->thread, NULL);
    close(reader->wake[0]);
    close(reader->wake[1]);
    free(reader);
}
