/* Decoding of protocol lines with jansson. Every failure names the field and what was wrong; unknown fields
 * are ignored so an older reader accepts a newer writer's lines (docs/protocol.md, "Versioning"). */
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sdtune/protocol.h"
#include "sdtune/strutil.h"

typedef struct decoder {
    json_t *root;
    const char *type; /* for messages: "progress event", "stop command" */
    char **error;
} decoder;

static int load_object(const char *line, size_t len, const char *what, json_t **root, char **error)
{
    json_error_t jerr;
    *root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!*root)
        return sdt_set_error(error, "malformed %s line: %s (column %d)", what, jerr.text, jerr.column);
    if (!json_is_object(*root)) {
        json_decref(*root);
        *root = NULL;
        return sdt_set_error(error, "malformed %s line: not a JSON object", what);
    }
    return 0;
}

/* The value of key, or NULL (with an error when required) if absent. */
static json_t *field(decoder *d, const char *key, int required)
{
    json_t *v = json_object_get(d->root, key);
    if (!v && required)
        sdt_set_error(d->error, "%s: missing field \"%s\"", d->type, key);
    return v;
}

static int get_string(decoder *d, const char *key, int required, char **out)
{
    json_t *v = field(d, key, required);
    if (!v)
        return required ? -1 : 0;
    if (!json_is_string(v))
        return sdt_set_error(d->error, "%s: field \"%s\" must be a string", d->type, key);
    *out = sdt_strdup(json_string_value(v));
    if (!*out)
        return sdt_set_error(d->error, "out of memory");
    return 0;
}

static int get_int64(decoder *d, const char *key, int required, int64_t *out)
{
    json_t *v = field(d, key, required);
    if (!v)
        return required ? -1 : 0;
    if (!json_is_integer(v))
        return sdt_set_error(d->error, "%s: field \"%s\" must be an integer", d->type, key);
    *out = (int64_t)json_integer_value(v);
    return 0;
}

/* An absent optional field leaves *out as it was (its default). */
static int get_int(decoder *d, const char *key, int required, int *out)
{
    int64_t value = *out;
    if (get_int64(d, key, required, &value) != 0)
        return -1;
    if (value < INT_MIN || value > INT_MAX)
        return sdt_set_error(d->error, "%s: field \"%s\" is out of range (%lld)", d->type, key,
                             (long long)value);
    *out = (int)value;
    return 0;
}

static int get_bool(decoder *d, const char *key, int required, int *out)
{
    json_t *v = field(d, key, required);
    if (!v)
        return required ? -1 : 0;
    if (!json_is_boolean(v))
        return sdt_set_error(d->error, "%s: field \"%s\" must be true or false", d->type, key);
    *out = json_is_true(v);
    return 0;
}

/* A number (integer or real) or null; null gives null_value (NaN for losses, -1 for an unknown ETA). */
static int get_number(decoder *d, const char *key, double null_value, double *out)
{
    json_t *v = field(d, key, 1);
    if (!v)
        return -1;
    if (json_is_null(v))
        *out = null_value;
    else if (json_is_number(v))
        *out = json_number_value(v);
    else
        return sdt_set_error(d->error, "%s: field \"%s\" must be a number or null", d->type, key);
    return 0;
}

/* An enum carried as a string: the index of its name in names(0..count-1). */
static int get_enum(decoder *d, const char *key, const char *(*name_of)(int), int count, int *out)
{
    json_t *v = field(d, key, 1);
    if (!v)
        return -1;
    if (!json_is_string(v))
        return sdt_set_error(d->error, "%s: field \"%s\" must be a string", d->type, key);
    const char *value = json_string_value(v);
    for (int i = 0; i < count; i++)
        if (strcmp(value, name_of(i)) == 0) {
            *out = i;
            return 0;
        }
    return sdt_set_error(d->error, "%s: field \"%s\" has an unknown value \"%s\"", d->type, key, value);
}

static const char *phase_name_of(int i) { return sdt_phase_name((sdt_phase)i); }
static const char *level_name_of(int i) { return sdt_log_level_name((sdt_log_level)i); }
static const char *memory_name_of(int i) { return sdt_memory_kind_name((sdt_memory_kind)i); }
static const char *checkpoint_name_of(int i) { return sdt_checkpoint_kind_name((sdt_checkpoint_kind)i); }

static int get_outputs(decoder *d, sdt_event *ev)
{
    json_t *v = field(d, "outputs", 1);
    if (!v)
        return -1;
    if (!json_is_array(v))
        return sdt_set_error(d->error, "%s: field \"outputs\" must be an array of strings", d->type);
    size_t n = json_array_size(v);
    if (n == 0)
        return 0;
    ev->done.outputs = calloc(n, sizeof *ev->done.outputs);
    if (!ev->done.outputs)
        return sdt_set_error(d->error, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *item = json_array_get(v, i);
        if (!json_is_string(item))
            return sdt_set_error(d->error, "%s: field \"outputs\" item %zu must be a string", d->type, i);
        ev->done.outputs[i] = sdt_strdup(json_string_value(item));
        ev->done.n_outputs = i + 1;
        if (!ev->done.outputs[i])
            return sdt_set_error(d->error, "out of memory");
    }
    return 0;
}

static int decode_fields(decoder *d, sdt_event *ev)
{
    int e = 0;
    switch (ev->type) {
    case SDT_EV_HELLO:
        if (get_int(d, "v", 1, &ev->hello.version) || get_string(d, "backend", 1, &ev->hello.backend) ||
            get_string(d, "device", 1, &ev->hello.device) ||
            get_int64(d, "vram_total", 0, &ev->hello.vram_total) ||
            get_int64(d, "ram_total", 0, &ev->hello.ram_total) || get_int64(d, "pid", 1, &ev->hello.pid))
            return -1;
        return 0;
    case SDT_EV_CONFIG_ERROR:
        return get_string(d, "field", 1, &ev->config_error.field) ||
                       get_string(d, "message", 1, &ev->config_error.message)
                   ? -1
                   : 0;
    case SDT_EV_PHASE:
        if (get_enum(d, "phase", phase_name_of, SDT_PHASE_COUNT, &e))
            return -1;
        ev->phase = (sdt_phase)e;
        return 0;
    case SDT_EV_PROGRESS:
        return get_int64(d, "step", 1, &ev->progress.step) ||
                       get_int64(d, "total_steps", 1, &ev->progress.total_steps) ||
                       get_int64(d, "epoch", 1, &ev->progress.epoch) ||
                       get_int64(d, "total_epochs", 1, &ev->progress.total_epochs) ||
                       get_number(d, "loss", NAN, &ev->progress.loss) ||
                       get_number(d, "loss_avg", NAN, &ev->progress.loss_avg) ||
                       get_number(d, "lr", NAN, &ev->progress.lr) ||
                       get_number(d, "samples_per_s", NAN, &ev->progress.samples_per_s) ||
                       get_number(d, "eta_s", -1, &ev->progress.eta_s)
                   ? -1
                   : 0;
    case SDT_EV_MEMORY:
        if (get_enum(d, "kind", memory_name_of, 2, &e))
            return -1;
        ev->memory.kind = (sdt_memory_kind)e;
        return get_int64(d, "used", 1, &ev->memory.used) || get_int64(d, "peak", 1, &ev->memory.peak) ||
                       get_int64(d, "total", 1, &ev->memory.total)
                   ? -1
                   : 0;
    case SDT_EV_LOG:
        if (get_enum(d, "level", level_name_of, 4, &e))
            return -1;
        ev->log.level = (sdt_log_level)e;
        return get_string(d, "text", 1, &ev->log.text);
    case SDT_EV_SAMPLE:
        return get_string(d, "path", 1, &ev->sample.path) || get_string(d, "prompt", 1, &ev->sample.prompt) ||
                       get_int64(d, "step", 1, &ev->sample.step) || get_int(d, "index", 1, &ev->sample.index)
                   ? -1
                   : 0;
    case SDT_EV_CHECKPOINT:
        if (get_string(d, "path", 1, &ev->checkpoint.path) || get_int64(d, "step", 1, &ev->checkpoint.step) ||
            get_enum(d, "kind", checkpoint_name_of, 3, &e))
            return -1;
        ev->checkpoint.kind = (sdt_checkpoint_kind)e;
        return 0;
    case SDT_EV_DONE: return get_outputs(d, ev) || get_int(d, "exit_code", 1, &ev->done.exit_code) ? -1 : 0;
    case SDT_EV_ERROR:
        return get_string(d, "message", 1, &ev->error.message) || get_string(d, "hint", 0, &ev->error.hint)
                   ? -1
                   : 0;
    case SDT_EV_ACK:
        return get_string(d, "command", 1, &ev->ack.command) || get_string(d, "id", 0, &ev->ack.id) ? -1 : 0;
    case SDT_EV_PONG: return get_string(d, "id", 0, &ev->pong.id);
    case SDT_EV_DEVICE:
        ev->device.gpu_index = -1; /* absent: not a GPU */
        return get_string(d, "backend", 1, &ev->device.backend) ||
                       get_string(d, "name", 1, &ev->device.name) ||
                       get_int(d, "gpu_index", 0, &ev->device.gpu_index) ||
                       get_int64(d, "memory_total", 0, &ev->device.memory_total) ||
                       get_int64(d, "memory_free", 0, &ev->device.memory_free) ||
                       get_string(d, "precision", 1, &ev->device.precision) ||
                       get_bool(d, "fp8_weights", 1, &ev->device.fp8_weights) ||
                       get_string(d, "reason", 0, &ev->device.reason)
                   ? -1
                   : 0;
    case SDT_EV_COUNT: break;
    }
    return -1;
}

/* "t" as a known type name; the message names the problem. */
static const char *get_type_name(json_t *root, const char *what, char **error)
{
    json_t *t = json_object_get(root, "t");
    if (!t) {
        sdt_set_error(error, "%s line has no \"t\" (type) field", what);
        return NULL;
    }
    if (!json_is_string(t)) {
        sdt_set_error(error, "%s line: field \"t\" must be a string", what);
        return NULL;
    }
    return json_string_value(t);
}

int sdt_event_decode(const char *line, size_t len, sdt_event *out, char **error)
{
    memset(out, 0, sizeof *out);
    json_t *root = NULL;
    if (load_object(line, len, "event", &root, error) != 0)
        return -1;
    int rc = -1;
    const char *name = get_type_name(root, "event", error);
    if (!name)
        goto done;
    if (sdt_event_type_from_name(name, &out->type) != 0) {
        sdt_set_error(error, "unknown event type \"%s\"", name);
        goto done;
    }
    char what[64];
    snprintf(what, sizeof what, "%s event", name);
    decoder d = {root, what, error};
    json_t *time = json_object_get(root, "time");
    if (time) {
        if (!json_is_number(time)) {
            sdt_set_error(error, "%s: field \"time\" must be a number", what);
            goto done;
        }
        out->time = json_number_value(time);
    }
    rc = decode_fields(&d, out);
done:
    json_decref(root);
    if (rc != 0)
        sdt_event_clear(out);
    return rc;
}

void sdt_event_clear(sdt_event *ev)
{
    free(ev->hello.backend);
    free(ev->hello.device);
    free(ev->config_error.field);
    free(ev->config_error.message);
    free(ev->log.text);
    free(ev->sample.path);
    free(ev->sample.prompt);
    free(ev->checkpoint.path);
    for (size_t i = 0; i < ev->done.n_outputs; i++)
        free(ev->done.outputs[i]);
    free(ev->done.outputs);
    free(ev->error.message);
    free(ev->error.hint);
    free(ev->ack.command);
    free(ev->ack.id);
    free(ev->pong.id);
    free(ev->device.backend);
    free(ev->device.name);
    free(ev->device.precision);
    free(ev->device.reason);
    memset(ev, 0, sizeof *ev);
}

int sdt_command_decode(const char *line, size_t len, sdt_command *out, char **error)
{
    memset(out, 0, sizeof *out);
    json_t *root = NULL;
    if (load_object(line, len, "command", &root, error) != 0)
        return -1;
    int rc = -1;
    const char *name = get_type_name(root, "command", error);
    if (!name)
        goto done;
    if (sdt_command_type_from_name(name, &out->type) != 0) {
        sdt_set_error(error,
                      "unknown command \"%s\" (known: stop, abort, pause, resume, sample_now, "
                      "save_now, ping)",
                      name);
        goto done;
    }
    char what[64];
    snprintf(what, sizeof what, "%s command", name);
    decoder d = {root, what, error};
    rc = get_string(&d, "id", 0, &out->id);
done:
    json_decref(root);
    if (rc != 0)
        sdt_command_clear(out);
    return rc;
}

void sdt_command_clear(sdt_command *c)
{
    free(c->id);
    memset(c, 0, sizeof *c);
}
