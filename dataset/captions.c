/* Caption processing and tag frequencies; see captions.h. Each step mirrors kohya's process_caption,
 * including its quirks (the prefix goes before the first line of a multi-line caption, the keep_tokens path
 * keeps empty tags while the separator path drops them, tag dropout never touches fixed tags). */
#include "captions.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "sdtune/strutil.h"

void sdt_caption_options_default(sdt_caption_options *o)
{
    memset(o, 0, sizeof *o);
    o->caption_separator = ",";
    o->token_warmup_min = 1;
}

int64_t sdt_caption_warmup_steps(const sdt_caption_options *o, int64_t max_train_steps)
{
    if (o->token_warmup_step <= 0)
        return 0;
    if (o->token_warmup_step < 1)
        return (int64_t)floor(o->token_warmup_step * (double)max_train_steps);
    return (int64_t)floor(o->token_warmup_step);
}

/* ---- a growable string and a list of string slices ------------------------------------------------ */

typedef struct sbuf {
    char *s;
    size_t len, cap;
    int failed;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *grown = realloc(b->s, cap);
        if (!grown) {
            b->failed = 1;
            return;
        }
        b->s = grown;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void sb_adds(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

/* Takes the buffer's string (never NULL unless allocation failed). */
static char *sb_take(sbuf *b)
{
    if (b->failed) {
        free(b->s);
        return NULL;
    }
    if (!b->s)
        return strdup("");
    return b->s;
}

typedef struct slice {
    const char *p;
    size_t n;
} slice;

typedef struct slices {
    slice *v;
    size_t n, cap;
    int failed;
} slices;

static void sl_push(slices *l, slice s)
{
    if (l->failed)
        return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        slice *grown = realloc(l->v, cap * sizeof *grown);
        if (!grown) {
            l->failed = 1;
            return;
        }
        l->v = grown;
        l->cap = cap;
    }
    l->v[l->n++] = s;
}

/* Python's str.isspace for the ASCII range (str.strip() also strips Unicode spaces; captions rarely carry
 * those around tags). */
static int py_space(unsigned char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

static slice strip(slice s)
{
    while (s.n && py_space((unsigned char)s.p[0])) {
        s.p++;
        s.n--;
    }
    while (s.n && py_space((unsigned char)s.p[s.n - 1]))
        s.n--;
    return s;
}

static const char *find_in(slice hay, const char *needle)
{
    size_t nn = strlen(needle);
    if (nn == 0 || nn > hay.n)
        return NULL;
    for (size_t i = 0; i + nn <= hay.n; i++)
        if (memcmp(hay.p + i, needle, nn) == 0)
            return hay.p + i;
    return NULL;
}

/* Python's s.split(sep) (sep non-empty): every piece, empty ones included. */
static void split(slice s, const char *sep, slices *out, int strip_each, int drop_empty)
{
    size_t sn = strlen(sep);
    const char *start = s.p, *end = s.p + s.n;
    for (;;) {
        const char *hit = find_in((slice){start, (size_t)(end - start)}, sep);
        slice piece = {start, (size_t)((hit ? hit : end) - start)};
        if (strip_each)
            piece = strip(piece);
        if (!drop_empty || piece.n)
            sl_push(out, piece);
        if (!hit)
            break;
        start = hit + sn;
    }
}

/* s with every occurrence of from replaced by to (Python's str.replace, left to right, no overlaps). */
static char *replace_all(const char *s, const char *from, const char *to)
{
    sbuf b = {0};
    size_t fn = strlen(from);
    if (fn == 0) {
        sb_adds(&b, s);
        return sb_take(&b);
    }
    const char *p = s;
    for (const char *hit; (hit = strstr(p, from)) != NULL; p = hit + fn) {
        sb_add(&b, p, (size_t)(hit - p));
        sb_adds(&b, to);
    }
    sb_adds(&b, p);
    return sb_take(&b);
}

/* kohya's re.sub(r"\{([^}]+)\}", random choice of the group split at "|"): at each '{', the first '}'
 * after it closes the match if there is at least one character between them. */
static char *expand_wildcards(const char *s, sdt_ds_rng *rng)
{
    sbuf b = {0};
    const char *p = s;
    while (*p) {
        const char *close = p[0] == '{' ? strchr(p + 1, '}') : NULL;
        if (!close || close == p + 1) {
            sb_add(&b, p, 1);
            p++;
            continue;
        }
        slice body = {p + 1, (size_t)(close - p - 1)};
        slices opts = {0};
        split(body, "|", &opts, 0, 0);
        if (opts.failed) {
            free(opts.v);
            free(b.s);
            return NULL;
        }
        slice pick = opts.v[sdt_ds_rng_below(rng, opts.n)];
        sb_add(&b, pick.p, pick.n);
        free(opts.v);
        p = close + 1;
    }
    return sb_take(&b);
}

int sdt_caption_process(const sdt_caption_options *o, const char *caption, const sdt_caption_context *ctx,
                        char **out, char **error)
{
    *out = NULL;
    if (!caption)
        caption = "";
    const char *sep = o->caption_separator && *o->caption_separator ? o->caption_separator : ",";
    sdt_ds_rng rng = sdt_ds_rng_make(ctx->seed, SDT_RNG_CAPTION, (uint64_t)(int64_t)ctx->epoch,
                                     (uint64_t)ctx->step, ctx->sample);

    /* 1. prefix and suffix, on the raw text (so on the first / last line of a multi-line caption) */
    sbuf b = {0};
    if (o->caption_prefix && *o->caption_prefix) {
        sb_adds(&b, o->caption_prefix);
        sb_adds(&b, " ");
    }
    sb_adds(&b, caption);
    if (o->caption_suffix && *o->caption_suffix) {
        sb_adds(&b, " ");
        sb_adds(&b, o->caption_suffix);
    }
    char *text = sb_take(&b);
    if (!text)
        goto oom;

    /* 2. whole-caption dropout; the draw happens only when the rate is set, as in kohya */
    int drop = o->caption_dropout_rate > 0 && sdt_ds_rng_uniform(&rng) < o->caption_dropout_rate;
    drop = drop ||
           (o->caption_dropout_every_n_epochs > 0 && ctx->epoch % o->caption_dropout_every_n_epochs == 0);
    if (drop) {
        free(text);
        *out = strdup("");
        if (!*out)
            goto oom;
        return 0;
    }

    /* 3. one line: a random one with wildcards, the first otherwise */
    if (o->enable_wildcard) {
        if (strchr(text, '\n')) {
            slices lines = {0};
            split((slice){text, strlen(text)}, "\n", &lines, 0, 0);
            if (lines.failed) {
                free(lines.v);
                free(text);
                goto oom;
            }
            slice pick = lines.v[sdt_ds_rng_below(&rng, lines.n)];
            char *line = strndup(pick.p, pick.n);
            free(lines.v);
            free(text);
            if (!line)
                goto oom;
            text = line;
        }
        char *expanded = expand_wildcards(text, &rng);
        free(text);
        if (!expanded)
            goto oom;
        /* "{{" and "}}" are the escapes for literal braces */
        char *a = replace_all(expanded, "{{", "{");
        free(expanded);
        if (!a)
            goto oom;
        text = replace_all(a, "}}", "}");
        free(a);
        if (!text)
            goto oom;
    } else {
        char *nl = strchr(text, '\n');
        if (nl)
            *nl = '\0';
    }

    /* 4. fixed / flexible / fixed-suffix tags, warmup, shuffle, tag dropout, join */
    if (o->shuffle_caption || o->token_warmup_step > 0 || o->caption_tag_dropout_rate > 0) {
        slices fixed = {0}, flex = {0}, suffix = {0};
        slice all = {text, strlen(text)};
        const char *kts = o->keep_tokens_separator;
        const char *hit = kts && *kts ? find_in(all, kts) : NULL;
        if (hit) {
            size_t kn = strlen(kts);
            slice fixed_part = {text, (size_t)(hit - text)};
            slice flex_part = {hit + kn, all.n - (size_t)(hit - text) - kn};
            const char *hit2 = find_in(flex_part, kts);
            if (hit2) {
                slice suffix_part = {hit2 + kn, flex_part.n - (size_t)(hit2 - flex_part.p) - kn};
                flex_part.n = (size_t)(hit2 - flex_part.p);
                split(suffix_part, sep, &suffix, 1, 1);
            }
            split(fixed_part, sep, &fixed, 1, 1);
            split(flex_part, sep, &flex, 1, 1);
        } else {
            slices tokens = {0};
            split(strip(all), sep, &tokens, 1, 0);
            size_t k = o->keep_tokens > 0 ? (size_t)o->keep_tokens : 0;
            for (size_t i = 0; i < tokens.n; i++)
                sl_push(i < k ? &fixed : &flex, tokens.v[i]);
            free(tokens.v);
        }

        int64_t warmup = sdt_caption_warmup_steps(o, ctx->max_train_steps);
        if (warmup > 0 && ctx->step < warmup) {
            double len = floor((double)ctx->step *
                               ((double)((int64_t)flex.n - o->token_warmup_min) / (double)warmup)) +
                         o->token_warmup_min;
            /* Python slicing: a negative end counts from the back */
            int64_t keep = (int64_t)len;
            if (keep < 0)
                keep = (int64_t)flex.n + keep < 0 ? 0 : (int64_t)flex.n + keep;
            if ((size_t)keep < flex.n)
                flex.n = (size_t)keep;
        }

        if (o->shuffle_caption) {
            for (size_t i = flex.n; i > 1; i--) {
                size_t j = (size_t)sdt_ds_rng_below(&rng, i);
                slice tmp = flex.v[i - 1];
                flex.v[i - 1] = flex.v[j];
                flex.v[j] = tmp;
            }
        }
        if (o->caption_tag_dropout_rate > 0) {
            size_t kept = 0;
            for (size_t i = 0; i < flex.n; i++)
                if (sdt_ds_rng_uniform(&rng) >= o->caption_tag_dropout_rate)
                    flex.v[kept++] = flex.v[i];
            flex.n = kept;
        }

        sbuf j = {0};
        sb_adds(&j, "");
        int first = 1;
        const slices *parts[3] = {&fixed, &flex, &suffix};
        int failed = 0;
        for (int p = 0; p < 3; p++) {
            failed |= parts[p]->failed;
            for (size_t i = 0; i < parts[p]->n; i++) {
                if (!first)
                    sb_adds(&j, ", ");
                sb_add(&j, parts[p]->v[i].p, parts[p]->v[i].n);
                first = 0;
            }
        }
        free(fixed.v);
        free(flex.v);
        free(suffix.v);
        char *joined = sb_take(&j);
        free(text);
        if (failed) {
            free(joined);
            goto oom;
        }
        text = joined;
        if (!text)
            goto oom;
    }

    /* 5. the secondary separator held words together as one tag; now it becomes the real separator */
    if (o->secondary_separator && *o->secondary_separator) {
        char *r = replace_all(text, o->secondary_separator, sep);
        free(text);
        if (!r)
            goto oom;
        text = r;
    }
    *out = text;
    return 0;
oom:
    sdt_set_error(error, "out of memory while processing a caption");
    return -1;
}

/* ---- tag frequency -------------------------------------------------------------------------------- */

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

void sdt_tag_frequency_init(sdt_tag_frequency *f) { memset(f, 0, sizeof *f); }

void sdt_tag_frequency_free(sdt_tag_frequency *f)
{
    for (size_t i = 0; i < f->count; i++)
        free(f->tags[i].tag);
    free(f->tags);
    free(f->index);
    memset(f, 0, sizeof *f);
}

/* The slot for tag: where it is, or the empty slot where it would go. index holds entry + 1, 0 = empty. */
static size_t slot_of(const sdt_tag_frequency *f, const char *tag, size_t n)
{
    size_t mask = f->index_size - 1, i = (size_t)hash_bytes(tag, n) & mask;
    while (f->index[i]) {
        const char *t = f->tags[f->index[i] - 1].tag;
        if (strlen(t) == n && memcmp(t, tag, n) == 0)
            break;
        i = (i + 1) & mask;
    }
    return i;
}

static int rehash(sdt_tag_frequency *f, size_t size)
{
    size_t *index = calloc(size, sizeof *index);
    if (!index)
        return -1;
    free(f->index);
    f->index = index;
    f->index_size = size;
    for (size_t e = 0; e < f->count; e++)
        f->index[slot_of(f, f->tags[e].tag, strlen(f->tags[e].tag))] = e + 1;
    return 0;
}

size_t sdt_tag_frequency_get(const sdt_tag_frequency *f, const char *tag)
{
    if (!f->index_size)
        return 0;
    size_t i = slot_of(f, tag, strlen(tag));
    return f->index[i] ? f->tags[f->index[i] - 1].count : 0;
}

int sdt_tag_frequency_add(sdt_tag_frequency *f, const char *caption, char **error)
{
    if (!caption)
        return 0;
    slices tags = {0};
    split((slice){caption, strlen(caption)}, ",", &tags, 1, 1);
    if (tags.failed)
        goto oom;
    for (size_t t = 0; t < tags.n; t++) {
        char *lower = strndup(tags.v[t].p, tags.v[t].n);
        if (!lower)
            goto oom;
        /* ASCII lower-casing: Python's str.lower() also folds non-ASCII letters, which booru-style tags
         * rarely use. */
        for (char *c = lower; *c; c++)
            if (*c >= 'A' && *c <= 'Z')
                *c = (char)(*c - 'A' + 'a');
        if ((f->count + 1) * 2 > f->index_size && rehash(f, f->index_size ? f->index_size * 2 : 64) != 0) {
            free(lower);
            goto oom;
        }
        size_t n = strlen(lower), i = slot_of(f, lower, n);
        if (f->index[i]) {
            f->tags[f->index[i] - 1].count++;
            free(lower);
            continue;
        }
        if (f->count == f->capacity) {
            size_t cap = f->capacity ? 2 * f->capacity : 32;
            sdt_tag_count *grown = realloc(f->tags, cap * sizeof *grown);
            if (!grown) {
                free(lower);
                goto oom;
            }
            f->tags = grown;
            f->capacity = cap;
        }
        f->tags[f->count] = (sdt_tag_count){lower, 1};
        f->index[i] = ++f->count;
    }
    free(tags.v);
    return 0;
oom:
    free(tags.v);
    sdt_set_error(error, "out of memory while counting tags");
    return -1;
}
