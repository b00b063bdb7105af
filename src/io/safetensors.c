/* safetensors reader and writer (include/sdtune/safetensors.h).
 *
 * The reader maps the file and validates the header with jansson, keeping the parsed JSON alive for the
 * names; tensors point into the mapping. The writer builds the header text itself (so its exact bytes are
 * known and the reference conventions are followed) and streams each tensor to a temporary file that is
 * renamed over the destination. */
#include "sdtune/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sdtune/atomic_file.h"
#include "sdtune/strutil.h"

/* A metadata pair; the strings belong to the parsed JSON. */
typedef struct st_pair {
    const char *key, *value;
} st_pair;

struct sdt_safetensors {
    char *name;                 /* for messages */
    const unsigned char *bytes; /* the whole file */
    size_t len;
    void *map; /* non-NULL when we mapped the file ourselves */
    size_t map_len;
    uint64_t data_start; /* 8 + header length */
    json_t *root;        /* owns every name, key and value string */
    sdt_st_tensor *tensors;
    size_t n_tensors;
    const sdt_st_tensor **by_name; /* tensors sorted by name, for the binary search */
    st_pair *meta;
    size_t n_meta;
};

/* ---- messages ---------------------------------------------------------------------------------------- */

/* Sets *error to the formatted message and returns -1, so that failures are one line each. */
static int SDT_PRINTF(2, 3) fail(char **error, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    *error = sdt_vformat(fmt, args);
    va_end(args);
    return -1;
}

/* Room for a quoted name in a message: long names are cut (with "...") so one bad entry cannot make a
 * megabyte message. */
enum { QUOTED_MAX = 200 };

/* The bytes of the UTF-8 character at s (at most left bytes), or 0 when they are not a valid character. */
static size_t utf8_char_len(const unsigned char *s, size_t left)
{
    size_t want = s[0] < 0x80 ? 1 : (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3 : 4;
    if (want > left)
        return 0;
    return sdt_utf8_invalid_at((const char *)s, want) == want ? want : 0;
}

/* Writes s in double quotes into out (QUOTED_MAX bytes), control characters, quotes, backslashes and
 * invalid bytes escaped, so that a message stays one readable line whatever the file holds. */
static const char *quote(const char *s, char out[QUOTED_MAX])
{
    const unsigned char *p = (const unsigned char *)s;
    size_t left = strlen(s), pos = 0;
    out[pos++] = '"';
    while (left) {
        char esc[8];
        size_t n = 0, take = 1;
        if (*p == '"' || *p == '\\') {
            esc[n++] = '\\';
            esc[n++] = (char)*p;
        } else if (*p < 0x20 || *p == 0x7f) {
            n = (size_t)snprintf(esc, sizeof esc, "\\x%02x", *p);
        } else if (*p < 0x80) {
            esc[n++] = (char)*p;
        } else if ((take = utf8_char_len(p, left)) != 0) {
            memcpy(esc, p, take);
            n = take;
        } else {
            take = 1;
            n = (size_t)snprintf(esc, sizeof esc, "\\x%02x", *p);
        }
        if (pos + n + 5 > QUOTED_MAX) { /* keep room for ...", NUL */
            memcpy(out + pos, "...", 3);
            pos += 3;
            break;
        }
        memcpy(out + pos, esc, n);
        pos += n;
        p += take;
        left -= take;
    }
    out[pos++] = '"';
    out[pos] = '\0';
    return out;
}

/* "[2, 320, 3, 3]" (or "[]" for a scalar) into out. */
static const char *shape_text(int ndim, const int64_t *shape, char out[QUOTED_MAX])
{
    size_t pos = 0;
    out[pos++] = '[';
    out[pos] = '\0';
    for (int i = 0; i < ndim; i++)
        pos += (size_t)snprintf(out + pos, QUOTED_MAX - pos, "%s%" PRId64, i ? ", " : "", shape[i]);
    snprintf(out + pos, QUOTED_MAX - pos, "]");
    return out;
}

/* jansson's name for a value's type, for "must be X, not Y" messages. */
static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number with a fraction or exponent";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* ---- header validation ------------------------------------------------------------------------------- */

static uint64_t read_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* A non-negative integer of at most 48 bits from a JSON value; what names the value in messages is
 * "field" of tensor "tensor". */
static int read_u48(const char *file, const char *tensor, const char *field, const json_t *v, uint64_t *out,
                    char **error)
{
    char q[QUOTED_MAX];
    if (!json_is_integer(v))
        return fail(error, "%s: tensor %s: %s is %s, not an integer", file, quote(tensor, q), field,
                    json_kind(v));
    json_int_t i = json_integer_value(v);
    if (i < 0)
        return fail(error, "%s: tensor %s: %s is %lld; it must not be negative", file, quote(tensor, q),
                    field, (long long)i);
    if ((unsigned long long)i > SDT_ST_MAX_VALUE)
        return fail(error, "%s: tensor %s: %s is %lld, above the format's limit of %llu (2^48 - 1)", file,
                    quote(tensor, q), field, (long long)i, SDT_ST_MAX_VALUE);
    *out = (uint64_t)i;
    return 0;
}

/* The fields a tensor entry has, for unknown-field suggestions. */
static const char *const entry_fields[] = {"dtype", "shape", "data_offsets"};

static const char *entry_field_at(const void *ctx, size_t i)
{
    (void)ctx;
    return entry_fields[i];
}

static const char *dtype_name_at(const void *ctx, size_t i)
{
    (void)ctx;
    return sdt_dtype_name((sdt_dtype)i);
}

/* Checks one tensor entry (everything that concerns it alone) and fills *t, except data. */
static int parse_entry(const char *file, const char *name, const json_t *entry, sdt_st_tensor *t,
                       char **error)
{
    char q[QUOTED_MAX], q2[QUOTED_MAX], shape_buf[QUOTED_MAX];
    t->name = name;
    if (!json_is_object(entry))
        return fail(error, "%s: tensor %s: the entry must be a JSON object, not %s", file, quote(name, q),
                    json_kind(entry));
    for (void *it = json_object_iter((json_t *)entry); it; it = json_object_iter_next((json_t *)entry, it)) {
        const char *field = json_object_iter_key(it);
        if (strcmp(field, "dtype") && strcmp(field, "shape") && strcmp(field, "data_offsets")) {
            int near = sdt_closest_match(field, entry_field_at, NULL, 3);
            return fail(error,
                        "%s: tensor %s: unknown field %s%s%s%s; an entry has only \"dtype\", \"shape\" and "
                        "\"data_offsets\"",
                        file, quote(name, q), quote(field, q2), near >= 0 ? " (did you mean \"" : "",
                        near >= 0 ? entry_fields[near] : "", near >= 0 ? "\"?)" : "");
        }
    }
    for (size_t i = 0; i < 3; i++)
        if (!json_object_get(entry, entry_fields[i]))
            return fail(error, "%s: tensor %s: missing field \"%s\"", file, quote(name, q), entry_fields[i]);

    const json_t *dtype = json_object_get(entry, "dtype");
    if (!json_is_string(dtype))
        return fail(error, "%s: tensor %s: \"dtype\" must be a string, not %s", file, quote(name, q),
                    json_kind(dtype));
    if (sdt_dtype_from_name(json_string_value(dtype), &t->dtype) != 0) {
        int near = sdt_closest_match(json_string_value(dtype), dtype_name_at, NULL, SDT_DTYPE_COUNT);
        return fail(error, "%s: tensor %s: unknown dtype %s%s%s%s", file, quote(name, q),
                    quote(json_string_value(dtype), q2), near >= 0 ? " (did you mean \"" : "",
                    near >= 0 ? sdt_dtype_name((sdt_dtype)near) : "", near >= 0 ? "\"?)" : "");
    }

    const json_t *shape = json_object_get(entry, "shape");
    if (!json_is_array(shape))
        return fail(error, "%s: tensor %s: \"shape\" must be an array of integers, not %s", file,
                    quote(name, q), json_kind(shape));
    if (json_array_size(shape) > SDT_ST_MAX_DIMS)
        return fail(error, "%s: tensor %s: shape has %zu dimensions; at most %d are supported", file,
                    quote(name, q), json_array_size(shape), SDT_ST_MAX_DIMS);
    t->ndim = (int)json_array_size(shape);
    bool zero = false;
    for (int i = 0; i < t->ndim; i++) {
        char what[32];
        snprintf(what, sizeof what, "shape[%d]", i);
        uint64_t d;
        if (read_u48(file, name, what, json_array_get(shape, (size_t)i), &d, error) != 0)
            return -1;
        t->shape[i] = (int64_t)d;
        zero = zero || d == 0;
    }

    const json_t *offsets = json_object_get(entry, "data_offsets");
    if (!json_is_array(offsets) || json_array_size(offsets) != 2)
        return fail(
            error, "%s: tensor %s: \"data_offsets\" must be an array of two integers [BEGIN, END], not %s",
            file, quote(name, q), json_is_array(offsets) ? "an array of another length" : json_kind(offsets));
    uint64_t begin, stop;
    if (read_u48(file, name, "data_offsets[0]", json_array_get(offsets, 0), &begin, error) != 0 ||
        read_u48(file, name, "data_offsets[1]", json_array_get(offsets, 1), &stop, error) != 0)
        return -1;
    if (stop < begin)
        return fail(error, "%s: tensor %s: data_offsets [%" PRIu64 ", %" PRIu64 "] end before they begin",
                    file, quote(name, q), begin, stop);

    /* Element count and size. A zero dimension makes the count 0 whatever the others are. */
    uint64_t count = 1;
    for (int i = 0; i < t->ndim && !zero; i++) {
        uint64_t d = (uint64_t)t->shape[i];
        if (count > UINT64_MAX / d)
            return fail(error, "%s: tensor %s: the element count of shape %s overflows 64 bits", file,
                        quote(name, q), shape_text(t->ndim, t->shape, shape_buf));
        count *= d;
    }
    if (zero)
        count = 0;
    unsigned bits = sdt_dtype_bits(t->dtype);
    if (count > UINT64_MAX / bits)
        return fail(error, "%s: tensor %s: the size in bits of %s %s overflows 64 bits", file, quote(name, q),
                    sdt_dtype_name(t->dtype), shape_text(t->ndim, t->shape, shape_buf));
    uint64_t total_bits = count * bits;
    if (total_bits % 8 != 0)
        return fail(error,
                    "%s: tensor %s: %s %s is %" PRIu64 " bits, not a whole number of bytes (sub-byte tensors "
                    "must fill their last byte)",
                    file, quote(name, q), sdt_dtype_name(t->dtype), shape_text(t->ndim, t->shape, shape_buf),
                    total_bits);
    uint64_t needed = total_bits / 8;
    if (stop - begin != needed)
        return fail(error,
                    "%s: tensor %s: data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64
                    " bytes but %s %s needs "
                    "%" PRIu64,
                    file, quote(name, q), begin, stop, stop - begin, sdt_dtype_name(t->dtype),
                    shape_text(t->ndim, t->shape, shape_buf), needed);
    t->count = count;
    t->offset = begin;
    t->nbytes = (size_t)needed;
    return 0;
}

/* File order: by begin, then end (a zero-sized tensor before the one starting at the same place), then
 * name, so that the order is the same on every run. */
static int by_offset(const void *a, const void *b)
{
    const sdt_st_tensor *x = a, *y = b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes)
        return x->nbytes < y->nbytes ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int by_name(const void *a, const void *b)
{
    const sdt_st_tensor *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

static int pair_by_key(const void *a, const void *b)
{
    const st_pair *x = a, *y = b;
    return strcmp(x->key, y->key);
}

/* jansson's message for a rejected duplicate key ends with "near '"name"'"; the quoted name is the useful
 * part. Returns a pointer into text and its length, or NULL. */
static const char *duplicate_key_text(const char *text, size_t *len)
{
    const char *near = strstr(text, "near '");
    if (!near)
        return NULL;
    near += 6;
    size_t n = strlen(near);
    if (n < 3 || near[n - 1] != '\'')
        return NULL;
    *len = n - 1;
    return near;
}

/* "__metadata__": an object whose values are all strings. */
static int parse_metadata(sdt_safetensors *st, const json_t *meta, char **error)
{
    char q[QUOTED_MAX];
    if (!json_is_object(meta))
        return fail(error, "%s: \"__metadata__\" must be an object of strings, not %s", st->name,
                    json_kind(meta));
    st->n_meta = json_object_size(meta);
    st->meta = calloc(st->n_meta ? st->n_meta : 1, sizeof *st->meta);
    if (!st->meta)
        return fail(error, "%s: out of memory", st->name);
    size_t i = 0;
    for (void *it = json_object_iter((json_t *)meta); it; it = json_object_iter_next((json_t *)meta, it)) {
        const char *key = json_object_iter_key(it);
        const json_t *value = json_object_iter_value(it);
        if (!json_is_string(value))
            return fail(error, "%s: \"__metadata__\" value of %s must be a string, not %s", st->name,
                        quote(key, q), json_kind(value));
        st->meta[i].key = key;
        st->meta[i].value = json_string_value(value);
        i++;
    }
    qsort(st->meta, st->n_meta, sizeof *st->meta, pair_by_key);
    return 0;
}

/* Every rule of the format (spec 8.3) over st->bytes; on success the tensor table, the name index and the
 * metadata are built. */
static int parse(sdt_safetensors *st, char **error)
{
    const char *file = st->name;
    char q[QUOTED_MAX], q2[QUOTED_MAX];
    if (st->len < 8)
        return fail(error,
                    "%s: the file is %zu bytes, shorter than the 8-byte header length every safetensors file "
                    "starts with",
                    file, st->len);
    uint64_t n = read_le64(st->bytes);
    if (n > SDT_ST_MAX_HEADER_SIZE)
        return fail(error,
                    "%s: header length %" PRIu64 " exceeds the format's limit of %llu bytes (is this a "
                    "safetensors file?)",
                    file, n, SDT_ST_MAX_HEADER_SIZE);
    if (n > st->len - 8)
        return fail(error, "%s: header length %" PRIu64 " runs past the end of the file (%zu bytes)", file, n,
                    st->len);
    const char *header = (const char *)st->bytes + 8;
    size_t header_len = (size_t)n;
    st->data_start = 8 + n;
    if (header_len == 0)
        return fail(error, "%s: the header is empty; it must be a JSON object beginning with '{'", file);
    size_t bad = sdt_utf8_invalid_at(header, header_len);
    if (bad < header_len)
        return fail(error,
                    "%s: the header is not valid UTF-8 (byte %zu of the header, offset %zu of the file)",
                    file, bad, bad + 8);
    if (header[0] != '{') {
        unsigned char c = (unsigned char)header[0];
        if (c >= 0x20 && c < 0x7f)
            return fail(error, "%s: the header must begin with '{' (it begins with '%c')", file, c);
        return fail(error, "%s: the header must begin with '{' (it begins with byte 0x%02x)", file, c);
    }

    json_error_t jerr;
    st->root = json_loadb(header, header_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!st->root) {
        size_t dup_len;
        const char *dup = duplicate_key_text(jerr.text, &dup_len);
        if (json_error_code(&jerr) == json_error_duplicate_key && dup)
            return fail(error,
                        "%s: header line %d, column %d: duplicate name %.*s: each tensor name, metadata key "
                        "and field may appear only once",
                        file, jerr.line, jerr.column, (int)dup_len, dup);
        /* jansson says "end of file expected" when padding is not whitespace: say what is allowed. */
        const char *hint = json_error_code(&jerr) == json_error_end_of_input_expected
                               ? "; only spaces may follow the object (padding)"
                               : "";
        return fail(error, "%s: the header is not valid JSON: %s (line %d, column %d)%s", file, jerr.text,
                    jerr.line, jerr.column, hint);
    }
    if (!json_is_object(st->root)) /* cannot happen after the '{' test, but costs nothing */
        return fail(error, "%s: the header must be a JSON object", file);

    size_t entries = json_object_size(st->root);
    st->tensors = calloc(entries ? entries : 1, sizeof *st->tensors);
    if (!st->tensors)
        return fail(error, "%s: out of memory", file);
    for (void *it = json_object_iter(st->root); it; it = json_object_iter_next(st->root, it)) {
        const char *key = json_object_iter_key(it);
        const json_t *value = json_object_iter_value(it);
        if (strcmp(key, "__metadata__") == 0) {
            if (parse_metadata(st, value, error) != 0)
                return -1;
            continue;
        }
        if (parse_entry(file, key, value, &st->tensors[st->n_tensors], error) != 0)
            return -1;
        st->n_tensors++;
    }

    /* The tensors must tile [0, data length) in offset order. */
    qsort(st->tensors, st->n_tensors, sizeof *st->tensors, by_offset);
    uint64_t data_len = (uint64_t)st->len - st->data_start;
    uint64_t expected = 0;
    for (size_t i = 0; i < st->n_tensors; i++) {
        const sdt_st_tensor *t = &st->tensors[i];
        uint64_t begin = t->offset, end = t->offset + t->nbytes;
        if (begin != expected) {
            if (i == 0)
                return fail(error,
                            "%s: tensor %s: data_offsets [%" PRIu64 ", %" PRIu64 "] do not begin at 0: the "
                            "tensors must tile the data buffer from its first byte",
                            file, quote(t->name, q), begin, end);
            const sdt_st_tensor *prev = &st->tensors[i - 1];
            return fail(error,
                        "%s: tensor %s: data_offsets [%" PRIu64 ", %" PRIu64 "] %s tensor %s, which ends at "
                        "%" PRIu64 ": the tensors must tile the data buffer with no gap or overlap",
                        file, quote(t->name, q), begin, end,
                        begin > expected ? "leave a gap after" : "overlap", quote(prev->name, q2), expected);
        }
        if (end > data_len)
            return fail(error,
                        "%s: tensor %s: data_offsets [%" PRIu64 ", %" PRIu64
                        "] run past the end of the file: "
                        "the data buffer holds %" PRIu64 " bytes (is the file truncated?)",
                        file, quote(t->name, q), begin, end, data_len);
        expected = end;
    }
    if (expected != data_len)
        return fail(error,
                    "%s: %" PRIu64 " trailing bytes after the tensors: the data buffer is %" PRIu64
                    " bytes but the tensors end at %" PRIu64,
                    file, data_len - expected, data_len, expected);

    st->by_name = malloc((st->n_tensors ? st->n_tensors : 1) * sizeof *st->by_name);
    if (!st->by_name)
        return fail(error, "%s: out of memory", file);
    for (size_t i = 0; i < st->n_tensors; i++) {
        st->tensors[i].data = st->bytes + st->data_start + st->tensors[i].offset;
        st->by_name[i] = &st->tensors[i];
    }
    qsort(st->by_name, st->n_tensors, sizeof *st->by_name, by_name);
    return 0;
}

/* ---- reader API ------------------------------------------------------------------------------------- */

/* A new handle over bytes (mapped or the caller's), parsed; closed again on failure. */
static int open_bytes(const void *data, size_t len, const char *name, void *map, size_t map_len,
                      sdt_safetensors **out, char **error)
{
    sdt_safetensors *st = calloc(1, sizeof *st);
    char *copy = sdt_strdup(name);
    if (!st || !copy) {
        free(st);
        free(copy);
        if (map)
            munmap(map, map_len);
        return fail(error, "%s: out of memory", name);
    }
    st->name = copy;
    st->bytes = data;
    st->len = len;
    st->map = map;
    st->map_len = map_len;
    if (parse(st, error) != 0) {
        sdt_safetensors_close(st);
        return -1;
    }
    *out = st;
    return 0;
}

int sdt_safetensors_open_memory(const void *data, size_t len, const char *name_for_messages,
                                sdt_safetensors **out, char **error)
{
    *out = NULL;
    *error = NULL;
    const char *name = name_for_messages ? name_for_messages : "(memory)";
    if (!data && len)
        return fail(error, "%s: no data", name);
    static const unsigned char nothing[1];
    return open_bytes(data ? data : nothing, len, name, NULL, 0, out, error);
}

int sdt_safetensors_open(const char *path, sdt_safetensors **out, char **error)
{
    *out = NULL;
    *error = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail(error, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return fail(error, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return fail(error, "%s: %s", path,
                    S_ISDIR(sb.st_mode) ? "is a directory, not a file" : "is not a regular file");
    }
#if SIZE_MAX < UINT64_MAX
    if ((uint64_t)sb.st_size > SIZE_MAX) {
        close(fd);
        return fail(error, "%s: is too large to map on this machine", path);
    }
#endif
    size_t len = (size_t)sb.st_size;
    if (len < 8) { /* nothing to map (mmap refuses 0 bytes); the parser gives the message */
        unsigned char small[8];
        ssize_t got = pread(fd, small, len, 0);
        close(fd);
        return open_bytes(small, got > 0 ? (size_t)got : 0, path, NULL, 0, out, error);
    }
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd); /* the mapping keeps the file */
    if (map == MAP_FAILED)
        return fail(error, "%s: cannot map the file: %s", path, strerror(e));
    return open_bytes(map, len, path, map, len, out, error);
}

void sdt_safetensors_close(sdt_safetensors *st)
{
    if (!st)
        return;
    if (st->map)
        munmap(st->map, st->map_len);
    json_decref(st->root);
    free(st->tensors);
    free(st->by_name);
    free(st->meta);
    free(st->name);
    free(st);
}

const char *sdt_safetensors_name(const sdt_safetensors *st) { return st->name; }
uint64_t sdt_safetensors_data_start(const sdt_safetensors *st) { return st->data_start; }
size_t sdt_safetensors_count(const sdt_safetensors *st) { return st->n_tensors; }

const sdt_st_tensor *sdt_safetensors_tensor(const sdt_safetensors *st, size_t index)
{
    return index < st->n_tensors ? &st->tensors[index] : NULL;
}

/* Binary search in the name index. */
const sdt_st_tensor *sdt_safetensors_find(const sdt_safetensors *st, const char *name)
{
    size_t lo = 0, hi = st->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, st->by_name[mid]->name);
        if (c == 0)
            return st->by_name[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* Binary search in the sorted pairs. */
const char *sdt_safetensors_metadata(const sdt_safetensors *st, const char *key)
{
    size_t lo = 0, hi = st->n_meta;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(key, st->meta[mid].key);
        if (c == 0)
            return st->meta[mid].value;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

size_t sdt_safetensors_metadata_count(const sdt_safetensors *st) { return st->n_meta; }

int sdt_safetensors_metadata_at(const sdt_safetensors *st, size_t index, const char **key, const char **value)
{
    if (index >= st->n_meta)
        return -1;
    *key = st->meta[index].key;
    *value = st->meta[index].value;
    return 0;
}

/* ---- writer ----------------------------------------------------------------------------------------- */

/* The reference writer's order (its dtype enum, declared in increasing alignment, walked backwards):
 * 8-byte types first, then 4, 2, 1-byte, sub-byte, and BOOL last. Higher rank is written first. */
static int write_rank(sdt_dtype t)
{
    switch (t) {
    case SDT_U64: return 21;
    case SDT_I64: return 20;
    case SDT_F64: return 19;
    case SDT_C64: return 18;
    case SDT_F32: return 17;
    case SDT_U32: return 16;
    case SDT_I32: return 15;
    case SDT_BF16: return 14;
    case SDT_F16: return 13;
    case SDT_U16: return 12;
    case SDT_I16: return 11;
    case SDT_F8_E5M2FNUZ: return 10;
    case SDT_F8_E4M3FNUZ: return 9;
    case SDT_F8_E8M0: return 8;
    case SDT_F8_E4M3: return 7;
    case SDT_F8_E5M2: return 6;
    case SDT_I8: return 5;
    case SDT_U8: return 4;
    case SDT_F6_E3M2: return 3;
    case SDT_F6_E2M3: return 2;
    case SDT_F4: return 1;
    default: return 0; /* BOOL */
    }
}

/* A tensor to write with its computed size and place. */
typedef struct plan_item {
    const sdt_st_write_tensor *t;
    uint64_t nbytes, begin;
} plan_item;

static int plan_by_name(const void *a, const void *b)
{
    const plan_item *x = a, *y = b;
    return strcmp(x->t->name, y->t->name);
}

static int plan_by_write_order(const void *a, const void *b)
{
    const plan_item *x = a, *y = b;
    int rx = write_rank(x->t->dtype), ry = write_rank(y->t->dtype);
    if (rx != ry)
        return rx > ry ? -1 : 1;
    return strcmp(x->t->name, y->t->name);
}

static int string_by_pointer(const void *a, const void *b)
{
    const char *const *x = a, *const *y = b;
    return strcmp(*x, *y);
}

/* Checks one tensor to write and computes its size. */
static int check_write_tensor(const char *path, size_t index, const sdt_st_write_tensor *t, uint64_t *nbytes,
                              char **error)
{
    char q[QUOTED_MAX], shape_buf[QUOTED_MAX];
    if (!t->name || !t->name[0])
        return fail(error, "%s: tensor %zu has no name", path, index);
    size_t name_len = strlen(t->name);
    size_t bad = sdt_utf8_invalid_at(t->name, name_len);
    if (bad < name_len)
        return fail(error, "%s: the name of tensor %zu is not valid UTF-8 (byte %zu)", path, index, bad);
    if (strcmp(t->name, "__metadata__") == 0)
        return fail(error, "%s: \"__metadata__\" is reserved for the metadata and cannot name a tensor",
                    path);
    if ((unsigned)t->dtype >= (unsigned)SDT_DTYPE_COUNT)
        return fail(error, "%s: tensor %s: invalid dtype %d", path, quote(t->name, q), (int)t->dtype);
    if (t->ndim < 0 || t->ndim > SDT_ST_MAX_DIMS)
        return fail(error, "%s: tensor %s: %d dimensions; 0 to %d are supported", path, quote(t->name, q),
                    t->ndim, SDT_ST_MAX_DIMS);
    if (t->ndim > 0 && !t->shape)
        return fail(error, "%s: tensor %s: no shape given for %d dimensions", path, quote(t->name, q),
                    t->ndim);
    uint64_t count = 1;
    bool zero = false;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] < 0 || (uint64_t)t->shape[i] > SDT_ST_MAX_VALUE)
            return fail(error, "%s: tensor %s: shape[%d] = %" PRId64 " is outside 0 .. 2^48 - 1", path,
                        quote(t->name, q), i, t->shape[i]);
        zero = zero || t->shape[i] == 0;
    }
    for (int i = 0; i < t->ndim && !zero; i++) {
        uint64_t d = (uint64_t)t->shape[i];
        if (count > UINT64_MAX / d)
            return fail(error, "%s: tensor %s: the element count of shape %s overflows 64 bits", path,
                        quote(t->name, q), shape_text(t->ndim, t->shape, shape_buf));
        count *= d;
    }
    if (zero)
        count = 0;
    unsigned bits = sdt_dtype_bits(t->dtype);
    if (count > UINT64_MAX / bits || count * bits / 8 > SDT_ST_MAX_VALUE)
        return fail(error, "%s: tensor %s: %s %s is too large for the format", path, quote(t->name, q),
                    sdt_dtype_name(t->dtype), shape_text(t->ndim, t->shape, shape_buf));
    if (count * bits % 8 != 0)
        return fail(error, "%s: tensor %s: %s %s is %" PRIu64 " bits, not a whole number of bytes", path,
                    quote(t->name, q), sdt_dtype_name(t->dtype), shape_text(t->ndim, t->shape, shape_buf),
                    count * bits);
    *nbytes = count * bits / 8;
    if (t->data && t->fill)
        return fail(error, "%s: tensor %s: give data or fill, not both", path, quote(t->name, q));
    if (!t->data && !t->fill && *nbytes > 0)
        return fail(error, "%s: tensor %s: no data for %" PRIu64 " bytes", path, quote(t->name, q), *nbytes);
    return 0;
}

/* A JSON string literal: quotes, backslashes and control characters escaped (short forms where JSON has
 * them, \u00xx otherwise); everything else, UTF-8 included, as is. */
static void append_json_string(sdt_buf *b, const char *s)
{
    sdt_buf_append(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': sdt_buf_append(b, "\\\"", 2); break;
        case '\\': sdt_buf_append(b, "\\\\", 2); break;
        case '\b': sdt_buf_append(b, "\\b", 2); break;
        case '\f': sdt_buf_append(b, "\\f", 2); break;
        case '\n': sdt_buf_append(b, "\\n", 2); break;
        case '\r': sdt_buf_append(b, "\\r", 2); break;
        case '\t': sdt_buf_append(b, "\\t", 2); break;
        default:
            if (*p < 0x20)
                sdt_buf_printf(b, "\\u%04x", *p);
            else
                sdt_buf_append(b, (const char *)p, 1);
        }
    }
    sdt_buf_append(b, "\"", 1);
}

/* The header text, padded with spaces to a multiple of 8 bytes. items are in write order with offsets. */
static char *build_header(const plan_item *items, size_t n, const char *const *kv, size_t n_pairs,
                          size_t *len)
{
    sdt_buf b;
    sdt_buf_init(&b);
    sdt_buf_append(&b, "{", 1);
    if (n_pairs) {
        sdt_buf_puts(&b, "\"__metadata__\":{");
        for (size_t i = 0; i < n_pairs; i++) {
            if (i)
                sdt_buf_append(&b, ",", 1);
            append_json_string(&b, kv[2 * i]);
            sdt_buf_append(&b, ":", 1);
            append_json_string(&b, kv[2 * i + 1]);
        }
        sdt_buf_append(&b, "}", 1);
    }
    for (size_t i = 0; i < n; i++) {
        const sdt_st_write_tensor *t = items[i].t;
        if (i || n_pairs)
            sdt_buf_append(&b, ",", 1);
        append_json_string(&b, t->name);
        sdt_buf_printf(&b, ":{\"dtype\":\"%s\",\"shape\":[", sdt_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++)
            sdt_buf_printf(&b, "%s%" PRId64, d ? "," : "", t->shape[d]);
        sdt_buf_printf(&b, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", items[i].begin,
                       items[i].begin + items[i].nbytes);
    }
    sdt_buf_append(&b, "}", 1);
    while (!b.failed && b.len % 8 != 0)
        sdt_buf_append(&b, " ", 1);
    *len = b.len;
    return sdt_buf_take(&b);
}

enum { FILL_CHUNK = 1 << 20 };

/* Streams the header and every tensor into the file. Returns 0, or -1 with *error set (sdt_atomic_file's
 * messages name the file already). */
static int write_contents(sdt_atomic_file *file, const char *path, const char *header, size_t header_len,
                          const plan_item *items, size_t n, char **error)
{
    char q[QUOTED_MAX];
    unsigned char prefix[8]; /* the header length, u64 little-endian */
    for (int i = 0; i < 8; i++)
        prefix[i] = (unsigned char)((uint64_t)header_len >> (8 * i));
    if (sdt_atomic_append(file, prefix, 8, error) != 0 ||
        sdt_atomic_append(file, header, header_len, error) != 0)
        return -1;
    unsigned char *chunk = NULL; /* [FILL_CHUNK] bytes from a tensor's fill callback */
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const sdt_st_write_tensor *t = items[i].t;
        if (items[i].nbytes == 0)
            continue;
        if (t->data) {
            rc = sdt_atomic_append(file, t->data, (size_t)items[i].nbytes, error);
            continue;
        }
        if (!chunk && !(chunk = malloc(FILL_CHUNK))) {
            rc = fail(error, "%s: out of memory", path);
            break;
        }
        for (uint64_t done = 0; done < items[i].nbytes && rc == 0;) {
            size_t len = items[i].nbytes - done > FILL_CHUNK ? FILL_CHUNK : (size_t)(items[i].nbytes - done);
            if (t->fill(t->fill_ctx, done, chunk, len) != 0)
                rc = fail(error, "%s: tensor %s: its data source failed at byte %" PRIu64, path,
                          quote(t->name, q), done);
            else
                rc = sdt_atomic_append(file, chunk, len, error);
            done += len;
        }
    }
    free(chunk);
    return rc;
}

/* Writes header and data to a temporary file beside path and renames it over path (sdt_atomic_file). */
static int write_file(const char *path, const char *header, size_t header_len, const plan_item *items,
                      size_t n, char **error)
{
    sdt_atomic_file file;
    if (sdt_atomic_open(&file, path, error) != 0)
        return -1;
    if (write_contents(&file, path, header, header_len, items, n, error) != 0) {
        sdt_atomic_abandon(&file);
        return -1;
    }
    return sdt_atomic_commit(&file, error);
}

/* Validates the inputs, plans the layout, builds the header and writes the file. */
int sdt_safetensors_write(const char *path, const sdt_st_write_tensor *tensors, size_t n,
                          const char *const *metadata_kv, size_t n_metadata_pairs, char **error)
{
    *error = NULL;
    char q[QUOTED_MAX];
    if (!path || !path[0])
        return fail(error, "safetensors write: no path given");
    if (n && !tensors)
        return fail(error, "%s: %zu tensors announced but none given", path, n);
    if (n_metadata_pairs && !metadata_kv)
        return fail(error, "%s: %zu metadata pairs announced but none given", path, n_metadata_pairs);
    for (size_t i = 0; i < 2 * n_metadata_pairs; i++) {
        const char *s = metadata_kv[i];
        const char *what = i % 2 ? "value" : "key";
        if (!s)
            return fail(error, "%s: metadata pair %zu has no %s", path, i / 2, what);
        size_t bad = sdt_utf8_invalid_at(s, strlen(s));
        if (bad < strlen(s))
            return fail(error, "%s: the %s of metadata pair %zu is not valid UTF-8 (byte %zu)", path, what,
                        i / 2, bad);
    }
    if (n_metadata_pairs > 1) {
        const char **keys = malloc(n_metadata_pairs * sizeof *keys);
        if (!keys)
            return fail(error, "%s: out of memory", path);
        for (size_t i = 0; i < n_metadata_pairs; i++)
            keys[i] = metadata_kv[2 * i];
        qsort(keys, n_metadata_pairs, sizeof *keys, string_by_pointer);
        for (size_t i = 1; i < n_metadata_pairs; i++) {
            if (strcmp(keys[i - 1], keys[i]) == 0) {
                int r = fail(error, "%s: duplicate metadata key %s", path, quote(keys[i], q));
                free(keys);
                return r;
            }
        }
        free(keys);
    }

    plan_item *items = calloc(n ? n : 1, sizeof *items);
    if (!items)
        return fail(error, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++) {
        items[i].t = &tensors[i];
        if (check_write_tensor(path, i, &tensors[i], &items[i].nbytes, error) != 0) {
            free(items);
            return -1;
        }
    }
    qsort(items, n, sizeof *items, plan_by_name);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(items[i - 1].t->name, items[i].t->name) == 0) {
            int r = fail(error, "%s: tensor %s is given twice", path, quote(items[i].t->name, q));
            free(items);
            return r;
        }
    }
    qsort(items, n, sizeof *items, plan_by_write_order);
    uint64_t offset = 0;
    for (size_t i = 0; i < n; i++) {
        items[i].begin = offset;
        offset += items[i].nbytes; /* each is below 2^48: no overflow before the check */
        if (offset > SDT_ST_MAX_VALUE) {
            free(items);
            return fail(error, "%s: the tensors total more than the format's 2^48 - 1 bytes", path);
        }
    }

    size_t header_len;
    char *header = build_header(items, n, metadata_kv, n_metadata_pairs, &header_len);
    if (!header) {
        free(items);
        return fail(error, "%s: out of memory", path);
    }
    int rc = 0;
    if (header_len > SDT_ST_MAX_HEADER_SIZE)
        rc = fail(error, "%s: the header would be %zu bytes, above the format's limit of %llu", path,
                  header_len, SDT_ST_MAX_HEADER_SIZE);
    else
        rc = write_file(path, header, header_len, items, n, error);
    free(header);
    free(items);
    return rc;
}
