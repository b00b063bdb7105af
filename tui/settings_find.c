/* Finding settings by a typed query (see settings_find.h). No allocation: the words are compared where
 * they lie in the query. */
#include "settings_find.h"

#include <string.h>

/* The character as compared: ASCII lower case, and `_` as a space when loose. */
static unsigned char fold(char c, bool loose)
{
    unsigned char u = (unsigned char)c;
    if (u >= 'A' && u <= 'Z')
        return (unsigned char)(u - 'A' + 'a');
    if (loose && u == '_')
        return ' ';
    return u;
}

const char *find_casefold(const char *text, size_t len, const char *needle, size_t needle_len, bool loose)
{
    if (!text || !needle || needle_len == 0 || needle_len > len)
        return NULL;
    for (size_t i = 0; i + needle_len <= len; i++) {
        size_t k = 0;
        while (k < needle_len && fold(text[i + k], loose) == fold(needle[k], loose))
            k++;
        if (k == needle_len)
            return text + i;
    }
    return NULL;
}

static bool contains(const char *text, const char *word, size_t word_len)
{
    return text && find_casefold(text, strlen(text), word, word_len, true);
}

/* The next word of the query at or after *at: its start and length; false when none is left. */
static bool next_word(const char **at, const char **word, size_t *len)
{
    const char *s = *at;
    while (*s == ' ' || *s == '\t')
        s++;
    if (!*s)
        return false;
    const char *end = s;
    while (*end && *end != ' ' && *end != '\t')
        end++;
    *word = s;
    *len = (size_t)(end - s);
    *at = end;
    return true;
}

typedef enum match_kind { MATCH_NONE, MATCH_KEY, MATCH_TEXT } match_kind;

static match_kind match(const sdt_setting *s, const char *query)
{
    bool all_in_key = true, any_word = false;
    const char *at = query, *word;
    size_t len;
    while (next_word(&at, &word, &len)) {
        any_word = true;
        if (contains(s->key, word, len))
            continue;
        all_in_key = false;
        if (!contains(s->help, word, len) && !contains(s->kohya_aliases, word, len))
            return MATCH_NONE;
    }
    if (!any_word)
        return MATCH_NONE;
    return all_in_key ? MATCH_KEY : MATCH_TEXT;
}

size_t settings_find(const sdt_setting *settings, size_t count, const char *query, int *out,
                     size_t *key_matches)
{
    size_t n = 0;
    /* Two passes keep each group in schema order without sorting. */
    for (int pass = 0; pass < 2; pass++) {
        match_kind wanted = pass == 0 ? MATCH_KEY : MATCH_TEXT;
        for (size_t i = 0; query && i < count; i++)
            if (match(&settings[i], query) == wanted)
                out[n++] = (int)i;
        if (pass == 0 && key_matches)
            *key_matches = n;
    }
    return n;
}
