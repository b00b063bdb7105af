/* safetensors: writer -> reader round trips, the exact bytes the writer produces (against a file built by
 * hand from the format description), every malformed file of tests/data/safetensors/malformed rejected with
 * its message, every truncation of a valid file rejected, the writer's input checks and its atomicity. */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "sdtune/safetensors.h"
#include "sdtune/strutil.h"
#include "test_files.h"

#ifndef SDT_MALFORMED_DIR
#error "SDT_MALFORMED_DIR must name tests/data/safetensors/malformed (tests/CMakeLists.txt defines it)"
#endif

/* ---- helpers ------------------------------------------------------------------------------------------ */

/* The number of entries of a folder whose name contains part (e.g. ".tmp." for leftover temp files). */
static int count_entries(const char *path, const char *part)
{
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, part))
            n++;
    closedir(d);
    return n;
}

/* A file in memory: the 8-byte length of header, header, then data (the caller frees). */
static unsigned char *build_file(const char *header, const void *data, size_t data_len, size_t *len)
{
    size_t n = strlen(header);
    *len = 8 + n + data_len;
    unsigned char *buf = malloc(*len);
    if (!buf)
        return NULL;
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(buf + 8, header, n);
    if (data_len)
        memcpy(buf + 8 + n, data, data_len);
    return buf;
}

/* Opens len bytes of a file built by build_file; returns the handle or NULL, error to the caller. */
static sdt_safetensors *open_header(const char *header, const void *data, size_t data_len, char **error,
                                    unsigned char **keep)
{
    size_t len;
    *keep = build_file(header, data, data_len, &len);
    sdt_safetensors *st = NULL;
    if (*keep && sdt_safetensors_open_memory(*keep, len, "mem.safetensors", &st, error) != 0)
        return NULL;
    return st;
}

/* ---- round trip ---------------------------------------------------------------------------------------- */

/* Tensors of many dtypes, a scalar and a zero-sized one, with metadata that needs JSON escaping. */
typedef struct sample {
    sdt_st_write_tensor t[10];
    size_t n;
    float w[6];
    uint16_t h[4], bf[4];
    int64_t ids[3];
    unsigned char bytes[5], flags[3], nibbles[2];
    double scalar;
    float c64[2];
    int64_t s_w[2], s_h[1], s_bf[2], s_ids[2], s_bytes[1], s_flags[1], s_empty[2], s_nibbles[1], s_c64[1];
} sample;

static void make_sample(sample *s)
{
    memset(s, 0, sizeof *s);
    for (int i = 0; i < 6; i++)
        s->w[i] = 0.5f * (float)i - 1.0f;
    for (int i = 0; i < 4; i++) {
        s->h[i] = (uint16_t)(0x3c00 + i);
        s->bf[i] = (uint16_t)(0x3f80 + i);
    }
    s->ids[0] = 0;
    s->ids[1] = 1;
    s->ids[2] = -5;
    memcpy(s->bytes, "\x01\x02\x03\xfe\xff", 5);
    memcpy(s->flags, "\x01\x00\x01", 3);
    memcpy(s->nibbles, "\x21\x43", 2);
    s->scalar = 3.25;
    s->c64[0] = 1.0f;
    s->c64[1] = -1.0f;
    s->s_w[0] = 2, s->s_w[1] = 3;
    s->s_h[0] = 4;
    s->s_bf[0] = 2, s->s_bf[1] = 2;
    s->s_ids[0] = 1, s->s_ids[1] = 3;
    s->s_bytes[0] = 5;
    s->s_flags[0] = 3;
    s->s_empty[0] = 0, s->s_empty[1] = 4;
    s->s_nibbles[0] = 4;
    s->s_c64[0] = 1;
    sdt_st_write_tensor t[] = {
        {"model.weight", SDT_F32, 2, s->s_w, s->w, NULL, NULL},
        {"half \"quoted\" \xC3\xA9", SDT_F16, 1, s->s_h, s->h, NULL, NULL},
        {"brain", SDT_BF16, 2, s->s_bf, s->bf, NULL, NULL},
        {"position_ids", SDT_I64, 2, s->s_ids, s->ids, NULL, NULL},
        {"bytes", SDT_U8, 1, s->s_bytes, s->bytes, NULL, NULL},
        {"flags", SDT_BOOL, 1, s->s_flags, s->flags, NULL, NULL},
        {"scalar", SDT_F64, 0, NULL, &s->scalar, NULL, NULL},
        {"empty", SDT_F32, 2, s->s_empty, NULL, NULL, NULL},
        {"nibbles", SDT_F4, 1, s->s_nibbles, s->nibbles, NULL, NULL},
        {"complex", SDT_C64, 1, s->s_c64, s->c64, NULL, NULL},
    };
    memcpy(s->t, t, sizeof t);
    s->n = sizeof t / sizeof t[0];
}

static const char *const sample_meta[] = {
    "format",          "pt", "ss_note", "line\nbreak \"quote\" back\\slash \x01 tab\t \xE2\x9C\x93",
    "modelspec.title", "x",
};

static void round_trip(test_state *t)
{
    char dir[256];
    CHECK(t, test_make_temp_dir(dir, sizeof dir, "safetensors") == 0);
    char *path = sdt_format("%s/model.safetensors", dir);
    sample s;
    make_sample(&s);
    char *error = NULL;
    int rc = sdt_safetensors_write(path, s.t, s.n, sample_meta, 3, &error);
    CHECK_MSG(t, rc == 0 && !error, "%s", error ? error : "");
    free(error);
    CHECK(t, count_entries(dir, ".tmp.") == 0);

    sdt_safetensors *st = NULL;
    rc = sdt_safetensors_open(path, &st, &error);
    CHECK_MSG(t, rc == 0 && st && !error, "%s", error ? error : "");
    free(error);
    if (!st)
        goto out;
    CHECK(t, strcmp(sdt_safetensors_name(st), path) == 0);
    CHECK(t, sdt_safetensors_count(st) == s.n);
    CHECK(t, sdt_safetensors_data_start(st) % 8 == 0);
    for (size_t i = 0; i < s.n; i++) {
        const sdt_st_write_tensor *w = &s.t[i];
        const sdt_st_tensor *r = sdt_safetensors_find(st, w->name);
        CHECK_MSG(t, r != NULL, "%s not found", w->name);
        if (!r)
            continue;
        CHECK(t, strcmp(r->name, w->name) == 0);
        CHECK(t, r->dtype == w->dtype);
        CHECK(t, r->ndim == w->ndim);
        uint64_t count = 1;
        for (int d = 0; d < w->ndim; d++) {
            CHECK(t, r->shape[d] == w->shape[d]);
            count *= (uint64_t)w->shape[d];
        }
        CHECK(t, r->count == count);
        CHECK(t, r->nbytes == count * sdt_dtype_bits(w->dtype) / 8);
        CHECK(t, r->data != NULL);
        if (r->nbytes)
            CHECK_MSG(t, memcmp(r->data, w->data, r->nbytes) == 0, "%s: bytes differ", w->name);
        /* The writer's order keeps every tensor aligned to its element size within the file. */
        unsigned size = sdt_dtype_bits(w->dtype) / 8;
        if (size > 1)
            CHECK_MSG(t, (sdt_safetensors_data_start(st) + r->offset) % size == 0, "%s misaligned", w->name);
    }
    const sdt_st_tensor *scalar = sdt_safetensors_find(st, "scalar");
    CHECK(t, scalar && scalar->ndim == 0 && scalar->count == 1 && scalar->nbytes == 8);
    const sdt_st_tensor *empty = sdt_safetensors_find(st, "empty");
    CHECK(t, empty && empty->count == 0 && empty->nbytes == 0);
    CHECK(t, sdt_safetensors_find(st, "missing") == NULL);
    CHECK(t, sdt_safetensors_find(st, "") == NULL);
    CHECK(t, sdt_safetensors_tensor(st, s.n) == NULL);

    /* File order: offsets increase and tile the buffer. */
    uint64_t expected = 0;
    for (size_t i = 0; i < sdt_safetensors_count(st); i++) {
        const sdt_st_tensor *r = sdt_safetensors_tensor(st, i);
        CHECK(t, r && r->offset == expected);
        expected = r ? r->offset + r->nbytes : expected;
    }

    /* Metadata: lookups, and iteration in key order. */
    CHECK(t, sdt_safetensors_metadata_count(st) == 3);
    for (int i = 0; i < 3; i++) {
        const char *v = sdt_safetensors_metadata(st, sample_meta[2 * i]);
        CHECK_MSG(t, v && strcmp(v, sample_meta[2 * i + 1]) == 0, "metadata %s", sample_meta[2 * i]);
    }
    CHECK(t, sdt_safetensors_metadata(st, "nope") == NULL);
    const char *k, *v, *previous = "";
    for (size_t i = 0; i < 3; i++) {
        CHECK(t, sdt_safetensors_metadata_at(st, i, &k, &v) == 0);
        CHECK(t, strcmp(previous, k) < 0);
        previous = k;
    }
    CHECK(t, sdt_safetensors_metadata_at(st, 3, &k, &v) == -1);
    sdt_safetensors_close(st);
out:
    test_remove_tree(dir);
    free(path);
}

/* Writes the sample as path (the write must succeed) and reads the file back: its bytes (caller frees), NULL
 * when it cannot be read. */
static unsigned char *write_sample_file(test_state *t, const char *path, size_t *len)
{
    sample s;
    make_sample(&s);
    char *error = NULL;
    CHECK(t, sdt_safetensors_write(path, s.t, s.n, sample_meta, 3, &error) == 0);
    free(error);
    *len = 0;
    return (unsigned char *)test_read_file(path, len);
}

/* The written bytes: N a multiple of 8, the header compact JSON that starts with __metadata__ and ends
 * in space padding only, tensors in dtype-size order, the data packed right after. */
static void header_layout(test_state *t)
{
    char dir[256];
    CHECK(t, test_make_temp_dir(dir, sizeof dir, "safetensors") == 0);
    char *path = sdt_format("%s/layout.safetensors", dir);
    size_t len;
    unsigned char *bytes = write_sample_file(t, path, &len);
    CHECK(t, bytes && len > 8);
    if (!bytes || len <= 8)
        goto out;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | bytes[i];
    CHECK(t, n % 8 == 0 && 8 + n <= len);
    char *header = sdt_strndup((const char *)bytes + 8, (size_t)n);
    CHECK(t, strncmp(header, "{\"__metadata__\":{\"format\":\"pt\",", 31) == 0);
    char *last = strrchr(header, '}');
    CHECK(t, last && last - header + 1 > (long)n - 8); /* fewer than 8 padding bytes */
    for (char *p = last + 1; p < header + n; p++)
        CHECK(t, *p == ' ');
    CHECK(t, strstr(header, ", ") == NULL && strstr(header, ": ") == NULL && strchr(header, '\n') == NULL);
    /* Escapes in the metadata value. */
    CHECK(t, strstr(header, "line\\nbreak \\\"quote\\\" back\\\\slash \\u0001 tab\\t \xE2\x9C\x93") != NULL);
    /* dtype order: I64, F64, C64 (8 bytes), F32, BF16, F16, U8, F4, then BOOL last. */
    const char *order[] = {"\"position_ids\"", "\"scalar\"", "\"complex\"", "\"empty\"",   "\"model.weight\"",
                           "\"brain\"",        "\"half ",    "\"bytes\"",   "\"nibbles\"", "\"flags\""};
    const char *prev = header;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        const char *at = strstr(header, order[i]);
        CHECK_MSG(t, at && at > prev, "%s out of order", order[i]);
        prev = at ? at : prev;
    }
    CHECK(t, strstr(header, "\"position_ids\":{\"dtype\":\"I64\",\"shape\":[1,3],\"data_offsets\":[0,24]}"));
    CHECK(t, strstr(header, "\"scalar\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[24,32]}"));
    CHECK(t, strstr(header, "\"empty\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[40,40]}"));
    CHECK(t, strstr(header, "\"half \\\"quoted\\\" \xC3\xA9\":{\"dtype\":\"F16\""));
    /* The data buffer ends the file: 24 + 8 + 8 + 0 + 24 + 8 + 8 + 5 + 2 + 3 bytes. */
    CHECK(t, len == 8 + n + 90);
    free(header);
    free(bytes);
out:
    test_remove_tree(dir);
    free(path);
}

/* A file built byte by byte from the format description: the writer must produce exactly it. */
static void byte_exact(test_state *t)
{
    static const unsigned char expected_prefix[8] = {0xc8, 0, 0, 0, 0, 0, 0, 0}; /* N = 200 */
    static const char expected_header[] = "{\"__metadata__\":{\"format\":\"pt\"},"
                                          "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                                          "\"c\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[8,12]},"
                                          "\"a\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[12,14]}}"
                                          "       "; /* 193 bytes of JSON + 7 spaces */
    static const unsigned char expected_data[14] = {
        0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0, /* b: 1.0, -2.0 */
        0x00, 0x00, 0x00, 0x3f,                         /* c: 0.5 */
        0x00, 0x3c,                                     /* a: f16 1.0 */
    };
    CHECK(t, sizeof expected_header - 1 == 200);
    unsigned char expected[8 + 200 + 14];
    memcpy(expected, expected_prefix, 8);
    memcpy(expected + 8, expected_header, 200);
    memcpy(expected + 208, expected_data, 14);

    float b[2] = {1.0f, -2.0f}, c = 0.5f;
    uint16_t a = 0x3c00;
    int64_t shape_b[1] = {2}, shape_a[1] = {1};
    sdt_st_write_tensor tensors[] = {
        {"a", SDT_F16, 1, shape_a, &a, NULL, NULL},
        {"c", SDT_F32, 0, NULL, &c, NULL, NULL},
        {"b", SDT_F32, 1, shape_b, b, NULL, NULL},
    };
    const char *meta[] = {"format", "pt"};
    char dir[256];
    CHECK(t, test_make_temp_dir(dir, sizeof dir, "safetensors") == 0);
    char *path = sdt_format("%s/exact.safetensors", dir);
    char *error = NULL;
    CHECK(t, sdt_safetensors_write(path, tensors, 3, meta, 1, &error) == 0);
    free(error);
    size_t len = 0;
    unsigned char *bytes = (unsigned char *)test_read_file(path, &len);
    CHECK_MSG(t, bytes && len == sizeof expected && memcmp(bytes, expected, len) == 0,
              "written file differs from the hand-made one (%zu bytes)", len);
    free(bytes);

    /* And the hand-made bytes read back as those tensors. */
    sdt_safetensors *st = NULL;
    CHECK(t, sdt_safetensors_open_memory(expected, sizeof expected, "exact", &st, &error) == 0);
    free(error);
    if (st) {
        const sdt_st_tensor *tb = sdt_safetensors_tensor(st, 0), *tc = sdt_safetensors_tensor(st, 1);
        const sdt_st_tensor *ta = sdt_safetensors_tensor(st, 2);
        CHECK(t, tb && strcmp(tb->name, "b") == 0 && tb->offset == 0 && tb->nbytes == 8);
        CHECK(t, tc && strcmp(tc->name, "c") == 0 && tc->ndim == 0 && tc->nbytes == 4);
        CHECK(t, ta && strcmp(ta->name, "a") == 0 && ta->dtype == SDT_F16 && ta->offset == 12);
        float got;
        memcpy(&got, tb->data, 4);
        CHECK(t, got == 1.0f);
        CHECK(t, strcmp(sdt_safetensors_metadata(st, "format"), "pt") == 0);
        sdt_safetensors_close(st);
    }

    /* No tensors, no metadata: "{}" and six spaces. */
    CHECK(t, sdt_safetensors_write(path, NULL, 0, NULL, 0, &error) == 0);
    free(error);
    bytes = (unsigned char *)test_read_file(path, &len);
    CHECK(t, bytes && len == 16 && memcmp(bytes, "\x08\0\0\0\0\0\0\0{}      ", 16) == 0);
    free(bytes);
    test_remove_tree(dir);
    free(path);
}

/* ---- malformed files ------------------------------------------------------------------------------------
 */

/* Each file of tests/data/safetensors/malformed (made by make_malformed.py) and a part of its message. */
static const struct {
    const char *file, *message;
} malformed[] = {
    {"too_short", "the file is 3 bytes, shorter than the 8-byte header length"},
    {"header_too_large", "header length 100000001 exceeds the format's limit of 100000000 bytes"},
    {"header_past_end", "header length 64 runs past the end of the file (16 bytes)"},
    {"header_empty", "the header is empty"},
    {"header_bad_utf8", "the header is not valid UTF-8 (byte 3 of the header"},
    {"header_not_object", "the header must begin with '{' (it begins with '[')"},
    {"header_leading_space", "the header must begin with '{' (it begins with ' ')"},
    {"header_not_json", "the header is not valid JSON: unexpected token near '}' (line 1, column 7)"},
    {"header_nul_padding", "not valid JSON: end of file expected near end of file (line 1, column 55); only "
                           "spaces may follow the object (padding)"},
    {"header_huge_integer", "the header is not valid JSON: too big integer"},
    {"entry_not_object", "tensor \"a\": the entry must be a JSON object, not an array"},
    {"dtype_not_string", "tensor \"a\": \"dtype\" must be a string, not an integer"},
    {"shape_not_array", "tensor \"a\": \"shape\" must be an array of integers, not a string"},
    {"offsets_not_pair", "tensor \"a\": \"data_offsets\" must be an array of two integers"},
    {"missing_field", "tensor \"w\": missing field \"data_offsets\""},
    {"unknown_field", "tensor \"w\": unknown field \"dtyp\" (did you mean \"dtype\"?)"},
    {"unknown_dtype", "tensor \"w\": unknown dtype \"F33\" (did you mean \"F32\"?)"},
    {"shape_negative", "tensor \"w\": shape[1] is -1; it must not be negative"},
    {"shape_not_integer", "tensor \"w\": shape[0] is a number with a fraction or exponent, not an integer"},
    {"shape_too_large",
     "tensor \"w\": shape[0] is 281474976710656, above the format's limit of 281474976710655"},
    {"too_many_dims", "tensor \"w\": shape has 9 dimensions; at most 8 are supported"},
    {"count_overflow",
     "tensor \"w\": the element count of shape [281474976710655, 281474976710655] overflows"},
    {"subbyte_partial", "tensor \"w\": F4 [3] is 12 bits, not a whole number of bytes"},
    {"size_mismatch", "tensor \"down.weight\": data_offsets [0, 12] hold 12 bytes but F32 [2, 2] needs 16"},
    {"offsets_not_from_zero", "tensor \"a\": data_offsets [4, 8] do not begin at 0"},
    {"offsets_gap", "tensor \"b\": data_offsets [8, 12] leave a gap after tensor \"a\", which ends at 4"},
    {"offsets_overlap", "tensor \"b\": data_offsets [4, 12] overlap tensor \"a\", which ends at 8"},
    {"offsets_reversed", "tensor \"a\": data_offsets [8, 4] end before they begin"},
    {"offsets_negative", "tensor \"a\": data_offsets[0] is -4; it must not be negative"},
    {"offsets_too_large", "tensor \"a\": data_offsets[1] is 281474976710656, above the format's limit"},
    {"trailing_bytes",
     "2 trailing bytes after the tensors: the data buffer is 6 bytes but the tensors end at 4"},
    {"data_truncated",
     "tensor \"a\": data_offsets [0, 16] run past the end of the file: the data buffer holds 8"},
    {"duplicate_name", "duplicate name \"a\""},
    {"metadata_not_object", "\"__metadata__\" must be an object of strings, not an array"},
    {"metadata_not_string", "\"__metadata__\" value of \"steps\" must be a string, not an integer"},
};

static void malformed_files(test_state *t)
{
    size_t n = sizeof malformed / sizeof malformed[0];
    /* Every file in the folder has a row (a new file cannot be forgotten) and every row a file. */
    CHECK_MSG(t, count_entries(SDT_MALFORMED_DIR, ".safetensors") == (int)n, "%d files for %zu rows",
              count_entries(SDT_MALFORMED_DIR, ".safetensors"), n);
    for (size_t i = 0; i < n; i++) {
        char *path = sdt_format("%s/%s.safetensors", SDT_MALFORMED_DIR, malformed[i].file);
        int dummy = 0;
        sdt_safetensors *st = (sdt_safetensors *)(void *)&dummy; /* open must reset it to NULL */
        char *error = NULL;
        int rc = sdt_safetensors_open(path, &st, &error);
        CHECK_MSG(t, rc == -1 && st == NULL, "%s was accepted", malformed[i].file);
        CHECK_MSG(t, error && strncmp(error, path, strlen(path)) == 0 && error[strlen(path)] == ':',
                  "%s: the message does not start with the file: %s", malformed[i].file,
                  error ? error : "(null)");
        CHECK_STR_CONTAINS(t, error, malformed[i].message);
        CHECK_MSG(t, error && !strchr(error, '\n'), "%s: message is not one line", malformed[i].file);
        free(error);
        if (rc == 0)
            sdt_safetensors_close(st);

        /* The same bytes from memory give the same message under the given name. */
        size_t len = 0;
        unsigned char *bytes = (unsigned char *)test_read_file(path, &len);
        CHECK(t, bytes != NULL);
        if (bytes) {
            st = NULL;
            rc = sdt_safetensors_open_memory(bytes, len, "in-memory", &st, &error);
            CHECK(t, rc == -1 && st == NULL);
            CHECK_STR_CONTAINS(t, error, malformed[i].message);
            CHECK(t, error && strncmp(error, "in-memory: ", 11) == 0);
            free(error);
            if (rc == 0)
                sdt_safetensors_close(st);
        }
        free(bytes);
        free(path);
    }
}

/* Every proper prefix of a valid file is rejected with a message (and, under ASan, reads no byte past
 * the prefix: each copy is a heap block of exactly that size). */
static void truncated_copies(test_state *t)
{
    char dir[256];
    CHECK(t, test_make_temp_dir(dir, sizeof dir, "safetensors") == 0);
    char *path = sdt_format("%s/full.safetensors", dir);
    size_t len;
    unsigned char *full = write_sample_file(t, path, &len);
    char *error = NULL;
    CHECK(t, full && len > 100);
    int accepted = 0, silent = 0;
    for (size_t cut = 0; full && cut <= len; cut++) {
        unsigned char *copy = malloc(cut ? cut : 1);
        if (!copy)
            break;
        memcpy(copy, full, cut);
        sdt_safetensors *st = NULL;
        error = NULL;
        int rc = sdt_safetensors_open_memory(copy, cut, "cut", &st, &error);
        if (cut == len) {
            CHECK_MSG(t, rc == 0, "the whole file is rejected: %s", error ? error : "");
        } else {
            accepted += rc == 0;
            silent += rc != 0 && (!error || !error[0]);
        }
        sdt_safetensors_close(st);
        free(error);
        free(copy);
    }
    CHECK_MSG(t, accepted == 0, "%d truncated copies accepted", accepted);
    CHECK_MSG(t, silent == 0, "%d truncated copies rejected without a message", silent);

    /* The same through files, including those too short to map. */
    static const size_t cuts[] = {0, 3, 7, 8, 9, 100};
    for (size_t i = 0; full && i < sizeof cuts / sizeof cuts[0]; i++) {
        char *cut_path = sdt_format("%s/cut%zu.safetensors", dir, cuts[i]);
        CHECK(t, test_write_file(cut_path, full, cuts[i]) == 0);
        sdt_safetensors *st = NULL;
        error = NULL;
        CHECK_MSG(t, sdt_safetensors_open(cut_path, &st, &error) == -1 && error, "cut at %zu", cuts[i]);
        if (cuts[i] < 8)
            CHECK_STR_CONTAINS(t, error, "shorter than the 8-byte header length");
        sdt_safetensors_close(st);
        free(error);
        free(cut_path);
    }
    free(full);
    test_remove_tree(dir);
    free(path);
}

/* ---- what the reader accepts ------------------------------------------------------------------------- */

/* Files the format allows that the writer never produces: entries in any order, tensors listed out of
 * offset order, zero-sized tensors sharing an offset, trailing spaces and other JSON whitespace, an empty
 * header object, and data at odd addresses. */
static void reader_accepts(test_state *t)
{
    float data[3] = {1.0f, 2.0f, 3.0f};
    char *error = NULL;
    unsigned char *keep = NULL;
    sdt_safetensors *st = open_header("{\"z\":{\"data_offsets\":[4,12],\"shape\":[2],\"dtype\":\"F32\"},"
                                      "\"e1\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,4]},"
                                      "\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
                                      "\"e0\":{\"dtype\":\"F16\",\"shape\":[3,0,2],\"data_offsets\":[12,12]},"
                                      "\"__metadata__\":{}}     ",
                                      data, sizeof data, &error, &keep);
    CHECK_MSG(t, st != NULL, "%s", error ? error : "");
    free(error);
    if (st) {
        static const char *const order[] = {"a", "e1", "z", "e0"};
        for (size_t i = 0; i < 4; i++) {
            const sdt_st_tensor *r = sdt_safetensors_tensor(st, i);
            CHECK_MSG(t, r && strcmp(r->name, order[i]) == 0, "position %zu", i);
        }
        const sdt_st_tensor *z = sdt_safetensors_find(st, "z");
        float v[2];
        CHECK(t, z && z->nbytes == 8);
        if (z) {
            memcpy(v, z->data, sizeof v);
            CHECK(t, v[0] == 2.0f && v[1] == 3.0f);
        }
        CHECK(t, sdt_safetensors_metadata_count(st) == 0);
        sdt_safetensors_close(st);
    }
    free(keep);

    error = NULL;
    st = open_header("{}", NULL, 0, &error, &keep);
    CHECK_MSG(t, st && sdt_safetensors_count(st) == 0, "%s", error ? error : "");
    free(error);
    sdt_safetensors_close(st);
    free(keep);

    error = NULL;
    st = open_header("{\"__metadata__\":{\"k\":\"v\"}}\n\t  ", NULL, 0, &error, &keep);
    CHECK_MSG(t, st && sdt_safetensors_count(st) == 0 && strcmp(sdt_safetensors_metadata(st, "k"), "v") == 0,
              "%s", error ? error : "");
    free(error);
    sdt_safetensors_close(st);
    free(keep);

    /* Unaligned: the whole file at an odd address; data is read with memcpy. */
    size_t len;
    unsigned char *file = build_file("{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}",
                                     data, sizeof data, &len);
    unsigned char *odd = malloc(len + 1);
    CHECK(t, file && odd);
    if (file && odd) {
        memcpy(odd + 1, file, len);
        st = NULL;
        error = NULL;
        CHECK(t, sdt_safetensors_open_memory(odd + 1, len, "odd", &st, &error) == 0);
        free(error);
        const sdt_st_tensor *x = st ? sdt_safetensors_find(st, "x") : NULL;
        float got[3] = {0};
        if (x)
            memcpy(got, x->data, sizeof got);
        CHECK(t, x && got[0] == 1.0f && got[2] == 3.0f);
        sdt_safetensors_close(st);
    }
    free(odd);
    free(file);
}

static void open_errors(test_state *t)
{
    sdt_safetensors *st = NULL;
    char *error = NULL;
    CHECK(t, sdt_safetensors_open("/nonexistent/x.safetensors", &st, &error) == -1 && st == NULL);
    CHECK_STR_CONTAINS(t, error, "/nonexistent/x.safetensors: cannot open: ");
    free(error);
    CHECK(t, sdt_safetensors_open(SDT_MALFORMED_DIR, &st, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "is a directory");
    free(error);
    CHECK(t, sdt_safetensors_open_memory(NULL, 0, NULL, &st, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "shorter than the 8-byte header length");
    free(error);
    sdt_safetensors_close(NULL);
}

/* ---- writer -------------------------------------------------------------------------------------------- */

/* A fill callback over a repeating byte pattern, failing at fail_at when that is set. */
typedef struct pattern {
    uint64_t fail_at;
} pattern;

static int fill_pattern(void *ctx, uint64_t offset, void *buf, size_t len)
{
    const pattern *p = ctx;
    if (p->fail_at && offset + len > p->fail_at)
        return -1;
    unsigned char *out = buf;
    for (size_t i = 0; i < len; i++)
        out[i] = (unsigned char)((offset + i) * 7 + 3);
    return 0;
}

/* Data from a fill callback (several chunks) reads back as the same bytes as from memory. */
static void writer_fill(test_state *t)
{
    enum { N = 3 * (1 << 20) + 123 }; /* several fill chunks and a partial one */
    unsigned char *expected = malloc(N);
    CHECK(t, expected != NULL);
    if (!expected)
        return;
    pattern p = {0};
    fill_pattern(&p, 0, expected, N);
    int64_t shape[1] = {N};
    sdt_st_write_tensor tensor = {"big", SDT_U8, 1, shape, NULL, fill_pattern, &p};
    char dir[256];
    CHECK(t, test_make_temp_dir(dir, sizeof dir, "safetensors") == 0);
    char *path = sdt_format("%s/fill.safetensors", dir);
    char *error = NULL;
    CHECK(t, sdt_safetensors_write(path, &tensor, 1, NULL, 0, &error) == 0);
    free(error);
    sdt_safetensors *st = NULL;
    CHECK(t, sdt_safetensors_open(path, &st, &error) == 0);
    free(error);
    const sdt_st_tensor *big = st ? sdt_safetensors_find(st, "big") : NULL;
    CHECK(t, big && big->nbytes == N && memcmp(big->data, expected, N) == 0);
    sdt_safetensors_close(st);

    /* A failing source: the old file stays, no temporary file is left. */
    size_t before_len = 0, after_len = 0;
    unsigned char *before = (unsigned char *)test_read_file(path, &before_len);
    p.fail_at = 2 * (1 << 20) + 5;
    CHECK(t, sdt_safetensors_write(path, &tensor, 1, NULL, 0, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "tensor \"big\": its data source failed at byte 2097152");
    free(error);
    unsigned char *after = (unsigned char *)test_read_file(path, &after_len);
    CHECK(t, before && after && before_len == after_len && memcmp(before, after, before_len) == 0);
    CHECK(t, count_entries(dir, ".tmp.") == 0);
    free(before);
    free(after);

    /* An unwritable place: a clear message, nothing created. */
    char *nowhere = sdt_format("%s/no-such-dir/x.safetensors", dir);
    CHECK(t, sdt_safetensors_write(nowhere, &tensor, 1, NULL, 0, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "cannot create a temporary file in");
    free(error);
    free(nowhere);
    test_remove_tree(dir);
    free(path);
    free(expected);
}

/* Many tensors (a checkpoint has ~1100): every one found by name, file order by offset. */
static void many_tensors(test_state *t)
{
    enum { N = 1500 };
    sdt_st_write_tensor *tensors = calloc(N, sizeof *tensors);
    char(*names)[32] = calloc(N, sizeof *names);
    int64_t(*shapes)[2] = calloc(N, sizeof *shapes);
    uint16_t *data = calloc(64, sizeof *data);
    CHECK(t, tensors && names && shapes && data);
    if (!tensors || !names || !shapes || !data)
        goto out;
    for (int i = 0; i < N; i++) {
        int j = (i * 7919) % N; /* shuffled names */
        snprintf(names[i], sizeof names[i], "layer.%d.weight", j);
        shapes[i][0] = j % 4;
        shapes[i][1] = 1 + j % 8;
        tensors[i] =
            (sdt_st_write_tensor){names[i], j % 3 ? SDT_F16 : SDT_BF16, 2, shapes[i], data, NULL, NULL};
    }
    char dir[256];
    CHECK(t, test_make_temp_dir(dir, sizeof dir, "safetensors") == 0);
    char *path = sdt_format("%s/many.safetensors", dir);
    char *error = NULL;
    CHECK(t, sdt_safetensors_write(path, tensors, N, NULL, 0, &error) == 0);
    free(error);
    sdt_safetensors *st = NULL;
    CHECK(t, sdt_safetensors_open(path, &st, &error) == 0);
    free(error);
    if (st) {
        CHECK(t, sdt_safetensors_count(st) == N);
        int missing = 0;
        for (int i = 0; i < N; i++) {
            const sdt_st_tensor *r = sdt_safetensors_find(st, names[i]);
            missing += !r || r->shape[0] != shapes[i][0] || r->shape[1] != shapes[i][1];
        }
        CHECK_MSG(t, missing == 0, "%d tensors not found or wrong", missing);
        for (size_t i = 1; i < sdt_safetensors_count(st); i++) {
            const sdt_st_tensor *a = sdt_safetensors_tensor(st, i - 1), *b = sdt_safetensors_tensor(st, i);
            CHECK(t, a->offset + a->nbytes == b->offset);
        }
        sdt_safetensors_close(st);
    }
    test_remove_tree(dir);
    free(path);
out:
    free(tensors);
    free(names);
    free(shapes);
    free(data);
}

/* Invalid input is refused with a message before anything is written: an existing file stays as it was and
 * no temporary file is left. */
static void writer_rejects(test_state *t)
{
    float d[4] = {0};
    int64_t ok_shape[1] = {4}, neg[1] = {-1}, odd[1] = {3}, nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    int64_t huge[2] = {(int64_t)SDT_ST_MAX_VALUE, (int64_t)SDT_ST_MAX_VALUE};
    const sdt_st_write_tensor good = {"w", SDT_F32, 1, ok_shape, d, NULL, NULL};
    pattern p = {0};
    struct {
        sdt_st_write_tensor t[2];
        size_t n;
        const char *meta[4];
        size_t n_meta;
        const char *message;
    } cases[] = {
        {{good, {"w", SDT_F16, 1, ok_shape, d, NULL, NULL}}, 2, {0}, 0, "tensor \"w\" is given twice"},
        {{{"__metadata__", SDT_F32, 1, ok_shape, d, NULL, NULL}}, 1, {0}, 0, "\"__metadata__\" is reserved"},
        {{{"", SDT_F32, 1, ok_shape, d, NULL, NULL}}, 1, {0}, 0, "tensor 0 has no name"},
        {{good, {NULL, SDT_F32, 1, ok_shape, d, NULL, NULL}}, 2, {0}, 0, "tensor 1 has no name"},
        {{{"bad\xff", SDT_F32, 1, ok_shape, d, NULL, NULL}},
         1,
         {0},
         0,
         "name of tensor 0 is not valid UTF-8"},
        {{{"w", SDT_F32, 1, neg, d, NULL, NULL}}, 1, {0}, 0, "shape[0] = -1 is outside 0 .. 2^48 - 1"},
        {{{"w", SDT_F32, 9, nine, d, NULL, NULL}}, 1, {0}, 0, "9 dimensions; 0 to 8 are supported"},
        {{{"w", SDT_F32, 1, NULL, d, NULL, NULL}}, 1, {0}, 0, "no shape given"},
        {{{"w", SDT_F4, 1, odd, d, NULL, NULL}}, 1, {0}, 0, "F4 [3] is 12 bits, not a whole number of bytes"},
        {{{"w", SDT_U8, 2, huge, d, NULL, NULL}}, 1, {0}, 0, "overflows 64 bits"},
        {{{"w", SDT_DTYPE_COUNT, 1, ok_shape, d, NULL, NULL}}, 1, {0}, 0, "invalid dtype"},
        {{{"w", SDT_F32, 1, ok_shape, NULL, NULL, NULL}}, 1, {0}, 0, "no data for 16 bytes"},
        {{{"w", SDT_F32, 1, ok_shape, d, fill_pattern, &p}}, 1, {0}, 0, "give data or fill, not both"},
        {{good}, 1, {"k", "v", "k", "w"}, 2, "duplicate metadata key \"k\""},
        {{good}, 1, {"k", NULL}, 1, "metadata pair 0 has no value"},
        {{good}, 1, {"k", "\xc0\x80"}, 1, "the value of metadata pair 0 is not valid UTF-8"},
    };
    char dir[256];
    CHECK(t, test_make_temp_dir(dir, sizeof dir, "safetensors") == 0);
    char *path = sdt_format("%s/keep.safetensors", dir);
    CHECK(t, test_write_file(path, "old contents", 12) == 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *error = NULL;
        int rc = sdt_safetensors_write(path, cases[i].t, cases[i].n, cases[i].meta, cases[i].n_meta, &error);
        CHECK_MSG(t, rc == -1, "case %zu accepted", i);
        CHECK_STR_CONTAINS(t, error, cases[i].message);
        free(error);
    }
    size_t len = 0;
    unsigned char *bytes = (unsigned char *)test_read_file(path, &len);
    CHECK(t, bytes && len == 12 && memcmp(bytes, "old contents", 12) == 0);
    free(bytes);
    CHECK(t, count_entries(dir, ".tmp.") == 0);

    /* Permissions of an existing file are kept. */
    CHECK(t, chmod(path, 0600) == 0);
    char *error = NULL;
    CHECK(t, sdt_safetensors_write(path, &good, 1, NULL, 0, &error) == 0);
    free(error);
    struct stat sb;
    CHECK(t, stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600);
    test_remove_tree(dir);
    free(path);
}

TEST_MAIN("safetensors", TEST(round_trip), TEST(header_layout), TEST(byte_exact), TEST(malformed_files),
          TEST(truncated_copies), TEST(reader_accepts), TEST(open_errors), TEST(writer_fill),
          TEST(many_tensors), TEST(writer_rejects))
