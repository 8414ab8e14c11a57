#!/usr/bin/env python3
"""tessera against PyTorch in one run, on the same architecture, the same
random weights, the same inputs' shapes, batch sizes and thread count.

It builds a transformers CLIPModel of the chosen architecture with random
weights, saves it with save_pretrained (safetensors), times PyTorch on it,
then runs `tessera bench --model` on that same directory and prints the
ratios.

    pip install torch transformers'<5'
    python3 tests/bench/peer_torch.py --tessera build/tessera --arch ViT-B-32 --threads 2
"""
import argparse
import json
import os
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


def time_torch(fn, seconds):
    fn()  # warm-up
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        el = time.perf_counter() - t0
        if el >= seconds and n >= 2:
            return el / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tessera", default=os.path.join(os.path.dirname(ROOT), "build", "tessera"))
    ap.add_argument("--arch", default="ViT-B-32", choices=sorted(ARCH))
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--tower", default="both", choices=["image", "text", "both"])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    tmp = tempfile.mkdtemp(prefix="tessera-peer-")
    try:
        model, cfg = build(args.arch, tmp)
        size, ctx = cfg.vision_config.image_size, cfg.text_config.max_position_embeddings
        torch_res = {"image": {}, "text": {}}
        with torch.inference_mode():
            for b in batches:
                if args.tower != "text":
                    px = torch.randn(b, 3, size, size)
                    torch_res["image"][b] = time_torch(lambda: model.get_image_features(pixel_values=px),
                                                       args.seconds)
                if args.tower != "image":
                    ids = torch.randint(0, 49000, (b, ctx))
                    ids[:, 0], ids[:, -1] = 49406, 49407
                    torch_res["text"][b] = time_torch(lambda: model.get_text_features(input_ids=ids),
                                                      args.seconds)
        env = dict(os.environ, POCL_MAX_PTHREAD_COUNT=str(args.threads))
        out = subprocess.run([args.tessera, "bench", "--model", tmp, "--batches", args.batches,
                              "--tower", args.tower, "--seconds", str(args.seconds), "--json",
                              "--threads", str(args.threads)],
                             env=env, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"tessera bench failed: {out.stderr}")
        tess = json.loads(out.stdout)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    rows = []
    for tower in ("image", "text"):
        for e in tess.get(tower, []):
            b = e["batch"]
            t_items = b / torch_res[tower][b]
            rows.append(dict(tower=tower, batch=b, tessera_items_per_s=e["items_per_second"],
                             torch_items_per_s=t_items,
                             ratio=e["items_per_second"] / t_items,
                             tessera_latency_ms=e["batch_latency_ms"],
                             torch_latency_ms=torch_res[tower][b] * 1e3,
                             tessera_gflops=e["gflops"],
                             fraction_of_gemm_rate=e["fraction_of_gemm_rate"]))
    report = dict(arch=args.arch, threads=args.threads, device=tess["device"],
                  torch=torch.__version__, gemm_gflops=tess["gemm_gflops_1600x3072x768"],
                  peak_host_mb=tess["peak_host_mb"], peak_device_mb=tess["peak_device_mb"],
                  rows=rows)
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print(f"{args.arch}, {args.threads} threads, tessera on {tess['device']}, "
          f"PyTorch {torch.__version__}; device GEMM rate {report['gemm_gflops']:.1f} GFLOP/s")
    print(f"{'tower':6} {'batch':>5} {'tessera/s':>10} {'torch/s':>10} {'ratio':>7} "
          f"{'tessera ms':>11} {'torch ms':>9} {'GFLOP/s':>8} {'of GEMM':>8}")
    for r in rows:
        print(f"{r['tower']:6} {r['batch']:5d} {r['tessera_items_per_s']:10.2f} "
              f"{r['torch_items_per_s']:10.2f} {r['ratio']:6.2f}x {r['tessera_latency_ms']:11.1f} "
              f"{r['torch_latency_ms']:9.1f} {r['tessera_gflops']:8.1f} "
              f"{100 * r['fraction_of_gemm_rate']:7.0f}%")


if __name__ == "__main__":
    main()
