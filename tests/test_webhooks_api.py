"""/v1/webhooks: a tenant manages its own endpoints; another tenant's are invisible (the real Redis)."""

from __future__ import annotations

import hashlib

import pytest

from producer.webhooks import DeliveryLog, WebhookDone, WebhookList, WebhookSecret, WebhookTest
from workers.core.settings import Settings
from workers.webhooks.outbox import Outbox

KEYS = {"acme": "key-acme-webhooks", "globex": "key-globex-webhooks"}
AUTH = {t: {"Authorization": f"Bearer {k}"} for t, k in KEYS.items()}


@pytest.fixture()
def settings(clean_redis) -> Settings:
    return Settings().with_(redis_url=clean_redis,
                            api_keys={hashlib.sha256(k.encode()).hexdigest(): t for t, k in KEYS.items()})


def test_a_tenant_adds_lists_rotates_tests_and_removes_its_endpoint(api, deps):
    resp = api.post("/v1/webhooks", json={"url": "https://pos.acme.example/hooks"}, headers=AUTH["acme"])
    assert resp.status_code == 201
    made = WebhookSecret.model_validate(resp.json())
    assert made.secret.startswith("whsec_")

    listed = WebhookList.model_validate(api.get("/v1/webhooks", headers=AUTH["acme"]).json())
    assert [e.id for e in listed.endpoints] == [made.id] and listed.endpoints[0].health == "ok"
    assert made.secret not in api.get("/v1/webhooks", headers=AUTH["acme"]).text
    assert WebhookList.model_validate(api.get("/v1/webhooks", headers=AUTH["globex"]).json()).endpoints == []

    rotated = WebhookSecret.model_validate(api.post(f"/v1/webhooks/{made.id}/rotate", headers=AUTH["acme"]).json())
    assert rotated.secret != made.secret
    assert api.get("/v1/webhooks", headers=AUTH["acme"]).json()["endpoints"][0]["signing_secrets"] == 2

    resp = api.post(f"/v1/webhooks/{made.id}/test", headers=AUTH["acme"])
    assert resp.status_code == 202
    msg_id = WebhookTest.model_validate(resp.json()).msg_id
    outbox = Outbox(deps.verdicts.r)
    (claim,) = outbox.claim(now=10**10, limit=5)
    assert claim.msg_id == msg_id
    outbox.finish(claim, "retrying", {"at": "2026-12-02T00:00:00.000000Z", "msg_id": msg_id, "attempt": 1,
                                      "outcome": "retrying", "status": 500, "reason": "http_status"}, next_due=1.0)
    log = DeliveryLog.model_validate(api.get(f"/v1/webhooks/{made.id}/deliveries", headers=AUTH["acme"]).json())
    assert [(d.outcome, d.status) for d in log.deliveries] == [("retrying", 500)]

    done = WebhookDone.model_validate(api.post(f"/v1/webhooks/{made.id}/enable", headers=AUTH["acme"]).json())
    assert done.released == 0
    assert api.delete(f"/v1/webhooks/{made.id}", headers=AUTH["acme"]).json() == {"id": made.id, "removed": True}
    assert api.get("/v1/webhooks", headers=AUTH["acme"]).json() == {"endpoints": []}


def test_another_tenants_endpoint_is_not_found_and_bad_input_is_400(api):
    made = api.post("/v1/webhooks", json={"url": "https://pos.acme.example/hooks"}, headers=AUTH["acme"]).json()
    for method, path in (("post", "rotate"), ("post", "enable"), ("post", "test"), ("get", "deliveries")):
        resp = getattr(api, method)(f"/v1/webhooks/{made['id']}/{path}", headers=AUTH["globex"])
        assert resp.status_code == 404 and resp.json()["error"]["reason"] == "not_found", path
    assert api.delete(f"/v1/webhooks/{made['id']}", headers=AUTH["globex"]).status_code == 404
    assert api.post("/v1/webhooks/ep_0000000000000000/rotate", headers=AUTH["acme"]).status_code == 404
    for body in ({"url": "ftp://x.example/"}, {"url": "https://u:p@x.example/"}, {"url": "http://169.254.169.254/"}, {}, {"url": "https://x", "extra": 1}):
        resp = api.post("/v1/webhooks", json=body, headers=AUTH["acme"])
        assert resp.status_code == 400 and resp.json()["error"]["reason"] == "bad_request", body
    assert api.get("/v1/webhooks").status_code == 401
