/* The string -> index map of name_index.h. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "name_index.h"

void sdt_name_index_init(sdt_name_index *ix) { memset(ix, 0, sizeof *ix); }

void sdt_name_index_free(sdt_name_index *ix)
{
    free(ix->names);
    free(ix->values);
    free(ix->slots);
    memset(ix, 0, sizeof *ix);
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* The slot holding name, or the empty slot where it would go. size is a power of two above count. */
static size_t find_slot(const sdt_name_index *ix, const char *name)
{
    size_t mask = ix->size - 1;
    size_t slot = (size_t)fnv1a(name) & mask;
    while (ix->slots[slot] != 0 && strcmp(ix->names[ix->slots[slot] - 1], name) != 0)
        slot = (slot + 1) & mask;
    return slot;
}

static int rehash(sdt_name_index *ix, size_t size)
{
    size_t *slots = calloc(size, sizeof *slots);
    if (!slots)
        return -1;
    free(ix->slots);
    ix->slots = slots;
    ix->size = size;
    for (size_t i = 0; i < ix->count; i++)
        ix->slots[find_slot(ix, ix->names[i])] = i + 1;
    return 0;
}

int sdt_name_index_put(sdt_name_index *ix, const char *name, size_t value)
{
    if (ix->size && ix->slots[find_slot(ix, name)] != 0)
        return 1;
    if (ix->count == ix->capacity) {
        size_t capacity = ix->capacity ? ix->capacity * 2 : 64;
        const char **names = realloc(ix->names, capacity * sizeof *names);
        if (!names)
            return -1;
        ix->names = names;
        size_t *values = realloc(ix->values, capacity * sizeof *values);
        if (!values)
            return -1;
        ix->values = values;
        ix->capacity = capacity;
    }
    /* Keep the table at most half full so that probing stays short and always ends. */
    if ((ix->count + 1) * 2 > ix->size && rehash(ix, ix->size ? ix->size * 2 : 128) != 0)
        return -1;
    ix->names[ix->count] = name;
    ix->values[ix->count] = value;
    ix->slots[find_slot(ix, name)] = ix->count + 1;
    ix->count++;
    return 0;
}

long long sdt_name_index_get(const sdt_name_index *ix, const char *name)
{
    if (ix->size == 0)
        return -1;
    size_t slot = find_slot(ix, name);
    return ix->slots[slot] ? (long long)ix->values[ix->slots[slot] - 1] : -1;
}
