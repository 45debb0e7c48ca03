"""One capture of one or more sheets, rendered from a JSON-ready condition dict (see conditions.py):

    photograph(sheets, cond) -> (PIL RGB image, info)

`sheets` are (RGBA or RGB PIL image, placement) pairs, bottom first; the first is "the note" whose
corners and visible share `info` reports. A placement is a dict: `width_share` (the sheet's width as
a share of the image's), `angle_deg`, `offset` [dx, dy] (share of the image size, from the centre).
Everything random inside comes from `cond["seed"]`, so the same dict gives the same pixels.

Order (light's path): paper shape -> pose (homography) -> surface and sheets -> objects on top ->
illuminant, shadow, glare, exposure (linear light) -> defocus, motion -> noise -> auto white balance ->
gamma -> encoder (the caller's `encode` step).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from models.synth import objects
from models.synth.scene import (
    Pose,
    defocus,
    glare_field,
    illuminant_gains,
    motion_blur,
    paper_height,
    parallax,
    preshrink,
    shading_from_height,
    shadow_mask,
    to_linear,
    to_srgb,
    warp_sheet,
)


def _polygon_area(q: np.ndarray) -> float:
    x, y = q[:, 0], q[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _shaped_sheet(sheet: Image.Image, cond: dict, rng: np.random.Generator,
                  shade: bool) -> tuple[Image.Image, np.ndarray | None]:
    """The paper's own shape: bend and crumple shade the print (in linear light) and give a height field."""
    if not (cond.get("bend") or cond.get("crumple")):
        return sheet, None
    w, h = sheet.size
    z = paper_height(rng, h, w, cond.get("bend", 0.0), cond.get("crumple", 0.0), cond.get("creases", 0))
    if not shade:
        return sheet, z
    amp = cond.get("paper_shading")
    s = shading_from_height(z, cond.get("light_azimuth_deg", 45.0), cond.get("light_elevation_deg", 55.0), amp)
    arr = np.asarray(sheet)
    rgb = to_srgb(to_linear(arr[:, :, :3]) * s[:, :, None])
    out = Image.fromarray(np.dstack([rgb, arr[:, :, 3]]) if arr.shape[2] == 4 else rgb)
    return out, z


def place(sheet: Image.Image, placement: dict, size: tuple[int, int], cond: dict) -> Pose:
    w, h = size
    width_share = placement["width_share"]
    scale = width_share * w / sheet.width
    ox, oy = placement.get("offset", (0.0, 0.0))
    return Pose(size=sheet.size, centre=(w / 2 + ox * w, h / 2 + oy * h), scale=scale,
                angle_deg=placement.get("angle_deg", 0.0), tilt_deg=cond.get("tilt_deg", 0.0),
                tilt_axis_deg=cond.get("tilt_axis_deg", 0.0), focal=cond.get("focal_share", 1.2) * max(w, h))


def _render_sheet(sheet: Image.Image, pose: Pose, size: tuple[int, int], cond: dict, rng: np.random.Generator,
                  shade: bool) -> tuple[np.ndarray, np.ndarray]:
    """One sheet in the image: (rgb uint8 [h, w, 3], alpha float32 [h, w])."""
    if sheet.mode != "RGBA":
        sheet = sheet.convert("RGBA")
    sheet, z = _shaped_sheet(sheet, cond, rng, shade)
    small, f = preshrink(sheet, pose.scale)
    hm = pose.homography() @ np.diag([1 / f, 1 / f, 1.0])  # small-sheet px -> sheet px -> image
    displace = None
    if z is not None:
        zs = np.asarray(Image.fromarray(z, mode="F").resize(small.size, Image.Resampling.BILINEAR)) * f
        displace = parallax(zs, pose.focal / max(pose.scale / f, 1e-6))
    out = np.asarray(warp_sheet(small, hm, size, displace))
    return out[:, :, :3], out[:, :, 3].astype(np.float32) / 255.0


def _over(base: np.ndarray, rgb: np.ndarray, alpha: np.ndarray) -> None:
    base += alpha[:, :, None] * (to_linear(rgb) - base)


def _finger_sheet(rng: np.random.Generator, note_pose: Pose, spec: dict, size: tuple[int, int]):
    """A finger over one edge of the note, covering about spec["cover"] of the note's area."""
    nw, nh = note_pose.size
    s = note_pose.scale
    width = int(np.clip(rng.uniform(0.24, 0.34) * nh * s, 8, 400))
    cover = float(spec["cover"]) * nw * nh * s * s
    # which edge: short (left/right) or long (top/bottom), a position along it, then the finger points inwards
    edge = spec.get("edge") or str(rng.choice(["short", "long"]))
    across = (nw if edge == "short" else nh) * s  # the note's extent in the finger's direction
    reach = min(cover / max(width, 1), 0.55 * across)  # how far the finger lies on the note
    length = int(reach + rng.uniform(0.4, 1.0) * nh * s)
    sheet = objects.finger(rng, max(length, width + 2), width)
    side = int(rng.integers(2))
    if edge == "short":
        along = rng.uniform(0.25, 0.75) * nh
        entry = np.array([0.0 if side == 0 else nw, along])
        inward = np.array([1.0 if side == 0 else -1.0, 0.0])
    else:
        along = rng.uniform(0.15, 0.85) * nw
        entry = np.array([along, 0.0 if side == 0 else nh])
        inward = np.array([0.0, 1.0 if side == 0 else -1.0])
    tilt = np.deg2rad(rng.uniform(-25, 25))
    rot = np.array([[np.cos(tilt), -np.sin(tilt)], [np.sin(tilt), np.cos(tilt)]])
    direction = rot @ inward
    tip = entry + direction * reach / s
    centre_note = tip - direction * (length / 2) / s
    hm = note_pose.homography()
    p = hm @ np.array([centre_note[0], centre_note[1], 1.0])
    centre = p[:2] / p[2]
    q = hm @ np.array([tip[0], tip[1], 1.0])
    tip_img = q[:2] / q[2]
    ang = np.rad2deg(np.arctan2(tip_img[1] - centre[1], tip_img[0] - centre[0]))
    return sheet, Pose(size=sheet.size, centre=tuple(centre), scale=1.0, angle_deg=float(ang))


def _object_sheet(rng: np.random.Generator, kind: str, note_pose: Pose, cover: float | None, size: tuple[int, int]):
    """A card, coin, pen or receipt: over the note (covering about `cover` of it) or beside it (cover None)."""
    s = note_pose.scale
    nw, nh = note_pose.size
    sheet = {"card": lambda: objects.card(rng), "coin": lambda: objects.coin(rng, int(rng.integers(70, 110))),
             "pen": lambda: objects.pen(rng), "receipt": lambda: objects.receipt(rng)}[kind]()
    scale = s * (1.0 if kind != "coin" else rng.uniform(0.9, 1.3))
    ang = rng.uniform(0, 360)
    corners = note_pose.corners()
    centre = corners.mean(0)
    if cover is None:  # beside the note: somewhere in the frame, its centre outside the note
        w, h = size
        for _ in range(20):
            c = np.array([rng.uniform(0, w), rng.uniform(0, h)])
            if np.linalg.norm(c - centre) > 0.5 * np.linalg.norm(corners[1] - corners[0]):
                break
        return sheet, Pose(size=sheet.size, centre=tuple(c), scale=scale, angle_deg=ang)
    # over the note: from a point on its border, pushed inwards until it covers about `cover`
    area = sheet.width * sheet.height * scale * scale
    k = int(rng.integers(4))
    a, b = corners[k], corners[(k + 1) % 4]
    edge_pt = a + rng.uniform(0.2, 0.8) * (b - a)
    inward = centre - edge_pt
    inward /= max(np.linalg.norm(inward), 1e-6)
    target = float(cover) * nw * nh * s * s
    depth = np.sqrt(min(target, area) / np.pi) * 0.9
    c = edge_pt + inward * depth - inward * np.sqrt(area / np.pi) * 0.55
    return sheet, Pose(size=sheet.size, centre=tuple(c), scale=scale, angle_deg=ang)


def photograph(sheets: list[tuple[Image.Image, dict]], cond: dict) -> tuple[Image.Image, dict]:
    rng = np.random.default_rng(cond["seed"])
    h, w = cond["image_size"]
    size = (w, h)
    bg_kind = cond.get("background", "bed")
    if bg_kind == "shapes":
        bg = objects.shapes(rng, h, w)
    elif bg_kind == "gradient":
        t = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
        c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        bg = np.broadcast_to(c0 + (c1 - c0) * t, (h, w, 3)).astype(np.uint8)
    elif bg_kind == "noise":
        bg = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    else:
        bg = objects.background(rng, bg_kind, h, w)
    lin = to_linear(bg).copy()
    poses, note_alpha = [], None
    if sheets and cond.get("clutter"):  # objects lying beside the note, under it
        note_pose = place(sheets[0][0], sheets[0][1], size, cond)
        for _ in range(int(cond["clutter"])):
            kind = str(rng.choice(["card", "coin", "pen", "receipt"]))
            sheet, pose = _object_sheet(rng, kind, note_pose, None, size)
            rgb, alpha = _render_sheet(sheet, pose, size, {}, rng, shade=False)
            _over(lin, rgb, alpha)
    for i, (sheet, placement) in enumerate(sheets):
        pose = place(sheet, placement, size, cond)
        rgb, alpha = _render_sheet(sheet, pose, size, cond if i == 0 else {}, rng, shade=True)
        _over(lin, rgb, alpha)
        if note_alpha is not None:
            note_alpha *= 1.0 - alpha  # a later sheet covers the note
        else:
            note_alpha = alpha.copy()
        poses.append(pose)
    covered = np.zeros((h, w), dtype=np.float32)
    if poses:
        for spec in cond.get("fingers", []):
            sheet, pose = _finger_sheet(rng, poses[0], spec, size)
            rgb, alpha = _render_sheet(sheet, pose, size, {}, rng, shade=False)
            _over(lin, rgb, alpha)
            covered = np.maximum(covered, alpha)
        for spec in cond.get("objects_over", []):
            sheet, pose = _object_sheet(rng, spec["kind"], poses[0], spec["cover"], size)
            rgb, alpha = _render_sheet(sheet, pose, size, {}, rng, shade=False)
            _over(lin, rgb, alpha)
            covered = np.maximum(covered, alpha)
    # light: the illuminant's colour, cast shadows, specular glare, exposure
    quad = poses[0].corners() if poses else np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)
    lin *= illuminant_gains(cond.get("cct_k", 6504.0), cond.get("tint", 0.0), 0.0)
    if cond.get("shadow"):
        m = shadow_mask(rng, h, w, quad, cond.get("shadow_soft", 0.05), cond.get("shadow_shape", "edge"))
        lin *= (1.0 - cond["shadow"] * m)[:, :, None]
    if cond.get("glare"):
        paper = float(np.median(lin[..., 1][note_alpha > 0.5])) if note_alpha is not None and (note_alpha > 0.5).any() else 0.8
        g = glare_field(rng, h, w, quad, cond.get("glare_size", 0.15), cond.get("glare_elongation", 1.0))
        spec_colour = illuminant_gains(cond.get("cct_k", 6504.0), cond.get("tint", 0.0), 0.0)
        on_paper = 0.25 + 0.75 * note_alpha if note_alpha is not None else 1.0  # glossier than the surface
        lin += (cond["glare"] * paper * g * on_paper)[:, :, None] * spec_colour
    lin *= cond.get("exposure", 1.0)
    # optics and sensor
    if cond.get("motion_px", 0) >= 2:
        lin = motion_blur(lin, cond["motion_px"], cond.get("motion_angle_deg", 0.0))
    if cond.get("defocus_px", 0) > 0.2:
        img = Image.fromarray(to_srgb(lin))
        lin = to_linear(np.asarray(defocus(img, cond["defocus_px"])))
    shot, read = cond.get("noise_shot", 0.0), cond.get("noise_read", 0.0)
    if shot or read:
        sigma = np.sqrt(shot * shot * np.clip(lin, 0, None) + read * read).astype(np.float32)
        lin = lin + sigma * rng.standard_normal(lin.shape, dtype=np.float32)
    # the camera's auto white balance removes the share `awb` of the cast (in its own gains)
    if cond.get("awb", 0.0):
        g = illuminant_gains(cond.get("cct_k", 6504.0), cond.get("tint", 0.0), 0.0)
        lin = lin / np.exp(cond["awb"] * np.log(g))
    image = Image.fromarray(to_srgb(lin))
    info = {"note_corners": quad.round(2).tolist() if poses else None}
    if poses and note_alpha is not None:
        area = _polygon_area(poses[0].corners())
        info["visible_share"] = round(float((note_alpha * (1 - covered)).sum() / max(area, 1.0)), 4)
    return image, info
