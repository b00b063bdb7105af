#!/usr/bin/env bash
# The runner's checks can fail: with a fault planted after every op (a wrong gradient value, a byte written
# past an output, a NaN in an output, a changed input), every case of every mode must fail, with the reason
# named.
# With a third argument (a backend other than cpu) only --mode test runs, on that backend; the script exits
# 77 (skipped) when the runner says the build or the machine has no such device.
set -uo pipefail
runner=$1 fixtures=$2 backend=${3:-cpu}
status=0
modes=(grad golden test)
if [ "$backend" != cpu ]; then
    modes=(test)
    "$runner" --mode test --backend "$backend" --op add --case N=17 --skip-without-device >/dev/null 2>&1
    rc=$?
    if [ "$rc" -eq 77 ]; then
        echo "skipped: no $backend device or no $backend ops in this build"
        exit 77
    fi
fi
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
for mode in "${modes[@]}"; do
    args=(--mode "$mode" --op linear,conv2d,attention --dir "$fixtures" --backend "$backend")
    expect_all_fail "$mode/gradient" "$([ $mode = grad ] && echo 'differs from finite differences' || echo 'normalised MSE above')" \
        "${args[@]}" --inject gradient
    expect_all_fail "$mode/overrun" "guard bytes changed" "${args[@]}" --inject overrun
    expect_all_fail "$mode/nan" "nan" "${args[@]}" --inject nan
    expect_all_fail "$mode/input" "changed its input" "${args[@]}" --inject input
done
# Bad invocations are refused.
"$runner" --mode nonsense >/dev/null 2>&1; [ $? -eq 2 ] || { echo "FAIL: an unknown mode must exit 2"; status=1; }
"$runner" --mode golden --dir /nonexistent >/dev/null 2>&1; [ $? -eq 1 ] || { echo "FAIL: a missing fixture folder must exit 1"; status=1; }
exit $status
