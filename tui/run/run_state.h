/* Everything the run view shows about one engine run, built from the engine's output one line at a time:
 * phase and pause state, progress, a bounded loss history for the sparkline, memory, log lines, samples,
 * checkpoints, hello, done or error, and the engine's exit status. No curses, no I/O: the engine client
 * (engine_client.h) reads the lines, run_state_on_line turns them into state, the drawing code reads the
 * fields below. A malformed line is counted and logged as a warning, never fatal.
 *
 * Unknown values stay unknown: a number not yet known is NaN (doubles) or -1 (integers), a string is NULL,
 * and the have_* flags say whether an event of that kind has arrived at all. */
#ifndef SDTUNE_TUI_RUN_STATE_H
#define SDTUNE_TUI_RUN_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "run/engine_client.h"
#include "sdtune/protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RUN_STATE_LOSS_POINTS_DEFAULT 1024 /* points kept for the sparkline (even) */
#define RUN_STATE_LOG_LINES_DEFAULT 5000
#define RUN_STATE_SAMPLES_DEFAULT 256
#define RUN_STATE_CHECKPOINTS_DEFAULT 256
#define RUN_STATE_SHOWN_LINE_MAX 200 /* bytes of a malformed line quoted in its warning */

typedef struct run_state_limits {
    size_t loss_points;                     /* rounded up to even, at least 2; 0 = default */
    size_t log_lines, samples, checkpoints; /* 0 = default */
} run_state_limits;

/* Losses for the sparkline, evenly decimated: the points kept are the 0th, stride-th, 2*stride-th, ...
 * progress event received. Up to capacity points are kept with stride 1; when full, every second point is
 * dropped and the stride doubles, so a long run always fits and stays evenly spaced. */
typedef struct run_loss_history {
    int64_t *steps; /* [capacity] the step of each point */
    /* float, as spark_render (tui/widgets/sparkline.h) takes them: raw and avg go to it as they are. */
    float *raw; /* [capacity] the step's loss; NaN when the engine sent null (a NaN/Inf loss) */
    float *avg; /* [capacity] the engine's loss_avg (kohya's avr_loss); NaN when null */
    size_t count, capacity;
    uint64_t stride;   /* progress events per kept point: 1, 2, 4, ... */
    uint64_t received; /* progress events seen */
} run_loss_history;

typedef struct run_log_entry {
    double time; /* the event's unix time for lines from events; 0 for stderr lines and the UI's own */
    sdt_log_level level;
    char *text;
} run_log_entry;

/* A ring of the newest lines; run_state_log_at(s, 0) is the oldest kept. */
typedef struct run_log {
    run_log_entry *entries; /* [capacity] */
    size_t capacity, start, count;
    uint64_t total; /* lines ever added (total - count were dropped) */
} run_log;

typedef struct run_sample {
    char *path, *prompt;
    int64_t step;
    int index;
} run_sample;

typedef struct run_checkpoint {
    char *path;
    int64_t step;
    sdt_checkpoint_kind kind; /* model or state */
    bool removed;             /* deleted since by save_last_n_* rotation */
} run_checkpoint;

typedef enum run_pause_state {
    RUN_NOT_PAUSED,
    RUN_PAUSE_ACKED,  /* the engine accepted `pause`; it pauses after the current step */
    RUN_PAUSED,       /* phase `paused` */
    RUN_RESUME_ACKED, /* the engine accepted `resume` while paused */
} run_pause_state;

typedef struct run_state {
    /* hello */
    bool have_hello;
    bool version_unsupported; /* hello.v is not SDT_PROTOCOL_VERSION: the UI must not drive this engine */
    int protocol_version;
    char *backend, *device;
    int64_t vram_total, ram_total; /* bytes; -1 unknown */
    int64_t engine_pid;            /* -1 unknown */

    /* the `device` event: what the run trains on (hello only says what the machine offers) */
    bool have_device;
    char *device_backend, *device_name;              /* "cpu", "cuda", ...; the GPU's name or the CPU model */
    int device_gpu_index;                            /* -1: not a GPU */
    int64_t device_memory_total, device_memory_free; /* bytes at the engine's start; -1 unknown */
    char *precision;                                 /* "fp32", "bf16", "fp16" */
    bool fp8_weights;
    char *device_reason; /* why backend auto chose it; NULL when the config named the backend */

    bool have_phase;
    sdt_phase phase;
    run_pause_state pause;
    bool stop_acked, abort_acked; /* the engine accepted stop / abort: it is on its way out */

    /* the latest progress event */
    bool have_progress;
    int64_t step, total_steps, epoch, total_epochs; /* -1 unknown */
    double loss, loss_avg, lr, samples_per_s;       /* NaN unknown (or not finite) */
    double eta_s;                                   /* seconds, whole run; NaN unknown */
    run_loss_history loss_history;

    /* the latest memory event */
    bool have_memory;
    sdt_memory_kind memory_kind;
    int64_t memory_used, memory_peak, memory_total; /* bytes; -1 unknown */

    run_log log;
    run_sample *samples; /* [n_samples] newest first */
    size_t n_samples, max_samples;
    run_checkpoint *checkpoints; /* [n_checkpoints] newest first */
    size_t n_checkpoints, max_checkpoints;

    size_t config_errors; /* config_error events (each also an error log line) */
    bool have_done;
    char **outputs; /* [n_outputs] from `done` */
    size_t n_outputs;
    int done_exit_code; /* -1 until `done` */
    bool have_error;
    char *error_message, *error_hint; /* the latest `error` event; hint may be NULL */

    /* the process */
    bool engine_exited;
    engine_exit exit;
    bool died_silently; /* it exited without a `done` or `error` event: a crash or a kill */

    uint64_t events;          /* events decoded */
    uint64_t malformed_lines; /* stdout lines that did not decode (each a warning log line) */
    uint64_t truncated_lines; /* lines longer than the client's limit, on either stream */
    uint64_t pongs;
    double event_time; /* while an event is applied: its time, stamped on the log lines it makes */
} run_state;

/* An empty state; limits may be NULL (defaults). Returns 0, or -1 with *error when out of memory. */
int run_state_init(run_state *s, const run_state_limits *limits, char **error);
void run_state_free(run_state *s);

/* One decoded event. Strings are copied; ev stays the caller's. */
void run_state_apply_event(run_state *s, const sdt_event *ev);
/* One stdout line: decoded and applied, or counted as malformed and logged as a warning naming what was
 * wrong. truncated (the line passed the client's limit) is malformed by definition. */
void run_state_feed_event_line(run_state *s, const char *text, size_t len, bool truncated);
/* One stderr line: an info log line (a truncated one is marked so and counted). */
void run_state_feed_log_line(run_state *s, const char *text, size_t len, bool truncated);
/* An engine_line_fn: pass it and the state to engine_client_pump. */
void run_state_on_line(void *state, engine_stream stream, const char *text, size_t len, bool truncated);
/* The engine was reaped: its status, and a log line saying it. */
void run_state_engine_exited(run_state *s, const engine_exit *exit);
/* A log line from the UI itself (e.g. a command that could not be sent). */
void run_state_log_add(run_state *s, sdt_log_level level, const char *text);

size_t run_state_log_count(const run_state *s);
/* The i-th kept log line, 0 the oldest; NULL past the end. */
const run_log_entry *run_state_log_at(const run_state *s, size_t i);

/* The run's backend, device and precision for a header, "CUDA · NVIDIA H200 · bf16 · fp8" (the fp8 part
 * only with fp8 weights), written into out (always terminated; empty before the `device` event). Without
 * with_name the device's name is left out ("CPU · fp32"), for narrow screens. sep goes between the parts
 * (" · ", or an ASCII one). Returns the length written. */
size_t run_state_device_label(const run_state *s, bool with_name, const char *sep, char *out, size_t size);
/* Where the run trains, for the engine line: the `device` event's backend and device name once it came,
 * before that hello's (what the machine offers); NULL unknown. */
const char *run_state_backend(const run_state *s);
const char *run_state_device_name(const run_state *s);
/* The memory total the gauge measures against: the latest `memory` event's, else the device's from the
 * `device` event; -1 unknown. */
int64_t run_state_memory_total(const run_state *s);

/* Short names for the view: "loading", ..., "paused", "pausing", "resuming", "stopping", "aborting",
 * "done", "failed", "exited"; "starting" before any phase. Static strings. */
const char *run_state_status_text(const run_state *s);

#ifdef __cplusplus
}
#endif
#endif
