/* The engine protocol, version 1: JSON Lines between the UI and the engine (docs/protocol.md is the
 * source of truth; a test checks this code against it). Events go engine -> UI on stdout and into the
 * run's journal; commands go UI -> engine on stdin. Every message is one JSON object on one line with
 * "t" (its type); `hello` carries "v" (the protocol version). Encoding and decoding are pure functions
 * over strings: no I/O, no global state. */
#ifndef SDTUNE_PROTOCOL_H
#define SDTUNE_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SDT_PROTOCOL_VERSION 1

/* ---- events (engine -> UI) ---------------------------------------------------------------------- */

typedef enum sdt_event_type {
    SDT_EV_HELLO,        /* first event of a run: version, backend, device, memory totals */
    SDT_EV_CONFIG_ERROR, /* a setting is wrong: field, message (the run then ends with `error`) */
    SDT_EV_PHASE,        /* the run entered a phase */
    SDT_EV_PROGRESS,     /* after every optimizer step */
    SDT_EV_MEMORY,       /* memory use of the device (or host for the CPU backend) */
    SDT_EV_LOG,          /* a human log line */
    SDT_EV_SAMPLE,       /* a sample image was written */
    SDT_EV_CHECKPOINT,   /* a model or state was written (or removed by rotation) */
    SDT_EV_DONE,         /* the run finished: its outputs */
    SDT_EV_ERROR,        /* the run failed, or a command line was malformed */
    SDT_EV_ACK,          /* a command was accepted (stop, abort, pause, resume, sample_now, save_now) */
    SDT_EV_PONG,         /* the answer to ping */
    SDT_EV_DEVICE,       /* once per run, when the engine is up: backend, device and precision it trains on */
    SDT_EV_COUNT
} sdt_event_type;

typedef enum sdt_phase {
    SDT_PHASE_LOADING,
    SDT_PHASE_CACHING,
    SDT_PHASE_TRAINING,
    SDT_PHASE_SAMPLING,
    SDT_PHASE_SAVING,
    SDT_PHASE_PAUSED,
    SDT_PHASE_DONE,
    SDT_PHASE_COUNT
} sdt_phase;

typedef enum sdt_log_level { SDT_LOG_DEBUG, SDT_LOG_INFO, SDT_LOG_WARNING, SDT_LOG_ERROR } sdt_log_level;

typedef enum sdt_memory_kind { SDT_MEMORY_VRAM, SDT_MEMORY_RAM } sdt_memory_kind;

typedef enum sdt_checkpoint_kind {
    SDT_CHECKPOINT_MODEL,   /* a LoRA or model file */
    SDT_CHECKPOINT_STATE,   /* a resumable state folder */
    SDT_CHECKPOINT_REMOVED, /* an older one deleted by save_last_n_* rotation */
} sdt_checkpoint_kind;

typedef struct sdt_event {
    sdt_event_type type;
    double time; /* unix seconds (milliseconds precision), field "time"; 0 = not sent */
    /* The fields of each type (strings owned by the event when decoded; sdt_event_clear frees them). */
    struct {
        int version;
        char *backend, *device;
        int64_t vram_total, ram_total; /* bytes; 0 unknown */
        int64_t pid;
    } hello;
    struct {
        char *field, *message;
    } config_error;
    sdt_phase phase;
    struct {
        int64_t step, total_steps; /* optimizer steps done / planned (whole run) */
        int64_t epoch, total_epochs;
        double loss, loss_avg; /* this step's and the moving average (kohya avr_loss); NaN -> null */
        double lr;             /* first group's learning rate */
        double samples_per_s;
        double eta_s; /* whole run; < 0 unknown -> null */
    } progress;
    struct {
        int64_t used, peak, total; /* bytes */
        sdt_memory_kind kind;
    } memory;
    struct {
        sdt_log_level level;
        char *text;
    } log;
    struct {
        char *path, *prompt;
        int64_t step;
        int index;
    } sample;
    struct {
        char *path;
        int64_t step;
        sdt_checkpoint_kind kind;
    } checkpoint;
    struct {
        char **outputs; /* paths written by the run */
        size_t n_outputs;
        int exit_code;
    } done;
    struct {
        char *message, *hint; /* hint may be NULL */
    } error;
    struct {
        char *command; /* the command's "t" */
        char *id;      /* echoed from the command; NULL when it had none */
    } ack;
    struct {
        char *id; /* echoed from the ping; NULL when it had none */
    } pong;
    struct {
        char *backend; /* the engine's backend: "cpu", "cuda" (or "guarded", the test backend) */
        char *name;    /* the GPU's name or the CPU model */
        int gpu_index; /* the CUDA device number; -1 (left out) when the run is not on a GPU */
        int64_t memory_total, memory_free; /* bytes of the device (the host's for the CPU); 0 unknown */
        char *precision;                   /* the compute dtype: "fp32", "bf16" or "fp16" */
        int fp8_weights;                   /* frozen weights stored in fp8 e4m3 (fp8_base / fp8_base_unet) */
        char *reason; /* why `backend = "auto"` chose this backend; NULL when the config named it */
    } device;
} sdt_event;

const char *sdt_event_type_name(sdt_event_type t);           /* "hello", "config_error", ... */
const char *sdt_phase_name(sdt_phase p);                     /* "loading", ... */
const char *sdt_log_level_name(sdt_log_level l);             /* "debug", "info", "warning", "error" */
const char *sdt_memory_kind_name(sdt_memory_kind k);         /* "vram", "ram" */
const char *sdt_checkpoint_kind_name(sdt_checkpoint_kind k); /* "model", "state", "removed" */
/* The inverse lookups: 0 and *out set, or -1 for an unknown name. */
int sdt_event_type_from_name(const char *name, sdt_event_type *out);

/* One line of JSON (with the trailing '\n') for ev: "t" first, "v" on hello, "time" (omitted when 0), then
 * the type's fields in the order of docs/protocol.md. Non-finite numbers (and eta_s < 0) become null; an
 * optional field that is unset (NULL string, 0 byte total) is left out. Strings that are not valid UTF-8
 * get U+FFFD for each bad byte. Returns 0, or -1 with *error set (caller frees). */
int sdt_event_encode(const sdt_event *ev, char **line, char **error);
/* Parses one line (with or without its '\n'); unknown fields are ignored (forward compatible), missing
 * required ones and wrong types are errors naming the field. On error *out is cleared. */
int sdt_event_decode(const char *line, size_t len, sdt_event *out, char **error);
void sdt_event_clear(sdt_event *ev);

/* ---- commands (UI -> engine) -------------------------------------------------------------------- */

typedef enum sdt_command_type {
    SDT_CMD_STOP,       /* finish the step, save, exit 0 */
    SDT_CMD_ABORT,      /* exit now, keeping the last checkpoint */
    SDT_CMD_PAUSE,      /* stop between steps until resume */
    SDT_CMD_RESUME,     /* continue after pause */
    SDT_CMD_SAMPLE_NOW, /* sample images after the current step */
    SDT_CMD_SAVE_NOW,   /* save the model (and the state when save_state) after the current step */
    SDT_CMD_PING,       /* answered by pong */
    SDT_CMD_COUNT
} sdt_command_type;

typedef struct sdt_command {
    sdt_command_type type;
    char *id; /* optional "id" string, echoed by ack/pong; NULL when absent */
} sdt_command;

const char *sdt_command_type_name(sdt_command_type t);
int sdt_command_type_from_name(const char *name, sdt_command_type *out); /* 0, or -1 when unknown */
int sdt_command_encode(const sdt_command *c, char **line, char **error);
/* Never crashes on any input: bad JSON, a non-object, a missing or unknown "t", a wrong type all return -1
 * with a message naming the problem (the engine answers with an `error` event). */
int sdt_command_decode(const char *line, size_t len, sdt_command *out, char **error);
void sdt_command_clear(sdt_command *c);

#ifdef __cplusplus
}
#endif
#endif
