"""The held-out share of reviewed scans: a hash of the scan id, stable, nested, and the two sides disjoint."""

import pytest

from models.holdout import Holdout, hash_unit, holdout_key, in_holdout

ANNS = [{"file": f"images/{i:06d}.jpg", "scan_id": f"{i:032x}"} for i in range(2000)]


def test_the_share_held_out_is_close_to_the_one_asked_for_and_the_same_every_time():
    held = [a["scan_id"] for a in ANNS if in_holdout(a, 0.2)]
    assert 0.17 < len(held) / len(ANNS) < 0.23
    assert held == [a["scan_id"] for a in ANNS if in_holdout(a, 0.2)]
    assert hash_unit("abc") == hash_unit("abc") != hash_unit("abd")


def test_train_and_holdout_sides_split_every_scan_exactly_once():
    train, hold = Holdout(0.3, "train"), Holdout(0.3, "holdout")
    assert all(train.keeps(a) != hold.keeps(a) for a in ANNS)
    assert Holdout(0.0, "train").keeps(ANNS[0]) and not Holdout(0.0, "holdout").keeps(ANNS[0])


def test_a_smaller_share_is_inside_a_larger_one_and_order_does_not_matter():
    small = {a["scan_id"] for a in ANNS if in_holdout(a, 0.1)}
    large = {a["scan_id"] for a in ANNS if in_holdout(a, 0.2)}
    assert small < large
    assert {a["scan_id"] for a in reversed(ANNS) if in_holdout(a, 0.2)} == large  # not the position


def test_scan_id_is_the_key_and_the_file_name_stands_in_for_a_generated_folder():
    assert holdout_key({"file": "images/x.jpg", "scan_id": "ab"}) == "ab"
    assert holdout_key({"file": "images/x.jpg"}) == "images/x.jpg"


@pytest.mark.parametrize("share, side", [(-0.1, "train"), (1.5, "holdout"), (0.2, "test")])
def test_a_bad_share_or_side_is_refused(share, side):
    with pytest.raises(ValueError):
        Holdout(share, side)
