#!/usr/bin/env python3
"""Builds the repositories that the stand-in hub (tests/cli/hub_server.c)
serves beside tests/fixtures/models/clip-tiny-a:

  tests/fixtures/hub/sharded/  clip-tiny-a's weights split into two shards
      with model.safetensors.index.json, as save_pretrained(max_shard_size=...)
      writes them, plus an extra fp16 variant (model.fp16-00001-of-00001
      .safetensors and model.safetensors.index.fp16.json) that a client
      reading the index must not fetch;
  tests/fixtures/hub/ct2/      a CTranslate2 repository as faster-whisper's
      are laid out: model.bin (the small CTranslate2 file that the fuzzer
      seeds from), config.json, vocabulary.json and preprocessor_config.json.

Only the standard library and numpy; run from the repository root."""
import json
import os
import shutil
import struct

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SRC = os.path.join(ROOT, "tests/fixtures/models/clip-tiny-a/model.safetensors")
OUT = os.path.join(ROOT, "tests/fixtures/hub")


def read_st(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", None)
    tensors = {}
    for name, t in header.items():
        a, b = t["data_offsets"]
        tensors[name] = (t["dtype"], t["shape"], data[a:b])
    return tensors, meta


def write_st(path, tensors, meta):
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        dtype, shape, raw = tensors[name]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if meta is not None:
        header["__metadata__"] = meta
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    tensors, meta = read_st(SRC)
    sharded = os.path.join(OUT, "sharded")
    shutil.rmtree(sharded, ignore_errors=True)
    os.makedirs(sharded)
    names = sorted(tensors)
    half = len(names) // 2
    parts = [names[:half], names[half:]]
    weight_map, total = {}, 0
    for i, part in enumerate(parts):
        fn = "model-%05d-of-%05d.safetensors" % (i + 1, len(parts))
        write_st(os.path.join(sharded, fn), {k: tensors[k] for k in part}, {"format": "pt"})
        for k in part:
            weight_map[k] = fn
            total += len(tensors[k][2])
    with open(os.path.join(sharded, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    # The extra variant: the same tensors in float16 (a few of them keep it small).
    few = sorted(names, key=lambda k: len(tensors[k][2]))[:4]
    fp16 = {}
    for k in few:
        dtype, shape, raw = tensors[k]
        a = np.frombuffer(raw, dtype=np.float32).astype(np.float16)
        fp16[k] = ("F16", shape, a.tobytes())
    vfn = "model.fp16-00001-of-00001.safetensors"
    write_st(os.path.join(sharded, vfn), fp16, {"format": "pt"})
    with open(os.path.join(sharded, "model.safetensors.index.fp16.json"), "w") as f:
        json.dump({"metadata": {"total_size": sum(len(v[2]) for v in fp16.values())},
                   "weight_map": {k: vfn for k in few}}, f, indent=2)

    ct2 = os.path.join(OUT, "ct2")
    shutil.rmtree(ct2, ignore_errors=True)
    os.makedirs(ct2)
    shutil.copy(os.path.join(ROOT, "tests/fixtures/whisper/seed-model.bin"),
                os.path.join(ct2, "model.bin"))
    with open(os.path.join(ct2, "config.json"), "w") as f:
        json.dump({"alignment_heads": [[1, 0]], "lang_ids": [], "suppress_ids": [220],
                   "suppress_ids_begin": [220, 50256]}, f, indent=2)
    with open(os.path.join(ct2, "vocabulary.json"), "w") as f:
        json.dump(["!", "\"", "#", "<|endoftext|>"], f)
    with open(os.path.join(ct2, "preprocessor_config.json"), "w") as f:
        json.dump({"feature_size": 80, "sampling_rate": 16000, "n_fft": 400,
                   "hop_length": 160, "chunk_length": 30}, f, indent=2)


if __name__ == "__main__":
    main()
