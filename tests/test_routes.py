"""The app around the routes: probes, docs, error bodies, the request log."""

from __future__ import annotations

import hashlib
import io
import json

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from structlog.testing import capture_logs

from producer.app import Deps, create_app
from workers.core.settings import Settings

KEY = "key-acme"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture()
def settings(clean_redis) -> Settings:
    return Settings().with_(redis_url=clean_redis, api_keys={hashlib.sha256(KEY.encode()).hexdigest(): "acme"},
                            public_url="https://api.example.com")


def test_healthz(api):
    assert api.get("/healthz").json() == {"status": "ok"}


def test_readyz_when_everything_answers(api):
    resp = api.get("/readyz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ready", "checks": {"redis": "ok", "s3": "ok"}}


def test_readyz_names_s3_when_it_is_down(api, deps):
    deps.objects.down = True
    resp = api.get("/readyz")
    assert resp.status_code == 503 and resp.headers["Retry-After"]
    body = resp.json()
    assert body["error"]["reason"] == "unavailable" and "s3" in body["error"]["detail"]
    assert body["checks"]["redis"] == "ok" and body["checks"]["s3"].startswith("unavailable")
    assert api.get("/healthz").status_code == 200  # alive, just not ready


def test_readyz_names_redis_when_it_is_down(settings):
    deps = Deps.with_twins(settings.with_(redis_url="redis://127.0.0.1:1/0"))
    with TestClient(create_app(settings, deps)) as client:
        body = client.get("/readyz").json()
    assert body["checks"]["redis"].startswith("unavailable") and body["checks"]["s3"] == "ok"
    assert body["error"]["detail"] == "not reachable: redis"


def test_openapi_and_docs(api):
    assert api.get("/docs").status_code == 200
    spec = api.get("/openapi.json").json()
    assert {"/v1/scans", "/v1/scans/{scan_id}", "/healthz", "/readyz"} <= set(spec["paths"])
    upload = spec["paths"]["/v1/scans"]["post"]["requestBody"]["content"]
    assert {"image/jpeg", "image/png", "multipart/form-data"} <= set(upload)


def test_unknown_route_and_method_use_the_error_body(api):
    resp = api.get("/v2/nothing")
    assert resp.status_code == 404
    assert resp.json()["error"]["reason"] == "not_found"
    resp = api.delete("/v1/scans")
    assert resp.status_code == 405
    assert set(resp.json()["error"]) == {"status", "reason", "detail"}


def jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (9, 9, 9)).save(buf, "JPEG")
    return buf.getvalue()


def test_poll_url_uses_public_url(api):
    resp = api.post("/v1/scans", params={"store_id": "s", "terminal_id": "t"}, content=jpeg(),
                    headers={**AUTH, "Content-Type": "image/jpeg"})
    scan_id = resp.json()["scan_id"]
    assert resp.json()["poll_url"] == f"https://api.example.com/v1/scans/{scan_id}"
    assert resp.headers["Location"] == resp.json()["poll_url"]


def test_one_request_event_per_request_without_secrets(api):
    with capture_logs() as events:
        api.post("/v1/scans", params={"store_id": "s", "terminal_id": "t"}, content=jpeg(),
                 headers={**AUTH, "Content-Type": "image/jpeg", "Idempotency-Key": "idem-secret-1"})
    [req] = [e for e in events if e["event"] == "request"]
    assert req["status"] == 202 and req["tenant"] == "acme" and len(req["scan_id"]) == 32
    assert isinstance(req["ms"], float) and req["method"] == "POST" and req["path"] == "/v1/scans"
    assert req["reason"] is None
    dumped = json.dumps(events, default=str)
    assert KEY not in dumped and "idem-secret-1" not in dumped


def test_refusals_log_their_reason(api):
    with capture_logs() as events:
        api.post("/v1/scans", params={"store_id": "s", "terminal_id": "t"}, content=b"text",
                 headers={**AUTH, "Content-Type": "image/png"})
    [req] = [e for e in events if e["event"] == "request"]
    assert (req["status"], req["reason"]) == (415, "unsupported_format")
