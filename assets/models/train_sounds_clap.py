#!/usr/bin/env python3
"""Trains assets/models/sounds-clap, tessera's demo CLAP model, from scratch.

A small CLAP (HF ClapModel layout: a 3-stage HTSAT audio tower on 64 log-mel
bins, a 2-layer RoBERTa text tower) learns 14 classes of generated sounds:
low and high sine tones, low and high buzzes (square or sawtooth), rising and
falling chirps, bursts of white, pink and brown noise, fast and slow beeping,
and espeak-ng saying "yes", "no" or "stop". Every clip has a random duration
(0.5 to 1.9 s), onset, amplitude, pitch jitter and a little background noise,
and goes through a random codec route (none; a resample to 16, 22.05 or 44.1
kHz; Ogg Vorbis -q:a 0 at 16 or 22.05 kHz) and back to 48 kHz, so that the
model sees what decoded user files give. Each clip is paired with one of
several captions of its class ("a high pitched beep", "a short high tone"),
bare or inside a template. The byte-level BPE tokenizer (RoBERTa's special
tokens and post-processor, loaded by RobertaTokenizerFast) is trained on the
captions.

    pip install torch transformers'<5' tokenizers numpy
    apt-get install ffmpeg espeak-ng
    python3 assets/models/train_sounds_clap.py   # about 18 minutes on 2 cores

It writes the model to assets/models/sounds-clap/, 210 held-out clips (another
seed, Ogg Vorbis -q:a 0, mono, 16 kHz) and their labels.json to
tests/fixtures/sounds-heldout/, and a sample clip to assets/.

What it measures: zero-shot top-1 accuracy on the held-out clips, each decoded
from its file as tessera decodes it (the system ffmpeg to mono s16le at 48
kHz, /32768), run through ClapFeatureExtractor and get_audio_features, against
get_text_features of "This is a sound of {prompt}." with one prompt per class
(argmax of the dot product). The result is stored as labels.json's
"pytorch_top1". The training features are cached under /tmp (keyed by the
generator's source), so a rerun that changes only the training is quicker.
Everything is seeded, so a rerun gives the same files (given the same library,
ffmpeg and espeak-ng versions).
"""
import argparse
import hashlib
import inspect
import io
import json
import math
import multiprocessing
import os
import shutil
import subprocess
import tempfile
import time
import wave

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(HERE, "sounds-clap")
HELD = os.path.join(ROOT, "tests", "fixtures", "sounds-heldout")
CACHE = "/tmp/sounds-clap-cache"
SEED = 20261214
RATE = 48000
MAX_S = 2              # the feature extractor's window: no crop for clips up to this
MAX_DUR = 1.9          # longest clip generated (codecs may add a few samples)
TEMPLATE = "This is a sound of {}."
HELD_PER_CLASS = 15
SAMPLE_CLASS = "rising_chirp"

FE_CFG = dict(feature_size=64, sampling_rate=RATE, hop_length=1600, max_length_s=MAX_S,
              fft_window_size=1024, frequency_min=50, frequency_max=14000,
              padding="repeatpad", truncation="rand_trunc")  # 61 frames <= spec_size 64

# key, zero-shot prompt (the first caption), further training captions
CLASSES = [
    ("low_tone", ["a low tone", "a low pitched tone", "a deep tone", "a low hum",
                  "a low sine wave", "a steady low note", "a deep pure tone", "a low whistle"]),
    ("high_tone", ["a high tone", "a high pitched tone", "a high pitched beep", "a short high tone",
                   "a high sine wave", "a steady high note", "a pure high tone", "a shrill tone"]),
    ("low_buzz", ["a low buzz", "a low buzzing sound", "a deep buzz", "a low square wave",
                  "a low sawtooth wave", "a harsh low drone", "a rough low tone", "a buzzing hum"]),
    ("high_buzz", ["a high buzz", "a high buzzing sound", "a shrill buzz", "a high square wave",
                   "a high sawtooth wave", "a harsh high tone", "a rough high tone",
                   "a high pitched buzzer"]),
    ("rising_chirp", ["a rising chirp", "a rising tone", "a tone sweeping up", "an upward sweep",
                      "a chirp going up", "a pitch that rises", "an ascending whistle",
                      "a rising sweep"]),
    ("falling_chirp", ["a falling chirp", "a falling tone", "a tone sweeping down",
                       "a downward sweep", "a chirp going down", "a pitch that falls",
                       "a descending whistle", "a falling sweep"]),
    ("white_noise", ["white noise", "a burst of white noise", "a hiss", "a hissing sound",
                     "static", "bright hissing noise", "a short hiss", "white static"]),
    ("pink_noise", ["pink noise", "a burst of pink noise", "a rushing sound", "a soft rush of noise",
                    "noise like a waterfall", "a whooshing noise", "rushing air", "a gentle whoosh"]),
    ("brown_noise", ["brown noise", "a burst of brown noise", "a deep rumble", "a low rumbling noise",
                     "noise like distant thunder", "a muffled roar", "a dark rumble", "a rumble"]),
    ("fast_beeping", ["fast beeping", "rapid beeps", "quick beeping", "a fast beep beep beep",
                      "a rapid series of beeps", "fast repeating beeps", "an alarm beeping quickly",
                      "many quick beeps"]),
    ("slow_beeping", ["slow beeping", "slow beeps", "a beep every half second",
                      "a slow series of beeps", "slowly repeating beeps", "a few slow beeps",
                      "a slow beeping signal", "beeps with long pauses"]),
    ("say_yes", ["a voice saying yes", "someone saying yes", "the word yes", "a person says yes",
                 "a voice says yes", "yes spoken aloud", "a computer voice saying yes",
                 "a robot saying yes"]),
    ("say_no", ["a voice saying no", "someone saying no", "the word no", "a person says no",
                "a voice says no", "no spoken aloud", "a computer voice saying no",
                "a robot saying no"]),
    ("say_stop", ["a voice saying stop", "someone saying stop", "the word stop",
                  "a person says stop", "a voice says stop", "stop spoken aloud",
                  "a computer voice saying stop", "a robot saying stop"]),
]
KEYS = [k for k, _ in CLASSES]
PROMPTS = [caps[0] for _, caps in CLASSES]
CAP_TEMPLATES = [TEMPLATE, "{}", "the sound of {}", "a recording of {}.", "{}.", "This is {}."]
VOICES = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan"]
VARIANTS = ["", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "klatt",
            "klatt2", "klatt3", "croak", "steph", "robert", "ed", "grandma"]
ROUTES = [("raw", 0.3), ("pcm16000", 0.07), ("pcm22050", 0.07), ("pcm44100", 0.06),
          ("ogg16000", 0.3), ("ogg22050", 0.2)]


# ------------------------------------------------------------------ sounds
def envelope(n, rng, attack=(0.005, 0.03), release=(0.005, 0.05)):
    e = np.ones(n)
    a = min(n // 2, int(rng.uniform(*attack) * RATE))
    r = min(n // 2, int(rng.uniform(*release) * RATE))
    if a:
        e[:a] = 0.5 - 0.5 * np.cos(np.linspace(0, math.pi, a))
    if r:
        e[n - r:] *= 0.5 + 0.5 * np.cos(np.linspace(0, math.pi, r))
    return e


def phase_of(freq):
    return 2 * math.pi * np.cumsum(freq) / RATE


def harmonic(ph, f_max, kind):
    """A band-limited square (odd harmonics, 1/k) or sawtooth (all, 1/k) wave."""
    x = np.zeros_like(ph)
    for k in range(1, 64):
        if k * f_max > 16000:
            break
        if kind == "square" and k % 2 == 0:
            continue
        x += np.sin(k * ph) / k
    return x / np.abs(x).max()


def colored_noise(n, rng, power):
    """Gaussian noise with a 1/f^power power spectrum (0 white, 1 pink, 2 brown)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / RATE)
    spec *= 1 / np.maximum(f, 20.0) ** (power / 2)
    x = np.fft.irfft(spec, n)
    return x / (x.std() + 1e-12)


def speak(word, rng):
    """espeak-ng saying the word with a random voice, speed and pitch, at 48 kHz."""
    voice = rng.choice(VOICES)
    var = rng.choice(VARIANTS)
    v = voice + ("+" + var if var else "")
    text = word + str(rng.choice(["", ".", "!", "?"]))
    wav = subprocess.run(["espeak-ng", "-v", v, "-s", str(int(rng.integers(120, 240))),
                          "-p", str(int(rng.integers(20, 80))), "--stdout", text],
                         check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
    pcm = subprocess.run(["ffmpeg", "-v", "quiet", "-i", "-", "-f", "s16le", "-ac", "1", "-ar",
                          str(RATE), "-"], input=wav, check=True, stdout=subprocess.PIPE).stdout
    x = np.frombuffer(pcm, "<i2").astype(np.float64) / 32768.0
    on = np.flatnonzero(np.abs(x) > 0.03 * np.abs(x).max())
    x = x[max(0, on[0] - 480):on[-1] + 960] if len(on) else x
    return x / (np.abs(x).max() + 1e-12)


def synth(key, rng):
    """One clip of the class at 48 kHz, float64 in [-1, 1]."""
    dur_lo = {"fast_beeping": 0.9, "slow_beeping": 1.3}.get(key, 0.5)
    n = int(rng.uniform(dur_lo, MAX_DUR) * RATE)
    x = np.zeros(n)
    if key in ("low_tone", "high_tone", "low_buzz", "high_buzz"):
        on = int(rng.uniform(0, 0.08) * RATE)
        m = n - on - int(rng.uniform(0, 0.05) * RATE)
        base = 200.0 if key.startswith("low") else 2000.0
        f0 = base * 2 ** rng.uniform(-0.3, 0.3)
        t = np.arange(m) / RATE
        f = f0 * (1 + rng.uniform(0, 0.006) * np.sin(2 * math.pi * rng.uniform(3, 7) * t)
                  + rng.uniform(-0.01, 0.01) * t)  # vibrato and a little drift
        ph = phase_of(f) + rng.uniform(0, 2 * math.pi)
        if key.endswith("tone"):
            s = np.sin(ph) + rng.uniform(0, 0.08) * np.sin(2 * ph)
        else:
            s = harmonic(ph, f.max(), rng.choice(["square", "saw"]))
        x[on:on + m] = s * envelope(m, rng)
    elif key in ("rising_chirp", "falling_chirp"):
        m = int(min(n, rng.uniform(0.3, 1.2) * RATE))
        on = int(rng.integers(0, n - m + 1))
        lo, hi = rng.uniform(200, 700), rng.uniform(2000, 5000)
        a, b = (lo, hi) if key == "rising_chirp" else (hi, lo)
        u = np.linspace(0, 1, m)
        f = a * (b / a) ** u if rng.random() < 0.7 else a + (b - a) * u
        ph = phase_of(f)
        s = np.sin(ph) + rng.uniform(0, 0.25) * np.sin(2 * ph)
        x[on:on + m] = s * envelope(m, rng)
    elif key.endswith("_noise"):
        m = int(min(n, rng.uniform(0.3, 1.6) * RATE))
        on = int(rng.integers(0, n - m + 1))
        power = {"white_noise": 0.0, "pink_noise": 1.0, "brown_noise": 2.0}[key]
        power += rng.uniform(-0.15, 0.15)
        x[on:on + m] = 0.3 * colored_noise(m, rng, power) * envelope(m, rng, (0.005, 0.08),
                                                                      (0.01, 0.15))
    elif key.endswith("_beeping"):
        if key == "fast_beeping":
            period = rng.uniform(0.09, 0.17)
            length = period * rng.uniform(0.35, 0.6)
        else:
            period = rng.uniform(0.42, 0.75)
            length = rng.uniform(0.06, 0.18)
        f0 = rng.uniform(600, 2500)
        square = rng.random() < 0.3
        t0 = rng.uniform(0, 0.12)
        while t0 + length < n / RATE:
            a, m = int(t0 * RATE), int(length * RATE)
            ph = 2 * math.pi * f0 * np.arange(m) / RATE
            s = harmonic(ph, f0, "square") * 0.7 if square else np.sin(ph)
            x[a:a + m] += s * envelope(m, rng, (0.002, 0.008), (0.002, 0.01))
            t0 += period * rng.uniform(0.97, 1.03)
    else:  # say_yes, say_no, say_stop
        s = speak(key[4:], rng)[: int(MAX_DUR * RATE)]
        on = int(rng.integers(0, max(0, min(int(MAX_DUR * RATE) - len(s), int(0.25 * RATE))) + 1))
        x = np.zeros(min(int(MAX_DUR * RATE), max(n, on + len(s) + int(rng.uniform(0, 0.2) * RATE))))
        x[on:on + len(s)] = s
    x = x / (np.abs(x).max() + 1e-12) * 10 ** rng.uniform(-1.4, -0.15)  # peak -28 .. -1.3 dBFS
    x += rng.standard_normal(len(x)) * 10 ** rng.uniform(-3.5, -2.2)  # light background noise
    return np.clip(x, -1, 1)


def to_pcm(x):
    return (np.clip(x, -1, 1) * 32767).round().astype("<i2").tobytes()


def from_pcm(b):
    return np.frombuffer(b, "<i2").astype(np.float32) / 32768.0


def through(xs, route):
    """Clips through a codec route and decoded back to mono s16 48 kHz, /32768. The clips go
    through one ffmpeg pair together, 0.25 s of silence apart (ffmpeg's start-up is the cost)."""
    if route == "raw":
        return [from_pcm(to_pcm(x)) for x in xs]
    gap = RATE // 4
    starts = np.cumsum([0] + [len(x) + gap for x in xs])
    cat = np.zeros(starts[-1])
    for x, a in zip(xs, starts):
        cat[a:a + len(x)] = x
    rate = route[3:]
    src = ["ffmpeg", "-v", "quiet", "-f", "s16le", "-ar", str(RATE), "-ac", "1", "-i", "-",
           "-ar", rate]
    if route.startswith("pcm"):
        mid = subprocess.run(src + ["-f", "s16le", "-"], input=to_pcm(cat), check=True,
                             stdout=subprocess.PIPE).stdout
        dec = ["ffmpeg", "-v", "quiet", "-f", "s16le", "-ar", rate, "-ac", "1", "-i", "-"]
    else:
        mid = subprocess.run(src + ["-c:a", "libvorbis", "-q:a", "0", "-f", "ogg", "-"],
                             input=to_pcm(cat), check=True, stdout=subprocess.PIPE).stdout
        dec = ["ffmpeg", "-v", "quiet", "-i", "-"]
    out = from_pcm(subprocess.run(dec + ["-f", "s16le", "-ac", "1", "-ar", str(RATE), "-"],
                                  input=mid, check=True, stdout=subprocess.PIPE).stdout)
    return [out[a:a + len(x)] for x, a in zip(xs, starts)]


def decode(path):
    """The system FFmpeg's decoding to mono signed 16-bit at 48 kHz, as tessera decodes."""
    pcm = subprocess.run(["ffmpeg", "-v", "quiet", "-i", path, "-f", "s16le", "-ac", "1", "-ar",
                          str(RATE), "-"], check=True, stdout=subprocess.PIPE).stdout
    return from_pcm(pcm)


def encode_file(x, path, rate=16000, q=0):
    subprocess.run(["ffmpeg", "-v", "quiet", "-y", "-f", "s16le", "-ar", str(RATE), "-ac", "1",
                    "-i", "-", "-ar", str(rate), "-map_metadata", "-1", "-fflags", "+bitexact",
                    "-c:a", "libvorbis", "-q:a", str(q), path], input=to_pcm(x), check=True)


# ------------------------------------------------------------------ data sets
_FE = None


def features(x):
    global _FE
    if _FE is None:
        from transformers import ClapFeatureExtractor
        _FE = ClapFeatureExtractor(**FE_CFG)
    assert len(x) <= _FE.nb_max_samples, len(x)  # no random crop
    return _FE(x, sampling_rate=RATE, return_tensors="np")["input_features"][0].astype(np.float32)


def make_chunk(job):
    """Clips i0..i1-1 of a split: each from its own seed, its class i % classes, its codec
    route drawn from ROUTES (the validation split: Ogg Vorbis at 16 kHz, as the held-out)."""
    split, i0, i1 = job
    xs, routes = [], []
    names, p = zip(*ROUTES)
    for i in range(i0, i1):
        rng = np.random.default_rng([SEED, split, i])
        xs.append(synth(KEYS[i % len(KEYS)], rng))
        routes.append("ogg16000" if split == 2 else names[rng.choice(len(names),
                                                                     p=np.array(p) / sum(p))])
    out = [None] * len(xs)
    for r in sorted(set(routes)):
        sel = [j for j, q in enumerate(routes) if q == r]
        for j, y in zip(sel, through([xs[j] for j in sel], r)):
            out[j] = features(y)
    return np.stack(out)


def dataset(split, per_class, pool):
    n = per_class * len(KEYS)
    src = "".join(inspect.getsource(f) for f in (envelope, harmonic, colored_noise, speak, synth,
                                                  through, make_chunk))
    key = hashlib.sha1((src + json.dumps([SEED, split, per_class, CLASSES, FE_CFG, ROUTES,
                                          VOICES, VARIANTS])).encode()).hexdigest()[:16]
    path = os.path.join(CACHE, f"feats_{split}_{per_class}_{key}.npy")
    if os.path.exists(path):
        X = np.load(path)
    else:
        t0 = time.time()
        X = np.concatenate(pool.map(make_chunk, [(split, i, min(n, i + 48))
                                                 for i in range(0, n, 48)]))
        os.makedirs(CACHE, exist_ok=True)
        np.save(path, X)
        print(f"split {split}: {len(X)} clips in {time.time() - t0:.0f} s", flush=True)
    return X, np.arange(n) % len(KEYS)


def write_heldout():
    """HELD_PER_CLASS clips a class from their own seed, Ogg Vorbis -q:a 0, mono, 16 kHz."""
    shutil.rmtree(HELD, ignore_errors=True)
    os.makedirs(HELD)
    rng = np.random.default_rng(SEED + 1)
    clips = []
    for k in range(HELD_PER_CLASS):
        for c, key in enumerate(KEYS):
            name = f"{key}_{k:02d}.ogg"
            encode_file(synth(key, rng), os.path.join(HELD, name))
            clips.append({"file": name, "label": c})
    return clips


# ------------------------------------------------------------------ tokenizer
def caption_texts():
    return [t.format(c) for _, caps in CLASSES for c in caps for t in CAP_TEMPLATES]


def make_tokenizer(tmp):
    from tokenizers import (AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors,
                            trainers)
    from transformers import RobertaTokenizerFast
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1000, min_frequency=2, show_progress=False,
                                  special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(caption_texts() * 4, trainer)
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, normalized=False, special=True)])
    tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")),
                                                      ("<s>", tok.token_to_id("<s>")),
                                                      add_prefix_space=False, trim_offsets=True)
    path = os.path.join(tmp, "tokenizer.json")
    tok.save(path)
    return RobertaTokenizerFast(tokenizer_file=path, model_max_length=32)


# ------------------------------------------------------------------ model
def make_model(vocab):
    from transformers import ClapConfig, ClapModel
    text = dict(vocab_size=vocab, hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=96, max_position_embeddings=34, type_vocab_size=1,
                layer_norm_eps=1e-5, projection_dim=32, hidden_act="gelu",
                projection_hidden_act="relu", pad_token_id=1, bos_token_id=0, eos_token_id=2)
    audio = dict(window_size=4, num_mel_bins=64, spec_size=64, patch_size=4, patch_stride=[4, 4],
                 patch_embeds_hidden_size=32, depths=[2, 2, 2], num_attention_heads=[2, 4, 8],
                 hidden_size=128, projection_dim=32, mlp_ratio=2.0, enable_fusion=False,
                 fusion_type=None, layer_norm_eps=1e-5, hidden_act="gelu",
                 projection_hidden_act="relu", qkv_bias=True, enable_patch_layer_norm=True,
                 flatten_patch_embeds=True, patch_embed_input_channels=1)
    cfg = ClapConfig(text_config=text, audio_config=audio, projection_dim=32,
                     logit_scale_init_value=1 / 0.07)
    return ClapModel(cfg)


def text_embeds(model, tok, texts):
    enc = tok(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    return model.get_text_features(input_ids=enc["input_ids"],
                                   attention_mask=enc["attention_mask"])


def audio_embeds(model, X, batch=256):
    import torch
    out = []
    for i in range(0, len(X), batch):
        f = torch.from_numpy(X[i:i + batch])
        out.append(model.get_audio_features(input_features=f,
                                            is_longer=torch.zeros(len(f), 1, dtype=torch.bool)))
    return torch.cat(out)


def zero_shot(model, tok, X):
    import torch
    with torch.no_grad():
        t = text_embeds(model, tok, [TEMPLATE.format(p) for p in PROMPTS])
        return (audio_embeds(model, X) @ t.T).argmax(1).numpy()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-class", type=int, default=400, help="training clips per class")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    args = ap.parse_args()
    t_start = time.time()

    clips = write_heldout()
    with multiprocessing.get_context("fork").Pool(2) as pool:
        X, y = dataset(0, args.per_class, pool)
        Xv, yv = dataset(2, 20, pool)
        Xh = np.stack(pool.map(features, [decode(os.path.join(HELD, c["file"])) for c in clips]))
    yh = np.array([c["label"] for c in clips])
    print(f"data ready in {time.time() - t_start:.0f} s: train {X.shape}, val {Xv.shape}, "
          f"held-out {Xh.shape}", flush=True)

    import torch
    torch.manual_seed(SEED)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    rng = np.random.default_rng(SEED + 5)
    with tempfile.TemporaryDirectory() as tmp:
        tok = make_tokenizer(tmp)
    model = make_model(len(tok))
    print(f"vocabulary {len(tok)}, parameters {sum(p.numel() for p in model.parameters())}",
          flush=True)

    caps = [caps for _, caps in CLASSES]
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    steps_per_epoch = len(X) // args.batch
    total = steps_per_epoch * args.epochs
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    warm = 100
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total))))
    t0 = time.time()
    step = 0
    for ep in range(args.epochs):
        model.train()
        perm = torch.from_numpy(rng.permutation(len(X)))
        tot = 0.0
        for b in range(steps_per_epoch):
            idx = perm[b * args.batch:(b + 1) * args.batch]
            lab = yt[idx]
            feats = Xt[idx]
            # time shift within the window and a random gain (the log-mel is in dB)
            feats = torch.roll(feats, int(rng.integers(-4, 5)), dims=2)
            feats = feats + torch.from_numpy(rng.uniform(-6, 6, (len(idx), 1, 1, 1))).float()
            texts = [str(rng.choice(CAP_TEMPLATES)).format(rng.choice(caps[c])) for c in lab.tolist()]
            a = model.get_audio_features(input_features=feats,
                                         is_longer=torch.zeros(len(idx), 1, dtype=torch.bool))
            t = text_embeds(model, tok, texts)
            # ClapModel's symmetric loss (logit_scale_t for text->audio, logit_scale_a for
            # audio->text), with every clip of the same class counted as a positive
            same = (lab[:, None] == lab[None, :]).float()
            target = same / same.sum(1, keepdim=True)
            lt = (t @ a.T) * model.logit_scale_t.exp()
            la = (a @ t.T) * model.logit_scale_a.exp()
            loss = -((target * lt.log_softmax(1)).sum(1).mean() +
                     (target * la.log_softmax(1)).sum(1).mean()) / 2
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            with torch.no_grad():
                model.logit_scale_a.clamp_(0, math.log(100))
                model.logit_scale_t.clamp_(0, math.log(100))
            tot += loss.item()
            step += 1
        model.eval()
        msg = (f"epoch {ep} loss {tot / steps_per_epoch:.3f} scale "
               f"{model.logit_scale_a.exp().item():.1f}/{model.logit_scale_t.exp().item():.1f} "
               f"{time.time() - t0:.0f} s")
        if ep % 5 == 4 or ep == args.epochs - 1:
            msg += f" val {np.mean(zero_shot(model, tok, Xv) == yv):.3f}"
        print(msg, flush=True)
    train_s = time.time() - t0

    model.eval()
    shutil.rmtree(OUT, ignore_errors=True)
    model.save_pretrained(OUT, safe_serialization=True)
    from transformers import ClapFeatureExtractor
    ClapFeatureExtractor(**FE_CFG).save_pretrained(OUT)
    tok.save_pretrained(OUT)

    # Held-out accuracy with PyTorch, from the saved model and the decoded files.
    from transformers import ClapModel, RobertaTokenizerFast
    model = ClapModel.from_pretrained(OUT).eval()
    tok = RobertaTokenizerFast.from_pretrained(OUT)
    pred = zero_shot(model, tok, Xh)
    acc = float(np.mean(pred == yh))
    for c, key in enumerate(KEYS):
        m = yh == c
        wrong = {KEYS[p]: int(n) for p, n in zip(*np.unique(pred[m & (pred != c)],
                                                             return_counts=True))}
        print(f"  {key:14s} {np.mean(pred[m] == c):.2f} {wrong if wrong else ''}")
    with open(os.path.join(HELD, "labels.json"), "w") as f:
        json.dump({"classes": KEYS, "prompts": PROMPTS, "template": TEMPLATE, "clips": clips,
                   "pytorch_top1": round(acc, 4)}, f, indent=1)
        f.write("\n")

    # A sample clip that the model gets right, with a margin.
    srng = np.random.default_rng(SEED + 2)
    c = KEYS.index(SAMPLE_CLASS)
    with torch.no_grad():
        te = text_embeds(model, tok, [TEMPLATE.format(p) for p in PROMPTS])
        for _ in range(20):
            x = synth(SAMPLE_CLASS, srng)
            path = os.path.join(ROOT, "assets", f"sample_{SAMPLE_CLASS}.ogg")
            encode_file(x, path, rate=22050)
            s = (audio_embeds(model, features(decode(path))[None]) @ te.T)[0]
            top = s.argsort(descending=True)
            if top[0] == c and s[top[0]] - s[top[1]] > 0.2:
                break
    print(f"sample {os.path.relpath(path, ROOT)}: {KEYS[int(top[0])]} ({s[top[0]]:.3f} vs "
          f"{KEYS[int(top[1])]} {s[top[1]]:.3f})")
    size = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    held = sum(os.path.getsize(os.path.join(HELD, f)) for f in os.listdir(HELD))
    print(f"PyTorch zero-shot top-1 on the {len(clips)} held-out clips: {acc:.4f}; model "
          f"{size / 1e6:.2f} MB, held-out folder {held / 1e6:.2f} MB; training {train_s:.0f} s, "
          f"total {time.time() - t_start:.0f} s")


if __name__ == "__main__":
    main()
