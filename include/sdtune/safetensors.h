/* safetensors files: a validating zero-copy reader (the file is memory-mapped, tensors point into it) and an
 * atomic, streaming writer that follows the reference writer's conventions.
 *
 * Format (docs: /work/shared/specs/sd_arch_spec.md section 8): an 8-byte little-endian header length N, N
 * bytes of UTF-8 JSON mapping each tensor name to {"dtype", "shape", "data_offsets": [BEGIN, END]} plus an
 * optional "__metadata__" object of strings, then the data buffer that the tensors tile exactly. The
 * reader checks every rule of the reference reader (and rejects unknown fields, duplicate names, more than
 * SDT_ST_MAX_DIMS dimensions) and says which file and which tensor break it. */
#ifndef SDTUNE_SAFETENSORS_H
#define SDTUNE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "sdtune/dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Dimensions a tensor may have (Stable Diffusion tensors have at most 4). */
#define SDT_ST_MAX_DIMS 8
/* The format's limits: header length, and each dimension and data offset (48 bits). */
#define SDT_ST_MAX_HEADER_SIZE 100000000ULL
#define SDT_ST_MAX_VALUE 281474976710655ULL

/* One tensor of an open file. Valid until sdt_safetensors_close. */
typedef struct sdt_st_tensor {
    const char *name;
    sdt_dtype dtype;
    int ndim; /* 0 for a scalar (one element) */
    int64_t shape[SDT_ST_MAX_DIMS];
    uint64_t count; /* elements: the product of shape (1 for rank 0, 0 when a dimension is 0) */
    /* The tensor's bytes: little-endian, row-major. NOT ALIGNED in general (the format does not require
     * alignment and header lengths vary): read elements with memcpy, or copy the tensor first. Points into
     * the mapping (or the caller's buffer); never NULL, even for a zero-sized tensor. */
    const void *data;
    size_t nbytes;
    uint64_t offset; /* data_offsets[0]: where the bytes begin, relative to the data buffer */
} sdt_st_tensor;

typedef struct sdt_safetensors sdt_safetensors;

/* Maps path read-only and validates it. Returns 0 and *out, or -1 with *error set (caller frees), a
 * message that starts with the path and names the tensor concerned. The mapping lives until close; if
 * another process truncates the file meanwhile, reading a tensor may raise SIGBUS (as with any mmap). */
int sdt_safetensors_open(const char *path, sdt_safetensors **out, char **error);

/* The same over bytes in memory, which are NOT copied: data must stay valid and unchanged until close.
 * name_for_messages starts every error message (e.g. "model.safetensors"). */
int sdt_safetensors_open_memory(const void *data, size_t len, const char *name_for_messages,
                                sdt_safetensors **out, char **error);

/* Unmaps the file and frees everything; NULL is allowed. */
void sdt_safetensors_close(sdt_safetensors *st);

/* The name given to open (the path, or name_for_messages). */
const char *sdt_safetensors_name(const sdt_safetensors *st);
/* The file offset where the data buffer starts (8 + header length): tensor i is at this + its offset. */
uint64_t sdt_safetensors_data_start(const sdt_safetensors *st);

/* Tensors in file order (by data offset; zero-sized tensors before a tensor at the same offset, ties by
 * name). index must be < sdt_safetensors_count; NULL otherwise. */
size_t sdt_safetensors_count(const sdt_safetensors *st);
const sdt_st_tensor *sdt_safetensors_tensor(const sdt_safetensors *st, size_t index);
/* The tensor named name, or NULL. O(log n): a binary search in a name index built at open. */
const sdt_st_tensor *sdt_safetensors_find(const sdt_safetensors *st, const char *name);

/* "__metadata__": the value of key, or NULL. Pairs are kept in bytewise key order. */
const char *sdt_safetensors_metadata(const sdt_safetensors *st, const char *key);
size_t sdt_safetensors_metadata_count(const sdt_safetensors *st);
/* The index-th pair; returns 0, or -1 when index is out of range. */
int sdt_safetensors_metadata_at(const sdt_safetensors *st, size_t index, const char **key,
                                const char **value);

/* Produces len bytes of a tensor's data starting at byte offset (within that tensor) into buf, for data
 * that is not in memory as a whole (converted or generated while saving). Returns 0, or -1 to fail the
 * write. */
typedef int (*sdt_st_fill_fn)(void *ctx, uint64_t offset, void *buf, size_t len);

/* One tensor to write. Exactly one source: data (all bytes, contiguous) or fill (called in chunks of at
 * most 1 MiB, in increasing offset order). data may be NULL for a zero-sized tensor. */
typedef struct sdt_st_write_tensor {
    const char *name;
    sdt_dtype dtype;
    int ndim;
    const int64_t *shape;
    const void *data;
    sdt_st_fill_fn fill;
    void *fill_ctx;
} sdt_st_write_tensor;

/* Writes a safetensors file the way the reference writer does: compact JSON header with "__metadata__"
 * first (omitted when there are no pairs), padded with spaces to a multiple of 8 bytes; tensors ordered by
 * dtype (8-byte types first, down to the sub-byte ones), ties by name, packed from offset 0, so that every
 * tensor is aligned to its element size within the file. metadata_kv holds n_metadata_pairs key, value
 * pairs (2 * n strings).
 *
 * Atomic and streaming: writes beside path (path.tmp.XXXXXX), each tensor's bytes straight from its source,
 * fsyncs, renames over path and fsyncs the folder. An existing file keeps its permissions (a new one gets
 * 0644). Returns 0, or -1 with *error set (caller frees); then path is untouched and no temporary file is
 * left. Invalid input (duplicate or empty names, "__metadata__" as a name, bad shapes, invalid UTF-8,
 * duplicate metadata keys) is rejected before anything is written. */
int sdt_safetensors_write(const char *path, const sdt_st_write_tensor *tensors, size_t n,
                          const char *const *metadata_kv, size_t n_metadata_pairs, char **error);

#ifdef __cplusplus
}
#endif
#endif
