#!/usr/bin/env bash
# The GPU checks in one command, for a machine with an NVIDIA GPU (such as the H200 that the device tool
# lends): from the repository root,
#
#     bash tools/device/gpu_check.sh [--targets "ops-runner sdtune-engine"] [--no-tests] [--bench] [--peer]
#
# 1. prints the GPU (nvidia-smi) and the toolchain (nvcc, cmake, ninja);
# 2. finds cuDNN 9: $CUDNN_ROOT, else beside the CUDA toolkit, else the Python wheel nvidia-cudnn-cu13 of
#    the python3 that holds PyTorch; its lib folder goes on LD_LIBRARY_PATH;
# 3. when the C libraries the build needs (toml++, jansson, utf8proc, libpng, libjpeg, libwebp, OpenBLAS,
#    ncurses) are missing, unpacks the Debian packages of .deps/ (tools/device/fetch_debs.sh, carried
#    along) into a private folder and points pkg-config, CMake, the linker and the loader at it;
# 4. configures build/gpu (RelWithDebInfo, CUDA on, sm_90, the CUDA ops with cuBLASLt and cuDNN) and
#    stops unless the CUDA ops are really part of the build;
# 5. builds everything (or --targets), then runs `ctest -L gpu -V` (ctest.log keeps every case's line);
#    a GPU test reported skipped counts as a failure here: on a GPU machine a skip means the build or the
#    device is off;
# 6. with --bench, then `sdtune-engine bench --arch sd15 --res 512 --batch 1,4,8 --mode lora --device cuda
#    --precision bf16` (SDTUNE_BENCH_ARGS adds options, e.g. "--fp8" or "--checkpointing on"): the tables
#    in bench.txt, the JSON in bench.json;
# 7. with --peer, then runs the PyTorch peer tools/bench/peer_unet_lora.py (the same batch sizes at 512 px,
#    with the bench's LoRA rank and alpha when --bench ran) with the wheels of .whl/
#    (tools/bench/fetch_wheels.sh, carried along): peer.txt, peer.json; with --bench too, one table of the
#    ratios sdtune/PyTorch per batch size (tools/bench/compare_peer.py): compare.txt, compare.json.
#
# Time on an H200 (16 cores), estimated, not measured: configure and build everything 3-5 min (the CUDA
# files dominate; --targets "sdtune-engine ops-runner test_trainer_cuda" builds less), ctest -L gpu 1-3
# min, --bench about 1.5 min (the random SD1.5 UNet made on the host, a bf16 GEMM peak, 1 warm-up + 5
# timed + 1 profiled step per batch size), --peer about 1.5 min (the wheels, diffusers' UNet, 5 warm-up + 20
# timed steps per batch size). All of it should fit one 10-minute device command; the bench and the peer
# each stop after SDTUNE_BENCH_TIMEOUT seconds (default 240) so that a hang still leaves the logs.
#
# Logs go to $OUT when it is set (the device tool brings that folder back), else to build/gpu/logs:
# nvidia-smi.txt, toolchain.txt, configure.log, build.log, ctest.log, summary.txt. Exit status 0 only when
# every step passed.
set -euo pipefail

targets=""
run_tests=1
peer=0
bench=0
while [ $# -gt 0 ]; do
    case "$1" in
    --peer)
        peer=1
        shift
        ;;
    --bench)
        bench=1
        shift
        ;;
    --targets)
        [ $# -ge 2 ] || { echo "gpu_check: --targets needs a list of targets" >&2; exit 2; }
        targets=$2
        shift 2
        ;;
    --no-tests)
        run_tests=0
        shift
        ;;
    -h | --help)
        awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
        exit 0
        ;;
    *)
        echo "gpu_check: unknown argument '$1' (see --help)" >&2
        exit 2
        ;;
    esac
done

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
build=${SDTUNE_GPU_BUILD:-build/gpu}
logs=${OUT:-$build/logs}
mkdir -p "$logs"
summary=$logs/summary.txt
: >"$summary"

say() { echo "gpu_check: $*" | tee -a "$summary"; }
die() {
    echo "gpu_check: FAILED: $*" | tee -a "$summary" >&2
    exit 1
}
step() { echo; echo "==== $*"; }

# ---- 1. the GPU and the tools ---------------------------------------------------------------------------
step "GPU"
command -v nvidia-smi >/dev/null || die "no nvidia-smi: this machine has no NVIDIA driver"
nvidia-smi 2>&1 | tee "$logs/nvidia-smi.txt" || die "nvidia-smi failed: no usable GPU"
gpu=$(nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader 2>/dev/null |
    head -n 1 || true)
say "GPU: ${gpu:-unknown}"

step "toolchain"
nvcc=$(command -v nvcc || true)
[ -n "$nvcc" ] || { [ -x /usr/local/cuda/bin/nvcc ] && nvcc=/usr/local/cuda/bin/nvcc; } || true
[ -n "$nvcc" ] || die "no nvcc on PATH or in /usr/local/cuda/bin"
command -v cmake >/dev/null || die "no cmake"
command -v ninja >/dev/null || die "no ninja"
{
    "$nvcc" --version
    cmake --version | head -n 1
    echo "ninja $(ninja --version)"
    echo "cc: $(cc --version 2>/dev/null | head -n 1 || echo none)"
    echo "python3: $(python3 -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__)' 2>/dev/null || echo 'no torch')"
} 2>&1 | tee "$logs/toolchain.txt"

# ---- 2. cuDNN ---------------------------------------------------------------------------------------------
step "cuDNN"
has_cudnn() { [ -f "$1/include/cudnn.h" ] && ls "$1"/lib*/libcudnn.so* >/dev/null 2>&1; }
cudnn_root=${CUDNN_ROOT:-}
if [ -z "$cudnn_root" ]; then
    cuda_home=$(dirname "$(dirname "$(readlink -f "$nvcc")")")
    if has_cudnn "$cuda_home"; then
        cudnn_root=$cuda_home
    else
        # nvidia.cudnn may be a namespace package (no __file__): take its folder from __path__.
        cudnn_root=$(python3 -c 'import nvidia.cudnn as m; print(list(m.__path__)[0])' 2>/dev/null || true)
    fi
fi
{ [ -n "$cudnn_root" ] && has_cudnn "$cudnn_root"; } ||
    die "no cuDNN 9 (include/cudnn.h and lib/libcudnn.so*): set CUDNN_ROOT, or install the wheel nvidia-cudnn-cu13 for python3"
cudnn_lib=$(dirname "$(ls "$cudnn_root"/lib*/libcudnn.so* | head -n 1)")
export LD_LIBRARY_PATH="$cudnn_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
say "cuDNN: $cudnn_root ($(cd "$cudnn_lib" && echo libcudnn.so*))"

# ---- 3. the C libraries -----------------------------------------------------------------------------------
step "C libraries"
modules=(tomlplusplus jansson libutf8proc libpng libjpeg libwebp openblas)
missing=()
if command -v pkg-config >/dev/null; then
    for m in "${modules[@]}"; do
        pkg-config --exists "$m" || missing+=("$m")
    done
else
    missing=(pkg-config "${modules[@]}")
fi
cmake_extra=()
if [ ${#missing[@]} -gt 0 ] || [ "${SDTUNE_USE_DEPS:-0}" = 1 ]; then
    say "missing here: ${missing[*]:-none (SDTUNE_USE_DEPS=1)}; using the packages in .deps/"
    ls .deps/*.deb >/dev/null 2>&1 ||
        die "no .deps/*.deb: on the development machine run tools/device/fetch_debs.sh, then name .deps in the device tool's carry list"
    sysroot=${SDTUNE_SYSROOT:-/tmp/sdtune-sysroot}
    rm -rf "$sysroot"
    mkdir -p "$sysroot"
    for deb in .deps/*.deb; do
        if command -v dpkg-deb >/dev/null; then
            dpkg-deb -x "$deb" "$sysroot"
        else # a .deb is an ar archive; its files are in data.tar.* (tar tells the compression by the file)
            member=$(ar t "$deb" | grep '^data\.tar')
            ar p "$deb" "$member" >"$sysroot/$member"
            tar -x -f "$sysroot/$member" -C "$sysroot"
            rm -f "$sysroot/$member"
        fi
    done
    multi=$sysroot/usr/lib/x86_64-linux-gnu
    # Absolute links (libz.so -> /lib/...) point into the folder, not at the machine's own files.
    while IFS= read -r link; do
        target=$(readlink "$link")
        case "$target" in /*) ln -sfn "$sysroot$target" "$link" ;; esac
    done < <(find "$sysroot" -type l)
    # The .pc files name /usr; Debian picks the OpenBLAS variant through alternatives, which only dpkg -i sets.
    find "$sysroot" -name '*.pc' -type f -exec sed -i "s#=/usr#=$sysroot/usr#g" {} +
    ln -sfn "$multi/openblas-pthread/pkgconfig/openblas.pc" "$multi/pkgconfig/openblas.pc"
    export PATH="$sysroot/usr/bin:$PATH"
    export PKG_CONFIG_PATH="$multi/pkgconfig:$sysroot/usr/share/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
    # Link against the folder's libraries; run with the machine's own libc-level ones (zlib, tinfo) where
    # it has them, and the folder's for the rest.
    export LIBRARY_PATH="$multi:$multi/openblas-pthread:$sysroot/lib/x86_64-linux-gnu${LIBRARY_PATH:+:$LIBRARY_PATH}"
    export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$multi:$multi/openblas-pthread"
    cmake_extra+=("-DCMAKE_PREFIX_PATH=$sysroot/usr" "-DCMAKE_LIBRARY_PATH=$multi;$sysroot/lib/x86_64-linux-gnu")
    for m in "${modules[@]}"; do
        pkg-config --exists "$m" || die "pkg-config still cannot find $m after unpacking .deps/"
    done
fi
say "C libraries: found (${modules[*]})"

# ---- 4. configure -----------------------------------------------------------------------------------------
step "configure $build"
set +e
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSDTUNE_CUDA=ON \
    -DCMAKE_CUDA_COMPILER="$nvcc" -DCMAKE_CUDA_ARCHITECTURES=90 -DCUDNN_ROOT="$cudnn_root" \
    ${cmake_extra[@]+"${cmake_extra[@]}"} 2>&1 | tee "$logs/configure.log"
rc=${PIPESTATUS[0]}
set -e
[ "$rc" -eq 0 ] || die "cmake configure failed (exit $rc): see configure.log"
ops_line=$(grep -E 'sdtune: CUDA ops' "$logs/configure.log" | tail -n 1 || true)
say "configure: ${ops_line:-no 'sdtune: CUDA ops' line}"
# SDTUNE_GPU_CHECK_ALLOW_NO_OPS=1 lets the script itself be tried on a build without the CUDA ops.
grep -q 'sdtune: CUDA ops with cuDNN' "$logs/configure.log" || [ "${SDTUNE_GPU_CHECK_ALLOW_NO_OPS:-0}" = 1 ] ||
    die "the build has no CUDA ops (${ops_line:-see configure.log}): the GPU tests would only skip"

# ---- 5. build and test ------------------------------------------------------------------------------------
step "build ${targets:-everything}"
set +e
# shellcheck disable=SC2086 # the targets are a space-separated list
cmake --build "$build" ${targets:+--target $targets} 2>&1 | tee "$logs/build.log"
rc=${PIPESTATUS[0]}
set -e
[ "$rc" -eq 0 ] || die "build failed (exit $rc): see build.log (the first 'error' lines: $(grep -m 3 -E 'error' "$logs/build.log" | tr '\n' ' '))"
say "build: ok"

bench_batches=1,4,8
step_timeout=${SDTUNE_BENCH_TIMEOUT:-240}

run_bench() {
    step "sdtune bench"
    set +e
    # shellcheck disable=SC2086 # SDTUNE_BENCH_ARGS is a space-separated list of options
    timeout "$step_timeout" "$build/bin/sdtune-engine" bench --arch sd15 --res 512 --batch "$bench_batches" \
        --mode lora --device cuda --precision bf16 ${SDTUNE_BENCH_ARGS:-} --json-out "$logs/bench.json" 2>&1 |
        tee "$logs/bench.txt"
    rc=${PIPESTATUS[0]}
    set -e
    [ "$rc" -eq 0 ] || die "sdtune-engine bench failed (exit $rc$([ "$rc" -eq 124 ] && echo ": timed out after ${step_timeout}s")): see bench.txt"
    say "bench: ok (bench.txt, bench.json)"
}

# The peer's LoRA as the bench trained it (rank, alpha); its defaults are sdtune's config defaults.
peer_lora_args() {
    [ -f "$logs/bench.json" ] || return 0
    python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
print("--rank", d["lora_rank"], "--alpha", d["lora_alpha"], "--grad-ckpt" if d["gradient_checkpointing"] else "")' \
        "$logs/bench.json"
}

run_peer() {
    step "PyTorch peer"
    ls .whl/diffusers-*.whl >/dev/null 2>&1 ||
        die "no .whl/diffusers-*.whl: on the development machine run tools/bench/fetch_wheels.sh, then carry .whl"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/sdtune-site \
        .whl/*.whl || die "installing the wheels of .whl/ failed"
    local lora
    lora=$(peer_lora_args) || die "cannot read the bench's LoRA settings from bench.json"
    set +e
    # shellcheck disable=SC2086 # lora is a list of options
    PYTHONPATH="/tmp/sdtune-site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 timeout "$step_timeout" \
        python3 tools/bench/peer_unet_lora.py --batch "$bench_batches" --res 512 $lora --json "$logs/peer.json" \
        2>&1 | tee "$logs/peer.txt"
    rc=${PIPESTATUS[0]}
    set -e
    [ "$rc" -eq 0 ] || die "the PyTorch peer failed (exit $rc): see peer.txt"
    say "peer: ok (peer.txt)"
    [ -f "$logs/bench.json" ] || return 0
    step "sdtune vs PyTorch"
    python3 tools/bench/compare_peer.py --sdtune "$logs/bench.json" --peer "$logs/peer.json" \
        --json "$logs/compare.json" | tee "$logs/compare.txt" || die "compare_peer.py failed"
    cat "$logs/compare.txt" >>"$summary"
}

# After the tests (or the build with --no-tests): the benchmark, then the peer.
run_timed() {
    [ "$bench" -eq 0 ] || run_bench
    [ "$peer" -eq 0 ] || run_peer
}

if [ "$run_tests" -eq 0 ]; then
    say "tests: not run (--no-tests)"
    run_timed
    exit 0
fi
step "ctest -L gpu"
set +e
# Verbose into the log (every case's line, with its errors, passing or not, to judge the margins); on the
# screen the per-test results and the failing cases only.
(cd "$build" && ctest -L gpu -V) >"$logs/ctest.log" 2>&1
rc=$?
grep -E 'Test +#[0-9]+:|^[0-9]+: (FAIL|skipped)|tests passed|tests failed|did not run|Skipped|\(Failed\)' \
    "$logs/ctest.log" | head -n 200 || true
set -e
grep -E '^[0-9]+% tests passed|tests? failed out of' "$logs/ctest.log" | tail -n 1 | sed 's/^/gpu_check: ctest: /' | tee -a "$summary"
grep -q 'No tests were found' "$logs/ctest.log" && die "ctest found no test labelled gpu"
[ "$rc" -eq 0 ] || die "ctest -L gpu failed (exit $rc): see ctest.log"
if grep -qE '\*\*\*Skipped|\(Skipped\)' "$logs/ctest.log"; then
    die "GPU tests were skipped on a GPU machine: $(grep -E 'Skipped' "$logs/ctest.log" | tr -s ' ' | tr '\n' ';')"
fi
say "all GPU tests passed"
run_timed
