# The project's vocabulary. `make demo` is the main job, `make test` runs every
# test layer; both install what they need on a fresh machine.

CARGO    ?= cargo
CC       ?= cc
CXX      ?= c++
BUILD    := build
RELEASE  := target/release
CFLAGS_STRICT := -Wall -Wextra -Werror -pedantic -Iinclude
C_LIBS   := -lpthread -ldl -lm

.PHONY: all demo test test-rust test-c check-header check-no-python lint fmt bench header lib clean

all: lib

## The plain C library (no Python): target/release/libcymem_rs.{a,so}
lib:
	$(CARGO) build --release --no-default-features

$(BUILD):
	mkdir -p $(BUILD)

## Main job: build the library, then run the C example program.
demo: lib | $(BUILD)
	$(CC) -std=c99 $(CFLAGS_STRICT) examples/demo.c $(RELEASE)/libcymem_rs.a $(C_LIBS) -o $(BUILD)/demo
	./$(BUILD)/demo

## Every test layer.
test: test-rust test-c check-header check-no-python

test-rust:
	$(CARGO) test --no-default-features

## The C test program, linked statically and dynamically.
test-c: lib | $(BUILD)
	$(CC) -std=c99 $(CFLAGS_STRICT) tests/c/test_ffi.c $(RELEASE)/libcymem_rs.a $(C_LIBS) -o $(BUILD)/test_ffi_static
	$(CC) -std=c99 $(CFLAGS_STRICT) tests/c/test_ffi.c -L$(RELEASE) -lcymem_rs $(C_LIBS) -o $(BUILD)/test_ffi_shared
	./$(BUILD)/test_ffi_static
	LD_LIBRARY_PATH=$(RELEASE) ./$(BUILD)/test_ffi_shared

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

## Regenerate include/cymem_rs.h from src/ffi.rs with cbindgen.
header:
	CYMEM_UPDATE_HEADER=1 $(CARGO) test --no-default-features --test header

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

bench:
	$(CARGO) bench --bench pool

clean:
	$(CARGO) clean
	rm -rf $(BUILD)
