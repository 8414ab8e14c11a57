#!/usr/bin/env python3
"""tessera's CLAP audio tower against transformers' ClapModel in one run, on
the same full-size random weights, clip and thread count.

It builds ClapModel(ClapConfig()) (the sizes of laion/clap-htsat-unfused:
HTSAT 4 stages of 96..768 wide, RoBERTa-base text) with random weights, saves
it in the HF layout (with the feature extractor of the unfused checkpoint and
the small RoBERTa tokenizer of the fixtures: the text tower is not timed),
times get_audio_features on the features of one 10 s clip at batch 1 and 8,
runs `tessera bench --model DIR` on the same directory, and prints clips per
second and the ratio. It also embeds the clip with both through the whole
path (file -> features -> embedding) and prints the largest difference.

    pip install torch transformers
    python3 tests/bench/peer_clap.py --tessera build/tessera --threads 2 --repeat 3

With --repeat N the two take turns N times and the medians are reported.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import wave

import numpy as np
import torch
from transformers import ClapConfig, ClapFeatureExtractor, ClapModel

HERE = os.path.dirname(os.path.abspath(__file__))
TOK = os.path.join(HERE, "..", "fixtures", "clap-tokenizer")


def build(out):
    torch.manual_seed(0)
    model = ClapModel(ClapConfig()).eval()
    with torch.no_grad():  # batch norm statistics in a log-mel's range
        bn = model.audio_model.audio_encoder.batch_norm
        bn.running_mean.fill_(-40.0)
        bn.running_var.fill_(200.0)
    model.save_pretrained(out, safe_serialization=True)
    fe = ClapFeatureExtractor(frequency_min=50, truncation="rand_trunc")
    fe.save_pretrained(out)
    for f in os.listdir(TOK):
        if f != "corpus.jsonl":
            shutil.copy(os.path.join(TOK, f), out)
    return model, fe


def clip(path, rate=48000):
    t = np.arange(rate * 10) / rate
    rng = np.random.default_rng(0)
    x = 0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t) + 0.05 * rng.standard_normal(t.size)
    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return pcm.astype(np.float32) / 32768.0


def time_torch(model, feats, batch, seconds):
    x = torch.tensor(np.repeat(feats[None], batch, 0), dtype=torch.float32)
    longer = torch.zeros(batch, 1, dtype=torch.bool)
    with torch.no_grad():
        model.get_audio_features(input_features=x, is_longer=longer)
        n, t0 = 0, time.perf_counter()
        while n < 2 or time.perf_counter() - t0 < seconds:
            model.get_audio_features(input_features=x, is_longer=longer)
            n += 1
    return batch * n / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tessera", default="build/tessera")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--batches", default="1,8")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    batches = [int(b) for b in a.batches.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        d = os.path.join(tmp, "clap")
        model, fe = build(d)
        wav = os.path.join(tmp, "chirp.wav")
        x = clip(wav)
        feats = np.asarray(fe(x, sampling_rate=48000, return_tensors="np")["input_features"])[0]
        env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
        # parity through the whole path
        out = subprocess.run([a.tessera, "embed", "--model", d, "--audio", wav], env=env,
                             check=True, capture_output=True, text=True).stdout
        ours = np.array(json.loads(out.splitlines()[0])["embedding"])
        with torch.no_grad():
            ref = model.get_audio_features(input_features=torch.tensor(feats[None]).float(),
                                           is_longer=torch.zeros(1, 1, dtype=torch.bool))[0]
        print("parity, full-size clap-htsat: max |tessera - transformers| = %.2e" %
              float(np.abs(ours - ref.numpy()).max()))
        runs = {b: ([], []) for b in batches}
        for r in range(a.repeat):
            res = json.loads(subprocess.run(
                [a.tessera, "bench", "--model", d, "--batches", a.batches, "--seconds",
                 str(a.seconds), "--json"], env=env, check=True, capture_output=True,
                text=True).stdout)
            for e in res["audio"]:
                runs[e["batch"]][0].append(e["clips_per_second"])
            for b in batches:
                runs[b][1].append(time_torch(model, feats, b, a.seconds))
        print("device: %s; %d threads; medians of %d turns" % (res["device"], a.threads, a.repeat))
        print("%6s %16s %16s %8s" % ("batch", "tessera clips/s", "torch clips/s", "ratio"))
        for b in batches:
            t, p = statistics.median(runs[b][0]), statistics.median(runs[b][1])
            print("%6d %16.2f %16.2f %7.2fx" % (b, t, p, t / p))


if __name__ == "__main__":
    main()
