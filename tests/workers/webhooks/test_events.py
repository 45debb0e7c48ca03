"""scan.completed beside the verdict path: emitted from the stored verdict, once, never failing it."""

import json

import pytest

from workers.core import clock, schemas
from workers.core.schemas import InputRef, Timestamps, Verdict
from workers.core.storage import MemoryObjectStore
from workers.core.verdict_store import VerdictStore, redis_client
from workers.runtime.context import WorkerContext
from workers.runtime.publish import publish
from workers.webhooks.endpoints import EndpointStore
from workers.webhooks.events import completed_event_id, emit_completed, emit_reviewed
from workers.webhooks.outbox import Outbox


@pytest.fixture()
def r(clean_redis):
    return redis_client(clean_redis)


def verdict(decision="genuine", tenant="acme"):
    return Verdict(schemas.new_scan_id(), tenant, "s1", "t1", decision, InputRef("scans/k.jpg", "ab" * 32, 3),
                   Timestamps(clock.utcnow()))


def test_publish_emits_scan_completed_from_the_stored_verdict_once(r):
    ep = EndpointStore(r).add("acme", "https://a.example/hook")
    ctx = WorkerContext(objects=MemoryObjectStore(bucket="scans"), verdicts=VerdictStore(r), webhooks=Outbox(r))
    v = verdict()
    ctx.verdicts.save_verdict(v)  # an earlier delivery stored this verdict first
    late = Verdict(v.scan_id, v.tenant, v.store_id, v.terminal_id, "counterfeit", v.input, v.timestamps)
    other = verdict("review", tenant="globex")  # globex has no endpoint
    publish([late, other], ctx, ctx.executor_for(1))
    publish([late], ctx, ctx.executor_for(1))  # a redelivery publishes again: no second event
    (claim,) = ctx.webhooks.claim(now=10**10, limit=10)
    assert claim.endpoint_id == ep.id and claim.msg_id == completed_event_id(v.scan_id)
    body = json.loads(ctx.webhooks.message(claim.msg_id)["body"])
    assert body["type"] == "scan.completed" and body["data"]["decision"] == "genuine"  # what Redis holds
    assert body["data"] == json.loads(r.get(f"ts:verdict:{v.scan_id}"))


def test_a_failing_outbox_never_fails_the_verdict(r):
    class Broken(Outbox):
        def emit(self, events, now, endpoint_id=""):
            raise RuntimeError("redis went away")

    ctx = WorkerContext(objects=MemoryObjectStore(bucket="scans"), verdicts=VerdictStore(r), webhooks=Broken(r))
    v = verdict()
    assert publish([v], ctx, ctx.executor_for(1)) == [v]
    assert emit_completed(Broken(r), [(v, v.encode())]) == 0
    assert emit_completed(None, [(v, v.encode())]) == 0  # a context without webhooks (tests, tools)


def test_scan_reviewed_is_one_event_per_review_and_never_raises(r):
    EndpointStore(r).add("acme", "https://a.example/hook")
    sid = schemas.new_scan_id()
    first = emit_reviewed(r, "acme", sid, "2026-12-02T10:00:00.000000Z", {"scan_id": sid, "label": "counterfeit"})
    assert first == f"msg_{sid}_reviewed_20261202100000000000"
    assert emit_reviewed(r, "acme", sid, "2026-12-02T10:00:00.000000Z", {"scan_id": sid}) is None  # the same review
    assert emit_reviewed(r, "acme", sid, "2026-12-02T10:05:00.000000Z", {"scan_id": sid}) != first  # after an undo
    assert json.loads(Outbox(r).message(first)["body"])["data"]["label"] == "counterfeit"
    broken = redis_client("redis://127.0.0.1:1/0", timeout_s=0.2)
    assert emit_reviewed(broken, "acme", sid, "2026-12-02T10:00:00.000000Z", {}) is None
