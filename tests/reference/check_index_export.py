#!/usr/bin/env python3
"""Checks `tessera index export` files with the Python tools that read them.

  check_index_export.py --tessera build/tessera --index I.tsx --npy F.npy --jsonl F.jsonl [--faiss F.faiss]

numpy opens the .npy; its rows and the .jsonl's paths give a brute-force top
10 for a few stored rows used as queries; `tessera search --vectors` must
return the same paths, and faiss.read_index on the .faiss file the same rows
(ids are row numbers). Also opens the approximate index (INDEX.ann) when
there is one. Exit 0 when everything agrees, 1 otherwise; needs numpy (and
faiss-cpu for the FAISS files).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tessera", required=True)
    ap.add_argument("--index", required=True)
    ap.add_argument("--npy", required=True)
    ap.add_argument("--jsonl", required=True)
    ap.add_argument("--faiss")
    ap.add_argument("-k", type=int, default=10)
    args = ap.parse_args()
    x = np.load(args.npy)
    paths = [json.loads(line)["path"] for line in open(args.jsonl, encoding="utf-8")]
    assert x.dtype == np.float32 and x.ndim == 2 and len(paths) == x.shape[0], "shapes disagree"
    rows = list(range(0, x.shape[0], max(1, x.shape[0] // 5)))[:5]
    q = x[rows]
    truth = np.argsort(-(q.astype(np.float64) @ x.T.astype(np.float64)), axis=1, kind="stable")
    truth = truth[:, :args.k]
    with tempfile.TemporaryDirectory() as tmp:
        qf = os.path.join(tmp, "q.npy")
        np.save(qf, q)
        out = subprocess.run([args.tessera, "search", args.index, "--vectors", qf, "-k",
                              str(args.k), "--json", "--exact"], check=True, capture_output=True,
                             text=True).stdout
    got = [[r["path"] for r in json.loads(line)["results"]] for line in out.splitlines()]
    ok = True
    for i, r in enumerate(rows):
        want = [paths[j] for j in truth[i]]
        if got[i] != want:
            print(f"FAIL row {r}: tessera search {got[i][:3]}..., numpy {want[:3]}...")
            ok = False
    print(f"numpy: {x.shape[0]} x {x.shape[1]} float32; tessera search equals numpy's top "
          f"{args.k} for {len(rows)} queries: {ok}")
    if args.faiss:
        import faiss
        ix = faiss.read_index(args.faiss)
        d, ids = ix.search(q, args.k)
        same = all([paths[j] for j in ids[i]] == got[i] for i in range(len(rows)))
        print(f"faiss.read_index: {type(ix).__name__}, ntotal {ix.ntotal}; same top {args.k} as "
              f"tessera search: {same}")
        ok = ok and same and ix.ntotal == x.shape[0]
        ann = args.index + ".ann"
        if os.path.exists(ann):
            a = faiss.read_index(ann)
            print(f"faiss.read_index({os.path.basename(ann)}): {type(a).__name__}, ntotal {a.ntotal}")
            ok = ok and a.ntotal == x.shape[0]
    print("passed" if ok else "failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
