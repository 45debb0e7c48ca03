"""workers/audit/export.py: pull (JSONL, CSV, Parquet; resumable) and report, on known records."""

from __future__ import annotations

import csv
import json

import pytest

from tests.workers.audit.records import SIGNER, VERIFIER, verdict
from workers.audit import manifests, signing
from workers.audit.export import pull, report
from workers.core.errors import StorageError
from workers.core.storage import MemoryObjectStore
from workers.runtime.publish import write_audit


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
