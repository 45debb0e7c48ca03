"""Scanner-independent view of a note: find it, straighten and crop it, flatten the lighting.

A POS scanner places the note anywhere on its bed, a few degrees askew, under uneven light. None of
that says anything about whether the note is genuine, so the one
preprocessing (`models.transforms`) removes it before the network looks, the way a document
scanner's deskew and white calibration do:

    rectify(image, height, width)   find the note (the bright region on the dark bed), measure its angle
                                    from the mask's second moments, rotate it level and crop to it;
                                    antialiased, output exactly [height, width]
    flatten(pixels)                 divide out a smooth illumination surface fitted to the paper's
                                    brightness (block upper percentiles, quadratic in x and y, ink-dense
                                    blocks dropped), so lighting ramps and vignetting leave the paper at
                                    one level; colour (white balance included) is left alone

Both fall back to doing nothing rather than failing: an image with no note-like region is resized
as it is. Every step is deterministic and runs the same in training and serving.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

_PROBE_W = 160  # the note is located on a grey copy this wide
PAPER_LEVEL = 235.0  # flattened paper lands here (0..255)
FILL = (128, 128, 128)  # what a part of the note outside the scan becomes: 0 after normalisation


def _otsu(gray: np.ndarray) -> float:
    hist = np.bincount(gray.ravel(), minlength=256).astype(np.float64)
    total = hist.sum()
    levels = np.arange(256, dtype=np.float64)
    w0 = np.cumsum(hist)
    m0 = np.cumsum(hist * levels)
    w1 = total - w0
    valid = (w0 > 0) & (w1 > 0)
    between = np.zeros(256)
    mu0 = m0[valid] / w0[valid]
    mu1 = (m0[-1] - m0[valid]) / w1[valid]
    between[valid] = w0[valid] * w1[valid] * (mu0 - mu1) ** 2
    return float(np.argmax(between))


def _edge_angle(mask: np.ndarray) -> float | None:
    """Angle (radians) of the note's long edges: a line fitted to the first and the last bright row of
    each column in the middle of the probe, ignoring edges cut off by the scan's border (a moment-based
    angle would be pulled towards 0 by such cuts)."""
    h, w = mask.shape
    cols = np.arange(int(0.15 * w), int(0.85 * w))
    m = mask[:, cols]
    has = m.any(axis=0)
    top = np.argmax(m, axis=0).astype(np.float64)
    bottom = (h - 1 - np.argmax(m[::-1], axis=0)).astype(np.float64)
    slopes = []
    for rows, inside in ((top, has & (top > 2)), (bottom, has & (bottom < h - 3))):  # 2 px off the border
        x, y = cols[inside].astype(np.float64), rows[inside]
        if len(x) < 0.5 * len(cols):
            continue
        for _ in range(2):  # fit, drop columns where ink or a fold broke the edge, fit again
            k, b = np.polyfit(x, y, 1)
            ok = np.abs(y - (k * x + b)) <= 1.5
            if ok.sum() < 0.5 * len(cols):
                break
            x, y = x[ok], y[ok]
        else:
            slopes.append((k, len(x)))
    if not slopes:
        return None
    k = sum(s * n for s, n in slopes) / sum(n for _, n in slopes)
    angle = float(np.arctan(k))
    return angle if abs(angle) <= np.deg2rad(20) else None


def _complete(mask: np.ndarray, aspect: float, u0: float, u1: float, v0: float,
              v1: float) -> tuple[float, float, float, float]:
    """Extents along the note's axes, the side cut by the scan border pushed out to the known aspect."""
    def touches(edge: np.ndarray) -> bool:
        return edge.any(axis=0).mean() > 0.2 if edge.shape[0] <= 2 else edge.any(axis=1).mean() > 0.2

    left, right = touches(mask[:, :2]), touches(mask[:, -2:])
    top, bottom = touches(mask[:2, :]), touches(mask[-2:, :])
    w, h = u1 - u0 + 1, v1 - v0 + 1
    if left != right and w < 0.985 * h * aspect:  # width cut on one side: restore it from the height
        missing = h * aspect - w
        u0, u1 = (u0 - missing, u1) if left else (u0, u1 + missing)
        w = u1 - u0 + 1
    if top != bottom and h < 0.985 * w / aspect:
        missing = w / aspect - h
        v0, v1 = (v0 - missing, v1) if top else (v0, v1 + missing)
    return u0, u1, v0, v1


def locate(image: Image.Image, aspect: float | None = None) -> tuple[float, float, float, float, float] | None:
    """(centre x, centre y, angle in degrees, width, height) of the note in image pixels, or None.

    With `aspect` (the note's width / height), a note that runs off one side of the scan is completed:
    the cut dimension is restored from the other one and the centre moves towards the cut side, so
    what is visible keeps its place in the layout (the missing strip is filled, not stretched over)."""
    w, h = image.size
    if w < 16 or h < 8:
        return None
    scale = min(1.0, _PROBE_W / w)
    probe = image.convert("L")
    if scale < 1.0:
        probe = probe.resize((_PROBE_W, max(8, round(h * scale))), Image.Resampling.BOX)
    gray = np.asarray(probe, dtype=np.uint8)
    t = _otsu(gray)
    mask = gray > t
    share = mask.mean()
    if not 0.3 <= share <= 0.995 or gray[mask].mean() - gray[~mask].mean() < 40:
        return None  # no bright note on a darker bed
    ys, xs = np.nonzero(mask)
    cx, cy = xs.mean(), ys.mean()
    dx, dy = xs - cx, ys - cy
    angle = _edge_angle(mask)
    if angle is None:  # both long edges cut by the border: the mask's second moments (biased towards 0)
        angle = 0.5 * np.arctan2(2 * (dx * dy).mean(), (dx * dx).mean() - (dy * dy).mean())
        if abs(angle) > np.deg2rad(20):
            return None  # not a landscape note lying roughly level
    # extent along the note's own axes: robust percentiles of the rotated coordinates
    ca, sa = np.cos(angle), np.sin(angle)
    u = dx * ca + dy * sa
    v = -dx * sa + dy * ca
    u0, u1 = np.percentile(u, [0.5, 99.5])
    v0, v1 = np.percentile(v, [0.5, 99.5])
    if aspect:
        u0, u1, v0, v1 = _complete(mask, aspect, u0, u1, v0, v1)
    ucen, vcen = (u0 + u1) / 2, (v0 + v1) / 2
    ccx = cx + ucen * ca - vcen * sa
    ccy = cy + ucen * sa + vcen * ca
    return ((ccx + 0.5) / scale, (ccy + 0.5) / scale, float(np.rad2deg(angle)),
            (u1 - u0 + 1) / scale, (v1 - v0 + 1) / scale)


def rectify(image: Image.Image, height: int, width: int) -> Image.Image:
    """The note straightened and cropped to its extent, [height, width]; the plain resize if none is found."""
    # shrink with antialiasing first (a note spans ~90 % of a scan), so the affine sampling below is about 1:1
    f = min(1.0, 1.4 * width / image.width)
    if f < 1.0:
        image = image.resize((max(1, round(image.width * f)), max(1, round(image.height * f))),
                             Image.Resampling.BILINEAR)
    found = locate(image, aspect=width / height)
    if found is None:
        return image.resize((width, height), Image.Resampling.BILINEAR)
    cx, cy, angle, nw, nh = found
    a = np.deg2rad(angle)
    sx, sy = nw / width, nh / height  # source pixels per output pixel along the note's axes
    ca, sa = np.cos(a), np.sin(a)
    # output (i, j) -> source: centre + R(a) @ ((j - width/2) * sx, (i - height/2) * sy)
    coeffs = (ca * sx, -sa * sy, cx - ca * sx * width / 2 + sa * sy * height / 2,
              sa * sx, ca * sy, cy - sa * sx * width / 2 - ca * sy * height / 2)
    return image.transform((width, height), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR,
                           fillcolor=FILL)


def flatten(pixels: np.ndarray, grid: tuple[int, int] = (6, 12)) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8 [H, W, 3] with a smooth illumination surface divided out.

    One surface for all three channels: it is fitted to the brightness of the paper, so colour is left
    alone. (A per-channel fit would also undo a white-balance error, but at the model's resolution the
    paper is never seen without ink, and it would undo a counterfeit's colour shift with it.)
    """
    h, w = pixels.shape[:2]
    gh, gw = grid
    if h < 2 * gh or w < 2 * gw:
        return pixels
    bh, bw = h // gh, w // gw
    p = pixels[:gh * bh, :gw * bw]
    # luminance as the mean of the channels (integer sums, so exact in float32), one row of samples per block
    luma = (p[:, :, 0].astype(np.float32) + p[:, :, 1] + p[:, :, 2]) / np.float32(3)
    luma = luma.reshape(gh, bh, gw, bw).transpose(0, 2, 1, 3).reshape(gh, gw, -1)
    q = int(0.9 * luma.shape[-1])
    top = np.partition(luma, q, axis=-1)[..., q]  # the paper's level in each block
    design = _basis(gh, gw).reshape(-1, 6)
    logs = np.log(np.maximum(top, 1.0)).reshape(-1)
    keep = np.ones(len(design), dtype=bool)
    for _ in range(3):  # drop blocks far below the fit: ink-dense print, the watermark
        coef, *_ = np.linalg.lstsq(design[keep], logs[keep], rcond=None)
        kept, keep = keep, logs - design @ coef > -0.08
        if keep.sum() < 12:
            return pixels
        if np.array_equal(keep, kept):
            break  # the same blocks again: a further fit would return this very `coef`
    surface = np.exp(_basis(h, w, np.float32) @ coef.astype(np.float32))  # [H, W]
    return np.clip(pixels.astype(np.float32) * (PAPER_LEVEL / np.maximum(surface, 1.0))[:, :, None] + 0.5,
                   0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=8)
def _basis(h: int, w: int, dtype=np.float64) -> np.ndarray:
    """[h, w, 6] quadratic basis (1, x, y, x^2, y^2, xy) at cell centres, x and y in [-1, 1]; read-only."""
    yy, xx = np.meshgrid((np.arange(h) + 0.5) / h * 2 - 1, (np.arange(w) + 0.5) / w * 2 - 1, indexing="ij")
    out = np.stack([np.ones_like(xx), xx, yy, xx * xx, yy * yy, xx * yy], -1).astype(dtype)
    out.flags.writeable = False
    return out
