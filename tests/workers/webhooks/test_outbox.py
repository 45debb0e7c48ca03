"""The durable schedule on the real Redis (the session's private server, flushed per test)."""

import pytest

from workers.core import keys
from workers.core.enums import DeliveryOutcome
from workers.core.schemas import WebhookEvent
from workers.core.verdict_store import redis_client
from workers.webhooks.addresses import parse_allow
from workers.webhooks.endpoints import EndpointError, EndpointStore
from workers.webhooks.events import emit
from workers.webhooks.outbox import Outbox


@pytest.fixture()
def r(clean_redis):
    return redis_client(clean_redis)


def event(i=1, tenant="acme"):
    return WebhookEvent(f"msg_{i}", tenant, "scan.completed", "2026-12-02T00:00:00.000000Z", {"i": i})


def test_an_event_goes_to_every_endpoint_of_its_tenant_once(r):
    eps = EndpointStore(r)
    a, b = eps.add("acme", "https://a.example/hook"), eps.add("acme", "https://b.example/hook")
    eps.add("globex", "https://g.example/hook")
    box = Outbox(r)
    assert box.emit([event(1), event(2, "initech")], now=100) == [2, 0]  # initech has no endpoint: nothing kept
    assert box.emit([event(1)], now=101) == [0]  # a repeat emit (a redelivered scan) schedules nothing
    assert r.exists(keys.webhook_message_key("msg_2")) == 0
    claims = box.claim(now=100, limit=10)
    assert sorted(c.endpoint_id for c in claims) == sorted([a.id, b.id])
    assert all(c.attempt == 1 and c.first_at == 100 and c.msg_id == "msg_1" for c in claims)
    assert box.message("msg_1")["body"] == event(1).body()


def test_a_claim_is_leased_and_comes_back_if_its_deliverer_dies(r):
    EndpointStore(r).add("acme", "https://a.example/hook")
    box = Outbox(r, lease_s=30)
    box.emit([event()], now=100)
    (first,) = box.claim(now=100, limit=10)
    assert box.claim(now=129, limit=10) == []  # leased: no second deliverer takes it
    (again,) = box.claim(now=131, limit=10)  # the first one died: the lease ran out
    assert again.delivery_id == first.delivery_id and again.attempt == 2 and again.first_at == 100


def test_finish_retrying_delivered_and_the_log(r):
    EndpointStore(r).add("acme", "https://a.example/hook")
    box = Outbox(r)
    box.emit([event()], now=100)
    (c,) = box.claim(now=100, limit=1)
    box.finish(c, DeliveryOutcome.RETRYING, {"outcome": "retrying", "status": 500}, next_due=105)
    assert box.claim(now=104, limit=1) == []
    (c,) = box.claim(now=105, limit=1)
    assert c.attempt == 2
    box.finish(c, DeliveryOutcome.DELIVERED, {"outcome": "delivered", "status": 200})
    assert box.pending() == 0 and r.exists(keys.webhook_try_key(c.delivery_id)) == 0
    assert [rec["status"] for rec in box.log("acme", c.endpoint_id)] == [200, 500]


def test_failing_disables_after_the_limit_and_enable_releases_the_parked(r):
    ep = EndpointStore(r).add("acme", "https://a.example/hook")
    box = Outbox(r)
    assert box.failing("acme", ep.id, now=100, disable_after_s=60) == (100, False)
    assert box.failing("acme", ep.id, now=150, disable_after_s=60) == (100, False)
    assert box.failing("acme", ep.id, now=161, disable_after_s=60) == (100, True)
    box.emit([event()], now=170)
    (c,) = box.claim(now=170, limit=1)
    box.finish(c, DeliveryOutcome.PARKED, {"outcome": "parked"})
    assert box.pending() == 0 and box.state("acme", ep.id)["parked"] == 1
    assert box.enable("acme", ep.id, now=500) == 1
    assert box.state("acme", ep.id) == {"parked": 0}
    (c,) = box.claim(now=500, limit=1)
    assert c.msg_id == "msg_1" and c.attempt == 1 and c.first_at == 500  # a fresh retry window, the same id


def test_success_clears_the_failing_clock(r):
    ep = EndpointStore(r).add("acme", "https://a.example/hook")
    box = Outbox(r)
    box.failing("acme", ep.id, now=100, disable_after_s=60)
    box.succeeded("acme", ep.id)
    assert box.failing("acme", ep.id, now=1000, disable_after_s=60) == (1000, False)


def test_rotation_keeps_the_old_secret_signing_for_the_overlap(r):
    eps = EndpointStore(r)
    ep = eps.add("acme", "https://a.example/hook")
    first = ep.secrets[0].value
    ep = eps.rotate("acme", ep.id, overlap_s=60, now=1000)
    second = ep.secrets[0].value
    assert ep.signing_secrets(1059) == [second, first]
    assert ep.signing_secrets(1060) == [second]
    ep = eps.rotate("acme", ep.id, overlap_s=60, now=2000)  # the expired one is dropped
    assert [s.value for s in ep.secrets][1:] == [second] and eps.get("acme", ep.id) == ep


def test_endpoint_urls_and_ids_are_checked(r):
    eps = EndpointStore(r)
    for bad in ("ftp://a.example/x", "https://user:pw@a.example/x", "not a url", "http:///x", "http://a.example:99999/",
                "http://127.0.0.1:8080/x", "http://169.254.169.254/latest", "http://[::1]/x", "https://10.0.0.8/"):
        with pytest.raises(EndpointError):
            eps.add("acme", bad)
    assert EndpointStore(r, parse_allow(["127.0.0.0/8"])).add("acme", "http://127.0.0.1:8080/x")  # the tests' range
    assert eps.add("acme", "https://93.184.215.14/x")  # a public literal
    with pytest.raises(EndpointError):
        eps.get("acme", "ep_missing")


def test_emit_is_the_one_call_for_any_event_type(r):
    ep = EndpointStore(r).add("acme", "https://a.example/hook")
    assert emit(r, "globex", "scan.reviewed", {"scan_id": "x"}) is None
    msg_id = emit(r, "acme", "scan.reviewed", {"scan_id": "x", "decision": "counterfeit"})
    assert msg_id.startswith("msg_")
    assert emit(r, "acme", "scan.reviewed", {}, event_id=msg_id) is None  # the same id twice: once
    (c,) = Outbox(r).claim(now=10**10, limit=5)
    assert c.endpoint_id == ep.id and Outbox(r).message(msg_id)["type"] == "scan.reviewed"
