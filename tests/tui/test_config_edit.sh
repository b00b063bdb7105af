#!/usr/bin/env bash
# Edits a config in sdtune's config view, driven in tmux at 80x24 (tests/tui/tui-drive): an out-of-range
# value shows its error inline and in the section's count as it is typed, is fixed; a bool toggles, an
# enum value is picked from its list, a default is restored; F2 saves, quitting asks about unsaved edits;
# the saved file has the new values and still validates with sdtune-engine.
#
# usage: test_config_edit.sh SDTUNE_BINARY SOURCE_DIR        (exit 77: skipped, tmux is not installed)
set -euo pipefail

# shellcheck source=tui_test_setup.sh
source "$(dirname "$0")/tui_test_setup.sh" "$@"

config=$tmp/edit-me.toml
cp "$src/config.toml" "$config"

start 80x24 "$sdtune" "$config"
expect "title bar names the file" '^ sdtune  edit-me\.toml  .*engine: idle'
expect_not "a fresh load has no unsaved mark" 'edit-me\.toml\*'

"$drive" "$session" keys Down Down Down Down Down Down
expect "Down x6 selects Network" '│▶ Network '
"$drive" "$session" keys Tab Down
expect "the form focuses network_dim" '^ network_dim: '
expect_not "Network starts clean" '│▶ Network +[0-9]'

# An out-of-range value: the error shows while typing, under the row and in the section's count.
"$drive" "$session" keys Enter C-u
"$drive" "$session" type 0
expect "editing shows its keys on the help line" '^ network_dim: Enter keeps · Esc puts the old value back'
expect "the error shows inline as it is typed" '✗ network_dim = 0 is not allowed: must be between'
expect "the section list counts the error" '│▶ Network +1✗'
expect "the title counts the error" 'edit-me\.toml  1 error'
"$drive" "$session" keys Enter
expect "an invalid value is kept after Enter" '│ network_dim +\* 0 '
expect "the title marks unsaved changes" '^ sdtune  edit-me\.toml\*'
# Fixed: the error goes away.
"$drive" "$session" keys Enter C-u
"$drive" "$session" type 16
"$drive" "$session" keys Enter
expect "the fixed value shows, marked changed" '│ network_dim +\* 16 '
expect_not "the section's error is gone" '│▶ Network +1✗'
expect_not "the title's error is gone" 'edit-me\.toml\*  1 error'

# Esc puts the old value back.
"$drive" "$session" keys Enter C-u
"$drive" "$session" type 99
"$drive" "$session" keys Escape
expect "Esc puts the old value back" '│ network_dim +\* 16 '

# A bool toggles with Space.
"$drive" "$session" keys Down Down Down Down Down
expect "the cursor is on network_train_unet_only" '^ network_train_unet_only: '
"$drive" "$session" keys Space
expect "Space toggles the bool" '│ network_train_unet_only +\* true '

# An enum opens a picker of the schema's values.
"$drive" "$session" keys g Enter
expect "the picker lists the values" '│ +lora_fa +│'
expect "the picker lists dylora" '│ +dylora +│'
"$drive" "$session" keys Down Enter
expect "the picked value shows, marked changed" '│ network_module +\* lora_fa '
expect_not "the picker closes" '│ +dylora +│'

# A default restored: network_alpha set, then d.
"$drive" "$session" keys Down Down Enter C-u
"$drive" "$session" type 4
"$drive" "$session" keys Enter
expect "network_alpha takes 4" '│ network_alpha +\* 4'
"$drive" "$session" keys d
expect "d restores the default" 'network_alpha: back to its default'
expect_not "the restored value is not marked changed" '│ network_alpha +\* '

# Quitting with unsaved changes asks; c cancels.
"$drive" "$session" keys q
expect "quit asks about unsaved changes" 'Save them\? y/n/c'
"$drive" "$session" keys c
expect "c cancels the quit" '^ sdtune  edit-me\.toml\*'

"$drive" "$session" keys F2
expect "F2 saves" 'Saved .*edit-me\.toml'
expect_not "the unsaved mark is gone" 'edit-me\.toml\*'
"$drive" "$session" keys q
end=$((SECONDS + 5))
while "$drive" "$session" alive && ((SECONDS < end)); do sleep 0.2; done
check "q quits without asking once saved" bash -c "! '$drive' '$session' alive"

check "saved network_dim" grep -q '^network_dim = 16$' "$config"
check "saved the bool" grep -q '^network_train_unet_only = true$' "$config"
check "saved the enum" grep -q '^network_module = "lora_fa"$' "$config"
check "network_alpha follows its default" bash -c "! grep -q '^network_alpha = ' '$config'"
check "the saved file validates" "$engine" validate "$config"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
