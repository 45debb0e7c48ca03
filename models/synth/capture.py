"""Capture conditions of a POS scanner: each a named parameter with a range, grouped in presets.

    rotation_deg    note rotation, uniform in [-r, r]
    offset          note centre offset, share of the scan size, per axis in [-o, o]
    scale           note size relative to nominal (the note fills 90 % of the scan width at 1.0)
    crop            share of the scan cut away at one random side (the scan gets smaller)
    blur_sigma      defocus blur: standard deviation of a box point-spread function, scan pixels
    noise_sigma     sensor noise, grey levels (0..255) standard deviation
    lighting        uneven lighting: peak-to-peak brightness change of a linear ramp plus vignette
    white_balance   per-channel gain error, +/-
    jpeg_quality    JPEG quality the scanner encodes with

`harsh` is stronger than anything the default model trains on (it trains on `default`).
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageFilter

SCAN_H, SCAN_W = 288, 640  # the scanner's nominal output size

PRESETS: dict[str, dict[str, tuple[float, float]]] = {
    "clean": {"rotation_deg": (0.0, 0.5), "offset": (0.0, 0.01), "scale": (0.98, 1.0), "crop": (0.0, 0.0),
              "blur_sigma": (0.0, 0.3), "noise_sigma": (0.0, 2.0), "lighting": (0.0, 0.05),
              "white_balance": (0.0, 0.01), "jpeg_quality": (92, 95)},
    "default": {"rotation_deg": (0.0, 3.0), "offset": (0.0, 0.03), "scale": (0.92, 1.04), "crop": (0.0, 0.02),
                "blur_sigma": (0.0, 1.0), "noise_sigma": (1.0, 6.0), "lighting": (0.0, 0.15),
                "white_balance": (0.0, 0.03), "jpeg_quality": (70, 92)},
    "harsh": {"rotation_deg": (3.0, 6.0), "offset": (0.02, 0.05), "scale": (0.86, 1.06), "crop": (0.02, 0.05),
              "blur_sigma": (1.0, 1.8), "noise_sigma": (6.0, 12.0), "lighting": (0.15, 0.3),
              "white_balance": (0.02, 0.04), "jpeg_quality": (40, 65)},
}


def sample_capture(rng: np.random.Generator, preset: str) -> dict:
    """Draw one set of capture parameters from a preset (JSON-ready)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown capture preset {preset!r}; choose from {sorted(PRESETS)}")
    r = PRESETS[preset]

    def u(name: str) -> float:
        lo, hi = r[name]
        return float(rng.uniform(lo, hi))

    sign = lambda: float(rng.choice([-1.0, 1.0]))  # noqa: E731
    return {
        "preset": preset,
        "rotation_deg": round(sign() * u("rotation_deg"), 3),
        "offset": [round(sign() * u("offset"), 4), round(sign() * u("offset"), 4)],
        "scale": round(u("scale"), 4),
        "crop": round(u("crop"), 4),
        "crop_side": str(rng.choice(["left", "right", "top", "bottom"])),
        "blur_sigma": round(u("blur_sigma"), 3),
        "noise_sigma": round(u("noise_sigma"), 3),
        "lighting": round(u("lighting"), 4),
        "lighting_angle_deg": round(float(rng.uniform(0, 360)), 1),
        "white_balance": [round(sign() * u("white_balance"), 4) for _ in range(3)],
        "jpeg_quality": int(rng.integers(int(r["jpeg_quality"][0]), int(r["jpeg_quality"][1]) + 1)),
        "noise_offset": [int(rng.integers(0, 256)), int(rng.integers(0, 512))],
        "background_grey": int(rng.integers(20, 70)),
    }


@functools.lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """Unit Gaussian noise, drawn once per process from a fixed seed; scans take windows of it."""
    return np.random.default_rng(20260101).standard_normal((SCAN_H + 256, SCAN_W + 512, 3), dtype=np.float32)


def _blur(img: Image.Image, sigma: float) -> Image.Image:
    """Defocus blur: a box PSF with standard deviation `sigma` (box radius r: sigma^2 = ((2r+1)^2 - 1) / 12)."""
    if sigma <= 0.05:
        return img
    return img.filter(ImageFilter.BoxBlur(float((np.sqrt(12.0 * sigma * sigma + 1.0) - 1.0) / 2.0)))


def apply_capture(note: np.ndarray, c: dict) -> Image.Image:
    """note: uint8 [h, w, 3] -> the scan as a PIL RGB image (SCAN_H x SCAN_W, less any crop)."""
    h, w = note.shape[:2]
    s = 0.9 * SCAN_W / w * c["scale"]  # note pixels -> scan pixels
    a = np.deg2rad(c["rotation_deg"])
    cx = SCAN_W / 2 + c["offset"][0] * SCAN_W
    cy = SCAN_H / 2 + c["offset"][1] * SCAN_H
    # inverse map: scan (u, v) -> note (x, y) = R(-a) (u - cx, v - cy) / s + note centre
    ca, sa = np.cos(a) / s, np.sin(a) / s
    coeffs = (ca, sa, w / 2 - ca * cx - sa * cy, -sa, ca, h / 2 + sa * cx - ca * cy)
    g = c["background_grey"]
    img = Image.fromarray(note).transform((SCAN_W, SCAN_H), Image.Transform.AFFINE, coeffs,
                                          Image.Resampling.BILINEAR, fillcolor=(g, g, g))
    img = _blur(img, c["blur_sigma"])
    x = np.asarray(img, dtype=np.float32)
    # uneven lighting: linear ramp along an angle plus a vignette, times per-channel gains
    yy = np.linspace(-1, 1, SCAN_H, dtype=np.float32)[:, None]
    xx = np.linspace(-1, 1, SCAN_W, dtype=np.float32)[None, :]
    ang = np.deg2rad(c["lighting_angle_deg"])
    amp = c["lighting"]
    light = (1.0 + 0.5 * amp * np.cos(ang) * xx - 0.25 * amp * xx**2) + (0.5 * amp * np.sin(ang) * yy - 0.25 * amp * yy**2)
    gains = 1.0 + np.asarray(c["white_balance"], dtype=np.float32)
    x *= light[:, :, None]
    x *= gains
    oy, ox = c["noise_offset"]
    x += c["noise_sigma"] * _noise_bank()[oy:oy + SCAN_H, ox:ox + SCAN_W]
    x += 0.5
    img = Image.fromarray(np.clip(x, 0, 255, out=x).astype(np.uint8))
    if c["crop"] > 0:
        dx, dy = round(c["crop"] * SCAN_W), round(c["crop"] * SCAN_H)
        box = {"left": (dx, 0, SCAN_W, SCAN_H), "right": (0, 0, SCAN_W - dx, SCAN_H),
               "top": (0, dy, SCAN_W, SCAN_H), "bottom": (0, 0, SCAN_W, SCAN_H - dy)}[c["crop_side"]]
        img = img.crop(box)
    return img
