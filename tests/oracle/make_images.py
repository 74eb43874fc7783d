#!/usr/bin/env python3
"""Writes the images users really have into DIR, good and broken, and for every file the
pixels OpenCV's cv2.imread(path, IMREAD_COLOR) gives (what Caffe decodes), so that
tests/test_image_robust.c can compare crema's decoder with it.

    make_images.py DIR

DIR/manifest.txt gets one line per file: "<name> <expect>" where expect is "ok" (crema must
decode it) or "refuse" (crema must refuse it), and DIR/<name>.cv holds "W H\\n" plus cv2's BGR
bytes (row-major, channels last), or "none" for the broken files.
"""
import struct
import sys
import zlib

import cv2
import numpy as np

out = sys.argv[1]
rng = np.random.default_rng(13)
manifest = []


def put(name, data, expect):
    with open(f"{out}/{name}", "wb") as f:
        f.write(data)
    # Broken files are not shown to OpenCV: it decodes some of them (the bomb takes 1.2 GB).
    img = cv2.imread(f"{out}/{name}", cv2.IMREAD_COLOR) if expect == "ok" else None
    with open(f"{out}/{name}.cv", "wb") as f:
        if img is None:
            f.write(b"none\n")
        else:
            f.write(f"{img.shape[1]} {img.shape[0]}\n".encode())
            f.write(np.ascontiguousarray(img).tobytes())
    manifest.append(f"{name} {expect}")


def encode(ext, img, params=()):
    ok, buf = cv2.imencode(ext, img, list(params))
    assert ok
    return buf.tobytes()


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(width, height, depth, colour, rows, extra=b""):
    """A PNG written by hand: rows are the raw scanlines without the filter byte."""
    raw = b"".join(b"\0" + r for r in rows)
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + extra + png_chunk(b"IDAT", zlib.compress(raw)) +
            png_chunk(b"IEND", b""))


# 16-bit greyscale PGM, 2000x2000, maxval 65535: stb_image 2.27 overruns its buffer on it.
g16 = rng.integers(0, 65536, (2000, 2000), dtype=np.uint16)
put("grey16.pgm", encode(".pgm", g16), "ok")
put("grey16.png", encode(".png", g16[:61, :77]), "ok")
put("rgb16.png", encode(".png", rng.integers(0, 65536, (33, 47, 3), dtype=np.uint16)), "ok")
put("rgba16.png", encode(".png", rng.integers(0, 65536, (21, 19, 4), dtype=np.uint16)), "ok")
put("rgb16.ppm", encode(".ppm", rng.integers(0, 65536, (17, 23, 3), dtype=np.uint16)), "ok")
# PGM with a maximum value that is not 255 or 65535: OpenCV does not rescale binary samples.
v = rng.integers(0, 1001, (9, 11)).astype(">u2")
put("max1000.pgm", b"P5\n# a comment\n11 9\n1000\n" + v.tobytes(), "ok")
put("max15.pgm", b"P5\n11 9\n15\n" + rng.integers(0, 16, (9, 11)).astype("u1").tobytes(), "ok")
# Plain (ASCII) Netpbm files and bitmaps.
a = rng.integers(0, 101, (4, 6))
put("plain100.pgm", ("P2\n6 4\n100\n" + " ".join(map(str, a.ravel())) + "\n").encode(), "ok")
a = rng.integers(0, 4096, (3, 5, 3))
put("plain4095.ppm", ("P3\n5 3\n4095\n" + "\n".join(map(str, a.ravel())) + "\n").encode(), "ok")
put("bits.pbm", b"P1\n5 3\n1 0 1 1 0\n0 0 1 1 1\n11001\n", "ok")
put("bits_raw.pbm", b"P4\n10 2\n" + bytes([0xA5, 0x40, 0x0F, 0xC0]), "ok")
put("rgb8.ppm", encode(".ppm", rng.integers(0, 256, (13, 17, 3), dtype=np.uint8)), "ok")
# Alpha: RGBA is dropped to RGB, grey+alpha to grey; a palette with transparency likewise.
put("rgba.png", encode(".png", rng.integers(0, 256, (15, 18, 4), dtype=np.uint8)), "ok")
ga = rng.integers(0, 256, (12, 14, 2), dtype=np.uint8)
put("grey_alpha.png", png(14, 12, 8, 4, [r.tobytes() for r in ga]), "ok")
ga16 = rng.integers(0, 65536, (7, 9, 2), dtype=np.uint16).astype(">u2")
put("grey_alpha16.png", png(9, 7, 16, 4, [r.tobytes() for r in ga16]), "ok")
pal = rng.integers(0, 256, (16, 3), dtype=np.uint8)
idx = rng.integers(0, 16, (10, 12), dtype=np.uint8)
put("palette_trns.png",
    png(12, 10, 8, 3, [r.tobytes() for r in idx],
        png_chunk(b"PLTE", pal.tobytes()) + png_chunk(b"tRNS", bytes(range(0, 256, 16)))), "ok")
bits = rng.integers(0, 256, (8, 2), dtype=np.uint8)
put("grey1bit.png", png(16, 8, 1, 0, [r.tobytes() for r in bits]), "ok")
# A smooth photo-like picture for the JPEG cases (JPEG decoders differ by rounding only).
yy, xx = np.mgrid[0:96, 0:128]
photo = np.stack([(xx * 2) % 256, (yy * 2 + xx) % 256, (255 - yy * 2) % 256], -1).astype(np.uint8)
put("progressive.jpg", encode(".jpg", photo, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1, cv2.IMWRITE_JPEG_QUALITY, 92]),
    "ok")
put("baseline.jpg", encode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 92]), "ok")
put("grey.jpg", encode(".jpg", photo[:, :, 1]), "ok")
put("bgr24.bmp", encode(".bmp", rng.integers(0, 256, (11, 13, 3), dtype=np.uint8)), "ok")
put("grey8.bmp", encode(".bmp", rng.integers(0, 256, (9, 10), dtype=np.uint8)), "ok")
# Extensions that lie: the content decides.
put("png_named.jpg", encode(".png", rng.integers(0, 256, (8, 9, 3), dtype=np.uint8)), "ok")
put("jpeg_named.png", encode(".jpg", photo), "ok")
put("bmp_named.pgm", encode(".bmp", rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)), "ok")

# Broken files: refused, with the reason.
bmp = bytearray(encode(".bmp", rng.integers(0, 256, (259, 300, 3), dtype=np.uint8)))
struct.pack_into("<i", bmp, 18, 65544)  # header claims 65544 x 259, data for 300 x 259
put("truncated_header.bmp", bytes(bmp[:20000]), "refuse")
zero = bytearray(encode(".bmp", rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)))
struct.pack_into("<i", zero, 22, 0)
put("zero_height.bmp", bytes(zero), "refuse")
jpg = encode(".jpg", photo)
put("truncated.jpg", jpg[: len(jpg) // 2], "refuse")
pngb = encode(".png", rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
put("truncated.png", pngb[: len(pngb) - 30], "refuse")
put("truncated16.pgm", encode(".pgm", g16[:50, :50])[:3000], "refuse")
put("zero_width.png", png(0, 5, 8, 0, [b""] * 5), "refuse")
# Decompression bomb: 20000 x 20000 1-bit pixels (4e8, above the limit) in a few kilobytes.
c = zlib.compressobj(9)
row = b"\0" + b"\0" * 2500
idat = b"".join(c.compress(row) for _ in range(20000)) + c.flush()
bomb = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 1, 0, 0, 0, 0)) +
        png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b""))
put("bomb.png", bomb, "refuse")
put("empty.jpg", b"", "refuse")
put("notes.png", b"these are my holiday photos, not an image\n", "refuse")
put("random.bin", rng.integers(0, 256, 500, dtype=np.uint8).tobytes(), "refuse")

with open(f"{out}/manifest.txt", "w") as f:
    f.write("\n".join(manifest) + "\n")
