"""Writes vad_cases.json: faster-whisper 1.2.1's get_speech_timestamps and
SpeechTimestampsMap on random frame probabilities, for test_audio to check
tessera's state machine, padding and time mapping against, case by case.

    pip install faster-whisper==1.2.1   # numpy 2; onnxruntime is not needed
    python tests/audio/make_vad_cases.py > tests/audio/vad_cases.json

Silero VAD is replaced by a stub that returns the case's probabilities, so
only the code around the network runs."""
import json
import math
import random

import numpy as np
from faster_whisper import vad
from faster_whisper.vad import SpeechTimestampsMap, VadOptions, get_speech_timestamps


# The probabilities a case may hold, one letter each: multiples of 1/32, then
# float32 values at or next to the thresholds the cases use.
SPECIAL = [0.35, 0.5 - 0.15, 0.3, 0.2, 0.01, 0.45, 0.6, 0.4]
ALPHABET = [np.float32(k / 32) for k in range(33)] + [np.float32(v) for v in SPECIAL]
ALPHABET += [np.nextafter(np.float32(v), np.float32(0)) for v in (0.5, 0.35, 0.3, 0.6)]
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def probs_for(rng, n):
    """Runs of speech, silence and in-between values, with exact threshold hits."""
    out = []
    while len(out) < n:
        kind = rng.choice(["speech", "silence", "between", "exact", "flicker"])
        run = rng.choice([1, 2, 3, 5, 10, 30, 60, 100, 200])
        for _ in range(run):
            if kind == "speech":
                k = rng.randrange(16, 33)
            elif kind == "silence":
                k = rng.randrange(0, 11)
            elif kind == "between":
                k = rng.randrange(9, 18)
            elif kind == "exact":
                k = rng.randrange(33, len(ALPHABET))
            else:
                k = rng.choice([1, 31])
            out.append(k)
    out = out[:n]
    return np.array([ALPHABET[k] for k in out], dtype=np.float32), "".join(LETTERS[k] for k in out)


def main():
    rng = random.Random(20240501)
    cases = []
    for i in range(100):
        total = rng.choice([0, 1, 511, 512, 513, 16000, rng.randrange(1, 1_000_000)])
        if i % 4 == 0:
            total = rng.randrange(100_000, 1_500_000)
        n = total // 512 + 1
        opts = {}
        if rng.random() < 0.7:
            opts["threshold"] = rng.choice([0.5, 0.3, 0.6, 0.45])
        if rng.random() < 0.3:
            opts["neg_threshold"] = rng.choice([0.2, 0.35, 0.4])
        if rng.random() < 0.5:
            opts["min_speech_duration_ms"] = rng.choice([0, 100, 250, 1000])
        if rng.random() < 0.5:
            opts["max_speech_duration_s"] = rng.choice([0.5, 1, 2, 5, 10, 30])
        if rng.random() < 0.7:
            opts["min_silence_duration_ms"] = rng.choice([0, 100, 300, 500, 1000, 2000])
        if rng.random() < 0.6:
            opts["speech_pad_ms"] = rng.choice([0, 30, 100, 400, 800])
        probs, letters = probs_for(rng, n)
        vad.get_vad_model = lambda p=probs: (lambda audio: p)
        speeches = get_speech_timestamps(np.zeros(total, np.float32), VadOptions(**opts))
        times = []
        if speeches and i % 3 == 0:
            m = SpeechTimestampsMap(speeches, 16000)
            collected = sum(s["end"] - s["start"] for s in speeches)
            ends = rng.sample(m.chunk_end_sample, min(4, len(speeches)))
            probe = [rng.uniform(-0.5, collected / 16000 + 1) for _ in range(8)]
            probe += [e / 16000 for e in ends] + [(e + 1) / 16000 for e in ends]
            probe += [(e - 1) / 16000 for e in ends] + [0.0]
            for t in probe:
                for is_end in (False, True):
                    times.append([t, is_end, m.get_chunk_index(t, is_end),
                                  m.get_original_time(t, is_end=is_end)])
        cases.append({
            "total": total,
            "options": opts,
            "probs": letters,
            "speech": [[s["start"], s["end"]] for s in speeches],
            "times": times,
        })
    json.dump({"faster_whisper": "1.2.1", "numpy": np.__version__,
               "alphabet": [float(v) for v in ALPHABET], "letters": LETTERS, "cases": cases},
              __import__("sys").stdout, separators=(",", ":"))


if __name__ == "__main__":
    main()
