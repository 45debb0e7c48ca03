"""workers/audit/manifests.py: a sealed day verifies clean, and every change after sealing is named."""

from __future__ import annotations

import json

import pytest

from tests.workers.audit.records import OTHER_SEED, SIGNER, VERIFIER, kinds, verdict, world
from workers.audit import manifests, signing
from workers.core.keys import manifest_s3_key
from workers.core.storage import MemoryObjectStore
from workers.runtime.publish import audit_key, write_audit


def test_a_sealed_untouched_day_verifies_clean():
    objects, vs = world(5)
    doc = manifests.seal_day(objects, SIGNER, "2026-03-01", "acme")
    assert doc["count"] == 5 and doc["prev"] is None
    assert [e["scan_id"] for e in doc["entries"]] == sorted(v.scan_id for v in vs)
    rep = manifests.verify_range(objects, VERIFIER, "acme", "2026-03-01", "2026-03-01")
    assert rep.ok and rep.records == 5 and rep.sealed_days == 1
    with pytest.raises(manifests.ManifestExists):
        manifests.seal_day(objects, SIGNER, "2026-03-01", "acme")


def test_tampered_record_is_detected():
    objects, vs = world(3)
    manifests.seal_day(objects, SIGNER, "2026-03-01", "acme")
    key = audit_key(vs[0])
    obj = objects.get(key)
    forged = obj.data.replace(b'"genuine"', b'"counterfeit"')
    objects.put(key, forged, metadata=obj.metadata)  # keeps the old signature
    rep = manifests.verify_range(objects, VERIFIER, "acme", "2026-03-01", "2026-03-01")
    assert kinds(rep) == sorted([("altered", vs[0].scan_id), ("bad_signature", vs[0].scan_id)])


def test_deleted_record_is_detected():
    objects, vs = world(3)
    manifests.seal_day(objects, SIGNER, "2026-03-01", "acme")
    objects.delete(audit_key(vs[1]))
    rep = manifests.verify_range(objects, VERIFIER, "acme", "2026-03-01", "2026-03-01")
    assert kinds(rep) == [("missing", vs[1].scan_id)]


def test_inserted_record_is_detected_even_when_validly_signed():
    objects, _ = world(2)
    manifests.seal_day(objects, SIGNER, "2026-03-01", "acme")
    late = verdict()
    write_audit(late, objects, signer=SIGNER)  # signed by the real key, but after the seal
    forged = verdict()
    objects.put(audit_key(forged), forged.encode().encode(),
                metadata=signing.Signer(OTHER_SEED).record_metadata(audit_key(forged), forged.encode().encode()))
    rep = manifests.verify_range(objects, VERIFIER, "acme", "2026-03-01", "2026-03-01")
    assert kinds(rep) == sorted([("unexpected", late.scan_id), ("unexpected", forged.scan_id),
                                 ("bad_signature", forged.scan_id)])


def test_manifest_chain_links_days_and_detects_a_removed_or_edited_manifest():
    objects = MemoryObjectStore()
    for day in ("2026-03-01", "2026-03-02", "2026-03-04"):  # no scans on the 3rd
        write_audit(verdict(day), objects, signer=SIGNER)
        manifests.seal_day(objects, SIGNER, day, "acme")
    m2 = json.loads(objects.get(manifest_s3_key("2026-03-02", "acme")).data)
    m4 = json.loads(objects.get(manifest_s3_key("2026-03-04", "acme")).data)
    assert m2["prev"]["date"] == "2026-03-01" and m4["prev"]["date"] == "2026-03-02"
    assert m4["prev"]["sha256"] == signing.sha256_hex(objects.get(manifest_s3_key("2026-03-02", "acme")).data)
    assert manifests.verify_range(objects, VERIFIER, "acme", "2026-03-01", "2026-03-04").ok

    # an attacker re-writes day 2's manifest (with a record removed), signing it with a key of their own
    key2 = manifest_s3_key("2026-03-02", "acme")
    objects.put(key2, objects.get(key2).data.replace(b'"count":1', b'"count":0'))
    rep = manifests.verify_range(objects, VERIFIER, "acme", "2026-03-01", "2026-03-04")
    assert ("bad_manifest", key2) in kinds(rep) and ("chain", manifest_s3_key("2026-03-04", "acme")) in kinds(rep)

    # ... or deletes day 2 (records and manifest) altogether: day 4's link names what is gone
    objects.delete(key2)
    for k in list(objects.list("verdicts/dt=2026-03-02/")):
        objects.delete(k)
    rep = manifests.verify_range(objects, VERIFIER, "acme", "2026-03-01", "2026-03-04")
    assert [(p.kind, p.detail) for p in rep.problems] == [("chain", "previous manifest 2026-03-02 is gone")]


def test_a_manifest_signed_by_an_unknown_key_is_refused():
    objects, _ = world(2)
    manifests.seal_day(objects, signing.Signer(OTHER_SEED), "2026-03-01", "acme")
    rep = manifests.verify_range(objects, VERIFIER, "acme", "2026-03-01", "2026-03-01")
    assert [p.kind for p in rep.problems] == ["bad_manifest"]


def test_tenants_of_day_lists_each_tenant_once():
    objects, _ = world(2)
    write_audit(verdict(tenant="globex"), objects, signer=SIGNER)
    assert manifests.tenants_of_day(objects, "2026-03-01") == ["acme", "globex"]
