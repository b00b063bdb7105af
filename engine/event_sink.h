/* The one path every event of a run goes through (docs/protocol.md, "Transport"): in protocol mode the
 * encoded line goes to stdout; without it, events become human lines on stderr with a tqdm-like progress
 * line; in both modes every event is appended to the run's journal, <output_dir>/<output_name>.events.jsonl.
 * Thread-safe: the training loop and the command reader's thread emit through the same sink. */
#ifndef SDTUNE_ENGINE_EVENT_SINK_H
#define SDTUNE_ENGINE_EVENT_SINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sdtune/diag.h"
#include "sdtune/protocol.h"

typedef struct sdt_event_sink_options {
    bool protocol; /* JSON lines on stdout_fd; no human output */
    int stdout_fd; /* where protocol lines go (1); -1 for none */
    int stderr_fd; /* where human lines go (2); -1 for none */
    int human_tty; /* -1: ask isatty(stderr_fd); 1: rewrite the progress line with '\r'; 0: whole lines */
    int progress_every; /* not a terminal: print the progress line every this many steps (and the first and
                           last); <= 0 means 10 */
    sdt_log_level human_level; /* the least level printed in human mode (SDT_LOG_INFO) */
} sdt_event_sink_options;

/* The defaults above. */
void sdt_event_sink_options_init(sdt_event_sink_options *options);

typedef struct sdt_event_sink sdt_event_sink;

/* Returns 0, or -1 with *error set (caller frees). */
int sdt_event_sink_open(const sdt_event_sink_options *options, sdt_event_sink **out, char **error);
/* Opens (creates, appends to) the journal and writes the events emitted so far into it first. Returns 0,
 * or -1 with *error naming the path; the sink then goes on without a journal. */
int sdt_event_sink_open_journal(sdt_event_sink *sink, const char *path, char **error);
/* The emitting functions below accept a NULL sink and then drop the event (tests of the training loop).
 *
 * Sends ev everywhere (stamping "time" when ev->time is 0). Never fails the run: a dead stdout (EPIPE) is
 * marked and skipped, a journal write error is reported once on stderr and the journal dropped. Returns 0,
 * or -1 only when ev cannot be encoded (an invalid type: a programming error). */
int sdt_event_sink_emit(sdt_event_sink *sink, const sdt_event *ev);
/* A `log` event with the formatted text. */
int sdt_event_sink_logf(sdt_event_sink *sink, sdt_log_level level, const char *fmt, ...) SDT_PRINTF(3, 4);
/* The `hello` event: this protocol version, the backend ("cpu", "cuda"), the device's name, the memory
 * totals in bytes (0 unknown) and the process id. */
int sdt_event_sink_hello(sdt_event_sink *sink, const char *backend, const char *device, int64_t vram_total,
                         int64_t ram_total);
/* A `phase` event. */
int sdt_event_sink_phase(sdt_event_sink *sink, sdt_phase phase);
/* An `error` event; hint may be NULL. */
int sdt_event_sink_error(sdt_event_sink *sink, const char *message, const char *hint);
/* True once a write to stdout failed (the UI went away). */
bool sdt_event_sink_stdout_dead(sdt_event_sink *sink);
/* Ends a progress line left on the terminal, fsyncs and closes the journal, frees the sink. NULL is fine. */
void sdt_event_sink_close(sdt_event_sink *sink);

/* ---- human formatting (exposed for tests) ------------------------------------------------------------ */

/* A duration as tqdm writes it: "00:50", "06:54", "1:06:54"; "?" when negative or not finite. */
void sdt_format_duration(double seconds, char *out, size_t size);
/* The progress line, without '\r' or '\n':
 *   steps:   1%|▏         | 41/3280 [00:50<1:06:54,  1.24s/it, epoch=1/10, loss=0.0912, avr_loss=0.0821,
 *   lr=1.00e-04]
 * elapsed_s: seconds since training started; seconds_per_step: the mean step time (<= 0 unknown: "?s/it").
 * The ETA is ev->progress.eta_s, or from seconds_per_step when that is unknown. Caller frees. */
char *sdt_progress_line(const sdt_event *ev, double elapsed_s, double seconds_per_step);

#endif
