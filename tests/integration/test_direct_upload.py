"""Direct upload on the real services: SeaweedFS enforcing our POST policies, then the real API and a
real `celery worker` judging scans submitted by reference (producer/uploads.py, workers/runtime/pipeline.py).

Every policy condition we rely on is tried against the server: a check SeaweedFS skipped would let
a device write what the grant did not allow. What it does not enforce is in docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import time

import httpx
import pytest
from PIL import Image

from producer.client import ClientError
from tests.integration.conftest import start_stack, tenant_clients, wait_until
from workers.core import schemas
from workers.core.enums import judged
from workers.core.errors import ObjectNotFound
from workers.core.storage import S3ObjectStore

pytestmark = pytest.mark.integration


def image(fmt: str = "JPEG", shade: int = 10) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (240, 108), (shade, 120, 60)).save(buf, fmt)
    return buf.getvalue()


# --- what SeaweedFS enforces ----------------------------------------------------------------------
@pytest.fixture()
def store(s3_settings, seaweedfs) -> S3ObjectStore:
    """Presigned with a public endpoint distinct from the internal one (localhost vs 127.0.0.1)."""
    public = seaweedfs.extra["endpoint"].replace("127.0.0.1", "localhost")
    return S3ObjectStore.from_settings(s3_settings.with_(s3_public_endpoint_url=public))


def post(grant, data: bytes, content_type: str | None = None, **changes) -> httpx.Response:
    fields = dict(grant.fields, **changes)
    return httpx.post(grant.url, data=fields, files={"file": ("scan", data, content_type or fields["Content-Type"])})


def s3_code(resp: httpx.Response) -> str:
    return resp.text.split("<Code>")[1].split("</Code>")[0] if "<Code>" in resp.text else resp.text[:80]


def test_a_grant_names_the_public_endpoint_and_its_upload_lands(store, seaweedfs):
    key = "uploads/tenant=acme/" + schemas.new_scan_id()
    grant = store.presigned_post(key, "image/jpeg", 1, 100_000, 60)
    assert grant.url.startswith(seaweedfs.extra["endpoint"].replace("127.0.0.1", "localhost"))
    assert grant.fields["x-amz-algorithm"] == "AWS4-HMAC-SHA256"  # SigV4, not boto3's SigV2 default
    data = image()
    assert post(grant, data).status_code == 204
    info = store.stat(key)
    assert (info.size, info.content_type) == (len(data), "image/jpeg")
    assert store.get(key).data == data


def _forged_policy(grant, high: int) -> str:
    policy = json.loads(base64.b64decode(grant.fields["policy"]))
    policy["conditions"] = [["content-length-range", 1, high] if isinstance(c, list) and c[0] == "content-length-range"
                            else c for c in policy["conditions"]]
    return base64.b64encode(json.dumps(policy).encode()).decode()


@pytest.mark.parametrize(("case", "status", "code"), [
    ("too_large", 400, "EntityTooLarge"),
    ("too_small", 400, "EntityTooSmall"),
    ("other_content_type", 403, "AccessDenied"),
    ("other_key", 403, "AccessDenied"),
    ("tampered_signature", 403, "SignatureDoesNotMatch"),
    ("widened_policy", 403, "SignatureDoesNotMatch"),
    ("extra_field", 403, "AccessDenied"),
])
def test_seaweedfs_refuses_what_the_policy_does_not_allow(store, case, status, code):
    key = "uploads/tenant=acme/" + schemas.new_scan_id()
    grant = store.presigned_post(key, "image/jpeg", 1000, 2000, 60)
    data = b"\xff\xd8\xff" + b"x" * 1500
    resp = {
        "too_large": lambda: post(grant, b"\xff\xd8\xff" + b"x" * 2500),
        "too_small": lambda: post(grant, b"\xff\xd8\xff"),
        "other_content_type": lambda: post(grant, data, **{"Content-Type": "text/html"}),
        "other_key": lambda: post(grant, data, key="uploads/tenant=globex/" + schemas.new_scan_id()),
        "tampered_signature": lambda: post(grant, data, **{"x-amz-signature": "0" * 64}),
        "widened_policy": lambda: post(grant, b"\xff\xd8\xff" + b"x" * 5000, policy=_forged_policy(grant, 10**9)),
        "extra_field": lambda: post(grant, data, **{"x-amz-meta-sha256": "a" * 64}),
    }[case]()
    assert (resp.status_code, s3_code(resp)) == (status, code)
    with pytest.raises(ObjectNotFound):
        store.stat(key)


def test_an_expired_grant_is_refused(store):
    key = "uploads/tenant=acme/" + schemas.new_scan_id()
    grant = store.presigned_post(key, "image/jpeg", 1, 100_000, 1)
    time.sleep(2.2)
    resp = post(grant, image())
    assert (resp.status_code, s3_code(resp)) == (403, "AccessDenied") and "expired" in resp.text.lower()
    with pytest.raises(ObjectNotFound):
        store.stat(key)


def test_a_grant_can_be_reused_until_it_expires(store):
    """Not enforced (as on AWS): the same policy overwrites its key. The worker's checks cover it."""
    key = "uploads/tenant=acme/" + schemas.new_scan_id()
    grant = store.presigned_post(key, "image/jpeg", 1, 100_000, 60)
    first, second = image(shade=10), image(shade=200)
    assert post(grant, first).status_code == 204 and post(grant, second).status_code == 204
    assert store.get(key).data == second


# --- the whole path: API, SeaweedFS, a real worker ------------------------------------------------
@pytest.fixture(scope="module")
def stack(tmp_path_factory, seaweedfs):
    stack = start_stack(tmp_path_factory.mktemp("direct"), seaweedfs, workers=0,
                        extra_env={"TENDERSCAN_S3_PUBLIC_ENDPOINT_URL":
                                   seaweedfs.extra["endpoint"].replace("127.0.0.1", "localhost")})
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def clients(stack):
    with tenant_clients(stack) as made:
        yield made


def test_scans_by_reference_are_judged_and_what_changed_is_rejected(stack, clients):
    acme = clients["acme"]
    ids = {"store_id": "store-1", "terminal_id": "pos-1"}
    scans = {"good": acme.submit_direct(image(), **ids)}
    # the device declares a checksum the bytes do not have
    data = image(shade=40)
    grant = acme.request_upload("image/jpeg", size=len(data))
    acme.upload(grant, data)
    scans["checksum"] = acme.submit_reference(grant["upload_id"], hashlib.sha256(b"other").hexdigest(), **ids)
    # PNG bytes under an image/jpeg grant: S3 stores them as image/jpeg
    png = image("PNG")
    grant = acme.request_upload("image/jpeg")
    acme.upload(grant, png)
    scans["type"] = acme.submit_reference(grant["upload_id"], hashlib.sha256(png).hexdigest(), **ids)
    # accepted, then overwritten through the same (still valid) grant with other bytes
    data = image(shade=90)
    grant = acme.request_upload("image/jpeg")
    acme.upload(grant, data)
    scans["size"] = acme.submit_reference(grant["upload_id"], hashlib.sha256(data).hexdigest(), **ids)
    acme.upload(grant, data + b"\x00" * 100)
    # the same upload again: the same scan
    assert acme.submit_reference(grant["upload_id"], hashlib.sha256(data).hexdigest(), **ids)["scan_id"] \
        == scans["size"]["scan_id"]

    stack.start_worker()  # only now: every object above is what the worker will find
    done = {name: acme.wait(s["scan_id"], timeout=120)["verdict"] for name, s in scans.items()}
    assert judged(done["good"]["decision"], done["good"].get("reason"))
    assert done["good"]["input"]["key"].startswith("uploads/tenant=acme/")
    assert {name: (v["decision"], v["reason"]) for name, v in done.items() if name != "good"} == {
        "checksum": ("rejected", "checksum_mismatch"), "type": ("rejected", "type_mismatch"),
        "size": ("rejected", "size_mismatch")}
    store = S3ObjectStore.from_settings(stack.settings)
    intents = [k for k in store.list("scans/dt=") if k.endswith(".json")]
    assert len(intents) == len(scans) and not [k for k in store.list("scans/") if not k.endswith(".json")]
    # the audit record follows the verdict in Redis (which the poll reads) by the PUT's time
    assert wait_until(lambda: len([k for k in store.list("verdicts/") if "tenant=acme" in k]) == len(scans), 30)


def test_a_device_cannot_reach_another_tenants_upload(stack, clients):
    data = image(shade=60)
    grant = clients["acme"].request_upload("image/jpeg", size=len(data))
    clients["acme"].upload(grant, data)
    with pytest.raises(ClientError) as err:
        clients["globex"].submit_reference(grant["upload_id"], hashlib.sha256(data).hexdigest(), "s", "t")
    assert (err.value.status, err.value.reason) == (422, "upload_missing")
    with pytest.raises(ClientError) as err:  # nor upload past its grant's size
        clients["acme"].upload(clients["acme"].request_upload("image/jpeg", size=10), data)
    assert (err.value.status, err.value.detail) == (400, "EntityTooLarge")
