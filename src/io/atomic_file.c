#include "sdtune/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sdtune/strutil.h"

static int write_all(int fd, const char *data, size_t len)
{
    while (len) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        data += n;
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

int sdt_atomic_write(const char *path, const void *data, size_t len, char **error)
{
    *error = NULL;
    char *tmp = sdt_format("%s.tmp.XXXXXX", path);
    char *folder = folder_of(path);
    if (!tmp || !folder) {
        free(tmp);
        free(folder);
        *error = sdt_format("out of memory");
        return -1;
    }
    int fd = mkstemp(tmp);
    if (fd < 0) {
        *error = sdt_format("cannot create a temporary file in %s: %s", folder, strerror(errno));
        free(tmp);
        free(folder);
        return -1;
    }
    struct stat old;
    mode_t mode = stat(path, &old) == 0 ? (old.st_mode & 07777) : 0644;
    const char *step = "write";
    if (fchmod(fd, mode) != 0)
        step = "set permissions of";
    else if (write_all(fd, data, len) != 0)
        step = "write";
    else if (fsync(fd) != 0)
        step = "sync";
    else
        step = NULL;
    int saved_errno = errno;
    if (close(fd) != 0 && !step) {
        step = "close";
        saved_errno = errno;
    }
    if (!step && rename(tmp, path) != 0) {
        step = "rename";
        saved_errno = errno;
    }
    if (step) {
        unlink(tmp);
        *error = sdt_format("cannot %s %s: %s", step, path, strerror(saved_errno));
        free(tmp);
        free(folder);
        return -1;
    }
    /* The data is safe; the folder's fsync makes the new name survive a power cut. A failure here is
     * not worth failing the save for: the file is complete under one name or the other. */
    int dir_fd = open(folder, O_RDONLY | O_DIRECTORY);
    if (dir_fd >= 0) {
        (void)fsync(dir_fd);
        close(dir_fd);
    }
    free(tmp);
    free(folder);
    return 0;
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
