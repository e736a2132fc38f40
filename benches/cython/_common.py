"""Shared helpers of the Cython benchmark: paths, building the two modules
from workloads.pyx (with the tests' Cython builder, tests/cython_build.py),
and fingerprints of what was measured."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TEMPLATE = HERE / "workloads.pyx"
# Generated results (results.json, chart.png, REPORT.md); the work files
# (modules, snapshot, callgrind outputs) go one level down.
DEFAULT_OUT_DIR = ROOT / "build" / "bench"
DEFAULT_BUILD_DIR = DEFAULT_OUT_DIR / "cython"

sys.path.insert(0, str(ROOT / "tests"))  # cython_build (it holds no cymem_rs)
import cython_build

# implementation name -> the module the template cimports from
IMPLS = {"cymem": "cymem.cymem", "cymem_rs": "cymem_rs.cymem"}
TEMPLATE_CIMPORT = "from cymem.cymem cimport"


SNAPSHOT_ENV = "CYMEM_BENCH_SNAPSHOT"


def isolate_from_source_tree() -> None:
    """Drops the checkout's root from sys.path: its `cymem_rs/` folder (the
    sources, without the compiled extension) would shadow the installed
    package, for Python imports and for Cython's .pxd search alike. Puts the
    run's snapshot of cymem_rs (see snapshot_cymem_rs) first, if there is one."""
    root = str(ROOT)
    sys.path[:] = [p for p in sys.path if p and os.path.realpath(p) != root]
    snapshot = os.environ.get(SNAPSHOT_ENV)
    if snapshot and snapshot not in sys.path:
        sys.path.insert(0, snapshot)


def snapshot_cymem_rs(dest: Path) -> Path:
    """Copies the installed cymem_rs package (extension, .pxd, stubs) to
    dest/cymem_rs and makes this process and its children import it from
    there, so one run measures one build even if `make install` replaces the
    installed wheel meanwhile. Call before anything imports cymem_rs."""
    if "cymem_rs" in sys.modules:
        raise RuntimeError("snapshot_cymem_rs() must run before cymem_rs is imported")
    spec = importlib.util.find_spec("cymem_rs")
    if spec is None or spec.origin is None:
        raise SystemExit("cymem_rs is not installed in this Python: run `make install`")
    source = Path(spec.origin).parent
    if not list(source.glob("cymem.*.so")):
        raise SystemExit(f"{source} has no compiled extension: run `make install`")
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    shutil.copytree(source, dest / "cymem_rs", ignore=shutil.ignore_patterns("__pycache__"))
    os.environ[SNAPSHOT_ENV] = str(dest)
    isolate_from_source_tree()
    importlib.invalidate_caches()
    return dest


def module_name(impl: str) -> str:
    return f"bench_{impl}"


def template_for(impl: str) -> str:
    source = TEMPLATE.read_text()
    if source.count(TEMPLATE_CIMPORT) != 1:
        raise RuntimeError(f"{TEMPLATE} must contain exactly one '{TEMPLATE_CIMPORT}' line")
    return source.replace(TEMPLATE_CIMPORT, f"from {IMPLS[impl]} cimport")


def _pxd_of(impl: str) -> Path:
    spec = importlib.util.find_spec(IMPLS[impl].split(".")[0])
    return Path(spec.origin).parent / "cymem.pxd"


def build_key(impl: str) -> str:
    """Changes whenever the compiled module would: the source, the .pxd it
    cimports, Cython's and Python's versions."""
    import Cython

    h = hashlib.sha256()
    h.update(template_for(impl).encode())
    h.update(_pxd_of(impl).read_bytes())
    h.update(Cython.__version__.encode())
    h.update(sys.version.encode())
    return h.hexdigest()[:16]


def build_modules(build_dir: Path, force: bool = False) -> dict[str, Path]:
    """Compiles the template once per implementation (as C, with the default
    compiler flags of this Python, like a user's setup.py), the stale ones
    together; returns impl -> path of the .so."""
    out = build_dir / "modules"
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    stale: dict[str, Path] = {}
    for impl in IMPLS:
        name = module_name(impl)
        stamp = out / f"{name}.key"
        found = sorted(out.glob(f"{name}.*.so"))
        if not force and found and stamp.exists() and stamp.read_text() == build_key(impl):
            paths[impl] = found[0]
        else:
            pyx = out / f"{name}.pyx"
            pyx.write_text(template_for(impl))
            stale[name] = pyx
    if stale:
        snapshot = os.environ.get(SNAPSHOT_ENV)
        built = cython_build.build_modules(stale, out, include_path=[snapshot] if snapshot else [])
        for impl in IMPLS:
            name = module_name(impl)
            if name in built:
                (out / f"{name}.key").write_text(build_key(impl))
                paths[impl] = built[name]
    return paths


def load_module(impl: str, path: Path) -> ModuleType:
    name = module_name(impl)
    if name in sys.modules:
        return sys.modules[name]
    return cython_build.import_module(name, path)


def installed_fingerprint() -> dict:
    """Which cymem and cymem_rs binaries are measured (for cymem_rs: the
    run's snapshot of the installed package)."""
    from importlib import metadata

    info = {}
    for dist, pkg in (("cymem", "cymem"), ("cymem_rs", "cymem_rs")):
        spec = importlib.util.find_spec(pkg)
        folder = Path(spec.origin).parent
        [so] = sorted(folder.glob("cymem.*.so"))
        info[dist] = {
            "version": metadata.version(dist),
            "extension": str(so),
            "sha256": hashlib.sha256(so.read_bytes()).hexdigest(),
        }
    return info


def arena_supported() -> tuple[bool, str]:
    """Whether the installed cymem_rs accepts Pool(arena=True)."""
    import cymem_rs.cymem

    try:
        pool = cymem_rs.cymem.Pool(arena=True)
    except TypeError as err:
        return False, f"Pool(arena=True) raises TypeError: {err}"
    del pool
    return True, "Pool(arena=True) accepted"
