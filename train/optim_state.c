/* The optimizer's state as named buffers: listing them for a checkpoint and restoring them on resume
 * (see optim.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optim.h"
#include "sdtune/dtype.h"
#include "sdtune/strutil.h"

static int entry_slots(const sdt_optim_entry *e)
{
    int n = 0;
    while (n < 4 && e->state_names[n])
        n++;
    return n;
}

static const char scalars_name[] = "optimizer.scalars";

/* The state lives in memory of the optimizer's engine; off the CPU only upload and download reach it. */
static int state_on_device(const sdt_optimizer *o)
{
    return o->engine && sdt_engine_device(o->engine) != SDT_DEVICE_CPU;
}

static sdt_tensor state_tensor(const sdt_optimizer *o, float *data, size_t count)
{
    int64_t shape[1] = {(int64_t)count};
    sdt_tensor t = sdt_tensor_view(data, SDT_F32, 1, shape);
    t.device = sdt_engine_device(o->engine);
    return t;
}

/* Replaces every entry buffer of the list by a host copy downloaded from the device. */
static int download_state(const sdt_optimizer *o, sdt_optim_state *out, size_t entry_items, char **error)
{
    size_t floats = 0;
    for (size_t i = 0; i < entry_items; i++)
        floats += out->items[i].count;
    out->host = malloc((floats ? floats : 1) * sizeof(float)); /* [floats] every buffer, in list order */
    if (!out->host)
        return sdt_set_error(error, "optimizer: out of memory");
    float *w = out->host;
    for (size_t i = 0; i < entry_items; i++) {
        sdt_tensor t = state_tensor(o, out->items[i].data, out->items[i].count);
        if (sdt_engine_download(o->engine, w, &t, out->items[i].count * sizeof(float)) != 0)
            return sdt_set_error(error, "optimizer state %s: %s", out->items[i].name,
                                 sdt_engine_error(o->engine));
        out->items[i].data = w;
        w += out->items[i].count;
    }
    return 0;
}

int sdt_optim_state_list(const sdt_optimizer *o, sdt_optim_state *out, char **error)
{
    memset(out, 0, sizeof *out);
    size_t n = o->scalar_count ? 1 : 0, chars = sizeof scalars_name;
    for (size_t i = 0; i < o->count; i++) {
        int slots = entry_slots(&o->entries[i]);
        for (int s = 0; s < slots; s++) {
            n++;
            chars += strlen(o->entries[i].name) + strlen(o->entries[i].state_names[s]) + 2;
        }
    }
    out->items = calloc(n ? n : 1, sizeof *out->items);
    out->names = malloc(chars);
    if (!out->items || !out->names) {
        sdt_optim_state_free(out);
        sdt_set_error(error, "optimizer: out of memory");
        return -1;
    }
    char *w = out->names;
    for (size_t i = 0; i < o->count; i++) {
        const sdt_optim_entry *e = &o->entries[i];
        int slots = entry_slots(e);
        for (int s = 0; s < slots; s++) {
            int len = sprintf(w, "%s.%s", e->name, e->state_names[s]);
            out->items[out->count++] = (sdt_optim_buffer){w, e->state[s], e->state_count[s]};
            w += len + 1;
        }
    }
    if (state_on_device(o) && download_state(o, out, out->count, error) != 0) {
        sdt_optim_state_free(out);
        return -1;
    }
    if (o->scalar_count) {
        /* The doubles' bytes, seen as floats: copied as bytes, never computed with.
         */
        memcpy(w, scalars_name, sizeof scalars_name);
        out->items[out->count++] =
            (sdt_optim_buffer){w, (float *)(void *)o->scalars, (size_t)o->scalar_count * 2};
    }
    return 0;
}

void sdt_optim_state_free(sdt_optim_state *s)
{
    free(s->items);
    free(s->names);
    free(s->host);
    memset(s, 0, sizeof *s);
}

int sdt_optim_state_set(sdt_optimizer *o, const char *name, const float *data, size_t count, char **error)
{
    if (o->scalar_count && strcmp(name, scalars_name) == 0) {
        if (count != (size_t)o->scalar_count * 2) {
            sdt_set_error(error, "optimizer state %s: %zu values, expected %d", name, count,
                          o->scalar_count * 2);
            return -1;
        }
        memcpy(o->scalars, data, count * sizeof(float));
        return 0;
    }
    for (size_t i = 0; i < o->count; i++) {
        sdt_optim_entry *e = &o->entries[i];
        size_t len = strlen(e->name);
        if (strncmp(name, e->name, len) != 0 || name[len] != '.')
            continue;
        int slots = entry_slots(e);
        for (int s = 0; s < slots; s++) {
            if (strcmp(name + len + 1, e->state_names[s]) != 0)
                continue;
            if (count != e->state_count[s]) {
                sdt_set_error(error, "optimizer state %s: %zu values, expected %zu", name, count,
                              e->state_count[s]);
                return -1;
            }
            if (!state_on_device(o)) {
                memcpy(e->state[s], data, count * sizeof(float));
                return 0;
            }
            sdt_tensor t = state_tensor(o, e->state[s], count);
            if (sdt_engine_upload(o->engine, &t, data, count * sizeof(float)) != 0)
                return sdt_set_error(error, "optimizer state %s: %s", name, sdt_engine_error(o->engine));
            return 0;
        }
    }
    sdt_set_error(error, "optimizer state %s: no such buffer for %s", name, sdt_optim_kind_name(o->cfg.kind));
    return -1;
}

int sdt_optim_state_import(sdt_optimizer *o, const sdt_optim_state *s, int64_t step, char **error)
{
    size_t expected = o->scalar_count ? 1 : 0;
    for (size_t i = 0; i < o->count; i++)
        expected += (size_t)entry_slots(&o->entries[i]);
    if (s->count != expected) {
        sdt_set_error(error, "optimizer state: %zu buffers, expected %zu", s->count, expected);
        return -1;
    }
    if (step < 0) {
        sdt_set_error(error, "optimizer state: negative step count %lld", (long long)step);
        return -1;
    }
    for (size_t i = 0; i < s->count; i++)
        if (sdt_optim_state_set(o, s->items[i].name, s->items[i].data, s->items[i].count, error) != 0)
            return -1;
    o->step = step;
    return 0;
}

int sdt_optim_value_download(const sdt_optimizer *o, size_t index, float *host, char **error)
{
    const sdt_optim_entry *e = &o->entries[index];
    size_t bytes = e->count * (size_t)sdt_dtype_bits(e->dtype) / 8;
    if (!state_on_device(o)) {
        if (e->dtype != SDT_F32)
            sdt_convert(host, SDT_F32, e->value, e->dtype, e->count);
        else
            memcpy(host, e->value, bytes);
        return 0;
    }
    sdt_tensor t = state_tensor(o, e->value, e->count);
    t.dtype = e->dtype;
    if (e->dtype == SDT_F32) {
        if (sdt_engine_download(o->engine, host, &t, bytes) != 0)
            return sdt_set_error(error, "optimizer: %s: %s", e->name, sdt_engine_error(o->engine));
        return 0;
    }
    uint16_t *half = malloc(e->count ? e->count * sizeof *half : 1); /* [count] the entry's bits */
    if (!half)
        return sdt_set_error(error, "optimizer: out of memory");
    int rc = 0;
    if (sdt_engine_download(o->engine, half, &t, bytes) != 0)
        rc = sdt_set_error(error, "optimizer: %s: %s", e->name, sdt_engine_error(o->engine));
    else
        sdt_convert(host, SDT_F32, half, e->dtype, e->count);
    free(half);
    return rc;
}

int sdt_optim_value_upload(sdt_optimizer *o, size_t index, const float *host, char **error)
{
    sdt_optim_entry *e = &o->entries[index];
    if (e->dtype != SDT_F32) {
        /* round to the entry's dtype first (exact for values it held), then copy those bytes */
        uint16_t *half = malloc(e->count ? e->count * sizeof *half : 1); /* [count] */
        if (!half)
            return sdt_set_error(error, "optimizer: out of memory");
        sdt_convert(half, e->dtype, host, SDT_F32, e->count);
        int rc = 0;
        if (!state_on_device(o)) {
            memcpy(e->value, half, e->count * sizeof *half);
        } else {
            sdt_tensor t = state_tensor(o, e->value, e->count);
            t.dtype = e->dtype;
            if (sdt_engine_upload(o->engine, &t, half, e->count * sizeof *half) != 0)
                rc = sdt_set_error(error, "optimizer: %s: %s", e->name, sdt_engine_error(o->engine));
        }
        free(half);
        return rc;
    }
    if (!state_on_device(o)) {
        memcpy(e->value, host, e->count * sizeof(float));
        return 0;
    }
    sdt_tensor t = state_tensor(o, e->value, e->count);
    if (sdt_engine_upload(o->engine, &t, host, e->count * sizeof(float)) != 0)
        return sdt_set_error(error, "optimizer: %s: %s", e->name, sdt_engine_error(o->engine));
    return 0;
}
