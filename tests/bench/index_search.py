#!/usr/bin/env python3
"""Search speed of `tessera search` against FAISS on the same vectors, in one run.

For each size (default 10k, 100k and 1M random unit vectors of 512 floats):
  - tessera exact: `tessera search --vectors` with --exact (GEMM and top-k on
    the OpenCL device), the matrix loaded from the index once per process;
  - tessera ANN: after `tessera index build-ann --ann hnsw`;
  - FAISS IndexFlatIP and IndexHNSWFlat (M 32) from Python, same thread count.
Latency is one query per call (median of --repeats), throughput is a batch of
--queries queries in one call. recall@10 of each approximate search is
measured against the exact top 10. tessera's own timings come from its --json
output (search_seconds: the search with the matrix resident; load_seconds:
reading the index into device memory, reported separately).

Needs: numpy, faiss-cpu, transformers and torch (only to write a tiny CLIP
directory with 512-wide embeddings, which `index create` needs).
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

import numpy as np


def tiny_clip(path):
    """The tiny test CLIP (tests/fixtures/models/clip-tiny-a) with 512-wide embeddings."""
    from transformers import CLIPConfig, CLIPModel
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "models",
                       "clip-tiny-a")
    cfg = CLIPConfig.from_pretrained(src)
    cfg.projection_dim = 512
    CLIPModel(cfg).save_pretrained(path)
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
              "preprocessor_config.json"):
        with open(os.path.join(src, f), "rb") as a, open(os.path.join(path, f), "wb") as b:
            b.write(a.read())


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def tessera_search(exe, index, qfile, k, exact, threads):
    args = [exe, "search", index, "--vectors", qfile, "-k", str(k), "--json"]
    if exact:
        args.append("--exact")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run(args, check=True, capture_output=True, text=True, env=env).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    ids = [[int(os.path.basename(r["path"]).split("#")[-1]) for r in q["results"]] for q in rows]
    return ids, rows[0]["search_seconds"], rows[0]["load_seconds"], rows[0]["approximate"]


def recall(found, truth):
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tessera", default="build/tessera")
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--faiss-hnsw-max", type=int, default=100000,
                    help="largest size for FAISS HNSW (its build is the slow part)")
    ap.add_argument("--tessera-ann-max", type=int, default=10000,
                    help="largest size for tessera's HNSW: Debian's libfaiss is a generic "
                         "x86-64 build over the reference BLAS, about 10 ms per 512-d vector "
                         "inserted on this CPU")
    args = ap.parse_args()
    import faiss
    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    k = 10
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "clip512")
        tiny_clip(model)
        for n in [int(s) for s in args.sizes.split(",")]:
            x = unit(rng.standard_normal((n, args.dim)))
            q = unit(x[rng.integers(0, n, args.queries)] + 0.5 * unit(
                rng.standard_normal((args.queries, args.dim))) / np.sqrt(2))
            xf = os.path.join(tmp, f"x{n}.npy")
            np.save(xf, x)
            qf, q1 = os.path.join(tmp, "q.npy"), os.path.join(tmp, "q1.npy")
            np.save(qf, q)
            np.save(q1, q[:1])
            index = os.path.join(tmp, f"i{n}.tsx")
            subprocess.run([args.tessera, "index", "create", "--model", model, index], check=True,
                           capture_output=True)
            t0 = time.perf_counter()
            subprocess.run([args.tessera, "index", "import", index, "--npy", xf, "--quiet"],
                           check=True)
            t_import = time.perf_counter() - t0
            # exact truth from numpy (float64)
            sims = q.astype(np.float64) @ x.T.astype(np.float64)
            part = np.argpartition(-sims, k, axis=1)[:, :k]
            order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1)
            truth = np.take_along_axis(part, order, axis=1)
            del sims

            flat = faiss.IndexFlatIP(args.dim)
            flat.add(x)
            lat, thr = [], []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                flat.search(q[:1], k)
                lat.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                _, fi = flat.search(q, k)
                thr.append(time.perf_counter() - t0)
            f_lat, f_qps, f_rec = statistics.median(lat), args.queries / statistics.median(thr), recall(fi, truth)

            if n <= args.faiss_hnsw_max:
                hn = faiss.IndexHNSWFlat(args.dim, 32, faiss.METRIC_INNER_PRODUCT)
                hn.hnsw.efConstruction = 80
                t0 = time.perf_counter()
                hn.add(x)
                h_build = time.perf_counter() - t0
                # the smallest efSearch (a power of two) that reaches recall@10 0.95
                for ef in [16, 32, 64, 128, 256, 512, 1024, 2048, 4096]:
                    hn.hnsw.efSearch = ef
                    if recall(hn.search(q, k)[1], truth) >= 0.95:
                        break
                lat, thr = [], []
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    hn.search(q[:1], k)
                    lat.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    _, hi = hn.search(q, k)
                    thr.append(time.perf_counter() - t0)
                h_lat, h_qps, h_rec = statistics.median(lat), args.queries / statistics.median(thr), recall(hi, truth)
                hn_ef = hn.hnsw.efSearch
                del hn
            else:
                h_lat = h_qps = h_rec = h_build = hn_ef = None
            lat, thr, loads = [], [], []
            for _ in range(args.repeats):
                _, s1, l1, _ = tessera_search(args.tessera, index, q1, k, True, args.threads)
                ti, sb, lb, _ = tessera_search(args.tessera, index, qf, k, True, args.threads)
                lat.append(s1)
                thr.append(sb)
                loads.append(lb)
            t_lat, t_qps, t_rec = statistics.median(lat), args.queries / statistics.median(thr), recall(ti, truth)
            t_load = statistics.median(loads)

            a_row = None
            if n <= args.tessera_ann_max:
                t0 = time.perf_counter()
                r = subprocess.run([args.tessera, "index", "build-ann", index, "--ann", "hnsw"],
                                   capture_output=True, text=True)
                a_build = time.perf_counter() - t0
            if n > args.tessera_ann_max:
                pass
            elif r.returncode == 0:
                lat, thr = [], []
                for _ in range(args.repeats):
                    _, s1, _, used = tessera_search(args.tessera, index, q1, k, False, args.threads)
                    ai, sb, _, _ = tessera_search(args.tessera, index, qf, k, False, args.threads)
                    lat.append(s1)
                    thr.append(sb)
                a_row = (statistics.median(lat), args.queries / statistics.median(thr),
                         recall(ai, truth), a_build, used)
            else:
                a_row = None
                print(f"build-ann failed: {r.stderr.strip()}")
            table.append((n, t_import, t_load, (t_lat, t_qps, t_rec), a_row, (f_lat, f_qps, f_rec),
                          (h_lat, h_qps, h_rec, h_build, hn_ef)))
            os.remove(xf)
            os.remove(index)
            print(f"{n} done", flush=True)
    print(f"\n{args.dim}-d unit vectors, {args.queries} queries, k {k}, {args.threads} threads, "
          f"median of {args.repeats}; latency: one query per call; throughput: {args.queries} "
          "queries in one call")
    print("| vectors | tessera exact: latency, q/s | FAISS IndexFlatIP: latency, q/s | exact "
          "latency ratio (FAISS / tessera) | tessera HNSW: latency, q/s, recall@10 | FAISS HNSW: "
          "latency, q/s, recall@10 | tessera load from the index |")
    print("|---|---|---|---|---|---|---|")
    for n, t_imp, t_load, t, a, f, h in table:
        ann = (f"{a[0] * 1e3:.2f} ms, {a[1]:.0f}, {a[2]:.3f} (build {a[3]:.0f} s)" if a
               else "not run")
        fh = (f"{h[0] * 1e3:.2f} ms, {h[1]:.0f}, {h[2]:.3f} (build {h[3]:.0f} s, efSearch "
              f"{h[4]})" if h[0] is not None else "not run")
        print(f"| {n:,} | {t[0] * 1e3:.2f} ms, {t[1]:.0f} | {f[0] * 1e3:.2f} ms, {f[1]:.0f} | "
              f"{f[0] / t[0]:.2f}x | {ann} | {fh} | "
              f"{t_load:.2f} s (import {t_imp:.1f} s) |")
    print("recall@10 of tessera exact against numpy float64: " +
          ", ".join(f"{t[2]:.3f}" for _, _, _, t, _, _, _ in table))


if __name__ == "__main__":
    main()
