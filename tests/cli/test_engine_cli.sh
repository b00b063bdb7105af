#!/usr/bin/env bash
# The programs as a person runs them: help, version, validate's output and exit codes.
set -uo pipefail
engine=$1 tui=$2 src=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0 failed=0

# expect NAME WANT_STATUS PATTERN CMD... : runs CMD, checks its exit status and that its output matches PATTERN.
expect() {
    local name=$1 want=$2 pattern=$3
    shift 3
    local out status
    out=$("$@" 2>&1)
    status=$?
    if [ "$status" = "$want" ] && grep -Eq -- "$pattern" <<<"$out"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        printf 'FAIL %s: want exit %s and /%s/, got exit %s:\n%s\n' "$name" "$want" "$pattern" "$status" "$out"
    fi
}

expect "engine --help" 0 '^usage: sdtune-engine COMMAND' "$engine" --help
expect "engine --version" 0 '^sdtune-engine [0-9]+\.[0-9]+\.[0-9]+ \(backends: cpu' "$engine" --version
expect "engine no args" 2 'usage:' "$engine"
expect "engine unknown command" 2 "unknown command 'frobnicate'" "$engine" frobnicate
expect "tui --help" 0 'usage: sdtune' "$tui" --help
expect "tui --version" 0 '^sdtune [0-9]+\.[0-9]+\.[0-9]+' "$tui" --version
expect "tui --config without a file" 2 'needs a config file' "$tui" --config
expect "tui two configs" 2 'give one config file' "$tui" --config a.toml b.toml
expect "tui --help lists --no-color" 0 '--no-color' "$tui" --help

# The repository's config.toml is clean.
(cd "$work" && mkdir -p outputs)
expect "validate config.toml" 0 'config.toml: OK' "$engine" validate "$src/config.toml"

# learning_rate misspelt: exit 1, the line number, and the right suggestion.
sed 's/^\[optimizer\]$/[optimizer]\nlearnig_rate = 1e-4/' "$src/config.toml" >"$work/typo.toml"
line=$(grep -n '^learnig_rate' "$work/typo.toml" | cut -d: -f1)
expect "misspelt key" 1 "typo.toml:$line:1: error: unknown key 'learnig_rate' in \[optimizer\]; did you mean 'learning_rate'\?" \
    "$engine" validate "$work/typo.toml"

# A string where an int belongs names the key and the expected type.
printf '[network]\nnetwork_dim = "sixteen"\n' >"$work/type.toml"
expect "wrong type" 1 'type.toml:2:15: error: network_dim: expected an integer, got a string \("sixteen"\)' \
    "$engine" validate "$work/type.toml"

# Every problem, not only the first, and a summary.
printf '[optimizer]\nlearnig_rate = 1\n[network]\nnetwork_dim = "x"\n[dataset]\nrandom_crop = true\n' >"$work/many.toml"
expect "all problems" 1 'many.toml: 3 errors, 0 warnings' "$engine" validate "$work/many.toml"
expect "all problems: line 6" 1 'many.toml:6:15: error: random_crop' "$engine" validate "$work/many.toml"

# Warnings alone keep exit 0.
printf '[network]\nnetwork_dim = 4\nnetwork_alpha = 8\n' >"$work/warn.toml"
expect "warnings only" 0 'warn.toml:3:17: warning: network_alpha = 8 is larger than network_dim = 4' \
    "$engine" validate "$work/warn.toml"

# Bad files: missing, a folder, binary garbage, invalid UTF-8.
expect "missing file" 1 'nope.toml: error: cannot open: No such file or directory' "$engine" validate "$work/nope.toml"
expect "directory" 1 'error: is a directory, not a file' "$engine" validate "$work"
head -c 3000 /dev/urandom >"$work/garbage.toml"
expect "garbage" 1 'garbage.toml:[0-9]+:[0-9]+: error: ' "$engine" validate "$work/garbage.toml"
printf '[model]\nvae = "\xff"\n' >"$work/latin1.toml"
expect "invalid utf-8" 1 'latin1.toml:2:8: error: not valid UTF-8' "$engine" validate "$work/latin1.toml"

# Usage errors exit 2.
expect "validate no file" 2 'usage: sdtune-engine validate' "$engine" validate
expect "validate bad option" 2 "unknown option '--bogus'" "$engine" validate --bogus "$src/config.toml"
expect "validate bad device" 2 'expected auto, cpu, cuda:N or sm_XY' "$engine" validate --device gpu9 "$src/config.toml"

# Devices: bf16 on a pre-Ampere GPU is refused; preflight refuses an empty model path.
printf '[precision_memory]\nmixed_precision = "bf16"\n' >"$work/bf16.toml"
expect "device rule" 1 'needs an Ampere or newer GPU' "$engine" validate --device sm_75 "$work/bf16.toml"
expect "device ok" 0 'bf16.toml: OK' "$engine" validate --device sm_90 "$work/bf16.toml"
# The default config.toml runs the built-in demo, so it passes preflight; a config without a model does not.
expect "preflight demo" 0 'config.toml: OK' "$engine" validate --preflight "$src/config.toml"
printf '[model]\ntraining_type = "lora"\n' >"$work/no_model.toml"
expect "preflight" 1 'error: pretrained_model_name_or_path is empty' "$engine" validate --preflight "$work/no_model.toml"
expect "devices" 0 '^cpu ' "$engine" devices

# Checkpoints: init-model writes a tiny model, inspect reads it back (text and JSON); the same seed gives the
# same bytes; a diffusers folder inspects the same; bad input exits 1 with the reason, bad usage 2.
expect "init-model" 0 'tiny.safetensors: sd15-tiny, seed 5, F16, single-file LDM: 5283899 parameters in 980 tensors' \
    "$engine" init-model --arch sd15-tiny --seed 5 --out "$work/tiny.safetensors" --dtype fp16
expect "inspect" 0 'tiny.safetensors: OK, the model is complete' "$engine" inspect "$work/tiny.safetensors"
expect "inspect arch" 0 '^arch +sd15-tiny: ' "$engine" inspect "$work/tiny.safetensors"
expect "inspect unet" 0 '^unet +2,469,316 +684/684 +F16 684 ' "$engine" inspect "$work/tiny.safetensors"
expect "inspect --json" 0 '"arch": "sd15-tiny"' "$engine" inspect --json "$work/tiny.safetensors"
expect "inspect --json ok" 0 '"ok": true' "$engine" inspect "$work/tiny.safetensors" --json
"$engine" init-model --arch sd15-tiny --seed 5 --out "$work/again.safetensors" --dtype fp16 >/dev/null
"$engine" init-model --arch sd15-tiny --seed 6 --out "$work/other.safetensors" --dtype fp16 >/dev/null
expect "same seed, same bytes" 0 '' cmp "$work/tiny.safetensors" "$work/again.safetensors"
expect "other seed, other bytes" 1 'differ' cmp "$work/tiny.safetensors" "$work/other.safetensors"
expect "init-model diffusers" 0 'diffusers folder: 5283899 parameters' \
    "$engine" init-model --arch sd15-tiny --seed 5 --out "$work/tinyd" --format diffusers
expect "inspect folder" 0 'tinyd: OK, the model is complete' "$engine" inspect "$work/tinyd"
expect "inspect folder source" 0 'vae +354,391 +244/244 +F32 244 +.*/tinyd/vae/diffusion_pytorch_model.safetensors' \
    "$engine" inspect "$work/tinyd"
expect "inspect folder --json" 0 '"format": "diffusers"' "$engine" inspect --json "$work/tinyd"
expect "inspect --vae folder" 0 'OK, the model is complete' "$engine" inspect "$work/tiny.safetensors" --vae "$work/tinyd/vae"
expect "inspect fixture" 0 'text_encoder vocab_size 1000 \(preset 49408\)' "$engine" inspect "$src/tests/data/models/sd15_tiny.safetensors"
rm -r "$work/tinyd/vae"
expect "inspect folder without vae" 1 'no VAE \(the vae/ folder is missing\); give a VAE with --vae' "$engine" inspect "$work/tinyd"
expect "inspect --json problems" 1 '"kind": "missing component"' "$engine" inspect --json "$work/tinyd"
printf 'PK\003\004junk' >"$work/model.ckpt"
expect "inspect pickle" 1 'model.ckpt: error: .*model.ckpt is a PyTorch pickle file' "$engine" inspect "$work/model.ckpt"
expect "inspect pickle format" 1 'model.ckpt: PyTorch pickle \(refused\)' "$engine" inspect "$work/model.ckpt"
expect "inspect pickle hint" 1 "torch.load\\('.*model.ckpt', map_location='cpu', weights_only=True\\)" "$engine" inspect "$work/model.ckpt"
expect "inspect pickle --json" 1 '"error": ".*model.ckpt is a PyTorch pickle file' "$engine" inspect --json "$work/model.ckpt"
head -c 3000 /dev/urandom >"$work/garbage.safetensors"
expect "inspect garbage" 1 'garbage.safetensors: error: .*garbage.safetensors' "$engine" inspect "$work/garbage.safetensors"
expect "inspect missing file" 1 'nope.safetensors: cannot open: No such file or directory' "$engine" inspect "$work/nope.safetensors"
expect "inspect usage" 2 'usage: sdtune-engine inspect' "$engine" inspect
expect "inspect bad option" 2 "unknown option '--bogus'" "$engine" inspect --bogus "$work/tiny.safetensors"
expect "init-model usage" 2 '--arch, --seed and --out are required' "$engine" init-model --arch sd15-tiny --seed 1
expect "init-model bad arch" 2 "unknown arch 'sdxl' \(known: sd15, sd15-tiny" "$engine" init-model --arch sdxl --seed 1 --out "$work/x"
expect "init-model bad dtype" 2 'expected fp32, fp16 or bf16' "$engine" init-model --arch sd15-tiny --seed 1 --out "$work/x" --dtype f8
expect "init-model bad seed" 2 'expected a whole number' "$engine" init-model --arch sd15-tiny --seed -1 --out "$work/x"
expect "init-model unwritable" 1 'init-model: .*no-such-dir: No such file or directory' \
    "$engine" init-model --arch sd15-tiny --seed 1 --out "$work/no-such-dir/x.safetensors"

# dataset: kohya folder mode with repeats and reg folders, a bad image and a bad caption skipped and counted.
png96x64='\x89\x50\x4e\x47\x0d\x0a\x1a\x0a\x00\x00\x00\x0d\x49\x48\x44\x52\x00\x00\x00\x60\x00\x00\x00\x40\x08\x00\x00\x00\x00\xc0\x5f\x2d\xd2\x00\x00\x00\x1d\x49\x44\x41\x54\x78\xda\xed\xc1\x31\x01\x00\x00\x00\xc2\xa0\xf5\x4f\xed\x6d\x07\xa0\x00\x00\x00\x00\x00\x00\xde\x00\x18\x40\x00\x01\x99\x96\xf3\xf3\x00\x00\x00\x00\x49\x45\x4e\x44\xae\x42\x60\x82'
mkdir -p "$work/ds/train/5_sks dog" "$work/ds/train/nonum" "$work/ds/reg/1_dog"
for i in 1 2 3; do printf "$png96x64" >"$work/ds/train/5_sks dog/img$i.png"; done
printf 'sks dog, sitting\n' >"$work/ds/train/5_sks dog/img1.txt"
printf 'caf\xe9\n' >"$work/ds/train/5_sks dog/img3.txt"
printf 'not a png' >"$work/ds/train/5_sks dog/broken.png"
printf "$png96x64" >"$work/ds/reg/1_dog/r1.png"
printf '[folders]\ntrain_data_dir = "%s"\nreg_data_dir = "%s"\n[training]\nmax_train_epochs = 3\n' \
    "$work/ds/train" "$work/ds/reg" >"$work/ds.toml"
expect "dataset subset" 0 '^  \[Subset 0 of Dataset 0\]' "$engine" dataset "$work/ds.toml"
expect "dataset class tokens" 0 '^    class_tokens: sks dog$' "$engine" dataset "$work/ds.toml"
expect "dataset train count" 0 '^10 train images with repeats\.$' "$engine" dataset "$work/ds.toml"
expect "dataset reg count" 0 '^1 reg images with repeats\.$' "$engine" dataset "$work/ds.toml"
expect "dataset buckets" 0 '^bucket 0: resolution \([0-9]+, [0-9]+\), count: 20$' "$engine" dataset "$work/ds.toml"
expect "dataset mean ar error" 0 '^mean ar error \(without repeats\): ' "$engine" dataset "$work/ds.toml"
expect "dataset steps" 0 '^  total optimization steps: 60$' "$engine" dataset "$work/ds.toml"
expect "dataset bad image" 0 'broken.png: warning: skipped \(not an image\)' "$engine" dataset "$work/ds.toml"
expect "dataset bad caption" 0 'img3.txt: warning: skipped \(caption not UTF-8\)' "$engine" dataset "$work/ds.toml"
expect "dataset no repeats" 0 'nonum: warning: ignored: the folder name does not start with a repeat count' \
    "$engine" dataset "$work/ds.toml"
expect "dataset skip summary" 0 '^skipped 2 files: 1 not an image, 1 caption not UTF-8$' "$engine" dataset "$work/ds.toml"
expect "dataset --strict" 1 'broken.png: error: skipped' "$engine" dataset --strict "$work/ds.toml"
expect "dataset --json" 0 '"train_images_with_repeats": 10,' "$engine" dataset --json "$work/ds.toml"
expect "dataset --json skipped" 0 '"skip_summary": "skipped 2 files' "$engine" dataset --json "$work/ds.toml"
printf '[folders]\ntrain_data_dir = "%s"\n' "$work/ds/reg/1_dog" >"$work/empty-ds.toml"
expect "dataset empty" 1 'error: the dataset is empty' "$engine" dataset "$work/empty-ds.toml"
printf '[[datasets]]\n[[datasets.subsets]]\nimage_dir = "%s"\nnum_repeat = 2\n' "$work/ds/reg/1_dog" >"$work/dc.toml"
printf '[folders]\ndataset_config = "%s"\n' "$work/dc.toml" >"$work/dc-cfg.toml"
expect "dataset_config unknown key" 1 "dc.toml:4:1: error: unknown key 'num_repeat' in \[\[datasets.subsets\]\] \(extra keys not allowed\); did you mean 'num_repeats'\?" \
    "$engine" dataset "$work/dc-cfg.toml"
expect "dataset usage" 2 'usage: sdtune-engine dataset CONFIG' "$engine" dataset
expect "dataset bad option" 2 "unknown option '--bogus'" "$engine" dataset --bogus "$work/ds.toml"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
