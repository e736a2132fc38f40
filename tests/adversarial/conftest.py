"""Hostile conditions, one subprocess per case.

Each case runs in its own process with a timeout, so an abort, a crash or a
hang fails that case alone and names it. The helpers here start Python
snippets (optionally under an address-space limit), compile Cython snippets
against the installed cymem_rs, and compile C programs against the plain C
library (`make lib`).
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))  # cython_build
import cython_build

C_LIBRARY = ROOT / "target" / "release" / "libcymem_rs.a"
INCLUDE = ROOT / "include"


@dataclass
class Outcome:
    """What a case's process did."""

    returncode: int | None  # None: killed by the timeout
    stdout: str
    stderr: str

    @property
    def timed_out(self) -> bool:
        return self.returncode is None

    @property
    def signal(self) -> int | None:
        """The signal that ended the process, if one did."""
        if self.returncode is not None and self.returncode < 0:
            return -self.returncode
        return None

    def describe(self) -> str:
        how = "timed out" if self.timed_out else f"exit {self.returncode}"
        if self.signal:
            how += f" ({signal.Signals(self.signal).name})"
        return f"{how}\n--- stdout\n{self.stdout[-4000:]}\n--- stderr\n{self.stderr[-4000:]}"

    def ok(self) -> Outcome:
        """Asserts a clean exit 0 and returns self."""
        assert self.returncode == 0, self.describe()
        return self


def run(
    argv: list[str],
    *,
    timeout: float = 60,
    env: dict[str, str] | None = None,
    limit_as: int | None = None,
    cwd: Path | None = None,
) -> Outcome:
    """Runs `argv`; `limit_as` caps the address space in bytes (`ulimit -v`)."""

    def limits() -> None:
        if limit_as is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit_as, limit_as))
        # No core files from the crashes some cases provoke on purpose.
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
        cwd=cwd,
        preexec_fn=limits,  # noqa: PLW1509 -- only setrlimit, in a single-threaded test runner
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        return Outcome(proc.returncode, out, err)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return Outcome(None, out, err)


def run_python(code: str, *, path: list[Path] = (), **kwargs) -> Outcome:
    """Runs a Python snippet in a fresh interpreter (`path` goes first on
    sys.path, e.g. the folder of a Cython module built by `cython_snippet`)."""
    env = dict(kwargs.pop("env", None) or {})
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in path)
    env.setdefault("PYTHONFAULTHANDLER", "1")
    return run([sys.executable, "-c", textwrap.dedent(code)], env=env, **kwargs)


@pytest.fixture(scope="session")
def cython_snippet(tmp_path_factory):
    """`cython_snippet(name, source, language="c")` compiles a .pyx given as
    text and returns the folder holding the built module (pass it to
    `run_python(path=[...])`)."""
    built: dict[tuple[str, str], Path] = {}

    def build(name: str, source: str, language: str = "c") -> Path:
        key = (name, language)
        if key not in built:
            src_dir = tmp_path_factory.mktemp(f"src_{name}")
            pyx = src_dir / f"{name}.pyx"
            pyx.write_text(textwrap.dedent(source))
            out_dir = tmp_path_factory.mktemp(f"mod_{name}")
            # Compiled only: the snippet's code runs in the case's own process.
            cython_build.build_modules({name: pyx}, out_dir, language)
            built[key] = out_dir
        return built[key]

    return build


@pytest.fixture(scope="session")
def c_program(tmp_path_factory):
    """`c_program(name, source)` compiles a C program against the plain C
    library (static) and returns the executable's path."""
    if not C_LIBRARY.exists():
        pytest.fail(f"{C_LIBRARY} is missing: run `make lib` first")
    built: dict[str, Path] = {}

    def build(name: str, source: str, extra: list[str] = ()) -> Path:
        if name not in built:
            out_dir = tmp_path_factory.mktemp(f"c_{name}")
            src = out_dir / f"{name}.c"
            src.write_text(textwrap.dedent(source))
            exe = out_dir / name
            subprocess.run(
                [
                    "cc",
                    "-std=c11",
                    "-O1",
                    "-g",
                    "-Wall",
                    "-Wextra",
                    f"-I{INCLUDE}",
                    str(src),
                    str(C_LIBRARY),
                    *extra,
                    "-lpthread",
                    "-ldl",
                    "-lm",
                    "-o",
                    str(exe),
                ],
                check=True,
            )
            built[name] = exe
        return built[name]

    return build
