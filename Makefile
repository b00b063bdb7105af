# The two commands of the README: `make run` and `make test`. Both install what is missing (Debian 12
# packages), configure, build, then run. Everything else here serves those two.

BUILD_DIR    ?= build/release
SANITIZE_DIR ?= build/sanitize
CONFIG       ?= config.toml
JOBS         ?= $(shell nproc 2>/dev/null || echo 2)
FUZZ_SECONDS ?= 30

# Debian 12 packages the build and the tests need.
PACKAGES := cmake ninja-build pkg-config gcc g++ make clang libclang-rt-14-dev clang-format \
            libtomlplusplus-dev libncurses-dev tmux \
            libjansson-dev libopenblas-dev libomp-14-dev libutf8proc-dev zlib1g-dev \
            libpng-dev libjpeg62-turbo-dev libwebp-dev

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test deps build build-sanitize regen fuzz format check-format clean

run: build
	$(BUILD_DIR)/bin/sdtune $(CONFIG)

test: build build-sanitize
	cd $(BUILD_DIR) && ctest --output-on-failure -j$(JOBS) -LE fuzz
	@echo "op checks (tests/ops; ops.* above):"
	@for mode in golden grad; do printf '  %-7s' $$mode; \
	    $(BUILD_DIR)/bin/ops-runner --mode $$mode --dir tests/data/ops | tail -n 1; done
	cd $(SANITIZE_DIR) && SDTUNE_FUZZ_SECONDS=$(FUZZ_SECONDS) ctest --output-on-failure -j$(JOBS)

# Installs only what is missing; a no-op (one dpkg query) when everything is there.
deps:
	@missing=$$(for p in $(PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
	    grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing:" $$missing; \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(BUILD_DIR)/build.ninja: | deps
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo

$(SANITIZE_DIR)/build.ninja: | deps
	CC=clang CXX=clang++ cmake -S . -B $(SANITIZE_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Debug \
	    -DSDTUNE_SANITIZE=ON -DSDTUNE_FUZZ=ON -DSDTUNE_CUDA=OFF

build: deps $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR) -j$(JOBS)

build-sanitize: deps $(SANITIZE_DIR)/build.ninja
	cmake --build $(SANITIZE_DIR) -j$(JOBS)

# Rewrites config.toml and docs/config.md from the schema.
regen: build
	cmake --build $(BUILD_DIR) --target regen

# A longer fuzzing session by hand, each fuzzer for FUZZ_SECONDS: make fuzz FUZZ_SECONDS=600
fuzz: build-sanitize
	mkdir -p $(SANITIZE_DIR)/fuzz-corpus $(SANITIZE_DIR)/fuzz-corpus-safetensors $(SANITIZE_DIR)/fuzz-corpus-checkpoint $(SANITIZE_DIR)/fuzz-corpus-image \
	    $(SANITIZE_DIR)/fuzz-corpus-protocol
	$(SANITIZE_DIR)/bin/fuzz_config_load -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    $(SANITIZE_DIR)/fuzz-corpus tests/fuzz/corpus
	$(SANITIZE_DIR)/bin/fuzz_safetensors -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    -max_len=8192 $(SANITIZE_DIR)/fuzz-corpus-safetensors tests/fuzz/corpus_safetensors
	$(SANITIZE_DIR)/bin/fuzz_checkpoint -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    -max_len=32768 $(SANITIZE_DIR)/fuzz-corpus-checkpoint tests/fuzz/corpus_checkpoint
	$(SANITIZE_DIR)/bin/fuzz_image -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    -max_len=8192 $(SANITIZE_DIR)/fuzz-corpus-image tests/fuzz/corpus_image
	$(SANITIZE_DIR)/bin/fuzz_protocol -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    -max_len=8192 $(SANITIZE_DIR)/fuzz-corpus-protocol tests/fuzz/corpus_protocol

format:
	clang-format -i $$(git ls-files '*.c' '*.h' '*.cpp' '*.cu')

check-format:
	clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h' '*.cpp' '*.cu')

clean:
	rm -rf build
