/* A string -> index map (open addressing, FNV-1a) for the names of tensors in files and tables: the
 * parameter tables, the key maps and the checkpoint loader all look names up through it. */
#ifndef SDTUNE_MODELS_NAME_INDEX_H
#define SDTUNE_MODELS_NAME_INDEX_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdt_name_index {
    const char **names; /* borrowed: the strings must outlive the index */
    size_t *slots;      /* entry + 1, 0 = empty */
    size_t size, count, capacity;
    size_t *values;
} sdt_name_index;

void sdt_name_index_init(sdt_name_index *ix);
void sdt_name_index_free(sdt_name_index *ix);
/* Adds name -> value; returns 0, 1 when the name is already there (the old value is kept), -1 out of
 * memory. */
int sdt_name_index_put(sdt_name_index *ix, const char *name, size_t value);
/* The value of name, or -1 as (long long) when absent. */
long long sdt_name_index_get(const sdt_name_index *ix, const char *name);

#ifdef __cplusplus
}
#endif
#endif
