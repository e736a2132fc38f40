"""Compiles the Cython modules under tests/python/cython/ against the
installed cymem_rs, the way a user's build would: no include_dirs, no flags."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

CYTHON_DIR = Path(__file__).parent / "cython"


def build_cython_module(
    pyx: Path, out_dir: Path, language: str = "c", include_path: list[str] | None = None
) -> ModuleType:
    """Cythonizes and compiles `pyx` as C or C++, then imports the result."""
    from Cython.Build import cythonize
    from setuptools import Distribution, Extension

    suffix = "_cpp" if language == "c++" else ""
    name = pyx.stem + suffix
    out_dir.mkdir(parents=True, exist_ok=True)
    source = out_dir / f"{name}.pyx"
    shutil.copy(pyx, source)
    extension = Extension(name, [str(source)], language=language)
    modules = cythonize(
        [extension],
        quiet=True,
        include_path=include_path or [],
        compiler_directives={"language_level": 3},
    )
    dist = Distribution({"ext_modules": modules, "script_name": "setup.py"})
    build_ext = dist.get_command_obj("build_ext")
    build_ext.build_lib = str(out_dir)
    build_ext.build_temp = str(out_dir / "tmp")
    dist.run_command("build_ext")
    [path] = build_ext.get_outputs()
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def cython_module(tmp_path_factory):
    """`cython_module("name", language="c")` -> the compiled tests/python/cython/name.pyx."""
    built: dict[tuple[str, str], ModuleType] = {}

    def load(name: str, language: str = "c") -> ModuleType:
        key = (name, language)
        if key not in built:
            out_dir = tmp_path_factory.mktemp(f"{name}_{language.replace('+', 'p')}")
            built[key] = build_cython_module(CYTHON_DIR / f"{name}.pyx", out_dir, language)
        return built[key]

    return load


@pytest.fixture(params=["heap", "arena"])
def make_pool(request):
    """Makes pools of each mode: every rule holds for heap and arena pools."""
    from cymem_rs import Pool

    arena = request.param == "arena"
    return lambda: Pool(arena=arena)
