/* A training run: the config in, the trained LoRA / model, samples, states and events out. The process
 * side (argument parsing, the event sink, the command reader, signals) is engine/cli_train.c; everything
 * here is library code that reports through callbacks and returns a status. See docs/training.md. */
#ifndef SDTUNE_TRAIN_TRAINER_H
#define SDTUNE_TRAIN_TRAINER_H

#include <stddef.h>

#include "backend.h"
#include "run_control.h"
#include "sdtune/protocol.h"

/* The config (sdtune/config.h). Declared, not included, so that the trainer's own files can include this
 * header beside the model headers (models/model_config.h and sdtune/schema.h both name the families). */
typedef struct sdt_config sdt_config;

#ifdef __cplusplus
extern "C" {
#endif

/* Receives every event of the run, in order (progress, log, phase, sample, checkpoint, memory, done,
 * error, config_error). Called on the training thread. */
typedef void (*sdt_train_emit_fn)(void *ctx, const sdt_event *ev);

typedef struct sdt_train_options {
    const sdt_config *cfg;   /* resolved: no "builtin:" names left (train/demo.h resolves them) */
    const char *config_path; /* for messages and the resolved-config copy; may be NULL */
    int threads;             /* CPU threads; 0 = the config's cpu_threads, else all cores */
    sdt_train_emit_fn emit;
    void *emit_ctx;
    sdt_run_control *control; /* polled between steps; NULL = nobody controls the run */
    /* Called once output_dir exists and before anything is written there, so the caller can open the
     * journal (<output_dir>/<output_name>.events.jsonl). May be NULL. Returns 0, or -1 with *error set to
     * fail the run. */
    int (*outputs_ready)(void *ctx, const char *output_dir, const char *output_name, char **error);
    void *outputs_ready_ctx;
    /* For the guards' tests: the optimizer steps inject_nan_step .. inject_nan_step + inject_nan_count - 1
     * (1-based, counted over attempts, so a skipped step counts) see a NaN loss, or with inject_nan_grad
     * a NaN gradient. 0: never. */
    int64_t inject_nan_step;
    int inject_nan_count;
    int inject_nan_grad;
    /* For the loss scaler's tests: the first loss scale of an fp16 run (a huge one makes the first steps
     * overflow for real). 0: GradScaler's 65536. */
    double loss_scale_init;
    /* The free memory the memory plan is checked against, in bytes; 0: the device's (the host's
     * MemAvailable on the CPU backend). For tests and for leaving room to other processes. */
    size_t memory_free_bytes;
    /* Tests only: SDT_DEVICE_GUARDED runs the step on the guarded backend, so that host code touching
     * device tensors faults (docs/ops.md). 0 (SDT_DEVICE_CPU): the config's backend. Not a config
     * setting; the engine's CLI sets it from SDTUNE_TEST_DEVICE=guarded. */
    sdt_device_kind test_device;
} sdt_train_options;

/* How a run ended; also the engine's exit code (docs/protocol.md). */
typedef enum sdt_train_result {
    SDT_TRAIN_DONE = 0,         /* finished, or stopped on request after saving */
    SDT_TRAIN_FAILED = 1,       /* an error (reported as an `error` event and in *error) */
    SDT_TRAIN_CONFIG_ERROR = 2, /* the config cannot be trained (config_error events) */
    SDT_TRAIN_ABORTED = 3,      /* abort requested: left without saving */
} sdt_train_result;

/* Runs the whole training described by cfg. *error (caller frees) is set when the result is not DONE. */
sdt_train_result sdt_train_run(const sdt_train_options *o, char **error);

#ifdef __cplusplus
}
#endif
#endif
