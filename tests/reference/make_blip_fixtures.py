#!/usr/bin/env python3
"""Generates the BLIP captioning fixtures under tests/fixtures/models/blip-tiny/.

Everything expected by the C tests comes from HF transformers: a tiny random
BlipForConditionalGeneration (sizes that are not powers of two), its
BlipImageProcessor, a BertTokenizerFast whose WordPiece vocabulary is trained
here on the tokenizer corpus, and generate() for greedy and beam search with
several settings. Run from the repository root:

    pip install torch transformers'<5' tokenizers pillow numpy safetensors
    python3 tests/reference/make_blip_fixtures.py

Outputs (all small), in tests/fixtures/models/blip-tiny/:
  config.json model.safetensors preprocessor_config.json tokenizer files
  expected/pixel_values.npy      BlipImageProcessor output, one row per image
  expected/image_embeds.npy      vision_model(...)[0] (post-layernorm), per image
  expected/logits.npy            text_decoder logits for a teacher-forced prefix
                                 (its ids: generate.json's logits_ids)
  expected/generate.json         token ids and captions per image and setting
  expected/decode.json           random id sequences and tokenizer.decode()
"""
import json
import os
import random
import re

import numpy as np
import torch
import transformers
from PIL import Image
from tokenizers import BertWordPieceTokenizer, processors
from transformers import (BertTokenizerFast, BlipConfig, BlipForConditionalGeneration,
                          BlipImageProcessor, BlipProcessor)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "fixtures")
OUT = os.path.join(FIX, "models", "blip-tiny")
IMAGES = ["chelsea.jpg", "coffee.png", "astronaut.jpg", "tall.jpg", "grey.png"]
SEED = 4321
EOS_BIAS = float(os.environ.get("EOS_BIAS", "1.7"))


def make_tokenizer(tmp):
    """A small English WordPiece vocabulary from the licence texts every
    Debian machine has, built deterministically (the tokenizers trainer
    breaks ties in hash order): the characters, each as a word start and as
    a "##" continuation, common suffixes, then the most frequent words."""
    lic = "/usr/share/common-licenses"
    text = " ".join(open(os.path.join(lic, n), encoding="utf-8").read()
                    for n in ("GPL-3", "Apache-2.0", "MPL-2.0", "LGPL-2.1")).lower()
    chars = sorted({c for c in text if c.isascii() and c.isprintable() and not c.isspace()})
    words = {}
    for w in re.findall(r"[a-z]+", text):
        words[w] = words.get(w, 0) + 1
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + ["##" + c for c in chars
                                                                    if c.isalnum()]
    vocab += ["##s", "##ed", "##ing", "##ly", "##er", "##ion", "##al", "##es", "##ation"]
    for w, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(vocab) >= 420:
            break
        if w not in vocab and len(w) > 1:
            vocab.append(w)
    vocab = list(dict.fromkeys(vocab))
    wp = BertWordPieceTokenizer(vocab={t: i for i, t in enumerate(vocab)}, lowercase=True)
    tok = BertTokenizerFast(tokenizer_object=wp._tokenizer, unk_token="[UNK]", sep_token="[SEP]",
                            pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]",
                            do_lower_case=True)
    # BLIP's captioning tokenizer: bert-base-uncased plus [DEC] (bos) and [ENC]
    tok.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
    return tok


def init_weights(model, gen):
    """Weights large enough that captions differ by image and end at varied lengths."""
    for name, p in model.named_parameters():
        if p.dim() == 1 and ("LayerNorm" in name or "layer_norm" in name or "layernorm" in name):
            if name.endswith("weight"):
                p.data = 1.0 + 0.2 * torch.randn(p.shape, generator=gen)
            else:
                p.data = 0.1 * torch.randn(p.shape, generator=gen)
        elif p.dim() == 1:
            p.data = 0.1 * torch.randn(p.shape, generator=gen)
        else:
            fan_in = p[0].numel() if p.dim() > 1 else 1
            scale = 0.9 if name.startswith("text_decoder") else 1.3
            p.data = torch.randn(p.shape, generator=gen) * (scale / fan_in ** 0.5)


def main():
    torch.manual_seed(SEED)
    random.seed(SEED)
    os.makedirs(os.path.join(OUT, "expected"), exist_ok=True)
    tok = make_tokenizer(OUT)
    V = len(tok)
    cfg = BlipConfig(
        vision_config=dict(hidden_size=36, intermediate_size=52, num_hidden_layers=2,
                           num_attention_heads=3, image_size=30, patch_size=6,
                           layer_norm_eps=1e-5, hidden_act="gelu"),
        text_config=dict(vocab_size=V, hidden_size=44, intermediate_size=60,
                         num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=40,
                         encoder_hidden_size=36, layer_norm_eps=1e-12, hidden_act="gelu",
                         bos_token_id=tok.convert_tokens_to_ids("[DEC]"),
                         sep_token_id=tok.sep_token_id, pad_token_id=tok.pad_token_id,
                         eos_token_id=2),
        projection_dim=24)
    model = BlipForConditionalGeneration(cfg).eval()
    gen = torch.Generator().manual_seed(SEED)
    init_weights(model, gen)
    with torch.no_grad():  # captions that end at varied lengths
        model.text_decoder.cls.predictions.bias[tok.sep_token_id] += EOS_BIAS
    model.save_pretrained(OUT, safe_serialization=True)
    ip = BlipImageProcessor(size={"height": 30, "width": 30},
                            image_mean=[0.48145466, 0.4578275, 0.40821073],
                            image_std=[0.26862954, 0.26130258, 0.27577711])
    proc = BlipProcessor(image_processor=ip, tokenizer=tok)
    proc.save_pretrained(OUT)
    for junk in ("generation_config.json", "processor_config.json"):
        if os.path.exists(os.path.join(OUT, junk)):
            os.remove(os.path.join(OUT, junk))
    model = BlipForConditionalGeneration.from_pretrained(OUT).eval()
    proc = BlipProcessor.from_pretrained(OUT)

    images = [Image.open(os.path.join(FIX, "images", n)).convert("RGB") for n in IMAGES]
    pix = proc(images=images, return_tensors="pt")["pixel_values"]
    np.save(os.path.join(OUT, "expected", "pixel_values.npy"), pix.numpy().astype(np.float32))
    with torch.no_grad():
        emb = model.vision_model(pixel_values=pix)[0]
        np.save(os.path.join(OUT, "expected", "image_embeds.npy"), emb.numpy().astype(np.float32))
        prefix = [cfg.text_config.bos_token_id] + random.sample(range(5, V), 8)
        ids = torch.tensor([prefix])
        lg = model.text_decoder(input_ids=ids, encoder_hidden_states=emb[:1],
                                return_dict=True).logits
        np.save(os.path.join(OUT, "expected", "logits.npy"), lg[0].numpy().astype(np.float32))

    settings = [
        {"name": "greedy"},
        {"name": "greedy-prompt", "prompt": "a picture of"},
        {"name": "greedy-long", "max_length": 40},
        {"name": "beam3", "num_beams": 3},
        {"name": "beam3-prompt", "num_beams": 3, "prompt": "a picture of"},
        {"name": "beam4-long", "num_beams": 4, "max_length": 32},
        {"name": "beam3-lp0", "num_beams": 3, "length_penalty": 0.0},
        {"name": "beam3-lp2", "num_beams": 3, "length_penalty": 2.0, "max_length": 30},
        {"name": "beam3-early", "num_beams": 3, "early_stopping": True},
        {"name": "beam2-never", "num_beams": 2, "early_stopping": "never", "max_length": 25},
        {"name": "beam5-min", "num_beams": 5, "min_length": 12},
        {"name": "beam3-rep", "num_beams": 3, "repetition_penalty": 1.5},
        {"name": "greedy-rep", "repetition_penalty": 1.3, "max_length": 30},
        {"name": "beam3-ngram", "num_beams": 3, "no_repeat_ngram_size": 2, "max_length": 30},
        {"name": "greedy-ngram-prompt", "no_repeat_ngram_size": 1, "prompt": "the cat"},
        {"name": "beam4-nbest3", "num_beams": 4, "num_return_sequences": 3, "max_length": 24},
        {"name": "beam3-nbest3-prompt", "num_beams": 3, "num_return_sequences": 3,
         "prompt": "a picture of", "length_penalty": 0.5},
    ]
    out = {"images": IMAGES, "transformers": transformers.__version__, "logits_ids": prefix,
           "settings": []}
    n_eos = 0
    for s in settings:
        kw = {k: v for k, v in s.items() if k not in ("name", "prompt")}
        res = []
        for i, img in enumerate(images):
            inputs = proc(images=img, text=s.get("prompt"), return_tensors="pt")
            with torch.no_grad():
                seqs = model.generate(**inputs, **kw).tolist()
            # batched outputs are padded after [SEP]; the C side returns them unpadded
            seqs = [q[:q.index(tok.sep_token_id) + 1] if tok.sep_token_id in q[1:] else q
                    for q in seqs]
            seq = seqs[0]
            n_eos += tok.sep_token_id in seq
            r = {"ids": seq, "caption": proc.decode(seq, skip_special_tokens=True)}
            if len(seqs) > 1:
                r["all"] = [{"ids": q, "caption": proc.decode(q, skip_special_tokens=True)}
                            for q in seqs]
            res.append(r)
        entry = dict(s)
        entry["results"] = res
        out["settings"].append(entry)
        print(s["name"], [r["caption"] for r in res])
    # one batched run: the same captions as one image at a time
    inputs = proc(images=images, return_tensors="pt")
    with torch.no_grad():
        batched = model.generate(**inputs, num_beams=3)
    out["batched_beam3"] = [proc.decode(b, skip_special_tokens=True) for b in batched.tolist()]
    n_empty = sum(r["caption"] == "" for st in out["settings"] for r in st["results"])
    print("captions ending in [SEP]:", n_eos, "empty:", n_empty)
    # sampling: the probabilities of the first token after HF's warpers, for
    # image 0 without a prompt (the C test draws it many times: chi-square)
    from transformers.generation.logits_process import (LogitsProcessorList,
                                                        TemperatureLogitsWarper,
                                                        TopKLogitsWarper, TopPLogitsWarper)
    with torch.no_grad():
        step0 = model.text_decoder(input_ids=torch.tensor([[cfg.text_config.bos_token_id]]),
                                   encoder_hidden_states=emb[:1], return_dict=True).logits[:, -1]
    out["sampling"] = []
    for T, k, p in [(1.0, 50, 1.0), (0.7, 0, 0.9), (1.5, 20, 0.8), (1.0, 1, 1.0)]:
        warp = []
        if T != 1.0:
            warp.append(TemperatureLogitsWarper(T))
        if k:
            warp.append(TopKLogitsWarper(k))
        if p < 1.0:
            warp.append(TopPLogitsWarper(p))
        ids0 = torch.tensor([[cfg.text_config.bos_token_id]])
        probs = torch.softmax(LogitsProcessorList(warp)(ids0, step0.clone()), dim=-1)[0]
        out["sampling"].append({"temperature": T, "top_k": k, "top_p": p,
                                "probs": [float(x) for x in probs]})
    with open(os.path.join(OUT, "expected", "generate.json"), "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)

    # decoding: random ids, special tokens and punctuation included
    rng = random.Random(SEED)
    punct = [tok.convert_tokens_to_ids(c) for c in [".", ",", "'", "?", "!", "-"]
             if c in tok.get_vocab()]
    cases = []
    for k in range(300):
        n = rng.randint(0, 24)
        ids = [rng.choice(punct) if punct and rng.random() < 0.2 else rng.randrange(V)
               for _ in range(n)]
        cases.append({"ids": ids, "text": tok.decode(ids, skip_special_tokens=True),
                      "text_special": tok.decode(ids, skip_special_tokens=False),
                      "text_clean": tok.decode(ids, skip_special_tokens=True,
                                               clean_up_tokenization_spaces=True)})
    with open(os.path.join(OUT, "expected", "decode.json"), "w") as f:
        json.dump(cases, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
