/* The recent-files list (tui/recent_files.h) with XDG_STATE_HOME in a temporary folder: a missing file is
 * an empty list, adding puts a path first, a second add moves it up instead of repeating it, the list
 * keeps the newest RECENT_FILES_MAX, the file is written whole (atomically, no temporary file left) and
 * read back, junk lines are skipped, paths that no longer exist are left out of the shown list. */
#define _GNU_SOURCE /* asprintf */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "recent_files.h"
#include "unit/check.h"

static char base[] = "/tmp/sdtune-recent-XXXXXX";

static char *list_file(void)
{
    char *error = NULL, *file = recent_files_path(&error);
    free(error);
    return file;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void missing_is_empty(test_state *t)
{
    char *file = list_file();
    CHECK(t, file != NULL);
    char *expected = NULL;
    if (asprintf(&expected, "%s/sdtune/recent", base) > 0)
        CHECK_MSG(t, file && strcmp(file, expected) == 0, "%s", file ? file : "(null)");
    free(expected);
    recent_files r;
    char *error = NULL;
    CHECK(t, file && recent_files_load(&r, file, &error) == 0);
    CHECK(t, r.count == 0);
    recent_files_free(&r);
    free(error);
    free(file);
}

static void add_dedupe_cap(test_state *t)
{
    recent_files r = {0};
    CHECK(t, recent_files_add(&r, "/a.toml") == 0);
    CHECK(t, recent_files_add(&r, "/b.toml") == 0);
    CHECK(t, recent_files_add(&r, "/c.toml") == 0);
    CHECK(t, r.count == 3 && strcmp(r.paths[0], "/c.toml") == 0 && strcmp(r.paths[2], "/a.toml") == 0);
    CHECK(t, recent_files_add(&r, "/a.toml") == 0); /* moves up, not repeated */
    CHECK(t, r.count == 3);
    CHECK(t, strcmp(r.paths[0], "/a.toml") == 0 && strcmp(r.paths[1], "/c.toml") == 0 &&
                 strcmp(r.paths[2], "/b.toml") == 0);
    CHECK(t, recent_files_add(&r, "/a.toml") == 0); /* already first */
    CHECK(t, r.count == 3 && strcmp(r.paths[0], "/a.toml") == 0 && strcmp(r.paths[1], "/c.toml") == 0);
    for (int i = 0; i < RECENT_FILES_MAX + 5; i++) {
        char path[32];
        snprintf(path, sizeof path, "/n%02d.toml", i);
        CHECK(t, recent_files_add(&r, path) == 0);
    }
    CHECK(t, r.count == RECENT_FILES_MAX);
    char newest[32], oldest[32];
    snprintf(newest, sizeof newest, "/n%02d.toml", RECENT_FILES_MAX + 4);
    snprintf(oldest, sizeof oldest, "/n%02d.toml", 5);
    CHECK_MSG(t, strcmp(r.paths[0], newest) == 0, "%s", r.paths[0]);
    CHECK_MSG(t, strcmp(r.paths[RECENT_FILES_MAX - 1], oldest) == 0, "%s", r.paths[RECENT_FILES_MAX - 1]);
    /* Re-adding the oldest at a full list moves it up; nothing is dropped. */
    CHECK(t, recent_files_add(&r, oldest) == 0);
    CHECK(t, r.count == RECENT_FILES_MAX && strcmp(r.paths[0], oldest) == 0);
    recent_files_free(&r);
}

static void save_and_load(test_state *t)
{
    char *file = list_file();
    recent_files r = {0};
    recent_files_add(&r, "/x/one.toml");
    recent_files_add(&r, "/y/with space/二.toml");
    char *error = NULL;
    CHECK_MSG(t, file && recent_files_save(&r, file, &error) == 0, "%s", error ? error : "");
    free(error);
    recent_files_free(&r);

    char *data = NULL;
    FILE *f = file ? fopen(file, "r") : NULL;
    if (f) {
        data = calloc(1, 4096);
        if (data && fread(data, 1, 4095, f) == 0)
            data[0] = '\0';
        fclose(f);
    }
    CHECK_MSG(t, data && strcmp(data, "/y/with space/二.toml\n/x/one.toml\n") == 0, "%s", data ? data : "");
    free(data);

    /* No temporary file is left beside it. */
    char *dir_path = NULL;
    if (asprintf(&dir_path, "%s/sdtune", base) > 0) {
        DIR *dir = opendir(dir_path);
        int entries = 0;
        for (struct dirent *e; dir && (e = readdir(dir)) != NULL;)
            if (e->d_name[0] != '.')
                entries++;
        if (dir)
            closedir(dir);
        CHECK_MSG(t, entries == 1, "%d files in %s", entries, dir_path);
    }
    free(dir_path);

    CHECK(t, file && recent_files_load(&r, file, &error) == 0);
    CHECK(t, r.count == 2 && strcmp(r.paths[0], "/y/with space/二.toml") == 0 &&
                 strcmp(r.paths[1], "/x/one.toml") == 0);
    recent_files_free(&r);

    /* Junk lines and repeats are skipped; CRLF endings read. */
    if (file)
        write_text(file, "relative.toml\n\n/a.toml\r\n/a.toml\n   \n/b.toml");
    CHECK(t, file && recent_files_load(&r, file, &error) == 0);
    CHECK_MSG(t, r.count == 2, "%zu", r.count);
    CHECK(t, r.count == 2 && strcmp(r.paths[0], "/a.toml") == 0 && strcmp(r.paths[1], "/b.toml") == 0);
    recent_files_free(&r);
    free(error);
    free(file);
}

static void existing_and_record(test_state *t)
{
    char *config = NULL;
    if (asprintf(&config, "%s/real.toml", base) < 0)
        return;
    write_text(config, "");
    char *error = NULL;
    CHECK_MSG(t, recent_files_record(config, &error) == 0, "%s", error ? error : "");
    free(error);
    error = NULL;
    CHECK(t, recent_files_record("/no/such/config.toml", &error) == -1);
    CHECK_STR_CONTAINS(t, error, "/no/such/config.toml");
    free(error);
    error = NULL;

    char *file = list_file();
    recent_files r;
    CHECK(t, file && recent_files_load(&r, file, &error) == 0);
    CHECK(t, r.count == 3 && strcmp(r.paths[0], config) == 0); /* before /a.toml and /b.toml */
    recent_files_existing(&r);
    CHECK_MSG(t, r.count == 1 && strcmp(r.paths[0], config) == 0, "%zu", r.count);
    recent_files_free(&r);

    /* A list that cannot be read is an error naming it, never a crash. */
    if (file) {
        unlink(file);
        mkdir(file, 0755); /* a folder where the file should be */
        CHECK(t, recent_files_load(&r, file, &error) == -1);
        CHECK_STR_CONTAINS(t, error, "recent");
        CHECK(t, r.count == 0);
        free(error);
        error = NULL;
        CHECK(t, recent_files_record(config, &error) == -1);
        CHECK(t, error != NULL);
        free(error);
        rmdir(file);
    }
    free(file);
    free(config);
}

int main(void)
{
    if (!mkdtemp(base)) {
        perror("mkdtemp");
        return 1;
    }
    setenv("XDG_STATE_HOME", base, 1);
    static const test_case cases[] = {TEST(missing_is_empty), TEST(add_dedupe_cap), TEST(save_and_load),
                                      TEST(existing_and_record)};
    int rc = run_tests("recent_files", cases, sizeof cases / sizeof cases[0]);
    char *cleanup = NULL;
    if (asprintf(&cleanup, "rm -rf '%s'", base) > 0 && system(cleanup) != 0)
        fprintf(stderr, "could not remove %s\n", base);
    free(cleanup);
    return rc;
}
