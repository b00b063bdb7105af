/* What the latent and text-encoder cache tests share: a temporary folder with a cache folder in it, a CPU
 * engine holding the sd15-tiny model with random weights, and the warnings a cache gave. Header-only. */
#ifndef SDTUNE_TESTS_DATASET_CACHE_FIXTURE_H
#define SDTUNE_TESTS_DATASET_CACHE_FIXTURE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "unit/check.h"
#include "unit/test_engine.h"
#include "unit/test_files.h"

typedef struct cache_fixture {
    sdt_engine *e;
    sdt_model model;    /* sd15-tiny, random weights */
    char root[64];      /* a temporary folder */
    char cache_dir[96]; /* root/cache */
    int warnings;
    char last_warning[512];
} cache_fixture;

/* A cache's warn callback (ctx: the cache_fixture): counts the warnings and keeps the last. */
static void cache_fixture_on_warn(void *ctx, const char *message)
{
    cache_fixture *f = ctx;
    f->warnings++;
    snprintf(f->last_warning, sizeof f->last_warning, "%s", message);
}

/* Makes the folder /tmp/sdtune-<tag>-XXXXXX, the engine and the model (weights from seed). Returns 0, or
 * -1 with the failure recorded in t; cache_fixture_close undoes either. */
static int cache_fixture_open(test_state *t, cache_fixture *f, const char *tag, uint64_t seed)
{
    memset(f, 0, sizeof *f);
    snprintf(f->root, sizeof f->root, "/tmp/sdtune-%s-XXXXXX", tag);
    if (!mkdtemp(f->root)) {
        f->root[0] = '\0';
        CHECK_MSG(t, 0, "mkdtemp failed");
        return -1;
    }
    snprintf(f->cache_dir, sizeof f->cache_dir, "%s/cache", f->root);
    f->e = test_cpu_engine(t, 1);
    if (!f->e)
        return -1;
    char *error = NULL;
    const sdt_model_arch *arch = sdt_model_arch_find("sd15-tiny");
    int rc = sdt_model_init(&f->model, arch, &error);
    if (rc == 0)
        rc = sdt_model_alloc(f->e, &f->model, SDT_F32, &error);
    if (rc == 0)
        rc = sdt_model_init_random(f->e, &f->model, seed, &error);
    CHECK_MSG(t, rc == 0, "%s", error ? error : "");
    free(error);
    return rc;
}

static void cache_fixture_close(cache_fixture *f)
{
    sdt_model_free(f->e, &f->model);
    if (f->e)
        sdt_engine_free(f->e);
    if (f->root[0])
        test_remove_tree(f->root);
}

#endif
