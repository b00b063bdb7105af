/* The recent-files list (see recent_files.h). */
#include "recent_files.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sdtune/atomic_file.h"
#include "sdtune/strutil.h"
#include "xdg.h"

/* The list is tiny; a bigger file is not one the UI wrote. */
#define RECENT_FILE_MAX_BYTES (256 * 1024)

char *recent_files_path(char **error)
{
    char *dir = xdg_dir_make(XDG_STATE, error);
    if (!dir)
        return NULL;
    char *file = sdt_format("%s/recent", dir);
    free(dir);
    if (!file)
        sdt_set_error(error, "out of memory");
    return file;
}

void recent_files_free(recent_files *r)
{
    for (size_t i = 0; i < r->count; i++)
        free(r->paths[i]);
    memset(r, 0, sizeof *r);
}

/* Appends path at the end (oldest) while there is room; -1 when out of memory. */
static int append(recent_files *r, const char *path, size_t len)
{
    if (r->count >= RECENT_FILES_MAX)
        return 0;
    for (size_t i = 0; i < r->count; i++)
        if (strlen(r->paths[i]) == len && memcmp(r->paths[i], path, len) == 0)
            return 0;
    char *copy = sdt_format("%.*s", (int)len, path);
    if (!copy)
        return -1;
    r->paths[r->count++] = copy;
    return 0;
}

int recent_files_load(recent_files *r, const char *file, char **error)
{
    memset(r, 0, sizeof *r);
    char *data = NULL, *why = NULL;
    size_t len = 0;
    if (access(file, F_OK) != 0 && errno == ENOENT)
        return 0;
    if (sdt_read_file(file, RECENT_FILE_MAX_BYTES, &data, &len, &why) != 0) {
        sdt_set_error(error, "cannot read the recent-files list %s: %s", file, why ? why : "unknown error");
        free(why);
        return -1;
    }
    for (const char *line = data, *end = data + len; line < end;) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        size_t n = nl ? (size_t)(nl - line) : (size_t)(end - line);
        const char *next = nl ? nl + 1 : end;
        if (n > 0 && line[n - 1] == '\r')
            n--;
        /* Only absolute paths without NUL bytes are paths this list holds. */
        if (n > 0 && line[0] == '/' && !memchr(line, '\0', n) && append(r, line, n) != 0) {
            free(data);
            recent_files_free(r);
            sdt_set_error(error, "out of memory");
            return -1;
        }
        line = next;
    }
    free(data);
    return 0;
}

int recent_files_add(recent_files *r, const char *path)
{
    char *copy = sdt_format("%s", path);
    if (!copy)
        return -1;
    size_t at = r->count; /* where an earlier copy is; count: none */
    for (size_t i = 0; i < r->count; i++)
        if (strcmp(r->paths[i], path) == 0)
            at = i;
    if (at < r->count) {
        free(r->paths[at]);
    } else {
        if (r->count == RECENT_FILES_MAX) /* the oldest goes */
            free(r->paths[--r->count]);
        at = r->count++;
    }
    memmove(&r->paths[1], &r->paths[0], at * sizeof r->paths[0]);
    r->paths[0] = copy;
    return 0;
}

int recent_files_save(const recent_files *r, const char *file, char **error)
{
    sdt_buf buf;
    sdt_buf_init(&buf);
    for (size_t i = 0; i < r->count; i++)
        sdt_buf_printf(&buf, "%s\n", r->paths[i]);
    char *text = sdt_buf_take(&buf);
    if (!text) {
        sdt_set_error(error, "out of memory");
        return -1;
    }
    int rc = sdt_atomic_write(file, text, strlen(text), error);
    free(text);
    return rc;
}

void recent_files_existing(recent_files *r)
{
    size_t kept = 0;
    for (size_t i = 0; i < r->count; i++) {
        if (access(r->paths[i], F_OK) == 0)
            r->paths[kept++] = r->paths[i];
        else
            free(r->paths[i]);
    }
    for (size_t i = kept; i < r->count; i++)
        r->paths[i] = NULL;
    r->count = kept;
}

int recent_files_record(const char *path, char **error)
{
    char *absolute = realpath(path, NULL);
    if (!absolute) {
        sdt_set_error(error, "cannot add %s to the recent files: %s", path, strerror(errno));
        return -1;
    }
    char *file = recent_files_path(error);
    recent_files r;
    int rc = -1;
    if (file && recent_files_load(&r, file, error) == 0) {
        if (recent_files_add(&r, absolute) != 0)
            sdt_set_error(error, "out of memory");
        else
            rc = recent_files_save(&r, file, error);
        recent_files_free(&r);
    }
    free(file);
    free(absolute);
    return rc;
}
