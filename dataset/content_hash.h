/* 128-bit content hashes and what the caches build on them: cache keys, their hex names, the files that
 * hold cache entries on disk, and a key -> value map.
 *
 * The hash is two independent 64-bit multiply-rotate lanes over the input's 8-byte little-endian words,
 * each with its own constants, mixed together with the length at the end. It is not cryptographic, and it
 * does not need to be: its keys name cache entries of the user's own images, captions and weights. What
 * matters is that an accidental collision is out of reach (with 128 bits, a billion entries collide with a
 * probability near 1e-21) and that it runs at memory speed, so that hashing every image of a dataset at
 * the start of a run costs little next to reading the files. Someone able to craft colliding inputs could
 * as well write the cache files themselves, so resistance to attacks buys nothing here. */
#ifndef SDTUNE_DATASET_CONTENT_HASH_H
#define SDTUNE_DATASET_CONTENT_HASH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdt_hash128 {
    uint64_t lo, hi;
} sdt_hash128;

/* A streaming hasher: the result depends only on the bytes fed and the seed, not on how they are split
 * into updates. */
typedef struct sdt_hasher {
    uint64_t a, b;   /* the two lanes */
    uint64_t length; /* bytes fed so far */
    uint8_t tail[8]; /* bytes of an incomplete word */
    unsigned n_tail; /* how many */
} sdt_hasher;

void sdt_hasher_init(sdt_hasher *h, uint64_t seed);
void sdt_hasher_update(sdt_hasher *h, const void *data, size_t len);
/* Fixed-width fields of keys, in a byte order that does not depend on the machine. */
void sdt_hasher_u64(sdt_hasher *h, uint64_t value);
/* A string with its length in front, so that ("ab", "c") and ("a", "bc") differ. NULL hashes as "". */
void sdt_hasher_str(sdt_hasher *h, const char *s);
/* The hash of everything fed; the hasher may go on being fed. */
sdt_hash128 sdt_hasher_final(const sdt_hasher *h);

sdt_hash128 sdt_hash128_bytes(const void *data, size_t len, uint64_t seed);
/* The hash (seed 0) of a file's bytes, read in pieces. Returns 0, or -1 with *error set (caller frees)
 * naming the file. */
int sdt_hash128_file(const char *path, sdt_hash128 *out, char **error);

int sdt_hash128_equal(sdt_hash128 a, sdt_hash128 b);
/* 32 lowercase hex digits, hi then lo, NUL-terminated. */
void sdt_hash128_hex(sdt_hash128 h, char out[33]);
/* Parses what sdt_hash128_hex writes; returns 0, or -1. */
int sdt_hash128_parse(const char *hex, sdt_hash128 *out);

/* ---- weights identity ------------------------------------------------------------------------------ */

struct sdt_engine;
struct sdt_param_table;

/* The hash of a parameter table's values (each tensor's name, shape, dtype and bytes, in table order):
 * what names "this VAE" or "this text encoder" in a cache key. Any change of the weights, their dtype or
 * the architecture changes it. Reads every value once (downloads it from the device). Returns 0, or -1
 * with *error set (caller frees). */
int sdt_hash_weights(struct sdt_engine *e, const struct sdt_param_table *t, sdt_hash128 *out, char **error);

/* ---- cache files ----------------------------------------------------------------------------------- */

/* <dir>/<first 2 hex digits>/<32 hex digits>.safetensors (caller frees): 256 folders keep each folder
 * small for datasets of many thousand images. */
char *sdt_cache_entry_path(const char *dir, sdt_hash128 key);
/* Creates path's folder and its parents as needed. Returns 0, or -1 with *error set (caller frees). */
int sdt_cache_make_parent(const char *path, char **error);

/* Progress of a prepare pass for the UI's progress bar: done of total requests settled, the last being
 * about `current` (a path, or a caption for the text cache). */
typedef void (*sdt_cache_progress_fn)(void *ctx, size_t done, size_t total, const char *current);
/* A problem that was dealt with (a corrupt cache file rebuilt): for the log, not an error. */
typedef void (*sdt_cache_warn_fn)(void *ctx, const char *message);

/* What a cache did since it was created. */
typedef struct sdt_cache_summary {
    size_t encoded;   /* entries encoded that had no file (or with no disk cache) */
    size_t reused;    /* entries taken from disk */
    size_t rebuilt;   /* files that were corrupt or did not match, encoded again */
    size_t in_memory; /* requests answered from memory */
} sdt_cache_summary;

/* ---- key -> value map ------------------------------------------------------------------------------ */

/* Open addressing on the key's low bits (keys are hashes already, so they are spread evenly). Values are
 * the caller's pointers; the map frees nothing. */
typedef struct sdt_hash_map {
    sdt_hash128 *keys;
    void **values; /* NULL marks an empty slot */
    size_t capacity, count;
} sdt_hash_map;

void sdt_hash_map_init(sdt_hash_map *m);
void sdt_hash_map_free(sdt_hash_map *m);
void *sdt_hash_map_get(const sdt_hash_map *m, sdt_hash128 key);
/* Inserts or replaces (value not NULL); *old (may be NULL) receives the replaced value or NULL. Returns 0,
 * or -1 when out of memory. */
int sdt_hash_map_put(sdt_hash_map *m, sdt_hash128 key, void *value, void **old);

#ifdef __cplusplus
}
#endif
#endif
