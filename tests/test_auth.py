"""API keys -> tenants, and tenant isolation on every endpoint, both directions."""

from __future__ import annotations

import hashlib
import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from structlog.testing import capture_logs

from producer.auth import authenticate, bearer_key, key_hash, tenant_for_key
from producer.cli import main as cli_main
from producer.errors import ApiError
from workers.core.settings import Settings, parse_api_keys

KEYS = {"acme": "key-acme-1", "globex": "key-globex-1"}
API_KEYS = {hashlib.sha256(k.encode()).hexdigest(): t for t, k in KEYS.items()}


def auth(tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[tenant]}"}


@pytest.fixture()
def settings(clean_redis) -> Settings:
    return Settings().with_(redis_url=clean_redis, api_keys=API_KEYS)


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (48, 48), (1, 2, 3)).save(buf, "PNG")
    return buf.getvalue()


def submit(api, tenant: str, data: bytes | None = None, **headers):
    return api.post("/v1/scans", params={"store_id": "s1", "terminal_id": "t1"}, content=data or png(),
                    headers={**auth(tenant), "Content-Type": "image/png", **headers})


# --- the functions ---------------------------------------------------------------------------------
def test_key_hash_is_sha256_hex():
    assert key_hash("abc") == hashlib.sha256(b"abc").hexdigest()


def test_tenant_for_key():
    assert tenant_for_key("key-acme-1", API_KEYS) == "acme"
    assert tenant_for_key("key-globex-1", API_KEYS) == "globex"
    assert tenant_for_key("key-acme-2", API_KEYS) is None
    assert tenant_for_key("key-acme-1", {}) is None
    assert tenant_for_key(next(iter(API_KEYS)), API_KEYS) is None  # the hash is not a key


@pytest.mark.parametrize(("header", "key"), [
    ("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("Basic abc", None), ("Bearer", None), ("", None),
    (None, None), ("Bearer " + "x" * 600, None),
])
def test_bearer_key(header, key):
    assert bearer_key(header) == key


@given(st.one_of(st.none(), st.text(max_size=80)))
def test_any_header_is_a_tenant_or_a_401(header):
    try:
        assert authenticate(header, API_KEYS) in KEYS
    except ApiError as exc:
        assert exc.status == 401


def test_authenticate_raises_401_with_www_authenticate():
    with pytest.raises(ApiError) as info:
        authenticate("Bearer nope", API_KEYS)
    assert info.value.status == 401 and info.value.headers == {"WWW-Authenticate": "Bearer"}


def test_keyhash_command_output_configures_a_working_key(capsys):
    assert cli_main(["keyhash", "s3cret", "--tenant", "initech"]) == 0
    digest, entry = capsys.readouterr().out.strip().splitlines()
    assert digest == key_hash("s3cret")
    configured = parse_api_keys(entry.split(": ", 1)[1])
    assert authenticate("Bearer s3cret", configured) == "initech"


# --- over HTTP -------------------------------------------------------------------------------------
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic a2V5"},
                                     {"Authorization": "key-acme-1"}])
@pytest.mark.parametrize(("method", "path"), [("POST", "/v1/scans"), ("GET", "/v1/scans/" + "0" * 32)])
def test_missing_or_bad_key_is_401_everywhere(api, deps, headers, method, path):
    resp = api.request(method, path, params={"store_id": "s1", "terminal_id": "t1"}, content=png(),
                       headers={"Content-Type": "image/png", **headers})
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert resp.json()["error"]["reason"] == "unauthorized"
    assert deps.enqueuer.sent == []


@pytest.mark.parametrize(("owner", "other"), [("acme", "globex"), ("globex", "acme")])
def test_a_tenant_cannot_read_another_tenants_scan(api, deps, owner, other):
    scan_id = submit(api, owner).json()["scan_id"]
    assert api.get(f"/v1/scans/{scan_id}", headers=auth(owner)).status_code == 200
    theirs = api.get(f"/v1/scans/{scan_id}", headers=auth(other))
    unknown = api.get(f"/v1/scans/{'f' * 32}", headers=auth(other))
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json() == unknown.json()  # no oracle: foreign and unknown read the same
    assert api.get(f"/v1/scans/{scan_id}", params={"wait": 5}, headers=auth(other)).status_code == 404


@pytest.mark.parametrize(("first", "second"), [("acme", "globex"), ("globex", "acme")])
def test_idempotency_keys_are_per_tenant(api, deps, first, second):
    data = png()
    a = submit(api, first, data, **{"Idempotency-Key": "same-key"}).json()["scan_id"]
    b = submit(api, second, data, **{"Idempotency-Key": "same-key"}).json()["scan_id"]
    assert a != b and len(deps.enqueuer.sent) == 2
    assert [m["tenant"] for m in deps.enqueuer.sent] == [first, second]
    assert [m["image_key"].split("/")[2] for m in deps.enqueuer.sent] == [f"tenant={first}", f"tenant={second}"]


def test_keys_never_reach_the_log(api):
    with capture_logs() as events:
        submit(api, "acme")
        api.get(f"/v1/scans/{'0' * 32}", headers={"Authorization": "Bearer guessed-key"})
    out = json.dumps(events, default=str)
    assert [e["tenant"] for e in events if e["event"] == "request"] == ["acme", None]
    assert KEYS["acme"] not in out and "guessed-key" not in out
    assert all(digest not in out for digest in API_KEYS)
