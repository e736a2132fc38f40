"""How much of a callgrind profile is spent inside given shared objects.

share_of(out_file, objects) reads a callgrind output file and returns (total Ir,
inclusive Ir of every call that enters one of `objects` from code outside
them): the cost of the pool library's code plus everything it calls (the
system allocator included), as seen by its callers.
"""

from __future__ import annotations

import os


def share_of(out_file: str, objects: set[str]) -> tuple[int, int]:
    objects = {os.path.realpath(o) for o in objects}
    # Callgrind compresses repeated names to "(id)"; ob= and cob= share one table.
    names: dict[str, str] = {}

    def obj(spec: str) -> str:
        spec = spec.strip()
        if spec.startswith("("):
            ident, _, name = spec.partition(")")
            name = name.strip()
            if name:
                names[ident] = os.path.realpath(name)
            return names[ident]
        return os.path.realpath(spec)

    total = entered = 0
    caller = callee = None
    in_call = False
    with open(out_file, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if in_call:
                # The line after calls= holds the call's inclusive cost.
                if caller not in objects and callee in objects:
                    entered += int(line.split()[1])
                in_call, callee = False, None
            elif line.startswith("ob="):
                caller = obj(line[3:])
            elif line.startswith("cob="):
                callee = obj(line[4:])
            elif line.startswith("calls="):
                in_call = True
                callee = callee or caller
            elif line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
    return total, entered
