#!/usr/bin/env python3
"""Images per second of `tessera classify` over a folder of JPEG photos, with
decoding ahead (a host thread decodes and preprocesses the next batch while
the device runs this one; the default) and without (--no-decode-ahead),
taking turns, medians of --repeat runs.

The folder: --count JPEG photos of --size pixels (long side), made from the
three photographs in tests/fixtures/images by random crops, resizes, small
colour changes and JPEG qualities 75 to 95 (Pillow), so that each decodes
like a camera photo. The model: a directory given with --model, or a random
ViT-B-32 in transformers' layout (tests/bench/peer_torch.py's builder) with
--arch ViT-B-32.

    pip install pillow numpy [torch transformers]
    python3 tests/bench/folder_throughput.py --tessera build/tessera --arch ViT-B-32 --count 2000
"""
import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

from PIL import Image, ImageEnhance

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_photos(out, count, size):
    srcs = [Image.open(os.path.join(ROOT, "fixtures", "images", f)).convert("RGB")
            for f in ("astronaut.jpg", "chelsea.jpg", "coffee.png")]
    rng = random.Random(0)
    os.makedirs(out, exist_ok=True)
    for i in range(count):
        im = rng.choice(srcs)
        w, h = im.size
        cw, ch = int(w * rng.uniform(0.6, 1)), int(h * rng.uniform(0.6, 1))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        im2 = im.crop((x, y, x + cw, y + ch))
        s = size / max(cw, ch)
        im2 = im2.resize((max(1, int(cw * s)), max(1, int(ch * s))), Image.BICUBIC)
        im2 = ImageEnhance.Color(im2).enhance(rng.uniform(0.7, 1.3))
        d = os.path.join(out, "%02d" % (i // 500))
        os.makedirs(d, exist_ok=True)
        im2.save(os.path.join(d, "photo%05d.jpg" % i), quality=rng.randint(75, 95))


def run(tessera, model, folder, ahead, env):
    args = [tessera, "classify", "--quiet", "--model", model, "--labels", "cat,dog,rocket,coffee",
            folder]
    if not ahead:
        args.insert(2, "--no-decode-ahead")
    t = time.perf_counter()
    p = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit("tessera failed: " + p.stderr.decode()[-2000:])
    return dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tessera", default=os.path.join(ROOT, "..", "build", "tessera"))
    ap.add_argument("--model")
    ap.add_argument("--arch", default="ViT-B-32")
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir")
    args = ap.parse_args()
    work = args.workdir or tempfile.mkdtemp(prefix="tessera-folder-")
    folder = os.path.join(work, "photos")
    if not os.path.isdir(folder):
        make_photos(folder, args.count, args.size)
    model = args.model
    if not model:
        model = os.path.join(work, args.arch)
        if not os.path.isdir(model):
            sys.path.insert(0, os.path.join(ROOT, "bench"))
            import peer_torch
            peer_torch.build(args.arch, model)
    env = dict(os.environ)
    n = sum(len(f) for _, _, f in os.walk(folder))
    run(args.tessera, model, folder, True, env)  # warm the kernel cache
    t = {True: [], False: []}
    for _ in range(args.repeat):
        for ahead in (False, True):
            t[ahead].append(run(args.tessera, model, folder, ahead, env))
    for ahead in (False, True):
        ts = t[ahead]
        print("%-28s %7.1f images/s  (median of %d: %s s)" % (
            "decoding ahead" if ahead else "--no-decode-ahead", n / statistics.median(ts), len(ts),
            ", ".join("%.1f" % x for x in ts)))
    print("speed-up: %.2fx on %d photos of %d px, model %s" % (
        statistics.median(t[False]) / statistics.median(t[True]), n, args.size, model))


if __name__ == "__main__":
    main()
