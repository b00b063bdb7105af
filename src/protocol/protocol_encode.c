/* Encoding of events and commands as single JSON lines. Written by hand rather than through jansson's
 * dumper so the field order is the documented one and numbers use the shortest text that reads back to the
 * same double (0.0821, not 0.082100000000000006): the doc's example lines and the tests compare lines byte
 * for byte, and a decoded line re-encodes to itself. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sdtune/protocol.h"
#include "sdtune/strutil.h"

/* JSON string with escapes; each byte that is not part of valid UTF-8 becomes U+FFFD, so any path or
 * caption text gives a line every JSON reader accepts. */
static void put_string(sdt_buf *b, const char *s)
{
    sdt_buf_append(b, "\"", 1);
    size_t len = s ? strlen(s) : 0;
    size_t i = 0;
    while (i < len) {
        size_t valid = i + sdt_utf8_invalid_at(s + i, len - i);
        while (i < valid) {
            unsigned char c = (unsigned char)s[i];
            switch (c) {
            case '"': sdt_buf_append(b, "\\\"", 2); break;
            case '\\': sdt_buf_append(b, "\\\\", 2); break;
            case '\n': sdt_buf_append(b, "\\n", 2); break;
            case '\r': sdt_buf_append(b, "\\r", 2); break;
            case '\t': sdt_buf_append(b, "\\t", 2); break;
            default:
                if (c < 0x20)
                    sdt_buf_printf(b, "\\u%04x", c);
                else
                    sdt_buf_append(b, s + i, 1);
            }
            i++;
        }
        if (i < len) {
            sdt_buf_append(b, "\xef\xbf\xbd", 3); /* U+FFFD for the bad byte */
            i++;
        }
    }
    sdt_buf_append(b, "\"", 1);
}

static void put_key(sdt_buf *b, const char *key) { sdt_buf_printf(b, ",\"%s\":", key); }

static void put_string_field(sdt_buf *b, const char *key, const char *value)
{
    put_key(b, key);
    put_string(b, value);
}

static void put_int_field(sdt_buf *b, const char *key, int64_t value)
{
    put_key(b, key);
    sdt_buf_printf(b, "%" PRId64, value);
}

/* The shortest %g text that strtod reads back as exactly d; zero (and -0) is "0" so that a decoded line
 * re-encodes to itself. */
static void put_double(sdt_buf *b, double d)
{
    if (!isfinite(d)) {
        sdt_buf_puts(b, "null");
        return;
    }
    if (d == 0) {
        sdt_buf_puts(b, "0");
        return;
    }
    char text[40];
    for (int precision = 1; precision <= 17; precision++) {
        snprintf(text, sizeof text, "%.*g", precision, d);
        if (strtod(text, NULL) == d)
            break;
    }
    sdt_buf_puts(b, text);
}

static void put_double_field(sdt_buf *b, const char *key, double value)
{
    put_key(b, key);
    put_double(b, value);
}

/* Seconds with millisecond precision, as an integer when the milliseconds are zero. Values too large for
 * the millisecond arithmetic (never a real clock) keep their full precision. */
static void put_time(sdt_buf *b, double time)
{
    if (fabs(time) >= 1e15) {
        put_double_field(b, "time", time);
        return;
    }
    double rounded = round(time * 1000.0) / 1000.0;
    if (rounded == 0)
        return;
    char text[40];
    snprintf(text, sizeof text, "%.3f", rounded);
    size_t n = strlen(text);
    while (n > 0 && text[n - 1] == '0')
        n--;
    if (n > 0 && text[n - 1] == '.')
        n--;
    text[n] = '\0';
    put_key(b, "time");
    sdt_buf_puts(b, text);
}

static void encode_fields(sdt_buf *b, const sdt_event *ev)
{
    switch (ev->type) {
    case SDT_EV_HELLO:
        put_string_field(b, "backend", ev->hello.backend);
        put_string_field(b, "device", ev->hello.device);
        if (ev->hello.vram_total)
            put_int_field(b, "vram_total", ev->hello.vram_total);
        if (ev->hello.ram_total)
            put_int_field(b, "ram_total", ev->hello.ram_total);
        put_int_field(b, "pid", ev->hello.pid);
        break;
    case SDT_EV_CONFIG_ERROR:
        put_string_field(b, "field", ev->config_error.field);
        put_string_field(b, "message", ev->config_error.message);
        break;
    case SDT_EV_PHASE: put_string_field(b, "phase", sdt_phase_name(ev->phase)); break;
    case SDT_EV_PROGRESS:
        put_int_field(b, "step", ev->progress.step);
        put_int_field(b, "total_steps", ev->progress.total_steps);
        put_int_field(b, "epoch", ev->progress.epoch);
        put_int_field(b, "total_epochs", ev->progress.total_epochs);
        put_double_field(b, "loss", ev->progress.loss);
        put_double_field(b, "loss_avg", ev->progress.loss_avg);
        put_double_field(b, "lr", ev->progress.lr);
        put_double_field(b, "samples_per_s", ev->progress.samples_per_s);
        put_double_field(b, "eta_s", ev->progress.eta_s < 0 ? NAN : ev->progress.eta_s);
        break;
    case SDT_EV_MEMORY:
        put_string_field(b, "kind", sdt_memory_kind_name(ev->memory.kind));
        put_int_field(b, "used", ev->memory.used);
        put_int_field(b, "peak", ev->memory.peak);
        put_int_field(b, "total", ev->memory.total);
        break;
    case SDT_EV_LOG:
        put_string_field(b, "level", sdt_log_level_name(ev->log.level));
        put_string_field(b, "text", ev->log.text);
        break;
    case SDT_EV_SAMPLE:
        put_string_field(b, "path", ev->sample.path);
        put_string_field(b, "prompt", ev->sample.prompt);
        put_int_field(b, "step", ev->sample.step);
        put_int_field(b, "index", ev->sample.index);
        break;
    case SDT_EV_CHECKPOINT:
        put_string_field(b, "path", ev->checkpoint.path);
        put_int_field(b, "step", ev->checkpoint.step);
        put_string_field(b, "kind", sdt_checkpoint_kind_name(ev->checkpoint.kind));
        break;
    case SDT_EV_DONE:
        put_key(b, "outputs");
        sdt_buf_append(b, "[", 1);
        for (size_t i = 0; i < ev->done.n_outputs; i++) {
            if (i)
                sdt_buf_append(b, ",", 1);
            put_string(b, ev->done.outputs[i]);
        }
        sdt_buf_append(b, "]", 1);
        put_int_field(b, "exit_code", ev->done.exit_code);
        break;
    case SDT_EV_ERROR:
        put_string_field(b, "message", ev->error.message);
        if (ev->error.hint)
            put_string_field(b, "hint", ev->error.hint);
        break;
    case SDT_EV_ACK:
        put_string_field(b, "command", ev->ack.command);
        if (ev->ack.id)
            put_string_field(b, "id", ev->ack.id);
        break;
    case SDT_EV_PONG:
        if (ev->pong.id)
            put_string_field(b, "id", ev->pong.id);
        break;
    case SDT_EV_DEVICE:
        put_string_field(b, "backend", ev->device.backend);
        put_string_field(b, "name", ev->device.name);
        if (ev->device.gpu_index >= 0)
            put_int_field(b, "gpu_index", ev->device.gpu_index);
        if (ev->device.memory_total)
            put_int_field(b, "memory_total", ev->device.memory_total);
        if (ev->device.memory_free)
            put_int_field(b, "memory_free", ev->device.memory_free);
        put_string_field(b, "precision", ev->device.precision);
        put_key(b, "fp8_weights");
        sdt_buf_puts(b, ev->device.fp8_weights ? "true" : "false");
        if (ev->device.reason)
            put_string_field(b, "reason", ev->device.reason);
        break;
    case SDT_EV_COUNT: break;
    }
}

static int finish_line(sdt_buf *b, char **line, char **error)
{
    sdt_buf_append(b, "}\n", 2);
    *line = sdt_buf_take(b);
    if (!*line)
        return sdt_set_error(error, "out of memory encoding a protocol line");
    return 0;
}

int sdt_event_encode(const sdt_event *ev, char **line, char **error)
{
    *line = NULL;
    if ((unsigned)ev->type >= SDT_EV_COUNT)
        return sdt_set_error(error, "cannot encode event: unknown type %d", (int)ev->type);
    if (ev->type == SDT_EV_PHASE && (unsigned)ev->phase >= SDT_PHASE_COUNT)
        return sdt_set_error(error, "cannot encode phase event: unknown phase %d", (int)ev->phase);
    sdt_buf b;
    sdt_buf_init(&b);
    sdt_buf_printf(&b, "{\"t\":\"%s\"", sdt_event_type_name(ev->type));
    if (ev->type == SDT_EV_HELLO)
        sdt_buf_printf(&b, ",\"v\":%d", ev->hello.version ? ev->hello.version : SDT_PROTOCOL_VERSION);
    put_time(&b, ev->time);
    encode_fields(&b, ev);
    return finish_line(&b, line, error);
}

int sdt_command_encode(const sdt_command *c, char **line, char **error)
{
    *line = NULL;
    if ((unsigned)c->type >= SDT_CMD_COUNT)
        return sdt_set_error(error, "cannot encode command: unknown type %d", (int)c->type);
    sdt_buf b;
    sdt_buf_init(&b);
    sdt_buf_printf(&b, "{\"t\":\"%s\"", sdt_command_type_name(c->type));
    if (c->id)
        put_string_field(&b, "id", c->id);
    return finish_line(&b, line, error);
}
