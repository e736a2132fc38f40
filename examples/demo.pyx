# cymem_rs from Cython: a word-graph of nested C structs, all owned by one Pool.
# `make demo` compiles this against the installed cymem_rs and runs main().
from libc.stdlib cimport free as libc_free
from libc.stdlib cimport malloc as libc_malloc
from libc.string cimport memcpy, strlen

from cymem_rs.cymem cimport Pool, WrapFree, WrapMalloc

cdef size_t mallocs = 0
cdef size_t frees = 0


cdef void* counting_malloc(size_t n) noexcept:
    global mallocs
    mallocs += 1
    return libc_malloc(n)


cdef void counting_free(void* p) noexcept:
    global frees
    frees += 1
    libc_free(p)


cdef struct Word:
    char* text
    Word** next_words      # grown with realloc
    size_t n_next
    size_t capacity


cdef class WordGraph:
    """Words and which words follow them; no __dealloc__ needed."""
    cdef Pool mem
    cdef Word** words
    cdef size_t n_words, capacity
    cdef dict index

    def __init__(self, Pool mem):
        self.mem = mem
        self.capacity = 4
        self.words = <Word**>mem.alloc(self.capacity, sizeof(Word*))
        self.index = {}

    cdef Word* word(self, str text) except NULL:
        if text in self.index:
            return <Word*><size_t>self.index[text]
        if self.n_words == self.capacity:
            self.capacity *= 2
            self.words = <Word**>self.mem.realloc(self.words, self.capacity * sizeof(Word*))
        cdef bytes raw = text.encode("utf8")
        cdef Word* w = <Word*>self.mem.alloc(1, sizeof(Word))
        w.text = <char*>self.mem.alloc(len(raw) + 1, 1)
        memcpy(w.text, <char*>raw, len(raw))
        self.words[self.n_words] = w
        self.n_words += 1
        self.index[text] = <size_t>w
        return w

    def add_sentence(self, str sentence):
        tokens = sentence.split()
        cdef Word* prev
        cdef Word* cur
        for a, b in zip(tokens, tokens[1:]):
            prev = self.word(a)
            cur = self.word(b)
            if prev.n_next == prev.capacity:
                prev.capacity = 2 if prev.capacity == 0 else prev.capacity * 2
                if prev.next_words == NULL:
                    prev.next_words = <Word**>self.mem.alloc(prev.capacity, sizeof(Word*))
                else:
                    prev.next_words = <Word**>self.mem.realloc(
                        prev.next_words, prev.capacity * sizeof(Word*))
            prev.next_words[prev.n_next] = cur
            prev.n_next += 1

    def followers(self, str text):
        cdef Word* w = self.word(text)
        return [w.next_words[i].text[:strlen(w.next_words[i].text)].decode("utf8")
                for i in range(w.n_next)]


def main():
    import gc

    cdef Pool mem = Pool(WrapMalloc(counting_malloc), WrapFree(counting_free))
    graph = WordGraph(mem)
    text = [
        "the pool owns every block",
        "the pool frees every block once",
        "every block is zeroed",
        "the graph needs no dealloc",
    ]
    for sentence in text:
        graph.add_sentence(sentence)
        print(f"added {sentence!r:38} -> {mem.block_count:3} blocks, {mem.size:5} bytes")
    print(f"words after 'the': {graph.followers('the')}")
    print(f"words after 'every': {graph.followers('every')}")
    try:
        mem.free(<void*>&mallocs)
    except KeyError as error:
        print(f"freeing a pointer the pool does not own raises KeyError: {error}")
    del graph, mem
    gc.collect()
    print(f"after the pool is gone: {mallocs} mallocs, {frees} frees")
    if mallocs != frees:
        raise SystemExit("leak: not every block was released")
    print("everything was released")
