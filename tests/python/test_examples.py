"""Realistic Cython data structures on a Pool: nested structs and a hash map."""

import gc
import random
import weakref

import pytest

from cymem_rs import Pool


@pytest.fixture(scope="module")
def sparse(cython_module):
    return cython_module("sparse_matrix")


@pytest.fixture(scope="module")
def hash_map(cython_module):
    return cython_module("hash_map")


def test_sparse_matrix_matches_a_dense_reference(sparse):
    rng = random.Random(7)
    n_rows, n_cols = 50, 40
    matrix = sparse.SparseMatrix(n_rows, n_cols)
    dense = [[0.0] * n_cols for _ in range(n_rows)]
    for _ in range(2000):
        i, j, v = rng.randrange(n_rows), rng.randrange(n_cols), rng.uniform(-5, 5)
        matrix[i, j] = v
        dense[i][j] = v
    assert matrix.nnz == sum(1 for row in dense for v in row if v != 0.0)
    for i in range(n_rows):
        for j in range(n_cols):
            assert matrix[i, j] == dense[i][j]
    vector = [rng.uniform(-1, 1) for _ in range(n_cols)]
    expected = [sum(a * b for a, b in zip(row, vector)) for row in dense]
    assert matrix.dot(vector) == pytest.approx(expected)


def test_sparse_matrix_memory_is_tracked_and_released(sparse):
    pool = Pool()
    matrix = sparse.SparseMatrix(10, 100, pool)
    for j in range(100):
        matrix[3, j] = j
    # 10 rows + one grown entry array (realloc'd to 128 entries of 16 bytes).
    assert pool.block_count == 2
    assert pool.size == 10 * matrix_row_bytes() + 128 * 16
    matrix.clear_row(3)
    assert pool.block_count == 1
    with pytest.raises(IndexError):
        matrix[10, 0] = 1.0
    pool_ref = weakref.ref(pool)
    del matrix, pool
    gc.collect()
    assert pool_ref() is None


def matrix_row_bytes():
    return 3 * 8  # Row: pointer + two Py_ssize_t


def test_hash_map_matches_a_dict(hash_map):
    rng = random.Random(11)
    table = hash_map.HashMap()
    reference = {}
    total = 0
    for _ in range(20000):
        key = rng.randrange(0, 5000)
        value = rng.randrange(0, 2**40)
        table[key] = value
        reference[key] = value
        total += value
    assert len(table) == len(reference)
    for key, value in reference.items():
        assert table[key] == value
    with pytest.raises(KeyError):
        table[10**9]
    assert table.history_sum == total  # the realloc-grown array kept every value


def test_hash_map_growth_frees_old_tables(hash_map):
    table = hash_map.HashMap()
    for key in range(1, 10001):
        table[key] = key
    # After every resize the old table is freed: only the current table and
    # the history array remain.
    assert table.pool.block_count == 2
    assert table.history_sum == sum(range(1, 10001))
