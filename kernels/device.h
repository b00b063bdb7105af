/* What the engine can compute on: the CPU always, CUDA GPUs when built with the CUDA backend. */
#ifndef SDTUNE_KERNELS_DEVICE_H
#define SDTUNE_KERNELS_DEVICE_H

#include "sdtune/config.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The host CPU: name, core count, memory. */
void sdt_cpu_device_info(sdt_device_info *out);

/* Number of CUDA devices; 0 (with *error set, caller frees) when there is no driver or no GPU, and
 * always 0 in a build without the CUDA backend. */
int sdt_cuda_device_count(char **error);
/* Properties of CUDA device index; -1 with *error set when it cannot be queried. */
int sdt_cuda_device_info(int index, sdt_device_info *out, char **error);

#ifdef __cplusplus
}
#endif
#endif
