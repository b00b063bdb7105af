#!/usr/bin/env bash
# Downloads, on a Debian 12 machine with network, the packages the C build needs beside a compiler and
# CMake (headers, pkg-config files and shared libraries of toml++, jansson, utf8proc, zlib, libpng,
# libjpeg, libwebp, OpenBLAS, ncurses, and pkg-config itself) into .deps/ at the repository root.
# tools/device/gpu_check.sh unpacks them into a private folder (never into /) on a machine that lacks
# them and cannot download anything, such as the GPU machine; .deps/ is then named in the device tool's
# carry list. About 20 MB.
set -euo pipefail
root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
packages=(
    pkgconf pkgconf-bin libpkgconf3
    libtomlplusplus-dev libtomlplusplus3
    libjansson-dev libjansson4
    libutf8proc-dev libutf8proc2
    zlib1g-dev
    libpng-dev libpng16-16
    libjpeg62-turbo-dev libjpeg62-turbo
    libwebp-dev libwebp7 libwebpmux3 libwebpdemux2
    libopenblas-dev libopenblas-pthread-dev libopenblas0-pthread libopenblas0 libgfortran5
    libncurses-dev libncurses6 libncursesw6
)
if ! command -v apt-get >/dev/null; then
    echo "fetch_debs.sh: needs apt-get (a Debian 12 machine, like the one the project is developed on)" >&2
    exit 1
fi
mkdir -p "$root/.deps"
rm -f "$root"/.deps/*.deb
cd "$root/.deps"
apt-get download "${packages[@]}"
echo "fetch_debs.sh: $(ls ./*.deb | wc -l) packages, $(du -sh . | cut -f1), in $root/.deps"
