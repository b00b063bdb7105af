/* kohya's ss_tag_frequency and ss_bucket_info of a run (run_metadata.h). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buckets.h"
#include "captions.h"
#include "dataset.h"
#include "lora_internal.h"
#include "run_metadata.h"

/* One code point from UTF-8 at *p (advancing it); U+FFFD for a byte that starts no valid sequence. */
static uint32_t next_code_point(const unsigned char **p)
{
    const unsigned char *s = *p;
    uint32_t c = s[0];
    int extra = c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2 : c >= 0xf0 && c <= 0xf4 ? 3 : 0;
    if (c < 0x80 || extra == 0) {
        *p = s + 1;
        return c < 0x80 ? c : 0xfffd;
    }
    uint32_t v = c & (0x3f >> extra);
    for (int i = 1; i <= extra; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            *p = s + 1;
            return 0xfffd;
        }
        v = (v << 6) | (s[i] & 0x3f);
    }
    *p = s + 1 + extra;
    static const uint32_t smallest[4] = {0, 0x80, 0x800, 0x10000};
    if (v < smallest[extra] || v > 0x10ffff || (v >= 0xd800 && v < 0xe000))
        return 0xfffd;
    return v;
}

void sdt_json_append_string(sdt_buf *b, const char *s)
{
    sdt_buf_puts(b, "\"");
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        uint32_t c = next_code_point(&p);
        switch (c) {
        case '"': sdt_buf_puts(b, "\\\""); continue;
        case '\\': sdt_buf_puts(b, "\\\\"); continue;
        case '\n': sdt_buf_puts(b, "\\n"); continue;
        case '\r': sdt_buf_puts(b, "\\r"); continue;
        case '\t': sdt_buf_puts(b, "\\t"); continue;
        case '\b': sdt_buf_puts(b, "\\b"); continue;
        case '\f': sdt_buf_puts(b, "\\f"); continue;
        default: break;
        }
        if (c >= 0x20 && c < 0x7f) {
            char ch = (char)c;
            sdt_buf_append(b, &ch, 1);
        } else if (c < 0x10000) {
            sdt_buf_printf(b, "\\u%04x", (unsigned)c);
        } else {
            c -= 0x10000;
            sdt_buf_printf(b, "\\u%04x\\u%04x", (unsigned)(0xd800 + (c >> 10)),
                           (unsigned)(0xdc00 + (c & 0x3ff)));
        }
    }
    sdt_buf_puts(b, "\"");
}

/* The key kohya files a subset's tags under: os.path.basename of its folder (of its metadata file for
 * fine-tuning). */
static const char *subset_key(const sdt_ds_subset *sub)
{
    const char *path = sub->metadata_file && *sub->metadata_file ? sub->metadata_file : sub->image_dir;
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

int sdt_run_tag_frequency_json(const sdt_train_data *d, char **out, char **error)
{
    *out = NULL;
    const sdt_ds_dataset *set = d->dataset && d->dataset->dataset_count ? &d->dataset->datasets[0] : NULL;
    size_t n = set ? set->subset_count : 0;
    /* one counter per distinct key, in first-seen order (Python's dict order) */
    sdt_tag_frequency *freq = calloc(n ? n : 1, sizeof *freq);
    const char **keys = calloc(n ? n : 1, sizeof *keys);
    size_t key_count = 0;
    int rc = -1;
    if (!freq || !keys) {
        sdt_set_error(error, "out of memory");
        goto done;
    }
    for (size_t s = 0; s < n; s++) {
        const sdt_ds_subset *sub = &set->subsets[s];
        const char *key = subset_key(sub);
        size_t k = 0;
        while (k < key_count && strcmp(keys[k], key) != 0)
            k++;
        if (k == key_count) {
            keys[key_count] = key;
            sdt_tag_frequency_init(&freq[key_count++]);
        }
        for (size_t i = 0; i < sub->sample_count; i++)
            if (sdt_tag_frequency_add(&freq[k], sub->samples[i].caption, error) != 0)
                goto done;
    }
    sdt_buf b;
    sdt_buf_init(&b);
    sdt_buf_puts(&b, "{");
    for (size_t k = 0; k < key_count; k++) {
        if (k)
            sdt_buf_puts(&b, ", ");
        sdt_json_append_string(&b, keys[k]);
        sdt_buf_puts(&b, ": {");
        for (size_t t = 0; t < freq[k].count; t++) {
            if (t)
                sdt_buf_puts(&b, ", ");
            sdt_json_append_string(&b, freq[k].tags[t].tag);
            sdt_buf_printf(&b, ": %zu", freq[k].tags[t].count);
        }
        sdt_buf_puts(&b, "}");
    }
    sdt_buf_puts(&b, "}");
    *out = sdt_buf_take(&b);
    rc = *out ? 0 : sdt_set_error(error, "out of memory");
done:
    for (size_t k = 0; freq && k < key_count; k++)
        sdt_tag_frequency_free(&freq[k]);
    free(freq);
    free(keys);
    return rc;
}

int sdt_run_bucket_info_json(const sdt_train_data *d, char **out, char **error)
{
    *out = NULL;
    const sdt_bucket_plan *plan = d->buckets;
    if (!plan || !plan->settings.enable_bucket)
        return 0;
    sdt_buf b;
    sdt_buf_init(&b);
    sdt_buf_puts(&b, "{\"buckets\": {");
    int first = 1;
    size_t placed = 0;
    for (size_t i = 0; i < plan->bucket_count; i++) {
        const sdt_bucket *bucket = &plan->buckets[i];
        placed += bucket->images;
        if (bucket->samples == 0)
            continue;
        sdt_buf_printf(&b, "%s\"%zu\": {\"resolution\": [%d, %d], \"count\": %zu}", first ? "" : ", ", i,
                       bucket->width, bucket->height, bucket->samples);
        first = 0;
    }
    char mean[64];
    if (placed == 0)
        strcpy(mean, "0"); /* kohya's integer 0 "to avoid NaN" */
    else
        sdt_lora_python_float(plan->mean_ar_error, mean, sizeof mean);
    sdt_buf_printf(&b, "}, \"mean_img_ar_error\": %s}", mean);
    *out = sdt_buf_take(&b);
    return *out ? 0 : sdt_set_error(error, "out of memory");
}
