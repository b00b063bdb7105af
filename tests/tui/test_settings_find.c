/* Finding settings (tui/settings_find.h) in the real schema: key matches before help matches, schema
 * order within each group, several words ANDed, case and `_`/space ignored, help-only words, no match. */
#include <string.h>

#include "sdtune/schema.h"
#include "settings_find.h"
#include "unit/check.h"

typedef struct found {
    int index[512];
    size_t n, key_matches;
} found;

static found find(const char *query)
{
    found f = {.n = 0};
    size_t count = sdt_schema_count();
    if (count > sizeof f.index / sizeof f.index[0])
        return f;
    f.n = settings_find(sdt_schema_settings(), count, query, f.index, &f.key_matches);
    return f;
}

/* Where setting key is in the results; -1 when absent. */
static int rank(const found *f, const char *key)
{
    int setting = sdt_schema_find(key);
    for (size_t i = 0; i < f->n; i++)
        if (f->index[i] == setting)
            return (int)i;
    return -1;
}

static void key_matches_first(test_state *t)
{
    CHECK(t, sdt_schema_count() <= 512);
    found f = find("rate");
    int learning_rate = rank(&f, "learning_rate"), unet_lr = rank(&f, "unet_lr");
    CHECK_MSG(t, learning_rate >= 0 && unet_lr >= 0, "learning_rate at %d, unet_lr at %d", learning_rate,
              unet_lr);
    CHECK(t, rank(&f, "text_encoder_lr") >= 0); /* "learning rate of the text encoder" */
    CHECK(t, learning_rate < unet_lr);
    /* The key group holds exactly the settings whose key says "rate", and comes first. */
    CHECK(t, f.key_matches >= 2 && f.key_matches < f.n);
    const sdt_setting *settings = sdt_schema_settings();
    for (size_t i = 0; i < f.n; i++) {
        bool in_key = strstr(settings[f.index[i]].key, "rate") != NULL;
        CHECK_MSG(t, in_key == (i < f.key_matches), "%s at %zu of %zu key matches", settings[f.index[i]].key,
                  i, f.key_matches);
    }
    /* Schema order within each group. */
    for (size_t i = 1; i < f.n; i++)
        if (i != f.key_matches)
            CHECK_MSG(t, f.index[i - 1] < f.index[i], "%s before %s", settings[f.index[i - 1]].key,
                      settings[f.index[i]].key);
    CHECK(t, rank(&f, "network_dim") < 0);
}

static void words_case_and_underscores(test_state *t)
{
    found spaced = find("learning rate"), underscored = find("LEARNING_RATE"),
          mixed = find("  Learning   Rate ");
    CHECK(t, spaced.n > 0 && rank(&spaced, "learning_rate") == 0);
    CHECK(t, underscored.n > 0 && rank(&underscored, "learning_rate") == 0);
    CHECK(t, mixed.n == spaced.n && memcmp(mixed.index, spaced.index, spaced.n * sizeof *spaced.index) == 0);
    /* "learning_rate" as one word still finds the help texts that say "learning rate". */
    CHECK(t, rank(&underscored, "unet_lr") >= 0);

    /* Every word must match: unet_lr's help says "learning rate" and its key says "unet". */
    found both = find("rate unet");
    CHECK(t, rank(&both, "unet_lr") >= 0);
    CHECK(t, rank(&both, "learning_rate_te1") < 0); /* "rate", no "unet" */
    CHECK(t, both.key_matches == 0);
    found key_words = find("network dim");
    CHECK(t, key_words.key_matches >= 1 && rank(&key_words, "network_dim") == 0);
}

static void help_only_and_no_match(test_state *t)
{
    found f = find("bigg"); /* "OpenCLIP bigG" in the help of learning_rate_te2 only */
    CHECK_MSG(t, f.n == 1 && rank(&f, "learning_rate_te2") == 0, "%zu matches", f.n);
    CHECK(t, f.key_matches == 0);
    found alias = find("max_resolution"); /* kohya's name of resolution */
    CHECK(t, rank(&alias, "resolution") >= 0);

    found none = find("xyzzy");
    CHECK(t, none.n == 0 && none.key_matches == 0);
    found half = find("rate xyzzy");
    CHECK(t, half.n == 0);
    CHECK(t, find("").n == 0);
    CHECK(t, find("   ").n == 0);
    int out[1];
    CHECK(t, settings_find(sdt_schema_settings(), sdt_schema_count(), NULL, out, NULL) == 0);
}

static void casefold_search(test_state *t)
{
    const char *text = "Epoch 3: Saving checkpoint_final";
    size_t len = strlen(text);
    CHECK(t, find_casefold(text, len, "saving", 6, false) == text + 9);
    CHECK(t, find_casefold(text, len, "CHECKPOINT FINAL", 16, false) == NULL);
    CHECK(t, find_casefold(text, len, "CHECKPOINT FINAL", 16, true) == text + 16);
    CHECK(t, find_casefold(text, len, "final", 5, false) == text + len - 5);
    CHECK(t, find_casefold(text, 5, "final", 5, false) == NULL); /* only the first len bytes */
    CHECK(t, find_casefold(text, len, "", 0, false) == NULL);
    CHECK(t, find_casefold("ab", 2, "abc", 3, false) == NULL);
}

int main(void)
{
    static const test_case cases[] = {TEST(key_matches_first), TEST(words_case_and_underscores),
                                      TEST(help_only_and_no_match), TEST(casefold_search)};
    return run_tests("settings_find", cases, sizeof cases / sizeof cases[0]);
}
