"""Things a camera sees besides the note: the surface under it, fingers and objects on it, and sheets
that are not notes of ours (the negatives of `tenderscan`'s "not a banknote" answer).

    background(rng, kind, h, w)      uint8 [h, w, 3]: scanner bed, wood, granite, fabric, bright or
                                     dark counter, tablecloth pattern
    finger(rng, length, width)       RGBA sheet of a finger or thumb, tip at the right end (skin tones
                                     across the Fitzpatrick range)
    card / coin / pen / receipt      RGBA sheets of everyday objects
    coupon / text_page / shapes      more sheets (held out of training as negatives: see conditions.py)
    foreign_note(rng, family)        a note of another fictional currency: "ardenia" (trained on) and
                                     "borealis" (held out), laid out unlike a Tenderia note

Procedural and deterministic in the Generator; nothing copies a real design.
"""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from models.synth.design import font
from models.synth.scene import smooth_field

BACKGROUNDS = ("bed", "wood", "granite", "fabric", "bright", "dark", "pattern")
SKIN = [(241, 194, 167), (224, 172, 138), (198, 134, 99), (161, 102, 70), (115, 72, 48), (80, 51, 36)]


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb((h % 360) / 360, min(1.0, s), min(1.0, v))
    return int(r * 255), int(g * 255), int(b * 255)


def background(rng: np.random.Generator, kind: str, h: int, w: int) -> np.ndarray:
    """The surface under the note, uint8 [h, w, 3]."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == "bed":  # a scanner's lid open: dark, even
        g = rng.uniform(18, 70)
        img = np.full((h, w, 3), g, dtype=np.float32) + rng.uniform(-3, 3, 3)
    elif kind == "wood":
        base = np.array(_hsv(rng.uniform(20, 40), rng.uniform(0.35, 0.7), rng.uniform(0.3, 0.75)), np.float32)
        warp = 25 * smooth_field(rng, h, w, (4, 4))
        a = rng.uniform(-0.3, 0.3)
        rings = np.sin(2 * np.pi * ((y * np.cos(a) + x * np.sin(a)) + warp) / rng.uniform(9, 25))
        img = base * (0.85 + 0.12 * rings + 0.08 * smooth_field(rng, h, w, (2, 12)))[:, :, None]
    elif kind == "granite":
        base = np.array(_hsv(rng.uniform(0, 360), rng.uniform(0, 0.2), rng.uniform(0.25, 0.8)), np.float32)
        speck = rng.standard_normal((h // 3 + 1, w // 3 + 1)).astype(np.float32)
        speck = np.kron(speck, np.ones((3, 3), np.float32))[:h, :w]
        img = base * (1 + 0.12 * speck + 0.1 * smooth_field(rng, h, w, (6, 8)))[:, :, None]
    elif kind == "fabric":
        base = np.array(_hsv(rng.uniform(0, 360), rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.7)), np.float32)
        p = rng.uniform(3, 7)
        weave = np.sin(2 * np.pi * x / p) * np.sin(2 * np.pi * y / p)
        img = base * (0.9 + 0.1 * weave + 0.06 * smooth_field(rng, h, w, (5, 5)))[:, :, None]
    elif kind == "bright":  # a white or beige counter: little contrast with the paper
        base = np.array(_hsv(rng.uniform(20, 60), rng.uniform(0, 0.15), rng.uniform(0.72, 0.9)), np.float32)
        img = base * (1 + 0.04 * smooth_field(rng, h, w, (3, 4)))[:, :, None]
    elif kind == "dark":
        base = np.array(_hsv(rng.uniform(0, 360), rng.uniform(0, 0.4), rng.uniform(0.03, 0.18)), np.float32)
        img = base * (1 + 0.2 * smooth_field(rng, h, w, (3, 5)))[:, :, None]
    elif kind == "pattern":  # a tablecloth: checks or stripes of two colours
        c1 = np.array(_hsv(rng.uniform(0, 360), rng.uniform(0.3, 0.8), rng.uniform(0.3, 0.8)), np.float32)
        c2 = np.array(_hsv(rng.uniform(0, 360), rng.uniform(0, 0.3), rng.uniform(0.5, 0.95)), np.float32)
        p = rng.uniform(12, 40)
        m = ((x // p + (y // p if rng.random() < 0.5 else 0)) % 2)[:, :, None]
        img = c1 * m + c2 * (1 - m)
    else:
        raise ValueError(f"unknown background {kind!r}; choose from {BACKGROUNDS}")
    img = img + rng.normal(0, 2.0, (1, 1, 3)).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _rgba(draw_fn, w: int, h: int, blur: float = 0.6) -> Image.Image:
    """An RGBA sheet drawn on a transparent canvas by `draw_fn(draw)`, edges softened a little."""
    img = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw_fn(ImageDraw.Draw(img))
    if blur:
        r, g, b, a = img.split()
        img = Image.merge("RGBA", (r, g, b, a.filter(ImageFilter.GaussianBlur(blur))))
    return img


def finger(rng: np.random.Generator, length: int, width: int) -> Image.Image:
    """A finger seen from above: a capsule of skin, shaded across its width, a nail near the tip (right)."""
    tone = np.array(SKIN[int(rng.integers(len(SKIN)))], np.float32) * rng.uniform(0.9, 1.08)
    h = width + 4
    y = (np.arange(h, dtype=np.float32) - h / 2) / (width / 2)
    across = np.sqrt(np.clip(1 - y * y, 0, 1))[:, None]  # a cylinder lit from above
    rgb = np.clip(tone * (0.62 + 0.38 * across)[:, :, None] * np.ones((1, length, 1), np.float32), 0, 255)
    mask = Image.new("L", (length, h), 0)
    d = ImageDraw.Draw(mask)
    d.rounded_rectangle([0, 2, length - 1, h - 3], radius=width // 2, fill=255)
    img = Image.fromarray(rgb.astype(np.uint8)).convert("RGBA")
    nail = Image.new("L", (length, h), 0)
    ImageDraw.Draw(nail).ellipse([length - 0.55 * width, h / 2 - 0.3 * width, length - 0.08 * width,
                                  h / 2 + 0.3 * width], fill=int(rng.uniform(60, 130)))
    img = Image.composite(Image.new("RGBA", (length, h), (250, 225, 215, 255)), img, nail)
    img.putalpha(mask.filter(ImageFilter.GaussianBlur(0.8)))
    return img


def card(rng: np.random.Generator, w: int = 340, h: int = 214, blank: bool = False) -> Image.Image:
    """A plastic card (loyalty, payment, ID): 85.6 x 54 mm, rounded corners, a band, a chip, lines of text."""
    base = _hsv(rng.uniform(0, 360), rng.uniform(0, 0.8 if not blank else 0.12), rng.uniform(0.35, 0.98))
    band = _hsv(rng.uniform(0, 360), rng.uniform(0.3, 0.9), rng.uniform(0.2, 0.9))

    def draw(d: ImageDraw.ImageDraw) -> None:
        d.rounded_rectangle([0, 0, w - 1, h - 1], radius=h // 12, fill=(*base, 255))
        if blank:
            return
        if rng.random() < 0.6:
            d.rectangle([0, int(h * 0.12), w - 1, int(h * 0.3)], fill=(*band, 255))
        if rng.random() < 0.6:
            d.rounded_rectangle([int(w * 0.1), int(h * 0.38), int(w * 0.25), int(h * 0.58)], radius=4,
                                fill=(205, 180, 90, 255))
        ink = (20, 20, 20, 255) if sum(base) > 380 else (240, 240, 240, 255)
        for k in range(int(rng.integers(1, 4))):
            d.text((int(w * 0.1), int(h * (0.65 + 0.11 * k))), "".join(rng.choice(list("0123456789 ABCDEFGH"), 16)),
                   font=font(18), fill=ink)

    return _rgba(draw, w, h)


def coin(rng: np.random.Generator, d: int = 90) -> Image.Image:
    metal = np.array([(200, 200, 205), (210, 175, 90), (185, 120, 80)][int(rng.integers(3))], np.float32)
    yy, xx = np.mgrid[0:d, 0:d].astype(np.float32)
    r = np.sqrt((xx - d / 2) ** 2 + (yy - d / 2) ** 2) / (d / 2)
    shade = 0.75 + 0.25 * np.cos(np.clip(r, 0, 1) * np.pi / 2) + 0.08 * np.sin(r * 18)
    rgb = np.clip(metal * shade[:, :, None], 0, 255).astype(np.uint8)
    img = Image.fromarray(rgb).convert("RGBA")
    img.putalpha(Image.fromarray(((r <= 1) * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.7)))
    return img


def pen(rng: np.random.Generator, length: int = 520, width: int = 26) -> Image.Image:
    col = _hsv(rng.uniform(0, 360), rng.uniform(0.2, 0.9), rng.uniform(0.1, 0.9))

    def draw(d: ImageDraw.ImageDraw) -> None:
        d.rounded_rectangle([0, 0, length - 1, width - 1], radius=width // 2, fill=(*col, 255))
        d.rectangle([int(length * 0.7), 0, int(length * 0.74), width - 1], fill=(220, 220, 225, 255))

    return _rgba(draw, length, width)


def receipt(rng: np.random.Generator, w: int = 230, h: int = 520) -> Image.Image:
    """Thermal paper: off-white, lines of grey text dashes, a total in bold."""
    paper = _hsv(rng.uniform(30, 60), rng.uniform(0, 0.06), rng.uniform(0.88, 0.99))

    def draw(d: ImageDraw.ImageDraw) -> None:
        d.rectangle([0, 0, w - 1, h - 1], fill=(*paper, 255))
        y = 14
        while y < h - 16:
            x = 12
            while x < w - 20 and rng.random() < 0.9:
                word = int(rng.integers(6, 40))
                d.rectangle([x, y, min(x + word, w - 12), y + 5], fill=(70, 70, 75, 255))
                x += word + 7
            y += int(rng.integers(11, 18))

    return _rgba(draw, w, h)


def coupon(rng: np.random.Generator, w: int = 480, h: int = 220) -> Image.Image:
    """A printed voucher: bright colours, a big figure, a barcode (held out of training)."""
    bg = _hsv(rng.uniform(0, 360), rng.uniform(0.4, 1.0), rng.uniform(0.7, 1.0))
    ink = _hsv(rng.uniform(0, 360), rng.uniform(0.6, 1.0), rng.uniform(0.1, 0.5))

    def draw(d: ImageDraw.ImageDraw) -> None:
        d.rectangle([0, 0, w - 1, h - 1], fill=(*bg, 255))
        d.rectangle([4, 4, w - 5, h - 5], outline=(*ink, 255), width=3)
        d.text((20, 20), f"{int(rng.integers(5, 70))}% OFF", font=font(int(h * 0.3)), fill=(*ink, 255))
        d.text((20, int(h * 0.55)), "VALID AT PARTICIPATING STORES", font=font(14), fill=(*ink, 255))
        x = int(w * 0.55)
        while x < w - 20:
            bw = int(rng.integers(1, 5))
            d.rectangle([x, int(h * 0.7), x + bw, h - 14], fill=(0, 0, 0, 255))
            x += bw + int(rng.integers(1, 5))

    return _rgba(draw, w, h)


def text_page(rng: np.random.Generator, w: int = 420, h: int = 560) -> Image.Image:
    """A printed page or newspaper column: paragraphs of black text dashes on white (held out)."""
    def draw(d: ImageDraw.ImageDraw) -> None:
        d.rectangle([0, 0, w - 1, h - 1], fill=(240, 238, 230, 255))
        cols = int(rng.integers(1, 3))
        cw = (w - 30) // cols
        for c in range(cols):
            y = 20
            while y < h - 20:
                if rng.random() < 0.1:
                    y += 10
                    continue
                d.rectangle([15 + c * cw, y, 15 + c * cw + int(cw * rng.uniform(0.6, 0.95)), y + 4], fill=(30, 30, 30, 255))
                y += 9

    return _rgba(draw, w, h)


def shapes(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Random filled shapes on a plain ground, uint8 [h, w, 3] (held out of training)."""
    img = Image.new("RGB", (w, h), _hsv(rng.uniform(0, 360), rng.uniform(0, 0.5), rng.uniform(0.2, 0.95)))
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 12))):
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        x1, y1 = x0 + rng.uniform(20, w / 2), y0 + rng.uniform(20, h / 2)
        col = _hsv(rng.uniform(0, 360), rng.uniform(0, 1), rng.uniform(0, 1))
        [d.rectangle, d.ellipse][int(rng.integers(2))]([x0, y0, x1, y1], fill=col)
    return np.asarray(img)


def foreign_note(rng: np.random.Generator, family: str) -> Image.Image:
    """A note of another fictional currency. "ardenia": 2.1:1, a portrait oval and concentric rings;
    "borealis": 2.25:1 like ours, a building of columns and a diagonal cross-hatch (held out)."""
    hue = rng.uniform(0, 360)
    if family == "ardenia":
        w, h = 540, 256
    elif family == "borealis":
        w, h = 576, 256
    else:
        raise ValueError(f"unknown foreign family {family!r}")
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    paper = np.array(_hsv(hue + 30, 0.1, 0.93), np.float32) / 255
    ink = np.array(_hsv(hue, 0.6, 0.55), np.float32) / 255
    if family == "ardenia":
        cx = w * (0.28 if rng.random() < 0.5 else 0.72)
        r = np.sqrt((x - cx) ** 2 + (y - h / 2) ** 2)
        lines = (np.cos(2 * np.pi * r / 6) > 0.4).astype(np.float32) * 0.5
        oval = ((x - (w - cx)) / 70) ** 2 + ((y - h / 2) / 95) ** 2 < 1
        lines = np.where(oval, 0.75 * (np.cos(2 * np.pi * y / 4) > 0), lines)
    else:
        lines = ((np.cos(2 * np.pi * (x + y) / 8) > 0.5) | (np.cos(2 * np.pi * (x - y) / 8) > 0.6)) * 0.45
        for k in range(5):
            cx0 = int(w * 0.55) + k * 36
            lines[60:200, cx0:cx0 + 14] = 0.9
        lines[40:60, int(w * 0.52):int(w * 0.55) + 190] = 0.9
    img = paper * (1 - lines[:, :, None]) + ink * lines[:, :, None]
    out = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))
    d = ImageDraw.Draw(out)
    value = str(rng.choice(["1", "2", "25", "100", "500"]))
    d.text((24, 16), value, font=font(48), fill=_hsv(hue + 180, 0.7, 0.3))
    d.text((w // 2, h - 26), "REPUBLIC OF " + family.upper(), font=font(16), fill=_hsv(hue, 0.8, 0.25), anchor="mm")
    d.rectangle([6, 6, w - 7, h - 7], outline=_hsv(hue, 0.7, 0.35), width=4)
    out = out.convert("RGBA")
    return out


def random_print(rng: np.random.Generator) -> Image.Image:
    """A printed sheet of a random design (a ticket, a voucher, a leaflet, some currency nobody issued):
    light paper of any tint and aspect (1.3-3.0), and one to four of: a field of wavy fine lines,
    concentric rings, a large figure, a frame, an oval portrait window, a barcode, lines of text. Trained
    on as "not a banknote", so that what the model calls a note is our notes' layout, not "paper with print"."""
    h = 256
    w = int(h * rng.uniform(1.3, 3.0))
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    paper = np.array(_hsv(rng.uniform(0, 360), rng.uniform(0, 0.2), rng.uniform(0.8, 0.98)), np.float32) / 255
    ink = np.array(_hsv(rng.uniform(0, 360), rng.uniform(0.3, 0.9), rng.uniform(0.2, 0.7)), np.float32) / 255
    alpha = np.zeros((h, w), np.float32)
    for element in rng.choice(["lines", "rings", "oval", "stripes"], size=int(rng.integers(1, 4)), replace=False):
        if element == "lines":
            a, period = rng.uniform(0, np.pi), rng.uniform(4, 14)
            wave = rng.uniform(0, 8) * np.sin(2 * np.pi * (x * np.sin(a) - y * np.cos(a)) / rng.uniform(40, 140))
            alpha = np.maximum(alpha, (np.cos(2 * np.pi * (x * np.cos(a) + y * np.sin(a) + wave) / period) > 0.4)
                               * rng.uniform(0.3, 0.7))
        elif element == "rings":
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            r = np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
            alpha = np.maximum(alpha, (np.cos(2 * np.pi * r / rng.uniform(4, 10)) > 0.5) * (r < rng.uniform(40, 150))
                               * rng.uniform(0.4, 0.8))
        elif element == "oval":
            cx, cy, rx, ry = rng.uniform(0.2, 0.8) * w, h / 2, rng.uniform(30, 80), rng.uniform(50, 110)
            alpha = np.maximum(alpha, ((((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2) < 1) * rng.uniform(0.2, 0.6))
        else:
            period = rng.uniform(10, 40)
            alpha = np.maximum(alpha, ((x // period) % 2 == 0) * rng.uniform(0.1, 0.35))
    img = paper * (1 - alpha[:, :, None]) + ink * alpha[:, :, None]
    out = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))
    d = ImageDraw.Draw(out)
    dark = _hsv(rng.uniform(0, 360), rng.uniform(0.5, 1.0), rng.uniform(0.1, 0.4))
    if rng.random() < 0.6:
        d.text((rng.uniform(10, w * 0.6), rng.uniform(10, h * 0.5)), str(int(rng.integers(1, 1000))),
               font=font(int(rng.integers(30, 90))), fill=dark)
    if rng.random() < 0.5:
        m = int(rng.integers(4, 16))
        d.rectangle([m, m, w - 1 - m, h - 1 - m], outline=dark, width=int(rng.integers(1, 5)))
    if rng.random() < 0.4:
        x0 = int(rng.uniform(0.1, 0.6) * w)
        for k in range(int(rng.integers(3, 8))):
            yy = int(h * 0.55) + 12 * k
            d.rectangle([x0, yy, x0 + int(rng.uniform(60, 200)), yy + 4], fill=dark)
    if rng.random() < 0.3:
        xx = int(rng.uniform(0.1, 0.6) * w)
        while xx < w - 20 and rng.random() < 0.97:
            bw = int(rng.integers(1, 4))
            d.rectangle([xx, int(h * 0.75), xx + bw, h - 15], fill=(0, 0, 0))
            xx += bw + int(rng.integers(1, 4))
    return out.convert("RGBA")
