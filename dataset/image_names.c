/* Names of image formats and resize filters, as kohya spells them. */
#include <string.h>
#include <strings.h>

#include "image.h"

const char *sdt_image_format_name(sdt_image_format format)
{
    switch (format) {
    case SDT_IMAGE_PNG: return "png";
    case SDT_IMAGE_JPEG: return "jpeg";
    case SDT_IMAGE_WEBP: return "webp";
    case SDT_IMAGE_UNKNOWN: break;
    }
    return "unknown";
}

int sdt_resize_filter_parse(const char *name, sdt_resize_filter *out)
{
    static const struct {
        const char *name;
        sdt_resize_filter filter;
    } names[] = {
        {"area", SDT_RESIZE_AREA},       {"lanczos", SDT_RESIZE_LANCZOS}, {"bilinear", SDT_RESIZE_BILINEAR},
        {"linear", SDT_RESIZE_BILINEAR}, {"bicubic", SDT_RESIZE_BICUBIC}, {"cubic", SDT_RESIZE_BICUBIC},
        {"nearest", SDT_RESIZE_NEAREST},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcasecmp(name, names[i].name) == 0) {
            *out = names[i].filter;
            return 0;
        }
    }
    return -1;
}
