/* libFuzzer target: any bytes given to the safetensors reader give an error message or a valid handle,
 * never a crash, a leak, an out-of-bounds read or undefined behaviour. After a successful open every
 * tensor's bytes and every metadata pair are read, and the handle's invariants are checked: the tensors tile
 * the data buffer in file order, each is found by its name, each metadata key finds its value. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sdtune/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sdt_safetensors *st = NULL;
    char *error = NULL;
    if (sdt_safetensors_open_memory(data, size, "fuzz.safetensors", &st, &error) != 0) {
        if (!error || !error[0] || st)
            abort(); /* a failure always explains itself and returns no handle */
        free(error);
        return 0;
    }
    if (error)
        abort();
    uint64_t expected = 0;
    unsigned sum = 0;
    for (size_t i = 0; i < sdt_safetensors_count(st); i++) {
        const sdt_st_tensor *t = sdt_safetensors_tensor(st, i);
        if (!t || t->offset != expected || sdt_safetensors_find(st, t->name) != t)
            abort();
        if (t->ndim < 0 || t->ndim > SDT_ST_MAX_DIMS || t->nbytes != t->count * sdt_dtype_bits(t->dtype) / 8)
            abort();
        const unsigned char *bytes = t->data;
        for (size_t b = 0; b < t->nbytes; b++) /* every byte, so ASan sees any read past the input */
            sum += bytes[b];
        expected += t->nbytes;
    }
    if (sdt_safetensors_data_start(st) + expected != size)
        abort();
    for (size_t i = 0; i < sdt_safetensors_metadata_count(st); i++) {
        const char *key, *value;
        if (sdt_safetensors_metadata_at(st, i, &key, &value) != 0 ||
            sdt_safetensors_metadata(st, key) != value)
            abort();
        sum += (unsigned)strlen(key) + (unsigned)strlen(value);
    }
    if (sdt_safetensors_tensor(st, sdt_safetensors_count(st)) != NULL)
        abort();
    sdt_safetensors_close(st);
    /* Keep the sum alive so the byte reads are not optimised away. */
    volatile unsigned sink = sum;
    (void)sink;
    return 0;
}
