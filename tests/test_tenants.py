"""The tenant registry: key format and checksum, HMAC storage, constant-time lookup, records, last use."""

from __future__ import annotations

import hashlib
import hmac
import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from producer import tenants
from producer.auth import Identity, identify
from producer.errors import ApiError
from producer.tenants import (
    ApiKey,
    KeyUseRecorder,
    Match,
    RegistryUnavailable,
    Snapshot,
    TenantError,
    TenantLimits,
    TenantRecord,
    TenantRegistry,
    TenantStore,
    is_well_formed,
    key_digest,
    key_id,
    new_key,
)
from workers.core.errors import ContractError
from workers.core.keys import key_use_key, tenant_s3_key
from workers.core.storage import MemoryObjectStore

SECRET = "test-secret-0123456789"


@pytest.fixture()
def store() -> TenantStore:
    return TenantStore(MemoryObjectStore())


# --- key format ------------------------------------------------------------------------------------
def test_new_keys_have_the_documented_shape_and_are_unique():
    keys = {new_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert re.fullmatch(r"tsk_[0-9A-Za-z]{38}", key) and len(key) == tenants.KEY_LEN == 42
        assert is_well_formed(key)
        assert key_id(key) == key[:12]


def test_any_single_character_change_breaks_the_checksum():
    key = new_key()
    for i in range(len(tenants.KEY_PREFIX), len(key)):
        for c in "0aZ":
            if key[i] != c:
                assert not is_well_formed(key[:i] + c + key[i + 1:]), (i, c)


@pytest.mark.parametrize("mangle", [
    lambda k: k[:-1],  # truncated
    lambda k: k + "0",  # one too many
    lambda k: k[:20] + k[21:] + "x",  # a character dropped, length kept
    lambda k: k.replace("tsk_", "tsx_"),  # wrong prefix
    lambda k: k[:10] + "-" + k[11:],  # outside the alphabet
    lambda k: k[:4] + k[5] + k[4] + k[6:],  # two characters swapped
    lambda k: k.upper(),  # case matters
])
def test_mistyped_or_truncated_keys_are_not_well_formed(mangle):
    key = new_key()
    while mangle(key) == key:  # e.g. upper() of an all-uppercase body
        key = new_key()
    assert not is_well_formed(mangle(key))


@given(st.text(max_size=60))
def test_random_text_is_almost_never_well_formed(text):
    assert not is_well_formed("tsk_" + text) or len(text) == 38


def test_digest_is_hmac_sha256_under_the_secret():
    key = new_key()
    assert key_digest(SECRET, key) == hmac.new(SECRET.encode(), key.encode(), hashlib.sha256).hexdigest()
    assert key_digest(SECRET, key) != key_digest(SECRET + "x", key)  # another secret, another digest
    assert key_digest(SECRET, key) != hashlib.sha256(key.encode()).hexdigest()


# --- records and the S3 store ------------------------------------------------------------------------
def test_create_stores_only_the_hmac_of_the_key(store):
    record, key = store.create("acme", SECRET, TenantLimits(rate_per_s=5))
    raw = store.objects.get(tenant_s3_key("acme")).data
    assert key not in raw.decode() and key[12:] not in raw.decode()  # the secret part is nowhere
    assert json.loads(raw)["keys"][0] == {"key_id": key_id(key), "digest": key_digest(SECRET, key),
                                          "created_at": record.keys[0].created_at, "revoked_at": None}
    assert store.get("acme") == record and record.limits.rate_per_s == 5


def test_create_refuses_duplicates_and_bad_ids(store):
    store.create("acme", SECRET, TenantLimits())
    with pytest.raises(TenantError, match="exists"):
        store.create("acme", SECRET, TenantLimits())
    for bad in ("", "a/b", "x" * 65, "ac me", "../etc"):
        with pytest.raises(TenantError):
            store.create(bad, SECRET, TenantLimits())


def test_rotation_and_revocation(store):
    _, first = store.create("acme", SECRET, TenantLimits())
    record, second = store.add_key("acme", SECRET)
    assert [k.key_id for k in record.active_keys()] == [key_id(first), key_id(second)]
    record = store.revoke_key("acme", key_id(first))
    assert [k.key_id for k in record.active_keys()] == [key_id(second)]
    revoked_at = record.keys[0].revoked_at
    assert revoked_at is not None
    assert store.revoke_key("acme", key_id(first)).keys[0].revoked_at == revoked_at  # the first time stays
    with pytest.raises(TenantError, match="no key"):
        store.revoke_key("acme", "tsk_nothere0")
    with pytest.raises(TenantError, match="no tenant"):
        store.add_key("nobody", SECRET)


def test_set_limits_overrides_and_resets(store):
    store.create("acme", SECRET, TenantLimits(rate_per_s=5, burst=10), with_key=False)
    assert store.set_limits("acme", burst=None, max_in_flight=3).limits == TenantLimits(rate_per_s=5, max_in_flight=3)


@pytest.mark.parametrize("raw", [b"nope", b"[]", b'{"v": 2, "tenant": "a", "created_at": "x"}',
                                 b'{"v": 1, "tenant": "a/b", "created_at": "x"}', b'{"v": 1, "tenant": "a"}',
                                 b'{"v": 1, "tenant": "a", "created_at": "x", "keys": [{"key_id": "k"}]}'])
def test_bad_records_raise_contract_error(raw):
    with pytest.raises(ContractError):
        TenantRecord.decode(raw)


def test_a_broken_record_is_skipped_not_fatal(store):
    store.create("acme", SECRET, TenantLimits())
    store.objects.put(tenant_s3_key("broken"), b"{not json", "application/json")
    assert [r.tenant for r in store.all()] == ["acme"]


# --- the snapshot: constant-time lookup --------------------------------------------------------------
def _snapshot(n: int) -> tuple[Snapshot, list[str]]:
    keys = [new_key() for _ in range(n)]
    records = [TenantRecord(f"t{i}", "2026-01-01", keys=(ApiKey(key_id(k), key_digest(SECRET, k), "2026-01-01"),))
               for i, k in enumerate(keys)]
    return Snapshot.of(records), keys


@pytest.mark.parametrize("position", [0, 5, 9, None])
def test_lookup_compares_every_entry_whichever_matches(monkeypatch, position):
    snapshot, keys = _snapshot(10)
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(tenants.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    digest = key_digest(SECRET, keys[position]) if position is not None else key_digest(SECRET, new_key())
    found = snapshot.lookup(digest)
    assert len(calls) == 10  # no early exit, hit or miss
    assert found == (Match(f"t{position}", key_id(keys[position]), False) if position is not None else None)


def test_registry_identifies_by_hmac_and_sees_revocation_after_refresh(store):
    _, key = store.create("acme", SECRET, TenantLimits(max_in_flight=7))
    registry = TenantRegistry(store, SECRET, refresh_s=1)
    with pytest.raises(RegistryUnavailable):
        registry.identify(key)  # never read: 503, not 401
    registry.refresh()
    assert registry.identify(key) == Match("acme", key_id(key), False)
    assert registry.limits_for("acme").max_in_flight == 7 and registry.limits_for("other") == TenantLimits()
    assert TenantRegistry(store, SECRET + "-other").refresh().lookup(key_digest(SECRET + "-other", key)) is None
    store.revoke_key("acme", key_id(key))
    assert registry.identify(key).revoked is False  # cached until the next refresh
    registry.refresh()
    assert registry.identify(key).revoked is True


# --- auth.identify over both key sources ---------------------------------------------------------------
def test_identify_registry_and_bootstrap_keys(store):
    _, key = store.create("acme", SECRET, TenantLimits())
    registry = TenantRegistry(store, SECRET)
    registry.refresh()
    bootstrap = {hashlib.sha256(b"boot-key").hexdigest(): "globex"}
    assert identify(f"Bearer {key}", bootstrap, registry) == Identity("acme", key_id(key))
    assert identify("Bearer boot-key", bootstrap, registry) == Identity("globex", None)
    # a registry key is never looked up among bootstrap digests, even if configured there
    assert identify(f"Bearer {key}", {hashlib.sha256(key.encode()).hexdigest(): "evil"}, registry).tenant == "acme"


@pytest.mark.parametrize(("header", "reason"), [
    (None, "unauthorized"), ("Bearer nope", "unauthorized"), ("Bearer tsk_short", "key_malformed"),
    ("Bearer NEWKEY", "unauthorized"), ("Bearer MANGLED", "key_malformed"), ("Bearer REVOKED", "key_revoked"),
])
def test_identify_refusals_are_specific_401s(store, header, reason):
    _, revoked = store.create("acme", SECRET, TenantLimits())
    store.revoke_key("acme", key_id(revoked))
    registry = TenantRegistry(store, SECRET)
    registry.refresh()
    unknown = new_key()
    header = header and header.replace("NEWKEY", unknown).replace("MANGLED", unknown[:-1] + (
        "A" if unknown[-1] != "A" else "B")).replace("REVOKED", revoked)
    with pytest.raises(ApiError) as info:
        identify(header, {}, registry)
    assert (info.value.status, info.value.reason) == (401, reason)
    assert info.value.headers == {"WWW-Authenticate": "Bearer"}


def test_a_malformed_key_is_refused_before_any_lookup(store, monkeypatch):
    registry = TenantRegistry(store, SECRET)  # never refreshed: a lookup would raise RegistryUnavailable
    monkeypatch.setattr(registry, "identify", lambda key: pytest.fail("looked up"))
    with pytest.raises(ApiError) as info:
        identify("Bearer " + new_key()[:-2], {}, registry)
    assert info.value.reason == "key_malformed"


# --- last use -------------------------------------------------------------------------------------------
def test_key_use_is_recorded_at_most_once_per_interval(clean_redis):
    import redis

    client = redis.Redis.from_url(clean_redis, decode_responses=True)
    recorder = KeyUseRecorder(client, every_s=60)
    assert recorder.record("acme", "tsk_aaaaaaaa") is True
    first = client.hget(key_use_key("acme"), "tsk_aaaaaaaa")
    assert first and first.startswith("20")
    assert recorder.record("acme", "tsk_aaaaaaaa") is False  # throttled: no second write
    assert recorder.record("acme", "tsk_bbbbbbbb") is True  # per key
    assert KeyUseRecorder(client, every_s=0).record("acme", "tsk_aaaaaaaa") is True
    assert client.hget(key_use_key("acme"), "tsk_aaaaaaaa") >= first


def test_key_use_never_fails_the_request():
    import redis

    recorder = KeyUseRecorder(redis.Redis(port=1, socket_connect_timeout=0.2))
    assert recorder.record("acme", "tsk_aaaaaaaa") is False


# --- the secret's settings ------------------------------------------------------------------------------
def test_hmac_secret_stays_out_of_repr_and_must_be_long_enough():
    from workers.core.errors import SettingsError
    from workers.core.settings import Settings

    s = Settings.from_env({"TENDERSCAN_KEY_HMAC_SECRET": "a-long-enough-hmac-secret"})
    assert s.key_hmac_secret == "a-long-enough-hmac-secret" and "a-long-enough" not in repr(s)
    with pytest.raises(SettingsError, match="KEY_HMAC_SECRET"):
        Settings.from_env({"TENDERSCAN_KEY_HMAC_SECRET": "short"})


def test_api_refuses_the_dev_secret_off_loopback(monkeypatch, capsys):
    from producer.cli import main

    monkeypatch.delenv("TENDERSCAN_KEY_HMAC_SECRET", raising=False)
    assert main(["api", "--host", "0.0.0.0", "--port", "1"]) == 1
    assert "TENDERSCAN_KEY_HMAC_SECRET" in capsys.readouterr().err
