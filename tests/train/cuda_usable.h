/* The skip rule of the GPU-labelled train tests: they run only when the build has the CUDA ops and a
 * device answers, and exit 77 (skipped) otherwise, saying why. */
#ifndef SDTUNE_TESTS_TRAIN_CUDA_USABLE_H
#define SDTUNE_TESTS_TRAIN_CUDA_USABLE_H

#include <stdio.h>
#include <stdlib.h>

#include "device.h"

/* Whether the build has the CUDA ops and a device answers; says why not. */
static inline int cuda_usable(void)
{
#ifndef SDTUNE_HAVE_CUDA_OPS
    printf("skipped: this build has no CUDA ops\n");
    return 0;
#else
    char *why = NULL;
    int devices = sdt_cuda_device_count(&why);
    if (devices < 1)
        printf("skipped: %s\n", why ? why : "no CUDA device");
    free(why);
    return devices > 0;
#endif
}

#endif
