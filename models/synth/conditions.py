"""Capture conditions beyond the scanner presets: sixteen families, each at named strengths with a
physical definition, the training mixture drawn from them, and the negatives ("not a banknote").

    FAMILIES[name].apply(cond, t, rng)     sets the family's physical parameters at strength t
                                           (0 = off, 1/3 mild, 2/3 realistic, 1 strong; training draws
                                           t continuously up to 1.15)
    base_condition(rng, device)            an ordinary capture: a scanner with its lid open, or a phone
    family_condition(rng, family, strength)   one cell of the robustness suite
    training_condition(rng)                the mixture the model trains on: 0-3 families at random strengths
    scene_scan(rng, spec, cond)            a note through a condition -> (PIL image, info)
    negative_scan(rng, kind)               a scan that is not one whole note of ours -> (PIL image, annotation)

docs/MODEL.md "Robustness" has the table of families and strengths in physical terms. What the
suite measures is rendered from fresh seeds, never from training's; the negatives are split by kind
into those the model trains on (NEGATIVES_TRAIN) and those held out to test it (NEGATIVES_TEST).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from models.synth import objects
from models.synth.photo import photograph

STRENGTHS: dict[str, float] = {"mild": 1 / 3, "realistic": 2 / 3, "strong": 1.0}
KINDS = ("note", "not_a_banknote", "note_incomplete", "multiple_notes")  # the kind head's classes, in order
MIN_VISIBLE = 0.6  # under this share of its area visible, a note is "incomplete"


def lerp(t: float, mild: float, realistic: float, strong: float, off: float = 0.0) -> float:
    """Piecewise-linear through (0, off), (1/3, mild), (2/3, realistic), (1, strong); extrapolated past 1."""
    xs, ys = [0.0, 1 / 3, 2 / 3, 1.0], [off, mild, realistic, strong]
    if t <= 1.0:
        return float(np.interp(t, xs, ys))
    return float(strong + (t - 1.0) * 3 * (strong - realistic))


@dataclass(frozen=True)
class Family:
    name: str
    physics: str  # what the strength means physically (docs/MODEL.md repeats it)
    levels: str  # the values at mild / realistic / strong
    apply: Callable[[dict, float, np.random.Generator], None]
    device: str | None = None  # forces "phone" where a scanner cannot produce it


def _glare(c, t, rng):
    c["glare"] = round(lerp(t, 0.10, 0.20, 0.45) * rng.uniform(0.9, 1.1), 4)
    c["glare_size"] = round(rng.uniform(0.08, 0.22), 3)
    c["glare_elongation"] = 1.0 if rng.random() < 0.6 else round(rng.uniform(1.5, 3.5), 2)


def _shadow(c, t, rng):
    c["shadow"] = round(lerp(t, 0.10, 0.25, 0.50) * rng.uniform(0.9, 1.1), 4)
    c["shadow_soft"] = round(rng.uniform(0.02, 0.10), 3)
    c["shadow_shape"] = "edge" if rng.random() < 0.6 else "blob"


def _crumple(c, t, rng):
    c["crumple"] = round(lerp(t, 0.5, 1.0, 2.0), 3)
    c["paper_shading"] = round(lerp(t, 0.08, 0.15, 0.30) * rng.uniform(0.9, 1.1), 4)
    c["creases"] = int(round(lerp(t, 1, 3, 6)))


def _colour(c, t, rng):
    if rng.random() < 0.55:  # warm: tungsten, candle-warm LEDs
        c["cct_k"] = round(lerp(t, 4000, 3000, 2500, off=6504))
    else:  # cold: shade, cold-white LEDs
        c["cct_k"] = round(lerp(t, 7500, 9000, 12000, off=6504))
    c["tint"] = round(float(rng.choice([-1, 1])) * lerp(t, 0.015, 0.03, 0.06) * rng.uniform(0.5, 1.0), 4)
    c["awb"] = round(lerp(t, 0.5, 0.3, 0.0, off=1.0), 3)


def _perspective(c, t, rng):
    c["tilt_deg"] = round(lerp(t, 4.0, 8.0, 14.0) * rng.uniform(0.9, 1.1), 2)
    c["tilt_axis_deg"] = round(rng.uniform(0, 360), 1)
    c["focal_share"] = round(rng.uniform(0.8, 1.4), 3)


def _warp(c, t, rng):
    c["bend"] = round(lerp(t, 0.03, 0.06, 0.12) * rng.uniform(0.9, 1.1), 4)


def _finger(c, t, rng):
    n = 2 if t > 0.9 and rng.random() < 0.4 else 1
    c["fingers"] = [{"cover": round(lerp(t, 0.03, 0.06, 0.12) / n * rng.uniform(0.85, 1.15), 4),
                     "edge": str(rng.choice(["short", "long"]))} for _ in range(n)]


def _object(c, t, rng):
    c["objects_over"] = [{"kind": str(rng.choice(["card", "coin", "pen", "receipt"])),
                          "cover": round(lerp(t, 0.03, 0.07, 0.15) * rng.uniform(0.85, 1.15), 4)}]


def _orientation(c, t, rng):
    if t < 0.5:
        c["angle_deg"] = round(180 + rng.uniform(-3, 3), 2)
    elif t < 0.85:
        c["angle_deg"] = round(float(rng.choice([90, 270])) + rng.uniform(-3, 3), 2)
        h, w = c["image_size"]
        c["image_size"] = [w, h]  # the phone turned with the note
        c["width_share"] = round(c["width_share"] * w / h, 4)  # the note spans the same share of the long side
    else:
        c["angle_deg"] = round(rng.uniform(0, 360), 2)
        c["width_share"] = round(min(c["width_share"], 0.6), 3)  # a turned note still fits the frame


def _background(c, t, rng):
    if t < 0.5:
        c["background"] = str(rng.choice(["wood", "granite", "fabric", "pattern"]))
    elif t < 0.85:
        c["background"] = "bright"
    else:
        c["background"] = str(rng.choice(["wood", "granite", "fabric", "pattern", "bright"]))
        c["clutter"] = int(rng.integers(2, 5))


def _defocus(c, t, rng):
    c["defocus_px"] = round(lerp(t, 1.5, 3.0, 5.0) * c["width_share"] * c["image_size"][1] / 500, 3)


def _motion(c, t, rng):
    c["motion_px"] = round(lerp(t, 3.0, 6.0, 12.0) * c["width_share"] * c["image_size"][1] / 500, 2)
    c["motion_angle_deg"] = round(rng.uniform(0, 180), 1)


def _compression(c, t, rng):
    c["jpeg_quality"] = int(round(lerp(t, 45, 25, 12, off=90)))
    c["sharpen"] = round(rng.uniform(0, 0.8), 3)


def _resolution(c, t, rng):
    note_px = c["width_share"] * c["image_size"][1]
    c["resample"] = round(min(1.0, lerp(t, 300, 200, 130, off=note_px) / note_px), 4)


def _exposure(c, t, rng):
    if rng.random() < 0.7:  # too little light: the sensor's gain lifts the noise
        c["exposure"] = round(lerp(t, 0.6, 0.4, 0.22, off=1.0), 3)
        c["noise_shot"] = round(lerp(t, 0.02, 0.035, 0.05, off=0.01), 4)
        c["noise_read"] = round(lerp(t, 0.006, 0.012, 0.02, off=0.003), 4)
    else:  # too much: the paper clips
        c["exposure"] = round(lerp(t, 1.15, 1.3, 1.6, off=1.0), 3)


def _framing(c, t, rng):
    cut = lerp(t, 0.05, 0.15, 0.30) * rng.uniform(0.9, 1.1)
    h, w = c["image_size"]
    ws = c["width_share"]
    if rng.random() < 0.6:  # a short end outside the frame
        c["offset"] = [round(float(rng.choice([-1, 1])) * (0.5 - ws / 2 + cut * ws), 4), c["offset"][1]]
    else:  # a long edge outside
        nh = ws * w * 256 / 576 / h
        c["offset"] = [c["offset"][0], round(float(rng.choice([-1, 1])) * (0.5 - nh / 2 + cut * nh), 4)]
    c["cut"] = round(cut, 4)


FAMILIES: dict[str, Family] = {f.name: f for f in [
    Family("glare", "specular highlight: peak radiance added, as a share of the paper's own (clips when > paper headroom)",
           "+10 % / +20 % / +45 %", _glare),
    Family("shadow", "cast shadow: share of the direct light blocked in the umbra; penumbra 2-10 % of the note's length",
           "10 % / 25 % / 50 % darker", _shadow),
    Family("crumple", "crumpled and flattened paper: 2-98 % spread of its Lambertian shading; creases",
           "8 % + 1 crease / 15 % + 3 / 30 % + 6", _crumple),
    Family("colour_temperature", "illuminant colour (black body) and green-magenta tint; share of the cast the camera's AWB removes",
           "4000 or 7500 K, AWB 50 % / 3000 or 9000 K, AWB 30 % / 2500 or 12000 K, no AWB", _colour),
    Family("perspective", "camera tilted off the paper's normal (keystone), focal 0.8-1.4 x image width",
           "4° / 8° / 14°", _perspective, device="phone"),
    Family("warp", "paper bend: sag as a share of the note's length (curl along or across), with its shading",
           "3 % / 6 % / 12 %", _warp),
    Family("finger", "a finger or thumb over an edge (skin tones I-VI): share of the note's area covered",
           "3 % / 6 % / 12 %", _finger),
    Family("object", "a card, coin, pen or receipt lying over part of the note: share of its area covered",
           "3 % / 7 % / 15 %", _object),
    Family("orientation", "the note's orientation in the frame",
           "upside down (180°) / portrait (90° or 270°) / any angle", _orientation),
    Family("background", "what the note lies on", "wood, granite, fabric or cloth / a bright counter / "
           "any of those + 2-4 objects around the note", _background, device="phone"),
    Family("defocus", "out of focus: disk point-spread radius, in pixels of a 500-px-wide note",
           "1.5 / 3 / 5 px", _defocus),
    Family("motion", "hand motion during the exposure: blur length, in pixels of a 500-px-wide note",
           "3 / 6 / 12 px", _motion),
    Family("compression", "JPEG quality with 4:2:0 chroma, random unsharp masking", "45 / 25 / 12", _compression),
    Family("resolution", "the note imaged at fewer pixels (digital zoom, messenger resampling): note width",
           "300 / 200 / 130 px", _resolution),
    Family("exposure", "too little light (exposure x, sensor gain raises shot and read noise) or too much (paper clips)",
           "x0.6 or x1.15 / x0.4 or x1.3 / x0.22 or x1.6", _exposure),
    Family("framing", "part of the note outside the frame (along its length or its width)",
           "5 % / 15 % / 30 % cut", _framing),
]}


def base_condition(rng: np.random.Generator, device: str | None = None) -> dict:
    """An ordinary capture with nothing wrong: a scanner with its lid open (dark bed) or a phone over a counter."""
    device = device or ("scanner" if rng.random() < 0.4 else "phone")
    if device == "scanner":
        return {"device": "scanner", "seed": int(rng.integers(2**31)), "image_size": [288, 640], "background": "bed",
                "width_share": round(rng.uniform(0.82, 0.93), 4), "angle_deg": round(rng.uniform(-3, 3), 2),
                "offset": [round(rng.uniform(-0.03, 0.03), 4), round(rng.uniform(-0.03, 0.03), 4)],
                "focal_share": 50.0, "cct_k": 6504.0, "awb": 0.0, "noise_read": round(rng.uniform(0.002, 0.006), 4),
                "noise_shot": round(rng.uniform(0.0, 0.01), 4), "jpeg_quality": int(rng.integers(70, 93)),
                "light_azimuth_deg": round(rng.uniform(0, 360), 1), "light_elevation_deg": 80.0}
    h = 384 if rng.random() < 0.7 else 288
    return {"device": "phone", "seed": int(rng.integers(2**31)), "image_size": [h, 512],
            "background": str(rng.choice(["bed", "wood", "granite", "fabric", "dark"])),
            "width_share": round(rng.uniform(0.55, 0.85), 4), "angle_deg": round(rng.uniform(-6, 6), 2),
            "offset": [round(rng.uniform(-0.05, 0.05), 4), round(rng.uniform(-0.05, 0.05), 4)],
            "tilt_deg": round(rng.uniform(0, 3), 2), "tilt_axis_deg": round(rng.uniform(0, 360), 1),
            "focal_share": round(rng.uniform(0.8, 1.4), 3), "cct_k": round(rng.uniform(4500, 6800)),
            "awb": round(rng.uniform(0.7, 1.0), 3), "noise_read": round(rng.uniform(0.002, 0.008), 4),
            "noise_shot": round(rng.uniform(0.005, 0.02), 4), "jpeg_quality": int(rng.integers(70, 93)),
            "defocus_px": round(rng.uniform(0, 0.8), 3), "sharpen": round(rng.uniform(0, 0.6), 3),
            "light_azimuth_deg": round(rng.uniform(0, 360), 1), "light_elevation_deg": round(rng.uniform(35, 75), 1)}


CONTROL = "none"  # the suite's control cell: an ordinary capture, no family applied


def family_condition(rng: np.random.Generator, family: str, strength: str) -> dict:
    """One cell of the robustness suite: an ordinary capture plus one family at a named strength (±10 %);
    family "none" is the control: the ordinary capture alone."""
    if family == CONTROL:
        c = base_condition(rng)
        c["family"], c["strength"] = CONTROL, strength
        return c
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose from {sorted(FAMILIES)}")
    if strength not in STRENGTHS:
        raise ValueError(f"unknown strength {strength!r}; choose from {list(STRENGTHS)}")
    f = FAMILIES[family]
    c = base_condition(rng, f.device)
    f.apply(c, STRENGTHS[strength], rng)
    c["family"], c["strength"] = family, strength
    return c


def training_condition(rng: np.random.Generator) -> dict:
    """0-3 families at strengths drawn uniformly in [0.05, 1.15]: the domain the model learns to ignore."""
    k = int(rng.choice(4, p=[0.2, 0.45, 0.25, 0.1]))
    names = list(rng.choice(sorted(FAMILIES), size=k, replace=False)) if k else []
    device = "phone" if any(FAMILIES[n].device == "phone" for n in names) else None
    c = base_condition(rng, device)
    for n in names:
        FAMILIES[n].apply(c, float(rng.uniform(0.05, 1.15)), rng)
    c["family"] = "+".join(sorted(names)) or "none"
    c["strength"] = "mixed"
    return c


def validation_condition(rng: np.random.Generator) -> dict:
    """What thresholds are chosen on: an ordinary capture (a third) or one family at a strength drawn in
    [0.1, 1.05] - the captures a till meets, hard ones included, without the training mixture's stacks."""
    if rng.random() < 1 / 3:
        c = base_condition(rng)
        c["family"], c["strength"] = CONTROL, "mixed"
        return c
    name = str(rng.choice(sorted(FAMILIES)))
    c = base_condition(rng, FAMILIES[name].device)
    FAMILIES[name].apply(c, float(rng.uniform(0.1, 1.05)), rng)
    c["family"], c["strength"] = name, "mixed"
    return c


def note_sheet(note_rgb: np.ndarray) -> Image.Image:
    return Image.fromarray(note_rgb)


def scene_scan(note_rgb: np.ndarray, cond: dict) -> tuple[Image.Image, dict]:
    """The note through the condition: (PIL image, info with corners and visible share)."""
    placement = {"width_share": cond["width_share"], "angle_deg": cond.get("angle_deg", 0.0),
                 "offset": cond.get("offset", [0.0, 0.0])}
    return photograph([(note_sheet(note_rgb), placement)], cond)


# --- negatives: scans that are not one whole note of ours ----------------------------------------

NEGATIVES_TRAIN: dict[str, str] = {  # kind -> the kind head's class
    "blank_card": "not_a_banknote", "card": "not_a_banknote", "receipt": "not_a_banknote",
    "foreign_ardenia": "not_a_banknote", "texture": "not_a_banknote", "noise": "not_a_banknote",
    "partial_frame": "note_incomplete", "two_apart": "multiple_notes", "two_overlap": "multiple_notes",
    "random_print": "not_a_banknote", "two_random": "multiple_notes", "partial_object": "note_incomplete",
}
NEGATIVES_TEST: dict[str, str] = {  # never trained on
    "coupon": "not_a_banknote", "text_page": "not_a_banknote", "shapes": "not_a_banknote",
    "gradient": "not_a_banknote", "foreign_borealis": "not_a_banknote", "coins": "not_a_banknote",
    "partial_covered": "note_incomplete", "three_fanned": "multiple_notes", "crossed": "multiple_notes",
}


def negative_scan(rng: np.random.Generator, kind: str, make_note: Callable[[np.random.Generator], np.ndarray],
                  ) -> tuple[Image.Image, dict]:
    """A scan of `kind` (NEGATIVES_TRAIN or NEGATIVES_TEST) under an ordinary capture, sometimes with
    one family at a random strength on top. `make_note(rng)` renders one of our notes (uint8)."""
    label = {**NEGATIVES_TRAIN, **NEGATIVES_TEST}.get(kind)
    if label is None:
        raise ValueError(f"unknown negative kind {kind!r}")
    c = base_condition(rng)
    if rng.random() < 0.4:
        fam = str(rng.choice([n for n in sorted(FAMILIES) if n not in ("framing", "orientation", "perspective")]))
        FAMILIES[fam].apply(c, float(rng.uniform(0.1, 0.8)), rng)
    c["family"], c["strength"] = f"negative:{kind}", "mixed"
    ws = c["width_share"]
    angle = c.get("angle_deg", 0.0)
    sheets: list[tuple[Image.Image, dict]] = []

    def at(width_share, angle_deg=angle, offset=(0.0, 0.0)):
        return {"width_share": width_share, "angle_deg": angle_deg, "offset": list(offset)}

    if kind in ("blank_card", "card"):
        sheets = [(objects.card(rng, blank=kind == "blank_card"), at(rng.uniform(0.4, 0.75)))]
    elif kind == "receipt":
        sheets = [(objects.receipt(rng), at(rng.uniform(0.2, 0.4), angle + float(rng.choice([0, 90]))))]
    elif kind == "coupon":
        sheets = [(objects.coupon(rng), at(ws))]
    elif kind == "text_page":
        sheets = [(objects.text_page(rng), at(rng.uniform(0.35, 0.6), angle + float(rng.choice([0, 90]))))]
    elif kind == "random_print":
        sheets = [(objects.random_print(rng), at(rng.uniform(0.45, 0.85), angle + float(rng.choice([0, 0, 90]))))]
    elif kind == "partial_object":  # most of the note under a card or a sheet of another design
        sheets = [(note_sheet(make_note(rng)), at(ws))]
        cover = objects.random_print(rng) if rng.random() < 0.5 else objects.card(rng)
        side = float(rng.choice([-1, 1]))
        sheets.append((cover, at(ws * rng.uniform(0.75, 0.95), angle + rng.uniform(-20, 20),
                              (side * ws * rng.uniform(0.05, 0.2), rng.uniform(-0.1, 0.1)))))
    elif kind == "two_random":  # two notes anywhere: apart, touching, overlapping, turned by up to 40 degrees
        small = ws * rng.uniform(0.45, 0.65)
        for _ in range(2):
            sheets.append((note_sheet(make_note(rng)), at(small, angle + rng.uniform(-40, 40),
                                                          (rng.uniform(-0.3, 0.3), rng.uniform(-0.25, 0.25)))))
    elif kind.startswith("foreign_"):
        sheets = [(objects.foreign_note(rng, kind.split("_", 1)[1]), at(ws))]
    elif kind in ("texture", "noise", "shapes", "gradient"):
        c["background"] = str(rng.choice(["wood", "granite", "fabric", "pattern", "bright", "dark"])) \
            if kind == "texture" else kind
    elif kind == "coins":
        c["background"] = str(rng.choice(["wood", "granite", "bright", "dark"]))
        sheets = [(objects.coin(rng, int(rng.integers(70, 120))),
                   at(rng.uniform(0.08, 0.16), 0.0, rng.uniform(-0.35, 0.35, 2))) for _ in range(int(rng.integers(1, 6)))]
    elif kind == "partial_frame":  # a note mostly outside the frame: 15-55 % of it visible
        v = rng.uniform(0.15, 0.55)
        sign = float(rng.choice([-1, 1]))
        if rng.random() < 0.7:
            off = (sign * (0.5 + ws * (0.5 - v)), rng.uniform(-0.05, 0.05))
        else:
            h, w = c["image_size"]
            nh = ws * w * 256 / 576 / h
            off = (rng.uniform(-0.05, 0.05), sign * (0.5 + nh * (0.5 - v)))
        sheets = [(note_sheet(make_note(rng)), at(ws, angle, off))]
    elif kind == "partial_covered":  # most of the note under a page, a receipt or a card
        sheets = [(note_sheet(make_note(rng)), at(ws))]
        cover = objects.text_page(rng, 480, 400) if rng.random() < 0.5 else objects.receipt(rng, 300, 640)
        side = float(rng.choice([-1, 1]))
        sheets.append((cover, at(ws * rng.uniform(0.7, 0.9), angle + rng.uniform(-10, 10),
                              (side * ws * rng.uniform(0.05, 0.25), rng.uniform(-0.1, 0.1)))))
    elif kind in ("two_apart", "two_overlap", "three_fanned", "crossed"):
        n = 3 if kind == "three_fanned" else 2
        small = ws * (0.5 if kind == "two_apart" else 0.62)
        for k in range(n):
            if kind == "two_apart":
                off, a = ((-1) ** k * small * 0.55, rng.uniform(-0.1, 0.1)), angle + rng.uniform(-8, 8)
            elif kind == "two_overlap":
                off, a = ((-1) ** k * small * rng.uniform(0.2, 0.4), (-1) ** k * rng.uniform(0.05, 0.2)), angle
            elif kind == "three_fanned":
                off, a = ((k - 1) * small * 0.15, (k - 1) * 0.05), angle + (k - 1) * rng.uniform(12, 25)
            else:
                off, a = (0.0, 0.0), angle + (0.0 if k == 0 else 90.0 + rng.uniform(-15, 15))
            sheets.append((note_sheet(make_note(rng)), at(small, a, off)))
    image, info = photograph(sheets, c)
    ann = {"kind": label, "negative": kind, "label": "rejected", "counterfeit": False, "denomination": None,
           "serial": None, "serial_length": None, "severity": None, "signs": {}, "capture": c,
           "visible_share": info.get("visible_share"), "width": image.width, "height": image.height}
    return image, ann
