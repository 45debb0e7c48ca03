"""POST /v1/scans and producer.submit: what is stored, what is enqueued, what is refused.

The app runs with an in-memory S3 (MemoryObjectStore) and a list Enqueuer, on the real Redis.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import struct
import zlib
from datetime import timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from producer.app import Deps, create_app
from producer.errors import ApiError
from producer.submit import Submitter, Upload
from workers.core import clock, keys, schemas
from workers.core.errors import RejectedScan, TransientError
from workers.core.imaging import Limits
from workers.core.schemas import MultiScanMessage, ScanMessage
from workers.core.settings import Settings

KEY = "key-acme"
AUTH = {"Authorization": f"Bearer {KEY}"}
IDS = {"store_id": "store-1", "terminal_id": "pos-7"}


def image(fmt: str = "JPEG", size: tuple[int, int] = (96, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (30, 120, 60)).save(buf, fmt)
    return buf.getvalue()


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A tiny PNG declaring width x height 1-bit pixels: the classic decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compress(b"\x00" * (width // 8 + 1) * 64, 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


@pytest.fixture()
def settings(clean_redis) -> Settings:
    return Settings().with_(redis_url=clean_redis, max_body_bytes=200_000,
                            api_keys={hashlib.sha256(KEY.encode()).hexdigest(): "acme"})


def post(api, data: bytes, content_type: str = "image/jpeg", params=IDS, **headers):
    return api.post("/v1/scans", params=params, content=data,
                    headers={**AUTH, "Content-Type": content_type, **headers})


# --- accepted --------------------------------------------------------------------------------------
def test_accepted_scan_is_stored_recorded_and_enqueued_as_a_reference(api, deps):
    data = image()
    resp = post(api, data)

    assert resp.status_code == 202
    body = resp.json()
    scan_id = body["scan_id"]
    assert schemas.is_scan_id(scan_id)
    assert body == {"scan_id": scan_id, "status": "queued", "poll_url": f"/v1/scans/{scan_id}"}
    assert resp.headers["Location"] == body["poll_url"]

    [sent] = deps.enqueuer.sent
    msg = ScanMessage.decode(sent)
    sha = hashlib.sha256(data).hexdigest()
    assert (msg.scan_id, msg.tenant, msg.store_id, msg.terminal_id) == (scan_id, "acme", "store-1", "pos-7")
    assert msg.sha256 == sha and msg.bytes == len(data)
    assert msg.image_key == keys.image_s3_key("acme", scan_id, msg.submitted_at, "JPEG")
    assert all(not isinstance(v, bytes) and len(str(v)) < 200 for v in sent.values())  # a reference, not bytes

    stored = deps.objects.get(msg.image_key)
    assert stored.data == data and stored.content_type == "image/jpeg"
    assert stored.metadata == {"sha256": sha, "tenant": "acme", "store_id": "store-1", "terminal_id": "pos-7",
                               "submitted_at": msg.submitted_at}
    scan = deps.verdicts.get_scan(scan_id)
    assert scan["status"] == "queued" and scan["tenant"] == "acme" and scan["image_key"] == msg.image_key


def test_multipart_upload_with_form_fields(api, deps):
    resp = api.post("/v1/scans", headers=AUTH, files={"image": ("bill.png", image("PNG"), "image/png")},
                    data={"store_id": "s-2", "terminal_id": "t-2"})
    assert resp.status_code == 202, resp.text
    [sent] = deps.enqueuer.sent
    assert (sent["store_id"], sent["terminal_id"]) == ("s-2", "t-2")
    assert sent["image_key"].endswith(".png")


def test_format_is_judged_by_content_not_by_the_declared_type(api, deps):
    resp = post(api, image("PNG"), content_type="image/jpeg")
    assert resp.status_code == 202
    [sent] = deps.enqueuer.sent
    assert sent["image_key"].endswith(".png")
    assert deps.objects.get(sent["image_key"]).content_type == "image/png"


# --- idempotency -----------------------------------------------------------------------------------
def test_same_key_same_body_replays_the_scan_without_a_second_task(api, deps):
    data = image()
    first = post(api, data, **{"Idempotency-Key": "order-1"})
    again = post(api, data, **{"Idempotency-Key": "order-1"})
    assert first.status_code == again.status_code == 202
    assert again.json()["scan_id"] == first.json()["scan_id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(deps.enqueuer.sent) == 1
    assert len(list(deps.objects.list("scans/"))) == 2  # one image and its intent, once


def test_same_key_different_body_is_refused(api, deps):
    assert post(api, image(size=(96, 64)), **{"Idempotency-Key": "order-2"}).status_code == 202
    resp = post(api, image(size=(64, 96)), **{"Idempotency-Key": "order-2"})
    assert resp.status_code == 422
    assert resp.json()["error"]["reason"] == "idempotency_key_reused"
    assert len(deps.enqueuer.sent) == 1


def test_no_key_means_two_scans(api, deps):
    data = image()
    assert post(api, data).json()["scan_id"] != post(api, data).json()["scan_id"]
    assert len(deps.enqueuer.sent) == 2


# --- refused input ---------------------------------------------------------------------------------
def _jpeg_cut_in_header() -> bytes:
    return image()[:300]


@pytest.mark.parametrize(("data", "content_type", "status", "reason"), [
    (b"", "image/jpeg", 422, "image_empty"),
    (b"hello, I am a text file\n" * 10, "image/jpeg", 415, "unsupported_format"),
    (_jpeg_cut_in_header(), "image/jpeg", 422, "image_unreadable"),
    (png_bomb(), "image/png", 422, "too_many_pixels"),
    (image(size=(8, 8)), "image/jpeg", 422, "dimensions_out_of_range"),
    (image(), "text/plain", 415, "unsupported_format"),
    (image(), "application/xml", 415, "unsupported_format"),
    (image(), "application/json", 400, "bad_request"),  # JSON is a scan by reference; an image is not JSON
    (image("GIF"), "image/png", 415, "unsupported_format"),
])
def test_bad_input_is_refused_with_its_reason(api, deps, data, content_type, status, reason):
    resp = post(api, data, content_type=content_type)
    assert resp.status_code == status
    assert resp.json() == {"error": {"status": status, "reason": reason, "detail": resp.json()["error"]["detail"]}}
    assert deps.enqueuer.sent == [] and deps.objects.objects == {}


def test_a_jpeg_cut_after_its_header_passes_the_edge(api, deps):
    # The edge reads headers only (docs/ARCHITECTURE.md "The edge never decodes pixels");
    # the worker's full decode turns this into a `rejected` verdict with reason image_unreadable.
    buf = io.BytesIO()
    Image.effect_noise((200, 150), 60).convert("RGB").save(buf, "JPEG")  # header ~600 B, body ~15 kB
    data = buf.getvalue()
    assert post(api, data[: len(data) // 2]).status_code == 202


def test_oversized_body_is_refused_by_content_length_before_reading(api, deps):
    resp = post(api, b"\xff\xd8\xff" + b"\0" * 200_001)
    assert resp.status_code == 413
    assert resp.json()["error"]["reason"] == "image_too_large"
    assert deps.enqueuer.sent == []


def test_oversized_chunked_body_is_refused_while_reading(settings, deps):
    """No Content-Length: the read itself stops at the limit (httpx's ASGITransport streams lazily)."""
    pulled = []

    async def body():
        for _ in range(1000):  # 64 MB if it were all read
            pulled.append(1)
            yield b"\0" * 65536

    async def go():
        app = create_app(settings, deps)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return await client.post("/v1/scans", params=IDS, content=body(),
                                         headers={**AUTH, "Content-Type": "image/jpeg"})

    resp = asyncio.run(go())
    assert resp.status_code == 413
    assert resp.json()["error"]["reason"] == "image_too_large"
    assert len(pulled) <= 200_000 // 65536 + 2


def test_oversized_multipart_is_refused(api):
    resp = api.post("/v1/scans", headers=AUTH, data=IDS,
                    files={"image": ("big.jpg", b"\xff\xd8\xff" + b"\0" * 250_000, "image/jpeg")})
    assert resp.status_code == 413


def test_multipart_without_image_field_is_a_bad_request(api):
    resp = api.post("/v1/scans", headers=AUTH, data=IDS, files={"photo": ("a.jpg", image(), "image/jpeg")})
    assert resp.status_code == 400
    assert resp.json()["error"]["reason"] == "bad_request"


@pytest.mark.parametrize("params", [
    {"terminal_id": "pos-7"},
    {"store_id": "", "terminal_id": "pos-7"},
    {"store_id": "../../etc", "terminal_id": "pos-7"},
    {"store_id": "s1", "terminal_id": "x" * 65},
])
def test_bad_store_or_terminal_id_is_a_bad_request(api, deps, params):
    resp = post(api, image(), params=params)
    assert resp.status_code == 400
    assert resp.json()["error"]["reason"] == "bad_request"
    assert deps.enqueuer.sent == []


def test_bad_idempotency_key_is_a_bad_request(api):
    assert post(api, image(), **{"Idempotency-Key": "no spaces please"}).status_code == 400


# --- infrastructure down -----------------------------------------------------------------------------
def test_s3_down_is_503_with_retry_after_and_the_retry_works(api, deps):
    data = image()
    deps.objects.down = True
    resp = post(api, data, **{"Idempotency-Key": "order-3"})
    assert resp.status_code == 503
    assert int(resp.headers["Retry-After"]) >= 1
    assert resp.json()["error"]["reason"] == "unavailable"
    assert deps.enqueuer.sent == []

    deps.objects.down = False  # the claim was released: the retry is a fresh attempt, not a replay
    retry = post(api, data, **{"Idempotency-Key": "order-3"})
    assert retry.status_code == 202
    assert "Idempotent-Replayed" not in retry.headers
    assert len(deps.enqueuer.sent) == 1


def test_broker_down_is_503_and_releases_the_claim(api, deps):
    deps.enqueuer.down = True
    assert post(api, image(), **{"Idempotency-Key": "order-4"}).status_code == 503
    assert deps.verdicts.r.get(keys.idempotency_key("acme", "order-4")) is None


def test_redis_down_is_503(settings):
    deps = Deps.with_twins(settings.with_(redis_url="redis://127.0.0.1:1/0"))
    with TestClient(create_app(settings, deps)) as client:
        resp = post(client, image())
    assert resp.status_code == 503
    assert resp.headers["Retry-After"]


# --- Submitter directly ----------------------------------------------------------------------------
def test_submitter_replay_while_the_first_is_in_flight_asks_to_retry(deps):
    sub = Submitter(deps.objects, deps.verdicts, deps.enqueuer, Limits(), 60)
    data = image()
    # a fresh claim without an intent in S3: the first request is still between claim and intent
    deps.verdicts.claim_idempotency("acme", "k1", schemas.new_scan_id(), hashlib.sha256(data).hexdigest(),
                                    clock.utcnow(), 60)
    with pytest.raises(ApiError) as info:
        sub.accept(Upload("acme", "s", "t", data, idempotency_key="k1"))
    assert info.value.status == 503 and info.value.headers["Retry-After"] == "1"
    assert deps.enqueuer.sent == []


def test_an_abandoned_claim_without_intent_is_taken_over_not_replayed(deps):
    """Redis kept a claim (and even a queued state) of an attempt that failed before its intent was
    durable, e.g. Redis restarted from its AOF mid-request: a retry must not be answered with that
    never-queued scan (the chaos suite's redis_restart_aof found this), but accepted afresh."""
    sub = Submitter(deps.objects, deps.verdicts, deps.enqueuer, Limits(), 60)
    data = image()
    ghost = schemas.new_scan_id()
    old = clock.format_time(clock.parse_time(clock.utcnow()) - timedelta(seconds=60))
    deps.verdicts.claim_idempotency("acme", "k1", ghost, hashlib.sha256(data).hexdigest(), old, 60)
    deps.verdicts.create_scan(ScanMessage(ghost, "acme", "s", "t", "scans/x.jpg", "0" * 64, 1, old))
    accepted = sub.accept(Upload("acme", "s", "t", data, idempotency_key="k1"))
    assert accepted.scan_id != ghost and not accepted.replayed
    assert [m["scan_id"] for m in deps.enqueuer.sent] == [accepted.scan_id]
    assert deps.verdicts.get_scan(ghost) is None
    again = sub.accept(Upload("acme", "s", "t", data, idempotency_key="k1"))
    assert again.replayed and again.scan_id == accepted.scan_id and len(deps.enqueuer.sent) == 1


def test_a_replay_restores_the_state_redis_lost_from_the_intent(deps):
    sub = Submitter(deps.objects, deps.verdicts, deps.enqueuer, Limits(), 60)
    data = image()
    first = sub.accept(Upload("acme", "s", "t", data, idempotency_key="k2"))
    deps.verdicts.forget_scan(first.scan_id)  # Redis lost the state, kept the claim
    again = sub.accept(Upload("acme", "s", "t", data, idempotency_key="k2"))
    assert again.replayed and again.scan_id == first.scan_id
    assert deps.verdicts.get_scan(first.scan_id)["status"] == "queued"


def test_submitter_raises_rejections_and_transient_errors_as_such(deps):
    sub = Submitter(deps.objects, deps.verdicts, deps.enqueuer, Limits(), 60)
    with pytest.raises(RejectedScan):
        sub.accept(Upload("acme", "s", "t", b""))
    deps.objects.down = True
    with pytest.raises(TransientError):
        sub.accept(Upload("acme", "s", "t", image()))


def test_an_accepted_scan_leaves_its_intent_in_s3(api, deps):
    resp = post(api, image())
    scan_id = resp.json()["scan_id"]
    intents = [k for k in deps.objects.list("scans/") if k.endswith(".json")]
    assert len(intents) == 1 and scan_id in intents[0]
    msg = ScanMessage.decode(deps.objects.get(intents[0]).data)
    assert msg.encode() == deps.enqueuer.sent[0]


def test_a_scan_that_could_not_be_queued_withdraws_its_intent(api, deps):
    deps.enqueuer.down = True
    resp = post(api, image())
    assert resp.status_code == 503
    assert not [k for k in deps.objects.list("scans/") if k.endswith(".json")]


def test_a_deadline_travels_in_the_message(api, deps):
    resp = post(api, image(), params={**IDS, "deadline_s": "2.5"})
    assert resp.status_code == 202
    msg = ScanMessage.decode(deps.enqueuer.sent[0])
    waited = clock.parse_time(msg.deadline) - clock.parse_time(msg.submitted_at)
    assert waited.total_seconds() == 2.5


@pytest.mark.parametrize("bad", ["0", "-1", "nan", "100000"])
def test_a_bad_deadline_is_a_400(api, deps, bad):
    resp = post(api, image(), params={**IDS, "deadline_s": bad})
    assert resp.status_code == 400 and not deps.enqueuer.sent


# --- POST /v1/scans:batch (bulk) ---------------------------------------------------------------------
def post_batch(api, images: list[bytes], params=IDS, **headers):
    files = [("image", (f"b{i}.jpg", data, "image/jpeg")) for i, data in enumerate(images)]
    return api.post("/v1/scans:batch", params=params, files=files, headers={**AUTH, **headers})


def test_batch_gives_each_image_its_own_outcome_and_one_message(api, deps):
    resp = post_batch(api, [image(), b"plain text, not an image", image("PNG")])
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["accepted"], body["refused"]) == (2, 1)
    ok0, bad, ok2 = body["items"]
    assert ok0["status"] == ok2["status"] == 202 and ok0["poll_url"] == f"/v1/scans/{ok0['scan_id']}"
    assert (bad["index"], bad["status"], bad["error"]["reason"]) == (1, 415, "unsupported_format")
    [sent] = deps.enqueuer.sent  # one process_scans message carrying both accepted scans
    scans, errors = MultiScanMessage.decode_parts(sent)
    assert [m.scan_id for m in scans] == [ok0["scan_id"], ok2["scan_id"]] and not errors
    assert deps.verdicts.get_scan(ok2["scan_id"])["status"] == "queued"


def test_accept_many_chunks_scans_per_message(deps):
    submitter = Submitter(deps.objects, deps.verdicts, deps.enqueuer, Limits(), 600, scans_per_message=2)
    uploads = [Upload("acme", "s1", "t1", image(size=(96 + i, 64))) for i in range(3)]
    out = submitter.accept_many(uploads)
    assert all(o.status == "queued" for o in out)
    multi, single = deps.enqueuer.sent
    assert len(multi["scans"]) == 2 and single["scan_id"] == out[2].scan_id


def test_batch_broker_down_is_503_per_item_and_withdraws(api, deps):
    deps.enqueuer.down = True
    body = post_batch(api, [image(), image("PNG")], **{"Idempotency-Key": "bulk-1"}).json()
    assert body["accepted"] == 0 and [i["status"] for i in body["items"]] == [503, 503]
    assert not any(k.endswith(".json") for k in deps.objects.list("scans/"))  # intents withdrawn
    deps.enqueuer.down = False
    retry = post_batch(api, [image(), image("PNG")], **{"Idempotency-Key": "bulk-1"}).json()
    assert retry["accepted"] == 2 and not any(i["replayed"] for i in retry["items"])  # claims were released


def test_batch_idempotency_key_replays_every_item(api, deps):
    first = post_batch(api, [image(), image("PNG")], **{"Idempotency-Key": "bulk-2"}).json()
    again = post_batch(api, [image(), image("PNG")], **{"Idempotency-Key": "bulk-2"}).json()
    assert [i["scan_id"] for i in again["items"]] == [i["scan_id"] for i in first["items"]]
    assert all(i["replayed"] for i in again["items"]) and len(deps.enqueuer.sent) == 1


@pytest.mark.parametrize("kind", ["raw", "no_images", "too_long_key"])
def test_batch_bad_requests(api, kind):
    if kind == "raw":
        resp = api.post("/v1/scans:batch", content=image(), params=IDS,
                        headers={**AUTH, "Content-Type": "image/jpeg"})
        assert resp.status_code == 415
    elif kind == "no_images":
        resp = api.post("/v1/scans:batch", params=IDS, data={"store_id": "s"}, headers=AUTH,
                        files=[("other", ("x", b"x", "text/plain"))])
        assert resp.status_code == 400
    else:
        assert post_batch(api, [image()], **{"Idempotency-Key": "k" * 57}).status_code == 400
