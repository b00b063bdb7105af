/* Dataset scan speed: writes N small PNGs (default 10,000; half with a caption file) into one
 * `<repeats>_<class>` folder, then times sdt_dataset_scan over it, cold-ish (just written, so in the page
 * cache) and warm. The scan reads image headers and captions only; docs/perf.md records the numbers.
 * usage: bench_dataset_scan [N] */
#define _DEFAULT_SOURCE

#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "dataset.h"
#include "dataset/test_images.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 10000;
    char root[] = "/tmp/sdtune-bench-scan-XXXXXX";
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/10_bench subject", root);
    mkdir(dir, 0755);
    double t0 = now();
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/img%05d.png", dir, i);
        if (test_write_gray_png(path, 32 + (i % 4) * 16, 32 + ((i / 4) % 4) * 16) != 0) {
            fprintf(stderr, "cannot write %s\n", path);
            return 1;
        }
        if (i % 2 == 0) {
            snprintf(path, sizeof path, "%s/img%05d.txt", dir, i);
            FILE *f = fopen(path, "w");
            if (f) {
                fprintf(f, "bench subject, tag%d, another tag\n", i);
                fclose(f);
            }
        }
    }
    printf("wrote %d images in %.2f s\n", n, now() - t0);
    char text[700];
    snprintf(text, sizeof text, "[folders]\ntrain_data_dir = \"%s\"\n", root);
    sdt_diag_list diags;
    sdt_diag_list_init(&diags);
    sdt_config *cfg = sdt_config_load_text(text, strlen(text), "bench.toml", &diags);
    int status = 0;
    for (int run = 0; run < 3 && cfg; run++) {
        sdt_diag_list_clear(&diags);
        double t = now();
        sdt_dataset *ds = sdt_dataset_scan(cfg, NULL, &diags);
        double dt = now() - t;
        size_t images = ds ? sdt_dataset_image_count(ds, false) : 0;
        printf("scan %d: %zu images in %.3f s (%.1f us per image)\n", run + 1, images, dt,
               images ? dt * 1e6 / (double)images : 0.0);
        if (images != (size_t)n)
            status = 1;
        sdt_dataset_free(ds);
    }
    sdt_config_free(cfg);
    sdt_diag_list_free(&diags);
    snprintf(text, sizeof text, "rm -rf '%s'", root);
    if (system(text) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    return status;
}
