"""The capture families, their strengths, the training mixture and the negatives."""

import numpy as np
import pytest

from models.synth.conditions import (
    FAMILIES,
    MIN_VISIBLE,
    NEGATIVES_TEST,
    NEGATIVES_TRAIN,
    STRENGTHS,
    family_condition,
    lerp,
    negative_scan,
    scene_scan,
    training_condition,
)
from models.synth.render import render_note, sample_note


def _note(rng):
    return render_note(sample_note(rng, counterfeit=False))


def test_there_are_at_least_twelve_families_each_with_physics_and_levels():
    assert len(FAMILIES) >= 12
    for f in FAMILIES.values():
        assert f.physics and f.levels.count("/") >= 2


@pytest.mark.parametrize("family,key", [("glare", "glare"), ("shadow", "shadow"), ("perspective", "tilt_deg"),
                                        ("warp", "bend"), ("defocus", "defocus_px"), ("crumple", "paper_shading")])
def test_stronger_means_physically_more(family, key):
    values = [np.median([family_condition(np.random.default_rng([k, i]), family, s)[key] for i in range(20)])
              for k, s in enumerate(STRENGTHS)]
    assert values[0] < values[1] < values[2]


def test_colour_temperature_moves_away_from_daylight_and_the_camera_corrects_less():
    for s, lo in (("mild", 500), ("realistic", 2000), ("strong", 3500)):
        c = family_condition(np.random.default_rng(4), "colour_temperature", s)
        assert abs(c["cct_k"] - 6504) >= lo
    assert family_condition(np.random.default_rng(4), "colour_temperature", "strong")["awb"] == 0.0


def test_conditions_are_deterministic_json_and_rendered_the_same_twice():
    import json

    c = family_condition(np.random.default_rng(9), "finger", "realistic")
    assert json.loads(json.dumps(c)) == c
    note = _note(np.random.default_rng(1))
    a, info = scene_scan(note, c)
    b, _ = scene_scan(note, c)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert 0.85 < info["visible_share"] <= 1.01


def test_lerp_passes_through_the_named_strengths():
    assert lerp(0.0, 1, 2, 3) == 0.0 and lerp(1 / 3, 1, 2, 3) == 1 and lerp(2 / 3, 1, 2, 3) == 2
    assert lerp(1.0, 1, 2, 3) == 3 and lerp(1.15, 1, 2, 3) > 3


def test_training_mixture_draws_several_families():
    names = [training_condition(np.random.default_rng(i))["family"] for i in range(200)]
    assert "none" in names
    combos = [n for n in names if "+" in n]
    assert len(combos) > 40
    assert len({p for n in names for p in n.split("+")} - {"none"}) == len(FAMILIES)


def test_negative_kinds_are_split_and_labelled():
    assert not set(NEGATIVES_TRAIN) & set(NEGATIVES_TEST)
    for split in (NEGATIVES_TRAIN, NEGATIVES_TEST):
        assert set(split.values()) == {"not_a_banknote", "note_incomplete", "multiple_notes"}


@pytest.mark.parametrize("kind", ["partial_frame", "partial_covered"])
def test_partial_notes_show_less_than_the_minimum(kind):
    shares = [negative_scan(np.random.default_rng([kind == "partial_frame", i]), kind, _note)[1]["visible_share"]
              for i in range(8)]
    assert max(shares) < MIN_VISIBLE


def test_a_negative_scan_is_annotated_as_rejected():
    image, ann = negative_scan(np.random.default_rng(3), "coupon", _note)
    assert ann["kind"] == "not_a_banknote" and ann["label"] == "rejected" and ann["negative"] == "coupon"
    assert image.size == (ann["width"], ann["height"])


def test_random_prints_vary_in_aspect_and_design():
    from models.synth.objects import random_print

    sheets = [random_print(np.random.default_rng(i)) for i in range(12)]
    aspects = [s.width / s.height for s in sheets]
    assert min(aspects) >= 1.3 and max(aspects) <= 3.0 and np.std(aspects) > 0.2
    assert len({np.asarray(s).tobytes()[:5000] for s in sheets}) == 12


def test_the_validation_mixture_uses_one_family_at_a_time():
    from models.synth.conditions import validation_condition

    names = [validation_condition(np.random.default_rng(i))["family"] for i in range(120)]
    assert "+" not in "".join(names) and "none" in names and len(set(names)) > 10


def test_the_layout_score_tells_our_notes_from_other_prints():
    from models.canonical import canonical_view
    from models.synth.dataset import render_item

    def layout(capture, i):
        image, _ = render_item(np.random.default_rng([21, i]), capture, False, None)
        return canonical_view(image, 64, 144)[1].layout

    notes = [layout("default", i) for i in range(6)]
    others = [layout(c, i) for i in range(3) for c in ("negative:coupon", "negative:text_page", "negative:coins")]
    assert min(notes) > 0.6 and max(others) < 0.45
