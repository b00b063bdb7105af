/* The text side of the CLIP tokenizer: ftfy.fix_text's deterministic fixes, whitespace_clean, Python's
 * str.lower() and the pre-tokenising pattern, each written to give what transformers' CLIPTokenizer
 * (4.44.2, with ftfy 6.3 installed) gives. Comments name the Python each step reproduces. */
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "tokenizer_text.h"

/* ---- code point arrays -------------------------------------------------------------------------------- */

void sdt_cps_free(sdt_cps *a)
{
    free(a->v);
    a->v = NULL;
    a->n = a->cap = 0;
}

static bool cps_reserve(sdt_cps *a, size_t extra)
{
    if (a->failed)
        return false;
    if (a->n + extra <= a->cap)
        return true;
    size_t cap = a->cap ? a->cap : 64;
    while (cap < a->n + extra)
        cap *= 2;
    uint32_t *v = realloc(a->v, cap * sizeof *v);
    if (!v) {
        a->failed = true;
        return false;
    }
    a->v = v;
    a->cap = cap;
    return true;
}

void sdt_cps_push(sdt_cps *a, uint32_t cp)
{
    if (cps_reserve(a, 1))
        a->v[a->n++] = cp;
}

void sdt_cps_push_utf8(sdt_cps *a, const char *s) { sdt_tok_decode_utf8(s, strlen(s), a); }

static void cps_push_all(sdt_cps *a, const uint32_t *v, size_t n)
{
    if (n && cps_reserve(a, n)) {
        memcpy(a->v + a->n, v, n * sizeof *v);
        a->n += n;
    }
}

static void cps_swap(sdt_cps *a, sdt_cps *b)
{
    sdt_cps t = *a;
    *a = *b;
    *b = t;
}

static bool cps_equal(const sdt_cps *a, const sdt_cps *b)
{
    return a->n == b->n && (a->n == 0 || memcmp(a->v, b->v, a->n * sizeof *a->v) == 0);
}

/* ---- UTF-8 -------------------------------------------------------------------------------------------- */

size_t sdt_tok_decode_utf8(const char *s, size_t len, sdt_cps *out)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        unsigned c = p[i];
        uint32_t cp;
        size_t need;
        if (c < 0x80) {
            sdt_cps_push(out, c);
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            cp = c & 0x1F;
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            cp = c & 0x0F;
            need = 2;
        } else if (c >= 0xF0 && c <= 0xF4) {
            cp = c & 0x07;
            need = 3;
        } else {
            return i;
        }
        if (len - i <= need)
            return i;
        for (size_t k = 1; k <= need; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return i;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        /* Overlong forms, UTF-16 surrogates and values past U+10FFFF are not UTF-8. */
        if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) || (cp >= 0xD800 && cp <= 0xDFFF) ||
            cp > 0x10FFFF)
            return i;
        sdt_cps_push(out, cp);
        i += need + 1;
    }
    return len;
}

size_t sdt_tok_encode_utf8(uint32_t cp, unsigned char *buf)
{
    if (cp < 0x80) {
        buf[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        buf[0] = (unsigned char)(0xC0 | (cp >> 6));
        buf[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        buf[0] = (unsigned char)(0xE0 | (cp >> 12));
        buf[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        buf[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    buf[0] = (unsigned char)(0xF0 | (cp >> 18));
    buf[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    buf[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    buf[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ---- table look-ups ----------------------------------------------------------------------------------- */

static bool in_ranges(const sdt_tok_range *r, size_t count, uint32_t cp)
{
    size_t lo = 0, hi = count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < r[mid].first)
            hi = mid;
        else if (cp > r[mid].last)
            lo = mid + 1;
        else
            return true;
    }
    return false;
}

static const char *cp_text(const sdt_tok_cp_text *t, size_t count, uint32_t cp)
{
    size_t lo = 0, hi = count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < t[mid].cp)
            hi = mid;
        else if (cp > t[mid].cp)
            lo = mid + 1;
        else
            return t[mid].text;
    }
    return NULL;
}

/* Unassigned in Python's Unicode database. utf8proc may know such a character from a newer Unicode
 * version, but Python gives it no case mapping, no decomposition and combining class 0, and the pattern
 * classes of the regex module (newer still) come from the overrides; so utf8proc is not asked. */
static bool py_unassigned(uint32_t cp) { return in_ranges(sdt_tok_unassigned, sdt_tok_unassigned_count, cp); }

/* The class CLIPTokenizer's pattern gives cp: the general category, except where the regex module's
 * newer Unicode data or its case-insensitive matching says otherwise (the generated overrides). */
static int char_class(uint32_t cp)
{
    if (cp < 0x80) { /* the common case; no override touches ASCII */
        if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z'))
            return SDT_TOK_LETTER;
        if (cp >= '0' && cp <= '9')
            return SDT_TOK_NUMBER;
        return cp == ' ' || (cp >= 0x09 && cp <= 0x0D) ? SDT_TOK_SPACE : SDT_TOK_OTHER;
    }
    size_t lo = 0, hi = sdt_tok_class_override_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < sdt_tok_class_overrides[mid].first)
            hi = mid;
        else if (cp > sdt_tok_class_overrides[mid].last)
            lo = mid + 1;
        else
            return sdt_tok_class_overrides[mid].cls;
    }
    if (py_unassigned(cp))
        return SDT_TOK_OTHER;
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: return SDT_TOK_LETTER;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO: return SDT_TOK_NUMBER;
    case UTF8PROC_CATEGORY_ZS:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP: return SDT_TOK_SPACE;
    default: return (cp >= 0x09 && cp <= 0x0D) || cp == 0x85 ? SDT_TOK_SPACE : SDT_TOK_OTHER;
    }
}

/* Python's str.isspace(): the regex module's \s plus the four information separators U+001C..U+001F. */
static bool py_isspace(uint32_t cp) { return (cp >= 0x1C && cp <= 0x1F) || char_class(cp) == SDT_TOK_SPACE; }

/* ---- ftfy.fixes.unescape_html ------------------------------------------------------------------------- */

static bool ascii_alnum(uint32_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int hex_value(uint32_t c)
{
    if (c >= '0' && c <= '9')
        return (int)(c - '0');
    if (c >= 'a' && c <= 'f')
        return (int)(c - 'a' + 10);
    if (c >= 'A' && c <= 'F')
        return (int)(c - 'A' + 10);
    return -1;
}

/* What html.unescape makes of "&#" + digits + ";" (digits: the ASCII letters and digits between '#' and
 * ';'), or false when it would decode only part of it (ftfy then keeps the reference). A reference to
 * nothing (*has_cp false) is html.unescape's deletion of invalid code points. */
static bool numeric_reference(const uint32_t *digits, size_t n, uint32_t *cp, bool *has_cp)
{
    uint32_t base = 10;
    size_t i = 0;
    if (digits[0] == 'x' || digits[0] == 'X') {
        base = 16;
        i = 1;
    }
    if (i == n)
        return false;
    uint32_t num = 0; /* saturates at 0x110000: every larger value decodes the same (to U+FFFD) */
    for (; i < n; i++) {
        int d = base == 16 ? hex_value(digits[i])
                           : (digits[i] >= '0' && digits[i] <= '9' ? (int)(digits[i] - '0') : -1);
        if (d < 0)
            return false;
        num = num * base + (uint32_t)d;
        if (num > 0x10FFFF)
            num = 0x110000;
    }
    *has_cp = true;
    for (size_t k = 0; k < sdt_tok_invalid_charref_count; k++)
        if (sdt_tok_invalid_charrefs[k].from == num) {
            *cp = sdt_tok_invalid_charrefs[k].to;
            return true;
        }
    if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) {
        *cp = 0xFFFD;
        return true;
    }
    if (in_ranges(sdt_tok_invalid_codepoints, sdt_tok_invalid_codepoint_count, num)) {
        *has_cp = false;
        return true;
    }
    *cp = num;
    return true;
}

static const char *named_entity(const uint32_t *name, size_t n)
{
    char key[32];
    for (size_t i = 0; i < n; i++)
        key[i] = (char)name[i];
    key[n] = '\0';
    size_t lo = 0, hi = sdt_tok_entity_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(key, sdt_tok_entities[mid].name);
        if (c < 0)
            hi = mid;
        else if (c > 0)
            lo = mid + 1;
        else
            return sdt_tok_entities[mid].text;
    }
    return NULL;
}

/* HTML_ENTITY_RE = r"&#?[0-9A-Za-z]{1,24};", each match replaced by _unescape_fixup. */
static void unescape_html(const sdt_cps *in, sdt_cps *out)
{
    const uint32_t *t = in->v;
    size_t n = in->n, i = 0;
    while (i < n) {
        if (t[i] != '&') {
            sdt_cps_push(out, t[i++]);
            continue;
        }
        size_t j = i + 1;
        bool numeric = j < n && t[j] == '#';
        if (numeric)
            j++;
        size_t k = j;
        while (k < n && k - j <= 24 && ascii_alnum(t[k]))
            k++;
        if (k == j || k - j > 24 || k >= n || t[k] != ';') {
            sdt_cps_push(out, t[i++]);
            continue;
        }
        /* t[i..k] is one match: '&', optional '#', the name, ';'. */
        if (!numeric) {
            const char *text = named_entity(t + j, k - j);
            if (text)
                sdt_cps_push_utf8(out, text);
            else
                cps_push_all(out, t + i, k + 1 - i);
        } else {
            uint32_t cp = 0;
            bool has_cp = false;
            /* A result holding ';' means html.unescape stopped early; "&#59;" therefore stays too. */
            if (numeric_reference(t + j, k - j, &cp, &has_cp) && !(has_cp && cp == ';')) {
                if (has_cp)
                    sdt_cps_push(out, cp);
            } else {
                cps_push_all(out, t + i, k + 1 - i);
            }
        }
        i = k + 1;
    }
}

/* ---- ftfy's one-character fixes ----------------------------------------------------------------------- */

/* fix_c1_controls: U+0080..U+009F read as the Windows-1252 bytes they usually were. */
static void fix_c1_controls(const sdt_cps *in, sdt_cps *out)
{
    for (size_t i = 0; i < in->n; i++) {
        uint32_t c = in->v[i];
        sdt_cps_push(out, c >= 0x80 && c <= 0x9F ? sdt_tok_c1_cp1252[c - 0x80] : c);
    }
}

/* fix_latin_ligatures and fix_character_width: str.translate with a table. */
static void translate(const sdt_cps *in, sdt_cps *out, const sdt_tok_cp_text *table, size_t count)
{
    for (size_t i = 0; i < in->n; i++) {
        const char *text = cp_text(table, count, in->v[i]);
        if (text)
            sdt_cps_push_utf8(out, text);
        else
            sdt_cps_push(out, in->v[i]);
    }
}

/* uncurl_quotes: [\u02bc\u2018-\u201b] -> ', [\u201c-\u201f] -> ". */
static void uncurl_quotes(const sdt_cps *in, sdt_cps *out)
{
    for (size_t i = 0; i < in->n; i++) {
        uint32_t c = in->v[i];
        if (c == 0x2BC || (c >= 0x2018 && c <= 0x201B))
            c = '\'';
        else if (c >= 0x201C && c <= 0x201F)
            c = '"';
        sdt_cps_push(out, c);
    }
}

/* fix_line_breaks: CRLF, CR, U+2028, U+2029 and U+0085 each become one LF. */
static void fix_line_breaks(const sdt_cps *in, sdt_cps *out)
{
    for (size_t i = 0; i < in->n; i++) {
        uint32_t c = in->v[i];
        if (c == '\r' && i + 1 < in->n && in->v[i + 1] == '\n')
            continue; /* the LF that follows stays */
        if (c == '\r' || c == 0x2028 || c == 0x2029 || c == 0x85)
            c = '\n';
        sdt_cps_push(out, c);
    }
}

/* remove_terminal_escapes: "\033\[((?:\d|;)*)([a-zA-Z])" removed; Python's \d is any decimal digit. */
static void remove_terminal_escapes(const sdt_cps *in, sdt_cps *out)
{
    size_t i = 0, n = in->n;
    const uint32_t *t = in->v;
    while (i < n) {
        if (t[i] == 0x1B && i + 1 < n && t[i + 1] == '[') {
            size_t k = i + 2;
            while (k < n &&
                   (t[k] == ';' || utf8proc_category((utf8proc_int32_t)t[k]) == UTF8PROC_CATEGORY_ND))
                k++;
            if (k < n && ((t[k] >= 'a' && t[k] <= 'z') || (t[k] >= 'A' && t[k] <= 'Z'))) {
                i = k + 1;
                continue;
            }
        }
        sdt_cps_push(out, t[i++]);
    }
}

/* remove_control_chars: C0 controls other than \t \n \f \r, DEL, the deprecated Arabic format
 * controls, the byte order mark and the interlinear annotation characters. */
static void remove_control_chars(const sdt_cps *in, sdt_cps *out)
{
    for (size_t i = 0; i < in->n; i++) {
        uint32_t c = in->v[i];
        if (c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F || (c >= 0x206A && c <= 0x206F) ||
            c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC))
            continue;
        sdt_cps_push(out, c);
    }
}

/* NFC of a run holding no character Python leaves unassigned, appended to out. */
static void nfc_run(const uint32_t *v, size_t n, sdt_cps *out)
{
    bool simple = true; /* text below U+0300 holds no combining marks and is its own NFC */
    for (size_t i = 0; i < n && simple; i++)
        simple = v[i] < 0x300;
    if (simple) {
        cps_push_all(out, v, n);
        return;
    }
    unsigned char *utf8 = malloc(n * 4 + 1);
    if (!utf8) {
        out->failed = true;
        return;
    }
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += sdt_tok_encode_utf8(v[i], utf8 + len);
    const utf8proc_option_t options = UTF8PROC_STABLE | UTF8PROC_DECOMPOSE;
    utf8proc_ssize_t need = utf8proc_decompose(utf8, (utf8proc_ssize_t)len, NULL, 0, options);
    utf8proc_int32_t *buf = need > 0 ? malloc((size_t)need * sizeof *buf) : NULL;
    if (need < 0 || (need > 0 && !buf)) {
        free(utf8);
        out->failed = true;
        return;
    }
    if (need > 0) {
        utf8proc_ssize_t got = utf8proc_decompose(utf8, (utf8proc_ssize_t)len, buf, need, options);
        got = got == need ? utf8proc_normalize_utf32(buf, got, UTF8PROC_STABLE | UTF8PROC_COMPOSE) : -1;
        if (got < 0)
            out->failed = true;
        else if (cps_reserve(out, (size_t)got))
            for (utf8proc_ssize_t k = 0; k < got; k++)
                out->v[out->n++] = (uint32_t)buf[k];
    }
    free(buf);
    free(utf8);
}

/* unicodedata.normalize("NFC", ...). To Python a character it leaves unassigned is a starter that
 * neither decomposes nor composes, so nothing reorders or composes across it: the runs between such
 * characters are normalised on their own and the characters kept as they are. */
static void nfc(const sdt_cps *in, sdt_cps *out)
{
    size_t start = 0;
    for (size_t i = 0; i <= in->n; i++) {
        if (i < in->n && !(in->v[i] >= 0x300 && py_unassigned(in->v[i])))
            continue;
        nfc_run(in->v + start, i - start, out);
        if (i < in->n)
            sdt_cps_push(out, in->v[i]);
        start = i + 1;
    }
}

/* ---- ftfy.fix_text ------------------------------------------------------------------------------------ */

/* fix_and_explain on one segment with fix_encoding off: every fixer in ftfy's order, repeated until the
 * text stops changing. */
static int fix_segment(sdt_cps *seg, bool unescape)
{
    sdt_cps orig = {0}, tmp = {0};
    int rc = 0;
    /* ftfy loops without a bound; the fixes only ever shorten or settle the text, so a handful of
     * rounds suffices; the bound only guards against a fixer pair that would undo each other. */
    for (int round = 0; round < 100; round++) {
        orig.n = 0;
        cps_push_all(&orig, seg->v, seg->n);
#define STEP(call)                                                                                           \
    do {                                                                                                     \
        tmp.n = 0;                                                                                           \
        call;                                                                                                \
        cps_swap(seg, &tmp);                                                                                 \
    } while (0)
        if (unescape)
            STEP(unescape_html(seg, &tmp));
        STEP(fix_c1_controls(seg, &tmp));
        STEP(translate(seg, &tmp, sdt_tok_ligatures, sdt_tok_ligature_count));
        STEP(translate(seg, &tmp, sdt_tok_widths, sdt_tok_width_count));
        STEP(uncurl_quotes(seg, &tmp));
        STEP(fix_line_breaks(seg, &tmp));
        STEP(remove_terminal_escapes(seg, &tmp));
        STEP(remove_control_chars(seg, &tmp));
        STEP(nfc(seg, &tmp));
#undef STEP
        if (seg->failed || tmp.failed || orig.failed) {
            rc = -1;
            break;
        }
        if (cps_equal(seg, &orig))
            break;
    }
    sdt_cps_free(&orig);
    sdt_cps_free(&tmp);
    return rc;
}

/* ftfy.fix_text: the text in segments that end after each '\n' (or every million code points); HTML
 * unescaping stays on until the first segment that holds a '<', and off from there on. */
static int fix_text(const uint32_t *text, size_t n, sdt_cps *out)
{
    bool unescape = true;
    size_t pos = 0;
    sdt_cps seg = {0};
    int rc = 0;
    while (pos < n && rc == 0) {
        size_t end = pos;
        while (end < n && text[end] != '\n' && end - pos < 1000000)
            end++;
        if (end < n && text[end] == '\n' && end - pos < 1000000)
            end++;
        seg.n = 0;
        cps_push_all(&seg, text + pos, end - pos);
        for (size_t i = pos; i < end && unescape; i++)
            if (text[i] == '<')
                unescape = false;
        rc = fix_segment(&seg, unescape);
        cps_push_all(out, seg.v, seg.n);
        pos = end;
    }
    if (seg.failed || out->failed)
        rc = -1;
    sdt_cps_free(&seg);
    return rc;
}

/* ---- whitespace_clean and str.lower() ----------------------------------------------------------------- */

/* Python's handle_capital_sigma: Σ lowers to the final ς when a cased letter precedes it and none
 * follows, case-ignorable characters skipped on both sides. */
static bool final_sigma(const uint32_t *t, size_t n, size_t i)
{
    size_t j = i;
    while (j > 0 && in_ranges(sdt_tok_case_ignorable, sdt_tok_case_ignorable_count, t[j - 1]))
        j--;
    if (j == 0 || !in_ranges(sdt_tok_cased, sdt_tok_cased_count, t[j - 1]))
        return false;
    j = i + 1;
    while (j < n && in_ranges(sdt_tok_case_ignorable, sdt_tok_case_ignorable_count, t[j]))
        j++;
    return j == n || !in_ranges(sdt_tok_cased, sdt_tok_cased_count, t[j]);
}

int sdt_tok_normalize(const uint32_t *text, size_t n, sdt_cps *out)
{
    sdt_cps fixed = {0}, clean = {0};
    int rc = fix_text(text, n, &fixed);
    /* whitespace_clean: re.sub(r"\s+", " ", text).strip() */
    bool in_space = false;
    for (size_t i = 0; i < fixed.n; i++) {
        if (char_class(fixed.v[i]) == SDT_TOK_SPACE) {
            if (!in_space)
                sdt_cps_push(&clean, ' ');
            in_space = true;
        } else {
            sdt_cps_push(&clean, fixed.v[i]);
            in_space = false;
        }
    }
    size_t a = 0, b = clean.n;
    while (a < b && py_isspace(clean.v[a]))
        a++;
    while (b > a && py_isspace(clean.v[b - 1]))
        b--;
    /* .lower(): full lower-case mapping; only U+0130 has a multi-character one. */
    for (size_t i = a; i < b; i++) {
        uint32_t c = clean.v[i];
        if (c == 0x130) {
            sdt_cps_push(out, 'i');
            sdt_cps_push(out, 0x307);
        } else if (c == 0x3A3) {
            sdt_cps_push(out, final_sigma(clean.v + a, b - a, i - a) ? 0x3C2 : 0x3C3);
        } else {
            sdt_cps_push(out, py_unassigned(c) ? c : (uint32_t)utf8proc_tolower((utf8proc_int32_t)c));
        }
    }
    if (fixed.failed || clean.failed || out->failed)
        rc = -1;
    sdt_cps_free(&fixed);
    sdt_cps_free(&clean);
    return rc;
}

/* ---- the pre-tokenising pattern ----------------------------------------------------------------------- */

/* Case-insensitive match of one pattern character: a lower-case ASCII letter also matches its capital
 * and, for 's', U+017F LONG S (whose simple case folding is 's'); anything else matches itself. */
static bool pattern_char(uint32_t cp, char want)
{
    uint32_t w = (unsigned char)want;
    if (cp == w)
        return true;
    if (want >= 'a' && want <= 'z')
        return cp == w - 32 || (want == 's' && cp == 0x17F);
    return false;
}

static size_t match_literal(const uint32_t *t, size_t n, size_t i, const char *lit)
{
    size_t k = 0;
    for (; lit[k]; k++)
        if (i + k >= n || !pattern_char(t[i + k], lit[k]))
            return 0;
    return k;
}

bool sdt_tok_next_piece(const uint32_t *text, size_t n, size_t *pos, size_t *start, size_t *end)
{
    static const char *const specials[] = {"<|startoftext|>", "<|endoftext|>"};
    static const char *const contractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    for (size_t i = *pos; i < n; i++) {
        size_t m = 0;
        /* The branches in the pattern's order; the first that matches wins. */
        if (text[i] == '<')
            for (size_t k = 0; k < 2 && !m; k++)
                m = match_literal(text, n, i, specials[k]);
        if (text[i] == '\'')
            for (size_t k = 0; k < 7 && !m; k++)
                m = match_literal(text, n, i, contractions[k]);
        if (!m) {
            int cls = char_class(text[i]);
            if (cls == SDT_TOK_LETTER || cls == SDT_TOK_OTHER) {
                m = 1;
                while (i + m < n && char_class(text[i + m]) == cls)
                    m++;
            } else if (cls == SDT_TOK_NUMBER) {
                m = 1; /* digits one at a time */
            }
        }
        if (m) {
            *start = i;
            *end = i + m;
            *pos = i + m;
            return true;
        }
    }
    *pos = n;
    return false;
}
