/* PNG writing through libpng: the file is encoded into memory (png_set_write_fn) and then handed to
 * sdt_atomic_write, so a reader never sees half an image and a failed encode leaves nothing on disk.
 * libpng reports errors by longjmp, so everything allocated around png_write_* is reachable from the
 * context struct and freed on that path too. */
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "sdtune/atomic_file.h"
#include "sdtune/strutil.h"

/* The largest side written: the same bound the decoder accepts keeps every written image readable. */
#define PNG_WRITE_MAX_SIDE 65535

typedef struct png_write_ctx {
    sdt_buf out; /* the encoded file */
    char message[200];
    png_bytep *rows; /* [height] pointers into the caller's pixels */
    png_textp text;  /* [n_text] */
} png_write_ctx;

static void png_append_memory(png_structp png, png_bytep data, size_t n)
{
    png_write_ctx *ctx = png_get_io_ptr(png);
    sdt_buf_append(&ctx->out, (const char *)data, n);
    if (ctx->out.failed) {
        snprintf(ctx->message, sizeof ctx->message, "out of memory");
        png_longjmp(png, 1);
    }
}

static void png_flush_nothing(png_structp png) { (void)png; }

static void png_write_on_error(png_structp png, png_const_charp msg)
{
    png_write_ctx *ctx = png_get_error_ptr(png);
    if (!ctx->message[0])
        snprintf(ctx->message, sizeof ctx->message, "PNG encoding failed (%s)", msg);
    png_longjmp(png, 1);
}

static void png_write_on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

/* A PNG keyword: 1-79 printable Latin-1 bytes (32-126, 161-255), no leading, trailing or double space. */
static int png_keyword_valid(const char *key)
{
    size_t n = strlen(key);
    if (n < 1 || n > 79 || key[0] == ' ' || key[n - 1] == ' ')
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)key[i];
        if (c < 32 || (c > 126 && c < 161) || (c == ' ' && key[i + 1] == ' '))
            return 0;
    }
    return 1;
}

static int is_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return 0;
    return 1;
}

static int png_write_check_args(const char *path, const uint8_t *pixels, int width, int height, int channels,
                                const char *const *text_kv, size_t n_text, char **error)
{
    if (!pixels || width < 1 || height < 1 || width > PNG_WRITE_MAX_SIDE || height > PNG_WRITE_MAX_SIDE)
        return sdt_set_error(error, "%s: cannot write a %d x %d PNG", path, width, height);
    if (channels != 3 && channels != 4)
        return sdt_set_error(error, "%s: a PNG is written from 3 (RGB) or 4 (RGBA) channels, not %d", path,
                             channels);
    for (size_t i = 0; i < n_text; i++) {
        const char *key = text_kv[2 * i], *value = text_kv[2 * i + 1];
        if (!key || !png_keyword_valid(key))
            return sdt_set_error(error, "%s: PNG text key \"%s\" is not 1-79 printable Latin-1 characters",
                                 path, key ? key : "(null)");
        if (!value)
            return sdt_set_error(error, "%s: PNG text \"%s\" has no value", path, key);
        if (!is_ascii(value) && sdt_utf8_invalid_at(value, strlen(value)) != strlen(value))
            return sdt_set_error(error, "%s: PNG text \"%s\" is not valid UTF-8", path, key);
    }
    return 0;
}

int sdt_png_write(const char *path, const uint8_t *pixels, int width, int height, int channels,
                  const char *const *text_kv, size_t n_text, char **error)
{
    if (png_write_check_args(path, pixels, width, height, channels, text_kv, n_text, error) != 0)
        return -1;
    png_write_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return sdt_set_error(error, "%s: out of memory", path);
    sdt_buf_init(&ctx->out);
    ctx->rows = malloc(sizeof *ctx->rows * (size_t)height);
    ctx->text = n_text ? calloc(n_text, sizeof *ctx->text) : NULL;
    png_structp png =
        png_create_write_struct(PNG_LIBPNG_VER_STRING, ctx, png_write_on_error, png_write_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info || !ctx->rows || (n_text && !ctx->text)) {
        png_destroy_write_struct(png ? &png : NULL, NULL);
        free(ctx->rows);
        free(ctx->text);
        free(ctx);
        return sdt_set_error(error, "%s: out of memory", path);
    }
    if (setjmp(png_jmpbuf(png))) {
        /* Only ctx (set before setjmp) is used here: locals changed after setjmp are indeterminate. */
        png_destroy_write_struct(&png, &info);
        sdt_set_error(error, "%s: %s", path, ctx->message[0] ? ctx->message : "PNG encoding failed");
        sdt_buf_free(&ctx->out);
        free(ctx->rows);
        free(ctx->text);
        free(ctx);
        return -1;
    }
    png_set_write_fn(png, ctx, png_append_memory, png_flush_nothing);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8,
                 channels == 4 ? PNG_COLOR_TYPE_RGB_ALPHA : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    for (size_t i = 0; i < n_text; i++) {
        png_textp t = &ctx->text[i];
        t->key = (png_charp)text_kv[2 * i];
        t->text = (png_charp)text_kv[2 * i + 1];
        t->text_length = strlen(t->text);
        /* ASCII is the same in Latin-1 and UTF-8 and fits tEXt; anything else is UTF-8 and needs iTXt
         * (tEXt would be read back as Latin-1 and garble it). */
        if (is_ascii(t->text)) {
            t->compression = PNG_TEXT_COMPRESSION_NONE;
        } else {
            t->compression = PNG_ITXT_COMPRESSION_NONE;
            t->itxt_length = t->text_length;
            t->lang = (png_charp) "";
            t->lang_key = (png_charp) "";
        }
    }
    if (n_text)
        png_set_text(png, info, ctx->text, (int)n_text);
    png_write_info(png, info);
    size_t rowbytes = (size_t)width * (size_t)channels;
    for (int y = 0; y < height; y++)
        ctx->rows[y] = (png_bytep)pixels + (size_t)y * rowbytes;
    png_write_image(png, ctx->rows);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    /* sdt_atomic_write's messages name the folder when the temporary file cannot be made; the reader of
     * the error wants the image's own name too. */
    int rc = sdt_atomic_write(path, ctx->out.data, ctx->out.len, error);
    if (rc != 0 && error && *error && !strstr(*error, path)) {
        char *why = *error;
        *error = NULL;
        sdt_set_error(error, "%s: %s", path, why);
        free(why);
    }
    sdt_buf_free(&ctx->out);
    free(ctx->rows);
    free(ctx->text);
    free(ctx);
    return rc;
}
