import json

import pytest

from workers.core import clock, schemas
from workers.core.errors import ContractError
from workers.core.schemas import InputRef, ModelRef, MultiScanMessage, ScanMessage, Timestamps, Verdict


def _msg(**kw):
    base = dict(scan_id=schemas.new_scan_id(), tenant="acme", store_id="s1", terminal_id="t1",
                image_key="scans/dt=2026-11-28/tenant=acme/x.jpg", sha256="ab" * 32, bytes=10,
                submitted_at=clock.utcnow())
    return ScanMessage(**(base | kw))


def test_message_round_trips_through_json():
    msg = _msg(deadline=clock.utcnow())
    wire = json.dumps(msg.encode())
    assert ScanMessage.decode(wire) == msg
    assert "bytes" in msg.encode() and all(not isinstance(v, bytes) for v in msg.encode().values())


@pytest.mark.parametrize("raw", ["not json", "[]", json.dumps({"v": 99}), json.dumps({"v": 1, "scan_id": "x"})])
def test_bad_messages_raise_one_error_type(raw):
    with pytest.raises(ContractError):
        ScanMessage.decode(raw)


def test_message_with_unsafe_tenant_is_refused():
    with pytest.raises(ContractError):
        ScanMessage.decode(_msg(tenant="../other").encode())


def test_verdict_round_trip_and_schema_version():
    v = Verdict(scan_id="a" * 32, tenant="acme", store_id="s", terminal_id="t", decision="counterfeit",
                input=InputRef("k", "s", 3, 10, 20), timestamps=Timestamps(clock.utcnow()),
                confidence=0.99, signs={"watermark": 0.9}, signs_detected=["watermark"],
                model=ModelRef("m", "1", "c" * 64), batch_id="b", batch_size=4)
    assert Verdict.decode(v.encode()) == v
    assert json.loads(v.encode())["schema_version"] == schemas.VERDICT_VERSION
    with pytest.raises(ContractError):
        Verdict.decode(json.dumps(json.loads(v.encode()) | {"decision": "maybe"}))
    with pytest.raises(ContractError):
        Verdict.decode(json.dumps(json.loads(v.encode()) | {"schema_version": 0}))


def test_ids():
    assert schemas.is_scan_id(schemas.new_scan_id())
    assert not schemas.is_scan_id("../../etc/passwd")
    assert schemas.is_safe_id("store-12_a") and not schemas.is_safe_id("a/b") and not schemas.is_safe_id("")


def test_multi_scan_message_round_trip_and_per_scan_errors():
    good = _msg()
    bad = dict(_msg().encode(), scan_id="../x")
    multi = MultiScanMessage((good, good))
    assert MultiScanMessage.decode_parts(multi.encode()) == ([good, good], [])
    ok, errors = MultiScanMessage.decode_parts({"v": 1, "scans": [good.encode(), bad]})
    assert ok == [good] and errors[0][0] == bad and isinstance(errors[0][1], ContractError)
    for raw in ({"v": 2, "scans": [good.encode()]}, {"v": 1, "scans": []}, {"v": 1},
                {"v": 1, "scans": [good.encode()] * (schemas.MAX_SCANS_PER_MESSAGE + 1)}, "not json"):
        with pytest.raises(ContractError):
            MultiScanMessage.decode_parts(raw)


def test_verdict_json_is_what_dataclasses_asdict_gives():
    """encode() builds its dict by hand (hot path); the bytes must stay those of asdict + sorted keys."""
    from dataclasses import asdict

    full = Verdict(scan_id=schemas.new_scan_id(), tenant="acme", store_id="s1", terminal_id="pos-1",
                   decision="counterfeit", input=InputRef("k", "0" * 64, 10, 32, 48),
                   timestamps=Timestamps("a", "b", "c", "d", "e"), confidence=0.91, p_counterfeit=0.91,
                   signs={"watermark": 0.8, "microprint": 0.1}, signs_detected=["watermark"], denomination="20",
                   denomination_confidence=0.99, model=ModelRef("m", "v1", "f" * 64), batch_id="b1", batch_size=32,
                   attempt=2)
    bare = Verdict(scan_id=schemas.new_scan_id(), tenant="acme", store_id="s1", terminal_id="pos-1",
                   decision="rejected", input=InputRef("k", "0" * 64, 10), timestamps=Timestamps("a"),
                   reason="image_unreadable", detail="cut off")
    for v in (full, bare):
        assert v.encode() == json.dumps(asdict(v), sort_keys=True, separators=(",", ":"))
        assert Verdict.decode(v.encode()) == v


# --- a person's review --------------------------------------------------------------------------
def _review(**changes):
    from workers.core.schemas import Review

    base = dict(scan_id="f" * 32, tenant="acme", label="not_a_banknote", reviewer="ann@acme",
                reviewed_at="2026-03-02T09:00:00.000000Z", submitted_at="2026-03-01T10:00:00.000000Z",
                image_key="scans/dt=2026-03-01/tenant=acme/x.jpg", source="qc_sample", model_decision="genuine",
                signs_seen=["watermark"], note="a coupon")
    return Review(**{**base, **changes})


def test_a_review_round_trips_and_says_which_decision_stands():
    from workers.core.schemas import Review

    review = _review()
    assert Review.decode(review.encode()) == review
    assert (review.final_decision, review.final_reason) == ("rejected", "not_a_banknote")
    assert _review(label="counterfeit").final_decision == "counterfeit" and _review(label="genuine").final_reason is None


@pytest.mark.parametrize("changes", [{"label": "maybe"}, {"source": "whim"}, {"scan_id": "x"}, {"tenant": "a b"},
                                     {"model_decision": "perhaps"}, {"note": "x" * 2001}, {"signs_seen": "watermark"},
                                     {"v": 2}])
def test_a_review_that_breaks_the_contract_does_not_decode(changes):
    import json

    from workers.core.errors import ContractError
    from workers.core.schemas import Review

    data = {**json.loads(_review().encode()), **changes}
    with pytest.raises(ContractError):
        Review.decode(json.dumps(data))
