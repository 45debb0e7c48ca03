"""GET /v1/scans/{id} and producer.poll: state, verdict, and long-polls that wake on the verdict."""

from __future__ import annotations

import asyncio
import hashlib
import io
import threading
import time
import uuid

import pytest
import redis.asyncio
from fastapi.testclient import TestClient
from PIL import Image

from producer.app import Deps, create_app
from producer.errors import ApiError
from producer.poll import DoneListener, scan_view, wait_for_scan
from workers.core import clock, keys
from workers.core.schemas import InputRef, ScanMessage, Timestamps, Verdict
from workers.core.settings import Settings

KEY = "key-acme"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture()
def settings(clean_redis) -> Settings:
    return Settings().with_(redis_url=clean_redis, api_keys={hashlib.sha256(KEY.encode()).hexdigest(): "acme"})


def submit(api) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 20, 30)).save(buf, "PNG")
    resp = api.post("/v1/scans", params={"store_id": "s1", "terminal_id": "t1"}, content=buf.getvalue(),
                    headers={**AUTH, "Content-Type": "image/png"})
    assert resp.status_code == 202
    return resp.json()["scan_id"]


def verdict_for(msg: dict, decision: str = "genuine") -> Verdict:
    m = ScanMessage.decode(msg)
    return Verdict(scan_id=m.scan_id, tenant=m.tenant, store_id=m.store_id, terminal_id=m.terminal_id,
                   decision=decision, input=InputRef(m.image_key, m.sha256, m.bytes, 64, 64),
                   timestamps=Timestamps(submitted=m.submitted_at, completed=clock.utcnow()),
                   confidence=0.97, p_counterfeit=0.03)


def save_later(deps: Deps, verdict: Verdict, delay_s: float) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(delay_s), deps.verdicts.save_verdict(verdict)))
    thread.start()
    return thread


def test_a_queued_scan_reads_queued_without_verdict(api):
    scan_id = submit(api)
    body = api.get(f"/v1/scans/{scan_id}", headers=AUTH).json()
    assert body["scan_id"] == scan_id and body["status"] == "queued" and "verdict" not in body


def test_a_done_scan_carries_its_verdict(api, deps):
    scan_id = submit(api)
    deps.verdicts.save_verdict(verdict_for(deps.enqueuer.sent[0], "counterfeit"))
    body = api.get(f"/v1/scans/{scan_id}", headers=AUTH).json()
    assert body["status"] == "done"
    assert body["verdict"]["decision"] == "counterfeit" and body["verdict"]["scan_id"] == scan_id
    assert Verdict.decode(body["verdict"]).confidence == 0.97


def test_processing_shows_as_processing(api, deps):
    scan_id = submit(api)
    deps.verdicts.start_scans([scan_id])
    assert api.get(f"/v1/scans/{scan_id}", headers=AUTH).json()["status"] == "processing"


def test_long_poll_returns_as_soon_as_the_verdict_lands(api, deps):
    scan_id = submit(api)
    thread = save_later(deps, verdict_for(deps.enqueuer.sent[0]), 0.3)
    start = time.monotonic()
    body = api.get(f"/v1/scans/{scan_id}", params={"wait": 10}, headers=AUTH).json()
    elapsed = time.monotonic() - start
    thread.join()
    assert body["status"] == "done" and body["verdict"]["decision"] == "genuine"
    assert 0.25 <= elapsed < 2.0, elapsed


def test_long_poll_without_verdict_answers_at_its_deadline(api):
    scan_id = submit(api)
    start = time.monotonic()
    body = api.get(f"/v1/scans/{scan_id}", params={"wait": 0.5}, headers=AUTH).json()
    assert body["status"] == "queued"
    assert 0.45 <= time.monotonic() - start < 2.0


def test_long_poll_on_a_done_scan_answers_at_once(api, deps):
    scan_id = submit(api)
    deps.verdicts.save_verdict(verdict_for(deps.enqueuer.sent[0]))
    start = time.monotonic()
    assert api.get(f"/v1/scans/{scan_id}", params={"wait": 20}, headers=AUTH).json()["status"] == "done"
    assert time.monotonic() - start < 1.0


@pytest.mark.parametrize("wait", ["-1", "abc", "nan", "inf"])
def test_bad_wait_is_a_bad_request(api, wait):
    resp = api.get(f"/v1/scans/{'0' * 32}", params={"wait": wait}, headers=AUTH)
    assert resp.status_code == 400
    assert resp.json()["error"]["reason"] == "bad_request"


@pytest.mark.parametrize("scan_id", ["0" * 32, "not-a-scan-id", "A" * 32, "0" * 33])
def test_unknown_or_malformed_ids_are_the_same_404(api, scan_id):
    resp = api.get(f"/v1/scans/{scan_id}", headers=AUTH)
    assert resp.status_code == 404
    assert resp.json() == {"error": {"status": 404, "reason": "not_found", "detail": "no such scan"}}


# --- the listener and wait_for_scan, without HTTP ----------------------------------------------------
async def _listener(settings, name: str | None = None) -> DoneListener:
    # a client of this event loop's own (the app's client belongs to the TestClient's loop)
    listener = DoneListener(redis.asyncio.Redis.from_url(settings.redis_url, client_name=name))
    await listener.start()
    return listener


def test_waiters_wake_together_and_unregister(settings, deps, api):
    scan_id = submit(api)
    verdict = verdict_for(deps.enqueuer.sent[0])

    async def go():
        listener = await _listener(settings)
        try:
            waits = [asyncio.create_task(wait_for_scan(deps.verdicts, listener, "acme", scan_id, 10))
                     for _ in range(3)]
            await asyncio.sleep(0.2)
            assert listener.waiting() == 3
            start = time.monotonic()
            await asyncio.to_thread(deps.verdicts.save_verdict, verdict)
            views = await asyncio.gather(*waits)
            return views, time.monotonic() - start, listener.waiting()
        finally:
            await listener.stop()
            await listener.r.aclose()

    views, elapsed, left = asyncio.run(go())
    assert [v["status"] for v in views] == ["done"] * 3
    assert elapsed < 1.0 and left == 0


def test_the_listener_reconnects_after_its_connection_is_killed(settings, deps, api):
    scan_id = submit(api)
    verdict = verdict_for(deps.enqueuer.sent[0])
    name = f"ts-test-listener-{uuid.uuid4().hex[:8]}"

    async def go():
        listener = await _listener(settings, name)
        try:
            killed = [c["id"] for c in deps.verdicts.r.client_list() if c.get("name") == name]
            assert killed
            for client_id in killed:  # only our own connection, never other tests' subscribers
                deps.verdicts.r.client_kill_filter(_id=client_id)
            await asyncio.sleep(0.5)  # the listener notices, backs off, re-subscribes
            assert listener.connected and listener.subscriptions == 2
            wait = asyncio.create_task(wait_for_scan(deps.verdicts, listener, "acme", scan_id, 10))
            await asyncio.sleep(0.1)
            start = time.monotonic()
            await asyncio.to_thread(deps.verdicts.save_verdict, verdict)
            view = await wait
            return view, time.monotonic() - start
        finally:
            await listener.stop()
            await listener.r.aclose()

    view, elapsed = asyncio.run(go())
    assert view["status"] == "done" and elapsed < 0.5


def test_a_disconnected_listener_falls_back_to_rereading(deps, api):
    """No pub/sub (listener never started): waiters still see the verdict within ~1 s, not at the deadline."""
    scan_id = submit(api)
    thread = save_later(deps, verdict_for(deps.enqueuer.sent[0]), 0.2)

    async def go():
        listener = DoneListener(deps.aredis)  # not started: connected is False
        start = time.monotonic()
        view = await wait_for_scan(deps.verdicts, listener, "acme", scan_id, 10)
        return view, time.monotonic() - start

    view, elapsed = asyncio.run(go())
    thread.join()
    assert view["status"] == "done" and elapsed < 2.0


def test_scan_view_hides_other_tenants(deps, api):
    scan_id = submit(api)
    assert scan_view(deps.verdicts, "acme", scan_id)["status"] == "queued"
    with pytest.raises(ApiError) as info:
        scan_view(deps.verdicts, "globex", scan_id)
    assert info.value.status == 404


def test_redis_down_reads_are_503_and_the_app_still_starts(settings):
    deps = Deps.with_twins(settings.with_(redis_url="redis://127.0.0.1:1/0"))
    start = time.monotonic()
    with TestClient(create_app(settings, deps)) as client:
        resp = client.get(f"/v1/scans/{'0' * 32}", params={"wait": 5}, headers=AUTH)
    assert resp.status_code == 503 and resp.headers["Retry-After"]
    assert time.monotonic() - start < 2.0  # neither the start nor the poll waited on the dead Redis


# --- S3 answers when Redis lost the scan ----------------------------------------------------------
def test_a_scan_redis_forgot_is_answered_from_its_s3_intent_then_its_audit_record(api, deps):
    scan_id = submit(api)
    deps.verdicts.r.flushdb()  # Redis restarted without persistence
    resp = api.get(f"/v1/scans/{scan_id}", headers=AUTH)
    assert resp.status_code == 200 and resp.json()["status"] == "queued"
    verdict = verdict_for(deps.enqueuer.sent[0], "counterfeit")
    key = keys.verdict_s3_key("acme", scan_id, verdict.timestamps.submitted)
    deps.objects.put(key, verdict.encode().encode())
    body = api.get(f"/v1/scans/{scan_id}", headers=AUTH).json()
    assert body["status"] == "done" and body["verdict"]["decision"] == "counterfeit"


def test_the_s3_fallback_never_crosses_tenants(api, deps, settings):
    scan_id = submit(api)
    deps.verdicts.r.flushdb()
    with pytest.raises(ApiError) as info:
        scan_view(deps.verdicts, "globex", scan_id, deps.objects)
    assert info.value.status == 404
