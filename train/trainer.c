/* sdt_train_run: the phases of a run (loading, caching, training with its saves and samples, done), the
 * commands of the run control, and the events. See docs/training.md, "Training loop". */
#define _GNU_SOURCE /* nanosleep */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sdtune/atomic_file.h"
#include "tensorboard.h"
#include "train_support.h"
#include "trainer_internal.h"

/* Memory events every this many optimizer steps. */
#define MEMORY_EVERY_STEPS 10

double sdt_trainer_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double unix_time(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)(ts.tv_nsec / 1000000) * 1e-3;
}

static void emit(sdt_trainer *t, sdt_event *ev)
{
    ev->time = unix_time();
    if (t->o->emit)
        t->o->emit(t->o->emit_ctx, ev);
}

void sdt_trainer_emit(sdt_trainer *t, sdt_event *ev) { emit(t, ev); }

void sdt_trainer_log(sdt_trainer *t, sdt_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *text = sdt_vformat(fmt, ap);
    va_end(ap);
    sdt_event ev = {.type = SDT_EV_LOG};
    ev.log.level = level;
    ev.log.text = text ? text : (char *)"(out of memory)";
    emit(t, &ev);
    free(text);
}

void sdt_trainer_phase(sdt_trainer *t, sdt_phase phase)
{
    sdt_event ev = {.type = SDT_EV_PHASE, .phase = phase};
    emit(t, &ev);
}

void sdt_trainer_checkpoint(sdt_trainer *t, const char *path, sdt_checkpoint_kind kind)
{
    sdt_event ev = {.type = SDT_EV_CHECKPOINT};
    ev.checkpoint.path = (char *)path;
    ev.checkpoint.step = t->global_step;
    ev.checkpoint.kind = kind;
    emit(t, &ev);
}

int sdt_trainer_add_output(sdt_trainer *t, const char *path)
{
    for (size_t i = 0; i < t->output_count; i++)
        if (strcmp(t->outputs[i], path) == 0)
            return 0;
    if (t->output_count == t->output_capacity) {
        size_t cap = t->output_capacity ? 2 * t->output_capacity : 16;
        char **n = realloc(t->outputs, cap * sizeof *n);
        if (!n)
            return -1;
        t->outputs = n;
        t->output_capacity = cap;
    }
    t->outputs[t->output_count] = sdt_strdup(path);
    return t->outputs[t->output_count] ? (t->output_count++, 0) : -1;
}

void sdt_trainer_remove_output(sdt_trainer *t, const char *path)
{
    for (size_t i = 0; i < t->output_count; i++)
        if (strcmp(t->outputs[i], path) == 0) {
            free(t->outputs[i]);
            memmove(&t->outputs[i], &t->outputs[i + 1], (t->output_count - i - 1) * sizeof *t->outputs);
            t->output_count--;
            return;
        }
}

/* On CUDA the GPU's memory: what the engine's allocator holds now and at most (the peak of loading and
 * caching included) against the device's size. Elsewhere the RAM of the process (the CPU backend's
 * memory, and the guarded backend's, which is the host's): resident now and the peak. */
static void emit_memory(sdt_trainer *t)
{
    if (sdt_engine_device(t->e) == SDT_DEVICE_CUDA) {
        size_t peak = sdt_engine_peak_bytes(t->e);
        sdt_event ev = {.type = SDT_EV_MEMORY};
        ev.memory.kind = SDT_MEMORY_VRAM;
        ev.memory.used = (int64_t)sdt_engine_live_bytes(t->e);
        ev.memory.peak = (int64_t)(peak > t->peak_before_steps ? peak : t->peak_before_steps);
        ev.memory.total = (int64_t)t->device_memory_total;
        emit(t, &ev);
        return;
    }
    long page = sysconf(_SC_PAGESIZE);
    long long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%lld %lld", &size, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    sdt_event ev = {.type = SDT_EV_MEMORY};
    ev.memory.kind = SDT_MEMORY_RAM;
    ev.memory.used = resident * page;
    ev.memory.peak = (int64_t)ru.ru_maxrss * 1024;
    ev.memory.total = (int64_t)sysconf(_SC_PHYS_PAGES) * page;
    emit(t, &ev);
}

static void emit_progress(sdt_trainer *t, double loss, double step_seconds, size_t samples)
{
    sdt_event ev = {.type = SDT_EV_PROGRESS};
    ev.progress.step = t->global_step;
    ev.progress.total_steps = t->total_steps;
    ev.progress.epoch = t->cursor.batch == 0 ? t->cursor.epoch - 1 : t->cursor.epoch;
    ev.progress.total_epochs = t->total_epochs;
    ev.progress.loss = loss;
    ev.progress.loss_avg = sdt_loss_recorder_average(&t->recorder);
    int g = t->optim.groups > 0 ? 0 : -1;
    ev.progress.lr = g >= 0 ? t->optim.lr[g] : 0;
    ev.progress.samples_per_s = step_seconds > 0 ? (double)samples / step_seconds : 0;
    ev.progress.eta_s = t->steps_timed > 0 ? t->steps_seconds / (double)t->steps_timed *
                                                 (double)(t->total_steps - t->global_step)
                                           : -1;
    emit(t, &ev);
}

static void config_error(sdt_trainer *t, const char *field, const char *message)
{
    sdt_event ev = {.type = SDT_EV_CONFIG_ERROR};
    ev.config_error.field = (char *)field;
    ev.config_error.message = (char *)message;
    emit(t, &ev);
}

/* Refuses a config that asks for something the engine does not do yet (train/train_support.h), one
 * config_error per setting, so that no caller of the library can train with a setting silently ignored. */
static int refuse_unsupported(sdt_trainer *t, char **error)
{
    sdt_diag_list refused;
    sdt_diag_list_init(&refused);
    int status = sdt_train_check_supported(t->cfg, &refused);
    size_t errors = sdt_diag_count(&refused, SDT_SEV_ERROR);
    for (size_t i = 0; i < refused.count; i++) {
        const sdt_diag *d = &refused.items[i];
        if (d->severity != SDT_SEV_ERROR)
            continue;
        const sdt_setting *setting = d->setting >= 0 ? &sdt_schema_settings()[d->setting] : NULL;
        char *field = setting ? sdt_format("%s.%s", sdt_section_name(setting->section), setting->key) : NULL;
        config_error(t, field ? field : "", d->message);
        free(field);
    }
    if (status != 0 || errors > 0)
        sdt_set_error(error, "%zu setting%s cannot be trained yet; first: %s", errors, errors == 1 ? "" : "s",
                      errors ? refused.items[0].message : "?");
    sdt_diag_list_free(&refused);
    return status != 0 || errors > 0 ? -1 : 0;
}

/* Saves the model and, when save_state asks, the state, for one reason; errors are the run's. Back in the
 * training phase afterwards, except after the final save (the run is done then). */
static int save_point(sdt_trainer *t, sdt_save_kind kind, int64_t number, int with_state, char **error)
{
    if (sdt_trainer_save_model(t, kind, (int)number, error) != 0)
        return -1;
    if (with_state && sdt_trainer_save_state(t, kind, (int)number, error) != 0)
        return -1;
    if (kind != SDT_SAVE_FINAL)
        sdt_trainer_phase(t, SDT_PHASE_TRAINING);
    return 0;
}

static int sample_point(sdt_trainer *t, int at_epoch, int64_t number, char **error)
{
    if (sdt_trainer_sample(t, at_epoch, number, error) != 0)
        return -1;
    sdt_trainer_phase(t, SDT_PHASE_TRAINING);
    return 0;
}

/* Waits while paused; returns 1 when a stop or abort came meanwhile. */
static int wait_paused(sdt_trainer *t)
{
    sdt_run_control *c = t->o->control;
    if (!c || !atomic_load(&c->paused))
        return 0;
    sdt_trainer_phase(t, SDT_PHASE_PAUSED);
    while (atomic_load(&c->paused) && !atomic_load(&c->stop) && !atomic_load(&c->abort)) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    sdt_trainer_phase(t, SDT_PHASE_TRAINING);
    return atomic_load(&c->stop) || atomic_load(&c->abort);
}

/* Serves a one-shot request: whether it was set (it is cleared). */
static int take_flag(atomic_int *flag) { return atomic_exchange(flag, 0) != 0; }

/* TensorBoard: <logging_dir>/<log_prefix><YYYYmmddHHMMSS>, as kohya's accelerate tracker names it. */
static int open_tensorboard(sdt_trainer *t, char **error)
{
    if (!t->s.logging_dir[0])
        return 0;
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%d%H%M%S", &tm);
    char *folder = sdt_format("%s/%s%s", t->s.logging_dir, t->s.log_prefix, stamp);
    if (!folder)
        return sdt_set_error(error, "out of memory");
    t->tensorboard = sdt_tb_open(folder, error);
    if (t->tensorboard)
        sdt_trainer_log(t, SDT_LOG_INFO, "TensorBoard log: %s", folder);
    free(folder);
    return t->tensorboard ? 0 : -1;
}

/* The step's scalars: loss/current, loss/average, lr/unet, lr/textencoder (kohya's names). A failed
 * write is a warning, not the end of the run. */
static void log_scalars(sdt_trainer *t, double loss)
{
    if (!t->tensorboard)
        return;
    sdt_tb_scalar(t->tensorboard, "loss/current", t->global_step, loss);
    sdt_tb_scalar(t->tensorboard, "loss/average", t->global_step, sdt_loss_recorder_average(&t->recorder));
    if (t->unet_group >= 0)
        sdt_tb_scalar(t->tensorboard, "lr/unet", t->global_step, t->optim.lr[t->unet_group]);
    if (t->text_encoder_group >= 0)
        sdt_tb_scalar(t->tensorboard, "lr/textencoder", t->global_step, t->optim.lr[t->text_encoder_group]);
}

static void flush_scalars(sdt_trainer *t)
{
    char *error = NULL;
    if (t->tensorboard && sdt_tb_flush(t->tensorboard, &error) != 0)
        sdt_trainer_log(t, SDT_LOG_WARNING, "TensorBoard: %s", error ? error : "write failed");
    free(error);
}

/* The training phase. Returns DONE (finished or stopped: the caller saves), ABORTED or FAILED. */
static sdt_train_result train_loop(sdt_trainer *t, char **error)
{
    sdt_run_control *c = t->o->control;
    int save_state = t->s.save_state;
    int64_t every_steps = t->s.save_every_n_steps;
    int64_t every_epochs = t->s.save_every_n_epochs;
    int64_t sample_steps = t->s.sample_every_n_steps;
    int64_t sample_epochs = t->s.sample_every_n_epochs;
    if (sample_epochs > 0)
        sample_steps = 0; /* kohya: sample_every_n_epochs wins */
    if (t->s.sample_at_first && t->global_step == 0 && sample_point(t, 0, 0, error) != 0)
        return SDT_TRAIN_FAILED;
    while (t->global_step < t->total_steps) {
        if (c && atomic_load(&c->abort))
            return SDT_TRAIN_ABORTED;
        if (wait_paused(t) && c && atomic_load(&c->abort))
            return SDT_TRAIN_ABORTED;
        if (c && atomic_load(&c->stop)) {
            sdt_trainer_log(t, SDT_LOG_INFO, "stop requested at step %lld: saving",
                            (long long)t->global_step);
            return SDT_TRAIN_DONE;
        }
        int epoch = t->cursor.epoch;
        size_t index = t->cursor.batch / (size_t)t->accumulation;
        if (t->cursor.batch == 0)
            sdt_trainer_log(t, SDT_LOG_INFO, "epoch %d/%d", epoch, t->total_epochs);
        double started = sdt_trainer_now();
        double loss = 0;
        size_t samples_before = t->cursor.batch;
        int first_step = t->steps_timed == 0;
        size_t live_before = sdt_engine_live_bytes(t->e);
        if (first_step) {
            size_t peak = sdt_engine_peak_bytes(t->e); /* kept for the memory events' peak */
            if (peak > t->peak_before_steps)
                t->peak_before_steps = peak;
            sdt_engine_reset_peak(t->e);
        }
        sdt_step_outcome outcome = sdt_trainer_step(t, &loss, error);
        if (first_step && outcome == SDT_STEP_TAKEN)
            sdt_trainer_report_step_memory(t, live_before);
        if (outcome == SDT_STEP_FAILED)
            return SDT_TRAIN_FAILED;
        int epoch_ended = t->cursor.epoch != epoch;
        if (outcome == SDT_STEP_TAKEN) {
            double seconds = sdt_trainer_now() - started;
            t->global_step++;
            t->steps_seconds += seconds;
            t->steps_timed++;
            sdt_loss_recorder_add(&t->recorder, epoch == 1, index, loss);
            t->epoch_loss_sum += loss;
            t->epoch_loss_steps++;
            size_t batches =
                epoch_ended ? t->data.batches_per_epoch - samples_before : t->cursor.batch - samples_before;
            emit_progress(t, loss, seconds, batches * t->data.batch_size);
            log_scalars(t, loss);
            if (t->global_step % MEMORY_EVERY_STEPS == 0 || t->global_step == 1)
                emit_memory(t);
            int last = t->global_step >= t->total_steps;
            if (every_steps > 0 && t->global_step % every_steps == 0 && !last &&
                save_point(t, SDT_SAVE_STEP, t->global_step, save_state, error) != 0)
                return SDT_TRAIN_FAILED;
            if (sample_steps > 0 && t->global_step % sample_steps == 0 &&
                sample_point(t, 0, t->global_step, error) != 0)
                return SDT_TRAIN_FAILED;
        }
        if (epoch_ended) {
            double avg = t->epoch_loss_steps ? t->epoch_loss_sum / (double)t->epoch_loss_steps : NAN;
            sdt_trainer_log(t, SDT_LOG_INFO, "epoch %d/%d done: average loss %.6g", epoch, t->total_epochs,
                            avg);
            if (t->tensorboard)
                sdt_tb_scalar(t->tensorboard, "loss/epoch_average", epoch, avg);
            t->epoch_loss_sum = 0;
            t->epoch_loss_steps = 0;
            int last = t->global_step >= t->total_steps;
            if (every_epochs > 0 && epoch % every_epochs == 0 && !last &&
                save_point(t, SDT_SAVE_EPOCH, epoch, save_state, error) != 0)
                return SDT_TRAIN_FAILED;
            if (sample_epochs > 0 && epoch % sample_epochs == 0 && sample_point(t, 1, epoch, error) != 0)
                return SDT_TRAIN_FAILED;
        }
        flush_scalars(t);
        if (c && take_flag(&c->save_now) &&
            save_point(t, SDT_SAVE_STEP, t->global_step, save_state, error) != 0)
            return SDT_TRAIN_FAILED;
        if (c && take_flag(&c->sample_now) && sample_point(t, 0, t->global_step, error) != 0)
            return SDT_TRAIN_FAILED;
    }
    return SDT_TRAIN_DONE;
}

/* The last event of a run that did not fail (docs/protocol.md): finished or stopped (0), aborted (3). */
static void emit_done(sdt_trainer *t, sdt_train_result result)
{
    sdt_trainer_phase(t, SDT_PHASE_DONE);
    sdt_event ev = {.type = SDT_EV_DONE};
    ev.done.outputs = t->outputs;
    ev.done.n_outputs = t->output_count;
    ev.done.exit_code = (int)result;
    emit(t, &ev);
}

static void emit_error(sdt_trainer *t, const char *message)
{
    sdt_event ev = {.type = SDT_EV_ERROR};
    ev.error.message = (char *)(message ? message : "training failed");
    emit(t, &ev);
}

static int prepare_outputs(sdt_trainer *t, char **error)
{
    const char *dir = t->s.output_dir;
    const char *name = t->s.output_name;
    t->output_dir = sdt_strdup(dir && *dir ? dir : ".");
    t->output_name = sdt_strdup(name && *name ? name : "last");
    if (!t->output_dir || !t->output_name)
        return sdt_set_error(error, "out of memory");
    if (sdt_make_folders(t->output_dir, "output", error) != 0)
        return -1;
    if (t->o->outputs_ready &&
        t->o->outputs_ready(t->o->outputs_ready_ctx, t->output_dir, t->output_name, error) != 0)
        return -1;
    char *path = sdt_format("%s/%s.config.toml", t->output_dir, t->output_name);
    char *toml = sdt_train_settings_toml(t->cfg);
    int rc = path && toml ? sdt_atomic_write(path, toml, strlen(toml), error)
                          : sdt_set_error(error, "out of memory");
    if (rc == 0)
        sdt_trainer_add_output(t, path);
    free(path);
    free(toml);
    return rc;
}

sdt_train_result sdt_train_run(const sdt_train_options *o, char **error)
{
    if (!o || !o->cfg) {
        sdt_set_error(error, "no config given");
        return SDT_TRAIN_FAILED;
    }
    sdt_trainer t;
    memset(&t, 0, sizeof t);
    t.o = o;
    t.cfg = o->cfg;
    t.run_started = sdt_trainer_now();
    t.training_started_at = (int64_t)time(NULL);
    snprintf(t.session_id, sizeof t.session_id, "%08llx%08llx", (unsigned long long)t.training_started_at,
             (unsigned long long)getpid() * 2654435761ULL);
    sdt_train_result result = SDT_TRAIN_FAILED;
    char *err = NULL;
    sdt_trainer_phase(&t, SDT_PHASE_LOADING);

    if (refuse_unsupported(&t, &err) != 0) {
        result = SDT_TRAIN_CONFIG_ERROR;
        goto finish;
    }
    sdt_train_settings_read(t.cfg, &t.s);
    const char *save_as = t.s.save_model_as;
    if (strcmp(save_as, "safetensors") != 0) {
        err =
            sdt_format("save_model_as \"%s\": only safetensors is written (pickle formats are unsafe to load "
                       "and diffusers folders are not implemented yet)",
                       save_as);
        config_error(&t, "save_model_as", err);
        result = SDT_TRAIN_CONFIG_ERROR;
        goto finish;
    }
    t.seed = (uint64_t)t.s.seed;
    sdt_rng_init(&t.rng, t.seed, 0);
    if (prepare_outputs(&t, &err) != 0)
        goto finish;
    /* The engine first: the memory plan is checked against its device, and a GPU that cannot be used is
     * a problem of the backend setting, said before anything is loaded. */
    if (sdt_trainer_create_engine(&t, &err) != 0) {
        config_error(&t, "hardware.backend", err);
        result = SDT_TRAIN_CONFIG_ERROR;
        goto finish;
    }
    const char *memory_setting = NULL;
    int planned = sdt_trainer_plan_memory(&t, &memory_setting, &err);
    if (planned < 0)
        goto finish;
    if (planned > 0) {
        int k = sdt_schema_find(memory_setting ? memory_setting : "train_batch_size");
        const sdt_setting *setting = k >= 0 ? &sdt_schema_settings()[k] : NULL;
        char *field = setting ? sdt_format("%s.%s", sdt_section_name(setting->section), setting->key) : NULL;
        config_error(&t, field ? field : "", err);
        free(field);
        result = SDT_TRAIN_CONFIG_ERROR;
        goto finish;
    }
    if (sdt_trainer_setup_models(&t, &err) != 0 || sdt_trainer_setup_data(&t, &err) != 0 ||
        sdt_trainer_setup_training(&t, &err) != 0)
        goto finish;
    const char *resume = t.s.resume;
    if (resume && *resume) {
        if (sdt_trainer_load_state(&t, resume, &err) != 0)
            goto finish;
        sdt_trainer_log(&t, SDT_LOG_INFO, "resumed from %s at step %lld (epoch %d, batch %zu)", resume,
                        (long long)t.global_step, t.cursor.epoch, t.cursor.batch);
    }
    sdt_trainer_phase(&t, SDT_PHASE_CACHING);
    if (sdt_trainer_setup_caches(&t, &err) != 0)
        goto finish;
    if (open_tensorboard(&t, &err) != 0)
        goto finish;
    sdt_trainer_phase(&t, SDT_PHASE_TRAINING);
    result = train_loop(&t, &err);
    char *tb_error = NULL;
    if (t.tensorboard && sdt_tb_close(t.tensorboard, &tb_error) != 0)
        sdt_trainer_log(&t, SDT_LOG_WARNING, "TensorBoard: %s", tb_error ? tb_error : "close failed");
    t.tensorboard = NULL;
    free(tb_error);
    if (result == SDT_TRAIN_DONE) {
        int with_state = t.s.save_state || t.s.save_state_on_train_end;
        if (save_point(&t, SDT_SAVE_FINAL, t.global_step, with_state, &err) != 0) {
            result = SDT_TRAIN_FAILED;
            goto finish;
        }
        sdt_trainer_log(&t, SDT_LOG_INFO, "model saved.");
        if (t.skipped_steps > t.overflow_steps)
            sdt_trainer_log(&t, SDT_LOG_WARNING, "%lld steps were skipped for non-finite values",
                            (long long)(t.skipped_steps - t.overflow_steps));
        if (t.overflow_steps) /* GradScaler's routine, not a fault: information only */
            sdt_trainer_log(&t, SDT_LOG_INFO,
                            "%lld steps were skipped for fp16 overflows (final loss scale %.17g)",
                            (long long)t.overflow_steps, t.scaler.scale);
        emit_done(&t, result);
    }
finish:
    if (result == SDT_TRAIN_ABORTED) {
        free(err);
        err = sdt_strdup("aborted: left without saving; the last saved checkpoint is kept");
        sdt_trainer_log(&t, SDT_LOG_WARNING, "%s", err);
        emit_done(&t, result);
    } else if (result != SDT_TRAIN_DONE) {
        if (result != SDT_TRAIN_CONFIG_ERROR)
            result = SDT_TRAIN_FAILED;
        emit_error(&t, err);
    }
    if (result != SDT_TRAIN_DONE && error) {
        *error = err;
        err = NULL;
    }
    free(err);
    sdt_tb_close(t.tensorboard, NULL);
    sdt_trainer_teardown(&t);
    for (size_t i = 0; i < t.output_count; i++)
        free(t.outputs[i]);
    free(t.outputs);
    free(t.output_dir);
    free(t.output_name);
    return result;
}
