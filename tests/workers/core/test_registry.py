"""The model registry against the real S3 server (SeaweedFS on loopback, `s3_settings` in conftest)."""

from __future__ import annotations

import hashlib
import json

import pytest

from workers.core.keys import model_s3_key
from workers.core.registry import (
    Gate,
    ModelCorrupt,
    ModelNotFound,
    ModelRejected,
    VersionExists,
    list_models,
    promote,
    publish,
    resolve,
    resolve_with_meta,
)
from workers.core.storage import MemoryObjectStore, S3ObjectStore

SIGNS = ["incomplete_printing", "color_discrepancy", "watermark", "serial_format", "security_thread"]


def _evaluation(accuracy=0.998, review=0.01, harsh=0.98, sign=0.99) -> dict:
    mo = {"accuracy": accuracy, "false_reject_rate": 0.002, "miss_rate": 0.004, "review_rate": review,
          "sign_recall": {s: sign for s in SIGNS}}
    return {"test": {"default": {"medium_obvious": mo, "by_severity": {"subtle": {"caught_rate": 0.95}}},
                     "harsh": {"medium_obvious": {"accuracy": harsh}}}}


@pytest.fixture(scope="module")
def ckpt_path(tmp_path_factory):
    import torch

    from models.checkpoint import save_checkpoint
    from models.decision import Thresholds
    from models.net import BillNet, NetConfig
    from models.transforms import PreprocessParams

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("reg") / "m.pt"
    save_checkpoint(path, BillNet(NetConfig(stem=4, stages=(8,))), name="t", version="x", sign_names=SIGNS,
                    denominations=["5", "10", "20", "50"], preprocess=PreprocessParams(), thresholds=Thresholds())
    return path


@pytest.fixture()
def store(s3_settings):
    return S3ObjectStore.from_settings(s3_settings, s3_settings.models_bucket)


def test_publish_promote_list_resolve(store, ckpt_path, tmp_path):
    meta = publish(store, ckpt_path, "v1", _evaluation())
    assert meta["sha256"] == hashlib.sha256(ckpt_path.read_bytes()).hexdigest()
    assert store.get(model_s3_key("v1")).data == ckpt_path.read_bytes()
    assert json.loads(store.get("models/v1/evaluation.json").data) == _evaluation()
    publish(store, ckpt_path, "v2", _evaluation())
    assert promote(store, "v1", "production")["previous"] is None
    assert promote(store, "v2", "production")["previous"] == "v1"
    rows = {r["version"]: r for r in list_models(store)}
    assert set(rows) == {"v1", "v2"}
    assert rows["v2"]["aliases"] == ["production"] and rows["v1"]["aliases"] == []
    path, m = resolve_with_meta(store, "registry:production", tmp_path / "cache")
    assert m["version"] == "v2" and path.read_bytes() == ckpt_path.read_bytes()
    assert resolve(store, "v1", tmp_path / "cache").parent.name == "v1"

    from models.checkpoint import load_checkpoint

    assert load_checkpoint(path, expected_sha256=m["weights_sha256"]).weights_sha256 == m["weights_sha256"]


def test_gate_refusal_names_each_miss(store, ckpt_path):
    with pytest.raises(ModelRejected) as exc:
        publish(store, ckpt_path, "bad", _evaluation(accuracy=0.95, harsh=0.5))
    msg = str(exc.value)
    assert "accuracy 0.9500 misses >= 0.995" in msg and "harsh accuracy 0.5000 misses >= 0.97" in msg
    assert "review_rate" not in msg
    assert not store.exists("models/bad/meta.json") and not store.exists(model_s3_key("bad"))
    # a looser, configured gate lets it through
    publish(store, ckpt_path, "bad", _evaluation(accuracy=0.95, harsh=0.5),
            Gate(min_accuracy=0.9, min_harsh_accuracy=None))


def test_versions_are_immutable_and_unknown_refs_fail(store, ckpt_path, tmp_path):
    publish(store, ckpt_path, "v1", _evaluation())
    with pytest.raises(VersionExists):
        publish(store, ckpt_path, "v1", _evaluation())
    with pytest.raises(ModelNotFound):
        promote(store, "nope", "production")
    with pytest.raises(ModelNotFound):
        resolve(store, "registry:staging", tmp_path)


def test_corrupt_download_is_refused(store, ckpt_path, tmp_path):
    publish(store, ckpt_path, "v1", _evaluation())
    store.put(model_s3_key("v1"), ckpt_path.read_bytes()[:-10])  # damaged after publishing
    with pytest.raises(ModelCorrupt, match="does not match the published"):
        resolve(store, "v1", tmp_path / "cache")


def test_a_corrupt_checkpoint_is_never_published(ckpt_path, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(ckpt_path.read_bytes()[:100])
    with pytest.raises(ModelCorrupt, match="truncated or corrupt"):
        publish(MemoryObjectStore(), bad, "v1", _evaluation())


def test_gate_reports_missing_metrics():
    failures = Gate().check({"medium_obvious": {"accuracy": 0.999}})
    assert any("false_reject_rate not in the evaluation" in f for f in failures)
    assert any("harsh accuracy not in the evaluation" in f for f in failures)


def test_the_promotion_gate_needs_the_robustness_suite_met():
    from workers.core.registry import PROMOTION_GATE

    ev = _evaluation()
    assert Gate().check(ev) == []  # publishing does not require the suite
    assert PROMOTION_GATE.check(ev) == ["robustness suite (summary.suite_targets_met / suite_targets) not in the "
                                        "evaluation"]
    ev["summary"] = {"suite_targets_met": 11, "suite_targets": 12}
    ev["targets"] = [{"target": "blur x glare: review", "met": False}, {"target": "accuracy", "met": True}]
    assert PROMOTION_GATE.check(ev) == ["robustness suite: 11 of 12 targets met (unmet: blur x glare: review)"]
    assert Gate().check(ev) == []  # publishing leaves the suite to promotion
    ev["summary"]["suite_targets_met"] = 12
    assert PROMOTION_GATE.check(ev) == []


def test_an_alias_record_says_who_moved_it_and_why():
    from workers.core.registry import alias_version, evaluation

    store = MemoryObjectStore()
    for v in ("v1", "v2"):
        store.put(f"models/{v}/meta.json", json.dumps({"version": v}).encode())
        store.put(f"models/{v}/evaluation.json", json.dumps(_evaluation()).encode())
    assert alias_version(store, "canary") is None
    promote(store, "v2", "canary")
    rec = promote(store, "v1", "canary", by="auto-rollback", reason="review rate 0.5")
    assert rec["previous"] == "v2" and rec["by"] == "auto-rollback" and alias_version(store, "canary") == "v1"
    assert evaluation(store, "v1") == _evaluation()
    with pytest.raises(ModelNotFound):
        evaluation(store, "v3")
