#!/usr/bin/env python3
"""Opens index files that tessera wrote with Python's FAISS and checks that
FAISS answers as tessera did.

    check_faiss_files.py INDEX [INDEX ...]

Next to each INDEX, three raw little-endian arrays: INDEX.queries (float32
query rows of the index's dimension), INDEX.ids (int64) and INDEX.scores
(float32), tessera's top-k for those queries, row by row (k from their
size). Works for tsr_ann_write files (FAISS reads
past tessera's trailer) and tsr_ann_write_flat exports alike.

For each file: faiss.read_index, the index structure it finds, a search for
the same k, and the share of tessera's ids FAISS returns in the same places.
An exact index (flat) must give the same ids and scores within 1e-5; an
approximate one (HNSW, IVF-PQ) the same ids in at least 99% of the places,
since FAISS versions may break near-ties differently (scores of the same ids
within 1e-5 either way).

Exit status: 0 when every file agrees, 1 otherwise, 77 when the faiss module
is missing (CTest's "skipped"). `pip install faiss-cpu numpy` provides it.
"""
import sys

try:
    import faiss
    import numpy as np
except ImportError as e:
    print(f"skipped: {e} (pip install faiss-cpu numpy)")
    sys.exit(77)


def structure(index):
    """'IndexIDMap2(IndexHNSWFlat)' and the like."""
    index = faiss.downcast_index(index)
    name = type(index).__name__
    inner = []
    for attr in ("index", "base_index"):
        sub = getattr(index, attr, None)
        if sub is not None and hasattr(sub, "ntotal"):
            inner.append(structure(sub))
    return f"{name}({', '.join(inner)})" if inner else name


def check(path):
    index = faiss.read_index(path)
    d = index.d
    q = np.fromfile(path + ".queries", dtype="<f4")
    if q.size % d:
        print(f"FAIL {path}: {q.size} query floats are not rows of {d}")
        return False
    q = q.reshape(-1, d)
    want_ids = np.fromfile(path + ".ids", dtype="<i8")
    want_scores = np.fromfile(path + ".scores", dtype="<f4")
    if want_ids.size % len(q) or want_ids.size != want_scores.size:
        print(f"FAIL {path}: {want_ids.size} ids and {want_scores.size} scores for {len(q)} queries")
        return False
    k = want_ids.size // len(q)
    want_ids = want_ids.reshape(-1, k)
    want_scores = want_scores.reshape(-1, k)
    scores, ids = index.search(q, k)
    kind = structure(index)
    same = ids == want_ids
    share = same.mean()
    found = want_ids >= 0
    worst = float(np.max(np.abs(scores[same & found] - want_scores[same & found]), initial=0))
    exact = "HNSW" not in kind and "IVF" not in kind
    ok = worst <= 1e-5 and (share == 1.0 if exact else share >= 0.99)
    print(f"{'ok  ' if ok else 'FAIL'} {path}: {kind}, {index.ntotal} x {d}, "
          f"{len(q)} queries top-{k}: {share * 100:.2f}% of ids in the same places, "
          f"max score difference {worst:.2g}")
    return ok


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    print(f"faiss {faiss.__version__}, numpy {np.__version__}")
    results = [check(p) for p in sys.argv[1:]]
    print(f"{sum(results)} passed, {len(results) - sum(results)} failed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
