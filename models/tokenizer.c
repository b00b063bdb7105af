/* The CLIP tokenizer: vocabulary loading, byte-level BPE with a per-tokenizer word cache, the padded and
 * windowed forms the text encoders take, and the search for vocab.json + merges.txt. The text cleanup
 * before BPE lives in tokenizer_text.c. See docs/tokenizer.md. */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zlib.h>

#include "sdtune/strutil.h"
#include "tokenizer.h"
#include "tokenizer_text.h"

#define BOS_TEXT "<|startoftext|>"
#define EOS_TEXT "<|endoftext|>"
/* vocab.json ids above this are refused: the id -> token table is a plain array. */
#define MAX_ID ((1 << 24) - 1)
/* The word cache is emptied when it reaches this many words or this many key bytes, so a long run over
 * many distinct captions keeps a bounded cache of recent words. */
#define CACHE_SLOTS 16384
#define CACHE_MAX_WORDS (CACHE_SLOTS / 2)
#define CACHE_MAX_BYTES (4u << 20)

/* A vocabulary or merge string; all are interned once, so a BPE symbol is an index into syms. */
typedef struct sym {
    uint32_t off, len; /* in pool, NUL-terminated there */
    int32_t id;        /* vocabulary id, or -1 when the string is only part of a merge */
} sym;

typedef struct pair_slot {
    uint64_t key; /* first symbol << 32 | second symbol; UINT64_MAX when empty */
    int32_t rank, merged;
} pair_slot;

typedef struct cache_slot {
    uint64_t hash;
    uint32_t key_off, key_len; /* in cache_keys */
    uint32_t ids_off, ids_len; /* in cache_ids */
    bool used;
} cache_slot;

struct sdt_tokenizer {
    char *pool;
    size_t pool_len, pool_cap;
    sym *syms;
    size_t nsyms, syms_cap;
    int32_t *sym_slots; /* string hash -> symbol, -1 when empty */
    size_t sym_slot_count;

    pair_slot *pairs;
    size_t pair_slot_count, npairs;

    int32_t byte_sym[256], byte_end_sym[256]; /* each byte's symbol, and with "</w>" (word end) */
    int32_t bos_id, eos_id;
    /* Further special tokens (sdt_tokenizer_add_special), split out of the raw text like the two above. */
    char *extra_text[SDT_TOKENIZER_MAX_SPECIALS];
    int32_t extra_id[SDT_TOKENIZER_MAX_SPECIALS];
    size_t n_extra;
    int32_t *id_sym; /* id -> symbol, -1 for unused ids */
    size_t id_count, vocab_size;

    cache_slot *cache;
    size_t cache_words;
    char *cache_keys;
    size_t cache_keys_len, cache_keys_cap;
    int32_t *cache_ids;
    size_t cache_ids_len, cache_ids_cap;
};

static int fail(char **error, const char *fmt, ...) SDT_PRINTF(2, 3);
static int fail(char **error, const char *fmt, ...)
{
    if (error) {
        va_list args;
        va_start(args, fmt);
        *error = sdt_vformat(fmt, args);
        va_end(args);
    }
    return -1;
}

static uint64_t hash_bytes(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static uint64_t hash_pair(uint64_t key)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdull;
    key ^= key >> 33;
    return key;
}

/* ---- GPT-2's bytes_to_unicode ------------------------------------------------------------------------- */

/* The printable bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for themselves; the other 68 take U+0100
 * onwards in byte order. order[] lists the bytes in the table's order, which is also the order of the
 * first 256 vocabulary ids. */
static void bytes_to_unicode(uint32_t cp[256], unsigned char order[256])
{
    size_t k = 0;
    uint32_t next = 256;
    for (int b = 0; b < 256; b++)
        if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) {
            cp[b] = (uint32_t)b;
            order[k++] = (unsigned char)b;
        }
    for (int b = 0; b < 256; b++)
        if (!((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))) {
            cp[b] = next++;
            order[k++] = (unsigned char)b;
        }
}

/* ---- symbols and merges ------------------------------------------------------------------------------- */

static sdt_tokenizer *tokenizer_new(void)
{
    sdt_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->sym_slot_count = 1 << 12; /* both tables double as they fill */
    t->sym_slots = malloc(t->sym_slot_count * sizeof *t->sym_slots);
    t->pair_slot_count = 1 << 12;
    t->pairs = malloc(t->pair_slot_count * sizeof *t->pairs);
    t->cache = calloc(CACHE_SLOTS, sizeof *t->cache);
    if (!t->sym_slots || !t->pairs || !t->cache) {
        sdt_tokenizer_free(t);
        return NULL;
    }
    memset(t->sym_slots, 0xFF, t->sym_slot_count * sizeof *t->sym_slots);
    for (size_t i = 0; i < t->pair_slot_count; i++)
        t->pairs[i].key = UINT64_MAX;
    t->bos_id = t->eos_id = -1;
    return t;
}

void sdt_tokenizer_free(sdt_tokenizer *t)
{
    if (!t)
        return;
    free(t->pool);
    free(t->syms);
    free(t->sym_slots);
    free(t->pairs);
    free(t->id_sym);
    free(t->cache);
    free(t->cache_keys);
    free(t->cache_ids);
    for (size_t i = 0; i < t->n_extra; i++)
        free(t->extra_text[i]);
    free(t);
}

static bool sym_is(const sdt_tokenizer *t, int32_t s, const char *str, size_t len)
{
    return t->syms[s].len == len && memcmp(t->pool + t->syms[s].off, str, len) == 0;
}

static int32_t sym_find(const sdt_tokenizer *t, const char *str, size_t len)
{
    size_t mask = t->sym_slot_count - 1;
    for (size_t slot = (size_t)hash_bytes(str, len) & mask;; slot = (slot + 1) & mask) {
        int32_t s = t->sym_slots[slot];
        if (s < 0)
            return -1;
        if (sym_is(t, s, str, len))
            return s;
    }
}

static bool sym_rehash(sdt_tokenizer *t)
{
    size_t count = t->sym_slot_count * 2;
    int32_t *slots = malloc(count * sizeof *slots);
    if (!slots)
        return false;
    memset(slots, 0xFF, count * sizeof *slots);
    for (size_t s = 0; s < t->nsyms; s++) {
        size_t slot = (size_t)hash_bytes(t->pool + t->syms[s].off, t->syms[s].len) & (count - 1);
        while (slots[slot] >= 0)
            slot = (slot + 1) & (count - 1);
        slots[slot] = (int32_t)s;
    }
    free(t->sym_slots);
    t->sym_slots = slots;
    t->sym_slot_count = count;
    return true;
}

/* The symbol of a string, added when new; -1 when out of memory. */
static int32_t sym_intern(sdt_tokenizer *t, const char *str, size_t len)
{
    int32_t found = sym_find(t, str, len);
    if (found >= 0)
        return found;
    if ((t->nsyms + 1) * 2 > t->sym_slot_count && !sym_rehash(t))
        return -1;
    if (t->nsyms == t->syms_cap) {
        size_t cap = t->syms_cap ? t->syms_cap * 2 : 1024;
        sym *syms = realloc(t->syms, cap * sizeof *syms);
        if (!syms)
            return -1;
        t->syms = syms;
        t->syms_cap = cap;
    }
    if (t->pool_len + len + 1 > t->pool_cap || t->pool_len + len + 1 > UINT32_MAX) {
        size_t cap = t->pool_cap ? t->pool_cap : 1 << 16;
        while (cap < t->pool_len + len + 1)
            cap *= 2;
        char *pool = cap <= UINT32_MAX ? realloc(t->pool, cap) : NULL;
        if (!pool)
            return -1;
        t->pool = pool;
        t->pool_cap = cap;
    }
    memcpy(t->pool + t->pool_len, str, len);
    t->pool[t->pool_len + len] = '\0';
    int32_t s = (int32_t)t->nsyms++;
    t->syms[s] = (sym){(uint32_t)t->pool_len, (uint32_t)len, -1};
    t->pool_len += len + 1;
    size_t mask = t->sym_slot_count - 1;
    size_t slot = (size_t)hash_bytes(str, len) & mask;
    while (t->sym_slots[slot] >= 0)
        slot = (slot + 1) & mask;
    t->sym_slots[slot] = s;
    return s;
}

/* Gives the string an id; a later entry for the same string wins, as in a Python dict. */
static int set_id(sdt_tokenizer *t, const char *str, size_t len, int64_t id)
{
    int32_t s = sym_intern(t, str, len);
    if (s < 0)
        return -1;
    if ((size_t)id >= t->id_count) {
        size_t count = t->id_count ? t->id_count : 1024;
        while (count <= (size_t)id)
            count *= 2;
        int32_t *id_sym = realloc(t->id_sym, count * sizeof *id_sym);
        if (!id_sym)
            return -1;
        for (size_t i = t->id_count; i < count; i++)
            id_sym[i] = -1;
        t->id_sym = id_sym;
        t->id_count = count;
    }
    if (t->syms[s].id < 0)
        t->vocab_size++;
    t->syms[s].id = (int32_t)id;
    t->id_sym[id] = s; /* several strings with one id: the last names it, as HF's decoder does */
    return 0;
}

static pair_slot *pair_find(const sdt_tokenizer *t, int32_t a, int32_t b)
{
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t mask = t->pair_slot_count - 1;
    for (size_t slot = (size_t)hash_pair(key) & mask;; slot = (slot + 1) & mask) {
        if (t->pairs[slot].key == key)
            return &t->pairs[slot];
        if (t->pairs[slot].key == UINT64_MAX)
            return NULL;
    }
}

static bool pair_rehash(sdt_tokenizer *t)
{
    size_t count = t->pair_slot_count * 2;
    pair_slot *pairs = malloc(count * sizeof *pairs);
    if (!pairs)
        return false;
    for (size_t i = 0; i < count; i++)
        pairs[i].key = UINT64_MAX;
    for (size_t i = 0; i < t->pair_slot_count; i++) {
        if (t->pairs[i].key == UINT64_MAX)
            continue;
        size_t slot = (size_t)hash_pair(t->pairs[i].key) & (count - 1);
        while (pairs[slot].key != UINT64_MAX)
            slot = (slot + 1) & (count - 1);
        pairs[slot] = t->pairs[i];
    }
    free(t->pairs);
    t->pairs = pairs;
    t->pair_slot_count = count;
    return true;
}

/* Records merge a + b (rank = its position in the list). A pair listed twice keeps its last rank, as
 * transformers' dict(zip(merges, range(...))) does. */
static int add_merge(sdt_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen, int32_t rank)
{
    char stack[256];
    char *ab = alen + blen <= sizeof stack ? stack : malloc(alen + blen);
    if (!ab)
        return -1;
    memcpy(ab, a, alen);
    memcpy(ab + alen, b, blen);
    int32_t sa = sym_intern(t, a, alen), sb = sa >= 0 ? sym_intern(t, b, blen) : -1;
    int32_t sab = sb >= 0 ? sym_intern(t, ab, alen + blen) : -1;
    if (ab != stack)
        free(ab);
    if (sab < 0)
        return -1;
    pair_slot *p = pair_find(t, sa, sb);
    if (!p) {
        if ((t->npairs + 1) * 2 > t->pair_slot_count && !pair_rehash(t))
            return -1;
        uint64_t key = (uint64_t)(uint32_t)sa << 32 | (uint32_t)sb;
        size_t mask = t->pair_slot_count - 1;
        size_t slot = (size_t)hash_pair(key) & mask;
        while (t->pairs[slot].key != UINT64_MAX)
            slot = (slot + 1) & mask;
        p = &t->pairs[slot];
        p->key = key;
        t->npairs++;
    }
    p->rank = rank;
    p->merged = sab;
    return 0;
}

/* After the vocabulary and merges: the byte symbols BPE starts from, and the special ids. */
static int finish(sdt_tokenizer *t, const char *name, char **error)
{
    uint32_t cp[256];
    unsigned char order[256];
    bytes_to_unicode(cp, order);
    for (int b = 0; b < 256; b++) {
        unsigned char s[8];
        size_t n = sdt_tok_encode_utf8(cp[b], s);
        memcpy(s + n, "</w>", 4);
        t->byte_sym[b] = sym_intern(t, (const char *)s, n);
        t->byte_end_sym[b] = sym_intern(t, (const char *)s, n + 4);
        if (t->byte_sym[b] < 0 || t->byte_end_sym[b] < 0)
            return fail(error, "%s: out of memory", name);
    }
    int32_t bos = sym_find(t, BOS_TEXT, strlen(BOS_TEXT)), eos = sym_find(t, EOS_TEXT, strlen(EOS_TEXT));
    if (bos < 0 || t->syms[bos].id < 0)
        return fail(error, "%s: the vocabulary has no %s token", name, BOS_TEXT);
    if (eos < 0 || t->syms[eos].id < 0)
        return fail(error, "%s: the vocabulary has no %s token", name, EOS_TEXT);
    t->bos_id = t->syms[bos].id;
    t->eos_id = t->syms[eos].id;
    return 0;
}

/* ---- files -------------------------------------------------------------------------------------------- */

/* Reads a whole file, gunzipping it when it is gzip-compressed (zlib passes other files through). */
static int read_file(const char *path, char **data, size_t *len, char **error)
{
    errno = 0;
    gzFile f = gzopen(path, "rb");
    if (!f)
        return fail(error, "%s: cannot open: %s", path, errno ? strerror(errno) : "out of memory");
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (cap - n < 65536) {
            cap = cap ? cap * 2 : 1 << 20;
            char *bigger = realloc(buf, cap + 1);
            if (!bigger) {
                free(buf);
                gzclose(f);
                return fail(error, "%s: out of memory", path);
            }
            buf = bigger;
        }
        int got = gzread(f, buf + n, (unsigned)(cap - n));
        if (got < 0) {
            int code;
            const char *msg = gzerror(f, &code);
            char *copy = sdt_format("%s: cannot read: %s", path, code == Z_ERRNO ? strerror(errno) : msg);
            free(buf);
            gzclose(f);
            if (error)
                *error = copy;
            else
                free(copy);
            return -1;
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    gzclose(f);
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return 0;
}

static size_t line_of(const char *text, size_t offset)
{
    size_t line = 1;
    for (size_t i = 0; i < offset; i++)
        line += text[i] == '\n';
    return line;
}

static int check_utf8(const char *name, const char *text, size_t len, char **error)
{
    sdt_cps scratch = {0};
    size_t bad = sdt_tok_decode_utf8(text, len, &scratch);
    sdt_cps_free(&scratch);
    if (bad < len)
        return fail(error, "%s:%zu: not valid UTF-8 (byte %zu)", name, line_of(text, bad), bad);
    return 0;
}

/* ---- vocab.json --------------------------------------------------------------------------------------- */

/* vocab.json is one flat JSON object from token strings to ids. It is read here rather than with a
 * general JSON library so that every error can name its line. */
typedef struct json_reader {
    const char *path, *s;
    size_t n, i, line;
    char **error;
    char *str; /* the last string read, NUL-terminated */
    size_t str_len, str_cap;
} json_reader;

static int json_fail(json_reader *r, const char *what)
{
    if (r->i >= r->n)
        return fail(r->error, "%s:%zu: %s (the file ends early)", r->path, r->line, what);
    return fail(r->error, "%s:%zu: %s", r->path, r->line, what);
}

static void json_space(json_reader *r)
{
    for (; r->i < r->n; r->i++) {
        char c = r->s[r->i];
        if (c == '\n')
            r->line++;
        else if (c != ' ' && c != '\t' && c != '\r')
            break;
    }
}

static bool json_put(json_reader *r, const void *bytes, size_t len)
{
    if (r->str_len + len + 1 > r->str_cap) {
        size_t cap = r->str_cap ? r->str_cap * 2 : 256;
        while (cap < r->str_len + len + 1)
            cap *= 2;
        char *str = realloc(r->str, cap);
        if (!str)
            return false;
        r->str = str;
        r->str_cap = cap;
    }
    memcpy(r->str + r->str_len, bytes, len);
    r->str_len += len;
    r->str[r->str_len] = '\0';
    return true;
}

static int json_hex4(json_reader *r, uint32_t *value)
{
    *value = 0;
    for (int k = 0; k < 4; k++, r->i++) {
        char c = r->i < r->n ? r->s[r->i] : '\0';
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return json_fail(r, "a \\u escape needs four hex digits");
        *value = *value * 16 + (uint32_t)d;
    }
    return 0;
}

static int json_string(json_reader *r)
{
    r->str_len = 0;
    if (!json_put(r, "", 0))
        return json_fail(r, "out of memory");
    if (r->i >= r->n || r->s[r->i] != '"')
        return json_fail(r, "expected a token string in double quotes");
    r->i++;
    for (;;) {
        if (r->i >= r->n)
            return json_fail(r, "unterminated string");
        unsigned char c = (unsigned char)r->s[r->i];
        if (c == '"') {
            r->i++;
            return 0;
        }
        if (c < 0x20)
            return json_fail(r, "control character inside a string (write it as an escape)");
        if (c != '\\') {
            if (!json_put(r, &c, 1))
                return json_fail(r, "out of memory");
            r->i++;
            continue;
        }
        r->i++;
        char e = r->i < r->n ? r->s[r->i] : '\0';
        static const char escapes[] = "\"\\/bfnrt", meanings[] = "\"\\/\b\f\n\r\t";
        const char *simple = e ? strchr(escapes, e) : NULL;
        if (simple) {
            r->i++;
            if (!json_put(r, &meanings[simple - escapes], 1))
                return json_fail(r, "out of memory");
            continue;
        }
        if (e != 'u')
            return json_fail(r, "unknown escape in a string");
        r->i++;
        uint32_t cp, low;
        if (json_hex4(r, &cp) != 0)
            return -1;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (r->i + 1 >= r->n || r->s[r->i] != '\\' || r->s[r->i + 1] != 'u')
                return json_fail(r, "a \\u escape of a lone UTF-16 surrogate is not a character");
            r->i += 2;
            if (json_hex4(r, &low) != 0)
                return -1;
            if (low < 0xDC00 || low > 0xDFFF)
                return json_fail(r, "a \\u escape of a lone UTF-16 surrogate is not a character");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return json_fail(r, "a \\u escape of a lone UTF-16 surrogate is not a character");
        }
        unsigned char utf8[4];
        if (!json_put(r, utf8, sdt_tok_encode_utf8(cp, utf8)))
            return json_fail(r, "out of memory");
    }
}

static int json_id(json_reader *r, int64_t *id)
{
    size_t start = r->i;
    bool negative = r->i < r->n && r->s[r->i] == '-';
    if (negative)
        r->i++;
    int64_t v = 0;
    size_t digits = 0;
    while (r->i < r->n && r->s[r->i] >= '0' && r->s[r->i] <= '9') {
        if (v <= MAX_ID)
            v = v * 10 + (r->s[r->i] - '0');
        r->i++;
        digits++;
    }
    char next = r->i < r->n ? r->s[r->i] : '\0';
    if (digits == 0) {
        r->i = start;
        return json_fail(r, "expected an integer id");
    }
    if (next == '.' || next == 'e' || next == 'E')
        return json_fail(r, "a token id must be an integer");
    if ((digits > 1 && r->s[start + negative] == '0'))
        return json_fail(r, "a number with a leading zero is not JSON");
    if (negative)
        return json_fail(r, "a token id must not be negative");
    if (v > MAX_ID)
        return json_fail(r, "token id too large (ids above 16777215 are not supported)");
    *id = v;
    return 0;
}

static int parse_vocab(sdt_tokenizer *t, const char *path, const char *text, size_t len, char **error)
{
    if (check_utf8(path, text, len, error) != 0)
        return -1;
    json_reader r = {.path = path, .s = text, .n = len, .line = 1, .error = error};
    int rc = -1;
    json_space(&r);
    if (r.i >= r.n || r.s[r.i] != '{') {
        json_fail(&r, "expected a JSON object ('{') mapping tokens to ids");
        goto done;
    }
    r.i++;
    json_space(&r);
    if (r.i < r.n && r.s[r.i] == '}') {
        r.i++;
    } else {
        for (;;) {
            json_space(&r);
            if (json_string(&r) != 0)
                goto done;
            json_space(&r);
            if (r.i >= r.n || r.s[r.i] != ':') {
                json_fail(&r, "expected ':' after the token string");
                goto done;
            }
            r.i++;
            json_space(&r);
            int64_t id = 0;
            if (json_id(&r, &id) != 0)
                goto done;
            if (set_id(t, r.str, r.str_len, id) != 0) {
                json_fail(&r, "out of memory");
                goto done;
            }
            json_space(&r);
            if (r.i < r.n && r.s[r.i] == ',') {
                r.i++;
                continue;
            }
            if (r.i < r.n && r.s[r.i] == '}') {
                r.i++;
                break;
            }
            json_fail(&r, "expected ',' or '}' after a token id");
            goto done;
        }
    }
    json_space(&r);
    if (r.i < r.n) {
        json_fail(&r, "unexpected text after the JSON object");
        goto done;
    }
    rc = 0;
done:
    free(r.str);
    return rc;
}

/* ---- merge lists -------------------------------------------------------------------------------------- */

/* Walks a merge list: line 1 is a header, then one "first second" merge per line. Takes the first
 * max_merges merges (0: all) and calls add for each. Trailing blank lines end the list (transformers
 * strips the file); a blank line inside it is an error. Returns the number of merges read, or -1. */
typedef int (*merge_fn)(sdt_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen,
                        int32_t rank);

static long parse_merges(sdt_tokenizer *t, const char *name, const char *text, size_t len, size_t max_merges,
                         bool want_version, merge_fn add, char **error)
{
    if (check_utf8(name, text, len, error) != 0)
        return -1;
    size_t end = len;
    while (end > 0 &&
           (text[end - 1] == '\n' || text[end - 1] == '\r' || text[end - 1] == ' ' || text[end - 1] == '\t'))
        end--;
    size_t pos = 0, line = 0;
    long count = 0;
    while (pos < end && (max_merges == 0 || (size_t)count < max_merges)) {
        size_t eol = pos;
        while (eol < end && text[eol] != '\n')
            eol++;
        size_t a = pos, b = eol;
        pos = eol + 1;
        line++;
        if (line == 1) {
            if (want_version && (b - a < 8 || memcmp(text + a, "#version", 8) != 0))
                return fail(error, "%s:1: expected the header line \"#version: ...\" of a merges.txt", name);
            continue;
        }
        /* Fields are separated by spaces or tabs; '\r' of CRLF files is whitespace too, as for str.split. */
        const char *field[3];
        size_t flen[3], nf = 0;
        for (size_t i = a; i < b;) {
            while (i < b && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r'))
                i++;
            if (i >= b)
                break;
            size_t s = i;
            while (i < b && text[i] != ' ' && text[i] != '\t' && text[i] != '\r')
                i++;
            if (nf < 3) {
                field[nf] = text + s;
                flen[nf] = i - s;
            }
            nf++;
        }
        if (nf != 2)
            return fail(error, "%s:%zu: expected a merge: two symbols separated by a space, found %s", name,
                        line,
                        nf == 0   ? "an empty line"
                        : nf == 1 ? "one"
                                  : "more than two");
        if (add(t, field[0], flen[0], field[1], flen[1], (int32_t)count) != 0)
            return fail(error, "%s:%zu: out of memory", name, line);
        count++;
        if (count > INT32_MAX - 1024)
            return fail(error, "%s:%zu: too many merges", name, line);
    }
    if (line == 0)
        return fail(error, "%s: empty merge list (expected a header line, then merges)", name);
    return count;
}

/* The derived vocabulary's merge entries: id = 512 + rank, the merge's two halves joined. */
static int add_merge_token(sdt_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen,
                           int32_t rank)
{
    char stack[256];
    char *ab = alen + blen <= sizeof stack ? stack : malloc(alen + blen);
    if (!ab)
        return -1;
    memcpy(ab, a, alen);
    memcpy(ab + alen, b, blen);
    int rc = set_id(t, ab, alen + blen, 512 + (int64_t)rank);
    if (ab != stack)
        free(ab);
    return rc;
}

int sdt_tokenizer_load(const char *vocab_path, const char *merges_path, sdt_tokenizer **out, char **error)
{
    *out = NULL;
    sdt_tokenizer *t = tokenizer_new();
    if (!t)
        return fail(error, "%s: out of memory", vocab_path);
    char *text = NULL;
    size_t len = 0;
    int rc = read_file(vocab_path, &text, &len, error);
    if (rc == 0)
        rc = parse_vocab(t, vocab_path, text, len, error);
    free(text);
    text = NULL;
    if (rc == 0)
        rc = read_file(merges_path, &text, &len, error);
    if (rc == 0)
        rc = parse_merges(t, merges_path, text, len, SDT_TOKENIZER_CLIP_MERGES, true, add_merge, error) < 0
                 ? -1
                 : 0;
    free(text);
    if (rc == 0)
        rc = finish(t, vocab_path, error);
    if (rc != 0) {
        sdt_tokenizer_free(t);
        return -1;
    }
    *out = t;
    return 0;
}

int sdt_tokenizer_load_merge_list(const char *name, const char *text, size_t len, size_t n_merges,
                                  sdt_tokenizer **out, char **error)
{
    *out = NULL;
    sdt_tokenizer *t = tokenizer_new();
    if (!t)
        return fail(error, "%s: out of memory", name);
    /* The vocabulary first, in openai's order: bytes, bytes + "</w>", merges, the two specials. */
    uint32_t cp[256];
    unsigned char order[256];
    bytes_to_unicode(cp, order);
    int rc = 0;
    for (int k = 0; k < 512 && rc == 0; k++) {
        unsigned char s[8];
        size_t n = sdt_tok_encode_utf8(cp[order[k % 256]], s);
        if (k >= 256) {
            memcpy(s + n, "</w>", 4);
            n += 4;
        }
        rc = set_id(t, (const char *)s, n, k);
    }
    if (rc != 0) {
        sdt_tokenizer_free(t);
        return fail(error, "%s: out of memory", name);
    }
    long count = parse_merges(t, name, text, len, n_merges, false, add_merge_token, error);
    if (count >= 0 && n_merges && (size_t)count < n_merges) {
        fail(error, "%s: only %ld merges, expected %zu", name, count, n_merges);
        count = -1;
    }
    if (count >= 0 && (set_id(t, BOS_TEXT, strlen(BOS_TEXT), 512 + (int64_t)count) != 0 ||
                       set_id(t, EOS_TEXT, strlen(EOS_TEXT), 513 + (int64_t)count) != 0)) {
        fail(error, "%s: out of memory", name);
        count = -1;
    }
    /* Then the merges proper; a second pass, since ranks need the symbols only. */
    if (count >= 0)
        count = parse_merges(t, name, text, len, (size_t)count, false, add_merge, error);
    if (count < 0 || finish(t, name, error) != 0) {
        sdt_tokenizer_free(t);
        return -1;
    }
    *out = t;
    return 0;
}

int sdt_tokenizer_load_merge_file(const char *path, size_t n_merges, sdt_tokenizer **out, char **error)
{
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    if (read_file(path, &text, &len, error) != 0)
        return -1;
    int rc = sdt_tokenizer_load_merge_list(path, text, len, n_merges, out, error);
    free(text);
    return rc;
}

/* ---- BPE ---------------------------------------------------------------------------------------------- */

int32_t sdt_tokenizer_bos(const sdt_tokenizer *t) { return t->bos_id; }
int32_t sdt_tokenizer_eos(const sdt_tokenizer *t) { return t->eos_id; }
size_t sdt_tokenizer_vocab_size(const sdt_tokenizer *t) { return t->vocab_size; }

const char *sdt_tokenizer_token(const sdt_tokenizer *t, int32_t id)
{
    if (id < 0 || (size_t)id >= t->id_count || t->id_sym[id] < 0)
        return NULL;
    return t->pool + t->syms[t->id_sym[id]].off;
}

/* A growable list of ids. */
typedef struct id_list {
    int32_t *v;
    size_t n, cap;
    bool failed;
} id_list;

static void ids_push(id_list *l, int32_t id)
{
    if (l->failed)
        return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        int32_t *v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            l->failed = true;
            return;
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = id;
}

static void cache_clear(sdt_tokenizer *t)
{
    memset(t->cache, 0, CACHE_SLOTS * sizeof *t->cache);
    t->cache_words = 0;
    t->cache_keys_len = 0;
    t->cache_ids_len = 0;
}

static const cache_slot *cache_find(const sdt_tokenizer *t, const char *word, size_t len, uint64_t h)
{
    for (size_t slot = (size_t)h & (CACHE_SLOTS - 1);; slot = (slot + 1) & (CACHE_SLOTS - 1)) {
        const cache_slot *c = &t->cache[slot];
        if (!c->used)
            return NULL;
        if (c->hash == h && c->key_len == len && memcmp(t->cache_keys + c->key_off, word, len) == 0)
            return c;
    }
}

/* Remembers a word's ids; a failure to grow only means the word is not cached. */
static void cache_add(sdt_tokenizer *t, const char *word, size_t len, uint64_t h, const int32_t *ids,
                      size_t n)
{
    if (t->cache_words >= CACHE_MAX_WORDS || t->cache_keys_len + len > CACHE_MAX_BYTES)
        cache_clear(t);
    if (len > CACHE_MAX_BYTES)
        return;
    if (t->cache_keys_len + len > t->cache_keys_cap) {
        size_t cap = t->cache_keys_cap ? t->cache_keys_cap : 1 << 14;
        while (cap < t->cache_keys_len + len)
            cap *= 2;
        char *keys = realloc(t->cache_keys, cap);
        if (!keys)
            return;
        t->cache_keys = keys;
        t->cache_keys_cap = cap;
    }
    if (t->cache_ids_len + n > t->cache_ids_cap) {
        size_t cap = t->cache_ids_cap ? t->cache_ids_cap : 1 << 14;
        while (cap < t->cache_ids_len + n)
            cap *= 2;
        int32_t *v = realloc(t->cache_ids, cap * sizeof *v);
        if (!v)
            return;
        t->cache_ids = v;
        t->cache_ids_cap = cap;
    }
    size_t slot = (size_t)h & (CACHE_SLOTS - 1);
    while (t->cache[slot].used)
        slot = (slot + 1) & (CACHE_SLOTS - 1);
    t->cache[slot] = (cache_slot){
        h, (uint32_t)t->cache_keys_len, (uint32_t)len, (uint32_t)t->cache_ids_len, (uint32_t)n, true};
    memcpy(t->cache_keys + t->cache_keys_len, word, len);
    t->cache_keys_len += len;
    if (n)
        memcpy(t->cache_ids + t->cache_ids_len, ids, n * sizeof *ids);
    t->cache_ids_len += n;
    t->cache_words++;
}

static int32_t sym_output(const sdt_tokenizer *t, int32_t s)
{
    /* A string outside the vocabulary becomes the unknown token, which for CLIP is <|endoftext|>. */
    return t->syms[s].id >= 0 ? t->syms[s].id : t->eos_id;
}

/* The ids of one pre-token (its UTF-8 bytes), appended to out: transformers' CLIPTokenizer.bpe. */
static int bpe_word(sdt_tokenizer *t, const char *word, size_t len, id_list *out)
{
    /* The two special strings are pre-seeded in transformers' BPE cache: they map to themselves. */
    if ((len == strlen(BOS_TEXT) && memcmp(word, BOS_TEXT, len) == 0) ||
        (len == strlen(EOS_TEXT) && memcmp(word, EOS_TEXT, len) == 0)) {
        ids_push(out, sym_output(t, sym_find(t, word, len)));
        return 0;
    }
    uint64_t h = hash_bytes(word, len);
    const cache_slot *hit = cache_find(t, word, len, h);
    if (hit) {
        for (uint32_t k = 0; k < hit->ids_len; k++)
            ids_push(out, t->cache_ids[hit->ids_off + k]);
        return 0;
    }
    int32_t stack[64];
    int32_t *w = len <= 64 ? stack : malloc(len * sizeof *w);
    if (!w)
        return -1;
    /* Symbols start as single bytes; the last carries the end-of-word mark. */
    size_t m = len;
    for (size_t k = 0; k < len; k++)
        w[k] = k + 1 < len ? t->byte_sym[(unsigned char)word[k]] : t->byte_end_sym[(unsigned char)word[k]];
    while (m > 1) {
        /* The adjacent pair with the lowest rank, then every occurrence of it, left to right. */
        const pair_slot *best = NULL;
        for (size_t k = 0; k + 1 < m; k++) {
            const pair_slot *p = pair_find(t, w[k], w[k + 1]);
            if (p && (!best || p->rank < best->rank))
                best = p;
        }
        if (!best)
            break;
        int32_t a = (int32_t)(best->key >> 32), b = (int32_t)(uint32_t)best->key;
        size_t j = 0;
        for (size_t k = 0; k < m;) {
            if (k + 1 < m && w[k] == a && w[k + 1] == b) {
                w[j++] = best->merged;
                k += 2;
            } else {
                w[j++] = w[k++];
            }
        }
        m = j;
    }
    for (size_t k = 0; k < m; k++)
        w[k] = sym_output(t, w[k]);
    for (size_t k = 0; k < m; k++)
        ids_push(out, w[k]);
    cache_add(t, word, len, h, w, m);
    if (w != stack)
        free(w);
    return 0;
}

/* One stretch of text between special tokens: cleanup, pre-tokens, BPE. */
static int encode_piece(sdt_tokenizer *t, const char *text, size_t len, id_list *out)
{
    sdt_cps raw = {0}, clean = {0};
    sdt_tok_decode_utf8(text, len, &raw);
    int rc = raw.failed ? -1 : sdt_tok_normalize(raw.v, raw.n, &clean);
    unsigned char stack[256];
    size_t pos = 0, start, end;
    while (rc == 0 && sdt_tok_next_piece(clean.v, clean.n, &pos, &start, &end)) {
        unsigned char *bytes = (end - start) * 4 <= sizeof stack ? stack : malloc((end - start) * 4);
        if (!bytes) {
            rc = -1;
            break;
        }
        size_t n = 0;
        for (size_t k = start; k < end; k++)
            n += sdt_tok_encode_utf8(clean.v[k], bytes + n);
        rc = bpe_word(t, (const char *)bytes, n, out);
        if (bytes != stack)
            free(bytes);
    }
    sdt_cps_free(&raw);
    sdt_cps_free(&clean);
    return rc;
}

/* The longest special token that starts at text[i] (its id in *id), or 0. */
static size_t special_at(const sdt_tokenizer *t, const char *text, size_t len, size_t i, int32_t *id)
{
    size_t best = 0;
    for (size_t k = 0; k < 2 + t->n_extra; k++) {
        const char *s = k == 0 ? BOS_TEXT : k == 1 ? EOS_TEXT : t->extra_text[k - 2];
        size_t n = strlen(s);
        if (n > best && len - i >= n && memcmp(text + i, s, n) == 0) {
            best = n;
            *id = k == 0 ? t->bos_id : k == 1 ? t->eos_id : t->extra_id[k - 2];
        }
    }
    return best;
}

/* transformers splits the raw text on its added tokens (the specials, matched exactly) before any
 * cleanup, and cleans each stretch between them on its own. */
static int encode_all(sdt_tokenizer *t, const char *text, size_t len, id_list *out, char **error)
{
    sdt_cps scratch = {0};
    size_t bad = sdt_tok_decode_utf8(text, len, &scratch);
    bool oom = scratch.failed;
    sdt_cps_free(&scratch);
    if (oom)
        return fail(error, "tokenizer: out of memory");
    if (bad < len)
        return fail(error, "text is not valid UTF-8 (byte %zu)", bad);
    size_t piece = 0;
    for (size_t i = 0; i <= len;) {
        int32_t special = -1;
        size_t skip = i < len ? special_at(t, text, len, i, &special) : 0;
        if (skip == 0 && i < len) {
            i++;
            continue;
        }
        if (i > piece && encode_piece(t, text + piece, i - piece, out) != 0)
            return fail(error, "tokenizer: out of memory");
        if (skip)
            ids_push(out, special);
        i += skip ? skip : 1;
        piece = i;
    }
    if (out->failed)
        return fail(error, "tokenizer: out of memory");
    return 0;
}

int sdt_tokenizer_add_special(sdt_tokenizer *t, const char *token, char **error)
{
    int32_t s = token && *token ? sym_find(t, token, strlen(token)) : -1;
    if (s < 0 || t->syms[s].id < 0)
        return fail(error, "tokenizer: \"%s\" is not in the vocabulary", token ? token : "");
    int32_t dummy;
    if (special_at(t, token, strlen(token), 0, &dummy) == strlen(token))
        return 0; /* already one */
    if (t->n_extra == SDT_TOKENIZER_MAX_SPECIALS)
        return fail(error, "tokenizer: at most %d further special tokens", SDT_TOKENIZER_MAX_SPECIALS);
    char *copy = sdt_strdup(token);
    if (!copy)
        return fail(error, "tokenizer: out of memory");
    t->extra_text[t->n_extra] = copy;
    t->extra_id[t->n_extra++] = t->syms[s].id;
    return 0;
}

int sdt_tokenizer_encode(sdt_tokenizer *t, const char *text, size_t len, int32_t **ids, size_t *count,
                         char **error)
{
    id_list out = {0};
    *ids = NULL;
    *count = 0;
    if (encode_all(t, text, len, &out, error) != 0) {
        free(out.v);
        return -1;
    }
    *ids = out.v;
    *count = out.n;
    return 0;
}

int sdt_tokenizer_encode_padded(sdt_tokenizer *t, const char *text, size_t len, size_t max_length,
                                int32_t pad_id, int32_t *out, int *truncated, char **error)
{
    if (max_length < 2)
        return fail(error, "tokenizer: max_length %zu leaves no room for BOS and EOS", max_length);
    id_list ids = {0};
    if (encode_all(t, text, len, &ids, error) != 0) {
        free(ids.v);
        return -1;
    }
    size_t keep = ids.n < max_length - 2 ? ids.n : max_length - 2;
    out[0] = t->bos_id;
    if (keep)
        memcpy(out + 1, ids.v, keep * sizeof *out);
    out[keep + 1] = t->eos_id;
    for (size_t k = keep + 2; k < max_length; k++)
        out[k] = pad_id;
    if (truncated)
        *truncated = ids.n > keep;
    free(ids.v);
    return 0;
}

int sdt_tokenizer_encode_windows(sdt_tokenizer *t, const char *text, size_t len, int max_token_length,
                                 int32_t pad_id, int32_t *out, int *n_windows, char **error)
{
    const int W = SDT_TOKENIZER_WINDOW, body = SDT_TOKENIZER_WINDOW - 2;
    if (max_token_length == 0 || max_token_length == body) {
        *n_windows = 1;
        return sdt_tokenizer_encode_padded(t, text, len, (size_t)W, pad_id, out, NULL, error);
    }
    if (max_token_length != 2 * body && max_token_length != 3 * body)
        return fail(error, "max_token_length must be 75, 150 or 225, not %d", max_token_length);
    /* sd-scripts tokenizes to max_token_length + 2 (BOS, ids, EOS, pads), then cuts windows of 75 ids
     * starting at 1, 76, 151, each framed by the first token and the LAST token of the whole vector. */
    int32_t all[3 * 75 + 2];
    size_t total = (size_t)max_token_length + 2;
    if (sdt_tokenizer_encode_padded(t, text, len, total, pad_id, all, NULL, error) != 0)
        return -1;
    int n = max_token_length / body;
    for (int w = 0; w < n; w++) {
        int32_t *win = out + (size_t)w * W;
        win[0] = all[0];
        memcpy(win + 1, all + 1 + (size_t)w * body, (size_t)body * sizeof *win);
        win[W - 1] = all[total - 1];
        if (pad_id != t->eos_id) {
            /* With a pad that is not EOS the last token is PAD whenever the ids ended early: a window
             * whose text runs to its end gets an EOS there, and an empty window starts BOS, EOS. */
            if (win[W - 2] != t->eos_id && win[W - 2] != pad_id)
                win[W - 1] = t->eos_id;
            if (win[1] == pad_id)
                win[1] = t->eos_id;
        }
    }
    *n_windows = n;
    return 0;
}

int sdt_tokenizer_normalize(const char *text, size_t len, char **out, char **error)
{
    *out = NULL;
    sdt_cps raw = {0}, clean = {0};
    size_t bad = sdt_tok_decode_utf8(text, len, &raw);
    if (bad < len) {
        sdt_cps_free(&raw);
        return fail(error, "text is not valid UTF-8 (byte %zu)", bad);
    }
    int rc = raw.failed ? -1 : sdt_tok_normalize(raw.v, raw.n, &clean);
    char *s = rc == 0 ? malloc(clean.n * 4 + 1) : NULL;
    if (s) {
        size_t n = 0;
        for (size_t k = 0; k < clean.n; k++)
            n += sdt_tok_encode_utf8(clean.v[k], (unsigned char *)s + n);
        s[n] = '\0';
    }
    sdt_cps_free(&raw);
    sdt_cps_free(&clean);
    if (!s)
        return fail(error, "tokenizer: out of memory");
    *out = s;
    return 0;
}

/* ---- finding vocab.json and merges.txt ---------------------------------------------------------------- */

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode); /* follows the cache's symlinks to blobs */
}

/* Tries folder/vocab.json + folder/merges.txt; on a miss, notes in log why. */
static bool try_folder(const char *label, const char *folder, char **vocab, char **merges, sdt_buf *log)
{
    char *v = sdt_format("%s/vocab.json", folder), *m = sdt_format("%s/merges.txt", folder);
    bool hv = v && is_file(v), hm = m && is_file(m);
    if (hv && hm) {
        *vocab = v;
        *merges = m;
        return true;
    }
    const char *why = !is_dir(folder) ? "no such folder"
                      : !hv && !hm    ? "no vocab.json or merges.txt"
                      : !hv           ? "no vocab.json"
                                      : "no merges.txt";
    sdt_buf_printf(log, "  %s %s: %s\n", label, folder, why);
    free(v);
    free(m);
    return false;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The snapshot folders of a cached repository: the one refs/main names first, then the rest by name. */
static char **list_snapshots(const char *repo_dir, size_t *count)
{
    *count = 0;
    char *dir = sdt_format("%s/snapshots", repo_dir);
    DIR *d = dir ? opendir(dir) : NULL;
    char **names = NULL;
    size_t cap = 0;
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            if (*count == cap) {
                cap = cap ? cap * 2 : 8;
                char **bigger = realloc(names, cap * sizeof *names);
                if (!bigger)
                    break;
                names = bigger;
            }
            char *name = sdt_strdup(e->d_name);
            if (name)
                names[(*count)++] = name;
        }
        closedir(d);
    }
    free(dir);
    if (*count > 1)
        qsort(names, *count, sizeof *names, compare_names);
    char *ref_path = sdt_format("%s/refs/main", repo_dir);
    FILE *f = ref_path ? fopen(ref_path, "r") : NULL;
    free(ref_path);
    if (f) {
        char ref[128] = "";
        if (fgets(ref, sizeof ref, f))
            ref[strcspn(ref, " \t\r\n")] = '\0';
        fclose(f);
        for (size_t i = 1; i < *count; i++)
            if (strcmp(names[i], ref) == 0) {
                char *main = names[i];
                memmove(names + 1, names, i * sizeof *names);
                names[0] = main;
                break;
            }
    }
    return names;
}

/* huggingface_hub's cache folder and the variable it came from. */
static char *hub_cache(const char **source)
{
    const char *hub = getenv("HF_HUB_CACHE");
    *source = "$HF_HUB_CACHE";
    if (!hub || !*hub) {
        hub = getenv("HUGGINGFACE_HUB_CACHE");
        *source = "$HUGGINGFACE_HUB_CACHE";
    }
    const char *home = getenv("HOME");
    char *base = NULL;
    if (hub && *hub) {
        base = sdt_strdup(hub);
    } else {
        const char *hf_home = getenv("HF_HOME"), *xdg = getenv("XDG_CACHE_HOME");
        if (hf_home && *hf_home) {
            base = sdt_format("%s/hub", hf_home);
            *source = "$HF_HOME";
        } else if (xdg && *xdg) {
            base = sdt_format("%s/huggingface/hub", xdg);
            *source = "$XDG_CACHE_HOME";
        } else if (home && *home) {
            base = sdt_format("%s/.cache/huggingface/hub", home);
            *source = "default";
        } else {
            return NULL;
        }
    }
    /* huggingface_hub expands a leading '~' in these variables. */
    if (base && base[0] == '~' && (base[1] == '/' || base[1] == '\0') && home && *home) {
        char *expanded = sdt_format("%s%s", home, base + 1);
        free(base);
        base = expanded;
    }
    return base;
}

static bool search_cache(const char *repo_id, char **vocab, char **merges, sdt_buf *log)
{
    const char *source;
    char *hub = hub_cache(&source);
    if (!hub) {
        sdt_buf_puts(log,
                     "  Hugging Face cache: not searched ($HF_HOME, $XDG_CACHE_HOME and $HOME are unset)\n");
        return false;
    }
    /* models--ORG--NAME: the repository id with its '/' written as "--". */
    sdt_buf name;
    sdt_buf_init(&name);
    sdt_buf_printf(&name, "%s/models--", hub);
    for (const char *p = repo_id; *p; p++)
        sdt_buf_puts(&name, *p == '/' ? "--" : (char[2]){*p, '\0'});
    char *folder = sdt_buf_take(&name);
    char *label = sdt_format("Hugging Face cache (%s)", source);
    size_t count = 0;
    char **snaps = folder ? list_snapshots(folder, &count) : NULL;
    if (folder && count == 0)
        sdt_buf_printf(log, "  %s %s/snapshots/*: %s\n", label ? label : "Hugging Face cache", folder,
                       is_dir(folder) ? "no snapshots" : "not downloaded");
    bool found = false;
    for (size_t i = 0; i < count && !found; i++) {
        char *snap = sdt_format("%s/snapshots/%s", folder, snaps[i]);
        char *sub = snap ? sdt_format("%s/tokenizer", snap) : NULL;
        found = (snap && label && try_folder(label, snap, vocab, merges, log)) ||
                (sub && label && try_folder(label, sub, vocab, merges, log));
        free(snap);
        free(sub);
    }
    for (size_t i = 0; i < count; i++)
        free(snaps[i]);
    free(snaps);
    free(folder);
    free(label);
    free(hub);
    return found;
}

int sdt_tokenizer_find(const char *configured, const char *model_dir, const char *repo_id, char **vocab_path,
                       char **merges_path, char **error)
{
    *vocab_path = *merges_path = NULL;
    if (!repo_id || !*repo_id)
        repo_id = SDT_TOKENIZER_REPO;
    sdt_buf log;
    sdt_buf_init(&log);
    bool found = false;
    if (configured && *configured) {
        struct stat st;
        if (stat(configured, &st) != 0) {
            sdt_buf_printf(&log, "  tokenizer_dir %s: does not exist\n", configured);
        } else if (S_ISDIR(st.st_mode)) {
            found = try_folder("tokenizer_dir", configured, vocab_path, merges_path, &log);
        } else {
            /* A vocab.json path: merges.txt is its neighbour. */
            const char *slash = strrchr(configured, '/');
            char *merges = slash ? sdt_format("%.*s/merges.txt", (int)(slash - configured), configured)
                                 : sdt_strdup("merges.txt");
            if (merges && is_file(merges)) {
                *vocab_path = sdt_strdup(configured);
                *merges_path = merges;
                found = *vocab_path != NULL;
            } else {
                sdt_buf_printf(&log, "  tokenizer_dir %s: no %s beside it\n", configured,
                               merges ? merges : "merges.txt");
                free(merges);
            }
        }
    }
    if (configured && *configured && !found) {
        /* An explicit setting is used or reported, never passed over for another vocabulary. */
        char *places = sdt_buf_take(&log);
        if (places && *places)
            places[strlen(places) - 1] = '\0'; /* the line's newline */
        int rc =
            fail(error,
                 "%s\ntokenizer_dir must name a folder holding vocab.json and merges.txt, or a vocab.json "
                 "with merges.txt beside it",
                 places ? places + 2 : "tokenizer_dir: out of memory");
        free(places);
        return rc;
    }
    if (!found && model_dir && *model_dir) {
        char *folder = sdt_format("%s/tokenizer", model_dir);
        found = folder && try_folder("model folder", folder, vocab_path, merges_path, &log);
        free(folder);
    }
    if (!found)
        found = search_cache(repo_id, vocab_path, merges_path, &log);
    if (found) {
        sdt_buf_free(&log);
        return 0;
    }
    sdt_buf_printf(&log,
                   "set tokenizer_dir in [model] to a folder holding vocab.json and merges.txt, or download "
                   "them into the Hugging Face cache with:\n"
                   "  huggingface-cli download %s vocab.json merges.txt",
                   repo_id);
    char *places = sdt_buf_take(&log);
    int rc = fail(error, "no CLIP tokenizer files (vocab.json and merges.txt) found; looked in:\n%s",
                  places ? places : "(out of memory)");
    free(places);
    return rc;
}

int sdt_tokenizer_open(const char *configured, const char *model_dir, const char *repo_id,
                       sdt_tokenizer **out, char **error)
{
    char *vocab, *merges;
    *out = NULL;
    if (sdt_tokenizer_find(configured, model_dir, repo_id, &vocab, &merges, error) != 0)
        return -1;
    int rc = sdt_tokenizer_load(vocab, merges, out, error);
    free(vocab);
    free(merges);
    return rc;
}
