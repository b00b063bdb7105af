/* The text-encoder cache (kohya's cache_text_encoder_outputs): when the text encoder is frozen, the
 * context (and, when asked, the pooled vector) of each caption is computed once and kept in memory, on
 * disk, or both. See docs/dataset.md, "Caches".
 *
 * An entry is named by a 128-bit key over the caption's bytes, clip_skip, max_token_length, whether the
 * pooled output is kept, the pad id, the encoder's identity (the caller's: sdt_hash_weights of its table,
 * which should also cover the tokenizer when it is not the standard CLIP one), the compute dtype and the
 * stored dtype. On disk an entry is <cache_dir>/<2 hex>/<32 hex>.safetensors, written atomically, with
 * "context" [L, W] and "pooled" [P]; a file that does not open, names another key or has the wrong shapes
 * is rebuilt with a warning (and, unless skip_cache_check, one holding a non-finite value).
 *
 * Captions that change every step (shuffle_caption, caption dropout, wildcards, token warmup) cannot be
 * cached: the caller asks for the caption the step uses, and each distinct one is an entry.
 *
 * One cache serves one thread (the tokenizer it uses is not thread-safe either). */
#ifndef SDTUNE_DATASET_TEXT_CACHE_H
#define SDTUNE_DATASET_TEXT_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "clip_text.h"
#include "content_hash.h"
#include "tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdt_text_cache_options {
    const char *cache_dir;   /* where entries live; NULL or "": none on disk */
    int keep_in_memory;      /* keep every entry in memory once encoded or read */
    sdt_dtype dtype;         /* of the stored outputs: SDT_F32 (0, the default) or SDT_F16 */
    sdt_dtype compute_dtype; /* of the encoder's activations: F32 (0), F16 or BF16 */
    int skip_cache_check;    /* no value scan of the files read */
    sdt_cache_progress_fn progress;
    void *progress_ctx;
    sdt_cache_warn_fn warn;
    void *warn_ctx;
} sdt_text_cache_options;

typedef struct sdt_text_request {
    const char *caption;  /* UTF-8 (NULL: "") */
    int clip_skip;        /* >= 1 (1 = the last layer) */
    int max_token_length; /* 0 or 75 (one window of 77 tokens), 150 or 225 (two or three, stitched) */
    int pooled;           /* also the pooled vector (of the first window, as kohya takes it) */
} sdt_text_request;

/* An entry; the buffers are the caller's after sdt_text_cache_get (sdt_text_embedding_free). */
typedef struct sdt_text_embedding {
    sdt_hash128 key;
    sdt_dtype dtype;
    int length, width; /* context [length, width]: length = 2 + 75 * windows */
    void *context;     /* [length, width] */
    int pooled_width;  /* the projection's width, or the encoder's without one; 0 when not kept */
    void *pooled;      /* [pooled_width] or NULL */
} sdt_text_embedding;

void sdt_text_embedding_free(sdt_text_embedding *t);

/* What a cache did since it was created (content_hash.h). */
typedef sdt_cache_summary sdt_text_cache_summary;

typedef struct sdt_text_cache sdt_text_cache;

/* encoder and tokenizer (on e, all outliving the cache); pad_id: the tokenizer's padding (the arch's
 * pad_id); identity: what names the encoder's weights and tokenizer. Returns 0, or -1 with *error set
 * (caller frees). */
int sdt_text_cache_create(sdt_engine *e, const sdt_clip_text *encoder, sdt_tokenizer *tokenizer,
                          int32_t pad_id, sdt_hash128 identity, const sdt_text_cache_options *options,
                          sdt_text_cache **out, char **error);
void sdt_text_cache_free(sdt_text_cache *c);

/* The key of a request. Returns 0, or -1 with *error set (an invalid clip_skip or max_token_length). */
int sdt_text_cache_key(const sdt_text_cache *c, const sdt_text_request *r, sdt_hash128 *key, char **error);
/* The file an entry of this key has (or would have); NULL without a disk cache (caller frees). */
char *sdt_text_cache_path(const sdt_text_cache *c, sdt_hash128 key);

/* Makes sure every request has its entry (in memory or on disk), calling progress after each. Returns 0,
 * or -1 with *error set. */
int sdt_text_cache_prepare(sdt_text_cache *c, const sdt_text_request *requests, size_t n, char **error);

/* The entry of one request: from memory, else disk, else encoded now (and stored as the options say). */
int sdt_text_cache_get(sdt_text_cache *c, const sdt_text_request *r, sdt_text_embedding *out, char **error);

/* The encoder's outputs for a request, bypassing the cache entirely. */
int sdt_text_cache_encode(sdt_text_cache *c, const sdt_text_request *r, sdt_text_embedding *out,
                          char **error);

sdt_text_cache_summary sdt_text_cache_get_summary(const sdt_text_cache *c);

#ifdef __cplusplus
}
#endif
#endif
