/* The text side of the CLIP tokenizer, internal to models/: what transformers' CLIPTokenizer does to a
 * string before byte-level BPE. That is ftfy.fix_text (without its mojibake repair), whitespace_clean,
 * Python's str.lower() and the pre-tokenising pattern. Text is handled as arrays of code points. The
 * tables come from tools/gen_tokenizer_tables.py (models/tokenizer_tables.c). See docs/tokenizer.md. */
#ifndef SDTUNE_MODELS_TOKENIZER_TEXT_H
#define SDTUNE_MODELS_TOKENIZER_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A growable array of code points. On allocation failure `failed` is set and later appends do
 * nothing, so callers check once at the end. */
typedef struct sdt_cps {
    uint32_t *v;
    size_t n, cap;
    bool failed;
} sdt_cps;

void sdt_cps_free(sdt_cps *a);
void sdt_cps_push(sdt_cps *a, uint32_t cp);
/* Appends the code points of a valid UTF-8 string (the tables hold their texts as UTF-8). */
void sdt_cps_push_utf8(sdt_cps *a, const char *s);

/* Decodes UTF-8 into out (appending). Returns the offset of the first invalid byte (overlongs,
 * surrogates and code points above U+10FFFF are invalid), or len when all of s is valid. */
size_t sdt_tok_decode_utf8(const char *s, size_t len, sdt_cps *out);
/* Appends the UTF-8 form of cp to buf (room for 4 bytes); returns the number of bytes. */
size_t sdt_tok_encode_utf8(uint32_t cp, unsigned char *buf);

/* HF's `whitespace_clean(ftfy.fix_text(text)).lower()`, appended to out. Returns 0, or -1 when out of
 * memory. */
int sdt_tok_normalize(const uint32_t *text, size_t n, sdt_cps *out);

/* One step of the pre-tokenising pattern
 *   <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
 * (case-insensitive) as regex.findall walks it: finds the next match at or after *pos, stores it as
 * [*start, *end) and moves *pos past it. Returns false when no match is left. */
bool sdt_tok_next_piece(const uint32_t *text, size_t n, size_t *pos, size_t *start, size_t *end);

/* ---- generated tables (models/tokenizer_tables.c) ---------------------------------------------------- */

/* How CLIPTokenizer's pattern sees a character. */
enum {
    SDT_TOK_OTHER = 0,  /* [^\s\p{L}\p{N}] */
    SDT_TOK_LETTER = 1, /* \p{L} */
    SDT_TOK_NUMBER = 2, /* \p{N} */
    SDT_TOK_SPACE = 3,  /* \s */
    SDT_TOK_NONE = 4,   /* matched by no branch (U+0345 under IGNORECASE): skipped like a space */
};

typedef struct sdt_tok_range {
    uint32_t first, last;
} sdt_tok_range;

typedef struct sdt_tok_class_range {
    uint32_t first, last;
    int cls;
} sdt_tok_class_range;

typedef struct sdt_tok_cp_map {
    uint32_t from, to;
} sdt_tok_cp_map;

typedef struct sdt_tok_cp_text {
    uint32_t cp;
    const char *text; /* UTF-8 */
} sdt_tok_cp_text;

typedef struct sdt_tok_entity {
    const char *name; /* between '&' and ';' */
    const char *text; /* UTF-8 */
} sdt_tok_entity;

extern const sdt_tok_entity sdt_tok_entities[];
extern const size_t sdt_tok_entity_count;
extern const sdt_tok_cp_map sdt_tok_invalid_charrefs[];
extern const size_t sdt_tok_invalid_charref_count;
extern const sdt_tok_range sdt_tok_invalid_codepoints[];
extern const size_t sdt_tok_invalid_codepoint_count;
extern const uint32_t sdt_tok_c1_cp1252[32];
extern const sdt_tok_cp_text sdt_tok_ligatures[];
extern const size_t sdt_tok_ligature_count;
extern const sdt_tok_cp_text sdt_tok_widths[];
extern const size_t sdt_tok_width_count;
extern const sdt_tok_range sdt_tok_case_ignorable[];
extern const size_t sdt_tok_case_ignorable_count;
extern const sdt_tok_range sdt_tok_cased[];
extern const size_t sdt_tok_cased_count;
extern const sdt_tok_range sdt_tok_unassigned[];
extern const size_t sdt_tok_unassigned_count;
extern const sdt_tok_class_range sdt_tok_class_overrides[];
extern const size_t sdt_tok_class_override_count;

#endif
