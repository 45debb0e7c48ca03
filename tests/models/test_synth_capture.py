import numpy as np
import pytest

from models.synth.capture import PRESETS, SCAN_H, SCAN_W, apply_capture, sample_capture


def _note():
    return np.full((256, 576, 3), 200, dtype=np.uint8)


def test_presets_have_every_parameter_and_harsh_is_stronger():
    names = set(PRESETS["default"])
    assert {"clean", "default", "harsh"} <= set(PRESETS)
    assert all(set(p) == names for p in PRESETS.values())
    for k in ("blur_sigma", "noise_sigma", "lighting", "rotation_deg"):
        assert PRESETS["harsh"][k][1] > PRESETS["default"][k][1] >= PRESETS["clean"][k][1]
    assert PRESETS["harsh"]["jpeg_quality"][1] < PRESETS["default"]["jpeg_quality"][0]


def test_parameters_stay_in_range_and_are_deterministic():
    for preset, ranges in PRESETS.items():
        for seed in range(20):
            c = sample_capture(np.random.default_rng(seed), preset)
            assert c == sample_capture(np.random.default_rng(seed), preset)
            lo, hi = ranges["blur_sigma"]
            assert lo <= c["blur_sigma"] <= hi
            assert ranges["jpeg_quality"][0] <= c["jpeg_quality"] <= ranges["jpeg_quality"][1]
            assert abs(c["rotation_deg"]) <= ranges["rotation_deg"][1]


def test_unknown_preset_is_refused():
    with pytest.raises(ValueError, match="unknown capture preset"):
        sample_capture(np.random.default_rng(0), "blurry")


def test_crop_shrinks_the_scan_and_noise_adds_variance():
    c = sample_capture(np.random.default_rng(0), "clean")
    c.update(crop=0.05, crop_side="left", noise_sigma=0.0, rotation_deg=0.0)
    img = apply_capture(_note(), c)
    assert img.size == (SCAN_W - round(0.05 * SCAN_W), SCAN_H)
    quiet = np.asarray(img, dtype=float)[100:180, 200:400].std()
    c.update(noise_sigma=10.0)
    noisy = np.asarray(apply_capture(_note(), c), dtype=float)[100:180, 200:400].std()
    assert noisy > quiet + 5
