/* The key table: every key the UI understands, what it does, and how the help screen and the key bar
 * name it. The input handler, the `?` help screen and the bottom key bar all read this one table. */
#ifndef SDTUNE_TUI_KEYS_H
#define SDTUNE_TUI_KEYS_H

#include <stdbool.h>
#include <stddef.h>

typedef enum action {
    ACT_UP,
    ACT_DOWN,
    ACT_PAGE_UP,
    ACT_PAGE_DOWN,
    ACT_HOME,
    ACT_END,
    ACT_FOCUS_FORM,
    ACT_FOCUS_SECTIONS,
    ACT_HELP,
    ACT_CLOSE,
    ACT_QUIT,
    ACT_RUN, /* switch between the config view and the run view */
    ACT_START,
    ACT_STOP,
    ACT_ABORT,
    ACT_PAUSE, /* pause or resume */
    ACT_SAMPLE_NOW,
    ACT_SAVE_NOW,
    ACT_EDIT,    /* edit the focused setting (toggle a bool, pick an enum); sections: focus the form */
    ACT_DEFAULT, /* restore the focused setting's default */
    ACT_SAVE,
    ACT_FIND,      /* open the search line: settings, or the log in the run view */
    ACT_FIND_NEXT, /* the last search's next match */
    ACT_FIND_PREV,
    ACT_OPEN,    /* open another config (a path line with completion and the recent files) */
    ACT_SAVE_AS, /* save the config under another name */
} action;

typedef struct key_binding {
    int key;           /* a character or a curses KEY_* code */
    const char *name;  /* how the help screen spells the key */
    const char *label; /* what the action does; the same for every key of one action */
    action action;
    /* the config view's key bar label (on the F-key entry of an action, or on its letter when it has no
     * F-key); NULL: not there */
    const char *bar;
    const char *run_bar; /* the run view's key bar label (F-keys and letters); NULL when not in that bar */
} key_binding;

/* The table. Keys of one action are adjacent, the action's main key first. */
const key_binding *keys_table(size_t *count);
/* The binding of a key; NULL when the key does nothing. */
const key_binding *keys_find(int key);
/* False for the actions not available yet (shown dimmed). */
bool action_available(action a);

#endif
