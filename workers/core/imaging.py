"""Image decoding with limits: the one place untrusted bytes meet Pillow.

Used twice: `inspect` at the edge (header only: format, size; cheap) and `decode` in the worker
(full decode of the first frame). `sniff` names the format from the magic bytes alone (the worker
compares it with a direct upload's stored Content-Type). Both raise RejectedScan with a enums.Reason, never a Pillow error.

Limits: a format allow-list (JPEG, PNG) judged by content, not by the declared content type; a pixel
cap (decompression bombs are refused before any pixel is decoded); side limits; truncated files
refused; only the first frame; EXIF orientation applied; everything converted to RGB.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from workers.core.enums import Reason
from workers.core.errors import RejectedScan

ALLOWED_FORMATS = ("JPEG", "PNG")  # Pillow format names; see keys.IMAGE_EXTENSIONS
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")  # JPEG SOI, PNG signature
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated scan is refused, never half-decoded


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 24_000_000
    min_side: int = 32
    max_side: int = 8000

    @classmethod
    def from_settings(cls, settings) -> Limits:
        return cls(settings.max_body_bytes, settings.max_pixels, settings.min_side, settings.max_side)


@dataclass(frozen=True)
class ImageInfo:
    format: str  # "JPEG" or "PNG"
    width: int
    height: int


def _open(data: bytes, limits: Limits) -> Image.Image:
    if not data:
        raise RejectedScan(Reason.IMAGE_EMPTY, "the image has zero bytes")
    if len(data) > limits.max_bytes:
        raise RejectedScan(Reason.IMAGE_TOO_LARGE, f"{len(data)} bytes > limit {limits.max_bytes}")
    try:
        # formats= restricts which decoders Pillow even tries: a TIFF or EPS never reaches its plugin.
        img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        if data.startswith(_MAGIC):  # looks like one of ours, but no decoder could parse it
            raise RejectedScan(Reason.IMAGE_UNREADABLE, "corrupt JPEG or PNG header") from None
        raise RejectedScan(Reason.UNSUPPORTED_FORMAT, "not a JPEG or PNG image") from None
    except Image.DecompressionBombError:
        raise RejectedScan(Reason.TOO_MANY_PIXELS, "declared size is a decompression bomb") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise RejectedScan(Reason.IMAGE_UNREADABLE, type(exc).__name__) from None
    width, height = img.size
    if width * height > limits.max_pixels:
        raise RejectedScan(Reason.TOO_MANY_PIXELS, f"{width}x{height} > {limits.max_pixels} pixels")
    if min(width, height) < limits.min_side or max(width, height) > limits.max_side:
        raise RejectedScan(Reason.DIMENSIONS_OUT_OF_RANGE,
                           f"{width}x{height} outside {limits.min_side}..{limits.max_side} px per side")
    return img


def sniff(data: bytes) -> str | None:
    """The format the magic bytes announce ("JPEG", "PNG"), or None. No decoder runs."""
    for fmt, magic in zip(ALLOWED_FORMATS, _MAGIC, strict=True):
        if data.startswith(magic):
            return fmt
    return None


def inspect(data: bytes, limits: Limits) -> ImageInfo:
    """Header-only check for the edge: format, dimensions, pixel cap. Decodes no pixel data."""
    img = _open(data, limits)
    return ImageInfo(img.format, *img.size)


def decode(data: bytes, limits: Limits) -> tuple[Image.Image, ImageInfo]:
    """Full decode of the first frame to an upright RGB image."""
    img = _open(data, limits)
    info = ImageInfo(img.format, *img.size)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.seek(0)  # first frame only (APNG)
            img.load()
            # in place: the decoded image is ours alone, and without an EXIF rotation the copy that
            # exif_transpose would return costs a full pass over the pixels (a 2 MP scan: 6 MB)
            ImageOps.exif_transpose(img, in_place=True)
            if img.mode != "RGB":
                # 16-bit, palette, alpha, CMYK, greyscale -> 8-bit RGB (alpha composited on white)
                if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                    rgba = img.convert("RGBA")
                    background = Image.new("RGB", rgba.size, (255, 255, 255))
                    background.paste(rgba, mask=rgba.getchannel("A"))
                    img = background
                elif img.mode in ("I;16", "I;16B", "I;16L", "I"):
                    img = img.point(lambda v: v / 256).convert("L").convert("RGB")
                else:
                    img = img.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise RejectedScan(Reason.IMAGE_UNREADABLE, type(exc).__name__) from None
    return img, info
