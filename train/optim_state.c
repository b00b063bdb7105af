/* The optimizer's state as named buffers: listing them for a checkpoint and restoring them on resume
 * (see optim.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optim.h"
#include "sdtune/strutil.h"

static int entry_slots(const sdt_optim_entry *e)
{
    int n = 0;
    while (n < 4 && e->state_names[n])
        n++;
    return n;
}

static const char scalars_name[] = "optimizer.scalars";

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
            memcpy(e->state[s], data, count * sizeof(float));
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
