"""workers/core/keys.py: every Redis key and S3 key layout is built there, and nowhere else."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from workers.core import keys

ROOT = Path(__file__).resolve().parents[3]
# how our keys begin: a literal starting like this anywhere but keys.py is a key built in the wrong place
KEY_STARTS = ("ts:", "scans/", "verdicts/", "manifests/", "uploads/", "tenants/", "models/", "aliases/", "reviews/")
KEY_WORDS = ("unacked",)  # kombu's hash, read by the backlog gauge


def test_s3_keys_are_hive_partitioned_by_submission_date():
    ts = "2026-11-28T10:00:00.000000Z"
    sid = "a" * 32
    assert keys.verdict_s3_key("acme", sid, ts) == f"verdicts/dt=2026-11-28/tenant=acme/{sid}.json"
    assert keys.intent_s3_key("acme", sid, ts) == f"scans/dt=2026-11-28/tenant=acme/{sid}.json"
    assert keys.image_s3_key("acme", sid, ts, "PNG") == f"scans/dt=2026-11-28/tenant=acme/{sid}.png"
    assert keys.intent_s3_key("acme", sid, ts).startswith(keys.scans_day_prefix("2026-11-28"))
    assert keys.verdict_s3_key("acme", sid, ts).startswith(keys.verdicts_day_prefix("2026-11-28", "acme"))
    assert keys.manifest_s3_key("2026-11-28", "acme") == "manifests/dt=2026-11-28/tenant=acme/manifest.json"


def test_redis_keys_are_ours_and_the_done_pattern_matches_every_done_channel():
    sid = "b" * 32
    for key in (keys.scan_key(sid), keys.verdict_key(sid), keys.done_channel(sid), keys.idempotency_key("t", "k"),
                keys.rate_key("t"), keys.in_flight_key("t"), keys.key_use_key("t"), keys.RECONCILE_LOCK_KEY):
        assert key.startswith("ts:")
    assert keys.done_channel(sid).startswith(keys.DONE_CHANNEL_PATTERN.rstrip("*"))


def test_review_keys_are_ours_and_a_review_record_is_partitioned_by_the_review_date():
    sid = "d" * 32
    for key in (keys.review_queue_key("t"), keys.review_claim_key(sid), keys.review_key(sid),
                keys.review_session_key("e" * 64), keys.REVIEW_TENANTS_KEY):
        assert key.startswith("ts:")
    assert len({keys.review_queue_key("t"), keys.review_claim_key(sid), keys.review_key(sid)}) == 3
    assert keys.review_s3_key("acme", sid, "2026-11-30T08:00:00.000000Z") == (
        f"reviews/dt=2026-11-30/tenant=acme/{sid}.json")
    assert keys.review_s3_key("acme", sid, "2026-11-30T08:00:00Z").startswith(keys.reviews_day_prefix("2026-11-30",
                                                                                                       "acme"))


def test_uploads_and_the_registry_have_their_own_prefixes():
    assert keys.upload_s3_key("acme", "u1") == "uploads/tenant=acme/u1" and keys.is_upload_key("uploads/tenant=acme/u1")
    assert not keys.is_upload_key(keys.image_s3_key("acme", "c" * 32, "2026-01-01", "JPEG"))
    assert keys.model_meta_s3_key("v1") == "models/v1/meta.json" and keys.alias_s3_key("prod") == "aliases/prod.json"
    assert keys.model_s3_key("v1").startswith(keys.MODELS_PREFIX)


def _key_literals(path: Path) -> list[tuple[int, str]]:
    """String literals (plain or the head of an f-string) that look like one of our keys."""
    found = []
    tree = ast.parse(path.read_text())
    inside_fstrings = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
            text = node.values[0].value
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in inside_fstrings:
            text = node.value
        else:
            continue
        if " " in text:  # prose (a docstring naming a key), not a key
            continue
        if text.startswith(KEY_STARTS) or text in KEY_WORDS:
            found.append((node.lineno, text))
    return found


def _sources() -> list[Path]:
    return sorted(p for pkg in ("producer", "workers") for p in (ROOT / pkg).rglob("*.py")
                  if p != ROOT / "workers" / "core" / "keys.py")


def test_no_module_but_keys_writes_a_key():
    strays = {str(p.relative_to(ROOT)): lits for p in _sources() if (lits := _key_literals(p))}
    assert strays == {}


@pytest.mark.parametrize("literal", ['f"ts:scan:{x}"', '"verdicts/dt=2026-01-01/"', '"unacked"'])
def test_the_stray_key_check_can_fail(tmp_path, literal):
    module = tmp_path / "m.py"
    module.write_text(f"x = 1\nKEY = {literal}\n")
    assert _key_literals(module) == [(2, literal.strip('f"').split("{")[0])]
