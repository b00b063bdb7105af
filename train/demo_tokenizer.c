/* The demo's tokenizer: CLIP's byte-level BPE scheme with its own tiny merge list. The 256 byte symbols
 * and their word-final forms get ids 0-511 in CLIP's order, then one token per merge, and the two special
 * tokens keep CLIP's ids 49406 and 49407, which the text encoder (vocabulary 49408) and sd-scripts'
 * padding expect. The merges join the letters of the demo's caption words left to right, so each such
 * word becomes one token; any other text still encodes, byte by byte. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo_internal.h"
#include "sdtune/atomic_file.h"
#include "sdtune/strutil.h"

#define DEMO_BOS_ID 49406
#define DEMO_EOS_ID 49407

static const char *const demo_words[] = {
    "a",      "an",     "red",      "green",   "blue", "yellow",     "purple", "white", "black", "orange",
    "circle", "square", "triangle", "stripes", "on",   "background", "and",    "with",  "shape",
};

/* GPT-2's bytes_to_unicode: printable bytes stand for themselves, the others for code points from 256 up.
 * order[k] is the byte of vocabulary id k (CLIP's order), code[b] the code point of byte b. */
static void byte_symbols(int order[256], int code[256])
{
    int k = 0, extra = 0, used[256] = {0};
    for (int b = 0; b < 256; b++)
        if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) {
            order[k++] = b;
            code[b] = b;
            used[b] = 1;
        }
    for (int b = 0; b < 256; b++)
        if (!used[b]) {
            order[k++] = b;
            code[b] = 256 + extra++;
        }
}

/* A code point below 0x800 as UTF-8, JSON-escaped where JSON needs it. */
static void put_symbol(sdt_buf *b, int cp)
{
    if (cp == '"' || cp == '\\') {
        char s[3] = {'\\', (char)cp, 0};
        sdt_buf_puts(b, s);
    } else if (cp < 0x80) {
        char s[2] = {(char)cp, 0};
        sdt_buf_puts(b, s);
    } else {
        char s[3] = {(char)(0xC0 | (cp >> 6)), (char)(0x80 | (cp & 0x3F)), 0};
        sdt_buf_puts(b, s);
    }
}

typedef struct merge_list {
    char lines[256][64];  /* "left right" */
    char tokens[256][64]; /* the merged token */
    int count;
} merge_list;

static int has_merge(const merge_list *m, const char *line)
{
    for (int i = 0; i < m->count; i++)
        if (strcmp(m->lines[i], line) == 0)
            return 1;
    return 0;
}

/* The merges that join word's letters left to right: "r e", "re d</w>" for "red". */
static void add_word(merge_list *m, const char *word)
{
    size_t n = strlen(word);
    char left[32];
    snprintf(left, sizeof left, "%c", word[0]);
    for (size_t i = 1; i < n && m->count < 256; i++) {
        char right[8], line[64], token[64];
        snprintf(right, sizeof right, "%c%s", word[i], i + 1 == n ? "</w>" : "");
        snprintf(line, sizeof line, "%s %s", left, right);
        snprintf(token, sizeof token, "%s%s", left, right);
        if (!has_merge(m, line)) {
            snprintf(m->lines[m->count], sizeof m->lines[0], "%s", line);
            snprintf(m->tokens[m->count], sizeof m->tokens[0], "%s", token);
            m->count++;
        }
        snprintf(left, sizeof left, "%.*s", (int)(i + 1), word);
    }
}

int sdt_demo_write_tokenizer(const char *dir, char **error)
{
    merge_list *m = calloc(1, sizeof *m);
    if (!m)
        return sdt_set_error(error, "out of memory");
    for (size_t i = 0; i < sizeof demo_words / sizeof demo_words[0]; i++)
        add_word(m, demo_words[i]);

    int order[256], code[256];
    byte_symbols(order, code);
    sdt_buf vocab, merges;
    sdt_buf_init(&vocab);
    sdt_buf_init(&merges);
    sdt_buf_puts(&vocab, "{\n");
    for (int suffix = 0; suffix < 2; suffix++)
        for (int k = 0; k < 256; k++) {
            sdt_buf_puts(&vocab, "  \"");
            put_symbol(&vocab, code[order[k]]);
            sdt_buf_printf(&vocab, "%s\": %d,\n", suffix ? "</w>" : "", suffix * 256 + k);
        }
    /* A merge's token can equal a byte symbol's only for one-letter words, which have no merges. */
    for (int i = 0; i < m->count; i++)
        sdt_buf_printf(&vocab, "  \"%s\": %d,\n", m->tokens[i], 512 + i);
    sdt_buf_printf(&vocab, "  \"<|startoftext|>\": %d,\n  \"<|endoftext|>\": %d\n}\n", DEMO_BOS_ID,
                   DEMO_EOS_ID);
    sdt_buf_puts(&merges, "#version: 0.2\n");
    for (int i = 0; i < m->count; i++)
        sdt_buf_printf(&merges, "%s\n", m->lines[i]);
    free(m);

    int rc = 0;
    char *vocab_path = sdt_format("%s/vocab.json", dir), *merges_path = sdt_format("%s/merges.txt", dir);
    if (vocab.failed || merges.failed || !vocab_path || !merges_path)
        rc = sdt_set_error(error, "out of memory");
    if (rc == 0)
        rc = sdt_atomic_write(vocab_path, vocab.data, vocab.len, error);
    if (rc == 0)
        rc = sdt_atomic_write(merges_path, merges.data, merges.len, error);
    sdt_buf_free(&vocab);
    sdt_buf_free(&merges);
    free(vocab_path);
    free(merges_path);
    return rc;
}
