/* `init-model`: writes a randomly initialised model of a preset arch, for tests, demos and training from
 * scratch. Values are generated while the file is written (nothing is allocated for them), the same bytes
 * for the same seed on any machine thread count. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "checkpoint.h"
#include "cli.h"
#include "sdtune/strutil.h"

static void usage(void)
{
    fprintf(
        stderr,
        "usage: sdtune-engine init-model --arch ARCH --seed N --out PATH [--dtype fp32|fp16|bf16]\n"
        "                                [--format ldm|diffusers]\n"
        "  --arch ARCH    the architecture: %s\n"
        "  --seed N       the random seed (0 .. 2^64-1); the same seed gives the same bytes\n"
        "  --out PATH     the .safetensors file (ldm) or the folder (diffusers) to write\n"
        "  --dtype D      stored precision (default fp32)\n"
        "  --format F     ldm: one single-file checkpoint (default); diffusers: a diffusers model folder\n",
        sdt_model_arch_names());
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int parse_seed(const char *text, uint64_t *seed)
{
    if (!text[0] || text[0] == '-' || text[0] == '+')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (*end != '\0' || errno == ERANGE)
        return -1;
    *seed = (uint64_t)v;
    return 0;
}

/* Bytes under path (a file, or a folder's files one level down and in its component folders). */
static long long size_of(const char *path, sdt_ckpt_format format)
{
    struct stat st;
    if (format == SDT_CKPT_LDM)
        return stat(path, &st) == 0 ? (long long)st.st_size : -1;
    static const char *const files[] = {"unet/diffusion_pytorch_model.safetensors",
                                        "text_encoder/model.safetensors",
                                        "vae/diffusion_pytorch_model.safetensors"};
    long long total = 0;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char *p = sdt_format("%s/%s", path, files[i]);
        if (p && stat(p, &st) == 0)
            total += (long long)st.st_size;
        free(p);
    }
    return total;
}

int cli_init_model(int argc, char **argv)
{
    const char *arch_name = NULL, *seed_text = NULL, *out = NULL;
    sdt_model_save_options options = {.format = SDT_CKPT_LDM, .dtype = SDT_F32};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage();
            return 0;
        }
        int known = strcmp(a, "--arch") == 0 || strcmp(a, "--seed") == 0 || strcmp(a, "--out") == 0 ||
                    strcmp(a, "--dtype") == 0 || strcmp(a, "--format") == 0;
        if (!known) {
            fprintf(stderr, "sdtune-engine init-model: unknown %s '%s'\n",
                    a[0] == '-' ? "option" : "argument", a);
            usage();
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "sdtune-engine init-model: %s needs a value\n", a);
            usage();
            return 2;
        }
        const char *v = argv[++i];
        if (strcmp(a, "--arch") == 0) {
            arch_name = v;
        } else if (strcmp(a, "--seed") == 0) {
            seed_text = v;
        } else if (strcmp(a, "--out") == 0) {
            out = v;
        } else if (strcmp(a, "--dtype") == 0) {
            if (strcmp(v, "fp32") == 0)
                options.dtype = SDT_F32;
            else if (strcmp(v, "fp16") == 0)
                options.dtype = SDT_F16;
            else if (strcmp(v, "bf16") == 0)
                options.dtype = SDT_BF16;
            else {
                fprintf(stderr, "sdtune-engine init-model: --dtype %s: expected fp32, fp16 or bf16\n", v);
                return 2;
            }
        } else {
            if (strcmp(v, "ldm") == 0)
                options.format = SDT_CKPT_LDM;
            else if (strcmp(v, "diffusers") == 0)
                options.format = SDT_CKPT_DIFFUSERS;
            else {
                fprintf(stderr, "sdtune-engine init-model: --format %s: expected ldm or diffusers\n", v);
                return 2;
            }
        }
    }
    if (!arch_name || !seed_text || !out) {
        fprintf(stderr, "sdtune-engine init-model: --arch, --seed and --out are required\n");
        usage();
        return 2;
    }
    const sdt_model_arch *arch = sdt_model_arch_find(arch_name);
    if (!arch) {
        fprintf(stderr, "sdtune-engine init-model: unknown arch '%s' (known: %s)\n", arch_name,
                sdt_model_arch_names());
        return 2;
    }
    uint64_t seed;
    if (parse_seed(seed_text, &seed) != 0) {
        fprintf(stderr, "sdtune-engine init-model: --seed %s: expected a whole number from 0 to 2^64-1\n",
                seed_text);
        return 2;
    }

    double start = now_seconds();
    sdt_model m;
    char *error = NULL;
    int rc = sdt_model_init(&m, arch, &error);
    if (rc == 0)
        rc = sdt_model_save_random(&m, seed, out, &options, &error);
    if (rc != 0) {
        fprintf(stderr, "sdtune-engine init-model: %s\n", error ? error : "failed");
        free(error);
        sdt_model_free(NULL, &m);
        return 1;
    }
    long long params = 0;
    size_t tensors = 0;
    for (int c = 0; c < SDT_COMPONENT_COUNT; c++) {
        params += sdt_param_table_numel(sdt_model_table(&m, c));
        tensors += sdt_model_table(&m, c)->count;
    }
    double seconds = now_seconds() - start;
    printf("%s: %s, seed %llu, %s, %s: %lld parameters in %zu tensors, %.1f MB in %.2f s\n", out, arch->name,
           (unsigned long long)seed, sdt_dtype_name(options.dtype),
           options.format == SDT_CKPT_LDM ? "single-file LDM" : "diffusers folder", params, tensors,
           (double)size_of(out, options.format) / 1e6, seconds);
    sdt_model_free(NULL, &m);
    return fflush(stdout) == 0 ? 0 : 1;
}
