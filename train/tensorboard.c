/* TensorBoard event files: the protobuf is encoded by hand (a few varints and length-delimited fields),
 * so there is no protobuf dependency. Field numbers are those of tensorflow's event.proto and
 * summary.proto:
 *   Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
 *   Summary { repeated Value value = 1; }
 *   Value   { string tag = 1; float simple_value = 2; } */
#include "tensorboard.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sdtune/atomic_file.h"
#include "sdtune/strutil.h"

struct sdt_tb_writer {
    int fd;
    char *path;
    sdt_buf pending; /* encoded records not yet written */
    int dropped;     /* scalars lost to an allocation failure since the last flush */
};

/* ---- CRC32C ---- */

/* Bit-at-a-time over the reflected Castagnoli polynomial: the records are a few dozen bytes, so a table
 * would buy nothing measurable. */
uint32_t sdt_crc32c(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < len; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
    }
    return crc ^ 0xFFFFFFFFu;
}

/* TFRecord's mask: a CRC of data that itself holds CRCs is not checked by accident. */
uint32_t sdt_tb_masked_crc(const void *data, size_t len)
{
    uint32_t crc = sdt_crc32c(data, len);
    return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u;
}

/* ---- protobuf encoding ---- */

enum { WIRE_VARINT = 0, WIRE_FIXED64 = 1, WIRE_BYTES = 2, WIRE_FIXED32 = 5 };

static void put_varint(sdt_buf *b, uint64_t v)
{
    char bytes[10];
    size_t n = 0;
    do {
        bytes[n++] = (char)((v & 0x7F) | (v > 0x7F ? 0x80 : 0));
        v >>= 7;
    } while (v);
    sdt_buf_append(b, bytes, n);
}

static void put_key(sdt_buf *b, unsigned field, unsigned wire) { put_varint(b, (uint64_t)field << 3 | wire); }

static void put_le(sdt_buf *b, uint64_t v, size_t n)
{
    char bytes[8];
    for (size_t i = 0; i < n; i++)
        bytes[i] = (char)(v >> (8 * i));
    sdt_buf_append(b, bytes, n);
}

static void put_bytes(sdt_buf *b, unsigned field, const char *data, size_t len)
{
    put_key(b, field, WIRE_BYTES);
    put_varint(b, len);
    sdt_buf_append(b, data, len);
}

static void put_double(sdt_buf *b, unsigned field, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    put_key(b, field, WIRE_FIXED64);
    put_le(b, bits, 8);
}

static void put_float(sdt_buf *b, unsigned field, float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    put_key(b, field, WIRE_FIXED32);
    put_le(b, bits, 4);
}

/* One TFRecord: length, masked CRC of the length, data, masked CRC of the data (all little-endian). */
static void put_record(sdt_buf *out, const sdt_buf *event)
{
    char header[8];
    for (int i = 0; i < 8; i++)
        header[i] = (char)((uint64_t)event->len >> (8 * i));
    sdt_buf_append(out, header, 8);
    put_le(out, sdt_tb_masked_crc(header, 8), 4);
    sdt_buf_append(out, event->data ? event->data : "", event->len);
    put_le(out, sdt_tb_masked_crc(event->data ? event->data : "", event->len), 4);
}

static double wall_time_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- the writer ---- */

sdt_tb_writer *sdt_tb_open(const char *folder, char **error)
{
    if (!folder || !folder[0]) {
        sdt_set_error(error, "no TensorBoard folder given");
        return NULL;
    }
    if (sdt_make_folders(folder, "TensorBoard", error) != 0)
        return NULL;
    sdt_tb_writer *w = calloc(1, sizeof *w);
    if (!w) {
        sdt_set_error(error, "out of memory");
        return NULL;
    }
    w->fd = -1;
    sdt_buf_init(&w->pending);
    char host[256] = "localhost";
    if (gethostname(host, sizeof host - 1) != 0)
        snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    for (char *h = host; *h; h++)
        if (*h == '/')
            *h = '_';
    long now = (long)time(NULL);
    /* torch's SummaryWriter names files the same way; the counter makes two writers in one second and
     * one process (a resumed run in a test) get distinct files. */
    for (int n = 0; n < 1000 && w->fd < 0; n++) {
        free(w->path);
        w->path = sdt_format("%s/events.out.tfevents.%010ld.%s.%ld.%d", folder, now, host, (long)getpid(), n);
        if (!w->path)
            break;
        w->fd = open(w->path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
        if (w->fd < 0 && errno != EEXIST)
            break;
    }
    if (w->fd < 0) {
        sdt_set_error(error, "cannot create the TensorBoard event file %s: %s", w->path ? w->path : folder,
                      strerror(errno));
        sdt_buf_free(&w->pending);
        free(w->path);
        free(w);
        return NULL;
    }
    sdt_buf event;
    sdt_buf_init(&event);
    put_double(&event, 1, wall_time_now());
    put_bytes(&event, 3, "brain.Event:2", strlen("brain.Event:2"));
    put_record(&w->pending, &event);
    sdt_buf_free(&event);
    if (sdt_tb_flush(w, error) != 0) {
        close(w->fd);
        unlink(w->path);
        sdt_buf_free(&w->pending);
        free(w->path);
        free(w);
        return NULL;
    }
    return w;
}

const char *sdt_tb_path(const sdt_tb_writer *w) { return w ? w->path : NULL; }

int sdt_tb_scalar(sdt_tb_writer *w, const char *tag, int64_t step, double value)
{
    sdt_buf val, summary, event;
    sdt_buf_init(&val);
    sdt_buf_init(&summary);
    sdt_buf_init(&event);
    put_bytes(&val, 1, tag, strlen(tag));
    put_float(&val, 2, (float)value);
    put_bytes(&summary, 1, val.data, val.len);
    put_double(&event, 1, wall_time_now());
    put_key(&event, 2, WIRE_VARINT);
    put_varint(&event, (uint64_t)step); /* int64: negative steps are ten-byte two's complement */
    put_bytes(&event, 5, summary.data, summary.len);
    int failed = val.failed || summary.failed || event.failed;
    size_t before = w->pending.len;
    if (!failed)
        put_record(&w->pending, &event);
    if (!failed && w->pending.failed) {
        /* Keep what was queued before: cut back to it and clear the flag. */
        w->pending.failed = false;
        w->pending.len = before;
        if (w->pending.data)
            w->pending.data[before] = '\0';
        failed = 1;
    }
    sdt_buf_free(&val);
    sdt_buf_free(&summary);
    sdt_buf_free(&event);
    if (failed)
        w->dropped++;
    return failed ? -1 : 0;
}

int sdt_tb_flush(sdt_tb_writer *w, char **error)
{
    size_t done = 0;
    while (done < w->pending.len) {
        ssize_t n = write(w->fd, w->pending.data + done, w->pending.len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int saved = errno;
            /* What was written stays (the file is a log); the rest is dropped so a full disk does not grow
             * the queue without bound. */
            w->pending.len = 0;
            return sdt_set_error(error, "cannot write %s: %s", w->path, n < 0 ? strerror(saved) : "no space");
        }
        done += (size_t)n;
    }
    w->pending.len = 0;
    if (w->pending.data)
        w->pending.data[0] = '\0';
    if (w->dropped) {
        int dropped = w->dropped;
        w->dropped = 0;
        return sdt_set_error(error, "%s: %d scalar(s) were dropped (out of memory)", w->path, dropped);
    }
    return 0;
}

int sdt_tb_close(sdt_tb_writer *w, char **error)
{
    if (!w)
        return 0;
    int rc = sdt_tb_flush(w, error);
    if (fsync(w->fd) != 0 && rc == 0)
        rc = sdt_set_error(error, "cannot sync %s: %s", w->path, strerror(errno));
    if (close(w->fd) != 0 && rc == 0)
        rc = sdt_set_error(error, "cannot close %s: %s", w->path, strerror(errno));
    sdt_buf_free(&w->pending);
    free(w->path);
    free(w);
    return rc;
}
