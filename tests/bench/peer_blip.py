#!/usr/bin/env python3
"""tessera's BLIP captions against transformers' generate() in one run, on
the same full-size random weights, images, settings and thread count.

It builds a BlipForConditionalGeneration of the blip-image-captioning-base
(or -large) configuration with random weights and a placeholder vocabulary
of the real size, saves it with save_pretrained (safetensors), times
transformers' generate() on it (captions per second at batch 1 and 8,
greedy and beam 3, 20 new tokens forced; one greedy caption of 5, 20 and
40 new tokens), runs `tessera bench --model` on the same directory, and
prints the ratios. It also captions one image with both and says whether
the token sequences are identical (a full-size parity check).

    pip install torch 'transformers<5' pillow
    python3 tests/bench/peer_blip.py --tessera build/tessera --threads 2 --repeat 3

With --repeat N the two take turns N times and the medians are reported
(with the range). --torch-device cuda times transformers on CUDA (float32,
TF32 off) and --device picks tessera's OpenCL device.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image
from transformers import (BertTokenizerFast, BlipConfig, BlipForConditionalGeneration,
                          BlipImageProcessor, BlipProcessor)
from tokenizers import BertWordPieceTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from caption_report import print_table  # noqa: E402

ARCH = {"blip-base": (768, 12, 12), "blip-large": (1024, 24, 16)}


def build(arch, out):
    vd, vl, vh = ARCH[arch]
    cfg = BlipConfig(text_config=dict(num_attention_heads=12, encoder_hidden_size=vd),
                     vision_config=dict(hidden_size=vd, intermediate_size=4 * vd,
                                        num_hidden_layers=vl, num_attention_heads=vh))
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(cfg).eval()
    model.save_pretrained(out, safe_serialization=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + ["t%d" % i for i in range(5, 30522)]
    wp = BertWordPieceTokenizer(vocab={t: i for i, t in enumerate(vocab)}, lowercase=True)
    tok = BertTokenizerFast(tokenizer_object=wp._tokenizer, unk_token="[UNK]", sep_token="[SEP]",
                            pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]")
    tok.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
    ip = BlipImageProcessor(size={"height": 384, "width": 384})
    BlipProcessor(image_processor=ip, tokenizer=tok).save_pretrained(out)
    return model


def time_generate(model, px, beams, tokens, seconds, dev):
    kw = dict(num_beams=beams, max_new_tokens=tokens, min_length=tokens + 1)
    with torch.no_grad():
        model.generate(pixel_values=px, **kw)  # warm-up
        n, t0 = 0, time.perf_counter()
        while True:
            out = model.generate(pixel_values=px, **kw)
            if dev == "cuda":
                torch.cuda.synchronize()
            n += 1
            el = time.perf_counter() - t0
            if el >= seconds and n >= 2:
                break
    assert out.shape[1] == tokens + 1, out.shape
    return el / n


def torch_run(model, seconds, dev):
    rng = np.random.default_rng(0)
    res = {}
    for b in (1, 8):
        px = torch.tensor(rng.uniform(-1, 1, (b, 3, 384, 384)), dtype=torch.float32, device=dev)
        for beams in (1, 3):
            res[("cps", beams, b)] = b / time_generate(model, px, beams, 20, seconds, dev)
    px = torch.tensor(rng.uniform(-1, 1, (1, 3, 384, 384)), dtype=torch.float32, device=dev)
    for L in (5, 20, 40):
        res[("ms", L)] = 1e3 * time_generate(model, px, 1, L, seconds, dev)
    return res


def tessera_run(exe, d, seconds, device):
    cmd = [exe, "bench", "--model", d, "--json", "--seconds", str(seconds), "--batches", "1,8"]
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


def parity(model, proc, exe, d, device, dev):
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (300, 451, 3), np.uint8))
    path = os.path.join(d, "probe.png")
    img.save(path)
    with torch.no_grad():
        inputs = proc(images=img, return_tensors="pt").to(dev)
        ref = {b: model.generate(**inputs, num_beams=b)[0].tolist() for b in (1, 3)}
    same = {}
    for b in (1, 3):
        cmd = [exe, "caption", "--model", d, "--json", "--beams", str(b), path]
        if device:
            cmd += ["--device", device]
        o = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        same[b] = o["ids"] == ref[b]
    return same


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tessera", default="build/tessera")
    ap.add_argument("--arch", default="blip-base", choices=sorted(ARCH))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--torch-device", default="cpu")
    ap.add_argument("--device", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.torch_device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    with tempfile.TemporaryDirectory() as d:
        model = build(a.arch, d).to(a.torch_device)
        proc = BlipProcessor.from_pretrained(d)
        same = parity(model, proc, a.tessera, d, a.device, a.torch_device)
        runs_t, runs_x, dev_name = [], [], ""
        for _ in range(a.repeat):
            runs_t.append(torch_run(model, a.seconds, a.torch_device))
            r, dev_name = tessera_run(a.tessera, d, a.seconds, a.device)
            runs_x.append(r)
    print("%s, random weights; transformers on %s with %d threads; tessera on %s" %
          (a.arch, a.torch_device, a.threads, dev_name))
    print("full-size parity on one image: greedy ids %s, beam 3 ids %s" %
          ("identical" if same[1] else "DIFFER", "identical" if same[3] else "DIFFER"))
    print_table("transformers", runs_t, runs_x, "new tokens")
    sys.exit(0 if all(same.values()) else 1)


if __name__ == "__main__":
    main()
