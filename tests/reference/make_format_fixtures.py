#!/usr/bin/env python3
"""WebP, GIF, TIFF and BMP images of several kinds, written by Pillow from a
61x47 crop of tests/fixtures/images/chelsea.jpg (a 37x29 one for the RGBA
kinds), and what Pillow decodes them to with Image.open(f).convert("RGB"),
saved losslessly as PNG beside each (NAME.expected.png). test_images decodes
each file with tessera and compares every byte.

    python tests/reference/make_format_fixtures.py  # Pillow 13
"""
import json
import os

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fixtures", "images", "formats")


def main():
    os.makedirs(OUT, exist_ok=True)
    src = Image.open(os.path.join(ROOT, "fixtures", "images", "chelsea.jpg")).convert("RGB")
    rgb = src.crop((100, 60, 161, 107))
    small = src.crop((200, 100, 237, 129))
    a = np.array(small)
    alpha = np.tile(np.linspace(0, 255, small.width).astype(np.uint8), (small.height, 1))
    rgba = Image.fromarray(np.dstack([a, alpha]), "RGBA")
    pal = rgb.quantize(colors=37)
    grey = rgb.convert("L")
    cases = [
        ("lossless.webp", rgb, dict(lossless=True)),
        ("lossy.webp", rgb, dict(quality=80)),
        ("alpha.webp", rgba, dict(lossless=True)),
        ("palette.gif", pal, {}),
        ("interlaced.gif", pal, dict(interlace=True)),
        ("grey.gif", grey, {}),
        ("rgb.tiff", rgb, {}),
        ("lzw.tiff", rgb, dict(compression="tiff_lzw")),
        ("deflate.tiff", rgb, dict(compression="tiff_adobe_deflate")),
        ("grey.tiff", grey, {}),
        ("palette.tiff", pal, {}),
        ("rgb24.bmp", rgb, {}),
        ("palette8.bmp", pal, {}),
        ("grey8.bmp", grey, {}),
        ("bilevel.bmp", rgb.convert("1"), {}),
        ("rgba32.bmp", rgba, {}),
    ]
    manifest = []
    for name, im, kw in cases:
        path = os.path.join(OUT, name)
        im.save(path, **kw)
        exp = Image.open(path).convert("RGB")
        exp.save(os.path.join(OUT, name + ".expected.png"))
        manifest.append({"image": name, "expected": name + ".expected.png",
                         "mode": Image.open(path).mode})
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(len(manifest), "cases")


if __name__ == "__main__":
    main()
