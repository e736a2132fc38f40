"""Point an unpacked third-party source tree at cymem_rs instead of cymem.

Usage: python rewrite_cymem.py SOURCE_DIR

Only what a user following cymem_rs's README would change is touched:

- Cython/Python import lines: ``from cymem.cymem cimport Pool`` becomes
  ``from cymem_rs.cymem cimport Pool``, ``from cymem cimport ...`` becomes
  ``from cymem_rs cimport ...``, likewise for ``import``; a bare
  ``import cymem`` / ``cimport cymem`` becomes ``... cymem_rs as cymem``.
- Requirement strings in pyproject.toml, setup.cfg, setup.py and
  requirements*.txt: ``cymem>=2.0.2,<2.1.0`` becomes ``cymem_rs`` (the
  version range is cymem's, not cymem_rs's, so it is dropped).

Generated files (``*.egg-info/``, ``PKG-INFO``) are left alone, and C/C++
files that Cython generated from a ``.pyx`` in the tree are deleted so they are
regenerated from the rewritten sources. The unified diff of every change is
printed. Any other mention of ``cymem`` left in a source or build file is
listed, so a reviewer sees what was not rewritten. Exit status: 0 if at least
one file was rewritten, 1 if nothing referenced cymem (a wrong project or a
broken rewrite), 2 on usage errors.
"""

from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path

CODE_SUFFIXES = {".pyx", ".pxd", ".pxi", ".py"}
REQ_FILES = {"pyproject.toml", "setup.cfg", "setup.py"}
SKIP_DIRS = {".git", "build", "__pycache__"}

# `from cymem.cymem cimport X` / `from cymem import X` (module part kept).
FROM_RE = re.compile(r"^(\s*from\s+)cymem((?:\.cymem)?\s+c?import\b)", re.MULTILINE)
# `cimport cymem.cymem as m` / `import cymem.cymem as m`: aliased, safe to rename.
DOTTED_ALIAS_RE = re.compile(r"^(\s*c?import\s+)cymem(\.cymem\s+as\s+\w+)", re.MULTILINE)
# `import cymem` / `cimport cymem` (bare, unaliased): keep the name `cymem`.
BARE_RE = re.compile(r"^(\s*c?import\s+)cymem(\s*(?:#.*)?)$", re.MULTILINE)
# A requirement on the cymem distribution, with an optional version range.
_OP = r"(?:===|==|!=|<=|>=|~=|<|>)"
_VER = r"\s*" + _OP + r"\s*[\w.*+!-]+"
# Only at the start of a line (setup.cfg, requirements.txt) or right after a
# quote (pyproject.toml, setup.py), so code such as `import cymem` is not hit.
REQ_RE = re.compile(
    r"""(^[ \t]*|["'])cymem(?![\w.-])(?:""" + _VER + r"(?:\s*," + _VER + r")*)?", re.MULTILINE
)
# Anything still naming cymem (but not cymem_rs) after the rewrite.
LEFTOVER_RE = re.compile(r"(?<![\w.])(?<!as )cymem(?![\w])")


def rewrite_code(text: str) -> str:
    text = FROM_RE.sub(r"\1cymem_rs\2", text)
    text = DOTTED_ALIAS_RE.sub(r"\1cymem_rs\2", text)
    text = BARE_RE.sub(r"\1cymem_rs as cymem\2", text)
    return text


def rewrite_requirements(text: str) -> str:
    return REQ_RE.sub(r"\1cymem_rs", text)


def is_req_file(path: Path) -> bool:
    return path.name in REQ_FILES or (
        path.name.startswith("requirements") and path.suffix == ".txt"
    )


def skipped(path: Path, root: Path) -> bool:
    parts = path.relative_to(root).parts
    return any(p in SKIP_DIRS or p.endswith(".egg-info") for p in parts[:-1]) or (
        path.name == "PKG-INFO"
    )


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not Path(argv[1]).is_dir():
        print(__doc__, file=sys.stderr)
        return 2
    root = Path(argv[1]).resolve()
    changed: list[str] = []
    leftovers: list[str] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if skipped(path, root):
            continue
        rel = path.relative_to(root).as_posix()
        is_code = path.suffix in CODE_SUFFIXES
        is_req = is_req_file(path)
        if not (is_code or is_req):
            continue
        old = path.read_text(encoding="utf-8")
        new = old
        if is_code:
            new = rewrite_code(new)
        if is_req:
            new = rewrite_requirements(new)
        if new != old:
            path.write_text(new, encoding="utf-8")
            changed.append(rel)
            sys.stdout.writelines(
                difflib.unified_diff(
                    old.splitlines(keepends=True),
                    new.splitlines(keepends=True),
                    fromfile=f"a/{rel}",
                    tofile=f"b/{rel}",
                )
            )
        for lineno, line in enumerate(new.splitlines(), 1):
            if LEFTOVER_RE.search(line):
                leftovers.append(f"  {rel}:{lineno}: {line.strip()}")

    # Generated C/C++ next to a .pyx would be stale: drop it so it is regenerated.
    for pyx in sorted(root.rglob("*.pyx")):
        for suffix in (".c", ".cpp"):
            gen = pyx.with_suffix(suffix)
            if gen.exists():
                gen.unlink()
                print(f"removed generated {gen.relative_to(root).as_posix()}")

    print(f"rewrote {len(changed)} file(s): {', '.join(changed) or '(none)'}")
    if leftovers:
        print("other mentions of cymem left as they are (comments, text, names):")
        print("\n".join(leftovers))
    return 0 if changed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
