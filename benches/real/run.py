"""cymem against cymem_rs inside real projects: the timing and the profile.

    python benches/real/run.py [--pairs N] [--scale S] [--workloads a,b]
                               [--profile-scale S] [--profile-libs cymem_rs,cymem]

Needs the two builds of benches/real/build.sh (build/bench-real/venv-cymem and
venv-cymem_rs). Each workload of workloads.py runs in fresh processes,
alternately on each build (cymem, cymem_rs, cymem, ...) for N pairs; the
ratio is taken within each pair (cymem_rs time / cymem time) so slow drifts of
a shared machine cancel out, and summarised by its median and quartiles. Each
process's peak RSS is its ru_maxrss (less that of setup-only runs, per unit
of work: the work's RSS). Then callgrind runs each workload at a reduced
scale on each build, instrumenting the work alone, to measure the share of
its instructions spent in the pool library (inclusive: the library's
functions and what they call, the system allocator included).

Prints the table; writes build/bench-real/results.json and REPORT.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
# Where build.sh put the two builds (the same variable as build.sh).
OUT = os.environ.get("BENCH_REAL_DIR") or os.path.join(ROOT, "build", "bench-real")
LIBS = ("cymem", "cymem_rs")
sys.path.insert(0, HERE)
from callgrind_share import share_of
from workloads import WORKLOADS


def venv_python(lib: str) -> str:
    return os.path.join(OUT, f"venv-{lib}", "bin", "python")


def built(project: str) -> bool:
    """spaCy is built only on request (build.sh with BENCH_REAL_SPACY=1)."""
    return project != "spacy" or all(
        os.path.exists(os.path.join(OUT, f"venv-{lib}", ".spacy")) for lib in LIBS
    )


def command(lib: str, name: str, scale: float, *extra: str) -> list[str]:
    driver = os.path.join(OUT, f"venv-{lib}", "driver")
    script = os.path.join(HERE, "workloads.py")
    return [venv_python(lib), script, name, str(scale), driver, *extra]


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def run_once(lib: str, name: str, scale: float, *extra: str) -> dict:
    """One process: its reported time and check, and its peak RSS in MiB."""
    proc = subprocess.Popen(
        command(lib, name, scale, *extra), stdout=subprocess.PIPE, cwd=OUT, env=clean_env()
    )
    out = proc.stdout.read()
    proc.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{name} on {lib} failed (exit {proc.returncode})")
    result = json.loads(out)
    if result["library"] != lib:
        sys.exit(f"{name} on the {lib} build used {result['library']}")
    result["rss_mib"] = usage.ru_maxrss / 1024  # Linux reports KiB
    return result


def quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def time_workloads(names: list[str], pairs: int, scale: float, baseline_runs: int) -> dict:
    runs = {n: {lib: [] for lib in LIBS} for n in names}
    for p in range(pairs):
        for n in names:
            for lib in LIBS:
                runs[n][lib].append(run_once(lib, n, scale))
            checks = {lib: runs[n][lib][-1]["check"] for lib in LIBS}
            if checks["cymem"] != checks["cymem_rs"]:
                sys.exit(f"{n}: the builds disagree: {checks}")
        print(f"pair {p + 1}/{pairs} done", file=sys.stderr, flush=True)
    # The peak RSS of the setup alone (imports, input), to leave the work's.
    setup_rss = {n: {lib: [] for lib in LIBS} for n in names}
    for _ in range(baseline_runs):
        for n in names:
            for lib in LIBS:
                setup_rss[n][lib].append(run_once(lib, n, scale, "--setup-only")["rss_mib"])
    results = {}
    for n in names:
        project, unit, factory = WORKLOADS[n]
        units = runs[n]["cymem"][0]["units"]
        t = {lib: [r["seconds"] for r in runs[n][lib]] for lib in LIBS}
        rss = {lib: [r["rss_mib"] for r in runs[n][lib]] for lib in LIBS}
        ratios = [b / a for a, b in zip(t["cymem"], t["cymem_rs"])]
        q1, med, q3 = quartiles(ratios)
        work_rss = {
            lib: statistics.median(rss[lib]) - statistics.median(setup_rss[n][lib]) for lib in LIBS
        }
        results[n] = {
            "project": project,
            "description": factory.__doc__,
            "unit": unit,
            "units": units,
            "seconds": t,
            "median_seconds": {lib: statistics.median(t[lib]) for lib in LIBS},
            "ratios": ratios,
            "ratio_median": med,
            "ratio_q1": q1,
            "ratio_q3": q3,
            "verdict": "slower" if q1 > 1 else "faster" if q3 < 1 else "within noise",
            "rss_mib": rss,
            "peak_rss_mib": {lib: max(rss[lib]) for lib in LIBS},
            "median_rss_mib": {lib: statistics.median(rss[lib]) for lib in LIBS},
            "setup_rss_mib": setup_rss[n],
            "work_rss_mib": work_rss,
            "work_rss_bytes_per_unit": {lib: work_rss[lib] * 2**20 / units for lib in LIBS},
        }
    return results


def library_objects(lib: str) -> list[str]:
    """The shared objects of the pool library installed in lib's venv."""
    code = (
        f"import glob, os, {lib}.cymem as m, {lib} as p; "
        "d = os.path.dirname(p.__file__); "
        "print('\\n'.join(sorted(set(glob.glob(d + '/**/*.so', recursive=True)) | {m.__file__})))"
    )
    out = subprocess.run(
        [venv_python(lib), "-c", code],
        capture_output=True,
        text=True,
        cwd=OUT,
        env=clean_env(),
        check=True,
    )
    return [line for line in out.stdout.splitlines() if line.endswith(".so")]


def profile(names: list[str], libs: list[str], scale: float) -> dict:
    """Per workload and library: the work's Ir (instrumented alone) and the
    share of it spent inside the pool library."""
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench_real_callgrind.") as tmp:
        for lib in libs:
            objects = set(library_objects(lib))
            for n in names:
                out_file = os.path.join(tmp, f"{lib}.{n}.out")
                cmd = [
                    "valgrind",
                    "--tool=callgrind",
                    "--instr-atstart=no",
                    f"--callgrind-out-file={out_file}",
                ]
                subprocess.run(
                    cmd + command(lib, n, scale, "--callgrind"),
                    check=True,
                    cwd=OUT,
                    env=clean_env(),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                work, pool = share_of(out_file, objects)
                share = pool / work if work > 0 else float("nan")
                results.setdefault(n, {})[lib] = {
                    "work_ir": work,
                    "pool_ir": pool,
                    "pool_share": share,
                }
                print(f"profiled {n} on {lib}: pool share {share:.1%}", file=sys.stderr, flush=True)
    return results


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def table(results: dict, prof: dict) -> list[str]:
    head = (
        "workload",
        "cymem s",
        "cymem_rs s",
        "ratio median [q1, q3]",
        "verdict",
        "peak RSS MiB cymem / cymem_rs",
        "work RSS bytes per unit cymem / cymem_rs",
        "pool share (cymem_rs / cymem)",
    )
    rows = [head]
    for n, r in results.items():
        shares = prof.get(n, {})
        per_unit = r["work_rss_bytes_per_unit"]
        share = " / ".join(
            f"{shares[lib]['pool_share']:.1%}" for lib in ("cymem_rs", "cymem") if lib in shares
        )
        rows.append(
            (
                n,
                f"{r['median_seconds']['cymem']:.3f}",
                f"{r['median_seconds']['cymem_rs']:.3f}",
                f"{r['ratio_median']:.3f} [{r['ratio_q1']:.3f}, {r['ratio_q3']:.3f}]",
                r["verdict"],
                f"{r['peak_rss_mib']['cymem']:.1f} / {r['peak_rss_mib']['cymem_rs']:.1f}",
                f"{per_unit['cymem']:.0f} / {per_unit['cymem_rs']:.0f} per {r['unit']}",
                share or "-",
            )
        )
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    lines.insert(1, "|" + "---|" * len(head))
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--pairs", type=int, default=int(os.environ.get("BENCH_REAL_PAIRS", "20")))
    ap.add_argument("--scale", type=float, default=float(os.environ.get("BENCH_REAL_SCALE", "1.0")))
    ap.add_argument(
        "--workloads",
        default=",".join(n for n, w in WORKLOADS.items() if built(w[0])),
        help="comma list (default: every workload whose project is built in both venvs)",
    )
    ap.add_argument("--out", default=OUT, help="where results.json and REPORT.md go")
    ap.add_argument(
        "--baseline-runs", type=int, default=3, help="setup-only processes per workload and library"
    )
    ap.add_argument("--profile-scale", type=float, default=0.05)
    ap.add_argument(
        "--profile-libs", default="cymem_rs,cymem", help="comma list; empty: no profile"
    )
    args = ap.parse_args()
    names = [n for n in args.workloads.split(",") if n]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown or args.pairs < 1:
        ap.error(
            f"unknown workloads {unknown} (known: {', '.join(WORKLOADS)})"
            if unknown
            else "--pairs must be >= 1"
        )
    for lib in LIBS:
        if not os.path.exists(venv_python(lib)):
            sys.exit(
                f"no build in {OUT}/venv-{lib}: run benches/real/build.sh (make bench-real) first"
            )

    started = datetime.datetime.now(datetime.timezone.utc)
    results = time_workloads(names, args.pairs, args.scale, max(args.baseline_runs, 1))
    libs = [lib for lib in args.profile_libs.split(",") if lib]
    if libs and not shutil.which("valgrind"):
        print("valgrind not found: no pool share", file=sys.stderr)
        libs = []
    prof = profile(names, libs, args.profile_scale) if libs else {}
    geomean = math.exp(statistics.fmean(math.log(r["ratio_median"]) for r in results.values()))

    meta = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "command": " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
        "pairs": args.pairs,
        "scale": args.scale,
        "profile_scale": args.profile_scale,
        "load_average_at_start": os.getloadavg(),
        "geomean_ratio": geomean,
    }
    lines = table(results, prof)
    summary = f"geometric mean of the median time ratios (cymem_rs / cymem): {geomean:.3f}"
    print("\n".join(lines))
    print(summary)

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as f:
        json.dump({"meta": meta, "workloads": results, "profile": prof}, f, indent=1)
    with open(os.path.join(args.out, "REPORT.md"), "w", encoding="utf-8") as f:
        f.write("# Real projects: cymem vs cymem_rs\n\n")
        f.write(
            f"{meta['date']}; {meta['machine']}; load average at start "
            f"{', '.join(f'{x:.1f}' for x in meta['load_average_at_start'])}\n\n"
        )
        f.write(
            f"`{meta['command']}`: {args.pairs} alternating pairs per workload, scale {args.scale}; "
            f"pool share from callgrind at scale {args.profile_scale} (only the work instrumented).\n\n"
        )
        f.write("\n".join(lines) + "\n\n" + summary + "\n\n")
        f.write(
            "Work RSS: the median peak RSS of the runs less that of setup-only runs (imports and"
            " input), per unit of work; negative or tiny values are below the page-level noise.\n\n"
        )
        f.writelines(f"- `{n}` ({r['project']}): {r['description']}\n" for n, r in results.items())
    return 0


if __name__ == "__main__":
    sys.exit(main())
