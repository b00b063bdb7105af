/* The memory gauge and the progress bar: labels in binary units, rounding of cells, unknown values shown
 * as N/A, tqdm-style durations and rates. */
#include <math.h>

#include "unit/check.h"
#include "widgets/gauge.h"

#define GIB(x) ((int64_t)llround((x)*1073741824.0))
#define MIB(x) ((int64_t)llround((x)*1048576.0))

#define CHECK_STREQ(t, got, expected)                                                                        \
    CHECK_MSG(t, strcmp((got), (expected)) == 0, "got \"%s\", expected \"%s\"", (got), (expected))

static void test_bytes_and_durations(test_state *t)
{
    char s[64];
    struct {
        int64_t bytes;
        const char *text;
    } bytes[] = {{0, "0 B"},
                 {1023, "1023 B"},
                 {1024, "1.0 KiB"},
                 {1536, "1.5 KiB"},
                 {1048524, "1023.9 KiB"},
                 {1048575, "1.0 MiB"},
                 {GIB(7.9), "7.9 GiB"},
                 {GIB(24), "24.0 GiB"},
                 {GIB(2048), "2.0 TiB"},
                 {-1, "N/A"}};
    for (size_t i = 0; i < sizeof bytes / sizeof bytes[0]; i++) {
        gauge_format_bytes(bytes[i].bytes, s, sizeof s);
        CHECK_STREQ(t, s, bytes[i].text);
    }
    struct {
        double seconds;
        const char *text;
    } durations[] = {{0, "0:00"},
                     {32, "0:32"},
                     {59.6, "1:00"},
                     {725, "12:05"},
                     {3600, "1:00:00"},
                     {3723, "1:02:03"},
                     {86400, "1d 0:00:00"},
                     {2 * 86400 + 3 * 3600 + 4 * 60 + 5, "2d 3:04:05"},
                     {-1, "?"},
                     {NAN, "?"},
                     {INFINITY, "?"}};
    for (size_t i = 0; i < sizeof durations / sizeof durations[0]; i++) {
        gauge_format_duration(durations[i].seconds, s, sizeof s);
        CHECK_STREQ(t, s, durations[i].text);
    }
}

static void test_memory_gauge(test_state *t)
{
    char bar[64], label[64];
    gauge_layout lay;
    gauge_memory mem = {GAUGE_VRAM, GIB(7.9), GIB(9.1), GIB(24)};
    CHECK(t, gauge_memory_render(&mem, 10, true, bar, sizeof bar, label, sizeof label, &lay) == 0);
    CHECK_STREQ(t, label, "VRAM 7.9/24.0 GiB (peak 9.1)");
    /* 7.9/24 of 10 cells = 3.29 -> 3; the peak (3.79) ends in cell 3. */
    CHECK_STREQ(t, bar, "███│░░░░░░");
    CHECK(t, lay.known && lay.filled == 3 && lay.peak_cell == 3);
    CHECK(t, gauge_memory_render(&mem, 10, false, bar, sizeof bar, NULL, 0, &lay) == 0);
    CHECK_STREQ(t, bar, "###|......");

    /* A peak inside the used part has no mark; an unknown peak is left out of the label. */
    mem = (gauge_memory){GAUGE_RAM, MIB(100), -1, MIB(512)};
    CHECK(t, gauge_memory_render(&mem, 8, false, bar, sizeof bar, label, sizeof label, &lay) == 0);
    CHECK_STREQ(t, label, "RAM 100.0/512.0 MiB");
    CHECK_STREQ(t, bar, "##......"); /* 1.56 cells -> 2 */
    CHECK(t, lay.peak_cell == -1);

    /* Rounding at the edges: a byte used shows one cell; all used fills the bar; more is clamped. */
    mem = (gauge_memory){GAUGE_VRAM, 1, 1, GIB(24)};
    CHECK(t, gauge_memory_render(&mem, 10, false, bar, sizeof bar, label, sizeof label, &lay) == 0);
    CHECK(t, lay.filled == 1 && lay.peak_cell == -1);
    mem = (gauge_memory){GAUGE_VRAM, 0, 0, GIB(24)};
    CHECK(t, gauge_memory_render(&mem, 10, false, bar, sizeof bar, label, sizeof label, &lay) == 0);
    CHECK(t, lay.filled == 0 && lay.known);
    CHECK_STREQ(t, label, "VRAM 0.0/24.0 GiB (peak 0.0)");
    CHECK(t, lay.peak_cell == -1); /* a peak of nothing has no mark */
    mem = (gauge_memory){GAUGE_VRAM, GIB(30), GIB(30), GIB(24)};
    CHECK(t, gauge_memory_render(&mem, 4, false, bar, sizeof bar, NULL, 0, &lay) == 0);
    CHECK_STREQ(t, bar, "####");
    CHECK(t, lay.filled == 4 && lay.peak_cell == -1);
}

static void test_memory_unknowns(test_state *t)
{
    char bar[64], label[64];
    gauge_layout lay;
    gauge_memory mem = {GAUGE_VRAM, -1, -1, GIB(24)};
    CHECK(t, gauge_memory_render(&mem, 6, true, bar, sizeof bar, label, sizeof label, &lay) == 0);
    CHECK_STREQ(t, label, "VRAM N/A / 24.0 GiB");
    CHECK_STREQ(t, bar, "░░░░░░");
    CHECK(t, !lay.known && lay.filled == 0 && lay.peak_cell == -1);

    mem = (gauge_memory){GAUGE_RAM, GIB(3.2), GIB(4), -1};
    CHECK(t, gauge_memory_render(&mem, 6, false, bar, sizeof bar, label, sizeof label, &lay) == 0);
    CHECK_STREQ(t, label, "RAM 3.2 GiB / N/A (peak 4.0 GiB)");
    CHECK_STREQ(t, bar, "......");
    CHECK(t, !lay.known);

    mem = (gauge_memory){GAUGE_VRAM, -1, -1, -1};
    CHECK(t, gauge_memory_render(&mem, 6, false, bar, sizeof bar, label, sizeof label, &lay) == 0);
    CHECK_STREQ(t, label, "VRAM N/A");
    mem.total = 0; /* a zero total is as unknown as a missing one */
    CHECK(t, gauge_memory_render(&mem, 6, false, bar, sizeof bar, label, sizeof label, &lay) == 0);
    CHECK_STREQ(t, label, "VRAM N/A");

    CHECK(t, gauge_memory_render(&mem, 0, false, bar, sizeof bar, label, sizeof label, &lay) == -1);
    CHECK(t, gauge_memory_render(&mem, 6, true, bar, 18, label, sizeof label, &lay) == -1);
    CHECK(t, gauge_memory_render(&mem, 6, true, bar, 19, label, sizeof label, &lay) == 0);
}

static void test_progress(test_state *t)
{
    char bar[128], label[96];
    gauge_layout lay;
    gauge_progress p = {123, 300, 5.5, NAN};
    CHECK(t, gauge_progress_render(&p, 10, true, bar, sizeof bar, label, sizeof label, &lay) == 0);
    CHECK_STREQ(t, label, "123/300 41% 5.5 it/s ETA 0:32"); /* 177 steps / 5.5 it/s = 32.2 s */
    CHECK_STREQ(t, bar, "████░░░░░░");
    CHECK(t, lay.known && lay.filled == 4);
    /* Eighths of a cell: 0.41 x 20 cells = 8.2 cells = 8 full and one eighth. */
    CHECK(t, gauge_progress_render(&p, 20, true, bar, sizeof bar, NULL, 0, &lay) == 0);
    CHECK_STREQ(t, bar, "████████▏░░░░░░░░░░░");
    CHECK(t, lay.filled == 9);
    CHECK(t, gauge_progress_render(&p, 10, false, bar, sizeof bar, NULL, 0, &lay) == 0);
    CHECK_STREQ(t, bar, "####......");

    /* The percentage rounds down: 100% only when done. */
    p = (gauge_progress){299, 300, 2, NAN};
    CHECK(t, gauge_progress_render(&p, 4, false, bar, sizeof bar, label, sizeof label, &lay) == 0);
    CHECK_STREQ(t, label, "299/300 99% 2.0 it/s ETA 0:01");
    CHECK_STREQ(t, bar, "###.");
    p = (gauge_progress){300, 300, -1, NAN};
    CHECK(t, gauge_progress_render(&p, 4, true, bar, sizeof bar, label, sizeof label, &lay) == 0);
    CHECK_STREQ(t, label, "300/300 100% ? it/s ETA 0:00");
    CHECK_STREQ(t, bar, "████");
    p = (gauge_progress){0, 300, 0, NAN};
    CHECK(t, gauge_progress_render(&p, 4, true, bar, sizeof bar, label, sizeof label, &lay) == 0);
    CHECK_STREQ(t, label, "0/300 0% 0.0 it/s ETA ?");
    CHECK_STREQ(t, bar, "░░░░");

    /* Slow steps read as seconds per step; a given whole-run ETA wins over the computed one. */
    p = (gauge_progress){1234, 4000, 0.25, 475};
    CHECK(t, gauge_progress_render(&p, 4, true, bar, sizeof bar, label, sizeof label, &lay) == 0);
    CHECK_STREQ(t, label, "1,234/4,000 30% 4.0 s/it ETA 7:55");
    p = (gauge_progress){1234567, 2000000, 12.25, 3 * 86400 + 59};
    CHECK(t, gauge_progress_render(&p, 4, true, bar, sizeof bar, label, sizeof label, &lay) == 0);
    CHECK_STREQ(t, label, "1,234,567/2,000,000 61% 12.2 it/s ETA 3d 0:00:59");

    /* An unknown total: no percentage, no ETA, an empty bar that says so. */
    p = (gauge_progress){5, 0, NAN, NAN};
    CHECK(t, gauge_progress_render(&p, 4, true, bar, sizeof bar, label, sizeof label, &lay) == 0);
    CHECK_STREQ(t, label, "5 ? it/s ETA ?");
    CHECK(t, !lay.known && lay.filled == 0);
}

TEST_MAIN("widgets_gauge", TEST(test_bytes_and_durations), TEST(test_memory_gauge),
          TEST(test_memory_unknowns), TEST(test_progress))
