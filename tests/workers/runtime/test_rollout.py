"""workers/runtime/rollout.py: routing by scan id, the canary's band, and a rollback on the real Redis."""

from __future__ import annotations

import json
import uuid

import pytest

from workers.audit.model_events import read_events
from workers.audit.signing import Signer, Verifier, generate_key
from workers.core import keys, registry
from workers.core.storage import MemoryObjectStore
from workers.core.verdict_store import VerdictStore, redis_client
from workers.runtime.rollout import (
    CANARY,
    PRODUCTION,
    Band,
    CanaryJudge,
    LiveModels,
    ServedModel,
    Serving,
    Tally,
    breaches,
    routes_to_canary,
)


class _Model:  # what ServedModel reads of a runner.LoadedModel
    def __init__(self, name="m"):
        from workers.core.schemas import ModelRef

        self.ref = ModelRef(name, "ckpt-version", "a" * 64)
        self.thresholds = object()


def test_a_scan_always_routes_the_same_way_and_the_share_holds():
    ids = [uuid.uuid4().hex for _ in range(20_000)]
    picked = [routes_to_canary(i, 0.1) for i in ids]
    assert picked == [routes_to_canary(i, 0.1) for i in ids]  # a retry lands on the same model
    assert 0.09 < sum(picked) / len(ids) < 0.11
    assert not any(routes_to_canary(i, 0.0) for i in ids[:100]) and all(routes_to_canary(i, 1.0) for i in ids[:100])


def test_serving_picks_the_canary_by_share_and_the_verdict_names_the_registry_version():
    tally = Tally()
    prod = ServedModel("production", "v1", _Model(), PRODUCTION, tally)
    canary = ServedModel("canary", "v2", _Model(), CANARY, tally)
    live = LiveModels(Serving(prod, canary, 0.5), tally)
    ids = [uuid.uuid4().hex for _ in range(400)]
    picks = {live.pick(i).version for i in ids}
    assert picks == {"v1", "v2"}
    assert live.pick(None) is prod  # no scan id: production
    assert canary.ref.version == "v2" and canary.ref.sha256 == "a" * 64
    canary.record("review")
    canary.record_error()
    prod.record("genuine")
    assert tally.drain() == {"canary:review": 1, "canary:error": 1, "production:genuine": 1}
    assert tally.drain() == {}


def test_breaches_need_enough_scans_and_compare_with_production():
    band = Band(min_scans=20, review_margin=0.05, max_error_rate=0.02)
    base = {"production:genuine": 900, "production:review": 100}  # production reviews 10 %
    assert breaches({**base, "canary:genuine": 5, "canary:review": 10}, band) == []  # too few to judge
    assert breaches({**base, "canary:genuine": 85, "canary:review": 15}, band) == []  # 15 % <= 10 % + 5 %
    (why,) = breaches({**base, "canary:genuine": 70, "canary:review": 30}, band)
    assert why.startswith("review rate 0.300 > production's 0.100")
    (why,) = breaches({**base, "canary:genuine": 95, "canary:error": 5}, band)
    assert why.startswith("error rate 0.050")


def _registry(store):
    store.put(keys.model_meta_s3_key("v1"), json.dumps({"version": "v1"}).encode())
    store.put(keys.model_meta_s3_key("v2"), json.dumps({"version": "v2"}).encode())
    registry.promote(store, "v1", "production")
    registry.promote(store, "v2", "canary")


def test_a_canary_out_of_band_is_rolled_back_once_with_a_signed_record(clean_redis):
    store = MemoryObjectStore()
    _registry(store)
    seed, public = generate_key()
    verdicts = VerdictStore(redis_client(clean_redis))
    now = [1_000_000.0]
    judges = [CanaryJudge(verdicts, store, Signer(seed), "canary", 60, Band(min_scans=20), clock=lambda: now[0])
              for _ in range(2)]  # two workers
    tallies = [Tally(), Tally()]
    serving = Serving(ServedModel("production", "v1", _Model(), PRODUCTION),
                      ServedModel("canary", "v2", _Model(), CANARY), 0.1)
    # each worker saw half: alone neither has 20 canary scans, together the fleet has 24
    for t in tallies:
        t.add("production:genuine", 200)
        t.add("canary:genuine", 6)
        t.add("canary:review", 6)
    assert judges[0].tick(serving, tallies[0]) is None  # 12 canary scans so far: too few
    reason = judges[1].tick(serving, tallies[1])
    assert reason and "review rate 0.500" in reason
    assert judges[0].tick(serving, Tally()) is None  # the alias moved already: nothing more to do
    alias = json.loads(store.get(keys.alias_s3_key("canary")).data)
    assert alias["version"] == "v1" and alias["previous"] == "v2" and alias["by"] == "auto-rollback"
    (event,) = read_events(store, _day(store), Verifier([public]))
    assert event["action"] == "canary_rolled_back" and event["version"] == "v2" and event["signed"] is True
    assert event["counts"]["canary:review"] == 12 and event["production"] == "v1"


def _day(store) -> str:
    key = next(k for k in store.objects if k.startswith(keys.MODEL_EVENTS_PREFIX))
    return key.split("dt=")[1][:10]


def test_a_tally_only_goes_to_redis_while_a_canary_serves(clean_redis):
    verdicts = VerdictStore(redis_client(clean_redis))
    judge = CanaryJudge(verdicts, MemoryObjectStore(), None, "canary", 60, clock=lambda: 120.0)
    tally = Tally()
    tally.add("production:genuine", 5)
    assert judge.tick(Serving(ServedModel("production", "v1", _Model())), tally) is None
    assert tally.drain() == {}  # drained, not kept for later
    assert verdicts.rollout_counts("v1", [1, 2]) == {}


@pytest.mark.parametrize("share", [0.0, 0.3])
def test_a_retry_decided_by_the_same_model(share):
    tally = Tally()
    serving = Serving(ServedModel("production", "v1", _Model()), ServedModel("canary", "v2", _Model(), CANARY), share)
    scan = uuid.uuid4().hex
    assert len({serving.pick(scan).version for _ in range(10)}) == 1
    assert tally.drain() == {}



def test_reviews_that_find_the_canarys_counterfeits_genuine_roll_it_back(clean_redis):
    import redis

    store = MemoryObjectStore()
    _registry(store)
    verdicts = VerdictStore(redis_client(clean_redis))
    band = Band(min_scans=1000, min_reviews=10, max_false_reject=0.05)  # the review rate alone cannot trip it
    judge = CanaryJudge(verdicts, store, None, "canary", 60, band, clock=lambda: 1_000_000.0)
    tally = Tally()
    canary = ServedModel("canary", "v2", _Model(), CANARY, tally)
    serving = Serving(ServedModel("production", "v1", _Model(), PRODUCTION, tally), canary, 0.1)
    ids = [uuid.uuid4().hex for _ in range(12)]
    for scan_id in ids:
        canary.record("counterfeit", scan_id)
    canary.record("genuine", uuid.uuid4().hex)  # not awaited: only counterfeit verdicts can be false rejects
    r = redis.Redis.from_url(clean_redis)
    for scan_id in ids[:9]:  # nine reviewed so far: fewer than min_reviews
        label = "genuine" if scan_id in ids[:3] else "counterfeit"
        r.set(keys.review_key(scan_id), json.dumps({"scan_id": scan_id, "label": label}))
    assert judge.tick(serving, tally) is None
    assert sorted(tally.take_awaiting()) == sorted(ids[9:])  # still awaited: the three without a review
    tally.await_review(ids[9:])
    r.set(keys.review_key(ids[9]), json.dumps({"scan_id": ids[9], "label": "counterfeit"}))
    reason = judge.tick(serving, tally)
    assert reason == "false-reject rate 0.300 on 10 reviewed counterfeit verdicts > 0.05"
    assert registry.alias_version(store, "canary") == "v1"
