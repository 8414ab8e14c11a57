#!/usr/bin/env python3
"""Generates the open_clip-layout fixtures under tests/fixtures/.

The reference is open_clip itself (3.3): tiny random CLIP models saved as
open_clip's push_to_hf_hub saves them (open_clip_config.json plus
open_clip_model.safetensors), loaded back through open_clip's own
`local-dir:` loader, its preprocessing (torchvision) and its SimpleTokenizer.
Run from the repository root:

    pip install torch open_clip_torch pillow numpy safetensors
    python3 tests/reference/make_openclip_fixtures.py

Outputs (all small):
  fixtures/models/openclip-tiny-{a,b}/     open_clip layout; b is a CustomTextCLIP
                                           (text.* names), quick_gelu, float16
  fixtures/models/openclip-tiny-*/expected/ ids, pixels, embeddings, logits, probabilities
  fixtures/openclip_tokenizer_corpus.jsonl the committed tokenizer corpus as open_clip's
                                           default tokenizer (ftfy, html, lower) encodes it
"""
import gzip
import json
import os
import shutil
import sys

import ftfy
import numpy as np
import torch
from PIL import Image

import open_clip
from open_clip.model import CLIP, CustomTextCLIP
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "fixtures")
SEED = 4321
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

TEXTS = ["a photo of a cat.", "", "A PHOTO OF A DOG!!", "naïve café 😀 👍🏽",
         "the quick brown fox jumps over the lazy dog " * 4, "Tom &amp; Jerry &lt;3",
         "“curly” ‘quotes’ ﬁne ＷＩＤＥ", "12345 3.14"]


def write_small_bpe(path, n_merges):
    """open_clip's BPE file cut to its first merges (SimpleTokenizer reads any length)."""
    src = os.path.join(os.path.dirname(open_clip.__file__), "bpe_simple_vocab_16e6.txt.gz")
    lines = gzip.open(src).read().decode("utf-8").split("\n")
    with gzip.open(path, "wb") as f:
        f.write("\n".join(lines[:1 + n_merges]).encode("utf-8"))


def write_hf_vocab(d, tok):
    """The tokenizer files a laion open_clip repository carries (vocab.json and
    merges.txt, HF names for the two special tokens), from SimpleTokenizer's tables."""
    vocab = dict(tok.encoder)
    vocab["<|startoftext|>"] = vocab.pop("<start_of_text>")
    vocab["<|endoftext|>"] = vocab.pop("<end_of_text>")
    with open(os.path.join(d, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    merges = sorted(tok.bpe_ranks, key=tok.bpe_ranks.get)
    with open(os.path.join(d, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{a} {b}\n")


def unpadded(tok, text, ctx):
    """open_clip's tokenize() of one text without its padding, truncated as it truncates."""
    ids = [tok.sot_token_id] + tok.encode(text) + [tok.eot_token_id]
    if len(ids) > ctx:
        ids = ids[:ctx]
        ids[-1] = tok.eot_token_id
    assert tok([text], ctx)[0].tolist()[:len(ids)] == ids
    return ids


def randomize(model, gen):
    """O(1) activations, as make_clip_fixtures.py does."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "logit_scale":
                p.fill_(np.log(37.5))
                continue
            if ".ln_" in name or name.startswith("ln_") or "ln_final" in name:
                base = 1.0 if name.endswith("weight") else 0.0
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=gen))
            elif p.dim() >= 2 and "embedding" not in name and name not in (
                    "visual.proj", "text_projection", "text.text_projection"):
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in ** 0.5)
            elif p.dim() >= 2 and "proj" in name:
                p.copy_(torch.randn(p.shape, generator=gen) / p.shape[0] ** 0.5)
            else:
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))


def noise_image(path, w, h, rng):
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def make_model(key, model_cfg, pp_cfg, custom, dtype, bpe, images):
    gen = torch.Generator().manual_seed(SEED + ord(key))
    cfg = dict(model_cfg)
    model = (CustomTextCLIP if custom else CLIP)(**{k: v for k, v in cfg.items()
                                                  if k != "custom_text"}).eval()
    randomize(model, gen)
    model = model.to(dtype).to(torch.float32)  # the reference runs on the stored values
    d = os.path.join(FIX, "models", f"openclip-tiny-{key}")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    save_file({k: v.to(dtype).contiguous() for k, v in model.state_dict().items()},
              os.path.join(d, "open_clip_model.safetensors"))
    with open(os.path.join(d, "open_clip_config.json"), "w") as f:
        json.dump({"model_cfg": cfg, "preprocess_cfg": pp_cfg}, f, indent=2)
    ctx = cfg["text_cfg"]["context_length"]
    tok = open_clip.tokenizer.SimpleTokenizer(bpe_path=bpe, context_length=ctx)
    write_hf_vocab(d, tok)

    # Loaded back through open_clip's own loader: what a user's open_clip computes.
    ref, _, preprocess = open_clip.create_model_and_transforms(
        "local-dir:" + d, precision="fp32")
    ref = ref.eval()
    ref.tokenizer = tok
    ids = tok(TEXTS)
    px = torch.stack([preprocess(Image.open(p)) for p in images])
    with torch.no_grad():
        im = ref.encode_image(px)
        tx = ref.encode_text(ids)
        logits, _ = ref.get_logits(px, ids)
    exp = os.path.join(d, "expected")
    os.makedirs(exp)
    np.save(os.path.join(exp, "pixel_values.npy"), px.numpy().astype(np.float32))
    np.save(os.path.join(exp, "image_embeds.npy"), im.numpy().astype(np.float32))
    np.save(os.path.join(exp, "text_embeds.npy"), tx.numpy().astype(np.float32))
    np.save(os.path.join(exp, "logits_per_image.npy"), logits.numpy().astype(np.float32))
    lists = [unpadded(tok, t, ctx) for t in TEXTS]
    # Zero-shot classification as open_clip's build_zero_shot_classifier does it.
    labels = ["cat", "coffee cup", "noise", "rocket"]
    templates = ["a photo of a {}.", "a drawing of the {}.", "itap of my {}."]
    with torch.no_grad():
        w = []
        for lab in labels:
            e = ref.encode_text(tok([t.format(lab) for t in templates]), normalize=True)
            e = e.mean(0)
            w.append(e / e.norm())
        w = torch.stack(w)
        probs = (ref.logit_scale.exp() * ref.encode_image(px, normalize=True) @ w.T).softmax(-1)
    rel = [os.path.relpath(p, FIX) for p in images]
    with open(os.path.join(exp, "texts.json"), "w", encoding="utf-8") as f:
        json.dump({"texts": TEXTS, "ids": lists, "images": rel}, f, ensure_ascii=False,
                  indent=1)
    with open(os.path.join(exp, "classify.json"), "w") as f:
        json.dump({"labels": labels, "templates": templates, "images": rel,
                   "probs": probs.numpy().tolist()}, f, indent=1)
    print(f"openclip-tiny-{key}: {sum(p.numel() for p in ref.parameters())} parameters")


def write_corpus():
    """The HF tokenizer corpus's strings, encoded by open_clip's default tokenizer."""
    tok = open_clip.get_tokenizer("ViT-B-32")
    src = os.path.join(FIX, "tokenizer_corpus.jsonl")
    texts = [json.loads(line)["text"] for line in open(src, encoding="utf-8")]
    texts += ["Tom &amp; Jerry", "&lt;b&gt;bold&lt;/b&gt;", "&amp;amp; twice", "&#65;&#x42;C",
              "&eacute;t&eacute;", "&nbsp;x", "&notanentity; &amp", "“curly” ‘quotes’",
              "ﬁne ﬂow ﬀ", "ＦＵＬＬ　ｗｉｄｔｈ ０１２", "ｶﾀｶﾅ", "tab\there\x07bell\x1b[31mred",
              "line\r\nbreak\u2028sep", "soft\u00adhyphen", "zero\u200bwidth", "bom\ufeff",
              "c1 \x80\x93 controls", "<start_of_text>typed<end_of_text>",
              "<|startoftext|>hf style<|endoftext|>", "  spaced   out  ",
              "x!!<start_of_text>y", "<START_OF_TEXT>caps", "a<end_of_text>b<start_of_text>c",
              "&#59; &#0; &#x110000; &#128; &#x7f; &#65a; &amp &ampx &notit; &amp;lt;",
              "&lt;b&gt;\n&amp;\n<i>\n&amp;", "ΣΑΣ ΟΔΟΣ. Σ ΑΣ' ΣΑ", "İSTANBUL ẞ Ǆ ǅ",
              "\u00e9t\u00e9 e\u0301te\u0301", "\x1b[1;31mbold\x1b[0m", "tab\x0bvt\x0cff"]
    out = os.path.join(FIX, "openclip_tokenizer_corpus.jsonl")
    with open(out, "w", encoding="utf-8") as f:
        for t in texts:
            rec = {"text": t, "ids": unpadded(tok, t, 77)}
            # texts that ftfy's mojibake repair changes (tessera leaves it out)
            if ftfy.fix_text(t) != ftfy.fix_text(t, fix_encoding=False):
                rec["mojibake"] = True
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    print(f"openclip corpus: {len(texts)} strings")


def main():
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    imgdir = os.path.join(FIX, "images")
    # 80x73 and 73x80 make the centre crop's offset 1.5, which torchvision rounds to
    # 2 (round half to even) where transformers floors to 1.
    images = [os.path.join(imgdir, n) for n in ("chelsea.jpg", "coffee.png", "grey.png")]
    images += [noise_image(os.path.join(imgdir, "noise_80x73.png"), 80, 73, rng),
               noise_image(os.path.join(imgdir, "noise_73x80.png"), 73, 80, rng)]
    bpe = os.path.join(FIX, "tmp-bpe.txt.gz")
    write_small_bpe(bpe, 900)
    make_model("a", {"embed_dim": 28,
                     "vision_cfg": {"image_size": 36, "layers": 2, "width": 44, "head_width": 11,
                                    "patch_size": 9, "mlp_ratio": 2.5},
                     "text_cfg": {"context_length": 21, "vocab_size": 1414, "width": 36,
                                  "heads": 3, "layers": 2, "mlp_ratio": 3.0}},
               {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}, False, torch.float32,
               bpe, images)
    make_model("b", {"embed_dim": 20, "quick_gelu": True, "custom_text": True,
                     "vision_cfg": {"image_size": 33, "layers": 3, "width": 30, "head_width": 10,
                                    "patch_size": 11},
                     "text_cfg": {"context_length": 17, "vocab_size": 1414, "width": 42,
                                  "heads": 7, "layers": 1}},
               {"mean": [0.48145466, 0.4578275, 0.40821073],
                "std": [0.26862954, 0.26130258, 0.27577711]}, True, torch.float16, bpe, images)
    os.remove(bpe)
    write_corpus()
    print("open_clip", open_clip.__version__, "torch", torch.__version__)


if __name__ == "__main__":
    main()
