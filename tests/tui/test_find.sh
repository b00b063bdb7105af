#!/usr/bin/env bash
# Searching in sdtune, driven in tmux at 80x24 (tests/tui/tui-drive). The config view: `/` opens the search
# line, typing moves the cursor to the best matching setting in another section as it is typed, Enter
# keeps it, n and N step through the matches (wrapping), Esc goes back to where the cursor was, a query
# that matches nothing says so. The run view: after a short run of the real engine, `/` searches the log,
# the view jumps to the hit and marks it, and a missing word is reported.
#
# usage: test_find.sh SDTUNE_BINARY SOURCE_DIR        (exit 77: skipped, tmux is not installed)
set -euo pipefail

# shellcheck source=tui_test_setup.sh
source "$(dirname "$0")/tui_test_setup.sh" "$@"

# A copy of config.toml training 12 steps of batch 1 into $tmp/find-out, without samples.
config=$(make_demo_config find-me 12 0)

start 80x24 "$sdtune" "$config"
expect "the config view shows" '^ sdtune  find-me\.toml'
expect "F3 is available in the key bar" '3Find'

# Incremental: the cursor lands on learning_rate in the Optimizer section while the query is typed.
"$drive" "$session" keys /
expect "/ opens the search line" '^ Find: +words of a setting'
"$drive" "$session" type "learning rate"
expect "the line counts the matches" '^ Find: learning rate +match 1/8: learning_rate'
expect "the section list follows the match" '│▶ Optimizer '
expect "the form shows the section" '┌ Optimizer '
"$drive" "$session" keys Enter
expect "Enter keeps the place and says so" '^ match 1/8: learning_rate \(n next, N previous\)'
# Right only focuses the form (it has the focus already), so the help line names the focused setting.
"$drive" "$session" keys Right
expect "the cursor is on learning_rate" '^ learning_rate: base learning rate'

# n and N step through the matches, wrapping; N from the first goes to the last, in another section.
"$drive" "$session" keys n
expect "n goes to the next match" '^ match 2/8: learning_rate_te '
"$drive" "$session" keys Right
expect "the cursor is on learning_rate_te" '^ learning_rate_te: text encoder learning rate'
"$drive" "$session" keys N N
expect "N wraps to the last match" '^ match 8/8: lr_scheduler '
expect "the last match is in LR schedule" '│▶ LR schedule '
"$drive" "$session" keys n
expect "n wraps to the first match" '^ match 1/8: learning_rate '
expect "back in Optimizer" '│▶ Optimizer '

# Esc goes back to where the cursor was before the line opened.
"$drive" "$session" keys F3
"$drive" "$session" type "network dim"
expect "F3 opens the line too; network_dim matches" '^ Find: network dim +match 1/[0-9]+: network_dim'
expect "the section list follows" '│▶ Network '
"$drive" "$session" keys Escape
expect "Esc goes back to Optimizer" '│▶ Optimizer '
expect_not "Esc closes the line" '^ Find: '
"$drive" "$session" keys Right
expect "the cursor is back on learning_rate" '^ learning_rate: base learning rate'

# A query that matches nothing: said on the line and after Enter; the cursor stays.
"$drive" "$session" keys 3
"$drive" "$session" type "xyzzy"
expect "no match is said on the line" "^ Find: xyzzy +no setting matches 'xyzzy'"
expect "the cursor stays" '│▶ Optimizer '
"$drive" "$session" keys Enter
expect "no match is said after Enter" "^ no setting matches 'xyzzy'"
"$drive" "$session" keys Right
expect "still on learning_rate" '^ learning_rate: base learning rate'

# ---- the run view: search the log of a finished run ---------------------------------------------
"$drive" "$session" keys F5
expect "the run ends" 'engine exited with code 0 \(done\)' 60
"$drive" "$session" keys /
expect "/ opens the log's search line" '^ Find in log: +Enter searches the log'
"$drive" "$session" keys Escape
"$drive" "$session" keys g
expect "g shows the log's first line" '│[0-9:]+ +warning: '
"$drive" "$session" keys /
"$drive" "$session" type "MODEL SAVED"
"$drive" "$session" keys Enter
expect "the hit is reported" "^ 'MODEL SAVED' in log line [0-9]+ of [0-9]+ \(n next, N previous\)"
expect_not "the view left the log's first line" '│[0-9:]+ +warning: '
expect "the hit line shows" '│[0-9:]+ model saved\. '
"$drive" "$session" shot-ansi "$tmp/hit.txt"
check "the match is shown in reverse video" grep -q $'\e\\[[0-9;]*7mmodel saved' "$tmp/hit.txt"
"$drive" "$session" keys n
expect "n finds it again (wrapping)" "^ 'MODEL SAVED' in log line"
"$drive" "$session" keys /
"$drive" "$session" type "zzqq"
"$drive" "$session" keys Enter
expect "a missing word is reported" "^ no log line matches 'zzqq'"

"$drive" "$session" keys q
expect_exit "q quits"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
