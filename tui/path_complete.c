/* Path completion (see path_complete.h). */
#include "path_complete.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sdtune/strutil.h"

/* The folder to read for the folder part (dir_len bytes, ending in '/') of text. */
static char *lookup_folder(const char *text, size_t dir_len, const char *base_dir)
{
    const char *home = getenv("HOME");
    if (dir_len == 0)
        return sdt_format("%s", base_dir ? base_dir : ".");
    if (text[0] == '~' && text[1] == '/' && home && home[0])
        return sdt_format("%s%.*s", home, (int)(dir_len - 1), text + 1);
    if (text[0] == '/' || !base_dir)
        return sdt_format("%.*s", (int)dir_len, text);
    return sdt_format("%s/%.*s", base_dir, (int)dir_len, text);
}

static int by_name(const void *x, const void *y) { return strcmp(*(char *const *)x, *(char *const *)y); }

/* Adds name (with a '/' when it is a folder) to out->names, growing it; -1 when out of memory. */
static int add_match(path_matches *out, size_t *cap, const char *name, bool folder)
{
    if (out->total == *cap) {
        size_t n = *cap ? *cap * 2 : 16;
        char **names = realloc(out->names, n * sizeof *names);
        if (!names)
            return -1;
        out->names = names;
        *cap = n;
    }
    char *copy = sdt_format("%s%s", name, folder ? "/" : "");
    if (!copy)
        return -1;
    out->names[out->total++] = copy;
    return 0;
}

/* Reads the matching entries of folder into out->names (all of them; out->total counts them). */
static int read_matches(path_matches *out, const char *folder, const char *start)
{
    DIR *dir = opendir(folder);
    if (!dir)
        return 0; /* missing or unreadable: nothing matches */
    size_t start_len = strlen(start), cap = 0;
    bool hidden = start[0] == '.';
    int rc = 0;
    for (struct dirent *e; (e = readdir(dir)) != NULL;) {
        const char *name = e->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || (name[0] == '.' && !hidden) ||
            strncmp(name, start, start_len) != 0)
            continue;
        struct stat st; /* follows links: a link to a folder completes as a folder */
        bool folder = fstatat(dirfd(dir), name, &st, 0) == 0 && S_ISDIR(st.st_mode);
        if (add_match(out, &cap, name, folder) != 0) {
            rc = -1;
            break;
        }
    }
    closedir(dir);
    return rc;
}

/* Bytes the names share from the start, not ending inside a UTF-8 character. */
static size_t common_prefix(char *const *names, size_t n, size_t at_least)
{
    size_t len = strlen(names[0]);
    for (size_t i = 1; i < n; i++) {
        size_t k = 0;
        while (k < len && names[i][k] == names[0][k])
            k++;
        len = k;
    }
    while (len > at_least && ((unsigned char)names[0][len] & 0xC0) == 0x80)
        len--;
    return len;
}

int path_complete(const char *text, const char *base_dir, path_matches *out)
{
    memset(out, 0, sizeof *out);
    if (strcmp(text, "~") == 0) { /* the home folder itself: the shell's "~" Tab gives "~/" */
        out->completed = sdt_format("~/");
        return out->completed ? 0 : -1;
    }
    const char *slash = strrchr(text, '/');
    size_t dir_len = slash ? (size_t)(slash - text) + 1 : 0;
    const char *start = text + dir_len;
    char *folder = lookup_folder(text, dir_len, base_dir);
    if (!folder || read_matches(out, folder, start) != 0) {
        free(folder);
        path_matches_free(out);
        return -1;
    }
    free(folder);
    if (out->total == 0) {
        out->completed = sdt_format("%s", text);
        return out->completed ? 0 : -1;
    }
    qsort(out->names, out->total, sizeof *out->names, by_name);
    size_t shared = common_prefix(out->names, out->total, strlen(start));
    out->completed = sdt_format("%.*s%.*s", (int)dir_len, text, (int)shared, out->names[0]);
    /* Only the first PATH_COMPLETE_MAX_LISTED are kept for the list. */
    out->count = out->total < PATH_COMPLETE_MAX_LISTED ? out->total : PATH_COMPLETE_MAX_LISTED;
    for (size_t i = out->count; i < out->total; i++) {
        free(out->names[i]);
        out->names[i] = NULL;
    }
    if (!out->completed) {
        path_matches_free(out);
        return -1;
    }
    return 0;
}

void path_matches_free(path_matches *m)
{
    for (size_t i = 0; m->names && i < m->total; i++) /* the unlisted ones are NULL */
        free(m->names[i]);
    free(m->names);
    free(m->completed);
    memset(m, 0, sizeof *m);
}
