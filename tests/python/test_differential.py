"""A module written for cymem, with only its cimport line changed, behaves
the same on cymem_rs: both are compiled from one source and compared."""

from pathlib import Path

import cymem.cymem  # noqa: F401  (the reference; .venv has it, see PY_TOOLS in the Makefile)
import cython_build
from conftest import CYTHON_DIR


def compile_both(tmp_path: Path) -> dict:
    """The scenario module compiled for cymem and for cymem_rs, in one build."""
    source = (CYTHON_DIR / "differential.pyx").read_text()
    assert "from cymem.cymem cimport" in source
    tmp_path.mkdir(parents=True, exist_ok=True)
    sources = {}
    for module in ("cymem.cymem", "cymem_rs.cymem"):
        pyx = tmp_path / f"differential_{module.replace('.', '_')}.pyx"
        pyx.write_text(source.replace("from cymem.cymem cimport", f"from {module} cimport"))
        sources[pyx.stem] = pyx
    paths = cython_build.build_modules(sources, tmp_path / "out")
    return {name: cython_build.import_module(name, path) for name, path in paths.items()}


def test_same_source_same_behaviour(tmp_path):
    modules = compile_both(tmp_path)
    with_cymem = modules["differential_cymem_cymem"].scenario()
    with_cymem_rs = modules["differential_cymem_rs_cymem"].scenario()
    assert with_cymem_rs == with_cymem
    # The scenario really exercised the error paths on both.
    assert ("free foreign", "KeyError") in with_cymem
    assert ("realloc smaller", "ValueError") in with_cymem
