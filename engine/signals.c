/* The signal handlers. A handler gets no argument but the signal number, so the run control it sets lives in
 * the one static below: this is the engine process's own code, not library code, and a process has exactly
 * one set of signal handlers. The handler only does async-signal-safe work: atomic loads and stores. */
#include "signals.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "sdtune/strutil.h"

static const int handled[] = {SIGINT, SIGTERM, SIGHUP};
#define N_HANDLED (sizeof handled / sizeof handled[0])

/* The control the handlers set, and the handlers that were there before (restored at the end). */
static struct {
    _Atomic(sdt_run_control *) control;
    struct sigaction previous[N_HANDLED], previous_pipe;
    int installed;
} signal_state;

static void on_signal(int signal_number)
{
    int saved_errno = errno;
    sdt_run_control *control = atomic_load(&signal_state.control);
    if (control) {
        if (atomic_load(&control->stop) == 0 && atomic_load(&control->signal) == 0) {
            atomic_store(&control->signal, signal_number);
            atomic_store(&control->stop, 1);
        } else {
            atomic_store(&control->abort, 1); /* the second one: the user means it */
        }
    }
    errno = saved_errno;
}

int sdt_signals_install(sdt_run_control *control, char **error)
{
    if (signal_state.installed)
        sdt_signals_restore();
    atomic_store(&signal_state.control, control);
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART; /* blocking reads and writes elsewhere go on */
    for (size_t i = 0; i < N_HANDLED; i++)
        if (sigaction(handled[i], &action, &signal_state.previous[i]) != 0) {
            int e = errno;
            for (size_t j = 0; j < i; j++)
                sigaction(handled[j], &signal_state.previous[j], NULL);
            atomic_store(&signal_state.control, NULL);
            return sdt_set_error(error, "cannot handle %s: %s", sdt_signal_name(handled[i]), strerror(e));
        }
    struct sigaction ignore;
    memset(&ignore, 0, sizeof ignore);
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    sigaction(SIGPIPE, &ignore, &signal_state.previous_pipe);
    signal_state.installed = 1;
    return 0;
}

void sdt_signals_restore(void)
{
    if (!signal_state.installed)
        return;
    for (size_t i = 0; i < N_HANDLED; i++)
        sigaction(handled[i], &signal_state.previous[i], NULL);
    sigaction(SIGPIPE, &signal_state.previous_pipe, NULL);
    atomic_store(&signal_state.control, NULL);
    signal_state.installed = 0;
}

const char *sdt_signal_name(int signal_number)
{
    switch (signal_number) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
    case SIGPIPE: return "SIGPIPE";
    }
    static _Thread_local char text[32];
    snprintf(text, sizeof text, "signal %d", signal_number);
    return text;
}
