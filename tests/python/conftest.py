"""Compiles the Cython modules under tests/python/cython/ against the
installed cymem_rs, the way a user's build would: no include_dirs, no flags."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: cython_build
import cython_build

CYTHON_DIR = Path(__file__).parent / "cython"


@pytest.fixture(scope="session")
def cython_module(tmp_path_factory):
    """`cython_module("name", language="c")` -> the compiled tests/python/cython/name.pyx.

    The first request compiles every module of the folder as C in one
    parallel build; C++ variants are compiled when asked for."""
    paths: dict[tuple[str, str], Path] = {}
    built: dict[tuple[str, str], ModuleType] = {}

    def load(name: str, language: str = "c") -> ModuleType:
        key = (name, language)
        if key not in paths:
            if language == "c":
                wanted = {pyx.stem: pyx for pyx in sorted(CYTHON_DIR.glob("*.pyx"))}
            else:
                wanted = {f"{name}_cpp": CYTHON_DIR / f"{name}.pyx"}
            out_dir = tmp_path_factory.mktemp(f"cython_{language.replace('+', 'p')}")
            for stem, path in cython_build.build_modules(wanted, out_dir, language).items():
                paths[(stem.removesuffix("_cpp"), language)] = path
        if key not in built:
            module_name = name if language == "c" else f"{name}_cpp"
            built[key] = cython_build.import_module(module_name, paths[key])
        return built[key]

    return load


@pytest.fixture(params=["heap", "arena"])
def make_pool(request):
    """Makes pools of each mode: every rule holds for heap and arena pools."""
    from cymem_rs import Pool

    arena = request.param == "arena"
    return lambda: Pool(arena=arena)
