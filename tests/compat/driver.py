"""Build tests/compat/smoke.pyx against the installed cymem_rs and run it.

    python driver.py {c|c++} WORKDIR

Compiles smoke.pyx in WORKDIR (emptied first) with the tests' Cython builder
(tests/cython_build.py: cythonize and setuptools, no include_dirs; the .pxd
files must come from the installed package), imports it and runs smoke.run().
Exits 0 only if every check passed. Run by run_matrix.sh, in one venv per
(CPython, Cython) pair.
"""

import gc
import os
import shutil
import sys
import sysconfig

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)


def main() -> int:
    lang, workdir = sys.argv[1], os.path.abspath(sys.argv[2])
    if lang not in ("c", "c++"):
        sys.exit(f"language must be c or c++, not {lang!r}")

    # Nothing from the source checkout may be seen: the repository root holds
    # cymem_rs/ and cymem_rs.pxd. Keep only the work dir and the venv.
    # tests/ is added for the builder alone (it holds no cymem_rs).
    sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) != HERE]
    sys.path.insert(0, TESTS)
    import cython_build

    if os.path.isdir(workdir):
        shutil.rmtree(workdir)
    os.makedirs(workdir)
    os.chdir(workdir)

    # Cython resolves `cimport cymem_rs...` in the work dir, then on sys.path:
    # the only hit must be the installed package.
    site = os.path.abspath(sysconfig.get_paths()["purelib"])
    found = [
        os.path.abspath(d)
        for d in [workdir] + sys.path
        if os.path.isfile(os.path.join(d, "cymem_rs", "cymem.pxd"))
        or os.path.isfile(os.path.join(d, "cymem_rs.pxd"))
    ]
    if found != [site]:
        sys.exit(f"cymem_rs .pxd files found in {found}, expected only in {site}")

    import Cython

    smoke = cython_build.build_module(os.path.join(HERE, "smoke.pyx"), workdir, lang)
    import cymem_rs

    if not os.path.abspath(cymem_rs.__file__).startswith(site + os.sep):
        sys.exit(f"cymem_rs imported from {cymem_rs.__file__}, not from {site}")
    n_checks = smoke.run()
    gc.collect()
    print(
        f"smoke ok: {n_checks} checks; Cython {Cython.__version__}, {lang}, "
        f"Python {sys.version.split()[0]}, cymem_rs from {os.path.dirname(cymem_rs.__file__)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
