#!/usr/bin/env python3
"""Trains assets/models/shapes-clip, tessera's demo model, from scratch.

A small CLIP (HF CLIPModel layout) learns procedurally generated scenes of one
to three coloured shapes on varied backgrounds, each with a caption generated
from the scene ("a small red circle left of a large blue square"). The
byte-level BPE tokenizer, in CLIP's format, is trained on the caption words.

    pip install torch transformers'<5' pillow numpy
    python3 assets/models/train_shapes_clip.py            # about 25 minutes on 2 idle cores

It writes the model to assets/models/shapes-clip/, the held-out evaluation
set to tests/fixtures/shapes/ (PNG images and labels.csv) and a few sample
images to assets/. Everything is seeded, so a rerun gives the same files
(given the same library versions).
"""
import argparse
import collections
import csv
import json
import math
import os
import random
import shutil
import time

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizerFast

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SEED = 20261122
SIZE = 48  # model input

COLORS = {"red": (215, 35, 35), "green": (35, 160, 55), "blue": (40, 75, 215),
          "yellow": (240, 210, 30), "purple": (135, 50, 175), "orange": (245, 135, 20)}
SHAPES = ["circle", "square", "triangle", "star", "cross"]
BACKGROUNDS = {"white": (245, 245, 245), "grey": (128, 128, 128), "black": (15, 15, 15),
               "beige": (225, 210, 180), "dark": (45, 50, 60)}
RELATIONS = {"left of": (-1, 0), "right of": (1, 0), "above": (0, -1), "below": (0, 1)}
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)


# ------------------------------------------------------------------ scenes
def jitter(rgb, rng, amount=25):
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in rgb)


def draw_shape(d, shape, cx, cy, r, fill):
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        s = r * 0.85
        d.rectangle([cx - s, cy - s, cx + s, cy + s], fill=fill)
    elif shape == "triangle":
        d.polygon([(cx, cy - r), (cx + r * 0.95, cy + r * 0.75), (cx - r * 0.95, cy + r * 0.75)],
                  fill=fill)
    elif shape == "star":
        pts = []
        for k in range(10):
            a = -math.pi / 2 + k * math.pi / 5
            rr = r if k % 2 == 0 else r * 0.42
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        d.polygon(pts, fill=fill)
    elif shape == "cross":
        w = r * 0.34
        d.rectangle([cx - r, cy - w, cx + r, cy + w], fill=fill)
        d.rectangle([cx - w, cy - r, cx + w, cy + r], fill=fill)


def make_scene(rng, n_shapes, canvas, relation=None, objects=None):
    """Returns (PIL image, objects, relation, background name)."""
    bg_name = rng.choice(list(BACKGROUNDS))
    bg = np.array(jitter(BACKGROUNDS[bg_name], rng, 12), np.float32)
    img = np.ones((canvas, canvas, 3), np.float32) * bg
    if rng.random() < 0.5:  # a gentle gradient
        g = np.linspace(-1, 1, canvas)[:, None, None] * rng.uniform(5, 25)
        img = img + (g if rng.random() < 0.5 else g.transpose(1, 0, 2))
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    if objects is None:
        objects = []
        for _ in range(n_shapes):
            objects.append({"shape": rng.choice(SHAPES), "color": rng.choice(list(COLORS)),
                            "size": rng.choice(["small", "large"])})
    placed = []
    if n_shapes == 2 and relation is None:
        relation = rng.choice(list(RELATIONS))
    for i, o in enumerate(objects):
        frac = rng.uniform(0.10, 0.14) if o["size"] == "small" else rng.uniform(0.19, 0.24)
        if n_shapes == 1:
            frac *= 1.35
        r = frac * canvas
        for _ in range(200):
            if n_shapes == 2:
                dx, dy = RELATIONS[relation]
                sign = -1 if i == 0 else 1
                # the first object sits on the relation's side, the second opposite
                cx = canvas / 2 + sign * -dx * canvas * rng.uniform(0.2, 0.28) \
                    + (0 if dx else rng.uniform(-0.15, 0.15) * canvas)
                cy = canvas / 2 + sign * -dy * canvas * rng.uniform(0.2, 0.28) \
                    + (0 if dy else rng.uniform(-0.15, 0.15) * canvas)
            else:
                cx = rng.uniform(r, canvas - r)
                cy = rng.uniform(r, canvas - r)
            if all(math.hypot(cx - px, cy - py) > (r + pr) * 1.05 for px, py, pr in placed):
                break
        placed.append((cx, cy, r))
        draw_shape(d, o["shape"], cx, cy, r, jitter(COLORS[o["color"]], rng))
    arr = np.array(im).astype(np.float32)
    arr += rng.normal(0, rng.uniform(2, 10), arr.shape)  # sensor noise
    im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if rng.random() < 0.3:
        im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0) * canvas / 96))
    return im, objects, relation, bg_name


def describe(o, rng, with_size):
    return (f"{o['size']} " if with_size else "") + f"{o['color']} {o['shape']}"


def caption(objects, relation, bg, rng):
    ws = rng.random() < 0.5
    if len(objects) == 1:
        o = describe(objects[0], rng, ws)
        return rng.choice([f"a photo of a {o}.", f"a {o}", f"a {o} on a {bg} background",
                           f"a picture of a {o}", f"{o}", f"a drawing of a {o}.",
                           f"a photo of the {o}.", f"a {o} shape"])
    if len(objects) == 2:
        a, b = describe(objects[0], rng, ws), describe(objects[1], rng, ws)
        if rng.random() < 0.8:
            return rng.choice([f"a {a} {relation} a {b}", f"a photo of a {a} {relation} a {b}.",
                               f"{a} {relation} {b}"])
        return f"a {a} and a {b}"
    names = [describe(o, rng, ws) for o in objects]
    return f"a {names[0]}, a {names[1]} and a {names[2]}"


def render(rng, n_shapes, relation=None, objects=None):
    canvas = int(rng.choice([48, 64, 96, 192]))
    im, objs, rel, bg = make_scene(rng, n_shapes, canvas, relation, objects)
    return im, objs, rel, bg


def to_input(im):
    """CLIPImageProcessor's steps for a square image: bicubic resize, rescale, normalise."""
    if im.size != (SIZE, SIZE):
        im = im.resize((SIZE, SIZE), Image.BICUBIC)
    return np.asarray(im, np.uint8)


# ------------------------------------------------------------------ tokenizer
def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def train_bpe(words, out_dir, byte_map=None):
    """Byte-level BPE in CLIP's format: merges learned on word frequencies until
    every caption word is one token.

    byte_map maps each byte to its character (bytes_to_unicode as a dict, as
    CLIP's tokenizers do). Without it, a byte b is spelled enc[b], the b-th
    character in CLIP's table order, not b's own: the merges are then learned
    on characters that real text never yields, so they never apply and the
    tokenizer splits words into letters. shapes-clip was trained that way
    (its captions fit its 32 tokens as letters) and is kept so, so that this
    script still makes it; train_shapes_coca.py passes the right map."""
    enc = bytes_to_unicode()
    freq = collections.Counter(words)
    split = {w: [byte_map[b] if byte_map else enc[b] for b in w.encode()] for w in freq}
    for w in split:
        split[w][-1] += "</w>"
    merges = []
    while True:
        pairs = collections.Counter()
        for w, syms in split.items():
            for a, b in zip(syms, syms[1:]):
                pairs[a, b] += freq[w]
        if not pairs:
            break
        (a, b), _ = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        merges.append((a, b))
        for w, syms in split.items():
            i, out = 0, []
            while i < len(syms):
                if i + 1 < len(syms) and syms[i] == a and syms[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            split[w] = out
    vocab = enc + [v + "</w>" for v in enc] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "vocab.json"), "w") as f:
        json.dump({t: i for i, t in enumerate(vocab)}, f, ensure_ascii=False)
    with open(os.path.join(out_dir, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{a} {b}\n")
    return len(vocab)


# ------------------------------------------------------------------ training
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=2400)
    ap.add_argument("--batch", type=int, default=192)
    ap.add_argument("--train-images", type=int, default=40000)
    args = ap.parse_args()
    torch.manual_seed(SEED)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    rng = np.random.default_rng(SEED)

    t0 = time.time()
    images, captions = [], []
    for i in range(args.train_images):
        n = 1 if i % 10 < 7 else (2 if i % 10 < 9 else 3)
        im, objs, rel, bg = render(rng, n)
        images.append(to_input(im))
        captions.append(str(caption(objs, rel, bg, rng)))
    print(f"{len(images)} training scenes in {time.time() - t0:.0f} s; e.g. {captions[:3]}")

    out = os.path.join(HERE, "shapes-clip")
    shutil.rmtree(out, ignore_errors=True)
    tmp_tok = os.path.join(HERE, "tmp-tokenizer")
    words = [w for c in captions for w in c.lower().replace(",", " ,").replace(".", " .").split()]
    vocab_size = train_bpe(words, tmp_tok)
    tok = CLIPTokenizerFast(vocab_file=os.path.join(tmp_tok, "vocab.json"),
                            merges_file=os.path.join(tmp_tok, "merges.txt"), model_max_length=32)
    shutil.rmtree(tmp_tok)
    cfg = CLIPConfig(
        projection_dim=64,
        text_config=dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=256,
                         num_attention_heads=4, num_hidden_layers=3, max_position_embeddings=32,
                         bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1,
                         pad_token_id=vocab_size - 1),
        vision_config=dict(hidden_size=96, intermediate_size=384, num_attention_heads=4,
                           num_hidden_layers=4, image_size=SIZE, patch_size=6))
    model = CLIPModel(cfg)
    print(f"vocabulary {vocab_size}, parameters {sum(p.numel() for p in model.parameters())}")

    X = torch.from_numpy(np.stack(images))  # uint8 (N, H, W, 3)
    ids = tok(captions, padding="max_length", truncation=True, max_length=32,
              return_tensors="pt")
    # Identical captions in a batch are positives, not negatives.
    cap_index = {c: i for i, c in enumerate(sorted(set(captions)))}
    cap_id = torch.tensor([cap_index[c] for c in captions])
    mean, std = torch.from_numpy(MEAN), torch.from_numpy(STD)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    warm = 100
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / args.steps))))
    model.train()
    t0 = time.time()
    for step in range(args.steps):
        idx = torch.randint(0, len(images), (args.batch,))
        px = ((X[idx].float() / 255.0 - mean) / std).permute(0, 3, 1, 2).contiguous()
        outp = model(input_ids=ids["input_ids"][idx], attention_mask=ids["attention_mask"][idx],
                     pixel_values=px)
        same = (cap_id[idx][:, None] == cap_id[idx][None, :]).float()
        target = same / same.sum(1, keepdim=True)
        li = outp.logits_per_image
        loss = -((target * li.log_softmax(1)).sum(1).mean() +
                 (target * li.T.log_softmax(1)).sum(1).mean()) / 2
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.3f} scale {model.logit_scale.exp().item():.1f}"
                  f" {time.time() - t0:.0f} s", flush=True)
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    os.remove(os.path.join(out, "tokenizer.json"))  # keep vocab.json + merges.txt, CLIP's own files
    CLIPImageProcessor(size={"shortest_edge": SIZE},
                       crop_size={"height": SIZE, "width": SIZE}).save_pretrained(out)

    # Held-out set: new seeds, rendered at 64 px, stored as PNG.
    held = os.path.join(ROOT, "tests", "fixtures", "shapes")
    shutil.rmtree(held, ignore_errors=True)
    os.makedirs(held)
    hrng = np.random.default_rng(SEED + 1)
    rows = []
    k = 0
    for color in COLORS:
        for shape in SHAPES:
            for rep in range(5):
                o = [{"shape": shape, "color": color, "size": ["small", "large"][rep % 2]}]
                im, _, _, _ = make_scene(hrng, 1, 64, objects=o)
                name = f"single_{k:03d}.png"
                im.save(os.path.join(held, name))
                rows.append((name, "single", f"{color} {shape}", ""))
                k += 1
    for j in range(50):
        cs = hrng.choice(list(COLORS), 2, replace=False)
        ss = hrng.choice(SHAPES, 2, replace=False)
        rel = hrng.choice(list(RELATIONS))
        o = [{"shape": ss[0], "color": cs[0], "size": "large"},
             {"shape": ss[1], "color": cs[1], "size": "large"}]
        im, _, _, _ = make_scene(hrng, 2, 64, relation=rel, objects=o)
        name = f"pair_{j:03d}.png"
        im.save(os.path.join(held, name))
        a, b = f"{cs[0]} {ss[0]}", f"{cs[1]} {ss[1]}"
        other = [s for s in SHAPES if s not in ss][0]
        distract = [f"{b} {rel} {a}",                       # the relation reversed
                    f"{cs[1]} {ss[0]} {rel} {cs[0]} {ss[1]}",  # colours swapped
                    f"{a} {rel} {cs[1]} {other}"]           # another shape
        rows.append((name, "pair", f"{a} {rel} {b}", "|".join(distract)))
    with open(os.path.join(held, "labels.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "kind", "label", "distractors"])
        w.writerows(rows)

    # Sample images for the README, rendered large.
    srng = np.random.default_rng(SEED + 2)
    for color, shape in [("red", "circle"), ("blue", "star"), ("yellow", "triangle")]:
        im, _, _, _ = make_scene(srng, 1, 192, objects=[{"shape": shape, "color": color,
                                                         "size": "large"}])
        im.save(os.path.join(ROOT, "assets", f"{color}_{shape}.png"))

    # Accuracy with PyTorch, for the record (tessera's own is measured by CTest).
    lab = [f"{c} {s}" for c in COLORS for s in SHAPES]
    with torch.no_grad():
        t = tok([f"a photo of a {l}." for l in lab], padding=True, return_tensors="pt")
        te = model.get_text_features(**t)
        te = te / te.norm(dim=-1, keepdim=True)
        ok = 0
        for name, kind, label, _ in rows:
            if kind != "single":
                continue
            im = Image.open(os.path.join(held, name)).convert("RGB").resize((SIZE, SIZE),
                                                                            Image.BICUBIC)
            px = ((torch.from_numpy(np.asarray(im, np.float32) / 255.0) - mean) / std)
            ie = model.get_image_features(pixel_values=px.permute(2, 0, 1)[None])
            ok += lab[int((ie @ te.T).argmax())] == label
    print(f"PyTorch zero-shot accuracy on the {len(COLORS) * len(SHAPES) * 5} single shapes: "
          f"{ok / (len(COLORS) * len(SHAPES) * 5):.3f}")


if __name__ == "__main__":
    main()
