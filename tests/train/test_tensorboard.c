/* The TensorBoard event writer: a small reader here checks every record's two CRCs and decodes the Event
 * fields (file_version first, then wall_time, step, tag, simple_value per scalar), CRC32C against its
 * published check value, appends across flushes, and errors that name the folder. */
#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tensorboard.h"
#include "unit/check.h"
#include "unit/test_files.h"

typedef struct tb_event {
    double wall_time;
    int64_t step;
    char file_version[64];
    char tag[64];
    float simple_value;
    int has_summary;
} tb_event;

static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* A varint at *at (below end); -1 when it runs off the end. */
static int get_varint(const uint8_t *p, size_t end, size_t *at, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64 && *at < end; shift += 7) {
        uint8_t b = p[(*at)++];
        *v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80))
            return 0;
    }
    return -1;
}

/* Decodes the fields of one message (Event, Summary or Value: their field numbers do not clash in a way
 * that matters here, depth says which). */
static int decode_message(const uint8_t *p, size_t len, int depth, tb_event *ev)
{
    size_t at = 0;
    while (at < len) {
        uint64_t key, v;
        if (get_varint(p, len, &at, &key) != 0)
            return -1;
        unsigned field = (unsigned)(key >> 3), wire = (unsigned)(key & 7);
        if (wire == 0) {
            if (get_varint(p, len, &at, &v) != 0)
                return -1;
            if (depth == 0 && field == 2)
                ev->step = (int64_t)v;
        } else if (wire == 1) {
            if (at + 8 > len)
                return -1;
            uint64_t bits = get_le(p + at, 8);
            at += 8;
            if (depth == 0 && field == 1)
                memcpy(&ev->wall_time, &bits, 8);
        } else if (wire == 5) {
            if (at + 4 > len)
                return -1;
            uint32_t bits = (uint32_t)get_le(p + at, 4);
            at += 4;
            if (depth == 2 && field == 2)
                memcpy(&ev->simple_value, &bits, 4);
        } else if (wire == 2) {
            if (get_varint(p, len, &at, &v) != 0 || v > len - at)
                return -1;
            const uint8_t *sub = p + at;
            at += (size_t)v;
            if (depth == 0 && field == 3)
                snprintf(ev->file_version, sizeof ev->file_version, "%.*s", (int)v, (const char *)sub);
            else if (depth == 0 && field == 5) {
                ev->has_summary = 1;
                if (decode_message(sub, (size_t)v, 1, ev) != 0)
                    return -1;
            } else if (depth == 1 && field == 1) {
                if (decode_message(sub, (size_t)v, 2, ev) != 0)
                    return -1;
            } else if (depth == 2 && field == 1)
                snprintf(ev->tag, sizeof ev->tag, "%.*s", (int)v, (const char *)sub);
        } else {
            return -1;
        }
    }
    return 0;
}

/* Reads every record of an event file; returns the number of events, or -1 on a bad CRC or field. */
static int read_events(test_state *t, const char *path, tb_event *events, int max)
{
    char *data = NULL, *error = NULL;
    size_t len = 0;
    if (sdt_read_file(path, 1 << 20, &data, &len, &error) != 0) {
        CHECK_MSG(t, 0, "%s: %s", path, error);
        free(error);
        return -1;
    }
    const uint8_t *p = (const uint8_t *)data;
    size_t at = 0;
    int n = 0;
    while (at < len) {
        if (len - at < 12 || n >= max) {
            n = -1;
            break;
        }
        uint64_t size = get_le(p + at, 8);
        if ((uint32_t)get_le(p + at + 8, 4) != sdt_tb_masked_crc(p + at, 8) || size > len - at - 16) {
            n = -1;
            break;
        }
        const uint8_t *body = p + at + 12;
        if ((uint32_t)get_le(body + size, 4) != sdt_tb_masked_crc(body, (size_t)size)) {
            n = -1;
            break;
        }
        memset(&events[n], 0, sizeof events[n]);
        if (decode_message(body, (size_t)size, 0, &events[n]) != 0) {
            n = -1;
            break;
        }
        n++;
        at += 16 + (size_t)size;
    }
    free(data);
    return n;
}

/* The one event file in dir (its name into path); 0 when there is exactly one. */
static int find_event_file(const char *dir, char *path, size_t size)
{
    DIR *d = opendir(dir);
    int count = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "events.out.tfevents.", 20) == 0) {
            snprintf(path, size, "%s/%s", dir, e->d_name);
            count++;
        }
    }
    if (d)
        closedir(d);
    return count == 1 ? 0 : -1;
}

static void test_crc32c_check_value(test_state *t)
{
    /* The standard CRC-32C check value and an RFC 3720 vector (32 zero bytes). */
    CHECK(t, sdt_crc32c("123456789", 9) == 0xE3069283u);
    uint8_t zeros[32] = {0};
    CHECK(t, sdt_crc32c(zeros, sizeof zeros) == 0x8A9136AAu);
    uint32_t crc = sdt_crc32c("123456789", 9);
    CHECK(t, sdt_tb_masked_crc("123456789", 9) == ((crc >> 15 | crc << 17) + 0xA282EAD8u));
}

static void test_scalars_round_trip(test_state *t)
{
    char dir[256];
    CHECK(t, test_make_temp_dir(dir, sizeof dir, "tb") == 0);
    /* tools/train/check_tensorboard.py sets SDTUNE_TB_KEEP to a folder to read these files with the
     * tensorboard package's own reader. */
    const char *keep = getenv("SDTUNE_TB_KEEP");
    char *folder = keep && keep[0] ? sdt_format("%s/logs/run1", keep)
                                   : sdt_format("%s/logs/run1", dir); /* missing parents are created */
    char *error = NULL;
    double before = (double)time(NULL);
    sdt_tb_writer *w = sdt_tb_open(folder, &error);
    CHECK_MSG(t, w != NULL, "%s", error);
    if (!w)
        goto done;
    const char *name = strrchr(sdt_tb_path(w), '/');
    CHECK_STR_CONTAINS(t, name, "/events.out.tfevents.");

    char path[512];
    CHECK(t, find_event_file(folder, path, sizeof path) == 0);
    tb_event ev[16];
    /* The version event is on disk right after open. */
    CHECK(t, read_events(t, path, ev, 16) == 1);
    CHECK(t, strcmp(ev[0].file_version, "brain.Event:2") == 0);
    CHECK(t, ev[0].wall_time >= before - 1 && ev[0].wall_time < before + 60);

    CHECK(t, sdt_tb_scalar(w, "loss/current", 1, 0.125) == 0);
    CHECK(t, sdt_tb_scalar(w, "lr/unet", 1, 1e-4) == 0);
    /* Queued, not yet written. */
    CHECK(t, read_events(t, path, ev, 16) == 1);
    CHECK(t, sdt_tb_flush(w, &error) == 0);
    CHECK(t, read_events(t, path, ev, 16) == 3);
    CHECK(t, sdt_tb_scalar(w, "loss/current", 300, -2.5) == 0);
    CHECK(t, sdt_tb_scalar(w, "big_step", 5000000000LL, 3.0) == 0);
    CHECK(t, sdt_tb_close(w, &error) == 0);

    int n = read_events(t, path, ev, 16);
    CHECK(t, n == 5);
    if (n == 5) {
        CHECK(t, !ev[0].has_summary);
        CHECK(t, strcmp(ev[1].tag, "loss/current") == 0 && ev[1].step == 1 && ev[1].simple_value == 0.125f);
        CHECK(t, strcmp(ev[2].tag, "lr/unet") == 0 && ev[2].step == 1 && ev[2].simple_value == 1e-4f);
        CHECK(t, strcmp(ev[3].tag, "loss/current") == 0 && ev[3].step == 300 && ev[3].simple_value == -2.5f);
        CHECK(t, ev[4].step == 5000000000LL && ev[4].simple_value == 3.0f);
        for (int i = 1; i < n; i++) {
            CHECK(t, ev[i].has_summary && ev[i].file_version[0] == '\0');
            CHECK(t, ev[i].wall_time >= ev[i - 1].wall_time);
        }
    }

    /* A second writer in the same folder gets its own file. */
    sdt_tb_writer *w2 = sdt_tb_open(folder, &error);
    CHECK(t, w2 != NULL);
    CHECK(t, w2 && strcmp(sdt_tb_path(w2), path) != 0);
    CHECK(t, sdt_tb_close(w2, &error) == 0);
done:
    free(error);
    free(folder);
    test_remove_tree(dir);
}

static void test_errors_name_the_folder(test_state *t)
{
    char dir[256];
    CHECK(t, test_make_temp_dir(dir, sizeof dir, "tb") == 0);
    char *file = sdt_format("%s/plain_file", dir);
    FILE *f = fopen(file, "w");
    if (f)
        fclose(f);
    char *folder = sdt_format("%s/inside", file); /* a folder below a plain file cannot exist */
    char *error = NULL;
    CHECK(t, sdt_tb_open(folder, &error) == NULL);
    CHECK_STR_CONTAINS(t, error, "plain_file");
    free(error);
    error = NULL;
    CHECK(t, sdt_tb_open(file, &error) == NULL);
    CHECK_STR_CONTAINS(t, error, "plain_file");
    CHECK(t, sdt_tb_close(NULL, &error) == 0);
    free(error);
    free(folder);
    free(file);
    test_remove_tree(dir);
}

TEST_MAIN("tensorboard", TEST(test_crc32c_check_value), TEST(test_scalars_round_trip),
          TEST(test_errors_name_the_folder))
