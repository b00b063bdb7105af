/* Path completion (tui/path_complete.h) in a temporary folder: a unique match completes fully (a folder
 * gets its '/'), several complete to their common prefix and are listed, no match, "~/" expansion, a
 * missing or unreadable folder, hidden entries, names with spaces and UTF-8, and the listing cap. */
#define _GNU_SOURCE /* asprintf */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "path_complete.h"
#include "unit/check.h"

static char base[] = "/tmp/sdtune-complete-XXXXXX";

static void make_file(const char *name)
{
    char *path = NULL;
    if (asprintf(&path, "%s/%s", base, name) < 0)
        return;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0)
        close(fd);
    free(path);
}

static void make_folder(const char *name)
{
    char *path = NULL;
    if (asprintf(&path, "%s/%s", base, name) < 0)
        return;
    mkdir(path, 0755);
    free(path);
}

/* Completes text (relative to base when relative) and checks the result and the number of matches. */
#define CHECK_COMPLETE(t, text, expected, matches)                                                           \
    do {                                                                                                     \
        path_matches m_;                                                                                     \
        int rc_ = path_complete((text), base, &m_);                                                          \
        CHECK(t, rc_ == 0);                                                                                  \
        CHECK_MSG(t, m_.completed &&strcmp(m_.completed, (expected)) == 0,                                   \
                  "\"%s\" -> \"%s\", expected \"%s\"", (text), m_.completed ? m_.completed : "(null)",       \
                  (expected));                                                                               \
        CHECK_MSG(t, m_.total == (size_t)(matches), "\"%s\": %zu matches, expected %d", (text), m_.total,    \
                  (int)(matches));                                                                           \
        path_matches_free(&m_);                                                                              \
    } while (0)

static void unique_and_several(test_state *t)
{
    CHECK_COMPLETE(t, "conf", "configs/", 1); /* a folder gets its '/' */
    CHECK_COMPLETE(t, "configs/b", "configs/base.toml", 1);
    CHECK_COMPLETE(t, "configs/", "configs/", 3);
    CHECK_COMPLETE(t, "configs/l", "configs/lora_", 2);
    CHECK_COMPLETE(t, "nothing", "nothing", 0);
    CHECK_COMPLETE(t, "configs/x", "configs/x", 0);

    path_matches m;
    CHECK(t, path_complete("configs/", base, &m) == 0);
    CHECK(t, m.count == 3);
    if (m.count == 3) { /* sorted, folders marked */
        CHECK(t, strcmp(m.names[0], "base.toml") == 0);
        CHECK(t, strcmp(m.names[1], "lora_a.toml") == 0);
        CHECK(t, strcmp(m.names[2], "lora_b/") == 0);
    }
    path_matches_free(&m);

    /* An absolute text ignores the base folder. */
    char *text = NULL, *expected = NULL;
    if (asprintf(&text, "%s/configs/base", base) > 0 && asprintf(&expected, "%s/configs/base.toml", base) > 0)
        CHECK_COMPLETE(t, text, expected, 1);
    free(text);
    free(expected);
}

static void hidden_entries(test_state *t)
{
    CHECK_COMPLETE(t, "", "", 3); /* configs/, my data/, 日本語.toml; not .hidden */
    CHECK_COMPLETE(t, ".", ".hidden", 1);
    CHECK_COMPLETE(t, "..", "..", 0); /* "." and ".." are never listed */
}

static void spaces_and_utf8(test_state *t)
{
    CHECK_COMPLETE(t, "my", "my data/", 1);
    CHECK_COMPLETE(t, "my data/", "my data/", 2);
    CHECK_COMPLETE(t, "my data/a b", "my data/a b c.png", 1);
    CHECK_COMPLETE(t, "日", "日本語.toml", 1);
    /* Two names that share the first byte of a character, not the character: no half character. */
    make_file("my data/\xc3\xa9t\xc3\xa9");               /* été */
    make_file("my data/\xc3\xa8re");                      /* ère: shares the byte 0xc3 with é */
    CHECK_COMPLETE(t, "my data/\xc3", "my data/\xc3", 2); /* typed half: nothing more added */
    CHECK_COMPLETE(t, "my data/\xc3\xa9", "my data/\xc3\xa9t\xc3\xa9", 1);
    path_matches m;
    CHECK(t, path_complete("my data/", base, &m) == 0);
    CHECK_MSG(t, m.completed && strcmp(m.completed, "my data/") == 0, "%s", m.completed ? m.completed : "");
    path_matches_free(&m);
}

static void home_expansion(test_state *t)
{
    char *old_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    setenv("HOME", base, 1);
    CHECK_COMPLETE(t, "~/conf", "~/configs/", 1);
    CHECK_COMPLETE(t, "~/configs/lora_b", "~/configs/lora_b/", 1);
    CHECK_COMPLETE(t, "~", "~/", 0);
    if (old_home)
        setenv("HOME", old_home, 1);
    free(old_home);
}

static void missing_and_unreadable(test_state *t)
{
    CHECK_COMPLETE(t, "no/such/folder/x", "no/such/folder/x", 0);
    CHECK_COMPLETE(t, "configs/base.toml/x", "configs/base.toml/x", 0); /* a file, not a folder */
    char *locked = NULL;
    if (asprintf(&locked, "%s/locked", base) > 0) {
        mkdir(locked, 0755);
        make_file("locked/inside");
        chmod(locked, 0);
        /* root reads it anyway; then it simply matches */
        path_matches m;
        CHECK(t, path_complete("locked/", base, &m) == 0);
        CHECK(t, m.completed != NULL);
        CHECK(t, geteuid() == 0 || m.total == 0);
        path_matches_free(&m);
        chmod(locked, 0755);
    }
    free(locked);
}

static void capped_listing(test_state *t)
{
    make_folder("many");
    for (int i = 0; i < PATH_COMPLETE_MAX_LISTED + 50; i++) {
        char name[64];
        snprintf(name, sizeof name, "many/item%04d", i);
        make_file(name);
    }
    path_matches m;
    CHECK(t, path_complete("many/i", base, &m) == 0);
    CHECK(t, m.total == PATH_COMPLETE_MAX_LISTED + 50);
    CHECK(t, m.count == PATH_COMPLETE_MAX_LISTED);
    CHECK_MSG(t, m.completed && strcmp(m.completed, "many/item0") == 0, "%s", m.completed ? m.completed : "");
    CHECK(t, m.count > 0 && strcmp(m.names[0], "item0000") == 0);
    path_matches_free(&m);
}

int main(void)
{
    if (!mkdtemp(base)) {
        perror("mkdtemp");
        return 1;
    }
    make_folder("configs");
    make_file("configs/base.toml");
    make_file("configs/lora_a.toml");
    make_folder("configs/lora_b");
    make_folder("my data");
    make_file("my data/a b c.png");
    make_file("my data/other.png");
    make_file("\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e.toml"); /* 日本語.toml */
    make_file(".hidden");
    static const test_case cases[] = {TEST(unique_and_several),     TEST(hidden_entries),
                                      TEST(spaces_and_utf8),        TEST(home_expansion),
                                      TEST(missing_and_unreadable), TEST(capped_listing)};
    int rc = run_tests("path_complete", cases, sizeof cases / sizeof cases[0]);
    char *cleanup = NULL;
    if (asprintf(&cleanup, "rm -rf '%s'", base) > 0 && system(cleanup) != 0)
        fprintf(stderr, "could not remove %s\n", base);
    free(cleanup);
    return rc;
}
