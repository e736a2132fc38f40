#!/usr/bin/env bash
# cymem_rs's C library beside libc, talloc, APR pools and mimalloc heaps
# (benches/c_pools/c_pools.c): builds the binary against the static library
# in target/$PROFILE (`make lib`), with each peer that is installed, runs the
# interleaved rounds and, when valgrind exists, callgrind's Ir/op of the
# cymem_rs columns. Prints the tables; writes build/bench/c_pools.{json,md}
# and keeps the callgrind files in build/bench/c_pools_cg/ for
# callgrind_annotate.
#   bash benches/c_pools/run.sh [--quick] [--no-ir]
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=$ROOT/build/bench
LIB=$ROOT/target/${PROFILE:-release}/libcymem_rs.a
CC=${CC:-cc}
rounds=15
ir=1
for arg in "$@"; do
    case $arg in
        --quick) rounds=3 ;;
        --no-ir) ir=0 ;;
        *) echo "usage: $0 [--quick] [--no-ir]" >&2; exit 2 ;;
    esac
done
[ -f "$LIB" ] || { echo "$LIB is missing: run make lib" >&2; exit 1; }
mkdir -p "$OUT/c_pools_cg"

# A peer is used when pkg-config knows it, or else (Debian's mimalloc ships
# no .pc file) when its header and library link. mimalloc is not linked but
# loaded by the binary (its library would replace malloc for the whole
# process): it gets the library's path instead.
flags=() libs=() versions=()
peer() { # MACRO PKG HEADER LIB
    local found=()
    if pkg-config --exists "$2" 2>/dev/null; then
        flags+=("-D$1" $(pkg-config --cflags "$2"))
        found=($(pkg-config --libs "$2"))
        versions+=("$2 $(pkg-config --modversion "$2")")
    elif printf '#include <%s>\nint main(void){return 0;}\n' "$3" |
        "$CC" -x c - "-l$4" -o /dev/null 2>/dev/null; then
        flags+=("-D$1")
        found=("-l$4")
        versions+=("$2 $(dpkg-query -W -f '${Version}' "lib$2-dev" 2>/dev/null || echo '?')")
    else
        echo "$2 not found: its column is skipped (make bench-deps installs it)" >&2
        return 0
    fi
    if [ "$2" = mimalloc ]; then
        local so
        so=$(pkg-config --variable=libdir mimalloc 2>/dev/null || true)
        so=${so:+$so/lib$4.so}
        flags+=("-DMIMALLOC_SO=\"${so:-$("$CC" -print-file-name="lib$4.so")}\"")
    else
        libs+=("${found[@]}")
    fi
}
peer HAVE_TALLOC talloc talloc.h talloc
peer HAVE_APR apr-1 apr_pools.h apr-1
peer HAVE_MIMALLOC mimalloc mimalloc.h mimalloc
grep -q cymem_pool_new_unlocked "$ROOT/include/cymem_rs.h" && flags+=(-DHAVE_UNLOCKED_POOLS)

bin=$OUT/c_pools
"$CC" -std=c99 -O2 -g -Wall -Wextra -I"$ROOT/include" "${flags[@]}" "$HERE/c_pools.c" \
    "$LIB" "${libs[@]}" -lpthread -ldl -lm -o "$bin"

irfile=$OUT/c_pools_cg/ir.txt
: > "$irfile"
if [ $ir = 1 ] && command -v valgrind >/dev/null; then
    echo "callgrind: Ir/op of the cymem_rs columns and libc (N minus 0 operations)" >&2
    count() { valgrind --tool=callgrind --callgrind-out-file="$OUT/c_pools_cg/$1.$2.$3" \
        "$bin" ir "$1" "$2" "$3" 2>&1 | sed -n 's/.*Collected : //p'; }
    "$bin" list-ir | while read -r work col n; do
        full=$(count "$work" "$col" "$n") zero=$(count "$work" "$col" 0)
        echo "$work $col $(( (full - zero) / n ))" >> "$irfile"
    done
elif [ $ir = 1 ]; then
    echo "valgrind not found: no Ir columns" >&2
fi

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
machine="$cpu, $(nproc) CPUs; Linux $(uname -r); $("$CC" --version | head -1);"
machine+=" $(IFS=,; echo "${versions[*]}" | sed 's/,/, /g'); $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "$machine"
echo
"$bin" time --rounds "$rounds" --ir "$irfile" --machine "$machine" \
    --json "$OUT/c_pools.json" --md "$OUT/c_pools.md"
echo
echo "written: build/bench/c_pools.json, build/bench/c_pools.md"
