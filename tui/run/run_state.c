/* The run view's state, fed one engine line or event at a time. See run_state.h. */
#include "run/run_state.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sdtune/strutil.h"

/* ---- bounded collections ----------------------------------------------------------------------------------
 */

static int loss_history_init(run_loss_history *h, size_t capacity)
{
    memset(h, 0, sizeof *h);
    capacity = capacity < 2 ? 2 : capacity + (capacity & 1); /* even: halving keeps the spacing exact */
    h->steps = malloc(capacity * sizeof *h->steps);
    h->raw = malloc(capacity * sizeof *h->raw);
    h->avg = malloc(capacity * sizeof *h->avg);
    h->capacity = capacity;
    h->stride = 1;
    return h->steps && h->raw && h->avg ? 0 : -1;
}

static void loss_history_free(run_loss_history *h)
{
    free(h->steps);
    free(h->raw);
    free(h->avg);
    memset(h, 0, sizeof *h);
}

/* Keeps the progress event numbered h->received if it falls on the stride; halves the history when full. */
static void loss_history_add(run_loss_history *h, int64_t step, double raw, double avg)
{
    uint64_t index = h->received++;
    if (index % h->stride != 0)
        return;
    if (h->count == h->capacity) {
        /* Points kept are events 0, s, 2s, ...; keeping every second one leaves 0, 2s, 4s, ... */
        size_t kept = 0;
        for (size_t i = 0; i < h->count; i += 2, kept++) {
            h->steps[kept] = h->steps[i];
            h->raw[kept] = h->raw[i];
            h->avg[kept] = h->avg[i];
        }
        h->count = kept;
        h->stride *= 2;
        if (index % h->stride != 0)
            return;
    }
    h->steps[h->count] = step;
    h->raw[h->count] = (float)raw;
    h->avg[h->count] = (float)avg;
    h->count++;
}

static void log_add_owned(run_log *log, double time, sdt_log_level level, char *text)
{
    if (!text)
        return; /* out of memory: the line is lost, the run view goes on */
    size_t slot;
    if (log->count < log->capacity) {
        slot = (log->start + log->count) % log->capacity;
        log->count++;
    } else {
        slot = log->start;
        free(log->entries[slot].text);
        log->start = (log->start + 1) % log->capacity;
    }
    log->entries[slot].time = time;
    log->entries[slot].level = level;
    log->entries[slot].text = text;
    log->total++;
}

static void log_addf(run_state *s, sdt_log_level level, const char *fmt, ...) SDT_PRINTF(3, 4);
static void log_addf(run_state *s, sdt_log_level level, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    char *text = sdt_vformat(fmt, args);
    va_end(args);
    log_add_owned(&s->log, s->event_time, level, text);
}

void run_state_log_add(run_state *s, sdt_log_level level, const char *text)
{
    log_add_owned(&s->log, s->event_time, level, sdt_strdup(text ? text : ""));
}

size_t run_state_log_count(const run_state *s) { return s->log.count; }

const run_log_entry *run_state_log_at(const run_state *s, size_t i)
{
    if (i >= s->log.count)
        return NULL;
    return &s->log.entries[(s->log.start + i) % s->log.capacity];
}

static void sample_free(run_sample *sample)
{
    free(sample->path);
    free(sample->prompt);
}

static void add_sample(run_state *s, const sdt_event *ev)
{
    if (s->n_samples == s->max_samples) {
        sample_free(&s->samples[s->n_samples - 1]);
        s->n_samples--;
    }
    memmove(s->samples + 1, s->samples, s->n_samples * sizeof *s->samples);
    run_sample *sample = &s->samples[0];
    sample->path = sdt_strdup(ev->sample.path ? ev->sample.path : "");
    sample->prompt = sdt_strdup(ev->sample.prompt ? ev->sample.prompt : "");
    sample->step = ev->sample.step;
    sample->index = ev->sample.index;
    s->n_samples++;
}

static void add_checkpoint(run_state *s, const sdt_event *ev)
{
    const char *path = ev->checkpoint.path ? ev->checkpoint.path : "";
    if (ev->checkpoint.kind == SDT_CHECKPOINT_REMOVED) {
        /* Rotation deleted an older one: mark it, the list keeps its history. */
        for (size_t i = 0; i < s->n_checkpoints; i++)
            if (strcmp(s->checkpoints[i].path, path) == 0)
                s->checkpoints[i].removed = true;
        return;
    }
    if (s->n_checkpoints == s->max_checkpoints) {
        free(s->checkpoints[s->n_checkpoints - 1].path);
        s->n_checkpoints--;
    }
    memmove(s->checkpoints + 1, s->checkpoints, s->n_checkpoints * sizeof *s->checkpoints);
    run_checkpoint *cp = &s->checkpoints[0];
    cp->path = sdt_strdup(path);
    cp->step = ev->checkpoint.step;
    cp->kind = ev->checkpoint.kind;
    cp->removed = false;
    s->n_checkpoints++;
}

/* ---- life -------------------------------------------------------------------------------------------------
 */

int run_state_init(run_state *s, const run_state_limits *limits, char **error)
{
    memset(s, 0, sizeof *s);
    run_state_limits l = limits ? *limits : (run_state_limits){0};
    s->vram_total = s->ram_total = s->engine_pid = -1;
    s->step = s->total_steps = s->epoch = s->total_epochs = -1;
    s->loss = s->loss_avg = s->lr = s->samples_per_s = s->eta_s = NAN;
    s->memory_used = s->memory_peak = s->memory_total = -1;
    s->device_gpu_index = -1;
    s->device_memory_total = s->device_memory_free = -1;
    s->done_exit_code = -1;
    s->log.capacity = l.log_lines ? l.log_lines : RUN_STATE_LOG_LINES_DEFAULT;
    s->log.entries = calloc(s->log.capacity, sizeof *s->log.entries);
    s->max_samples = l.samples ? l.samples : RUN_STATE_SAMPLES_DEFAULT;
    s->samples = calloc(s->max_samples, sizeof *s->samples);
    s->max_checkpoints = l.checkpoints ? l.checkpoints : RUN_STATE_CHECKPOINTS_DEFAULT;
    s->checkpoints = calloc(s->max_checkpoints, sizeof *s->checkpoints);
    int history =
        loss_history_init(&s->loss_history, l.loss_points ? l.loss_points : RUN_STATE_LOSS_POINTS_DEFAULT);
    if (history != 0 || !s->log.entries || !s->samples || !s->checkpoints) {
        run_state_free(s);
        return sdt_set_error(error, "run view: out of memory");
    }
    return 0;
}

static void free_outputs(run_state *s)
{
    for (size_t i = 0; i < s->n_outputs; i++)
        free(s->outputs[i]);
    free(s->outputs);
    s->outputs = NULL;
    s->n_outputs = 0;
}

void run_state_free(run_state *s)
{
    free(s->backend);
    free(s->device);
    free(s->device_backend);
    free(s->device_name);
    free(s->precision);
    free(s->device_reason);
    loss_history_free(&s->loss_history);
    for (size_t i = 0; i < s->log.count; i++)
        free(s->log.entries[(s->log.start + i) % s->log.capacity].text);
    free(s->log.entries);
    for (size_t i = 0; i < s->n_samples; i++)
        sample_free(&s->samples[i]);
    free(s->samples);
    for (size_t i = 0; i < s->n_checkpoints; i++)
        free(s->checkpoints[i].path);
    free(s->checkpoints);
    free_outputs(s);
    free(s->error_message);
    free(s->error_hint);
    memset(s, 0, sizeof *s);
}

/* ---- events -----------------------------------------------------------------------------------------------
 */

static void replace_string(char **field, const char *value)
{
    free(*field);
    *field = value ? sdt_strdup(value) : NULL;
}

static double finite_or_nan(double x) { return isfinite(x) ? x : NAN; }

static void apply_hello(run_state *s, const sdt_event *ev)
{
    s->have_hello = true;
    s->protocol_version = ev->hello.version;
    replace_string(&s->backend, ev->hello.backend);
    replace_string(&s->device, ev->hello.device);
    s->vram_total = ev->hello.vram_total > 0 ? ev->hello.vram_total : -1;
    s->ram_total = ev->hello.ram_total > 0 ? ev->hello.ram_total : -1;
    s->engine_pid = ev->hello.pid > 0 ? ev->hello.pid : -1;
    s->version_unsupported = ev->hello.version != SDT_PROTOCOL_VERSION;
    if (s->version_unsupported)
        log_addf(s, SDT_LOG_ERROR, "the engine speaks protocol version %d; this UI knows version %d",
                 ev->hello.version, SDT_PROTOCOL_VERSION);
}

static void apply_device(run_state *s, const sdt_event *ev)
{
    s->have_device = true;
    replace_string(&s->device_backend, ev->device.backend);
    replace_string(&s->device_name, ev->device.name);
    s->device_gpu_index = ev->device.gpu_index >= 0 ? ev->device.gpu_index : -1;
    s->device_memory_total = ev->device.memory_total > 0 ? ev->device.memory_total : -1;
    s->device_memory_free = ev->device.memory_free > 0 ? ev->device.memory_free : -1;
    replace_string(&s->precision, ev->device.precision);
    s->fp8_weights = ev->device.fp8_weights != 0;
    replace_string(&s->device_reason, ev->device.reason);
}

static void apply_phase(run_state *s, sdt_phase phase)
{
    s->have_phase = true;
    s->phase = phase;
    if (phase == SDT_PHASE_PAUSED)
        s->pause = RUN_PAUSED;
    else if (s->pause != RUN_PAUSE_ACKED || phase == SDT_PHASE_DONE)
        s->pause = RUN_NOT_PAUSED; /* a pause acked mid-step stays pending through that step's phases */
}

static void apply_progress(run_state *s, const sdt_event *ev)
{
    s->have_progress = true;
    s->step = ev->progress.step;
    s->total_steps = ev->progress.total_steps;
    s->epoch = ev->progress.epoch;
    s->total_epochs = ev->progress.total_epochs;
    s->loss = finite_or_nan(ev->progress.loss);
    s->loss_avg = finite_or_nan(ev->progress.loss_avg);
    s->lr = finite_or_nan(ev->progress.lr);
    s->samples_per_s = finite_or_nan(ev->progress.samples_per_s);
    s->eta_s = ev->progress.eta_s >= 0 ? finite_or_nan(ev->progress.eta_s) : NAN;
    loss_history_add(&s->loss_history, s->step, s->loss, s->loss_avg);
}

static void apply_ack(run_state *s, const char *command)
{
    sdt_command_type type;
    if (!command || sdt_command_type_from_name(command, &type) != 0)
        return;
    switch (type) {
    case SDT_CMD_PAUSE:
        if (s->pause != RUN_PAUSED)
            s->pause = RUN_PAUSE_ACKED;
        break;
    case SDT_CMD_RESUME:
        if (s->pause == RUN_PAUSED)
            s->pause = RUN_RESUME_ACKED;
        else if (s->pause == RUN_PAUSE_ACKED)
            s->pause = RUN_NOT_PAUSED; /* resumed before the pause took effect */
        break;
    case SDT_CMD_STOP: s->stop_acked = true; break;
    case SDT_CMD_ABORT: s->abort_acked = true; break;
    default: break;
    }
}

void run_state_apply_event(run_state *s, const sdt_event *ev)
{
    s->events++;
    s->event_time = ev->time; /* the time of the log lines this event makes */
    switch (ev->type) {
    case SDT_EV_HELLO: apply_hello(s, ev); break;
    case SDT_EV_CONFIG_ERROR:
        s->config_errors++;
        log_addf(s, SDT_LOG_ERROR, "config: %s: %s", ev->config_error.field ? ev->config_error.field : "",
                 ev->config_error.message ? ev->config_error.message : "");
        break;
    case SDT_EV_PHASE: apply_phase(s, ev->phase); break;
    case SDT_EV_PROGRESS: apply_progress(s, ev); break;
    case SDT_EV_MEMORY:
        s->have_memory = true;
        s->memory_kind = ev->memory.kind;
        s->memory_used = ev->memory.used;
        s->memory_peak = ev->memory.peak;
        s->memory_total = ev->memory.total > 0 ? ev->memory.total : -1;
        break;
    case SDT_EV_LOG: run_state_log_add(s, ev->log.level, ev->log.text); break;
    case SDT_EV_SAMPLE: add_sample(s, ev); break;
    case SDT_EV_CHECKPOINT: add_checkpoint(s, ev); break;
    case SDT_EV_DONE:
        s->have_done = true;
        s->done_exit_code = ev->done.exit_code;
        free_outputs(s);
        s->outputs = calloc(ev->done.n_outputs ? ev->done.n_outputs : 1, sizeof *s->outputs);
        for (size_t i = 0; s->outputs && i < ev->done.n_outputs; i++)
            if ((s->outputs[s->n_outputs] = sdt_strdup(ev->done.outputs[i])) != NULL)
                s->n_outputs++;
        s->pause = RUN_NOT_PAUSED;
        break;
    case SDT_EV_ERROR:
        s->have_error = true;
        replace_string(&s->error_message, ev->error.message ? ev->error.message : "");
        replace_string(&s->error_hint, ev->error.hint);
        if (ev->error.hint)
            log_addf(s, SDT_LOG_ERROR, "%s (%s)", s->error_message, ev->error.hint);
        else
            run_state_log_add(s, SDT_LOG_ERROR, s->error_message);
        break;
    case SDT_EV_ACK: apply_ack(s, ev->ack.command); break;
    case SDT_EV_PONG: s->pongs++; break;
    case SDT_EV_DEVICE: apply_device(s, ev); break;
    default: break;
    }
    s->event_time = 0;
}

/* ---- lines ------------------------------------------------------------------------------------------------
 */

void run_state_feed_event_line(run_state *s, const char *text, size_t len, bool truncated)
{
    if (truncated) {
        s->malformed_lines++;
        s->truncated_lines++;
        log_addf(s, SDT_LOG_WARNING, "engine: an event line too long to read was dropped: %.*s...",
                 (int)(len < RUN_STATE_SHOWN_LINE_MAX ? len : RUN_STATE_SHOWN_LINE_MAX), text);
        return;
    }
    sdt_event ev;
    char *error = NULL;
    if (sdt_event_decode(text, len, &ev, &error) != 0) {
        s->malformed_lines++;
        bool cut = len > RUN_STATE_SHOWN_LINE_MAX;
        log_addf(s, SDT_LOG_WARNING, "engine: not an event (%s): %.*s%s", error ? error : "cannot decode",
                 (int)(cut ? RUN_STATE_SHOWN_LINE_MAX : len), text, cut ? "..." : "");
        free(error);
        return;
    }
    run_state_apply_event(s, &ev);
    sdt_event_clear(&ev);
}

void run_state_feed_log_line(run_state *s, const char *text, size_t len, bool truncated)
{
    if (truncated) {
        s->truncated_lines++;
        log_addf(s, SDT_LOG_INFO, "%.*s [line cut]", (int)len, text);
    } else {
        log_addf(s, SDT_LOG_INFO, "%.*s", (int)len, text);
    }
}

void run_state_on_line(void *state, engine_stream stream, const char *text, size_t len, bool truncated)
{
    if (stream == ENGINE_STREAM_EVENTS)
        run_state_feed_event_line(state, text, len, truncated);
    else
        run_state_feed_log_line(state, text, len, truncated);
}

void run_state_engine_exited(run_state *s, const engine_exit *exit)
{
    s->engine_exited = true;
    s->exit = *exit;
    s->died_silently = !s->have_done && !s->have_error;
    char *what = engine_exit_describe(exit);
    bool clean = !exit->signaled && (exit->code == 0 || (exit->code == 3 && s->have_done));
    log_addf(s, clean ? SDT_LOG_INFO : SDT_LOG_ERROR, "engine ended: %s%s", what ? what : "",
             s->died_silently ? " without finishing the run" : "");
    free(what);
}

/* "cuda" -> "CUDA": backends are acronyms; an unknown one is shown as it came. */
static void backend_upper(const char *backend, char *out, size_t size)
{
    size_t i = 0;
    for (; backend && backend[i] && i + 1 < size; i++)
        out[i] = backend[i] >= 'a' && backend[i] <= 'z' ? (char)(backend[i] - 'a' + 'A') : backend[i];
    out[i] = '\0';
}

size_t run_state_device_label(const run_state *s, bool with_name, const char *sep, char *out, size_t size)
{
    if (size == 0)
        return 0;
    out[0] = '\0';
    if (!s->have_device)
        return 0;
    char backend[32];
    backend_upper(s->device_backend ? s->device_backend : "?", backend, sizeof backend);
    bool name = with_name && s->device_name && s->device_name[0];
    int n =
        snprintf(out, size, "%s%s%s%s%s%s%s", backend, name ? sep : "", name ? s->device_name : "", sep,
                 s->precision ? s->precision : "?", s->fp8_weights ? sep : "", s->fp8_weights ? "fp8" : "");
    return n < 0 ? 0 : (size_t)n < size ? (size_t)n : size - 1;
}

const char *run_state_backend(const run_state *s) { return s->have_device ? s->device_backend : s->backend; }

const char *run_state_device_name(const run_state *s) { return s->have_device ? s->device_name : s->device; }

int64_t run_state_memory_total(const run_state *s)
{
    if (s->have_memory && s->memory_total > 0)
        return s->memory_total;
    return s->device_memory_total;
}

const char *run_state_status_text(const run_state *s)
{
    if (s->engine_exited) {
        if (s->have_done)
            return s->done_exit_code == 3 ? "aborted" : "done";
        return s->have_error ? "failed" : "exited";
    }
    if (s->have_done)
        return s->done_exit_code == 3 ? "aborted" : "done";
    if (s->abort_acked)
        return "aborting";
    if (s->stop_acked)
        return "stopping";
    switch (s->pause) {
    case RUN_PAUSE_ACKED: return "pausing";
    case RUN_PAUSED: return "paused";
    case RUN_RESUME_ACKED: return "resuming";
    case RUN_NOT_PAUSED: break;
    }
    return s->have_phase ? sdt_phase_name(s->phase) : "starting";
}
