"""One note, then one scan: sample a spec, edit the template's layers for each sign, composite,
then pass the note through the scanner's capture conditions.

    sample_note(rng, counterfeit, severity)   -> NoteSpec (JSON-ready, everything random drawn here)
    render_note(spec)                         -> uint8 [256, 576, 3], deterministic in the spec
    render_scan(seed_or_rng, ...)             -> (PIL scan, annotation dict)
    encode_jpeg(image, quality)               -> bytes
"""

from __future__ import annotations

import functools
import io
from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image

from models.synth.capture import apply_capture, sample_capture
from models.synth.design import (
    DENOMINATIONS,
    NOTE_H,
    NOTE_W,
    SERIAL_CELL_H,
    SERIAL_CELL_W,
    SERIAL_LENGTH,
    WATERMARK_CONTRAST,
    glyph,
    palette,
    template,
)
from models.synth.signs import SEVERITIES, sample_signs

GENERATOR_VERSION = "2.0.0"  # 2: scenes of capture families and negatives (conditions.py)
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I or O
THREAD_GREY = np.array([0.30, 0.31, 0.33], dtype=np.float32)


@dataclass
class NoteSpec:
    denomination: str
    serial: str
    severity: str | None = None  # None for a genuine note
    signs: dict[str, dict] = field(default_factory=dict)  # sign name -> its parameters

    @property
    def counterfeit(self) -> bool:
        return bool(self.signs)

    def to_dict(self) -> dict:
        return asdict(self)


def make_serial(rng: np.random.Generator, char_delta: int = 0) -> str:
    """2 letters + 8 digits + 1 letter; a counterfeit's serial has `char_delta` digits more or fewer."""
    digits = 8 + char_delta
    return ("".join(rng.choice(list(LETTERS), 2)) + "".join(str(d) for d in rng.integers(0, 10, digits))
            + str(rng.choice(list(LETTERS))))


def sample_note(rng: np.random.Generator, counterfeit: bool, severity: str | None = None,
                denomination: str | None = None) -> NoteSpec:
    denom = denomination or str(rng.choice(DENOMINATIONS))
    if not counterfeit:
        return NoteSpec(denom, make_serial(rng))
    severity = severity or str(rng.choice(SEVERITIES))
    signs = sample_signs(rng, severity, NOTE_H, NOTE_W)
    delta = signs.get("serial_format", {}).get("char_delta", 0)
    return NoteSpec(denom, make_serial(rng, delta), severity, signs)


def _region_mask(regions: list[list[float]]) -> np.ndarray:
    y = np.arange(NOTE_H, dtype=np.float32)[:, None]
    x = np.arange(NOTE_W, dtype=np.float32)[None, :]
    mask = np.zeros((NOTE_H, NOTE_W), dtype=np.float32)
    for cx, cy, rx, ry in regions:
        d = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
        mask = np.maximum(mask, np.clip((1.0 - d) * min(rx, ry) / 4.0 + 0.5, 0.0, 1.0))
    return mask


def _over(img: np.ndarray, alpha: np.ndarray, color: np.ndarray) -> None:
    """In place: img = img * (1 - alpha) + color * alpha."""
    img -= alpha[:, :, None] * (img - color)


def _compose(paper: np.ndarray, layers: list[tuple[np.ndarray, np.ndarray]], watermark: np.ndarray,
             wm_contrast: float) -> np.ndarray:
    """Paper darkened by the watermark, then each (alpha, colour) layer printed over it in order."""
    img = np.empty((*watermark.shape, 3), dtype=np.float32)
    img[:] = paper
    img *= (1.0 - wm_contrast * watermark)[:, :, None]
    for alpha, color in layers:
        _over(img, alpha, color)
    return img


@functools.lru_cache(maxsize=32)
def _genuine_print(index: int, hue_shift: float, sat_scale: float, value_scale: float) -> np.ndarray:
    """Everything but the serial, for notes whose layers no sign edits (most notes): cached."""
    t = template(index)
    pal = palette(t.design, hue_shift, sat_scale, value_scale)
    img = _compose(pal.paper, [(t.fine1, pal.ink1), (t.fine2, pal.ink2), (t.solid, pal.ink3),
                               (t.thread, THREAD_GREY)], t.watermark, WATERMARK_CONTRAST)
    img.flags.writeable = False
    return img


def _bbox(cx: float, cy: float, rx: float, ry: float, pad: int = 6) -> tuple[slice, slice]:
    return (slice(max(0, int(cy - ry) - pad), min(NOTE_H, int(cy + ry) + pad + 1)),
            slice(max(0, int(cx - rx) - pad), min(NOTE_W, int(cx + rx) + pad + 1)))


def render_note(spec: NoteSpec) -> np.ndarray:
    """The printed note, before any scanner: uint8 [NOTE_H, NOTE_W, 3]. Deterministic in the spec.

    Starts from the cached print of an unaltered note (in the note's inks), then recomposes only the
    boxes a sign touches, from the edited layers.
    """
    index = DENOMINATIONS.index(spec.denomination)
    t = template(index)
    signs = spec.signs
    color = signs.get("color_discrepancy", {})
    hue, sat = float(color.get("hue_shift_deg", 0.0)), float(color.get("saturation_scale", 1.0))
    val = float(color.get("value_scale", 1.0))
    pal = palette(t.design, hue, sat, val)
    img = _genuine_print(index, hue, sat, val).copy()
    fine1, fine2, solid = t.fine1, t.fine2, t.solid
    wm_contrast, thread = WATERMARK_CONTRAST, t.thread
    boxes: list[tuple[slice, slice]] = []
    if "incomplete_printing" in signs:
        regions = signs["incomplete_printing"]["regions"]
        lost = signs["incomplete_printing"]["ink_lost"] * _region_mask(regions)
        fine1, fine2, solid = fine1 * (1.0 - lost), fine2 * (1.0 - lost), solid * (1.0 - 0.5 * lost)
        boxes += [_bbox(*r) for r in regions]
    if "watermark" in signs:
        rel = signs["watermark"]["relative_contrast"]
        wm_contrast = WATERMARK_CONTRAST * rel
        if rel == 0.0:  # no window at all: the background lines run straight through
            fine1 = fine1 + t.window_fill
        boxes.append(_bbox(t.design.watermark_x, NOTE_H / 2, 50, 66))
    if "security_thread" in signs:  # a printed, continuous imitation, or nothing
        thread = t.thread_solid * (0.9 * signs["security_thread"]["relative_contrast"])
        boxes.append((slice(0, NOTE_H), slice(t.design.thread_x - 2, t.design.thread_x + 10)))
    for box in boxes:
        img[box] = _compose(pal.paper, [(fine1[box], pal.ink1), (fine2[box], pal.ink2), (solid[box], pal.ink3),
                                        (thread[box], THREAD_GREY)], t.watermark[box], wm_contrast)
    # the serial: only its cells are touched
    x0, y0 = t.serial_box[0], t.serial_box[1]
    for i, ch in enumerate(spec.serial):
        x = x0 + i * SERIAL_CELL_W
        if x + SERIAL_CELL_W > NOTE_W:
            break
        _over(img[y0:y0 + SERIAL_CELL_H, x:x + SERIAL_CELL_W], glyph(ch), pal.serial)
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def as_rng(seed_or_rng: int | np.random.Generator | list[int] | tuple[int, ...]) -> np.random.Generator:
    if isinstance(seed_or_rng, np.random.Generator):
        return seed_or_rng
    return np.random.default_rng(seed_or_rng)


def render_scan(seed_or_rng, counterfeit: bool | None = None, severity: str | None = None,
                capture: str = "default", denomination: str | None = None,
                spec: NoteSpec | None = None) -> tuple[Image.Image, dict]:
    """One scan and its annotation. Deterministic in the seed (and the other arguments)."""
    rng = as_rng(seed_or_rng)
    if spec is None:
        if counterfeit is None:
            counterfeit = bool(rng.random() < 0.5)
        spec = sample_note(rng, counterfeit, severity, denomination)
    cap = sample_capture(rng, capture)
    image = apply_capture(render_note(spec), cap)
    annotation = {
        "label": "counterfeit" if spec.counterfeit else "genuine",
        "counterfeit": spec.counterfeit,
        "denomination": spec.denomination,
        "serial": spec.serial,
        "serial_length": len(spec.serial),
        "severity": spec.severity,
        "signs": spec.signs,
        "capture": cap,
        "generator_version": GENERATOR_VERSION,
        "width": image.width,
        "height": image.height,
    }
    return image, annotation


def encode_jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def make_scans(count: int, seed: int, counterfeit_ratio: float = 0.5,
               capture: str = "default") -> list[tuple[bytes, dict]]:
    """`count` JPEG scans with annotations, in memory (demo, tests). Scan i uses rng([seed, i])."""
    out = []
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        image, ann = render_scan(rng, counterfeit=bool(rng.random() < counterfeit_ratio), capture=capture)
        out.append((encode_jpeg(image, ann["capture"]["jpeg_quality"]), ann))
    return out


__all__ = ["GENERATOR_VERSION", "SERIAL_LENGTH", "NoteSpec", "encode_jpeg", "make_scans", "make_serial",
           "render_note", "render_scan", "sample_note"]
