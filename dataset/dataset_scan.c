/* Dataset scanning: DreamBooth folder mode (`<repeats>_<class tokens>` folders), fine-tune metadata
 * (in_json / metadata_file, .json or .jsonl), and the bookkeeping every source shares. The kohya
 * behaviours followed here are those of sd-scripts' library/train_util.py (DreamBoothDataset,
 * FineTuningDataset); see docs/dataset.md. */
#define _DEFAULT_SOURCE

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataset.h"
#include "image.h"

/* Captions are a line of tags; a "caption" this large is some other file and is not read whole. */
#define CAPTION_MAX_BYTES (4 * 1024 * 1024)

const char *sdt_caption_source_name(sdt_caption_source source)
{
    switch (source) {
    case SDT_CAPTION_FILE: return "file";
    case SDT_CAPTION_CLASS_TOKENS: return "class_tokens";
    case SDT_CAPTION_METADATA: return "metadata";
    case SDT_CAPTION_NONE: break;
    }
    return "none";
}

const char *sdt_skip_reason_name(sdt_skip_reason reason)
{
    switch (reason) {
    case SDT_SKIP_CORRUPT_IMAGE: return "corrupt image";
    case SDT_SKIP_EMPTY_FILE: return "empty file";
    case SDT_SKIP_NOT_IMAGE: return "not an image";
    case SDT_SKIP_UNSUPPORTED_FORMAT: return "unsupported image format";
    case SDT_SKIP_UNREADABLE: return "unreadable";
    case SDT_SKIP_CAPTION_NOT_UTF8: return "caption not UTF-8";
    case SDT_SKIP_CAPTION_EMPTY: return "empty caption file";
    case SDT_SKIP_IMAGE_NOT_FOUND: return "image not found";
    case SDT_SKIP_REASON_COUNT: break;
    }
    return "?";
}

/* Plural of a reason name for the summary; only the ones that read wrong with a plain "s" differ. */
static const char *skip_reason_plural(sdt_skip_reason reason)
{
    switch (reason) {
    case SDT_SKIP_CORRUPT_IMAGE: return "corrupt images";
    case SDT_SKIP_EMPTY_FILE: return "empty files";
    case SDT_SKIP_NOT_IMAGE: return "not images";
    case SDT_SKIP_UNSUPPORTED_FORMAT: return "unsupported image formats";
    case SDT_SKIP_UNREADABLE: return "unreadable";
    case SDT_SKIP_CAPTION_NOT_UTF8: return "captions not UTF-8";
    case SDT_SKIP_CAPTION_EMPTY: return "empty caption files";
    case SDT_SKIP_IMAGE_NOT_FOUND: return "images not found";
    case SDT_SKIP_REASON_COUNT: break;
    }
    return "?";
}

void sdt_ds_skip(sdt_dataset *ds, sdt_skip_reason reason, const char *file,
                 const sdt_dataset_options *options, sdt_diag_list *diags, const char *fmt, ...)
{
    ds->skipped[reason]++;
    va_list args;
    va_start(args, fmt);
    char *message = sdt_vformat(fmt, args);
    va_end(args);
    sdt_diag_add(diags, options && options->strict ? SDT_SEV_ERROR : SDT_SEV_WARNING, file, 0, 0, -1,
                 "skipped (%s): %s", sdt_skip_reason_name(reason), message ? message : "out of memory");
    free(message);
}

size_t sdt_dataset_skipped_total(const sdt_dataset *ds)
{
    size_t n = 0;
    for (int r = 0; r < SDT_SKIP_REASON_COUNT; r++)
        n += ds->skipped[r];
    return n;
}

void sdt_dataset_skip_summary(const sdt_dataset *ds, sdt_buf *out)
{
    size_t total = sdt_dataset_skipped_total(ds);
    if (total == 0)
        return;
    sdt_buf_printf(out, "skipped %zu file%s:", total, total == 1 ? "" : "s");
    const char *sep = " ";
    for (int r = 0; r < SDT_SKIP_REASON_COUNT; r++) {
        if (!ds->skipped[r])
            continue;
        sdt_buf_printf(out, "%s%zu %s", sep, ds->skipped[r],
                       ds->skipped[r] == 1 ? sdt_skip_reason_name((sdt_skip_reason)r)
                                           : skip_reason_plural((sdt_skip_reason)r));
        sep = ", ";
    }
}

size_t sdt_dataset_image_count(const sdt_dataset *ds, bool reg)
{
    size_t n = 0;
    for (size_t d = 0; d < ds->dataset_count; d++)
        for (size_t s = 0; s < ds->datasets[d].subset_count; s++)
            if (ds->datasets[d].subsets[s].is_reg == reg)
                n += ds->datasets[d].subsets[s].sample_count;
    return n;
}

size_t sdt_dataset_images_with_repeats(const sdt_dataset *ds, bool reg)
{
    size_t n = 0;
    for (size_t d = 0; d < ds->dataset_count; d++)
        for (size_t s = 0; s < ds->datasets[d].subset_count; s++) {
            const sdt_ds_subset *sub = &ds->datasets[d].subsets[s];
            if (sub->is_reg == reg)
                n += sub->sample_count * (size_t)sub->num_repeats;
        }
    return n;
}

static void free_subset(sdt_ds_subset *sub)
{
    for (size_t i = 0; i < sub->sample_count; i++) {
        free(sub->samples[i].path);
        free(sub->samples[i].caption);
    }
    free(sub->samples);
    free(sub->effective_repeats);
    free(sub->image_dir);
    free(sub->metadata_file);
    free(sub->class_tokens);
    free(sub->caption_extension);
    free(sub->keep_tokens_separator);
    free(sub->secondary_separator);
    free(sub->caption_separator);
    free(sub->caption_prefix);
    free(sub->caption_suffix);
    free(sub->resize_interpolation);
}

void sdt_dataset_free(sdt_dataset *ds)
{
    if (!ds)
        return;
    for (size_t d = 0; d < ds->dataset_count; d++) {
        sdt_ds_dataset *set = &ds->datasets[d];
        for (size_t s = 0; s < set->subset_count; s++)
            free_subset(&set->subsets[s]);
        free(set->subsets);
        free(set->resize_interpolation);
    }
    free(ds->datasets);
    free(ds->config_file);
    free(ds);
}

/* Grows *items (of size elem) to hold one more; -1 when out of memory. */
static int grow(void **items, size_t *capacity, size_t count, size_t elem)
{
    if (count < *capacity)
        return 0;
    size_t cap = *capacity ? *capacity * 2 : 8;
    void *p = realloc(*items, cap * elem);
    if (!p)
        return -1;
    memset((char *)p + count * elem, 0, (cap - count) * elem);
    *items = p;
    *capacity = cap;
    return 0;
}

sdt_ds_dataset *sdt_ds_add_dataset(sdt_dataset *ds, const sdt_config *cfg)
{
    if (grow((void **)&ds->datasets, &ds->dataset_capacity, ds->dataset_count, sizeof *ds->datasets) != 0)
        return NULL;
    sdt_ds_dataset *d = &ds->datasets[ds->dataset_count];
    memset(d, 0, sizeof *d);
    d->batch_size = (int)sdt_config_int(cfg, "train_batch_size");
    const sdt_value *res = sdt_config_get(cfg, sdt_schema_find("resolution"));
    d->resolution[0] = res->count > 0 ? (int)res->items[0].i : 512;
    d->resolution[1] = res->count > 1 ? (int)res->items[1].i : d->resolution[0];
    d->enable_bucket = sdt_config_bool(cfg, "enable_bucket");
    d->min_bucket_reso = (int)sdt_config_int(cfg, "min_bucket_reso");
    d->max_bucket_reso = (int)sdt_config_int(cfg, "max_bucket_reso");
    d->bucket_reso_steps = (int)sdt_config_int(cfg, "bucket_reso_steps");
    d->bucket_no_upscale = sdt_config_bool(cfg, "bucket_no_upscale");
    d->network_multiplier = 1.0;
    d->validation_split = sdt_config_float(cfg, "validation_split");
    d->validation_seed = sdt_config_int(cfg, "validation_seed");
    const char *interp = sdt_config_str(cfg, "resize_interpolation");
    d->resize_interpolation = sdt_strdup(strcmp(interp, "auto") == 0 ? "" : interp);
    if (!d->resize_interpolation)
        return NULL;
    ds->dataset_count++;
    return d;
}

sdt_ds_subset *sdt_ds_add_subset(sdt_ds_dataset *d, const sdt_config *cfg)
{
    if (grow((void **)&d->subsets, &d->subset_capacity, d->subset_count, sizeof *d->subsets) != 0)
        return NULL;
    sdt_ds_subset *sub = &d->subsets[d->subset_count];
    memset(sub, 0, sizeof *sub);
    sub->num_repeats = 1;
    sub->alpha_mask = sdt_config_bool(cfg, "alpha_mask");
    sub->cache_info = sdt_config_bool(cfg, "cache_info");
    sub->shuffle_caption = sdt_config_bool(cfg, "shuffle_caption");
    sub->keep_tokens = (int)sdt_config_int(cfg, "keep_tokens");
    sub->enable_wildcard = sdt_config_bool(cfg, "enable_wildcard");
    sub->caption_dropout_rate = sdt_config_float(cfg, "caption_dropout_rate");
    sub->caption_dropout_every_n_epochs = (int)sdt_config_int(cfg, "caption_dropout_every_n_epochs");
    sub->caption_tag_dropout_rate = sdt_config_float(cfg, "caption_tag_dropout_rate");
    sub->token_warmup_min = (int)sdt_config_int(cfg, "token_warmup_min");
    sub->token_warmup_step = sdt_config_float(cfg, "token_warmup_step");
    sub->color_aug = sdt_config_bool(cfg, "color_aug");
    sub->flip_aug = sdt_config_bool(cfg, "flip_aug");
    sub->random_crop = sdt_config_bool(cfg, "random_crop");
    const sdt_value *face = sdt_config_get(cfg, sdt_schema_find("face_crop_aug_range"));
    if (face->count == 2) {
        sub->has_face_crop_aug_range = true;
        sub->face_crop_aug_range[0] = face->items[0].f;
        sub->face_crop_aug_range[1] = face->items[1].f;
    }
    sub->image_dir = sdt_strdup("");
    sub->caption_extension = sdt_strdup(sdt_config_str(cfg, "caption_extension"));
    sub->keep_tokens_separator = sdt_strdup(sdt_config_str(cfg, "keep_tokens_separator"));
    sub->secondary_separator = sdt_strdup(sdt_config_str(cfg, "secondary_separator"));
    sub->caption_separator = sdt_strdup(sdt_config_str(cfg, "caption_separator"));
    sub->caption_prefix = sdt_strdup(sdt_config_str(cfg, "caption_prefix"));
    sub->caption_suffix = sdt_strdup(sdt_config_str(cfg, "caption_suffix"));
    sub->resize_interpolation = sdt_strdup("");
    d->subset_count++; /* counted before the checks so that sdt_dataset_free frees what was allocated */
    if (!sub->image_dir || !sub->caption_extension || !sub->keep_tokens_separator ||
        !sub->secondary_separator || !sub->caption_separator || !sub->caption_prefix ||
        !sub->caption_suffix || !sub->resize_interpolation)
        return NULL;
    return sub;
}

/* ---- files ---- */

/* "~/x" -> "$HOME/x", as every path setting is read; caller frees. */
static char *expand_home(const char *path)
{
    const char *home = getenv("HOME");
    if (path[0] == '~' && (path[1] == '/' || path[1] == '\0') && home)
        return sdt_format("%s%s", home, path + 1);
    return sdt_strdup(path);
}

static char *join_path(const char *dir, const char *name)
{
    size_t n = strlen(dir);
    if (n == 0)
        return sdt_strdup(name);
    return sdt_format("%s%s%s", dir, dir[n - 1] == '/' ? "" : "/", name);
}

/* kohya's image extensions (lower or upper case). BMP is listed so that such files are reported as an
 * unsupported format instead of being silently left out. */
static bool has_image_extension(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name)
        return false;
    static const char *const exts[] = {".png", ".jpg", ".jpeg", ".webp", ".bmp"};
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++)
        if (strcasecmp(dot, exts[i]) == 0)
            return true;
    return false;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

typedef struct name_list {
    char **names;
    size_t count, capacity;
} name_list;

static void name_list_free(name_list *list)
{
    for (size_t i = 0; i < list->count; i++)
        free(list->names[i]);
    free(list->names);
    memset(list, 0, sizeof *list);
}

/* The entries of dir that are folders (want_dirs) or regular files, sorted by name (kohya sorts, and a
 * stable order makes runs repeatable). -1 with errno when dir cannot be opened; -2 when out of memory. */
static int list_dir(const char *dir, bool want_dirs, name_list *out)
{
    DIR *dp = opendir(dir);
    if (!dp)
        return -1;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(dp)) != NULL) {
        if (e->d_name[0] == '.' && (e->d_name[1] == '\0' || (e->d_name[1] == '.' && e->d_name[2] == '\0')))
            continue;
        bool is_dir = e->d_type == DT_DIR, is_file = e->d_type == DT_REG;
        if (e->d_type == DT_UNKNOWN || e->d_type == DT_LNK) {
            /* Only here is a stat needed: file systems without d_type, and links (followed, as Python). */
            char *full = join_path(dir, e->d_name);
            struct stat st;
            if (full && stat(full, &st) == 0) {
                is_dir = S_ISDIR(st.st_mode);
                is_file = S_ISREG(st.st_mode);
            }
            free(full);
        }
        if (want_dirs ? !is_dir : !is_file)
            continue;
        if (grow((void **)&out->names, &out->capacity, out->count, sizeof *out->names) != 0 ||
            !(out->names[out->count] = sdt_strdup(e->d_name))) {
            rc = -2;
            break;
        }
        out->count++;
    }
    closedir(dp);
    if (out->count > 1)
        qsort(out->names, out->count, sizeof *out->names, compare_names);
    return rc;
}

/* Reads a whole small file with one read. 0, or -1 with errno (ENOENT when absent, EFBIG when too large). */
static int read_small_file(const char *path, char **data, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int e = S_ISDIR(st.st_mode) ? EISDIR : errno;
        close(fd);
        errno = e;
        return -1;
    }
    if (st.st_size > CAPTION_MAX_BYTES) {
        close(fd);
        errno = EFBIG;
        return -1;
    }
    size_t size = (size_t)st.st_size;
    char *buf = malloc(size + 1);
    if (!buf) {
        close(fd);
        errno = ENOMEM;
        return -1;
    }
    size_t got = 0;
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    *data = buf;
    *len = got;
    return 0;
}

/* Why an image that failed to probe was skipped: from its size and first bytes. */
static sdt_skip_reason classify_bad_image(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return SDT_SKIP_UNREADABLE;
    unsigned char head[16] = {0};
    ssize_t n = read(fd, head, sizeof head);
    close(fd);
    if (n < 0)
        return SDT_SKIP_UNREADABLE;
    if (n == 0)
        return SDT_SKIP_EMPTY_FILE;
    if ((n >= 4 && memcmp(head, "\x89PNG", 4) == 0) || (n >= 3 && memcmp(head, "\xff\xd8\xff", 3) == 0) ||
        (n >= 12 && memcmp(head, "RIFF", 4) == 0 && memcmp(head + 8, "WEBP", 4) == 0))
        return SDT_SKIP_CORRUPT_IMAGE;
    if (n >= 2 && head[0] == 'B' && head[1] == 'M')
        return SDT_SKIP_UNSUPPORTED_FORMAT;
    return SDT_SKIP_NOT_IMAGE;
}

/* Probes one image; on failure counts the skip and returns -1. */
static int probe_image(sdt_dataset *ds, const char *path, int *width, int *height,
                       const sdt_dataset_options *options, sdt_diag_list *diags)
{
    sdt_image_info info;
    char *error = NULL;
    if (sdt_image_probe_file(path, &info, &error) == 0 && info.width > 0 && info.height > 0) {
        *width = info.width;
        *height = info.height;
        return 0;
    }
    sdt_skip_reason reason = classify_bad_image(path);
    /* The diagnostic names the file already; the probe's message starts with it too. */
    const char *why = error ? error : "no size in the header";
    size_t n = strlen(path);
    if (strncmp(why, path, n) == 0 && why[n] == ':' && why[n + 1] == ' ')
        why += n + 2;
    sdt_ds_skip(ds, reason, path, options, diags, "%s", why);
    free(error);
    return -1;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* Python's str.strip() of [begin, end) for ASCII whitespace. */
static void strip_range(const char **begin, const char **end)
{
    while (*begin < *end && is_space(**begin))
        (*begin)++;
    while (*end > *begin && is_space((*end)[-1]))
        (*end)--;
}

/* kohya's caption text from a caption file's contents: the first line stripped, or with wildcards every
 * non-empty stripped line joined by '\n'. NULL when out of memory. */
static char *caption_from_text(const char *text, size_t len, bool wildcard)
{
    sdt_buf out;
    sdt_buf_init(&out);
    sdt_buf_puts(&out, "");
    const char *p = text, *end = text + len;
    while (p <= end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = nl ? nl : end;
        const char *b = p, *e = line_end;
        strip_range(&b, &e);
        if (!wildcard) {
            sdt_buf_append(&out, b, (size_t)(e - b));
            break;
        }
        if (e > b) {
            if (out.len)
                sdt_buf_puts(&out, "\n");
            sdt_buf_append(&out, b, (size_t)(e - b));
        }
        if (!nl)
            break;
        p = nl + 1;
    }
    return sdt_buf_take(&out);
}

typedef enum caption_result { CAPTION_FOUND, CAPTION_MISSING, CAPTION_BAD } caption_result;

/* The caption of image_path per kohya: `<stem><ext>`, else the stem without a `_cx_cy_w_h` face-crop
 * suffix. A file that is empty, not UTF-8 or unreadable makes the image skipped (kohya stops there). */
static caption_result read_caption(sdt_dataset *ds, const sdt_ds_subset *sub, const char *image_path,
                                   char **caption, const sdt_dataset_options *options, sdt_diag_list *diags)
{
    const char *slash = strrchr(image_path, '/');
    const char *dot = strrchr(image_path, '.');
    size_t stem_len = dot && (!slash || dot > slash) ? (size_t)(dot - image_path) : strlen(image_path);
    size_t stems[2] = {stem_len, stem_len};
    /* The face-crop form: at least five '_'-separated parts in the stem; the last four dropped. */
    const char *name = slash ? slash + 1 : image_path;
    int underscores = 0;
    for (const char *c = name; c < image_path + stem_len; c++)
        if (*c == '_')
            underscores++;
    if (underscores >= 4) {
        size_t n = stem_len;
        for (int k = 0; k < 4; n--)
            if (image_path[n - 1] == '_')
                k++;
        stems[1] = n;
    }
    for (int attempt = 0; attempt < (stems[1] != stems[0] ? 2 : 1); attempt++) {
        char *stem = sdt_strndup(image_path, stems[attempt]);
        char *cap_path = stem ? sdt_format("%s%s", stem, sub->caption_extension) : NULL;
        free(stem);
        if (!cap_path)
            return CAPTION_BAD;
        char *text = NULL;
        size_t len = 0;
        if (read_small_file(cap_path, &text, &len) != 0) {
            int err = errno;
            if (err == ENOENT || err == EISDIR || err == ENOTDIR) {
                free(cap_path);
                continue;
            }
            sdt_ds_skip(ds, SDT_SKIP_UNREADABLE, cap_path, options, diags, "cannot read caption file: %s",
                        strerror(err));
            free(cap_path);
            return CAPTION_BAD;
        }
        const char *body = text;
        size_t body_len = len;
        /* A UTF-8 byte order mark, which Windows editors write, is not part of the caption. */
        if (body_len >= 3 && memcmp(body, "\xEF\xBB\xBF", 3) == 0) {
            body += 3;
            body_len -= 3;
        }
        caption_result result = CAPTION_FOUND;
        if (body_len == 0) {
            sdt_ds_skip(ds, SDT_SKIP_CAPTION_EMPTY, cap_path, options, diags,
                        "the caption file of %s is empty (delete it to use the class tokens)", image_path);
            result = CAPTION_BAD;
        } else {
            size_t bad = sdt_utf8_invalid_at(body, body_len);
            if (bad < body_len) {
                sdt_ds_skip(ds, SDT_SKIP_CAPTION_NOT_UTF8, cap_path, options, diags,
                            "the caption file of %s is not UTF-8 (byte %zu)", image_path,
                            bad + (size_t)(body - text));
                result = CAPTION_BAD;
            } else if (!(*caption = caption_from_text(body, body_len, sub->enable_wildcard))) {
                result = CAPTION_BAD;
            }
        }
        free(text);
        free(cap_path);
        return result;
    }
    return CAPTION_MISSING;
}

static sdt_ds_sample *add_sample(sdt_ds_subset *sub)
{
    if (grow((void **)&sub->samples, &sub->sample_capacity, sub->sample_count, sizeof *sub->samples) != 0)
        return NULL;
    sdt_ds_sample *s = &sub->samples[sub->sample_count];
    memset(s, 0, sizeof *s);
    return s;
}

int sdt_ds_scan_folder_subset(sdt_dataset *ds, sdt_ds_subset *sub, const sdt_dataset_options *options,
                              sdt_diag_list *diags)
{
    char *dir = expand_home(sub->image_dir);
    if (!dir)
        return -1;
    name_list files = {0};
    int rc = list_dir(dir, false, &files);
    if (rc == -1) {
        sdt_ds_skip(ds, SDT_SKIP_UNREADABLE, dir, options, diags, "cannot open image folder: %s",
                    strerror(errno));
        free(dir);
        return 0;
    }
    int status = rc == -2 ? -1 : 0;
    size_t missing_here = 0;
    for (size_t i = 0; i < files.count && status == 0; i++) {
        if (!has_image_extension(files.names[i]))
            continue;
        char *path = join_path(dir, files.names[i]);
        if (!path) {
            status = -1;
            break;
        }
        int w = 0, h = 0;
        if (probe_image(ds, path, &w, &h, options, diags) != 0) {
            free(path);
            continue;
        }
        char *caption = NULL;
        caption_result cr = read_caption(ds, sub, path, &caption, options, diags);
        if (cr == CAPTION_BAD) {
            free(path);
            continue;
        }
        sdt_caption_source source = SDT_CAPTION_FILE;
        if (cr == CAPTION_MISSING) {
            missing_here++;
            source = sub->class_tokens ? SDT_CAPTION_CLASS_TOKENS : SDT_CAPTION_NONE;
            caption = sdt_strdup(sub->class_tokens ? sub->class_tokens : "");
            if (!sub->class_tokens)
                sdt_diag_add(diags, SDT_SEV_WARNING, path, 0, 0, -1,
                             "neither a caption file nor class tokens: the caption is empty");
        }
        sdt_ds_sample *s = caption ? add_sample(sub) : NULL;
        if (!s) {
            free(path);
            free(caption);
            status = -1;
            break;
        }
        s->path = path;
        s->width = w;
        s->height = h;
        s->caption = caption;
        s->caption_source = source;
        sub->sample_count++;
    }
    ds->missing_captions += missing_here;
    name_list_free(&files);
    free(dir);
    return status;
}

/* ---- fine-tune metadata ---- */

static const char *const image_exts[] = {".png", ".jpg", ".jpeg", ".webp", ".bmp",
                                         ".PNG", ".JPG", ".JPEG", ".WEBP", ".BMP"};

/* The image a metadata key names: the key itself when it exists, else image_dir/key, else
 * image_dir/key + each image extension (kohya's glob). NULL when none exists or out of memory. */
static char *resolve_image(const char *image_dir, const char *key)
{
    if (key[0] == '/' && access(key, F_OK) == 0)
        return sdt_strdup(key);
    if (key[0] != '/' && !image_dir[0] && access(key, F_OK) == 0)
        return sdt_strdup(key);
    char *base = join_path(image_dir, key);
    if (!base)
        return NULL;
    if (access(base, F_OK) == 0)
        return base;
    for (size_t i = 0; i < sizeof image_exts / sizeof image_exts[0]; i++) {
        char *p = sdt_format("%s%s", base, image_exts[i]);
        if (p && access(p, F_OK) == 0) {
            free(base);
            return p;
        }
        free(p);
    }
    free(base);
    return NULL;
}

/* caption, then tags after caption_separator (kohya's FineTuningDataset); "" when neither. */
static char *metadata_caption(const sdt_ds_subset *sub, const json_t *entry)
{
    const char *caption = json_string_value(json_object_get(entry, "caption"));
    const char *tags = json_string_value(json_object_get(entry, "tags"));
    if (!caption)
        return sdt_strdup(tags ? tags : "");
    if (tags && tags[0])
        return sdt_format("%s%s%s", caption, sub->caption_separator, tags);
    return sdt_strdup(caption);
}

static int add_metadata_entry(sdt_dataset *ds, sdt_ds_subset *sub, const char *image_dir, const char *key,
                              const json_t *entry, const char *file, const sdt_dataset_options *options,
                              sdt_diag_list *diags)
{
    if (!json_is_object(entry)) {
        sdt_diag_add(diags, SDT_SEV_ERROR, file, 0, 0, -1, "entry '%s' is not an object", key);
        return 0;
    }
    char *path = resolve_image(image_dir, key);
    if (!path) {
        char *shown = join_path(image_dir, key);
        sdt_ds_skip(ds, SDT_SKIP_IMAGE_NOT_FOUND, shown ? shown : key, options, diags,
                    "no image for metadata entry '%s' of %s", key, file);
        free(shown);
        return 0;
    }
    int w = 0, h = 0;
    if (probe_image(ds, path, &w, &h, options, diags) != 0) {
        free(path);
        return 0;
    }
    char *caption = metadata_caption(sub, entry);
    sdt_ds_sample *s = caption ? add_sample(sub) : NULL;
    if (!s) {
        free(path);
        free(caption);
        return -1;
    }
    s->path = path;
    s->width = w;
    s->height = h;
    s->caption = caption;
    s->caption_source = caption[0] ? SDT_CAPTION_METADATA : SDT_CAPTION_NONE;
    sub->sample_count++;
    return 0;
}

int sdt_ds_scan_metadata_subset(sdt_dataset *ds, sdt_ds_subset *sub, const sdt_dataset_options *options,
                                sdt_diag_list *diags)
{
    char *file = expand_home(sub->metadata_file);
    char *image_dir = expand_home(sub->image_dir);
    if (!file || !image_dir) {
        free(file);
        free(image_dir);
        return -1;
    }
    int status = 0;
    size_t n = strlen(file);
    if (n > 6 && strcmp(file + n - 6, ".jsonl") == 0) {
        FILE *f = fopen(file, "r");
        if (!f) {
            sdt_diag_add(diags, SDT_SEV_ERROR, file, 0, 0, -1, "cannot open metadata file: %s",
                         strerror(errno));
        } else {
            char *line = NULL;
            size_t cap = 0;
            int lineno = 0;
            while (status == 0 && getline(&line, &cap, f) > 0) {
                lineno++;
                const char *b = line, *e = line + strlen(line);
                strip_range(&b, &e);
                if (b == e)
                    continue;
                json_error_t jerr;
                json_t *entry = json_loadb(b, (size_t)(e - b), 0, &jerr);
                const char *key = json_string_value(json_object_get(entry, "image_path"));
                if (!entry || !key)
                    sdt_diag_add(diags, SDT_SEV_ERROR, file, lineno, entry ? 1 : jerr.column, -1, "%s",
                                 entry ? "entry has no \"image_path\" string" : jerr.text);
                else
                    status = add_metadata_entry(ds, sub, image_dir, key, entry, file, options, diags);
                json_decref(entry);
            }
            free(line);
            fclose(f);
        }
    } else {
        json_error_t jerr;
        json_t *root = json_load_file(file, 0, &jerr);
        if (!root) {
            sdt_diag_add(diags, SDT_SEV_ERROR, file, jerr.line > 0 ? jerr.line : 0,
                         jerr.column > 0 ? jerr.column : 0, -1, "cannot read metadata: %s", jerr.text);
        } else if (!json_is_object(root)) {
            sdt_diag_add(diags, SDT_SEV_ERROR, file, 0, 0, -1,
                         "metadata must be an object of image key -> {\"caption\", \"tags\"}");
        } else {
            const char *key;
            json_t *entry;
            json_object_foreach(root, key, entry)
            {
                if (status != 0)
                    break;
                status = add_metadata_entry(ds, sub, image_dir, key, entry, file, options, diags);
            }
        }
        json_decref(root);
    }
    free(file);
    free(image_dir);
    return status;
}

/* ---- folder mode ---- */

/* `<repeats>_<class tokens>`: the part before the first '_' must be an integer (kohya's int()). */
static bool parse_folder_name(const char *name, int *repeats, const char **class_tokens)
{
    const char *us = strchr(name, '_');
    size_t n = us ? (size_t)(us - name) : strlen(name);
    const char *p = name, *end = name + n;
    while (p < end && is_space(*p))
        p++;
    while (end > p && is_space(end[-1]))
        end--;
    if (p < end && (*p == '+' || *p == '-'))
        p++;
    if (p == end)
        return false;
    long long v = 0;
    for (const char *c = p; c < end; c++) {
        if (!isdigit((unsigned char)*c))
            return false;
        if (v < INT_MAX)
            v = v * 10 + (*c - '0');
    }
    if (name[0] == '-' || (p > name && p[-1] == '-'))
        v = -v;
    *repeats = v > INT_MAX ? INT_MAX : (int)v;
    *class_tokens = us ? us + 1 : "";
    return true;
}

/* The subsets of one DreamBooth parent folder (train_data_dir or reg_data_dir). */
static int scan_parent(sdt_dataset *ds, sdt_ds_dataset *d, const sdt_config *cfg, const char *setting,
                       bool is_reg, const sdt_dataset_options *options, sdt_diag_list *diags)
{
    char *parent = expand_home(sdt_config_str(cfg, setting));
    if (!parent)
        return -1;
    name_list dirs = {0};
    int rc = list_dir(parent, true, &dirs);
    if (rc == -1) {
        int line = 0, col = 0;
        sdt_config_origin(cfg, sdt_schema_find(setting), &line, &col);
        sdt_diag_add(diags, SDT_SEV_ERROR, sdt_config_source(cfg), line, col, sdt_schema_find(setting),
                     "%s: cannot open '%s': %s", setting, parent, strerror(errno));
        free(parent);
        return 0;
    }
    int status = rc == -2 ? -1 : 0;
    for (size_t i = 0; i < dirs.count && status == 0; i++) {
        int repeats = 0;
        const char *tokens = NULL;
        char *full = join_path(parent, dirs.names[i]);
        if (!full) {
            status = -1;
            break;
        }
        if (!parse_folder_name(dirs.names[i], &repeats, &tokens)) {
            sdt_diag_add(diags, options->strict ? SDT_SEV_ERROR : SDT_SEV_WARNING, full, 0, 0, -1,
                         "ignored: the folder name does not start with a repeat count (<repeats>_<class "
                         "tokens>, e.g. 10_%s)",
                         dirs.names[i]);
            free(full);
            continue;
        }
        if (repeats < 1) {
            sdt_diag_add(diags, options->strict ? SDT_SEV_ERROR : SDT_SEV_WARNING, full, 0, 0, -1,
                         "ignored: the repeat count %d is less than 1", repeats);
            free(full);
            continue;
        }
        sdt_ds_subset *sub = sdt_ds_add_subset(d, cfg);
        if (!sub) {
            free(full);
            status = -1;
            break;
        }
        free(sub->image_dir);
        sub->image_dir = full;
        sub->num_repeats = repeats;
        sub->is_reg = is_reg;
        if (tokens[0] && !(sub->class_tokens = sdt_strdup(tokens))) {
            status = -1;
            break;
        }
        status = sdt_ds_scan_folder_subset(ds, sub, options, diags);
    }
    name_list_free(&dirs);
    free(parent);
    return status;
}

void sdt_ds_epoch_subsets(const sdt_ds_dataset *set, sdt_epoch_subset *out)
{
    for (size_t s = 0; s < set->subset_count; s++) {
        const sdt_ds_subset *sub = &set->subsets[s];
        out[s].image_count = sub->num_repeats >= 1 ? sub->sample_count : 0;
        out[s].repeats = sub->num_repeats >= 1 ? sub->num_repeats : 1;
        out[s].is_reg = sub->is_reg;
    }
}

/* kohya's reg balancing (sdt_epoch_balance_repeats), inside each dataset (DreamBoothDataset), not across
 * datasets: fills every subset's effective_repeats, and warns when reg images are left unused. */
static int balance_one(sdt_ds_dataset *set, sdt_diag_list *diags)
{
    size_t train = 0, reg = 0, images = 0;
    for (size_t s = 0; s < set->subset_count; s++) {
        sdt_ds_subset *sub = &set->subsets[s];
        *(sub->is_reg ? &reg : &train) += sub->sample_count * (size_t)sub->num_repeats;
        images += sub->sample_count;
        free(sub->effective_repeats);
        sub->effective_repeats = calloc(sub->sample_count ? sub->sample_count : 1, sizeof(int));
        if (!sub->effective_repeats)
            return -1;
        for (size_t i = 0; i < sub->sample_count; i++)
            sub->effective_repeats[i] = sub->is_reg ? 0 : sub->num_repeats;
    }
    if (reg == 0)
        return 0;
    if (train < reg)
        sdt_diag_add(diags, SDT_SEV_WARNING, NULL, 0, 0, -1,
                     "some regularization images are not used: %zu reg images with repeats, %zu train images "
                     "with repeats",
                     reg, train);
    sdt_epoch_subset *subsets = calloc(set->subset_count, sizeof *subsets);
    int *repeats = calloc(images + 1, sizeof *repeats);
    int status = subsets && repeats ? 0 : -1;
    if (status == 0) {
        sdt_ds_epoch_subsets(set, subsets);
        status = sdt_epoch_balance_repeats(subsets, set->subset_count, repeats, NULL, NULL, NULL);
    }
    size_t image = 0;
    for (size_t s = 0; s < set->subset_count && status == 0; s++) {
        sdt_ds_subset *sub = &set->subsets[s];
        for (size_t i = 0; i < subsets[s].image_count; i++, image++)
            sub->effective_repeats[i] = repeats[image];
    }
    free(subsets);
    free(repeats);
    return status;
}

static int balance_reg(sdt_dataset *ds, sdt_diag_list *diags)
{
    for (size_t d = 0; d < ds->dataset_count; d++)
        if (balance_one(&ds->datasets[d], diags) != 0)
            return -1;
    return 0;
}

sdt_dataset *sdt_dataset_scan(const sdt_config *cfg, const sdt_dataset_options *options_in,
                              sdt_diag_list *diags)
{
    sdt_dataset_options defaults = {0};
    const sdt_dataset_options *options = options_in ? options_in : &defaults;
    sdt_dataset *ds = calloc(1, sizeof *ds);
    if (!ds)
        return NULL;
    const char *source = sdt_config_source(cfg);
    const char *dataset_config = sdt_config_str(cfg, "dataset_config");
    const char *train_dir = sdt_config_str(cfg, "train_data_dir");
    const char *reg_dir = sdt_config_str(cfg, "reg_data_dir");
    const char *in_json = sdt_config_str(cfg, "in_json");
    int status = 0;
    if (dataset_config[0]) {
        ds->mode = SDT_DATASET_CONFIG_FILE;
        static const char *const ignored[] = {"train_data_dir", "reg_data_dir", "in_json"};
        for (size_t i = 0; i < 3; i++) {
            int k = sdt_schema_find(ignored[i]);
            if (!sdt_config_str(cfg, ignored[i])[0])
                continue;
            int line = 0, col = 0;
            sdt_config_origin(cfg, k, &line, &col);
            sdt_diag_add(diags, SDT_SEV_WARNING, source, line, col, k,
                         "%s is ignored because dataset_config is set", ignored[i]);
        }
        ds->config_file = expand_home(dataset_config);
        status = ds->config_file ? sdt_ds_load_config_file(ds, ds->config_file, cfg, options, diags) : -1;
    } else if (in_json[0]) {
        ds->mode = SDT_DATASET_METADATA;
        if (reg_dir[0]) {
            int k = sdt_schema_find("reg_data_dir"), line = 0, col = 0;
            sdt_config_origin(cfg, k, &line, &col);
            sdt_diag_add(diags, SDT_SEV_WARNING, source, line, col, k,
                         "reg_data_dir is ignored in fine-tune (in_json) mode");
        }
        sdt_ds_dataset *d = sdt_ds_add_dataset(ds, cfg);
        sdt_ds_subset *sub = d ? sdt_ds_add_subset(d, cfg) : NULL;
        if (!sub) {
            status = -1;
        } else {
            d->finetune = true;
            free(sub->image_dir);
            sub->image_dir = sdt_strdup(train_dir);
            sub->metadata_file = sdt_strdup(in_json);
            sub->num_repeats = (int)sdt_config_int(cfg, "dataset_repeats");
            status = sub->image_dir && sub->metadata_file
                         ? sdt_ds_scan_metadata_subset(ds, sub, options, diags)
                         : -1;
        }
    } else {
        ds->mode = SDT_DATASET_FOLDERS;
        sdt_ds_dataset *d = sdt_ds_add_dataset(ds, cfg);
        if (!d) {
            status = -1;
        } else if (!train_dir[0]) {
            sdt_diag_add(diags, SDT_SEV_ERROR, source, 0, 0, sdt_schema_find("train_data_dir"),
                         "no training data: set train_data_dir, in_json or dataset_config");
        } else {
            status = scan_parent(ds, d, cfg, "train_data_dir", false, options, diags);
            if (status == 0 && reg_dir[0])
                status = scan_parent(ds, d, cfg, "reg_data_dir", true, options, diags);
        }
    }
    if (status == 0 && ds->missing_captions > 0)
        sdt_diag_add(diags, SDT_SEV_WARNING, NULL, 0, 0, -1,
                     "no caption file for %zu image%s: the class tokens (or an empty caption) are used",
                     ds->missing_captions, ds->missing_captions == 1 ? "" : "s");
    if (status == 0 && sdt_dataset_image_count(ds, false) == 0)
        sdt_diag_add(diags, SDT_SEV_ERROR, ds->config_file ? ds->config_file : source, 0, 0, -1,
                     "the dataset is empty: no training images were found");
    if (status == 0)
        status = balance_reg(ds, diags);
    if (status != 0) {
        sdt_dataset_free(ds);
        return NULL;
    }
    return ds;
}
