"""A running tenderscan stack for integration tests: the real API (uvicorn) and real `celery worker`
processes on the machine's Redis (a dedicated DB) and a SeaweedFS of the test session.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from producer import devstack
from tests.conftest import ACCESS_KEY, SECRET_KEY
from workers.core.settings import Settings
from workers.core.storage import S3ObjectStore

pytestmark = pytest.mark.integration

TENANT_KEYS = {"acme": "key-acme-integration", "globex": "key-globex-integration"}
BIN = Path(sys.executable).parent


@dataclass
class Stack:
    settings: Settings
    env: dict[str, str]
    api_url: str
    logs: Path
    services: list[devstack.Service] = field(default_factory=list)
    workers: list[devstack.Service] = field(default_factory=list)

    def start_worker(self, name: str | None = None, extra_env: dict[str, str] | None = None,
                     args: tuple[str, ...] = ()) -> devstack.Service:
        name = name or f"worker-{len(self.workers) + 1}"
        cmd = [str(BIN / "celery"), "-A", "workers.app", "worker", "-P", "threads", "-n", f"{name}@%h",
               "--loglevel", "INFO", *args]
        svc = devstack.spawn(name, cmd, self.logs, env=dict(self.env, **(extra_env or {})))
        self.workers.append(svc)
        return svc

    def stop(self) -> None:
        for svc in self.workers + self.services:
            svc.stop()


def start_stack(tmp: Path, seaweedfs, redis_db: int, workers: int = 1, extra_env: dict[str, str] | None = None) -> Stack:
    redis_url = f"redis://127.0.0.1:6379/{redis_db}"
    if not devstack.redis_answers(redis_url):
        pytest.fail(f"Redis does not answer at {redis_url}")
    redis.Redis.from_url(redis_url).flushdb()
    suffix = uuid.uuid4().hex[:8]
    settings = Settings().with_(
        redis_url=redis_url, s3_endpoint_url=seaweedfs.extra["endpoint"], s3_access_key=ACCESS_KEY,
        s3_secret_key=SECRET_KEY, s3_bucket=f"ts-e2e-{suffix}", models_bucket=f"ts-e2e-models-{suffix}",
        api_keys={hashlib.sha256(k.encode()).hexdigest(): t for t, k in TENANT_KEYS.items()},
    )
    for bucket in (settings.s3_bucket, settings.models_bucket):
        S3ObjectStore.from_settings(settings, bucket).ensure_bucket()
    env = dict(
        os.environ,
        TENDERSCAN_REDIS_URL=redis_url,
        TENDERSCAN_S3_ENDPOINT_URL=settings.s3_endpoint_url,
        TENDERSCAN_S3_ACCESS_KEY=ACCESS_KEY,
        TENDERSCAN_S3_SECRET_KEY=SECRET_KEY,
        TENDERSCAN_S3_BUCKET=settings.s3_bucket,
        TENDERSCAN_MODELS_BUCKET=settings.models_bucket,
        TENDERSCAN_API_KEYS=",".join(f"{t}:{hashlib.sha256(k.encode()).hexdigest()}" for t, k in TENANT_KEYS.items()),
        TENDERSCAN_LOG_JSON="true",
        **(extra_env or {}),
    )
    logs = tmp / "logs"
    port = devstack.free_port()
    stack = Stack(settings, env, f"http://127.0.0.1:{port}", logs)
    api = devstack.spawn("api", [str(BIN / "tenderscan"), "api", "--host", "127.0.0.1", "--port", str(port)],
                         logs, env=env)
    stack.services.append(api)
    for _ in range(workers):
        stack.start_worker()
    try:
        devstack.wait_for_port(port, 60, api.proc)
    except Exception:
        stack.stop()
        pytest.fail(f"API did not start:\n{api.log_tail()}")
    return stack


@contextlib.contextmanager
def tenant_clients(stack: Stack, timeout: float = 30):
    """One API client per test tenant, once the API is ready; closed on exit."""
    from producer.client import TenderscanClient

    made = {tenant: TenderscanClient(stack.api_url, key, timeout=timeout) for tenant, key in TENANT_KEYS.items()}
    try:
        assert wait_until(lambda: made["acme"].ready(), 60), "API never became ready"
        yield made
    finally:
        for client in made.values():
            client.close()


def wait_until(predicate, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def prefill(stack: Stack, images: list[bytes], count: int, tenant: str = "acme", threads: int = 8) -> list[str]:
    """Accept `count` scans exactly as the edge does (producer.submit.Submitter, real S3, Redis and
    broker), without HTTP in between: a backlog built fast, for drain and scaling runs."""
    from concurrent.futures import ThreadPoolExecutor

    from producer.submit import CeleryEnqueuer, Submitter, Upload
    from workers.core.imaging import Limits
    from workers.core.verdict_store import VerdictStore

    submitter = Submitter(S3ObjectStore.from_settings(stack.settings), VerdictStore.from_settings(stack.settings),
                          CeleryEnqueuer.from_settings(stack.settings), Limits.from_settings(stack.settings),
                          stack.settings.idempotency_ttl_s)

    def one(i: int) -> str:
        upload = Upload(tenant, f"store-{i % 4}", f"pos-{i % 8}", images[i % len(images)])
        return submitter.accept(upload).scan_id

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(count)))
