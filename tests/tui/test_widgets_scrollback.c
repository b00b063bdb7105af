/* The log scrollback: the ring and its dropped count, wrapping by display width, follow mode, scrolling by
 * line/page/top/bottom, and search. */
#include <locale.h>
#include <stdio.h>

#include "unit/check.h"
#include "widgets/scrollback.h"

static void push_numbered(scrollback *sb, int from, int to)
{
    for (int i = from; i < to; i++) {
        char text[32];
        snprintf(text, sizeof text, "line %d", i);
        sb_push(sb, SB_INFO, 1000.0 + i, text);
    }
}

/* The view's rows as "text|text|..." for compact checks. */
static const char *view_text(const scrollback *sb, int rows, int width)
{
    static char out[1024];
    sb_row view[64];
    int n = sb_view(sb, rows, width, view);
    size_t o = 0;
    out[0] = '\0';
    for (int i = 0; i < n; i++)
        o +=
            (size_t)snprintf(out + o, sizeof out - o, "%s%.*s", i ? "|" : "", (int)view[i].len, view[i].text);
    return out;
}

#define CHECK_VIEW(t, sb, rows, width, expected)                                                             \
    do {                                                                                                     \
        const char *got_ = view_text(sb, rows, width);                                                       \
        CHECK_MSG(t, strcmp(got_, expected) == 0, "got \"%s\", expected \"%s\"", got_, expected);            \
    } while (0)

static void test_ring_drops_oldest(test_state *t)
{
    scrollback sb;
    CHECK(t, sb_init(&sb, 3) == 0);
    push_numbered(&sb, 0, 5);
    CHECK(t, sb.count == 3 && sb.dropped == 2 && sb.first == 2);
    CHECK(t, sb_get(&sb, 1) == NULL && sb_get(&sb, 5) == NULL);
    CHECK(t, sb_get(&sb, 2) && strcmp(sb_get(&sb, 2)->text, "line 2") == 0 && sb_get(&sb, 2)->time == 1002.0);
    CHECK(t, strcmp(sb_get(&sb, 4)->text, "line 4") == 0);

    /* One line per newline-separated part; CRLF endings and a final newline add nothing. */
    CHECK(t, sb_push(&sb, SB_ERROR, 7, "first\r\nsecond\n") == 0);
    CHECK(t, sb.count == 3 && sb.dropped == 4);
    CHECK(t, strcmp(sb_get(&sb, 5)->text, "first") == 0 && strcmp(sb_get(&sb, 6)->text, "second") == 0);
    CHECK(t, sb_get(&sb, 6)->level == SB_ERROR);
    CHECK(t, sb_push(&sb, SB_INFO, 8, "") == 0 && strcmp(sb_get(&sb, 7)->text, "") == 0);
    sb_free(&sb);
}

static void test_wrap_by_display_width(test_state *t)
{
    int cols;
    CHECK(t, sb_wrap("abcdef", 6, 4, &cols) == 4 && cols == 4);
    CHECK(t, sb_wrap("ab", 2, 4, &cols) == 2 && cols == 2);
    CHECK(t, sb_line_rows("abcdefghij", 4) == 3);
    CHECK(t, sb_line_rows("", 4) == 1);
    CHECK(t, sb_line_rows("abcd", 4) == 1);
    /* An invalid byte takes one column and never stalls the wrap. */
    CHECK(t, sb_wrap("\xff\xfe"
                     "ab",
                     4, 3, &cols) == 3 &&
                 cols == 3);
    /* Width 1 still takes a character a row, even a wide one. */
    CHECK(t, sb_line_rows("abc", 1) == 3);

    if (!setlocale(LC_CTYPE, "C.UTF-8") && !setlocale(LC_CTYPE, "en_US.UTF-8")) {
        printf("no UTF-8 locale: wide-character checks skipped\n");
        return;
    }
    /* "日本語" is 3 characters, 9 bytes, 6 columns: at width 5 the third does not fit. */
    const char *cjk = "日本語";
    CHECK(t, sb_wrap(cjk, strlen(cjk), 5, &cols) == 6 && cols == 4);
    CHECK(t, sb_line_rows(cjk, 5) == 2);
    CHECK(t, sb_line_rows(cjk, 6) == 1);
    CHECK(t, sb_wrap("é·x", strlen("é·x"), 2, &cols) == 4 && cols == 2); /* two 2-byte characters */
    CHECK(t, sb_line_rows(cjk, 1) == 3);
    setlocale(LC_CTYPE, "C");
}

static void test_follow_and_scroll(test_state *t)
{
    scrollback sb;
    CHECK(t, sb_init(&sb, 100) == 0);
    CHECK(t, sb_view(&sb, 4, 20, NULL) == 0);
    push_numbered(&sb, 0, 2);
    CHECK_VIEW(t, &sb, 4, 20, "line 0|line 1"); /* shorter than the pane: at the top */
    sb_scroll(&sb, -1, 4, 20);
    CHECK(t, sb.follow); /* nothing to scroll */
    push_numbered(&sb, 2, 10);
    CHECK_VIEW(t, &sb, 4, 20, "line 6|line 7|line 8|line 9");
    push_numbered(&sb, 10, 11);
    CHECK_VIEW(t, &sb, 4, 20, "line 7|line 8|line 9|line 10");

    /* Scrolled up, new lines do not move the view. */
    sb_scroll(&sb, -2, 4, 20);
    CHECK(t, !sb.follow);
    CHECK_VIEW(t, &sb, 4, 20, "line 5|line 6|line 7|line 8");
    push_numbered(&sb, 11, 12);
    CHECK_VIEW(t, &sb, 4, 20, "line 5|line 6|line 7|line 8");
    /* Down to the bottom again: following. */
    sb_scroll(&sb, 2, 4, 20);
    CHECK(t, !sb.follow);
    CHECK_VIEW(t, &sb, 4, 20, "line 7|line 8|line 9|line 10");
    sb_scroll(&sb, 1, 4, 20);
    CHECK(t, sb.follow);
    CHECK_VIEW(t, &sb, 4, 20, "line 8|line 9|line 10|line 11");
    sb_scroll(&sb, 100, 4, 20);
    CHECK(t, sb.follow);

    /* Pages keep one row of context; top and bottom. */
    sb_top(&sb);
    CHECK(t, !sb.follow);
    CHECK_VIEW(t, &sb, 4, 20, "line 0|line 1|line 2|line 3");
    sb_page(&sb, 1, 4, 20);
    CHECK_VIEW(t, &sb, 4, 20, "line 3|line 4|line 5|line 6");
    sb_page(&sb, -1, 4, 20);
    CHECK_VIEW(t, &sb, 4, 20, "line 0|line 1|line 2|line 3");
    sb_page(&sb, -1, 4, 20);
    CHECK_VIEW(t, &sb, 4, 20, "line 0|line 1|line 2|line 3");
    sb_page(&sb, 5, 4, 20);
    CHECK(t, sb.follow);
    sb_top(&sb);
    sb_bottom(&sb);
    CHECK(t, sb.follow);
    CHECK_VIEW(t, &sb, 4, 20, "line 8|line 9|line 10|line 11");
    sb_free(&sb);
}

static void test_scroll_through_wrapped_lines(test_state *t)
{
    scrollback sb;
    CHECK(t, sb_init(&sb, 10) == 0);
    sb_push(&sb, SB_WARNING, 1, "abcdefghij"); /* 3 rows at width 4 */
    sb_push(&sb, SB_INFO, 2, "xy");
    sb_row view[4];
    CHECK(t, sb_view(&sb, 3, 4, view) == 3);
    CHECK_VIEW(t, &sb, 3, 4, "efgh|ij|xy");
    CHECK(t, !view[0].first_row && !view[1].first_row && view[2].first_row);
    CHECK(t, view[0].line == 0 && view[0].level == SB_WARNING && view[2].line == 1 && view[2].time == 2);
    sb_scroll(&sb, -1, 3, 4);
    CHECK_VIEW(t, &sb, 3, 4, "abcd|efgh|ij");
    /* A wider pane: the kept first line is still the first visible. */
    CHECK_VIEW(t, &sb, 1, 10, "abcdefghij");
    /* When the pane grows past the end, the view sticks to the bottom. */
    CHECK_VIEW(t, &sb, 3, 10, "abcdefghij|xy");
    sb_scroll(&sb, 1, 3, 4);
    CHECK(t, sb.follow);
    CHECK_VIEW(t, &sb, 3, 4, "efgh|ij|xy");
    sb_free(&sb);
}

static void test_dropped_lines_under_a_scrolled_view(test_state *t)
{
    scrollback sb;
    CHECK(t, sb_init(&sb, 5) == 0);
    push_numbered(&sb, 0, 5);
    sb_top(&sb);
    CHECK_VIEW(t, &sb, 2, 20, "line 0|line 1");
    push_numbered(&sb, 5, 8); /* lines 0..2 dropped under the view */
    CHECK(t, sb.dropped == 3);
    CHECK_VIEW(t, &sb, 2, 20, "line 3|line 4");
    sb_free(&sb);
}

static void test_search(test_state *t)
{
    scrollback sb;
    CHECK(t, sb_init(&sb, 100) == 0);
    push_numbered(&sb, 0, 20);
    sb_push(&sb, SB_INFO, 0, "tail");
    /* Lines 3 and 15 hold the word, in other cases. */
    free(sb.ring[3].text);
    sb.ring[3].text = strdup("warning: skipped Broken_01.jpg");
    free(sb.ring[15].text);
    sb.ring[15].text = strdup("BROKEN pipe");
    uint64_t hit = 99;
    sb_top(&sb);
    CHECK(t, sb_search(&sb, "broken", true, 4, 30, &hit) == 0 && hit == 3);
    CHECK(t, !sb.follow);
    CHECK_VIEW(t, &sb, 4, 30, "warning: skipped Broken_01.jpg|line 4|line 5|line 6");
    CHECK(t, sb_search(&sb, "broken", true, 4, 30, &hit) == 0 && hit == 15);
    CHECK_VIEW(t, &sb, 4, 30, "BROKEN pipe|line 16|line 17|line 18");
    /* Forward again wraps to the first; backward from there wraps to the last. */
    CHECK(t, sb_search(&sb, "broken", true, 4, 30, &hit) == 0 && hit == 3);
    CHECK(t, sb_search(&sb, "broken", false, 4, 30, &hit) == 0 && hit == 15);
    /* A hit in the last page shows the last page. */
    CHECK(t, sb_search(&sb, "TAIL", false, 4, 30, &hit) == 0 && hit == 20);
    CHECK_VIEW(t, &sb, 4, 30, "line 17|line 18|line 19|tail");
    /* No hit: -1, the view stays. */
    CHECK(t, sb_search(&sb, "nothing", true, 4, 30, &hit) == -1 && hit == 20);
    CHECK_VIEW(t, &sb, 4, 30, "line 17|line 18|line 19|tail");
    CHECK(t, sb_search(&sb, "", true, 4, 30, &hit) == -1);
    sb_free(&sb);
}

TEST_MAIN("widgets_scrollback", TEST(test_ring_drops_oldest), TEST(test_wrap_by_display_width),
          TEST(test_follow_and_scroll), TEST(test_scroll_through_wrapped_lines),
          TEST(test_dropped_lines_under_a_scrolled_view), TEST(test_search))
