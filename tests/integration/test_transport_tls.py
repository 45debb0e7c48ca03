"""Transport security on real servers (workers/core/transport.py): a TLS-only redis-server that demands a
client certificate, and SeaweedFS's S3 gateway on HTTPS, both with a throwaway CA (tests/tls.py).

The right CA works end to end (verdict store; a scan through a real `celery worker` on a rediss://
broker; S3 over HTTPS); a wrong CA fails with an error that names the setting to fix.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
from pathlib import Path

import pytest
from kombu import pools
from PIL import Image

from producer.dev.services import free_port, free_port_block, spawn, start_seaweedfs, wait_for_port
from producer.submit import CeleryEnqueuer, Submitter, Upload
from tests.conftest import ACCESS_KEY, SECRET_KEY
from tests.integration.conftest import wait_until
from tests.tls import make_pki
from workers.core.enums import judged
from workers.core.errors import StorageError, StoreUnavailable, TransientError
from workers.core.imaging import Limits
from workers.core.settings import Settings
from workers.core.storage import S3ObjectStore
from workers.core.transport import TransportError, check_tls
from workers.core.verdict_store import VerdictStore

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def pkis(tmp_path_factory):
    root = tmp_path_factory.mktemp("pki")
    return make_pki(root / "right"), make_pki(root / "wrong", name="impostor")


@pytest.fixture(scope="module")
def redis_tls(tmp_path_factory, pkis):
    """redis-server with TLS only (no plain port) and tls-auth-clients yes."""
    pki = pkis[0]
    root = tmp_path_factory.mktemp("redis-tls")
    port = free_port()
    svc = spawn("redis-tls", [
        "redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "no", "--dir", str(root), "--tls-cert-file", str(pki.server_cert),
        "--tls-key-file", str(pki.server_key), "--tls-ca-cert-file", str(pki.ca), "--tls-auth-clients", "yes"],
        root / "logs")
    try:
        wait_for_port(port, 15, svc.proc)
    except Exception:
        svc.stop()
        pytest.fail(f"redis-server did not start with TLS (built without it?):\n{svc.log_tail()}")
    yield f"rediss://127.0.0.1:{port}/0"
    svc.stop()


def tls_settings(base: Settings, url: str, pki) -> Settings:
    """rediss:// with our CA and a client certificate (the server asks for one)."""
    return base.with_(redis_url=url, redis_tls_ca_file=str(pki.ca), redis_tls_cert_file=str(pki.client_cert),
                      redis_tls_key_file=str(pki.client_key))


def test_the_verdict_store_works_over_tls_with_the_right_ca(redis_tls, pkis):
    store = VerdictStore.from_settings(tls_settings(Settings(), redis_tls, pkis[0]))
    store.r.set("ts:tls-probe", "ok", ex=60)
    assert store.r.get("ts:tls-probe") == "ok"
    assert store.r.connection_pool.connection_kwargs["ssl_cert_reqs"] == "required"
    check_tls(tls_settings(Settings(), redis_tls, pkis[0]))  # no TransportError


def test_a_wrong_ca_fails_and_says_which_setting(redis_tls, pkis):
    right, wrong = pkis
    settings = Settings().with_(redis_url=redis_tls, redis_tls_ca_file=str(wrong.ca),
                                redis_tls_cert_file=str(right.client_cert), redis_tls_key_file=str(right.client_key))
    with pytest.raises(StoreUnavailable):
        VerdictStore.from_settings(settings).ping()
    with pytest.raises(TransportError, match="TENDERSCAN_REDIS_URL.*did not verify.*TENDERSCAN_REDIS_TLS_CA_FILE"):
        check_tls(settings)
    try:
        with pytest.raises(TransientError):  # the broker side: a 503 at the edge, never an unverified send
            CeleryEnqueuer.from_settings(settings)._send("tenderscan.tls_probe", {})
    finally:
        # kombu keys its process-wide producer pools by host, port and db, not by TLS options: drop
        # the pool this wrong-CA app made, or the next app on this broker would reuse its connection.
        pools.reset()


def test_without_a_client_certificate_redis_refuses(redis_tls, pkis):
    with pytest.raises(StoreUnavailable):
        VerdictStore.from_settings(Settings().with_(redis_url=redis_tls, redis_tls_ca_file=str(pkis[0].ca))).ping()


@pytest.fixture()
def tls_stack_settings(s3_settings, redis_tls, pkis) -> Settings:
    return tls_settings(s3_settings, redis_tls, pkis[0])


def _env(settings: Settings, url: str, **extra: str) -> dict[str, str]:
    """A worker's environment: the plain rediss:// URL, the TLS files as their own variables."""
    env = dict(os.environ, TENDERSCAN_REDIS_URL=url, TENDERSCAN_REDIS_TLS_CA_FILE=settings.redis_tls_ca_file,
               TENDERSCAN_REDIS_TLS_CERT_FILE=settings.redis_tls_cert_file,
               TENDERSCAN_REDIS_TLS_KEY_FILE=settings.redis_tls_key_file,
               TENDERSCAN_S3_ENDPOINT_URL=settings.s3_endpoint_url, TENDERSCAN_S3_ACCESS_KEY=ACCESS_KEY,
               TENDERSCAN_S3_SECRET_KEY=SECRET_KEY, TENDERSCAN_S3_BUCKET=settings.s3_bucket,
               TENDERSCAN_MODELS_BUCKET=settings.models_bucket, TENDERSCAN_LOG_JSON="true",
               TENDERSCAN_RECONCILE_INTERVAL_S="0")
    return {**env, **extra}


def test_a_scan_round_trips_through_celery_on_a_rediss_broker(tls_stack_settings, redis_tls, tmp_path):
    s = tls_stack_settings
    buf = io.BytesIO()
    Image.new("RGB", (240, 108), (10, 120, 60)).save(buf, "JPEG")
    verdicts = VerdictStore.from_settings(s)
    submitter = Submitter(S3ObjectStore.from_settings(s), verdicts, CeleryEnqueuer.from_settings(s),
                          Limits.from_settings(s), s.idempotency_ttl_s)
    scan_id = submitter.accept(Upload("acme", "store-1", "pos-1", buf.getvalue())).scan_id  # sent over TLS
    worker = spawn("worker-tls", [str(BIN / "celery"), "-A", "workers.app", "worker", "-P", "threads",
                                           "-c", "2", "-n", "tls@%h"], tmp_path / "logs",
                   env=_env(s, redis_tls, TENDERSCAN_HEARTBEAT_FILE=str(tmp_path / "hb")))
    try:
        assert wait_until(lambda: verdicts.get_verdict(scan_id) is not None, 120), worker.log_tail()
        verdict = verdicts.get_verdict(scan_id)
        assert judged(verdict.decision, verdict.reason)
        assert verdict.input.sha256 == hashlib.sha256(buf.getvalue()).hexdigest()
    finally:
        worker.stop()


def test_a_worker_with_the_wrong_ca_stops_at_start_naming_it(tls_stack_settings, redis_tls, pkis, tmp_path):
    env = _env(tls_stack_settings, redis_tls, TENDERSCAN_REDIS_TLS_CA_FILE=str(pkis[1].ca),
               TENDERSCAN_HEARTBEAT_FILE=str(tmp_path / "hb"))
    worker = spawn("worker-wrong-ca", [str(BIN / "celery"), "-A", "workers.app", "worker", "-P", "threads",
                                                "-c", "1", "-n", "wrongca@%h"], tmp_path / "logs", env=env)
    try:
        assert wait_until(lambda: not worker.alive(), 60), "the worker kept running with an unverifiable broker"
        assert worker.proc.returncode != 0
        assert "tls_verification_failed" in worker.log_tail(80) and "TENDERSCAN_REDIS_TLS_CA_FILE" in worker.log_tail(80)
    finally:
        worker.stop()


# --- HTTPS to S3 ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def seaweedfs_https(tmp_path_factory, pkis):
    """`weed mini` with its S3 gateway also on HTTPS (-s3.port.https, -s3.cert.file, -s3.key.file)."""
    pki = pkis[0]
    root = tmp_path_factory.mktemp("weed-https")
    base = free_port_block(7)
    try:
        svc = start_seaweedfs(root / "data", ACCESS_KEY, SECRET_KEY, ["tls-scans"], root / "logs", port_base=base,
                              ports=7, wait_port=base + 6, name="seaweedfs-https",
                              extra_args=(f"-s3.port.https={base + 6}", f"-s3.cert.file={pki.server_cert}",
                                          f"-s3.key.file={pki.server_key}"))
    except RuntimeError as exc:
        pytest.fail(f"SeaweedFS did not open its HTTPS port: {exc}")
    yield f"https://127.0.0.1:{base + 6}"
    svc.stop()


def test_s3_over_https_verifies_against_the_ca_bundle(seaweedfs_https, pkis):
    right, wrong = pkis
    base = Settings().with_(s3_endpoint_url=seaweedfs_https, s3_access_key=ACCESS_KEY, s3_secret_key=SECRET_KEY,
                            s3_bucket="tls-scans")
    store = S3ObjectStore.from_settings(base.with_(s3_ca_file=str(right.ca)))
    assert wait_until(lambda: _pings(store), 30)
    store.put("tls/probe.txt", b"over https", "text/plain")
    assert store.get("tls/probe.txt").data == b"over https"
    check_tls(base.with_(s3_ca_file=str(right.ca)))

    bad = base.with_(s3_ca_file=str(wrong.ca))
    with pytest.raises(StorageError, match="TLS.*TENDERSCAN_S3_CA_FILE"):
        S3ObjectStore.from_settings(bad).get("tls/probe.txt")
    with pytest.raises(TransportError, match="S3_ENDPOINT_URL.*S3_CA_FILE"):
        check_tls(bad)
    with pytest.raises(StorageError, match="TLS"):  # nor does the system trust store know our private CA
        S3ObjectStore.from_settings(base).get("tls/probe.txt")


def _pings(store: S3ObjectStore) -> bool:
    try:
        store.ping()
    except (StorageError, TransientError):
        return False
    return True
