#!/usr/bin/env bash
# Downloads, on a machine with network, the wheels that tools/bench/peer_unet_lora.py needs and the GPU
# machine lacks, into .whl/ at the repository root (ignored by git): diffusers, and of its pure-Python
# requirements the one that machine does not have (importlib_metadata; filelock, huggingface-hub >= 1.32,
# numpy, regex, requests, safetensors >= 0.8 and Pillow are there, see tools/bench/README.md). The
# versions are pinned: diffusers 0.42.1 works with the huggingface-hub 1.33 and safetensors 0.8 there,
# and importlib_metadata 8.7.0 needs only zipp, which is there too. About 6.4 MB.
set -euo pipefail
root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
wheels=(diffusers==0.42.1 importlib_metadata==8.7.0)
mkdir -p "$root/.whl"
rm -f "$root"/.whl/*.whl
for w in "${wheels[@]}"; do
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$root/.whl" "$w"
done
echo "fetch_wheels.sh: $(find "$root/.whl" -type f -name '*.whl' | wc -l) wheels, $(du -sh "$root/.whl" | cut -f1), in $root/.whl"
