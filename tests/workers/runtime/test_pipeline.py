"""workers/runtime/pipeline.py: every scan gets its own verdict, and bad scans never spoil their batch.

Real Redis (clean_redis), the in-memory object store twin, and the real ModelRunner + Batcher
around a stand-in model (tests/workers/runtime/test_runner.py::twin_model).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import struct
import zlib
from concurrent.futures import Future
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image

from tests.concurrency import call_concurrently
from tests.workers.runtime.test_runner import twin_model
from workers.core import clock, imaging, keys, schemas
from workers.core.errors import StorageUnavailable, StoreUnavailable
from workers.core.schemas import ScanMessage, Verdict
from workers.core.storage import MemoryObjectStore
from workers.core.verdict_store import VerdictStore, redis_client
from workers.runtime import pipeline
from workers.runtime.context import WorkerContext
from workers.runtime.publish import AUDIT_CHUNK, audit_key
from workers.runtime.retrying import RetryPolicy
from workers.runtime.runner import ModelRunner

LIMITS = imaging.Limits(max_bytes=200_000)


def jpeg(red: int, size=(240, 108)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (red, 120, 60)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A tiny PNG whose header claims width x height pixels."""
    buf = io.BytesIO()
    Image.new("1", (8, 8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


@pytest.fixture()
def env(clean_redis):
    store = MemoryObjectStore(bucket="scans")
    verdicts = VerdictStore(redis_client(clean_redis), ttl_s=600)
    runner = ModelRunner(twin_model(), max_batch_size=16, max_wait_s=0.4)
    ctx = WorkerContext(objects=store, verdicts=verdicts, runner=runner, limits=LIMITS)
    yield ctx
    runner.close()


def scan(ctx, data: bytes | None, *, sha256: str | None = None, deadline: str | None = None) -> ScanMessage:
    """Do what the edge does: image into the store (unless None), scan recorded as queued."""
    sid = schemas.new_scan_id()
    submitted = clock.utcnow()
    key = keys.image_s3_key("acme", sid, submitted, "JPEG")
    if data is not None:
        ctx.objects.put(key, data, "image/jpeg", {"sha256": hashlib.sha256(data).hexdigest()})
    msg = ScanMessage(scan_id=sid, tenant="acme", store_id="s1", terminal_id="t1", image_key=key,
                      sha256=sha256 or hashlib.sha256(data or b"").hexdigest(), bytes=len(data or b""),
                      submitted_at=submitted, deadline=deadline)
    ctx.verdicts.create_scan(msg)
    return msg


def run_together(ctx, msgs: list[ScanMessage]) -> list[Verdict]:
    """Process messages concurrently, as the threads pool does, so that good scans share a batch."""
    results = call_concurrently(lambda msg: pipeline.process_scan(msg, ctx), msgs, timeout_s=20)
    assert not [r for r in results if isinstance(r, Exception)], results
    return results


def assert_published(ctx, verdict: Verdict) -> None:
    """Redis and S3 hold the same bytes, and the scan is done."""
    assert ctx.verdicts.get_verdict(verdict.scan_id) == verdict
    assert ctx.objects.get(audit_key(verdict)).data == verdict.encode().encode()
    assert ctx.verdicts.get_scan(verdict.scan_id)["status"] == "done"


@pytest.fixture()
def env3(env):
    """`env` with a runner whose batch is exactly the three good scans below: it flushes when full,
    so the batch does not depend on how fast a loaded machine schedules the task threads."""
    runner = ModelRunner(twin_model(), max_batch_size=3, max_wait_s=30)
    yield dataclasses.replace(env, runner=runner)
    runner.close()


def test_bad_scans_get_their_own_reasons_while_batch_mates_are_judged(env3):
    env = env3
    past = clock.format_time(datetime.now(UTC) - timedelta(seconds=5))
    good_jpeg = jpeg(230)
    cases = {
        "counterfeit": scan(env, jpeg(235)),
        "genuine": scan(env, jpeg(10)),
        "missing": scan(env, None, sha256="0" * 64),
        "empty": scan(env, b""),
        "not_an_image": scan(env, b"%PDF-1.7 definitely not a bill"),
        "truncated": scan(env, good_jpeg[: len(good_jpeg) // 2]),
        "bomb": scan(env, png_bomb()),
        "tiny": scan(env, jpeg(200, size=(10, 10))),
        "too_large": scan(env, b"\xff" * (LIMITS.max_bytes + 1)),
        "checksum": scan(env, good_jpeg, sha256=hashlib.sha256(b"other bytes").hexdigest()),
        "expired": scan(env, good_jpeg, deadline=past),
        "review": scan(env, jpeg(128)),
    }
    verdicts = dict(zip(cases, run_together(env, list(cases.values())), strict=True))
    expected = {
        "missing": ("rejected", "image_missing"),
        "empty": ("rejected", "image_empty"),
        "not_an_image": ("rejected", "unsupported_format"),
        "truncated": ("rejected", "image_unreadable"),
        "bomb": ("rejected", "too_many_pixels"),
        "tiny": ("rejected", "dimensions_out_of_range"),
        "too_large": ("rejected", "image_too_large"),
        "checksum": ("rejected", "checksum_mismatch"),
        "expired": ("expired", "deadline_exceeded"),
        "counterfeit": ("counterfeit", None),
        "genuine": ("genuine", None),
        "review": ("review", "uncertain"),
    }
    assert {name: (v.decision, v.reason) for name, v in verdicts.items()} == expected
    judged = [verdicts[n] for n in ("counterfeit", "genuine", "review")]
    assert len({v.batch_id for v in judged}) == 1 and {v.batch_size for v in judged} == {3}
    for name, v in verdicts.items():
        assert v.scan_id == cases[name].scan_id and v.attempt == 1
        assert_published(env, v)
        if name not in ("counterfeit", "genuine", "review"):  # rejected before inference: no model outputs
            assert v.model is None and v.confidence is None and v.batch_id is None
    c = verdicts["counterfeit"]
    assert c.model.name == "twin" and c.input.width == 240 and c.input.height == 108
    assert c.signs_detected == ["watermark"] and c.denomination == "10"
    ts = c.timestamps
    assert ts.submitted <= ts.dequeued <= ts.inference_start <= ts.inference_end <= ts.completed


def test_redelivery_returns_the_stored_verdict_and_restores_a_missing_audit_record(env):
    msg = scan(env, jpeg(240))
    first = pipeline.process_scan(msg, env)
    env.objects.delete(audit_key(first))
    again = pipeline.process_scan(msg, env)
    assert again == first
    assert_published(env, first)
    assert int(env.verdicts.get_scan(msg.scan_id)["attempts"]) == 1  # a redelivery is not re-judged


def test_racing_deliveries_of_one_scan_publish_one_verdict(env):
    msg = scan(env, jpeg(240))
    a, b = run_together(env, [msg, msg])
    assert a == b
    assert_published(env, a)


def test_store_outage_propagates_as_transient_and_writes_nothing(env):
    msg = scan(env, jpeg(240))
    env.objects.down = True
    with pytest.raises(StorageUnavailable):
        pipeline.process_scan(msg, env)
    env.objects.down = False
    assert env.verdicts.get_verdict(msg.scan_id) is None
    retried = pipeline.process_scan(msg, env)  # the retry succeeds; the outage's delivery was refunded
    assert retried.decision == "counterfeit" and retried.attempt == 1


def test_an_outage_longer_than_the_poison_cap_spends_none_of_it(env):
    ctx = replace(env, policy=RetryPolicy(max_attempts=2))
    msg = scan(ctx, jpeg(240))
    ctx.objects.down = True
    for _ in range(10):  # ten deliveries, each ending in the outage
        with pytest.raises(StorageUnavailable):
            pipeline.process_scan(msg, ctx)
    state = ctx.verdicts.get_scan(msg.scan_id)
    assert state["attempts"] == "0" and state["transient_failures"] == "10" and state["transient_since"]
    ctx.objects.down = False
    v = pipeline.process_scan(msg, ctx)
    assert (v.decision, v.attempt) == ("counterfeit", 1)
    assert_published(ctx, v)


def test_an_outage_at_publish_refunds_too_and_the_redelivery_writes_the_audit_record(env):
    msg = scan(env, jpeg(240))

    class AuditDown(MemoryObjectStore):
        def put(self, *args, **kwargs):
            raise StorageUnavailable("S3 503 on the audit PUT")

    ctx = replace(env, objects=AuditDown(bucket="scans", objects=env.objects.objects))  # same bucket, PUTs fail
    with pytest.raises(StorageUnavailable):
        pipeline.process_scan(msg, ctx)
    assert env.verdicts.get_scan(msg.scan_id)["attempts"] == "0"
    v = pipeline.process_scan(msg, env)  # the verdict is in Redis already: only the audit record is written
    assert v.attempt == 1
    assert_published(env, v)


def test_a_refund_that_fails_leaves_the_attempt_counted_and_the_outage_still_propagates(env):
    msg = scan(env, jpeg(240))

    class RefundFails(VerdictStore):
        def refund_attempts(self, scan_ids, at):
            raise StoreUnavailable("Redis unavailable (ConnectionError)")

    ctx = replace(env, verdicts=RefundFails(env.verdicts.r, ttl_s=600))
    ctx.objects.down = True
    with pytest.raises(StorageUnavailable):  # the outage, not the refund's failure
        pipeline.process_scan(msg, ctx)
    assert env.verdicts.get_scan(msg.scan_id)["attempts"] == "1"  # best effort: counted


def test_a_scan_failing_for_its_own_reason_every_time_still_spends_its_attempts(env):
    ctx = replace(env, policy=RetryPolicy(max_attempts=2))
    msg = replace(scan(ctx, jpeg(240)), deadline="not a time")  # every delivery raises ValueError
    for n in (1, 2):
        with pytest.raises(ValueError):
            pipeline.process_scan(msg, ctx)
        assert ctx.verdicts.get_scan(msg.scan_id)["attempts"] == str(n)
    v = pipeline.process_scan(msg, ctx)  # the third delivery is past the cap: poison
    assert (v.decision, v.reason, v.attempt) == ("error", "internal_error", 3)


def test_an_inference_timeout_is_a_hang_and_spends_its_attempt(env):
    from workers.runtime.runner import InferenceTimeout

    class Stuck:
        model_ref, thresholds = env.runner.model_ref, env.runner.thresholds
        preprocess = staticmethod(env.runner.preprocess)
        expecting = staticmethod(env.runner.expecting)

        def submit(self, x):
            return Future()  # its batch never runs

        def result(self, future):
            raise InferenceTimeout("no forward pass within 60s")

    ctx = replace(env, runner=Stuck())
    msg = scan(ctx, jpeg(240))
    with pytest.raises(InferenceTimeout):
        pipeline.process_scan(msg, ctx)
    assert ctx.verdicts.get_scan(msg.scan_id)["attempts"] == "1"


def test_a_scan_delivered_too_often_is_rejected_as_poison_without_inference(env):
    ctx = replace(env, policy=RetryPolicy(max_attempts=2))
    msg = scan(ctx, jpeg(240))
    ctx.verdicts.start_scans([msg.scan_id])
    ctx.verdicts.start_scans([msg.scan_id])  # two deliveries died before publishing
    v = pipeline.process_scan(msg, ctx)
    assert (v.decision, v.reason, v.attempt) == ("error", "internal_error", 3)
    assert_published(ctx, v)


def test_fail_scan_and_bad_message_write_terminal_verdicts(env):
    msg = scan(env, jpeg(240))
    for _ in range(5):
        env.verdicts.start_scans([msg.scan_id])
    v = pipeline.fail_scan(msg, env, "RuntimeError after 5 attempts")
    assert (v.decision, v.reason, v.attempt) == ("error", "internal_error", 5)
    assert_published(env, v)

    other = scan(env, jpeg(240))
    bad = pipeline.reject_bad_message(other.scan_id, "scan message version 7 is not 1", env)
    assert (bad.decision, bad.reason, bad.tenant) == ("rejected", "bad_message", "acme")
    assert_published(env, bad)
    assert pipeline.reject_bad_message(schemas.new_scan_id(), "unknown scan", env) is None


# --- multi-scan messages: the same path, fanned out ------------------------------------------------------
@pytest.fixture()
def fanned(env):
    """`env` with fan-out threads, as a worker process has them (WorkerContext.load)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8, thread_name_prefix="test-fanout") as pool:
        yield replace(env, fanout=pool)


def test_process_scans_gives_each_scan_its_own_verdict_in_shared_batches(fanned):
    env = fanned
    msgs = [scan(env, jpeg(10 * i)) for i in range(5)] + [scan(env, b"not an image at all, just text")]
    out = pipeline.process_scans(msgs, env)
    assert [v.scan_id for v in out] == [m.scan_id for m in msgs]
    assert [v.decision for v in out[:5]] != ["rejected"] * 5 and out[5].decision == "rejected"
    assert len({v.batch_id for v in out[:5]}) == 1 and out[0].batch_size == 5  # one forward pass
    for v in out:  # Redis and the audit record hold the same JSON
        assert env.verdicts.get_verdict(v.scan_id) == v
        assert env.objects.get(audit_key(v)).data.decode() == v.encode()


def test_process_scans_redelivery_keeps_the_first_verdicts(fanned):
    env = fanned
    msgs = [scan(env, jpeg(40)), scan(env, jpeg(80))]
    first = pipeline.process_scans(msgs, env)
    env.objects.delete(audit_key(first[0]))  # lost before the ack
    again = pipeline.process_scans(msgs, env)
    assert again == first
    assert env.objects.exists(audit_key(first[0]))
    assert env.verdicts.get_scan(msgs[0].scan_id)["attempts"] == "1"  # no second inference


def test_process_scans_returns_a_transient_failure_in_its_own_slot(fanned):
    env = fanned
    good = scan(env, jpeg(20))
    env.objects.down = True
    out = pipeline.process_scans([good, scan(env, None)], env)
    env.objects.down = False
    assert all(isinstance(o, StorageUnavailable) for o in out)
    assert env.verdicts.get_verdict(good.scan_id) is None  # nothing stored: the message is retried
    state = env.verdicts.get_scan(good.scan_id)
    assert state["attempts"] == "0" and state["transient_failures"] == "1"  # the outage was refunded


def test_a_failed_audit_write_is_the_outcome_of_its_own_chunk_only(fanned):
    """Verdicts are stored for all; the scans whose audit PUT failed are retried (and refunded), the rest done."""
    import threading

    class FirstAuditPutFails(MemoryObjectStore):
        refused = threading.Event()

        def put(self, key, data, content_type="application/octet-stream", metadata=None):
            with self._lock:
                refuse = key.startswith("verdicts/") and not self.refused.is_set()
                if refuse:
                    self.refused.set()
            if refuse:
                raise StorageUnavailable("S3 PUT refused")
            super().put(key, data, content_type, metadata)

    store = FirstAuditPutFails(bucket="scans", objects=fanned.objects.objects)
    env = replace(fanned, objects=store)
    msgs = [scan(env, jpeg(30 + i)) for i in range(AUDIT_CHUNK + 1)]
    out = pipeline.process_scans(msgs, env)
    failed = [i for i, o in enumerate(out) if isinstance(o, StorageUnavailable)]
    assert failed in (list(range(AUDIT_CHUNK)), [AUDIT_CHUNK])  # one chunk
    assert all(isinstance(out[i], Verdict) for i in range(len(msgs)) if i not in failed)
    assert all(env.verdicts.get_verdict(m.scan_id) is not None for m in msgs)  # every verdict is stored
    assert {env.verdicts.get_scan(msgs[i].scan_id)["attempts"] for i in failed} == {"0"}  # refunded
    again = pipeline.process_scans([msgs[i] for i in failed], env)  # the redelivery writes the records
    assert all(env.objects.exists(audit_key(v)) for v in again)


def test_a_message_of_one_runs_in_its_own_thread_start_to_end(env):
    """No fan-out hop for one scan: the single-scan task's thread fetches, decodes, publishes."""
    from concurrent.futures import Executor

    class Refuses(Executor):
        def submit(self, fn, /, *args, **kwargs):
            raise AssertionError("a message of one must not use the fan-out threads")

    ctx = replace(env, fanout=Refuses())
    v = pipeline.process_scan(scan(ctx, jpeg(200)), ctx)
    assert v.decision in ("genuine", "counterfeit", "review") and ctx.objects.exists(audit_key(v))


def direct_upload(ctx, data: bytes, content_type: str = "image/jpeg", *, sha256: str | None = None,
                  size: int | None = None) -> ScanMessage:
    """What a scan by reference looks like: the device's bytes at an uploads/ key, the message from the
    edge's HEAD and the device's declared checksum (producer/uploads.py)."""
    upload_id = schemas.new_scan_id()
    key = keys.upload_s3_key("acme", upload_id)
    ctx.objects.put(key, data, content_type)
    msg = ScanMessage(scan_id=schemas.new_scan_id(), tenant="acme", store_id="s1", terminal_id="t1", image_key=key,
                      sha256=sha256 or hashlib.sha256(data).hexdigest(), bytes=len(data) if size is None else size,
                      submitted_at=clock.utcnow())
    ctx.verdicts.create_scan(msg)
    return msg


def test_the_worker_rechecks_what_a_direct_upload_left_in_s3(env):
    good = jpeg(10)
    png = io.BytesIO()
    Image.new("RGB", (240, 108), (10, 120, 60)).save(png, "PNG")
    cases = {
        "good": direct_upload(env, good),
        "good_png": direct_upload(env, png.getvalue(), "image/png"),
        "size": direct_upload(env, good, size=len(good) - 1),  # the object changed after the HEAD
        "checksum": direct_upload(env, good, sha256=hashlib.sha256(b"what the device said").hexdigest()),
        "type": direct_upload(env, png.getvalue(), "image/jpeg"),  # PNG bytes stored as image/jpeg
        "not_an_image": direct_upload(env, b"MZ\x90\x00 an executable" * 4, "image/jpeg"),
    }
    verdicts = dict(zip(cases, run_together(env, list(cases.values())), strict=True))
    assert {name: (v.decision, v.reason) for name, v in verdicts.items()} == {
        "good": ("genuine", None), "good_png": ("genuine", None),
        "size": ("rejected", "size_mismatch"), "checksum": ("rejected", "checksum_mismatch"),
        "type": ("rejected", "type_mismatch"), "not_an_image": ("rejected", "unsupported_format")}
    for v in verdicts.values():
        assert_published(env, v)


def test_published_audit_records_carry_the_contexts_signature(env):
    from workers.audit.manifests import check_record
    from workers.audit.signing import Signer, Verifier

    signer = Signer("11" * 32)
    ctx = replace(env, signer=signer)
    for v in (pipeline.process_scan(scan(ctx, jpeg(240)), ctx), pipeline.process_scan(scan(ctx, b""), ctx)):
        obj = ctx.objects.get(audit_key(v))  # a judged scan and a rejected one alike
        assert check_record(Verifier([signer.public_hex]), audit_key(v), obj.data, obj.metadata) is None


def test_a_published_verdict_a_person_must_see_is_queued_for_review_and_a_redelivery_queues_it_too(env):
    from workers.core.review_queue import ReviewQueue, source_of

    reviews = ReviewQueue(env.verdicts.r, qc_rate=1.0)  # every auto-decided scan is in the QC sample
    first_msg, second_msg = scan(env, jpeg(240)), scan(env, jpeg(20))
    first = pipeline.process_scan(first_msg, dataclasses.replace(env, reviews=reviews))
    due = source_of(first, 1.0) is not None
    assert due, first.decision  # the twin model decides this scan genuine or counterfeit
    assert [p.scan_id for p in reviews.pending(["acme"])] == ([first.scan_id] if due else [])
    second = pipeline.process_scan(second_msg, env)  # published by a worker without a review queue
    assert all(p.scan_id != second.scan_id for p in reviews.pending(["acme"]))
    assert pipeline.process_scan(second_msg, dataclasses.replace(env, reviews=reviews)) == second  # redelivered
    assert (second.scan_id in {p.scan_id for p in reviews.pending(["acme"])}) == (source_of(second, 1.0) is not None)
