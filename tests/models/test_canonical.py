"""The canonical view: the note found, levelled and cropped; lighting and white balance flattened."""

import numpy as np
import pytest
from PIL import Image

from models.canonical import PAPER_LEVEL, flatten, locate, rectify
from models.synth import render_scan
from models.transforms import PreprocessParams, to_uint8


@pytest.mark.parametrize("preset", ["default", "harsh"])
def test_locate_measures_the_capture_rotation(preset):
    errors = []
    for i in range(30):
        image, ann = render_scan(np.random.default_rng([41, i]), capture=preset)
        found = locate(image)
        assert found is not None
        errors.append(abs(found[2] - ann["capture"]["rotation_deg"]))
    assert np.median(errors) < 0.2
    assert max(errors) < 2.5  # both long edges cut by the scan border: the moment fallback is coarser


def test_rectified_scans_of_one_note_agree_across_placements():
    """The same note, placed differently on the bed, gives nearly the same canonical pixels."""
    from models.synth.render import sample_note

    spec = sample_note(np.random.default_rng(5), counterfeit=False, denomination="20")
    views = []
    for i in range(4):
        image, ann = render_scan(np.random.default_rng([7, i]), capture="default", spec=spec)
        views.append(np.asarray(rectify(image, 64, 144), dtype=np.float32))
    plain = [np.asarray(render_scan(np.random.default_rng([7, i]), capture="default", spec=spec)[0]
                        .resize((144, 64), Image.Resampling.BILINEAR), dtype=np.float32) for i in range(4)]
    spread_rectified = np.mean([np.abs(v - views[0]).mean() for v in views[1:]])
    spread_plain = np.mean([np.abs(v - plain[0]).mean() for v in plain[1:]])
    assert spread_rectified < 0.6 * spread_plain


def test_flatten_removes_a_lighting_ramp_but_keeps_colour():
    image, _ = render_scan(np.random.default_rng(3), capture="clean")
    base = flatten(np.asarray(rectify(image, 64, 144)))
    h, w = base.shape[:2]
    ramp = (np.linspace(0.75, 1.1, w, dtype=np.float32)[None, :]
            * (1 - 0.1 * np.linspace(-1, 1, h, dtype=np.float32)[:, None] ** 2))[:, :, None]
    lit = np.clip(base.astype(np.float32) * ramp, 0, 255).astype(np.uint8)
    before = np.abs(lit.astype(np.float32) - base).mean()
    after = np.abs(flatten(lit).astype(np.float32) - base).mean()
    assert after < 0.25 * before
    assert abs(np.percentile(flatten(lit).mean(axis=2), 90) - PAPER_LEVEL) < 12
    cast = np.clip(base.astype(np.float32) * np.array([1.06, 1.0, 0.92], np.float32), 0, 255).astype(np.uint8)
    ratio = flatten(cast).reshape(-1, 3).astype(np.float32).mean(0) / base.reshape(-1, 3).astype(np.float32).mean(0)
    assert ratio[0] / ratio[2] > 1.1  # a colour cast (or a counterfeit's colour shift) is not normalised away


@pytest.mark.parametrize("image", [
    Image.new("RGB", (640, 288), (0, 0, 0)),
    Image.new("RGB", (640, 288), (255, 255, 255)),
    Image.new("RGB", (3, 2), (90, 10, 200)),
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (288, 640, 3), dtype=np.uint8)),
    Image.new("RGB", (200, 900), (200, 200, 200)),  # portrait, featureless
], ids=["black", "white", "tiny", "noise", "portrait"])
def test_no_note_falls_back_to_a_plain_resize(image):
    params = PreprocessParams(height=64, width=144, canonicalize=True)
    x = to_uint8(image, params)
    assert x.shape == (3, 64, 144) and x.dtype.is_floating_point is False


def test_canonical_params_round_trip_and_old_checkpoints_read_as_plain():
    p = PreprocessParams(height=64, width=144, canonicalize=True)
    assert PreprocessParams.from_dict(p.to_dict()) == p
    old = p.to_dict()
    del old["canonicalize"]
    assert PreprocessParams.from_dict(old).canonicalize is False


def test_a_note_cut_by_the_scan_border_keeps_its_layout():
    """Part of the note lies off the bed: what is visible stays where it belongs instead of being stretched."""
    from models.synth.capture import apply_capture, sample_capture
    from models.synth.render import render_note, sample_note

    note = render_note(sample_note(np.random.default_rng(8), counterfeit=False, denomination="10"))
    cap = {**sample_capture(np.random.default_rng(1), "clean"), "rotation_deg": 0.0, "scale": 1.05,
           "crop": 0.0, "noise_sigma": 0.0, "lighting": 0.0}
    whole = np.asarray(rectify(apply_capture(note, {**cap, "offset": [0.0, 0.0]}), 64, 144), dtype=np.float32)
    cut_scan = apply_capture(note, {**cap, "offset": [-0.1, 0.0]})  # ~9 % of the note off the left edge
    completed = np.asarray(rectify(cut_scan, 64, 144), dtype=np.float32)
    found = locate(cut_scan.resize((201, 90)))  # what rectify would see without the aspect
    assert found is not None and found[3] / found[4] < 2.15  # the visible part alone is too narrow
    right = slice(20, 144)  # the part of the note that is on the bed in both
    assert np.abs(completed[:, right] - whole[:, right]).mean() < 12
    assert (completed[:, :6] == 128).mean() > 0.5  # the missing strip is filled with the neutral value
