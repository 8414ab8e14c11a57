#!/usr/bin/env python3
"""Trains assets/models/shapes-coca, tessera's demo captioner, from scratch.

A small CoCa (open_clip layout: open_clip_config.json, open_clip_model.safetensors,
vocab.json and merges.txt) learns the generated scenes of train_shapes_clip.py
(one or two coloured shapes on varied backgrounds). Every scene has one
canonical caption that names size, colour and shape of each object and the
relation between two, in reading order ("a small red circle left of a large
blue star", "a large green cross above a small yellow square"): the decoder
learns to write it. The contrastive towers learn the varied captions
of shapes-clip ("a photo of a red circle.", ...), so that the same checkpoint
also classifies zero-shot.

    pip install torch open_clip_torch 'transformers<5' pillow numpy safetensors
    python3 assets/models/train_shapes_coca.py          # about 50 minutes on 2 idle cores

It writes the model to assets/models/shapes-coca/, the held-out caption set
(200 scenes, PNG, with captions.csv) to tests/fixtures/shapes-captions/ and a
two-shape sample image to assets/. The
zero-shot held-out set is shapes-clip's (tests/fixtures/shapes/), read, not
rewritten, so the two models are measured on the same images. Seeded: a rerun
gives the same files, given the same library versions.
"""
import argparse
import csv
import gzip
import json
import math
import os
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import open_clip
from open_clip.coca_model import CoCa
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import train_shapes_clip as scenes  # noqa: E402  (the scene generator and BPE trainer)

SEED = 20261207
SIZE = 48
CTX = 32
HELD = os.path.join(ROOT, "tests", "fixtures", "shapes-captions")


def canonical(objects, relation):
    """The one caption the decoder learns for a scene. A scene of A left of B
    is also B right of A, so two shapes are named in reading order: the left
    one "left of" the right one, the upper one "above" the lower one."""
    d = [f"{o['size']} {o['color']} {o['shape']}" for o in objects]
    if len(d) == 1:
        return f"a {d[0]}"
    if relation in ("right of", "below"):  # the first object is the right (lower) one
        d = d[::-1]
    return f"a {d[0]} {'left of' if 'of' in relation else 'above'} a {d[1]}"


def tensor(images):
    x = torch.from_numpy(np.stack(images)).float() / 255.0
    mean, std = torch.from_numpy(scenes.MEAN), torch.from_numpy(scenes.STD)
    return ((x - mean) / std).permute(0, 3, 1, 2).contiguous()


def make_tokenizer(words, out_dir):
    """Byte-level BPE in CLIP's format, every caption word one token, written both
    as open_clip's gzipped merges (for SimpleTokenizer) and as vocab.json and
    merges.txt (the files an open_clip hub repository carries)."""
    tmp = os.path.join(HERE, "tmp-coca-tokenizer")
    table = scenes.bytes_to_unicode()
    order = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    order += [b for b in range(256) if b not in order]
    scenes.train_bpe(words, tmp, byte_map={b: table[i] for i, b in enumerate(order)})
    lines = open(os.path.join(tmp, "merges.txt"), encoding="utf-8").read().rstrip("\n")
    shutil.rmtree(tmp)
    bpe = os.path.join(out_dir, "bpe.txt.gz")
    with gzip.open(bpe, "wb") as f:
        f.write(lines.encode("utf-8"))
    tok = open_clip.tokenizer.SimpleTokenizer(bpe_path=bpe, context_length=CTX)
    os.remove(bpe)
    for w in set(words):
        assert len(tok.encode(w)) == 1, (w, tok.encode(w))
    vocab = dict(tok.encoder)
    vocab["<|startoftext|>"] = vocab.pop("<start_of_text>")
    vocab["<|endoftext|>"] = vocab.pop("<end_of_text>")
    with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in sorted(tok.bpe_ranks, key=tok.bpe_ranks.get):
            f.write(f"{a} {b}\n")
    return tok


@torch.no_grad()
def greedy(model, px, sot, eot, max_len=16):
    """Greedy captions with PyTorch (a check during training; tessera's own
    accuracy, with open_clip's default beam search, is measured by CTest)."""
    _, embs = model._encode_image(px)
    x = torch.full((px.shape[0], 1), sot, dtype=torch.long)
    done = torch.zeros(px.shape[0], dtype=torch.bool)
    for _ in range(max_len):
        _, tok_embs = model._encode_text(x)
        nxt = model.text_decoder(embs, tok_embs)[:, -1].argmax(-1)
        nxt[done] = 0
        x = torch.cat([x, nxt[:, None]], 1)
        done |= nxt == eot
        if done.all():
            break
    return x


def decode(tok, row, eot):
    row = row.tolist()[1:]
    row = row[:row.index(eot)] if eot in row else row
    return tok.decode([t for t in row if t != 0]).strip()


def held_out_set(rng, n_single, n_pair):
    """The held-out caption scenes at 64 px: new seeds, every colour and shape."""
    rows, ims = [], []
    for k in range(n_single + n_pair):
        n = 1 if k < n_single else 2
        im, objs, rel, _ = scenes.make_scene(rng, n, 64)
        name = f"{'single' if n == 1 else 'pair'}_{k:03d}.png"
        rows.append((name, canonical(objs, rel)))
        ims.append(im)
    return rows, ims


def write_samples():
    """A two-shape sample for the README, rendered large (the one-shape samples
    are train_shapes_clip.py's)."""
    rng = np.random.default_rng(SEED + 4)
    objs = [{"shape": "circle", "color": "red", "size": "small"},
            {"shape": "star", "color": "blue", "size": "large"}]
    for _ in range(20):  # a plain background, for a clear picture
        im, _, _, bg = scenes.make_scene(rng, 2, 192, relation="left of", objects=objs)
        if bg in ("white", "beige"):
            break
    im.save(os.path.join(ROOT, "assets", "red_circle_left_of_blue_star.png"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=160)
    ap.add_argument("--train-images", type=int, default=50000)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--init-from", default=None,
                    help="an open_clip_model.safetensors to continue training from")
    args = ap.parse_args()
    init = None
    if args.init_from:  # read before the output folder is replaced
        from safetensors.torch import load_file
        init = load_file(args.init_from)
    torch.manual_seed(SEED)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    rng = np.random.default_rng(SEED)

    t0 = time.time()
    images, varied, canon = [], [], []
    for i in range(args.train_images):
        n = 1 if i % 10 < 6 else 2
        im, objs, rel, bg = scenes.render(rng, n)
        images.append(scenes.to_input(im))
        varied.append(str(scenes.caption(objs, rel, bg, rng)))
        canon.append(canonical(objs, rel))
    print(f"{len(images)} training scenes in {time.time() - t0:.0f} s; e.g. {canon[:2]} {varied[:2]}")

    out = os.path.join(HERE, "shapes-coca")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    words = [w for c in varied + canon for w in c.lower().replace(",", " ,").replace(".", " .").split()]
    tok = make_tokenizer(words, out)
    vocab = len(tok.encoder)
    sot, eot = tok.sot_token_id, tok.eot_token_id
    cfg = {"embed_dim": 64, "quick_gelu": True,
           "vision_cfg": {"image_size": SIZE, "patch_size": 6, "width": 96, "layers": 4,
                          "head_width": 24, "attentional_pool": True, "attn_pooler_heads": 4,
                          "attn_pooler_queries": 33, "output_tokens": True},
           "text_cfg": {"context_length": CTX, "vocab_size": vocab, "width": 64, "heads": 4,
                        "layers": 3, "embed_cls": True, "output_tokens": True},
           "multimodal_cfg": {"context_length": CTX, "width": 64, "heads": 4, "layers": 3}}
    model = CoCa(**cfg)
    if init is not None:
        model.load_state_dict(init)
    print(f"vocabulary {vocab}, parameters {sum(p.numel() for p in model.parameters())}")

    X = torch.from_numpy(np.stack(images))
    T_var, T_can = tok(varied), tok(canon)
    # token 0 ("!") is open_clip's pad_id: no caption may hold it
    assert not any("!" in c for c in varied + canon)
    cap_index = {c: i for i, c in enumerate(sorted(set(varied)))}
    cap_id = torch.tensor([cap_index[c] for c in varied])
    mean, std = torch.from_numpy(scenes.MEAN), torch.from_numpy(scenes.STD)

    vrng = np.random.default_rng(SEED + 5)  # validation scenes, apart from the held-out set
    vrows, vims = held_out_set(vrng, 100, 100)
    vpx = tensor([scenes.to_input(im) for im in vims])

    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    warm = 150
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / args.steps))))
    t0 = time.time()
    for step in range(args.steps):
        model.train()
        idx = torch.randint(0, len(images), (args.batch,))
        px = ((X[idx].float() / 255.0 - mean) / std).permute(0, 3, 1, 2).contiguous()
        lat, embs = model._encode_image(px)
        text = T_can[idx][:, :CTX]
        _, tok_embs = model._encode_text(text)
        logits = model.text_decoder(embs, tok_embs[:, :-1])
        cap_loss = F.cross_entropy(logits.permute(0, 2, 1), text[:, 1:], ignore_index=0)
        tv = model.encode_text(T_var[idx])
        li = model.logit_scale.exp() * lat @ tv.T
        same = (cap_id[idx][:, None] == cap_id[idx][None, :]).float()
        target = same / same.sum(1, keepdim=True)
        con_loss = -((target * li.log_softmax(1)).sum(1).mean() +
                     (target * li.T.log_softmax(1)).sum(1).mean()) / 2
        loss = con_loss + 2.0 * cap_loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step} contrastive {con_loss.item():.3f} caption {cap_loss.item():.3f}"
                  f" scale {model.logit_scale.exp().item():.1f} {time.time() - t0:.0f} s", flush=True)
        if (step + 1) % args.eval_every == 0 or step == args.steps - 1:
            model.eval()
            got = [decode(tok, r, eot) for r in greedy(model, vpx, sot, eot)]
            ok = sum(g == c for g, (_, c) in zip(got, vrows))
            print(f"  validation: {ok}/{len(vrows)} exact greedy captions; e.g. {got[0]!r} "
                  f"for {vrows[0][1]!r}, {got[150]!r} for {vrows[150][1]!r}", flush=True)
    model.eval()

    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              os.path.join(out, "open_clip_model.safetensors"))
    with open(os.path.join(out, "open_clip_config.json"), "w") as f:
        json.dump({"model_cfg": dict(cfg, custom_text=True),
                   "preprocess_cfg": {"mean": scenes.MEAN.tolist(), "std": scenes.STD.tolist(),
                                      "interpolation": "bicubic", "resize_mode": "shortest"}},
                  f, indent=2)

    # The held-out caption set.
    shutil.rmtree(HELD, ignore_errors=True)
    os.makedirs(HELD)
    rows, ims = held_out_set(np.random.default_rng(SEED + 1), 100, 100)
    for (name, _), im in zip(rows, ims):
        im.save(os.path.join(HELD, name))
    with open(os.path.join(HELD, "captions.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "caption"])
        w.writerows(rows)

    # For the record, with PyTorch through open_clip's own loader.
    ref, _, preprocess = open_clip.create_model_and_transforms("local-dir:" + out, precision="fp32")
    ref.eval()
    px = torch.stack([preprocess(Image.open(os.path.join(HELD, n)).convert("RGB")) for n, _ in rows])
    got = [decode(tok, r, eot) for r in greedy(ref, px, sot, eot)]
    exact = sum(g == c for g, (_, c) in zip(got, rows))
    words = sum(sum(a == b for a, b in zip(g.split(), c.split())) for g, (_, c) in zip(got, rows))
    nwords = sum(len(c.split()) for _, c in rows)
    print(f"PyTorch greedy captions on the {len(rows)} held-out scenes: exact {exact / len(rows):.3f}, "
          f"words {words / nwords:.3f}")
    lab = [f"{c} {s}" for c in scenes.COLORS for s in scenes.SHAPES]
    with torch.no_grad():
        te = ref.encode_text(tok([f"a photo of a {l}." for l in lab]), normalize=True)
        ok = n = 0
        for r in csv.DictReader(open(os.path.join(ROOT, "tests", "fixtures", "shapes", "labels.csv"))):
            if r["kind"] != "single":
                continue
            im = preprocess(Image.open(os.path.join(ROOT, "tests", "fixtures", "shapes", r["file"]))
                            .convert("RGB"))
            ie = ref.encode_image(im[None], normalize=True)
            ok += lab[int((ie @ te.T).argmax())] == r["label"]
            n += 1
    print(f"PyTorch zero-shot accuracy on shapes-clip's {n} held-out single shapes: {ok / n:.3f}")
    write_samples()
    print("open_clip", open_clip.__version__, "torch", torch.__version__)


if __name__ == "__main__":
    main()
