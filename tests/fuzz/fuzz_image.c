/* libFuzzer target: any bytes given to the image probe and decoder (alpha kept and composited) give an
 * error message that names the file, or an image whose size agrees with the probe; never a crash, a leak,
 * an out-of-bounds read or undefined behaviour. Images over 4 megapixels are refused by the decoder's
 * limit so that a tiny file claiming a huge size costs neither memory nor time. A decoded image also goes
 * through a resize and a flipped crop. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "image_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_error(char *error)
{
    if (!error || strncmp(error, "fuzz.img: ", 10) != 0)
        abort(); /* a failure always explains itself and names the file */
    free(error);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sdt_image_info info;
    char *error = NULL;
    int probed = sdt_image_probe_memory(data, size, "fuzz.img", &info, &error) == 0;
    if (!probed)
        check_error(error);
    else if (error || info.width <= 0 || info.height <= 0 || info.orientation < 1 || info.orientation > 8)
        abort();
    for (int keep_alpha = 0; keep_alpha < 2; keep_alpha++) {
        sdt_image img;
        error = NULL;
        if (sdt_image_decode_memory_limited(data, size, "fuzz.img", keep_alpha, (uint64_t)1 << 22, &img,
                                            &error) != 0) {
            if (img.rgb || img.alpha)
                abort();
            check_error(error);
            continue;
        }
        /* decode succeeds only where the probe does, with the same upright size */
        if (error || !probed || img.width != info.width || img.height != info.height || !img.rgb ||
            (keep_alpha && !img.alpha) || (!keep_alpha && img.alpha))
            abort();
        unsigned sum = 0;
        size_t n = (size_t)img.width * img.height;
        for (size_t i = 0; i < n * 3; i++) /* every byte, so MSan/ASan see uninitialised or stray memory */
            sum += img.rgb[i];
        for (size_t i = 0; keep_alpha && i < n; i++)
            sum += img.alpha[i];
        volatile unsigned sink = sum;
        (void)sink;
        if (n <= 4096) {
            sdt_image small, crop;
            int w = img.width / 2 + 1, h = img.height * 2 / 3 + 1;
            if (sdt_image_resize(&img, w, h, (sdt_resize_filter)(size % 6), &small, &error) != 0)
                abort();
            if (sdt_image_crop(&small, w / 3, 0, w - w / 3, h, 1, &crop, &error) != 0)
                abort();
            sdt_image_free(&small);
            sdt_image_free(&crop);
        }
        sdt_image_free(&img);
    }
    return 0;
}
