"""Decoding with limits. A larger hostile corpus comes with the reliability work; these are the basics."""

import io
import struct
import zlib

import pytest
from PIL import Image

from workers.core.errors import RejectedScan
from workers.core.imaging import Limits, decode, inspect

LIMITS = Limits(max_bytes=2_000_000, max_pixels=24_000_000, min_side=32, max_side=8000)


def encode(img, fmt, **kw):
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def png_header_bomb(width, height):
    """A tiny PNG that declares width x height pixels (1-bit): the classic decompression bomb."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    rows = zlib.compress(b"\x00" * (width // 8 + 1) * 64, 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


JPEG = encode(Image.new("RGB", (320, 144), (40, 120, 60)), "JPEG")


@pytest.mark.parametrize("data,reason", [
    (b"", "image_empty"),
    (b"hello, I am text", "unsupported_format"),
    (b"<html><body>hi</body></html>", "unsupported_format"),
    (JPEG[: len(JPEG) // 2], "image_unreadable"),
    (png_header_bomb(20000, 20000), "too_many_pixels"),
    (png_header_bomb(6000, 5000), "too_many_pixels"),
    (encode(Image.new("RGB", (8, 8)), "PNG"), "dimensions_out_of_range"),
    (encode(Image.new("RGB", (64, 64)), "TIFF"), "unsupported_format"),
    (encode(Image.new("RGB", (64, 64)), "GIF"), "unsupported_format"),
    (b"x" * 2_000_001, "image_too_large"),
])
def test_bad_inputs_get_a_reason(data, reason):
    with pytest.raises(RejectedScan) as info:
        decode(data, LIMITS)
    assert info.value.reason == reason


def test_inspect_reads_only_the_header():
    noise = Image.effect_noise((1000, 400), 60).convert("RGB")
    data = encode(noise, "PNG")[:5000]  # a PNG cut off early in its pixel data
    info = inspect(data, LIMITS)  # the header alone answers
    assert (info.format, info.width, info.height) == ("PNG", 1000, 400)
    with pytest.raises(RejectedScan) as caught:
        decode(data, LIMITS)  # the full decode notices the missing rows
    assert caught.value.reason == "image_unreadable"


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "I;16", "CMYK"])
def test_every_mode_becomes_rgb(mode):
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    img, info = decode(encode(Image.new(mode, (120, 60)), fmt), LIMITS)
    assert img.mode == "RGB" and img.size == (120, 60) and info.format == fmt


def test_exif_rotation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    data = encode(Image.new("RGB", (200, 100)), "JPEG", exif=exif.tobytes())
    img, info = decode(data, LIMITS)
    assert img.size == (100, 200) and (info.width, info.height) == (200, 100)
