/* What objective.c and objective_loss.c share and the public header does not show. */
#ifndef SDTUNE_TRAIN_OBJECTIVE_INTERNAL_H
#define SDTUNE_TRAIN_OBJECTIVE_INTERNAL_H

#include <stddef.h>

/* Writes the formatted message into msg (when given) and returns -1. */
int sdt_objective_fail(char *msg, size_t msg_size, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

#endif
