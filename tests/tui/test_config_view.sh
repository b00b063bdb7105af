#!/usr/bin/env bash
# Drives sdtune's config view in tmux as a person would (with tests/tui/tui-drive) and checks what the
# screen shows: at 80x24, at 120x40 (and a resize back), with LANG=C (ASCII only) and with NO_COLOR;
# then the exit status of a missing config file.
#
# usage: test_config_view.sh SDTUNE_BINARY SOURCE_DIR        (exit 77: skipped, tmux is not installed)
set -euo pipefail

# shellcheck source=tui_test_setup.sh
source "$(dirname "$0")/tui_test_setup.sh" "$@"

config=$tmp/my-lora.toml
cat >"$config" <<'EOF'
[optimizer]
learning_rate = 5e-5
learnig_rte = 1
[dataset]
random_crop = true
[logging]
wandb_api_key = "hunter2-secret"
EOF

sections=(Model Folders Dataset Training Optimizer "LR schedule" Network "Noise & loss" Sampling Saving
          Logging "Precision & memory" Hardware Metadata)

# ---- 80x24, UTF-8 -------------------------------------------------------------------------------
start 80x24 "$sdtune" "$config"
expect "title bar names the file" '^ sdtune  my-lora\.toml .*engine: idle'
expect "title bar counts the problems" '^ sdtune  my-lora\.toml +2 errors, 1 warning'
for title in "${sections[@]}"; do
    expect "section list shows '$title'" "│[ ▶] $title "
done
expect "Model is selected first" '│▶ Model '
expect "Dataset counts its error" '│  Dataset +1✗│'
expect "Logging counts its warning" '│  Logging +1!│'
expect "key bar" '^1Help 2Save 3Find 4Run 5Start 6Stop 8Abort 10Quit'

"$drive" "$session" keys Down Down Down Down
expect "Down moves to Optimizer" '│▶ Optimizer '
expect "the form follows the section" '┌ Optimizer ─'
expect "the help line describes the section" '^ Optimizer: 10 settings'
"$drive" "$session" keys Tab
expect "Tab focuses the form" '^ optimizer_type: '
"$drive" "$session" keys Down
expect "learning_rate shows its value, marked changed" '│ learning_rate +\* 5e-05 '
expect "help line shows learning_rate's help" '^ learning_rate: base learning rate'
expect "the focused row spells out its problem" "✗ unknown key 'learnig_rte' in \[optimizer\]; did"
"$drive" "$session" keys j j j j j j j j j
expect "j moves down; the last row is block_lr" '^ block_lr: '
"$drive" "$session" keys g
expect "g goes to the first row" '^ optimizer_type: '

"$drive" "$session" keys F1
expect "F1 opens the help" '┌ Help ─'
expect "the help lists Quit from the key table" '^│ +F10 0 q +Quit'
expect "the help lists the unknown key" "unknown key 'learnig_rte' in \[optimizer\]; did you mean"
expect "the unknown key's suggestion" "'learning_rate'\?"
"$drive" "$session" keys Escape
expect "Esc closes the help" '^ optimizer_type: '
expect_not "Esc closes the help" 'Help ─'
"$drive" "$session" keys '?'
expect "? opens the help" '^│ +F10 0 q +Quit'
"$drive" "$session" keys Escape
expect "Esc closes the help again" '┌ Optimizer ─'

"$drive" "$session" keys BTab Down Down Down Down Down Down Tab Down Down Down Down
expect "Logging: the secret is masked" '│ wandb_api_key +\* •••• '
expect_not "the secret never shows" 'hunter2'
"$drive" "$session" keys h Up Up Up Up Up Up Up Up Tab
expect "Dataset form" '┌ Dataset ─.* 1/38 ─┐'
"$drive" "$session" keys G
expect "G scrolls to the end of a long section" '┌ Dataset ─.* 38/38 ─┐'
"$drive" "$session" keys PageUp
expect "PgUp pages up" '┌ Dataset ─.* (1[0-9]|20)/38 ─┐'

"$drive" "$session" keys q
expect_exit "q quits"

# ---- 120x40, then resized back to 80x24 ---------------------------------------------------------
start 120x40 "$sdtune" "$config"
expect "120x40: title bar" '^ sdtune  my-lora\.toml .* engine: idle$'
expect "120x40: the last section" '│  Metadata '
expect "120x40: long keys fit" '│ pretrained_model_name_or_path '
"$drive" "$session" keys F1
expect "120x40: the unknown key's problem on one line" \
    "unknown key 'learnig_rte' in \[optimizer\]; did you mean 'learning_rate'\?"
"$drive" "$session" keys Escape
expect "120x40: help closed" '┌ Sections ─'
"$drive" "$session" resize 80x24
expect "resize: long keys are cut with ~" '│ pretrained_model_name_or_p~ '
expect "resize: the box ends at column 80" '^└─+┘└─+┘$'
"$drive" "$session" keys F10
expect_exit "F10 quits"

# ---- LANG=C: ASCII only -------------------------------------------------------------------------
start 80x24 env LANG=C LC_ALL=C "$sdtune" "$config"
expect "ASCII: box" '^\+ Sections -+\+\+ Model -+\+$'
expect "ASCII: selection marker" '^\|> Model '
expect "ASCII: error marker" '^\|  Dataset +1x\|'
"$drive" "$session" keys Down Down Down Down
expect "ASCII: the help line" '^ Optimizer: 10 settings \| 1 error \| Tab'
"$drive" "$session" keys Tab Down
expect "ASCII: the focused row's problem" "x unknown key 'learnig_rte'"
if [ -z "$("$drive" "$session" shot | LC_ALL=C tr -d '\000-\177')" ]; then
    passed=$((passed + 1))
else
    report_failure "ASCII: expected no byte above 127 on the screen"
fi
"$drive" "$session" keys 0
expect_exit "0 (F10's alias) quits"

# ---- NO_COLOR -----------------------------------------------------------------------------------
start 80x24 env NO_COLOR=1 "$sdtune" "$config"
expect "NO_COLOR: the screen" '│  Dataset +1✗│'
"$drive" "$session" shot-ansi "$tmp/no-color.txt"
if grep -Eq $'\e\\[([0-9]+;)*(3[0-7]|4[0-7]|38;5;[0-9]+|48;5;[0-9]+)(;[0-9]+)*m' "$tmp/no-color.txt"; then
    report_failure "NO_COLOR: expected no colour escapes"
else
    passed=$((passed + 1))
fi
"$drive" "$session" keys q
expect_exit "NO_COLOR: q quits"

# ---- without a terminal -------------------------------------------------------------------------
status=0
"$sdtune" "$tmp/missing.toml" >"$tmp/out" 2>"$tmp/err" </dev/null || status=$?
check "missing config: exit status 1 (got $status)" test "$status" -eq 1
check "missing config: the message names the file" grep -q 'missing\.toml' "$tmp/err"
status=0
"$sdtune" --frobnicate >/dev/null 2>"$tmp/err" || status=$?
check "unknown option: exit status 2 (got $status)" test "$status" -eq 2
check "--version" grep -Eq '^sdtune [0-9]+\.[0-9]+\.[0-9]+$' <("$sdtune" --version)

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
