"""Every way of cimporting cymem_rs compiles and reaches the same pool."""

from pathlib import Path

import cython_build
from conftest import CYTHON_DIR

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_short_form_from_the_installed_package(cython_module):
    module = cython_module("package_cimport")
    assert module.roundtrip() == (9, 0, 64, True, True)


def test_root_pxd_of_a_source_checkout(tmp_path):
    # With the repository root on Cython's include path, `cimport cymem_rs`
    # resolves to the root cymem_rs.pxd, which forwards to cymem_rs/cymem.pxd.
    assert (REPO_ROOT / "cymem_rs.pxd").exists()
    pyx = tmp_path / "root_pxd_probe.pyx"
    pyx.write_text((CYTHON_DIR / "package_cimport.pyx").read_text())
    module = cython_build.build_module(pyx, tmp_path / "out", include_path=[str(REPO_ROOT)])
    assert module.roundtrip() == (9, 0, 64, True, True)
