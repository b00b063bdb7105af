/* The one-line editor and the field logic of the config view (tui/edit.c),
 * without a terminal. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edit.h"
#include "sdtune/value.h"
#include "unit/check.h"

#define CHECK_STREQ(t, got, expected)                                                                        \
    CHECK_MSG(t, strcmp((got), (expected)) == 0, "got \"%s\", expected \"%s\"", (got), (expected))

static void typing_and_moving(test_state *t)
{
    line_edit e;
    CHECK(t, line_edit_init(&e, "512") == 0);
    CHECK(t, e.cursor == 3);
    CHECK(t, line_edit_insert(&e, "0", 1) == 0);
    CHECK_STREQ(t, e.text, "5120");
    line_edit_home(&e);
    CHECK(t, line_edit_insert(&e, "[", 1) == 0);
    line_edit_end(&e);
    CHECK(t, line_edit_insert(&e, "]", 1) == 0);
    CHECK_STREQ(t, e.text, "[5120]");
    line_edit_left(&e);
    line_edit_backspace(&e);
    CHECK_STREQ(t, e.text, "[512]");
    CHECK(t, e.cursor == 4);
    line_edit_home(&e);
    line_edit_delete(&e);
    CHECK_STREQ(t, e.text, "512]");
    CHECK(t, e.cursor == 0);
    line_edit_backspace(&e); /* nothing before the cursor */
    CHECK_STREQ(t, e.text, "512]");
    line_edit_end(&e);
    line_edit_delete(&e); /* nothing after it */
    CHECK_STREQ(t, e.text, "512]");
    line_edit_clear(&e);
    CHECK_STREQ(t, e.text, "");
    CHECK(t, e.len == 0 && e.cursor == 0);
    line_edit_free(&e);
}

static void utf8_characters(test_state *t)
{
    line_edit e;
    CHECK(t, line_edit_init(&e, "caf\xc3\xa9") == 0); /* café */
    CHECK(t, line_edit_chars(&e) == 4 && e.len == 5);
    line_edit_left(&e);
    CHECK(t, e.cursor == 3 && line_edit_cursor_col(&e) == 3);
    line_edit_right(&e);
    CHECK(t, e.cursor == 5);
    line_edit_backspace(&e); /* both bytes of é go */
    CHECK_STREQ(t, e.text, "caf");
    /* A three-byte character (€) arriving byte by byte, as getch delivers it. */
    const char euro[] = "\xe2\x82\xac";
    for (int i = 0; i < 3; i++) {
        CHECK(t, line_edit_char_complete(&e) == (i == 0));
        CHECK(t, line_edit_insert(&e, euro + i, 1) == 0);
    }
    CHECK(t, line_edit_char_complete(&e));
    CHECK_STREQ(t, e.text, "caf\xe2\x82\xac");
    CHECK(t, line_edit_chars(&e) == 4);
    line_edit_home(&e);
    line_edit_right(&e);
    line_edit_right(&e);
    line_edit_right(&e);
    line_edit_delete(&e);
    CHECK_STREQ(t, e.text, "caf");
    line_edit_free(&e);
}

static void horizontal_scrolling(test_state *t)
{
    line_edit e;
    CHECK(t, line_edit_init(&e, "abcdefghijklmnopqrstuvwxyz") == 0);
    int x = -1;
    size_t first = line_edit_view(&e, 10, &x);
    /* The cursor after z needs a cell: 9 letters and the cursor show. */
    CHECK_MSG(t, first == 17 && x == 9, "first %zu x %d", first, x);
    line_edit_home(&e);
    first = line_edit_view(&e, 10, &x);
    CHECK(t, first == 0 && x == 0);
    for (int i = 0; i < 12; i++)
        line_edit_right(&e);
    first = line_edit_view(&e, 10, &x);
    CHECK_MSG(t, first == 3 && x == 9, "first %zu x %d", first, x);
    line_edit_left(&e);
    first = line_edit_view(&e, 10, &x); /* moving inside the field does not scroll */
    CHECK(t, first == 3 && x == 8);
    line_edit_clear(&e);
    first = line_edit_view(&e, 10, &x);
    CHECK(t, first == 0 && x == 0);
    /* Scrolling counts characters, not bytes. */
    CHECK(t, line_edit_insert(&e, "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 8) == 0);
    first = line_edit_view(&e, 3, &x);
    CHECK_MSG(t, first == 4 && x == 2, "first %zu x %d", first, x);
    line_edit_free(&e);
}

static void fields(test_state *t)
{
    sdt_config *cfg = sdt_config_new();
    CHECK(t, cfg != NULL);
    if (!cfg)
        return;
    int dim = sdt_schema_find("network_dim");
    CHECK(t, dim >= 0);
    char *error = NULL;
    CHECK(t, field_apply(cfg, dim, "16", &error) == 0);
    CHECK(t, sdt_config_int(cfg, "network_dim") == 16);
    CHECK(t, field_apply(cfg, dim, "0", &error) == -1);
    CHECK_MSG(t, error != NULL, "no message for an out-of-range value");
    free(error);
    error = NULL;
    CHECK(t, sdt_config_int(cfg, "network_dim") == 16); /* unchanged by a bad value */
    CHECK(t, field_apply(cfg, dim, "sixteen", &error) == -1 && error);
    free(error);
    error = NULL;

    int optimizer = sdt_schema_find("optimizer_type");
    const sdt_setting *s = &sdt_schema_settings()[optimizer];
    CHECK(t, s->type == SDT_T_ENUM && s->enum_values && s->enum_values[1]);
    CHECK(t, field_apply(cfg, optimizer, s->enum_values[1], &error) == 0);
    CHECK_STREQ(t, sdt_config_str(cfg, "optimizer_type"), s->enum_values[1]);
    CHECK(t, field_apply(cfg, optimizer, "no-such-optimizer", &error) == -1 && error);
    free(error);
    error = NULL;

    int flip = sdt_schema_find("flip_aug");
    CHECK(t, flip >= 0 && sdt_schema_settings()[flip].type == SDT_T_BOOL);
    CHECK(t, field_apply(cfg, flip, "true", &error) == 0 && sdt_config_bool(cfg, "flip_aug"));
    CHECK(t, sdt_config_is_changed(cfg, flip));
    sdt_config_unset(cfg, flip);
    CHECK(t, !sdt_config_is_changed(cfg, flip) && !sdt_config_bool(cfg, "flip_aug"));
    sdt_config_free(cfg);
}

int main(void)
{
    static const test_case cases[] = {TEST(typing_and_moving), TEST(utf8_characters),
                                      TEST(horizontal_scrolling), TEST(fields)};
    return run_tests("edit", cases, sizeof cases / sizeof cases[0]);
}
