/* `validate`: loads each config and prints every problem, not only the first. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "device.h"
#include "sdtune/config.h"

static void usage(void)
{
    fputs("usage: sdtune-engine validate [--preflight] [--no-fs] [--device D] FILE...\n"
          "  --preflight  also check what a run needs (model, data, output) and refuse settings the engine\n"
          "               does not implement yet, as `train` does before it starts\n"
          "  --no-fs      skip checks of paths (for a config meant for another machine)\n"
          "  --device D   check against a device: auto (this machine's first GPU, else the CPU), cpu,\n"
          "               cuda:N, or sm_XY for a GPU of compute capability X.Y (e.g. sm_75)\n",
          stderr);
}

/* Fills *device from the --device argument; -1 with a message on stderr when it is not understood. */
static int resolve_device(const char *spec, sdt_device_info *device)
{
    memset(device, 0, sizeof *device);
    char *error = NULL;
    if (strcmp(spec, "cpu") == 0) {
        sdt_cpu_device_info(device);
        return 0;
    }
    if (strcmp(spec, "auto") == 0) {
        if (sdt_cuda_device_count(&error) > 0 && sdt_cuda_device_info(0, device, &error) == 0) {
            free(error);
            return 0;
        }
        free(error);
        sdt_cpu_device_info(device);
        return 0;
    }
    int index, major, minor;
    char tail;
    if (sscanf(spec, "cuda:%d%c", &index, &tail) == 1) {
        if (sdt_cuda_device_info(index, device, &error) == 0)
            return 0;
        fprintf(stderr, "sdtune-engine validate: --device %s: %s\n", spec, error ? error : "cannot query");
        free(error);
        return -1;
    }
    if (sscanf(spec, "sm_%1d%1d%c", &major, &minor, &tail) == 2) {
        device->known = true;
        device->is_gpu = true;
        device->cc_major = major;
        device->cc_minor = minor;
        snprintf(device->name, sizeof device->name, "a GPU of compute capability %d.%d", major, minor);
        return 0;
    }
    fprintf(stderr, "sdtune-engine validate: --device %s: expected auto, cpu, cuda:N or sm_XY\n", spec);
    return -1;
}

static int validate_one(const char *path, const sdt_validate_options *options)
{
    sdt_diag_list diags;
    sdt_diag_list_init(&diags);
    sdt_config *cfg = sdt_config_load_file(path, &diags);
    /* Settings with bad values stayed at their defaults, so the cross-field rules still see a coherent
     * config and every problem is reported in one go. */
    if (cfg)
        sdt_config_validate(cfg, options, &diags);
    sdt_diag_list_print(&diags, stdout);
    size_t errors = sdt_diag_count(&diags, SDT_SEV_ERROR), warnings = sdt_diag_count(&diags, SDT_SEV_WARNING);
    if (errors || warnings)
        printf("%s: %zu error%s, %zu warning%s\n", path, errors, errors == 1 ? "" : "s", warnings,
               warnings == 1 ? "" : "s");
    else
        printf("%s: OK\n", path);
    sdt_diag_list_free(&diags);
    sdt_config_free(cfg);
    return errors ? 1 : 0;
}

int cli_validate(int argc, char **argv)
{
    sdt_validate_options options = {.check_filesystem = true};
    sdt_device_info device;
    int first_file = argc;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--preflight") == 0) {
            options.preflight = true;
        } else if (strcmp(argv[i], "--no-fs") == 0) {
            options.check_filesystem = false;
        } else if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) {
            if (resolve_device(argv[++i], &device) != 0)
                return 2;
            options.device = &device;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage();
            return 0;
        } else if (strcmp(argv[i], "--") == 0) {
            first_file = i + 1;
            break;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "sdtune-engine validate: unknown option '%s'\n", argv[i]);
            usage();
            return 2;
        } else {
            first_file = i;
            break;
        }
    }
    if (first_file >= argc) {
        usage();
        return 2;
    }
    int status = 0;
    for (int i = first_file; i < argc; i++)
        if (validate_one(argv[i], &options) != 0)
            status = 1;
    return status;
}
