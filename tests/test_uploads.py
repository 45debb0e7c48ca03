"""producer/uploads.py: POST /v1/uploads grants, and POST /v1/scans by reference.

In-memory S3 (MemoryObjectStore: grants are recorded, uploads are put by the test) and the list
Enqueuer, on the real Redis. The S3 side of a presigned POST is tested against SeaweedFS in
tests/integration/test_direct_upload.py.
"""

from __future__ import annotations

import hashlib
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image

from producer.uploads import claim_key
from workers.core import keys, schemas
from workers.core.schemas import ScanMessage
from workers.core.settings import Settings

KEYS = {"acme": "key-acme", "globex": "key-globex"}
CAP = 200_000


def auth(tenant: str = "acme") -> dict:
    return {"Authorization": f"Bearer {KEYS[tenant]}"}


def jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (96, 64), (30, 120, 60)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture()
def settings(clean_redis) -> Settings:
    return Settings().with_(redis_url=clean_redis, max_body_bytes=CAP, upload_expiry_s=120,
                            api_keys={hashlib.sha256(k.encode()).hexdigest(): t for t, k in KEYS.items()})


def granted(api, tenant: str = "acme", **body) -> dict:
    resp = api.post("/v1/uploads", json={"content_type": "image/jpeg", **body}, headers=auth(tenant))
    assert resp.status_code == 201, resp.text
    return resp.json()


def uploaded(deps, api, data: bytes, content_type: str = "image/jpeg", tenant: str = "acme") -> tuple[str, str]:
    """A grant, then what the device's POST would leave in S3: (upload_id, sha256)."""
    upload_id = granted(api, tenant)["upload_id"]
    deps.objects.put(keys.upload_s3_key(tenant, upload_id), data, content_type)
    return upload_id, hashlib.sha256(data).hexdigest()


def by_reference(api, upload_id: str, sha256: str, tenant: str = "acme", **extra):
    body = {"upload_id": upload_id, "sha256": sha256, "store_id": "store-1", "terminal_id": "pos-7", **extra}
    return api.post("/v1/scans", json=body, headers=auth(tenant))


# --- the grant ------------------------------------------------------------------------------------
def test_a_grant_is_for_one_server_chosen_key_under_the_tenants_prefix(api, deps):
    grant = granted(api)
    assert schemas.is_scan_id(grant["upload_id"])
    key = keys.upload_s3_key("acme", grant["upload_id"])
    assert key.startswith("uploads/tenant=acme/")
    assert deps.objects.grants[key] == {"content_type": "image/jpeg", "min_bytes": 1, "max_bytes": CAP,
                                        "expires_s": 120}
    assert grant["fields"]["key"] == key and grant["max_bytes"] == CAP and grant["expires_at"].endswith("Z")
    assert granted(api)["upload_id"] != grant["upload_id"]


def test_a_declared_size_pins_the_length_range(api, deps):
    grant = granted(api, bytes=12345, content_type="image/png")
    rule = deps.objects.grants[keys.upload_s3_key("acme", grant["upload_id"])]
    assert (rule["content_type"], rule["min_bytes"], rule["max_bytes"]) == ("image/png", 12345, 12345)


@pytest.mark.parametrize(("body", "status", "reason"), [
    ({"content_type": "image/gif"}, 415, "unsupported_format"),
    ({}, 415, "unsupported_format"),
    ({"content_type": "image/jpeg", "bytes": CAP + 1}, 413, "image_too_large"),
    ({"content_type": "image/jpeg", "bytes": 0}, 400, "bad_request"),
    ({"content_type": "image/jpeg", "bytes": "12"}, 400, "bad_request"),
])
def test_bad_grant_requests_are_refused_with_their_reason(api, deps, body, status, reason):
    resp = api.post("/v1/uploads", json=body, headers=auth())
    assert (resp.status_code, resp.json()["error"]["reason"]) == (status, reason)
    assert deps.objects.grants == {}


def test_a_grant_needs_a_key_and_a_json_body(api):
    assert api.post("/v1/uploads", json={"content_type": "image/jpeg"}).status_code == 401
    resp = api.post("/v1/uploads", content=b"not json", headers={**auth(), "Content-Type": "application/json"})
    assert (resp.status_code, resp.json()["error"]["reason"]) == (400, "bad_request")


# --- the scan by reference ------------------------------------------------------------------------
def test_a_reference_is_accepted_with_its_intent_and_no_copy(api, deps):
    data = jpeg()
    upload_id, sha = uploaded(deps, api, data)
    resp = by_reference(api, upload_id, sha)
    assert resp.status_code == 202, resp.text
    scan_id = resp.json()["scan_id"]
    (sent,) = deps.enqueuer.sent
    msg = ScanMessage.decode(sent)
    assert (msg.scan_id, msg.image_key, msg.sha256, msg.bytes) == (
        scan_id, keys.upload_s3_key("acme", upload_id), sha, len(data))
    intent = deps.objects.get(keys.intent_s3_key("acme", scan_id, msg.submitted_at))
    assert ScanMessage.decode(intent.data) == msg  # the durable record, written before the 202
    assert not [k for k in deps.objects.objects if k.endswith((".jpg", ".png"))]  # the bytes stay put
    assert deps.verdicts.get_scan(scan_id)["status"] == "queued"


def test_the_same_upload_twice_is_one_scan(api, deps):
    upload_id, sha = uploaded(deps, api, jpeg())
    first, again = by_reference(api, upload_id, sha), by_reference(api, upload_id, sha)
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["scan_id"] == first.json()["scan_id"] and len(deps.enqueuer.sent) == 1
    other = by_reference(api, upload_id, "0" * 64)
    assert (other.status_code, other.json()["error"]["reason"]) == (409, "upload_already_submitted")


def test_a_client_idempotency_key_cannot_collide_with_an_upload_claim():
    assert not schemas.is_safe_id(claim_key("a" * 32))


def test_another_tenants_upload_is_just_missing(api, deps):
    upload_id, sha = uploaded(deps, api, jpeg(), tenant="acme")
    resp = by_reference(api, upload_id, sha, tenant="globex")
    assert (resp.status_code, resp.json()["error"]["reason"]) == (422, "upload_missing")
    assert deps.enqueuer.sent == []


@pytest.mark.parametrize(("data", "content_type", "status", "reason"), [
    (b"", "image/jpeg", 422, "image_empty"),
    (b"\xff" * (CAP + 1), "image/jpeg", 413, "image_too_large"),
    (b"plain text", "text/plain", 415, "unsupported_format"),
])
def test_the_edge_checks_the_stored_object(api, deps, data, content_type, status, reason):
    upload_id, sha = uploaded(deps, api, data, content_type)
    resp = by_reference(api, upload_id, sha)
    assert (resp.status_code, resp.json()["error"]["reason"]) == (status, reason)
    assert deps.enqueuer.sent == []


def test_an_upload_never_made_or_too_old_is_refused(api, deps, settings):
    resp = by_reference(api, schemas.new_scan_id(), "a" * 64)
    assert (resp.status_code, resp.json()["error"]["reason"]) == (422, "upload_missing")
    upload_id, sha = uploaded(deps, api, jpeg())
    key = keys.upload_s3_key("acme", upload_id)
    deps.objects.modified[key] = datetime.now(UTC) - timedelta(seconds=settings.idempotency_ttl_s + 60)
    resp = by_reference(api, upload_id, sha)
    assert (resp.status_code, resp.json()["error"]["reason"]) == (422, "upload_expired")


@pytest.mark.parametrize("body", [
    {"upload_id": "../../scans/x", "sha256": "a" * 64},
    {"upload_id": "a" * 32, "sha256": "A" * 64},
    {"upload_id": "a" * 32},
    {"upload_id": "a" * 32, "sha256": "a" * 64, "store_id": 7},
    ["a" * 32],
])
def test_malformed_references_are_bad_requests(api, deps, body):
    resp = api.post("/v1/scans", content=json.dumps(body), params={"store_id": "s", "terminal_id": "t"},
                    headers={**auth(), "Content-Type": "application/json"})
    assert (resp.status_code, resp.json()["error"]["reason"]) == (400, "bad_request")
