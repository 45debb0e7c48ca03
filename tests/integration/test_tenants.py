"""Tenants on the real stack: the cross-tenant matrix, key revocation, rate and in-flight limits.

The real API (`tenderscan api`, uvicorn) on the real Redis (DB 14) and SeaweedFS; tenants and keys are
made with the real CLI (`tenderscan tenant ...` subprocesses, same environment). No workers: the test
plays the worker's last step (VerdictStore.save_verdict) where it needs a verdict.

The matrix: every tenant-scoped endpoint x {own, other tenant's, unknown, no key, revoked key}, called
as tenant `acme`. For a GET the "id" is the scan id; for a POST it is what the request refers to:
the Idempotency-Key (scans, batch: another tenant's key must never replay their scan), the upload id
(submit by reference: another tenant's upload is simply not there), or for POST /v1/uploads a body
that names another tenant or an upload id (ignored: the key comes from the server, under the caller's
own prefix).

    endpoint                    own        other              unknown            no key  revoked
    GET  /v1/scans/{id}         200        404 not_found      404 not_found      401     401 key_revoked
    GET  /v1/scans/{id}?wait=1  200        404 not_found      404 not_found      401     401 key_revoked
    POST /v1/scans              202 replay 202 new scan       202 new scan       401     401 key_revoked
    POST /v1/scans:batch        200 replay 200 new scans      200 new scans      401     401 key_revoked
    POST /v1/scans (reference)  202        422 upload_missing 422 upload_missing 401     401 key_revoked
    POST /v1/uploads            201        201 own prefix     201 fresh id       401     401 key_revoked
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import time
from dataclasses import dataclass

import httpx
import pytest
from PIL import Image

from producer.tenants import key_id
from tests.integration.conftest import BIN, start_stack, wait_until
from workers.core import schemas
from workers.core.schemas import InputRef, Timestamps, Verdict
from workers.core.verdict_store import VerdictStore

pytestmark = pytest.mark.integration
SECRET = "integration-key-hmac-secret-0123456789"


def jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (96, 64), (seed % 256, 40, 90)).save(buf, "JPEG")
    return buf.getvalue()


def cli(stack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "tenderscan"), "tenant", *args], env=stack.env, capture_output=True,
                          text=True, timeout=60)


def new_tenant(stack, tenant: str, *flags: str) -> str:
    done = cli(stack, "create", tenant, *flags)
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip()
    assert key.startswith("tsk_") and key not in done.stderr  # the key alone on stdout, once
    return key


def auth(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


@dataclass
class World:
    stack: object
    http: httpx.Client
    keys: dict[str, str | None]  # "own", "revoked", "other", "none"
    scan: dict[str, str]  # whose -> scan id
    idem: dict[str, str]  # whose -> Idempotency-Key of that scan
    batch: dict[str, tuple[str, list[str]]]  # whose -> (batch key, scan ids)
    upload: dict[str, tuple[str, str]]  # whose -> (upload id, sha256)


def submit(http, key, data: bytes, idem: str | None = None) -> httpx.Response:
    headers = {**auth(key), "Content-Type": "image/jpeg", **({"Idempotency-Key": idem} if idem else {})}
    return http.post("/v1/scans", params={"store_id": "s1", "terminal_id": "t1"}, content=data, headers=headers)


def submit_batch(http, key, idem: str, n: int = 2) -> httpx.Response:
    files = [("image", (f"b{i}.jpg", jpeg(100 + i), "image/jpeg")) for i in range(n)]
    return http.post("/v1/scans:batch", params={"store_id": "s1", "terminal_id": "t1"}, files=files,
                     headers={**auth(key), "Idempotency-Key": idem})


def direct_upload(http, key) -> tuple[str, str]:
    data = jpeg(7)
    resp = http.post("/v1/uploads", json={"content_type": "image/jpeg", "bytes": len(data)}, headers=auth(key))
    assert resp.status_code == 201, resp.text
    grant = resp.json()
    sent = httpx.post(grant["url"], data=grant["fields"], files={"file": ("scan.jpg", data, "image/jpeg")})
    assert sent.status_code in (200, 201, 204), sent.text
    return grant["upload_id"], hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def world(tmp_path_factory, seaweedfs):
    stack = start_stack(tmp_path_factory.mktemp("tenants"), seaweedfs, workers=0,
                        extra_env={"TENDERSCAN_KEY_HMAC_SECRET": SECRET, "TENDERSCAN_TENANT_REFRESH_S": "1"})
    try:
        revoked = new_tenant(stack, "acme")
        added = cli(stack, "key-add", "acme")
        assert added.returncode == 0, added.stderr
        own = added.stdout.strip()
        assert cli(stack, "key-revoke", "acme", key_id(revoked)).returncode == 0
        other = new_tenant(stack, "globex")
        http = httpx.Client(base_url=stack.api_url, timeout=30)
        assert wait_until(lambda: http.get(f"/v1/scans/{'0' * 32}", headers=auth(other)).status_code == 404, 10)
        keys = {"own": own, "revoked": revoked, "other": other, "none": None}
        w = World(stack, http, keys, {}, {}, {}, {})
        for whose, key in (("own", own), ("other", other)):
            w.idem[whose] = f"idem-{whose}-1"
            resp = submit(http, key, jpeg(1 if whose == "own" else 2), w.idem[whose])
            assert resp.status_code == 202, resp.text
            w.scan[whose] = resp.json()["scan_id"]
            resp = submit_batch(http, key, f"batch-{whose}-1")
            assert resp.status_code == 200 and resp.json()["accepted"] == 2, resp.text
            w.batch[whose] = (f"batch-{whose}-1", [item["scan_id"] for item in resp.json()["items"]])
            w.upload[whose] = direct_upload(http, key)
        yield w
        http.close()
    finally:
        stack.stop()


CELLS = ["own", "other", "unknown", "no_key", "revoked"]
ENDPOINTS = ["GET /v1/scans/{id}", "GET /v1/scans/{id}?wait=1", "POST /v1/scans", "POST /v1/scans:batch",
             "POST /v1/scans (reference)", "POST /v1/uploads"]
EXPECTED = {  # endpoint -> status for own, other, unknown (no key: 401 unauthorized; revoked: 401 key_revoked)
    "GET /v1/scans/{id}": (200, 404, 404),
    "GET /v1/scans/{id}?wait=1": (200, 404, 404),
    "POST /v1/scans": (202, 202, 202),
    "POST /v1/scans:batch": (200, 200, 200),
    "POST /v1/scans (reference)": (202, 422, 422),
    "POST /v1/uploads": (201, 201, 201),
}


def call(w: World, endpoint: str, cell: str) -> httpx.Response:
    key = {"no_key": None, "revoked": w.keys["revoked"]}.get(cell, w.keys["own"])
    ref = "own" if cell in ("own", "no_key", "revoked") else cell  # what the request refers to
    http = w.http
    if endpoint.startswith("GET"):
        scan_id = w.scan.get(ref) or schemas.new_scan_id()
        params = {"wait": 1} if "wait" in endpoint else {}
        return http.get(f"/v1/scans/{scan_id}", params=params, headers=auth(key))
    if endpoint == "POST /v1/scans":
        idem = w.idem.get(ref) or f"fresh-{schemas.new_scan_id()[:12]}"
        return submit(http, key, jpeg(1 if ref == "own" else 2), idem)  # the same bytes the owner sent
    if endpoint == "POST /v1/scans:batch":
        idem = w.batch[ref][0] if ref in w.batch else f"fresh-{schemas.new_scan_id()[:12]}"
        return submit_batch(http, key, idem)
    if endpoint == "POST /v1/scans (reference)":
        upload_id, sha = w.upload.get(ref) or (schemas.new_scan_id(), "0" * 64)
        return http.post("/v1/scans", json={"upload_id": upload_id, "sha256": sha, "store_id": "s1",
                                            "terminal_id": "t1"}, headers=auth(key))
    if endpoint == "POST /v1/uploads":
        body = {"content_type": "image/jpeg"}
        if cell == "other":
            body["tenant"] = "globex"  # ignored: the tenant comes from the key
        if cell == "unknown":
            body["upload_id"] = schemas.new_scan_id()  # ignored: the server chooses the id
        return http.post("/v1/uploads", json=body, headers=auth(key))
    raise AssertionError(endpoint)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_cross_tenant_matrix(world, endpoint, cell):
    resp = call(world, endpoint, cell)
    if cell in ("no_key", "revoked"):
        assert resp.status_code == 401, resp.text
        assert resp.json()["error"]["reason"] == ("unauthorized" if cell == "no_key" else "key_revoked")
        assert resp.headers["WWW-Authenticate"] == "Bearer"
        return
    expected = EXPECTED[endpoint][CELLS.index(cell)]
    assert resp.status_code == expected, resp.text
    body = resp.json()
    theirs = set([world.scan["other"], *world.batch["other"][1]])
    if endpoint.startswith("GET"):
        if cell == "own":
            assert body["scan_id"] == world.scan["own"] and body["status"] == "queued"
        else:
            assert body["error"]["reason"] == "not_found"
            assert body["error"]["detail"] == "no such scan"  # foreign and unknown read the same
    elif endpoint == "POST /v1/scans":
        replayed = resp.headers.get("Idempotent-Replayed") == "true"
        assert replayed == (cell == "own")
        assert (body["scan_id"] == world.scan["own"]) == (cell == "own")
        assert body["scan_id"] not in theirs
    elif endpoint == "POST /v1/scans:batch":
        ids = [item["scan_id"] for item in body["items"]]
        assert [item["replayed"] for item in body["items"]] == [cell == "own"] * 2
        assert (ids == world.batch["own"][1]) == (cell == "own")
        assert not set(ids) & theirs
    elif endpoint == "POST /v1/scans (reference)":
        if cell == "own":
            assert schemas.is_scan_id(body["scan_id"]) and body["scan_id"] not in theirs
        else:
            assert body["error"]["reason"] == "upload_missing"
    elif endpoint == "POST /v1/uploads":
        assert "tenant=acme/" in body["fields"]["key"] and "tenant=globex" not in json.dumps(body)
        assert body["upload_id"] != (world.upload["other"][0])


def test_the_matrix_covers_every_tenant_scoped_route(world):
    """A new endpoint must join the matrix: every route behind require_tenant is listed here."""
    from producer.routes import require_tenant, router

    scoped = set()
    for route in router.routes:
        if any(dep.call is require_tenant for dep in route.dependant.dependencies):
            scoped |= {f"{m} {route.path}" for m in route.methods}
    covered = {e.split(" (")[0].split("?")[0].replace("{id}", "{scan_id}") for e in ENDPOINTS}
    assert scoped <= covered, scoped - covered


# --- keys and limits on the real API ----------------------------------------------------------------
def test_revocation_takes_effect_within_the_refresh_interval_and_list_shows_it(world):
    stack, http = world.stack, world.http
    added = cli(stack, "key-add", "globex")
    key = added.stdout.strip()
    assert wait_until(lambda: submit(http, key, jpeg(3)).status_code == 202, 10)  # seen after a refresh
    listed = cli(stack, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["key_id"]: row for row in json.loads(listed.stdout)["keys"]}
    assert rows[key_id(key)]["last_used_at"] and rows[key_id(key)]["revoked_at"] is None
    assert rows[key_id(world.keys["revoked"])]["revoked_at"]
    for secret in (key, world.keys["own"], world.keys["other"]):
        assert secret not in listed.stdout and secret[12:] not in listed.stdout  # ids only, never a key
    assert "digest" not in listed.stdout
    assert cli(stack, "key-revoke", "globex", key_id(key)).returncode == 0
    revoked_at = time.monotonic()
    assert wait_until(lambda: submit(http, key, jpeg(3)).status_code == 401, 5)  # TENANT_REFRESH_S=1 + a read
    assert time.monotonic() - revoked_at < 5
    assert submit(http, world.keys["other"], jpeg(4)).status_code == 202  # the tenant's other key still works
    table = cli(stack, "list")
    assert table.returncode == 0 and "TENANT" in table.stdout and key_id(key) in table.stdout


def test_rate_limit_is_429_with_retry_after(world):
    key = new_tenant(world.stack, "slow", "--rate", "0.2", "--burst", "2")
    http = world.http
    assert wait_until(lambda: http.get(f"/v1/scans/{'0' * 32}", headers=auth(key)).status_code != 401, 10)
    codes = [http.get(f"/v1/scans/{'0' * 32}", headers=auth(key)) for _ in range(3)]
    refused = codes[-1]
    assert refused.status_code == 429 and refused.json()["error"]["reason"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 5
    assert http.get(f"/v1/scans/{'0' * 32}", headers=auth(world.keys["own"])).status_code == 404  # others go on


def test_in_flight_limit_holds_until_a_verdict_lands(world):
    key = new_tenant(world.stack, "busy", "--max-in-flight", "2")
    http = world.http
    assert wait_until(lambda: http.get(f"/v1/scans/{'0' * 32}", headers=auth(key)).status_code == 404, 10)
    first = submit(http, key, jpeg(10))
    assert first.status_code == 202 and submit(http, key, jpeg(11)).status_code == 202
    refused = submit(http, key, jpeg(12))
    assert refused.status_code == 429 and refused.json()["error"]["reason"] == "too_many_in_flight"
    assert refused.headers["Retry-After"] == "2"
    verdicts = VerdictStore.from_settings(world.stack.settings)
    scan = verdicts.get_scan(first.json()["scan_id"])
    assert scan["tenant"] == "busy"
    verdicts.save_verdict(Verdict(first.json()["scan_id"], "busy", "s1", "t1", "genuine",  # the worker's last step
                                  InputRef(scan["image_key"], "0" * 64, 1), Timestamps(scan["submitted_at"])))
    assert submit(http, key, jpeg(12)).status_code == 202
