"""A real `celery -A workers.app worker -P threads` on real Redis and SeaweedFS, fed exactly as the edge feeds it.

Verdicts and the broker in two DBs of their own (1 and 2) of this pytest process's redis-server, apart
from DB 0 that other modules flush, so the worker's broker is never the verdict store by accident.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path

import pytest
import redis

from producer.dev.services import VENV_BIN, Service, spawn
from workers.core import clock, enums, keys, schemas
from workers.core.celery_app import make_celery
from workers.core.schemas import ScanMessage, Verdict
from workers.core.storage import S3ObjectStore
from workers.core.verdict_store import VerdictStore, redis_client
from workers.runtime.publish import audit_key

pytestmark = pytest.mark.integration

VERDICT_DB, BROKER_DB = 1, 2
DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "default" / "tenderscan-default.pt"


@pytest.fixture()
def model_path(tmp_path) -> Path:
    """The shipped default checkpoint; a tiny random-weight one written by models.checkpoint until it exists."""
    if DEFAULT_MODEL.exists():
        return DEFAULT_MODEL
    from models.checkpoint import save_checkpoint
    from models.decision import Thresholds
    from models.net import BillNet, NetConfig
    from models.synth import SIGN_NAMES
    from models.transforms import PreprocessParams

    config = NetConfig(num_signs=len(SIGN_NAMES), num_denominations=4, stem=8, stages=(16, 32))
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, BillNet(config).eval(), name="tiny-random", version="it", sign_names=list(SIGN_NAMES),
                    denominations=["5", "10", "20", "50"], preprocess=PreprocessParams(),
                    thresholds=Thresholds(genuine_below=0.45, counterfeit_above=0.55))
    return path


@pytest.fixture()
def stack(s3_settings, model_path, tmp_path, redis_server):
    base = f"redis://127.0.0.1:{redis_server.extra['port']}"
    settings = s3_settings.with_(redis_url=f"{base}/{VERDICT_DB}", broker_url=f"{base}/{BROKER_DB}",
                                 model=str(model_path), max_batch_size=8, max_wait_ms=50, device="cpu")
    for db in (VERDICT_DB, BROKER_DB):
        redis.Redis.from_url(f"{base}/{db}").flushdb()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENDERSCAN_")}
    env.update({
        "TENDERSCAN_REDIS_URL": settings.redis_url, "TENDERSCAN_BROKER_URL": settings.broker_url,
        "TENDERSCAN_S3_ENDPOINT_URL": settings.s3_endpoint_url, "TENDERSCAN_S3_ACCESS_KEY": settings.s3_access_key,
        "TENDERSCAN_S3_SECRET_KEY": settings.s3_secret_key, "TENDERSCAN_S3_BUCKET": settings.s3_bucket,
        "TENDERSCAN_MODELS_BUCKET": settings.models_bucket, "TENDERSCAN_MODEL": settings.model,
        "TENDERSCAN_MAX_BATCH_SIZE": "8", "TENDERSCAN_MAX_WAIT_MS": "50", "TENDERSCAN_DEVICE": "cpu",
        "OMP_NUM_THREADS": "1", "TENDERSCAN_HEARTBEAT_FILE": str(tmp_path / "heartbeat"),
    })
    yield settings, env, tmp_path / "logs"
    for db in (VERDICT_DB, BROKER_DB):
        redis.Redis.from_url(f"{base}/{db}").flushdb()


def offline_p_counterfeit(model: str, images: list[bytes]) -> list[float]:
    """models' own path: PIL decode -> preprocess_image -> predict, one batch, in this process."""
    import io

    import torch
    from PIL import Image

    from models.checkpoint import load_checkpoint
    from models.inference import predict
    from models.transforms import preprocess_image

    ckpt = load_checkpoint(model)
    x = torch.stack([preprocess_image(Image.open(io.BytesIO(b)).convert("RGB"), ckpt.preprocess) for b in images])
    return predict(ckpt, x).p_counterfeit.tolist()


def start_worker(env: dict, log_dir: Path) -> Service:
    cmd = [str(VENV_BIN / "celery"), "-A", "workers.app", "worker", "-P", "threads", "-c", "16",
           "-Q", keys.QUEUE, "-n", f"it-{uuid.uuid4().hex[:6]}@%h", "--without-gossip", "--without-mingle",
           "--without-heartbeat", "--loglevel=INFO"]
    return spawn("worker", cmd, log_dir, env=env, cwd=Path(__file__).resolve().parents[2])


def submit(settings, objects, verdicts, app, data: bytes, *, sha256: str | None = None,
           serializer: str | None = None, tamper=None) -> ScanMessage:
    """What the edge does: image to S3, scan recorded `queued`, one task carrying only a reference."""
    sid = schemas.new_scan_id()
    submitted = clock.utcnow()
    key = keys.image_s3_key("acme", sid, submitted, "JPEG")
    objects.put(key, data, "image/jpeg", {"sha256": hashlib.sha256(data).hexdigest()})
    msg = ScanMessage(scan_id=sid, tenant="acme", store_id="store-1", terminal_id="pos-1", image_key=key,
                      sha256=sha256 or hashlib.sha256(data).hexdigest(), bytes=len(data), submitted_at=submitted)
    verdicts.create_scan(msg)
    body = tamper(msg.encode()) if tamper else msg.encode()
    app.send_task(keys.TASK_NAME, args=[body], queue=keys.QUEUE, **({"serializer": serializer} if serializer else {}))
    return msg


def wait_for(verdicts: VerdictStore, ids: list[str], worker: Service, timeout: float = 60) -> dict[str, Verdict]:
    deadline = time.monotonic() + timeout
    found: dict[str, Verdict] = {}
    while time.monotonic() < deadline:
        for sid in ids:
            if sid not in found and (v := verdicts.get_verdict(sid)) is not None:
                found[sid] = v
        if len(found) == len(ids):
            return found
        assert worker.alive(), f"worker died:\n{worker.log_tail(60)}"
        time.sleep(0.2)
    pytest.fail(f"{len(ids) - len(found)} of {len(ids)} scans got no verdict in {timeout:.0f}s:\n{worker.log_tail(60)}")


def test_worker_judges_a_backlog_in_batches_rejects_bad_scans_and_stays_up(stack):
    from models.synth import make_scans

    settings, env, log_dir = stack
    objects = S3ObjectStore.from_settings(settings)
    verdicts = VerdictStore(redis_client(settings.redis_url), settings.verdict_ttl_s)
    app = make_celery(settings)  # the producer's view: no task code, no torch

    scans = make_scans(24, seed=77)
    good = [submit(settings, objects, verdicts, app, data) for data, _ in scans]
    whole = make_scans(1, seed=78)[0][0]
    bad = {
        "unsupported_format": submit(settings, objects, verdicts, app, b"GIF89a not a banknote"),
        "image_unreadable": submit(settings, objects, verdicts, app, whole[: len(whole) // 3]),
        "checksum_mismatch": submit(settings, objects, verdicts, app, whole, sha256="f" * 64),
    }
    pickled = submit(settings, objects, verdicts, app, whole, serializer="pickle")
    bad_version = submit(settings, objects, verdicts, app, whole, tamper=lambda body: {**body, "v": 99})
    bad["bad_message"] = bad_version

    worker = start_worker(env, log_dir)
    try:
        expected_ids = [m.scan_id for m in good] + [m.scan_id for m in bad.values()]
        found = wait_for(verdicts, expected_ids, worker)

        late = submit(settings, objects, verdicts, app, whole)  # after the backlog and the bad ones
        found.update(wait_for(verdicts, [late.scan_id], worker))
        app.send_task(keys.TASK_NAME, args=[good[0].encode()], queue=keys.QUEUE)  # a duplicate delivery
        deadline = time.monotonic() + 15
        while "scan_redelivered" not in (log_dir / "worker.log").read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert verdicts.get_verdict(good[0].scan_id) == found[good[0].scan_id]  # the first verdict stands
        assert worker.alive()
        time.sleep(0.5)
        assert verdicts.get_verdict(pickled.scan_id) is None  # refused, never executed
        assert verdicts.get_scan(pickled.scan_id)["status"] == "queued"
    finally:
        worker.stop()
    log_text = (log_dir / "worker.log").read_text(errors="replace")

    judged = [found[m.scan_id] for m in good] + [found[late.scan_id]]
    assert all(enums.judged(v.decision, v.reason) for v in judged), [(v.decision, v.reason) for v in judged]
    assert max(v.batch_size for v in judged) > 1, "a backlog of 24 scans never formed a batch"
    assert max(v.batch_size for v in judged) <= 8
    by_batch: dict[str, list[Verdict]] = {}
    for v in judged:
        by_batch.setdefault(v.batch_id, []).append(v)
    assert all(len(vs) == vs[0].batch_size for vs in by_batch.values())  # batch_size tells the truth
    for reason, msg in bad.items():
        assert (found[msg.scan_id].decision, found[msg.scan_id].reason) == ("rejected", reason)

    audit = set(objects.list("verdicts/"))
    assert len(audit) == len(found)  # exactly one audit record per judged scan, none for the pickle
    for sid, v in found.items():
        assert v.scan_id == sid and v.attempt == 1 and v.tenant == "acme"
        record = objects.get(audit_key(v)).data
        assert Verdict.decode(record) == v and record == v.encode().encode()
        assert verdicts.get_scan(sid)["status"] == "done"
    assert judged[0].model is not None and len(judged[0].model.sha256) == 64
    # Serving computes what the offline path (training / evaluation) computes for the same bytes.
    offline = offline_p_counterfeit(settings.model, [data for data, _ in scans])
    served = [found[m.scan_id].p_counterfeit for m in good]
    assert served == pytest.approx(offline, abs=1e-4)

    assert '"event": "batch_done"' in log_text and '"event": "scan_redelivered"' in log_text
    assert 0 <= log_text.find('"event": "model_loaded"') < log_text.find(" ready.")  # loaded before consuming
    assert "Refusing to deserialize untrusted content of type pickle" in log_text
    assert settings.s3_secret_key not in log_text


def test_worker_with_an_unloadable_model_exits_at_start_instead_of_failing_scans(stack, tmp_path):
    _, env, log_dir = stack
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    worker = start_worker(dict(env, TENDERSCAN_MODEL=str(broken)), log_dir)
    try:
        worker.proc.wait(60)
    finally:
        worker.stop()
    assert worker.proc.returncode == 3, worker.log_tail()
    log_text = (log_dir / "worker.log").read_text(errors="replace")
    assert '"event": "model_load_failed"' in log_text and " ready." not in log_text


# --- the bare command: `celery -A workers.app worker`, as Celery users type it (issue #13, bug 3) ----------
def test_the_bare_celery_command_gives_the_tenderscan_worker(stack):
    """No -P, -c or -Q: the threads pool, TENDERSCAN_WORKER_CONCURRENCY (here 2 x MAX_BATCH_SIZE = 16) and
    the scans queue, as `tenderscan worker` starts it; not Celery's default prefork x the concurrency,
    each child loading the model and every batch of size 1. Asked of the running worker itself."""
    settings, env, log_dir = stack
    node = f"bare-{uuid.uuid4().hex[:6]}@{os.uname().nodename}"
    cmd = [str(VENV_BIN / "celery"), "-A", "workers.app", "worker", "-n", node]
    worker = spawn("worker", cmd, log_dir, env=env, cwd=Path(__file__).resolve().parents[2])
    try:
        worker.wait_for_log(" ready.", timeout=120)
        inspect = make_celery(settings).control.inspect(destination=[node], timeout=5)
        stats = inspect.stats()[node]
        queues = [q["name"] for q in inspect.active_queues()[node]]
    finally:
        worker.stop()
    assert stats["pool"]["implementation"] == "celery.concurrency.thread:TaskPool", stats["pool"]
    assert stats["pool"]["max-concurrency"] == 16 == 2 * settings.max_batch_size
    assert queues == [keys.QUEUE]
    assert len(stats["pool"].get("processes", [])) == 0  # no forked children: one process, one model
    lines = [line for line in (log_dir / "worker.log").read_text().splitlines() if line.strip()]
    assert [line for line in lines if not line.startswith("{")] == []  # every line JSON: no text banner
    events = [json.loads(line) for line in lines]
    assert any(e.get("logger", "").startswith("celery") and e["event"].endswith(" ready.") for e in events)
    [start] = [e for e in events if e.get("event") == "worker_starting"]
    assert (start["pool"], start["concurrency"], start["queues"]) == ("threads", 16, [keys.QUEUE])


def test_the_bare_command_refuses_a_process_count_it_cannot_honour(stack):
    """TENDERSCAN_WORKER_PROCESSES = 2 asks for two worker processes, which only `tenderscan worker`'s
    supervisor runs: the bare command says so and exits, before it loads a model or takes a message."""
    _, env, log_dir = stack
    cmd = [str(VENV_BIN / "celery"), "-A", "workers.app", "worker"]
    worker = spawn("worker", cmd, log_dir, env=dict(env, TENDERSCAN_WORKER_PROCESSES="2"),
                            cwd=Path(__file__).resolve().parents[2])
    try:
        worker.proc.wait(60)
    finally:
        worker.stop()
    log_text = (log_dir / "worker.log").read_text(errors="replace")
    assert worker.proc.returncode == 2, log_text[-3000:]
    assert '"event": "worker_processes_unsupported"' in log_text and "TENDERSCAN_WORKER_PROCESSES" in log_text
    assert "model_loaded" not in log_text and " ready." not in log_text
