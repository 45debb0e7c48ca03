"""A running tenderscan stack for integration tests: a producer.dev DevStack (its own redis-server,
buckets of its own on the session's SeaweedFS), the real API (uvicorn) and real `celery worker`
processes.
"""

from __future__ import annotations

import contextlib
import sys
import time
import uuid
from pathlib import Path

import pytest

from producer.dev.stack import DevStack
from workers.core.storage import S3ObjectStore

pytestmark = pytest.mark.integration

TENANT_KEYS = {"acme": "key-acme-integration", "globex": "key-globex-integration"}
BIN = Path(sys.executable).parent
Stack = DevStack  # what the integration tests call a stack


def start_stack(tmp: Path, seaweedfs, workers: int = 1, extra_env: dict[str, str] | None = None) -> DevStack:
    """The API and `workers` workers (not waited for) on a private Redis and fresh buckets."""
    suffix = uuid.uuid4().hex[:8]
    stack = DevStack.start(tmp, s3=seaweedfs, scans_bucket=f"ts-e2e-{suffix}", models_bucket=f"ts-e2e-models-{suffix}",
                             api_keys=TENANT_KEYS, extra={"TENDERSCAN_LOG_JSON": "true", **(extra_env or {})})
    try:
        stack.start_api()
        for _ in range(workers):
            stack.start_worker()
    except Exception:
        stack.stop()
        raise
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
