"""Tell-tale signs of a counterfeit, each with a severity defined in physical terms.

    incomplete_printing  share of the note's area whose fine lines are lost, and how much ink is lost there
    color_discrepancy    hue shift of every ink, in degrees (either direction), saturation and brightness
                         (HSV value) scales of every ink
    watermark            watermark contrast relative to a genuine note's (22 % paper darkening);
                         "obvious" is no watermark at all, the window printed over with background lines
    serial_format        characters added to or removed from the 11-character serial
    security_thread      contrast of the thread relative to a genuine one; imitations are a printed,
                         continuous band without the windowed pattern; "obvious" is no thread

Every counterfeit note has one severity, shared by all its signs, so test sets can hold each
severity in equal shares. docs/MODEL.md repeats this table.
"""

from __future__ import annotations

import numpy as np

SIGN_NAMES: list[str] = ["incomplete_printing", "color_discrepancy", "watermark", "serial_format", "security_thread"]
SEVERITIES: tuple[str, ...] = ("subtle", "medium", "obvious")

PHYSICAL: dict[str, dict[str, dict[str, float]]] = {
    "incomplete_printing": {"subtle": {"area_share": 0.08, "ink_lost": 0.6},
                            "medium": {"area_share": 0.15, "ink_lost": 0.85},
                            "obvious": {"area_share": 0.30, "ink_lost": 1.0}},
    "color_discrepancy": {"subtle": {"hue_shift_deg": 15.0, "saturation_scale": 0.92, "value_scale": 0.96},
                          "medium": {"hue_shift_deg": 25.0, "saturation_scale": 0.85, "value_scale": 0.92},
                          "obvious": {"hue_shift_deg": 45.0, "saturation_scale": 0.75, "value_scale": 0.85}},
    "watermark": {"subtle": {"relative_contrast": 0.40}, "medium": {"relative_contrast": 0.15},
                  "obvious": {"relative_contrast": 0.0}},
    "serial_format": {"subtle": {"char_delta": 1}, "medium": {"char_delta": 2}, "obvious": {"char_delta": 3}},
    "security_thread": {"subtle": {"relative_contrast": 0.45}, "medium": {"relative_contrast": 0.2},
                        "obvious": {"relative_contrast": 0.0}},
}

# how many signs a counterfeit carries: 1 (60 %), 2 (30 %) or 3 (10 %)
SIGN_COUNT_P = (0.6, 0.3, 0.1)


def sample_signs(rng: np.random.Generator, severity: str, note_h: int, note_w: int) -> dict[str, dict]:
    """Pick one to three signs and their random placement; returns {sign: params} (JSON-ready)."""
    k = int(rng.choice(len(SIGN_COUNT_P), p=SIGN_COUNT_P)) + 1
    names = [SIGN_NAMES[i] for i in sorted(rng.choice(len(SIGN_NAMES), size=k, replace=False))]
    out: dict[str, dict] = {}
    for name in names:
        params: dict = {"severity": severity, **PHYSICAL[name][severity]}
        if name == "incomplete_printing":
            n = int(rng.integers(1, 3))
            each = params["area_share"] * note_h * note_w / n
            blobs = []
            for _ in range(n):
                aspect = float(rng.uniform(0.7, 2.5))
                rx = min(float(np.sqrt(each / np.pi * aspect)), 0.45 * note_w)
                ry = min(each / np.pi / rx, 0.48 * note_h)
                blobs.append([round(float(rng.uniform(0.6 * rx, note_w - 0.6 * rx)), 1),
                              round(float(rng.uniform(0.6 * ry, note_h - 0.6 * ry)), 1), round(rx, 1), round(ry, 1)])
            params["regions"] = blobs  # [cx, cy, rx, ry] ellipses, in note pixels
        elif name == "color_discrepancy":
            params["hue_shift_deg"] *= float(rng.choice([-1.0, 1.0]))
        elif name == "serial_format":
            params["char_delta"] = int(params["char_delta"] * rng.choice([-1, 1]))
        out[name] = params
    return out
