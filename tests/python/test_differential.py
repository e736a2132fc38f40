"""A module written for cymem, with only its cimport line changed, behaves
the same on cymem_rs: both are compiled from one source and compared."""

from pathlib import Path

import cymem.cymem  # noqa: F401  (the reference; .venv has it, see PY_TOOLS in the Makefile)
from conftest import CYTHON_DIR, build_cython_module


def compile_for(module: str, tmp_path: Path):
    source = (CYTHON_DIR / "differential.pyx").read_text()
    assert "from cymem.cymem cimport" in source
    tmp_path.mkdir(parents=True)
    pyx = tmp_path / f"differential_{module.replace('.', '_')}.pyx"
    pyx.write_text(source.replace("from cymem.cymem cimport", f"from {module} cimport"))
    return build_cython_module(pyx, tmp_path / "out")


def test_same_source_same_behaviour(tmp_path):
    with_cymem = compile_for("cymem.cymem", tmp_path / "cymem").scenario()
    with_cymem_rs = compile_for("cymem_rs.cymem", tmp_path / "cymem_rs").scenario()
    assert with_cymem_rs == with_cymem
    # The scenario really exercised the error paths on both.
    assert ("free foreign", "KeyError") in with_cymem
    assert ("realloc smaller", "ValueError") in with_cymem
