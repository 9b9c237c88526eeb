# Thin wrapper around CMake. `make run` and `make test` install what is
# missing first (scripts/install-deps.sh), so they work on a fresh machine.
BUILD      ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_ARGS ?=

.PHONY: all deps build run test test-fast test-asan test-tsan clean

all: build

deps:
	@scripts/install-deps.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja $(CMAKE_ARGS)

build: $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

# The server on 127.0.0.1:8000 with the examples registered; Ctrl-C stops it
# (unfinished runs resume at the next `make run`). ADDR=... to listen elsewhere.
ADDR ?= 127.0.0.1:8000
run: deps build
	$(BUILD)/durable serve --listen $(ADDR) --workflows examples

# Every test; then every test again under ASan+UBSan; then the engine and
# end-to-end suites under TSan.
test: deps build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	$(MAKE) test-asan
	$(MAKE) test-tsan

test-fast: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -LE slow

$(ASAN_BUILD)/build.ninja:
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DDURABLE_ASAN=ON -DDURABLE_UBSAN=ON

test-asan: $(ASAN_BUILD)/build.ninja
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j $(JOBS)

$(TSAN_BUILD)/build.ninja:
	cmake -S . -B $(TSAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DDURABLE_TSAN=ON

test-tsan: $(TSAN_BUILD)/build.ninja
	cmake --build $(TSAN_BUILD) -j $(JOBS)
	cd $(TSAN_BUILD) && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	  ctest --output-on-failure -j $(JOBS) -L 'engine|e2e'

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD)
