/* What the latent and text-encoder caches share (internal): the folder of entry files, the warnings and
 * progress calls of their options, reading an entry's file with a warning when it is bad, writing one,
 * and the key -> entry map of the entries kept in memory. Each cache owns an sdt_cache_store and says
 * how large its entries are and how their buffers are freed. */
#ifndef SDTUNE_DATASET_CACHE_STORE_H
#define SDTUNE_DATASET_CACHE_STORE_H

#include <stddef.h>

#include "content_hash.h"
#include "sdtune/safetensors.h"
#include "sdtune/strutil.h"

typedef struct sdt_cache_store {
    const char *name;                /* "latent cache", for messages */
    const char *format, *version;    /* what an entry file's metadata must say */
    char *dir;                       /* the store's copy of cache_dir; NULL without a disk cache */
    int keep_in_memory;              /* entries go into the map below */
    size_t entry_size;               /* sizeof the cache's entry struct */
    void (*free_entry)(void *entry); /* frees an entry's buffers (not the entry itself) */
    int (*copy_entry)(void *dst, const void *src); /* a deep copy: 0, or -1 out of memory (dst empty) */
    sdt_cache_progress_fn progress;
    void *progress_ctx;
    sdt_cache_warn_fn warn;
    void *warn_ctx;
    sdt_hash_map entries; /* key -> entry (malloc'd, entry_size bytes) */
    sdt_cache_summary summary;
} sdt_cache_store;

/* *s = proto with a copy of cache_dir (NULL when it is NULL or empty) and an empty map. Returns 0, or -1
 * with *error set (caller frees). */
int sdt_cache_store_init(sdt_cache_store *s, sdt_cache_store proto, const char *cache_dir, char **error);
void sdt_cache_store_free(sdt_cache_store *s);

/* The file of an entry (caller frees), or NULL without a disk cache. */
char *sdt_cache_store_path(const sdt_cache_store *s, sdt_hash128 key);
/* Whether the entry has a file (a regular one) on disk. */
int sdt_cache_store_has_file(const sdt_cache_store *s, sdt_hash128 key);

void sdt_cache_store_warn(const sdt_cache_store *s, const char *fmt, ...) SDT_PRINTF(2, 3);
void sdt_cache_store_progress(const sdt_cache_store *s, size_t done, size_t total, const char *current);

/* Reads and checks an entry's opened file: 0, or -1 with *why set (the caller frees it) saying what is
 * wrong. st is closed after the call: what is kept is copied (the mapping is not aligned either). */
typedef int (*sdt_cache_load_fn)(void *ctx, const sdt_safetensors *st, char **why);
/* Looks for a valid file of the entry: one that opens, whose format, version and key metadata match, and
 * that load takes. Returns 1 when found, 0 when there is none or it was bad (*bad set then, with the
 * warning "<name>: <path> (the cache of <what>): <why>; encoding it again"). */
int sdt_cache_store_load(const sdt_cache_store *s, sdt_hash128 key, const char *what, sdt_cache_load_fn load,
                         void *ctx, int *bad);

/* Writes an entry's file at path (whose folder exists): 0, or -1 with *error set (caller frees). */
typedef int (*sdt_cache_write_fn)(void *ctx, const char *path, char **error);
/* Writes the entry's file with write, creating its folder first. Returns 0, or -1 with *error set. */
int sdt_cache_store_write(const sdt_cache_store *s, sdt_hash128 key, sdt_cache_write_fn write, void *ctx,
                          char **error);

/* The entry kept in memory for key, or NULL. */
const void *sdt_cache_store_get(const sdt_cache_store *s, sdt_hash128 key);
/* Answers a request from memory: a copy of the entry kept for key into out, counted in_memory. Returns 1
 * when one is kept, 0 when none is, or -1 with *error set (caller frees) when out of memory. */
int sdt_cache_store_copy_kept(sdt_cache_store *s, sdt_hash128 key, void *out, char **error);
/* Counts an entry settled without memory: reused (from_disk), else rebuilt (its file was bad) or encoded. */
void sdt_cache_store_count(sdt_cache_store *s, int from_disk, int bad);
/* Keeps entry (entry_size bytes) in memory under key when keep_in_memory, moving its buffers (which
 * leaves it zeroed) and freeing an entry it replaces; does nothing otherwise. Returns 0, or -1 with
 * *error set (caller frees). */
int sdt_cache_store_keep(sdt_cache_store *s, sdt_hash128 key, void *entry, char **error);

/* A file's metadata value, or "" when it has none. */
const char *sdt_cache_file_meta(const sdt_safetensors *st, const char *key);

#endif
