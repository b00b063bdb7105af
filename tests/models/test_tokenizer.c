/* The CLIP tokenizer against transformers' CLIPTokenizer: every line of tests/data/tokenizer/corpus.txt and
 * of random.jsonl with the small fixture vocabulary and, when ../shared/data/clip holds it, the real CLIP
 * vocabulary (ids, the 77-token form, the cleaned text, "!" as a special token); sd-scripts' 150/225
 * windows; the search for vocab.json + merges.txt; malformed files; and the speed (printed, not checked).
 * The expected values come from tools/golden/make_tokenizer_fixtures.py. */
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "sdtune/strutil.h"
#include "tokenizer.h"
#include "unit/check.h"
#include "unit/test_files.h"

#define DATA "tests/data/tokenizer"
#define REAL_MERGES "../shared/data/clip/bpe_simple_vocab_16e6.txt.gz"

/* ---- helpers ------------------------------------------------------------------------------------------ */

/* Reads a whole file (NUL-terminated, the caller frees); NULL when it cannot be read. */
static char *read_text(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    sdt_buf buf;
    sdt_buf_init(&buf);
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
        sdt_buf_append(&buf, chunk, got);
    fclose(f);
    if (len)
        *len = buf.len;
    return sdt_buf_take(&buf);
}

static int write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t n = strlen(text);
    size_t put = fwrite(text, 1, n, f);
    return fclose(f) == 0 && put == n ? 0 : -1;
}

/* The lines of a file, each parsed as JSON; NULL when the file cannot be read. */
typedef struct json_lines {
    json_t **v;
    size_t n;
} json_lines;

static bool read_json_lines(const char *path, json_lines *out)
{
    out->v = NULL;
    out->n = 0;
    char *text = read_text(path, NULL);
    if (!text)
        return false;
    size_t cap = 0;
    for (char *line = text; *line;) {
        char *end = strchr(line, '\n');
        if (end)
            *end = '\0';
        json_error_t err;
        json_t *value = json_loads(line, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        if (!value) {
            fprintf(stderr, "%s:%zu: %s\n", path, out->n + 1, err.text);
            exit(2);
        }
        if (out->n == cap) {
            cap = cap ? 2 * cap : 256;
            out->v = realloc(out->v, cap * sizeof *out->v);
            if (!out->v)
                exit(2);
        }
        out->v[out->n++] = value;
        line = end ? end + 1 : line + strlen(line);
    }
    free(text);
    return true;
}

static void free_json_lines(json_lines *l)
{
    for (size_t i = 0; i < l->n; i++)
        json_decref(l->v[i]);
    free(l->v);
}

/* True when the JSON array holds exactly these ids. */
static bool ids_equal(const json_t *array, const int32_t *ids, size_t n)
{
    if (!json_is_array(array) || json_array_size(array) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (json_integer_value(json_array_get(array, i)) != ids[i])
            return false;
    return true;
}

static void print_ids(const char *label, const int32_t *ids, size_t n)
{
    fprintf(stderr, "    %s:", label);
    for (size_t i = 0; i < n && i < 40; i++)
        fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, n > 40 ? " ... (%zu)\n" : "\n", n);
}

static void print_json_ids(const char *label, const json_t *array)
{
    char *s = json_dumps(array, JSON_COMPACT);
    fprintf(stderr, "    %s: %.300s\n", label, s ? s : "?");
    free(s);
}

static sdt_tokenizer *load_small(test_state *t)
{
    sdt_tokenizer *tok = NULL;
    char *error = NULL;
    int rc = sdt_tokenizer_load(DATA "/vocab.json", DATA "/merges.txt", &tok, &error);
    CHECK_MSG(t, rc == 0, "%s", error ? error : "");
    free(error);
    return tok;
}

static sdt_tokenizer *load_real(test_state *t)
{
    if (access(REAL_MERGES, R_OK) != 0)
        return NULL;
    sdt_tokenizer *tok = NULL;
    char *error = NULL;
    int rc = sdt_tokenizer_load_merge_file(REAL_MERGES, SDT_TOKENIZER_CLIP_MERGES, &tok, &error);
    CHECK_MSG(t, rc == 0, "%s", error ? error : "");
    free(error);
    return tok;
}

static sdt_tokenizer *with_bang(sdt_tokenizer *tok, test_state *t)
{
    char *error = NULL;
    int rc = sdt_tokenizer_add_special(tok, "!", &error);
    CHECK_MSG(t, rc == 0, "%s", error ? error : "");
    free(error);
    return tok;
}

/* ---- the corpus -----------------------------------------------------------------------------------------
 */

/* Every corpus line through tok (and bang, the same vocabulary with "!" special) against expected. */
static void check_corpus(test_state *t, const char *what, sdt_tokenizer *tok, sdt_tokenizer *bang,
                         const char *expected_path)
{
    json_lines corpus, expected;
    CHECK_MSG(t, read_json_lines(DATA "/corpus.txt", &corpus), "cannot read %s/corpus.txt", DATA);
    CHECK_MSG(t, read_json_lines(expected_path, &expected), "cannot read %s", expected_path);
    CHECK_MSG(t, corpus.n == expected.n && corpus.n >= 200, "%zu corpus lines, %zu expected", corpus.n,
              expected.n);
    size_t equal = 0, n = corpus.n < expected.n ? corpus.n : expected.n;
    for (size_t i = 0; i < n; i++) {
        const char *text = json_string_value(corpus.v[i]);
        size_t len = json_string_length(corpus.v[i]);
        const json_t *row = expected.v[i];
        int32_t *ids = NULL, padded[SDT_TOKENIZER_WINDOW];
        size_t count = 0;
        char *error = NULL, *clean = NULL;
        bool ok = sdt_tokenizer_encode(tok, text, len, &ids, &count, &error) == 0;
        CHECK_MSG(t, ok, "%s line %zu: %s", what, i + 1, error ? error : "");
        free(error);
        error = NULL;
        bool same = ok && ids_equal(json_object_get(row, "ids"), ids, count);
        if (ok && !same) {
            fprintf(stderr, "%s corpus line %zu differs: %s\n", what, i + 1,
                    json_dumps(corpus.v[i], JSON_ENCODE_ANY));
            print_ids("sdtune", ids, count);
            print_json_ids("transformers", json_object_get(row, "ids"));
        }
        CHECK(t, same);
        free(ids);

        ok = sdt_tokenizer_encode_padded(tok, text, len, SDT_TOKENIZER_WINDOW, sdt_tokenizer_eos(tok), padded,
                                         NULL, &error) == 0;
        CHECK_MSG(t, ok && ids_equal(json_object_get(row, "padded"), padded, SDT_TOKENIZER_WINDOW),
                  "%s line %zu: 77-token form differs %s", what, i + 1, error ? error : "");
        same = same && ok && ids_equal(json_object_get(row, "padded"), padded, SDT_TOKENIZER_WINDOW);
        free(error);
        error = NULL;

        const json_t *want_clean = json_object_get(row, "clean");
        if (want_clean) {
            ok = sdt_tokenizer_normalize(text, len, &clean, &error) == 0;
            bool clean_same = ok && strcmp(clean, json_string_value(want_clean)) == 0;
            CHECK_MSG(t, clean_same, "%s line %zu: cleaned text \"%s\", transformers \"%s\" %s", what, i + 1,
                      clean ? clean : "", json_string_value(want_clean), error ? error : "");
            same = same && clean_same;
            free(clean);
            free(error);
            error = NULL;
        }

        const json_t *want_bang = json_object_get(row, "bang");
        if (want_bang) {
            ok = sdt_tokenizer_encode(bang, text, len, &ids, &count, &error) == 0;
            bool bang_same = ok && ids_equal(want_bang, ids, count);
            if (ok && !bang_same) {
                fprintf(stderr, "%s corpus line %zu with \"!\" special differs\n", what, i + 1);
                print_ids("sdtune", ids, count);
                print_json_ids("transformers", want_bang);
            }
            CHECK(t, bang_same);
            same = same && bang_same;
            free(ids);
            free(error);
        }
        equal += same;
    }
    printf("  %s vocabulary: %zu of %zu corpus lines equal to transformers\n", what, equal, n);
    free_json_lines(&corpus);
    free_json_lines(&expected);
}

static void test_small_corpus(test_state *t)
{
    sdt_tokenizer *tok = load_small(t), *bang = with_bang(load_small(t), t);
    if (tok && bang)
        check_corpus(t, "small", tok, bang, DATA "/expected_small.jsonl");
    sdt_tokenizer_free(tok);
    sdt_tokenizer_free(bang);
}

/* The small merges.txt read as an openai merge list gives the vocabulary vocab.json spells out. */
static void test_small_merge_list(test_state *t)
{
    size_t len = 0;
    char *text = read_text(DATA "/merges.txt", &len);
    CHECK(t, text != NULL);
    sdt_tokenizer *derived = NULL, *files = load_small(t);
    char *error = NULL;
    int rc = sdt_tokenizer_load_merge_list("merges.txt", text, len, 0, &derived, &error);
    CHECK_MSG(t, rc == 0, "%s", error ? error : "");
    free(error);
    if (derived && files) {
        CHECK(t, sdt_tokenizer_vocab_size(derived) == sdt_tokenizer_vocab_size(files));
        CHECK(t, sdt_tokenizer_vocab_size(files) == 256 + 256 + 400 + 2);
        CHECK(t, sdt_tokenizer_bos(derived) == 912 && sdt_tokenizer_eos(derived) == 913);
        size_t same = 0;
        for (int32_t id = 0; id < (int32_t)sdt_tokenizer_vocab_size(files); id++) {
            const char *a = sdt_tokenizer_token(derived, id), *b = sdt_tokenizer_token(files, id);
            same += a && b && strcmp(a, b) == 0;
        }
        CHECK(t, same == sdt_tokenizer_vocab_size(files));
        CHECK(t, strcmp(sdt_tokenizer_token(files, 0), "!") == 0);
        CHECK(t, strcmp(sdt_tokenizer_token(files, 256), "!</w>") == 0);
        CHECK(t, sdt_tokenizer_token(files, 914) == NULL && sdt_tokenizer_token(files, -1) == NULL);
        /* Only the first merges: a list cut short gives a smaller vocabulary. */
        sdt_tokenizer *cut = NULL;
        CHECK(t, sdt_tokenizer_load_merge_list("merges.txt", text, len, 10, &cut, NULL) == 0);
        CHECK(t, cut && sdt_tokenizer_vocab_size(cut) == 512 + 10 + 2 && sdt_tokenizer_eos(cut) == 523);
        sdt_tokenizer_free(cut);
        error = NULL;
        CHECK(t, sdt_tokenizer_load_merge_list("merges.txt", text, len, 401, &cut, &error) != 0 && !cut);
        CHECK_STR_CONTAINS(t, error, "merges.txt: only 400 merges, expected 401");
        free(error);
    }
    sdt_tokenizer *bang = derived ? with_bang(derived, t) : NULL;
    if (derived && bang) {
        /* derived now has "!" special: compare it with a file-loaded twin through the corpus. */
        sdt_tokenizer *plain = load_small(t);
        check_corpus(t, "small (from the merge list)", plain, bang, DATA "/expected_small.jsonl");
        sdt_tokenizer_free(plain);
    }
    sdt_tokenizer_free(derived);
    sdt_tokenizer_free(files);
    free(text);
}

static void test_real_corpus(test_state *t)
{
    sdt_tokenizer *tok = load_real(t);
    if (!tok) {
        printf("  skipped: %s not found (the real-vocabulary checks need it)\n", REAL_MERGES);
        return;
    }
    sdt_tokenizer *bang = with_bang(load_real(t), t);
    CHECK(t, sdt_tokenizer_vocab_size(tok) == 49408);
    CHECK(t, sdt_tokenizer_bos(tok) == 49406 && sdt_tokenizer_eos(tok) == SDT_TOKENIZER_PAD_EOS);
    CHECK(t, strcmp(sdt_tokenizer_token(tok, 320), "a</w>") == 0);
    if (bang)
        check_corpus(t, "real", tok, bang, DATA "/expected_real.jsonl");
    sdt_tokenizer_free(tok);
    sdt_tokenizer_free(bang);
}

/* Random strings over the awkward characters (tests/data/tokenizer/random.jsonl). Strings marked as
 * needing ftfy's mojibake repair are counted, not checked (docs/tokenizer.md, known differences). */
static void check_random(test_state *t, const char *what, sdt_tokenizer *tok, sdt_tokenizer *bang)
{
    json_lines rows;
    CHECK_MSG(t, read_json_lines(DATA "/random.jsonl", &rows), "cannot read %s/random.jsonl", DATA);
    char *bang_key = sdt_format("%s_bang", what);
    size_t equal = 0, checked = 0, mojibake = 0;
    for (size_t i = 0; i < rows.n; i++) {
        const json_t *row = rows.v[i], *want = json_object_get(row, what);
        if (json_object_get(row, "mojibake")) {
            mojibake++;
            continue;
        }
        if (!want)
            continue;
        const json_t *text = json_object_get(row, "text");
        int32_t *ids = NULL;
        size_t count = 0;
        bool same = sdt_tokenizer_encode(tok, json_string_value(text), json_string_length(text), &ids, &count,
                                         NULL) == 0 &&
                    ids_equal(want, ids, count);
        free(ids);
        const json_t *want_bang = json_object_get(row, bang_key);
        if (same && want_bang) {
            ids = NULL;
            same = sdt_tokenizer_encode(bang, json_string_value(text), json_string_length(text), &ids, &count,
                                        NULL) == 0 &&
                   ids_equal(want_bang, ids, count);
            free(ids);
        }
        char *clean = NULL;
        if (same)
            same = sdt_tokenizer_normalize(json_string_value(text), json_string_length(text), &clean, NULL) ==
                       0 &&
                   strcmp(clean, json_string_value(json_object_get(row, "clean"))) == 0;
        free(clean);
        if (!same) {
            char *shown = json_dumps(text, JSON_ENCODE_ANY);
            fprintf(stderr, "%s vocabulary: random line %zu differs: %s\n", what, i + 1, shown ? shown : "?");
            free(shown);
        }
        CHECK(t, same);
        equal += same;
        checked++;
    }
    printf("  %s vocabulary: %zu of %zu random strings equal to transformers (%zu needing mojibake repair "
           "not checked)\n",
           what, equal, checked, mojibake);
    CHECK(t, checked >= 500 || checked == 0);
    free(bang_key);
    free_json_lines(&rows);
}

static void test_random_strings(test_state *t)
{
    sdt_tokenizer *tok = load_small(t), *bang = with_bang(load_small(t), t);
    if (tok && bang)
        check_random(t, "small", tok, bang);
    sdt_tokenizer_free(tok);
    sdt_tokenizer_free(bang);
    tok = load_real(t);
    if (!tok) {
        printf("  skipped: real-vocabulary random strings (%s not found)\n", REAL_MERGES);
        return;
    }
    bang = with_bang(load_real(t), t);
    if (bang)
        check_random(t, "real", tok, bang);
    sdt_tokenizer_free(tok);
    sdt_tokenizer_free(bang);
}

/* ---- windows ------------------------------------------------------------------------------------------ */

static void check_kohya(test_state *t, const char *what, sdt_tokenizer *tok, sdt_tokenizer *bang,
                        const char *path)
{
    json_lines corpus, rows;
    CHECK(t, read_json_lines(DATA "/corpus.txt", &corpus));
    CHECK_MSG(t, read_json_lines(path, &rows), "cannot read %s", path);
    size_t equal = 0;
    for (size_t r = 0; r < rows.n; r++) {
        const json_t *row = rows.v[r];
        size_t line = (size_t)json_integer_value(json_object_get(row, "line"));
        int mtl = (int)json_integer_value(json_object_get(row, "max_token_length"));
        int32_t pad = (int32_t)json_integer_value(json_object_get(row, "pad"));
        bool zero = strcmp(json_string_value(json_object_get(row, "pad_is")), "zero") == 0;
        const json_t *windows = json_object_get(row, "windows");
        if (line < 1 || line > corpus.n) {
            CHECK_MSG(t, false, "%s row %zu: no corpus line %zu", path, r + 1, line);
            continue;
        }
        const json_t *text = corpus.v[line - 1];
        int32_t out[3 * SDT_TOKENIZER_WINDOW];
        int n = 0;
        char *error = NULL;
        int rc = sdt_tokenizer_encode_windows(zero ? bang : tok, json_string_value(text),
                                              json_string_length(text), mtl, pad, out, &n, &error);
        CHECK_MSG(t, rc == 0, "%s", error ? error : "");
        free(error);
        bool same = rc == 0 && (size_t)n == json_array_size(windows);
        for (int w = 0; same && w < n; w++)
            same = ids_equal(json_array_get(windows, (size_t)w), out + (size_t)w * SDT_TOKENIZER_WINDOW,
                             SDT_TOKENIZER_WINDOW);
        CHECK_MSG(t, same, "%s: line %zu, max_token_length %d, pad %d: windows differ", what, line, mtl, pad);
        equal += same;
    }
    printf("  %s vocabulary: %zu of %zu sd-scripts window cases equal\n", what, equal, rows.n);
    CHECK(t, rows.n >= 24);
    free_json_lines(&corpus);
    free_json_lines(&rows);
}

static void test_kohya_windows(test_state *t)
{
    sdt_tokenizer *tok = load_small(t), *bang = with_bang(load_small(t), t);
    if (tok && bang)
        check_kohya(t, "small", tok, bang, DATA "/kohya_small.jsonl");
    sdt_tokenizer_free(tok);
    sdt_tokenizer_free(bang);
    tok = load_real(t);
    if (!tok) {
        printf("  skipped: real-vocabulary windows (%s not found)\n", REAL_MERGES);
        return;
    }
    bang = with_bang(load_real(t), t);
    if (bang)
        check_kohya(t, "real", tok, bang, DATA "/kohya_real.jsonl");
    sdt_tokenizer_free(tok);
    sdt_tokenizer_free(bang);
}

/* The window rules on hand-made cases (sd_arch_spec.md §3.6), independent of the fixtures. */
static void test_window_rules(test_state *t)
{
    sdt_tokenizer *tok = load_small(t);
    if (!tok)
        return;
    const int32_t bos = sdt_tokenizer_bos(tok), eos = sdt_tokenizer_eos(tok);
    int32_t out[3 * SDT_TOKENIZER_WINDOW];
    int n = 0;
    /* Empty text, pad 0, 225: window 0 is BOS EOS 0...; the empty windows 1 and 2 become BOS EOS 0... too. */
    CHECK(t, sdt_tokenizer_encode_windows(tok, "", 0, 225, 0, out, &n, NULL) == 0 && n == 3);
    for (int w = 0; w < 3; w++) {
        const int32_t *win = out + w * SDT_TOKENIZER_WINDOW;
        bool ok = win[0] == bos && win[1] == eos;
        for (int k = 2; k < SDT_TOKENIZER_WINDOW; k++)
            ok = ok && win[k] == 0;
        CHECK_MSG(t, ok, "empty text, window %d", w);
    }
    /* The same with pad = EOS: windows are used as cut, EOS everywhere after the text. */
    CHECK(t, sdt_tokenizer_encode_windows(tok, "", 0, 150, eos, out, &n, NULL) == 0 && n == 2);
    CHECK(t, out[0] == bos && out[1] == eos && out[76] == eos && out[77] == bos && out[78] == eos &&
                 out[153] == eos);
    /* 75 one-token words fill window 0 exactly: its last token is the vector's last (a pad), which the
     * pad-0 fix-up turns into EOS; window 1 starts with the real EOS. */
    sdt_buf words;
    sdt_buf_init(&words);
    for (int k = 0; k < 75; k++)
        sdt_buf_puts(&words, "a ");
    CHECK(t, sdt_tokenizer_encode_windows(tok, words.data, words.len, 150, 0, out, &n, NULL) == 0 && n == 2);
    int32_t a = out[1];
    CHECK(t, a != eos && out[75] == a && out[76] == eos && out[77] == bos && out[78] == eos && out[79] == 0 &&
                 out[153] == 0);
    /* With 0 or 75 a single window: BOS, the first 75 ids, EOS; the rest is cut. */
    sdt_buf_puts(&words, "a a a");
    int truncated = 0;
    int32_t padded[SDT_TOKENIZER_WINDOW];
    CHECK(t, sdt_tokenizer_encode_padded(tok, words.data, words.len, SDT_TOKENIZER_WINDOW, 0, padded,
                                         &truncated, NULL) == 0 &&
                 truncated);
    CHECK(t, sdt_tokenizer_encode_windows(tok, words.data, words.len, 0, 0, out, &n, NULL) == 0 && n == 1);
    CHECK(t, memcmp(out, padded, sizeof padded) == 0 && out[75] == a && out[76] == eos);
    CHECK(t, sdt_tokenizer_encode_windows(tok, "a", 1, 75, 0, out, &n, NULL) == 0 && n == 1);
    CHECK(t, out[0] == bos && out[1] == a && out[2] == eos && out[3] == 0 && out[76] == 0);
    CHECK(t, sdt_tokenizer_encode_padded(tok, "a", 1, 77, 0, padded, &truncated, NULL) == 0 && !truncated);
    sdt_buf_free(&words);
    char *error = NULL;
    CHECK(t, sdt_tokenizer_encode_windows(tok, "a", 1, 100, 0, out, &n, &error) != 0);
    CHECK_STR_CONTAINS(t, error, "max_token_length must be 75, 150 or 225, not 100");
    free(error);
    error = NULL;
    CHECK(t, sdt_tokenizer_encode_padded(tok, "a", 1, 1, 0, padded, NULL, &error) != 0);
    CHECK_STR_CONTAINS(t, error, "no room for BOS and EOS");
    free(error);
    sdt_tokenizer_free(tok);
}

/* ---- other encoder behaviour -------------------------------------------------------------------------- */

static void test_encode_errors_and_cache(test_state *t)
{
    sdt_tokenizer *tok = load_small(t);
    if (!tok)
        return;
    int32_t *ids = NULL;
    size_t count = 0;
    char *error = NULL;
    CHECK(t, sdt_tokenizer_encode(tok, "ok \xff bad", 8, &ids, &count, &error) != 0 && !ids);
    CHECK_STR_CONTAINS(t, error, "not valid UTF-8 (byte 3)");
    free(error);
    error = NULL;
    CHECK(t, sdt_tokenizer_encode(tok, "\xed\xa0\x80", 3, &ids, &count, &error) != 0);
    free(error);
    error = NULL;
    CHECK(t, sdt_tokenizer_add_special(tok, "nope-not-a-token", &error) != 0);
    CHECK_STR_CONTAINS(t, error, "is not in the vocabulary");
    free(error);
    CHECK(t, sdt_tokenizer_add_special(tok, "<|endoftext|>", NULL) == 0); /* already special */
    CHECK(t, sdt_tokenizer_encode(tok, "", 0, &ids, &count, NULL) == 0 && count == 0 && !ids);

    /* More distinct words than the word cache holds: it empties itself and results stay the same as a
     * fresh tokenizer's. */
    sdt_buf text;
    sdt_buf_init(&text);
    for (int k = 0; k < 20000; k++)
        sdt_buf_printf(&text, "w%xq ", (unsigned)k * 2654435761u);
    int32_t *first = NULL, *second = NULL;
    size_t n1 = 0, n2 = 0;
    CHECK(t, sdt_tokenizer_encode(tok, text.data, text.len, &first, &n1, NULL) == 0);
    CHECK(t, sdt_tokenizer_encode(tok, text.data, text.len, &second, &n2, NULL) == 0);
    CHECK(t, n1 == n2 && n1 > 20000 && memcmp(first, second, n1 * sizeof *first) == 0);
    sdt_tokenizer *fresh = load_small(t);
    int32_t *third = NULL;
    size_t n3 = 0;
    CHECK(t, fresh && sdt_tokenizer_encode(fresh, text.data, text.len, &third, &n3, NULL) == 0);
    CHECK(t, n3 == n1 && third && memcmp(first, third, n1 * sizeof *first) == 0);
    free(first);
    free(second);
    free(third);
    sdt_tokenizer_free(fresh);
    sdt_buf_free(&text);
    sdt_tokenizer_free(tok);
}

/* ---- finding the files -------------------------------------------------------------------------------- */

/* mkdir -p, then the two tokenizer files in it (copies of the small fixture files). */
static void make_tokenizer_folder(test_state *t, const char *folder)
{
    char *copy = sdt_strdup(folder);
    for (char *p = copy + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(copy, 0700);
            *p = '/';
        }
    mkdir(copy, 0700);
    free(copy);
    const char *names[] = {"vocab.json", "merges.txt"};
    for (int k = 0; k < 2; k++) {
        char *src = sdt_format("%s/%s", DATA, names[k]), *dst = sdt_format("%s/%s", folder, names[k]);
        char *text = read_text(src, NULL);
        CHECK(t, text && write_text(dst, text) == 0);
        free(text);
        free(src);
        free(dst);
    }
}

static void check_found(test_state *t, const char *configured, const char *model, const char *want_folder)
{
    char *vocab = NULL, *merges = NULL, *error = NULL;
    int rc = sdt_tokenizer_find(configured, model, NULL, &vocab, &merges, &error);
    char *want_vocab = sdt_format("%s/vocab.json", want_folder),
         *want_merges = sdt_format("%s/merges.txt", want_folder);
    CHECK_MSG(t, rc == 0 && strcmp(vocab, want_vocab) == 0 && strcmp(merges, want_merges) == 0,
              "found %s, wanted %s (%s)", vocab ? vocab : "nothing", want_vocab, error ? error : "");
    free(vocab);
    free(merges);
    free(error);
    free(want_vocab);
    free(want_merges);
}

static void test_find(test_state *t)
{
    char root[512];
    if (test_make_temp_dir(root, sizeof root, "tokenizer") != 0) {
        CHECK_MSG(t, false, "cannot make a temporary folder");
        return;
    }
    char *hf_home = sdt_format("%s/hf", root), *config = sdt_format("%s/my-tokenizer", root);
    char *model = sdt_format("%s/model", root);
    char *repo = sdt_format("%s/hub/models--openai--clip-vit-large-patch14", hf_home);
    setenv("HF_HOME", hf_home, 1);
    unsetenv("HF_HUB_CACHE");
    unsetenv("HUGGINGFACE_HUB_CACHE");
    unsetenv("XDG_CACHE_HOME");

    /* A configured path that does not hold the files is an error of its own. */
    char *vocab = NULL, *merges = NULL, *error = NULL;
    CHECK(t, sdt_tokenizer_find(config, model, NULL, &vocab, &merges, &error) != 0 && !vocab && !merges);
    char *want = sdt_format("tokenizer_dir %s: does not exist\ntokenizer_dir must name a folder", config);
    CHECK_STR_CONTAINS(t, error, want);
    free(want);
    free(error);
    error = NULL;

    /* Nothing anywhere: the error lists every place and says what to do. */
    CHECK(t, sdt_tokenizer_find(NULL, model, NULL, &vocab, &merges, &error) != 0 && !vocab && !merges);
    want = sdt_format("model folder %s/tokenizer: no such folder", model);
    CHECK_STR_CONTAINS(t, error, want);
    free(want);
    want = sdt_format("Hugging Face cache ($HF_HOME) %s/snapshots/*: not downloaded", repo);
    CHECK_STR_CONTAINS(t, error, want);
    free(want);
    CHECK_STR_CONTAINS(t, error, "set tokenizer_dir in [model]");
    CHECK_STR_CONTAINS(t, error,
                       "huggingface-cli download openai/clip-vit-large-patch14 vocab.json merges.txt");
    printf("  the error when nothing is found:\n%s\n", error ? error : "");
    free(error);

    /* A snapshot with the files in its tokenizer/ folder. */
    char *snap_a = sdt_format("%s/snapshots/aaaa", repo), *snap_a_tok = sdt_format("%s/tokenizer", snap_a);
    make_tokenizer_folder(t, snap_a_tok);
    check_found(t, NULL, NULL, snap_a_tok);
    check_found(t, "", "", snap_a_tok);
    /* A second snapshot with the files at its root, named by refs/main: tried first. */
    char *snap_b = sdt_format("%s/snapshots/bbbb", repo), *refs = sdt_format("%s/refs", repo);
    char *ref_main = sdt_format("%s/main", refs);
    make_tokenizer_folder(t, snap_b);
    check_found(t, NULL, NULL, snap_a_tok); /* without refs/main: by name */
    mkdir(refs, 0700);
    CHECK(t, write_text(ref_main, "bbbb\n") == 0);
    check_found(t, NULL, NULL, snap_b);

    /* A snapshot holding only vocab.json is named in the error with what it lacks. */
    setenv("HF_HUB_CACHE", root, 1); /* overrides HF_HOME: an empty cache */
    CHECK(t, sdt_tokenizer_find(NULL, NULL, NULL, &vocab, &merges, &error) != 0);
    want = sdt_format("Hugging Face cache ($HF_HUB_CACHE) %s/models--openai--clip-vit-large-patch14", root);
    CHECK_STR_CONTAINS(t, error, want);
    free(want);
    free(error);
    error = NULL;
    char *hub2 = sdt_format("%s/hub2", root),
         *half = sdt_format("%s/models--openai--clip-vit-large-patch14/snapshots/cccc", hub2);
    make_tokenizer_folder(t, half);
    char *half_merges = sdt_format("%s/merges.txt", half);
    unlink(half_merges);
    setenv("HF_HUB_CACHE", hub2, 1);
    CHECK(t, sdt_tokenizer_find(NULL, NULL, NULL, &vocab, &merges, &error) != 0);
    want = sdt_format("%s: no merges.txt", half);
    CHECK_STR_CONTAINS(t, error, want);
    free(want);
    want = sdt_format("%s/tokenizer: no such folder", half);
    CHECK_STR_CONTAINS(t, error, want);
    free(want);
    free(error);
    error = NULL;
    /* XDG_CACHE_HOME when HF_HOME is unset. */
    unsetenv("HF_HUB_CACHE");
    unsetenv("HF_HOME");
    setenv("XDG_CACHE_HOME", root, 1);
    CHECK(t, sdt_tokenizer_find(NULL, NULL, NULL, &vocab, &merges, &error) != 0);
    want = sdt_format("Hugging Face cache ($XDG_CACHE_HOME) %s/huggingface/hub/models--openai", root);
    CHECK_STR_CONTAINS(t, error, want);
    free(want);
    free(error);
    error = NULL;
    setenv("HF_HOME", hf_home, 1);

    /* The model's tokenizer/ folder comes before the cache, the configured path before both. */
    char *model_tok = sdt_format("%s/tokenizer", model);
    make_tokenizer_folder(t, model_tok);
    check_found(t, NULL, model, model_tok);
    make_tokenizer_folder(t, config);
    check_found(t, config, model, config);
    char *config_vocab = sdt_format("%s/vocab.json", config);
    check_found(t, config_vocab, model, config);
    /* A configured folder without the files, or a vocab.json without merges.txt beside it, is reported
     * even though the model folder and the cache hold the files. */
    char *empty = sdt_format("%s/empty", root), *lone = sdt_format("%s/empty/vocab.json", root);
    mkdir(empty, 0700);
    CHECK(t, sdt_tokenizer_find(empty, model, NULL, &vocab, &merges, &error) != 0 && !vocab);
    want = sdt_format("tokenizer_dir %s: no vocab.json or merges.txt", empty);
    CHECK_STR_CONTAINS(t, error, want);
    free(want);
    free(error);
    error = NULL;
    CHECK(t, write_text(lone, "{}") == 0);
    CHECK(t, sdt_tokenizer_find(lone, model, NULL, &vocab, &merges, &error) != 0 && !vocab);
    want = sdt_format("tokenizer_dir %s: no %s/merges.txt beside it", lone, empty);
    CHECK_STR_CONTAINS(t, error, want);
    free(want);
    free(error);
    error = NULL;
    free(lone);

    /* open = find + load. */
    sdt_tokenizer *tok = NULL;
    CHECK(t, sdt_tokenizer_open(config, NULL, NULL, &tok, NULL) == 0 && tok);
    int32_t *ids = NULL;
    size_t count = 0;
    CHECK(t, tok && sdt_tokenizer_encode(tok, "a photo of a cat", 16, &ids, &count, NULL) == 0 && count == 5);
    free(ids);
    sdt_tokenizer_free(tok);
    unsetenv("HF_HOME");
    unsetenv("XDG_CACHE_HOME");

    free(empty);
    free(config_vocab);
    free(model_tok);
    free(half_merges);
    free(half);
    free(hub2);
    free(ref_main);
    free(refs);
    free(snap_b);
    free(snap_a_tok);
    free(snap_a);
    free(repo);
    free(model);
    free(config);
    free(hf_home);
    test_remove_tree(root);
}

/* ---- malformed files ---------------------------------------------------------------------------------- */

static const char good_merges[] = "#version: 0.2\ni n\n";
static const char good_vocab_tail[] = "  \"<|startoftext|>\": 10,\n  \"<|endoftext|>\": 11\n}\n";

/* Loads vocab + merges texts written to dir; returns the error (caller frees) or NULL on success. */
static char *load_error(const char *dir, const char *vocab, const char *merges)
{
    char *vp = sdt_format("%s/vocab.json", dir), *mp = sdt_format("%s/merges.txt", dir);
    write_text(vp, vocab);
    write_text(mp, merges);
    sdt_tokenizer *tok = NULL;
    char *error = NULL;
    if (sdt_tokenizer_load(vp, mp, &tok, &error) == 0) {
        sdt_tokenizer_free(tok);
        error = NULL;
    }
    free(vp);
    free(mp);
    return error;
}

static void expect_load_error(test_state *t, const char *dir, const char *vocab, const char *merges,
                              const char *file, const char *message)
{
    char *error = load_error(dir, vocab, merges);
    char *want = sdt_format("%s/%s%s", dir, file, message);
    CHECK_MSG(t, error && strstr(error, want), "error \"%s\", wanted \"%s\"", error ? error : "(none)", want);
    free(want);
    free(error);
}

static void test_malformed(test_state *t)
{
    char dir[512];
    if (test_make_temp_dir(dir, sizeof dir, "tokenizer") != 0) {
        CHECK_MSG(t, false, "cannot make a temporary folder");
        return;
    }
    char *vocab = sdt_format("{\n  \"i\": 1,\n  \"n\": 2,\n%s", good_vocab_tail);
    char *error = load_error(dir, vocab, good_merges);
    CHECK_MSG(t, error == NULL, "%s", error);
    free(error);
    free(vocab);
    /* JSON escapes, as json.dump writes them with ensure_ascii. */
    vocab = sdt_format("{\"\\u00e9\": 3, \"\\ud83d\\ude00\": 4, \"a\\\"b\\\\\\/\\n\\t\": 5,\n%s",
                       good_vocab_tail);
    char *vp = sdt_format("%s/vocab.json", dir), *mp = sdt_format("%s/merges.txt", dir);
    sdt_tokenizer *tok = NULL;
    CHECK(t, write_text(vp, vocab) == 0 && write_text(mp, good_merges) == 0);
    CHECK(t, sdt_tokenizer_load(vp, mp, &tok, NULL) == 0 && tok);
    if (tok) {
        CHECK(t, strcmp(sdt_tokenizer_token(tok, 3), "\xc3\xa9") == 0);
        CHECK(t, strcmp(sdt_tokenizer_token(tok, 4), "\xf0\x9f\x98\x80") == 0);
        CHECK(t, strcmp(sdt_tokenizer_token(tok, 5), "a\"b\\/\n\t") == 0);
        CHECK(t, sdt_tokenizer_bos(tok) == 10 && sdt_tokenizer_eos(tok) == 11 &&
                     sdt_tokenizer_vocab_size(tok) == 5);
    }
    sdt_tokenizer_free(tok);
    tok = NULL;
    free(vp);
    free(mp);
    free(vocab);

    expect_load_error(t, dir, "{\n  \"a\": 1,\n  \"b\": x\n}\n", good_merges, "vocab.json",
                      ":3: expected an integer id");
    expect_load_error(t, dir, "{\n  \"a\" 1\n}", good_merges, "vocab.json",
                      ":2: expected ':' after the token string");
    expect_load_error(t, dir, "{\n  \"a\": 1,\n}", good_merges, "vocab.json", ":3: expected a token string");
    expect_load_error(t, dir, "{\n\n  \"a\": 1.5\n}", good_merges, "vocab.json",
                      ":3: a token id must be an integer");
    expect_load_error(t, dir, "{\"a\": -1}", good_merges, "vocab.json",
                      ":1: a token id must not be negative");
    expect_load_error(t, dir, "{\"a\": 99999999999}", good_merges, "vocab.json", ":1: token id too large");
    expect_load_error(t, dir, "[\"a\", 1]", good_merges, "vocab.json", ":1: expected a JSON object");
    expect_load_error(t, dir, "{\n  \"a\": 1\n", good_merges, "vocab.json", ":3: expected ',' or '}'");
    expect_load_error(t, dir, "{\n  \"abc", good_merges, "vocab.json", ":2: unterminated string");
    expect_load_error(t, dir, "{\n  \"a\\q\": 1}", good_merges, "vocab.json", ":2: unknown escape");
    expect_load_error(t, dir, "{\n  \"\\ud800\": 1}", good_merges, "vocab.json",
                      ":2: a \\u escape of a lone");
    expect_load_error(t, dir, "{\n  \"a\tb\": 1}", good_merges, "vocab.json", ":2: control character");
    expect_load_error(t, dir, "{\n\n  \"\xc3\x28\": 1}", good_merges, "vocab.json", ":3: not valid UTF-8");
    expect_load_error(t, dir, "{\"a\": 1} x", good_merges, "vocab.json", ":1: unexpected text after");
    expect_load_error(t, dir, "{\"a\": 01}", good_merges, "vocab.json", ":1: a number with a leading zero");
    expect_load_error(t, dir, "{\"<|startoftext|>\": 1}", good_merges, "vocab.json",
                      ": the vocabulary has no <|endoftext|>");

    vocab = sdt_format("{\n%s", good_vocab_tail);
    expect_load_error(t, dir, vocab, "i n\no n\n", "merges.txt", ":1: expected the header line");
    expect_load_error(t, dir, vocab, "#version: 0.2\ni n\no\n", "merges.txt",
                      ":3: expected a merge: two symbols separated by a space, found one");
    expect_load_error(t, dir, vocab, "#version: 0.2\ni n o\n", "merges.txt",
                      ":2: expected a merge: two symbols separated by a space, found more than two");
    expect_load_error(t, dir, vocab, "#version: 0.2\ni n\n\no n\n", "merges.txt",
                      ":3: expected a merge: two symbols separated by a space, found an empty line");
    expect_load_error(t, dir, vocab, "#version: 0.2\ni n\n\xff\xfe\n", "merges.txt", ":3: not valid UTF-8");
    expect_load_error(t, dir, vocab, "", "merges.txt", ": empty merge list");
    /* CRLF line ends, tabs and trailing blank lines are accepted. */
    error = load_error(dir, vocab, "#version: 0.2\r\ni n\r\no\tn\r\n\r\n\n");
    CHECK_MSG(t, error == NULL, "%s", error);
    free(error);
    char *missing = sdt_format("%s/nowhere/vocab.json", dir);
    error = NULL;
    CHECK(t, sdt_tokenizer_load(missing, missing, &tok, &error) != 0 && !tok);
    CHECK_STR_CONTAINS(t, error, "nowhere/vocab.json: cannot open");
    free(error);
    free(missing);
    free(vocab);
    test_remove_tree(dir);
}

/* ---- speed -------------------------------------------------------------------------------------------- */

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Tokens per second, printed only: loading the vocabulary; the whole corpus through a fresh tokenizer
 * (its word cache empty at the start); then the long prompts again and again, their words cached as they
 * are when training repeats captions. */
static void test_speed(test_state *t)
{
    double start = now_seconds();
    sdt_tokenizer *tok = load_real(t);
    const char *which = "real";
    if (!tok) {
        tok = load_small(t);
        which = "small";
    }
    double load = now_seconds() - start;
    json_lines corpus;
    if (!tok || !read_json_lines(DATA "/corpus.txt", &corpus)) {
        sdt_tokenizer_free(tok);
        return;
    }
    size_t tokens = 0, bytes = 0;
    start = now_seconds();
    for (size_t i = 0; i < corpus.n; i++) {
        int32_t *ids = NULL;
        size_t count = 0;
        CHECK(t, sdt_tokenizer_encode(tok, json_string_value(corpus.v[i]), json_string_length(corpus.v[i]),
                                      &ids, &count, NULL) == 0);
        tokens += count;
        bytes += json_string_length(corpus.v[i]);
        free(ids);
    }
    double cold = now_seconds() - start;
    size_t first = corpus.n >= 12 ? corpus.n - 12 : 0; /* the long prompts end the corpus */
    size_t warm_tokens = 0;
    int rounds = 0;
    start = now_seconds();
    while (now_seconds() - start < 0.5) {
        for (size_t i = first; i < corpus.n; i++) {
            int32_t *ids = NULL;
            size_t count = 0;
            sdt_tokenizer_encode(tok, json_string_value(corpus.v[i]), json_string_length(corpus.v[i]), &ids,
                                 &count, NULL);
            warm_tokens += count;
            free(ids);
        }
        rounds++;
    }
    double warm = now_seconds() - start;
    printf(
        "  speed, %s vocabulary: loaded in %.0f ms; corpus (%zu lines, %zu bytes, %zu tokens) from an empty "
        "word cache %.0f tokens/s; the %zu long prompts with cached words %.0f tokens/s\n",
        which, load * 1e3, corpus.n, bytes, tokens, tokens / (cold > 0 ? cold : 1e-9), corpus.n - first,
        warm_tokens / warm);
    free_json_lines(&corpus);
    sdt_tokenizer_free(tok);
}

int main(void)
{
    if (access(DATA "/corpus.txt", R_OK) != 0) {
        printf("skipped: %s/corpus.txt not found (run from the repository root)\n", DATA);
        return 77;
    }
    static const test_case cases[] = {
        TEST(test_small_corpus),
        TEST(test_small_merge_list),
        TEST(test_real_corpus),
        TEST(test_random_strings),
        TEST(test_kohya_windows),
        TEST(test_window_rules),
        TEST(test_encode_errors_and_cache),
        TEST(test_find),
        TEST(test_malformed),
        TEST(test_speed),
    };
    return run_tests("models.tokenizer", cases, sizeof cases / sizeof cases[0]);
}
