# Checks of what a program shows in tmux, sourced by the tests/tui/*.sh scripts. They need $drive (the
# tui-drive script) and $session (the tmux session being checked), and count into $passed and $failed.
# expect waits expect_timeout seconds (default 5) unless given a third argument.

report_failure() { # what was expected; the screen follows
    echo "FAIL: $1"
    echo "----- screen ($session) -----"
    "$drive" "$session" shot || true
    echo "-----------------------------"
    failed=$((failed + 1))
}

# expect DESCRIPTION REGEX [SECONDS]: the screen shows REGEX (grep -E) in time.
expect() {
    if "$drive" "$session" wait-for "$2" "${3:-${expect_timeout:-5}}" 2>/dev/null; then
        passed=$((passed + 1))
    else
        report_failure "$1: expected /$2/ on the screen"
    fi
}

# expect_not DESCRIPTION REGEX: the screen, as it is now, does not show REGEX.
expect_not() {
    if "$drive" "$session" shot | grep -Eq -- "$2"; then
        report_failure "$1: did not expect /$2/ on the screen"
    else
        passed=$((passed + 1))
    fi
}

# expect_gone DESCRIPTION REGEX [SECONDS]: REGEX leaves the screen in time (default 5 seconds).
expect_gone() {
    local end=$((SECONDS + ${3:-5}))
    while "$drive" "$session" shot | grep -Eq -- "$2"; do
        if ((SECONDS >= end)); then
            report_failure "$1: expected /$2/ to leave the screen"
            return
        fi
        sleep 0.1
    done
    passed=$((passed + 1))
}

# expect_exit DESCRIPTION: the program ends within 5 seconds.
expect_exit() {
    local end=$((SECONDS + 5))
    while "$drive" "$session" alive; do
        if ((SECONDS >= end)); then
            report_failure "$1: expected the program to have exited"
            return
        fi
        sleep 0.2
    done
    passed=$((passed + 1))
}

# check DESCRIPTION COMMAND...: COMMAND succeeds.
check() {
    local what=$1
    shift
    if "$@"; then
        passed=$((passed + 1))
    else
        echo "FAIL: $what"
        failed=$((failed + 1))
    fi
}
