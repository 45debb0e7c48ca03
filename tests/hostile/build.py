"""Builds the hostile-input corpus in tests/hostile/files/ and its expectations in expected.json.

    python -m tests.hostile.build

Deterministic: rebuilding gives the same bytes (except where Pillow's encoders change). Each entry
says what must happen: "ok" (a normal verdict) or the enums.Reason the scan must be rejected with.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
FILES = HERE / "files"


def _bill(size=(320, 144), seed=0) -> Image.Image:
    """A bill-sized stand-in: gradients and a few stripes (cheap to store, not noise)."""
    arr = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    arr[:, :, 0] = np.linspace(30, 200, size[0], dtype=np.uint8)[None, :]
    arr[:, :, 1] = np.linspace(60, 180, size[1], dtype=np.uint8)[:, None]
    arr[:, :, 2] = 90 + 40 * ((np.arange(size[0])[None, :] // (8 + seed)) % 2)
    return Image.fromarray(arr, "RGB")


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_bomb(width: int, height: int) -> bytes:
    rows = zlib.compress(b"\x00" * (width // 8 + 1) * 16, 9)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + _png_chunk(b"IDAT", rows) + _png_chunk(b"IEND", b""))


def corpus() -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, expected outcome)."""
    jpeg = _save(_bill(), "JPEG", quality=90)
    png = _save(_bill(), "PNG")
    exif = Image.Exif()
    exif[0x0112] = 6
    frames = [_bill(seed=i) for i in range(3)]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    apng = io.BytesIO()
    frames[0].save(apng, "PNG", save_all=True, append_images=frames[1:])
    corrupt = bytearray(jpeg)
    corrupt[len(corrupt) // 3: len(corrupt) // 3 + 400] = bytes(range(256)) + bytes(144)
    bad_crc = bytearray(png)
    bad_crc[29] ^= 0xFF  # inside IHDR's CRC
    return {
        "zero-bytes.jpg": (b"", "image_empty"),
        "text.txt": (b"this is not a bill, it is a sentence\n", "unsupported_format"),
        "page.html": (b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>", "unsupported_format"),
        "image.svg": (b'<svg xmlns="http://www.w3.org/2000/svg" width="400" height="200"/>', "unsupported_format"),
        "document.pdf": (b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF", "unsupported_format"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "image_unreadable"),
        "truncated.png": (png[: len(png) // 2], "image_unreadable"),
        "header-only.jpg": (jpeg[:200], "image_unreadable"),
        "corrupt-entropy.jpg": (bytes(corrupt), "ok_or_unreadable"),
        "bad-crc.png": (bytes(bad_crc), "image_unreadable"),
        "bomb-20000x20000.png": (_png_bomb(20000, 20000), "too_many_pixels"),
        "bomb-65535x65535.png": (_png_bomb(65535, 65535), "too_many_pixels"),
        "bomb-6000x5000.png": (_png_bomb(6000, 5000), "too_many_pixels"),
        "too-wide-9000x40.png": (_save(Image.new("RGB", (9000, 40)), "PNG"), "dimensions_out_of_range"),
        "tiny-8x8.png": (_save(Image.new("RGB", (8, 8)), "PNG"), "dimensions_out_of_range"),
        "animated.gif": (gif.getvalue(), "unsupported_format"),
        "animated.png": (apng.getvalue(), "ok"),  # APNG: first frame only
        "cmyk.jpg": (_save(_bill().convert("CMYK"), "JPEG"), "ok"),
        "grayscale.jpg": (_save(_bill().convert("L"), "JPEG"), "ok"),
        "progressive.jpg": (_save(_bill(), "JPEG", progressive=True), "ok"),
        "16bit.png": (_save(Image.fromarray(np.asarray(_bill().convert("L"), dtype=np.uint16) * 257), "PNG"), "ok"),
        "palette.png": (_save(_bill().convert("P"), "PNG"), "ok"),
        "alpha.png": (_save(_bill().convert("RGBA"), "PNG"), "ok"),
        "exif-rotated.jpg": (_save(_bill(), "JPEG", exif=exif.tobytes()), "ok"),
        "polyglot-jpeg-then-html.jpg": (jpeg + b"<html><script>alert(1)</script></html>", "ok"),
        "polyglot-html-then-jpeg.html": (b"<html>" + jpeg, "unsupported_format"),
        "polyglot-zip-in-png.png": (png + b"PK\x03\x04" + bytes(64), "ok"),
        "image.tiff": (_save(_bill(), "TIFF"), "unsupported_format"),
        "image.eps": (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 400 200\nshowpage\n", "unsupported_format"),
        "image.webp": (_save(_bill(), "WEBP"), "unsupported_format"),
        "image.bmp": (_save(_bill(), "BMP"), "unsupported_format"),
        "image.ico": (_save(_bill((64, 64)), "ICO"), "unsupported_format"),
    }


def main() -> None:
    FILES.mkdir(parents=True, exist_ok=True)
    expected = {}
    for name, (data, outcome) in sorted(corpus().items()):
        (FILES / name).write_bytes(data)
        expected[name] = outcome
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(expected)} files to {FILES}")


if __name__ == "__main__":
    main()
