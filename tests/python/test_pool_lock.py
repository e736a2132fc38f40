"""Which synchronisation the installed binding gives its pools.

Free-threaded CPython builds give every Python pool a lock of its own; other
builds rely on the GIL. `make test-pool-lock` runs the pool tests against a
wheel that forces the lock on an ordinary interpreter, and sets
CYMEM_RS_EXPECT_POOL_LOCK=1 so this test proves that wheel really took the
locked path (and that ordinary wheels did not).
"""

import os
import sysconfig
import threading

import cymem_rs.cymem
from cymem_rs import Pool


def test_the_pool_lock_is_there_exactly_when_expected():
    free_threaded = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    forced = os.environ.get("CYMEM_RS_EXPECT_POOL_LOCK") == "1"
    assert cymem_rs.cymem._POOL_LOCK is (free_threaded or forced)


def test_threads_sharing_one_pool_keep_its_accounting():
    pool = Pool()
    errors = []

    def work():
        try:
            for _ in range(2000):
                addr = pool.alloc(3, 8)
                assert pool.size >= 24
                pool.free(addr)
        except (AssertionError, KeyError, MemoryError, RuntimeError) as e:
            errors.append(e)  # a thread's exception is otherwise only printed

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert pool.size == 0 and pool.block_count == 0
    assert pool.stats.total_allocs == pool.stats.total_frees == 8000
