#!/usr/bin/env python3
"""JPEG re-compression as ImageNet-C does it with Pillow (im.save(f, "JPEG",
quality=q), then Image.open(f)), at the qualities of tessera eval's
--corruptions (25, 15, 7), on a 61x47 crop of chelsea.jpg (odd sizes, so the
chroma subsampling meets partial blocks). test_images compares tessera's
tsr_image_corrupt(TSR_CORRUPT_JPEG) with each NAME.expected.png.

    python tests/reference/make_corruption_fixtures.py  # Pillow
"""
import io
import json
import os

from PIL import Image
import PIL

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fixtures", "images", "corrupt")


def main():
    os.makedirs(OUT, exist_ok=True)
    src = Image.open(os.path.join(ROOT, "fixtures", "images", "chelsea.jpg")).convert("RGB")
    crop = src.crop((140, 80, 201, 127))
    crop.save(os.path.join(OUT, "source.png"))
    cases = []
    for severity, q in ((1, 25), (3, 15), (5, 7)):
        buf = io.BytesIO()
        crop.save(buf, "JPEG", quality=q)
        buf.seek(0)
        name = f"jpeg_q{q}.expected.png"
        Image.open(buf).convert("RGB").save(os.path.join(OUT, name))
        cases.append({"severity": severity, "quality": q, "expected": name})
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump({"source": "source.png", "pillow": PIL.__version__, "jpeg": cases}, f, indent=1)


if __name__ == "__main__":
    main()
