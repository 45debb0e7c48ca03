"""Fixtures for real services. Integration tests fail, never skip, when a service is missing.

Safe to run in parallel (`make test` runs pytest-xdist): every pytest process starts its own services
on free loopback ports, so no two processes share a Redis DB, a bucket, a port or a file by name.

    redis_server  a private redis-server per pytest process (`redis-server` must be installed)
    redis_url     its DB 0; `clean_redis` empties it before a test. A test that needs a second DB
                  takes one of its own (test_worker); whole stacks start their own redis-server
    seaweedfs     one SeaweedFS (`weed mini`) per pytest process, on free loopback ports
    s3_settings   Settings pointing at both, with fresh buckets per test
    deps, api     the edge with in-memory twins for S3 and the queue (modules supply `settings`)

Nothing is written to /tmp: pytest's temporary directories live in .tenderscan/pytest (emptied at the
start of each run) and TMPDIR points into .tenderscan/tmp for this process and everything it starts.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from producer.dev import services
from producer.dev.stack import ACCESS_KEY, SECRET_KEY
from workers.core.settings import Settings
from workers.core.storage import S3ObjectStore

ROOT = Path(__file__).resolve().parent.parent
__all__ = ["ACCESS_KEY", "SECRET_KEY"]  # tests import the local stack's S3 credentials from here


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config) -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    if config.option.basetemp is None and worker == "main":  # xdist workers get a subfolder of the controller's
        config.option.basetemp = str(ROOT / ".tenderscan" / "pytest")
    tmp = ROOT / ".tenderscan" / "tmp" / worker
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    os.environ["TMPDIR"] = str(tmp)
    tempfile.tempdir = None  # recomputed from TMPDIR on next use
    config.stash[_TMP] = tmp


def pytest_unconfigure(config) -> None:
    tmp = config.stash.get(_TMP, None)
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)


_TMP = pytest.StashKey[Path]()


# The tests that take a minute or more in `make test` (its --durations, 2026-12-02: the bench smoke runs
# 100-170 s, the fleet 90 s, each chaos fault 40-60 s, the README commands 55 s): they start first.
LONGEST_FIRST = ("tests/test_bench.py", "tests/test_bench_rollout.py", "tests/integration/test_fleet.py",
                 "tests/chaos/", "tests/integration/test_readme.py")


def pytest_collection_modifyitems(config, items) -> None:
    """The longest tests first, then the other integration tests (a stable sort), so a parallel run does
    not end with one process working through a long one while the others have nothing left."""
    items.sort(key=lambda item: (not item.nodeid.startswith(LONGEST_FIRST),
                                 item.get_closest_marker("integration") is None))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`-n N`: a module of tests/integration/ runs whole in one process, since several build one
    module-wide stack that a split would build once per process; every other test is scheduled alone.
    (xdist_group marks would say the same, but pytest 9.2 ignores the node ids xdist 3.8 rewrites.)"""
    from xdist.scheduler import LoadScopeScheduling

    class IntegrationModules(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module.startswith("tests/integration/") else nodeid

    return IntegrationModules(config, log) if config.getvalue("dist") == "load" else None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> services.Service:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server): the tests start their own")
    root = tmp_path_factory.mktemp("redis")
    svc = services.start_redis(root / "data", root / "logs")
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server) -> str:
    return redis_server.extra["url"]


@pytest.fixture()
def clean_redis(redis_url):
    """The session Redis's DB 0, emptied before the test."""
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield redis_url
    client.close()


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory):
    root = tmp_path_factory.mktemp("seaweedfs")
    svc = services.start_seaweedfs(root / "data", ACCESS_KEY, SECRET_KEY, ["tenderscan", "tenderscan-models"],
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
    return ROOT
