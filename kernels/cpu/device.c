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

#ifndef SDTUNE_HAVE_CUDA
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
