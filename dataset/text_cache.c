/* The text-encoder cache (text_cache.h): keys, one encoder forward per caption, entries in memory and in
 * safetensors files. */
#include "text_cache.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache_store.h"
#include "layers.h"
#include "sdtune/safetensors.h"
#include "sdtune/strutil.h"

/* Bump both when the file layout or a key field's meaning changes: old files then never match. */
#define FILE_FORMAT "sdtune.text"
#define FILE_VERSION "1"
#define KEY_TAG "sdtune text 1"

struct sdt_text_cache {
    sdt_engine *e;
    const sdt_clip_text *encoder;
    sdt_tokenizer *tokenizer;
    int32_t pad_id;
    sdt_hash128 identity;
    sdt_text_cache_options options; /* cache_dir points at store.dir */
    sdt_cache_store store;          /* files and kept entries (sdt_text_embedding) */
};

void sdt_text_embedding_free(sdt_text_embedding *t)
{
    if (!t)
        return;
    free(t->context);
    free(t->pooled);
    memset(t, 0, sizeof *t);
}

static size_t element_bytes(sdt_dtype dtype) { return sdt_dtype_bits(dtype) / 8; }

static int copy_embedding(sdt_text_embedding *dst, const sdt_text_embedding *src)
{
    *dst = *src;
    size_t cbytes = (size_t)src->length * (size_t)src->width * element_bytes(src->dtype);
    size_t pbytes = (size_t)src->pooled_width * element_bytes(src->dtype);
    dst->context = malloc(cbytes ? cbytes : 1);
    dst->pooled = src->pooled ? malloc(pbytes ? pbytes : 1) : NULL;
    if (!dst->context || (src->pooled && !dst->pooled)) {
        sdt_text_embedding_free(dst);
        return -1;
    }
    memcpy(dst->context, src->context, cbytes);
    if (src->pooled)
        memcpy(dst->pooled, src->pooled, pbytes);
    return 0;
}

static void free_entry(void *entry) { sdt_text_embedding_free(entry); }
static int copy_entry(void *dst, const void *src) { return copy_embedding(dst, src); }

int sdt_text_cache_create(sdt_engine *e, const sdt_clip_text *encoder, sdt_tokenizer *tokenizer,
                          int32_t pad_id, sdt_hash128 identity, const sdt_text_cache_options *options,
                          sdt_text_cache **out, char **error)
{
    *out = NULL;
    sdt_text_cache_options o = options ? *options : (sdt_text_cache_options){0};
    if (o.dtype != SDT_F32 && o.dtype != SDT_F16) {
        *error = sdt_format("text cache: outputs are stored as F32 or F16, not %s", sdt_dtype_name(o.dtype));
        return -1;
    }
    if (!sdt_dtype_is_compute(o.compute_dtype)) {
        *error = sdt_format("text cache: the encoder cannot compute in %s", sdt_dtype_name(o.compute_dtype));
        return -1;
    }
    sdt_text_cache *c = calloc(1, sizeof *c);
    if (!c) {
        *error = sdt_strdup("text cache: out of memory");
        return -1;
    }
    sdt_cache_store proto = {.format = FILE_FORMAT,
                             .version = FILE_VERSION,
                             .name = "text cache",
                             .keep_in_memory = o.keep_in_memory,
                             .entry_size = sizeof(sdt_text_embedding),
                             .free_entry = free_entry,
                             .copy_entry = copy_entry,
                             .progress = o.progress,
                             .progress_ctx = o.progress_ctx,
                             .warn = o.warn,
                             .warn_ctx = o.warn_ctx};
    if (sdt_cache_store_init(&c->store, proto, o.cache_dir, error) != 0) {
        free(c);
        return -1;
    }
    c->e = e;
    c->encoder = encoder;
    c->tokenizer = tokenizer;
    c->pad_id = pad_id;
    c->identity = identity;
    o.cache_dir = c->store.dir;
    c->options = o;
    *out = c;
    return 0;
}

void sdt_text_cache_free(sdt_text_cache *c)
{
    if (!c)
        return;
    sdt_cache_store_free(&c->store);
    free(c);
}

sdt_text_cache_summary sdt_text_cache_get_summary(const sdt_text_cache *c) { return c->store.summary; }

char *sdt_text_cache_path(const sdt_text_cache *c, sdt_hash128 key)
{
    return sdt_cache_store_path(&c->store, key);
}

/* Windows of 77 tokens for max_token_length (kohya's 75 / 150 / 225; 0 means 75); 0 when invalid. */
static int window_count(int max_token_length)
{
    switch (max_token_length) {
    case 0:
    case 75: return 1;
    case 150: return 2;
    case 225: return 3;
    default: return 0;
    }
}

static int pooled_width(const sdt_text_cache *c)
{
    const sdt_clip_config *cc = &c->encoder->config;
    return cc->projection_dim > 0 ? cc->projection_dim : cc->width;
}

int sdt_text_cache_key(const sdt_text_cache *c, const sdt_text_request *r, sdt_hash128 *key, char **error)
{
    int layers = c->encoder->config.layers;
    if (r->clip_skip < 1 || r->clip_skip > layers) {
        *error = sdt_format("text cache: clip_skip %d is outside 1..%d", r->clip_skip, layers);
        return -1;
    }
    if (!window_count(r->max_token_length)) {
        *error = sdt_format("text cache: max_token_length %d is not 75, 150 or 225", r->max_token_length);
        return -1;
    }
    sdt_hasher h;
    sdt_hasher_init(&h, 0);
    sdt_hasher_str(&h, KEY_TAG);
    sdt_hasher_str(&h, r->caption);
    sdt_hasher_u64(&h, (uint64_t)r->clip_skip);
    sdt_hasher_u64(&h, (uint64_t)window_count(r->max_token_length));
    sdt_hasher_u64(&h, (uint64_t)(r->pooled != 0));
    sdt_hasher_u64(&h, (uint64_t)(uint32_t)c->pad_id);
    sdt_hasher_u64(&h, c->identity.lo);
    sdt_hasher_u64(&h, c->identity.hi);
    sdt_hasher_u64(&h, (uint64_t)c->options.compute_dtype);
    sdt_hasher_u64(&h, (uint64_t)c->options.dtype);
    *key = sdt_hasher_final(&h);
    return 0;
}

/* ---- encoding -------------------------------------------------------------------------------------- */

/* A device tensor into a host buffer of dtype (allocated). */
static int fetch(sdt_engine *e, const sdt_tensor *t, size_t offset, size_t count, sdt_dtype dtype, void **out)
{
    size_t esize = element_bytes(t->dtype);
    void *raw = malloc((offset + count) * esize + 1);
    float *values = malloc(count * sizeof *values + 1);
    *out = malloc(count * element_bytes(dtype) + 1);
    int status = -1;
    if (raw && values && *out && sdt_engine_download(e, raw, t, (offset + count) * esize) == 0 &&
        sdt_convert(values, SDT_F32, (char *)raw + offset * esize, t->dtype, count) == 0 &&
        sdt_convert(*out, dtype, values, SDT_F32, count) == 0)
        status = 0;
    free(raw);
    free(values);
    if (status != 0) {
        free(*out);
        *out = NULL;
    }
    return status;
}

int sdt_text_cache_encode(sdt_text_cache *c, const sdt_text_request *r, sdt_text_embedding *out, char **error)
{
    memset(out, 0, sizeof *out);
    sdt_hash128 key;
    if (sdt_text_cache_key(c, r, &key, error) != 0)
        return -1;
    sdt_engine *e = c->e;
    const char *caption = r->caption ? r->caption : "";
    int32_t ids[3 * SDT_TOKENIZER_WINDOW]; /* [windows, 77] */
    int windows = 0;
    if (sdt_tokenizer_encode_windows(c->tokenizer, caption, strlen(caption), r->max_token_length, c->pad_id,
                                     ids, &windows, error) != 0)
        return -1;
    sdt_clip_text_options o = {.clip_skip = r->clip_skip,
                               .hidden_layer = -1,
                               .pooled = r->pooled != 0,
                               .dtype = c->options.compute_dtype};
    sdt_clip_text_result res = {0};
    sdt_tensor stitched = {0};
    const sdt_tensor *context = &res.context; /* [1, L, W] once stitched */
    int status = -1;
    if (sdt_clip_text_forward(e, c->encoder, &res, ids, windows, SDT_TOKENIZER_WINDOW, &o) != 0)
        goto engine_failed;
    if (windows > 1) {
        if (sdt_clip_stitch_windows(e, &stitched, &res.context, windows) != 0)
            goto engine_failed;
        context = &stitched;
    }
    *out = (sdt_text_embedding){.key = key,
                                .dtype = c->options.dtype,
                                .length = (int)context->shape[1],
                                .width = (int)context->shape[2]};
    if (fetch(e, context, 0, (size_t)out->length * (size_t)out->width, out->dtype, &out->context) != 0)
        goto engine_failed;
    if (r->pooled) {
        /* Row 0 of pooled [windows, P]: the first window's, as kohya uses it. */
        out->pooled_width = (int)res.pooled.shape[1];
        if (fetch(e, &res.pooled, 0, (size_t)out->pooled_width, out->dtype, &out->pooled) != 0)
            goto engine_failed;
    }
    status = 0;
    goto done;
engine_failed:
    *error = sdt_format("text cache: encoding \"%.60s\": %s", caption, sdt_engine_error(e));
    sdt_text_embedding_free(out);
done:
    sdt_act_free(e, &stitched);
    sdt_clip_text_result_free(e, &res);
    return status;
}

/* ---- entry files ----------------------------------------------------------------------------------- */

static int all_finite(const sdt_st_tensor *t)
{
    float *values = malloc((t->count ? t->count : 1) * sizeof *values);
    int ok = values && sdt_convert(values, SDT_F32, t->data, t->dtype, t->count) == 0;
    for (uint64_t i = 0; ok && i < t->count; i++)
        ok = isfinite(values[i]);
    free(values);
    return ok;
}

/* An entry and what it is for: the context of load_file and write_file. */
typedef struct entry_file {
    const sdt_text_cache *c;
    sdt_hash128 key;
    const sdt_text_request *r;
    sdt_text_embedding *t; /* filled by load_file, written by write_file */
} entry_file;

/* Reads and checks an entry's opened file, its format, version and key already checked (an
 * sdt_cache_load_fn). Returns 0 (f->t filled), or -1 with *why set (caller frees). */
static int load_file(void *ctx, const sdt_safetensors *st, char **why)
{
    const entry_file *f = ctx;
    const sdt_text_cache *c = f->c;
    const sdt_text_request *r = f->r;
    sdt_hash128 key = f->key;
    sdt_text_embedding t = {.key = key,
                            .dtype = c->options.dtype,
                            .length = 2 + 75 * window_count(r->max_token_length),
                            .width = c->encoder->config.width,
                            .pooled_width = r->pooled ? pooled_width(c) : 0};
    const sdt_st_tensor *ct = sdt_safetensors_find(st, "context");
    const sdt_st_tensor *pt = sdt_safetensors_find(st, "pooled");
    if (!ct || ct->dtype != t.dtype || ct->ndim != 2 || ct->shape[0] != t.length || ct->shape[1] != t.width) {
        *why = sdt_format("its context is not [%d, %d] %s", t.length, t.width, sdt_dtype_name(t.dtype));
        return -1;
    }
    if (r->pooled ? !pt || pt->dtype != t.dtype || pt->ndim != 1 || pt->shape[0] != t.pooled_width
                  : pt != NULL) {
        *why = sdt_format(r->pooled ? "its pooled vector is not [%d]"
                                    : "it has a pooled vector (%d) not asked for",
                          t.pooled_width);
        return -1;
    }
    if (!c->options.skip_cache_check && (!all_finite(ct) || (pt && !all_finite(pt)))) {
        *why = sdt_strdup("it holds values that are not finite");
        return -1;
    }
    t.context = malloc(ct->nbytes ? ct->nbytes : 1);
    t.pooled = pt ? malloc(pt->nbytes ? pt->nbytes : 1) : NULL;
    if (!t.context || (pt && !t.pooled)) {
        sdt_text_embedding_free(&t);
        *why = sdt_strdup("out of memory reading it");
        return -1;
    }
    memcpy(t.context, ct->data, ct->nbytes); /* the mapping is not aligned: copy, never cast */
    if (pt)
        memcpy(t.pooled, pt->data, pt->nbytes);
    *f->t = t;
    return 0;
}

/* Writes the file of an entry (an sdt_cache_write_fn). */
static int write_file(void *ctx, const char *path, char **error)
{
    const entry_file *f = ctx;
    const sdt_text_cache *c = f->c;
    const sdt_text_embedding *t = f->t;
    const sdt_text_request *r = f->r;
    char key[33], identity[33], clip_skip[16], max_len[16];
    sdt_hash128_hex(t->key, key);
    sdt_hash128_hex(c->identity, identity);
    snprintf(clip_skip, sizeof clip_skip, "%d", r->clip_skip);
    snprintf(max_len, sizeof max_len, "%d", r->max_token_length);
    const char *caption = r->caption ? r->caption : "";
    /* The caption is informational; one that is not UTF-8 (metadata must be) is left out. */
    if (sdt_utf8_invalid_at(caption, strlen(caption)) < strlen(caption))
        caption = "";
    const char *kv[] = {
        "format",
        FILE_FORMAT,
        "version",
        FILE_VERSION,
        "key",
        key,
        "caption",
        caption,
        "encoder",
        identity,
        "clip_skip",
        clip_skip,
        "max_token_length",
        max_len,
        "dtype",
        sdt_dtype_name(t->dtype),
    };
    int64_t cshape[2] = {t->length, t->width}, pshape[1] = {t->pooled_width};
    sdt_st_write_tensor tensors[2] = {
        {.name = "context", .dtype = t->dtype, .ndim = 2, .shape = cshape, .data = t->context},
        {.name = "pooled", .dtype = t->dtype, .ndim = 1, .shape = pshape, .data = t->pooled},
    };
    return sdt_safetensors_write(path, tensors, t->pooled ? 2 : 1, kv, sizeof kv / sizeof kv[0] / 2, error);
}

/* Onto disk (write_disk and a disk cache) and into memory (keep_in_memory; moves t's buffers). */
static int store(sdt_text_cache *c, sdt_text_embedding *t, const sdt_text_request *r, int write_disk,
                 char **error)
{
    entry_file f = {.c = c, .key = t->key, .r = r, .t = t};
    if (c->store.dir && write_disk && sdt_cache_store_write(&c->store, t->key, write_file, &f, error) != 0)
        return -1;
    return sdt_cache_store_keep(&c->store, t->key, t, error);
}

/* The entry of a key whose memory lookup missed: disk, else encoded; then stored. out may be NULL (prepare).
 */
static int fill(sdt_text_cache *c, const sdt_text_request *r, sdt_hash128 key, sdt_text_embedding *out,
                char **error)
{
    sdt_text_embedding t = {0};
    int bad = 0;
    char what[64]; /* the caption, quoted and cut */
    snprintf(what, sizeof what, "\"%.60s\"", r->caption ? r->caption : "");
    entry_file f = {.c = c, .key = key, .r = r, .t = &t};
    int from_disk = sdt_cache_store_load(&c->store, key, what, load_file, &f, &bad);
    if (!from_disk && sdt_text_cache_encode(c, r, &t, error) != 0)
        return -1;
    if (out && copy_embedding(out, &t) != 0) {
        sdt_text_embedding_free(&t);
        *error = sdt_strdup("text cache: out of memory");
        return -1;
    }
    int status = store(c, &t, r, !from_disk, error);
    sdt_text_embedding_free(&t);
    if (status != 0) {
        if (out)
            sdt_text_embedding_free(out);
        return -1;
    }
    sdt_cache_store_count(&c->store, from_disk, bad);
    return 0;
}

int sdt_text_cache_get(sdt_text_cache *c, const sdt_text_request *r, sdt_text_embedding *out, char **error)
{
    memset(out, 0, sizeof *out);
    sdt_hash128 key;
    if (sdt_text_cache_key(c, r, &key, error) != 0)
        return -1;
    int kept = sdt_cache_store_copy_kept(&c->store, key, out, error);
    if (kept != 0)
        return kept < 0 ? -1 : 0;
    return fill(c, r, key, out, error);
}

int sdt_text_cache_prepare(sdt_text_cache *c, const sdt_text_request *requests, size_t n, char **error)
{
    /* Without memory or disk to keep entries in there is nothing to prepare; get encodes every time. */
    int storing = c->store.dir || c->options.keep_in_memory;
    for (size_t i = 0; i < n; i++) {
        const sdt_text_request *r = &requests[i];
        sdt_hash128 key;
        if (sdt_text_cache_key(c, r, &key, error) != 0)
            return -1;
        if (storing && sdt_cache_store_get(&c->store, key)) {
            c->store.summary.in_memory++;
        } else if (storing) {
            /* A file that is there and valid is only read when it is to be kept in memory. */
            int trusted = !c->options.keep_in_memory && c->options.skip_cache_check &&
                          sdt_cache_store_has_file(&c->store, key);
            if (trusted)
                c->store.summary.reused++;
            else if (fill(c, r, key, NULL, error) != 0)
                return -1;
        }
        sdt_cache_store_progress(&c->store, i + 1, n, r->caption ? r->caption : "");
    }
    return 0;
}
