"""Per-tenant limits: the Redis token bucket, in-flight accounting with the verdict script, the
effective policy, and the edge's 429 / 413 / 422 answers (TestClient on the real Redis)."""

from __future__ import annotations

import hashlib
import io
import time

import pytest
import redis
from PIL import Image

from producer.limits import Limiter, Policy
from producer.tenants import TenantLimits, TenantStore, key_id
from workers.core import clock, schemas
from workers.core.keys import in_flight_key, key_use_key, rate_key
from workers.core.schemas import InputRef, ScanMessage, Timestamps, Verdict
from workers.core.settings import Settings
from workers.core.verdict_store import VerdictStore, redis_client

SECRET = "limits-test-secret-0123"
T0 = 1_800_000_000.0


@pytest.fixture()
def r(clean_redis) -> redis.Redis:
    return redis_client(clean_redis)


def policy(rate: float = 2, burst: int = 3, in_flight: int = 2) -> Policy:
    return Policy(rate, burst, in_flight, 10 * 1024 * 1024, 24_000_000)


# --- the token bucket ------------------------------------------------------------------------------
def test_bucket_allows_burst_then_refuses_with_the_wait(r):
    lim = Limiter(r, 900)
    p = policy(rate=2, burst=3)
    assert [lim.take("acme", p, now=T0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert lim.take("acme", p, now=T0) == pytest.approx(0.5)  # one token per 0.5 s
    assert lim.take("acme", p, now=T0 + 0.25) == pytest.approx(0.25)
    assert lim.take("acme", p, now=T0 + 0.5) == 0.0  # refilled
    assert lim.take("acme", p, now=T0 + 0.5) > 0
    assert [lim.take("acme", p, now=T0 + 100) for _ in range(4)][-1] > 0  # refill caps at burst


def test_bucket_is_per_tenant_and_shared_by_every_replica(r, clean_redis):
    a, b = Limiter(r, 900), Limiter(redis_client(clean_redis), 900)  # two API processes
    p = policy(rate=1, burst=2)
    assert a.take("acme", p, now=T0) == 0.0 and b.take("acme", p, now=T0) == 0.0
    assert a.take("acme", p, now=T0) > 0 and b.take("acme", p, now=T0) > 0
    assert a.take("globex", p, now=T0) == 0.0  # another tenant, another bucket


def test_bucket_uses_redis_time_and_expires(r):
    lim = Limiter(r, 900)
    p = policy(rate=10, burst=10)
    assert lim.take("acme", p) == 0.0
    assert 0 < r.pttl(rate_key("acme")) <= 2000  # a full refill + 1 s: an idle tenant costs nothing
    assert Limiter(r, 900).take("acme", policy(rate=0), now=T0) == 0.0  # 0 = no limit, no Redis call


def test_check_rate_is_429_with_retry_after(r):
    lim = Limiter(r, 900)
    p = policy(rate=0.1, burst=1)
    lim.check_rate("acme", p)
    with pytest.raises(Exception) as info:
        lim.check_rate("acme", p)
    err = info.value
    assert (err.status, err.reason) == (429, "rate_limited")
    assert 9 <= int(err.headers["Retry-After"]) <= 10


# --- in flight -------------------------------------------------------------------------------------
def _msg(tenant: str = "acme", at: str | None = None) -> ScanMessage:
    return ScanMessage(schemas.new_scan_id(), tenant, "s1", "t1", "scans/k.jpg", "ab" * 32, 3, at or clock.utcnow())


def _verdict(msg: ScanMessage) -> Verdict:
    return Verdict(msg.scan_id, msg.tenant, msg.store_id, msg.terminal_id, "genuine",
                   InputRef(msg.image_key, msg.sha256, msg.bytes), Timestamps(msg.submitted_at))


def test_in_flight_counts_recorded_scans_until_their_verdict(r):
    vs, lim = VerdictStore(r, ttl_s=600, in_flight_ttl_s=900), Limiter(r, 900)
    msgs = [_msg() for _ in range(3)] + [_msg("globex")]
    for m in msgs:
        vs.create_scan(m)
    assert lim.in_flight("acme") == 3 and lim.in_flight("globex") == 1
    assert 0 < r.ttl(in_flight_key("acme")) <= 900
    vs.save_verdict(_verdict(msgs[0]))
    assert lim.in_flight("acme") == 2
    vs.save_verdict(_verdict(msgs[0]))  # a redelivery's second verdict: nothing more to remove
    vs.save_verdicts([_verdict(msgs[1]), _verdict(msgs[3])])  # the pipelined multi-scan path too
    assert lim.in_flight("acme") == 1 and lim.in_flight("globex") == 0


def test_a_crashed_worker_leaks_nothing_the_redelivery_removes_it(r):
    vs, lim = VerdictStore(r, ttl_s=600), Limiter(r, 900)
    msg = _msg()
    vs.create_scan(msg)
    vs.start_scans([msg.scan_id])  # first worker dies here, holding the message
    assert lim.in_flight("acme") == 1
    vs.start_scans([msg.scan_id])  # redelivered to a second worker
    vs.save_verdict(_verdict(msg))
    assert lim.in_flight("acme") == 0


def test_entries_of_scans_lost_without_a_verdict_age_out(r):
    vs, lim = VerdictStore(r, ttl_s=600), Limiter(r, 60)
    old = _msg(at="2020-01-01T00:00:00.000000Z")
    vs.create_scan(old)
    vs.create_scan(_msg())
    assert lim.in_flight("acme", now=clock.parse_time(old.submitted_at).timestamp() + 30) == 2
    assert lim.in_flight("acme") == 1  # the 2020 one is older than 60 s: gone
    assert r.zscore(in_flight_key("acme"), old.scan_id) is None


def test_check_in_flight_admits_up_to_the_limit_and_counts_a_batch_whole(r):
    vs, lim = VerdictStore(r, ttl_s=600), Limiter(r, 900)
    p = policy(in_flight=3)
    lim.check_in_flight("acme", p, adding=3)
    vs.create_scan(_msg())
    vs.create_scan(_msg())
    lim.check_in_flight("acme", p, adding=1)
    with pytest.raises(Exception) as info:
        lim.check_in_flight("acme", p, adding=2)
    assert (info.value.status, info.value.reason) == (429, "too_many_in_flight")
    assert info.value.headers["Retry-After"] == "2"
    lim.check_in_flight("acme", policy(in_flight=0), adding=10_000)  # 0 = no limit


# --- the effective policy ---------------------------------------------------------------------------
def test_policy_defaults_overrides_and_caps_that_only_tighten():
    s = Settings().with_(tenant_rate_per_s=50, tenant_burst=100, tenant_max_in_flight=1000,
                         max_body_bytes=1000, max_pixels=5000)
    assert Policy.resolve(s) == Policy(50, 100, 1000, 1000, 5000)
    o = TenantLimits(rate_per_s=5, max_in_flight=0, max_body_bytes=500, max_pixels=10**9)
    assert Policy.resolve(s, o) == Policy(5, 100, 0, 500, 5000)  # pixels cannot exceed the global cap


# --- over HTTP: the edge's answers -------------------------------------------------------------------
@pytest.fixture()
def settings(clean_redis) -> Settings:
    return Settings().with_(redis_url=clean_redis, key_hmac_secret=SECRET, tenant_rate_per_s=1000, tenant_burst=1000)


@pytest.fixture()
def keys(deps) -> dict[str, str]:
    """Tenants in the (in-memory) registry: tight limits for `slow`, `busy` and `small`."""
    store = TenantStore(deps.objects)
    made = {}
    for tenant, limits in [("slow", TenantLimits(rate_per_s=0.5, burst=2)), ("busy", TenantLimits(max_in_flight=2)),
                           ("small", TenantLimits(max_body_bytes=2000, max_pixels=64 * 64)),
                           ("free", TenantLimits())]:
        made[tenant] = store.create(tenant, SECRET, limits)[1]
    return made


@pytest.fixture()
def client(keys, api):
    api.app.state.tenants.refresh()  # the registry was written after the app's first read
    return api


def png(side: int = 48, noise: bool = False) -> bytes:
    buf = io.BytesIO()
    img = Image.effect_noise((side, side), 60).convert("RGB") if noise else Image.new("RGB", (side, side), (1, 2, 3))
    img.save(buf, "PNG")
    return buf.getvalue()


def post(client, key: str, data: bytes | None = None):
    return client.post("/v1/scans", params={"store_id": "s1", "terminal_id": "t1"}, content=data or png(),
                       headers={"Authorization": f"Bearer {key}", "Content-Type": "image/png"})


def test_rate_limit_answers_429_with_retry_after_on_every_endpoint(client, keys):
    auth = {"Authorization": f"Bearer {keys['slow']}"}
    assert post(client, keys["slow"]).status_code == 202
    assert client.get(f"/v1/scans/{'0' * 32}", headers=auth).status_code == 404  # a poll spends a token too
    for resp in (post(client, keys["slow"]), client.get(f"/v1/scans/{'0' * 32}", headers=auth)):
        assert resp.status_code == 429
        assert resp.json()["error"]["reason"] == "rate_limited"
        assert 1 <= int(resp.headers["Retry-After"]) <= 2
    assert post(client, keys["free"]).status_code == 202  # other tenants are not affected


def test_in_flight_limit_answers_429_until_a_verdict_lands(client, keys, deps):
    first = post(client, keys["busy"]).json()["scan_id"]
    assert post(client, keys["busy"]).status_code == 202
    resp = post(client, keys["busy"])
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "2"
    assert resp.json()["error"]["reason"] == "too_many_in_flight"
    assert len(deps.enqueuer.sent) == 2  # the refused scan was never stored or queued
    deps.verdicts.save_verdict(_verdict(ScanMessage.decode(deps.enqueuer.sent[0])))
    assert deps.enqueuer.sent[0]["scan_id"] == first
    assert post(client, keys["busy"]).status_code == 202


def test_a_batch_is_admitted_whole_or_not_at_all(client, keys, deps):
    files = [("image", (f"s{i}.png", png(), "image/png")) for i in range(3)]
    resp = client.post("/v1/scans:batch", params={"store_id": "s1", "terminal_id": "t1"}, files=files,
                       headers={"Authorization": f"Bearer {keys['busy']}"})
    assert resp.status_code == 429 and resp.json()["error"]["reason"] == "too_many_in_flight"
    assert deps.enqueuer.sent == []
    resp = client.post("/v1/scans:batch", params={"store_id": "s1", "terminal_id": "t1"}, files=files[:2],
                       headers={"Authorization": f"Bearer {keys['busy']}"})
    assert resp.status_code == 200 and resp.json()["accepted"] == 2


def test_per_tenant_body_and_pixel_caps(client, keys):
    big = png(200, noise=True)
    assert len(big) > 2000
    resp = post(client, keys["small"], big)
    assert resp.status_code == 413 and resp.json()["error"]["reason"] == "image_too_large"
    assert "2000" in resp.json()["error"]["detail"]
    resp = post(client, keys["small"], png(65))  # small file, 65*65 > 64*64 pixels
    assert resp.status_code == 422 and resp.json()["error"]["reason"] == "too_many_pixels"
    assert post(client, keys["small"], png(64)).status_code == 202
    assert post(client, keys["free"], big).status_code == 202  # the global caps are far above
    files = [("image", ("a.png", png(65), "image/png"))]
    resp = client.post("/v1/scans:batch", params={"store_id": "s1", "terminal_id": "t1"}, files=files,
                       headers={"Authorization": f"Bearer {keys['small']}"})
    assert resp.json()["items"][0]["error"]["reason"] == "too_many_pixels"


def test_registry_keys_record_last_use_and_stop_when_revoked(client, keys, deps):
    assert post(client, keys["free"]).status_code == 202
    used = deps.verdicts.r.hget(key_use_key("free"), key_id(keys["free"]))
    assert used and used[:4].isdigit()
    TenantStore(deps.objects).revoke_key("free", key_id(keys["free"]))
    assert post(client, keys["free"]).status_code == 202  # until the registry is re-read
    client.app.state.tenants.refresh()
    resp = post(client, keys["free"])
    assert resp.status_code == 401 and resp.json()["error"]["reason"] == "key_revoked"
    assert resp.headers["WWW-Authenticate"] == "Bearer"


def test_registry_refresh_loop_picks_up_changes(settings, deps, keys):
    from fastapi.testclient import TestClient

    from producer.app import create_app

    with TestClient(create_app(settings.with_(tenant_refresh_s=1), deps)) as c:
        assert post(c, keys["free"]).status_code == 202
        TenantStore(deps.objects).revoke_key("free", key_id(keys["free"]))
        deadline = time.monotonic() + 5
        while post(c, keys["free"]).status_code != 401:
            assert time.monotonic() < deadline, "revocation not seen within 5 s with TENANT_REFRESH_S=1"
            time.sleep(0.2)


def test_registry_unread_is_503_for_registry_keys_only(settings, deps, keys):
    from fastapi.testclient import TestClient

    from producer.app import create_app

    deps.objects.down = True  # S3 down when the API starts
    s = settings.with_(api_keys={hashlib.sha256(b"boot").hexdigest(): "boot"})
    with TestClient(create_app(s, deps)) as c:
        resp = c.get(f"/v1/scans/{'0' * 32}", headers={"Authorization": f"Bearer {keys['free']}"})
        assert resp.status_code == 503 and resp.headers["Retry-After"]
        assert resp.json()["error"]["reason"] == "unavailable"
        deps.objects.down = False  # S3 is back; the registry is re-read only after TENANT_REFRESH_S (5 s)
        assert c.get(f"/v1/scans/{'0' * 32}", headers={"Authorization": "Bearer boot"}).status_code == 404
        assert c.get(f"/v1/scans/{'0' * 32}", headers={"Authorization": f"Bearer {keys['free']}"}).status_code == 503
