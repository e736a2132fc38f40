"""One real-project workload, run inside a build's venv by benches/real/run.py.

    python workloads.py NAME SCALE DRIVER_DIR [--setup-only]

Prepares the workload's input (untimed), runs it, and prints one JSON line:
{"seconds": time of the work alone, "check": a value both builds must agree
on, "library": which cymem the projects were built on}. With --setup-only the
work is skipped (the profile subtracts such a run to leave the work's cost).
SCALE multiplies the workload's size (1.0: the full run).
"""

from __future__ import annotations

import json
import random
import sys
import time

WORKLOADS = {}


def workload(func):
    WORKLOADS[func.__name__] = func
    return func


def keys(n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.getrandbits(63) | 2 for _ in range(n)]


@workload
def preshed_map(scale: float):
    """PreshMap from Python: insert 1M random keys, then look each one up."""
    from preshed.maps import PreshMap

    ks = keys(int(1_000_000 * scale), 1)

    def work():
        table = PreshMap()
        for i, k in enumerate(ks):
            table[k] = i + 1
        return sum(table[k] for k in ks)

    return work


@workload
def preshed_small_maps(scale: float):
    """200k PreshMaps of 16 keys each, set and read from Cython (a Pool per map)."""
    import bench_real_drivers

    return lambda: bench_real_drivers.small_maps(int(200_000 * scale), 16, 7)


@workload
def preshed_counter(scale: float):
    """PreshCounter: count 2M Zipf-distributed keys, then Gale smoothing."""
    from preshed.counter import PreshCounter

    rng = random.Random(2)
    vocab = keys(50_000, 3)
    weights = [1.0 / (r + 1) for r in range(len(vocab))]
    stream = rng.choices(vocab, weights, k=int(2_000_000 * scale))

    def work():
        counter = PreshCounter()
        for k in stream:
            counter.inc(k, 1)
        counter.smooth()
        return len(counter) + counter.total

    return work


@workload
def preshed_bloom(scale: float):
    """BloomFilter: add 500k keys, then test those and 500k others."""
    from preshed.bloom import BloomFilter

    members = keys(int(500_000 * scale), 4)
    others = keys(len(members), 5)

    def work():
        bloom = BloomFilter.from_error_rate(len(members), 1e-4)
        for k in members:
            bloom.add(k)
        return sum(k in bloom for k in members) + sum(k in bloom for k in others)

    return work


@workload
def thinc_beam(scale: float):
    """thinc's Beam: 5k sequences of 25 moves, beam width 8, 24 classes."""
    import bench_real_drivers

    return lambda: bench_real_drivers.beam_search(int(5_000 * scale), 25, 8, 24, 11)


def library() -> str:
    names = [m for m in ("cymem.cymem", "cymem_rs.cymem") if m in sys.modules]
    return names[0].split(".")[0] if len(names) == 1 else f"ambiguous: {names}"


def main(argv: list[str]) -> int:
    if len(argv) not in (4, 5) or argv[1] not in WORKLOADS:
        print(__doc__, f"workloads: {', '.join(WORKLOADS)}", file=sys.stderr, sep="\n")
        return 2
    name, scale, driver = argv[1], float(argv[2]), argv[3]
    sys.path.insert(0, driver)
    work = WORKLOADS[name](scale)
    seconds, check = 0.0, None
    if argv[4:] != ["--setup-only"]:
        start = time.perf_counter()
        check = work()
        seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "check": check, "library": library()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
