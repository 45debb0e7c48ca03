"""Capture-independent view of a note: find its four corners, straighten it, balance and flatten its light.

A cashier's scanner or phone places the note anywhere, at any angle, tilted, on any surface, under
any light. None of that says whether the note is genuine, so the one preprocessing
(`models.transforms`) removes it before the network looks, the way a document-scanning app does:

    find_note(image)          candidates: regions that differ from the frame's border colour or are
                              bright paper (several thresholds), cleaned and labelled; the best
                              is the most note-shaped (rectangular, aspect near 9:4). Its four sides are
                              then refined on a larger copy: the strongest edge along 32 profiles
                              across each side, a robust line through them (a finger or a coin over an
                              edge is outvoted), corners where the lines meet (keystone included).
                              A side lying on the frame's border is a cut: the note is completed from its
                              known aspect, and the visible share says how much of it was there.
    canonical_view(...)       one perspective warp to 2x the model size, halved with antialiasing; the
                              long side horizontal (a portrait note is turned; upside down is left to the
                              network, which sees both orientations); the paper's colour balanced to
                              neutral (von Kries: the illuminant's cast divides out, an ink's own hue shift
                              does not); a smooth luminance surface divided out (`flatten`).

Nothing here raises on a strange image: with no note-shaped region the whole frame is the view, and
`NoteGeometry` tells the decision what was seen (notes found, visible share) so that a scan of no
note, of two notes or of a fragment can be rejected with its own reason (`models.decision`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image
from scipy import ndimage

_PROBE = 144  # long side of the copy the note is searched on
_WORK = 480  # long side of the copy its edges are refined on, and the warp reads from
PAPER_LEVEL = 235.0  # flattened paper lands here (0..255)
FILL = (128, 128, 128)  # what a part of the note outside the frame becomes: 0 after normalisation
NOTE_ASPECT = 2.25  # 576 x 256 source pixels: 9:4


@dataclass(frozen=True)
class NoteGeometry:
    """What the locator saw. `corners` (image pixels, float) go top-left, top-right, bottom-right,
    bottom-left of the note as the view shows it, completed where the frame cut it off."""

    found: bool  # a note-shaped region was found (else the view is the whole frame)
    corners: tuple[tuple[float, float], ...] | None
    notes: int  # note-shaped regions of similar size: 2 or more means several notes
    visible_share: float  # share of the (completed) note inside the frame: 1.0 when nothing was cut
    aspect: float  # long / short side as measured, before completion
    score: float  # how note-shaped the best region was (0..1)
    layout: float = 0.0  # correlation (-1..1) of the view with our notes' layouts (`view_layout`)

    def to_dict(self) -> dict:
        return {"found": self.found, "notes": self.notes, "visible_share": round(self.visible_share, 4),
                "aspect": round(self.aspect, 3), "score": round(self.score, 3), "layout": round(self.layout, 4)}


NO_NOTE = NoteGeometry(False, None, 0, 1.0, 0.0, 0.0)


def _otsu(values: np.ndarray, bins: int = 128) -> float:
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < 1e-6:
        return hi
    step = (hi - lo) / bins
    idx = np.minimum(((values - lo) / step).astype(np.int32), bins - 1)
    hist = np.bincount(idx.ravel(), minlength=bins).astype(np.float64)
    mids = lo + (np.arange(bins) + 0.5) * step
    w0 = np.cumsum(hist)
    m0 = np.cumsum(hist * mids)
    w1 = w0[-1] - w0
    valid = (w0 > 0) & (w1 > 0)
    between = np.zeros(bins)
    mu0 = m0[valid] / w0[valid]
    mu1 = (m0[-1] - m0[valid]) / w1[valid]
    between[valid] = w0[valid] * w1[valid] * (mu0 - mu1) ** 2
    return float(mids[int(np.argmax(between))])


def _extremes(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """The leftmost and rightmost pixel of every row and the top and bottom one of every column: the
    region's convex hull is the hull of these, at a fraction of the points."""
    pts = []
    for a, b in ((ys, xs), (xs, ys)):
        order = np.lexsort((b, a))
        a_s, b_s = a[order], b[order]
        first = np.r_[True, a_s[1:] != a_s[:-1]]
        last = np.r_[a_s[1:] != a_s[:-1], True]
        pts.append(np.c_[a_s[first], b_s[first]])
        pts.append(np.c_[a_s[last], b_s[last]])
    rows = np.vstack(pts[:2])[:, ::-1]  # (x, y)
    cols = np.vstack(pts[2:])
    return np.vstack([rows, cols]).astype(np.float64)


_ANGLES = np.deg2rad(np.arange(0.0, 90.0, 2.0))


def _min_rect(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Minimum-area rectangle around points, searched over angles (2° steps, then 0.25° around the best):
    ([4, 2] corners, its area)."""
    def boxes(angles):
        c, s = np.cos(angles), np.sin(angles)
        u = points[:, 0][None, :] * c[:, None] + points[:, 1][None, :] * s[:, None]
        v = -points[:, 0][None, :] * s[:, None] + points[:, 1][None, :] * c[:, None]
        return u.min(1), u.max(1), v.min(1), v.max(1)

    u0, u1, v0, v1 = boxes(_ANGLES)
    k = int(np.argmin((u1 - u0) * (v1 - v0)))
    fine = _ANGLES[k] + np.deg2rad(np.arange(-2.0, 2.01, 0.25))
    u0, u1, v0, v1 = boxes(fine)
    areas = (u1 - u0) * (v1 - v0)
    k = int(np.argmin(areas))
    a = fine[k]
    c, s = np.cos(a), np.sin(a)
    corners_uv = np.array([[u0[k], v0[k]], [u1[k], v0[k]], [u1[k], v1[k]], [u0[k], v1[k]]])
    rot = np.array([[c, -s], [s, c]])  # (u, v) -> (x, y)
    return corners_uv @ rot.T, float(areas[k])


@dataclass(frozen=True)
class _Region:
    rect: np.ndarray  # [4, 2] probe pixels
    area: float
    rectangularity: float
    aspect: float
    score: float


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """The mask with every background region that does not reach the border filled (one labelling,
    where scipy's binary_fill_holes dilates until nothing changes)."""
    lab, n = ndimage.label(~mask)
    if n == 0:
        return mask
    edge = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    keep = np.zeros(n + 1, dtype=bool)
    keep[edge] = True
    keep[0] = True
    return ~keep[lab] | mask


def _regions(mask: np.ndarray) -> list[_Region]:
    mask = _fill_holes(ndimage.binary_opening(mask, iterations=1))
    labels, n = ndimage.label(mask)
    if n == 0:
        return []
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, n + 1))
    total = mask.size
    out = []
    boxes = ndimage.find_objects(labels)
    for k in np.nonzero(sizes >= 0.03 * total)[0][:4]:
        sl = boxes[k]
        ys, xs = np.nonzero(labels[sl] == k + 1)
        rect, rect_area = _min_rect(_extremes(ys + sl[0].start, xs + sl[1].start) + 0.5)
        if rect_area <= 0:
            continue
        sides = np.linalg.norm(rect - np.roll(rect, -1, 0), axis=1)
        long_, short = max(sides[0], sides[1]), max(min(sides[0], sides[1]), 1e-6)
        aspect = long_ / short
        rectangularity = min(1.0, float(sizes[k]) / rect_area)
        shape = np.exp(-((np.log(aspect / NOTE_ASPECT) / 0.22) ** 2))
        h, w = mask.shape
        if rect[:, 0].min() < 1.5 or rect[:, 1].min() < 1.5 or rect[:, 0].max() > w - 1.5 or rect[:, 1].max() > h - 1.5:
            shape = max(shape, 0.7 if 0.9 <= aspect <= 5.0 else 0.0)  # cut by the frame: any aspect it could have
        score = rectangularity ** 2 * shape * min(1.0, float(sizes[k]) / (0.08 * total)) ** 0.25
        out.append(_Region(rect, float(sizes[k]), rectangularity, aspect, float(score)))
    return out


def _texture(gray: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Fine-scale contrast (|grey - its 3x3 mean|) averaged down to `shape`: our notes' fine-line print
    stands out on a smooth counter even where its mean brightness and colour do not."""
    hf = np.abs(gray - ndimage.uniform_filter(gray, 3))
    img = Image.fromarray(hf).resize((shape[1], shape[0]), Image.Resampling.BOX)
    return ndimage.uniform_filter(np.asarray(img, dtype=np.float32), 3) * 8.0


def _candidates(probe: np.ndarray, texture: np.ndarray) -> list[list[_Region]]:
    """Region sets from four cues: unlike the frame's border, bright, bright-and-unsaturated paper, fine print."""
    lum = probe.mean(axis=2)
    sat = probe.max(axis=2) - probe.min(axis=2)
    ring = np.concatenate([probe[:3].reshape(-1, 3), probe[-3:].reshape(-1, 3), probe[:, :3].reshape(-1, 3),
                           probe[:, -3:].reshape(-1, 3)])
    bg = np.median(ring, axis=0)
    d_bg = np.sqrt(((probe - bg) ** 2).sum(axis=2))
    paper = lum - 1.2 * sat
    out = []
    for cue in (d_bg, paper, texture):
        if float(cue.max() - cue.min()) < 20:
            continue
        out.append(_regions(cue > _otsu(cue)))
    return out


def _sample(gray: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Bilinear samples of `gray` at float positions (clamped to the image)."""
    h, w = gray.shape
    xs = np.clip(xs, 0, w - 1.001)
    ys = np.clip(ys, 0, h - 1.001)
    x0, y0 = xs.astype(np.int32), ys.astype(np.int32)
    fx, fy = xs - x0, ys - y0
    top = gray[y0, x0] * (1 - fx) + gray[y0, x0 + 1] * fx
    bottom = gray[y0 + 1, x0] * (1 - fx) + gray[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _fit_line(points: np.ndarray, offsets: np.ndarray, tol: float,
              min_points: int = 6) -> tuple[np.ndarray, np.ndarray, int] | None:
    """A robust line through candidate edge points [N, 2]: every pair of points proposes a line, each
    line counts its inliers within `tol`; of the lines with at least 60 % of the best count, the one
    lying furthest out (largest mean `offsets`, the points' distance outwards along the side's normal)
    wins, so the paper's own edge beats the printed frame just inside it. Then least squares (total)
    on its inliers. Returns (point, unit direction, inliers)."""
    n = len(points)
    if n < min_points:
        return None
    i, j = np.triu_indices(n, 1)
    if len(i) > 800:  # a fixed, spread subset of the pairs: enough proposals, bounded cost
        pick = np.linspace(0, len(i) - 1, 800).astype(np.int64)
        i, j = i[pick], j[pick]
    d = points[j] - points[i]
    norm = np.linalg.norm(d, axis=1)
    ok = norm > 1.0
    i, j, d, norm = i[ok], j[ok], d[ok], norm[ok]
    if len(i) == 0:
        return None
    normal = np.stack([-d[:, 1], d[:, 0]], 1) / norm[:, None]
    dist = np.abs(np.einsum("pk,pnk->pn", normal, points[None, :, :] - points[i][:, None, :]))
    inl = dist <= tol
    counts = inl.sum(1)
    good = counts >= max(min_points, 0.85 * counts.max())
    if not good.any():
        return None
    out = (inl * offsets[None, :]).sum(1) / np.maximum(counts, 1)
    best = int(np.argmax(np.where(good, out, -np.inf)))
    pts = points[inl[best]]
    c = pts.mean(0)
    _, _, vt = np.linalg.svd(pts - c)
    return c, vt[0], len(pts)


def _intersect(p1, d1, p2, d2) -> np.ndarray | None:
    m = np.array([[d1[0], -d2[0]], [d1[1], -d2[1]]])
    if abs(np.linalg.det(m)) < 1e-9:
        return None
    t = np.linalg.solve(m, p2 - p1)
    return p1 + t[0] * d1


def _refine(gray: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """The quad's four sides moved onto the strongest edges near them (see the module docstring)."""
    centre = quad.mean(0)
    sides = np.linalg.norm(quad - np.roll(quad, -1, 0), axis=1)
    band = max(4.0, 0.12 * float(min(sides)))
    s = np.arange(-band, band + 1.0, 1.0)
    lines = []
    h, w = gray.shape
    for k in range(4):
        a, b = quad[k], quad[(k + 1) % 4]
        direction = (b - a) / max(np.linalg.norm(b - a), 1e-6)
        if _on_border(a, b, w, h):  # cut by the frame: no paper edge to find there (`_complete` restores it)
            lines.append(((a + b) / 2, direction, 0))
            continue
        normal = np.array([-direction[1], direction[0]])
        if np.dot(normal, (a + b) / 2 - centre) < 0:
            normal = -normal  # outwards
        t = np.linspace(0.08, 0.92, 32)
        base = a[None, :] + t[:, None] * (b - a)[None, :]  # [32, 2]
        pts = base[:, None, :] + s[None, :, None] * normal[None, None, :]  # [32, S, 2]
        raw = _sample(gray, pts[..., 0], pts[..., 1])
        # a step detector: the difference between the means of `win` samples on either side of each point,
        # of the brightness and of the print's texture (|raw - 3 px mean|: a note on a counter as bright as
        # its paper still differs in texture); wide windows average a textured surface's specks away
        tex = np.zeros_like(raw)
        tex[:, 1:-1] = np.abs(raw[:, 1:-1] - (raw[:, :-2] + raw[:, 1:-1] + raw[:, 2:]) / 3)
        win = max(2, int(round(0.03 * float(min(sides)))))
        idx = np.arange(win, len(s) - win + 1)  # a step between samples idx - 1 and idx
        score = np.zeros((len(t), len(idx)), dtype=np.float32)
        for prof, weight in ((raw, 1.0), (tex, 2.0)):
            c = np.concatenate([np.zeros((len(t), 1), np.float32), np.cumsum(prof, axis=1, dtype=np.float32)], 1)
            score += weight * np.abs((c[:, idx + win] - c[:, idx]) - (c[:, idx] - c[:, idx - win])) / win
        inside = (pts[..., 0] >= 1) & (pts[..., 0] <= w - 2) & (pts[..., 1] >= 1) & (pts[..., 1] <= h - 2)
        score *= inside[:, idx - win] & inside[:, idx + win - 1]  # no step where a window leaves the frame: a cut
        peak = score.max(axis=1, keepdims=True)
        local = np.zeros_like(score, dtype=bool)
        local[:, 1:-1] = (score[:, 1:-1] >= score[:, :-2]) & (score[:, 1:-1] > score[:, 2:])
        # each profile's outermost strong step: the paper's own edge, not the printed border band inside it
        ok = local & (score >= np.maximum(0.4 * peak, 6.0))
        has = ok.any(axis=1)
        outer = (score.shape[1] - 1 - np.argmax(ok[:, ::-1], axis=1))[has]
        # the peak to a fraction of a sample: the vertex of the parabola through it and its neighbours
        g0, g1, g2 = (score[has, np.clip(outer + d, 0, score.shape[1] - 1)] for d in (-1, 0, 1))
        curve = g0 - 2 * g1 + g2
        frac = np.where(curve < -1e-6, 0.5 * (g0 - g2) / np.where(curve < -1e-6, curve, -1.0), 0.0)
        pos = s[idx[outer]] - 0.5 + np.clip(frac, -0.5, 0.5)  # offsets along the outward normal
        edge = base[has] + pos[:, None] * normal[None, :]
        fit = _fit_line(edge, pos, tol=max(1.0, 0.006 * float(sides[k])))
        lines.append(fit if fit is not None else ((a + b) / 2, direction, 0))
    out = []
    for k in range(4):
        p = _intersect(lines[k - 1][0], lines[k - 1][1], lines[k][0], lines[k][1])
        if p is None or np.linalg.norm(p - quad[k]) > 0.35 * float(min(sides)):
            return quad  # the refined lines disagree with the region: keep its rectangle
        out.append(p)
    return np.array(out)


def _order(quad: np.ndarray) -> np.ndarray:
    """Corners as top-left, top-right, bottom-right, bottom-left of a landscape note: clockwise in image
    coordinates, starting so that the first side is a long one and the note is turned by at most 90°."""
    c = quad.mean(0)
    ang = np.arctan2(quad[:, 1] - c[1], quad[:, 0] - c[0])
    q = quad[np.argsort(ang)]  # clockwise on screen (y down)
    sides = np.linalg.norm(q - np.roll(q, -1, 0), axis=1)
    if sides[0] + sides[2] < sides[1] + sides[3]:
        q = np.roll(q, -1, 0)  # make side 0 (and 2) the long ones
    # of the two landscape starts, the one whose top side lies above its bottom side
    top_y = (q[0, 1] + q[1, 1]) / 2
    bottom_y = (q[2, 1] + q[3, 1]) / 2
    if top_y > bottom_y or (abs(top_y - bottom_y) < 1e-6 and q[0, 0] > q[1, 0]):
        q = np.roll(q, 2, 0)
    return q


def _on_border(a: np.ndarray, b: np.ndarray, w: int, h: int) -> bool:
    """Both ends of the side a-b lie along the same border of a w x h frame (within 1.5 % of its size)."""
    m = 0.015 * max(w, h)
    return bool((a[0] < m and b[0] < m) or (a[0] > w - 1 - m and b[0] > w - 1 - m)
                or (a[1] < m and b[1] < m) or (a[1] > h - 1 - m and b[1] > h - 1 - m))


def _complete(q: np.ndarray, w: int, h: int) -> tuple[np.ndarray, float]:
    """A side lying on the frame's border was cut by it: push it out until the note has its aspect.
    Returns (completed corners, visible share)."""
    def on_border(a: np.ndarray, b: np.ndarray) -> bool:
        return _on_border(a, b, w, h)

    q = q.copy()
    area0 = _area(q)
    long_ = (np.linalg.norm(q[1] - q[0]) + np.linalg.norm(q[2] - q[3])) / 2
    short = (np.linalg.norm(q[3] - q[0]) + np.linalg.norm(q[2] - q[1])) / 2
    cut = [on_border(q[k], q[(k + 1) % 4]) for k in range(4)]  # top, right, bottom, left
    if (cut[1] or cut[3]) and not (cut[1] and cut[3]) and long_ < NOTE_ASPECT * short:
        grow = NOTE_ASPECT * short - long_
        if cut[1]:
            for k, j in ((1, 0), (2, 3)):
                u = (q[k] - q[j]) / max(np.linalg.norm(q[k] - q[j]), 1e-6)
                q[k] = q[k] + grow * u
        else:
            for k, j in ((0, 1), (3, 2)):
                u = (q[k] - q[j]) / max(np.linalg.norm(q[k] - q[j]), 1e-6)
                q[k] = q[k] + grow * u
        long_ = NOTE_ASPECT * short
    if (cut[0] or cut[2]) and not (cut[0] and cut[2]) and short < long_ / NOTE_ASPECT:
        grow = long_ / NOTE_ASPECT - short
        pairs = ((0, 3), (1, 2)) if cut[0] else ((3, 0), (2, 1))
        for k, j in pairs:
            u = (q[k] - q[j]) / max(np.linalg.norm(q[k] - q[j]), 1e-6)
            q[k] = q[k] + grow * u
    return q, float(min(1.0, area0 / max(_area(q), 1e-6)))


def _area(q: np.ndarray) -> float:
    x, y = q[:, 0], q[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _shrink(image: Image.Image, long_side: int) -> tuple[Image.Image, float]:
    f = long_side / max(image.size)
    if f >= 1.0:
        return image, 1.0
    size = (max(1, round(image.width * f)), max(1, round(image.height * f)))
    return image.resize(size, Image.Resampling.BOX), size[0] / image.width


_LAYOUT = (16, 36)  # rows, columns of the layout comparison


@functools.lru_cache(maxsize=1)
def _layouts() -> np.ndarray:
    """[8, 16 * 36] the grey layouts of our notes (every denomination, upright and upside down),
    standardised: a candidate region that is a note correlates with one of them, clutter does not."""
    from models.synth.design import DENOMINATIONS
    from models.synth.render import NoteSpec, render_note

    out = []
    for d in DENOMINATIONS:
        note = Image.fromarray(render_note(NoteSpec(d, "AA00000000A"))).convert("L")
        g = np.asarray(note.resize(_LAYOUT[::-1], Image.Resampling.BOX), dtype=np.float32)
        for v in (g, g[::-1, ::-1]):
            v = v.ravel() - v.mean()
            out.append(v / max(float(np.linalg.norm(v)), 1e-6))
    return np.stack(out)


def layout_score(image: Image.Image, quad: np.ndarray) -> float:
    """Best correlation (-1..1) of the region `quad` (image pixels, ordered) with one of our notes' layouts."""
    h, w = _LAYOUT
    dst = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)
    try:
        coeffs = _perspective_coeffs(dst, quad)
    except np.linalg.LinAlgError:
        return -1.0
    v = np.asarray(image.convert("L").transform((w, h), Image.Transform.PERSPECTIVE, coeffs,
                                                Image.Resampling.BILINEAR), dtype=np.float32).ravel()
    v = v - v.mean()
    n = float(np.linalg.norm(v))
    if n < 1e-3:
        return 0.0
    return float((_layouts() @ (v / n)).max())


def find_note(image: Image.Image) -> NoteGeometry:
    """The note's corners in `image` pixels (see the module docstring), or NO_NOTE."""
    return _find(image)[0]


def _find(image: Image.Image) -> tuple[NoteGeometry, Image.Image, float]:
    """find_note, plus the shrunk working copy it read (and its scale), from which the view is warped."""
    if image.width < 16 or image.height < 16:
        return NO_NOTE, image, 1.0
    work, fw = _shrink(image, _WORK)
    probe_img, fp = _shrink(work, _PROBE)
    probe = np.asarray(probe_img, dtype=np.float32)
    gray = np.asarray(work.convert("L"), dtype=np.float32)
    texture = _texture(gray, probe.shape[:2])
    cands = [(r, regions) for regions in _candidates(probe, texture) for r in regions if r.score >= 0.05]
    if not cands:
        return NO_NOTE, work, fw
    # the most note-shaped regions, ranked again by how much they look like a note of ours
    cands = sorted(cands, key=lambda c: -c[0].score)[:5]
    ranked = [(r.score * max(0.05, layout_score(probe_img, _order(r.rect))), r, regions) for r, regions in cands]
    total, best, best_set = max(ranked, key=lambda t: t[0])
    if total < 0.05:
        return NO_NOTE, work, fw
    similar = [r for r in best_set if r.area >= 0.4 * best.area and 1.75 <= r.aspect <= 2.9
               and r.rectangularity >= 0.8]
    notes = max(1, len(similar))
    quad = best.rect * (work.width / probe_img.width)  # probe -> work pixels
    quad = _order(_refine(gray, _order(quad)))
    long_ = (np.linalg.norm(quad[1] - quad[0]) + np.linalg.norm(quad[2] - quad[3])) / 2
    short = (np.linalg.norm(quad[3] - quad[0]) + np.linalg.norm(quad[2] - quad[1])) / 2
    aspect = float(long_ / max(short, 1e-6))
    full, visible = _complete(quad, work.width, work.height)
    corners = tuple((float(x / fw), float(y / fw)) for x, y in full)
    return NoteGeometry(True, corners, notes, visible, aspect, best.score), work, fw


def _perspective_coeffs(dst: np.ndarray, src: np.ndarray) -> tuple[float, ...]:
    """Pillow's PERSPECTIVE data: maps output points `dst` [4, 2] to input points `src` [4, 2]."""
    a = []
    b = []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        b += [u, v]
    return tuple(float(c) for c in np.linalg.solve(np.array(a, dtype=np.float64), np.array(b, dtype=np.float64)))


def warp_to(image: Image.Image, corners, height: int, width: int) -> Image.Image:
    """The quad `corners` (image pixels) of `image` mapped onto a [height, width] rectangle: rendered at
    twice the size and halved (antialiasing), from a copy shrunk so that sampling is about 1:1."""
    q = np.asarray(corners, dtype=np.float64)
    long_ = max(np.linalg.norm(q[1] - q[0]), np.linalg.norm(q[2] - q[3]))
    f = min(1.0, 2.4 * width / max(long_, 1e-6))
    src = image
    if f < 0.9:
        src, f = _shrink(image, max(16, round(max(image.size) * f)))
    else:
        f = 1.0
    dst = np.array([[0, 0], [2 * width, 0], [2 * width, 2 * height], [0, 2 * height]], dtype=np.float64)
    coeffs = _perspective_coeffs(dst, q * f)
    big = src.transform((2 * width, 2 * height), Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BILINEAR,
                        fillcolor=FILL)
    return big.reduce(2)


def white_balance(pixels: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] -> the same with the paper made neutral: per-channel gains from the brightest
    unclipped tenth of the pixels (paper between the print). An illuminant's colour is a per-channel
    gain on everything, so it divides out; a counterfeit's ink hue shift leaves the paper as it was, so
    it survives. Gains are bounded (x0.4..x2.5) so that a view with no paper cannot be blown up."""
    flat = pixels.reshape(-1, 3).astype(np.float32)
    lum = flat.mean(axis=1)
    ok = (flat.max(axis=1) < 250) & (np.abs(flat - FILL[0]).max(axis=1) > 0)
    if ok.sum() < 50:
        return pixels
    cand = lum[ok]
    q = int(0.9 * (len(cand) - 1))
    top = flat[ok][cand >= np.partition(cand, q)[q]]
    ref = top.mean(axis=0)
    gains = np.clip(ref.mean() / np.maximum(ref, 1.0), 0.4, 2.5)
    return np.clip(pixels.astype(np.float32) * gains + 0.5, 0, 255).astype(np.uint8)


def canonical_view(image: Image.Image, height: int, width: int, balance: bool = True) -> tuple[np.ndarray, NoteGeometry]:
    """(uint8 [height, width, 3], geometry): the note found, straightened, turned landscape, its colour
    balanced and its light flattened; the whole frame when no note-shaped region was found."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    geo, work, fw = _find(image)
    if geo.found:
        view = warp_to(work, np.asarray(geo.corners) * fw, height, width)
    else:
        view = work.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=2.0)
    pixels = np.asarray(view, dtype=np.uint8)
    if balance:
        pixels = white_balance(pixels)
    pixels = flatten(pixels)
    return pixels, replace(geo, layout=view_layout(pixels))


def view_layout(pixels: np.ndarray) -> float:
    """How much the canonical view looks like one of our notes: the best correlation of its grey 16 x 36
    copy with the layouts of every denomination, upright or upside down. A design property, not a learned
    one: a coupon, a receipt, coins or another currency correlate weakly whatever the network makes of them."""
    h, w = _LAYOUT
    grey = Image.fromarray(pixels).convert("L").resize((w, h), Image.Resampling.BOX)
    v = np.asarray(grey, dtype=np.float32).ravel()
    v = v - v.mean()
    n = float(np.linalg.norm(v))
    return 0.0 if n < 1e-3 else float((_layouts() @ (v / n)).max())


def rectify(image: Image.Image, height: int, width: int) -> Image.Image:
    """The note straightened and cropped, before any colour or light correction (tests, plots)."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    geo, work, fw = _find(image)
    if not geo.found:
        return work.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return warp_to(work, np.asarray(geo.corners) * fw, height, width)


def flatten(pixels: np.ndarray, grid: tuple[int, int] = (6, 12)) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8 [H, W, 3] with a smooth illumination surface divided out.

    One surface for all three channels: it is fitted to the brightness of the paper (quadratic in x and
    y, in log space, blocks far below the fit - dense print, the watermark - dropped), so colour is left
    to `white_balance`. Local light (a shadow's edge, a highlight, creases) is left for the network,
    which trains on it: a finer surface would also erase the watermark, which darkens the paper too.
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
