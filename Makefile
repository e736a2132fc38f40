# The project's vocabulary. `make demo` is the main job and `make test` runs
# every test layer; both install what they need on a fresh machine (Python
# tools go into .venv/, nothing is installed system-wide).

CARGO    ?= cargo
CC       ?= cc
CXX      ?= c++
PYTHON   ?= python3
BUILD    := build
RELEASE  := target/release
CFLAGS_STRICT := -Wall -Wextra -Werror -pedantic -Iinclude
C_LIBS   := -lpthread -ldl -lm

VENV     := .venv
VPY      := $(VENV)/bin/python
WHEELS   := $(BUILD)/wheels
# Python builds use their own target dir so they don't flip the plain C
# library's features back and forth in target/release.
export CARGO_TARGET_DIR_PY := $(CURDIR)/target/wheels
PY_TOOLS := maturin==1.16.0 "cython==3.3.1" pytest setuptools ruff==0.17.5 cymem==2.0.16 numpy==2.4.6

.PHONY: all lib demo demo-c demo-cython test test-rust test-c test-python test-compat \
	test-thirdparty check-valgrind check-sanitizers check-header check-no-python install lint fmt bench header fuzz clean

all: lib

## The plain C library (no Python): target/release/libcymem_rs.{a,so}
lib:
	$(CARGO) build --release --no-default-features

$(BUILD):
	mkdir -p $(BUILD)

## Python tools for building and testing, in .venv/.
$(VENV)/.tools:
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q $(PY_TOOLS)
	touch $@

## Build the wheel for .venv's Python and install it (not editable: tests and
## the demo see exactly what users get from `pip install`).
install: $(VENV)/.tools
	CARGO_TARGET_DIR=$(CARGO_TARGET_DIR_PY) $(VENV)/bin/maturin build --release -q -i $(VPY) -o $(WHEELS)
	$(VPY) -m pip install -q --force-reinstall --no-deps \
		$$(ls -t $(WHEELS)/cymem_rs-*-$$($(VPY) -c 'import sys; print("cp%d%d" % sys.version_info[:2])')-*.whl | head -1)

## Main job: the C example program, then the Cython one.
demo: demo-c demo-cython

demo-c: lib | $(BUILD)
	$(CC) -std=c99 $(CFLAGS_STRICT) examples/demo.c $(RELEASE)/libcymem_rs.a $(C_LIBS) -o $(BUILD)/demo
	./$(BUILD)/demo

demo-cython: install | $(BUILD)
	rm -rf $(BUILD)/demo-cython && mkdir -p $(BUILD)/demo-cython
	cp examples/demo.pyx $(BUILD)/demo-cython/cymem_rs_demo.pyx
	cd $(BUILD)/demo-cython && ../../$(VENV)/bin/cythonize -q -3 -i cymem_rs_demo.pyx >/dev/null
	cd $(BUILD)/demo-cython && ../../$(VPY) -c 'import cymem_rs_demo; cymem_rs_demo.main()'

## Every test layer.
test: test-rust test-c check-header check-no-python check-sanitizers test-python check-valgrind \
	test-compat test-thirdparty

test-rust:
	$(CARGO) test --no-default-features

## The C test program, linked statically and dynamically.
test-c: lib | $(BUILD)
	$(CC) -std=c99 $(CFLAGS_STRICT) tests/c/test_ffi.c $(RELEASE)/libcymem_rs.a $(C_LIBS) -o $(BUILD)/test_ffi_static
	$(CC) -std=c99 $(CFLAGS_STRICT) tests/c/test_ffi.c -L$(RELEASE) -lcymem_rs $(C_LIBS) -o $(BUILD)/test_ffi_shared
	./$(BUILD)/test_ffi_static
	LD_LIBRARY_PATH=$(RELEASE) ./$(BUILD)/test_ffi_shared
	$(CC) -std=c99 $(CFLAGS_STRICT) tests/c/test_pins.c $(RELEASE)/libcymem_rs.a $(C_LIBS) -o $(BUILD)/test_pins
	./$(BUILD)/test_pins
	$(CC) -std=c99 $(CFLAGS_STRICT) tests/c/test_lifetimes.c $(RELEASE)/libcymem_rs.a $(C_LIBS) -o $(BUILD)/test_lifetimes
	./$(BUILD)/test_lifetimes
	$(CC) -std=c99 $(CFLAGS_STRICT) tests/c/test_debug.c $(RELEASE)/libcymem_rs.a $(C_LIBS) -o $(BUILD)/test_debug
	./$(BUILD)/test_debug
	CYMEM_RS_DEBUG=1 ./$(BUILD)/test_debug
	$(CC) -std=c99 $(CFLAGS_STRICT) tests/c/test_stats.c $(RELEASE)/libcymem_rs.a $(C_LIBS) -o $(BUILD)/test_stats_static
	$(CC) -std=c99 $(CFLAGS_STRICT) tests/c/test_stats.c -L$(RELEASE) -lcymem_rs $(C_LIBS) -o $(BUILD)/test_stats_shared
	./$(BUILD)/test_stats_static
	LD_LIBRARY_PATH=$(RELEASE) ./$(BUILD)/test_stats_shared

## The committed header compiles on its own as C99, C11 and C++.
## (Its freshness against cbindgen is checked by `cargo test --test header`.)
check-header:
	echo '#include "cymem_rs.h"' | $(CC) -std=c99 $(CFLAGS_STRICT) -x c -fsyntax-only -
	echo '#include "cymem_rs.h"' | $(CC) -std=c11 $(CFLAGS_STRICT) -x c -fsyntax-only -
	echo '#include "cymem_rs.h"' | $(CXX) -std=c++11 $(CFLAGS_STRICT) -x c++ -fsyntax-only -
	@echo "header compiles as C99, C11 and C++11"

## The C library must not need libpython.
check-no-python: lib
	@if nm -D --undefined-only $(RELEASE)/libcymem_rs.so | grep -E ' _?Py'; then \
		echo "libcymem_rs.so references Python symbols"; exit 1; fi
	@if nm --undefined-only $(RELEASE)/libcymem_rs.a 2>/dev/null | grep -E ' _?Py'; then \
		echo "libcymem_rs.a references Python symbols"; exit 1; fi
	@echo "libcymem_rs.so and libcymem_rs.a have no Python symbols"

## Python and Cython tests (CPython of .venv, newest Cython), against the
## installed wheel. Run from tests/ so the source tree's package can't shadow it.
test-python: install
	cd tests && ../$(VENV)/bin/pytest -q -p no:cacheprovider python

## Cython 3.0 .. newest x CPython 3.9, 3.11, 3.13: build, import, smoke test.
## The other interpreters' wheels are rebuilt from this tree every run (the
## matrix script only builds missing ones).
test-compat: install
	rm -f $(WHEELS)/cymem_rs-*-cp39-*.whl $(WHEELS)/cymem_rs-*-cp313-*.whl
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH bash tests/compat/run_matrix.sh $(WHEELS)

## The core's tests (model-based, threads, unit) under AddressSanitizer and
## LeakSanitizer. The quarantine is off so freed addresses get reused, as the
## model test expects; requests beyond ASan's limit return NULL like malloc.
check-sanitizers:
	RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Zsanitizer=address" \
	ASAN_OPTIONS=allocator_may_return_null=1:quarantine_size_mb=0:detect_leaks=1 \
	CARGO_TARGET_DIR=target/asan $(CARGO) test --target $$(rustc -vV | sed -n 's/^host: //p') \
		--no-default-features --lib --test pool --test model --test threads --test debug --test pins

## valgrind memcheck over the C tests and Python/Cython workloads: any
## definite leak or invalid access fails, and a self-test proves it would.
check-valgrind: install lib
	bash tests/valgrind/run.sh

## Real projects written for cymem, built on cymem_rs, running their own tests.
test-thirdparty: install
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH PYTHON=$(CURDIR)/$(VPY) CYMEM_RS_WHEEL_DIR=$(CURDIR)/$(WHEELS) \
		bash tests/thirdparty/run.sh

## Coverage-guided fuzzing of the pool's operations against its model
## (FUZZ_SECONDS=N; installs cargo-fuzz if missing). See fuzz/README.md.
fuzz:
	bash fuzz/smoke.sh

## Regenerate include/cymem_rs.h from src/ffi.rs with cbindgen.
header:
	CYMEM_UPDATE_HEADER=1 $(CARGO) test --no-default-features --test header

lint: $(VENV)/.tools
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy --all-targets --features python -- -D warnings
	$(VENV)/bin/ruff check cymem_rs tests examples benches
	$(VENV)/bin/ruff format --check cymem_rs tests examples benches

fmt: $(VENV)/.tools
	$(CARGO) fmt
	$(VENV)/bin/ruff format cymem_rs tests examples

## Criterion benchmarks of the core beside libc, then the Cython suite:
## cymem vs cymem_rs vs baselines in one process (table, chart, report).
bench: install
	$(CARGO) bench --bench pool
	bash benches/cython/run.sh

clean:
	$(CARGO) clean
	rm -rf $(BUILD)
