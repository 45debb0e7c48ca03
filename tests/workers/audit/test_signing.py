"""workers/audit/signing.py: each audit record signed over its S3 key and bytes; the Merkle root of a day."""

from __future__ import annotations

from tests.workers.audit.records import OTHER_SEED, SIGNER, VERIFIER, kinds, world
from workers.audit import manifests, signing
from workers.core.keys import manifest_s3_key
from workers.runtime.publish import audit_key


def test_record_bytes_stay_the_redis_json_and_the_signature_round_trips():
    objects, (v, *_) = world(1)
    obj = objects.get(audit_key(v))
    assert obj.data == v.encode().encode()  # identical to what Redis holds
    assert obj.metadata[signing.KEY_ID_META] == SIGNER.key_id
    assert manifests.check_record(VERIFIER, audit_key(v), obj.data, obj.metadata) is None
    # the same signature does not hold for other bytes, another key (moved record) or another public key
    assert manifests.check_record(VERIFIER, audit_key(v), obj.data + b" ", obj.metadata) == "bad_signature"
    assert manifests.check_record(VERIFIER, audit_key(v).replace("acme", "evil"), obj.data, obj.metadata) == "bad_signature"
    other = signing.Verifier([signing.Signer(OTHER_SEED).public_hex])
    assert manifests.check_record(other, audit_key(v), obj.data, obj.metadata) == "bad_signature"


def test_without_a_signer_records_are_written_unsigned_and_flagged():
    objects, (v, *_) = world(1, signer=None)
    obj = objects.get(audit_key(v))
    assert obj.data == v.encode().encode() and obj.metadata == {}
    rep = manifests.verify_range(objects, VERIFIER, "acme", "2026-03-01", "2026-03-01")
    assert kinds(rep) == sorted([("unsigned", v.scan_id), ("unsealed", manifest_s3_key("2026-03-01", "acme"))])


def test_merkle_root_depends_on_every_entry_and_not_on_order():
    entries = [(f"{i:032x}", signing.sha256_hex(str(i).encode())) for i in range(5)]
    root = signing.merkle_root(entries)
    assert root == signing.merkle_root(reversed(entries))
    assert root != signing.merkle_root(entries[:4])
    assert root != signing.merkle_root([*entries[:4], (entries[4][0], "00" * 32)])
    assert signing.merkle_root([]) == signing.sha256_hex(b"")
