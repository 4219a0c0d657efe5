# tally - the front door. All real work is done by CMake; this file only
# names the build dirs and the steps.
#
#   make              configure and build build/ (RelWithDebInfo)
#   make demo         run the article's program: build/tools/tally demo
#   make test         build and test build/, build-tsan/ and build-asan/,
#                     then fuzz tally_map and tally_store for 60 s in all
#                     (clang, build-fuzz/)
#                     and run the benchmarks briefly (QUICK=1)
#   make bench        the benchmarks against the peers (QUICK=1: brief)
#   make bench-scrape the scrape cost alone (part of make bench)
#   make bench-push   what 'tally push' costs (part of make bench)
#   make stress       the stress tests, longer (STRESS_SCALE, default 50)
#   make fuzz         fuzz for FUZZ_SECONDS (default 600)
#   make install      install build/ into $(PREFIX) (default /usr/local)
#   make clean        remove the build dirs
#
# CC=clang (and CXX=clang++) are passed to CMake for build/ and build-asan/;
# build-tsan/ always uses gcc (TSAN_CC, TSAN_CXX). build/ is built with
# -Werror (as in CI; WERROR=OFF turns it off; plain CMake users get it off).
# The sanitizer dirs show warnings without failing on them: -O1 and the
# sanitizers bring warnings of their own (gcc's -Wtsan, for one).

CMAKE   ?= cmake
CTEST   ?= ctest
JOBS    ?= 2
PREFIX  ?= /usr/local
WERROR  ?= ON
TSAN_CC  ?= gcc
TSAN_CXX ?= g++

BUILD      := build
BUILD_TSAN := build-tsan
BUILD_ASAN := build-asan

# Pass the compiler only when the user chose one (not make's default 'cc').
ifneq ($(filter environment command line,$(origin CC)),)
COMPILERS += -DCMAKE_C_COMPILER=$(CC)
endif
ifneq ($(filter environment command line,$(origin CXX)),)
COMPILERS += -DCMAKE_CXX_COMPILER=$(CXX)
endif

CONFIGURE := $(CMAKE) --log-level=WARNING
SAN_FLAGS := -DTALLY_WERROR=OFF -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS_DEBUG="-g -O1" \
             -DCMAKE_CXX_FLAGS_DEBUG="-g -O1"
CTEST_RUN := $(CTEST) --output-on-failure -j$(JOBS)
# The install test needs an uninstrumented build; benchmarks measure
# nothing useful under a sanitizer.
SAN_SKIP  := -LE 'install|bench'

# The sanitizer runtime options (halt on the first report) are set on each
# test by CMake (TALLY_TEST_ENV), so a bare ctest run gets them too.

MAKEFLAGS += --no-print-directory

.PHONY: all build demo test test-build test-tsan test-asan test-fuzz \
        test-bench bench bench-scrape bench-push stress fuzz install clean

all: build

build:
	$(CONFIGURE) -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	    -DTALLY_WERROR=$(WERROR) $(COMPILERS)
	$(CMAKE) --build $(BUILD) -j$(JOBS)

demo: build
	./$(BUILD)/tools/tally demo

test: test-build test-tsan test-asan test-fuzz test-bench

test-build: build
	cd $(BUILD) && $(CTEST_RUN)

test-tsan:
	$(CONFIGURE) -S . -B $(BUILD_TSAN) -DTALLY_SANITIZE=thread $(SAN_FLAGS) \
	    -DCMAKE_C_COMPILER=$(TSAN_CC) -DCMAKE_CXX_COMPILER=$(TSAN_CXX)
	$(CMAKE) --build $(BUILD_TSAN) -j$(JOBS)
	cd $(BUILD_TSAN) && $(CTEST_RUN) $(SAN_SKIP)

test-asan:
	$(CONFIGURE) -S . -B $(BUILD_ASAN) -DTALLY_SANITIZE=address $(SAN_FLAGS) \
	    $(COMPILERS)
	$(CMAKE) --build $(BUILD_ASAN) -j$(JOBS)
	cd $(BUILD_ASAN) && $(CTEST_RUN) $(SAN_SKIP)

# The stress tests, longer: TALLY_STRESS_SCALE multiplies their threads'
# work (50: the churn test inserts and removes 10 million keys). The TSan
# build runs them at a fifth of that scale.
STRESS_SCALE ?= 50
stress: build
	cd $(BUILD) && TALLY_STRESS_SCALE=$(STRESS_SCALE) $(CTEST) \
	    --output-on-failure -L stress --timeout 3600
	$(CONFIGURE) -S . -B $(BUILD_TSAN) -DTALLY_SANITIZE=thread $(SAN_FLAGS) \
	    -DCMAKE_C_COMPILER=$(TSAN_CC) -DCMAKE_CXX_COMPILER=$(TSAN_CXX)
	$(CMAKE) --build $(BUILD_TSAN) -j$(JOBS)
	cd $(BUILD_TSAN) && TALLY_STRESS_SCALE=$$(( $(STRESS_SCALE) / 5 + 1 )) \
	    $(CTEST) --output-on-failure -L stress --timeout 3600

# The benchmarks against the peers (bench/README.md): the full matrix into
# bench/results/<machine>/, or with QUICK=1 a short run of every cell into
# build/bench-quick/ that checks the output, not the speed (part of 'make
# test'). scripts/bench-deps.sh installs the peers' toolchains.
bench: build
	QUICK=$(QUICK) BUILD_DIR=$(BUILD) bench/run.sh
	QUICK=$(QUICK) BUILD_DIR=$(BUILD) bench/scrape/run.sh
	QUICK=$(QUICK) BUILD_DIR=$(BUILD) bench/push/run.sh

test-bench: build
	QUICK=1 BUILD_DIR=$(BUILD) bench/run.sh
	QUICK=1 BUILD_DIR=$(BUILD) bench/scrape/run.sh
	QUICK=1 BUILD_DIR=$(BUILD) bench/push/run.sh

# What a Prometheus scrape costs, against Python prometheus_client's
# multiprocess mode (bench/scrape/run.sh, docs/exposition.md); 'make bench'
# runs it too.
bench-scrape: build
	QUICK=$(QUICK) BUILD_DIR=$(BUILD) bench/scrape/run.sh

# What 'tally push' costs: keys pushed per second and Redis round trips,
# 1,000 and 100,000 keys, against pipelined HINCRBY (bench/push/run.sh,
# docs/design.md); 'make bench' runs it too.
bench-push: build
	QUICK=$(QUICK) BUILD_DIR=$(BUILD) bench/push/run.sh

# libFuzzer (clang, build-fuzz/): tally_map against a model and tally_store
# over file contents, sharing 60 s in 'make test' and FUZZ_SECONDS in
# 'make fuzz' (tests/fuzz/run.sh).
FUZZ_SECONDS ?= 600
test-fuzz:
	tests/fuzz/run.sh 60

fuzz:
	tests/fuzz/run.sh $(FUZZ_SECONDS)

install: build
	$(CMAKE) --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD) $(BUILD_TSAN) $(BUILD_ASAN) build-fuzz
