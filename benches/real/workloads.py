"""One real-project workload, run inside a build's venv by benches/real/run.py.

    python workloads.py NAME SCALE DRIVER_DIR [--setup-only | --callgrind]

Prepares the workload's input (untimed), runs it, and prints one JSON line:
{"seconds": time of the work alone, "check": a value both builds must agree
on, "library": which cymem the projects were built on, "unit"/"units": what
the work made and how many, for the RSS per unit}. With --setup-only the work
is skipped (the RSS per unit subtracts such a run); with --callgrind only the
work is instrumented (for callgrind --instr-atstart=no).
SCALE multiplies the workload's size (1.0: the full run).
"""

from __future__ import annotations

import ast
import json
import random
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path

# name -> (project, unit, factory); a factory prepares the input and returns
# (the work, how many units it makes).
WORKLOADS: dict[str, tuple[str, str, Callable]] = {}


def workload(project: str, unit: str):
    def register(func):
        WORKLOADS[func.__name__] = (project, unit, func)
        return func

    return register


def keys(n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.getrandbits(63) | 2 for _ in range(n)]


@workload("preshed", "key")
def preshed_map(scale: float):
    """PreshMap from Python: insert 1M random keys, then look each one up."""
    from preshed.maps import PreshMap

    ks = keys(int(1_000_000 * scale), 1)

    def work():
        table = PreshMap()
        for i, k in enumerate(ks):
            table[k] = i + 1
        return sum(table[k] for k in ks)

    return work, len(ks)


@workload("preshed", "map")
def preshed_small_maps(scale: float):
    """200k PreshMaps of 16 keys each, set and read from Cython (a Pool per map)."""
    import bench_real_drivers

    n = int(200_000 * scale)
    return lambda: bench_real_drivers.small_maps(n, 16, 7), n


@workload("preshed", "count")
def preshed_counter(scale: float):
    """PreshCounter: count 1M Zipf-distributed keys, then Gale smoothing."""
    from preshed.counter import PreshCounter

    rng = random.Random(2)
    vocab = keys(50_000, 3)
    weights = [1.0 / (r + 1) for r in range(len(vocab))]
    stream = rng.choices(vocab, weights, k=int(1_000_000 * scale))

    def work():
        counter = PreshCounter()
        for k in stream:
            counter.inc(k, 1)
        counter.smooth()
        return len(counter) + counter.total

    return work, len(stream)


@workload("preshed", "key")
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

    return work, len(members)


@workload("thinc", "sequence")
def thinc_beam(scale: float):
    """thinc's Beam: 3k sequences of 25 moves, beam width 8, 24 classes."""
    import bench_real_drivers

    n = int(3_000 * scale)
    return lambda: bench_real_drivers.beam_search(n, 25, 8, 24, 11), n


def english_paragraphs(n: int) -> list[str]:
    """n paragraphs of English prose: the docstrings of Python's standard
    library (it ships with every Python), in a fixed order, cycled if short."""
    paragraphs: list[str] = []
    for source in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        try:
            tree = ast.parse(source.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node) or ""
                paragraphs += [
                    " ".join(p.split()) for p in doc.split("\n\n") if len(p.split()) >= 8
                ]
        if len(paragraphs) >= n:
            break
    return [paragraphs[i % len(paragraphs)] for i in range(n)]


@workload("spacy", "Doc")
def spacy_tokenize(scale: float):
    """spacy.blank("en") tokenizing 20k paragraphs of English (Docs dropped)."""
    import spacy

    nlp = spacy.blank("en")
    texts = english_paragraphs(int(20_000 * scale))
    return lambda: sum(len(nlp.make_doc(t)) for t in texts), len(texts)


@workload("spacy", "Doc")
def spacy_doc_words(scale: float):
    """Doc(vocab, words=...) for 20k pre-split paragraphs, all kept alive."""
    import spacy
    from spacy.tokens import Doc

    vocab = spacy.blank("en").vocab
    words = [t.split() for t in english_paragraphs(int(20_000 * scale))]

    def work():
        docs = [Doc(vocab, words=w) for w in words]
        return sum(len(d) for d in docs)

    return work, len(words)


@workload("spacy", "Doc")
def spacy_matchers(scale: float):
    """Matcher (token patterns) and PhraseMatcher (500 phrases) over 10k Docs."""
    import spacy
    from spacy.matcher import Matcher, PhraseMatcher

    nlp = spacy.blank("en")
    docs = [nlp.make_doc(t) for t in english_paragraphs(int(10_000 * scale))]
    matcher = Matcher(nlp.vocab)
    matcher.add("THE_WORD", [[{"LOWER": "the"}, {"IS_ALPHA": True}]])
    matcher.add("NUMBER", [[{"LIKE_NUM": True}]])
    matcher.add(
        "RETURNS", [[{"LOWER": {"IN": ["return", "returns"]}}, {"OP": "?"}, {"IS_ALPHA": True}]]
    )
    rng = random.Random(6)
    phrases = set()
    while len(phrases) < 500:
        doc = rng.choice(docs)
        if len(doc) > 3:
            i = rng.randrange(len(doc) - 2)
            phrases.add(doc[i : i + rng.choice((1, 2, 3))].text)
    phrase_matcher = PhraseMatcher(nlp.vocab, attr="LOWER")
    phrase_matcher.add("PHRASES", [nlp.make_doc(p) for p in sorted(phrases)])

    def work():
        return sum(len(matcher(d)) + len(phrase_matcher(d)) for d in docs)

    return work, len(docs)


@workload("spacy", "string")
def spacy_strings(scale: float):
    """StringStore: add 500k distinct strings, then look each one up."""
    from spacy.strings import StringStore

    rng = random.Random(8)
    words = [t for p in english_paragraphs(2_000) for t in p.split()]
    strings = [f"{rng.choice(words)}_{i}" for i in range(int(500_000 * scale))]

    def work():
        store = StringStore()
        hashes = [store.add(s) for s in strings]
        return sum(len(store[h]) for h in hashes)

    return work, len(strings)


@workload("spacy", "Doc")
def spacy_pipe(scale: float):
    """nlp.pipe over 10k paragraphs with a sentencizer, gc on, every Doc kept."""
    import gc

    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    texts = english_paragraphs(int(10_000 * scale))
    gc.enable()

    def work():
        docs = list(nlp.pipe(texts, batch_size=256))
        return sum(len(d) for d in docs) + sum(1 for d in docs for _ in d.sents)

    return work, len(texts)


def library() -> str:
    names = [m for m in ("cymem.cymem", "cymem_rs.cymem") if m in sys.modules]
    return names[0].split(".")[0] if len(names) == 1 else f"ambiguous: {names}"


def main(argv: list[str]) -> int:
    mode = argv[4:]
    if (
        len(argv) < 4
        or argv[1] not in WORKLOADS
        or mode not in ([], ["--setup-only"], ["--callgrind"])
    ):
        print(__doc__, f"workloads: {', '.join(WORKLOADS)}", file=sys.stderr, sep="\n")
        return 2
    name, scale, driver = argv[1], float(argv[2]), argv[3]
    sys.path.insert(0, driver)
    global CORPUS_CACHE
    CORPUS_CACHE = Path(driver, "english.txt")
    _, unit, factory = WORKLOADS[name]
    work, units = factory(scale)
    seconds, check = 0.0, None
    if mode == ["--callgrind"]:
        import bench_real_drivers

        check = bench_real_drivers.instrumented(work)
    elif mode == []:
        start = time.perf_counter()
        check = work()
        seconds = time.perf_counter() - start
    print(
        json.dumps(
            {"seconds": seconds, "check": check, "library": library(), "unit": unit, "units": units}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
