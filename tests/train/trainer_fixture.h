/* What the trainer tests share: a temporary folder holding the sd15-tiny model (random weights), a few
 * generated 64x64 images with captions in a DreamBooth folder, a config for them, and an event recorder.
 * Header-only. */
#ifndef SDTUNE_TESTS_TRAIN_TRAINER_FIXTURE_H
#define SDTUNE_TESTS_TRAIN_TRAINER_FIXTURE_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "demo.h"
#include "image.h"
#include "sdtune/config.h"
#include "trainer.h"
#include "unit/check.h"
#include "unit/test_files.h"

typedef struct trainer_fixture {
    char root[64];
    char data[128], out[128];
    sdt_demo_assets demo; /* the model and tokenizer (the demo's, made in root) */
} trainer_fixture;

/* Writes image k of the fixture: a smooth colour field that differs per image. */
static inline int fixture_write_image(const char *path, int k)
{
    enum { W = 64, H = 64 };
    uint8_t px[H * W * 3]; /* [H, W, 3] RGB */
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            uint8_t *p = &px[(y * W + x) * 3];
            p[0] = (uint8_t)((x * 4 + k * 60) & 255);
            p[1] = (uint8_t)((y * 4 + k * 30) & 255);
            p[2] = (uint8_t)(((x + y) * 2 + k * 90) & 255);
        }
    char *error = NULL;
    int rc = sdt_png_write(path, px, W, H, 3, NULL, 0, &error);
    free(error);
    return rc;
}

/* The folder, the model and `images` images in data/<repeats>_cat with captions. Returns 0, or -1. */
static inline int trainer_fixture_open(test_state *t, trainer_fixture *f, const char *tag, int images,
                                       int repeats)
{
    memset(f, 0, sizeof *f);
    snprintf(f->root, sizeof f->root, "/tmp/sdtune-%s-XXXXXX", tag);
    if (!mkdtemp(f->root)) {
        f->root[0] = '\0';
        CHECK_MSG(t, 0, "mkdtemp failed");
        return -1;
    }
    snprintf(f->data, sizeof f->data, "%s/data", f->root);
    snprintf(f->out, sizeof f->out, "%s/out", f->root);
    char *error = NULL;
    int rc = sdt_demo_prepare(f->root, &f->demo, &error);
    CHECK_MSG(t, rc == 0, "%s", error ? error : "");
    free(error);
    if (rc != 0)
        return -1;
    char dir[200];
    snprintf(dir, sizeof dir, "%s/%d_cat", f->data, repeats);
    mkdir(f->data, 0755);
    mkdir(dir, 0755);
    static const char *const captions[] = {"a red cat", "a blue cat sitting", "a green cat",
                                           "a cat, outdoors"};
    for (int k = 0; k < images && rc == 0; k++) {
        char path[256];
        snprintf(path, sizeof path, "%s/img%d.png", dir, k);
        rc = fixture_write_image(path, k);
        snprintf(path, sizeof path, "%s/img%d.txt", dir, k);
        const char *c = captions[k % 4];
        if (rc == 0)
            rc = test_write_file(path, c, strlen(c));
    }
    CHECK_MSG(t, rc == 0, "cannot write the fixture images");
    return rc;
}

static inline void trainer_fixture_close(trainer_fixture *f)
{
    sdt_demo_assets_free(&f->demo);
    if (f->root[0])
        test_remove_tree(f->root);
}

/* The fixture's config: a LoRA run of `steps` steps, then `extra` TOML lines (keys of any section, placed
 * under their section by the caller: "[saving]\nsave_state = true\n"). NULL on errors (recorded).
 * It trains on the CPU backend wherever it runs (on a GPU machine "auto" would pick CUDA); extra may
 * start with `backend = ...` (and other [hardware] keys) before its first section to choose another. */
static inline sdt_config *trainer_fixture_config(test_state *t, const trainer_fixture *f,
                                                 const char *training, const char *extra)
{
    const char *backend = extra && strncmp(extra, "backend =", 9) == 0 ? "" : "backend = \"cpu\"\n";
    char *text = sdt_format("[model]\n"
                            "pretrained_model_name_or_path = \"%s\"\n"
                            "tokenizer_dir = \"%s\"\n"
                            "%s"
                            "[folders]\n"
                            "train_data_dir = \"%s\"\n"
                            "output_dir = \"%s\"\n"
                            "output_name = \"tiny\"\n"
                            "[dataset]\n"
                            "resolution = [64]\n"
                            "enable_bucket = false\n"
                            "[hardware]\n"
                            "cpu_threads = 1\n"
                            "%s"
                            "%s",
                            f->demo.model_path, f->demo.tokenizer_dir, training ? training : "", f->data,
                            f->out, backend, extra ? extra : "");
    sdt_diag_list diags;
    sdt_diag_list_init(&diags);
    sdt_config *cfg = text ? sdt_config_load_text(text, strlen(text), "test.toml", &diags) : NULL;
    int errors = (int)sdt_diag_count(&diags, SDT_SEV_ERROR);
    if (errors)
        sdt_diag_list_print(&diags, stderr);
    CHECK_MSG(t, cfg && errors == 0, "the test config does not load");
    sdt_diag_list_free(&diags);
    free(text);
    if (cfg && errors) {
        sdt_config_free(cfg);
        cfg = NULL;
    }
    return cfg;
}

/* ---- events ---- */

typedef struct recorded_event {
    sdt_event_type type;
    sdt_phase phase;
    int64_t step;
    double loss, loss_avg, lr;
    sdt_checkpoint_kind kind;
    char *text; /* log text, checkpoint or sample path, error message */
} recorded_event;

typedef struct event_log {
    recorded_event *items;
    size_t count, capacity;
    sdt_run_control *control;
    int64_t stop_at_step;   /* sets control->stop on the progress event of this step (0: never) */
    int resume_when_paused; /* clears control->paused on the "paused" phase event */
} event_log;

static inline void event_log_emit(void *ctx, const sdt_event *ev)
{
    event_log *l = ctx;
    if (l->count == l->capacity) {
        l->capacity = l->capacity ? 2 * l->capacity : 64;
        l->items = realloc(l->items, l->capacity * sizeof *l->items);
    }
    recorded_event *r = &l->items[l->count++];
    memset(r, 0, sizeof *r);
    r->type = ev->type;
    r->phase = ev->phase;
    if (ev->type == SDT_EV_PHASE && ev->phase == SDT_PHASE_PAUSED && l->control && l->resume_when_paused)
        atomic_store(&l->control->paused, 0);
    const char *text = NULL;
    char summary[160];
    switch (ev->type) {
    case SDT_EV_DEVICE:
        /* What a test compares: the backend, the precision, fp8 weights. */
        snprintf(summary, sizeof summary, "backend=%s precision=%s fp8_weights=%d",
                 ev->device.backend ? ev->device.backend : "?",
                 ev->device.precision ? ev->device.precision : "?", ev->device.fp8_weights);
        text = summary;
        break;
    case SDT_EV_MEMORY:
        snprintf(summary, sizeof summary, "kind=%s used=%lld peak=%lld total=%lld",
                 sdt_memory_kind_name(ev->memory.kind), (long long)ev->memory.used,
                 (long long)ev->memory.peak, (long long)ev->memory.total);
        text = summary;
        break;
    case SDT_EV_PROGRESS:
        r->step = ev->progress.step;
        r->loss = ev->progress.loss;
        r->loss_avg = ev->progress.loss_avg;
        r->lr = ev->progress.lr;
        if (l->control && l->stop_at_step && r->step == l->stop_at_step)
            atomic_store(&l->control->stop, 1);
        break;
    case SDT_EV_LOG: text = ev->log.text; break;
    case SDT_EV_CHECKPOINT:
        r->step = ev->checkpoint.step;
        r->kind = ev->checkpoint.kind;
        text = ev->checkpoint.path;
        break;
    case SDT_EV_SAMPLE: text = ev->sample.path; break;
    case SDT_EV_ERROR: text = ev->error.message; break;
    default: break;
    }
    r->text = text ? strdup(text) : NULL;
}

static inline void event_log_free(event_log *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->items[i].text);
    free(l->items);
    memset(l, 0, sizeof *l);
}

/* Losses of the progress events, in order, into out (at most n); returns how many. */
static inline size_t event_log_losses(const event_log *l, double *out, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < l->count && k < n; i++)
        if (l->items[i].type == SDT_EV_PROGRESS)
            out[k++] = l->items[i].loss;
    return k;
}

static inline size_t event_log_count(const event_log *l, sdt_event_type type)
{
    size_t k = 0;
    for (size_t i = 0; i < l->count; i++)
        k += l->items[i].type == type;
    return k;
}

/* Runs a training of cfg; events into log. */
static inline sdt_train_result trainer_fixture_run(const sdt_config *cfg, event_log *log,
                                                   sdt_run_control *control, char **error)
{
    sdt_train_options o = {0};
    o.cfg = cfg;
    o.emit = event_log_emit;
    o.emit_ctx = log;
    o.control = control;
    log->control = control;
    return sdt_train_run(&o, error);
}

/* Runs the fixture with extra settings; returns the result, events in log, error in *error. */
static inline sdt_train_result trainer_fixture_run_with(test_state *t, trainer_fixture *f,
                                                        const char *training, const char *extra,
                                                        event_log *log, sdt_run_control *control,
                                                        char **error)
{
    sdt_config *cfg = trainer_fixture_config(t, f, training, extra);
    sdt_train_result r = cfg ? trainer_fixture_run(cfg, log, control, error) : SDT_TRAIN_FAILED;
    sdt_config_free(cfg);
    return r;
}

/* Whether a log event's text contains needle. */
static inline int event_log_has_text(const event_log *l, const char *needle)
{
    for (size_t i = 0; i < l->count; i++)
        if (l->items[i].type == SDT_EV_LOG && l->items[i].text && strstr(l->items[i].text, needle))
            return 1;
    return 0;
}

/* The text recorded for the first event of type (event_log_emit: the summary of a `device` or `memory`
 * event); NULL when there was none. */
static inline const char *event_log_text(const event_log *l, sdt_event_type type)
{
    for (size_t i = 0; i < l->count; i++)
        if (l->items[i].type == type)
            return l->items[i].text;
    return NULL;
}

static inline int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

#endif
