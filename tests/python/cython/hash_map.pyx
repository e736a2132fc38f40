# An open-addressing hash map (uint64 -> uint64) whose table lives in a Pool,
# grown by allocating a bigger table and freeing the old one, with values kept
# in a side array grown by realloc. The shape of preshed's maps.
from libc.stdint cimport uint64_t

from cymem_rs.cymem cimport Pool


cdef struct Cell:
    uint64_t key      # 0 means empty; key 0 is stored out of band
    uint64_t value


cdef inline uint64_t mix(uint64_t x) nogil:
    x ^= x >> 33
    x *= 0xff51afd7ed558ccdULL
    x ^= x >> 33
    return x


cdef class HashMap:
    cdef Pool mem
    cdef Cell* cells
    cdef uint64_t capacity
    cdef readonly uint64_t filled
    cdef uint64_t* history      # every value ever set, grown by realloc
    cdef uint64_t history_len, history_cap
    cdef bint has_zero
    cdef uint64_t zero_value

    def __init__(self, uint64_t capacity=8):
        self.mem = Pool()
        self.capacity = 8
        while self.capacity < capacity:
            self.capacity *= 2
        self.cells = <Cell*>self.mem.alloc(self.capacity, sizeof(Cell))
        self.history_cap = 4
        self.history = <uint64_t*>self.mem.alloc(self.history_cap, sizeof(uint64_t))

    cdef Cell* _find(self, Cell* cells, uint64_t capacity, uint64_t key) nogil:
        cdef uint64_t i = mix(key) & (capacity - 1)
        while cells[i].key != 0 and cells[i].key != key:
            i = (i + 1) & (capacity - 1)
        return &cells[i]

    cdef int _resize(self) except -1:
        cdef uint64_t new_capacity = self.capacity * 2
        cdef Cell* new_cells = <Cell*>self.mem.alloc(new_capacity, sizeof(Cell))
        cdef uint64_t i
        for i in range(self.capacity):
            if self.cells[i].key != 0:
                self._find(new_cells, new_capacity, self.cells[i].key)[0] = self.cells[i]
        self.mem.free(self.cells)
        self.cells = new_cells
        self.capacity = new_capacity
        return 0

    cdef int _remember(self, uint64_t value) except -1:
        if self.history_len == self.history_cap:
            self.history_cap *= 2
            self.history = <uint64_t*>self.mem.realloc(
                self.history, self.history_cap * sizeof(uint64_t))
        self.history[self.history_len] = value
        self.history_len += 1
        return 0

    def __setitem__(self, uint64_t key, uint64_t value):
        self._remember(value)
        if key == 0:
            self.has_zero = True
            self.zero_value = value
            return
        if (self.filled + 1) * 4 > self.capacity * 3:
            self._resize()
        cdef Cell* cell = self._find(self.cells, self.capacity, key)
        if cell.key == 0:
            self.filled += 1
            cell.key = key
        cell.value = value

    def __getitem__(self, uint64_t key):
        if key == 0:
            if self.has_zero:
                return self.zero_value
            raise KeyError(key)
        cdef Cell* cell = self._find(self.cells, self.capacity, key)
        if cell.key == 0:
            raise KeyError(key)
        return cell.value

    def __len__(self):
        return self.filled + self.has_zero

    @property
    def history_sum(self):
        cdef uint64_t total = 0, i
        for i in range(self.history_len):
            total += self.history[i]
        return total

    @property
    def pool(self):
        return self.mem
