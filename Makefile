# Tula developer entry points. `make help` lists them.
#
# The release build lives in its own scratch path ($(RELEASE_SCRATCH), git-ignored as .build-*/), so it
# never contends for the .build lock with `swift build` / `swift test` (the hot-loop test uses the same one).

SWIFT           ?= swift
PYTHON          ?= python3
RELEASE_SCRATCH ?= .build-release
RELEASE_BIN     := $(RELEASE_SCRATCH)/release/tula-appliance

# Soak knobs: `make soak MINUTES=30 SOAK_ARGS="--rate 5000 --out out/soak/30min"` (root; see README, Soak).
MINUTES         ?= 2
SOAK_ARGS       ?=

# Benchmark knobs: `make bench BENCH_SECONDS=10 BENCH_REPS=5 BENCH_FLOWS="1000 1000000"`.
BENCH_SECONDS   ?= 5
BENCH_REPS      ?= 3
BENCH_FLOWS     ?= 1000 100000 1000000
BENCH_ARGS      ?=
# BENCH_INSTRUCTIONS=1: also instructions per packet per case (callgrind, scripts/bench/instructions.sh; needs valgrind).
BENCH_INSTRUCTIONS ?=
# matplotlib for the chart: used from $(PYTHON) when it has it, else from a venv made here on first use.
BENCH_VENV      ?= .build-bench/venv

# Sanitizer runs (each in its own scratch path, git-ignored as .build-*/): the DPDK-free unit tests under
# AddressSanitizer, and the control-plane ones (control server, snapshot-free protocol, health, config) under
# ThreadSanitizer. Integration tests are left out: they run the appliance binary, which is not instrumented.
ASAN_FILTER     ?= TulaCoreTests
TSAN_FILTER     ?= TulaCoreTests\.(ControlProtocolTests|ControlServerBoundsTests|ProbeOutcomeTests|BackendHealth)
# Timing assertions do not hold under TSan's slowdown (5-15x); they run in the normal suite.
TSAN_SKIP       ?= pipeliningClientsThatNeverReadDoNotStarveRoot

# `make install` / `make uninstall` (scripts/install.sh): DESTDIR and PREFIX as usual.
PREFIX          ?= /usr/local
export PREFIX DESTDIR SYSCONFDIR UNITDIR

# Fuzzing: `make fuzz FUZZ_SECONDS=1800 FUZZ_TARGETS="frame config"` (scripts/fuzz.sh; README, "Fuzzing").
FUZZ_SECONDS    ?= 60
FUZZ_TARGETS    ?=

.PHONY: install uninstall help release bench bench-report bench-chart bench-venv check-sanitizers check-asan check-tsan fuzz

help:
	@echo "make soak          MINUTES=N of mixed traffic and live changes against the release build: mbufs, RSS, fds"
	@echo "make release       release build of tula-appliance into $(RELEASE_SCRATCH)"
	@echo "make install       binary, systemd units, hugepages.sh and /etc/tula/tula.yaml (DESTDIR, PREFIX honoured)"
	@echo "make uninstall     remove exactly what make install put there (an edited config stays)"
	@echo "make bench         throughput against dpdk-testpmd -> BENCHMARKS.md, benchmarks/ (takes ~6 min; BENCH_INSTRUCTIONS=1 adds callgrind counts)"
	@echo "make bench-report  rewrite BENCHMARKS.md tables and the chart from benchmarks/results.json"
	@echo "make check-sanitizers  unit tests under AddressSanitizer, control-plane tests under ThreadSanitizer"
	@echo "make fuzz          each libFuzzer target for FUZZ_SECONDS (60); corpora and findings into Fuzz/"

fuzz:
	scripts/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

release:
	$(SWIFT) build -c release --product tula-appliance --scratch-path $(RELEASE_SCRATCH)

install: release
	scripts/install.sh install $(RELEASE_BIN)

uninstall:
	scripts/install.sh uninstall

.PHONY: soak
soak: release
	$(PYTHON) scripts/soak.py --minutes $(MINUTES) --binary $(RELEASE_BIN) $(SOAK_ARGS)

# The command as typed (with the knobs that were set), recorded in BENCHMARKS.md.
BENCH_CMD = $(strip make bench $(foreach v,BENCH_SECONDS BENCH_REPS BENCH_FLOWS BENCH_INSTRUCTIONS BENCH_ARGS,$(if $(filter command% environment%,$(origin $(v))),$(v)='$(strip $($(v)))')))

bench: release bench-venv
	$(PYTHON) scripts/bench/bench.py --binary $(RELEASE_BIN) --seconds $(BENCH_SECONDS) --reps $(BENCH_REPS) \
		--flows "$(BENCH_FLOWS)" --command-line "$(BENCH_CMD)" $(if $(filter-out 0,$(BENCH_INSTRUCTIONS)),--instructions) $(BENCH_ARGS)
	$(MAKE) --no-print-directory bench-chart

bench-report: bench-venv
	$(PYTHON) scripts/bench/bench.py --report-only
	$(MAKE) --no-print-directory bench-chart

bench-chart: bench-venv
	$$($(PYTHON) -c 'import matplotlib' 2>/dev/null && echo $(PYTHON) || echo $(BENCH_VENV)/bin/python) \
		scripts/bench/chart.py benchmarks/results.json benchmarks/throughput.png

bench-venv:
	@$(PYTHON) -c 'import matplotlib' 2>/dev/null || $(BENCH_VENV)/bin/python -c 'import matplotlib' 2>/dev/null || \
		{ echo "creating $(BENCH_VENV) with matplotlib (for the benchmark chart)"; \
		  $(PYTHON) -m venv $(BENCH_VENV) && $(BENCH_VENV)/bin/pip install --quiet matplotlib; }

check-sanitizers: check-asan check-tsan

check-asan:
	$(SWIFT) build --build-tests --sanitize=address --scratch-path .build-asan
	LSAN_OPTIONS=suppressions=$(CURDIR)/scripts/lsan.supp $(SWIFT) test --skip-build --sanitize=address \
		--scratch-path .build-asan --filter '$(ASAN_FILTER)'

check-tsan:
	$(SWIFT) build --build-tests --sanitize=thread --scratch-path .build-tsan
	$(SWIFT) test --skip-build --sanitize=thread --scratch-path .build-tsan --filter '$(TSAN_FILTER)' --skip '$(TSAN_SKIP)'
