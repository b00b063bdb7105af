/* The CPU engine the model and op tests run on. Header-only. */
#ifndef SDTUNE_TESTS_UNIT_TEST_ENGINE_H
#define SDTUNE_TESTS_UNIT_TEST_ENGINE_H

#include <stdlib.h>

#include "backend.h"
#include "check.h"

/* A CPU engine with `threads` threads (0: all cores), or NULL with the failure recorded in t. Tests of
 * small models ask for one: at their sizes a second thread only adds OpenMP/OpenBLAS hand-offs (10x the
 * run time on two cores); the multi-threaded kernels are the op tests' business. */
static inline sdt_engine *test_cpu_engine(test_state *t, int threads)
{
    sdt_engine_options options = {.device = SDT_DEVICE_CPU, .threads = threads};
    sdt_engine *e = NULL;
    char *error = NULL;
    CHECK_MSG(t, sdt_engine_create(&options, &e, &error) == 0, "%s", error ? error : "");
    free(error);
    return e;
}

#endif
