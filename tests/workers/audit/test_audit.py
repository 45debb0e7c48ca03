"""Signed audit records, sealed day manifests, verify, pull and report, on the in-memory object store."""

from __future__ import annotations

import csv
import json

import pytest

from workers.audit import manifests, signing
from workers.audit.export import pull, report
from workers.core.errors import StorageError
from workers.core.keys import manifest_s3_key
from workers.core.schemas import InputRef, ModelRef, Timestamps, Verdict, new_scan_id
from workers.core.storage import MemoryObjectStore
from workers.runtime.publish import audit_key, write_audit

SEED = "11" * 32
OTHER_SEED = "22" * 32
SIGNER = signing.Signer(SEED)
VERIFIER = signing.Verifier([SIGNER.public_hex])


def verdict(day="2026-03-01", tenant="acme", store="s1", decision="genuine", model="v1", scan_id=None) -> Verdict:
    return Verdict(scan_id or new_scan_id(), tenant, store, "t1", decision,
                   InputRef(f"scans/dt={day}/tenant={tenant}/x.jpg", "ab" * 32, 10),
                   Timestamps(f"{day}T10:00:00.000000Z", completed=f"{day}T10:00:01.000000Z"),
                   confidence=0.9 if decision in ("genuine", "counterfeit", "review") else None,
                   model=ModelRef("tenderscan", model, "cd" * 32))


def world(n=4, day="2026-03-01", tenant="acme", signer=SIGNER) -> tuple[MemoryObjectStore, list[Verdict]]:
    objects = MemoryObjectStore()
    vs = [verdict(day, tenant) for _ in range(n)]
    for v in vs:
        write_audit(v, objects, signer=signer)
    return objects, vs


def kinds(rep: manifests.VerifyReport) -> list[tuple[str, str]]:
    return sorted((p.kind, p.subject) for p in rep.problems)


# --- signatures ---------------------------------------------------------------------------------
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


# --- seal and verify ----------------------------------------------------------------------------
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


# --- pull and report ----------------------------------------------------------------------------
def fixture_world() -> MemoryObjectStore:
    """Known answers: 8 acme records over two days, 1 of another tenant."""
    objects = MemoryObjectStore()
    plan = [("2026-03-01", "s1", "genuine", "v1"), ("2026-03-01", "s1", "counterfeit", "v1"),
            ("2026-03-01", "s2", "review", "v1"), ("2026-03-01", "s2", "rejected", "v1"),
            ("2026-03-02", "s1", "genuine", "v2"), ("2026-03-02", "s1", "genuine", "v2"),
            ("2026-03-02", "s2", "review", "v2"), ("2026-03-02", "s2", "genuine", "v2")]
    for day, store, decision, model in plan:
        write_audit(verdict(day, "acme", store, decision, model), objects, signer=SIGNER)
    write_audit(verdict("2026-03-01", "globex", "s9", "genuine"), objects, signer=SIGNER)
    return objects


def test_report_counts_on_a_known_fixture(tmp_path):
    from workers.audit.export import chart, iter_rows, list_keys

    objects = fixture_world()
    rep = report(iter_rows(objects, list_keys(objects, "acme", "2026-03-01", "2026-03-02")))
    assert rep["total"] == 8
    assert rep["by_decision"] == {"counterfeit": 1, "genuine": 4, "rejected": 1, "review": 2}
    assert rep["by_day"]["2026-03-01"] == {"counterfeit": 1, "genuine": 1, "rejected": 1, "review": 1}
    assert rep["by_store"]["s2"] == {"genuine": 1, "rejected": 1, "review": 2}
    assert rep["review_rate"] == pytest.approx(2 / 8) and rep["rejection_rate"] == pytest.approx(1 / 8)
    assert rep["models"] == {"tenderscan:v1": 4, "tenderscan:v2": 4}
    png = tmp_path / "report.png"
    chart(rep, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    everyone = report(iter_rows(objects, list_keys(objects, None, "2026-03-01", "2026-03-01")))
    assert everyone["total"] == 5


def test_pull_filters_and_writes_jsonl_and_csv(tmp_path):
    objects = fixture_world()
    out = tmp_path / "s2.jsonl"
    assert pull(objects, "acme", "2026-03-01", "2026-03-02", out, stores=["s2"], decisions=["review", "rejected"],
                progress=False) == 3
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {(r["store_id"], r["decision"]) for r in rows} == {("s2", "review"), ("s2", "rejected")}
    r = rows[0]  # each JSONL row carries the exact signed bytes: an auditor can re-check offline
    assert signing.sha256_hex(r["record"].encode()) == r["record_sha256"]
    assert VERIFIER.verify(signing.record_message(r["s3_key"], r["record"].encode()), r["signature"], r["key_id"])
    assert not (tmp_path / "s2.jsonl.part").exists() and not (tmp_path / "s2.jsonl.seen").exists()

    out_csv = tmp_path / "all.csv"
    assert pull(objects, "acme", "2026-03-01", "2026-03-02", out_csv, progress=False) == 8
    with out_csv.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and "record" not in rows[0] and {r["tenant"] for r in rows} == {"acme"}


def test_pull_writes_parquet(tmp_path):
    duckdb = pytest.importorskip("duckdb")
    objects = fixture_world()
    out = tmp_path / "acme.parquet"
    assert pull(objects, "acme", "2026-03-01", "2026-03-02", out, progress=False) == 8
    got = duckdb.sql(f"SELECT decision, count(*) FROM '{out}' GROUP BY 1 ORDER BY 1").fetchall()
    assert got == [("counterfeit", 1), ("genuine", 4), ("rejected", 1), ("review", 2)]


class FailingAfter(MemoryObjectStore):
    """Fails every GET after the first `budget` of them (a pull killed half-way)."""

    budget: int = 10**9
    gets: int = 0

    def get(self, key, max_bytes=None):
        self.gets += 1
        if self.gets > self.budget:
            raise StorageError("killed")  # the pull stops here
        return super().get(key, max_bytes)


def test_pull_resumes_where_it_stopped(tmp_path):
    from workers.audit import manifests as audit_mod

    source = fixture_world()
    objects = FailingAfter(objects=dict(source.objects))
    objects.budget = 5
    out = tmp_path / "acme.jsonl"
    old_threads = audit_mod.FETCH_THREADS
    audit_mod.FETCH_THREADS = 1  # deterministic: keys are fetched one after another
    try:
        with pytest.raises(StorageError):
            pull(objects, "acme", "2026-03-01", "2026-03-02", out, progress=False)
        seen = (tmp_path / "acme.jsonl.seen").read_text().split()
        assert len(seen) == 5 and not out.exists()
        with (tmp_path / "acme.jsonl.part").open("a") as f:
            f.write('{"torn": ')  # killed in the middle of a row
        objects.budget, objects.gets = 10**9, 0
        assert pull(objects, "acme", "2026-03-01", "2026-03-02", out, progress=False) == 8
        assert objects.gets == 3  # only what the first run had not fetched
    finally:
        audit_mod.FETCH_THREADS = old_threads
    ids = [json.loads(line)["scan_id"] for line in out.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 8


def test_cli_parses_audit_actions():
    from producer.cli import build_parser

    args = build_parser().parse_args(["audit", "pull", "--tenant", "acme", "--from", "2026-03-01",
                                      "--to", "2026-03-02", "--store", "s1", "--out", "x.csv"])
    assert args.func.__name__ == "run_pull" and args.store == ["s1"] and args.start == "2026-03-01"
    assert manifests.days("2026-02-27", "2026-03-01") == ["2026-02-27", "2026-02-28", "2026-03-01"]
