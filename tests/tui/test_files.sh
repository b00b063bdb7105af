#!/usr/bin/env bash
# Files in sdtune, driven in tmux at 80x24 (tests/tui/tui-drive) with HOME and XDG_STATE_HOME in a
# temporary folder: Tab completes a path setting ("~/" kept, a folder gets its '/', several matches are
# listed); W saves the config as a new file (the title follows, the file validates with sdtune-engine, the
# recent-files list has it first); o opens the first config again from the recent files; a broken TOML
# shows its error naming the file and line, and the config on screen stays.
#
# usage: test_files.sh SDTUNE_BINARY SOURCE_DIR        (exit 77: skipped, tmux is not installed)
set -euo pipefail

# shellcheck source=tui_test_setup.sh
source "$(dirname "$0")/tui_test_setup.sh" "$@"

home=$tmp/home
mkdir -p "$home/models/sub" "$home/work"
touch "$home/models/base m.ckpt" "$home/models/other.ckpt"
first=$home/work/first.toml
cp "$src/config.toml" "$first"
printf '[model]\nmodel_family = "sd1"\n[training\nlearning_rate = 1\n' >"$home/work/broken.toml"

cd "$home/work"
start 80x24 env HOME="$home" XDG_STATE_HOME="$tmp/state" "$sdtune" first.toml
expect "title bar names the file" '^ sdtune  first\.toml  .*engine: idle'
expect "the key bar has Open" 'oOpen'
check "loading records the config in the recent files" grep -qx "$first" "$tmp/state/sdtune/recent"

# Tab completion in a path setting: Model, the third setting is pretrained_model_name_or_path.
"$drive" "$session" keys Tab Down Down
expect "the form focuses the model path" '^ pretrained_model_name_or_path: '
"$drive" "$session" keys Enter C-u
"$drive" "$session" type '~/mo'
"$drive" "$session" keys Tab
expect "a unique folder completes with its /" 'pretrained_model_name_or_p~ \* ~/models/ +│'
"$drive" "$session" keys Tab
expect "several matches are listed" '3 matches:  base m\.ckpt  other\.ckpt  sub/'
"$drive" "$session" type 'b'
"$drive" "$session" keys Tab
expect "one match fills in the name" 'pretrained_model_name_or_p~ \* ~/models/base m\.ckpt +│'
"$drive" "$session" keys Enter
expect "the completed path is kept, no error" '^ pretrained_model_name_or_path: base model'
expect_not "the existing file is not an error" 'does not exist'

# Save as: W, a new name; the title follows and the unsaved mark goes.
"$drive" "$session" keys W
expect "W opens the save-as box" 'Save the config as'
expect "the path line starts with the current path" 'Path first\.toml'
"$drive" "$session" keys C-u
"$drive" "$session" type 'second.toml'
"$drive" "$session" keys Enter
expect "saved as the new name" 'Saved second\.toml'
expect "the title names the new file, saved" '^ sdtune  second\.toml  '
check "the new file has the completed path" \
    grep -qx 'pretrained_model_name_or_path = "~/models/base m.ckpt"' "$home/work/second.toml"
check "the new file validates" env HOME="$home" "$engine" validate "$home/work/second.toml"
check "the first file is untouched" cmp -s "$src/config.toml" "$first"
check "the recent files list the new file first" \
    bash -c "[ \"\$(head -1 '$tmp/state/sdtune/recent')\" = '$home/work/second.toml' ]"

# Save as onto an existing file asks first; n keeps it.
"$drive" "$session" keys W C-u
"$drive" "$session" type 'first.toml'
"$drive" "$session" keys Enter
expect "an existing file asks before it is replaced" 'first\.toml exists\. Replace it\? y/n'
"$drive" "$session" keys n
expect "n keeps it" 'Not saved'
"$drive" "$session" keys Escape
expect "Esc closes the box" '│  Optimizer '
expect_not "the box is gone" 'Save the config as'
check "the refused file is untouched" cmp -s "$src/config.toml" "$first"

# Open: the recent files are listed; Down picks the first config, Enter opens it.
"$drive" "$session" keys o
expect "o opens the open box at the config's folder" "Path $home/work/"
expect "the recent files are listed" "Recent files"
expect "the new file is first" "▶? +$home/work/second\.toml"
"$drive" "$session" keys Down Down
expect "Down picks the first config" "▶ $home/work/first\.toml"
"$drive" "$session" keys Enter
expect "the first config is open" '^ sdtune  first\.toml  '
expect "its model path is back" 'pretrained_model_name_or_p~ \* builtin:tiny-sd15'

# A broken TOML: the error names the file and line; the config stays.
"$drive" "$session" keys o C-u
"$drive" "$session" type "$home/work/bro"
"$drive" "$session" keys Tab
expect "Tab completes the file name" "Path $home/work/broken\.toml"
"$drive" "$session" keys Enter
expect "the error names the file and line" "broken\.toml:3:"
expect "the box says the config stays" 'Cannot open'
"$drive" "$session" keys Space Escape
expect "Esc closes the box" '│  Optimizer '
expect_not "the box is closed" 'Open a config'
expect "the current config stays" '^ sdtune  first\.toml  '

# Unsaved changes ask before another config opens; c cancels.
"$drive" "$session" keys Tab Down Down d
expect "an edit marks the config unsaved" '^ sdtune  first\.toml\*'
"$drive" "$session" keys o C-u
"$drive" "$session" type "$home/work/second.toml"
"$drive" "$session" keys Enter
expect "opening asks about the unsaved changes" 'first\.toml has unsaved changes\. Save them first\? y/n/c'
"$drive" "$session" keys c Escape
expect "c keeps the edited config" '^ sdtune  first\.toml\*'
"$drive" "$session" keys o C-u
"$drive" "$session" type "$home/work/second.toml"
"$drive" "$session" keys Enter n
expect "n discards the edits and opens" '^ sdtune  second\.toml  '

"$drive" "$session" keys q
expect_exit "q quits"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
