/* What the engine can compute on: the CPU always, CUDA GPUs when built with the CUDA backend. */
#ifndef SDTUNE_KERNELS_DEVICE_H
#define SDTUNE_KERNELS_DEVICE_H

#include <stddef.h>

#include "sdtune/config.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The host CPU: name, core count, memory. */
void sdt_cpu_device_info(sdt_device_info *out);

/* Memory a run may still take on the host: MemAvailable of /proc/meminfo (what the kernel can give without
 * swapping), in *free_bytes, and MemTotal in *total_bytes. Returns 0, or -1 with *error set when it cannot
 * be read. */
int sdt_cpu_memory_info(size_t *free_bytes, size_t *total_bytes, char **error);

/* Number of CUDA devices; 0 (with *error set, caller frees) when there is no driver or no GPU, and
 * always 0 in a build without the CUDA backend. */
int sdt_cuda_device_count(char **error);
/* Properties of CUDA device index; -1 with *error set when it cannot be queried. */
int sdt_cuda_device_info(int index, sdt_device_info *out, char **error);
/* Free and total memory of CUDA device index (cudaMemGetInfo); -1 with *error set when it cannot be
 * queried (always in a build without the CUDA backend). */
int sdt_cuda_memory_info(int index, size_t *free_bytes, size_t *total_bytes, char **error);

#ifdef __cplusplus
}
#endif
#endif
