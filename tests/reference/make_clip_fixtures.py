#!/usr/bin/env python3
"""Generates the CLIP reference fixtures under tests/fixtures/.

Everything expected by the C tests comes from the reference implementations:
HF transformers (CLIPModel, CLIPTokenizerFast, CLIPImageProcessor) and Pillow,
with open_clip supplying the real CLIP BPE vocabulary. Run from the repository
root:

    pip install torch transformers'<5' tokenizers pillow numpy open_clip_torch scikit-image
    python3 tests/reference/make_clip_fixtures.py

Outputs (all small):
  fixtures/clip-tokenizer/{vocab,merges}    the real CLIP vocabulary (MIT, OpenAI)
  fixtures/tokenizer_corpus.jsonl           >= 2000 strings and their reference ids
  fixtures/images/*                         real photos (scikit-image data) and edge cases
  fixtures/pixels/*.npy                     CLIPImageProcessor output per image and config
  fixtures/models/clip-tiny-{a,b}/          two tiny random CLIPModels (HF layout)
  fixtures/models/clip-tiny-*/expected/     token ids, embeddings, logits, probabilities
  fixtures/bad/*                            crafted bad inputs
"""
import gzip
import json
import os
import random
import shutil
import struct
import sys
import zlib

import numpy as np
import torch
from PIL import Image

import open_clip
import transformers
from transformers import (CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizerFast)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "fixtures")
SEED = 1234


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


def write_vocab(dirname, n_merges):
    """CLIP's vocabulary as HF builds it from open_clip's BPE file."""
    path = os.path.join(os.path.dirname(open_clip.__file__), "bpe_simple_vocab_16e6.txt.gz")
    lines = gzip.open(path).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1:49152 - 256 - 2 + 1]][:n_merges]
    base = bytes_to_unicode()
    vocab = base + [v + "</w>" for v in base] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    os.makedirs(dirname, exist_ok=True)
    with open(os.path.join(dirname, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({t: i for i, t in enumerate(vocab)}, f, ensure_ascii=False)
    with open(os.path.join(dirname, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{a} {b}\n")
    return len(vocab)


def load_tok(dirname, max_len):
    return CLIPTokenizerFast(vocab_file=os.path.join(dirname, "vocab.json"),
                             merges_file=os.path.join(dirname, "merges.txt"),
                             model_max_length=max_len)


# ---------------------------------------------------------------- corpus
def make_corpus(rng):
    words = ("a photo of the cat dog car house tree running jumped quickly tessera OpenCL "
             "kernel GPU embeddings zero-shot classification image caption retrieval "
             "Hello WORLD Python don't it's we'll they're I've I'm she'd YOU'LL "
             "naïve café résumé façade jalapeño Zürich straße Ærø œuvre İstanbul ΣΊΣΥΦΟΣ "
             "Москва привет мир Ελληνικά 東京 日本語のテキスト 中文字符 한국어 العربية हिन्दी "
             "ไทย עברית 😀 👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ ✨🚀 ½ ² ③ Ⅻ ١٢٣ ０１２ "
             "3.14159 1,000,000 42 2026-11-22 http://example.com/a?b=c#d user@mail.org "
             "#hashtag @mention $100 50% C++ a_b-c (parens) [brackets] {braces} <tag> "
             "'quoted' \"double\" ... !!! ??? --- *** ~~~ ``` ;; :: ++ == // \\\\").split()
    pieces = ["\t", "\n", "  ", "\u00a0", "\u3000", "\u2003", " \r\n ", "e\u0301", "A\u030a",
              "\u1e9b\u0323", "ﬁ", "Å", "\u200b", "\x07", "\u0085", "'s", "'T", "'RE", "''",
              "'x", "''ll", "!'s", "é'd", "\U0001F600\U0001F600", "x\u0308y"]
    corpus = ["", " ", "   ", "\n\t", "a", "A", "'", "'s", "😀", "İ", "ß", "a" * 300,
              "the " * 100, "x" * 5 + " " + "y" * 5, "!!!!!!!!!!", "1234567890" * 5,
              "Ünïcödé ünïcödé ÜNÏCÖDÉ", "don't stop", "DON'T STOP", "rock'n'roll",
              "a photo of a cat.", "A PHOTO OF A DOG!", " leading and trailing  "]
    while len(corpus) < 2100:
        kind = rng.random()
        n = rng.randint(1, 12) if kind < 0.9 else rng.randint(60, 160)
        parts = []
        for _ in range(n):
            r = rng.random()
            if r < 0.75:
                parts.append(rng.choice(words))
            elif r < 0.9:
                parts.append(rng.choice(pieces))
            else:
                parts.append("".join(chr(rng.choice([rng.randint(0x20, 0x7e),
                                                      rng.randint(0xa0, 0x24f),
                                                      rng.randint(0x370, 0x4ff),
                                                      rng.randint(0x4e00, 0x4fff),
                                                      rng.randint(0x1f300, 0x1f64f)]))
                                     for _ in range(rng.randint(1, 6))))
        sep = rng.choice([" ", " ", " ", "", "  ", "\t", "\n"])
        corpus.append(sep.join(parts))
    return corpus


def write_corpus(tok, path):
    rng = random.Random(SEED)
    corpus = make_corpus(rng)
    with open(path, "w", encoding="utf-8") as f:
        for text in corpus:
            ids = tok(text, truncation=True, max_length=77)["input_ids"]
            f.write(json.dumps({"text": text, "ids": ids}, ensure_ascii=False) + "\n")
    print(f"corpus: {len(corpus)} strings")


# ---------------------------------------------------------------- images
def skimage_photo(name):
    try:
        import skimage.data
        return getattr(skimage.data, name)()
    except Exception as e:  # pragma: no cover
        sys.exit(f"scikit-image is needed for the photos: {e}")


def write_images(d):
    os.makedirs(d, exist_ok=True)
    out = []
    # Real photographs (scikit-image data: chelsea CC0, coffee CC0, astronaut public domain),
    # reduced so the fixtures stay small.
    for name, size, fmt in [("chelsea", (150, 100), "jpg"), ("coffee", (120, 80), "png"),
                            ("astronaut", (96, 96), "jpg")]:
        im = Image.fromarray(skimage_photo(name)).convert("RGB")
        im = im.resize(size, Image.BICUBIC)
        p = os.path.join(d, f"{name}.{fmt}")
        if fmt == "jpg":
            im.save(p, quality=90)
        else:
            im.save(p)
        out.append(p)
    rng = np.random.default_rng(SEED)

    def save(name, img, **kw):
        p = os.path.join(d, name)
        img.save(p, **kw)
        out.append(p)

    grad = np.zeros((37, 53, 3), np.uint8)
    grad[..., 0] = np.linspace(0, 255, 53)[None, :]
    grad[..., 1] = np.linspace(255, 0, 37)[:, None]
    grad[..., 2] = rng.integers(0, 256, (37, 53))
    save("one_pixel.png", Image.fromarray(np.array([[[200, 30, 90]]], np.uint8)))
    save("wide.png", Image.fromarray(rng.integers(0, 256, (3, 301, 3), dtype=np.uint8)))
    save("tall.jpg", Image.fromarray(rng.integers(0, 256, (97, 5, 3), dtype=np.uint8)), quality=95)
    save("grey.png", Image.fromarray(grad[..., 0]))
    save("grey_alpha.png", Image.fromarray(np.dstack([grad[..., 0], grad[..., 1]]), "LA"))
    save("rgba.png", Image.fromarray(np.dstack([grad, grad[..., :1]]), "RGBA"))
    pal = Image.fromarray(grad).convert("P", palette=Image.ADAPTIVE, colors=17)
    save("palette.png", pal, transparency=3)
    save("bilevel.png", Image.fromarray(grad[..., 0] > 128))
    g16 = (np.linspace(0, 600, 37 * 53).reshape(37, 53)).astype(np.uint16)
    save("grey16.png", Image.fromarray(g16))
    # 16-bit RGB: Pillow cannot write it, so write the PNG by hand.
    rgb16 = rng.integers(0, 65536, (9, 11, 3), dtype=np.uint16)
    p = os.path.join(d, "rgb16.png")
    write_png16(p, rgb16)
    out.append(p)
    save("grey.jpg", Image.fromarray(grad[..., 0]), quality=90)
    save("progressive.jpg", Image.fromarray(grad), quality=85, progressive=True)
    cmyk = Image.fromarray(np.dstack([grad, grad[..., 1:2]]), "CMYK")
    save("cmyk.jpg", cmyk, quality=95)
    save("small.png", Image.fromarray(grad[:4, :6]))
    return out


def png_chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def write_png16(path, arr):
    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)))
        f.write(png_chunk(b"IDAT", zlib.compress(raw)))
        f.write(png_chunk(b"IEND", b""))


def write_bad(d):
    os.makedirs(d, exist_ok=True)
    # PNG declaring 60000x60000 pixels: within libpng's side limit, far above our pixel cap.
    with open(os.path.join(d, "huge.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(png_chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)))
        f.write(png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)))
        f.write(png_chunk(b"IEND", b""))
    # JPEG declaring 60000x60000: a real small JPEG with its SOF0 dimensions rewritten.
    import io
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buf, "JPEG")
    b = bytearray(buf.getvalue())
    i = b.index(b"\xff\xc0")
    b[i + 5:i + 9] = struct.pack(">HH", 60000, 60000)
    open(os.path.join(d, "huge.jpg"), "wb").write(bytes(b))


PP_CONFIGS = {"a": (32, 32), "b": (30, 30), "pad": (20, 24)}  # shortest_edge, crop


def processor(shortest, crop):
    return CLIPImageProcessor(size={"shortest_edge": shortest},
                              crop_size={"height": crop, "width": crop})


def write_pixels(images, d):
    os.makedirs(d, exist_ok=True)
    manifest = []
    for key, (s, c) in PP_CONFIGS.items():
        proc = processor(s, c)
        proc.save_pretrained(os.path.join(d, f"pp_{key}"))
        for p in images:
            # PIL images are HWC; without the hint transformers guesses CHW for a 3-row image
            px = proc(images=Image.open(p), return_tensors="np",
                      input_data_format="channels_last")["pixel_values"][0]
            name = f"{key}_{os.path.basename(p).replace('.', '_')}.npy"
            np.save(os.path.join(d, name), px.astype(np.float32))
            manifest.append({"config": f"pp_{key}", "image": os.path.relpath(p, FIX),
                             "expected": name})
    with open(os.path.join(d, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


# ---------------------------------------------------------------- models
def randomize(model, gen):
    """O(1) activations: HF's init is tiny, which would make parity trivial."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "logit_scale":
                continue
            if "layer_norm" in name or "layrnorm" in name or "layernorm" in name:
                base = 1.0 if name.endswith("weight") else 0.0
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=gen))
            elif p.dim() >= 2 and "embedding" not in name:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in ** 0.5)
            else:
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))


TEXTS = ["a photo of a cat.", "", "A PHOTO OF A DOG!!", "naïve café 😀 👍🏽",
         "the quick brown fox jumps over the lazy dog " * 4, "Σ σ ς ß İ", "12345 3.14"]


def make_model(key, cfg_kwargs, tok_dir, dtype, keep_tokenizer_json):
    gen = torch.Generator().manual_seed(SEED + ord(key))
    cfg = CLIPConfig(**cfg_kwargs)
    model = CLIPModel(cfg).eval()
    randomize(model, gen)
    if dtype != torch.float32:  # reference runs on exactly the stored values
        model = model.to(dtype).to(torch.float32)
    d = os.path.join(FIX, "models", f"clip-tiny-{key}")
    shutil.rmtree(d, ignore_errors=True)
    model.to(dtype).save_pretrained(d, safe_serialization=True)
    model = model.to(torch.float32)
    max_len = cfg.text_config.max_position_embeddings
    tok = load_tok(tok_dir, max_len)
    tok.save_pretrained(d)
    for f in ("tokenizer.json",) if not keep_tokenizer_json else ("vocab.json", "merges.txt"):
        os.remove(os.path.join(d, f))
    size = cfg.vision_config.image_size
    proc = processor(size, size)
    proc.save_pretrained(d)

    exp = os.path.join(d, "expected")
    os.makedirs(exp)
    enc = tok(TEXTS, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
    imgs = [os.path.join(FIX, "images", n) for n in ("chelsea.jpg", "coffee.png", "grey.png")]
    pixels = proc(images=[Image.open(p) for p in imgs], return_tensors="pt",
                  input_data_format="channels_last")["pixel_values"]
    with torch.no_grad():
        out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                    pixel_values=pixels)
    np.save(os.path.join(exp, "pixel_values.npy"), pixels.numpy().astype(np.float32))
    np.save(os.path.join(exp, "image_embeds.npy"),
            model.get_image_features(pixel_values=pixels).detach().numpy().astype(np.float32))
    np.save(os.path.join(exp, "text_embeds.npy"),
            model.get_text_features(input_ids=enc["input_ids"],
                                    attention_mask=enc["attention_mask"]).detach().numpy()
            .astype(np.float32))
    np.save(os.path.join(exp, "logits_per_image.npy"),
            np.ascontiguousarray(out.logits_per_image.numpy().astype(np.float32)))
    ids = [tok(t, truncation=True, max_length=max_len)["input_ids"] for t in TEXTS]
    with open(os.path.join(exp, "texts.json"), "w", encoding="utf-8") as f:
        json.dump({"texts": TEXTS, "ids": ids,
                   "images": [os.path.relpath(p, FIX) for p in imgs]}, f, ensure_ascii=False,
                  indent=1)

    # End-to-end zero-shot classification, as the CLIP paper computes it.
    labels = ["cat", "coffee cup", "grey gradient", "rocket"]
    templates = ["a photo of a {}.", "a drawing of the {}.", "itap of my {}."]
    with torch.no_grad():
        w = []
        for lab in labels:
            e = model.get_text_features(**tok([t.format(lab) for t in templates], padding=True,
                                              return_tensors="pt"))
            e = e / e.norm(dim=-1, keepdim=True)
            e = e.mean(0)
            w.append(e / e.norm())
        w = torch.stack(w)
        im = model.get_image_features(pixel_values=pixels)
        im = im / im.norm(dim=-1, keepdim=True)
        probs = (model.logit_scale.exp() * im @ w.T).softmax(-1)
    with open(os.path.join(exp, "classify.json"), "w") as f:
        json.dump({"labels": labels, "templates": templates,
                   "images": [os.path.relpath(p, FIX) for p in imgs],
                   "probs": probs.numpy().tolist()}, f, indent=1)
    # The same with open_clip's copy of the 80 ImageNet templates (for `--templates imagenet`).
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
    with torch.no_grad():
        w = []
        for lab in labels:
            e = model.get_text_features(**tok([t(lab) for t in OPENAI_IMAGENET_TEMPLATES],
                                              padding=True, truncation=True,
                                              max_length=max_len, return_tensors="pt"))
            e = e / e.norm(dim=-1, keepdim=True)
            e = e.mean(0)
            w.append(e / e.norm())
        probs = (model.logit_scale.exp() * im @ torch.stack(w).T).softmax(-1)
    with open(os.path.join(exp, "classify_imagenet.json"), "w") as f:
        json.dump({"labels": labels, "images": [os.path.relpath(p, FIX) for p in imgs],
                   "probs": probs.numpy().tolist()}, f, indent=1)
    print(f"clip-tiny-{key}: {sum(p.numel() for p in model.parameters())} parameters")


def main():
    torch.manual_seed(SEED)
    full = os.path.join(FIX, "clip-tokenizer")
    write_vocab(full, 48894)
    write_corpus(load_tok(full, 77), os.path.join(FIX, "tokenizer_corpus.jsonl"))
    small = os.path.join(FIX, "tmp-small-tokenizer")
    n_small = write_vocab(small, 1000)
    images = write_images(os.path.join(FIX, "images"))
    write_bad(os.path.join(FIX, "bad"))
    write_pixels(images, os.path.join(FIX, "pixels"))
    common = dict(projection_dim=24)
    make_model("a", dict(projection_dim=24,
                         text_config=dict(vocab_size=n_small, hidden_size=32, intermediate_size=64,
                                          num_attention_heads=4, num_hidden_layers=2,
                                          bos_token_id=n_small - 2, eos_token_id=n_small - 1,
                                          pad_token_id=n_small - 1),
                         vision_config=dict(hidden_size=48, intermediate_size=96,
                                            num_attention_heads=4, num_hidden_layers=2,
                                            image_size=32, patch_size=8)),
               small, torch.float32, keep_tokenizer_json=True)
    make_model("b", dict(projection_dim=20,
                         text_config=dict(vocab_size=n_small, hidden_size=40, intermediate_size=72,
                                          num_attention_heads=5, num_hidden_layers=3,
                                          max_position_embeddings=24, hidden_act="gelu",
                                          bos_token_id=n_small - 2, eos_token_id=n_small - 1,
                                          pad_token_id=n_small - 1),
                         vision_config=dict(hidden_size=60, intermediate_size=100,
                                            num_attention_heads=5, num_hidden_layers=3,
                                            image_size=30, patch_size=7, hidden_act="gelu",
                                            layer_norm_eps=1e-6)),
               small, torch.float16, keep_tokenizer_json=False)
    shutil.rmtree(small)
    del common
    print("transformers", transformers.__version__, "torch", torch.__version__)


if __name__ == "__main__":
    main()
