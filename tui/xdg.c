/* XDG base directories (see xdg.h). */
#include "xdg.h"

#include <stdlib.h>

#include "sdtune/atomic_file.h"
#include "sdtune/strutil.h"

char *xdg_dir(xdg_kind kind, char **error)
{
    const char *variable = kind == XDG_CONFIG ? "XDG_CONFIG_HOME" : "XDG_STATE_HOME";
    const char *fallback = kind == XDG_CONFIG ? ".config" : ".local/state";
    const char *base = getenv(variable);
    char *dir;
    if (base && base[0] == '/') {
        dir = sdt_format("%s/sdtune", base);
    } else {
        const char *home = getenv("HOME");
        if (!home || home[0] != '/') {
            sdt_set_error(error, "neither $%s nor $HOME is an absolute path", variable);
            return NULL;
        }
        dir = sdt_format("%s/%s/sdtune", home, fallback);
    }
    if (!dir)
        sdt_set_error(error, "out of memory");
    return dir;
}

char *xdg_dir_make(xdg_kind kind, char **error)
{
    char *dir = xdg_dir(kind, error);
    if (dir && sdt_make_folders(dir, kind == XDG_CONFIG ? "settings" : "state", error) != 0) {
        free(dir);
        return NULL;
    }
    return dir;
}
