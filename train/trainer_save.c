/* Saving: the LoRA or the whole model under kohya's names, the resumable state folders, and the rotation
 * of both (kohya_inventory §8). */
#define _GNU_SOURCE /* mkdtemp, nftw */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lora_internal.h"
#include "optim_settings.h"
#include "run_metadata.h"
#include "sdtune/atomic_file.h"
#include "sdtune/safetensors.h"
#include "sdtune/sha256.h"
#include "trainer_internal.h"

static char *model_file_name(const sdt_trainer *t, sdt_save_kind kind, int64_t number)
{
    switch (kind) {
    case SDT_SAVE_EPOCH:
        return sdt_format("%s/%s-%06lld.safetensors", t->output_dir, t->output_name, (long long)number);
    case SDT_SAVE_STEP:
        return sdt_format("%s/%s-step%08lld.safetensors", t->output_dir, t->output_name, (long long)number);
    default: return sdt_format("%s/%s.safetensors", t->output_dir, t->output_name);
    }
}

static char *state_dir_name(const sdt_trainer *t, sdt_save_kind kind, int64_t number)
{
    switch (kind) {
    case SDT_SAVE_EPOCH:
        return sdt_format("%s/%s-%06lld-state", t->output_dir, t->output_name, (long long)number);
    case SDT_SAVE_STEP:
        return sdt_format("%s/%s-step%08lld-state", t->output_dir, t->output_name, (long long)number);
    default: return sdt_format("%s/%s-state", t->output_dir, t->output_name);
    }
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int sdt_trainer_remove_path(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : -1;
    if (S_ISDIR(st.st_mode))
        return nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return remove(path);
}

static int fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* Which older number the rotation removes after saving `number` (kohya's get_remove_epoch_no /
 * get_remove_step_no); 0: none. */
static int64_t rotation_victim(sdt_save_kind kind, int64_t number, int64_t every, int64_t keep)
{
    if (every <= 0 || keep <= 0)
        return 0;
    if (kind == SDT_SAVE_EPOCH) {
        int64_t r = number - every * keep;
        return r > 0 ? r : 0;
    }
    int64_t r = number - keep - 1;
    if (r <= 0)
        return 0;
    r -= r % every;
    return r > 0 ? r : 0;
}

static void rotate(sdt_trainer *t, sdt_save_kind kind, int64_t number, int state)
{
    if (kind == SDT_SAVE_FINAL)
        return;
    int64_t every = kind == SDT_SAVE_EPOCH ? t->s.save_every_n_epochs : t->s.save_every_n_steps;
    int64_t keep = kind == SDT_SAVE_EPOCH ? t->s.save_last_n_epochs : t->s.save_last_n_steps;
    if (state) {
        int64_t k = kind == SDT_SAVE_EPOCH ? t->s.save_last_n_epochs_state : t->s.save_last_n_steps_state;
        if (k > 0)
            keep = k;
    }
    int64_t victim = rotation_victim(kind, number, every, keep);
    if (victim == 0)
        return;
    char *path = state ? state_dir_name(t, kind, victim) : model_file_name(t, kind, victim);
    struct stat st;
    if (path && stat(path, &st) == 0) {
        if (sdt_trainer_remove_path(path) == 0) {
            sdt_trainer_remove_output(t, path);
            sdt_trainer_checkpoint(t, path, SDT_CHECKPOINT_REMOVED);
        } else {
            sdt_trainer_log(t, SDT_LOG_WARNING, "cannot remove %s: %s", path, strerror(errno));
        }
    }
    free(path);
}

static sdt_dtype save_dtype(const sdt_trainer *t)
{
    const char *p = t->s.save_precision;
    if (strcmp(p, "fp16") == 0)
        return SDT_F16;
    if (strcmp(p, "bf16") == 0)
        return SDT_BF16;
    return SDT_F32;
}

/* ---- what the LoRA metadata reports (sdt_lora_run_info) ---- */

/* kohya's optimizer_name, optimizer_class.__module__ + "." + __name__, and the keyword arguments it adds
 * to the user's (*defaults, NULL-terminated). NULL for a kind without a kohya class here: its name is
 * used. */
static double unix_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* kohya's training_started_at is time.time() at the start, a float. The run keeps whole seconds (they go
 * into the state); the fraction comes from the monotonic clock when it agrees with them, and is 0 for a
 * resumed run, whose start was in another process. */
static double started_at(const sdt_trainer *t)
{
    double precise = unix_seconds() - (sdt_trainer_now() - t->run_started);
    return (int64_t)precise == t->training_started_at ? precise : (double)t->training_started_at;
}

/* kohya's model_hash (stable-diffusion-webui's old hash): the first 8 hex digits of the SHA-256 of the 64 KiB
 * at offset 1 MiB (fewer or none when the file is shorter), "IsADirectory" for a folder, "NOFILE" when it
 * does not exist. */
static void legacy_model_hash(const char *path, char out[16])
{
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(out, 16, "NOFILE");
        return;
    }
    if (S_ISDIR(st.st_mode)) {
        snprintf(out, 16, "IsADirectory");
        return;
    }
    unsigned char *chunk = malloc(0x10000); /* [65536] bytes of the file */
    int fd = open(path, O_RDONLY);
    ssize_t got = chunk && fd >= 0 ? pread(fd, chunk, 0x10000, 0x100000) : -1;
    if (fd >= 0)
        close(fd);
    char hex[65];
    sdt_sha256_hex(chunk, got > 0 ? (size_t)got : 0, hex);
    free(chunk);
    snprintf(out, 16, "%.8s", got >= 0 ? hex : "NOFILE");
}

/* The file name of the base model without folder and extension. Caller frees. */
static char *base_model_name(const char *path)
{
    char *base = sdt_strdup(path);
    if (base) {
        char *slash = strrchr(base, '/');
        if (slash && slash[1])
            memmove(base, slash + 1, strlen(slash + 1) + 1);
        char *dot = strrchr(base, '.');
        if (dot && dot != base)
            *dot = '\0';
    }
    return base;
}

/* kohya's ss_epoch: the epoch counted from 1 for epoch saves, num_epochs for the final one, and for step
 * saves the 0-based index of the epoch the step belongs to (train_network.py passes its loop variable). */
static int64_t metadata_epoch(const sdt_trainer *t, sdt_save_kind kind, int64_t number)
{
    if (kind == SDT_SAVE_EPOCH)
        return number;
    if (kind == SDT_SAVE_FINAL)
        return t->total_epochs;
    int step_epoch = t->cursor.batch == 0 ? t->cursor.epoch - 1 : t->cursor.epoch; /* 1-based */
    return step_epoch > 0 ? step_epoch - 1 : 0;
}

static int save_lora(sdt_trainer *t, const char *path, sdt_save_kind kind, int64_t number, char **error)
{
    sdt_lora_run_info info = {0};
    const char *model = t->s.model_path && *t->s.model_path ? t->s.model_path : NULL;
    char *base = model ? base_model_name(model) : NULL;
    char *optimizer = sdt_optim_settings_text(t->cfg); /* kohya's "<module>.<Class>(<args>)" */
    char *tag_frequency = NULL, *bucket_info = NULL;
    char legacy_hash[16], date[32];
    double now = unix_seconds();
    time_t whole = (time_t)now;
    struct tm tm;
    /* modelspec.date: datetime.fromtimestamp(int(time.time())).isoformat(), local time */
    localtime_r(&whole, &tm);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    int rc = -1;
    if ((model && !base) || !optimizer) {
        sdt_set_error(error, "out of memory");
        goto done;
    }
    if (sdt_run_tag_frequency_json(&t->data, &tag_frequency, error) != 0 ||
        sdt_run_bucket_info_json(&t->data, &bucket_info, error) != 0)
        goto done;
    if (model) {
        /* The whole-file SHA-256 (ss_new_sd_model_hash) would read the whole checkpoint at every save; it is
         * left out, as kohya leaves it out when it cannot hash the model. */
        legacy_model_hash(model, legacy_hash);
        /* kohya hashes only a path that exists */
        info.sd_model_hash = strcmp(legacy_hash, "NOFILE") == 0 ? NULL : legacy_hash;
        if (strcmp(legacy_hash, "IsADirectory") == 0)
            info.new_sd_model_hash = legacy_hash;
    }
    info.session_id = t->session_id;
    info.training_started_at = started_at(t);
    info.training_finished_at = now; /* kohya sets it at every save, intermediate ones too */
    info.num_train_images = (int64_t)t->data.num_train_images;
    info.num_reg_images = (int64_t)t->data.num_reg_images;
    info.num_batches_per_epoch = (int64_t)t->data.batches_per_epoch;
    info.num_epochs = t->total_epochs;
    info.epoch = metadata_epoch(t, kind, number);
    info.steps = t->global_step;
    info.max_train_steps = t->total_steps;
    info.lr_warmup_steps = t->lr_schedule.warmup_steps;
    info.base_model_name = base;
    info.dataset_dirs_json = t->data.dataset_dirs_json;
    info.reg_dataset_dirs_json = t->data.reg_dataset_dirs_json;
    info.tag_frequency_json = tag_frequency;
    info.bucket_info_json = bucket_info;
    info.optimizer_text = optimizer;
    info.datetime_iso = date;
    info.mixed_precision = sdt_train_precision_name(t->compute_dtype); /* what ran: "auto" resolved */
    sdt_kv_list md = {0};
    rc = sdt_lora_metadata(t->cfg, &t->lora, &info, &md, error);
    if (rc == 0)
        rc = sdt_lora_save(t->e, &t->lora, path, save_dtype(t), &md, error);
    sdt_kv_list_free(&md);
done:
    free(base);
    free(optimizer);
    free(tag_frequency);
    free(bucket_info);
    return rc;
}

int sdt_trainer_save_model(sdt_trainer *t, sdt_save_kind kind, int number, char **error)
{
    char *path = model_file_name(t, kind, number);
    if (!path)
        return sdt_set_error(error, "out of memory");
    sdt_trainer_phase(t, SDT_PHASE_SAVING);
    int rc;
    if (t->has_lora) {
        rc = save_lora(t, path, kind, number, error);
    } else {
        /* The trained weights are saved from their F32 masters (converted to save_precision once), not
         * from the working copies of a mixed-precision run. */
        sdt_model_save_options so = {.format = SDT_CKPT_LDM, .dtype = save_dtype(t)};
        sdt_trainer_show_masters(t, 1);
        rc = sdt_model_save(t->e, &t->model, path, &so, error);
        sdt_trainer_show_masters(t, 0);
    }
    if (rc == 0) {
        sdt_trainer_add_output(t, path);
        sdt_trainer_checkpoint(t, path, SDT_CHECKPOINT_MODEL);
        rotate(t, kind, number, 0);
    }
    free(path);
    return rc;
}

/* ---- state folders ---- */

static int write_weights(const sdt_trainer *t, const char *path, char **error)
{
    size_t n = t->optim.count, floats = 0;
    for (size_t i = 0; i < n; i++)
        floats += t->optim.entries[i].count;
    sdt_st_write_tensor *w = calloc(n ? n : 1, sizeof *w);
    int64_t *shapes = calloc(n ? n : 1, sizeof *shapes);
    /* [floats] host copies of every value, in entry order (the values may live in device memory) */
    float *values = malloc((floats ? floats : 1) * sizeof *values);
    int rc = -1;
    if (!w || !shapes || !values) {
        sdt_set_error(error, "out of memory");
        goto done;
    }
    float *at = values;
    for (size_t i = 0; i < n; i++) {
        const sdt_optim_entry *en = &t->optim.entries[i];
        if (sdt_optim_value_download(&t->optim, i, at, error) != 0)
            goto done;
        shapes[i] = (int64_t)en->count;
        w[i] = (sdt_st_write_tensor){
            .name = en->name, .dtype = SDT_F32, .ndim = 1, .shape = &shapes[i], .data = at};
        at += en->count;
    }
    rc = sdt_safetensors_write(path, w, n, NULL, 0, error);
done:
    free(values);
    free(w);
    free(shapes);
    return rc;
}

static int write_optimizer(const sdt_trainer *t, const char *path, char **error)
{
    sdt_optim_state s = {0};
    if (sdt_optim_state_list(&t->optim, &s, error) != 0)
        return -1;
    sdt_st_write_tensor *w = calloc(s.count ? s.count : 1, sizeof *w);
    int64_t *shapes = calloc(s.count ? s.count : 1, sizeof *shapes);
    char step[32];
    snprintf(step, sizeof step, "%lld", (long long)t->optim.step);
    const char *kv[4] = {"optimizer", sdt_optim_kind_name(t->optim.cfg.kind), "step", step};
    int rc = -1;
    if (!w || !shapes) {
        sdt_set_error(error, "out of memory");
    } else {
        for (size_t i = 0; i < s.count; i++) {
            shapes[i] = (int64_t)s.items[i].count;
            w[i] = (sdt_st_write_tensor){.name = s.items[i].name,
                                         .dtype = SDT_F32,
                                         .ndim = 1,
                                         .shape = &shapes[i],
                                         .data = s.items[i].data};
        }
        rc = sdt_safetensors_write(path, w, s.count, kv, 2, error);
    }
    free(w);
    free(shapes);
    sdt_optim_state_free(&s);
    return rc;
}

int sdt_trainer_save_state(sdt_trainer *t, sdt_save_kind kind, int number, char **error)
{
    char *final = state_dir_name(t, kind, number);
    char *tmp = sdt_format("%s/.state-tmp-XXXXXX", t->output_dir);
    char *weights = NULL, *optimizer = NULL, *json_path = NULL, *json = NULL, *old = NULL;
    int rc = -1;
    if (!final || !tmp) {
        sdt_set_error(error, "out of memory");
        goto done;
    }
    sdt_trainer_phase(t, SDT_PHASE_SAVING);
    if (!mkdtemp(tmp)) {
        sdt_set_error(error, "cannot create a folder in %s: %s", t->output_dir, strerror(errno));
        free(tmp);
        tmp = NULL;
        goto done;
    }
    weights = sdt_format("%s/weights.safetensors", tmp);
    optimizer = sdt_format("%s/optimizer.safetensors", tmp);
    json_path = sdt_format("%s/train_state.json", tmp);
    json = sdt_train_state_to_json(t);
    if (!weights || !optimizer || !json_path || !json) {
        sdt_set_error(error, "out of memory");
        goto done;
    }
    /* train_state.json last: a folder without it is never taken for a state (and the folder only gets its
     * name once everything is written) */
    if (write_weights(t, weights, error) != 0 || write_optimizer(t, optimizer, error) != 0 ||
        sdt_atomic_write(json_path, json, strlen(json), error) != 0) {
        char *why = error && *error ? *error : NULL;
        if (error)
            *error = NULL;
        sdt_set_error(error, "cannot save the state %s: %s", final, why ? why : "write failed");
        free(why);
        goto done;
    }
    if (fsync_path(tmp) != 0) {
        sdt_set_error(error, "%s: fsync: %s", tmp, strerror(errno));
        goto done;
    }
    /* An earlier folder of the same name (a final state saved twice) is moved aside first, so a complete
     * state exists under the name at every moment but the instant of the rename. */
    struct stat st;
    if (stat(final, &st) == 0) {
        old = sdt_format("%s.old", tmp);
        if (!old || rename(final, old) != 0) {
            sdt_set_error(error, "cannot replace %s: %s", final, strerror(errno));
            goto done;
        }
    }
    if (rename(tmp, final) != 0) {
        sdt_set_error(error, "cannot rename %s to %s: %s", tmp, final, strerror(errno));
        goto done;
    }
    free(tmp);
    tmp = NULL;
    fsync_path(t->output_dir);
    if (old)
        sdt_trainer_remove_path(old);
    sdt_trainer_add_output(t, final);
    sdt_trainer_checkpoint(t, final, SDT_CHECKPOINT_STATE);
    rotate(t, kind, number, 1);
    rc = 0;
done:
    if (tmp)
        sdt_trainer_remove_path(tmp);
    free(tmp);
    free(final);
    free(weights);
    free(optimizer);
    free(json_path);
    free(json);
    free(old);
    return rc;
}

int sdt_trainer_load_state(sdt_trainer *t, const char *dir, char **error)
{
    char *weights = sdt_format("%s/weights.safetensors", dir);
    char *optimizer = sdt_format("%s/optimizer.safetensors", dir);
    char *json_path = sdt_format("%s/train_state.json", dir);
    char *json = NULL;
    size_t len = 0;
    sdt_safetensors *w = NULL, *o = NULL;
    int rc = -1;
    if (!weights || !optimizer || !json_path) {
        sdt_set_error(error, "out of memory");
        goto done;
    }
    /* A folder missing any of the three files is not a state: saving writes them in a temporary folder
     * and renames it whole, so this is a folder cut short some other way (copied in part, edited). */
    struct stat st;
    if (stat(dir, &st) != 0) {
        sdt_set_error(error, "resume: the state folder %s: %s", dir, strerror(errno));
        goto done;
    }
    if (!S_ISDIR(st.st_mode)) {
        sdt_set_error(error, "resume: %s is not a state folder", dir);
        goto done;
    }
    const char *const parts[] = {json_path, weights, optimizer};
    for (size_t i = 0; i < 3; i++)
        if (stat(parts[i], &st) != 0) {
            sdt_set_error(error, "resume: %s is not a complete state folder: %s is missing", dir, parts[i]);
            goto done;
        }
    char *why = NULL;
    if (sdt_read_file(json_path, 1 << 24, &json, &len, &why) != 0) {
        sdt_set_error(error, "resume: %s: %s", json_path, why ? why : "cannot read");
        free(why);
        goto done;
    }
    if (sdt_train_state_from_json(t, json, json_path, error) != 0)
        goto done;
    if (sdt_safetensors_open(weights, &w, error) != 0 || sdt_safetensors_open(optimizer, &o, error) != 0)
        goto done;
    if (sdt_safetensors_count(w) != t->optim.count) {
        sdt_set_error(error, "resume: %s holds %zu tensors, the run trains %zu", weights,
                      sdt_safetensors_count(w), t->optim.count);
        goto done;
    }
    for (size_t i = 0; i < t->optim.count; i++) {
        sdt_optim_entry *en = &t->optim.entries[i];
        const sdt_st_tensor *st = sdt_safetensors_find(w, en->name);
        if (!st || st->dtype != SDT_F32 || st->count != en->count) {
            sdt_set_error(error, "resume: %s: %s is %s", weights, en->name,
                          st ? "of another size or dtype" : "missing");
            goto done;
        }
        float *copy = malloc(en->count ? en->count * sizeof *copy : 1); /* [count] aligned copy */
        if (!copy) {
            sdt_set_error(error, "out of memory");
            goto done;
        }
        memcpy(copy, st->data, en->count * sizeof(float));
        int r = sdt_optim_value_upload(&t->optim, i, copy, error);
        free(copy);
        if (r != 0)
            goto done;
    }
    for (size_t i = 0; i < sdt_safetensors_count(o); i++) {
        const sdt_st_tensor *st = sdt_safetensors_tensor(o, i);
        float *copy = malloc(st->nbytes ? st->nbytes : 1); /* [count] aligned copy of the file's bytes */
        if (!copy) {
            sdt_set_error(error, "out of memory");
            goto done;
        }
        memcpy(copy, st->data, st->nbytes);
        int r = st->dtype == SDT_F32
                    ? sdt_optim_state_set(&t->optim, st->name, copy, (size_t)st->count, error)
                    : sdt_set_error(error, "%s: %s is not F32", optimizer, st->name);
        free(copy);
        if (r != 0)
            goto done;
    }
    const char *step = sdt_safetensors_metadata(o, "step");
    if (!step) {
        sdt_set_error(error, "resume: %s has no \"step\" metadata", optimizer);
        goto done;
    }
    t->optim.step = strtoll(step, NULL, 10);
    /* the restored masters' working copies (mixed-precision full training) */
    rc = sdt_trainer_refresh_working_copies(t, error);
done:
    if (w)
        sdt_safetensors_close(w);
    if (o)
        sdt_safetensors_close(o);
    free(weights);
    free(optimizer);
    free(json_path);
    free(json);
    return rc;
}
