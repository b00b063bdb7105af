/* The 128-bit content hash, cache entry paths and the key -> value map (content_hash.h). */
#include "content_hash.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "params.h"
#include "sdtune/atomic_file.h"
#include "sdtune/strutil.h"

/* Odd constants with well-spread bits, two per lane, none shared between the lanes: the lanes must not be
 * able to cancel each other out. */
#define A_MUL1 0x9E3779B185EBCA87ull
#define A_MUL2 0xC2B2AE3D27D4EB4Full
#define B_MUL1 0xD6E8FEB86659FD93ull
#define B_MUL2 0xA0761D6478BD642Full
#define B_ADD 0xE7037ED1A0B428DBull

static uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

/* MurmurHash3's finaliser: every input bit reaches every output bit. */
static uint64_t fmix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xFF51AFD7ED558CCDull;
    x ^= x >> 33;
    x *= 0xC4CEB9FE1A85EC53ull;
    x ^= x >> 33;
    return x;
}

static uint64_t load_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* One word into both lanes: lane a rotates a multiply-accumulate (xxHash's round), lane b xors a rotated
 * product into its state and multiplies, so a difference that one lane absorbs the other still sees. */
static void mix_word(sdt_hasher *h, uint64_t w)
{
    h->a = rotl(h->a + w * A_MUL2, 31) * A_MUL1;
    h->b = rotl(h->b ^ rotl(w * B_MUL1, 29), 27) * B_MUL2 + B_ADD;
}

void sdt_hasher_init(sdt_hasher *h, uint64_t seed)
{
    memset(h, 0, sizeof *h);
    h->a = seed + A_MUL1;
    h->b = ~seed ^ B_MUL1;
}

void sdt_hasher_update(sdt_hasher *h, const void *data, size_t len)
{
    const uint8_t *p = data;
    h->length += len;
    while (h->n_tail && len) {
        h->tail[h->n_tail++] = *p++;
        len--;
        if (h->n_tail == 8) {
            mix_word(h, load_le64(h->tail));
            h->n_tail = 0;
        }
    }
    for (; len >= 8; p += 8, len -= 8)
        mix_word(h, load_le64(p));
    while (len--)
        h->tail[h->n_tail++] = *p++;
}

void sdt_hasher_u64(sdt_hasher *h, uint64_t value)
{
    uint8_t bytes[8];
    for (int i = 0; i < 8; i++)
        bytes[i] = (uint8_t)(value >> (8 * i));
    sdt_hasher_update(h, bytes, 8);
}

void sdt_hasher_str(sdt_hasher *h, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    sdt_hasher_u64(h, n);
    if (n)
        sdt_hasher_update(h, s, n);
}

sdt_hash128 sdt_hasher_final(const sdt_hasher *h)
{
    sdt_hasher c = *h;
    if (c.n_tail) {
        uint8_t word[8] = {0};
        memcpy(word, c.tail, c.n_tail);
        mix_word(&c, load_le64(word));
    }
    /* The length tells "ab" from "ab\0" (the padded tail words are equal). */
    uint64_t a = fmix(c.a ^ c.length);
    uint64_t b = fmix(c.b + c.length * B_MUL1);
    sdt_hash128 out = {.lo = fmix(a + b), .hi = fmix(a ^ rotl(b, 32) ^ A_MUL2)};
    return out;
}

sdt_hash128 sdt_hash128_bytes(const void *data, size_t len, uint64_t seed)
{
    sdt_hasher h;
    sdt_hasher_init(&h, seed);
    sdt_hasher_update(&h, data, len);
    return sdt_hasher_final(&h);
}

int sdt_hash128_file(const char *path, sdt_hash128 *out, char **error)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *error = sdt_format("%s: %s", path, strerror(errno));
        return -1;
    }
    enum { CHUNK = 1 << 20 };
    uint8_t *buf = malloc(CHUNK);
    if (!buf) {
        close(fd);
        *error = sdt_format("%s: out of memory", path);
        return -1;
    }
    sdt_hasher h;
    sdt_hasher_init(&h, 0);
    int status = 0;
    for (;;) {
        ssize_t n = read(fd, buf, CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            *error = sdt_format("%s: %s", path, strerror(errno));
            status = -1;
            break;
        }
        if (n == 0)
            break;
        sdt_hasher_update(&h, buf, (size_t)n);
    }
    free(buf);
    close(fd);
    if (status == 0)
        *out = sdt_hasher_final(&h);
    return status;
}

int sdt_hash128_equal(sdt_hash128 a, sdt_hash128 b) { return a.lo == b.lo && a.hi == b.hi; }

void sdt_hash128_hex(sdt_hash128 h, char out[33])
{
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)h.hi, (unsigned long long)h.lo);
}

int sdt_hash128_parse(const char *hex, sdt_hash128 *out)
{
    if (!hex || strlen(hex) != 32)
        return -1;
    uint64_t part[2] = {0, 0};
    for (int i = 0; i < 32; i++) {
        char c = hex[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0)
            return -1;
        part[i / 16] = (part[i / 16] << 4) | (uint64_t)v;
    }
    out->hi = part[0];
    out->lo = part[1];
    return 0;
}

/* ---- weights identity ------------------------------------------------------------------------------ */

int sdt_hash_weights(struct sdt_engine *e, const struct sdt_param_table *t, sdt_hash128 *out, char **error)
{
    if (!t->allocated) {
        *error = sdt_format("%s: the weights are not loaded", t->component ? t->component : "model");
        return -1;
    }
    sdt_hasher h;
    sdt_hasher_init(&h, 0);
    sdt_hasher_str(&h, "sdtune weights 1");
    sdt_hasher_u64(&h, t->count);
    void *host = NULL;
    size_t host_size = 0;
    int status = 0;
    for (size_t i = 0; i < t->count && status == 0; i++) {
        const sdt_param *p = &t->items[i];
        sdt_hasher_str(&h, p->name);
        sdt_hasher_u64(&h, (uint64_t)p->value.dtype);
        sdt_hasher_u64(&h, (uint64_t)p->ndim);
        for (int d = 0; d < p->ndim; d++)
            sdt_hasher_u64(&h, (uint64_t)p->shape[d]);
        size_t bytes = sdt_tensor_bytes(&p->value);
        if (bytes > host_size) {
            void *grown = realloc(host, bytes);
            if (!grown) {
                *error = sdt_format("%s: out of memory hashing %s", t->component, p->name);
                status = -1;
                break;
            }
            host = grown;
            host_size = bytes;
        }
        if (bytes && sdt_engine_download(e, host, &p->value, bytes) != 0) {
            *error = sdt_format("%s: cannot read %s: %s", t->component, p->name, sdt_engine_error(e));
            status = -1;
            break;
        }
        sdt_hasher_update(&h, host, bytes);
    }
    free(host);
    if (status == 0)
        *out = sdt_hasher_final(&h);
    return status;
}

/* ---- cache files ----------------------------------------------------------------------------------- */

char *sdt_cache_entry_path(const char *dir, sdt_hash128 key)
{
    char hex[33];
    sdt_hash128_hex(key, hex);
    size_t n = strlen(dir);
    const char *sep = n && dir[n - 1] == '/' ? "" : "/";
    return sdt_format("%s%s%.2s/%s.safetensors", dir, sep, hex, hex);
}

int sdt_cache_make_parent(const char *path, char **error)
{
    char *dir = sdt_strdup(path);
    if (!dir) {
        *error = sdt_format("%s: out of memory", path);
        return -1;
    }
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) {
        free(dir);
        return 0;
    }
    *slash = '\0';
    int status = sdt_make_folders(dir, "cache", error);
    free(dir);
    return status;
}

/* ---- key -> value map ------------------------------------------------------------------------------ */

void sdt_hash_map_init(sdt_hash_map *m) { memset(m, 0, sizeof *m); }

void sdt_hash_map_free(sdt_hash_map *m)
{
    free(m->keys);
    free(m->values);
    memset(m, 0, sizeof *m);
}

static size_t slot_of(const sdt_hash_map *m, sdt_hash128 key)
{
    size_t mask = m->capacity - 1, i = (size_t)key.lo & mask;
    while (m->values[i] && !sdt_hash128_equal(m->keys[i], key))
        i = (i + 1) & mask;
    return i;
}

void *sdt_hash_map_get(const sdt_hash_map *m, sdt_hash128 key)
{
    if (!m->capacity)
        return NULL;
    return m->values[slot_of(m, key)];
}

static int grow(sdt_hash_map *m)
{
    size_t capacity = m->capacity ? 2 * m->capacity : 64;
    sdt_hash_map bigger = {calloc(capacity, sizeof *bigger.keys), calloc(capacity, sizeof *bigger.values),
                           capacity, 0};
    if (!bigger.keys || !bigger.values) {
        sdt_hash_map_free(&bigger);
        return -1;
    }
    for (size_t i = 0; i < m->capacity; i++)
        if (m->values[i]) {
            size_t s = slot_of(&bigger, m->keys[i]);
            bigger.keys[s] = m->keys[i];
            bigger.values[s] = m->values[i];
            bigger.count++;
        }
    sdt_hash_map_free(m);
    *m = bigger;
    return 0;
}

int sdt_hash_map_put(sdt_hash_map *m, sdt_hash128 key, void *value, void **old)
{
    if (old)
        *old = NULL;
    /* At most half full keeps the probe sequences short. */
    if ((m->count + 1) * 2 > m->capacity && grow(m) != 0)
        return -1;
    size_t s = slot_of(m, key);
    if (m->values[s]) {
        if (old)
            *old = m->values[s];
    } else {
        m->count++;
    }
    m->keys[s] = key;
    m->values[s] = value;
    return 0;
}
