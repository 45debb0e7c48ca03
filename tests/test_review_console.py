"""The review console over HTTP (producer/review/): login, scope, claims, a signed review, undo, and the
final decision on GET /v1/scans/{id}. In-memory S3 twin, real Redis."""

from __future__ import annotations

import hashlib
import io
import json
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from producer.app import create_app
from producer.review import desk as review_desk
from producer.review.access import COOKIE, CSRF_HEADER, Reviewer
from tests.workers.audit.records import SEED, SIGNER
from workers.audit import manifests, signing
from workers.core import clock, keys
from workers.core.review_queue import ReviewQueue
from workers.core.schemas import InputRef, ModelRef, Review, ScanMessage, Timestamps, Verdict
from workers.core.settings import Settings
from workers.runtime.publish import write_audit

KEYS = {"acme": "key-acme", "globex": "key-globex"}
REVIEWERS = {"ann@acme": "rev-ann", "bob@acme": "rev-bob", "gil@globex": "rev-gil", "aud@*": "rev-audit"}
POST = {CSRF_HEADER: "1"}
REVIEW_VERIFIER = signing.Verifier([], [SIGNER.public_hex])  # the console's key, trusted on reviews only


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture()
def settings(clean_redis) -> Settings:
    return Settings().with_(redis_url=clean_redis, api_keys={digest(k): t for t, k in KEYS.items()},
                            reviewer_keys={digest(k): who for who, k in REVIEWERS.items()},
                            review_signing_key=SEED, review_qc_sample=0.0)


def scan(api, deps, tenant="acme", decision="review") -> Verdict:
    """Submit a scan through the API, then publish a verdict as a worker would (Redis, S3, review queue)."""
    buf = io.BytesIO()
    Image.new("RGB", (320, 160), (200, 190, 170)).save(buf, "PNG")
    resp = api.post("/v1/scans", params={"store_id": "s1", "terminal_id": "t1"}, content=buf.getvalue(),
                    headers={"Authorization": f"Bearer {KEYS[tenant]}", "Content-Type": "image/png"})
    assert resp.status_code == 202
    m = ScanMessage.decode(deps.enqueuer.sent[-1])
    verdict = Verdict(m.scan_id, m.tenant, m.store_id, m.terminal_id, decision,
                      InputRef(m.image_key, m.sha256, m.bytes, 320, 160),
                      Timestamps(m.submitted_at, completed=clock.utcnow()), reason="uncertain",
                      confidence=0.55, p_counterfeit=0.45, signs={"microprint_blur": 0.61, "hologram_missing": 0.2},
                      signs_detected=["microprint_blur"], model=ModelRef("tenderscan", "v7", "cd" * 32))
    deps.verdicts.save_verdict(verdict)
    write_audit(verdict, deps.objects)
    ReviewQueue(deps.verdicts.r).enqueue([verdict])
    return verdict


def login(settings, deps, who: str) -> TestClient:
    client = TestClient(create_app(settings, deps))
    client.__enter__()
    resp = client.post("/review/login", data={"key": REVIEWERS[who]}, follow_redirects=False)
    assert resp.status_code == 303
    cookie = resp.headers["set-cookie"]
    assert f"{COOKIE}=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    return client


@pytest.fixture()
def clients(settings, deps):
    made = {}

    def get(who):
        if who not in made:
            made[who] = login(settings, deps, who)
        return made[who]

    yield get
    for client in made.values():
        client.__exit__(None, None, None)


def test_the_page_asks_for_a_key_and_refuses_tenant_api_keys(api):
    page = api.get("/review")
    assert page.status_code == 200 and 'name="key"' in page.text and "<script" not in page.text
    assert api.post("/review/login", data={"key": KEYS["acme"]}).status_code == 401
    assert api.get("/review/api/queue").status_code == 401
    assert api.get("/review/api/queue", headers={"Authorization": f"Bearer {KEYS['acme']}"}).status_code == 401


def test_the_console_page_loads_only_its_own_assets(clients):
    ann = clients("ann@acme")
    page = ann.get("/review")
    assert "ann@acme" in page.text and "https://" not in page.text and "http://" not in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    js = ann.get("/review/static/console.js")
    assert js.status_code == 200 and "fetch(" in js.text and "http" not in js.text.replace("https://", "")
    assert ann.get("/review/static/../app.py").status_code == 404


def test_reviewers_see_their_tenants_queue_oldest_first_and_auditors_see_every_tenant(api, deps, clients):
    a1, g1, a2 = scan(api, deps), scan(api, deps, "globex"), scan(api, deps)
    queue = clients("ann@acme").get("/review/api/queue").json()["items"]
    assert [i["scan_id"] for i in queue] == [a1.scan_id, a2.scan_id]
    assert queue[0]["why"] == "review" and queue[0]["overdue"] is False and queue[0]["sla_s"] == 4 * 3600
    assert [i["scan_id"] for i in clients("gil@globex").get("/review/api/queue").json()["items"]] == [g1.scan_id]
    audit = clients("aud@*").get("/review/api/queue").json()
    assert audit["auditor"] and {i["scan_id"] for i in audit["items"]} == {a1.scan_id, a2.scan_id, g1.scan_id}


# every console route that names a scan: (method, path under /review/api/scans/{id}, JSON body)
SCAN_ROUTES = [("post", "claim", None), ("get", "image", None), ("get", "canonical", None),
               ("post", "review", {"label": "genuine"}), ("post", "undo", None), ("post", "release", None)]


@pytest.mark.parametrize(("method", "route", "body"), SCAN_ROUTES, ids=[r for _, r, _ in SCAN_ROUTES])
@pytest.mark.parametrize("state", ["queued", "claimed", "reviewed"])
def test_another_tenants_scan_is_a_404_on_every_route(api, deps, clients, method, route, body, state):
    g = scan(api, deps, "globex")
    gil = clients("gil@globex")
    if state in ("claimed", "reviewed"):
        assert gil.post(f"/review/api/scans/{g.scan_id}/claim", headers=POST).status_code == 200
    if state == "reviewed":
        assert gil.post(f"/review/api/scans/{g.scan_id}/review", json={"label": "genuine"},
                        headers=POST).status_code == 200
    ann = clients("ann@acme")
    kw = {"headers": POST, "json": body} if method == "post" else {}
    resp = getattr(ann, method)(f"/review/api/scans/{g.scan_id}/{route}", **kw)
    assert resp.status_code == 404 and resp.json()["error"]["reason"] == "not_found", resp.text
    assert getattr(ann, method)(f"/review/api/scans/nope/{route}", **kw).status_code == 404
    # and nothing of globex's changed hands: gil's claim and review stand, the queue shows ann nothing
    if state == "claimed":
        assert deps.verdicts.r.get(keys.review_claim_key(g.scan_id)) in (b"gil@globex", "gil@globex")
    if state == "reviewed":
        assert ReviewQueue(deps.verdicts.r).get_review(g.scan_id).reviewer == "gil@globex"
    assert ann.get("/review/api/queue").json()["items"] == []


def test_a_claim_keeps_a_second_reviewer_out(api, deps, clients):
    v = scan(api, deps)
    got = clients("ann@acme").post(f"/review/api/scans/{v.scan_id}/claim", headers=POST)
    assert got.status_code == 200
    body = got.json()
    assert body["decision"] == "review" and body["signs"]["microprint_blur"] == 0.61 and body["model"] == "v7"
    assert clients("ann@acme").get(body["image_url"]).content[:4] == b"\x89PNG"
    taken = clients("bob@acme").post(f"/review/api/scans/{v.scan_id}/claim", headers=POST)
    assert taken.status_code == 409 and "ann@acme" in taken.json()["error"]["detail"]
    no_claim = clients("bob@acme").post(f"/review/api/scans/{v.scan_id}/review", json={"label": "genuine"},
                                         headers=POST)
    assert no_claim.status_code == 409


def test_a_post_without_the_console_header_is_refused(api, deps, clients):
    v = scan(api, deps)
    assert clients("ann@acme").post(f"/review/api/scans/{v.scan_id}/claim").status_code == 403


def test_a_review_is_a_signed_record_and_the_poll_answer_carries_it(api, deps, clients, monkeypatch):
    v = scan(api, deps)
    seen = []
    monkeypatch.setattr(review_desk, "on_review_recorded", lambda desk, review: seen.append(review))  # once
    ann = clients("ann@acme")
    ann.post(f"/review/api/scans/{v.scan_id}/claim", headers=POST)
    bad = ann.post(f"/review/api/scans/{v.scan_id}/review", json={"label": "genuine", "signs_seen": ["x"]},
                   headers=POST)
    assert bad.status_code == 400
    resp = ann.post(f"/review/api/scans/{v.scan_id}/review", headers=POST,
                    json={"label": "counterfeit", "signs_seen": ["microprint_blur"], "note": "blurry print"})
    assert resp.status_code == 200, resp.text
    key = resp.json()["record"]
    obj = deps.objects.get(key)
    review = Review.decode(obj.data)
    assert key == keys.review_s3_key("acme", v.scan_id, review.reviewed_at)
    assert (review.label, review.reviewer, review.model_decision, review.signs_seen, review.note) == (
        "counterfeit", "ann@acme", "review", ["microprint_blur"], "blurry print")
    assert manifests.check_record(REVIEW_VERIFIER, key, obj.data, obj.metadata) is None
    assert seen == [review]
    assert ann.get("/review/api/queue").json()["items"] == []
    view = api.get(f"/v1/scans/{v.scan_id}", headers={"Authorization": f"Bearer {KEYS['acme']}"}).json()
    assert view["verdict"]["decision"] == "review"  # the verdict stays as it was
    assert view["final_decision"] == "counterfeit"
    assert view["review"]["reviewed_by"] == "ann@acme" and view["review"]["reviewed_at"] == review.reviewed_at
    again = clients("bob@acme").post(f"/review/api/scans/{v.scan_id}/claim", headers=POST)
    assert again.status_code == 404  # reviewed: no longer awaiting review


def test_not_a_banknote_stands_as_rejected(api, deps, clients):
    v = scan(api, deps)
    ann = clients("ann@acme")
    ann.post(f"/review/api/scans/{v.scan_id}/claim", headers=POST)
    ann.post(f"/review/api/scans/{v.scan_id}/review", json={"label": "not_a_banknote"}, headers=POST)
    view = api.get(f"/v1/scans/{v.scan_id}", headers={"Authorization": f"Bearer {KEYS['acme']}"}).json()
    assert view["final_decision"] == "rejected" and view["review"]["reason"] == "not_a_banknote"


def test_undo_within_a_minute_by_the_same_reviewer_only(api, deps, clients):
    v = scan(api, deps)
    ann = clients("ann@acme")
    ann.post(f"/review/api/scans/{v.scan_id}/claim", headers=POST)
    key = ann.post(f"/review/api/scans/{v.scan_id}/review", json={"label": "genuine"}, headers=POST).json()["record"]
    assert clients("bob@acme").post(f"/review/api/scans/{v.scan_id}/undo", headers=POST).status_code == 409
    assert ann.post(f"/review/api/scans/{v.scan_id}/undo", headers=POST).json() == {"scan_id": v.scan_id,
                                                                                    "undone": True}
    assert not deps.objects.exists(key)
    assert [(i["scan_id"], i["claimed_by"]) for i in ann.get("/review/api/queue").json()["items"]] == [
        (v.scan_id, "ann@acme")]
    view = api.get(f"/v1/scans/{v.scan_id}", headers={"Authorization": f"Bearer {KEYS['acme']}"}).json()
    assert view["final_decision"] == "review" and "review" not in view
    ann.post(f"/review/api/scans/{v.scan_id}/review", json={"label": "counterfeit"}, headers=POST)
    review = deps.verdicts.r.get(keys.review_key(v.scan_id))
    late = clock.parse_time(Review.decode(review).reviewed_at) + timedelta(seconds=keys.REVIEW_UNDO_S + 1)
    desk = ann.app.state.review_desk
    with pytest.raises(Exception, match="undo_expired"):
        review_desk.undo(desk, Reviewer("ann", "acme"), v.scan_id, now=late)


def test_the_canonical_view_is_a_png(api, deps, clients):
    v = scan(api, deps)
    resp = clients("ann@acme").get(f"/review/api/scans/{v.scan_id}/canonical")
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(resp.content)).size == (576, 256)


def test_logout_ends_the_session(api, deps, clients):
    ann = clients("ann@acme")
    assert ann.get("/review/api/queue").status_code == 200
    ann.post("/review/logout", follow_redirects=False)
    assert ann.get("/review/api/queue").status_code == 401


def test_a_record_s3_refuses_leaves_no_review_and_the_scan_back_in_the_queue(api, deps, clients, monkeypatch):
    from workers.core.errors import StorageUnavailable

    v = scan(api, deps)
    ann = clients("ann@acme")
    ann.post(f"/review/api/scans/{v.scan_id}/claim", headers=POST)

    def refuse(*args, **kwargs):
        raise StorageUnavailable("S3 is down")

    monkeypatch.setattr(deps.objects, "put", refuse)
    resp = ann.post(f"/review/api/scans/{v.scan_id}/review", json={"label": "genuine"}, headers=POST)
    assert resp.status_code == 503 and resp.headers["Retry-After"]
    assert deps.verdicts.r.get(keys.review_key(v.scan_id)) is None
    assert [i["scan_id"] for i in ann.get("/review/api/queue").json()["items"]] == [v.scan_id]
    view = api.get(f"/v1/scans/{v.scan_id}", headers={"Authorization": f"Bearer {KEYS['acme']}"}).json()
    assert view["final_decision"] == "review" and "review" not in view


def test_without_the_model_extra_the_canonical_view_is_a_404_and_the_scan_still_shows(api, deps, clients,
                                                                                        monkeypatch):
    def no_scipy(data):
        raise ImportError("No module named 'scipy'")

    monkeypatch.setattr(review_desk, "canonical_png", no_scipy)
    v = scan(api, deps)
    ann = clients("ann@acme")
    assert ann.get(f"/review/api/scans/{v.scan_id}/canonical").status_code == 404
    assert ann.get(f"/review/api/scans/{v.scan_id}/image").status_code == 200


def test_a_reviewer_removed_from_the_settings_is_logged_out(settings, deps, clients):
    ann = clients("ann@acme")
    cookie = ann.cookies.get(COOKIE)
    assert cookie and ann.get("/review/api/queue").status_code == 200
    fewer = settings.with_(reviewer_keys={digest(k): who for who, k in REVIEWERS.items() if who != "ann@acme"})
    with TestClient(create_app(fewer, deps)) as restarted:  # the API restarted with the new settings
        restarted.cookies.set(COOKIE, cookie, path="/review")
        assert restarted.get("/review/api/queue").status_code == 401
        assert 'name="key"' in restarted.get("/review").text


def test_a_recorded_review_schedules_the_tenants_scan_reviewed_webhook(api, deps, clients):
    import time

    from workers.webhooks.endpoints import EndpointStore
    from workers.webhooks.outbox import Outbox

    EndpointStore(deps.verdicts.r).add("acme", "https://hooks.example.com/tenderscan")
    v = scan(api, deps)
    ann = clients("ann@acme")
    ann.post(f"/review/api/scans/{v.scan_id}/claim", headers=POST)
    resp = ann.post(f"/review/api/scans/{v.scan_id}/review", headers=POST, json={"label": "genuine"})
    assert resp.status_code == 200, resp.text
    outbox = Outbox(deps.verdicts.r)
    messages = [outbox.message(c.msg_id) for c in outbox.claim(time.time() + 1, 10)]
    reviewed = [json.loads(m["body"])["data"] for m in messages if m and m["type"] == "scan.reviewed"]
    assert len(reviewed) == 1 and reviewed[0]["scan_id"] == v.scan_id and reviewed[0]["label"] == "genuine"


def test_metrics_count_reviews_agreement_and_signs_and_gauge_each_tenants_queue(api, deps, clients):
    a1 = scan(api, deps)
    scan(api, deps), scan(api, deps, "globex")
    ann = clients("ann@acme")

    def sample(name: str, **labels) -> float:
        from prometheus_client.parser import text_string_to_metric_families

        for family in text_string_to_metric_families(ann.get("/metrics").text):
            for s in family.samples:
                if s.name == name and s.labels == labels:
                    return s.value
        return 0.0
    assert sample("tenderscan_review_queue_depth", tenant="acme") == 2
    assert sample("tenderscan_review_queue_depth", tenant="globex") == 1
    assert sample("tenderscan_review_queue_oldest_age_seconds", tenant="acme") >= 0
    assert ann.post(f"/review/api/scans/{a1.scan_id}/claim", headers=POST).status_code == 200
    resp = ann.post(f"/review/api/scans/{a1.scan_id}/review", headers=POST,
                    json={"label": "counterfeit", "signs_seen": ["hologram_missing"]})
    assert resp.status_code == 200, resp.text
    assert sample("tenderscan_review_queue_depth", tenant="acme") == 1
    assert sample("tenderscan_reviews_total", reviewer="ann@acme") == 1
    assert sample("tenderscan_review_agreement_total", model_decision="review", label="counterfeit") == 1
    # the model detected microprint_blur, ann saw hologram_missing instead
    assert sample("tenderscan_review_signs_total", sign="microprint_blur", model="detected", reviewer="not") == 1
    assert sample("tenderscan_review_signs_total", sign="hologram_missing", model="not", reviewer="seen") == 1
    assert sample("tenderscan_review_signs_total", sign="microprint_blur", model="detected", reviewer="seen") == 0
    assert ann.post(f"/review/api/scans/{a1.scan_id}/undo", headers=POST).status_code == 200
    assert sample("tenderscan_reviews_undone_total", reviewer="ann@acme") == 1
    assert sample("tenderscan_review_queue_depth", tenant="acme") == 2
