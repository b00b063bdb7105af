// CUDA device discovery through the runtime API. No kernels here: the backend's kernels live beside it.
#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>

#include "device.h"

extern "C" {
#include "sdtune/strutil.h"
}

extern "C" int sdt_cuda_device_count(char **error)
{
    *error = nullptr;
    int count = 0;
    cudaError_t rc = cudaGetDeviceCount(&count);
    if (rc != cudaSuccess) {
        *error = sdt_format("no CUDA device: %s", cudaGetErrorString(rc));
        cudaGetLastError(); // clear the sticky error so later calls start clean
        return 0;
    }
    return count;
}

extern "C" int sdt_cuda_device_info(int index, sdt_device_info *out, char **error)
{
    *error = nullptr;
    std::memset(out, 0, sizeof *out);
    cudaDeviceProp prop;
    cudaError_t rc = cudaGetDeviceProperties(&prop, index);
    if (rc != cudaSuccess) {
        *error = sdt_format("cannot query CUDA device %d: %s", index, cudaGetErrorString(rc));
        return -1;
    }
    out->known = true;
    out->is_gpu = true;
    out->cc_major = prop.major;
    out->cc_minor = prop.minor;
    std::snprintf(out->name, sizeof out->name, "%s", prop.name);
    out->memory_gib = static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0);
    return 0;
}

extern "C" int sdt_cuda_memory_info(int index, size_t *free_bytes, size_t *total_bytes, char **error)
{
    *error = nullptr;
    *free_bytes = *total_bytes = 0;
    int previous = 0;
    cudaError_t rc = cudaGetDevice(&previous);
    if (rc == cudaSuccess)
        rc = cudaSetDevice(index);
    if (rc == cudaSuccess) {
        rc = cudaMemGetInfo(free_bytes, total_bytes);
        cudaSetDevice(previous);
    }
    if (rc != cudaSuccess) {
        *error = sdt_format("cannot query the memory of CUDA device %d: %s", index, cudaGetErrorString(rc));
        cudaGetLastError();
        return -1;
    }
    return 0;
}
