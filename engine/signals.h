/* SIGINT, SIGTERM and SIGHUP ask the training loop to stop (the first: save and exit 0) or to abort (the
 * second: exit 3 without saving); SIGPIPE is ignored so a dead stdout pipe never stops training
 * (docs/protocol.md, "Signals"). */
#ifndef SDTUNE_ENGINE_SIGNALS_H
#define SDTUNE_ENGINE_SIGNALS_H

#include "run_control.h"

/* Installs the handlers; they set control's flags (control must outlive sdt_signals_restore). Returns 0,
 * or -1 with *error set (caller frees). */
int sdt_signals_install(sdt_run_control *control, char **error);
/* Puts back the handlers found by sdt_signals_install and forgets control. */
void sdt_signals_restore(void);
/* "SIGINT", "SIGTERM", "SIGHUP", else "signal N" (not for use in a handler). */
const char *sdt_signal_name(int signal_number);

#endif
