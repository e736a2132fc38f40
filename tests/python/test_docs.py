"""Runs every example of the documentation (README.md and docs/*.md), so a
guide cannot show code that does not work.

Fenced blocks are picked by their language tag: ```python runs in a fresh
interpreter against the installed package, ```cython is compiled with
cython_build (its `main()`, if any, is then called), ```c is compiled,
linked against the static C library and run. Other tags (sh, rust, text)
are not run. A block is left out only when it is marked: a tag like
```cython fragment, or an `<!-- no-test -->` line just before it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import cython_build
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN_LANGUAGES = ("python", "cython", "c")
NO_TEST = "<!-- no-test -->"
FENCE = re.compile(r"^```(\S*)(.*)$")
# `make test-python` passes the folder of the profile it built; by hand, the
# release library that `make lib` builds.
LIBDIR = Path(os.environ.get("CYMEM_RS_LIBDIR", ROOT / "target" / "release"))
TIMEOUT = 120


@dataclass(frozen=True)
class Block:
    document: Path
    line: int  # of the opening fence, from 1
    language: str
    code: str

    @property
    def name(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}"


def extract_blocks(text: str, document: Path) -> list[Block]:
    """The fenced blocks of one Markdown text that are to be run."""
    blocks = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        language, rest = match.group(1), match.group(2).split()
        start = i
        i += 1
        body = []
        while i < len(lines) and lines[i].rstrip() != "```":
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"{document}:{start + 1}: unclosed code block")
        i += 1
        previous = next((s.strip() for s in reversed(lines[:start]) if s.strip()), "")
        if language in RUN_LANGUAGES and "fragment" not in rest and previous != NO_TEST:
            blocks.append(Block(document, start + 1, language, "\n".join(body) + "\n"))
    return blocks


ALL_BLOCKS = [b for doc in DOCUMENTS for b in extract_blocks(doc.read_text(), doc)]


def blocks_of(language: str) -> list:
    return [pytest.param(b, id=b.name) for b in ALL_BLOCKS if b.language == language]


def run(command: list[str], cwd: Path, block: Block) -> None:
    result = subprocess.run(
        command, check=False, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert result.returncode == 0, (
        f"{block.name}: {' '.join(map(str, command))} exited {result.returncode}\n"
        f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )


def test_extractor_reads_tags_and_markers(tmp_path):
    text = (
        "```python\nx = 1\n```\n"
        "```cython fragment\ncdef int y\n```\n"
        "<!-- no-test -->\n\n```c\nint z;\n```\n"
        "```sh\nmake\n```\n"
        "```c\nint main(void) { return 0; }\n```\n"
    )
    blocks = extract_blocks(text, tmp_path / "x.md")
    assert [(b.language, b.line, b.code) for b in blocks] == [
        ("python", 1, "x = 1\n"),
        ("c", 15, "int main(void) { return 0; }\n"),
    ]


def test_every_language_has_examples():
    # A parsing slip that drops all blocks of a language must not pass quietly.
    for language in RUN_LANGUAGES:
        assert any(b.language == language for b in ALL_BLOCKS), language


@pytest.mark.parametrize("block", blocks_of("python"))
def test_python_example(block, tmp_path):
    run([sys.executable, "-c", block.code], tmp_path, block)


@pytest.fixture(scope="module")
def cython_modules(tmp_path_factory) -> dict[Block, Path]:
    """Every Cython example compiled in one build (they are independent
    modules), keyed by block."""
    out_dir = tmp_path_factory.mktemp("doc_cython")
    blocks = [b for b in ALL_BLOCKS if b.language == "cython"]
    names = {b: f"doc_example_{n}" for n, b in enumerate(blocks)}
    sources = {}
    for block, name in names.items():
        source = out_dir / f"{name}.pyx"
        source.write_text(block.code)
        sources[name] = source
    paths = cython_build.build_modules(sources, out_dir)
    return {block: paths[name] for block, name in names.items()}


@pytest.mark.parametrize("block", blocks_of("cython"))
def test_cython_example(block, cython_modules, tmp_path):
    path = cython_modules[block]
    name = path.name.split(".")[0]
    # Imported in a fresh interpreter: the module's top-level code and main()
    # run as a user's would, and a crash fails this test, not the session.
    script = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location({name!r}, {str(path)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "if hasattr(module, 'main'):\n"
        "    module.main()\n"
    )
    run([sys.executable, "-c", script], tmp_path, block)


@pytest.mark.parametrize("block", blocks_of("c"))
def test_c_example(block, tmp_path):
    library = LIBDIR / "libcymem_rs.a"
    assert library.is_file(), f"{library} is missing: build it with `make lib`"
    compiler = os.environ.get("CC", "cc")
    assert shutil.which(compiler), f"no C compiler {compiler!r}"
    source = tmp_path / "example.c"
    source.write_text(block.code)
    program = tmp_path / "example"
    run(
        [
            compiler,
            "-std=c99",
            "-Wall",
            "-Werror",
            f"-I{ROOT / 'include'}",
            str(source),
            str(library),
            "-lpthread",
            "-ldl",
            "-lm",
            "-o",
            str(program),
        ],
        tmp_path,
        block,
    )
    run([str(program)], tmp_path, block)
