"""Fixtures for real services. Integration tests fail, never skip, when a service is missing.

    redis_url     the machine's Redis (TENDERSCAN_TEST_REDIS_URL, default 127.0.0.1:6379/0); each test
                  gets its own logical DB prefix-free view by flushing a dedicated DB number
    seaweedfs     one SeaweedFS (`weed mini`) per test session, on free loopback ports
    s3_settings   Settings pointing at both, with fresh buckets per test module
    deps, api     the edge with in-memory twins for S3 and the queue (modules supply `settings`)
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from producer import devstack
from workers.core.settings import Settings
from workers.core.storage import S3ObjectStore

ACCESS_KEY = "tenderscan"
SECRET_KEY = "tenderscan-secret"
TEST_REDIS_URL = os.environ.get("TENDERSCAN_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")


@pytest.fixture(scope="session")
def redis_url() -> str:
    if not devstack.redis_answers(TEST_REDIS_URL):
        pytest.fail(f"Redis does not answer at {TEST_REDIS_URL} (start redis-server, or set TENDERSCAN_TEST_REDIS_URL)")
    return TEST_REDIS_URL


@pytest.fixture()
def clean_redis(redis_url):
    """The test Redis DB, emptied before the test (DB 9 by default, never the broker's DB 0)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield redis_url
    client.close()


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory):
    root = tmp_path_factory.mktemp("seaweedfs")
    svc = devstack.start_seaweedfs(root / "data", ACCESS_KEY, SECRET_KEY, ["tenderscan", "tenderscan-models"],
                                   root / "logs")
    yield svc
    svc.stop()


@pytest.fixture()
def s3_settings(seaweedfs, redis_url) -> Settings:
    """Settings on the real services, with buckets of their own so tests never see each other's objects."""
    suffix = uuid.uuid4().hex[:8]
    settings = Settings().with_(
        redis_url=redis_url,
        s3_endpoint_url=seaweedfs.extra["endpoint"],
        s3_access_key=ACCESS_KEY,
        s3_secret_key=SECRET_KEY,
        s3_bucket=f"ts-scans-{suffix}",
        models_bucket=f"ts-models-{suffix}",
    )
    for bucket in (settings.s3_bucket, settings.models_bucket):
        S3ObjectStore.from_settings(settings, bucket).ensure_bucket()
    return settings


@pytest.fixture()
def deps(settings):
    """The edge's dependencies with in-memory S3 and queue twins on the real Redis. Each API test
    module defines its own `settings` fixture (tenants, limits) that this one picks up."""
    from producer.app import Deps

    return Deps.with_twins(settings)


@pytest.fixture()
def api(settings, deps):
    """A TestClient on create_app(settings, deps), lifespan included."""
    from fastapi.testclient import TestClient

    from producer.app import create_app

    with TestClient(create_app(settings, deps)) as client:
        yield client


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
