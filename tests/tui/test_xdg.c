/* The XDG folders of the UI (tui/xdg.h): the variables, their fallbacks under $HOME, relative values
 * ignored, and the folder made on demand. */
#define _GNU_SOURCE /* asprintf */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unit/check.h"
#include "xdg.h"

#define CHECK_DIR(t, kind, expected)                                                                         \
    do {                                                                                                     \
        char *error_ = NULL, *dir_ = xdg_dir((kind), &error_);                                               \
        CHECK_MSG(t, dir_ &&strcmp(dir_, (expected)) == 0, "got \"%s\" (%s), expected \"%s\"",               \
                  dir_ ? dir_ : "(null)", error_ ? error_ : "", (expected));                                 \
        free(dir_);                                                                                          \
        free(error_);                                                                                        \
    } while (0)

static void variables_and_fallbacks(test_state *t)
{
    setenv("HOME", "/home/user", 1);
    setenv("XDG_CONFIG_HOME", "/cfg", 1);
    setenv("XDG_STATE_HOME", "/state", 1);
    CHECK_DIR(t, XDG_CONFIG, "/cfg/sdtune");
    CHECK_DIR(t, XDG_STATE, "/state/sdtune");
    unsetenv("XDG_CONFIG_HOME");
    setenv("XDG_STATE_HOME", "", 1);
    CHECK_DIR(t, XDG_CONFIG, "/home/user/.config/sdtune");
    CHECK_DIR(t, XDG_STATE, "/home/user/.local/state/sdtune");
    setenv("XDG_STATE_HOME", "relative/state", 1); /* the specification says: ignore it */
    CHECK_DIR(t, XDG_STATE, "/home/user/.local/state/sdtune");

    unsetenv("HOME");
    char *error = NULL, *dir = xdg_dir(XDG_STATE, &error);
    CHECK(t, dir == NULL);
    CHECK_STR_CONTAINS(t, error, "XDG_STATE_HOME");
    free(error);
    free(dir);
}

static void made_on_demand(test_state *t)
{
    char base[] = "/tmp/sdtune-xdg-XXXXXX";
    CHECK(t, mkdtemp(base) != NULL);
    setenv("XDG_STATE_HOME", base, 1);
    char *error = NULL, *dir = xdg_dir_make(XDG_STATE, &error);
    struct stat st;
    CHECK_MSG(t, dir && stat(dir, &st) == 0 && S_ISDIR(st.st_mode), "%s", error ? error : "not made");
    if (dir)
        rmdir(dir);
    free(dir);
    free(error);

    /* A file where the folder should be: the error names it. */
    char *blocker = NULL;
    if (asprintf(&blocker, "%s/sdtune", base) > 0) {
        FILE *f = fopen(blocker, "w");
        if (f)
            fclose(f);
        error = NULL;
        dir = xdg_dir_make(XDG_STATE, &error);
        CHECK(t, dir == NULL);
        CHECK_STR_CONTAINS(t, error, blocker);
        free(error);
        free(dir);
        unlink(blocker);
    }
    free(blocker);
    rmdir(base);
}

int main(void)
{
    static const test_case cases[] = {TEST(variables_and_fallbacks), TEST(made_on_demand)};
    return run_tests("xdg", cases, sizeof cases / sizeof cases[0]);
}
