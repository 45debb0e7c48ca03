"""Specimen designs of a fictional currency (the tender of "Tenderia"), never a replica of real money.

Every denomination has its own palette and layout. What does not change from note to note (the
fine-line background and border, emblem, numerals, watermark and security thread) is rendered
once per process into a `Template` of alpha layers; `render.py` composites them per note, after
the tell-tale signs of a counterfeit have edited the layers.

Note geometry, in source pixels (rows x columns): 256 x 576.
"""

from __future__ import annotations

import colorsys
import functools
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

NOTE_H, NOTE_W = 256, 576
SERIAL_CELL_W, SERIAL_CELL_H = 19, 30  # one character per cell, left-anchored in the serial box
SERIAL_LENGTH = 11  # 2 letters + 8 digits + 1 letter
WATERMARK_CONTRAST = 0.22  # genuine: the paper is darkened by up to 22 % where the watermark is


@dataclass(frozen=True)
class Design:
    name: str  # the denomination, as printed
    hue: float  # main ink hue in degrees
    hue2: float  # second fine-line ink hue
    emblem_x: int  # emblem centre column
    watermark_x: int  # watermark window centre column
    thread_x: int  # security thread left column
    serial_xy: tuple[int, int]  # top-left of the serial box
    numeral_xy: tuple[int, int]  # top-left of the large numeral
    star_points: int  # points of the emblem's star; also the watermark's shape
    wave: tuple[float, float]  # background guilloche: amplitude (px) and wavelength (px)
    text_x: int  # centre column of the bank's name line


DESIGNS: tuple[Design, ...] = (
    Design("5", 140.0, 95.0, 150, 468, 260, (300, 24), (335, 150), 5, (4.0, 90.0), 300),
    Design("10", 215.0, 180.0, 426, 108, 300, (30, 206), (200, 40), 6, (5.0, 70.0), 400),
    Design("20", 290.0, 330.0, 150, 468, 250, (300, 206), (300, 40), 7, (3.0, 110.0), 140),
    Design("50", 25.0, 50.0, 426, 108, 190, (250, 24), (210, 140), 8, (6.0, 60.0), 300),
)
DENOMINATIONS: list[str] = [d.name for d in DESIGNS]


def hsv(h: float, s: float, v: float) -> np.ndarray:
    """Hue in degrees, s and v in 0..1 -> float32 RGB in 0..1."""
    return np.array(colorsys.hsv_to_rgb((h % 360.0) / 360.0, s, v), dtype=np.float32)


@dataclass(frozen=True)
class Palette:
    paper: np.ndarray  # RGB 0..1
    ink1: np.ndarray  # background fine lines
    ink2: np.ndarray  # second fine-line family and border
    ink3: np.ndarray  # solid print: emblem outline, numerals, text, serial box
    serial: np.ndarray  # serial number


def palette(design: Design, hue_shift: float = 0.0, sat_scale: float = 1.0, value_scale: float = 1.0) -> Palette:
    """The design's inks, optionally hue-shifted (degrees), saturation- and value-scaled (a counterfeit)."""
    def ink(h: float, s: float, v: float) -> np.ndarray:
        return hsv(h + hue_shift, min(1.0, s * sat_scale), min(1.0, v * value_scale))

    return Palette(paper=hsv(design.hue, 0.06, 0.96), ink1=ink(design.hue, 0.62, 0.72),
                   ink2=ink(design.hue2, 0.55, 0.62), ink3=ink(design.hue, 0.75, 0.32),
                   serial=ink(design.hue + 180.0, 0.70, 0.55))


@dataclass(frozen=True)
class Template:
    design: Design
    fine1: np.ndarray  # [H, W] alpha of the background fine lines (none in the watermark window)
    fine2: np.ndarray  # [H, W] alpha of the second family and the border
    window_fill: np.ndarray  # [H, W] the background lines a counterfeit prints over the watermark window
    solid: np.ndarray  # [H, W] alpha of emblem outline, numerals, text, serial box frame
    watermark: np.ndarray  # [H, W] 0..1 shape of the watermark (soft)
    window: np.ndarray  # [H, W] 0..1 the watermark window
    thread: np.ndarray  # [H, W] alpha of the windowed security thread
    thread_solid: np.ndarray  # [H, W] alpha of a continuous thread-shaped band (printed imitations)
    serial_box: tuple[int, int, int, int]  # x0, y0, x1, y1 of the box's inside


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return _font(size)


@functools.lru_cache(maxsize=16)
def _font(size: int):
    return ImageFont.load_default(size=size)  # Pillow's embedded font: same on every machine


def _lines(value: np.ndarray, duty: float) -> np.ndarray:
    """cos-wave field -> antialiased line alpha; `duty` is the share of each period inked."""
    edge = np.cos(np.pi * duty)
    return np.clip((value - edge) / 0.35 + 0.5, 0.0, 1.0).astype(np.float32)


def _ellipse(cx: float, cy: float, rx: float, ry: float, soft: float = 3.0) -> np.ndarray:
    y, x = np.mgrid[0:NOTE_H, 0:NOTE_W].astype(np.float32)
    d = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
    return np.clip((1.0 - d) * min(rx, ry) / soft + 0.5, 0.0, 1.0).astype(np.float32)


def _mask_from_draw(draw_fn, blur: float = 0.0) -> np.ndarray:
    img = Image.new("L", (NOTE_W, NOTE_H), 0)
    draw_fn(ImageDraw.Draw(img))
    if blur:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    return np.asarray(img, dtype=np.float32) / 255.0


def _star(cx: float, cy: float, r_out: float, r_in: float, n: int) -> list[tuple[float, float]]:
    pts = []
    for k in range(2 * n):
        r = r_out if k % 2 == 0 else r_in
        a = np.pi * k / n - np.pi / 2
        pts.append((cx + r * np.cos(a), cy + r * np.sin(a)))
    return pts


@functools.cache
def template(index: int) -> Template:
    """The fixed layers of DESIGNS[index], rendered once per process (~50 ms)."""
    d = DESIGNS[index]
    y, x = np.mgrid[0:NOTE_H, 0:NOTE_W].astype(np.float32)
    amp, wl = d.wave
    # background guilloche: two families of wavy lines, period 7 and 9 px
    bg1 = _lines(np.cos(2 * np.pi * (y + amp * np.sin(2 * np.pi * x / wl)) / 7.0), 0.32) * 0.55
    bg2 = _lines(np.cos(2 * np.pi * (x + 0.8 * amp * np.sin(2 * np.pi * y / (0.6 * wl))) / 9.0), 0.22) * 0.40
    # border band: dense diagonal lattice, 14 px wide
    edge = np.minimum(np.minimum(x, NOTE_W - 1 - x), np.minimum(y, NOTE_H - 1 - y))
    band = (edge < 14).astype(np.float32)
    lattice = np.maximum(_lines(np.cos(2 * np.pi * (x + y) / 6.0), 0.3), _lines(np.cos(2 * np.pi * (x - y) / 6.0), 0.3))
    # emblem: a rosette of wavy rings inside a circle
    ecx, ecy, er = float(d.emblem_x), NOTE_H / 2, 64.0
    r = np.sqrt((x - ecx) ** 2 + (y - ecy) ** 2)
    theta = np.arctan2(y - ecy, x - ecx)
    rosette = _lines(np.cos(2 * np.pi * (r + 4.0 * np.sin(d.star_points * theta)) / 6.0), 0.35) * (r < er)
    window = _ellipse(d.watermark_x, NOTE_H / 2, 46, 62)
    inside = 1.0 - band
    fine1 = bg1 * inside * (1.0 - window) * (r >= er)
    window_fill = bg1 * inside * window
    fine2 = np.maximum(bg2 * inside * (1.0 - window) * (r >= er), lattice * band * 0.8)
    fine2 = np.maximum(fine2, rosette * 0.85)
    # watermark: the emblem's star, soft, in the window
    wcx = d.watermark_x
    watermark = _mask_from_draw(lambda dr: dr.polygon(_star(wcx, NOTE_H / 2, 40, 18, d.star_points), fill=255), 3.0)
    # security thread: 8 px wide, visible in windows of 15 px every 30 px
    tx = d.thread_x
    thread_solid = _mask_from_draw(lambda dr: dr.rectangle([tx, 14, tx + 7, NOTE_H - 15], fill=255))
    windows = ((y.astype(np.int32) // 15) % 2 == 0).astype(np.float32)
    thread = thread_solid * (0.35 + 0.55 * windows)
    # solid print: emblem outline and star, numerals, bank name, serial box frame
    sx, sy = d.serial_xy
    x1, y1 = sx + SERIAL_LENGTH * SERIAL_CELL_W + 6, sy + SERIAL_CELL_H + 4
    # the serial box is a blank panel: a short serial leaves blank paper, a long one runs onto the lines
    panel = np.ones((NOTE_H, NOTE_W), dtype=np.float32)
    panel[sy - 4:y1 + 2, sx - 4:x1 + 2] = 0.0
    fine1, fine2 = fine1 * panel, fine2 * panel

    def solids(dr: ImageDraw.ImageDraw) -> None:
        dr.ellipse([ecx - er, ecy - er, ecx + er, ecy + er], outline=255, width=3)
        dr.polygon(_star(ecx, ecy, 36, 16, d.star_points), outline=255, width=3)
        dr.rectangle([14, 14, NOTE_W - 15, NOTE_H - 15], outline=255, width=2)
        dr.text((22, 18), d.name, font=font(34), fill=255)
        dr.text((NOTE_W - 22, NOTE_H - 18), d.name, font=font(34), fill=255, anchor="rs")
        dr.text(d.numeral_xy, d.name, font=font(72), fill=255)
        dr.text((d.text_x, NOTE_H - 30), "BANK OF TENDERIA - SPECIMEN", font=font(12), fill=255,
                anchor="mm")
        dr.rectangle([sx - 4, sy - 4, x1 + 1, y1 + 1], outline=255, width=3)

    solid = _mask_from_draw(solids) * 0.95
    return Template(design=d, fine1=fine1.astype(np.float32), fine2=fine2.astype(np.float32),
                    window_fill=window_fill.astype(np.float32), solid=solid, watermark=watermark,
                    window=window, thread=thread.astype(np.float32), thread_solid=thread_solid,
                    serial_box=(sx, sy, x1 - 3, y1 - 2))


@functools.lru_cache(maxsize=64)
def glyph(char: str) -> np.ndarray:
    """Alpha [SERIAL_CELL_H, SERIAL_CELL_W] of one serial character, centred in its cell."""
    img = Image.new("L", (SERIAL_CELL_W, SERIAL_CELL_H), 0)
    ImageDraw.Draw(img).text((SERIAL_CELL_W / 2, SERIAL_CELL_H / 2), char, font=font(27), fill=255, anchor="mm")
    return np.asarray(img, dtype=np.float32) / 255.0
