"""The hostile-input corpus (tests/hostile/) against the decoder, plus a bounded fuzz of the decode path.

Every file must end in a normal decode or a RejectedScan with the expected reason; nothing else may
escape (no Pillow exception, no crash, no hang).
"""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hostile.build import FILES, HERE
from workers.core.errors import RejectedScan
from workers.core.imaging import Limits, decode, inspect

EXPECTED = json.loads((HERE / "expected.json").read_text())
LIMITS = Limits()


def outcome(data: bytes) -> str:
    try:
        img, _ = decode(data, LIMITS)
    except RejectedScan as exc:
        return exc.reason
    assert img.mode == "RGB"
    return "ok"


def test_the_corpus_is_big_enough():
    assert len(EXPECTED) >= 25
    assert {p.name for p in FILES.iterdir()} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_hostile_file_gets_its_expected_outcome(name):
    got = outcome((FILES / name).read_bytes())
    want = EXPECTED[name]
    assert got in (("ok", "image_unreadable") if want == "ok_or_unreadable" else (want,))


def test_an_oversized_body_is_refused_before_decoding():
    with pytest.raises(RejectedScan) as info:
        inspect(b"\xff\xd8\xff" + b"\0" * LIMITS.max_bytes, LIMITS)
    assert info.value.reason == "image_too_large"


SEEDS = [(FILES / n).read_bytes() for n in ("progressive.jpg", "palette.png", "alpha.png", "exif-rotated.jpg")]


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(SEEDS), cuts=st.lists(st.tuples(st.integers(0, 10_000), st.binary(max_size=16)), max_size=6),
       truncate=st.integers(0, 20_000))
def test_fuzzed_images_never_escape_as_anything_but_rejected(seed, cuts, truncate):
    data = bytearray(seed)
    for pos, junk in cuts:  # overwrite a few spans with random bytes
        pos %= max(1, len(data))
        data[pos: pos + len(junk)] = junk
    data = bytes(data[: max(0, len(data) - truncate)])
    assert outcome(data) in {"ok", "image_empty", "unsupported_format", "image_unreadable", "too_many_pixels",
                             "dimensions_out_of_range"}
