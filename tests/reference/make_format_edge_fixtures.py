#!/usr/bin/env python3
"""Edge cases of GIF, TIFF and BMP that Pillow writes rarely or not at all,
built here byte by byte where Pillow cannot write them, and what Pillow
decodes them to with Image.open(f).convert("RGB"), saved losslessly as PNG
beside each (NAME.expected.png), listed in formats/edge_manifest.json:

- GIF frames smaller than the logical screen, placed inside it, with and
  without a transparent index, and with a local colour table;
- TIFF with unassociated alpha (Pillow's RGBA), associated alpha, 16 bits
  per sample (RGB and grey), big-endian byte order (8 and 16 bits), and
  16-bit grey above 255;
- BMP with RLE8 and RLE4 compression (runs, absolute runs, end-of-line,
  delta jumps), and a top-down BMP.

test_images decodes each with tessera and compares every byte.

    python tests/reference/make_format_edge_fixtures.py  # Pillow
"""
import io
import json
import os
import struct

import numpy as np
import PIL
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fixtures", "images", "formats")


def src_rgb():
    im = Image.open(os.path.join(ROOT, "fixtures", "images", "chelsea.jpg")).convert("RGB")
    return im.crop((100, 60, 133, 85))  # 33x25


# ---- GIF ----
def gif_partial(transparent, local_table):
    """A Pillow GIF of 21x13, patched to sit at (7, 5) on a 37x29 screen."""
    pal = src_rgb().crop((0, 0, 21, 13)).quantize(colors=16)
    buf = io.BytesIO()
    kw = {"transparency": 3} if transparent else {}
    pal.save(buf, "GIF", background=5, **kw)
    b = bytearray(buf.getvalue())
    assert b[:6] == b"GIF89a" or b[:6] == b"GIF87a"
    struct.pack_into("<HH", b, 6, 37, 29)
    b[11] = 5  # background colour index
    i = b.index(b"\x2c", 13 + 3 * (2 << (b[10] & 7)))  # the image descriptor
    struct.pack_into("<HH", b, i + 1, 7, 5)
    if local_table:  # move the global table into the frame
        gsize = 3 * (2 << (b[10] & 7))
        table = bytes(b[13:13 + gsize])
        flags = b[10]
        b[10] = flags & 0x70  # no global table
        del b[13:13 + gsize]
        i -= gsize
        b[i + 9] = 0x80 | (flags & 7)
        b[i + 10:i + 10] = table
    return bytes(b)


# ---- TIFF, written by hand where Pillow cannot ----
def tiff(arr, endian="<", photometric=2, extra=None, bits=8):
    """Uncompressed, one strip. arr: (h, w) or (h, w, c) of uint8 or uint16."""
    h, w = arr.shape[:2]
    c = 1 if arr.ndim == 2 else arr.shape[2]
    dt = np.dtype(endian + ("u1" if bits == 8 else "u2"))
    data = arr.astype(dt).tobytes()
    entries = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, c, None), (259, 3, 1, 1),
               (262, 3, 1, photometric), (273, 4, 1, None), (277, 3, 1, c), (278, 4, 1, h),
               (279, 4, 1, len(data)), (284, 3, 1, 1)]
    if extra is not None:
        entries.append((338, 3, 1, extra))
    entries.sort()
    ifd_off = 8
    ifd_size = 2 + 12 * len(entries) + 4
    bps_off = ifd_off + ifd_size
    data_off = bps_off + 2 * c
    out = bytearray(b"II*\0" if endian == "<" else b"MM\0*")
    out += struct.pack(endian + "I", ifd_off)
    out += struct.pack(endian + "H", len(entries))
    for tag, typ, count, val in entries:
        if tag == 258:
            if c == 1:
                out += struct.pack(endian + "HHIHH", tag, typ, 1, bits, 0)
            else:
                out += struct.pack(endian + "HHII", tag, typ, c, bps_off)
            continue
        if tag == 273:
            val = data_off
        if typ == 3:
            out += struct.pack(endian + "HHIHH", tag, typ, count, val, 0)
        else:
            out += struct.pack(endian + "HHII", tag, typ, count, val)
    out += struct.pack(endian + "I", 0)
    out += struct.pack(endian + "H" * c, *([bits] * c)) if c > 1 else b"\0\0"
    out += data
    return bytes(out)


# ---- BMP with RLE ----
def rle_row(row, x, four_bit):
    """RLE8/RLE4 codes for row[x:]: runs of 3 or more as (count, value),
    others as absolute runs of up to 8 pixels, padded to 16 bits."""
    enc = bytearray()
    w = len(row)
    while x < w:
        run = 1
        while x + run < w and run < 255 and row[x + run] == row[x]:
            run += 1
        if run >= 3 or w - x < 3:
            enc += bytes([run, (row[x] << 4) | row[x] if four_bit else row[x]])
            x += run
            continue
        k = min(8, w - x)
        vals = row[x:x + k]
        enc += bytes([0, k])
        body = bytes((vals[i] << 4) | (vals[i + 1] if i + 1 < k else 0) for i in range(0, k, 2)) \
            if four_bit else bytes(vals)
        enc += body + (b"\0" if len(body) % 2 else b"")
        x += k
    return enc


def bmp_rle(indices, palette, four_bit, deltas=False):
    """indices: (h, w) palette indices, top row first; BMP stores the bottom
    row first. With deltas, one row starts with a jump (0, 2, 3, 1): 3 pixels
    right and one row up, so the rest of that row and the first 3 pixels of
    the next are never written."""
    h, w = indices.shape
    rows = [[int(v) for v in indices[y]] for y in range(h - 1, -1, -1)]
    enc = bytearray()
    r = 0
    while r < len(rows):
        if deltas and r == h // 2 and r + 1 < len(rows):
            enc += bytes([0, 2, 3, 1]) + rle_row(rows[r + 1], 3, four_bit) + bytes([0, 0])
            r += 2
            continue
        enc += rle_row(rows[r], 0, four_bit) + bytes([0, 0])  # the row, end of line
        r += 1
    enc += bytes([0, 1])  # end of bitmap
    ncol = len(palette)
    pal = b"".join(bytes([b, g, r_, 0]) for r_, g, b in palette)
    off = 14 + 40 + len(pal)
    hdr = b"BM" + struct.pack("<IHHI", off + len(enc), 0, 0, off)
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 4 if four_bit else 8, 2 if four_bit else 1,
                       len(enc), 2835, 2835, ncol, 0)
    return hdr + info + pal + bytes(enc)


def main():
    rgb = src_rgb()
    a = np.array(rgb)
    h, w = a.shape[:2]
    alpha = np.tile(np.linspace(0, 255, w).astype(np.uint8), (h, 1))
    rgba = np.dstack([a, alpha])
    a16 = a.astype(np.uint16) * 257 + np.arange(w, dtype=np.uint16)[None, :, None]
    grey16 = (np.linspace(0, 700, h * w).reshape(h, w)).astype(np.uint16)
    cases = {}
    cases["partial.gif"] = gif_partial(False, False)
    cases["partial_transparent.gif"] = gif_partial(True, False)
    cases["partial_local_table.gif"] = gif_partial(False, True)
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "TIFF")  # ExtraSamples 2: unassociated
    cases["unassociated_alpha.tiff"] = buf.getvalue()
    cases["associated_alpha.tiff"] = tiff(rgba, extra=1)
    cases["rgb16.tiff"] = tiff(a16, bits=16)
    cases["rgb16_big_endian.tiff"] = tiff(a16, endian=">", bits=16)
    cases["rgb_big_endian.tiff"] = tiff(a, endian=">")
    cases["grey16.tiff"] = tiff(grey16, photometric=1, bits=16)
    cases["grey16_big_endian.tiff"] = tiff(grey16, endian=">", photometric=1, bits=16)
    q = rgb.quantize(colors=16)
    idx = np.array(q)
    pal = np.array(q.getpalette()[:48]).reshape(16, 3).tolist()
    cases["rle8.bmp"] = bmp_rle(idx, pal, False)
    cases["rle4.bmp"] = bmp_rle(idx, pal, True)
    cases["rle8_delta.bmp"] = bmp_rle(idx, pal, False, deltas=True)
    buf = io.BytesIO()
    rgb.save(buf, "BMP")
    b = bytearray(buf.getvalue())  # flip to top-down: negative height, rows reversed
    off = struct.unpack_from("<I", b, 10)[0]
    stride = (w * 3 + 3) // 4 * 4
    rows = [bytes(b[off + r * stride:off + (r + 1) * stride]) for r in range(h)]
    b[off:] = b"".join(reversed(rows))
    struct.pack_into("<i", b, 22, -h)
    cases["top_down.bmp"] = bytes(b)

    manifest = []
    for name, data in cases.items():
        path = os.path.join(OUT, name)
        with open(path, "wb") as f:
            f.write(data)
        im = Image.open(path)
        mode = im.mode
        im.convert("RGB").save(os.path.join(OUT, name + ".expected.png"))
        manifest.append({"image": name, "expected": name + ".expected.png", "mode": mode})
        print(f"{name}: Pillow mode {mode}, {im.size}")
    with open(os.path.join(OUT, "edge_manifest.json"), "w") as f:
        json.dump({"pillow": PIL.__version__, "cases": manifest}, f, indent=1)


if __name__ == "__main__":
    main()
