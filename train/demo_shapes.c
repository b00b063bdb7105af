/* The demo's dataset: coloured circles, squares, triangles and stripes on plain backgrounds, drawn pixel by
 * pixel, with captions that name the shape and both colours ("a red circle on a blue background"). The
 * colour and shape words are what a LoRA can visibly learn in a minute on a tiny model. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "demo.h"
#include "demo_internal.h"
#include "image.h"
#include "sdtune/atomic_file.h"
#include "sdtune/strutil.h"

typedef struct demo_colour {
    const char *name;
    uint8_t rgb[3];
} demo_colour;

static const demo_colour colours[] = {
    {"red", {220, 40, 40}},     {"green", {40, 170, 60}},   {"blue", {40, 70, 220}},
    {"yellow", {235, 210, 40}}, {"purple", {140, 60, 180}}, {"white", {240, 240, 240}},
    {"black", {20, 20, 20}},    {"orange", {240, 140, 30}},
};
#define COLOUR_COUNT (sizeof colours / sizeof colours[0])

enum { SHAPE_CIRCLE, SHAPE_SQUARE, SHAPE_TRIANGLE, SHAPE_STRIPES, SHAPE_COUNT };
static const char *const shape_names[SHAPE_COUNT] = {"circle", "square", "triangle", "stripes"};

/* Whether pixel (x, y) of a side x side image belongs to the shape centred at (cx, cy) with radius r. */
static int inside(int shape, int x, int y, int cx, int cy, int r)
{
    int dx = x - cx, dy = y - cy;
    switch (shape) {
    case SHAPE_CIRCLE: return dx * dx + dy * dy <= r * r;
    case SHAPE_SQUARE: return abs(dx) <= r * 4 / 5 && abs(dy) <= r * 4 / 5;
    case SHAPE_TRIANGLE: /* apex up: the half-width grows from 0 at the top to r at the bottom */
        return dy >= -r && dy <= r && 2 * abs(dx) <= dy + r;
    default: /* stripes: horizontal bands over the whole image */ return (y / 8) % 2 == 0;
    }
}

/* Image i: its shape, colours and a position that moves a little from image to image. */
static void describe(int i, int *shape, int *fg, int *bg, int *cx, int *cy, int *r)
{
    int side = SDT_DEMO_RESOLUTION;
    *shape = i % SHAPE_COUNT;
    *fg = (i * 5) % (int)COLOUR_COUNT;
    *bg = (*fg + 1 + (i % 7)) % (int)COLOUR_COUNT; /* never the shape's own colour */
    *r = side / 4 + (i % 3) * side / 16;
    *cx = side / 2 + ((i * 7) % 5 - 2) * side / 32;
    *cy = side / 2 + ((i * 11) % 5 - 2) * side / 32;
}

char *sdt_demo_caption(int i)
{
    int shape, fg, bg, cx, cy, r;
    describe(i, &shape, &fg, &bg, &cx, &cy, &r);
    if (shape == SHAPE_STRIPES)
        return sdt_format("%s and %s stripes", colours[fg].name, colours[bg].name);
    const char *fg_name = colours[fg].name, *bg_name = colours[bg].name;
    return sdt_format("%s %s %s on %s %s background", strchr("aeiou", fg_name[0]) ? "an" : "a", fg_name,
                      shape_names[shape], strchr("aeiou", bg_name[0]) ? "an" : "a", bg_name);
}

int sdt_demo_write_shapes(const char *dir, char **error)
{
    int side = SDT_DEMO_RESOLUTION;
    uint8_t *pixels = malloc((size_t)side * side * 3); /* [side, side, 3] RGB */
    if (!pixels)
        return sdt_set_error(error, "out of memory");
    int rc = 0;
    for (int i = 0; i < SDT_DEMO_IMAGE_COUNT && rc == 0; i++) {
        int shape, fg, bg, cx, cy, r;
        describe(i, &shape, &fg, &bg, &cx, &cy, &r);
        for (int y = 0; y < side; y++)
            for (int x = 0; x < side; x++)
                memcpy(pixels + ((size_t)y * side + x) * 3,
                       inside(shape, x, y, cx, cy, r) ? colours[fg].rgb : colours[bg].rgb, 3);
        char *png = sdt_format("%s/shape_%02d.png", dir, i);
        char *txt = sdt_format("%s/shape_%02d.txt", dir, i);
        char *caption = sdt_demo_caption(i);
        if (!png || !txt || !caption)
            rc = sdt_set_error(error, "out of memory");
        if (rc == 0)
            rc = sdt_png_write(png, pixels, side, side, 3, NULL, 0, error);
        if (rc == 0)
            rc = sdt_atomic_write(txt, caption, strlen(caption), error);
        free(png);
        free(txt);
        free(caption);
    }
    free(pixels);
    return rc;
}

char *sdt_demo_sample_prompts(void)
{
    /* kohya's prompt file: one prompt per line, options after "--" (w/h size, d seed, s steps). Prompts
     * the data has and one it does not, to see the LoRA generalise the words. */
    static const char *const prompts[] = {
        "a red circle on a blue background",
        "a yellow triangle on a black background",
        "a white square on a green background",
    };
    sdt_buf out;
    sdt_buf_init(&out);
    sdt_buf_puts(&out, "# The demo's sample prompts (kohya's format: --w/--h size, --d seed, --s steps).\n");
    for (size_t i = 0; i < sizeof prompts / sizeof prompts[0]; i++)
        sdt_buf_printf(&out, "%s --w %d --h %d --d %zu --s 12\n", prompts[i], SDT_DEMO_RESOLUTION,
                       SDT_DEMO_RESOLUTION, 1 + i);
    return sdt_buf_take(&out);
}

void sdt_demo_remove_tree(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char *child = sdt_format("%s/%s", path, e->d_name);
            struct stat st;
            if (child && lstat(child, &st) == 0 && S_ISDIR(st.st_mode))
                sdt_demo_remove_tree(child);
            else if (child)
                unlink(child);
            free(child);
        }
        closedir(d);
    }
    rmdir(path);
}
