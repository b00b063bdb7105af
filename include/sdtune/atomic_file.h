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

/* The same guarantee for a file written in pieces (a multi-GB checkpoint is never held in memory whole):
 * open a temporary file beside path, append, then commit (fsync, rename over path, fsync the folder) or
 * abandon (the temporary file is removed, an existing file untouched). Messages name path. */
typedef struct sdt_atomic_file {
    int fd;
    char *path;
    char *tmp; /* path.tmp.XXXXXX */
} sdt_atomic_file;

/* Returns 0, or -1 with *error set (caller frees) and nothing left behind. */
int sdt_atomic_open(sdt_atomic_file *file, const char *path, char **error);
/* Returns 0, or -1 with *error set; the caller then abandons the file. */
int sdt_atomic_append(sdt_atomic_file *file, const void *data, size_t len, char **error);
/* Makes the file visible under its name. Returns 0, or -1 with *error set and the file abandoned. Either
 * way the struct is released. */
int sdt_atomic_commit(sdt_atomic_file *file, char **error);
/* Drops the temporary file and releases the struct. */
void sdt_atomic_abandon(sdt_atomic_file *file);

/* mkdir -p: creates path and every missing folder above it (mode 0755). Returns 0, or -1 with *error set
 * (caller frees) to "cannot create the <what> folder <the first one that failed>: <reason>", or "the <what>
 * folder <path> is not a folder" when something else has that name. */
int sdt_make_folders(const char *path, const char *what, char **error);

/* Reads a whole regular file of at most max_bytes into a NUL-terminated buffer (caller frees).
 * Returns 0, or -1 with *error set to a one-line reason that does not repeat the path. */
int sdt_read_file(const char *path, size_t max_bytes, char **data, size_t *len, char **error);

#ifdef __cplusplus
}
#endif
#endif
