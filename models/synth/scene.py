"""A photograph of paper on a surface: the physics between a printed note and the bytes a device sends.

The scanner presets (`capture.py`) only place a note on a dark bed and add scanner noise. A phone above
a counter, or a scanner with its lid open, adds what this module renders, in the order light takes:

    paper       shape of the sheet: a bend (the note curls) or a crumple (a random height field with
                creases); both move the print a little and shade it (Lambert's law, light from one side)
    placement   a 3-D pose seen through a pinhole camera: scale, any in-plane angle, a tilt of the
                camera off the paper's normal (keystone), an offset; one homography per sheet
    surface     what lies under and around the sheets (`objects.background`) and what lies on them
                (fingers, a card, a coin: `objects`)
    light       in linear light: the illuminant's colour (a black body of `cct_k` kelvin plus a
                green-magenta tint), shadows (umbra darkened by `shadow`, a soft penumbra), specular
                glare (the illuminant added, `glare` x the paper's own radiance at its peak), exposure
    camera      defocus (disk point-spread), motion (a line), shot + read noise, partial auto white
                balance, gamma, sharpening, resampling, JPEG

Everything is a plain function of a JSON-ready parameter dict and a numpy Generator, so a scan is
reproducible from its seed and its annotation. Linear light uses gamma 2.2 (close to sRGB).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

_TO_LINEAR = ((np.arange(256, dtype=np.float64) / 255.0) ** 2.2).astype(np.float32)
_TO_SRGB = np.clip(np.round((np.linspace(0.0, 1.0, 65536) ** (1 / 2.2)) * 255.0), 0, 255).astype(np.uint8)


def to_linear(u8: np.ndarray) -> np.ndarray:
    """uint8 sRGB-ish -> float32 linear light in 0..1."""
    return _TO_LINEAR[u8]


def to_srgb(lin: np.ndarray) -> np.ndarray:
    """float32 linear light -> uint8 (clipped: a sensor saturates)."""
    return _TO_SRGB[np.clip(lin * 65535.0 + 0.5, 0, 65535).astype(np.int32)]


# --- light --------------------------------------------------------------------------------------

_XYZ_TO_RGB = np.array([[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]])


def _planck_rgb(kelvin: float) -> np.ndarray:
    """Linear sRGB of a black body at `kelvin` (Kim et al.'s cubic fit of the Planckian locus)."""
    t = float(np.clip(kelvin, 1667.0, 25000.0))
    if t <= 4000:
        x = -0.2661239e9 / t**3 - 0.2343589e6 / t**2 + 0.8776956e3 / t + 0.179910
    else:
        x = -3.0258469e9 / t**3 + 2.1070379e6 / t**2 + 0.2226347e3 / t + 0.240390
    if t <= 2222:
        y = -1.1063814 * x**3 - 1.34811020 * x**2 + 2.18555832 * x - 0.20219683
    elif t <= 4000:
        y = -0.9549476 * x**3 - 1.37418593 * x**2 + 2.09137015 * x - 0.16748867
    else:
        y = 3.0817580 * x**3 - 5.87338670 * x**2 + 3.75112997 * x - 0.37001483
    rgb = _XYZ_TO_RGB @ np.array([x / y, 1.0, (1 - x - y) / y])
    return np.maximum(rgb, 1e-3)


def illuminant_gains(cct_k: float, tint: float = 0.0, awb: float = 0.0) -> np.ndarray:
    """Per-channel gains (linear light, largest 1) of a light of `cct_k` kelvin against daylight (6504 K),
    with a green (+) or magenta (-) `tint`, after a camera's auto white balance removed the share `awb`
    of the cast (0: none, 1: all of it). The largest gain is 1: the exposure keeps the strongest channel
    of white paper below saturation, so a colour cast does not clip by itself."""
    g = _planck_rgb(cct_k) / _planck_rgb(6504.0)
    g = g * np.array([1.0, 1.0 + tint, 1.0])
    g = g / g.max()
    return np.exp((1.0 - awb) * np.log(g)).astype(np.float32)


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


# --- geometry -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pose:
    """Where a sheet of `size` (w, h) pixels lands in the image: a pinhole camera `focal` pixels from
    the paper looks at it; the sheet's centre goes to `centre`, `scale` image px per sheet px, turned
    `angle_deg` in its plane, the camera tilted `tilt_deg` about an axis at `tilt_axis_deg`."""

    size: tuple[int, int]
    centre: tuple[float, float]
    scale: float
    angle_deg: float = 0.0
    tilt_deg: float = 0.0
    tilt_axis_deg: float = 0.0
    focal: float = 1000.0

    def homography(self) -> np.ndarray:
        """3x3: sheet pixel (x, y, 1) -> image pixel (homogeneous)."""
        w, h = self.size
        a = np.deg2rad(self.angle_deg)
        rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])
        axis = np.deg2rad(self.tilt_axis_deg)
        k = np.array([np.cos(axis), np.sin(axis), 0.0])
        t = np.deg2rad(self.tilt_deg)
        kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        rt = np.eye(3) + np.sin(t) * kx + (1 - np.cos(t)) * kx @ kx  # Rodrigues
        r = rt @ rz
        f = self.focal
        # plane point (a, b, 0) -> camera (R @ (a, b, 0)) + (0, 0, f) -> (f X / Z + cx, f Y / Z + cy)
        cam = np.array([[f * r[0, 0], f * r[0, 1], 0.0], [f * r[1, 0], f * r[1, 1], 0.0], [r[2, 0], r[2, 1], f]])
        place = np.array([[1.0, 0, self.centre[0]], [0, 1.0, self.centre[1]], [0, 0, 1.0]])
        s = self.scale
        sheet = np.array([[s, 0, -s * w / 2], [0, s, -s * h / 2], [0, 0, 1.0]])
        return place @ cam @ sheet

    def corners(self) -> np.ndarray:
        """[4, 2] image positions of the sheet's corners: top-left, top-right, bottom-right, bottom-left."""
        w, h = self.size
        return apply_h(self.homography(), np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64))


def apply_h(hm: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = np.c_[pts, np.ones(len(pts))] @ hm.T
    return p[:, :2] / p[:, 2:3]


def warp_sheet(sheet: Image.Image, hm: np.ndarray, out_size: tuple[int, int],
               displace=None, grid: int = 32) -> Image.Image:
    """Render `sheet` through the homography `hm` (sheet px -> image px) into an image of `out_size`,
    optionally with a smooth paper deformation `displace(x, y) -> (dx, dy)` in sheet pixels. Pillow's MESH
    transform with quads of `grid` image pixels, each mapped back through the inverse: outside -> 0."""
    w, h = out_size
    inv = np.linalg.inv(hm)
    if displace is None:  # a plain homography: one perspective transform
        inv = inv / inv[2, 2]
        return sheet.transform(out_size, Image.Transform.PERSPECTIVE, tuple(inv.ravel()[:8]),
                               Image.Resampling.BILINEAR)
    xs = np.arange(0, w + grid, grid, dtype=np.float64)
    ys = np.arange(0, h + grid, grid, dtype=np.float64)
    gx, gy = np.meshgrid(xs, ys)
    src = apply_h(inv, np.c_[gx.ravel(), gy.ravel()]).reshape(len(ys), len(xs), 2)
    if displace is not None:  # x_img = H(x + d(x)): invert by fixed-point iteration (d is small and smooth)
        target = src.copy()
        for _ in range(3):
            dx, dy = displace(src[..., 0], src[..., 1])
            src = target - np.stack([dx, dy], -1)
    mesh = []
    for j in range(len(ys) - 1):
        for i in range(len(xs) - 1):
            box = (int(xs[i]), int(ys[j]), int(min(xs[i + 1], w)), int(min(ys[j + 1], h)))
            if box[2] <= box[0] or box[3] <= box[1]:
                continue
            q = (src[j, i], src[j + 1, i], src[j + 1, i + 1], src[j, i + 1])  # UL, LL, LR, UR
            mesh.append((box, tuple(float(v) for p in q for v in p)))
    return sheet.transform(out_size, Image.Transform.MESH, mesh, Image.Resampling.BILINEAR)


def preshrink(sheet: Image.Image, scale: float) -> tuple[Image.Image, float]:
    """A sheet shown smaller than it is is resized first with antialiasing (a camera's optics and
    sensor average over the print; a bare bilinear sample would alias the fine lines)."""
    if scale >= 0.8:
        return sheet, 1.0
    f = max(scale * 1.15, 0.05)
    small = sheet.resize((max(2, round(sheet.width * f)), max(2, round(sheet.height * f))), Image.Resampling.BOX)
    return small, small.width / sheet.width


# --- paper shape --------------------------------------------------------------------------------

def smooth_field(rng: np.random.Generator, h: int, w: int, cells: tuple[int, int]) -> np.ndarray:
    """A smooth random field in [-1, 1] of size [h, w]: Gaussian noise on a coarse grid, upsampled bicubically."""
    coarse = rng.standard_normal((cells[0] + 3, cells[1] + 3)).astype(np.float32)
    img = Image.fromarray(coarse, mode="F").resize((w + 3 * w // cells[1], h + 3 * h // cells[0]),
                                                     Image.Resampling.BICUBIC)
    f = np.asarray(img)[h // cells[0]:h // cells[0] + h, w // cells[1]:w // cells[1] + w]
    return f / max(float(np.abs(f).max()), 1e-6)


def paper_height(rng: np.random.Generator, h: int, w: int, bend: float, crumple: float,
                 creases: int) -> np.ndarray:
    """Height of the sheet above the surface, in sheet pixels: a bend (sag `bend` x the sheet's length,
    curling along a random axis) plus crumples (random bumps) and straight creases (tent-shaped folds)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    z = np.zeros((h, w), dtype=np.float32)
    if bend:
        u = (x / w - 0.5) * 2 if rng.random() < 0.7 else (y / h - 0.5) * 2  # curl along the length, or across
        z += float(bend) * w * (u * u if rng.random() < 0.5 else 1 - u * u)
    if crumple:
        z += float(crumple) * w * 0.05 * smooth_field(rng, h, w, (3, 6))
        for _ in range(int(creases)):
            a = rng.uniform(0, np.pi)
            px, py = rng.uniform(0.1 * w, 0.9 * w), rng.uniform(0.1 * h, 0.9 * h)
            d = (x - px) * np.sin(a) - (y - py) * np.cos(a)
            z += float(crumple) * w * 0.02 * rng.choice([-1, 1]) * np.exp(-np.abs(d) / (0.04 * w))
    return z


def shading_from_height(z: np.ndarray, light_azimuth_deg: float, light_elevation_deg: float,
                        amplitude: float | None = None) -> np.ndarray:
    """Lambertian shading of a height field [h, w] relative to flat paper (1 = as if flat).
    With `amplitude`, the shading's 2-98 % spread is scaled to it (a condition defined by what it does to light)."""
    gy, gx = np.gradient(z)
    az, el = np.deg2rad(light_azimuth_deg), np.deg2rad(light_elevation_deg)
    lx, ly, lz = np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)
    n = np.sqrt(gx * gx + gy * gy + 1.0)
    s = (-gx * lx - gy * ly + lz) / n / lz
    s = np.clip(s, 0.05, None).astype(np.float32)
    if amplitude is not None:
        lo, hi = np.percentile(s, [2, 98])
        if hi - lo > 1e-6:
            s = 1.0 + (s - float(np.median(s))) * (float(amplitude) / (hi - lo))
    return np.clip(s, 0.05, 3.0).astype(np.float32)


def parallax(z: np.ndarray, distance: float):
    """Displacement of raised paper seen from a camera `distance` sheet-pixels above the sheet's centre."""
    h, w = z.shape
    zi = Image.fromarray(z.astype(np.float32), mode="F")

    def displace(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xi = np.clip(np.round(x).astype(int), 0, w - 1)
        yi = np.clip(np.round(y).astype(int), 0, h - 1)
        zz = np.asarray(zi)[yi, xi]
        k = zz / max(distance, 1.0)
        return (x - w / 2) * k, (y - h / 2) * k

    return displace


# --- light on the image -------------------------------------------------------------------------

def shadow_mask(rng: np.random.Generator, h: int, w: int, quad: np.ndarray, soft: float, shape: str) -> np.ndarray:
    """0..1 share of the direct light blocked, over the image [h, w]: a half-plane edge (an arm, the
    phone) crossing the note, or an elliptical blob (a hand, a head); penumbra `soft` x the note's length."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    centre = quad.mean(0)
    length = float(np.linalg.norm(quad[1] - quad[0]))
    pen = max(1.0, soft * length)
    if shape == "edge":
        a = rng.uniform(0, 2 * np.pi)
        off = rng.uniform(-0.3, 0.3) * length
        d = (x - centre[0]) * np.cos(a) + (y - centre[1]) * np.sin(a) - off
        return smoothstep(0.5 + d / pen)
    cx, cy = centre + rng.uniform(-0.4, 0.4, 2) * length * np.array([1.0, 0.45])
    rx, ry = rng.uniform(0.25, 0.55) * length, rng.uniform(0.15, 0.4) * length
    a = rng.uniform(0, np.pi)
    u = ((x - cx) * np.cos(a) + (y - cy) * np.sin(a)) / rx
    v = (-(x - cx) * np.sin(a) + (y - cy) * np.cos(a)) / ry
    r = np.sqrt(u * u + v * v)
    return smoothstep((1.0 - r) * min(rx, ry) / pen + 0.5)


def glare_field(rng: np.random.Generator, h: int, w: int, quad: np.ndarray, size: float,
                elongation: float) -> np.ndarray:
    """Specular highlight, peak 1: an elliptical Gaussian on the note (size = sigma x the note's length);
    elongated highlights are the reflections of a tube light or a window."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    length = float(np.linalg.norm(quad[1] - quad[0]))
    # a point inside the note (bilinear in its corners)
    s, t = rng.uniform(0.1, 0.9), rng.uniform(0.15, 0.85)
    top = quad[0] + s * (quad[1] - quad[0])
    bottom = quad[3] + s * (quad[2] - quad[3])
    cx, cy = top + t * (bottom - top)
    sig = max(2.0, size * length)
    a = rng.uniform(0, np.pi)
    u = ((x - cx) * np.cos(a) + (y - cy) * np.sin(a)) / (sig * elongation)
    v = (-(x - cx) * np.sin(a) + (y - cy) * np.cos(a)) / sig
    return np.exp(-0.5 * (u * u + v * v)).astype(np.float32)


# --- camera -------------------------------------------------------------------------------------

def motion_blur(lin: np.ndarray, length: float, angle_deg: float) -> np.ndarray:
    """Average of the image along a line of `length` pixels (a hand moving during the exposure)."""
    n = int(round(length))
    if n < 2:
        return lin
    a = np.deg2rad(angle_deg)
    out = np.zeros_like(lin)
    for k in range(n):
        t = k - (n - 1) / 2
        out += np.roll(lin, (int(round(t * np.sin(a))), int(round(t * np.cos(a)))), axis=(0, 1))
    return out / n


def defocus(img: Image.Image, radius: float) -> Image.Image:
    """A disk point-spread of `radius` pixels, approximated by a Gaussian of the same second moment."""
    return img.filter(ImageFilter.GaussianBlur(radius / 2.0)) if radius > 0.2 else img


def encode(img: Image.Image, quality: int, resample: float = 1.0, sharpen: float = 0.0,
           subsampling: int = 2) -> bytes:
    """What the device sends: optional down-and-up resampling (a digital zoom, a messenger app),
    optional unsharp masking (phone ISPs), then JPEG at `quality` with 4:2:0 chroma (subsampling=2)."""
    if resample < 0.999:
        w, h = img.size
        img = img.resize((max(8, round(w * resample)), max(8, round(h * resample))), Image.Resampling.BILINEAR)
        img = img.resize((w, h), Image.Resampling.BICUBIC)
    if sharpen > 0:  # unsharp masking: x + amount (x - blur(x)), the blur a 3x3 box
        x = np.asarray(img, dtype=np.int16)
        blur = np.asarray(img.filter(ImageFilter.BoxBlur(1)), dtype=np.int16)
        img = Image.fromarray(np.clip(x + (sharpen * (x - blur)).astype(np.int16), 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality), subsampling=subsampling)
    return buf.getvalue()
