/* The shared mechanics of the latent and text-encoder caches (cache_store.h). */
#include "cache_store.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int sdt_cache_store_init(sdt_cache_store *s, sdt_cache_store proto, const char *cache_dir, char **error)
{
    *s = proto;
    s->dir = NULL;
    sdt_hash_map_init(&s->entries);
    if (cache_dir && cache_dir[0] && !(s->dir = sdt_strdup(cache_dir))) {
        *error = sdt_format("%s: out of memory", s->name);
        return -1;
    }
    return 0;
}

void sdt_cache_store_free(sdt_cache_store *s)
{
    for (size_t i = 0; i < s->entries.capacity; i++)
        if (s->entries.values[i]) {
            s->free_entry(s->entries.values[i]);
            free(s->entries.values[i]);
        }
    sdt_hash_map_free(&s->entries);
    free(s->dir);
    s->dir = NULL;
}

char *sdt_cache_store_path(const sdt_cache_store *s, sdt_hash128 key)
{
    return s->dir ? sdt_cache_entry_path(s->dir, key) : NULL;
}

const char *sdt_cache_file_meta(const sdt_safetensors *st, const char *key)
{
    const char *v = sdt_safetensors_metadata(st, key);
    return v ? v : "";
}

/* An entry file's format, version and key metadata. Returns 0, or -1 with *why set (caller frees). */
static int check_file(const sdt_cache_store *s, const sdt_safetensors *st, sdt_hash128 key, char **why)
{
    char hex[33];
    sdt_hash128_hex(key, hex);
    if (strcmp(sdt_cache_file_meta(st, "format"), s->format) != 0 ||
        strcmp(sdt_cache_file_meta(st, "version"), s->version) != 0) {
        *why = sdt_format("not a version %s %s file", s->version, s->name);
        return -1;
    }
    if (strcmp(sdt_cache_file_meta(st, "key"), hex) != 0) {
        *why = sdt_format("it holds the entry %s, not %s", sdt_cache_file_meta(st, "key"), hex);
        return -1;
    }
    return 0;
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int sdt_cache_store_has_file(const sdt_cache_store *s, sdt_hash128 key)
{
    char *path = sdt_cache_store_path(s, key);
    int exists = path && file_exists(path);
    free(path);
    return exists;
}

void sdt_cache_store_warn(const sdt_cache_store *s, const char *fmt, ...)
{
    if (!s->warn)
        return;
    va_list args;
    va_start(args, fmt);
    char *message = sdt_vformat(fmt, args);
    va_end(args);
    if (message)
        s->warn(s->warn_ctx, message);
    free(message);
}

void sdt_cache_store_progress(const sdt_cache_store *s, size_t done, size_t total, const char *current)
{
    if (s->progress)
        s->progress(s->progress_ctx, done, total, current);
}

int sdt_cache_store_load(const sdt_cache_store *s, sdt_hash128 key, const char *what, sdt_cache_load_fn load,
                         void *ctx, int *bad)
{
    *bad = 0;
    char *path = sdt_cache_store_path(s, key);
    if (!path || !file_exists(path)) {
        free(path);
        return 0;
    }
    char *why = NULL;
    sdt_safetensors *st = NULL;
    int found = sdt_safetensors_open(path, &st, &why) == 0 && check_file(s, st, key, &why) == 0 &&
                load(ctx, st, &why) == 0;
    sdt_safetensors_close(st);
    if (!found) {
        *bad = 1;
        sdt_cache_store_warn(s, "%s: %s (the cache of %s): %s; encoding it again", s->name, path, what,
                             why ? why : "unreadable");
    }
    free(why);
    free(path);
    return found;
}

int sdt_cache_store_write(const sdt_cache_store *s, sdt_hash128 key, sdt_cache_write_fn write, void *ctx,
                          char **error)
{
    char *path = sdt_cache_store_path(s, key);
    if (!path) {
        *error = sdt_format("%s: out of memory", s->name);
        return -1;
    }
    int status = sdt_cache_make_parent(path, error) == 0 ? write(ctx, path, error) : -1;
    free(path);
    return status;
}

const void *sdt_cache_store_get(const sdt_cache_store *s, sdt_hash128 key)
{
    return sdt_hash_map_get(&s->entries, key);
}

int sdt_cache_store_copy_kept(sdt_cache_store *s, sdt_hash128 key, void *out, char **error)
{
    const void *kept = sdt_hash_map_get(&s->entries, key);
    if (!kept)
        return 0;
    if (s->copy_entry(out, kept) != 0) {
        *error = sdt_format("%s: out of memory", s->name);
        return -1;
    }
    s->summary.in_memory++;
    return 1;
}

void sdt_cache_store_count(sdt_cache_store *s, int from_disk, int bad)
{
    if (from_disk)
        s->summary.reused++;
    else if (bad)
        s->summary.rebuilt++;
    else
        s->summary.encoded++;
}

int sdt_cache_store_keep(sdt_cache_store *s, sdt_hash128 key, void *entry, char **error)
{
    if (!s->keep_in_memory)
        return 0;
    void *kept = malloc(s->entry_size);
    void *old = NULL;
    if (!kept || sdt_hash_map_put(&s->entries, key, kept, &old) != 0) {
        free(kept);
        *error = sdt_format("%s: out of memory", s->name);
        return -1;
    }
    memcpy(kept, entry, s->entry_size);
    memset(entry, 0, s->entry_size);
    if (old) {
        s->free_entry(old);
        free(old);
    }
    return 0;
}
