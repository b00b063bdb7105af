/* Files and folders for the tests that write some: a fresh temporary folder, rm -r, whole-file reads and
 * writes. Header-only; static inline, so a test that needs only some of them compiles without warnings. */
#ifndef SDTUNE_TESTS_UNIT_TEST_FILES_H
#define SDTUNE_TESTS_UNIT_TEST_FILES_H

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sdtune/atomic_file.h"
#include "sdtune/strutil.h"

/* A fresh folder $TMPDIR/sdt-<tag>-XXXXXX (/tmp when TMPDIR is unset); path gets its name. 0 or -1. */
static inline int test_make_temp_dir(char *path, size_t size, const char *tag)
{
    const char *base = getenv("TMPDIR");
    snprintf(path, size, "%s/sdt-%s-XXXXXX", base && base[0] ? base : "/tmp", tag);
    return mkdtemp(path) ? 0 : -1;
}

/* rm -r for the folders the tests make (plain files and folders only). */
static inline void test_remove_tree(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char *child = sdt_format("%s/%s", path, e->d_name);
            struct stat st;
            if (child && lstat(child, &st) == 0 && S_ISDIR(st.st_mode))
                test_remove_tree(child);
            else if (child)
                unlink(child);
            free(child);
        }
        closedir(d);
    }
    rmdir(path);
}

/* How many plain files below path (at any depth) have part in their name. */
static inline int test_count_files_named(const char *path, const char *part)
{
    int count = 0;
    DIR *d = opendir(path);
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *child = sdt_format("%s/%s", path, e->d_name);
        struct stat st;
        if (child && lstat(child, &st) == 0) {
            if (S_ISDIR(st.st_mode))
                count += test_count_files_named(child, part);
            else if (S_ISREG(st.st_mode) && strstr(e->d_name, part))
                count++;
        }
        free(child);
    }
    closedir(d);
    return count;
}

/* A whole file (the caller frees); NULL, with the reason on stderr, when it cannot be read. */
static inline char *test_read_file(const char *path, size_t *len)
{
    char *data = NULL, *error = NULL;
    if (sdt_read_file(path, (size_t)1 << 30, &data, len, &error) != 0) {
        fprintf(stderr, "%s: %s\n", path, error);
        free(error);
        return NULL;
    }
    return data;
}

/* Replaces a whole file with len bytes of data (a plain write: tests write many files). 0 or -1. */
static inline int test_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t put = fwrite(data, 1, len, f);
    return fclose(f) == 0 && put == len ? 0 : -1;
}

/* text (freed) with the TOML line `key = value` in [section], replacing the line or the commented default
 * there (as config.toml writes them); the caller frees the result. */
static inline char *test_toml_set_key(char *text, const char *section, const char *key, const char *value)
{
    sdt_buf out;
    sdt_buf_init(&out);
    char *header = sdt_format("[%s]", section);
    char *plain = sdt_format("%s = ", key), *commented = sdt_format("# %s = ", key);
    for (char *line = text; *line;) {
        char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) + 1 : strlen(line);
        bool drop =
            strncmp(line, plain, strlen(plain)) == 0 || strncmp(line, commented, strlen(commented)) == 0;
        if (!drop)
            sdt_buf_append(&out, line, len);
        if (strncmp(line, header, strlen(header)) == 0 && (line[strlen(header)] == '\n'))
            sdt_buf_printf(&out, "%s = %s\n", key, value);
        line += len;
    }
    free(header);
    free(plain);
    free(commented);
    free(text);
    return sdt_buf_take(&out);
}

#endif
