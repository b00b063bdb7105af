#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "device.h"
#include "sdtune/strutil.h"

void sdt_cpu_device_info(sdt_device_info *out)
{
    memset(out, 0, sizeof *out);
    out->known = true;
    out->is_gpu = false;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGESIZE);
    snprintf(out->name, sizeof out->name, "CPU (%ld cores)", cores > 0 ? cores : 1);
    if (pages > 0 && page_size > 0)
        out->memory_gib = (double)pages * (double)page_size / (1024.0 * 1024.0 * 1024.0);
}

/* The value of a "Key:   123 kB" line of /proc/meminfo, in bytes; 0 when the line is absent. */
static size_t meminfo_field(const char *text, const char *key)
{
    const char *at = strstr(text, key);
    unsigned long long kib = 0;
    if (at && sscanf(at + strlen(key), " %llu", &kib) == 1)
        return (size_t)kib * 1024;
    return 0;
}

int sdt_cpu_memory_info(size_t *free_bytes, size_t *total_bytes, char **error)
{
    char text[4096];
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return sdt_set_error(error, "cannot read /proc/meminfo: the free host memory is unknown");
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    *free_bytes = meminfo_field(text, "MemAvailable:");
    *total_bytes = meminfo_field(text, "MemTotal:");
    if (*free_bytes == 0)
        return sdt_set_error(error,
                             "/proc/meminfo has no MemAvailable line: the free host memory is unknown");
    return 0;
}

#ifndef SDTUNE_HAVE_CUDA
int sdt_cuda_memory_info(int index, size_t *free_bytes, size_t *total_bytes, char **error)
{
    (void)index;
    *free_bytes = *total_bytes = 0;
    return sdt_set_error(error, "this build has no CUDA backend");
}

int sdt_cuda_device_count(char **error)
{
    *error = sdt_strdup("this build has no CUDA backend (it was built without a CUDA toolkit)");
    return 0;
}

int sdt_cuda_device_info(int index, sdt_device_info *out, char **error)
{
    (void)index;
    memset(out, 0, sizeof *out);
    *error = sdt_strdup("this build has no CUDA backend");
    return -1;
}
#endif
