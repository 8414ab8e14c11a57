#!/usr/bin/env python3
"""Generates the CoCa fixtures under tests/fixtures/models/coca-tiny-{a,b}.

The reference is open_clip 3.3: tiny random CoCa models saved in open_clip's
hub layout (open_clip_config.json plus open_clip_model.safetensors), loaded
back through open_clip's `local-dir:` loader, its transform, tokenizer and
CoCa.generate. generate() needs transformers 4.56 or older (4.57 removed
BeamSearchScorer), so pin it:

    pip install torch open_clip_torch pillow numpy safetensors "transformers<=4.56.2"
    python3 tests/reference/make_coca_fixtures.py

coca-tiny-a: GELU, image tower 44 wide (the pooler's q, k and v stored apart).
coca-tiny-b: quick_gelu, float16, image tower as wide as embed_dim (one in_proj).
Outputs per model, under expected/: pixels, image and text embeddings,
logits, zero-shot probabilities, texts.json (ids), captions.json (the token
sequences of generate() for beam search, greedy search (generation_type
top_k with top_k 1) with and without a prompt, on a batch of images), and
decoder_logits.npy (the decoder's logits for a fixed prefix on image 0).
"""
import json
import os
import shutil
import sys

import numpy as np
import torch
from PIL import Image

import open_clip
import transformers
from open_clip.coca_model import CoCa
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_openclip_fixtures import FIX, write_small_bpe, write_hf_vocab, unpadded  # noqa: E402

SEED = 2718
TEXTS = ["a photo of a cat.", "", "a dog", "naïve café 😀",
         "the quick brown fox jumps over the lazy dog " * 4, "Tom &amp; Jerry", "12345 3.14"]
PROMPT = "a photo of"
EOS_GAIN = {"a": 6.0, "b": 25.0}


def randomize(model, gen):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "logit_scale":
                p.fill_(np.log(37.5))
            elif ".ln_" in name or "ln_final" in name or "ln_post" in name or "ln_pre" in name \
                    or name.endswith(("ln_q.weight", "ln_k.weight", "ln_q.bias", "ln_k.bias")):
                base = 1.0 if name.endswith("weight") else 0.0
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=gen))
            elif p.dim() >= 2 and "embedding" not in name and "proj" not in name \
                    and "query" not in name:
                p.copy_(torch.randn(p.shape, generator=gen) / p[0].numel() ** 0.5)
            elif p.dim() >= 2 and name.endswith("text_projection") or name == "visual.proj":
                p.copy_(torch.randn(p.shape, generator=gen) * 2.0 / p.shape[0] ** 0.5)
            elif p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) / p[0].numel() ** 0.5)
            else:
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))


def cut(row, eot):
    """A generate() row without the start token, up to its end token."""
    row = row.tolist()[1:]
    return row[:row.index(eot) + 1] if eot in row else row


def make_model(key, cfg, dtype, bpe, images):
    gen = torch.Generator().manual_seed(SEED + ord(key))
    model = CoCa(**cfg).eval()
    randomize(model, gen)
    with torch.no_grad():  # captions of several lengths: a louder end token
        b = model.text_decoder.ln_final.bias
        model.text_decoder.text_projection[:, -1] += EOS_GAIN[key] * b / b.norm()
    d = os.path.join(FIX, "models", f"coca-tiny-{key}")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    save_file({k: v.to(dtype).contiguous() for k, v in model.state_dict().items()},
              os.path.join(d, "open_clip_model.safetensors"))
    pp = {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}
    with open(os.path.join(d, "open_clip_config.json"), "w") as f:
        json.dump({"model_cfg": dict(cfg, custom_text=True), "preprocess_cfg": pp}, f, indent=2)
    ctx = cfg["text_cfg"]["context_length"]
    tok = open_clip.tokenizer.SimpleTokenizer(bpe_path=bpe, context_length=ctx)
    write_hf_vocab(d, tok)
    ref, _, preprocess = open_clip.create_model_and_transforms("local-dir:" + d,
                                                               precision="fp32")
    ref = ref.eval()
    assert isinstance(ref, CoCa)
    ids = tok(TEXTS)
    px = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in images])
    sot, eot = tok.sot_token_id, tok.eot_token_id
    with torch.no_grad():
        im = ref.encode_image(px, normalize=False)
        tx = ref.encode_text(ids, normalize=False)
        logits = ref.logit_scale.exp() * (ref.encode_image(px) @ ref.encode_text(ids).T)
        kw = dict(sot_token_id=sot, eos_token_id=eot)
        beam = ref.generate(px, **kw)
        greedy = ref.generate(px, generation_type="top_k", top_k=1, **kw)
        prompt = torch.tensor([[sot] + tok.encode(PROMPT)] * len(images))
        greedy_p = ref.generate(px, text=prompt, generation_type="top_k", top_k=1, **kw)
        beam4 = ref.generate(px, num_beams=4, num_beam_groups=1, seq_len=14, min_seq_len=3, **kw)
        # groups of one beam: still _generate_beamsearch (no forced end token)
        beam3g3 = ref.generate(px, num_beams=3, num_beam_groups=3, seq_len=12, **kw)
        prefix = torch.tensor([[sot] + tok.encode("a small red circle")])
        dec = ref(px[:1], prefix, output_labels=False)["logits"][0]
    exp = os.path.join(d, "expected")
    os.makedirs(exp)
    np.save(os.path.join(exp, "pixel_values.npy"), px.numpy().astype(np.float32))
    np.save(os.path.join(exp, "image_embeds.npy"), im.numpy().astype(np.float32))
    np.save(os.path.join(exp, "text_embeds.npy"), tx.numpy().astype(np.float32))
    np.save(os.path.join(exp, "logits_per_image.npy"), logits.numpy().astype(np.float32))
    np.save(os.path.join(exp, "decoder_logits.npy"), dec.numpy().astype(np.float32))
    rel = [os.path.relpath(p, FIX) for p in images]
    with open(os.path.join(exp, "texts.json"), "w", encoding="utf-8") as f:
        json.dump({"texts": TEXTS, "ids": [unpadded(tok, t, ctx) for t in TEXTS],
                   "images": rel}, f, ensure_ascii=False, indent=1)
    caps = {"images": rel, "sot": sot, "eot": eot, "prompt": PROMPT,
            "prompt_ids": prompt[0].tolist(), "prefix_ids": prefix[0].tolist(),
            "beam": [cut(r, eot) for r in beam],
            # the model card's decoding, with this model's tokenizer
            "beam_text": [tok.decode(r.tolist()).split("<end_of_text>")[0]
                          .replace("<start_of_text>", "").strip() for r in beam],
            "greedy": [cut(r, eot) for r in greedy],
            "greedy_prompt": [cut(r, eot)[len(prompt[0]) - 1:] for r in greedy_p],
            "beam4_len14_min3": [cut(r, eot) for r in beam4],
            "beam3_groups3_len12": [cut(r, eot) for r in beam3g3]}
    # token 0 is open_clip's pad_id: greedy search ends after it, and beam
    # search would mask it in the text tower, which tessera does not reproduce
    for k in ("beam", "beam4_len14_min3", "beam3_groups3_len12"):
        assert all(0 not in r for r in caps[k]), f"{key}: token 0 in {k}; pick another seed"
    with open(os.path.join(exp, "captions.json"), "w") as f:
        json.dump(caps, f, indent=1)
    print(f"coca-tiny-{key}: {sum(p.numel() for p in ref.parameters())} parameters")
    for k in ("beam", "greedy", "greedy_prompt", "beam4_len14_min3", "beam3_groups3_len12"):
        print(" ", k, [len(r) for r in caps[k]])


def main():
    torch.manual_seed(SEED)
    imgdir = os.path.join(FIX, "images")
    images = [os.path.join(imgdir, n) for n in ("chelsea.jpg", "coffee.png", "grey.png",
                                                "noise_80x73.png")]
    bpe = os.path.join(FIX, "tmp-bpe.txt.gz")
    write_small_bpe(bpe, 900)
    make_model("a", {"embed_dim": 30,
                     "vision_cfg": {"image_size": 36, "layers": 2, "width": 44, "head_width": 11,
                                    "patch_size": 9, "attentional_pool": True,
                                    "attn_pooler_heads": 3, "attn_pooler_queries": 7,
                                    "output_tokens": True},
                     "text_cfg": {"context_length": 32, "vocab_size": 1414, "width": 30,
                                  "heads": 3, "layers": 2, "embed_cls": True,
                                  "output_tokens": True, "mlp_ratio": 3.0},
                     "multimodal_cfg": {"context_length": 32, "width": 30, "heads": 5,
                                        "layers": 2}},
               torch.float32, bpe, images)
    make_model("b", {"embed_dim": 26, "quick_gelu": True,
                     "vision_cfg": {"image_size": 33, "layers": 1, "width": 26, "head_width": 13,
                                    "patch_size": 11, "attentional_pool": True,
                                    "attn_pooler_heads": 2, "attn_pooler_queries": 5,
                                    "output_tokens": True},
                     "text_cfg": {"context_length": 31, "vocab_size": 1414, "width": 26,
                                  "heads": 2, "layers": 1, "embed_cls": True,
                                  "output_tokens": True},
                     "multimodal_cfg": {"context_length": 33, "width": 26, "heads": 2,
                                        "layers": 3}},
               torch.float16, bpe, images)
    os.remove(bpe)
    print("open_clip", open_clip.__version__, "torch", torch.__version__, "transformers",
          transformers.__version__)


if __name__ == "__main__":
    main()
