"""The process-wide peak of pool bytes from Python and Cython: `peak()`,
`reset_peak()`, `format_report(peak=True)`, `trace()` and the `%%poolmem`
IPython magic, against known allocation sequences, across threads and in a
forked child. Every block here is at least one step (64 KiB) big, so each is
counted at once and the figures are exact; the garbage collector is paused
so that no other test's pool dies in the middle of a sequence."""

from __future__ import annotations

import gc
import io
import os
import threading

import pytest

import cymem_rs
from cymem_rs import Pool, peak, reset_peak, trace

KIB = 1024
MIB = 1024 * KIB


@pytest.fixture(autouse=True)
def no_gc():
    gc.collect()
    gc.disable()
    yield
    gc.enable()


def by_name(report, name):
    found = [p for p in report["pools"] if p["name"] == name]
    assert len(found) == 1, report
    return found[0]


def test_the_step_is_64_kib():
    assert peak()["step"] == 64 * KIB


def test_a_known_sequence_and_who_held_the_peak():
    reset_peak()
    base = peak()["current"]
    heap = Pool(name="py-heap")
    blocks = [heap.alloc(1, 256 * KIB) for _ in range(4)]
    arena = Pool(arena=True, name="py-arena")
    arena.alloc(1, 512 * KIB)
    for block in blocks:
        heap.free(block)
    heap.alloc(1, 128 * KIB)

    report = peak()
    assert report["peak"] == base + 1536 * KIB
    assert report["current"] == base + 640 * KIB
    assert report["snapshot"] == report["peak"]
    held = by_name(report, "py-heap")
    assert (held["bytes"], held["blocks"], held["arena"], held["alive"]) == (MIB, 4, False, True)
    assert "test_peak.py:" in held["origin"]
    assert "in test_a_known_sequence_and_who_held_the_peak" in held["origin"]
    held = by_name(report, "py-arena")
    assert (held["bytes"], held["blocks"], held["arena"]) == (512 * KIB, 1, True)

    # Dropped pools keep their place at the peak.
    del heap, arena
    report = peak()
    assert report["current"] == base
    assert by_name(report, "py-heap")["alive"] is False
    assert by_name(report, "py-heap")["bytes"] == MIB


def test_module_and_pool_peaks_are_separate():
    pool = Pool(name="py-separate")
    block = pool.alloc(1, 2 * MIB)
    pool.free(block)
    pool.alloc(1, MIB)
    reset_peak()
    assert pool.peak_size == 2 * MIB
    report = peak()
    assert report["peak"] == report["current"]
    assert by_name(report, "py-separate")["bytes"] == MIB
    pool.reset_peak()
    assert pool.peak_size == MIB
    assert peak()["peak"] == report["peak"]


def test_cython_pools_in_threads_make_one_peak(cython_module):
    workload = cython_module("peak_workload")
    threads_n = 4
    all_hold = threading.Barrier(threads_n)

    def work(i):
        pool = Pool(name=f"py-thread-{i}")
        workload.fill(pool, 8, 128 * KIB)
        all_hold.wait()
        del pool

    reset_peak()
    base = peak()["current"]
    with trace() as t:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(threads_n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    total = threads_n * MIB
    assert (t.allocated, t.freed, t.peak) == (total, total, total)
    report = peak()
    assert report["peak"] == base + total
    assert report["current"] == base
    for i in range(threads_n):
        held = by_name(report, f"py-thread-{i}")
        assert (held["bytes"], held["blocks"], held["alive"]) == (MIB, 8, False)


def test_a_pool_on_a_live_thread_counts_at_once():
    # Python pools share the GIL, so their counts are not held back by the
    # thread that allocated (which stays alive here, below one step).
    filled = threading.Event()
    done = threading.Event()

    def work():
        pool = Pool(name="py-live-thread")
        blocks = [pool.alloc(1, KIB) for _ in range(10)]
        filled.set()
        done.wait()
        del blocks, pool

    reset_peak()
    base = peak()["current"]
    with trace() as t:
        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        filled.wait()
        try:
            assert (t.allocated, t.peak) == (10 * KIB, 10 * KIB)
            assert peak()["current"] == base + 10 * KIB
        finally:
            done.set()
            worker.join()
    assert (t.allocated, t.freed) == (10 * KIB, 10 * KIB)
    assert peak()["current"] == base


def test_a_trace_counts_small_blocks_within_one_step():
    pool = Pool()
    with trace() as t:
        blocks = [pool.alloc(1, 100) for _ in range(1000)]
        assert t.allocated == 100_000  # read live: this thread's counts flushed
        for block in blocks:
            pool.free(block)
    assert (t.allocated, t.freed) == (100_000, 100_000)
    assert 100_000 - 64 * KIB < t.peak <= 100_000
    assert repr(t) == f"PoolTrace(allocated=100000, freed=100000, peak={t.peak})"


def test_traces_nest_and_are_entered_once():
    pool = Pool()
    with trace() as outer:
        pool.free(pool.alloc(1, MIB))
        with trace() as inner:
            pool.alloc(1, 256 * KIB)
    assert (inner.peak, outer.peak) == (256 * KIB, MIB)
    with pytest.raises(RuntimeError, match="entered once"):
        outer.__enter__()
    with pytest.raises(RuntimeError, match="traces at once"):
        running = [trace().__enter__() for _ in range(64)]
        trace().__enter__()
    del running
    gc.collect()


def test_the_peak_report_is_a_table():
    reset_peak()
    pool = Pool(name="py-in-the-table")
    pool.alloc(1, MIB)
    text = cymem_rs.format_report(peak=True)
    lines = text.splitlines()
    assert lines[0].startswith("peak ") and "within 65536 bytes per thread" in lines[0]
    assert lines[1].split() == ["bytes", "blocks", "mode", "state", "name", "origin"]
    rows = [line.split() for line in lines[2:-1]]
    assert ["1048576", "1", "heap", "live", "py-in-the-table"] in [row[:5] for row in rows]
    assert lines[-1].endswith(f"when the total was {peak()['snapshot']} bytes")
    out = io.StringIO()
    cymem_rs.report(out, peak=True)
    assert out.getvalue() == cymem_rs.format_report(peak=True)
    # Without peak=True: the live-pool report, as before.
    assert cymem_rs.format_report().splitlines()[0].split()[0] == "bytes"


def test_the_peak_in_a_forked_child():
    parent_pool = Pool(name="py-before-fork")
    parent_pool.alloc(1, 256 * KIB)
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            reset_peak()
            base = peak()["current"]
            pool = Pool(name="py-in-child")
            pool.alloc(1, MIB)
            del pool
            report = peak()
            ok = report["peak"] == base + MIB and report["current"] == base
            ok = ok and by_name(report, "py-in-child")["bytes"] == MIB
            ok = ok and by_name(report, "py-before-fork")["bytes"] == 256 * KIB
            status = 0 if ok else 1
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_the_poolmem_cell_magic(capsys):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "cymem_rs")
    result = shell.run_cell(
        "%%poolmem\n"
        "import cymem_rs\n"
        "p = cymem_rs.Pool()\n"
        "keep = p.alloc(1, 2 * 1024 * 1024)\n"
        "p.free(keep)\n"
        "p.alloc(1, 512 * 1024)\n"
        "del p\n"
    )
    assert result.success, result.error_in_exec
    out = capsys.readouterr().out
    assert (
        "pool memory: peak 2.0 MiB (2097152 bytes) above the start, "
        "allocated 2.5 MiB (2621440 bytes), freed 2.5 MiB (2621440 bytes)"
    ) in out
