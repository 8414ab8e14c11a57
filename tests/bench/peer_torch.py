#!/usr/bin/env python3
"""tessera against PyTorch in one run, on the same architecture, the same
random weights, the same inputs' shapes, batch sizes and thread count.

It builds a transformers CLIPModel of the chosen architecture with random
weights, saves it with save_pretrained (safetensors), times PyTorch on it,
then runs `tessera bench --model` on that same directory and prints the
ratios.

    pip install torch transformers
    python3 tests/bench/peer_torch.py --tessera build/tessera --arch ViT-B-32 --threads 2 --repeat 5

With --repeat N, PyTorch and tessera take turns N times and the medians are
reported (with the range), since shared machines are noisy. On a GPU machine,
--torch-device cuda times PyTorch on CUDA in float32 (TF32 off) and
--device picks tessera's OpenCL device.
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
    size, ctx = cfg.vision_config.image_size, cfg.text_config.max_position_embeddings
    res = {"image": {}, "text": {}}
    with torch.inference_mode():
        for b in batches:
            if args.tower != "text":
                px = torch.randn(b, 3, size, size, device=dev)
                res["image"][b] = time_torch(lambda: model.get_image_features(pixel_values=px),
                                             args.seconds, sync)
            if args.tower != "image":
                ids = torch.randint(0, 49000, (b, ctx))
                ids[:, 0], ids[:, -1] = 49406, 49407
                ids = ids.to(dev)
                res["text"][b] = time_torch(lambda: model.get_text_features(input_ids=ids),
                                            args.seconds, sync)
    return res


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
    torch_runs, tess_runs = [], []
    try:
        model, cfg = build(args.arch, tmp)
        model = model.to(dev)
        for _ in range(args.repeat):  # take turns, so that both see the same load
            torch_runs.append(run_torch(model, cfg, batches, args, dev, sync))
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
            gf = statistics.median([run[tower][k]["gflops"] for run in tess_runs])
            rows.append(dict(tower=tower, batch=b, tessera_items_per_s=s_med,
                             torch_items_per_s=t_med, ratio=s_med / t_med,
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
                  peak_host_mb=tess["peak_host_mb"], peak_device_mb=tess["peak_device_mb"],
                  first_embedding_cold_seconds=start.get("first_embedding_cold_seconds"),
                  first_embedding_warm_seconds=start.get("first_embedding_warm_seconds"),
                  rows=rows)
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print(f"{args.arch}, {args.threads} threads, tessera on {tess['device']} "
          f"({tess.get('gemm_config')}), PyTorch {torch.__version__} on {dev}; "
          f"device GEMM rate {report['gemm_gflops']:.1f} GFLOP/s; median of {args.repeat}")
    print(f"{'tower':6} {'batch':>5} {'tessera/s':>10} {'range':>15} {'torch/s':>10} "
          f"{'range':>15} {'ratio':>7} {'GFLOP/s':>8} {'of GEMM':>8}")
    for r in rows:
        tr, pr = r["tessera_range"], r["torch_range"]
        print(f"{r['tower']:6} {r['batch']:5d} {r['tessera_items_per_s']:10.2f} "
              f"{tr[0]:7.2f}-{tr[1]:<7.2f} {r['torch_items_per_s']:10.2f} "
              f"{pr[0]:7.2f}-{pr[1]:<7.2f} {r['ratio']:6.2f}x {r['tessera_gflops']:8.1f} "
              f"{100 * r['fraction_of_gemm_rate']:7.0f}%")
    cold, warm = report["first_embedding_cold_seconds"], report["first_embedding_warm_seconds"]
    def secs(v):
        return f"{v:.2f} s" if v is not None else "n/a"
    print(f"first embedding in a new process: {secs(cold)} cold, {secs(warm)} warm kernel "
          f"cache; peak memory "
          f"{report['peak_host_mb']:.0f} MB host, {report['peak_device_mb']:.0f} MB device")


if __name__ == "__main__":
    main()
