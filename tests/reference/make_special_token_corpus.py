#!/usr/bin/env python3
"""Texts with CLIP's special tokens typed inside them, and the ids that
transformers' CLIPTokenizerFast gives them (the added tokens <|startoftext|>
and <|endoftext|> are matched in the normalised text, so in any case, and
split the text around them), with truncation at 77. Uses the real CLIP
vocabulary in tests/fixtures/clip-tokenizer.

    python tests/reference/make_special_token_corpus.py  # transformers 4.57
"""
import json
import os
import random

from transformers import CLIPTokenizerFast

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
D = os.path.join(ROOT, "fixtures", "clip-tokenizer")


def main():
    tok = CLIPTokenizerFast(vocab_file=os.path.join(D, "vocab.json"),
                            merges_file=os.path.join(D, "merges.txt"), model_max_length=77)
    fixed = ["<|endoftext|>", "<|startoftext|>", "a photo <|endoftext|>", "<|startoftext|>a cat",
             "cat<|endoftext|>dog", "!!<|endoftext|>!!", "<|ENDOFTEXT|> shout", "<|EndOfText|>",
             "<|endoftext|><|endoftext|>", "<| endoftext |>", "<|endoftext|", "|endoftext|>",
             "<<|endoftext|>>", "x<|startoftext|>y<|endoftext|>z", "don't<|endoftext|>'s",
             "naïve <|endoftext|> café", "  <|endoftext|>  ", "<|endoftext|>\n<|startoftext|>",
             "3<|endoftext|>4", "😀<|endoftext|>😀", "<|endoftext|>" * 80,
             "cat " * 74 + "<|endoftext|> dog", "cat " * 75 + "<|endoftext|>",
             "<|endoftextx|>", "<|startoftext|><|startoftext|>", "it<|endoftext|>'s"]
    rng = random.Random(7)
    words = ["a", "photo", "of", "the", "CAT", "dog's", "<|endoftext|>", "<|startoftext|>",
             "<|", "|>", "endoftext", "!", "42", "Zürich", "東京", "😀", "'ll", "<tag>"]
    seps = ["", " ", "  ", "\t", "\n"]
    texts = list(fixed)
    while len(texts) < 300:
        n = rng.randint(1, 12)
        texts.append("".join(rng.choice(words) + rng.choice(seps) for _ in range(n)))
    out = os.path.join(D, "typed_special.jsonl")
    with open(out, "w", encoding="utf-8") as f:
        for t in texts:
            ids = tok(t, truncation=True, max_length=77)["input_ids"]
            f.write(json.dumps({"text": t, "ids": ids}, ensure_ascii=False) + "\n")
    print(out, len(texts))


if __name__ == "__main__":
    main()
