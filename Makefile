# Thin wrapper around CMake. `make run` and `make test` install what is
# missing first (scripts/install-deps.sh), so they work on a fresh machine.
BUILD      ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_ARGS ?=

.PHONY: all deps build run test test-fast test-asan test-tsan test-fuzz fuzz torture soak soak-asan \
	hostile clean install

all: build

deps:
	@scripts/install-deps.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja $(CMAKE_ARGS)

build: $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

# The header, libdurable.so and .a, durable.pc (pkg-config) and the durable
# binary under PREFIX (include/, lib/, lib/pkgconfig/, bin/); DESTDIR stages
# them under another root (packaging).
PREFIX  ?= /usr/local
DESTDIR ?=
install: build
	DESTDIR=$(DESTDIR) cmake --install $(BUILD) --prefix $(PREFIX)

# The server on 127.0.0.1:8000 with the examples registered; Ctrl-C stops it
# (unfinished runs resume at the next `make run`). ADDR=... to listen elsewhere.
ADDR ?= 127.0.0.1:8000
run: deps build
	$(BUILD)/durable serve --listen $(ADDR) --workflows examples

# Every test; then every test again under ASan+UBSan; then a 10-minute soak
# under ASan (LeakSanitizer at the server's stop); then the engine and
# end-to-end suites under TSan; then each fuzz target for a short while.
test: deps build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	$(MAKE) test-asan
	$(MAKE) soak-asan DURATION=10m
	$(MAKE) test-tsan
	$(MAKE) test-fuzz

test-fast: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -LE slow

# Hostile clients at full scale (docs/RELIABILITY.md §4): 1,000 event
# streams, 10,000 idle connections, slowloris on every route, oversized
# headers; prints the figures. `make test` runs the short version.
hostile: build
	python3 tests/e2e/server/test_clients.py --durable $(BUILD)/durable --examples examples \
	  --full ClientsTest

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

# ---- fuzzing (tests/fuzz, docs/RELIABILITY.md) ----
# A clang build with libFuzzer, ASan and UBSan in $(FUZZ_BUILD); each target
# runs as a CTest test (label fuzz) for FUZZ_SECONDS (`make fuzz`, default
# 600) or FUZZ_TEST_SECONDS (`make test-fuzz`, default 25), two at a time,
# growing its corpus in $(FUZZ_BUILD)/fuzz/<t>/corpus; then one line per
# target: executions, exec/s, coverage (cov, ft), corpus size.
FUZZ_BUILD        ?= build-fuzz
FUZZ_CC           ?= clang
FUZZ_SECONDS      ?= 600
FUZZ_TEST_SECONDS ?= 25

$(FUZZ_BUILD)/build.ninja:
	CC=$(FUZZ_CC) cmake -S . -B $(FUZZ_BUILD) -G Ninja -DDURABLE_FUZZ=ON

fuzz test-fuzz: $(FUZZ_BUILD)/build.ninja
	cmake -S . -B $(FUZZ_BUILD) -DDURABLE_FUZZ_SECONDS=$(if $(filter fuzz,$@),$(FUZZ_SECONDS),$(FUZZ_TEST_SECONDS)) >/dev/null
	cmake --build $(FUZZ_BUILD) -j $(JOBS)
	cd $(FUZZ_BUILD) && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j $(JOBS) -L fuzz; \
	  s=$$?; cat fuzz/*/summary; exit $$s

# ---- torture (tests/torture/torture.py, docs/RELIABILITY.md) ----
# KILLS SIGKILLs of `durable serve` at random moments and at the failpoints
# of the writer and of recovery, every step type in flight, then the checks;
# prints kills, runs, steps, lost, duplicated, elapsed and the seed.
# SEED=N repeats a schedule (default: a random one, printed); PG=1 runs it on
# a PostgreSQL started for it by tests/pg_server.py.
KILLS ?= 1000
SEED  ?= 0
PG    ?=
torture: build
	$(if $(PG),python3 tests/pg_server.py --) python3 tests/torture/torture.py \
	  --durable $(BUILD)/durable --kills $(KILLS) --seed $(SEED) $(if $(PG),--pg)

# ---- soak (tests/soak/soak.py, docs/RELIABILITY.md) ----
# `durable serve` under a steady mixed load (starts, a flaky retried step,
# approvals approved/rejected, cancellations, retries of failed runs, child
# runs, order actions, SSE clients resuming with Last-Event-ID, list and read
# requests) for DURATION (1h, 10m, 90s, ...); prints RSS, RssAnon, open fds,
# threads, runs and the database's size every minute; fails unless RSS and
# fds stay flat, every run finishes and the server stops cleanly. PG=1 on a
# PostgreSQL started for it. soak-asan: the same on the ASan build, whose
# LeakSanitizer runs at the server's SIGTERM stop (exit status 0 = no leak);
# there RSS is reported, not judged (the sanitizer's quarantine and shadow
# memory are in it), fds still are.
DURATION ?= 1h
SOAK_ARGS ?=
soak: build
	$(if $(PG),python3 tests/pg_server.py --) python3 tests/soak/soak.py \
	  --durable $(BUILD)/durable --duration $(DURATION) $(if $(PG),--pg) $(SOAK_ARGS)

soak-asan: $(ASAN_BUILD)/build.ninja
	cmake --build $(ASAN_BUILD) -j $(JOBS) --target durable
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:quarantine_size_mb=32 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(if $(PG),python3 tests/pg_server.py --) python3 tests/soak/soak.py \
	  --durable $(ASAN_BUILD)/durable --duration $(DURATION) $(if $(PG),--pg) --rss-report-only \
	  $(SOAK_ARGS)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(FUZZ_BUILD)

# ---- benchmarks (bench/README.md) ----
# `make bench`: a release build without failpoints in $(BENCH_BUILD), the
# bench programs compiled against its libdurable.so (which carries its own
# dependencies, so this link line does not follow them), then every workload on
# fresh temporary databases under $(BENCH_BUILD); prints the table and writes
# $(BUILD)/bench.json. BENCH_ARGS=--quick tries the harness with small sizes.
BENCH_BUILD  ?= build-bench
BENCH_ARGS   ?=
BENCH_CFLAGS ?= -std=c11 -O2 -g -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
	-Wmissing-prototypes -Wformat=2 -Wvla -Wwrite-strings -Wundef

.PHONY: bench

bench:
	@scripts/install-deps.sh wrk
	cmake -S . -B $(BENCH_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release \
	  -DDURABLE_FAILPOINTS=OFF -DDURABLE_TESTS=OFF
	cmake --build $(BENCH_BUILD) -j $(JOBS)
	mkdir -p $(BENCH_BUILD)/bench
	$(CC) $(BENCH_CFLAGS) -Iinclude -o $(BENCH_BUILD)/bench/bench_sqlite \
	  bench/bench_sqlite.c bench/bench_util.c $$(pkg-config --libs sqlite3)
	$(CC) $(BENCH_CFLAGS) -pthread -Iinclude -o $(BENCH_BUILD)/bench/bench_engine \
	  bench/bench_engine.c bench/bench_util.c $(BENCH_BUILD)/libdurable.so \
	  -Wl,-rpath,$(abspath $(BENCH_BUILD)) $$(pkg-config --libs sqlite3) -lpthread -lm
	$(CC) $(BENCH_CFLAGS) $$(pkg-config --cflags libpq) -Iinclude -o $(BENCH_BUILD)/bench/bench_pg \
	  bench/bench_pg.c bench/bench_util.c $$(pkg-config --libs libpq)
	python3 bench/run.py --build $(BENCH_BUILD) --json $(BUILD)/bench.json $(BENCH_ARGS)
