#!/usr/bin/env python3
"""Index building throughput: `tessera index add` on a folder of JPEG photos
against the loop clip-retrieval's inference runs (a torch DataLoader of PIL
images through CLIPImageProcessor into transformers' CLIPModel), on the same
random ViT-B-32 weights, images, batch size and thread count, in one run.

The photos are copies of the test photos (tests/fixtures/images, assets/) at
different sizes, written as JPEG. Needs numpy, Pillow, torch and transformers.
"""
import argparse
import glob
import os
import shutil
import subprocess
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_photos(out, n, seed=0):
    from PIL import Image
    srcs = sorted(glob.glob(os.path.join(ROOT, "tests", "fixtures", "images", "*.jpg")) +
                  glob.glob(os.path.join(ROOT, "tests", "fixtures", "images", "*.png")) +
                  glob.glob(os.path.join(ROOT, "assets", "*.jpg")) +
                  glob.glob(os.path.join(ROOT, "assets", "*.png")))
    ims = [Image.open(p).convert("RGB") for p in srcs]
    rng = np.random.default_rng(seed)
    os.makedirs(out, exist_ok=True)
    for i in range(n):
        im = ims[i % len(ims)]
        w = int(rng.integers(240, 1025))
        h = max(16, int(w * im.height / im.width * rng.uniform(0.8, 1.25)))
        im.resize((w, h), Image.BICUBIC).save(os.path.join(out, f"photo_{i:05d}.jpg"), quality=90)
    return srcs


def vit_b32(path):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel
    import torch
    torch.manual_seed(0)
    CLIPModel(CLIPConfig()).save_pretrained(path)  # ViT-B/32 sizes, random weights
    CLIPImageProcessor().save_pretrained(path)
    tok = os.path.join(ROOT, "tests", "fixtures", "clip-tokenizer")
    for f in ("vocab.json", "merges.txt"):
        shutil.copy(os.path.join(tok, f), path)


def torch_loop(model_dir, photos, batch, threads):
    import torch
    from PIL import Image
    from transformers import CLIPImageProcessor, CLIPModel
    torch.set_num_threads(threads)
    proc = CLIPImageProcessor.from_pretrained(model_dir)
    model = CLIPModel.from_pretrained(model_dir).eval()
    files = sorted(glob.glob(os.path.join(photos, "*.jpg")))

    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return len(files)

        def __getitem__(self, i):
            im = Image.open(files[i]).convert("RGB")
            return proc(images=im, return_tensors="pt")["pixel_values"][0]

    loader = torch.utils.data.DataLoader(DS(), batch_size=batch, num_workers=threads)
    out = []
    t0 = time.perf_counter()
    with torch.no_grad():
        for px in loader:
            e = model.get_image_features(pixel_values=px)
            e = getattr(e, "pooler_output", e)
            out.append(torch.nn.functional.normalize(e, dim=-1).numpy())
    return time.perf_counter() - t0, np.concatenate(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tessera", default="build/tessera")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        photos, model = os.path.join(tmp, "photos"), os.path.join(tmp, "vit-b-32")
        srcs = make_photos(photos, args.images)
        vit_b32(model)
        index = os.path.join(tmp, "photos.tsx")
        subprocess.run([args.tessera, "index", "create", "--model", model, index], check=True,
                       capture_output=True)
        t0 = time.perf_counter()
        subprocess.run([args.tessera, "index", "add", index, photos, "--batch", str(args.batch),
                        "--threads", str(args.threads), "--quiet"], check=True)
        t_tessera = time.perf_counter() - t0
        t_torch, emb = torch_loop(model, photos, args.batch, args.threads)
        # the same embeddings, as a check that both did the same work
        npy = os.path.join(tmp, "e.npy")
        subprocess.run([args.tessera, "index", "export", index, "--npy", npy], check=True,
                       capture_output=True)
        mine = np.load(npy)
        diff = float(np.max(np.abs(mine - emb))) if mine.shape == emb.shape else float("nan")
        n = args.images
        print(f"{n} JPEG photos (240-1024 px wide, from {len(srcs)} test photos), ViT-B-32 random "
              f"weights, batch {args.batch}, {args.threads} threads")
        print("| | images/s | time |")
        print("|---|---|---|")
        print(f"| transformers CLIPModel + DataLoader ({args.threads} workers) | {n / t_torch:.1f} | "
              f"{t_torch:.1f} s |")
        print(f"| tessera index add | {n / t_tessera:.1f} | {t_tessera:.1f} s |")
        print(f"ratio: {t_torch / t_tessera:.2f}x; max embedding difference {diff:.2g}")


if __name__ == "__main__":
    main()
