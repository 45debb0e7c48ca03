"""The delivery loop's decisions, on the real Redis with a stand-in receiver (the `send` parameter)."""

import threading
import time

import pytest

from producer.client import verify
from workers.core import keys
from workers.core.schemas import WebhookEvent
from workers.core.telemetry import REGISTRY
from workers.core.verdict_store import redis_client
from workers.webhooks.backoff import Backoff
from workers.webhooks.deliverer import Deliverer
from workers.webhooks.endpoints import EndpointStore
from workers.webhooks.outbox import Outbox
from workers.webhooks.sender import Attempt


class Receiver:
    """Answers `statuses` in turn (then 200) and verifies every request it gets."""

    def __init__(self, secret, statuses=()):
        self.secret, self.statuses, self.got = secret, list(statuses), []

    def __call__(self, url, body, headers, timeout_s, allow):
        # the deliverer's clock is the test's: check the signature at the time it was made
        self.got.append((headers, verify(self.secret, headers, body, now=int(headers["webhook-timestamp"]))))
        status = self.statuses.pop(0) if self.statuses else 200
        return Attempt(status == 200, status, None if status == 200 else "http_status", "", 1.0)


@pytest.fixture()
def setup(clean_redis):
    r = redis_client(clean_redis)
    ep = EndpointStore(r).add("acme", "https://hooks.example/x")
    clock = {"now": 1000.0}
    box = Outbox(r)

    def deliverer(receiver, **kw):
        return Deliverer(box, EndpointStore(r), Backoff(base_s=1, cap_s=10, window_s=100), now=lambda: clock["now"],
                         rand=lambda: 1.0, send=receiver, **kw)
    box.emit([WebhookEvent("msg_1", "acme", "scan.completed", "2026-12-02T00:00:00.000000Z", {"x": 1})], now=1000)
    return r, ep, box, clock, deliverer


def test_failures_are_retried_with_backoff_under_the_same_id_then_delivered(setup):
    r, ep, box, clock, deliverer = setup
    rec = Receiver(ep.secrets[0].value, [500, 503])
    d = deliverer(rec)
    before = {k: delivered(*k) for k in (("retrying", "http_status"), ("delivered", ""))}
    outcomes = []
    for now in (1000, 1001, 1003):  # due after 1 s, then 2 s (rand = 1: the ceiling)
        clock["now"] = now
        (c,) = box.claim(now, 5)
        outcomes.append(d.deliver(c))
    assert outcomes == ["retrying", "retrying", "delivered"]
    assert {h["webhook-id"] for h, _ in rec.got} == {"msg_1"}
    assert rec.got[0][1]["data"] == {"x": 1} and rec.got[0][1]["type"] == "scan.completed"
    log = box.log("acme", ep.id)
    assert [(x["outcome"], x["attempt"], x["status"]) for x in log] == [
        ("delivered", 3, 200), ("retrying", 2, 503), ("retrying", 1, 500)]
    assert box.pending() == 0
    for outcome, reason, n in (("retrying", "http_status", 2), ("delivered", "", 1)):
        assert delivered(outcome, reason) - before[(outcome, reason)] == n  # the Prometheus count


def test_a_delivered_event_records_its_lag_from_the_event_timestamp(setup):
    r, ep, box, clock, deliverer = setup
    lag = {"type": "scan.completed"}
    count = REGISTRY.get_sample_value("tenderscan_webhook_delivery_lag_seconds_count", lag) or 0
    total = REGISTRY.get_sample_value("tenderscan_webhook_delivery_lag_seconds_sum", lag) or 0
    happened = 1796169600.0  # the fixture's event timestamp, 2026-12-02T00:00:00Z
    clock["now"] = happened + 42.5
    (c,) = box.claim(clock["now"], 5)
    d = deliverer(Receiver(ep.secrets[0].value, [500]))
    assert d.deliver(c) == "retrying"  # a failed attempt observes no lag
    assert (REGISTRY.get_sample_value("tenderscan_webhook_delivery_lag_seconds_count", lag) or 0) == count
    clock["now"] = happened + 100.0
    (c,) = box.claim(clock["now"], 5)
    assert d.deliver(c) == "delivered"
    assert REGISTRY.get_sample_value("tenderscan_webhook_delivery_lag_seconds_count", lag) == count + 1
    assert REGISTRY.get_sample_value("tenderscan_webhook_delivery_lag_seconds_sum", lag) - total == pytest.approx(100.0)
    assert box.log("acme", ep.id)[0]["lag_ms"] == 100000.0


def delivered(outcome, reason):
    return REGISTRY.get_sample_value("tenderscan_webhook_deliveries_total", {"outcome": outcome, "reason": reason}) or 0


def test_given_up_after_the_retry_window(setup):
    r, ep, box, clock, deliverer = setup
    d = deliverer(Receiver(ep.secrets[0].value, [500] * 100), disable_after_s=10**6)
    outcomes = []
    while box.pending():
        clock["now"] = r.zrange(keys.WEBHOOK_DUE_KEY, 0, 0, withscores=True)[0][1]  # the next due time
        (c,) = box.claim(clock["now"], 1)
        outcomes.append(d.deliver(c))
    # 1 + 2 + 4 + 8 + 10 * 8 = 95 s of waits fit in the 100 s window; the next would not
    assert outcomes == ["retrying"] * 12 + ["gave_up"] and clock["now"] - 1000 <= 100


def test_an_endpoint_failing_too_long_is_disabled_and_parks_until_enabled(setup):
    r, ep, box, clock, deliverer = setup
    d = deliverer(Receiver(ep.secrets[0].value, [500, 500]), disable_after_s=5)
    (c,) = box.claim(1000, 1)
    assert d.deliver(c) == "retrying"
    clock["now"] = 1006
    (c,) = box.claim(1006, 1)
    assert d.deliver(c) == "parked"
    box.emit([WebhookEvent("msg_2", "acme", "scan.completed", "2026-12-02T00:00:00.000000Z", {})], now=1007)
    (c,) = box.claim(1007, 1)
    assert d.deliver(c) == "parked"  # a disabled endpoint gets nothing, loses nothing
    assert box.state("acme", ep.id)["parked"] == 2
    assert box.enable("acme", ep.id, 1010) == 2
    clock["now"] = 1010
    assert sorted(d.deliver(c) for c in box.claim(1010, 5)) == ["delivered", "delivered"]


def test_during_a_rotation_both_secrets_verify(setup):
    r, ep, box, clock, deliverer = setup
    old = ep.secrets[0].value
    new = EndpointStore(r).rotate("acme", ep.id, overlap_s=60, now=990).secrets[0].value
    rec_old, rec_new = Receiver(old), Receiver(new)
    (c,) = box.claim(1000, 1)
    assert deliverer(lambda *a: (rec_old(*a), rec_new(*a))[1]).deliver(c) == "delivered"
    assert len(rec_old.got[0][0]["webhook-signature"].split()) == 2


def test_a_removed_endpoint_or_an_expired_event_is_dropped(setup):
    r, ep, box, clock, deliverer = setup
    EndpointStore(r).remove("acme", ep.id)
    (c,) = box.claim(1000, 1)
    assert deliverer(Receiver("whsec_AAAA")).deliver(c) == "dropped"
    assert box.pending() == 0


def test_run_drains_until_stopped(setup):
    r, ep, box, clock, deliverer = setup
    rec = Receiver(ep.secrets[0].value)
    d = deliverer(rec, poll_s=0.01)
    d.now = time.time
    stop = threading.Event()
    t = threading.Thread(target=d.run, args=(stop,))
    t.start()
    deadline = time.monotonic() + 5
    while box.pending() and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    t.join(5)
    assert not t.is_alive() and len(rec.got) == 1 and box.pending() == 0


def test_a_hanging_endpoint_holds_at_most_per_endpoint_threads_and_others_go_on(clean_redis):
    r = redis_client(clean_redis)
    eps = EndpointStore(r)
    slow, fast = eps.add("acme", "https://slow.example/x"), eps.add("globex", "https://fast.example/x")
    box = Outbox(r)
    box.emit([WebhookEvent(f"msg_a{i}", "acme", "scan.completed", "2026-12-02T00:00:00.000000Z", {}) for i in range(6)],
             now=time.time() - 1)  # acme's events are due first
    box.emit([WebhookEvent("msg_g", "globex", "scan.completed", "2026-12-02T00:00:00.000000Z", {})], now=time.time())
    gate, lock = threading.Event(), threading.Lock()
    seen = {"slow_now": 0, "slow_max": 0, "fast": 0}

    def send(url, body, headers, timeout_s, allow):
        if "slow" in url:
            with lock:
                seen["slow_now"] += 1
                seen["slow_max"] = max(seen["slow_max"], seen["slow_now"])
            gate.wait(10)
            with lock:
                seen["slow_now"] -= 1
        else:
            seen["fast"] += 1
        return Attempt(True, 200, None, "", 1.0)

    d = Deliverer(box, eps, concurrency=4, poll_s=0.01, per_endpoint=2, send=send)
    stop = threading.Event()
    t = threading.Thread(target=d.run, args=(stop,))
    t.start()
    try:
        deadline = time.monotonic() + 5
        while seen["fast"] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert seen["fast"] == 1 and seen["slow_max"] == 2  # globex went by while acme's receiver hung
    finally:
        gate.set()
        deadline = time.monotonic() + 10
        while box.pending() and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        t.join(10)
    assert box.pending() == 0 and seen["slow_max"] == 2
    attempts = [rec["attempt"] for rec in box.log("acme", slow.id)]
    assert sorted(attempts) == [1] * 6  # handing a claim back spent no attempt
    assert [rec["outcome"] for rec in box.log("globex", fast.id)] == ["delivered"]


def test_a_busy_endpoint_waits_for_its_own_attempts_not_for_the_poll(clean_redis):
    """One endpoint, many events due at once, a receiver answering in 5 ms: the per-endpoint cap (2 in
    flight) hands the rest back, and they go as soon as a thread frees, not one poll interval (here 1 s)
    at a time: 40 events, at most 2 per turn, would take 20 s that way."""
    r = redis_client(clean_redis)
    EndpointStore(r).add("acme", "https://hooks.example/x")
    box = Outbox(r)
    box.emit([WebhookEvent(f"msg_b{i}", "acme", "scan.completed", "2026-12-02T00:00:00.000000Z", {})
              for i in range(40)], now=time.time())
    got = []

    def send(url, body, headers, timeout_s, allow):
        time.sleep(0.005)
        got.append(headers["webhook-id"])
        return Attempt(True, 200, None, "", 5.0)

    d = Deliverer(box, EndpointStore(r), poll_s=1.0, send=send)
    stop = threading.Event()
    t = threading.Thread(target=d.run, args=(stop,))
    started = time.monotonic()
    t.start()
    while box.pending() and time.monotonic() - started < 15:
        time.sleep(0.01)
    took = time.monotonic() - started
    stop.set()
    t.join(5)
    assert len(set(got)) == 40 and box.pending() == 0
    assert took < 4.0, f"40 deliveries to one endpoint took {took:.1f} s"
