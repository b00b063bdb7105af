/* The memory plan of a run, before the model is loaded: the model's tables come from its files' headers
 * (no values read), the plan from them and the config, and the device's free memory decides whether the
 * run starts. After the first step the engine allocator's measured peak is logged beside the plan's. */
#include <stdlib.h>
#include <string.h>

#include "trainer_internal.h"

/* Logs every line of text at level. */
static void log_lines(sdt_trainer *t, sdt_log_level level, const char *text)
{
    while (text && *text) {
        const char *end = strchr(text, '\n');
        size_t len = end ? (size_t)(end - text) : strlen(text);
        sdt_trainer_log(t, level, "%.*s", (int)len, text);
        text += len + (end ? 1 : 0);
    }
}

static double mib(size_t bytes) { return (double)bytes / (1024.0 * 1024.0); }

int sdt_trainer_plan_memory(sdt_trainer *t, const char **setting, char **error)
{
    *setting = NULL;
    const char *path = t->s.model_path;
    if (!path || !*path)
        return 0; /* setup_models says what is missing */
    sdt_model header;
    memset(&header, 0, sizeof header);
    sdt_model_load_options lo = {.dtype = SDT_F32, .header_only = 1};
    if (t->s.vae_path && *t->s.vae_path)
        lo.vae_path = t->s.vae_path;
    if (sdt_model_load(NULL, path, &lo, &header, NULL, error) != 0) {
        sdt_model_free(NULL, &header);
        return -1;
    }
    /* The guarded test device stands in for a GPU but its memory is the host's: it plans as the CPU. */
    const sdt_device_kind device =
        t->e && sdt_engine_device(t->e) == SDT_DEVICE_CUDA ? SDT_DEVICE_CUDA : SDT_DEVICE_CPU;
    sdt_memory_plan_input in;
    int rc = sdt_memory_plan_input_from_config(t->cfg, &header, device, &in, error);
    if (rc == 0)
        rc = sdt_memory_plan_build(&in, &t->memory_plan, error);
    size_t free_bytes = t->o->memory_free_bytes;
    const char *source = "given limit";
    if (rc == 0 && free_bytes == 0) {
        size_t total = 0;
        source = device == SDT_DEVICE_CUDA ? "cudaMemGetInfo" : "MemAvailable";
        if (!t->e || sdt_engine_memory_info(t->e, &free_bytes, &total) != 0) {
            sdt_trainer_log(t, SDT_LOG_WARNING, "memory plan: %s; the run is not checked against it",
                            t->e ? sdt_engine_error(t->e) : "the free memory is unknown");
            free_bytes = 0;
        }
    }
    /* vram_limit_gb caps what the run may take below what is free (a GPU shared with other work). */
    if (rc == 0)
        free_bytes = sdt_memory_plan_cap(t->s.vram_limit_gb, free_bytes, &source);
    if (rc == 0) {
        t->has_memory_plan = 1;
        sdt_buf table;
        sdt_buf_init(&table);
        sdt_memory_plan_table(&in, &t->memory_plan, free_bytes, source, &table);
        size_t total = sdt_memory_plan_total(&t->memory_plan);
        int fits = free_bytes == 0 || total <= free_bytes;
        log_lines(t, fits ? SDT_LOG_INFO : SDT_LOG_ERROR, table.data);
        if (!fits) {
            sdt_buf advice;
            sdt_buf_init(&advice);
            *setting = sdt_memory_plan_suggest(&in, &t->memory_plan, free_bytes, &advice);
            log_lines(t, SDT_LOG_ERROR, advice.data);
            sdt_buf_free(&advice);
            sdt_set_error(
                error,
                "the run needs %.2f MiB by its memory plan but %.2f MiB are free (%s): it would run "
                "out of memory; see the plan and the settings that lower it above",
                mib(total), mib(free_bytes), source);
            rc = 1;
        }
        sdt_buf_free(&table);
    }
    sdt_model_free(NULL, &header);
    return rc;
}

void sdt_trainer_report_step_memory(sdt_trainer *t, size_t live_before)
{
    if (!t->has_memory_plan)
        return;
    size_t peak = sdt_engine_peak_bytes(t->e);
    size_t measured = peak > live_before ? peak - live_before : 0;
    sdt_trainer_log(
        t, SDT_LOG_INFO,
        "memory: the first step held at most %.2f MiB above the model (the plan's activations and "
        "workspace: %.2f MiB)",
        mib(measured), mib(t->memory_plan.step_peak));
}
