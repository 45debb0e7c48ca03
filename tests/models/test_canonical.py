"""The canonical view: the note's four corners found under any capture, the note straightened and turned
landscape, its paper balanced to neutral and its lighting flattened."""

import numpy as np
import pytest
from PIL import Image

from models.canonical import (
    FILL,
    PAPER_LEVEL,
    canonical_view,
    find_note,
    flatten,
    rectify,
    white_balance,
)
from models.synth import render_scan
from models.synth.conditions import family_condition, scene_scan
from models.synth.render import render_note, sample_note
from models.synth.scene import illuminant_gains, to_linear, to_srgb
from models.transforms import PreprocessParams, to_uint8


def corner_error(truth, found) -> float:
    """Largest corner distance, as a share of the note's length, over the four rotations of the order."""
    truth, found = np.asarray(truth), np.asarray(found)
    return min(np.linalg.norm(np.roll(found, r, 0) - truth, axis=1).max() for r in range(4)) / float(
        np.linalg.norm(truth[1] - truth[0]))


def _scan(family: str, strength: str, seed: int):
    rng = np.random.default_rng([61, seed, len(family)])
    cond = family_condition(rng, family, strength)
    return scene_scan(render_note(sample_note(rng, counterfeit=False)), cond)


@pytest.mark.parametrize("family,strength", [("perspective", "strong"), ("orientation", "strong"),
                                               ("glare", "strong"), ("shadow", "strong"), ("finger", "realistic")])
def test_corners_are_found_under_captures_beyond_the_scanner(family, strength):
    errors = []
    for i in range(8):
        image, info = _scan(family, strength, i)
        geo = find_note(image)
        assert geo.found
        errors.append(corner_error(info["note_corners"], geo.corners))
    assert np.median(errors) < 0.012  # ~6 px on a 500-px note
    assert sum(e > 0.03 for e in errors) <= 1 and max(errors) < 0.08


def test_keystone_is_corrected_not_only_rotation():
    """A tilted phone makes a trapezoid; the view of it matches the view of the same note seen square on."""
    rng = np.random.default_rng(3)
    note = render_note(sample_note(rng, counterfeit=False, denomination="10"))
    base = family_condition(np.random.default_rng(4), "perspective", "strong")
    flat_cond = {**base, "tilt_deg": 0.0}
    tilted = np.asarray(canonical_view(scene_scan(note, base)[0], 64, 144)[0], dtype=np.float32)
    square = np.asarray(canonical_view(scene_scan(note, flat_cond)[0], 64, 144)[0], dtype=np.float32)
    assert base["tilt_deg"] > 10
    assert np.abs(tilted - square).mean() < 12


def test_a_portrait_note_comes_out_landscape():
    image, info = _scan("orientation", "realistic", 2)  # 90 or 270 degrees in a portrait frame
    assert image.height > image.width
    geo = find_note(image)
    top = np.linalg.norm(np.subtract(geo.corners[1], geo.corners[0]))
    side = np.linalg.norm(np.subtract(geo.corners[3], geo.corners[0]))
    assert top > 2 * side  # the first side of the view is the note's long side


def test_a_note_cut_by_the_frame_is_completed_and_its_visible_share_measured():
    image, info = _scan("framing", "strong", 5)  # ~30 % of the note outside the frame
    geo = find_note(image)
    assert geo.found and 0.6 < geo.visible_share < 0.8
    assert abs(geo.visible_share - info["visible_share"]) < 0.08
    view = np.asarray(rectify(image, 64, 144))
    filled = (view == FILL[0]).all(axis=2).mean()
    assert 0.15 < filled < 0.45  # the missing part is filled with the neutral value, not stretched over


def test_two_notes_side_by_side_are_counted():
    from models.synth.conditions import negative_scan

    def make_note(r):
        return render_note(sample_note(r, counterfeit=False))

    counts = [find_note(negative_scan(np.random.default_rng([5, i]), "two_apart", make_note)[0]).notes
              for i in range(6)]
    assert sum(c >= 2 for c in counts) >= 5


def test_white_balance_divides_out_the_light_but_keeps_a_counterfeit_ink_shift():
    genuine = sample_note(np.random.default_rng(8), counterfeit=False, denomination="20")
    from dataclasses import replace

    shifted = replace(genuine, signs={"color_discrepancy": {"severity": "medium", "hue_shift_deg": 25.0,
                                                             "saturation_scale": 0.85, "value_scale": 0.92}})
    cond = family_condition(np.random.default_rng(9), "colour_temperature", "strong")
    neutral = {**cond, "cct_k": 6504.0, "tint": 0.0, "awb": 0.0}
    views = {}
    for name, spec in (("genuine", genuine), ("shifted", shifted)):
        for light, c in (("warm", {**cond, "cct_k": 2500.0, "tint": 0.0, "awb": 0.0}), ("daylight", neutral)):
            views[name, light] = canonical_view(scene_scan(render_note(spec), c)[0], 64, 144)[0].astype(np.float32)
    same_note_two_lights = np.abs(views["genuine", "warm"] - views["genuine", "daylight"]).mean()
    two_notes_one_light = np.abs(views["genuine", "warm"] - views["shifted", "warm"]).mean()
    unbalanced = canonical_view(scene_scan(render_note(genuine), {**cond, "cct_k": 2500.0, "awb": 0.0})[0], 64,
                                144, balance=False)[0].astype(np.float32)
    assert same_note_two_lights < 0.5 * np.abs(unbalanced - views["genuine", "daylight"]).mean()
    assert two_notes_one_light > same_note_two_lights


def test_white_balance_leaves_a_view_without_paper_alone():
    dark = np.full((64, 144, 3), 20, dtype=np.uint8)
    dark[::2] = 250  # clipped stripes: nothing to balance on
    assert np.array_equal(white_balance(np.full((64, 144, 3), FILL[0], np.uint8)), np.full((64, 144, 3), 128, np.uint8))
    assert white_balance(dark).shape == dark.shape


def test_illuminant_gains_follow_the_black_body():
    assert np.allclose(illuminant_gains(6504.0), 1.0, atol=0.02)
    assert illuminant_gains(2500.0).max() == pytest.approx(1.0)
    warm = illuminant_gains(2700.0)
    assert warm[0] > warm[1] > warm[2]
    cold = illuminant_gains(10000.0)
    assert cold[2] > cold[0]
    u8 = np.arange(256, dtype=np.uint8)
    assert np.abs(to_srgb(to_linear(u8)).astype(int) - u8).max() <= 1


def test_rectified_scans_of_one_note_agree_across_placements():
    """The same note, placed differently on the bed, gives nearly the same canonical pixels."""
    spec = sample_note(np.random.default_rng(5), counterfeit=False, denomination="20")
    views = []
    for i in range(4):
        image, ann = render_scan(np.random.default_rng([7, i]), capture="default", spec=spec)
        views.append(np.asarray(rectify(image, 64, 144), dtype=np.float32))
    plain = [np.asarray(render_scan(np.random.default_rng([7, i]), capture="default", spec=spec)[0]
                        .resize((144, 64), Image.Resampling.BILINEAR), dtype=np.float32) for i in range(4)]
    spread_rectified = np.mean([np.abs(v - views[0]).mean() for v in views[1:]])
    spread_plain = np.mean([np.abs(v - plain[0]).mean() for v in plain[1:]])
    assert spread_rectified < 0.5 * spread_plain


def test_flatten_removes_a_lighting_ramp():
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


@pytest.mark.parametrize("image", [
    Image.new("RGB", (640, 288), (0, 0, 0)),
    Image.new("RGB", (640, 288), (255, 255, 255)),
    Image.new("RGB", (3, 2), (90, 10, 200)),
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (288, 640, 3), dtype=np.uint8)),
    Image.new("RGB", (200, 900), (200, 200, 200)),  # portrait, featureless
], ids=["black", "white", "tiny", "noise", "portrait"])
def test_no_note_falls_back_to_the_whole_frame(image):
    params = PreprocessParams(height=64, width=144, canonicalize=True)
    x = to_uint8(image, params)
    assert x.shape == (3, 64, 144) and x.dtype.is_floating_point is False
    assert find_note(image).notes <= 1


def test_canonical_params_round_trip_and_old_checkpoints_read_as_plain():
    p = PreprocessParams(height=64, width=144, canonicalize=True)
    assert PreprocessParams.from_dict(p.to_dict()) == p
    old = p.to_dict()
    del old["canonicalize"], old["white_balance"]
    assert PreprocessParams.from_dict(old).canonicalize is False
    assert PreprocessParams.from_dict(old).white_balance is False
