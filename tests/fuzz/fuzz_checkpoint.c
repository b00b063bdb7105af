/* libFuzzer target: any bytes, as a .safetensors checkpoint, give the model loader an answer — a complete
 * model or an error message — never a crash, a leak or undefined behaviour. Both the header-only load that
 * `inspect` uses and a full load (values read and converted) run on every input.
 *
 * The loader works on paths, so each input is written to one scratch file first. The engine and the path
 * are the harness's, made once per process. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static sdt_engine *fuzz_engine(void)
{
    static sdt_engine *engine;
    if (!engine) {
        sdt_engine_options options = {.device = SDT_DEVICE_CPU, .threads = 1};
        char *error = NULL;
        if (sdt_engine_create(&options, &engine, &error) != 0)
            abort();
    }
    return engine;
}

static const char *scratch_path(void)
{
    static char path[64];
    if (!path[0])
        snprintf(path, sizeof path, "/tmp/sdtune-fuzz-checkpoint-%ld.safetensors", (long)getpid());
    return path;
}

static void load_once(const char *path, int header_only)
{
    sdt_model_load_options options = {.header_only = header_only};
    sdt_model model;
    sdt_ckpt_report report;
    memset(&report, 0, sizeof report);
    char *error = NULL;
    int status = sdt_model_load(header_only ? NULL : fuzz_engine(), path, &options, &model, &report, &error);
    if (status != 0 && (!error || !error[0]))
        abort(); /* a failure always explains itself */
    if (status == 0 && error)
        abort();
    free(error);
    sdt_ckpt_report_free(&report);
    sdt_model_free(header_only ? NULL : fuzz_engine(), &model);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = scratch_path();
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    if (size && fwrite(data, 1, size, f) != size)
        abort();
    fclose(f);
    load_once(path, 1);
    load_once(path, 0);
    return 0;
}
