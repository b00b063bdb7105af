/* The run view's state (tui/run/run_state.c): a scripted run built with the protocol codec, checked after
 * every event; malformed and cut lines; the bounded histories; NaN losses; an engine that dies. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "run/run_state.h"
#include "unit/check.h"

/* Encodes ev as the engine would and feeds the line (without its '\n', as the client delivers it). */
static void feed(test_state *t, run_state *s, const sdt_event *ev)
{
    char *line = NULL, *error = NULL;
    int rc = sdt_event_encode(ev, &line, &error);
    CHECK_MSG(t, rc == 0, "encode: %s", error ? error : "");
    if (rc == 0)
        run_state_on_line(s, ENGINE_STREAM_EVENTS, line, strlen(line) - 1, false);
    free(line);
    free(error);
}

static void feed_text(run_state *s, engine_stream stream, const char *text, bool truncated)
{
    run_state_on_line(s, stream, text, strlen(text), truncated);
}

static void feed_phase(test_state *t, run_state *s, sdt_phase phase)
{
    sdt_event ev = {.type = SDT_EV_PHASE, .time = 1764000000.5, .phase = phase};
    feed(t, s, &ev);
}

static void feed_ack(test_state *t, run_state *s, const char *command)
{
    sdt_event ev = {.type = SDT_EV_ACK, .time = 1764000000.5};
    ev.ack.command = (char *)command;
    feed(t, s, &ev);
}

static void feed_progress(test_state *t, run_state *s, int64_t step, double loss, double loss_avg)
{
    sdt_event ev = {.type = SDT_EV_PROGRESS, .time = 1764000001};
    ev.progress.step = step;
    ev.progress.total_steps = 100;
    ev.progress.epoch = 1 + step / 10;
    ev.progress.total_epochs = 10;
    ev.progress.loss = loss;
    ev.progress.loss_avg = loss_avg;
    ev.progress.lr = 1e-4;
    ev.progress.samples_per_s = 3.25;
    ev.progress.eta_s = 30.5;
    feed(t, s, &ev);
}

static const char *last_log(const run_state *s)
{
    size_t n = run_state_log_count(s);
    return n ? run_state_log_at(s, n - 1)->text : "";
}

static sdt_log_level last_level(const run_state *s)
{
    size_t n = run_state_log_count(s);
    return n ? run_state_log_at(s, n - 1)->level : SDT_LOG_DEBUG;
}

static void test_scripted_run(test_state *t)
{
    run_state s;
    CHECK(t, run_state_init(&s, NULL, NULL) == 0);
    CHECK(t, strcmp(run_state_status_text(&s), "starting") == 0);
    CHECK(t, !s.have_hello && !s.have_progress && !s.have_memory);
    CHECK(t, isnan(s.loss) && s.step == -1 && s.memory_total == -1 && s.done_exit_code == -1);

    sdt_event hello = {.type = SDT_EV_HELLO, .time = 1764000000.125};
    hello.hello.version = SDT_PROTOCOL_VERSION;
    hello.hello.backend = "cpu";
    hello.hello.device = "Test CPU";
    hello.hello.ram_total = 68719476736;
    hello.hello.pid = 4242;
    feed(t, &s, &hello);
    CHECK(t, s.have_hello && !s.version_unsupported && s.protocol_version == 1);
    CHECK(t, s.backend && strcmp(s.backend, "cpu") == 0);
    CHECK(t, s.device && strcmp(s.device, "Test CPU") == 0);
    CHECK(t, s.ram_total == 68719476736 && s.vram_total == -1 && s.engine_pid == 4242);
    CHECK(t, s.events == 1 && s.malformed_lines == 0);

    feed_phase(t, &s, SDT_PHASE_LOADING);
    CHECK(t, s.have_phase && s.phase == SDT_PHASE_LOADING);
    CHECK(t, strcmp(run_state_status_text(&s), "loading") == 0);
    feed_phase(t, &s, SDT_PHASE_CACHING);
    CHECK(t, strcmp(run_state_status_text(&s), "caching") == 0);
    feed_phase(t, &s, SDT_PHASE_TRAINING);
    CHECK(t, strcmp(run_state_status_text(&s), "training") == 0);

    feed_progress(t, &s, 1, 0.125, 0.25);
    CHECK(t, s.have_progress && s.step == 1 && s.total_steps == 100 && s.epoch == 1 && s.total_epochs == 10);
    CHECK(t, s.loss == 0.125 && s.loss_avg == 0.25 && s.lr == 1e-4 && s.samples_per_s == 3.25);
    CHECK(t, s.eta_s == 30.5);
    CHECK(t, s.loss_history.count == 1 && s.loss_history.steps[0] == 1 && s.loss_history.raw[0] == 0.125f &&
                 s.loss_history.avg[0] == 0.25f);

    sdt_event memory = {.type = SDT_EV_MEMORY, .time = 1764000001};
    memory.memory.kind = SDT_MEMORY_RAM;
    memory.memory.used = 1000;
    memory.memory.peak = 2000;
    memory.memory.total = 8000;
    feed(t, &s, &memory);
    CHECK(t, s.have_memory && s.memory_kind == SDT_MEMORY_RAM);
    CHECK(t, s.memory_used == 1000 && s.memory_peak == 2000 && s.memory_total == 8000);

    sdt_event log = {.type = SDT_EV_LOG, .time = 1764000001};
    log.log.level = SDT_LOG_WARNING;
    log.log.text = "caption missing for a.png";
    feed(t, &s, &log);
    CHECK(t, run_state_log_count(&s) == 1);
    CHECK(t, strcmp(last_log(&s), "caption missing for a.png") == 0 && last_level(&s) == SDT_LOG_WARNING);
    CHECK(t, run_state_log_at(&s, 0)->time == 1764000001);
    feed_text(&s, ENGINE_STREAM_LOG, "a line on stderr", false);
    CHECK(t, run_state_log_count(&s) == 2);
    CHECK(t, strcmp(last_log(&s), "a line on stderr") == 0 && last_level(&s) == SDT_LOG_INFO);
    CHECK(t, run_state_log_at(&s, 1)->time == 0);

    /* pause: ack first (pausing), then the phase; resume the same way */
    feed_ack(t, &s, "pause");
    CHECK(t, s.pause == RUN_PAUSE_ACKED && strcmp(run_state_status_text(&s), "pausing") == 0);
    feed_phase(t, &s, SDT_PHASE_SAVING); /* the step in flight may save first: the pause stays pending */
    CHECK(t, s.pause == RUN_PAUSE_ACKED);
    feed_phase(t, &s, SDT_PHASE_PAUSED);
    CHECK(t, s.pause == RUN_PAUSED && strcmp(run_state_status_text(&s), "paused") == 0);
    feed_ack(t, &s, "resume");
    CHECK(t, s.pause == RUN_RESUME_ACKED && strcmp(run_state_status_text(&s), "resuming") == 0);
    feed_phase(t, &s, SDT_PHASE_TRAINING);
    CHECK(t, s.pause == RUN_NOT_PAUSED && strcmp(run_state_status_text(&s), "training") == 0);
    feed_ack(t, &s, "sample_now"); /* acks that change nothing shown */
    CHECK(t, s.pause == RUN_NOT_PAUSED && !s.stop_acked && !s.abort_acked);

    sdt_event sample = {.type = SDT_EV_SAMPLE, .time = 1764000002};
    sample.sample.path = "out/sample/a_000002_00.png";
    sample.sample.prompt = "a red circle";
    sample.sample.step = 2;
    feed(t, &s, &sample);
    sample.sample.path = "out/sample/a_000002_01.png";
    sample.sample.prompt = "a blue square";
    sample.sample.index = 1;
    feed(t, &s, &sample);
    CHECK(t, s.n_samples == 2);
    CHECK(t, strcmp(s.samples[0].path, "out/sample/a_000002_01.png") == 0 && s.samples[0].index == 1);
    CHECK(t, strcmp(s.samples[1].prompt, "a red circle") == 0 && s.samples[1].step == 2);

    sdt_event checkpoint = {.type = SDT_EV_CHECKPOINT, .time = 1764000003};
    checkpoint.checkpoint.path = "out/a-000002.safetensors";
    checkpoint.checkpoint.step = 2;
    checkpoint.checkpoint.kind = SDT_CHECKPOINT_MODEL;
    feed(t, &s, &checkpoint);
    checkpoint.checkpoint.path = "out/a-000004.safetensors";
    checkpoint.checkpoint.step = 4;
    feed(t, &s, &checkpoint);
    checkpoint.checkpoint.path = "out/a-000002.safetensors";
    checkpoint.checkpoint.kind = SDT_CHECKPOINT_REMOVED;
    feed(t, &s, &checkpoint);
    CHECK(t, s.n_checkpoints == 2);
    CHECK(t, s.checkpoints[0].step == 4 && !s.checkpoints[0].removed);
    CHECK(t, s.checkpoints[1].step == 2 && s.checkpoints[1].removed);

    sdt_event ping_answer = {.type = SDT_EV_PONG, .time = 1764000003};
    feed(t, &s, &ping_answer);
    CHECK(t, s.pongs == 1);

    feed_ack(t, &s, "stop");
    CHECK(t, s.stop_acked && strcmp(run_state_status_text(&s), "stopping") == 0);
    feed_phase(t, &s, SDT_PHASE_SAVING);
    feed_phase(t, &s, SDT_PHASE_DONE);
    char *outputs[] = {"out/a.safetensors", "out/a-state"};
    sdt_event done = {.type = SDT_EV_DONE, .time = 1764000004};
    done.done.outputs = outputs;
    done.done.n_outputs = 2;
    done.done.exit_code = 0;
    feed(t, &s, &done);
    CHECK(t, s.have_done && s.done_exit_code == 0 && s.n_outputs == 2);
    CHECK(t, s.n_outputs == 2 && strcmp(s.outputs[1], "out/a-state") == 0);
    CHECK(t, strcmp(run_state_status_text(&s), "done") == 0);

    engine_exit status = {.code = 0};
    run_state_engine_exited(&s, &status);
    CHECK(t, s.engine_exited && !s.died_silently && s.exit.code == 0);
    CHECK_STR_CONTAINS(t, last_log(&s), "engine ended: exit code 0 (done or stopped)");
    CHECK(t, last_level(&s) == SDT_LOG_INFO);
    CHECK(t, strcmp(run_state_status_text(&s), "done") == 0);
    CHECK(t, s.events == 23 && s.malformed_lines == 0 && s.truncated_lines == 0);
    run_state_free(&s);
}

static void test_malformed_lines(test_state *t)
{
    run_state s;
    CHECK(t, run_state_init(&s, NULL, NULL) == 0);
    feed_text(&s, ENGINE_STREAM_EVENTS, "this is not json", false);
    CHECK(t, s.malformed_lines == 1 && run_state_log_count(&s) == 1 && last_level(&s) == SDT_LOG_WARNING);
    CHECK_STR_CONTAINS(t, last_log(&s), "this is not json");
    feed_text(&s, ENGINE_STREAM_EVENTS, "{\"t\":\"telemetry\",\"x\":1}",
              false); /* a type this UI does not know */
    CHECK(t, s.malformed_lines == 2);
    CHECK_STR_CONTAINS(t, last_log(&s), "telemetry");
    feed_text(&s, ENGINE_STREAM_EVENTS, "{\"t\":\"progress\",\"step\":3}",
              false); /* required fields missing */
    CHECK(t, s.malformed_lines == 3 && !s.have_progress);
    CHECK_STR_CONTAINS(t, last_log(&s), "total_steps");
    feed_text(&s, ENGINE_STREAM_EVENTS, "{\"t\":\"phase\",\"phase\":\"train", true); /* cut by the client */
    CHECK(t, s.malformed_lines == 4 && s.truncated_lines == 1 && !s.have_phase);
    CHECK_STR_CONTAINS(t, last_log(&s), "too long");
    char long_line[1000];
    memset(long_line, 'x', sizeof long_line - 1);
    long_line[sizeof long_line - 1] = '\0';
    feed_text(&s, ENGINE_STREAM_EVENTS, long_line, false);
    CHECK(t, s.malformed_lines == 5);
    CHECK(t, strlen(last_log(&s)) < 400); /* quoted, not copied whole */
    feed_text(&s, ENGINE_STREAM_LOG, "Segmentation fault", true);
    CHECK(t, s.truncated_lines == 2 && last_level(&s) == SDT_LOG_INFO);
    CHECK(t, strcmp(last_log(&s), "Segmentation fault [line cut]") == 0);
    CHECK(t, s.events == 0);
    /* the state still takes good events */
    feed_phase(t, &s, SDT_PHASE_TRAINING);
    CHECK(t, s.have_phase && s.phase == SDT_PHASE_TRAINING && s.events == 1);
    run_state_free(&s);
}

static void test_bounded_histories(test_state *t)
{
    run_state s;
    run_state_limits limits = {.loss_points = 4, .log_lines = 3, .samples = 2, .checkpoints = 2};
    CHECK(t, run_state_init(&s, &limits, NULL) == 0);
    /* events 0..9 (steps 1..10) with 4 points: 1 2 3 4 -> 1 3 5 7 -> 1 5 9, stride 4 */
    for (int step = 1; step <= 10; step++)
        feed_progress(t, &s, step, 0.01 * step, 0.02 * step);
    const run_loss_history *h = &s.loss_history;
    CHECK(t, h->count == 3 && h->stride == 4 && h->received == 10);
    CHECK(t, h->steps[0] == 1 && h->steps[1] == 5 && h->steps[2] == 9);
    CHECK(t, h->raw[1] == (float)0.05 && h->avg[2] == (float)0.18);
    CHECK(t, s.step == 10); /* the latest value is always current */

    /* a long run stays bounded and evenly spaced */
    run_state big;
    run_state_limits big_limits = {.loss_points = 100};
    CHECK(t, run_state_init(&big, &big_limits, NULL) == 0);
    for (int step = 1; step <= 100000; step++) {
        sdt_event ev = {.type = SDT_EV_PROGRESS};
        ev.progress.step = step;
        ev.progress.total_steps = 100000;
        ev.progress.loss = ev.progress.loss_avg = 1.0 / step;
        run_state_apply_event(&big, &ev);
    }
    h = &big.loss_history;
    CHECK(t, h->count <= 100 && h->count >= 50 && h->stride == 1024);
    int even = 1;
    for (size_t i = 0; i < h->count; i++)
        even &= h->steps[i] == 1 + (int64_t)(i * h->stride);
    CHECK(t, even);
    CHECK(t, h->steps[h->count - 1] + (int64_t)h->stride > 100000);
    run_state_free(&big);

    for (int i = 0; i < 5; i++) {
        char text[32];
        snprintf(text, sizeof text, "line %d", i);
        feed_text(&s, ENGINE_STREAM_LOG, text, false);
    }
    CHECK(t, run_state_log_count(&s) == 3 && s.log.total == 5);
    CHECK(t, strcmp(run_state_log_at(&s, 0)->text, "line 2") == 0);
    CHECK(t, strcmp(run_state_log_at(&s, 2)->text, "line 4") == 0);
    CHECK(t, run_state_log_at(&s, 3) == NULL);

    for (int i = 1; i <= 3; i++) {
        char path[32];
        snprintf(path, sizeof path, "s%d.png", i);
        sdt_event sample = {.type = SDT_EV_SAMPLE};
        sample.sample.path = path;
        sample.sample.prompt = "p";
        sample.sample.step = i;
        run_state_apply_event(&s, &sample);
        sdt_event cp = {.type = SDT_EV_CHECKPOINT};
        cp.checkpoint.path = path;
        cp.checkpoint.step = i;
        run_state_apply_event(&s, &cp);
    }
    CHECK(t, s.n_samples == 2 && s.samples[0].step == 3 && s.samples[1].step == 2);
    CHECK(t, s.n_checkpoints == 2 && s.checkpoints[0].step == 3 && s.checkpoints[1].step == 2);
    run_state_free(&s);
}

static void test_nan_losses(test_state *t)
{
    run_state s;
    CHECK(t, run_state_init(&s, NULL, NULL) == 0);
    sdt_event ev = {.type = SDT_EV_PROGRESS, .time = 1764000001};
    ev.progress.step = 7;
    ev.progress.total_steps = 8;
    ev.progress.epoch = 1;
    ev.progress.total_epochs = 1;
    ev.progress.loss = NAN;
    ev.progress.loss_avg = 0.5;
    ev.progress.lr = INFINITY;
    ev.progress.samples_per_s = NAN;
    ev.progress.eta_s = -1;
    feed(t, &s, &ev); /* NaN and Inf go over the wire as null */
    CHECK(t, s.have_progress && s.step == 7 && s.malformed_lines == 0);
    CHECK(t, isnan(s.loss) && s.loss_avg == 0.5 && isnan(s.lr) && isnan(s.samples_per_s) && isnan(s.eta_s));
    CHECK(t, s.loss_history.count == 1 && isnan(s.loss_history.raw[0]) && s.loss_history.avg[0] == 0.5f);
    /* straight from a decoded event too */
    ev.progress.step = 8;
    ev.progress.loss = -INFINITY;
    run_state_apply_event(&s, &ev);
    CHECK(t, isnan(s.loss) && s.loss_history.count == 2 && isnan(s.loss_history.raw[1]));
    run_state_free(&s);
}

static void test_engine_dies(test_state *t)
{
    run_state s;
    CHECK(t, run_state_init(&s, NULL, NULL) == 0);
    feed_phase(t, &s, SDT_PHASE_TRAINING);
    engine_exit killed = {.signaled = true, .signal = 9};
    run_state_engine_exited(&s, &killed);
    CHECK(t, s.engine_exited && s.died_silently && s.exit.signaled && s.exit.signal == 9);
    CHECK(t, strcmp(run_state_status_text(&s), "exited") == 0);
    CHECK(t, last_level(&s) == SDT_LOG_ERROR);
    CHECK_STR_CONTAINS(t, last_log(&s), "killed by signal 9");
    CHECK_STR_CONTAINS(t, last_log(&s), "without finishing the run");
    run_state_free(&s);

    /* a failed run: the error event, then exit 1 */
    CHECK(t, run_state_init(&s, NULL, NULL) == 0);
    sdt_event config_error = {.type = SDT_EV_CONFIG_ERROR};
    config_error.config_error.field = "training.learning_rate";
    config_error.config_error.message = "must be > 0";
    feed(t, &s, &config_error);
    CHECK(t, s.config_errors == 1);
    CHECK(t, strcmp(last_log(&s), "config: training.learning_rate: must be > 0") == 0);
    sdt_event error = {.type = SDT_EV_ERROR};
    error.error.message = "out of memory";
    error.error.hint = "lower train_batch_size";
    feed(t, &s, &error);
    CHECK(t, s.have_error && strcmp(s.error_message, "out of memory") == 0);
    CHECK(t, s.error_hint && strcmp(s.error_hint, "lower train_batch_size") == 0);
    CHECK(t, strcmp(last_log(&s), "out of memory (lower train_batch_size)") == 0);
    engine_exit failed = {.code = 2};
    run_state_engine_exited(&s, &failed);
    CHECK(t, !s.died_silently && strcmp(run_state_status_text(&s), "failed") == 0);
    CHECK_STR_CONTAINS(t, last_log(&s), "exit code 2 (usage or config error)");
    run_state_free(&s);

    /* aborted: done with exit code 3, then exit 3 */
    CHECK(t, run_state_init(&s, NULL, NULL) == 0);
    feed_ack(t, &s, "abort");
    CHECK(t, strcmp(run_state_status_text(&s), "aborting") == 0);
    sdt_event done = {.type = SDT_EV_DONE};
    done.done.exit_code = 3;
    feed(t, &s, &done);
    engine_exit aborted = {.code = 3};
    run_state_engine_exited(&s, &aborted);
    CHECK(t, strcmp(run_state_status_text(&s), "aborted") == 0 && s.n_outputs == 0);
    CHECK(t, last_level(&s) == SDT_LOG_INFO);
    run_state_free(&s);
}

static void test_unknown_version(test_state *t)
{
    run_state s;
    CHECK(t, run_state_init(&s, NULL, NULL) == 0);
    feed_text(
        &s, ENGINE_STREAM_EVENTS,
        "{\"t\":\"hello\",\"v\":2,\"backend\":\"cuda\",\"device\":\"GPU\",\"vram_total\":1024,\"pid\":7}",
        false);
    CHECK(t, s.have_hello && s.version_unsupported && s.protocol_version == 2 && s.vram_total == 1024);
    CHECK(t, last_level(&s) == SDT_LOG_ERROR);
    CHECK_STR_CONTAINS(t, last_log(&s), "protocol version 2");
    run_state_free(&s);
}

/* The `device` event: what the run trains on, over hello's guess; the header's label with and without the
 * device's name; the gauge's total from the device until a memory event brings one. */
static void test_device_event(test_state *t)
{
    run_state s;
    CHECK(t, run_state_init(&s, NULL, NULL) == 0);
    char label[128];
    CHECK(t, run_state_device_label(&s, true, " · ", label, sizeof label) == 0 && label[0] == '\0');
    CHECK(t, run_state_memory_total(&s) == -1);

    sdt_event hello = {.type = SDT_EV_HELLO, .time = 1764000000};
    hello.hello.version = SDT_PROTOCOL_VERSION;
    hello.hello.backend = "cuda";
    hello.hello.device = "NVIDIA H200";
    hello.hello.pid = 7;
    feed(t, &s, &hello);
    CHECK(t, !s.have_device && strcmp(run_state_backend(&s), "cuda") == 0);

    /* The config said cpu: the device event is the truth, hello's guess stays hello's. */
    sdt_event device = {.type = SDT_EV_DEVICE, .time = 1764000000.5};
    device.device.backend = "cpu";
    device.device.name = "Test CPU";
    device.device.gpu_index = -1;
    device.device.memory_total = 8000;
    device.device.memory_free = 6000;
    device.device.precision = "fp32";
    feed(t, &s, &device);
    CHECK(t, s.have_device && s.device_gpu_index == -1 && !s.fp8_weights && s.device_reason == NULL);
    CHECK(t, s.device_memory_total == 8000 && s.device_memory_free == 6000);
    CHECK(t, strcmp(run_state_backend(&s), "cpu") == 0 && strcmp(run_state_device_name(&s), "Test CPU") == 0);
    CHECK(t, strcmp(s.backend, "cuda") == 0);
    run_state_device_label(&s, true, " · ", label, sizeof label);
    CHECK_MSG(t, strcmp(label, "CPU · Test CPU · fp32") == 0, "%s", label);
    run_state_device_label(&s, false, " · ", label, sizeof label);
    CHECK_MSG(t, strcmp(label, "CPU · fp32") == 0, "%s", label);
    CHECK(t, run_state_memory_total(&s) == 8000);

    sdt_event memory = {.type = SDT_EV_MEMORY, .time = 1764000001};
    memory.memory.kind = SDT_MEMORY_RAM;
    memory.memory.used = 100;
    memory.memory.peak = 200;
    memory.memory.total = 9000;
    feed(t, &s, &memory);
    CHECK(t, run_state_memory_total(&s) == 9000);

    /* A later run's device (a resumed run appends to the journal) replaces it all. */
    device.device.backend = "cuda";
    device.device.name = "NVIDIA H200";
    device.device.gpu_index = 1;
    device.device.precision = "bf16";
    device.device.fp8_weights = 1;
    device.device.reason = "auto: CUDA device 1 answers";
    feed(t, &s, &device);
    CHECK(t, s.device_gpu_index == 1 && s.fp8_weights);
    CHECK(t, s.device_reason && strcmp(s.device_reason, "auto: CUDA device 1 answers") == 0);
    run_state_device_label(&s, true, " / ", label, sizeof label);
    CHECK_MSG(t, strcmp(label, "CUDA / NVIDIA H200 / bf16 / fp8") == 0, "%s", label);
    /* A small buffer is cut, never overrun. */
    char small[8];
    CHECK(t, run_state_device_label(&s, true, " / ", small, sizeof small) == 7 && strlen(small) == 7);
    CHECK(t, s.malformed_lines == 0 && s.events == 4);
    run_state_free(&s);
}

TEST_MAIN("run_state", TEST(test_scripted_run), TEST(test_malformed_lines), TEST(test_bounded_histories),
          TEST(test_nan_losses), TEST(test_engine_dies), TEST(test_unknown_version), TEST(test_device_event))
