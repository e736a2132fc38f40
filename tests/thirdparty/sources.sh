# Shared by tests/thirdparty/run.sh and benches/real/build.sh (sourced, not
# run): the projects' versions and requirements, and the steps that fetch an
# sdist from PyPI, unpack it and point it at cymem_rs.
#
# The caller sets: VPY (the venv's python), SDISTS (sdist cache folder), LOGS
# (log folder), WORKTMP (where source trees are unpacked).

THIRDPARTY_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

PRESHED_VERSION=${PRESHED_VERSION:-3.0.15}
THINC_VERSION=${THINC_VERSION:-8.3.14}
CYTHON_SPEC=${CYTHON_SPEC:-cython>=3.1,<4}
# What each project needs besides cymem (or cymem_rs) and the projects above it.
PRESHED_DEPS=("murmurhash>=0.28.0,<1.1.0")
# thinc's build/runtime requirements (setup.cfg), less cymem and preshed.
THINC_DEPS=("numpy>=2.0.0,<3.0.0" "blis>=1.3.0,<1.4.0" "murmurhash>=1.0.2,<1.1.0"
    "wasabi>=0.8.1,<1.2.0" "srsly>=2.4.0,<3.1.0" "catalogue>=2.0.4,<2.1.0"
    "confection>=1.3.2,<2.0.0" "pydantic>=2.0.0,<3.0.0" "packaging>=20.0")

say() { printf '\n\033[1m=== %s\033[0m\n' "$*"; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

# Run "$@" with its output in log file $1 (relative to $LOGS); show the tail if it fails.
logged() {
    local log=$LOGS/$1
    shift
    if ! "$@" >"$log" 2>&1; then
        echo "command failed: $*" >&2
        echo "--- last 60 lines of $log ---" >&2
        tail -n 60 "$log" >&2
        return 1
    fi
}

# fetch NAME VERSION -> path of the cached sdist
fetch() {
    local name=$1 version=$2 sdist
    sdist=$(ls "$SDISTS/$name-$version".tar.gz "$SDISTS/$name-$version".zip 2>/dev/null | head -n 1 || true)
    if [[ -z "$sdist" ]]; then
        # --no-binary NAME: NAME's sdist, never its wheel. (`:all:` would also
        # force the build requirements that pip needs to read the metadata,
        # e.g. numpy and blis for thinc, to be compiled from source.)
        "$VPY" -m pip download --no-binary "$name" --no-deps "$name==$version" -d "$SDISTS" \
            >"$LOGS/$name-download.log" 2>&1 || { tail -n 30 "$LOGS/$name-download.log" >&2; return 1; }
        sdist=$(ls "$SDISTS/$name-$version".tar.gz "$SDISTS/$name-$version".zip 2>/dev/null | head -n 1 || true)
    fi
    [[ -f "$sdist" ]] || { echo "no sdist for $name $version in $SDISTS" >&2; return 1; }
    echo "$sdist"
}

# unpack SDIST -> fresh source tree under $WORKTMP
unpack() {
    local sdist=$1 dest
    dest=$(mktemp -d "$WORKTMP/src.XXXX")
    case "$sdist" in
        *.zip) (cd "$dest" && "$VPY" -m zipfile -e "$sdist" .) ;;
        *) tar -xzf "$sdist" -C "$dest" ;;
    esac
    local top=("$dest"/*)
    [[ ${#top[@]} == 1 && -d "${top[0]}" ]] || { echo "unexpected sdist layout: $sdist" >&2; return 1; }
    echo "${top[0]}"
}

# point_at_cymem_rs DIR: rewrite DIR's cymem imports and requirements (diff on stderr)
point_at_cymem_rs() {
    "$VPY" "$THIRDPARTY_DIR/rewrite_cymem.py" "$1" >&2
}

# prepare NAME VERSION -> rewritten source tree (diff printed on stderr)
prepare() {
    local name=$1 version=$2 sdist src
    sdist=$(fetch "$name" "$version")
    src=$(unpack "$sdist")
    echo "sdist $sdist -> $src" >&2
    echo "--- what changes in $name $version (everything else is as released) ---" >&2
    point_at_cymem_rs "$src"
    echo "$src"
}
