/* train_state.json (where a run stands, for an exact resume), the settings a resume must not change, and
 * kohya's loss recorder. */
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "trainer_internal.h"

#define TRAIN_STATE_FORMAT 1

/* ---- loss recorder ---- */

int sdt_loss_recorder_init(sdt_loss_recorder *r, size_t capacity)
{
    memset(r, 0, sizeof *r);
    r->values = calloc(capacity ? capacity : 1, sizeof *r->values);
    r->capacity = capacity ? capacity : 1;
    return r->values ? 0 : -1;
}

void sdt_loss_recorder_free(sdt_loss_recorder *r)
{
    free(r->values);
    memset(r, 0, sizeof *r);
}

void sdt_loss_recorder_add(sdt_loss_recorder *r, int first_epoch, size_t index, double loss)
{
    if (index >= r->capacity)
        index = r->capacity - 1;
    if (first_epoch || index >= r->count) {
        r->values[r->count < r->capacity ? r->count++ : r->capacity - 1] = loss;
        r->sum += loss;
    } else {
        r->sum -= r->values[index];
        r->values[index] = loss;
        r->sum += loss;
    }
}

double sdt_loss_recorder_average(const sdt_loss_recorder *r)
{
    return r->count ? r->sum / (double)r->count : 0;
}

/* ---- train_state.json ---- */

static json_t *u64_string(uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    return json_string(buf);
}

char *sdt_train_state_to_json(const sdt_trainer *t)
{
    json_t *root = json_object();
    char *cursor_text = NULL;
    if (!root || sdt_epoch_cursor_format(&t->cursor, &cursor_text, NULL) != 0) {
        json_decref(root);
        return NULL;
    }
    json_t *cursor = json_loads(cursor_text, 0, NULL);
    free(cursor_text);
    json_t *window = json_array();
    for (size_t i = 0; i < t->recorder.count; i++)
        json_array_append_new(window, json_real(t->recorder.values[i]));
    char hash[20];
    snprintf(hash, sizeof hash, "%016" PRIx64, t->s.resume_hash);
    json_object_set_new(root, "format", json_integer(TRAIN_STATE_FORMAT));
    /* kohya's two keys, for people who know its states */
    json_object_set_new(root, "current_epoch", json_integer(t->cursor.epoch));
    json_object_set_new(root, "current_step", json_integer(t->global_step));
    json_object_set_new(root, "global_step", json_integer(t->global_step));
    json_object_set_new(root, "total_steps", json_integer(t->total_steps));
    json_object_set_new(root, "cursor", cursor ? cursor : json_null());
    json_object_set_new(root, "rng_key", u64_string(t->rng.key));
    json_object_set_new(root, "rng_counter", u64_string(t->rng.counter));
    json_object_set_new(root, "lr_step", json_integer(t->global_step));
    json_object_set_new(root, "loss_window", window);
    json_object_set_new(root, "loss_window_sum", json_real(t->recorder.sum));
    json_object_set_new(root, "epoch_loss_sum", json_real(t->epoch_loss_sum));
    json_object_set_new(root, "epoch_loss_steps", json_integer(t->epoch_loss_steps));
    json_object_set_new(root, "skipped_steps", json_integer(t->skipped_steps));
    json_object_set_new(root, "skipped_in_row", json_integer(t->skipped_in_row));
    if (t->scaler.enabled) { /* fp16 runs: GradScaler's state_dict (scale and growth tracker) */
        json_object_set_new(root, "loss_scale", json_real(t->scaler.scale));
        json_object_set_new(root, "loss_scale_good_steps", json_integer(t->scaler.good_steps));
        json_object_set_new(root, "overflow_steps", json_integer(t->overflow_steps));
    }
    json_object_set_new(root, "settings_hash", json_string(hash));
    json_object_set_new(root, "session_id", json_string(t->session_id));
    json_object_set_new(root, "training_started_at", json_integer(t->training_started_at));
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
    json_decref(root);
    if (!text)
        return NULL;
    char *out = sdt_format("%s\n", text);
    free(text);
    return out;
}

static int get_int(json_t *root, const char *key, const char *path, int64_t *out, char **error)
{
    json_t *v = json_object_get(root, key);
    if (!json_is_integer(v))
        return sdt_set_error(error, "resume: %s: \"%s\" is missing or not an integer", path, key);
    *out = json_integer_value(v);
    return 0;
}

static int get_u64(json_t *root, const char *key, const char *path, uint64_t *out, char **error)
{
    json_t *v = json_object_get(root, key);
    char *end = NULL;
    if (!json_is_string(v) || !*json_string_value(v))
        return sdt_set_error(error, "resume: %s: \"%s\" is missing or not a string", path, key);
    *out = strtoull(json_string_value(v), &end, 10);
    if (*end)
        return sdt_set_error(error, "resume: %s: \"%s\" is not a number", path, key);
    return 0;
}

static int get_real(json_t *root, const char *key, const char *path, double *out, char **error)
{
    json_t *v = json_object_get(root, key);
    if (!json_is_number(v))
        return sdt_set_error(error, "resume: %s: \"%s\" is missing or not a number", path, key);
    *out = json_number_value(v);
    return 0;
}

int sdt_train_state_from_json(sdt_trainer *t, const char *text, const char *path, char **error)
{
    json_error_t jerr;
    json_t *root = json_loads(text, 0, &jerr);
    if (!root)
        return sdt_set_error(error, "resume: %s:%d: %s", path, jerr.line, jerr.text);
    int rc = -1;
    int64_t format = 0, global_step = 0, total = 0, epoch_steps = 0, skipped = 0, in_row = 0, started = 0;
    uint64_t key = 0, counter = 0;
    double window_sum = 0, epoch_sum = 0;
    if (get_int(root, "format", path, &format, error) != 0)
        goto done;
    if (format != TRAIN_STATE_FORMAT) {
        sdt_set_error(error, "resume: %s: format %lld, this version reads %d", path, (long long)format,
                      TRAIN_STATE_FORMAT);
        goto done;
    }
    json_t *hash = json_object_get(root, "settings_hash");
    char expected[20];
    snprintf(expected, sizeof expected, "%016" PRIx64, t->s.resume_hash);
    if (!json_is_string(hash) || strcmp(json_string_value(hash), expected) != 0) {
        sdt_set_error(error,
                      "resume: %s was saved with other settings (model, data, batch size, seed, optimizer or "
                      "network); a resumed run must keep them",
                      path);
        goto done;
    }
    if (get_int(root, "global_step", path, &global_step, error) != 0 ||
        get_int(root, "total_steps", path, &total, error) != 0 ||
        get_u64(root, "rng_key", path, &key, error) != 0 ||
        get_u64(root, "rng_counter", path, &counter, error) != 0 ||
        get_real(root, "loss_window_sum", path, &window_sum, error) != 0 ||
        get_real(root, "epoch_loss_sum", path, &epoch_sum, error) != 0 ||
        get_int(root, "epoch_loss_steps", path, &epoch_steps, error) != 0 ||
        get_int(root, "skipped_steps", path, &skipped, error) != 0 ||
        get_int(root, "skipped_in_row", path, &in_row, error) != 0 ||
        get_int(root, "training_started_at", path, &started, error) != 0)
        goto done;
    json_t *cursor = json_object_get(root, "cursor");
    char *cursor_text = cursor ? json_dumps(cursor, JSON_COMPACT) : NULL;
    sdt_epoch_cursor c;
    int crc =
        cursor_text ? sdt_epoch_cursor_parse(cursor_text, &c, error) : sdt_set_error(error, "no cursor");
    free(cursor_text);
    if (crc != 0 || sdt_epoch_cursor_check(t->data.plan, &c, error) != 0) {
        char *inner = error && *error ? *error : NULL;
        if (error)
            *error = NULL;
        sdt_set_error(error, "resume: %s: the data cursor does not fit this dataset: %s", path,
                      inner ? inner : "invalid");
        free(inner);
        goto done;
    }
    json_t *window = json_object_get(root, "loss_window");
    if (!json_is_array(window) || json_array_size(window) > t->recorder.capacity) {
        sdt_set_error(error, "resume: %s: \"loss_window\" is missing or longer than an epoch", path);
        goto done;
    }
    t->recorder.count = json_array_size(window);
    for (size_t i = 0; i < t->recorder.count; i++)
        t->recorder.values[i] = json_number_value(json_array_get(window, i));
    t->recorder.sum = window_sum;
    if (global_step > t->total_steps)
        sdt_trainer_log(t, SDT_LOG_WARNING,
                        "resume: the state is at step %lld, past the %lld steps of this run",
                        (long long)global_step, (long long)t->total_steps);
    (void)total;
    t->cursor = c;
    t->global_step = global_step;
    t->rng.key = key;
    t->rng.counter = counter;
    t->epoch_loss_sum = epoch_sum;
    t->epoch_loss_steps = epoch_steps;
    t->skipped_steps = skipped;
    t->skipped_in_row = in_row;
    t->training_started_at = started;
    /* The loss scale of an fp16 run; a state without one (saved by a run in another precision) leaves
     * the scaler at its start. */
    json_t *scale = json_object_get(root, "loss_scale");
    if (t->scaler.enabled && scale) {
        int64_t good = 0, overflows = 0;
        double value = json_number_value(scale);
        if (!(value > 0) || get_int(root, "loss_scale_good_steps", path, &good, error) != 0 ||
            get_int(root, "overflow_steps", path, &overflows, error) != 0) {
            if (!(value > 0))
                sdt_set_error(error, "resume: %s: \"loss_scale\" is not a positive number", path);
            goto done;
        }
        t->scaler.scale = value;
        t->scaler.good_steps = good;
        t->overflow_steps = overflows;
        sdt_trainer_log(t, SDT_LOG_INFO, "resume: fp16 loss scale %.17g after %lld steps without overflow",
                        value, (long long)good);
    }
    json_t *session = json_object_get(root, "session_id");
    if (json_is_string(session))
        snprintf(t->session_id, sizeof t->session_id, "%s", json_string_value(session));
    rc = 0;
done:
    json_decref(root);
    return rc;
}
