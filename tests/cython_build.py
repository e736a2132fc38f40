"""Compiles Cython modules against the installed cymem_rs the way a user's
build would (cythonize, then setuptools' build_ext with this Python's default
flags and no include_dirs), and imports them.

The one builder of the Python tests, the hostile-condition cases, the valgrind
workloads, the benchmarks and the compatibility matrix. It runs on every
(CPython, Cython) pair of the matrix, down to CPython 3.9 and Cython 3.0, and
is never on sys.path by itself: each user adds this folder explicitly.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType


def build_modules(
    sources: Mapping[str, Path],
    out_dir: Path,
    language: str = "c",
    include_path: Iterable[str] = (),
) -> dict[str, Path]:
    """Compiles each `name: pyx` of `sources` into out_dir/name.*.so, all in
    one cythonize and one build_ext call, both running in parallel; returns
    name -> path of the extension."""
    from Cython.Build import cythonize
    from setuptools import Distribution, Extension

    if language not in ("c", "c++"):
        raise ValueError(f"language must be 'c' or 'c++', not {language!r}")
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    extensions = []
    for name, pyx in sources.items():
        source = out_dir / f"{name}.pyx"
        if Path(pyx).resolve() != source:
            shutil.copy(pyx, source)
        extensions.append(Extension(name, [str(source)], language=language))
    jobs = min(len(extensions), os.cpu_count() or 1)
    cwd = os.getcwd()
    # From the output folder: nothing of the checkout (its cymem_rs/ sources)
    # is in the current directory for Cython's .pxd search.
    os.chdir(out_dir)
    try:
        modules = cythonize(
            extensions,
            quiet=True,
            include_path=list(include_path),
            compiler_directives={"language_level": 3},
            nthreads=jobs if jobs > 1 else 0,
        )
        dist = Distribution({"ext_modules": modules, "script_name": "setup.py"})
        build_ext = dist.get_command_obj("build_ext")
        build_ext.build_lib = str(out_dir)
        build_ext.build_temp = str(out_dir / "tmp")
        build_ext.parallel = jobs
        dist.run_command("build_ext")
    finally:
        os.chdir(cwd)
    return {ext.name: Path(build_ext.get_ext_fullpath(ext.name)) for ext in modules}


def import_module(name: str, path: Path) -> ModuleType:
    """Imports the extension at `path` as module `name`."""
    spec = importlib.util.spec_from_file_location(name, str(path))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def build_module(
    pyx: Path,
    out_dir: Path,
    language: str = "c",
    name: str | None = None,
    include_path: Iterable[str] = (),
) -> ModuleType:
    """Compiles one .pyx (as module `name`, by default the file's stem) and
    imports it."""
    name = name or Path(pyx).stem
    [path] = build_modules({name: pyx}, out_dir, language, include_path).values()
    return import_module(name, path)
