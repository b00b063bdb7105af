/* The event sink: encodes once, then writes the line to stdout (protocol mode) and the journal, or a human
 * line to stderr. One mutex orders everything, so lines never interleave and the journal is the exact
 * sequence the UI saw. Write failures never stop the run (docs/protocol.md, "Errors"). */
#include "event_sink.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sdtune/strutil.h"

/* Events emitted before the journal opens (hello, the config's log lines) are few; the cap only guards
 * against a run that never opens one. */
#define PENDING_LIMIT (1 << 20)

struct sdt_event_sink {
    pthread_mutex_t lock;
    sdt_event_sink_options options;
    bool stdout_dead;
    /* journal */
    int journal_fd; /* -1 until opened */
    char *journal_path;
    bool journal_given_up; /* opening or writing failed: stop buffering and writing */
    sdt_buf pending;       /* encoded lines waiting for the journal */
    size_t pending_dropped;
    /* human progress */
    bool tty;
    char *progress_shown;  /* the progress line now on the terminal (tty mode), NULL when none */
    double training_start; /* time of the first `phase training`, 0 unknown */
    double timing_start;   /* time the step count below was reached, 0 before the first progress */
    int64_t timing_start_step;
};

void sdt_event_sink_options_init(sdt_event_sink_options *options)
{
    memset(options, 0, sizeof *options);
    options->stdout_fd = 1;
    options->stderr_fd = 2;
    options->human_tty = -1;
    options->progress_every = 10;
    options->human_level = SDT_LOG_INFO;
}

static int write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

static void write_stderr(sdt_event_sink *sink, const char *text)
{
    if (sink->options.stderr_fd >= 0)
        (void)write_all(sink->options.stderr_fd, text, strlen(text));
}

int sdt_event_sink_open(const sdt_event_sink_options *options, sdt_event_sink **out, char **error)
{
    *out = NULL;
    sdt_event_sink *sink = calloc(1, sizeof *sink);
    if (!sink)
        return sdt_set_error(error, "out of memory creating the event sink");
    sink->options = *options;
    if (sink->options.progress_every <= 0)
        sink->options.progress_every = 10;
    sink->journal_fd = -1;
    sdt_buf_init(&sink->pending);
    if (options->human_tty >= 0)
        sink->tty = options->human_tty != 0;
    else
        sink->tty = options->stderr_fd >= 0 && isatty(options->stderr_fd);
    if (pthread_mutex_init(&sink->lock, NULL) != 0) {
        free(sink);
        return sdt_set_error(error, "cannot create the event sink's mutex");
    }
    *out = sink;
    return 0;
}

/* Called with the lock held. A failed write drops the journal for the rest of the run, with one message. */
static void journal_write(sdt_event_sink *sink, const char *data, size_t len, bool sync)
{
    if (write_all(sink->journal_fd, data, len) != 0 || (sync && fsync(sink->journal_fd) != 0)) {
        char *message = sdt_format("WARNING journal %s: %s; the run goes on without it\n", sink->journal_path,
                                   strerror(errno));
        if (message)
            write_stderr(sink, message);
        free(message);
        close(sink->journal_fd);
        sink->journal_fd = -1;
        sink->journal_given_up = true;
    }
}

int sdt_event_sink_open_journal(sdt_event_sink *sink, const char *path, char **error)
{
    pthread_mutex_lock(&sink->lock);
    int rc = 0;
    if (sink->journal_fd >= 0) {
        rc = sdt_set_error(error, "journal %s: the sink already writes %s", path, sink->journal_path);
        goto done;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = sdt_set_error(error, "journal %s: %s", path, strerror(errno));
        sink->journal_given_up = true;
        sdt_buf_free(&sink->pending);
        goto done;
    }
    free(sink->journal_path);
    sink->journal_path = sdt_strdup(path);
    sink->journal_fd = fd;
    sink->journal_given_up = false;
    if (sink->pending.len > 0)
        journal_write(sink, sink->pending.data, sink->pending.len, true);
    if (sink->pending_dropped > 0 && sink->journal_fd >= 0) {
        char *note =
            sdt_format("{\"t\":\"log\",\"level\":\"warning\",\"text\":\"%zu events before the journal "
                       "opened were not kept\"}\n",
                       sink->pending_dropped);
        if (note)
            journal_write(sink, note, strlen(note), false);
        free(note);
    }
    sdt_buf_free(&sink->pending);
    sink->pending_dropped = 0;
done:
    pthread_mutex_unlock(&sink->lock);
    return rc;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)(ts.tv_nsec / 1000000) / 1000.0;
}

void sdt_format_duration(double seconds, char *out, size_t size)
{
    if (!isfinite(seconds) || seconds < 0 || seconds > 1e12) {
        snprintf(out, size, "?");
        return;
    }
    long long total = (long long)seconds; /* tqdm truncates */
    long long h = total / 3600, m = total / 60 % 60, s = total % 60;
    if (h)
        snprintf(out, size, "%lld:%02lld:%02lld", h, m, s);
    else
        snprintf(out, size, "%02lld:%02lld", m, s);
}

/* A 10-cell bar of Unicode blocks with eighths for the partial cell, as tqdm draws it. */
static void put_bar(sdt_buf *b, double fraction)
{
    static const char *const eighths[8] = {" ", "▏", "▎", "▍", "▌", "▋", "▊", "▉"};
    const int width = 10;
    if (!(fraction >= 0))
        fraction = 0;
    if (fraction > 1)
        fraction = 1;
    int eighth_cells = (int)(fraction * width * 8);
    int full = eighth_cells / 8;
    for (int i = 0; i < full; i++)
        sdt_buf_puts(b, "█");
    if (full < width) {
        sdt_buf_puts(b, eighths[eighth_cells % 8]);
        for (int i = full + 1; i < width; i++)
            sdt_buf_puts(b, " ");
    }
}

char *sdt_progress_line(const sdt_event *ev, double elapsed_s, double seconds_per_step)
{
    int64_t step = ev->progress.step, total = ev->progress.total_steps;
    double fraction = total > 0 ? (double)step / (double)total : 0;
    double eta = ev->progress.eta_s;
    if (!(eta >= 0) && seconds_per_step > 0 && total >= step)
        eta = seconds_per_step * (double)(total - step);
    char elapsed_text[32], eta_text[32], rate[32];
    sdt_format_duration(elapsed_s, elapsed_text, sizeof elapsed_text);
    sdt_format_duration(eta, eta_text, sizeof eta_text);
    if (!(seconds_per_step > 0) || !isfinite(seconds_per_step))
        snprintf(rate, sizeof rate, "?it/s");
    else if (seconds_per_step > 1)
        snprintf(rate, sizeof rate, "%5.2fs/it", seconds_per_step);
    else
        snprintf(rate, sizeof rate, "%5.2fit/s", 1.0 / seconds_per_step);
    sdt_buf b;
    sdt_buf_init(&b);
    sdt_buf_printf(&b, "steps: %3.0f%%|", fraction * 100.0);
    put_bar(&b, fraction);
    sdt_buf_printf(&b, "| %lld/%lld [%s<%s, %s, epoch=%lld/%lld, loss=%.4g, avr_loss=%.4g, lr=%.2e]",
                   (long long)step, (long long)total, elapsed_text, eta_text, rate,
                   (long long)ev->progress.epoch, (long long)ev->progress.total_epochs, ev->progress.loss,
                   ev->progress.loss_avg, ev->progress.lr);
    return sdt_buf_take(&b);
}

static const char *level_prefix(sdt_log_level level)
{
    switch (level) {
    case SDT_LOG_DEBUG: return "DEBUG";
    case SDT_LOG_INFO: return "INFO";
    case SDT_LOG_WARNING: return "WARNING";
    case SDT_LOG_ERROR: return "ERROR";
    }
    return "INFO";
}

static double gib(int64_t bytes) { return (double)bytes / (1024.0 * 1024.0 * 1024.0); }

static double mib(int64_t bytes) { return (double)bytes / (1024.0 * 1024.0); }

/* The human text of a non-progress event and its level; NULL when it has none. Caller frees. */
static char *human_text(const sdt_event *ev, sdt_log_level *level)
{
    *level = SDT_LOG_INFO;
    switch (ev->type) {
    case SDT_EV_HELLO:
        return sdt_format(
            "sdtune-engine %s (protocol %d): backend %s, device %s, %.1f GiB VRAM, %.1f GiB RAM, "
            "pid %lld",
            SDTUNE_VERSION, ev->hello.version ? ev->hello.version : SDT_PROTOCOL_VERSION,
            ev->hello.backend ? ev->hello.backend : "?", ev->hello.device ? ev->hello.device : "?",
            gib(ev->hello.vram_total), gib(ev->hello.ram_total), (long long)ev->hello.pid);
    case SDT_EV_CONFIG_ERROR:
        *level = SDT_LOG_ERROR;
        return sdt_format("config: %s: %s", ev->config_error.field ? ev->config_error.field : "?",
                          ev->config_error.message ? ev->config_error.message : "");
    case SDT_EV_PHASE: return sdt_format("phase: %s", sdt_phase_name(ev->phase));
    case SDT_EV_MEMORY:
        *level = SDT_LOG_DEBUG;
        return sdt_format("memory %s: used %.0f MiB, peak %.0f MiB, total %.0f MiB",
                          sdt_memory_kind_name(ev->memory.kind), mib(ev->memory.used), mib(ev->memory.peak),
                          mib(ev->memory.total));
    case SDT_EV_LOG: *level = ev->log.level; return sdt_strdup(ev->log.text ? ev->log.text : "");
    case SDT_EV_SAMPLE:
        return sdt_format("sample image %d at step %lld: %s", ev->sample.index, (long long)ev->sample.step,
                          ev->sample.path ? ev->sample.path : "?");
    case SDT_EV_CHECKPOINT:
        return sdt_format("%s: %s",
                          ev->checkpoint.kind == SDT_CHECKPOINT_MODEL   ? "saving checkpoint"
                          : ev->checkpoint.kind == SDT_CHECKPOINT_STATE ? "saving state"
                                                                        : "removing old checkpoint",
                          ev->checkpoint.path ? ev->checkpoint.path : "?");
    case SDT_EV_DONE: {
        sdt_buf b;
        sdt_buf_init(&b);
        sdt_buf_printf(&b, "done (exit code %d)", ev->done.exit_code);
        for (size_t i = 0; i < ev->done.n_outputs; i++)
            sdt_buf_printf(&b, "%s %s", i ? "," : ":", ev->done.outputs[i]);
        return sdt_buf_take(&b);
    }
    case SDT_EV_ERROR:
        *level = SDT_LOG_ERROR;
        if (ev->error.hint)
            return sdt_format("%s (hint: %s)", ev->error.message ? ev->error.message : "", ev->error.hint);
        return sdt_strdup(ev->error.message ? ev->error.message : "");
    case SDT_EV_ACK: return sdt_format("command accepted: %s", ev->ack.command ? ev->ack.command : "?");
    case SDT_EV_PONG: *level = SDT_LOG_DEBUG; return sdt_strdup("pong");
    case SDT_EV_DEVICE:
        /* The trainer's own log line already says where it trains; this one is for debugging. */
        *level = SDT_LOG_DEBUG;
        return sdt_format("device: backend %s, %s, %s%s, %.1f of %.1f GiB free%s%s",
                          ev->device.backend ? ev->device.backend : "?",
                          ev->device.name ? ev->device.name : "?",
                          ev->device.precision ? ev->device.precision : "?",
                          ev->device.fp8_weights ? " with fp8 weights" : "", gib(ev->device.memory_free),
                          gib(ev->device.memory_total), ev->device.reason ? "; " : "",
                          ev->device.reason ? ev->device.reason : "");
    case SDT_EV_PROGRESS:
    case SDT_EV_COUNT: break;
    }
    return NULL;
}

/* Called with the lock held. On a terminal another line first clears the progress line and then redraws
 * it below, so the progress stays the last line, as tqdm does. */
static void human_line(sdt_event_sink *sink, sdt_log_level level, const char *text)
{
    if (level < sink->options.human_level)
        return;
    char *line = sdt_format("%s%s %s\n", sink->progress_shown ? "\r\033[K" : "", level_prefix(level), text);
    if (line)
        write_stderr(sink, line);
    free(line);
    if (sink->progress_shown) {
        write_stderr(sink, sink->progress_shown);
    }
}

static void human_progress(sdt_event_sink *sink, const sdt_event *ev)
{
    if (sink->timing_start == 0) {
        /* The first step's time counts from the training phase when it was announced. */
        if (sink->training_start > 0) {
            sink->timing_start = sink->training_start;
            sink->timing_start_step = ev->progress.step - 1;
        } else {
            sink->timing_start = ev->time;
            sink->timing_start_step = ev->progress.step;
        }
    }
    double elapsed = ev->time - sink->timing_start;
    int64_t steps = ev->progress.step - sink->timing_start_step;
    double per_step = steps > 0 ? elapsed / (double)steps : 0;
    char *text = sdt_progress_line(ev, elapsed, per_step);
    if (!text)
        return;
    if (sink->tty) {
        char *line = sdt_format("\r%s\033[K", text);
        if (line) {
            write_stderr(sink, line);
            free(sink->progress_shown);
            sink->progress_shown = line;
        }
    } else {
        int64_t step = ev->progress.step;
        if (step <= 1 || step % sink->options.progress_every == 0 || step == ev->progress.total_steps) {
            write_stderr(sink, text);
            write_stderr(sink, "\n");
        }
    }
    free(text);
}

static bool syncs_journal(sdt_event_type type)
{
    return type == SDT_EV_PHASE || type == SDT_EV_CHECKPOINT || type == SDT_EV_DONE || type == SDT_EV_ERROR;
}

int sdt_event_sink_emit(sdt_event_sink *sink, const sdt_event *ev)
{
    if (!sink)
        return 0;
    sdt_event stamped = *ev; /* a shallow copy: only "time" changes, the strings stay the caller's */
    if (stamped.time == 0)
        stamped.time = now_seconds();
    char *line = NULL, *error = NULL;
    if (sdt_event_encode(&stamped, &line, &error) != 0) {
        free(error);
        return -1;
    }
    size_t len = strlen(line);
    pthread_mutex_lock(&sink->lock);
    if (sink->options.protocol && sink->options.stdout_fd >= 0 && !sink->stdout_dead) {
        if (write_all(sink->options.stdout_fd, line, len) != 0)
            sink->stdout_dead = true; /* EPIPE: the UI went away; the journal keeps everything */
    }
    if (sink->journal_fd >= 0) {
        journal_write(sink, line, len, syncs_journal(stamped.type));
    } else if (!sink->journal_given_up) {
        if (sink->pending.len + len <= PENDING_LIMIT)
            sdt_buf_append(&sink->pending, line, len);
        else
            sink->pending_dropped++;
    }
    if (!sink->options.protocol) {
        if (stamped.type == SDT_EV_PHASE && stamped.phase == SDT_PHASE_TRAINING && sink->training_start == 0)
            sink->training_start = stamped.time;
        if (stamped.type == SDT_EV_PROGRESS) {
            human_progress(sink, &stamped);
        } else {
            sdt_log_level level;
            char *text = human_text(&stamped, &level);
            if (text)
                human_line(sink, level, text);
            free(text);
        }
    }
    pthread_mutex_unlock(&sink->lock);
    free(line);
    return 0;
}

int sdt_event_sink_logf(sdt_event_sink *sink, sdt_log_level level, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    char *text = sdt_vformat(fmt, args);
    va_end(args);
    sdt_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = SDT_EV_LOG;
    ev.log.level = level;
    ev.log.text = text ? text : "(out of memory formatting a log line)";
    int rc = sdt_event_sink_emit(sink, &ev);
    free(text);
    return rc;
}

int sdt_event_sink_hello(sdt_event_sink *sink, const char *backend, const char *device, int64_t vram_total,
                         int64_t ram_total)
{
    sdt_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = SDT_EV_HELLO;
    ev.hello.version = SDT_PROTOCOL_VERSION;
    ev.hello.backend = (char *)backend;
    ev.hello.device = (char *)device;
    ev.hello.vram_total = vram_total;
    ev.hello.ram_total = ram_total;
    ev.hello.pid = (int64_t)getpid();
    return sdt_event_sink_emit(sink, &ev);
}

int sdt_event_sink_phase(sdt_event_sink *sink, sdt_phase phase)
{
    sdt_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = SDT_EV_PHASE;
    ev.phase = phase;
    return sdt_event_sink_emit(sink, &ev);
}

int sdt_event_sink_error(sdt_event_sink *sink, const char *message, const char *hint)
{
    sdt_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = SDT_EV_ERROR;
    ev.error.message = (char *)message;
    ev.error.hint = (char *)hint;
    return sdt_event_sink_emit(sink, &ev);
}

bool sdt_event_sink_stdout_dead(sdt_event_sink *sink)
{
    if (!sink)
        return false;
    pthread_mutex_lock(&sink->lock);
    bool dead = sink->stdout_dead;
    pthread_mutex_unlock(&sink->lock);
    return dead;
}

void sdt_event_sink_close(sdt_event_sink *sink)
{
    if (!sink)
        return;
    if (sink->progress_shown)
        write_stderr(sink, "\n");
    if (sink->journal_fd >= 0) {
        (void)fsync(sink->journal_fd);
        close(sink->journal_fd);
    }
    pthread_mutex_destroy(&sink->lock);
    sdt_buf_free(&sink->pending);
    free(sink->progress_shown);
    free(sink->journal_path);
    free(sink);
}
