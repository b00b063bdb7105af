/* LoRA files: loading network_weights and saving kohya's layout ("<module>.lora_down.weight",
 * ".lora_up.weight", ".alpha"; conv weights [OC, C, KH, KW]) with kohya's two model hashes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lora_internal.h"
#include "name_index.h"
#include "sdtune/safetensors.h"
#include "sdtune/sha256.h"
#include "sdtune/strutil.h"

static const char *const suffixes[3] = {".lora_down.weight", ".lora_up.weight", ".alpha"};

/* Engine conv down [R, K, K, C] <-> file [R, C, K, K]. */
static void down_to_file(const float *engine, float *file, int64_t r, int64_t c, int64_t k)
{
    for (int64_t o = 0; o < r; o++)
        for (int64_t y = 0; y < k; y++)
            for (int64_t x = 0; x < k; x++)
                for (int64_t i = 0; i < c; i++)
                    file[((o * c + i) * k + y) * k + x] = engine[((o * k + y) * k + x) * c + i];
}

static void down_from_file(const float *file, float *engine, int64_t r, int64_t c, int64_t k)
{
    for (int64_t o = 0; o < r; o++)
        for (int64_t y = 0; y < k; y++)
            for (int64_t x = 0; x < k; x++)
                for (int64_t i = 0; i < c; i++)
                    engine[((o * k + y) * k + x) * c + i] = file[((o * c + i) * k + y) * k + x];
}

static void describe_shape(char *buf, size_t size, int ndim, const int64_t *shape)
{
    size_t at = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && at < size; i++)
        at += (size_t)snprintf(buf + at, size - at, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (at < size)
        snprintf(buf + at, size - at, "]");
}

/* ---- loading ------------------------------------------------------------------------------------------ */

/* The tensor's values as F32 host floats [count] (the file's bytes may be unaligned). */
static float *read_floats(const sdt_st_tensor *t, const char *path, char **error)
{
    if (!sdt_dtype_is_compute(t->dtype)) {
        sdt_set_error(error, "%s: %s is %s; a LoRA file holds F32, F16 or BF16 tensors", path, t->name,
                      sdt_dtype_name(t->dtype));
        return NULL;
    }
    void *raw = malloc(t->nbytes + 1);
    float *out = malloc((size_t)t->count * sizeof *out + 1);
    if (!raw || !out) {
        free(raw);
        free(out);
        sdt_set_error(error, "%s: out of memory reading %s", path, t->name);
        return NULL;
    }
    memcpy(raw, t->data, t->nbytes);
    sdt_convert(out, SDT_F32, raw, t->dtype, (size_t)t->count);
    free(raw);
    return out;
}

static int check_shape(const sdt_st_tensor *t, int ndim, const int64_t *shape, const char *path, char **error)
{
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++)
        same = t->shape[i] == shape[i];
    if (same)
        return 0;
    char have[96], want[96];
    describe_shape(have, sizeof have, t->ndim, t->shape);
    describe_shape(want, sizeof want, ndim, shape);
    return sdt_set_error(error, "%s: %s is %s, expected %s", path, t->name, have, want);
}

/* Every tensor of the file must be one this network expects. */
static int check_extra_keys(const sdt_lora_network *net, const sdt_safetensors *st, const char *path,
                            char **error)
{
    sdt_name_index known;
    sdt_name_index_init(&known);
    int rc = 0;
    for (size_t i = 0; i < net->count && rc == 0; i++)
        rc = sdt_name_index_put(&known, net->modules[i].name, i);
    if (rc != 0) {
        sdt_name_index_free(&known);
        return sdt_set_error(error, "%s: out of memory", path);
    }
    size_t extra = 0;
    const char *first = NULL;
    for (size_t i = 0; i < sdt_safetensors_count(st); i++) {
        const char *key = sdt_safetensors_tensor(st, i)->name;
        int matched = 0;
        for (int s = 0; s < 3 && !matched; s++) {
            size_t n = strlen(key), k = strlen(suffixes[s]);
            if (n > k && strcmp(key + n - k, suffixes[s]) == 0) {
                char *module = sdt_strndup(key, n - k);
                matched = module && sdt_name_index_get(&known, module) >= 0;
                free(module);
            }
        }
        if (!matched && extra++ == 0)
            first = key;
    }
    sdt_name_index_free(&known);
    if (extra)
        return sdt_set_error(error,
                             "%s: %s is not a module of this network (%zu unexpected keys; a different base "
                             "model family, network_dim/conv_dim layout or text-encoder setting?)",
                             path, first, extra);
    return 0;
}

static int load_module(sdt_engine *e, sdt_lora_module *mod, const sdt_safetensors *st, const char *path,
                       char **error)
{
    const sdt_st_tensor *t[3];
    for (int s = 0; s < 3; s++) {
        char key[400];
        snprintf(key, sizeof key, "%s%s", mod->name, suffixes[s]);
        t[s] = sdt_safetensors_find(st, key);
        if (!t[s])
            return sdt_set_error(error, "%s: %s is missing", path, key);
    }
    int64_t down_shape[4], up_shape[4];
    int down_ndim = sdt_lora_file_down_shape(mod, down_shape);
    int up_ndim = sdt_lora_file_up_shape(mod, up_shape);
    if (check_shape(t[0], down_ndim, down_shape, path, error) ||
        check_shape(t[1], up_ndim, up_shape, path, error) || check_shape(t[2], 0, NULL, path, error))
        return -1;
    float *down = read_floats(t[0], path, error);
    float *up = down ? read_floats(t[1], path, error) : NULL;
    float *alpha = up ? read_floats(t[2], path, error) : NULL;
    float *engine_down = alpha && mod->conv_kernel > 1 ? malloc(t[0]->count * sizeof(float)) : NULL;
    int rc = alpha ? 0 : -1;
    if (rc == 0 && mod->conv_kernel > 1) {
        if (!engine_down) {
            rc = sdt_set_error(error, "%s: out of memory", path);
        } else {
            down_from_file(down, engine_down, mod->adapter.rank, mod->in_features, mod->conv_kernel);
            memcpy(down, engine_down, t[0]->count * sizeof(float));
        }
    }
    if (rc == 0 && (sdt_engine_upload(e, &mod->adapter.down, down, t[0]->count * sizeof(float)) != 0 ||
                    sdt_engine_upload(e, &mod->adapter.up, up, t[1]->count * sizeof(float)) != 0))
        rc = sdt_set_error(error, "%s: %s: %s", path, mod->name, sdt_engine_error(e));
    if (rc == 0) {
        mod->alpha = alpha[0];
        mod->adapter.scale = mod->alpha / (float)mod->adapter.rank;
    }
    free(engine_down);
    free(alpha);
    free(up);
    free(down);
    return rc;
}

int sdt_lora_load(sdt_engine *e, sdt_lora_network *net, const char *path, char **error)
{
    sdt_safetensors *st = NULL;
    if (sdt_safetensors_open(path, &st, error) != 0)
        return -1;
    int rc = check_extra_keys(net, st, path, error);
    for (size_t i = 0; rc == 0 && i < net->count; i++)
        rc = load_module(e, &net->modules[i], st, path, error);
    sdt_safetensors_close(st);
    return rc;
}

/* ---- saving ------------------------------------------------------------------------------------------- */

/* kohya's train_util.precalculate_safetensors_hashes: the file as safetensors would write it with only the
 * ss_* metadata; sshs_model_hash is the sha256 of everything after the 8-byte length and the header,
 * sshs_legacy_hash the first 8 hex digits of the sha256 of the 0x10000 bytes at offset 0x100000 (of what
 * there is: the empty string's digest for a file shorter than 1 MiB). */
static int file_hashes(const char *path, char model_hash[65], char legacy_hash[9], char **error)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return sdt_set_error(error, "%s: cannot read back for hashing", path);
    unsigned char len_bytes[8];
    enum { CHUNK = 1 << 16 };
    unsigned char *chunk = malloc(CHUNK);
    int rc = 0;
    if (!chunk) {
        rc = sdt_set_error(error, "%s: out of memory while hashing", path);
    } else if (fread(len_bytes, 1, 8, f) != 8) {
        rc = sdt_set_error(error, "%s: short file while hashing", path);
    } else {
        uint64_t header = 0;
        for (int i = 7; i >= 0; i--)
            header = header << 8 | len_bytes[i];
        sdt_sha256 model, legacy;
        sdt_sha256_init(&model);
        sdt_sha256_init(&legacy);
        uint64_t offset = 0;
        rewind(f);
        size_t n;
        while ((n = fread(chunk, 1, CHUNK, f)) > 0) {
            /* The parts of [offset, offset + n) inside each hashed range. */
            uint64_t begin = offset, end = offset + n;
            uint64_t data_start = 8 + header;
            if (end > data_start)
                sdt_sha256_update(&model, chunk + (begin > data_start ? 0 : data_start - begin),
                                  (size_t)(end - (begin > data_start ? begin : data_start)));
            uint64_t lo = begin > 0x100000 ? begin : 0x100000, hi = end < 0x110000 ? end : 0x110000;
            if (hi > lo)
                sdt_sha256_update(&legacy, chunk + (lo - begin), (size_t)(hi - lo));
            offset = end;
        }
        if (ferror(f))
            rc = sdt_set_error(error, "%s: read error while hashing", path);
        uint8_t digest[32];
        char hex[65];
        sdt_sha256_final(&model, digest);
        sdt_sha256_digest_hex(digest, model_hash);
        sdt_sha256_final(&legacy, digest);
        sdt_sha256_digest_hex(digest, hex);
        memcpy(legacy_hash, hex, 8);
        legacy_hash[8] = '\0';
    }
    free(chunk);
    fclose(f);
    return rc;
}

typedef struct saved_tensors {
    sdt_st_write_tensor *tensors; /* [3 * modules] */
    char **names;                 /* [3 * modules] */
    void **data;                  /* [3 * modules], in the save dtype */
    int64_t (*shapes)[4];         /* [3 * modules] */
    size_t count;
} saved_tensors;

static void saved_free(saved_tensors *s)
{
    for (size_t i = 0; i < s->count; i++) {
        free(s->names ? s->names[i] : NULL);
        free(s->data ? s->data[i] : NULL);
    }
    free(s->tensors);
    free(s->names);
    free(s->data);
    free(s->shapes);
}

/* One tensor of the file from F32 host values (file layout) cast to dtype. */
static int add_tensor(saved_tensors *s, const char *module, int suffix, const float *values, size_t count,
                      int ndim, const int64_t *shape, sdt_dtype dtype)
{
    size_t i = s->count;
    s->names[i] = sdt_format("%s%s", module, suffixes[suffix]);
    s->data[i] = malloc(count * 4 + 1);
    s->count++;
    if (!s->names[i] || !s->data[i])
        return -1;
    sdt_convert(s->data[i], dtype, values, SDT_F32, count);
    memcpy(s->shapes[i], shape, (size_t)ndim * sizeof(int64_t));
    sdt_st_write_tensor *t = &s->tensors[i];
    memset(t, 0, sizeof *t);
    t->name = s->names[i];
    t->dtype = dtype;
    t->ndim = ndim;
    t->shape = s->shapes[i];
    t->data = s->data[i];
    return 0;
}

static int collect_tensors(sdt_engine *e, const sdt_lora_network *net, sdt_dtype dtype, saved_tensors *s,
                           const char *path, char **error)
{
    size_t n = 3 * net->count;
    s->tensors = calloc(n + 1, sizeof *s->tensors);
    s->names = calloc(n + 1, sizeof *s->names);
    s->data = calloc(n + 1, sizeof *s->data);
    s->shapes = calloc(n + 1, sizeof *s->shapes);
    if (!s->tensors || !s->names || !s->data || !s->shapes)
        return sdt_set_error(error, "%s: out of memory", path);
    for (size_t i = 0; i < net->count; i++) {
        const sdt_lora_module *mod = &net->modules[i];
        int64_t down_shape[4], up_shape[4];
        int down_ndim = sdt_lora_file_down_shape(mod, down_shape);
        int up_ndim = sdt_lora_file_up_shape(mod, up_shape);
        size_t nd = (size_t)sdt_tensor_numel(&mod->adapter.down),
               nu = (size_t)sdt_tensor_numel(&mod->adapter.up);
        float *down = malloc(nd * sizeof *down), *file_down = malloc(nd * sizeof *file_down);
        float *up = malloc(nu * sizeof *up);
        int rc = down && file_down && up ? 0 : sdt_set_error(error, "%s: out of memory", path);
        if (rc == 0 && (sdt_engine_download(e, down, &mod->adapter.down, nd * sizeof(float)) != 0 ||
                        sdt_engine_download(e, up, &mod->adapter.up, nu * sizeof(float)) != 0))
            rc = sdt_set_error(error, "%s: %s: %s", path, mod->name, sdt_engine_error(e));
        if (rc == 0) {
            if (mod->conv_kernel > 1)
                down_to_file(down, file_down, mod->adapter.rank, mod->in_features, mod->conv_kernel);
            else
                memcpy(file_down, down, nd * sizeof(float));
            if (add_tensor(s, mod->name, 0, file_down, nd, down_ndim, down_shape, dtype) != 0 ||
                add_tensor(s, mod->name, 1, up, nu, up_ndim, up_shape, dtype) != 0 ||
                add_tensor(s, mod->name, 2, &mod->alpha, 1, 0, down_shape, dtype) != 0)
                rc = sdt_set_error(error, "%s: out of memory", path);
        }
        free(down);
        free(file_down);
        free(up);
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* Key/value pointer pairs of l (only the ss_* ones when ss_only), plus extra pairs. */
static const char **metadata_pairs(const sdt_kv_list *l, int ss_only, const char *const *extra,
                                   size_t n_extra, size_t *pairs)
{
    const char **kv = calloc(2 * ((l ? l->count : 0) + n_extra) + 1, sizeof *kv);
    size_t n = 0;
    if (!kv)
        return NULL;
    for (size_t i = 0; l && i < l->count; i++) {
        const char *key = l->items[i].key;
        if ((ss_only && strncmp(key, "ss_", 3) != 0) || strcmp(key, "sshs_model_hash") == 0 ||
            strcmp(key, "sshs_legacy_hash") == 0)
            continue;
        kv[2 * n] = key;
        kv[2 * n + 1] = l->items[i].value;
        n++;
    }
    for (size_t i = 0; i < n_extra; i++, n++) {
        kv[2 * n] = extra[2 * i];
        kv[2 * n + 1] = extra[2 * i + 1];
    }
    *pairs = n;
    return kv;
}

int sdt_lora_save(sdt_engine *e, const sdt_lora_network *net, const char *path, sdt_dtype dtype,
                  const sdt_kv_list *metadata, char **error)
{
    if (dtype != SDT_F32 && dtype != SDT_F16 && dtype != SDT_BF16)
        return sdt_set_error(error, "%s: a LoRA is saved as F32, F16 or BF16, not %s", path,
                             sdt_dtype_name(dtype));
    saved_tensors s;
    memset(&s, 0, sizeof s);
    if (collect_tensors(e, net, dtype, &s, path, error) != 0) {
        saved_free(&s);
        return -1;
    }
    int rc = 0;
    size_t pairs = 0;
    const char **kv = NULL;
    char model_hash[65] = "", legacy_hash[9] = ""; /* kv points at them until the final write */
    if (metadata) {
        /* The hashes are those of the file written with the ss_* metadata alone (kohya excludes the rest so
         * that editing user metadata keeps the hash): write that file beside the target, hash it, remove it.
         */
        char *hash_path = sdt_format("%s.sshs.tmp", path);
        kv = metadata_pairs(metadata, 1, NULL, 0, &pairs);
        if (!hash_path || !kv)
            rc = sdt_set_error(error, "%s: out of memory", path);
        if (rc == 0)
            rc = sdt_safetensors_write(hash_path, s.tensors, s.count, kv, pairs, error);
        if (rc == 0) {
            rc = file_hashes(hash_path, model_hash, legacy_hash, error);
            unlink(hash_path);
        }
        free(hash_path);
        free(kv);
        kv = NULL;
        if (rc == 0) {
            const char *hashes[4] = {"sshs_model_hash", model_hash, "sshs_legacy_hash", legacy_hash};
            kv = metadata_pairs(metadata, 0, hashes, 2, &pairs);
            if (!kv)
                rc = sdt_set_error(error, "%s: out of memory", path);
        }
    }
    if (rc == 0)
        rc = sdt_safetensors_write(path, s.tensors, s.count, kv, pairs, error);
    free(kv);
    saved_free(&s);
    return rc;
}
