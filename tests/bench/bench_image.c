/* Benchmark: the image layer of the data pipeline on a synthetic dataset.
 *
 *     bench_image [--count N] [--threads T] [--dir FOLDER]   (defaults 200, 2, $TMPDIR or /tmp)
 *
 * Writes N images of mixed formats (PNG, JPEG quality 90, lossy WebP quality 90, in turn) with sides drawn
 * from 768..1536 (a smooth picture plus noise, so the files are photo-like in size) into a fresh folder, then
 * measures
 *   - the probe rate (files/s, one thread: a dataset scan), repeated over the files for at least a second;
 *   - decode + resize (SDT_RESIZE_AUTO, short side to 512) + centre crop to 512 x 512, the work of loading
 *     one sample into a 512 bucket, on T threads each taking the next file (images/s), with the time split
 *     per format and per step.
 * The files are read from the page cache (just written): this measures the library, not the disk. The folder
 * is removed at the end. Results: docs/perf.md. */
#include <png.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jpeglib.h>
#include <webp/encode.h>

#include "dataset/test_images.h"
#include "image.h"
#include "sdtune/strutil.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t next(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

/* rgb [h, w, 3]: gradients and a few soft blobs, plus +-8 of noise. */
static void paint(uint8_t *rgb, int w, int h, uint64_t seed)
{
    uint64_t s = seed;
    int cx = (int)(next(&s) % (uint64_t)w), cy = (int)(next(&s) % (uint64_t)h);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int d = abs(x - cx) + abs(y - cy);
            int n = (int)(next(&s) % 17) - 8;
            int v[3] = {x * 255 / w + n, y * 255 / h + n, (d * 3 / 4) % 256 + n};
            for (int c = 0; c < 3; c++)
                rgb[((size_t)y * w + x) * 3 + c] = (uint8_t)(v[c] < 0 ? 0 : v[c] > 255 ? 255 : v[c]);
        }
}

static int write_one(const char *path, int kind, const uint8_t *rgb, int w, int h)
{
    if (kind == 0)
        return test_write_png(
            path,
            &(png_spec){
                .width = w, .height = h, .color_type = PNG_COLOR_TYPE_RGB, .bit_depth = 8, .rows = rgb});
    if (kind == 1)
        return test_write_jpeg(
            path,
            &(jpeg_spec){
                .width = w, .height = h, .components = 3, .in_space = JCS_RGB, .quality = 90, .pixels = rgb});
    return test_write_webp(path, rgb, w, h, 0, 0, 90, NULL, 0);
}

typedef struct shared {
    char **paths;
    int count;
    atomic_int next;
    atomic_int failures;
} shared;

typedef struct worker {
    shared *sh;
    double decode_s[3], resize_s[3];
    int done[3];
} worker;

typedef struct writer_job {
    shared *sh;
    int (*sizes)[2]; /* [count] width, height */
} writer_job;

/* Writes images until none are left; the kind is the index mod 3, as the file names say. */
static void *write_some(void *arg)
{
    writer_job *job = arg;
    uint8_t *rgb = malloc((size_t)1536 * 1536 * 3);
    for (;;) {
        int i = atomic_fetch_add(&job->sh->next, 1);
        if (i >= job->sh->count || !rgb)
            break;
        int w = job->sizes[i][0], h = job->sizes[i][1];
        paint(rgb, w, h, (uint64_t)i + 1);
        if (write_one(job->sh->paths[i], i % 3, rgb, w, h) != 0)
            atomic_fetch_add(&job->sh->failures, 1);
    }
    if (!rgb)
        atomic_fetch_add(&job->sh->failures, 1);
    free(rgb);
    return NULL;
}

static int kind_of(const char *path)
{
    const char *dot = strrchr(path, '.');
    return strcmp(dot, ".png") == 0 ? 0 : strcmp(dot, ".jpg") == 0 ? 1 : 2;
}

static void *work(void *arg)
{
    worker *w = arg;
    for (;;) {
        int i = atomic_fetch_add(&w->sh->next, 1);
        if (i >= w->sh->count)
            break;
        const char *path = w->sh->paths[i];
        int k = kind_of(path);
        char *error = NULL;
        sdt_image img, scaled, crop;
        double t0 = now();
        if (sdt_image_decode_file(path, 0, &img, &error) != 0) {
            fprintf(stderr, "%s\n", error);
            free(error);
            atomic_fetch_add(&w->sh->failures, 1);
            continue;
        }
        double t1 = now();
        /* short side to 512, then the centre 512 x 512 */
        int sw, sh;
        if (img.width < img.height) {
            sw = 512;
            sh = (int)((double)img.height * 512 / img.width + 0.5);
        } else {
            sh = 512;
            sw = (int)((double)img.width * 512 / img.height + 0.5);
        }
        if (sdt_image_resize(&img, sw, sh, SDT_RESIZE_AUTO, &scaled, &error) != 0 ||
            sdt_image_crop(&scaled, (sw - 512) / 2, (sh - 512) / 2, 512, 512, 0, &crop, &error) != 0) {
            fprintf(stderr, "%s: %s\n", path, error);
            free(error);
            atomic_fetch_add(&w->sh->failures, 1);
        }
        double t2 = now();
        w->decode_s[k] += t1 - t0;
        w->resize_s[k] += t2 - t1;
        w->done[k]++;
        sdt_image_free(&img);
        sdt_image_free(&scaled);
        sdt_image_free(&crop);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int count = 200, threads = 2;
    const char *base = getenv("TMPDIR");
    base = base && base[0] ? base : "/tmp";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--count") == 0 && i + 1 < argc)
            count = atoi(argv[++i]);
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            base = argv[++i];
        else {
            fprintf(stderr, "usage: bench_image [--count N] [--threads T] [--dir FOLDER]\n");
            return 2;
        }
    }
    if (count < 1 || threads < 1 || threads > 256) {
        fprintf(stderr, "bench_image: --count and --threads must be positive\n");
        return 2;
    }
    char *dir = sdt_format("%s/sdt-bench-image-XXXXXX", base);
    if (!dir || !mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    static const char *ext[3] = {"png", "jpg", "webp"};
    char **paths = calloc((size_t)count, sizeof *paths);
    int(*sizes)[2] = calloc((size_t)count, sizeof *sizes);
    uint64_t seed = 42, bytes[3] = {0};
    int written[3] = {0};
    for (int i = 0; i < count; i++) {
        sizes[i][0] = 768 + (int)(next(&seed) % 769);
        sizes[i][1] = 768 + (int)(next(&seed) % 769);
        paths[i] = sdt_format("%s/img%04d.%s", dir, i, ext[i % 3]);
    }
    shared sh = {paths, count, 0, 0};
    writer_job job = {&sh, sizes};
    pthread_t *tids = calloc((size_t)threads, sizeof *tids);
    double t0 = now();
    for (int i = 0; i < threads; i++)
        pthread_create(&tids[i], NULL, write_some, &job);
    for (int i = 0; i < threads; i++)
        pthread_join(tids[i], NULL);
    if (atomic_load(&sh.failures)) {
        fprintf(stderr, "bench_image: cannot write the images to %s\n", dir);
        return 1;
    }
    for (int i = 0; i < count; i++) {
        FILE *f = fopen(paths[i], "rb");
        if (f) {
            fseek(f, 0, SEEK_END);
            bytes[i % 3] += (uint64_t)ftell(f);
            fclose(f);
        }
        written[i % 3]++;
    }
    free(sizes);
    printf("wrote %d images (768..1536 px a side) in %.1f s to %s\n", count, now() - t0, dir);

    /* probe: passes over all files until a second has gone by */
    int probed = 0, failures = 0;
    t0 = now();
    do {
        for (int i = 0; i < count; i++) {
            sdt_image_info info;
            char *error = NULL;
            if (sdt_image_probe_file(paths[i], &info, &error) != 0) {
                fprintf(stderr, "%s\n", error);
                free(error);
                failures++;
            }
            probed++;
        }
    } while (now() - t0 < 1.0);
    double probe_s = now() - t0;
    printf("probe: %d files in %.3f s = %.0f files/s (10,000 files: %.2f s)\n", probed, probe_s,
           probed / probe_s, 10000 * probe_s / probed);

    atomic_store(&sh.next, 0);
    worker *ws = calloc((size_t)threads, sizeof *ws);
    t0 = now();
    for (int i = 0; i < threads; i++) {
        ws[i].sh = &sh;
        pthread_create(&tids[i], NULL, work, &ws[i]);
    }
    for (int i = 0; i < threads; i++)
        pthread_join(tids[i], NULL);
    double load_s = now() - t0;
    failures += atomic_load(&sh.failures);
    printf("decode + resize + crop to 512x512 on %d threads: %d images in %.2f s = %.1f images/s\n", threads,
           count, load_s, count / load_s);
    printf(
        "| format | files | mean file size | decode (ms/image, one thread) | resize + crop (ms/image) |\n");
    printf("|---|---|---|---|---|\n");
    static const char *names[3] = {"PNG", "JPEG q90", "WebP lossy q90"};
    for (int k = 0; k < 3; k++) {
        double d = 0, r = 0;
        int n = 0;
        for (int i = 0; i < threads; i++) {
            d += ws[i].decode_s[k];
            r += ws[i].resize_s[k];
            n += ws[i].done[k];
        }
        if (n)
            printf("| %s | %d | %.0f KB | %.1f | %.1f |\n", names[k], n, bytes[k] / 1024.0 / written[k],
                   1000 * d / n, 1000 * r / n);
    }
    for (int i = 0; i < count; i++) {
        unlink(paths[i]);
        free(paths[i]);
    }
    rmdir(dir);
    free(dir);
    free(paths);
    free(ws);
    free(tids);
    if (failures) {
        fprintf(stderr, "bench_image: %d failures\n", failures);
        return 1;
    }
    return 0;
}
