#!/usr/bin/env python3
"""Renders results.json of the Cython benchmark: console tables, chart.png
and REPORT.md. bench.py calls it; it also runs alone:

    python benches/cython/report.py [results.json] [out_dir]
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent

BASELINE_LABEL = {
    "calloc": "calloc+free",
    "pymem": "PyMem_Calloc+Free",
    "bump": "bump",
    "object": "object()",
}
BASELINE_LABEL_C = {"pymem": "PyMem_Realloc+memset"}


def fmt_ns(x: float) -> str:
    if x >= 100_000:
        return f"{x / 1000:,.0f} µs"
    if x >= 10_000:
        return f"{x / 1000:.1f} µs"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def fmt_ratio(x: float) -> str:
    return f"{x:.2f}x" if x < 10 else f"{x:.1f}x"


def fmt_range(s: dict) -> str:
    return f"{fmt_ns(s['median'])} ({fmt_ns(s['min'])}–{fmt_ns(s['max'])})"


def target_text(row: dict) -> str:
    parts = []
    t = row["target_speedup"]
    parts.append("no slower than cymem" if t == 1.0 else f">= {t:g}x faster than cymem")
    if row.get("target_baseline"):
        b, limit = row["target_baseline"]
        parts.append(f"<= {limit:g}x {BASELINE_LABEL[b]}")
    return "; ".join(parts)


def baseline_labels(row: dict) -> dict:
    return BASELINE_LABEL_C if row["workload"] == "c" else BASELINE_LABEL


def row_cells(row: dict) -> list[str]:
    """workload | per | cymem | cymem_rs | speedup | baselines | cymem_rs/baseline | target | met"""
    if "skipped" in row:
        return [
            row["title"],
            row["unit"],
            "—",
            "skipped",
            "—",
            "—",
            "—",
            target_text(row),
            row["skipped"],
        ]
    labels = baseline_labels(row)
    bases = row["baselines"]
    cymem = fmt_range(row["cymem"])
    rs = fmt_range(row["cymem_rs"])
    if row["workload"] == "c":
        for key in ("cymem", "cymem_rs"):
            per = fmt_ns(row[key]["per_realloc_median"])
            per += "" if per.endswith("µs") else " ns"
            if key == "cymem":
                cymem += f" = {per}/realloc"
            else:
                rs += f" = {per}/realloc"
    sp = row["speedup"]
    return [
        row["title"],
        row["unit"],
        cymem,
        rs,
        f"{fmt_ratio(sp['median'])} ({fmt_ratio(sp['min'])}–{fmt_ratio(sp['max'])})",
        ", ".join(f"{labels[b]} {fmt_ns(v['median'])}" for b, v in bases.items()) or "—",
        ", ".join(
            f"{fmt_ratio(v['cymem_rs_ratio']['median'])} {labels[b]}" for b, v in bases.items()
        )
        or "—",
        target_text(row),
        "yes" if row["meets_target"] else "**NO**",
    ]


TIMING_HEADER = [
    "workload",
    "per",
    "cymem ns/op (min–max)",
    "cymem_rs ns/op (min–max)",
    "speedup cymem/cymem_rs (min–max)",
    "baselines ns/op (median)",
    "cymem_rs / baseline",
    "target (issue)",
    "met?",
]

CG_IMPLS = ["cymem", "cymem_rs", "cymem_rs_arena", "calloc", "pymem", "bump", "object"]
CG_LABEL = {
    "cymem": "cymem",
    "cymem_rs": "cymem_rs",
    "cymem_rs_arena": "cymem_rs arena",
    "calloc": "calloc+free",
    "pymem": "PyMem_* ¹",
    "bump": "zeroing bump",
    "object": "object()",
}
CG_TITLE = {
    "a": "(a) alloc(1,64)+free, Ir/pair",
    "b": "(b) 1M allocs + drop, Ir/alloc",
    "c": "(c) realloc 16 B->1 MiB, Ir/sequence",
    "d": "(d) Pool()+10 allocs+drop, Ir/pool",
    "e": "(e) Address(1,64), Ir/Address",
    "f_new": "(f) Pool() from Python, Ir/iteration",
    "f_size": "(f) mem.size from Python, Ir/iteration",
}
CG_FOOTNOTE = (
    "¹ PyMem_Calloc+PyMem_Free; for (c) PyMem_Calloc, PyMem_Realloc + memset of the "
    "new tail, PyMem_Free."
)


def targets_by_workload(results: dict) -> dict:
    return {r["workload"]: r for r in results["timing"]["rows"]}


def ir_verdict(cg: dict, w: str, impl: str, row: dict) -> tuple[float, bool] | None:
    """(speedup by instructions, target met by instructions) of impl on w."""
    per = cg["per_op"]
    a, b = per.get(f"{w}/cymem"), per.get(f"{w}/{impl}")
    if not a or not b or not row or "target_speedup" not in row:
        return None
    speedup = a["per_op"] / b["per_op"]
    ok = speedup >= row["target_speedup"]
    if row.get("target_baseline"):
        base, limit = row["target_baseline"]
        bv = per.get(f"{w}/{base}")
        if bv:
            ok = ok and b["per_op"] / bv["per_op"] <= limit
    return speedup, ok


def callgrind_table(cg: dict, results: dict | None = None) -> tuple[list[str], list[list[str]]]:
    targets = targets_by_workload(results) if results else {}
    impls = [i for i in CG_IMPLS if any(k.endswith("/" + i) for k in cg["per_op"])]
    header = (
        ["workload", "N"]
        + [CG_LABEL[i] for i in impls]
        + ["cymem/cymem_rs", "cymem_rs/PyMem_*", "target met by Ir?"]
    )
    rows = []
    per = cg["per_op"]
    for w, title in CG_TITLE.items():
        if not any(k.startswith(w + "/") for k in per):
            continue
        cells = [title, f"{cg['n'][w]:,}"]
        for impl in impls:
            v = per.get(f"{w}/{impl}")
            cells.append(f"{v['per_op']:,.0f}" if v else "—")
        a, b, p = per.get(f"{w}/cymem"), per.get(f"{w}/cymem_rs"), per.get(f"{w}/pymem")
        ratio = fmt_ratio(a["per_op"] / b["per_op"]) if a and b else "—"
        arena_v = ir_verdict(cg, w, "cymem_rs_arena", targets.get(f"{w}_arena"))
        if arena_v:
            ratio += f" (arena {fmt_ratio(arena_v[0])})"
        cells.append(ratio)
        cells.append(fmt_ratio(b["per_op"] / p["per_op"]) if b and p else "—")
        verdicts = []
        v = ir_verdict(cg, w, "cymem_rs", targets.get(w))
        if v:
            verdicts.append("yes" if v[1] else "**NO**")
        if arena_v:
            verdicts.append("arena " + ("yes" if arena_v[1] else "**NO**"))
        cells.append(", ".join(verdicts) or "—")
        rows.append(cells)
    return header, rows


def profile_keys(results: dict) -> list[tuple[str, str]]:
    """Which profiles to show: (a) and (b) always, and every workload where
    cymem_rs (or its arena) misses a target, by time or by instructions."""
    cg = results.get("callgrind", {})
    targets = targets_by_workload(results)
    keys = ["a/cymem_rs", "b/cymem_rs", "b/cymem_rs_arena", "a/cymem", "b/cymem"]
    for w in CG_TITLE:
        for impl, row in (
            ("cymem_rs", targets.get(w)),
            ("cymem_rs_arena", targets.get(f"{w}_arena")),
        ):
            if not row or "skipped" in row:
                continue
            v = ir_verdict(cg, w, impl, row)
            missed = not row.get("meets_target", True) or (v is not None and not v[1])
            if missed:
                keys += [f"{w}/{impl}", f"{w}/cymem"]
    seen, out = set(), []
    for k in keys:
        if k not in seen and k in cg.get("profiles", {}):
            seen.add(k)
            w, impl = k.split("/")
            out.append((k, f"{CG_LABEL[impl]}, {CG_TITLE[w]}"))
    return out


MEM_LABEL = {
    "cymem": "cymem 2.0.16 Pool",
    "cymem_rs": "cymem_rs Pool",
    "cymem_rs_arena": "cymem_rs Pool(arena=True)",
    "raw_pymem": "raw PyMem_Malloc+memset (reference)",
    "raw_calloc": "raw calloc (reference)",
}


def memory_table(mem: dict) -> tuple[list[str], list[list[str]]]:
    header = [
        "blocks made by",
        "RSS growth B/block",
        "bookkeeping from RSS B/block",
        "malloc in-use growth B/block",
        "bookkeeping from malloc in-use B/block",
        "tracemalloc growth B/block",
        "bookkeeping from tracemalloc B/block",
    ]
    rows = []

    def num(x) -> str:
        return "—" if x is None else f"{x:.1f}"

    for impl, v in mem["per_block"].items():
        ref = impl == "raw_pymem"
        tm_book = v["tracemalloc_bookkeeping_per_block"]
        if impl.startswith("cymem_rs"):
            tm_book_s = "not visible (Rust table on system malloc)"
        elif tm_book is None:
            tm_book_s = "—"
        else:
            tm_book_s = num(tm_book)
        rows.append(
            [
                MEM_LABEL.get(impl, impl),
                num(v["rss_per_block"]),
                "0 (reference)" if ref else num(v["rss_bookkeeping_per_block"]),
                num(v.get("malloc_per_block")),
                num(v.get("malloc_bookkeeping_per_block")),
                num(v["tracemalloc_per_block"]),
                tm_book_s,
            ]
        )
    return header, rows


def pool_memory_table(pools: dict) -> tuple[list[str], list[list[str]]]:
    header = ["", "cymem", "cymem_rs", "cymem_rs / cymem", "target", "met?"]
    per = pools["per_pool"]

    def num(x) -> str:
        return "—" if x is None else f"{x:.0f} B"

    verdict = [
        f"{pools['ratio']:.2f}",
        f"<= {pools['target_ratio']:.2f}",
        "yes" if pools["meets_target"] else "**NO**",
    ]
    rows = [
        [label, num(per["cymem"][key]), num(per["cymem_rs"][key]), *cells]
        for label, key, cells in (
            ("RSS per empty pool", "rss_per_pool", verdict),
            ("of which glibc malloc in-use", "malloc_per_pool", ["", "", ""]),
        )
    ]
    return header, rows


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    line = lambda cells: " | ".join(str(c).ljust(w) for c, w in zip(cells, widths))
    return "\n".join([line(header), "-+-".join("-" * w for w in widths)] + [line(r) for r in rows])


def md_table(header: list[str], rows: list[list[str]]) -> str:
    esc = lambda c: str(c).replace("|", "\\|")
    out = [
        "| " + " | ".join(esc(h) for h in header) + " |",
        "|" + "|".join(" --- " for _ in header) + "|",
    ]
    out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def profile_lines(cg: dict, key: str, md: bool) -> list[str]:
    prof = cg.get("profiles", {}).get(key)
    if not prof:
        return []
    total = cg["per_op"][key]["per_op"]
    out = []
    for p in prof[:10]:
        name = p["function"]
        if md:
            name = f"`{name}`"
        out.append(f"{p['ir_per_op']:8,.0f} Ir/op  {100 * p['ir_per_op'] / total:5.1f}%  {name}")
    return out


def console_tables(results: dict) -> str:
    parts = [
        (
            f"== timing ({results['mode']}: {results['config']['rounds']} rounds, "
            f">= {results['config']['min_time_ms']:g} ms per measurement; "
            "median (min–max) ns per op; speedup = median of per-round ratios)"
        )
    ]
    parts.append(text_table(TIMING_HEADER, [row_cells(r) for r in results["timing"]["rows"]]))
    cg = results.get("callgrind")
    if cg and "per_op" in cg:
        parts.append("\n== callgrind instructions per op ((Ir(N) - Ir(0)) / N)")
        parts.append(text_table(*callgrind_table(cg, results)))
        parts.append(CG_FOOTNOTE)
        for key, what in profile_keys(results):
            parts.append(f"  where {what} goes (self Ir per op, N run minus 0 run):")
            parts += ["    " + ln for ln in profile_lines(cg, key, md=False)[:8]]
    elif cg:
        parts.append(f"\n== callgrind: {cg.get('skipped')}")
    mem = results.get("memory")
    if mem:
        parts.append(
            f"\n== bookkeeping: {mem['n']:,} live blocks of {mem['size']} B "
            "(per block; REPORT.md says what each column includes)"
        )
        parts.append(text_table(*memory_table(mem)))
    pools = results.get("pool_memory")
    if pools:
        parts.append(f"\n== empty pools: {pools['n']:,} kept alive, RSS growth per pool")
        parts.append(text_table(*pool_memory_table(pools)))
    warn = results["meta"].get("warning")
    if warn:
        parts.append(f"\nWARNING: {warn}")
    if results.get("sanity_problems"):
        parts.append("\nSANITY PROBLEMS: " + "; ".join(results["sanity_problems"]))
    return "\n".join(parts)


def write_chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results["timing"]["rows"] if "skipped" not in r]
    short_unit = {
        "c": "sequence",
        "b": "alloc",
        "b_arena": "alloc",
        "f_new": "iteration",
        "f_size": "iteration",
    }
    labels = [
        textwrap.fill(r["title"], 20) + f"\nns/{short_unit.get(r['workload'], r['unit'])}"
        for r in rows
    ]
    fig, ax = plt.subplots(figsize=(max(9, 1.5 * len(rows)), 6.5))
    x = range(len(rows))
    width = 0.38
    for offset, impl, color in (
        (-width / 2, "cymem", "#888888"),
        (width / 2, "cymem_rs", "#d9661f"),
    ):
        med = [r[impl]["median"] for r in rows]
        lo = [r[impl]["median"] - r[impl]["min"] for r in rows]
        hi = [r[impl]["max"] - r[impl]["median"] for r in rows]
        name = "cymem 2.0.16" if impl == "cymem" else "cymem_rs (arena rows: Pool(arena=True))"
        ax.bar(
            [i + offset for i in x], med, width, yerr=[lo, hi], capsize=3, color=color, label=name
        )
    for base, marker, name in (
        ("pymem", "_", "PyMem_Calloc+PyMem_Free baseline"),
        ("bump", "x", "zeroing bump floor"),
    ):
        pts = [
            (i + width / 2, r["baselines"][base]["median"])
            for i, r in enumerate(rows)
            if base in r.get("baselines", {}) and r["workload"] != "c"
        ]
        if pts:
            ax.scatter(
                [p[0] for p in pts],
                [p[1] for p in pts],
                marker=marker,
                s=250,
                color="black",
                linewidths=2,
                zorder=3,
                label=name,
            )
    for i, r in enumerate(rows):
        top = max(r["cymem"]["max"], r["cymem_rs"]["max"])
        ax.annotate(
            f"{r['speedup']['median']:.1f}x",
            (i, top * 1.25),
            ha="center",
            fontsize=9,
            color="#333333",
        )
    ax.set_yscale("log")
    ax.set_ylabel("ns per op (median; bars: min–max over rounds; log scale)")
    ax.set_xticks(list(x))
    ax.set_xticklabels(labels, fontsize=8)
    meta = results["meta"]
    ax.set_title(
        f"cymem vs cymem_rs, Cython level ({meta['cpu_model']}, {meta['cpus']} CPUs, "
        f"Python {meta['python']}, {meta['date']})\nlabels: speedup cymem/cymem_rs "
        "(median of per-round ratios)",
        fontsize=10,
    )
    ax.legend(loc="upper left", fontsize=9)
    ax.grid(axis="y", which="both", alpha=0.3)
    ymin, ymax = ax.get_ylim()
    ax.set_ylim(ymin, ymax * 3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_markdown(results: dict, path: Path) -> None:
    meta, cfg = results["meta"], results["config"]
    inst = meta["installed"]
    rows = results["timing"]["rows"]
    met = [r for r in rows if "skipped" not in r]
    missed = [r["title"] for r in met if not r["meets_target"]]
    L = []
    L.append("# cymem_rs vs cymem: Cython-level benchmark\n")
    L.append(
        f"Mode: **{results['mode']}**. Generated by `benches/cython/bench.py` on "
        f"{meta['date']}; raw data in `results.json`, chart in `chart.png`.\n"
    )
    L.append(
        f"Targets met: {len(met) - len(missed)} of {len(met)} measured rows"
        + (f"; missed: {', '.join(missed)}." if missed else ".")
        + "\n"
    )
    if meta.get("warning"):
        L.append(f"> **Warning:** {meta['warning']}\n")
    L.append("## Machine\n")
    L.append(
        md_table(
            ["", ""],
            [
                [
                    "CPU",
                    f"{meta['cpu_model']} ({meta['cpus']} CPUs, {meta['cores_per_socket']} cores/socket, "
                    f"{meta['threads_per_core']} thread/core"
                    + (f", {meta['hypervisor']} guest" if meta.get("hypervisor") else "")
                    + ")",
                ],
                ["kernel", meta["kernel"]],
                ["Python", f"{meta['python_impl']} {meta['python']}"],
                ["Cython", meta["cython"]],
                ["C compiler", meta["cc"]],
                ["cymem", inst["cymem"]["version"]],
                [
                    "cymem_rs",
                    (
                        f"{inst['cymem_rs']['version']}, installed wheel in .venv, "
                        f"snapshot taken at the start of the run (extension sha256 "
                        f"{inst['cymem_rs']['sha256'][:12]}…); checkout {meta['git_commit']}"
                    ),
                ],
                ["valgrind", meta.get("valgrind", "")],
                [
                    "load average",
                    (
                        f"{meta['loadavg_start'][0]:.1f} at start, "
                        f"{meta.get('loadavg_end', [float('nan')])[0]:.1f} at end "
                        "(shared machine: absolute times are noisy, ratios are per round)"
                    ),
                ],
                ["date", meta["date"]],
                ["wall time", f"{meta.get('wall_seconds', 0):.0f} s"],
            ],
        )
    )
    L.append("")
    L.append("## Time per operation\n")
    L.append(
        f"{cfg['rounds']} rounds after one discarded warm-up round. In each round every "
        "measurement below runs once, in a shuffled order, in one process; each is one "
        f"call of a C loop sized to take at least {cfg['min_time_ms']:g} ms (calibrated "
        "first, 30% headroom; a run that comes out shorter is redone at once with more "
        "iterations, so every sample lasts at least that long). ns/op: median (min–max) over the rounds. Speedup and "
        "cymem_rs/baseline: the median (min–max) of the ratios taken within each round.\n"
    )
    L.append(md_table(TIMING_HEADER, [row_cells(r) for r in rows]))
    L.append("")
    L.append("![cymem vs cymem_rs](chart.png)\n")
    cg = results.get("callgrind")
    if cg and "per_op" in cg:
        L.append("## Instructions per operation (callgrind)\n")
        L.append(
            "Each cell: one small driver process (`driver.py callgrind`) per "
            "implementation and workload, run under `valgrind --tool=callgrind` with N "
            "operations and with 0; cell = (Ir(N) − Ir(0)) / N, so interpreter start-up, "
            "imports, set-up and (for (a), (c)) the long-lived Pool's creation and drop "
            "cancel out. (b) counts the Pool's creation and drop spread over its N "
            "allocations, as in the timing; (d) counts them per pool. (a) and (b) are "
            "the figures asked for; the other rows check the other targets without the "
            "machine's noise. Deterministic up to address-dependent hashing; "
            "`PYTHONHASHSEED=0`.\n"
        )
        L.append(md_table(*callgrind_table(cg, results)))
        L.append("")
        L.append(
            CG_FOOTNOTE + " *target met by Ir*: the row's targets checked on instruction "
            "counts instead of time (cache misses and page faults cost time but few "
            "instructions, so this is a load-independent proxy, not the verdict).\n"
        )
        for key, what in profile_keys(results):
            L.append(
                f"Where the instructions go, {what} (self cost per function, "
                "N run minus 0 run, per op):\n"
            )
            L.append("```\n" + "\n".join(profile_lines(cg, key, md=False)) + "\n```\n")
    elif cg:
        L.append(f"## Instructions per operation (callgrind)\n\nSkipped: {cg.get('skipped')}\n")
    pools = results.get("pool_memory")
    if pools:
        L.append("## Memory of an empty pool\n")
        L.append(
            f"{pools['n']:,} `Pool()` kept alive in a list made beforehand, in a fresh "
            "process per implementation (`driver.py pools`): the RSS growth, and glibc's "
            "in-use growth (where cymem_rs's registry records live; the Python objects "
            "are in pymalloc), divided by the pool count.\n"
        )
        L.append(md_table(*pool_memory_table(pools)))
        L.append("")
    mem = results.get("memory")
    if mem:
        L.append("## Bookkeeping bytes per live block\n")
        L.append(
            f"{mem['n']:,} live blocks of {mem['size']} B (`alloc(1, {mem['size']})`, "
            "each written once), made in a fresh process per implementation "
            "(`driver.py memory`), measured as the growth between just before the "
            "allocations and just after them, with the pool still alive; divided by the "
            "block count. Three measures, from two processes per implementation "
            "(tracemalloc's own overhead would distort RSS):\n"
        )
        L.append(md_table(*memory_table(mem)))
        L.append("")
        L.append(
            "- **RSS** (`/proc/self/statm` resident pages) is what the machine pays. "
            "*Bookkeeping from RSS* = the pool's RSS growth minus the RSS growth for the "
            "same blocks made by raw `PyMem_Malloc` + memset (cymem's default allocator; "
            "cymem_rs's default is `PyMem_Calloc`, the same pymalloc heap, so block "
            "storage is identical: 64 B, no header). It includes the pool's table or dict, "
            "cymem's one int object per address, allocator headers and slack, and "
            "freed-but-still-resident memory (e.g. a table's previous, smaller array "
            "after a resize, if the allocator keeps it); for the arena pool, also the "
            "touched part of its chunks beyond the blocks."
        )
        L.append(
            "- **malloc in-use** (glibc `mallinfo2()`: `uordblks + hblkhd`, in the RSS "
            "process) counts only what glibc malloc handed out and did not get back: "
            "the Rust table (a `Vec` on the system allocator), cymem's dict table (over "
            "512 B, so CPython passes it to malloc), the arena's chunks, calloc'd blocks. "
            "pymalloc (small PyMem/PyObject blocks, in mmap'd arenas) is invisible to "
            "it. *Bookkeeping from malloc in-use* = that growth, minus the blocks where "
            "they live in malloc (arena, raw calloc): for cymem it is the dict's table "
            "alone (its address ints are in pymalloc), for cymem_rs the block table, for "
            "the arena the table plus unused chunk space, for raw calloc malloc's "
            "per-chunk header and rounding."
        )
        L.append(
            "- **tracemalloc** counts live PyMem/PyObject allocations only. *Bookkeeping "
            "from tracemalloc* = growth minus the blocks, where tracemalloc sees the "
            "blocks (PyMem). Exact for cymem (dict table + one int per address, all "
            "Python objects); blind to cymem_rs's table (system malloc), so not given "
            "there; an arena pool's blocks (system malloc) are invisible to it too.\n"
        )
    L.append("## Workloads\n")
    L.append(
        "All in `workloads.pyx`, one source compiled twice (`from cymem.cymem cimport` "
        "and `from cymem_rs.cymem cimport`); the baselines are compiled into the same "
        "modules and run from the cymem_rs one. Every pointer a loop gets goes through an "
        "empty `asm volatile` so the C compiler cannot drop or fuse allocations.\n"
    )
    L.append(
        "- (a) `p = mem.alloc(1, 64); mem.free(p)` on one Pool. Baselines: `calloc(1, 64)`"
        " + `free`; `PyMem_Calloc(1, 64)` + `PyMem_Free`; bump: memset 64 B at a bump "
        "pointer in a 64 KiB window of a pre-faulted arena, reset when full (a free is a "
        "no-op)."
    )
    L.append(
        f"- (b) `Pool()`, then {cfg['b_allocs']:,} `mem.alloc(1, size)` with size cycling "
        "16, 32, ..., 512 B (mean 264 B), then the Pool is dropped; ns per alloc, the "
        "drop included. Baselines: the same allocations by calloc / PyMem_Calloc into a "
        "pre-made pointer array, then freed in allocation order; bump: memset each block "
        "at a bump pointer in a pre-faulted 264 MB arena, reset by setting the pointer "
        "back (the floor for free-everything-at-once; no page faults, as the arena is "
        "kept warm across rounds)."
    )
    L.append(
        "- (c) one growth sequence on a long-lived Pool: `mem.alloc(1, 16)`, then "
        "`mem.realloc` to 32, 64, ..., 1 MiB (16 reallocs), then `mem.free`; reported per "
        "sequence, and per realloc (sequence / 16, the alloc and free amortised in). "
        "Reference: PyMem_Calloc, PyMem_Realloc + memset of the new half, PyMem_Free."
    )
    L.append(
        "- (d) `Pool()`, 10 allocs of 16, 32, ..., 160 B, drop; per pool. Baselines: "
        "the 10 allocations by calloc / PyMem_Calloc and their frees (no object); bump: "
        "10 bump+memset then reset. Note: these floors make no Python object, while every "
        "Pool is one (`object()` alone costs about half of `Pool()`, see (f)), so the "
        "arena row's <= 2x-bump target leaves only about one bump floor's worth of time "
        "for creating and destroying the Pool object."
    )
    L.append("- (e) `a = Address(1, 64)` then `a = None`, in a C loop.")
    L.append(
        "- (f) Python-level loops (`for _ in itertools.repeat(None, n)`; the loop's own "
        "~5-10 ns per iteration is included in every figure of the row): `Pool()`, "
        "against `object()` in the same loop; and `mem.size` on an empty Pool."
    )
    arena = cfg["arena"]
    L.append(
        "- Arena rows: `Pool(arena=True)` for (b) and (d), compared with cymem's (b) and "
        "(d) and the zeroing bump floor. "
        + ("Measured." if arena["supported"] else f"Skipped: {arena['note']}.")
    )
    L.append("- The cyclic GC is disabled while timing (as `timeit` does).\n")
    L.append("## How to rerun\n")
    L.append(
        "```sh\nmake install                 # build the cymem_rs wheel into .venv "
        "(once, and after changing the Rust code)\n"
        "bash benches/cython/run.sh          # full run (~3-5 min on 2 cores): "
        "writes build/bench/{results.json,chart.png,REPORT.md}\n"
        "bash benches/cython/run.sh --quick  # CI smoke: every workload once, "
        "checks every figure is finite and > 0, writes to build/bench/quick/\n"
        "```\n"
    )
    L.append(
        "Options (`bench.py --help`): `--rounds`, `--min-time-ms`, `--callgrind-n N_A N_B`, "
        "`--memory-n`, `--pools-n`, `--only W,W`, `--no-callgrind`, `--no-memory`, `--out-dir`, "
        "`--rebuild`. "
        "Compiled modules and callgrind outputs go to `build/bench/cython/`. "
        "`python benches/cython/report.py results.json OUT_DIR` re-renders the chart and "
        "this report from saved results.\n"
    )
    path.write_text("\n".join(L))


def main(argv: list[str]) -> None:
    results_path = (
        Path(argv[0]) if argv else HERE.parent.parent / "build" / "bench" / "results.json"
    )
    out_dir = Path(argv[1]) if len(argv) > 1 else results_path.parent
    results = json.loads(results_path.read_text())
    print(console_tables(results))
    write_chart(results, out_dir / "chart.png")
    write_markdown(results, out_dir / "REPORT.md")


if __name__ == "__main__":
    main(sys.argv[1:])
