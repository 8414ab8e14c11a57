#!/usr/bin/env python3
"""Very thin images (3000x7, 7x3000, 4000x1, 1x2500; noise and a gradient)
and what transformers' CLIPImageProcessor makes of them under the pp_a and
pp_b configurations of tests/fixtures/pixels: the shorter side is resized to
the crop size, so the longer one becomes up to 100,000 pixels, then the
centre is cropped. Writes tests/fixtures/images/thin_*.png,
tests/fixtures/pixels/thin_*.npy and tests/fixtures/pixels/thin_manifest.json.

    python tests/reference/make_thin_fixtures.py  # transformers 4.57, Pillow 13
"""
import json
import os

import numpy as np
from PIL import Image
from transformers import CLIPImageProcessor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "fixtures")


def main():
    rng = np.random.default_rng(11)
    images = {
        "thin_wide_noise": rng.integers(0, 256, (7, 3000, 3), dtype=np.uint8),
        "thin_tall_noise": rng.integers(0, 256, (3000, 7, 3), dtype=np.uint8),
        "thin_line": np.repeat(np.linspace(0, 255, 4000).astype(np.uint8)[None, :, None], 3, 2),
        "thin_column": rng.integers(0, 256, (2500, 1, 3), dtype=np.uint8),
    }
    manifest = []
    for name, a in images.items():
        path = os.path.join(FIX, "images", name + ".png")
        Image.fromarray(np.ascontiguousarray(a)).save(path)
        for cfg in ("pp_a", "pp_b"):
            proc = CLIPImageProcessor.from_pretrained(os.path.join(FIX, "pixels", cfg))
            # channels_last: for 1-pixel-thin images transformers would guess channels first
            px = proc(images=Image.open(path), return_tensors="np",
                      input_data_format="channels_last")["pixel_values"][0]
            out = "thin_%s_%s.npy" % (cfg, name)
            np.save(os.path.join(FIX, "pixels", out), px.astype(np.float32))
            manifest.append({"config": cfg, "image": "images/%s.png" % name, "expected": out})
    with open(os.path.join(FIX, "pixels", "thin_manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(len(manifest), "cases")


if __name__ == "__main__":
    main()
