# A sparse matrix of nested C structs, all owned by one Pool: no __dealloc__.
# (The pattern cymem's documentation motivates the pool with, written afresh.)
from cymem_rs.cymem cimport Pool


cdef struct Entry:
    Py_ssize_t column
    double value


cdef struct Row:
    Entry* entries     # sorted by column
    Py_ssize_t length
    Py_ssize_t capacity


cdef class SparseMatrix:
    cdef Pool mem
    cdef Row* rows
    cdef readonly Py_ssize_t n_rows
    cdef readonly Py_ssize_t n_cols

    def __init__(self, Py_ssize_t n_rows, Py_ssize_t n_cols, Pool mem=None):
        if n_rows < 0 or n_cols < 0:
            raise ValueError("negative shape")
        self.mem = mem if mem is not None else Pool()
        self.n_rows = n_rows
        self.n_cols = n_cols
        # Rows start empty: zeroed structs (NULL entries, length 0).
        self.rows = <Row*>self.mem.alloc(n_rows, sizeof(Row))

    cdef Row* _row(self, Py_ssize_t i) except NULL:
        if not 0 <= i < self.n_rows:
            raise IndexError(i)
        return &self.rows[i]

    def __setitem__(self, key, double value):
        cdef Py_ssize_t i = key[0], j = key[1]
        if not 0 <= j < self.n_cols:
            raise IndexError(j)
        cdef Row* row = self._row(i)
        cdef Py_ssize_t k = 0
        while k < row.length and row.entries[k].column < j:
            k += 1
        if k < row.length and row.entries[k].column == j:
            row.entries[k].value = value
            return
        if row.length == row.capacity:
            self._grow(row)
        cdef Py_ssize_t m
        for m in range(row.length, k, -1):
            row.entries[m] = row.entries[m - 1]
        row.entries[k].column = j
        row.entries[k].value = value
        row.length += 1

    cdef int _grow(self, Row* row) except -1:
        cdef Py_ssize_t new_capacity = 4 if row.capacity == 0 else row.capacity * 2
        if row.entries == NULL:
            row.entries = <Entry*>self.mem.alloc(new_capacity, sizeof(Entry))
        else:
            row.entries = <Entry*>self.mem.realloc(row.entries, new_capacity * sizeof(Entry))
        row.capacity = new_capacity
        return 0

    def __getitem__(self, key):
        cdef Py_ssize_t i = key[0], j = key[1]
        cdef Row* row = self._row(i)
        cdef Py_ssize_t k
        for k in range(row.length):
            if row.entries[k].column == j:
                return row.entries[k].value
        return 0.0

    def clear_row(self, Py_ssize_t i):
        """Gives a row's storage back to the pool."""
        cdef Row* row = self._row(i)
        if row.entries != NULL:
            self.mem.free(row.entries)
        row.entries = NULL
        row.length = row.capacity = 0

    @property
    def nnz(self):
        cdef Py_ssize_t total = 0, i
        for i in range(self.n_rows):
            total += self.rows[i].length
        return total

    def dot(self, vector):
        """Matrix-vector product."""
        cdef list out = []
        cdef Py_ssize_t i, k
        cdef double acc
        for i in range(self.n_rows):
            acc = 0.0
            for k in range(self.rows[i].length):
                acc += self.rows[i].entries[k].value * vector[self.rows[i].entries[k].column]
            out.append(acc)
        return out

    @property
    def pool(self):
        return self.mem
