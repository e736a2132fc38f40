#!/usr/bin/env bash
# Leak and memory-error checks of cymem_rs under valgrind memcheck, for CI.
#
#   bash tests/valgrind/run.sh
#
# Runs, each under memcheck:
#   c/*         the C test program (static and shared, as `make test-c` links
#               it) and the C demo (as `make demo-c` links it);
#   py/*        the Python/Cython workloads of workloads.py, one process each
#               (py/debug-mode: debug pools with deliberate corruption;
#               py-debug/*: some workloads again with CYMEM_RS_DEBUG=1),
#               PYTHONMALLOC=malloc, with the Cython module compiled ONCE
#               beforehand (outside valgrind);
#   selftest/*  a workload plus a deliberate defect (CYMEM_VALGRIND_SELFTEST):
#               leak (a malloc'd block dropped) and invalid-read (one byte past
#               a pool block) PASS only if valgrind reports exactly that defect;
#               pool-reference (a leaked reference keeps a pool and its blocks
#               alive, which valgrind cannot be relied on to flag) PASSES only
#               if the workload's own checks fail; arena-* (from C,
#               arena_bugs.c, and from Cython: an overrun past an arena block,
#               a read after freeing one (and, from C, after clearing the
#               pool), a leaked arena pool) PASS only if
#               valgrind reports the bug with the block's allocation stack.
#               So every CI run proves the checks still bite.
#
# A run fails on any definitely-lost byte and on any memory error (invalid
# read/write/free, use of uninitialised memory, ...): see VALGRIND_FLAGS.
# "possibly lost" and "still reachable" blocks (CPython's interned and cached
# objects) are not failures. Prints one summary line per run, then a last
# line `N passed, M failed`; exits non-zero if anything failed.
#
# Environment:
#   CYMEM_VALGRIND_OUT    work dir (default build/valgrind): binaries, logs
#   CYMEM_VALGRIND_JOBS   valgrind runs in parallel (default: nproc, max 4)
#   CYMEM_VALGRIND_STRICT=1  do not suppress the known pyo3 leak (pyo3-known.supp)
#   CYMEM_VALGRIND_TRACK_ORIGINS=yes  slower, says where uninitialised values came from
#   CYMEM_VALGRIND_ONLY   space-separated globs of run names to run, e.g.
#                         'py/gc-cycles selftest/*' (default: all)
#   VALGRIND, CC          the tools (default: valgrind, cc)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=${CYMEM_VALGRIND_OUT:-$ROOT/build/valgrind}
LOGS=$OUT/logs
VPY=$ROOT/.venv/bin/python
VALGRIND=${VALGRIND:-valgrind}
CC=${CC:-cc}
JOBS=${CYMEM_VALGRIND_JOBS:-$(n=$(nproc 2>/dev/null || echo 2); echo $((n > 4 ? 4 : n)))}

# Must agree with workloads.py (SELFTEST_LEAK_BYTES, SELFTEST_READ_BYTES).
SELFTEST_LEAK_BYTES=4242
SELFTEST_READ_BYTES=24
# The one suppressed third-party leak may not grow beyond this (pyo3-known.supp).
PYO3_KNOWN_SUPP=pyo3-0.30-tp_members-copy-leaked-once-at-import
PYO3_KNOWN_MAX_BYTES=80
PYO3_KNOWN_MAX_BLOCKS=1

# --errors-for-leak-kinds=definite + --error-exitcode: a definitely-lost block
# is an error, and any error (leak or memory error) makes valgrind exit 97.
# Memory errors (invalid accesses, uninitialised reads, bad frees) are always
# errors. -s lists the suppressions used, which run.sh audits.
VALGRIND_FLAGS=(
    --tool=memcheck
    --leak-check=full
    --show-leak-kinds=definite
    --errors-for-leak-kinds=definite
    --error-exitcode=97
    --num-callers=50
    --track-origins="${CYMEM_VALGRIND_TRACK_ORIGINS:-no}"
    -s
)
PY_SUPPS=(--suppressions="$HERE/python.supp")
if [[ "${CYMEM_VALGRIND_STRICT:-0}" != 1 ]]; then
    PY_SUPPS+=(--suppressions="$HERE/pyo3-known.supp")
fi

START=$SECONDS
say() { printf '%s\n' "$*"; }
# Setup failures still end with the summary line CI looks for.
die() { say "run.sh: $*" >&2; say "0 passed, 1 failed"; exit 2; }

command -v "$VALGRIND" >/dev/null || die "valgrind not found (apt-get install valgrind)"
command -v "$CC" >/dev/null || die "C compiler '$CC' not found"

rm -rf "$LOGS" "$OUT/c" "$OUT/cython" "$OUT/pycache"
mkdir -p "$LOGS" "$OUT/c"

# ---------------------------------------------------------------------------
# 0. python.supp may only hold CPython noise (see its header): no leak
#    suppressions, nothing naming our code, every entry anchored at a fun:.
# ---------------------------------------------------------------------------
lint_python_supp() { # file
    awk '
        /^[[:space:]]*#/ || /^[[:space:]]*$/ { next }
        { line = $0; gsub(/^[[:space:]]+|[[:space:]]+$/, "", line) }
        tolower(line) ~ /cymem|pyo3|vg_workloads|_pyx_|__pyx/ { print FILENAME ":" NR ": names our code: " line; bad = 1 }
        line == "{" { state = "name"; next }
        line == "}" { state = ""; next }
        state == "name" { state = "kind"; next }
        state == "kind" {
            if (line ~ /Leak/) { print FILENAME ":" NR ": leak suppressions are not allowed here"; bad = 1 }
            state = "first"; next
        }
        state == "first" {
            if (line ~ /^match-leak-kinds/) next
            if (line !~ /^fun:[A-Za-z_]/) { print FILENAME ":" NR ": first frame must be a named CPython function: " line; bad = 1 }
            state = "frames"; next
        }
        state == "frames" && line ~ /^obj:/ { print FILENAME ":" NR ": obj: frames are too broad here: " line; bad = 1 }
        END { exit bad }
    ' "$1"
}

# ---------------------------------------------------------------------------
# 1. Build: the C library and programs, the Python package, the Cython module.
# ---------------------------------------------------------------------------
say "== building (outside valgrind)"
make -C "$ROOT" --no-print-directory lib >"$LOGS/build-lib.log" 2>&1 \
    || { cat "$LOGS/build-lib.log"; die "make lib failed"; }
CFLAGS_STRICT=(-std=c99 -Wall -Wextra -Werror -pedantic -I"$ROOT/include" -g)
C_LIBS=(-lpthread -ldl -lm)
RELEASE=$ROOT/target/release
# The C test programs as `make test-c` builds them (with -g, for stacks), in
# build/c/: NAME.static and NAME.shared.
make -C "$ROOT" --no-print-directory c-programs >"$LOGS/build-c.log" 2>&1 \
    || { cat "$LOGS/build-c.log"; die "building the C test programs failed"; }
C_TESTS=$ROOT/build/c
# The demo as `make demo-c` builds it, plus -g; the arena self-tests' program.
"$CC" "${CFLAGS_STRICT[@]}" "$ROOT/examples/demo.c" "$RELEASE/libcymem_rs.a" "${C_LIBS[@]}" \
    -o "$OUT/c/demo" || die "compiling examples/demo.c failed"
"$CC" "${CFLAGS_STRICT[@]}" "$HERE/arena_bugs.c" "$RELEASE/libcymem_rs.a" "${C_LIBS[@]}" \
    -o "$OUT/c/arena_bugs" || die "compiling tests/valgrind/arena_bugs.c failed"

# The installed wheel, imported from outside the source tree (whose cymem_rs/
# folder would shadow it).
if ! (cd "$OUT" && "$VPY" -c 'import cymem_rs.cymem') >/dev/null 2>&1; then
    say "cymem_rs is not importable from .venv: make install"
    make -C "$ROOT" --no-print-directory install >"$LOGS/build-install.log" 2>&1 \
        || { cat "$LOGS/build-install.log"; die "make install failed"; }
fi

# Compile the Cython workloads once, then run every workload natively: this
# checks the workloads' own assertions quickly, and writes hash-based .pyc
# files of every module they import for the valgrind runs (see workloads.py).
mapfile -t -d ' ' WORKLOADS < <(cd "$OUT" && "$VPY" "$HERE/workloads.py" list | tr -d '\n')
(cd "$OUT" && "$VPY" "$HERE/workloads.py" build "$OUT/cython") >"$LOGS/build-cython.log" 2>&1 \
    || { cat "$LOGS/build-cython.log"; die "compiling vg_workloads.pyx failed"; }
(cd "$OUT" && PYTHONPYCACHEPREFIX="$OUT/pycache" \
    "$VPY" "$HERE/workloads.py" precompile "$OUT/cython" "${WORKLOADS[@]}") \
    >"$LOGS/native.log" 2>&1 \
    || { cat "$LOGS/native.log"; die "the workloads fail without valgrind"; }
say "built in $((SECONDS - START))s: C programs, cymem_rs wheel, Cython module; workloads pass natively"

# ---------------------------------------------------------------------------
# 2. The valgrind runs, JOBS at a time. Each leaves LOGS/<name>.{log,out,rc,secs}.
# ---------------------------------------------------------------------------
RUNS=()       # run names, in report order
declare -A EXPECT # name -> clean | leak | invalid-read | pool-reference | reported
# For `reported` runs: the first line of the record valgrind must print
# (a regex), and fixed strings that record must hold, one per line.
declare -A REPORT_RECORD REPORT_HAS

selected() { # name
    local glob globs
    [[ -z ${CYMEM_VALGRIND_ONLY:-} ]] && return 0
    read -ra globs <<<"$CYMEM_VALGRIND_ONLY"
    for glob in "${globs[@]}"; do
        # shellcheck disable=SC2053 # glob match on purpose
        [[ $1 == $glob ]] && return 0
    done
    return 1
}

launch() { # name expect [VAR=value... --valgrind-flag...] -- command...
    local name=$1 expect=$2; shift 2
    selected "$name" || return 0
    local envs=() flags=()
    while [[ $1 != -- ]]; do
        if [[ $1 == --?* ]]; then flags+=("$1"); else envs+=("$1"); fi
        shift
    done
    shift
    RUNS+=("$name")
    EXPECT[$name]=$expect
    local base=$LOGS/${name//\//_}
    while (($(jobs -rp | wc -l) >= JOBS)); do wait -n || true; done
    (
        t0=$SECONDS
        rc=0
        cd "$OUT"
        env "${envs[@]}" "$VALGRIND" "${VALGRIND_FLAGS[@]}" "${flags[@]}" --log-file="$base.log" "$@" \
            >"$base.out" 2>&1 || rc=$?
        echo "$rc" >"$base.rc"
        echo $((SECONDS - t0)) >"$base.secs"
    ) &
}

# CYMEM_VALGRIND_SELFTEST is cleared for the real runs (an exported value must
# not turn them into self-tests); the self-tests set it after this.
PY_ENV=(PYTHONMALLOC=malloc PYTHONDONTWRITEBYTECODE=1 PYTHONPYCACHEPREFIX="$OUT/pycache"
    PYTHONNOUSERSITE=1 CYMEM_VALGRIND_SELFTEST=)
PY_RUN=("${PY_SUPPS[@]}" "$VPY" "$HERE/workloads.py" run "$OUT/cython")

say "== valgrind runs ($JOBS at a time; logs in ${LOGS#"$ROOT"/})"
# Python first (the longest runs), the short C runs last to fill the gaps.
for w in "${WORKLOADS[@]}"; do
    launch "py/$w" clean "${PY_ENV[@]}" -- "${PY_RUN[@]}" "$w"
done
launch selftest/leak leak "${PY_ENV[@]}" CYMEM_VALGRIND_SELFTEST=leak -- "${PY_RUN[@]}" addresses
launch selftest/invalid-read invalid-read "${PY_ENV[@]}" CYMEM_VALGRIND_SELFTEST=invalid-read \
    -- "${PY_RUN[@]}" addresses
launch selftest/pool-reference pool-reference "${PY_ENV[@]}" CYMEM_VALGRIND_SELFTEST=pool-reference \
    -- "${PY_RUN[@]}" addresses
# Arena blocks are described to valgrind (src/pool/instrument.rs): an
# overrun, a read after free and a leaked pool's block are each reported,
# from C and from Cython. (A leaked pool's blocks are "indirectly lost",
# behind the pool object: shown with --show-leak-kinds=definite,indirect.)
arena_selftest() { # name first-line-regex must-hold -- launch args...
    local name=$1
    REPORT_RECORD[$name]=$2
    REPORT_HAS[$name]=$3
    shift 4
    launch "$name" reported "$@"
}
OVERRUN=$'Invalid read of size 1\n0 bytes after a block of size 24 client-defined\ninstrument::ArenaWatch::announce'
LEAKED=$'instrument::ArenaWatch::announce'
arena_selftest selftest/arena-overrun-c "Invalid read of size 1" "$OVERRUN"$'\noverrun (arena_bugs.c' \
    -- -- "$OUT/c/arena_bugs" overrun
arena_selftest selftest/arena-use-after-free-c "Invalid read of size 1" $'use_after_free (arena_bugs.c' \
    -- -- "$OUT/c/arena_bugs" use-after-free
arena_selftest selftest/arena-use-after-clear-c "Invalid read of size 1" $'use_after_clear (arena_bugs.c' \
    -- -- "$OUT/c/arena_bugs" use-after-clear
arena_selftest selftest/arena-leaked-pool-c "4,321 bytes in 1 blocks are indirectly lost" \
    "$LEAKED"$'\nleaked_pool (arena_bugs.c' -- --show-leak-kinds=definite,indirect -- "$OUT/c/arena_bugs" leaked-pool
arena_selftest selftest/arena-overrun "Invalid read of size 1" "$OVERRUN"$'\nselftest_invalid_read' \
    -- "${PY_ENV[@]}" CYMEM_VALGRIND_SELFTEST=arena-overrun -- "${PY_RUN[@]}" addresses
arena_selftest selftest/arena-use-after-free "Invalid read of size 1" "selftest_read_after_free" \
    -- "${PY_ENV[@]}" CYMEM_VALGRIND_SELFTEST=arena-use-after-free -- "${PY_RUN[@]}" addresses
arena_selftest selftest/arena-leaked-pool "4,321 bytes in 1 blocks are indirectly lost" \
    "$LEAKED"$'\nselftest_leak_pool' -- "${PY_ENV[@]}" CYMEM_VALGRIND_SELFTEST=arena-leaked-pool \
    --show-leak-kinds=definite,indirect -- "${PY_RUN[@]}" addresses
# Debug mode (CYMEM_RS_DEBUG=1: every pool has guards and a quarantine) must
# stay clean too: the same workloads, and the C debug tests.
for w in pool-churn custom-allocators; do
    launch "py-debug/$w" clean "${PY_ENV[@]}" CYMEM_RS_DEBUG=1 -- "${PY_RUN[@]}" "$w"
done
launch c/test_debug clean -- "$C_TESTS/test_debug.static"
launch c/test_debug_env clean CYMEM_RS_DEBUG=1 -- "$C_TESTS/test_debug.static"
launch c/test_pins clean -- "$C_TESTS/test_pins.static"
launch c/test_stats clean -- "$C_TESTS/test_stats.static"
launch c/test_ffi_static clean -- "$C_TESTS/test_ffi.static"
launch c/test_ffi_shared clean LD_LIBRARY_PATH="$RELEASE" -- "$C_TESTS/test_ffi.shared"
launch c/demo clean -- "$OUT/c/demo"
wait

# ---------------------------------------------------------------------------
# 3. Verdicts.
# ---------------------------------------------------------------------------
passed=0
failed=0
FAILED_RUNS=()

num() { tr -d ,; }

# The loss record or error that starts with $2, printed up to its blank line.
record() { # log first-line-regex
    awk -v re="$2" '
        $0 ~ re { on = 1 }
        on { print }
        on && /^==[0-9]+== $/ { exit }
    ' "$1"
}

verdict() { # name
    local name=$1 expect=${EXPECT[$1]} base=$LOGS/${1//\//_}
    local log=$base.log rc secs lost_b=0 lost_n=0 errors=-1 memerrs supp_b=0 supp_n=0 line
    [[ -f $log ]] || : >"$log" # valgrind never started: judged "did not finish"
    [[ -f $base.out ]] || : >"$base.out"
    rc=$(cat "$base.rc" 2>/dev/null || echo "?")
    secs=$(cat "$base.secs" 2>/dev/null || echo "?")
    if line=$(grep -E '== +definitely lost: ' "$log" | tail -1); then
        lost_b=$(sed -E 's/.*definitely lost: ([0-9,]+) bytes in ([0-9,]+) blocks.*/\1/' <<<"$line" | num)
        lost_n=$(sed -E 's/.*definitely lost: ([0-9,]+) bytes in ([0-9,]+) blocks.*/\2/' <<<"$line" | num)
    fi
    if line=$(grep -E '== ERROR SUMMARY: ' "$log" | tail -1); then
        errors=$(sed -E 's/.*ERROR SUMMARY: ([0-9,]+) errors.*/\1/' <<<"$line" | num)
    fi
    # Memory-error contexts, as reported while the program ran (-s repeats
    # them after the leak summary: not counted twice).
    memerrs=$(awk '/== HEAP SUMMARY:/ { exit }
        /^==[0-9]+== (Invalid (read|write|free)|Conditional jump|Use of uninitialised|Syscall param|Mismatched free|Source and destination overlap|Argument .* fishy|Jump to the invalid address|Process terminating)/ { n++ }
        END { print n + 0 }' "$log")
    if line=$(grep -E "used_suppression: .* $PYO3_KNOWN_SUPP " "$log" | tail -1); then
        supp_b=$(sed -E 's/.*suppressed: ([0-9,]+) bytes in ([0-9,]+) blocks.*/\1/' <<<"$line" | num)
        supp_n=$(sed -E 's/.*suppressed: ([0-9,]+) bytes in ([0-9,]+) blocks.*/\2/' <<<"$line" | num)
    fi

    local figures="definitely lost: $lost_b bytes in $lost_n blocks | errors: $errors (memory errors: $memerrs)"
    ((supp_n > 0)) && figures+=" | known pyo3 leak suppressed: $supp_b bytes"
    figures+=" | exit $rc | ${secs}s"

    local problems=()
    [[ $errors == -1 ]] && problems+=("valgrind did not finish (no ERROR SUMMARY)")
    if ((supp_b > PYO3_KNOWN_MAX_BYTES || supp_n > PYO3_KNOWN_MAX_BLOCKS)); then
        problems+=("pyo3-known.supp hid $supp_b bytes in $supp_n blocks (allowed: $PYO3_KNOWN_MAX_BYTES in $PYO3_KNOWN_MAX_BLOCKS)")
    fi
    case $expect in
    clean)
        ((lost_b == 0 && lost_n == 0)) || problems+=("definitely lost $lost_b bytes")
        ((errors == 0)) || problems+=("$errors valgrind errors")
        [[ $rc == 0 ]] || problems+=("exit status $rc$([[ $rc == 97 ]] && echo ' (valgrind findings)' || echo ' (the program failed)')")
        ;;
    leak)
        # valgrind groups digits with commas: 4242 -> 4,242
        local want
        want="$(sed -E ':a; s/^([0-9]+)([0-9]{3})/\1,\2/; ta' <<<"$SELFTEST_LEAK_BYTES") bytes in 1 blocks are definitely lost"
        [[ $rc == 97 ]] || problems+=("expected valgrind to fail with 97, got $rc")
        grep -q "SELFTEST: leaked" "$base.out" || problems+=("the workload did not reach the deliberate leak")
        record "$log" "$want" | grep -q selftest_leak \
            || problems+=("no '$want' record pointing at selftest_leak")
        ((lost_b == SELFTEST_LEAK_BYTES)) || problems+=("definitely lost $lost_b bytes, expected exactly $SELFTEST_LEAK_BYTES")
        ((memerrs == 0)) || problems+=("$memerrs unexpected memory errors")
        figures="valgrind caught the deliberate leak: $figures"
        ;;
    invalid-read)
        [[ $rc == 97 ]] || problems+=("expected valgrind to fail with 97, got $rc")
        grep -q "SELFTEST: read" "$base.out" || problems+=("the workload did not reach the deliberate read")
        record "$log" "Invalid read of size 1" \
            | grep -q "selftest_invalid_read" || problems+=("no 'Invalid read of size 1' in selftest_invalid_read")
        record "$log" "Invalid read of size 1" \
            | grep -q "0 bytes after a block of size $SELFTEST_READ_BYTES alloc'd" \
            || problems+=("the invalid read is not located just past the $SELFTEST_READ_BYTES-byte pool block")
        ((lost_b == 0)) || problems+=("definitely lost $lost_b bytes")
        figures="valgrind caught the deliberate invalid read: $figures"
        ;;
    reported)
        local want missing=()
        [[ $rc == 97 ]] || problems+=("expected valgrind to fail with 97, got $rc")
        grep -q "BUG:\|SELFTEST:" "$base.out" || problems+=("the program did not reach the deliberate bug")
        while IFS= read -r want; do
            record "$log" "${REPORT_RECORD[$name]}" | grep -qF -- "$want" || missing+=("$want")
        done <<<"${REPORT_HAS[$name]}"
        ((${#missing[@]} == 0)) || problems+=("no '${REPORT_RECORD[$name]}' record holding: ${missing[*]}")
        figures="valgrind reported the arena bug: $figures"
        ;;
    pool-reference)
        # A pool kept alive by a leaked reference is still reachable, so
        # valgrind need not call its blocks lost: workloads.py's own checks
        # must fail (exit 1; 97 if valgrind also reported something).
        [[ $rc == 1 || $rc == 97 ]] || problems+=("expected the workload to fail, got exit $rc")
        grep -q "SELFTEST pool-reference: 1 of 1 pools still alive" "$base.out" \
            || problems+=("workloads.py did not report the pool kept alive")
        ((memerrs == 0)) || problems+=("$memerrs unexpected memory errors")
        figures="workloads.py caught the leaked pool reference: $figures"
        ;;
    esac

    if ((${#problems[@]} == 0)); then
        passed=$((passed + 1))
        printf 'PASS  %-30s %s\n' "$name" "$figures"
    else
        failed=$((failed + 1))
        FAILED_RUNS+=("$name")
        printf 'FAIL  %-30s %s\n' "$name" "$figures"
        local p
        for p in "${problems[@]}"; do say "      - $p"; done
        say "      log: $log"
    fi
}

say "== results"
if lint_out=$(lint_python_supp "$HERE/python.supp" 2>&1); then
    passed=$((passed + 1))
    printf 'PASS  %-30s %s\n' "lint/python.supp" "no leak suppressions, nothing naming cymem_rs/pyo3/the test module, every entry anchored at a CPython function"
else
    failed=$((failed + 1))
    FAILED_RUNS+=("lint/python.supp")
    printf 'FAIL  %-30s %s\n' "lint/python.supp" "suppressions that could hide our frames:"
    say "$lint_out" | sed 's/^/      /'
fi
for name in "${RUNS[@]}"; do verdict "$name"; done

# Details of failed valgrind runs: their program output and first findings.
for name in "${FAILED_RUNS[@]}"; do
    base=$LOGS/${name//\//_}
    [[ -f $base.log ]] || continue
    say ""
    say "---- $name: program output (tail)"
    tail -n 15 "$base.out" 2>/dev/null || true
    say "---- $name: valgrind findings (first 5, 24 lines each; full log: $base.log)"
    awk '/== HEAP SUMMARY:/ { heap = 1 }
        (!heap && /^==[0-9]+== (Invalid|Conditional|Use of|Syscall|Mismatched|Source and|Jump|Process terminating)/) \
            || /^==[0-9]+== [0-9,]+ bytes in [0-9,]+ blocks are definitely/ {
            if (!on) { if (++records > 5) exit; on = 1; n = 0 }
        }
        on { if (++n <= 24) print; if ($0 ~ /^==[0-9]+== $/) on = 0 }' "$base.log"
done

say "total time: $((SECONDS - START))s"
say "$passed passed, $failed failed"
((failed == 0))
