#!/usr/bin/env python3
"""CLAP (transformers' ClapModel and ClapFeatureExtractor) on tiny random
models, for tessera's tests.

Writes:
  tests/fixtures/clap-clips/      generated clips: sine sweeps, chirps and
                                  noise of 3, 10 and 25 s (and 0.05 s) at 16,
                                  44.1 and 48 kHz, mono and stereo, in WAV,
                                  FLAC, MP3 and Ogg (ffmpeg encodes them)
  tests/fixtures/clap-tokenizer/  a byte-level BPE trained here with RoBERTa's
                                  special tokens and post-processor, loaded by
                                  RobertaTokenizerFast, and corpus.jsonl: the
                                  ids RobertaTokenizerFast gives (special tokens
                                  added) for the 2100 strings of
                                  tests/fixtures/tokenizer_corpus.jsonl plus
                                  RoBERTa-specific ones
  tests/fixtures/models/clap-tiny-{a,b,c}/
      a  unfused, spec_size 256 and the feature extractor of
         laion/clap-htsat-unfused (rand_trunc, slaney mel, 50..14000 Hz)
      b  fused (aff_2d), the extractor of laion/clap-htsat-fused (fusion, htk mel)
      c  unfused, spec_size 192 (freq_ratio 3), hop 960, three stages: the
         stage of 12x12 tokens is padded to the window (8), the shifted
         windows' mask covers the padding
    with expected/:
      features_<clip>.npy   ClapFeatureExtractor's input_features of the
                            clip's first window (rows of FEATURE_ROWS only)
      audio_embeds.npy      (modes x clips, P): get_audio_features of each
                            clip for each window mode in modes.json
      text_embeds.npy       get_text_features of texts.json
      logits_per_audio.npy  the "first" mode's audio embeddings against the
                            texts, times exp(logit_scale_a)
      clips.json, modes.json, texts.json

Audio is decoded as tessera decodes it: mono signed 16-bit resampled to 48
kHz by libswresample, here through the system's ffmpeg command (the same
FFmpeg libraries tessera links), so features match without a resampler
difference. PyAV (faster_whisper.audio.decode_audio(sampling_rate=48000))
bundles another FFmpeg whose resampling and down-mixing round some samples
one step of 1/32768 the other way; expected/resampler.json records how far
that moves the reference's own features and embeddings (the bound the
README states).

Window modes (tessera's --audio-window), each computed with the reference:
  first   the first 10 s: the extractor on waveform[:max_length], which
          takes the deterministic branch (no crop at exactly max_length).
          For a clip of 10 s or less this IS the reference's own output.
  mean    consecutive 10 s windows starting at k*max_length, the last one
          ending at the clip's end (so every window is full); each window
          through the reference; the mean of the normalised embeddings,
          normalised again. Equals the reference for clips of 10 s or less.
  fusion  (fused checkpoints) the reference's fusion truncation over the
          whole clip with its three random chunk starts replaced by the
          middle of each third (np.random.choice patched): tessera's
          deterministic choice. For clips of 10 s or less it equals the
          reference (a lone clip is always "longer", 4 copies of one mel).

    pip install torch transformers tokenizers av faster-whisper
    python3 tests/reference/make_clap_fixtures.py
"""
import json
import math
import os
import random
import shutil
import subprocess
import tempfile

import numpy as np
import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, RobertaTokenizerFast

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "fixtures")
CLIPS = os.path.join(FIX, "clap-clips")
TOKDIR = os.path.join(FIX, "clap-tokenizer")
SEED = 20261207
RATE = 48000
FEATURE_ROWS = [0, 1, 2, 3, 100, 255, 256, 499, 500, 501, 640, 900, 997, 998, 999, 1000]

# name, seconds, source rate, channels, format, kind
CLIP_SPECS = [
    ("sweep3", 3.0, 16000, 1, "wav", "sweep"),
    ("noise3", 3.0, 48000, 2, "ogg", "noise"),
    ("chirp10", 10.0, 44100, 2, "mp3", "chirp"),
    ("sine10", 10.0, 48000, 1, "flac", "sine"),
    ("sweep25", 25.0, 16000, 1, "mp3", "sweep"),
    ("mix25", 25.0, 22050, 1, "ogg", "mix"),
    ("beep14", 14.2, 44100, 1, "flac", "beeps"),
    ("short", 0.05, 48000, 1, "wav", "sine"),
]

TEXTS = ["", "This is a sound of a dog.", "This is a sound of rain.", "a rising tone",
         "white noise", "beep beep beep", "A LOUD SIREN!!", "naïve café 😀",
         "the sound of " + "very " * 40 + "long text"]


def run(cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def synth(kind, secs, rate, ch, rng):
    n = max(1, int(round(secs * rate)))
    t = np.arange(n) / rate
    if kind == "sweep":  # log sweep 100 Hz .. 6 kHz
        f0, f1 = 100.0, min(6000.0, rate / 2.5)
        k = math.log(f1 / f0) / secs
        x = 0.4 * np.sin(2 * math.pi * f0 * (np.exp(k * t) - 1) / k)
    elif kind == "chirp":  # linear chirps up and down
        ph = 2 * math.pi * (300 * t + 400 * np.abs((t % 2.0) - 1.0) * t)
        x = 0.3 * np.sin(ph)
    elif kind == "sine":
        x = 0.2 * np.sin(2 * math.pi * 440 * t) + 0.05 * np.sin(2 * math.pi * 1320 * t)
    elif kind == "noise":
        x = 0.25 * rng.standard_normal(n)
    elif kind == "beeps":
        x = 0.3 * np.sin(2 * math.pi * 880 * t) * ((t * 4) % 1.0 < 0.3)
    else:  # mix: a tone over brown-ish noise
        w = np.cumsum(rng.standard_normal(n))
        w -= np.convolve(w, np.ones(501) / 501, mode="same")
        x = 0.2 * np.sin(2 * math.pi * 523 * t) + 0.02 * w / (np.abs(w).max() + 1e-9)
    x = np.clip(x, -1, 1)
    if ch == 2:
        x = np.stack([x, np.roll(x, 37) * 0.8], 1)
    else:
        x = x[:, None]
    return (x * 32767).astype("<i2")


def write_wav(path, pcm, rate):
    import wave
    with wave.open(path, "wb") as w:
        w.setnchannels(pcm.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def make_clips():
    os.makedirs(CLIPS, exist_ok=True)
    rng = np.random.default_rng(SEED)
    names = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, secs, rate, ch, fmt, kind in CLIP_SPECS:
            raw = os.path.join(tmp, name + ".wav")
            write_wav(raw, synth(kind, secs, rate, ch, rng), rate)
            out = os.path.join(CLIPS, f"{name}.{fmt}")
            enc = {"wav": ["-c:a", "pcm_s16le"], "flac": ["-c:a", "flac"],
                   "mp3": ["-c:a", "libmp3lame", "-b:a", "32k"],
                   "ogg": ["-c:a", "libvorbis", "-q:a", "0"]}[fmt]
            run(["ffmpeg", "-y", "-i", raw, "-map_metadata", "-1", "-fflags", "+bitexact",
                 *enc, out])
            names.append(f"{name}.{fmt}")
    return names


def corpus_texts():
    texts = []
    with open(os.path.join(FIX, "tokenizer_corpus.jsonl"), encoding="utf-8") as f:
        for line in f:
            texts.append(json.loads(line)["text"])
    texts += ["<s>", "</s>", "<s>hello</s>", "<mask>", "a <mask> b", "x<mask>y", "  <mask>",
              "<pad><unk>", "Hello world", " Hello world", "hello  world", "tab\tsep",
              "line\nbreak\r\n", "It's 5 o'clock", "I'm you're he'll we've they'd",
              "'S 'T 'RE", "😀😀😀", "Ω≈ç√∫˜µ≤≥÷", "日本語のテキスト", "\u00a0nbsp", "a" * 600,
              "The dog barks. " * 60]
    return texts


def make_tokenizer():
    os.makedirs(TOKDIR, exist_ok=True)
    texts = corpus_texts()
    rnd = random.Random(SEED)
    train = texts + [t for t in TEXTS] + ["This is a sound of %s." % w for w in
                                          ["a dog", "rain", "a car", "birds", "music"]] * 20
    rnd.shuffle(train)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, min_frequency=2, show_progress=False,
                                  special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(train, trainer)
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, normalized=False, special=True)])
    tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")),
                                                      ("<s>", tok.token_to_id("<s>")),
                                                      add_prefix_space=False, trim_offsets=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "tokenizer.json")
        tok.save(path)
        fast = RobertaTokenizerFast(tokenizer_file=path, model_max_length=512)
        fast.save_pretrained(TOKDIR)
    fast = RobertaTokenizerFast.from_pretrained(TOKDIR)
    with open(os.path.join(TOKDIR, "corpus.jsonl"), "w", encoding="utf-8") as f:
        for t in texts:
            ids = fast(t, truncation=True, max_length=512)["input_ids"]
            f.write(json.dumps({"text": t, "ids": ids}, ensure_ascii=False) + "\n")
    print("tokenizer: %d tokens, %d corpus strings" % (len(fast), len(texts)))
    return fast


def tiny_config(variant, vocab):
    text = dict(vocab_size=vocab, hidden_size=20, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=36, max_position_embeddings=40, type_vocab_size=1,
                layer_norm_eps=1e-5, projection_dim=14, hidden_act="gelu",
                pad_token_id=1, bos_token_id=0, eos_token_id=2)
    audio = dict(window_size=8, num_mel_bins=64, spec_size=256, patch_size=4, patch_stride=[4, 4],
                 patch_embeds_hidden_size=6, depths=[2, 1, 1, 2], num_attention_heads=[2, 3, 4, 6],
                 hidden_size=48, projection_dim=14, mlp_ratio=2.5, enable_fusion=False,
                 fusion_type=None, aff_block_r=2, layer_norm_eps=1e-5, hidden_act="gelu")
    fe = dict(feature_size=64, sampling_rate=48000, hop_length=480, max_length_s=10,
              fft_window_size=1024, frequency_min=50, frequency_max=14000, padding="repeatpad",
              truncation="rand_trunc")
    if variant == "b":
        audio.update(enable_fusion=True, fusion_type="aff_2d")
        fe.update(truncation="fusion", frequency_min=0)
    if variant == "c":
        audio.update(spec_size=192, depths=[2, 2, 2], num_attention_heads=[2, 3, 4],
                     hidden_size=24, mlp_ratio=2.0)
        fe.update(hop_length=960)
    cfg = ClapConfig(text_config=text, audio_config=audio, projection_dim=14,
                     logit_scale_init_value=1 / 0.07)
    return cfg, fe


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("logit_scale_a") or name.endswith("logit_scale_t"):
                p.fill_(math.log(1 / 0.07) + (0.3 if name.endswith("_t") else -0.2))
            elif p.dim() == 1 and ("norm" in name.lower() or "LayerNorm" in name):
                if name.endswith("weight"):
                    p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
                else:
                    p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.25 * torch.randn(p.shape, generator=g))
        for name, b in model.named_buffers():
            mel = "encoder.batch_norm." in name  # the log-mel's: values near -40 dB
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * (3 if mel else 0.3) - (30 if mel else 0))
            elif name.endswith("running_var"):
                b.copy_((50 if mel else 0.5) + (30 if mel else 1) * torch.rand(b.shape, generator=g))


def decode(path):
    """The system FFmpeg's decoding to mono signed 16-bit at 48 kHz: the same
    libswresample that tessera links, so the samples are the same bits."""
    pcm = subprocess.run(["ffmpeg", "-v", "quiet", "-i", path, "-f", "s16le", "-ac", "1", "-ar",
                          str(RATE), "-"], check=True, stdout=subprocess.PIPE).stdout
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


def decode_pyav(path):
    from faster_whisper.audio import decode_audio
    return decode_audio(path, sampling_rate=RATE)


class Deterministic:
    """np.random.choice -> the middle of the range; np.random.randint -> 0."""

    def __enter__(self):
        self.choice, self.randint = np.random.choice, np.random.randint
        np.random.choice = lambda a: np.asarray(a)[len(a) // 2]
        np.random.randint = lambda lo, hi=None: 0
        return self

    def __exit__(self, *a):
        np.random.choice, np.random.randint = self.choice, self.randint


def audio_embed(model, fe, x, truncation=None):
    with Deterministic():
        f = fe(x, sampling_rate=RATE, return_tensors="np",
               **({"truncation": truncation} if truncation else {}))
    feats = torch.tensor(np.asarray(f["input_features"]), dtype=torch.float32)
    longer = torch.tensor(np.asarray(f["is_longer"]))
    with torch.no_grad():
        e = model.get_audio_features(input_features=feats, is_longer=longer)
    return e[0].numpy().astype(np.float64), np.asarray(f["input_features"])[0]


def windows(x, L):
    if len(x) <= L:
        return [x]
    n = -(-len(x) // L)
    return [x[k * L:(k + 1) * L] for k in range(n - 1)] + [x[len(x) - L:]]


def make_model(variant, tok, clips):
    out = os.path.join(FIX, "models", "clap-tiny-" + variant)
    shutil.rmtree(out, ignore_errors=True)
    cfg, fecfg = tiny_config(variant, len(tok))
    torch.manual_seed(SEED)
    model = ClapModel(cfg).eval()
    randomize(model, SEED + ord(variant))
    model.save_pretrained(out, safe_serialization=True)
    fe = ClapFeatureExtractor(**fecfg)
    fe.save_pretrained(out)
    tok.save_pretrained(out)
    exp = os.path.join(out, "expected")
    os.makedirs(exp)
    L = fe.nb_max_samples
    modes = ["first", "mean"] + (["fusion"] if cfg.audio_config.enable_fusion else [])
    embeds = []
    for mode in modes:
        for c in clips:
            x = decode(os.path.join(CLIPS, c))
            if mode == "first":
                e, feats = audio_embed(model, fe, x[:L])
                rows = [r for r in FEATURE_ROWS if r < feats.shape[1]]
                np.save(os.path.join(exp, "features_%s.npy" % c.split(".")[0]),
                        feats[:, rows, :].astype(np.float32))
            elif mode == "mean":
                acc = sum(audio_embed(model, fe, w)[0] for w in windows(x, L))
                e = acc / np.linalg.norm(acc)
            else:
                e = audio_embed(model, fe, x, truncation="fusion")[0]
            embeds.append(e.astype(np.float32))
    A = np.stack(embeds)
    np.save(os.path.join(exp, "audio_embeds.npy"), A)
    enc = tok(TEXTS, padding=True, truncation=True, max_length=cfg.text_config.max_position_embeddings - 2,
              return_tensors="pt")
    with torch.no_grad():
        T = model.get_text_features(input_ids=enc["input_ids"],
                                    attention_mask=enc["attention_mask"]).numpy()
    np.save(os.path.join(exp, "text_embeds.npy"), T.astype(np.float32))
    first = A[:len(clips)]
    lg = (torch.tensor(first) @ torch.tensor(T).T) * model.logit_scale_a.exp().detach()
    np.save(os.path.join(exp, "logits_per_audio.npy"), lg.numpy().astype(np.float32))
    # the reference itself under PyAV's decoding instead: the resampler's share
    fmax = emax = 0.0
    for i, c in enumerate(clips):
        x, y = decode(os.path.join(CLIPS, c)), decode_pyav(os.path.join(CLIPS, c))
        e1, f1 = audio_embed(model, fe, x[:L])
        e2, f2 = audio_embed(model, fe, y[:L])
        fmax = max(fmax, float(np.abs(f1 - f2).max()) if f1.shape == f2.shape else float("inf"))
        emax = max(emax, float(np.abs(e1 - e2).max()))
    json.dump({"pyav_vs_ffmpeg_feature_max_db": fmax, "pyav_vs_ffmpeg_embedding_max": emax},
              open(os.path.join(exp, "resampler.json"), "w"))
    json.dump(clips, open(os.path.join(exp, "clips.json"), "w"))
    json.dump(modes, open(os.path.join(exp, "modes.json"), "w"))
    json.dump({"texts": TEXTS, "input_ids": enc["input_ids"].tolist(), "rows": FEATURE_ROWS},
              open(os.path.join(exp, "texts.json"), "w", encoding="utf-8"), ensure_ascii=False)
    print("clap-tiny-%s: %d modes x %d clips, params %d" %
          (variant, len(modes), len(clips), sum(p.numel() for p in model.parameters())))


def main():
    clips = make_clips()
    tok = make_tokenizer()
    for v in "abc":
        make_model(v, tok, clips)


if __name__ == "__main__":
    main()
