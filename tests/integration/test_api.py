"""The real API (uvicorn, `tenderscan api`) on the real Redis (DB 11) and SeaweedFS, through the client.

No workers here: the test checks what the edge leaves behind (the image in S3 with its checksum,
one reference-only task message in the broker's Redis list) and plays the worker's last step itself
(VerdictStore.save_verdict) to see a long-poll wake up. The full path with workers is test_e2e's.
"""

from __future__ import annotations

import base64
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
from tests.integration.conftest import BIN, TENANT_KEYS, start_stack
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
