/* `plan`: the memory plan of the run a config describes (train/memory_plan.h), printed as `train` prints it
 * before it starts, for the CPU backend or for what the CUDA backend will hold (weights and activations in
 * the config's mixed_precision, bf16 for auto on CUDA; fp32 LoRA), from the model's headers or a preset
 * arch; nothing is loaded or allocated. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "cli.h"
#include "demo.h"
#include "memory_plan.h"
#include "sdtune/config.h"

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: sdtune-engine plan CONFIG [--device cpu|cuda] [--dtype fp32|fp16|bf16] [--arch ARCH]\n"
        "                               [--free MIB]\n"
        "  CONFIG      an sdtune config: batch size, resolution, checkpointing, LoRA, optimizer\n"
        "  --device D  cpu (default) or cuda: the backend the run is planned for\n"
        "  --dtype D   the frozen weights' and the activations' dtype (default: the config's\n"
        "              mixed_precision; auto is fp32 on cpu, bf16 on cuda)\n"
        "  --arch A    plan for a preset (%s) instead of the config's model\n"
        "  --free MIB  check against this much free memory instead of the device's\n"
        "exit 0 when the plan fits (or the free memory is unknown), 1 when it does not or on errors, 2 on "
        "usage errors\n",
        sdt_model_arch_names());
}

static int parse_dtype(const char *s, sdt_dtype *out)
{
    if (strcmp(s, "fp32") == 0)
        *out = SDT_F32;
    else if (strcmp(s, "fp16") == 0)
        *out = SDT_F16;
    else if (strcmp(s, "bf16") == 0)
        *out = SDT_BF16;
    else
        return -1;
    return 0;
}

/* The model's tables: a preset's, or the config's model from its headers. */
static int model_tables(sdt_config *cfg, const char *arch_name, sdt_model *m, char **error)
{
    memset(m, 0, sizeof *m);
    if (arch_name) {
        const sdt_model_arch *arch = sdt_model_arch_find(arch_name);
        if (!arch)
            return sdt_set_error(error, "unknown arch \"%s\" (known: %s)", arch_name, sdt_model_arch_names());
        return sdt_model_init(m, arch, error);
    }
    if (sdt_demo_resolve(cfg, error) != 0)
        return -1;
    const char *path = sdt_config_str(cfg, "pretrained_model_name_or_path");
    if (!path || !*path)
        return sdt_set_error(error, "pretrained_model_name_or_path is not set (or give --arch)");
    sdt_model_load_options lo = {.header_only = 1};
    const char *vae = sdt_config_str(cfg, "vae");
    if (vae && *vae)
        lo.vae_path = vae;
    return sdt_model_load(NULL, path, &lo, m, NULL, error);
}

int cli_plan(int argc, char **argv)
{
    const char *path = NULL, *arch = NULL;
    sdt_device_kind device = SDT_DEVICE_CPU;
    sdt_dtype dtype = SDT_F32;
    int dtype_given = 0;
    double free_mib = -1;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--device") == 0 && next) {
            if (strcmp(next, "cpu") != 0 && strcmp(next, "cuda") != 0) {
                fprintf(stderr, "sdtune-engine plan: --device %s: cpu or cuda\n", next);
                return 2;
            }
            device = strcmp(next, "cuda") == 0 ? SDT_DEVICE_CUDA : SDT_DEVICE_CPU;
            i++;
        } else if (strcmp(a, "--dtype") == 0 && next) {
            if (parse_dtype(next, &dtype) != 0) {
                fprintf(stderr, "sdtune-engine plan: --dtype %s: fp32, fp16 or bf16\n", next);
                return 2;
            }
            dtype_given = 1;
            i++;
        } else if (strcmp(a, "--arch") == 0 && next) {
            arch = next;
            i++;
        } else if (strcmp(a, "--free") == 0 && next) {
            char *end;
            free_mib = strtod(next, &end);
            if (*end || free_mib <= 0) {
                fprintf(stderr, "sdtune-engine plan: --free %s: a positive number of MiB\n", next);
                return 2;
            }
            i++;
        } else if (a[0] == '-' || path) {
            fprintf(stderr, "sdtune-engine plan: unexpected argument '%s'\n", a);
            usage(stderr);
            return 2;
        } else {
            path = a;
        }
    }
    if (!path) {
        usage(stderr);
        return 2;
    }

    sdt_diag_list diags;
    sdt_diag_list_init(&diags);
    sdt_config *cfg = sdt_config_load_file(path, &diags);
    if (!cfg || sdt_diag_count(&diags, SDT_SEV_ERROR) > 0) {
        sdt_diag_list_print(&diags, stderr);
        sdt_diag_list_free(&diags);
        sdt_config_free(cfg);
        return 1;
    }
    sdt_diag_list_free(&diags);
    char *error = NULL;
    sdt_model model;
    sdt_memory_plan_input in;
    sdt_memory_plan plan;
    int status = 1;
    if (model_tables(cfg, arch, &model, &error) != 0 ||
        sdt_memory_plan_input_from_config(cfg, &model, device, &in, &error) != 0)
        goto done;
    /* Without --dtype the config's mixed_precision decides, as for the run ("auto": fp32 on the CPU
     * backend, bf16 on CUDA). */
    if (dtype_given) {
        in.weight_dtype = dtype;
        in.activation_dtype = dtype;
    }
    if (sdt_memory_plan_build(&in, &plan, &error) != 0)
        goto done;
    size_t free_bytes = 0;
    const char *source = "--free";
    if (free_mib > 0) {
        free_bytes = (size_t)(free_mib * 1024.0 * 1024.0);
    } else {
        char *why = NULL;
        if (sdt_memory_plan_free_bytes(device, 0, &free_bytes, &source, &why) != 0) {
            fprintf(stderr, "sdtune-engine plan: %s\n", why ? why : "the free memory is unknown");
            free_bytes = 0;
        }
        free(why);
    }
    free_bytes = sdt_memory_plan_cap(sdt_config_float(cfg, "vram_limit_gb"), free_bytes, &source);
    sdt_buf out;
    sdt_buf_init(&out);
    sdt_memory_plan_table(&in, &plan, free_bytes, source, &out);
    size_t total = sdt_memory_plan_total(&plan);
    int fits = free_bytes == 0 || total <= free_bytes;
    if (!fits)
        sdt_memory_plan_suggest(&in, &plan, free_bytes, &out);
    fputs(out.data ? out.data : "", stdout);
    printf("%s\n", free_bytes == 0 ? "not checked: the free memory is unknown"
                   : fits          ? "fits"
                                   : "does not fit");
    sdt_buf_free(&out);
    status = fits ? 0 : 1;
done:
    if (error)
        fprintf(stderr, "sdtune-engine plan: %s: %s\n", path, error);
    free(error);
    sdt_model_free(NULL, &model);
    sdt_config_free(cfg);
    return status;
}
