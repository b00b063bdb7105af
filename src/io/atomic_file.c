#include "sdtune/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sdtune/strutil.h"

/* write(2) until everything is out: short writes and EINTR happen on large files. */
static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        size_t chunk = len > ((size_t)1 << 30) ? ((size_t)1 << 30) : len;
        ssize_t n = write(fd, p, chunk);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* The folder part of path ("." when it has none), for the fsync that makes the rename durable. */
static char *folder_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return sdt_strdup(".");
    if (slash == path)
        return sdt_strdup("/");
    return sdt_strndup(path, (size_t)(slash - path));
}

static void release(sdt_atomic_file *file)
{
    free(file->path);
    free(file->tmp);
    file->path = file->tmp = NULL;
    file->fd = -1;
}

int sdt_atomic_open(sdt_atomic_file *file, const char *path, char **error)
{
    *error = NULL;
    file->fd = -1;
    file->path = sdt_strdup(path);
    file->tmp = sdt_format("%s.tmp.XXXXXX", path);
    if (!file->path || !file->tmp) {
        release(file);
        *error = sdt_format("out of memory");
        return -1;
    }
    file->fd = mkstemp(file->tmp);
    if (file->fd < 0) {
        char *folder = folder_of(path);
        *error =
            sdt_format("cannot create a temporary file in %s: %s", folder ? folder : path, strerror(errno));
        free(folder);
        release(file);
        return -1;
    }
    /* A replaced file keeps its permissions; a new one gets the usual 0644. */
    struct stat old;
    mode_t mode = stat(path, &old) == 0 ? (old.st_mode & 07777) : 0644;
    if (fchmod(file->fd, mode) != 0) {
        *error = sdt_format("cannot set permissions of %s: %s", path, strerror(errno));
        sdt_atomic_abandon(file);
        return -1;
    }
    return 0;
}

int sdt_atomic_append(sdt_atomic_file *file, const void *data, size_t len, char **error)
{
    if (write_all(file->fd, data, len) != 0) {
        *error = sdt_format("cannot write %s: %s", file->path, strerror(errno));
        return -1;
    }
    return 0;
}

void sdt_atomic_abandon(sdt_atomic_file *file)
{
    if (file->fd >= 0)
        close(file->fd);
    if (file->tmp)
        unlink(file->tmp);
    release(file);
}

int sdt_atomic_commit(sdt_atomic_file *file, char **error)
{
    const char *step = NULL;
    int saved_errno = 0;
    if (fsync(file->fd) != 0) {
        step = "sync";
        saved_errno = errno;
    }
    if (close(file->fd) != 0 && !step) {
        step = "close";
        saved_errno = errno;
    }
    file->fd = -1;
    if (!step && rename(file->tmp, file->path) != 0) {
        step = "rename";
        saved_errno = errno;
    }
    if (step) {
        *error = sdt_format("cannot %s %s: %s", step, file->path, strerror(saved_errno));
        sdt_atomic_abandon(file);
        return -1;
    }
    /* The data is safe; the folder's fsync makes the new name survive a power cut. A failure here is
     * not worth failing the save for: the file is complete under one name or the other. */
    char *folder = folder_of(file->path);
    int dir_fd = folder ? open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (dir_fd >= 0) {
        (void)fsync(dir_fd);
        close(dir_fd);
    }
    free(folder);
    release(file);
    return 0;
}

int sdt_atomic_write(const char *path, const void *data, size_t len, char **error)
{
    sdt_atomic_file file;
    if (sdt_atomic_open(&file, path, error) != 0)
        return -1;
    if (sdt_atomic_append(&file, data, len, error) != 0) {
        sdt_atomic_abandon(&file);
        return -1;
    }
    return sdt_atomic_commit(&file, error);
}

int sdt_read_file(const char *path, size_t max_bytes, char **data, size_t *len, char **error)
{
    *data = NULL;
    *len = 0;
    *error = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *error = sdt_format("cannot open: %s", strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        *error = sdt_format("cannot stat: %s", strerror(errno));
        close(fd);
        return -1;
    }
    if (S_ISDIR(st.st_mode)) {
        *error = sdt_format("is a directory, not a file");
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        *error = sdt_format("is not a regular file");
        close(fd);
        return -1;
    }
    if ((unsigned long long)st.st_size > max_bytes) {
        *error =
            sdt_format("is too large (%lld bytes; at most %zu accepted)", (long long)st.st_size, max_bytes);
        close(fd);
        return -1;
    }
    size_t cap = (size_t)st.st_size + 1;
    char *buf = malloc(cap);
    if (!buf) {
        *error = sdt_format("out of memory");
        close(fd);
        return -1;
    }
    size_t got = 0;
    for (;;) {
        if (got + 1 >= cap) {
            /* The file grew while we read it; read on up to the limit. */
            if (cap > max_bytes) {
                *error = sdt_format("is too large (more than %zu bytes)", max_bytes);
                free(buf);
                close(fd);
                return -1;
            }
            char *bigger = realloc(buf, cap * 2);
            if (!bigger) {
                *error = sdt_format("out of memory");
                free(buf);
                close(fd);
                return -1;
            }
            buf = bigger;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + got, cap - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            *error = sdt_format("cannot read: %s", strerror(errno));
            free(buf);
            close(fd);
            return -1;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    *data = buf;
    *len = got;
    return 0;
}

int sdt_make_folders(const char *path, const char *what, char **error)
{
    char *copy = sdt_strdup(path);
    if (!copy)
        return sdt_set_error(error, "out of memory");
    /* Each prefix in turn; EEXIST is the usual answer for all but the last ones. */
    for (char *p = copy + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(copy, 0755) != 0 && errno != EEXIST) {
            sdt_set_error(error, "cannot create the %s folder %s: %s", what, copy, strerror(errno));
            free(copy);
            return -1;
        }
        *p = saved;
        if (saved == '\0')
            break;
    }
    free(copy);
    /* The last component may exist as something else (EEXIST above). */
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return sdt_set_error(error, "the %s folder %s is not a folder", what, path);
    return 0;
}
