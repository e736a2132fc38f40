#!/usr/bin/env python3
"""Cython-level benchmark of cymem_rs against cymem, with baselines.

    python benches/cython/bench.py            # full run: build/bench/{results.json,chart.png,REPORT.md}
    python benches/cython/bench.py --quick    # CI smoke: every workload once, sanity checks

workloads.pyx is compiled twice (cimporting cymem.cymem, then cymem_rs.cymem)
and both modules run in this one process. Timing goes round by round: in each
round every (workload, implementation) measurement runs once, in a shuffled
order, so the ratios compare runs made seconds apart under the same machine
load. Each measurement is one call of a C loop sized (by calibration) to take
at least --min-time-ms; its ns/op is elapsed/ops. Reported: median, min and
max over the rounds; a ratio is the median of the per-round ratios.

Then, in subprocesses: instructions per op of (a) and (b) under callgrind
(N and 0 iterations, subtracted), and bookkeeping bytes per live block
(1,000,000 blocks of 64 B; RSS, malloc in-use and tracemalloc deltas, minus
the same blocks made by raw PyMem_Malloc).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import math
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
import pyloops
import report

C.isolate_from_source_tree()

B_ALLOCS = 1_000_000  # (b): allocations per pool
C_REALLOCS = 16  # (c): reallocs per growth sequence (16 B -> 1 MiB)

# The rows of the table, in order. `targets`: minimum speedup over cymem
# (cymem ns / cymem_rs ns), and optionally a maximum ratio to a baseline.
WORKLOADS = {
    "a": {
        "title": "(a) alloc(1, 64) + free",
        "unit": "pair",
        "baselines": ["calloc", "pymem", "bump"],
        "target_speedup": 5.0,
        "target_baseline": ("pymem", 1.5),
    },
    "b": {
        "title": "(b) 1M allocs 16..512 B, drop Pool",
        "unit": "alloc (drop included)",
        "baselines": ["calloc", "pymem", "bump"],
        "target_speedup": 2.0,
    },
    "b_arena": {
        "title": "(b) same, Pool(arena=True)",
        "unit": "alloc (drop included)",
        "baselines": ["calloc", "pymem", "bump"],
        "target_speedup": 10.0,
        "target_baseline": ("bump", 2.0),
        "arena": True,
    },
    "c": {
        "title": "(c) realloc doubling 16 B -> 1 MiB",
        "unit": "growth sequence (alloc + 16 reallocs + free)",
        "baselines": ["pymem"],
        "target_speedup": 1.0,
    },
    "d": {
        "title": "(d) Pool() + 10 allocs + drop",
        "unit": "pool",
        "baselines": ["calloc", "pymem", "bump"],
        "target_speedup": 4.0,
    },
    "d_arena": {
        "title": "(d) same, Pool(arena=True)",
        "unit": "pool",
        "baselines": ["calloc", "pymem", "bump"],
        "target_speedup": 10.0,
        "target_baseline": ("bump", 2.0),
        "arena": True,
    },
    "e": {
        "title": "(e) Address(1, 64) create + drop",
        "unit": "Address",
        "baselines": [],
        "target_speedup": 1.0,
    },
    "f_new": {
        "title": "(f) Pool() from Python",
        "unit": "Pool (Python loop)",
        "baselines": ["object"],
        "target_speedup": 1 / 0.75,  # at most 0.75 of cymem's time
    },
    "f_size": {
        "title": "(f) mem.size from Python",
        "unit": "read (Python loop)",
        "baselines": [],
        "target_speedup": 1.0,
    },
}


@dataclass
class Measurement:
    workload: str  # key of WORKLOADS (arena rows share the non-arena baselines)
    impl: str  # cymem, cymem_rs, or a baseline name
    run: Callable[[int], int]  # units -> elapsed ns
    ops_per_unit: float
    start_units: int = 1
    units: int = 0
    samples: list = field(default_factory=list)  # ns/op per round
    sample_ms: list = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.workload}/{self.impl}"


# ------------------------------------------------------------------ timing


def make_measurements(mods: dict, arena: bool) -> list[Measurement]:
    import cymem.cymem

    import cymem_rs.cymem

    pools = {"cymem": cymem.cymem.Pool, "cymem_rs": cymem_rs.cymem.Pool}
    base = mods["cymem_rs"]  # the baselines are the same code in both modules
    ms: list[Measurement] = []
    for impl, mod in mods.items():
        Pool = pools[impl]
        # Pools made once, outside timing, kept for all rounds.
        a_mem, c_mem, size_mem = Pool(), Pool(), Pool()
        ms += [
            Measurement("a", impl, lambda n, m=mod, p=a_mem: m.a_pool(p, n), 1, 1000),
            Measurement("b", impl, lambda r, m=mod: m.b_pool(r, B_ALLOCS), B_ALLOCS),
            Measurement("c", impl, lambda r, m=mod, p=c_mem: m.c_pool(p, r), 1),
            Measurement("d", impl, lambda n, m=mod: m.d_pool(n), 1, 100),
            Measurement("e", impl, lambda n, m=mod: m.e_address(n), 1, 1000),
            Measurement("f_new", impl, lambda n, P=Pool: pyloops.pool_new(P, n), 1, 1000),
            Measurement("f_size", impl, lambda n, p=size_mem: pyloops.size_read(p, n), 1, 1000),
        ]
    if arena:
        m = mods["cymem_rs"]
        ms += [
            Measurement("b_arena", "cymem_rs", lambda r: m.b_pool(r, B_ALLOCS, True), B_ALLOCS),
            Measurement("d_arena", "cymem_rs", lambda n: m.d_pool(n, True), 1, 100),
        ]
    ms += [
        Measurement("a", "calloc", base.a_calloc, 1, 1000),
        Measurement("a", "pymem", base.a_pymem, 1, 1000),
        Measurement("a", "bump", base.a_bump, 1, 1000),
        Measurement("b", "calloc", lambda r: base.b_calloc(r, B_ALLOCS), B_ALLOCS),
        Measurement("b", "pymem", lambda r: base.b_pymem(r, B_ALLOCS), B_ALLOCS),
        Measurement("b", "bump", lambda r: base.b_bump(r, B_ALLOCS), B_ALLOCS),
        Measurement("c", "pymem", base.c_pymem, 1),
        Measurement("d", "calloc", base.d_calloc, 1, 100),
        Measurement("d", "pymem", base.d_pymem, 1, 100),
        Measurement("d", "bump", base.d_bump, 1, 100),
        Measurement("f_new", "object", lambda n: pyloops.pool_new(object, n), 1, 1000),
    ]
    return ms


def calibrate(m: Measurement, min_ns: float) -> None:
    """The number of units (roughly) whose run takes >= min_ns, with 30%
    headroom against a machine that gets faster."""
    units = m.start_units
    while True:
        elapsed = m.run(units)
        if elapsed >= min_ns / 4 or units >= 1 << 40:
            break
        units *= 10 if elapsed < min_ns / 100 else 4
    m.units = max(1, math.ceil(units * 1.3 * min_ns / max(elapsed, 1)))


def run_rounds(ms: list[Measurement], rounds: int, min_ns: float, seed: int, log) -> None:
    """Round -1 is a warm-up (discarded). A run shorter than min_ns (the
    machine got faster since calibration) is redone at once with more units,
    so every recorded sample lasts at least min_ns."""
    rng = random.Random(seed)
    order = list(ms)
    for r in range(-1, rounds):
        rng.shuffle(order)
        gc.collect()
        t_round = time.perf_counter()
        for m in order:
            while True:
                elapsed = m.run(m.units)
                if elapsed >= min_ns:
                    break
                m.units = max(m.units + 1, math.ceil(m.units * 1.5 * min_ns / max(elapsed, 1)))
            if r >= 0:
                m.samples.append(elapsed / (m.units * m.ops_per_unit))
                m.sample_ms.append(elapsed / 1e6)
        if r >= 0:
            log(f"  round {r + 1}/{rounds}: {time.perf_counter() - t_round:.1f} s")


def summarize(values: list[float]) -> dict:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def timing_rows(ms: list[Measurement], arena: bool, arena_note: str) -> list[dict]:
    by = {(m.workload, m.impl): m for m in ms}

    def ratios(num: Measurement, den: Measurement) -> dict:
        return summarize([a / b for a, b in zip(num.samples, den.samples)])

    measured = {m.workload for m in ms}
    rows = []
    for w, spec in WORKLOADS.items():
        base_w = w.replace("_arena", "")
        if base_w not in measured:
            continue
        row = {
            "workload": w,
            "title": spec["title"],
            "unit": spec["unit"],
            "target_speedup": spec["target_speedup"],
            "target_baseline": spec.get("target_baseline"),
        }
        if spec.get("arena") and not arena:
            row["skipped"] = arena_note
            rows.append(row)
            continue
        cy = by[(base_w, "cymem")]
        rs = by[(w, "cymem_rs")]
        row["cymem"] = summarize(cy.samples)
        row["cymem_rs"] = summarize(rs.samples)
        row["speedup"] = ratios(cy, rs)
        row["baselines"] = {}
        for b in spec["baselines"]:
            bm = by[(base_w, b)]
            row["baselines"][b] = {**summarize(bm.samples), "cymem_rs_ratio": ratios(rs, bm)}
        if w == "c":
            for key in ("cymem", "cymem_rs"):
                row[key]["per_realloc_median"] = row[key]["median"] / C_REALLOCS
        checks = []
        checks.append(row["speedup"]["median"] >= spec["target_speedup"])
        if spec.get("target_baseline"):
            b, limit = spec["target_baseline"]
            checks.append(row["baselines"][b]["cymem_rs_ratio"]["median"] <= limit)
        row["meets_target"] = all(checks)
        rows.append(row)
    return rows


# ------------------------------------------------------------------ callgrind

# Instructions per op: (a) and (b) with their baselines (the figures asked
# for), and the other workloads too, as a load-independent check of their
# targets. workload -> implementations.
CALLGRIND_IMPLS = {
    "a": ["cymem", "cymem_rs", "calloc", "pymem", "bump"],
    "b": ["cymem", "cymem_rs", "cymem_rs_arena", "calloc", "pymem", "bump"],
    "c": ["cymem", "cymem_rs", "pymem"],
    "d": ["cymem", "cymem_rs", "cymem_rs_arena", "calloc", "pymem", "bump"],
    "e": ["cymem", "cymem_rs"],
    "f_new": ["cymem", "cymem_rs", "object"],
    "f_size": ["cymem", "cymem_rs"],
}
# N per workload (ops: pairs, allocs, growth sequences, pools, Addresses, loop
# iterations); (a) and (b) can be changed with --callgrind-n.
CALLGRIND_N = {
    "a": 200_000,
    "b": B_ALLOCS,
    "c": 200,
    "d": 20_000,
    "e": 200_000,
    "f_new": 200_000,
    "f_size": 200_000,
}
# Quick mode: (a) and (b) only, cymem and cymem_rs only.
CALLGRIND_N_QUICK = {"a": 5_000, "b": 50_000}


def callgrind_total(path: Path) -> int:
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


_ANNOTATE_LINE = re.compile(r"^\s*([\d,]+)\s+(?:\([\s\d.]+%\)\s+)?(\S.*?)\s*$")


def callgrind_functions(path: Path) -> dict[str, int]:
    """Self instruction counts per function (callgrind_annotate)."""
    out = subprocess.run(
        ["callgrind_annotate", "--threshold=100", "--inclusive=no", "--auto=no", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    funcs: dict[str, int] = {}
    body = out.split("file:function", 1)[-1]
    for line in body.splitlines():
        m = _ANNOTATE_LINE.match(line)
        if not m or ":" not in m.group(2):
            continue
        name = m.group(2)
        # "file:function [object]" -> "function [object basename]"
        fn = name.split(":", 1)[1]
        obj = re.search(r"\[(.*)\]$", fn)
        if obj:
            fn = fn[: obj.start()].strip() + f" [{Path(obj.group(1)).name}]"
        funcs[fn] = funcs.get(fn, 0) + int(m.group(1).replace(",", ""))
    return funcs


def run_callgrind(
    paths: dict, ns: dict, arena: bool, out_dir: Path, log, baselines: bool = True
) -> dict:
    if not shutil.which("valgrind"):
        return {"skipped": "valgrind not found"}
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("callgrind.*.out"):
        old.unlink()
    cells = []
    for w, impls in CALLGRIND_IMPLS.items():
        if w not in ns:
            continue
        for impl in impls:
            if impl == "cymem_rs_arena" and not arena:
                continue
            if not baselines and not impl.startswith("cymem"):
                continue
            cells.append((w, impl))
    jobs = []
    for w, impl in cells:
        path = paths["cymem" if impl == "cymem" else "cymem_rs"]
        # The baselines' pre-faulted arena / pointer array: the same in both runs.
        setup_n = ns[w] if w == "b" and impl in ("calloc", "pymem", "bump") else 0
        for n in (ns[w], 0):
            jobs.append((w, impl, n, setup_n, path))
    # The longest first, so the two workers finish together.
    jobs.sort(key=lambda j: -(j[2] * (5 if j[0] == "b" else 1) + (10**7 if j[3] else 0)))
    env = dict(os.environ, PYTHONHASHSEED="0")

    def one(job):
        w, impl, n, setup_n, path = job
        out = out_dir / f"callgrind.{w}.{impl}.{n}.out"
        cmd = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            str(C.HERE / "driver.py"),
            "callgrind",
            w,
            impl,
            str(n),
            str(setup_n),
            str(path),
        ]
        t = time.perf_counter()
        proc = subprocess.run(
            cmd, check=False, capture_output=True, text=True, env=env, cwd=out_dir
        )
        if proc.returncode != 0:
            raise RuntimeError(f"callgrind {w}/{impl}/{n} failed:\n{proc.stderr[-3000:]}")
        log(f"  callgrind {w}/{impl} N={n}: {time.perf_counter() - t:.1f} s")
        return job, out

    with ThreadPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1))) as ex:
        done = list(ex.map(one, jobs))
    files = {(j[0], j[1], j[2]): out for j, out in done}
    result: dict = {"n": ns, "per_op": {}, "profiles": {}}
    for w, impl in cells:
        big, zero = files[(w, impl, ns[w])], files[(w, impl, 0)]
        total_n, total_0 = callgrind_total(big), callgrind_total(zero)
        result["per_op"][f"{w}/{impl}"] = {
            "ir_n": total_n,
            "ir_0": total_0,
            "per_op": (total_n - total_0) / ns[w],
        }
        if impl.startswith("cymem"):
            fn_n, fn_0 = callgrind_functions(big), callgrind_functions(zero)
            delta = {f: (fn_n.get(f, 0) - fn_0.get(f, 0)) / ns[w] for f in set(fn_n) | set(fn_0)}
            top = sorted(delta.items(), key=lambda kv: -kv[1])[:12]
            result["profiles"][f"{w}/{impl}"] = [
                {"function": f, "ir_per_op": v} for f, v in top if v > 0.5
            ]
    return result


# ------------------------------------------------------------------ memory

MEMORY_IMPLS = ["cymem", "cymem_rs", "cymem_rs_arena", "raw_pymem", "raw_calloc"]
# The footprint of an empty Pool: cymem_rs / cymem RSS per pool, at most.
POOL_MEMORY_TARGET = 0.60


def run_driver(*args: str) -> dict:
    """`driver.py ARGS` in a fresh process: the JSON it prints last."""
    proc = subprocess.run(
        [sys.executable, str(C.HERE / "driver.py"), *args],
        check=False,
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
    )
    if proc.returncode != 0:
        raise RuntimeError(f"driver.py {' '.join(args[:3])} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_memory(paths: dict, n: int, size: int, arena: bool, log) -> dict:
    raw: dict = {}
    for impl in MEMORY_IMPLS:
        if impl == "cymem_rs_arena" and not arena:
            continue
        path = paths["cymem" if impl == "cymem" else "cymem_rs"]
        for method in ("rss", "tracemalloc"):
            raw[f"{impl}/{method}"] = run_driver(
                "memory", impl, str(n), str(size), method, str(path)
            )
        log(f"  memory {impl}: done")
    # Where each implementation's 64-byte blocks themselves live, so that the
    # block storage can be taken out of each measure, leaving the bookkeeping.
    blocks_in_malloc = {"cymem_rs_arena", "raw_calloc"}  # glibc malloc (bumpalo chunks, calloc)
    blocks_traced = {"cymem", "cymem_rs", "raw_pymem"}  # PyMem_* (pymalloc)
    per_block = {}
    base_rss = raw["raw_pymem/rss"]
    for impl in MEMORY_IMPLS:
        if f"{impl}/rss" not in raw:
            continue
        rss = raw[f"{impl}/rss"]
        tm = raw[f"{impl}/tracemalloc"]
        entry = {
            "rss_per_block": rss["bytes"] / n,
            # minus the same blocks made by raw PyMem_Malloc (64 B each in pymalloc)
            "rss_bookkeeping_per_block": (rss["bytes"] - base_rss["bytes"]) / n,
            "tracemalloc_per_block": tm["bytes"] / n,
            # minus the blocks, when tracemalloc sees them
            "tracemalloc_bookkeeping_per_block": (
                (tm["bytes"] - n * size) / n if impl in blocks_traced else None
            ),
        }
        if "malloc_bytes" in rss:
            entry["malloc_per_block"] = rss["malloc_bytes"] / n
            entry["malloc_bookkeeping_per_block"] = (
                rss["malloc_bytes"] - (n * size if impl in blocks_in_malloc else 0)
            ) / n
        per_block[impl] = entry
    return {"n": n, "size": size, "raw": raw, "per_block": per_block}


def run_pool_memory(n: int, log) -> dict:
    """RSS growth per empty pool, n kept alive, each implementation in its own
    process (`driver.py pools`)."""
    per_pool = {}
    for impl in ("cymem", "cymem_rs"):
        raw = run_driver("pools", impl, str(n))
        per_pool[impl] = {
            "rss_per_pool": raw["bytes"] / n,
            "malloc_per_pool": raw["malloc_bytes"] / n if "malloc_bytes" in raw else None,
        }
        log(f"  empty pools {impl}: {per_pool[impl]['rss_per_pool']:.0f} B each")
    ratio = per_pool["cymem_rs"]["rss_per_pool"] / per_pool["cymem"]["rss_per_pool"]
    return {
        "n": n,
        "per_pool": per_pool,
        "ratio": ratio,
        "target_ratio": POOL_MEMORY_TARGET,
        "meets_target": ratio <= POOL_MEMORY_TARGET,
    }


# ------------------------------------------------------------------ machine


def sh(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def machine_info() -> dict:
    import Cython

    lscpu = sh(["lscpu"])

    def field_of(name: str) -> str:
        m = re.search(rf"^{re.escape(name)}:\s*(.*)$", lscpu, re.MULTILINE)
        return m.group(1).strip() if m else ""

    git = sh(["git", "-C", str(C.ROOT), "rev-parse", "--short", "HEAD"])
    dirty = sh(["git", "-C", str(C.ROOT), "status", "--porcelain", "--untracked-files=no"])
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu_model": field_of("Model name") or platform.processor(),
        "cpus": field_of("CPU(s)") or str(os.cpu_count()),
        "cores_per_socket": field_of("Core(s) per socket"),
        "threads_per_core": field_of("Thread(s) per core"),
        "hypervisor": field_of("Hypervisor vendor"),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_impl": platform.python_implementation(),
        "cython": Cython.__version__,
        "cc": sh(["cc", "--version"]).splitlines()[0] if sh(["cc", "--version"]) else "",
        "valgrind": sh(["valgrind", "--version"]),
        "git_commit": git + (" (working tree modified)" if dirty else ""),
        "installed": C.installed_fingerprint(),
        "loadavg_start": os.getloadavg(),
    }


# ------------------------------------------------------------------ checks


def sanity(results: dict) -> list[str]:
    """Problems with the numbers (empty when all are sane)."""
    bad = []

    def ok(x) -> bool:
        return isinstance(x, (int, float)) and math.isfinite(x) and x > 0

    for key, m in results["timing"]["measurements"].items():
        for v in m["samples_ns_per_op"]:
            if not ok(v):
                bad.append(f"timing {key}: ns/op {v!r}")
    for row in results["timing"]["rows"]:
        if "skipped" not in row and not ok(row["speedup"]["median"]):
            bad.append(f"speedup {row['workload']}: {row['speedup']['median']!r}")
    cg = results.get("callgrind", {})
    for key, v in cg.get("per_op", {}).items():
        if not ok(v["per_op"]):
            bad.append(f"callgrind {key}: {v['per_op']!r} Ir/op")
    for impl, v in results.get("pool_memory", {}).get("per_pool", {}).items():
        if not ok(v["rss_per_pool"]):
            bad.append(f"empty pools {impl}: {v['rss_per_pool']!r} B each")
    mem = results.get("memory", {})
    for impl, v in mem.get("per_block", {}).items():
        for k, x in v.items():
            if x is not None and not (isinstance(x, (int, float)) and math.isfinite(x)):
                bad.append(f"memory {impl} {k}: {x!r}")
        if v["rss_per_block"] <= 0:
            bad.append(f"memory {impl}: RSS did not grow")
        if impl.startswith("cymem") and not v["rss_bookkeeping_per_block"] > 0:
            bad.append(f"memory {impl}: no bookkeeping measured from RSS")
    return bad


# ------------------------------------------------------------------ main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="CI smoke: 3 short rounds, small N")
    ap.add_argument("--rounds", type=int, help="timed rounds (default 11, quick 3)")
    ap.add_argument("--min-time-ms", type=float, help="minimum time per measurement (default 60)")
    ap.add_argument(
        "--callgrind-n",
        type=int,
        nargs=2,
        metavar=("N_A", "N_B"),
        help="callgrind iterations for (a) and (b) (default 200000 1000000; quick 5000 50000)",
    )
    ap.add_argument("--memory-n", type=int, help="live blocks for bookkeeping (default 1000000)")
    ap.add_argument("--pools-n", type=int, help="empty pools kept alive (default 200000)")
    ap.add_argument("--no-callgrind", action="store_true")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--build-dir", type=Path, default=C.DEFAULT_BUILD_DIR)
    ap.add_argument(
        "--out-dir",
        type=Path,
        help="where results.json, chart.png, REPORT.md go "
        "(default: build/bench; quick: build/bench/quick)",
    )
    ap.add_argument(
        "--only",
        help="comma-separated workloads to run (e.g. e,f_new,f_size,d; "
        f"default all: {','.join(w for w in WORKLOADS if not w.endswith('_arena'))}); "
        "an arena row follows its heap row",
    )
    ap.add_argument("--seed", type=int, default=12345, help="shuffle seed of the round order")
    ap.add_argument("--rebuild", action="store_true", help="recompile the modules")
    args = ap.parse_args()

    quick = args.quick
    only = set(args.only.split(",")) if args.only else None
    if only and only - set(WORKLOADS):
        ap.error(f"unknown workloads: {', '.join(sorted(only - set(WORKLOADS)))}")
    rounds = args.rounds or (3 if quick else 11)
    min_ms = args.min_time_ms or (10.0 if quick else 60.0)
    cg_n = dict(CALLGRIND_N_QUICK if quick else CALLGRIND_N)
    if args.callgrind_n:
        cg_n["a"], cg_n["b"] = args.callgrind_n
    mem_n = args.memory_n or (100_000 if quick else 1_000_000)
    pools_n = args.pools_n or (20_000 if quick else 200_000)
    # Absolute: the run changes into the build directory below.
    out_dir = (
        args.out_dir or (C.DEFAULT_OUT_DIR / "quick" if quick else C.DEFAULT_OUT_DIR)
    ).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    args.build_dir.mkdir(parents=True, exist_ok=True)
    os.chdir(args.build_dir)
    # One run measures one cymem_rs build, even if `make install` runs meanwhile.
    snapshot = C.snapshot_cymem_rs(args.build_dir / "snapshot")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    t_start = time.perf_counter()
    log(f"building the modules in {args.build_dir} ...")
    paths = C.build_modules(args.build_dir, force=args.rebuild)
    mods = {impl: C.load_module(impl, p) for impl, p in paths.items()}
    meta = machine_info()
    arena, arena_note = C.arena_supported()
    log(f"arena: {arena_note}")
    for mod in mods.values():
        mod.check()
    if arena:
        mods["cymem_rs"].check(True)
    mods["cymem_rs"].prepare(B_ALLOCS)

    ms = make_measurements(mods, arena)
    if only:
        ms = [m for m in ms if m.workload.replace("_arena", "") in only]
        cg_n = {w: n for w, n in cg_n.items() if w in only}
    gc.disable()
    log(f"calibrating {len(ms)} measurements to >= {min_ms:g} ms each ...")
    for m in ms:
        calibrate(m, min_ms * 1e6)
    log(f"timing: {rounds} rounds (+1 warm-up) ...")
    run_rounds(ms, rounds, min_ms * 1e6, args.seed, log)
    gc.enable()
    mods["cymem_rs"].release()

    results: dict = {
        "mode": "quick" if quick else "full",
        "meta": meta,
        "config": {
            "rounds": rounds,
            "min_time_ms": min_ms,
            "seed": args.seed,
            "b_allocs": B_ALLOCS,
            "constants": mods["cymem_rs"].constants(),
            "arena": {"supported": arena, "note": arena_note},
            "modules": {k: str(v) for k, v in paths.items()},
        },
        "timing": {
            "measurements": {
                m.key: {
                    "workload": m.workload,
                    "impl": m.impl,
                    "units_per_sample": m.units,
                    "ops_per_unit": m.ops_per_unit,
                    "samples_ns_per_op": m.samples,
                    "sample_ms": m.sample_ms,
                    **summarize(m.samples),
                }
                for m in ms
            },
            "rows": timing_rows(ms, arena, arena_note),
        },
    }
    log(f"timing done in {time.perf_counter() - t_start:.0f} s")

    if not args.no_callgrind:
        log(f"callgrind: N = {cg_n} ...")
        results["callgrind"] = run_callgrind(
            paths,
            cg_n,
            arena,
            args.build_dir / ("callgrind-quick" if quick else "callgrind"),
            log,
            baselines=not quick,
        )
    if not args.no_memory and not only:
        log(f"bookkeeping: {mem_n} live blocks of 64 B ...")
        results["memory"] = run_memory(paths, mem_n, 64, arena, log)
    if not args.no_memory and (not only or "f_new" in only):
        log(f"empty pools: {pools_n:,} kept alive ...")
        results["pool_memory"] = run_pool_memory(pools_n, log)

    meta["loadavg_end"] = os.getloadavg()
    meta["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    meta["snapshot"] = str(snapshot)
    seen = {v.get("fingerprint") for v in results.get("memory", {}).get("raw", {}).values()}
    seen.discard(None)
    if seen - {meta["installed"]["cymem_rs"]["sha256"]}:
        meta["warning"] = "bookkeeping subprocesses saw a different cymem_rs build"

    problems = sanity(results)
    results["sanity_problems"] = problems
    (out_dir / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(report.console_tables(results))
    try:
        report.write_chart(results, out_dir / "chart.png")
    except ImportError as err:
        if not quick:
            raise
        log(f"chart skipped (quick mode): {err}")
    report.write_markdown(results, out_dir / "REPORT.md")
    log(f"wrote {out_dir / 'results.json'}, chart.png, REPORT.md ({meta['wall_seconds']:.0f} s)")
    if problems:
        log("SANITY CHECK FAILED:\n  " + "\n  ".join(problems))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
