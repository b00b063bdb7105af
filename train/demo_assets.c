/* The demo's files: a random sd15-tiny checkpoint, a small CLIP-compatible tokenizer, a dataset of drawn
 * shapes with captions and a sample prompt file, built once in a temporary folder and renamed into
 * <cache root>/demo. Everything is deterministic, so two machines build the same demo. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch.h"
#include "checkpoint.h"
#include "demo.h"
#include "demo_internal.h"
#include "image.h"
#include "sdtune/atomic_file.h"
#include "sdtune/strutil.h"

/* Written last into the temporary folder: a demo folder without it is not one this code made. */
#define DEMO_MARKER "demo-version"
#define DEMO_VERSION "1\n"

int sdt_builtin_is(const char *path) { return path && strncmp(path, "builtin:", 8) == 0; }

char *sdt_demo_cache_root(char **error)
{
    const char *dir = getenv("SDTUNE_CACHE_DIR");
    if (dir && dir[0])
        return sdt_strdup(dir);
    const char *xdg = getenv("XDG_CACHE_HOME");
    if (xdg && xdg[0])
        return sdt_format("%s/sdtune", xdg);
    const char *home = getenv("HOME");
    if (home && home[0])
        return sdt_format("%s/.cache/sdtune", home);
    sdt_set_error(error, "no cache folder for the demo: set SDTUNE_CACHE_DIR, XDG_CACHE_HOME or HOME");
    return NULL;
}

static int write_text(const char *dir, const char *name, const char *text, char **error)
{
    char *path = sdt_format("%s/%s", dir, name);
    if (!path)
        return sdt_set_error(error, "out of memory");
    int rc = sdt_atomic_write(path, text, strlen(text), error);
    free(path);
    return rc;
}

static int write_model(const char *dir, char **error)
{
    const sdt_model_arch *arch = sdt_model_arch_find(SDT_DEMO_ARCH);
    if (!arch)
        return sdt_set_error(error, "the model arch %s is missing from this build", SDT_DEMO_ARCH);
    char *path = sdt_format("%s/tiny-sd15.safetensors", dir);
    if (!path)
        return sdt_set_error(error, "out of memory");
    sdt_model m;
    sdt_model_save_options options = {.format = SDT_CKPT_LDM, .dtype = SDT_F32};
    int rc = sdt_model_init(&m, arch, error);
    if (rc == 0)
        rc = sdt_model_save_random(&m, SDT_DEMO_MODEL_SEED, path, &options, error);
    sdt_model_free(NULL, &m);
    free(path);
    return rc;
}

static int build(const char *tmp, char **error)
{
    char *tokenizer = sdt_format("%s/tokenizer", tmp);
    char *images = sdt_format("%s/shapes/%d_shapes", tmp, SDT_DEMO_REPEATS);
    int rc = tokenizer && images ? 0 : sdt_set_error(error, "out of memory");
    if (rc == 0)
        rc = sdt_make_folders(tokenizer, "demo", error);
    if (rc == 0)
        rc = sdt_make_folders(images, "demo", error);
    if (rc == 0)
        rc = sdt_demo_write_tokenizer(tokenizer, error);
    if (rc == 0)
        rc = sdt_demo_write_shapes(images, error);
    if (rc == 0) {
        char *prompts = sdt_demo_sample_prompts();
        rc = prompts ? write_text(tmp, "sample_prompts.txt", prompts, error)
                     : sdt_set_error(error, "out of memory");
        free(prompts);
    }
    if (rc == 0)
        rc = write_model(tmp, error);
    if (rc == 0)
        rc = write_text(tmp, DEMO_MARKER, DEMO_VERSION, error);
    free(tokenizer);
    free(images);
    return rc;
}

static int is_complete(const char *demo)
{
    char *marker = sdt_format("%s/%s", demo, DEMO_MARKER);
    char *data = NULL, *why = NULL;
    size_t len = 0;
    int ok = marker && sdt_read_file(marker, 64, &data, &len, &why) == 0 && strcmp(data, DEMO_VERSION) == 0;
    free(marker);
    free(data);
    free(why);
    return ok;
}

static int fill_paths(const char *demo, sdt_demo_assets *out, char **error)
{
    out->model_path = sdt_format("%s/tiny-sd15.safetensors", demo);
    out->train_data_dir = sdt_format("%s/shapes", demo);
    out->sample_prompts = sdt_format("%s/sample_prompts.txt", demo);
    out->tokenizer_dir = sdt_format("%s/tokenizer", demo);
    if (!out->model_path || !out->train_data_dir || !out->sample_prompts || !out->tokenizer_dir) {
        sdt_demo_assets_free(out);
        return sdt_set_error(error, "out of memory");
    }
    return 0;
}

int sdt_demo_prepare(const char *cache_root, sdt_demo_assets *out, char **error)
{
    memset(out, 0, sizeof *out);
    if (!cache_root || !cache_root[0])
        return sdt_set_error(error, "no cache folder given for the demo");
    char *demo = sdt_format("%s/demo", cache_root);
    if (!demo)
        return sdt_set_error(error, "out of memory");
    if (is_complete(demo)) {
        int rc = fill_paths(demo, out, error);
        free(demo);
        return rc;
    }
    if (sdt_make_folders(cache_root, "demo", error) != 0) {
        free(demo);
        return -1;
    }
    char *tmp = sdt_format("%s/demo.tmp.XXXXXX", cache_root);
    if (!tmp || !mkdtemp(tmp)) {
        sdt_set_error(error, "cannot create a folder in the demo cache %s: %s", cache_root,
                      tmp ? strerror(errno) : "out of memory");
        free(tmp);
        free(demo);
        return -1;
    }
    int rc = build(tmp, error);
    /* mkdtemp makes the folder private; the demo's files are as readable as any other cache. */
    if (rc == 0 && chmod(tmp, 0755) != 0)
        rc = sdt_set_error(error, "cannot set permissions of %s: %s", tmp, strerror(errno));
    if (rc == 0 && rename(tmp, demo) != 0) {
        if ((errno == ENOTEMPTY || errno == EEXIST) && is_complete(demo)) {
            sdt_demo_remove_tree(tmp); /* another process finished first: use its folder */
        } else if (errno == ENOTEMPTY || errno == EEXIST) {
            /* An incomplete folder of an older or broken demo: replace it. */
            sdt_demo_remove_tree(demo);
            if (rename(tmp, demo) != 0)
                rc = sdt_set_error(error, "cannot rename %s to %s: %s", tmp, demo, strerror(errno));
        } else {
            rc = sdt_set_error(error, "cannot rename %s to %s: %s", tmp, demo, strerror(errno));
        }
    }
    if (rc != 0)
        sdt_demo_remove_tree(tmp);
    if (rc == 0)
        rc = fill_paths(demo, out, error);
    free(tmp);
    free(demo);
    return rc;
}

void sdt_demo_assets_free(sdt_demo_assets *a)
{
    if (!a)
        return;
    free(a->model_path);
    free(a->train_data_dir);
    free(a->sample_prompts);
    free(a->tokenizer_dir);
    memset(a, 0, sizeof *a);
}
