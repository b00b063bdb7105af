/* The optimizer update in the op runner's backend comparison (--mode test): an in-place update of a tensor
 * list does not fit the forward/backward case model of op_defs.h, so its cases live here. */
#ifndef SDTUNE_TESTS_OPTIMIZER_CASES_H
#define SDTUNE_TESTS_OPTIMIZER_CASES_H

#include <stddef.h>

#include "backend.h"

size_t optimizer_case_count(void);
/* "optimizer_update adamw tensors=5 copies=bf16": the op's name first, as the other cases. */
const char *optimizer_case_name(size_t i);
/* Runs case i on the CPU engine and on e from the same values for a few steps and compares every master,
 * state buffer and copy bit for bit, with guard bytes around each buffer on e. Prints one line ("ok  " or
 * "FAIL" and why) and returns 1 when it passed. */
int optimizer_case_run(sdt_engine *cpu, sdt_engine *e, size_t i);

#endif
