"""The real API (uvicorn, `tenderscan api`) on the real Redis (DB 11) and SeaweedFS, through the client.

No workers here: the test checks what the edge leaves behind (the image in S3 with its checksum,
one reference-only task message in the broker's Redis list) and plays the worker's last step itself
(VerdictStore.save_verdict) to see a long-poll wake up. The full path with workers is test_e2e's.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import io
import json
import subprocess
import threading
import time

import pytest
import redis
from PIL import Image

from producer.client import ClientError, TenderscanClient
from tests.integration.conftest import BIN, TENANT_KEYS, start_stack, tenant_clients, wait_until
from workers.core import clock, keys
from workers.core.schemas import InputRef, ScanMessage, Timestamps, Verdict
from workers.core.storage import S3ObjectStore
from workers.core.verdict_store import VerdictStore

pytestmark = pytest.mark.integration


@pytest.fixture()
def stack(tmp_path, seaweedfs):
    stack = start_stack(tmp_path, seaweedfs, workers=0)
    yield stack
    stack.stop()


def jpeg() -> bytes:
    buf = io.BytesIO()
    Image.effect_noise((320, 160), 40).convert("RGB").save(buf, "JPEG")
    return buf.getvalue()


def queued_messages(broker: redis.Redis) -> list[tuple[dict, dict]]:
    """(kombu headers, the task's args[0]) for each message waiting on the scans queue."""
    out = []
    for raw in broker.lrange(keys.QUEUE, 0, -1):
        envelope = json.loads(raw)
        body = envelope["body"]
        if envelope["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args, kwargs, _embed = json.loads(body)
        assert kwargs == {} and len(args) == 1
        out.append((envelope["headers"], args[0]))
    return out


def test_submit_stores_the_image_and_enqueues_only_a_reference(stack):
    broker = redis.Redis.from_url(stack.settings.effective_broker_url)
    objects = S3ObjectStore.from_settings(stack.settings)
    data = jpeg()
    with TenderscanClient(stack.api_url, TENANT_KEYS["acme"]) as client:
        accepted = client.submit(data, "store-9", "pos-2", idempotency_key="int-1")
        assert accepted["status"] == "queued"
        scan_id = accepted["scan_id"]

        [(headers, sent)] = queued_messages(broker)
        msg = ScanMessage.decode(sent)
        assert headers["task"] == keys.TASK_NAME
        assert set(sent) == {f.name for f in dataclasses.fields(ScanMessage)}  # the reference, nothing more
        assert (msg.scan_id, msg.tenant, msg.store_id, msg.terminal_id) == (scan_id, "acme", "store-9", "pos-2")
        assert msg.sha256 == hashlib.sha256(data).hexdigest() and msg.bytes == len(data)

        stored = objects.get(msg.image_key)
        assert stored.data == data
        assert stored.metadata["sha256"] == msg.sha256 and stored.metadata["tenant"] == "acme"
        assert stored.content_type == "image/jpeg"

        # a replay of the same request: same scan, no second message
        assert client.submit(data, "store-9", "pos-2", idempotency_key="int-1")["scan_id"] == scan_id
        assert len(queued_messages(broker)) == 1

        # another tenant cannot see it
        with TenderscanClient(stack.api_url, TENANT_KEYS["globex"]) as other, pytest.raises(ClientError) as info:
            other.get(scan_id)
        assert info.value.status == 404

        # the worker's last step, from outside, while the client long-polls
        verdicts = VerdictStore.from_settings(stack.settings)
        verdict = Verdict(scan_id=scan_id, tenant="acme", store_id="store-9", terminal_id="pos-2",
                          decision="genuine", input=InputRef(msg.image_key, msg.sha256, msg.bytes, 320, 160),
                          timestamps=Timestamps(submitted=msg.submitted_at, completed=clock.utcnow()),
                          confidence=0.99)
        timer = threading.Timer(0.5, verdicts.save_verdict, args=[verdict])
        timer.start()
        start = time.monotonic()
        done = client.wait(scan_id, timeout=20)
        elapsed = time.monotonic() - start
        timer.join()
        assert done["status"] == "done" and done["verdict"]["decision"] == "genuine"
        assert elapsed < 3.0, elapsed


def test_cli_submit_and_status_against_the_real_api(stack, tmp_path):
    path = tmp_path / "bill.jpg"
    path.write_bytes(jpeg())
    env = dict(stack.env, TENDERSCAN_API_URL=stack.api_url, TENDERSCAN_API_KEY=TENANT_KEYS["acme"])
    out = subprocess.run([str(BIN / "tenderscan"), "submit", str(path), "--store", "s1", "--terminal", "t1", "--json"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout)
    assert row["status"] == "queued" and row["file"] == str(path)

    out = subprocess.run([str(BIN / "tenderscan"), "status", row["scan_id"]], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert row["scan_id"] in out.stdout and "queued" in out.stdout


def test_probes_and_refusals_over_real_http(stack):
    import httpx

    assert httpx.get(f"{stack.api_url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{stack.api_url}/readyz")
    assert ready.status_code == 200, ready.text
    with TenderscanClient(stack.api_url, TENANT_KEYS["acme"]) as client, pytest.raises(ClientError) as info:
        client.submit(b"not an image at all", "s1", "t1", content_type="image/jpeg")
    assert (info.value.status, info.value.reason) == (415, "unsupported_format")
    too_big = httpx.post(f"{stack.api_url}/v1/scans", params={"store_id": "s", "terminal_id": "t"},
                         content=b"\xff\xd8\xff" + b"\0" * (stack.settings.max_body_bytes + 1),
                         headers={"Authorization": f"Bearer {TENANT_KEYS['acme']}", "Content-Type": "image/jpeg"})
    assert too_big.status_code == 413


# --- clients that stop sending: a disconnect is not an error, a crawl is a 408 (issue #13, bug 6) --------
BODY_TIMEOUT_S = 2


@pytest.fixture()
def slow_stack(tmp_path, seaweedfs):
    stack = start_stack(tmp_path, seaweedfs, workers=0,
                        extra_env={"TENDERSCAN_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S)})
    yield stack
    stack.stop()


def _raw_post(stack, length: int):
    """A socket that has sent a scan's request line and headers (Content-Length `length`), no body yet."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(stack.api_url)
    sock = socket.create_connection((url.hostname, url.port), timeout=10)
    sock.sendall((f"POST /v1/scans?store_id=store-1&terminal_id=pos-1 HTTP/1.1\r\nHost: {url.netloc}\r\n"
                  f"Authorization: Bearer {TENANT_KEYS['acme']}\r\nContent-Type: image/jpeg\r\n"
                  f"Content-Length: {length}\r\n\r\n").encode())
    return sock


def _api_events(stack) -> list[dict]:
    lines = [line for line in (stack.logs / "api.log").read_text(errors="replace").splitlines() if line.strip()]
    assert [line for line in lines if not line.startswith("{")] == [], "the API printed non-JSON lines"
    return [json.loads(line) for line in lines]


def _aborted(stack, reason: str) -> float:
    import httpx

    text = httpx.get(f"{stack.api_url}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(f'tenderscan_requests_aborted_total{{reason="{reason}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_a_client_that_disconnects_mid_body_is_an_event_not_a_500(slow_stack):
    with tenant_clients(slow_stack):  # the API is ready
        pass
    data = jpeg()
    for _ in range(5):
        sock = _raw_post(slow_stack, len(data))
        sock.sendall(data[: len(data) // 3])
        time.sleep(0.2)
        sock.close()  # gone mid-body, as a POS terminal losing its network
    assert wait_until(lambda: _aborted(slow_stack, "client_disconnected") == 5, 15), \
        (_aborted(slow_stack, "client_disconnected"), slow_stack.services[0].log_tail())
    events = _api_events(slow_stack)
    assert not [e for e in events if e["event"] == "unhandled_error" or e.get("level") == "error"], events[-10:]
    assert len([e for e in events if e["event"] == "client_disconnected"]) == 5
    requests = [e for e in events if e["event"] == "request" and e["path"] == "/v1/scans"]
    assert [(e["status"], e["reason"]) for e in requests] == [(499, "client_disconnected")] * 5
    assert not any(k.endswith(".json") for k in S3ObjectStore.from_settings(slow_stack.settings).list("scans/"))


def test_a_body_slower_than_the_timeout_gets_408_request_timeout(slow_stack):
    """1 byte per 100 ms, for as long as the server lets it: the answer is a 408 with the error
    envelope within BODY_TIMEOUT_S (+ slack), and the connection is closed."""
    with tenant_clients(slow_stack):
        pass
    data = jpeg()
    sock = _raw_post(slow_stack, len(data))
    sock.settimeout(0.1)
    started, answer = time.monotonic(), b""
    try:
        for byte in data:
            if time.monotonic() - started > BODY_TIMEOUT_S + 8:
                break
            try:
                sock.sendall(bytes([byte]))
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if not chunk:
                break
            answer += chunk
            if b"\r\n\r\n" in answer:
                break
        took = time.monotonic() - started
        sock.settimeout(2)
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                answer += chunk
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), (round(took, 1), answer[:300])
    assert took < BODY_TIMEOUT_S + 2
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower()
    assert json.loads(body)["error"] == {"status": 408, "reason": "request_timeout",
                                         "detail": f"the request body did not arrive within {BODY_TIMEOUT_S} s"}
    assert _aborted(slow_stack, "request_timeout") == 1
    events = _api_events(slow_stack)
    [timeout] = [e for e in events if e["event"] == "request_timeout"]
    assert timeout["timeout_s"] == BODY_TIMEOUT_S and not [e for e in events if e["event"] == "unhandled_error"]
