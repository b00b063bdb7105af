/* Requests to a running training loop from outside it: the protocol's command reader (a thread), the
 * signal handlers (SIGINT/SIGTERM/SIGHUP -> stop) and the tests. Flags are atomics, so setting one is safe
 * from a signal handler and another thread; the loop polls them between steps and clears the one-shot
 * requests it has served. */
#ifndef SDTUNE_TRAIN_RUN_CONTROL_H
#define SDTUNE_TRAIN_RUN_CONTROL_H

#include <stdatomic.h>

typedef struct sdt_run_control {
    atomic_int stop;       /* finish the step, save (model, and state when save_state), exit 0 */
    atomic_int abort;      /* leave now without saving; the last checkpoint stays */
    atomic_int paused;     /* 1 while paused: the loop waits between steps */
    atomic_int sample_now; /* one-shot: sample after the current step */
    atomic_int save_now;   /* one-shot: save after the current step */
    atomic_int signal;     /* the signal number that asked for the stop (0: none) */
} sdt_run_control;

static inline void sdt_run_control_init(sdt_run_control *c)
{
    atomic_init(&c->stop, 0);
    atomic_init(&c->abort, 0);
    atomic_init(&c->paused, 0);
    atomic_init(&c->sample_now, 0);
    atomic_init(&c->save_now, 0);
    atomic_init(&c->signal, 0);
}

#endif
