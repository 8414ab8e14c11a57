#!/usr/bin/env python3
"""tessera's CoCa captions against open_clip's CoCa.generate() in one run, on
the same full-size random weights, images, settings and thread count.

It builds open_clip's coca_ViT-B-32 (or coca_ViT-L-14) with random weights,
saves it in open_clip's hub layout (open_clip_config.json,
open_clip_model.safetensors, and the real CLIP vocabulary as vocab.json and
merges.txt), times open_clip's generate() on it (captions per second at batch
1 and 8, greedy search (generation_type "top_k", top_k 1) and beam search with
3 beams in one group, 20 tokens with the end forced at the limit; one greedy
caption of 5, 20 and 40), runs `tessera bench --model DIR --tower caption`
on the same directory, and prints the ratios. It also captions one image with
both, with open_clip's default beam search and greedily, and says whether the
token sequences are identical (a full-size parity check).

    pip install torch open_clip_torch "transformers<=4.56.2" pillow safetensors
    python3 tests/bench/peer_coca.py --tessera build/tessera --threads 2 --repeat 3

open_clip 3.3's beam search needs transformers 4.56 or older. With --repeat N
the two take turns N times and the medians are reported (with the range).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import open_clip
import torch
from open_clip.coca_model import CoCa
from PIL import Image
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from caption_report import print_table  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "reference"))
from make_openclip_fixtures import write_hf_vocab  # noqa: E402

ARCH = {"coca-ViT-B-32": "coca_ViT-B-32", "coca-ViT-L-14": "coca_ViT-L-14"}


def build(arch, out):
    cfg = dict(open_clip.get_model_config(ARCH[arch]))
    cfg.pop("custom_text", None)
    torch.manual_seed(0)
    model = CoCa(**cfg).eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              os.path.join(out, "open_clip_model.safetensors"))
    with open(os.path.join(out, "open_clip_config.json"), "w") as f:
        json.dump({"model_cfg": dict(cfg, custom_text=True), "preprocess_cfg": {}}, f)
    write_hf_vocab(out, open_clip.tokenizer.SimpleTokenizer())
    ref, _, preprocess = open_clip.create_model_and_transforms("local-dir:" + out,
                                                               precision="fp32")
    return ref.eval(), preprocess


def kw(beams, tokens):
    """generate() settings for `tokens` tokens after the start token, the
    last of them the end token open_clip forces at seq_len (greedy), or
    searched with the end held back (beam search)."""
    k = dict(seq_len=tokens + 1, min_seq_len=tokens, sot_token_id=49406, eos_token_id=49407)
    if beams == 1:
        k.update(generation_type="top_k", top_k=1)
    else:
        k.update(num_beams=beams, num_beam_groups=1)
    return k


def time_generate(model, px, beams, tokens, seconds):
    with torch.no_grad():
        model.generate(px, **kw(beams, tokens))  # warm-up
        n, t0 = 0, time.perf_counter()
        while True:
            out = model.generate(px, **kw(beams, tokens))
            n += 1
            el = time.perf_counter() - t0
            if el >= seconds and n >= 2:
                break
    assert out.shape[1] == tokens + 1, out.shape
    return el / n


def torch_run(model, seconds):
    rng = np.random.default_rng(0)
    res = {}
    for b in (1, 8):
        px = torch.tensor(rng.uniform(-1, 1, (b, 3, 224, 224)), dtype=torch.float32)
        for beams in (1, 3):
            res[("cps", beams, b)] = b / time_generate(model, px, beams, 20, seconds)
    px = torch.tensor(rng.uniform(-1, 1, (1, 3, 224, 224)), dtype=torch.float32)
    for L in (5, 20, 40):
        res[("ms", L)] = 1e3 * time_generate(model, px, 1, L, seconds)
    return res


def tessera_run(exe, d, seconds, device):
    cmd = [exe, "bench", "--model", d, "--tower", "caption", "--json", "--seconds", str(seconds),
           "--batches", "1,8"]
    if device:
        cmd += ["--device", device]
    o = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    res = {}
    for g, beams in (("greedy", 1), ("beam3", 3)):
        for e in o[g]:
            res[("cps", beams, e["batch"])] = e["captions_per_second"]
    for e in o["caption_length"]:
        res[("ms", e["new_tokens"])] = e["ms_per_caption"]
    return res, o["device"]


def parity(model, preprocess, exe, d, device):
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (300, 451, 3), np.uint8))
    path = os.path.join(d, "probe.png")
    img.save(path)
    px = preprocess(img)[None]
    eot = 49407

    def cut(row):
        row = row.tolist()
        return row[:row.index(eot) + 1] if eot in row else row

    with torch.no_grad():
        ref = {"beam": cut(model.generate(px)[0]),
               "greedy": cut(model.generate(px, generation_type="top_k", top_k=1)[0])}
    same = {}
    for k, args in (("beam", []), ("greedy", ["--beams", "1"])):
        cmd = [exe, "caption", "--model", d, "--json", path] + args
        if device:
            cmd += ["--device", device]
        o = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        same[k] = o["ids"] == ref[k]
    return same


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tessera", default="build/tessera")
    ap.add_argument("--arch", default="coca-ViT-B-32", choices=sorted(ARCH))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--device", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as d:
        model, preprocess = build(a.arch, d)
        same = parity(model, preprocess, a.tessera, d, a.device)
        runs_t, runs_x, dev_name = [], [], ""
        for _ in range(a.repeat):
            runs_t.append(torch_run(model, a.seconds))
            r, dev_name = tessera_run(a.tessera, d, a.seconds, a.device)
            runs_x.append(r)
    print("%s, random weights; open_clip %s on the CPU with %d threads; tessera on %s" %
          (a.arch, open_clip.__version__, a.threads, dev_name))
    print("full-size parity on one image: default beam search ids %s, greedy ids %s" %
          ("identical" if same["beam"] else "DIFFER", "identical" if same["greedy"] else "DIFFER"))
    print_table("open_clip", runs_t, runs_x, "tokens")
    sys.exit(0 if all(same.values()) else 1)


if __name__ == "__main__":
    main()
