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
WHEELS   := $(BUILD)/wheels
# Python builds use their own target dir so they don't flip the plain C
# library's features back and forth in target/$(PROFILE).
export CARGO_TARGET_DIR_PY := $(CURDIR)/target/wheels
PY_TOOLS := maturin==1.16.0 "cython==3.3.1" pytest setuptools ruff==0.17.5 cymem==2.0.16 numpy==2.4.6 ipython==9.18.1
# What `make lint` checks and `make fmt` fixes.
PY_PATHS := cymem_rs tests examples benches
# pytest over a folder of tests/, from tests/ so the source tree's package
# can't shadow the installed wheel.
PYTEST   := cd tests && ../$(VENV)/bin/pytest -q -p no:cacheprovider

.PHONY: all help lib demo demo-c demo-cython check test test-rust c-programs test-c test-python \
	test-adversarial test-long test-compat test-thirdparty check-valgrind check-sanitizers \
	check-header check-no-python install lint fmt bench header fuzz clean

all: lib

help: ## This list
	@grep -E '^[a-z][a-zA-Z_-]*:.*## ' $(MAKEFILE_LIST) | \
		awk -F ':.*## ' '{ printf "  %-18s %s\n", $$1, $$2 }'

lib: ## The plain C library (no Python): target/release/libcymem_rs.{a,so}
	$(CARGO) build --profile $(PROFILE) --no-default-features

$(BUILD) $(BUILD)/c:
	mkdir -p $@

# Python tools for building and testing, in .venv/.
$(VENV)/.tools:
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q $(PY_TOOLS)
	touch $@

# Not editable: tests and the demo see exactly what users get from `pip install`.
install: $(VENV)/.tools ## Build the wheel for .venv's Python and install it there
	CARGO_TARGET_DIR=$(CARGO_TARGET_DIR_PY) $(VENV)/bin/maturin build --profile $(PROFILE) -q -i $(VPY) -o $(WHEELS)
	$(VPY) -m pip install -q --force-reinstall --no-deps \
		$$(ls -t $(WHEELS)/cymem_rs-*-$$($(VPY) -c 'import sys; print("cp%d%d" % sys.version_info[:2])')-*.whl | head -1)

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
	test-adversarial check-valgrind test-compat test-thirdparty
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
$(BUILD)/c/%: tests/c/$$(basename $$*).c tests/c/check.h include/cymem_rs.h lib | $(BUILD)/c
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

# The other interpreters' wheels are rebuilt from this tree every run (the
# matrix script only builds missing ones).
test-compat: install ## Cython 3.0 .. newest x CPython 3.9, 3.11, 3.13: build, import, smoke test
	rm -f $(WHEELS)/cymem_rs-*-cp39-*.whl $(WHEELS)/cymem_rs-*-cp313-*.whl
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH bash tests/compat/run_matrix.sh $(WHEELS)

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

header: ## Regenerate include/cymem_rs.h from src/ffi.rs with cbindgen
	CYMEM_UPDATE_HEADER=1 $(CARGO) test --no-default-features --test all header::

# The layering rule: only src/lib.rs may mention the `python` feature; the
# binding's modules are switched on there, never from inside the core.
lint: $(VENV)/.tools ## rustfmt, clippy (with and without `python`), ruff, the feature-layering rule
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy --all-targets --features python -- -D warnings
	$(VENV)/bin/ruff check $(PY_PATHS)
	$(VENV)/bin/ruff format --check $(PY_PATHS)
	@if grep -rnE 'feature *= *"python"' src | grep -v '^src/lib.rs:'; then \
		echo 'feature = "python" may appear only in src/lib.rs'; exit 1; fi

# What ruff cannot fix it prints, and `make lint` fails on.
fmt: $(VENV)/.tools ## Fix what `make lint` can fix: rustfmt, ruff's fixes and formatting
	$(CARGO) fmt
	$(VENV)/bin/ruff check --fix --exit-zero -q $(PY_PATHS)
	$(VENV)/bin/ruff format -q $(PY_PATHS)

# Results go to build/bench/ (results.json, REPORT.md, chart.png);
# BENCHMARKS.md is the hand-kept summary.
bench: install ## Criterion benches of the core beside libc, then the Cython suite (cymem vs cymem_rs)
	$(CARGO) bench --bench pool
	bash benches/cython/run.sh

clean: ## Remove target/ and build/
	$(CARGO) clean
	rm -rf $(BUILD)
