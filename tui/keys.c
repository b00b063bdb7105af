/* The key table (see keys.h). Digits alias the F-keys, as in htop, for terminals that eat F-keys. In the
 * run view the moving keys scroll the log and Left/Right (h/l) pick a sample (app.c). */
#include "keys.h"

#include <curses.h>

static const key_binding table[] = {
    {KEY_UP, "Up", "Previous row (run view: scroll the log)", ACT_UP, NULL, NULL},
    {'k', "k", "Previous row (run view: scroll the log)", ACT_UP, NULL, NULL},
    {KEY_DOWN, "Down", "Next row (run view: scroll the log)", ACT_DOWN, NULL, NULL},
    {'j', "j", "Next row (run view: scroll the log)", ACT_DOWN, NULL, NULL},
    {KEY_PPAGE, "PgUp", "One page up", ACT_PAGE_UP, NULL, NULL},
    {KEY_NPAGE, "PgDn", "One page down", ACT_PAGE_DOWN, NULL, NULL},
    {KEY_HOME, "Home", "First", ACT_HOME, NULL, NULL},
    {'g', "g", "First", ACT_HOME, NULL, NULL},
    {KEY_END, "End", "Last (run view: follow the log)", ACT_END, NULL, NULL},
    {'G', "G", "Last (run view: follow the log)", ACT_END, NULL, NULL},
    {'\t', "Tab", "Focus the settings (run view: older sample)", ACT_FOCUS_FORM, NULL, NULL},
    {KEY_RIGHT, "Right", "Focus the settings (run view: older sample)", ACT_FOCUS_FORM, NULL, NULL},
    {'l', "l", "Focus the settings (run view: older sample)", ACT_FOCUS_FORM, NULL, NULL},
    {'\n', "Enter", "Edit the setting; a bool toggles, an enum opens a list (run view: older sample)",
     ACT_EDIT, NULL, NULL},
    {'\r', "Enter", "Edit the setting; a bool toggles, an enum opens a list (run view: older sample)",
     ACT_EDIT, NULL, NULL},
    {KEY_ENTER, "Enter", "Edit the setting; a bool toggles, an enum opens a list (run view: older sample)",
     ACT_EDIT, NULL, NULL},
    {'e', "e", "Edit the setting; a bool toggles, an enum opens a list (run view: older sample)", ACT_EDIT,
     NULL, NULL},
    {' ', "Space", "Edit the setting; a bool toggles, an enum opens a list (run view: older sample)",
     ACT_EDIT, NULL, NULL},
    {'d', "d", "Restore the setting's default", ACT_DEFAULT, NULL, NULL},
    {KEY_DC, "Del", "Restore the setting's default", ACT_DEFAULT, NULL, NULL},
    {KEY_BTAB, "S-Tab", "Focus the sections (run view: newer sample)", ACT_FOCUS_SECTIONS, NULL, NULL},
    {KEY_LEFT, "Left", "Focus the sections (run view: newer sample)", ACT_FOCUS_SECTIONS, NULL, NULL},
    {'h', "h", "Focus the sections (run view: newer sample)", ACT_FOCUS_SECTIONS, NULL, NULL},
    {KEY_F(1), "F1", "This help", ACT_HELP, "Help", "Help"},
    {'1', "1", "This help", ACT_HELP, NULL, NULL},
    {'?', "?", "This help", ACT_HELP, NULL, NULL},
    {KEY_F(2), "F2", "Save the config", ACT_SAVE, "Save", NULL},
    {'2', "2", "Save the config", ACT_SAVE, NULL, NULL},
    {'w', "w", "Save the config", ACT_SAVE, NULL, NULL},
    {KEY_F(3), "F3", "Find a setting by name or help (run view: the log)", ACT_FIND, "Find", "Find"},
    {'3', "3", "Find a setting by name or help (run view: the log)", ACT_FIND, NULL, NULL},
    {'/', "/", "Find a setting by name or help (run view: the log)", ACT_FIND, NULL, NULL},
    {'n', "n", "Next match of the last search", ACT_FIND_NEXT, NULL, NULL},
    {'N', "N", "Previous match of the last search", ACT_FIND_PREV, NULL, NULL},
    {KEY_F(4), "F4", "Switch between the config and the run view", ACT_RUN, "Run", "Config"},
    {'4', "4", "Switch between the config and the run view", ACT_RUN, NULL, NULL},
    {KEY_F(5), "F5", "Start training the config", ACT_START, "Start", "Start"},
    {'5', "5", "Start training the config", ACT_START, NULL, NULL},
    {KEY_F(6), "F6", "Stop training (saves first; asks)", ACT_STOP, "Stop", "Stop"},
    {'6', "6", "Stop training (saves first; asks)", ACT_STOP, NULL, NULL},
    {KEY_F(7), "F7", "Pause or resume training", ACT_PAUSE, NULL, "Pause"},
    {'7', "7", "Pause or resume training", ACT_PAUSE, NULL, NULL},
    {'p', "p", "Pause or resume training", ACT_PAUSE, NULL, NULL},
    {KEY_F(8), "F8", "Abort training (no save; asks)", ACT_ABORT, "Abort", "Abort"},
    {'8', "8", "Abort training (no save; asks)", ACT_ABORT, NULL, NULL},
    {'s', "s", "Sample images after this step", ACT_SAMPLE_NOW, NULL, "Sample"},
    {'S', "S", "Save the model after this step", ACT_SAVE_NOW, NULL, "Save"},
    {27, "Esc", "Back: close this help, or leave the run view", ACT_CLOSE, NULL, NULL},
    {KEY_F(10), "F10", "Quit (asks while training)", ACT_QUIT, "Quit", "Quit"},
    {'0', "0", "Quit (asks while training)", ACT_QUIT, NULL, NULL},
    {'q', "q", "Quit (asks while training)", ACT_QUIT, NULL, NULL},
    /* Letters in the config view's key bar come after its F-keys. */
    {'o', "o", "Open a config (a path, or one of the recent files)", ACT_OPEN, "Open", NULL},
    {'W', "W", "Save the config as...", ACT_SAVE_AS, NULL, NULL},
};

const key_binding *keys_table(size_t *count)
{
    *count = sizeof table / sizeof table[0];
    return table;
}

const key_binding *keys_find(int key)
{
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (table[i].key == key)
            return &table[i];
    return NULL;
}

bool action_available(action a)
{
    (void)a; /* every action is available now; the dimmed look stays for the ones still to come */
    return true;
}
