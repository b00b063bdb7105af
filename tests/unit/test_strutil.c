/* Edit distance, UTF-8 validation and the growable buffer. */
#include "check.h"
#include "sdtune/strutil.h"

static void edit_distance(test_state *t)
{
    CHECK(t, sdt_edit_distance("learning_rate", "learning_rate", 3) == 0);
    CHECK(t, sdt_edit_distance("learnig_rate", "learning_rate", 3) == 1);  /* deletion */
    CHECK(t, sdt_edit_distance("lerning_rate", "learning_rate", 3) == 1);  /* deletion */
    CHECK(t, sdt_edit_distance("learnign_rate", "learning_rate", 3) == 1); /* transposition */
    CHECK(t, sdt_edit_distance("Learning_Rate", "learning_rate", 3) == 0); /* case-folded */
    CHECK(t, sdt_edit_distance("network_dim", "network_dmi", 3) == 1);
    CHECK(t, sdt_edit_distance("abc", "xyz", 3) == 3);
    CHECK(t, sdt_edit_distance("seed", "learning_rate", 3) == 4); /* over the limit: limit + 1 */
    CHECK(t, sdt_edit_distance("", "abc", 5) == 3);
}

static void utf8(test_state *t)
{
    const char ok[] = "caf\xC3\xA9 \xE2\x9C\x97 \xF0\x9F\x98\x80";
    CHECK(t, sdt_utf8_invalid_at(ok, sizeof ok - 1) == sizeof ok - 1);
    CHECK(t, sdt_utf8_invalid_at("ab\xFFz", 4) == 2);           /* never valid */
    CHECK(t, sdt_utf8_invalid_at("a\xC0\x80", 3) == 1);         /* overlong NUL */
    CHECK(t, sdt_utf8_invalid_at("a\xED\xA0\x80", 4) == 1);     /* surrogate */
    CHECK(t, sdt_utf8_invalid_at("a\xF4\x90\x80\x80", 5) == 1); /* above U+10FFFF */
    CHECK(t, sdt_utf8_invalid_at("ab\xE2\x9C", 4) == 2);        /* truncated */
}

static void buffer(test_state *t)
{
    sdt_buf b;
    sdt_buf_init(&b);
    for (int i = 0; i < 1000; i++)
        sdt_buf_printf(&b, "%d,", i);
    char *s = sdt_buf_take(&b);
    CHECK(t, s && strncmp(s, "0,1,2,", 6) == 0 && strstr(s, "999,") != NULL);
    free(s);
    sdt_buf_init(&b);
    s = sdt_buf_take(&b);
    CHECK(t, s && s[0] == '\0');
    free(s);
}

TEST_MAIN("strutil", TEST(edit_distance), TEST(utf8), TEST(buffer))
