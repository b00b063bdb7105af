/* The protocol's command side: a thread that reads command lines from a file descriptor (the engine's
 * stdin), sets the run-control flags the training loop polls, and answers through the event sink: `ack` for
 * an accepted command, `pong` for `ping`, `error` for a malformed line (docs/protocol.md, "Commands"). */
#ifndef SDTUNE_ENGINE_COMMAND_READER_H
#define SDTUNE_ENGINE_COMMAND_READER_H

#include <stdbool.h>

#include "event_sink.h"
#include "run_control.h"

/* Longer command lines are answered with an error and skipped up to their newline. */
#define SDT_COMMAND_LINE_MAX 65536

typedef struct sdt_command_reader sdt_command_reader;

/* Starts the thread reading fd (not closed by the reader). control and sink must outlive the reader.
 * Returns 0, or -1 with *error set (caller frees). */
int sdt_command_reader_start(int fd, sdt_run_control *control, sdt_event_sink *sink, sdt_command_reader **out,
                             char **error);
/* Applies one command line as the thread does (exposed for tests and for a caller without a thread). */
void sdt_command_reader_handle_line(const char *line, size_t len, sdt_run_control *control,
                                    sdt_event_sink *sink);
/* True once the reader saw end of file (the UI went away; the run goes on). */
bool sdt_command_reader_at_eof(sdt_command_reader *reader);
/* Wakes the thread, joins it and frees the reader. Input already readable is handled first (up to 64 KiB),
 * so a caller that wrote commands and closed the pipe sees all of them applied. Stop the reader before
 * closing its sink. NULL is fine. */
void sdt_command_reader_stop(sdt_command_reader *reader);

#endif
