#!/usr/bin/env bash
# The runner's checks can fail: with a fault planted after every op (a wrong gradient value, a byte written
# past an output, a NaN in an output), every case of every mode must fail, with the reason named.
set -uo pipefail
runner=$1 fixtures=$2
status=0
expect_all_fail() {
    local what=$1 reason=$2
    shift 2
    local out rc
    out=$("$runner" "$@" 2>&1)
    rc=$?
    local summary
    summary=$(tail -n 1 <<<"$out")
    if [ "$rc" -ne 1 ] || ! grep -Eq '^0 passed, [1-9][0-9]* failed' <<<"$summary" || ! grep -q -- "$reason" <<<"$out"; then
        echo "FAIL $what: expected every case to fail with \"$reason\" (exit $rc, last line: $summary)"
        status=1
    else
        echo "ok   $what: $summary"
    fi
}
for mode in grad golden test; do
    args=(--mode "$mode" --op linear,conv2d,attention --dir "$fixtures")
    expect_all_fail "$mode/gradient" "$([ $mode = grad ] && echo 'differs from finite differences' || echo 'normalised MSE above')" \
        "${args[@]}" --inject gradient
    expect_all_fail "$mode/overrun" "guard bytes changed" "${args[@]}" --inject overrun
    expect_all_fail "$mode/nan" "nan" "${args[@]}" --inject nan
done
# Bad invocations are refused.
"$runner" --mode nonsense >/dev/null 2>&1; [ $? -eq 2 ] || { echo "FAIL: an unknown mode must exit 2"; status=1; }
"$runner" --mode golden --dir /nonexistent >/dev/null 2>&1; [ $? -eq 1 ] || { echo "FAIL: a missing fixture folder must exit 1"; status=1; }
exit $status
