"""Shipping a model without a restart, on real services: two `celery worker` processes following the
registry's `production` alias while scans flow, a version that cannot load, a bad canary rolled back,
`tenderscan model promote`'s gate, and a shadow compared with `tenderscan model compare`.

One stack for the module (the API is not needed: scans go in through the edge's own Submitter). The
checkpoints are the shipped one, published under several versions; the bad canary is derived from it
here (its thresholds moved so that every scan goes to review), never written into models/.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis
import torch

from models.synth import make_scans
from tests.integration.conftest import BIN, prefill, start_stack, wait_until
from workers.audit.model_events import read_events
from workers.audit.signing import Verifier, generate_key
from workers.core import keys, registry
from workers.core.clock import utcnow
from workers.core.schemas import Verdict
from workers.core.settings import DEFAULT_MODEL_PATH
from workers.core.storage import S3ObjectStore

pytestmark = pytest.mark.integration

SCANS = 300  # under load: a few hundred scans, a promotion every few seconds
PROMOTE_EVERY_S = 3.0
SEED, PUBLIC = generate_key()


def _evaluation(suite: bool = True) -> dict:
    """The shipped evaluation, with the robustness suite's summary the promotion gate needs."""
    ev = json.loads((Path(DEFAULT_MODEL_PATH).parent / "evaluation.json").read_text())
    ev["summary"] = dict(ev.get("summary") or {})
    if suite:
        ev["summary"].update(suite_targets_met=12, suite_targets=12)
    else:
        ev["summary"].pop("suite_targets", None)
    return ev


def _bad_checkpoint(tmp: Path) -> Path:
    """The shipped checkpoint with its cut points moved apart: every scan the model judges goes to review."""
    payload = torch.load(DEFAULT_MODEL_PATH, map_location="cpu", weights_only=False)
    payload["thresholds"]["genuine_below"], payload["thresholds"]["counterfeit_above"] = 0.0, 1.0
    path = tmp / "bad.pt"
    torch.save(payload, path)
    return path


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, seaweedfs):
    tmp = tmp_path_factory.mktemp("rollout")
    tag = uuid.uuid4().hex[:6]
    versions = [f"r{i}-{tag}" for i in range(6)]
    env = {"TENDERSCAN_MODEL": "registry:production", "TENDERSCAN_MODEL_POLL_S": "1",
           "TENDERSCAN_CANARY_SHARE": "0.5", "TENDERSCAN_CANARY_WINDOW_S": "60", "TENDERSCAN_CANARY_MIN_SCANS": "20",
           "TENDERSCAN_AUDIT_SIGNING_KEY": SEED, "TENDERSCAN_MAX_BATCH_SIZE": "8",
           "TENDERSCAN_SHADOW_SHARE": "0.5"}
    stack = start_stack(tmp, seaweedfs, workers=0, extra_env=env)
    try:
        models = S3ObjectStore.from_settings(stack.settings, stack.settings.models_bucket)
        models.ensure_bucket()
        for v in versions:
            registry.publish(models, DEFAULT_MODEL_PATH, v, _evaluation())
        registry.publish(models, _bad_checkpoint(tmp), f"bad-{tag}", _evaluation())
        registry.publish(models, DEFAULT_MODEL_PATH, f"ungated-{tag}", _evaluation(suite=False))
        registry.promote(models, versions[0], "production")
        workers = [stack.start_worker(env={"TENDERSCAN_HEARTBEAT_FILE": str(tmp / f"hb{i}")}) for i in range(2)]
        for w in workers:
            w.wait_for_log(" ready.", 180)
        images = [data for data, _ in make_scans(40, seed=16)]
        yield stack, models, workers, versions, tag, images
    finally:
        stack.stop()


def _swapped_to(worker, version: str) -> bool:
    return f'"production": "{version}"' in worker.log_path.read_text(errors="replace")


def _verdicts(r: redis.Redis, ids: list[str]) -> list[Verdict | None]:
    raw = r.mget([keys.verdict_key(i) for i in ids])
    return [Verdict.decode(v) if v else None for v in raw]


@pytest.mark.timeout(600)
def test_two_workers_follow_promotions_under_load_and_lose_nothing(fleet):
    stack, models, workers, versions, tag, images = fleet
    r = redis.Redis.from_url(stack.settings.redis_url)
    ids: list[str] = []

    def feed():  # 30 scans every 1.5 s: the load spans every promotion below
        for _ in range(SCANS // 30):
            ids.extend(prefill(stack, images, 30, threads=4))
            time.sleep(1.5)

    feeding = threading.Thread(target=feed)
    feeding.start()
    reach: list[float] = []
    # a version whose file is damaged after publishing: it never loads, the old version keeps serving
    broken = f"broken-{tag}"
    registry.publish(models, DEFAULT_MODEL_PATH, broken, _evaluation())
    models.put(keys.model_s3_key(broken), Path(DEFAULT_MODEL_PATH).read_bytes()[:-100])
    plan = [versions[1], versions[2], broken, versions[3], versions[4]]
    for version in plan:
        time.sleep(PROMOTE_EVERY_S)
        t0 = time.monotonic()
        registry.promote(models, version, "production")
        if version == broken:
            assert wait_until(lambda: all("model_load_failed" in w.log_path.read_text(errors="replace")
                                          for w in workers), 60), "a broken version was not reported"
            continue
        assert wait_until(lambda v=version: all(_swapped_to(w, v) for w in workers), 60), \
            f"{version} did not reach both workers"
        reach.append(time.monotonic() - t0)
    feeding.join(300)
    assert len(ids) == SCANS
    assert wait_until(lambda: all(v is not None for v in _verdicts(r, ids)), 300, interval=0.5), "scans lost"
    verdicts = _verdicts(r, ids)
    store = S3ObjectStore.from_settings(stack.settings)
    for v in verdicts:  # one verdict each, the audit record byte-identical, decided by a served version
        assert v.decision != "error", v
        assert Verdict.decode(store.get(keys.verdict_s3_key(v.tenant, v.scan_id, v.timestamps.submitted)).data) == v
        if v.model is not None:
            assert v.model.version in versions and v.model.version != broken
    used = {v.model.version for v in verdicts if v.model is not None}
    assert len(used) >= 2, used  # the swaps happened while scans flowed
    for w in workers:
        assert w.alive(), w.log_tail()
    print(f"\npromotion reached both workers in {', '.join(f'{s:.1f}' for s in reach)} s "
          f"(max {max(reach):.1f} s); {SCANS} scans, versions used {sorted(used)}")
    assert max(reach) < 30


@pytest.mark.timeout(600)
def test_a_bad_canary_is_rolled_back_within_its_window_with_a_signed_record(fleet):
    stack, models, workers, versions, tag, images = fleet
    production = registry.alias_version(models, "production")
    bad = f"bad-{tag}"
    promote = subprocess.run([str(BIN / "tenderscan"), "model", "promote", bad, "--alias", "canary"],
                             env=stack.env, capture_output=True, text=True, timeout=120)
    assert promote.returncode == 0, promote.stderr  # its evaluation passed: only production shows it is bad
    t0 = time.monotonic()
    r = redis.Redis.from_url(stack.settings.redis_url)
    ids: list[str] = []
    stop = threading.Event()

    def feed():
        while not stop.is_set() and len(ids) < 400:
            ids.extend(prefill(stack, images, 20, threads=4))
            time.sleep(0.5)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        assert wait_until(lambda: registry.alias_version(models, "canary") == production, 120, interval=0.5), \
            "the bad canary was not rolled back"
        rolled_back_s = time.monotonic() - t0
    finally:
        stop.set()
        feeder.join(120)
    record = json.loads(models.get(keys.alias_s3_key("canary")).data)
    assert record["previous"] == bad and record["by"] == "auto-rollback" and "review rate" in record["reason"]
    events = [e for e in read_events(models, utcnow()[:10], Verifier([PUBLIC])) if e["action"] == "canary_rolled_back"]
    assert len(events) == 1 and events[0]["version"] == bad and events[0]["signed"] is True
    listed = subprocess.run([str(BIN / "tenderscan"), "model", "events"], env=stack.env, capture_output=True,
                            text=True, timeout=120)  # what an auditor runs: the rollback, its signature checked
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert any("canary_rolled_back" in line and bad in line and " signed " in line for line in listed.stdout.splitlines())
    assert wait_until(lambda: all(v is not None for v in _verdicts(r, ids)), 300, interval=0.5)
    verdicts = _verdicts(r, ids)
    by_bad = [v for v in verdicts if v.model is not None and v.model.version == bad]
    assert by_bad and all(v.decision in ("review", "rejected") for v in by_bad)  # the canary's own verdicts
    # once every worker dropped the canary (a swap logged after the one that added it), scans are production's
    def dropped(worker) -> bool:
        text = worker.log_path.read_text(errors="replace")
        return '"canary": null' in text[text.rfind(f'"canary": "{bad}"'):]

    assert wait_until(lambda: all(dropped(w) for w in workers), 30), "a worker kept the rolled-back canary"
    late = prefill(stack, images, 40, threads=4)
    assert wait_until(lambda: all(v is not None for v in _verdicts(r, late)), 120, interval=0.5)
    assert all(v.model is None or v.model.version == production for v in _verdicts(r, late))
    print(f"\nbad canary rolled back {rolled_back_s:.1f} s after its promotion ({len(by_bad)} scans decided "
          f"by it, window 60 s, min 20 scans): {events[0]['reason']}")
    assert rolled_back_s < 60  # within one evaluation window


def test_promote_refuses_a_version_missing_its_robustness_targets_unless_forced_by_someone(fleet):
    stack, models, _, versions, tag, _ = fleet
    ungated = f"ungated-{tag}"

    def cli(*args):
        return subprocess.run([str(BIN / "tenderscan"), "model", "promote", ungated, "--alias", "staging", *args],
                              env=stack.env, capture_output=True, text=True, timeout=120)

    refused = cli()
    assert refused.returncode != 0 and "robustness suite" in refused.stderr + refused.stdout
    assert registry.alias_version(models, "staging") is None
    assert cli("--force").returncode != 0  # who forced it must be named
    forced = cli("--force", "--by", "alice")
    assert forced.returncode == 0, forced.stderr
    record = json.loads(models.get(keys.alias_s3_key("staging")).data)
    assert record["version"] == ungated and record["by"] == "alice" and record["forced"] is True
    (event,) = [e for e in read_events(models, utcnow()[:10], Verifier([PUBLIC])) if e["action"] == "promote_forced"]
    assert event["by"] == "alice" and event["signed"] is True and event["failures"]


@pytest.mark.timeout(600)
def test_a_shadow_scores_a_sample_never_answers_and_compare_reports_it(fleet):
    stack, models, workers, versions, _, images = fleet
    shadow = versions[5]  # the same weights as production under another version: it should agree
    registry.promote(models, shadow, "shadow")
    assert wait_until(lambda: all(f'"shadow": "{shadow}"' in w.log_path.read_text(errors="replace")
                                  for w in workers), 60), "the shadow did not reach both workers"
    r = redis.Redis.from_url(stack.settings.redis_url)
    ids = prefill(stack, images, 80, threads=4)
    assert wait_until(lambda: all(v is not None for v in _verdicts(r, ids)), 300, interval=0.5)
    assert all(v.model is None or v.model.version != shadow for v in _verdicts(r, ids))  # never returned
    run = subprocess.run([str(BIN / "tenderscan"), "model", "compare", "--candidate", "shadow", "--since", "30m",
                          "--json"], env=stack.env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    print(f"\nshadow {shadow}: {report['scans']} of 80 scans scored, agreement {report['agreement']}, "
          f"by decision {({k: c['agreement'] for k, c in report['by_decision'].items()})}")
    assert report["version"] == shadow and 15 <= report["scans"] <= 65  # about half of the 80
    assert report["agreement"] >= 0.95 and set(report["by_store"]) <= {f"acme/store-{i}" for i in range(4)}
