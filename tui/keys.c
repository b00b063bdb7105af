/* The key table (see keys.h). Digits alias the F-keys, as in htop, for terminals that eat F-keys. */
#include "keys.h"

#include <curses.h>

static const key_binding table[] = {
    {KEY_UP, "Up", "Previous setting (or section)", ACT_UP, NULL},
    {'k', "k", "Previous setting (or section)", ACT_UP, NULL},
    {KEY_DOWN, "Down", "Next setting (or section)", ACT_DOWN, NULL},
    {'j', "j", "Next setting (or section)", ACT_DOWN, NULL},
    {KEY_PPAGE, "PgUp", "One page up", ACT_PAGE_UP, NULL},
    {KEY_NPAGE, "PgDn", "One page down", ACT_PAGE_DOWN, NULL},
    {KEY_HOME, "Home", "First", ACT_HOME, NULL},
    {'g', "g", "First", ACT_HOME, NULL},
    {KEY_END, "End", "Last", ACT_END, NULL},
    {'G', "G", "Last", ACT_END, NULL},
    {'\t', "Tab", "Focus the settings of the section", ACT_FOCUS_FORM, NULL},
    {KEY_RIGHT, "Right", "Focus the settings of the section", ACT_FOCUS_FORM, NULL},
    {'l', "l", "Focus the settings of the section", ACT_FOCUS_FORM, NULL},
    {'\n', "Enter", "Focus the settings of the section", ACT_FOCUS_FORM, NULL},
    {'\r', "Enter", "Focus the settings of the section", ACT_FOCUS_FORM, NULL},
    {KEY_ENTER, "Enter", "Focus the settings of the section", ACT_FOCUS_FORM, NULL},
    {KEY_BTAB, "S-Tab", "Focus the section list", ACT_FOCUS_SECTIONS, NULL},
    {KEY_LEFT, "Left", "Focus the section list", ACT_FOCUS_SECTIONS, NULL},
    {'h', "h", "Focus the section list", ACT_FOCUS_SECTIONS, NULL},
    {KEY_F(1), "F1", "This help", ACT_HELP, "Help"},
    {'1', "1", "This help", ACT_HELP, NULL},
    {'?', "?", "This help", ACT_HELP, NULL},
    {KEY_F(2), "F2", "Save the config", ACT_SAVE, "Save"},
    {'2', "2", "Save the config", ACT_SAVE, NULL},
    {KEY_F(3), "F3", "Find a setting", ACT_FIND, "Find"},
    {'3', "3", "Find a setting", ACT_FIND, NULL},
    {KEY_F(4), "F4", "Switch to the run view", ACT_RUN, "Run"},
    {'4', "4", "Switch to the run view", ACT_RUN, NULL},
    {KEY_F(5), "F5", "Start training", ACT_START, "Start"},
    {'5', "5", "Start training", ACT_START, NULL},
    {KEY_F(6), "F6", "Stop training (saves first)", ACT_STOP, "Stop"},
    {'6', "6", "Stop training (saves first)", ACT_STOP, NULL},
    {KEY_F(8), "F8", "Abort training", ACT_ABORT, "Abort"},
    {'8', "8", "Abort training", ACT_ABORT, NULL},
    {27, "Esc", "Close this help", ACT_CLOSE, NULL},
    {KEY_F(10), "F10", "Quit", ACT_QUIT, "Quit"},
    {'0', "0", "Quit", ACT_QUIT, NULL},
    {'q', "q", "Quit", ACT_QUIT, NULL},
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

bool action_available(action a) { return a < ACT_SAVE; }
