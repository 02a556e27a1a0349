# wsgate: `make run` and `make test` are all a new machine needs (Debian 12 or 13, root or sudo).
BUILD_DIR ?= build
SANITIZE_DIR ?= build-sanitize
CONFIG ?= config/examples/quickstart.yaml
JOBS ?= $(shell nproc)
FUZZ_DIR ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_JOBS ?= 2
# on: profile-guided builds (scripts/build.sh); off: plain ones.
PGO ?= on
export PGO JOBS

.PHONY: all deps test-deps build retrain run test test-sanitize fuzz bench check-config clean

all: build

deps:
	@scripts/install-deps.sh build

test-deps:
	@scripts/install-deps.sh build test

# Profile-guided: the first build trains the gateway on loopback and keeps the profile for later
# builds (scripts/build.sh).
build: deps
	@scripts/build.sh $(BUILD_DIR)

# Drops the kept profile and trains again (after large changes to the data path).
retrain: deps
	rm -rf $(BUILD_DIR)/pgo-profile
	@scripts/build.sh $(BUILD_DIR)

run: build
	@scripts/run.sh $(BUILD_DIR)/wsgate $(CONFIG)

test: test-deps
	@scripts/build.sh $(BUILD_DIR)
	@scripts/test.sh $(BUILD_DIR)

# Same tests on an AddressSanitizer + UndefinedBehaviorSanitizer build.
test-sanitize: test-deps
	cmake -S . -B $(SANITIZE_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DWSGATE_SANITIZE=ON
	cmake --build $(SANITIZE_DIR) -j $(JOBS)
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  scripts/test.sh $(SANITIZE_DIR)

# libFuzzer harnesses (tests/fuzz/README.md): a separate clang build with ASan + UBSan, then each
# fuzzer in turn for FUZZ_SECONDS; corpora and crash artifacts go to /tmp/wsgate-fuzz.
fuzz: deps
	@scripts/install-deps.sh fuzz
	CC=clang CXX=clang++ cmake -S . -B $(FUZZ_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWSGATE_FUZZ=ON
	cmake --build $(FUZZ_DIR) -j $(FUZZ_JOBS) --target fuzzers
	FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run.sh $(FUZZ_DIR)

bench: deps
	@scripts/install-deps.sh bench
	@scripts/build.sh $(BUILD_DIR)
	BUILD_DIR=$(BUILD_DIR) bench/run.sh

check-config: build
	@scripts/quickstart-cert.sh >/dev/null
	@for f in config/examples/*.yaml; do $(BUILD_DIR)/wsgate --config $$f --check || exit 1; done

clean:
	rm -rf $(BUILD_DIR) $(SANITIZE_DIR) $(FUZZ_DIR)
