#!/usr/bin/env bash
# Callgrind instructions per operation of the core (no Python, glibc malloc),
# for the working tree or for git revisions:
#   bash benches/rust_ir/run.sh              # the working tree
#   bash benches/rust_ir/run.sh 0d2ff1e HEAD # two commits, one line each
# Load-independent: callgrind counts instructions, not time.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=$ROOT/target/rust_ir
mkdir -p "$WORK"
revs=("$@")
[ ${#revs[@]} -eq 0 ] && revs=(worktree)
printf '%-10s %10s %10s %10s %10s %10s\n' rev "a Ir/pair" "b Ir/alloc" "b_arena" "d Ir/pool" "d_arena"
for rev in "${revs[@]}"; do
    src=$WORK/src-$rev
    rm -rf "$src" && mkdir -p "$src"
    if [ "$rev" = worktree ]; then
        (cd "$ROOT" && tar -c --exclude=./target --exclude=./.venv --exclude=./build --exclude=./benches . | tar -x -C "$src")
    else
        (cd "$ROOT" && git archive "$rev" | tar -x -C "$src")
    fi
    drv=$WORK/drv-$rev
    rm -rf "$drv" && mkdir -p "$drv"
    cp -r "$HERE/src" "$drv/"
    sed "s#SRC#$src#" "$HERE/Cargo.toml" > "$drv/Cargo.toml"
    (cd "$drv" && CARGO_TARGET_DIR=$drv/target cargo build --release -q)
    bin=$drv/target/release/cymem_rs_ir
    ir() { valgrind --tool=callgrind --callgrind-out-file="$drv/cg.$1.$2" "$bin" "$1" "$2" 2>&1 | sed -n 's/.*Collected : //p'; }
    cells=()
    for w in "a 200000" "b 1000000" "b_arena 1000000" "d 20000" "d_arena 20000"; do
        set -- $w
        full=$(ir "$1" "$2"); zero=$(ir "$1" 0)
        cells+=("$(( (full - zero) / $2 ))")
    done
    printf '%-10s %10s %10s %10s %10s %10s\n' "$rev" "${cells[@]}"
done
