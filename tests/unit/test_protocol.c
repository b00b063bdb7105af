/* The protocol codec: round trips of every event and command with all fields, null for non-finite
 * numbers, errors that name the field, and conformance with docs/protocol.md (the source of truth): the
 * doc's types are the codec's types, its field tables are what the encoder writes and its "required"
 * column what the decoder enforces, its example lines re-encode to themselves. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "sdtune/protocol.h"
#include "sdtune/strutil.h"

static char *outputs_storage[2] = {"out/a.safetensors", "out/a-state"};

/* An event of type t with every field, optional ones included, set to a value that is not the default. */
static sdt_event filled_event(sdt_event_type t)
{
    sdt_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = t;
    ev.time = 1764000000.125;
    switch (t) {
    case SDT_EV_HELLO:
        ev.hello.version = 1;
        ev.hello.backend = "cuda";
        ev.hello.device = "NVIDIA H200";
        ev.hello.vram_total = 150000000000LL;
        ev.hello.ram_total = 137438953472LL;
        ev.hello.pid = 4242;
        break;
    case SDT_EV_CONFIG_ERROR:
        ev.config_error.field = "training.learning_rate";
        ev.config_error.message = "must be > 0";
        break;
    case SDT_EV_PHASE: ev.phase = SDT_PHASE_SAMPLING; break;
    case SDT_EV_PROGRESS:
        ev.progress.step = 41;
        ev.progress.total_steps = 3280;
        ev.progress.epoch = 2;
        ev.progress.total_epochs = 10;
        ev.progress.loss = 0.0912;
        ev.progress.loss_avg = 0.0821;
        ev.progress.lr = 1e-4;
        ev.progress.samples_per_s = 3.23;
        ev.progress.eta_s = 4014.5;
        break;
    case SDT_EV_MEMORY:
        ev.memory.kind = SDT_MEMORY_RAM;
        ev.memory.used = 1 << 20;
        ev.memory.peak = 3 << 20;
        ev.memory.total = 1LL << 36;
        break;
    case SDT_EV_LOG:
        ev.log.level = SDT_LOG_WARNING;
        ev.log.text = "quote \" backslash \\ newline \n tab \t bell \a é";
        break;
    case SDT_EV_SAMPLE:
        ev.sample.path = "out/sample/a_000400_01.png";
        ev.sample.prompt = "a photo of sks dog";
        ev.sample.step = 400;
        ev.sample.index = 1;
        break;
    case SDT_EV_CHECKPOINT:
        ev.checkpoint.path = "out/a-000002.safetensors";
        ev.checkpoint.step = 656;
        ev.checkpoint.kind = SDT_CHECKPOINT_REMOVED;
        break;
    case SDT_EV_DONE:
        ev.done.outputs = outputs_storage;
        ev.done.n_outputs = 2;
        ev.done.exit_code = 3;
        break;
    case SDT_EV_ERROR:
        ev.error.message = "out of memory";
        ev.error.hint = "lower the batch size";
        break;
    case SDT_EV_ACK:
        ev.ack.command = "pause";
        ev.ack.id = "7";
        break;
    case SDT_EV_PONG: ev.pong.id = "8"; break;
    case SDT_EV_DEVICE:
        ev.device.backend = "cuda";
        ev.device.name = "NVIDIA H200";
        ev.device.gpu_index = 1;
        ev.device.memory_total = 150000000000LL;
        ev.device.memory_free = 149000000000LL;
        ev.device.precision = "bf16";
        ev.device.fp8_weights = 1;
        ev.device.reason = "auto: a CUDA device answers";
        break;
    case SDT_EV_COUNT: break;
    }
    return ev;
}

static char *encode_or_null(const sdt_event *ev)
{
    char *line = NULL, *error = NULL;
    if (sdt_event_encode(ev, &line, &error) != 0) {
        fprintf(stderr, "encode failed: %s\n", error);
        free(error);
        return NULL;
    }
    return line;
}

static void test_event_round_trips(test_state *t)
{
    for (int i = 0; i < SDT_EV_COUNT; i++) {
        sdt_event ev = filled_event((sdt_event_type)i);
        char *line = encode_or_null(&ev);
        CHECK(t, line != NULL);
        if (!line)
            continue;
        CHECK_MSG(t, strchr(line, '\n') == line + strlen(line) - 1, "one line: %s", line);
        char expect_prefix[64];
        snprintf(expect_prefix, sizeof expect_prefix, "{\"t\":\"%s\"", sdt_event_type_name(ev.type));
        CHECK_MSG(t, strncmp(line, expect_prefix, strlen(expect_prefix)) == 0, "%s", line);
        sdt_event back;
        char *error = NULL;
        int rc = sdt_event_decode(line, strlen(line), &back, &error);
        CHECK_MSG(t, rc == 0, "%s: %s", line, error ? error : "");
        free(error);
        if (rc == 0) {
            CHECK(t, back.type == ev.type);
            CHECK(t, back.time == ev.time);
            char *again = encode_or_null(&back);
            CHECK_MSG(t, again && strcmp(again, line) == 0, "%s vs %s", line, again ? again : "(null)");
            free(again);
            sdt_event_clear(&back);
        }
        free(line);
    }
}

static void test_field_values_survive(test_state *t)
{
    sdt_event ev = filled_event(SDT_EV_PROGRESS), back;
    char *line = encode_or_null(&ev), *error = NULL;
    CHECK_STR_CONTAINS(t, line, "\"loss\":0.0912,\"loss_avg\":0.0821,\"lr\":0.0001,");
    CHECK_STR_CONTAINS(t, line, "\"time\":1764000000.125,");
    CHECK(t, sdt_event_decode(line, strlen(line), &back, &error) == 0);
    CHECK(t, back.progress.step == 41 && back.progress.total_steps == 3280);
    CHECK(t, back.progress.epoch == 2 && back.progress.total_epochs == 10);
    CHECK(t, back.progress.loss == 0.0912 && back.progress.loss_avg == 0.0821 && back.progress.lr == 1e-4);
    CHECK(t, back.progress.samples_per_s == 3.23 && back.progress.eta_s == 4014.5);
    sdt_event_clear(&back);
    free(line);

    ev = filled_event(SDT_EV_LOG);
    line = encode_or_null(&ev);
    CHECK_STR_CONTAINS(t, line, "quote \\\" backslash \\\\ newline \\n tab \\t bell \\u0007 é");
    CHECK(t, sdt_event_decode(line, strlen(line), &back, &error) == 0);
    CHECK(t, back.log.level == SDT_LOG_WARNING && back.log.text && strcmp(back.log.text, ev.log.text) == 0);
    sdt_event_clear(&back);
    free(line);

    ev = filled_event(SDT_EV_DONE);
    line = encode_or_null(&ev);
    CHECK(t, sdt_event_decode(line, strlen(line), &back, &error) == 0);
    CHECK(t, back.done.n_outputs == 2 && strcmp(back.done.outputs[1], "out/a-state") == 0);
    CHECK(t, back.done.exit_code == 3);
    sdt_event_clear(&back);
    free(line);

    /* Invalid UTF-8 in a path becomes U+FFFD instead of an unreadable line. */
    ev = filled_event(SDT_EV_SAMPLE);
    ev.sample.path = "bad\xff.png";
    line = encode_or_null(&ev);
    CHECK_STR_CONTAINS(t, line, "\"path\":\"bad\xef\xbf\xbd.png\"");
    CHECK(t, sdt_event_decode(line, strlen(line), &back, &error) == 0);
    sdt_event_clear(&back);
    free(line);
}

/* The device event: GPU index 0 is sent (only -1 means "not a GPU"), a boolean reads back, and a CPU run
 * leaves the GPU index and the reason out. */
static void test_device_event(test_state *t)
{
    sdt_event ev = filled_event(SDT_EV_DEVICE), back;
    ev.device.gpu_index = 0;
    char *line = encode_or_null(&ev), *error = NULL;
    CHECK_STR_CONTAINS(t, line, "\"gpu_index\":0,");
    CHECK_STR_CONTAINS(t, line, "\"precision\":\"bf16\",\"fp8_weights\":true,\"reason\":");
    CHECK(t, sdt_event_decode(line, strlen(line), &back, &error) == 0);
    CHECK(t, back.device.gpu_index == 0 && back.device.fp8_weights == 1);
    CHECK(t, back.device.memory_total == 150000000000LL && back.device.memory_free == 149000000000LL);
    CHECK(t, back.device.name && strcmp(back.device.name, "NVIDIA H200") == 0);
    CHECK(t, back.device.reason && strcmp(back.device.reason, ev.device.reason) == 0);
    sdt_event_clear(&back);
    free(line);

    sdt_event cpu = {.type = SDT_EV_DEVICE, .time = 1764000000};
    cpu.device.backend = "cpu";
    cpu.device.name = "AMD EPYC";
    cpu.device.gpu_index = -1;
    cpu.device.precision = "fp32";
    line = encode_or_null(&cpu);
    CHECK_MSG(t,
              line && strcmp(line, "{\"t\":\"device\",\"time\":1764000000,\"backend\":\"cpu\",\"name\":"
                                   "\"AMD EPYC\",\"precision\":\"fp32\",\"fp8_weights\":false}\n") == 0,
              "%s", line);
    CHECK(t, sdt_event_decode(line, strlen(line), &back, &error) == 0);
    CHECK(t, back.device.gpu_index == -1 && back.device.fp8_weights == 0 && back.device.reason == NULL);
    CHECK(t, back.device.memory_total == 0);
    sdt_event_clear(&back);
    free(line);

    const char *bad = "{\"t\":\"device\",\"backend\":\"cpu\",\"name\":\"x\",\"precision\":\"fp32\","
                      "\"fp8_weights\":1}";
    CHECK(t, sdt_event_decode(bad, strlen(bad), &back, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "field \"fp8_weights\" must be true or false");
    free(error);
}

static void test_non_finite_numbers_are_null(test_state *t)
{
    sdt_event ev = filled_event(SDT_EV_PROGRESS), back;
    ev.progress.loss = NAN;
    ev.progress.loss_avg = INFINITY;
    ev.progress.lr = -INFINITY;
    ev.progress.samples_per_s = NAN;
    ev.progress.eta_s = -1;
    char *line = encode_or_null(&ev), *error = NULL;
    CHECK_STR_CONTAINS(t, line,
                       "\"loss\":null,\"loss_avg\":null,\"lr\":null,\"samples_per_s\":null,\"eta_s\":null}");
    CHECK(t, sdt_event_decode(line, strlen(line), &back, &error) == 0);
    CHECK(t, isnan(back.progress.loss) && isnan(back.progress.loss_avg) && isnan(back.progress.lr));
    CHECK(t, back.progress.eta_s == -1);
    sdt_event_clear(&back);
    free(line);

    /* Optional fields: no time, no hint, no id, unknown totals are left out. */
    ev = filled_event(SDT_EV_ERROR);
    ev.time = 0;
    ev.error.hint = NULL;
    line = encode_or_null(&ev);
    CHECK_MSG(t, line && strcmp(line, "{\"t\":\"error\",\"message\":\"out of memory\"}\n") == 0, "%s", line);
    free(line);
    ev = filled_event(SDT_EV_HELLO);
    ev.hello.vram_total = ev.hello.ram_total = 0;
    ev.hello.version = 0; /* 0 means the current version */
    ev.time = 1764000000;
    line = encode_or_null(&ev);
    CHECK_MSG(t,
              line &&
                  strcmp(line, "{\"t\":\"hello\",\"v\":1,\"time\":1764000000,\"backend\":\"cuda\",\"device\":"
                               "\"NVIDIA H200\",\"pid\":4242}\n") == 0,
              "%s", line);
    free(line);
}

static void expect_event_error(test_state *t, const char *line, const char *needle)
{
    sdt_event ev;
    char *error = NULL;
    int rc = sdt_event_decode(line, strlen(line), &ev, &error);
    CHECK_MSG(t, rc == -1, "accepted: %s", line);
    CHECK_STR_CONTAINS(t, error, needle);
    CHECK(t, ev.type == 0 && ev.log.text == NULL); /* cleared */
    free(error);
}

static void test_event_errors(test_state *t)
{
    expect_event_error(t, "", "malformed event line");
    expect_event_error(t, "{\"t\":", "malformed event line");
    expect_event_error(t, "[1,2]", "not a JSON object");
    expect_event_error(t, "{\"step\":1}", "no \"t\"");
    expect_event_error(t, "{\"t\":5}", "\"t\" must be a string");
    expect_event_error(t, "{\"t\":\"bogus\"}", "unknown event type \"bogus\"");
    expect_event_error(t, "{\"t\":\"phase\",\"phase\":\"dancing\"}", "field \"phase\" has an unknown value");
    expect_event_error(t, "{\"t\":\"phase\"}", "missing field \"phase\"");
    expect_event_error(t, "{\"t\":\"log\",\"level\":\"info\",\"text\":3}", "field \"text\" must be a string");
    expect_event_error(t,
                       "{\"t\":\"progress\",\"step\":1.5,\"total_steps\":2,\"epoch\":1,\"total_epochs\":1,"
                       "\"loss\":1,\"loss_avg\":1,\"lr\":1,\"samples_per_s\":1,\"eta_s\":1}",
                       "field \"step\" must be an integer");
    expect_event_error(t,
                       "{\"t\":\"progress\",\"step\":1,\"total_steps\":2,\"epoch\":1,\"total_epochs\":1,"
                       "\"loss\":\"x\",\"loss_avg\":1,\"lr\":1,\"samples_per_s\":1,\"eta_s\":1}",
                       "progress event: field \"loss\" must be a number or null");
    expect_event_error(t, "{\"t\":\"done\",\"outputs\":[\"a\",1],\"exit_code\":0}", "\"outputs\" item 1");
    expect_event_error(t, "{\"t\":\"done\",\"outputs\":[],\"exit_code\":99999999999}", "out of range");
    expect_event_error(t, "{\"t\":\"pong\",\"time\":\"now\"}", "field \"time\" must be a number");
    expect_event_error(t, "{\"t\":\"pong\",\"id\":\"a\",\"id\":\"b\"}", "duplicate");

    /* Unknown fields are ignored; a trailing newline is fine. */
    sdt_event ev;
    char *error = NULL;
    const char *line = "{\"t\":\"phase\",\"future\":{\"x\":[1]},\"phase\":\"paused\"}\n";
    CHECK(t, sdt_event_decode(line, strlen(line), &ev, &error) == 0 && ev.phase == SDT_PHASE_PAUSED);
    sdt_event_clear(&ev);
}

static void test_commands(test_state *t)
{
    for (int i = 0; i < SDT_CMD_COUNT; i++) {
        sdt_command c = {(sdt_command_type)i, "id-\"1\""}, back;
        char *line = NULL, *error = NULL;
        CHECK(t, sdt_command_encode(&c, &line, &error) == 0);
        CHECK(t, sdt_command_decode(line, strlen(line), &back, &error) == 0);
        CHECK(t, back.type == c.type && back.id && strcmp(back.id, c.id) == 0);
        sdt_command_clear(&back);
        free(line);
    }
    sdt_command c = {SDT_CMD_STOP, NULL};
    char *line = NULL, *error = NULL;
    CHECK(t, sdt_command_encode(&c, &line, &error) == 0);
    CHECK(t, line && strcmp(line, "{\"t\":\"stop\"}\n") == 0);
    free(line);

    static const struct {
        const char *line, *needle;
    } bad[] = {
        {"stop", "malformed command line"},
        {"{\"t\":\"stpo\"}", "unknown command \"stpo\""},
        {"{\"id\":\"1\"}", "command line has no \"t\""},
        {"{\"t\":[]}", "\"t\" must be a string"},
        {"{\"t\":\"stop\",\"id\":7}", "stop command: field \"id\" must be a string"},
        {"\"stop\"", "malformed command line"},
        {"{\"t\":\"stop\"} {\"t\":\"abort\"}", "malformed command line"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sdt_command out;
        int rc = sdt_command_decode(bad[i].line, strlen(bad[i].line), &out, &error);
        CHECK_MSG(t, rc == -1, "accepted %s", bad[i].line);
        CHECK_STR_CONTAINS(t, error, bad[i].needle);
        CHECK(t, out.id == NULL);
        free(error);
        error = NULL;
    }
    /* A line with an embedded NUL byte is not taken as the text before it. */
    sdt_command out;
    CHECK(t, sdt_command_decode("{\"t\":\"stop\"}\0junk", 17, &out, &error) == -1);
    free(error);
}

/* ---- docs/protocol.md ------------------------------------------------------------------------------- */

typedef struct doc_entry {
    char name[64];
    int is_command;
    char fields[16][64];
    int required[16]; /* the table's "required" column */
    int n_fields;
    char *examples[4];
    int n_examples;
} doc_entry;

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    sdt_buf b;
    sdt_buf_init(&b);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        sdt_buf_append(&b, chunk, n);
    fclose(f);
    return sdt_buf_take(&b);
}

/* The "### `name`" entries under "## Events" and "## Commands": their field tables and json examples. */
static int parse_doc(char *text, doc_entry *entries, int max)
{
    int n = 0, section = 0, in_json = 0; /* section 1 events, 2 commands */
    doc_entry *cur = NULL;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (in_json) {
            if (strncmp(line, "```", 3) == 0)
                in_json = 0;
            else if (cur && cur->n_examples < 4)
                cur->examples[cur->n_examples++] = line;
            continue;
        }
        if (strncmp(line, "## ", 3) == 0) {
            section = strcmp(line, "## Events") == 0 ? 1 : strcmp(line, "## Commands") == 0 ? 2 : 0;
            cur = NULL;
        } else if (section && strncmp(line, "### `", 5) == 0 && n < max) {
            cur = &entries[n++];
            memset(cur, 0, sizeof *cur);
            cur->is_command = section == 2;
            sscanf(line + 5, "%63[^`]", cur->name);
        } else if (cur && strncmp(line, "| `", 3) == 0 && cur->n_fields < 16) {
            /* | `name` | type | unit | required | meaning | */
            sscanf(line + 3, "%63[^`]", cur->fields[cur->n_fields]);
            const char *cell = line;
            for (int bars = 0; cell && bars < 3; bars++)
                cell = strchr(cell + 1, '|');
            cur->required[cur->n_fields++] = cell && strncmp(cell, "| required |", 12) == 0;
        } else if (cur && strcmp(line, "```json") == 0) {
            in_json = 1;
        }
    }
    return n;
}

/* line without its top-level field key (a copy, caller frees): the text from the comma before `"key":` to
 * the end of its value, found by tracking nesting and strings. */
static char *without_field(const char *line, const char *key)
{
    char needle[80];
    snprintf(needle, sizeof needle, ",\"%s\":", key);
    const char *start = strstr(line, needle);
    if (!start)
        return NULL;
    const char *p = start + strlen(needle);
    int depth = 0, in_string = 0;
    for (; *p; p++) {
        if (in_string) {
            if (*p == '\\')
                p++;
            else if (*p == '"')
                in_string = 0;
        } else if (*p == '"') {
            in_string = 1;
        } else if (*p == '{' || *p == '[') {
            depth++;
        } else if (*p == '}' || *p == ']') {
            if (depth == 0)
                break;
            depth--;
        } else if (*p == ',' && depth == 0) {
            break;
        }
    }
    return sdt_format("%.*s%s", (int)(start - line), line, p);
}

/* The keys of a flat encoded line other than "t" and "time", in order: each `"key":` at nesting depth 1
 * outside strings. */
static int line_keys(const char *line, char keys[][64], int max)
{
    int n = 0, depth = 0, in_string = 0;
    const char *start = NULL;
    for (const char *p = line; *p; p++) {
        if (in_string) {
            if (*p == '\\')
                p++;
            else if (*p == '"') {
                in_string = 0;
                if (depth == 1 && p[1] == ':' && n < max) {
                    snprintf(keys[n], 64, "%.*s", (int)(p - start), start);
                    if (strcmp(keys[n], "t") != 0 && strcmp(keys[n], "time") != 0)
                        n++;
                }
            }
        } else if (*p == '"') {
            in_string = 1;
            start = p + 1;
        } else if (*p == '{' || *p == '[') {
            depth++;
        } else if (*p == '}' || *p == ']') {
            depth--;
        }
    }
    return n;
}

static void test_doc_conformance(test_state *t)
{
    char *text = read_text(SDT_PROTOCOL_DOC);
    CHECK_MSG(t, text != NULL, "%s not readable", SDT_PROTOCOL_DOC);
    if (!text)
        return;
    static doc_entry entries[64];
    int n = parse_doc(text, entries, 64);
    int seen_event[SDT_EV_COUNT] = {0}, seen_command[SDT_CMD_COUNT] = {0};
    for (int i = 0; i < n; i++) {
        doc_entry *e = &entries[i];
        CHECK_MSG(t, e->n_examples >= 1, "%s has no example line", e->name);
        if (e->is_command) {
            sdt_command_type type;
            CHECK_MSG(t, sdt_command_type_from_name(e->name, &type) == 0, "doc command %s unknown", e->name);
            if (sdt_command_type_from_name(e->name, &type) != 0)
                continue;
            seen_command[type]++;
            CHECK_MSG(t, e->n_fields == 1 && strcmp(e->fields[0], "id") == 0, "%s: fields", e->name);
            for (int k = 0; k < e->n_examples; k++) {
                sdt_command c;
                char *error = NULL, *line = NULL;
                int rc = sdt_command_decode(e->examples[k], strlen(e->examples[k]), &c, &error);
                CHECK_MSG(t, rc == 0 && c.type == type, "%s example: %s", e->name, error ? error : "");
                if (rc == 0 && sdt_command_encode(&c, &line, &error) == 0) {
                    line[strlen(line) - 1] = '\0';
                    CHECK_MSG(t, strcmp(line, e->examples[k]) == 0, "%s re-encodes to %s", e->examples[k],
                              line);
                }
                free(line);
                free(error);
                sdt_command_clear(&c);
            }
            continue;
        }
        sdt_event_type type;
        CHECK_MSG(t, sdt_event_type_from_name(e->name, &type) == 0, "doc event %s unknown to the codec",
                  e->name);
        if (sdt_event_type_from_name(e->name, &type) != 0)
            continue;
        seen_event[type]++;
        /* The table is exactly the encoder's output of a filled event, in order. */
        sdt_event filled = filled_event(type);
        char *line = encode_or_null(&filled);
        char keys[32][64];
        int n_keys = line ? line_keys(line, keys, 32) : 0;
        CHECK_MSG(t, n_keys == e->n_fields, "%s: %d fields in the doc, %d encoded (%s)", e->name, e->n_fields,
                  n_keys, line);
        for (int k = 0; k < n_keys && k < e->n_fields; k++)
            CHECK_MSG(t, strcmp(keys[k], e->fields[k]) == 0, "%s: field %d is %s in the doc, %s encoded",
                      e->name, k, e->fields[k], keys[k]);
        /* The required column is what the decoder enforces: without a required field the line fails. */
        for (int k = 0; line && k < e->n_fields; k++) {
            char *cut = without_field(line, e->fields[k]);
            CHECK_MSG(t, cut != NULL, "%s: %s not found in %s", e->name, e->fields[k], line);
            if (!cut)
                continue;
            sdt_event ev;
            char *error = NULL;
            int rc = sdt_event_decode(cut, strlen(cut), &ev, &error);
            CHECK_MSG(t, (rc != 0) == (e->required[k] != 0), "%s: field %s is %s in the doc; without it: %s",
                      e->name, e->fields[k], e->required[k] ? "required" : "optional",
                      error ? error : "decoded");
            if (rc != 0)
                CHECK_STR_CONTAINS(t, error, e->fields[k]);
            sdt_event_clear(&ev);
            free(error);
            free(cut);
        }
        free(line);
        for (int k = 0; k < e->n_examples; k++) {
            sdt_event ev;
            char *error = NULL;
            int rc = sdt_event_decode(e->examples[k], strlen(e->examples[k]), &ev, &error);
            CHECK_MSG(t, rc == 0 && ev.type == type, "%s example: %s", e->name, error ? error : "");
            free(error);
            if (rc != 0)
                continue;
            char *again = encode_or_null(&ev);
            if (again)
                again[strlen(again) - 1] = '\0';
            CHECK_MSG(t, again && strcmp(again, e->examples[k]) == 0, "%s\n re-encodes to\n%s",
                      e->examples[k], again ? again : "(null)");
            free(again);
            sdt_event_clear(&ev);
        }
    }
    for (int i = 0; i < SDT_EV_COUNT; i++)
        CHECK_MSG(t, seen_event[i] == 1, "event %s documented %d times", sdt_event_type_name(i),
                  seen_event[i]);
    for (int i = 0; i < SDT_CMD_COUNT; i++)
        CHECK_MSG(t, seen_command[i] == 1, "command %s documented %d times", sdt_command_type_name(i),
                  seen_command[i]);
    free(text);
}

TEST_MAIN("protocol", TEST(test_event_round_trips), TEST(test_field_values_survive), TEST(test_device_event),
          TEST(test_non_finite_numbers_are_null), TEST(test_event_errors), TEST(test_commands),
          TEST(test_doc_conformance))
