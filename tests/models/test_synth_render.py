import numpy as np
import pytest

from models.synth import DENOMINATIONS, NoteSpec, render_note, render_scan, sample_note
from models.synth.design import DESIGNS, NOTE_H, SERIAL_CELL_H, SERIAL_CELL_W, SERIAL_LENGTH, template
from models.synth.render import make_scans
from models.synth.signs import PHYSICAL, SEVERITIES


def _window_box(denom: str):
    d = DESIGNS[DENOMINATIONS.index(denom)]
    return slice(NOTE_H // 2 - 40, NOTE_H // 2 + 40), slice(d.watermark_x - 30, d.watermark_x + 30)


def _with(spec: NoteSpec, **signs) -> NoteSpec:
    return NoteSpec(spec.denomination, spec.serial, "medium" if signs else None, signs)


def test_same_seed_same_scan_and_annotation():
    a_img, a_ann = render_scan(123)
    b_img, b_ann = render_scan(123)
    c_img, _ = render_scan(124)
    assert a_ann == b_ann
    assert np.array_equal(np.asarray(a_img), np.asarray(b_img))
    assert not np.array_equal(np.asarray(a_img), np.asarray(c_img)) or a_img.size != c_img.size


def test_make_scans_is_deterministic_jpeg():
    a, b = make_scans(3, seed=5), make_scans(3, seed=5)
    assert [x[0] for x in a] == [x[0] for x in b]
    assert all(x[0][:2] == b"\xff\xd8" for x in a)


@pytest.mark.parametrize("denom", DENOMINATIONS)
def test_missing_watermark_really_differs_in_the_watermark_region(denom):
    genuine = sample_note(np.random.default_rng(1), counterfeit=False, denomination=denom)
    g = render_note(genuine).astype(float)
    ys, xs = _window_box(denom)
    outside = (slice(0, NOTE_H), slice(0, 20))
    for sev in SEVERITIES:
        fake = render_note(_with(genuine, watermark={"severity": sev, **PHYSICAL["watermark"][sev]})).astype(float)
        assert np.abs(fake[ys, xs] - g[ys, xs]).mean() > 1.0, sev  # the window changed
        assert np.array_equal(fake[outside], g[outside])  # nothing else did


def test_watermark_severity_is_monotone():
    genuine = sample_note(np.random.default_rng(2), counterfeit=False, denomination="20")
    g = render_note(genuine).astype(float)
    ys, xs = _window_box("20")
    diffs = [np.abs(render_note(_with(genuine, watermark={**PHYSICAL["watermark"][s]})).astype(float)[ys, xs]
                    - g[ys, xs]).mean() for s in SEVERITIES]
    assert diffs[0] < diffs[1] < diffs[2]


def test_wrong_serial_really_has_the_wrong_count():
    rng = np.random.default_rng(3)
    for _ in range(30):
        spec = sample_note(rng, counterfeit=True, severity=str(rng.choice(SEVERITIES)))
        delta = spec.signs.get("serial_format", {}).get("char_delta", 0)
        assert len(spec.serial) == SERIAL_LENGTH + delta
        assert ("serial_format" in spec.signs) == (len(spec.serial) != SERIAL_LENGTH)


def test_short_serial_leaves_its_last_cells_blank():
    genuine = sample_note(np.random.default_rng(4), counterfeit=False, denomination="5")
    t = template(DENOMINATIONS.index("5"))
    x0, y0 = t.serial_box[:2]
    last = (slice(y0, y0 + SERIAL_CELL_H), slice(x0 + 10 * SERIAL_CELL_W, x0 + 11 * SERIAL_CELL_W))
    short = NoteSpec("5", genuine.serial[:2] + genuine.serial[3:], "subtle", {"serial_format": {"char_delta": -1}})
    g, s = render_note(genuine).astype(float), render_note(short).astype(float)
    assert np.abs(g[last] - s[last]).mean() > 5.0


def test_missing_thread_and_color_shift_change_pixels():
    genuine = sample_note(np.random.default_rng(5), counterfeit=False, denomination="50")
    g = render_note(genuine).astype(float)
    tx = DESIGNS[DENOMINATIONS.index("50")].thread_x
    thread = render_note(_with(genuine, security_thread={"relative_contrast": 0.0})).astype(float)
    assert np.abs(thread[20:230, tx:tx + 6] - g[20:230, tx:tx + 6]).mean() > 10.0
    shifted = render_note(_with(genuine, color_discrepancy={"hue_shift_deg": 12.0, "saturation_scale": 1.0}))
    assert np.abs(shifted.astype(float) - g).mean() > 1.0


def test_incomplete_printing_removes_fine_lines_in_its_region():
    genuine = sample_note(np.random.default_rng(6), counterfeit=False, denomination="10")
    fake = _with(genuine, incomplete_printing={"ink_lost": 1.0, "regions": [[240.0, 160.0, 45.0, 28.0]]})
    g, f = render_note(genuine).astype(float), render_note(fake).astype(float)
    inside = (slice(148, 172), slice(215, 265))
    assert f[inside].std() < 0.5 * g[inside].std()  # detail gone
    assert np.array_equal(f[:, :150], g[:, :150])


def test_annotation_is_complete():
    _, ann = render_scan(9, counterfeit=True, severity="obvious", capture="harsh")
    assert ann["label"] == "counterfeit" and ann["severity"] == "obvious"
    assert ann["signs"] and all(s["severity"] == "obvious" for s in ann["signs"].values())
    assert ann["capture"]["preset"] == "harsh" and ann["generator_version"]
    assert ann["serial_length"] == len(ann["serial"])
