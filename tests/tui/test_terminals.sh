#!/usr/bin/env bash
# Drives sdtune's config view in tmux (tests/tui/tui-drive) under the terminals it must work in:
# TERM=xterm-256color, TERM=xterm (8 colours) and NO_COLOR, at 80x24 and 200x60, with the dark, light and
# high-contrast themes. Checks that the layout is complete, that the colours are the theme's (the escape
# codes before the section list's error count), 8 colours only under TERM=xterm and none under NO_COLOR;
# the theme from the settings file, and its fallback; the run view under the light theme; and the errors
# of --theme (an unknown name, a bad colour in a file) before the screen is taken.
#
# usage: test_terminals.sh SDTUNE_BINARY SOURCE_DIR        (exit 77: skipped, tmux is not installed)
set -euo pipefail

# shellcheck source=tui_test_setup.sh
source "$(dirname "$0")/tui_test_setup.sh" "$@"

config=$tmp/cfg.toml
cat >"$config" <<'EOF'
[optimizer]
learning_rate = 5e-5
learnig_rte = 1
[dataset]
random_crop = true
EOF
# An empty settings folder, so no settings file of the person running the tests is read.
xdg=$tmp/xdg
mkdir -p "$xdg/sdtune"

shot=$tmp/shot.txt # the last capture with escape codes

# start SIZE [VAR=VALUE...] -- [SDTUNE ARGS...]: sdtune on the test's config in a fresh session.
start() {
    local size=$1
    shift
    local vars=()
    while [ "$1" != -- ]; do
        vars+=("$1")
        shift
    done
    shift
    session=sdtune-terms-$$-${#sessions[@]}
    sessions+=("$session")
    "$drive" "$session" start "$size" env "XDG_CONFIG_HOME=$xdg" "${vars[@]}" "$sdtune" "$@" "$config"
}

# capture: the screen with its escape codes into $shot, once the view is drawn.
capture() {
    expect "the view is drawn" '^1Help '
    "$drive" "$session" shot-ansi "$shot"
}

# escapes_before TEXT: the escape codes right before the first TEXT in $shot, with ESC written as "^[".
escapes_before() {
    local line
    line=$(grep -m1 -F -- "$1" "$shot") || return 0
    local prefix=${line%%"$1"*} re=$'(\e\\[[0-9;]*m)+$'
    if [[ $prefix =~ $re ]]; then
        local codes=${BASH_REMATCH[0]}
        printf '%s' "${codes//$'\e'/^[}"
    fi
}

# has_colour_escapes: $shot has an escape code that sets a colour.
has_colour_escapes() {
    grep -Eq $'\e\\[([0-9]+;)*(3[0-7]|4[0-7]|9[0-7]|10[0-7]|38;5;[0-9]+|48;5;[0-9]+)(;[0-9]+)*m' "$shot"
}

no_colour_escapes() { ! has_colour_escapes; }
# no_escapes_like REGEX: $shot has no escape code matching REGEX (grep -E).
no_escapes_like() { ! grep -Eq "$1" "$shot"; }

# contains WHAT TEXT PART: TEXT has PART.
contains() {
    if [[ $2 == *"$3"* ]]; then
        passed=$((passed + 1))
    else
        echo "FAIL: $1: expected '$3' in '$2'"
        failed=$((failed + 1))
    fi
}

# layout SIZE: the title bar, the section list, the form, the help line and the key bar are all there.
layout() {
    local size=$1
    expect "$size: title bar" '^ sdtune  cfg\.toml  2 errors.*engine: idle$'
    expect "$size: the first section, selected" '│▶ Model '
    expect "$size: the last section" '│  Metadata '
    expect "$size: Dataset counts its error" '│  Dataset +1✗│'
    expect "$size: the form's box" '┌ Sections ─+┐┌ Model ─+┐$'
    expect "$size: the form's rows" '│ training_type +lora '
    expect "$size: the help line" '^ Model: 13 settings'
    expect "$size: the key bar" '^1Help 2Save 3Find 4Run 5Start 6Stop 8Abort 10Quit'
    if [ "$size" = 200x60 ]; then
        # The extra space is used: boxes down to row 58 and across all 200 columns, long keys whole.
        check "200x60: the boxes end on row 58, 200 columns wide" \
            grep -Eq '^└(─){26}┘└(─){170}┘$' <("$drive" "$session" shot | sed -n 58p)
        expect "200x60: long keys fit" '│ pretrained_model_name_or_path +│'
    else
        check "80x24: the boxes end on row 22, 80 columns wide" \
            grep -Eq '^└(─){22}┘└(─){54}┘$' <("$drive" "$session" shot | sed -n 22p)
    fi
}

# ---- 256 colours -------------------------------------------------------------------------------------
start 80x24 -- --theme dark
layout 80x24
capture
dark_error=$(escapes_before '1✗')
contains "dark, 256: the error count is red" "$dark_error" '31m'
check "dark, 256: a colour escape" has_colour_escapes
"$drive" "$session" keys q
expect_exit "dark: q quits"

start 80x24 -- --theme light
layout 80x24
capture
light_error=$(escapes_before '1✗')
contains "light, 256: the error count is dark red (124)" "$light_error" '38;5;124m'
contains "light, 256: the key bar's labels are on cyan (80)" "$(escapes_before 'Help')" '48;5;80m'
# The run view under the light theme: its title bar is drawn in the theme's blue, reversed.
"$drive" "$session" keys F4
expect "light: the run view" '^ sdtune  cfg\.toml   NO RUN'
expect "light: the run view's engine line" 'No run yet: F5'
"$drive" "$session" shot-ansi "$shot"
run_title=$(escapes_before ' sdtune  cfg.toml   NO RUN')
contains "light: the run view's title is reversed" "$run_title" '7m'
contains "light: the run view's title is blue (25)" "$run_title" '38;5;25m'
"$drive" "$session" keys q
expect_exit "light: q quits"

start 200x60 -- --theme high-contrast
layout 200x60
capture
contrast_error=$(escapes_before '1✗')
contains "high-contrast, 256: the error count is bright white" "$contrast_error" '97m'
contains "high-contrast, 256: on red" "$contrast_error" '41m'
check "the three themes colour errors differently" \
    test "$dark_error" != "$light_error" -a "$light_error" != "$contrast_error" -a "$dark_error" != "$contrast_error"
"$drive" "$session" keys q
expect_exit "high-contrast: q quits"

# ---- 8 colours (TERM=xterm) --------------------------------------------------------------------------
start 80x24 TERM=xterm -- --theme light
layout 80x24
capture
contains "light, 8 colours: dark red becomes red" "$(escapes_before '1✗')" '31m'
contains "light, 8 colours: 80 becomes cyan" "$(escapes_before 'Help')" '46m'
check "light, 8 colours: colours" has_colour_escapes
check "light, 8 colours: no 256-colour escapes" no_escapes_like '38;5;|48;5;'
"$drive" "$session" keys q
expect_exit "light, 8 colours: q quits"

start 200x60 TERM=xterm -- --theme dark
layout 200x60
capture
contains "dark, 8 colours: red errors" "$(escapes_before '1✗')" '31m'
check "dark, 8 colours: no 256-colour escapes" no_escapes_like '38;5;|48;5;'
"$drive" "$session" keys q
expect_exit "dark, 8 colours: q quits"

start 80x24 TERM=xterm -- --theme high-contrast
layout 80x24
capture
hc8=$(escapes_before '1✗')
contains "high-contrast, 8 colours: on red" "$hc8" '41m'
contains "high-contrast, 8 colours: bright white is white and bold" "$hc8" '1m'
check "high-contrast, 8 colours: no bright or 256-colour escapes" \
    no_escapes_like $'38;5;|48;5;|\e\\[(9[0-7]|10[0-7])m'
"$drive" "$session" keys q
expect_exit "high-contrast, 8 colours: q quits"

# ---- no colour ---------------------------------------------------------------------------------------
start 80x24 NO_COLOR=1 -- --theme light
layout 80x24
capture
check "NO_COLOR, light: no colour escapes" no_colour_escapes
contains "NO_COLOR: errors are bold" "$(escapes_before '1✗')" '1m'
contains "NO_COLOR: the selected section is reversed" "$(escapes_before '▶ Model')" '7m'
contains "NO_COLOR: the key bar's labels are reversed" "$(escapes_before 'Help')" '7m'
"$drive" "$session" keys q
expect_exit "NO_COLOR, light: q quits"

start 200x60 TERM=xterm -- --no-color --theme high-contrast
layout 200x60
capture
check "--no-color, high-contrast: no colour escapes" no_colour_escapes
contains "--no-color: errors are bold" "$(escapes_before '1✗')" '1m'
"$drive" "$session" keys q
expect_exit "--no-color: q quits"

# ---- the settings file -------------------------------------------------------------------------------
printf 'theme = "light"\ncolour = 1\n' >"$xdg/sdtune/tui.toml"
start 80x24 --
expect "settings: an unknown key is a message" "tui\.toml:2: unknown key 'colour'"
capture
contains "settings: the file's theme (light)" "$(escapes_before '1✗')" '38;5;124m'
"$drive" "$session" keys q
expect_exit "settings: q quits"

printf 'theme = "nowhere"\n' >"$xdg/sdtune/tui.toml"
start 80x24 --
expect "settings: a bad theme falls back to dark, with a message" "using the dark theme: no theme 'nowhere'"
capture
contains "settings: the dark theme's red" "$(escapes_before '1✗')" '[31m'
"$drive" "$session" keys q
expect_exit "settings, bad theme: q quits"
rm "$xdg/sdtune/tui.toml"

# ---- --theme errors, before the screen is taken ------------------------------------------------------
status=0
XDG_CONFIG_HOME=$xdg "$sdtune" --theme no-such-theme "$config" </dev/null >"$tmp/out" 2>"$tmp/err" || status=$?
check "--theme no-such-theme: exit status 2 (got $status)" test "$status" -eq 2
check "--theme no-such-theme: the message names it" grep -q "no theme 'no-such-theme'" "$tmp/err"
check "--theme no-such-theme: the screen is not taken" test ! -s "$tmp/out"
printf 'name = "bad"\n\n[warning]\nfg = "purple"\n' >"$tmp/bad.toml"
status=0
"$sdtune" --theme "$tmp/bad.toml" "$config" </dev/null >"$tmp/out" 2>"$tmp/err" || status=$?
check "a bad colour: exit status 2 (got $status)" test "$status" -eq 2
check "a bad colour: the file, line and key" grep -qF "$tmp/bad.toml:4: warning.fg: unknown colour 'purple'" "$tmp/err"
"$sdtune" --help >"$tmp/help"
check "--help lists --theme" grep -q -- '--theme NAME' "$tmp/help"
for file in "$src"/themes/*.toml; do
    name=$(basename "$file" .toml)
    check "--help names the shipped theme $name" grep -Eq -- "[ ,]$name[ ,]" "$tmp/help"
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
