/* `schema` prints what is generated from the settings table; `devices` lists compute devices. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "device.h"
#include "sdtune/config.h"

int cli_schema(int argc, char **argv)
{
    if (argc != 1 || (strcmp(argv[0], "--toml") != 0 && strcmp(argv[0], "--markdown") != 0)) {
        fputs("usage: sdtune-engine schema --toml | --markdown\n", stderr);
        return 2;
    }
    char *text = NULL;
    if (strcmp(argv[0], "--toml") == 0) {
        sdt_config *cfg = sdt_config_new_template();
        text = cfg ? sdt_config_to_toml(cfg) : NULL;
        sdt_config_free(cfg);
    } else {
        text = sdt_schema_markdown();
    }
    if (!text) {
        fputs("sdtune-engine: out of memory\n", stderr);
        return 1;
    }
    fputs(text, stdout);
    free(text);
    return fflush(stdout) == 0 ? 0 : 1;
}

int cli_devices(int argc, char **argv)
{
    (void)argv;
    if (argc != 0) {
        fputs("usage: sdtune-engine devices\n", stderr);
        return 2;
    }
    sdt_device_info cpu;
    sdt_cpu_device_info(&cpu);
    printf("cpu     %s, %.1f GiB RAM\n", cpu.name, cpu.memory_gib);
    char *error = NULL;
    int count = sdt_cuda_device_count(&error);
    if (count == 0)
        printf("cuda    none (%s)\n", error ? error : "no device");
    free(error);
    for (int i = 0; i < count; i++) {
        sdt_device_info gpu;
        error = NULL;
        if (sdt_cuda_device_info(i, &gpu, &error) == 0)
            printf("cuda:%d  %s, compute capability %d.%d, %.1f GiB\n", i, gpu.name, gpu.cc_major,
                   gpu.cc_minor, gpu.memory_gib);
        else
            printf("cuda:%d  %s\n", i, error ? error : "cannot be queried");
        free(error);
    }
    return 0;
}
