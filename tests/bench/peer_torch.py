#!/usr/bin/env python3
"""tessera against PyTorch and ONNX Runtime in one run, on the same
architecture, the same random weights, the same inputs' shapes, batch sizes
and thread count.

It builds a transformers CLIPModel of the chosen architecture with random
weights, saves it with save_pretrained (safetensors), exports its two towers
(get_image_features, get_text_features) to ONNX with torch.onnx.export, times
PyTorch and ONNX Runtime on them, then runs `tessera bench --model` on that
same directory and prints the ratios against each peer and against the
strongest. It also times OpenBLAS's SGEMM (numpy) on 1600x3072x768, the
shape whose rate `tessera bench` measures for tessera's GEMM.

    pip install torch transformers onnx onnxruntime
    python3 tests/bench/peer_torch.py --tessera build/tessera --arch ViT-B-32 --threads 2 --repeat 5

With --repeat N, the runtimes take turns N times and the medians are
reported (with the range), since shared machines are noisy. On a GPU machine,
--torch-device cuda times PyTorch on CUDA in float32 (TF32 off), ONNX
Runtime uses its CUDA provider when it offers one, and --device picks
tessera's OpenCL device. Without onnxruntime (or with --no-ort) ONNX
Runtime is reported as skipped.
"""
import argparse
import json
import os
import statistics
import shutil
import subprocess
import sys
import tempfile
import time

# OpenBLAS reads these at load: the machines set them for older OpenBLAS
# builds, which then run slower kernels than this CPU has
for _v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(_v, None)

import numpy as np
import torch
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCH = {  # as tessera's built-in table (fusion/clip.c)
    "ViT-B-32": dict(image=224, patch=32, v_dim=768, v_layers=12, v_heads=12, t_dim=512,
                     t_layers=12, t_heads=8, proj=512),
    "ViT-B-16": dict(image=224, patch=16, v_dim=768, v_layers=12, v_heads=12, t_dim=512,
                     t_layers=12, t_heads=8, proj=512),
    "ViT-L-14": dict(image=224, patch=14, v_dim=1024, v_layers=24, v_heads=16, t_dim=768,
                     t_layers=12, t_heads=12, proj=768),
}


def build(arch, out):
    a = ARCH[arch]
    cfg = CLIPConfig(
        projection_dim=a["proj"],
        text_config=dict(hidden_size=a["t_dim"], intermediate_size=4 * a["t_dim"],
                         num_attention_heads=a["t_heads"], num_hidden_layers=a["t_layers"]),
        vision_config=dict(hidden_size=a["v_dim"], intermediate_size=4 * a["v_dim"],
                           num_attention_heads=a["v_heads"], num_hidden_layers=a["v_layers"],
                           image_size=a["image"], patch_size=a["patch"]))
    torch.manual_seed(0)
    model = CLIPModel(cfg).eval()
    model.save_pretrained(out, safe_serialization=True)
    for f in ("vocab.json", "merges.txt"):  # the real CLIP vocabulary from the fixtures
        shutil.copy(os.path.join(ROOT, "fixtures", "clip-tokenizer", f), out)
    CLIPImageProcessor(size={"shortest_edge": a["image"]},
                       crop_size={"height": a["image"], "width": a["image"]}).save_pretrained(out)
    return model, cfg


def time_torch(fn, seconds, sync):
    fn()  # warm-up
    sync()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        sync()
        el = time.perf_counter() - t0
        if el >= seconds and n >= 2:
            return el / n


def run_torch(model, cfg, batches, args, dev, sync):
    res = {"image": {}, "text": {}}
    with torch.inference_mode():
        for b in batches:
            if args.tower != "text":
                px = image_input(cfg, b, dev)
                res["image"][b] = time_torch(lambda: model.get_image_features(pixel_values=px),
                                             args.seconds, sync)
            if args.tower != "image":
                ids = text_input(cfg, b, dev)
                res["text"][b] = time_torch(lambda: model.get_text_features(input_ids=ids),
                                            args.seconds, sync)
    return res


class _Tower(torch.nn.Module):
    """One tower's projected embeddings, for torch.onnx.export."""

    def __init__(self, m, tower):
        super().__init__()
        self.m, self.tower = m, tower

    def forward(self, x):
        out = (self.m.get_image_features(pixel_values=x) if self.tower == "image"
               else self.m.get_text_features(input_ids=x))
        # transformers 5 wraps the embeddings in an output object
        return out if torch.is_tensor(out) else out.pooler_output


def image_input(cfg, b, dev="cpu"):
    g = torch.Generator().manual_seed(b)
    size = cfg.vision_config.image_size
    return torch.randn(b, 3, size, size, generator=g).to(dev)


def text_input(cfg, b, dev="cpu"):
    g = torch.Generator().manual_seed(b)
    ids = torch.randint(0, 49000, (b, cfg.text_config.max_position_embeddings), generator=g)
    ids[:, 0], ids[:, -1] = 49406, 49407
    return ids.to(dev)


def build_ort(model, cfg, args, out):
    """ONNX Runtime sessions of both towers, or (None, why)."""
    if args.no_ort:
        return None, "--no-ort"
    try:
        import onnxruntime as ort
    except ImportError:
        return None, "onnxruntime is not installed"
    model = model.cpu()
    sessions = {}
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers = ["CPUExecutionProvider"]
    if args.torch_device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    towers = [t for t in ("image", "text") if args.tower in (t, "both")]
    for tower in towers:
        path = os.path.join(out, f"{tower}.onnx")
        wrap = _Tower(model, tower)
        x = (image_input if tower == "image" else text_input)(cfg, 2)
        try:
            with torch.inference_mode():
                torch.onnx.export(wrap, (x,), path, input_names=["x"], output_names=["e"],
                                  dynamic_axes={"x": {0: "b"}, "e": {0: "b"}}, opset_version=17,
                                  dynamo=False)
        except Exception as e:  # the exporter's dependencies (onnx) may be missing
            return None, f"torch.onnx.export failed: {str(e)[:200]}"
        sess = ort.InferenceSession(path, so, providers=providers)
        with torch.inference_mode():
            ref = wrap(x).numpy()
        got = sess.run(None, {"x": x.numpy()})[0]
        sessions[tower] = (sess, float(np.abs(got - ref).max()))
    return dict(sessions=sessions, version=ort.__version__,
                provider=sessions[towers[0]][0].get_providers()[0]), None


def run_ort(o, cfg, batches, args):
    res = {"image": {}, "text": {}}
    for tower, (sess, _) in o["sessions"].items():
        for b in batches:
            x = (image_input if tower == "image" else text_input)(cfg, b).numpy()
            res[tower][b] = time_torch(lambda: sess.run(None, {"x": x}), args.seconds,
                                       lambda: None)
    return res


def openblas_gflops(M=1600, N=3072, K=768, seconds=1.0):
    """numpy's SGEMM (OpenBLAS in its wheels) on tessera bench's GEMM shape."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((M, K), dtype=np.float32)
    b = rng.standard_normal((K, N), dtype=np.float32)
    a @ b
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 3:
        a @ b
        n += 1
    return 2.0 * M * N * K * n / (time.perf_counter() - t0) / 1e9


def numpy_blas():
    try:
        from threadpoolctl import threadpool_info
        for i in threadpool_info():
            if i.get("internal_api") in ("openblas", "mkl", "blis"):
                return f"{i['internal_api']} {i.get('version')} ({i.get('architecture')})"
    except ImportError:
        pass
    return "numpy's BLAS"


def run_tessera(args, model_dir):
    env = dict(os.environ, POCL_MAX_PTHREAD_COUNT=str(args.threads))
    cmd = [args.tessera, "bench", "--model", model_dir, "--batches", args.batches,
           "--tower", args.tower, "--seconds", str(args.seconds), "--json",
           "--threads", str(args.threads)]
    if args.device:
        cmd += ["--device", args.device]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"tessera bench failed: {out.stderr}")
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tessera", default=os.path.join(os.path.dirname(ROOT), "build", "tessera"))
    ap.add_argument("--arch", default="ViT-B-32", choices=sorted(ARCH))
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--tower", default="both", choices=["image", "text", "both"])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--repeat", type=int, default=1, help="turns of each; medians are reported")
    ap.add_argument("--torch-device", default="cpu", help="cpu or cuda")
    ap.add_argument("--device", help="tessera's OpenCL device (index or name)")
    ap.add_argument("--no-ort", action="store_true", help="do not time ONNX Runtime")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.torch_device)
    if dev.type == "cuda":  # strict float32, as tessera computes
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        sync = torch.cuda.synchronize
    else:
        sync = lambda: None  # noqa: E731
    batches = [int(b) for b in args.batches.split(",")]
    tmp = tempfile.mkdtemp(prefix="tessera-peer-")
    torch_runs, tess_runs, ort_runs, blas_runs = [], [], [], []
    try:
        model, cfg = build(args.arch, tmp)
        ort_s, ort_why = build_ort(model, cfg, args, tmp)
        model = model.to(dev)
        for _ in range(args.repeat):  # take turns, so that all see the same load
            torch_runs.append(run_torch(model, cfg, batches, args, dev, sync))
            if ort_s:
                ort_runs.append(run_ort(ort_s, cfg, batches, args))
            blas_runs.append(openblas_gflops())
            tess_runs.append(run_tessera(args, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    # start-up of a new process, cold and warm kernel caches (random weights of the same size)
    cmd = [args.tessera, "bench", "--arch", args.arch, "--batches", "1", "--tower", "image",
           "--seconds", "0.5", "--json"] + (["--device", args.device] if args.device else [])
    env = dict(os.environ, POCL_MAX_PTHREAD_COUNT=str(args.threads))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"tessera bench (start-up) failed: {out.stderr}")
    start = json.loads(out.stdout)

    tess = tess_runs[-1]
    rows = []
    for tower in ("image", "text"):
        for k, e in enumerate(tess.get(tower, [])):
            b = e["batch"]
            t_items = [b / r[tower][b] for r in torch_runs]
            s_items = [run[tower][k]["items_per_second"] for run in tess_runs]
            t_med, s_med = statistics.median(t_items), statistics.median(s_items)
            o_items = [b / r[tower][b] for r in ort_runs]
            o_med = statistics.median(o_items) if o_items else None
            gf = statistics.median([run[tower][k]["gflops"] for run in tess_runs])
            rows.append(dict(tower=tower, batch=b, tessera_items_per_s=s_med,
                             torch_items_per_s=t_med, ratio=s_med / t_med,
                             ort_items_per_s=o_med, ort_ratio=s_med / o_med if o_med else None,
                             ort_range=[min(o_items), max(o_items)] if o_items else None,
                             ratio_strongest=s_med / max(t_med, o_med or 0),
                             tessera_range=[min(s_items), max(s_items)],
                             torch_range=[min(t_items), max(t_items)],
                             tessera_latency_ms=b / s_med * 1e3,
                             torch_latency_ms=b / t_med * 1e3,
                             tessera_gflops=gf,
                             fraction_of_gemm_rate=statistics.median(
                                 [run[tower][k]["fraction_of_gemm_rate"] for run in tess_runs])))
    report = dict(arch=args.arch, threads=args.threads, device=tess["device"],
                  torch=torch.__version__, torch_device=str(dev), repeat=args.repeat,
                  gemm_config=tess.get("gemm_config"),
                  gemm_gflops=statistics.median(r["gemm_gflops_1600x3072x768"] for r in tess_runs),
                  blas=numpy_blas(), blas_gflops=statistics.median(blas_runs),
                  ort=ort_s["version"] if ort_s else None,
                  ort_provider=ort_s["provider"] if ort_s else None,
                  ort_skipped=ort_why,
                  ort_max_abs_diff={t: v[1] for t, v in ort_s["sessions"].items()} if ort_s else None,
                  peak_host_mb=tess["peak_host_mb"], peak_device_mb=tess["peak_device_mb"],
                  first_embedding_cold_seconds=start.get("first_embedding_cold_seconds"),
                  first_embedding_warm_seconds=start.get("first_embedding_warm_seconds"),
                  rows=rows)
    if args.json:
        print(json.dumps(report, indent=1))
        return
    ort_name = (f"ONNX Runtime {report['ort']} ({report['ort_provider']})" if ort_s
                else f"ONNX Runtime skipped: {ort_why}")
    print(f"{args.arch}, {args.threads} threads, tessera on {tess['device']} "
          f"({tess.get('gemm_config')}), PyTorch {torch.__version__} on {dev}, {ort_name}; "
          f"median of {args.repeat}")
    print(f"SGEMM 1600x3072x768: tessera {report['gemm_gflops']:.1f} GFLOP/s, "
          f"{report['blas']} {report['blas_gflops']:.1f} GFLOP/s "
          f"({report['gemm_gflops'] / report['blas_gflops']:.2f}x)")
    if ort_s:
        print("ONNX Runtime against PyTorch, max abs difference: " +
              ", ".join(f"{t} {v:.1e}" for t, v in report["ort_max_abs_diff"].items()))
    print(f"{'tower':6} {'batch':>5} {'tessera/s':>10} {'range':>15} {'torch/s':>10} "
          f"{'range':>15} {'ort/s':>10} {'range':>15} {'/torch':>7} {'/ort':>7} "
          f"{'GFLOP/s':>8} {'of GEMM':>8}")
    for r in rows:
        tr, pr, orr = r["tessera_range"], r["torch_range"], r["ort_range"] or [0, 0]
        o = r["ort_items_per_s"]
        print(f"{r['tower']:6} {r['batch']:5d} {r['tessera_items_per_s']:10.2f} "
              f"{tr[0]:7.2f}-{tr[1]:<7.2f} {r['torch_items_per_s']:10.2f} "
              f"{pr[0]:7.2f}-{pr[1]:<7.2f} "
              + (f"{o:10.2f} {orr[0]:7.2f}-{orr[1]:<7.2f} " if o else f"{'-':>10} {'':15} ")
              + f"{r['ratio']:6.2f}x "
              + (f"{r['ort_ratio']:6.2f}x " if o else f"{'-':>7} ")
              + f"{r['tessera_gflops']:8.1f} {100 * r['fraction_of_gemm_rate']:7.0f}%")
    cold, warm = report["first_embedding_cold_seconds"], report["first_embedding_warm_seconds"]
    def secs(v):
        return f"{v:.2f} s" if v is not None else "n/a"
    print(f"first embedding in a new process: {secs(cold)} cold, {secs(warm)} warm kernel "
          f"cache; peak memory "
          f"{report['peak_host_mb']:.0f} MB host, {report['peak_device_mb']:.0f} MB device")


if __name__ == "__main__":
    main()
