import hashlib
import json

from models.synth.dataset import folder_sink, generate, manifest_sha256, plan, read_manifest


def test_plan_has_exact_shares():
    p = plan(300, seed=1, counterfeit_ratio=0.5)
    severities = [s for cf, s in p if cf]
    assert len(severities) == 150
    assert {s: severities.count(s) for s in set(severities)} == {"subtle": 50, "medium": 50, "obvious": 50}
    assert plan(300, 1) == p and plan(300, 2) != p


def test_generate_writes_images_and_manifest(tmp_path):
    anns = generate(folder_sink(tmp_path), 6, seed=3, workers=1, progress=False)
    assert read_manifest(tmp_path) == json.loads(json.dumps(anns))
    for a in anns:
        assert (tmp_path / a["file"]).read_bytes()[:2] == b"\xff\xd8"
        assert a["label"] in ("genuine", "counterfeit")
    digest = hashlib.sha256((tmp_path / "manifest.jsonl").read_bytes()).hexdigest()
    assert manifest_sha256(anns) == digest


def test_output_does_not_depend_on_worker_count(tmp_path):
    generate(folder_sink(tmp_path / "a"), 5, seed=4, workers=1, progress=False)
    generate(folder_sink(tmp_path / "b"), 5, seed=4, workers=2, progress=False)
    for name in ["manifest.jsonl"] + [f"images/{i:06d}.jpg" for i in range(5)]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
