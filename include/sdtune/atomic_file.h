/* Whole-file reads and atomic writes. */
#ifndef SDTUNE_ATOMIC_FILE_H
#define SDTUNE_ATOMIC_FILE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Replaces path with data so that readers see either the old file or the new one, never a part: writes a
 * temporary file beside it, fsyncs it, renames it over path and fsyncs the folder. An existing file's
 * permissions are kept. Returns 0, or -1 with *error set (caller frees); the old file is then untouched
 * and no temporary file is left behind. */
int sdt_atomic_write(const char *path, const void *data, size_t len, char **error);

/* Reads a whole regular file of at most max_bytes into a NUL-terminated buffer (caller frees).
 * Returns 0, or -1 with *error set to a one-line reason that does not repeat the path. */
int sdt_read_file(const char *path, size_t max_bytes, char **data, size_t *len, char **error);

#ifdef __cplusplus
}
#endif
#endif
