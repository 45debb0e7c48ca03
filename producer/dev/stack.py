"""One local tenderscan stack: S3 and Redis, the TENDERSCAN_* variables that point at them, and the
API and celery workers started on demand. `tenderscan dev up`, `make demo`, the benchmark, the
integration tests and the chaos harness all start their services through `DevStack.start`.

    s3        a SeaweedFS (`weed mini`) started here, or one already running (tests share one per
              process and give each stack buckets of its own)
    redis     a private redis-server started here (default), or a Redis URL given (a DB of a
              server already running)
    exports   the TENDERSCAN_* variables the stack sets: what `tenderscan dev env` prints, and what
              every child process (API, workers) gets on top of a clean environment
    settings  Settings.from_env(the children's environment): the parent sees what the children see

Everything the stack started, `stop()` stops; services it was given are left running.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from producer.dev import services
from producer.dev.services import Service
from workers.core.settings import Settings

ACCESS_KEY, SECRET_KEY = "tenderscan", "tenderscan-secret"  # local S3 only: weed enforces them
SCANS_BUCKET, MODELS_BUCKET = "tenderscan", "tenderscan-models"  # Settings' defaults
PREFIX = "TENDERSCAN_"
WORKER_APP = "workers.app"  # what `celery -A` loads


def clean_environ(inherit: bool = False) -> dict[str, str]:
    """This process's environment without its TENDERSCAN_* variables (unless `inherit`): a stack's
    children see the stack's settings, not whatever the caller's shell exported."""
    return {k: v for k, v in os.environ.items() if inherit or not k.startswith(PREFIX)}


@dataclass
class DevStack:
    root: Path
    env: dict[str, str]  # the whole environment of the stack's child processes
    exports: dict[str, str]  # the TENDERSCAN_* variables the stack set (a subset of env)
    s3: Service
    redis: Service | None  # the private redis-server, or None on a given Redis URL
    owned: list[Service] = field(default_factory=list)  # services started here (S3, Redis), stopped by stop()
    api: Service | None = None
    api_url: str = ""
    workers: list[Service] = field(default_factory=list)
    retired: list[Service] = field(default_factory=list)  # killed or stopped workers (their logs still count)

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.env)

    @classmethod
    def start(cls, root: Path, *, s3: Service | None = None, redis_url: str | None = None,
              appendonly: bool = False, scans_bucket: str = SCANS_BUCKET, models_bucket: str = MODELS_BUCKET,
              access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY, api_keys: Mapping[str, str] | None = None,
              extra: Mapping[str, str] | None = None, inherit: bool = False, redis_port: int | None = None,
              s3_port_base: int | None = None):
        """Start what is not given. `api_keys`: tenant -> bootstrap key (stored as sha256 digests in
        TENDERSCAN_API_KEYS). `extra`: more variables for the children. `inherit`: pass this process's
        own TENDERSCAN_* variables through (the benchmark runs what the caller configured)."""
        root.mkdir(parents=True, exist_ok=True)
        logs = root / "logs"
        owned: list[Service] = []
        try:
            red = None
            if redis_url is None:
                red = services.start_redis(root / "redis", logs, port=redis_port, appendonly=appendonly)
                owned.append(red)
                redis_url = red.extra["url"]
            if s3 is None:
                s3 = services.start_seaweedfs(root / "s3", access_key, secret_key, [scans_bucket, models_bucket],
                                              logs, port_base=s3_port_base)
                owned.append(s3)
            exports = {
                PREFIX + "REDIS_URL": redis_url,
                PREFIX + "S3_ENDPOINT_URL": s3.extra["endpoint"],
                PREFIX + "S3_ACCESS_KEY": access_key,
                PREFIX + "S3_SECRET_KEY": secret_key,
                PREFIX + "S3_BUCKET": scans_bucket,
                PREFIX + "MODELS_BUCKET": models_bucket,
                PREFIX + "HEARTBEAT_FILE": str(root / "worker.heartbeat"),  # never a shared /tmp path
            }
            if api_keys:
                exports[PREFIX + "API_KEYS"] = ",".join(
                    f"{tenant}:{hashlib.sha256(key.encode()).hexdigest()}" for tenant, key in api_keys.items())
            exports.update(extra or {})
            stack = cls(root, dict(clean_environ(inherit), **exports), exports, s3, red, owned)
            if s3 not in owned:  # a shared SeaweedFS: this stack's buckets are new
                from workers.core.storage import S3ObjectStore

                settings = stack.settings
                for bucket in (scans_bucket, models_bucket):
                    S3ObjectStore.from_settings(settings, bucket).ensure_bucket()
            return stack
        except BaseException:
            for svc in reversed(owned):
                svc.stop()
            raise

    # --- processes ---------------------------------------------------------------------------------
    def start_api(self, port: int | None = None, workers: int = 1, timeout: float = 60) -> Service:
        """`tenderscan api` on loopback; returns once its port is open (not necessarily ready)."""
        port = port or services.free_port()
        cmd = [*services.tenderscan_command(), "api", "--host", "127.0.0.1", "--port", str(port)]
        if workers != 1:
            cmd += ["--workers", str(workers)]
        self.api = services.spawn("api", cmd, self.logs, env=self.env)
        self.api_url = f"http://127.0.0.1:{port}"
        try:
            services.wait_for_port(port, timeout, self.api.proc)
        except Exception:
            self.api.stop()
            raise RuntimeError(f"the API did not start:\n{self.api.log_tail()}") from None
        return self.api

    def start_worker(self, name: str | None = None, args: tuple[str, ...] = (), env: Mapping[str, str] | None = None,
                     command: list[str] | None = None, wait: bool = False, timeout: float = 180) -> Service:
        """A real `celery -A workers.app worker -P threads` on the scans queue (or `command`).
        `wait`: until it logged `ready.` (model loaded, consuming)."""
        from workers.core import keys

        name = name or f"worker-{len(self.workers) + len(self.retired) + 1}"
        cmd = command or [str(services.VENV_BIN / "celery"), "-A", WORKER_APP, "worker", "-P", "threads",
                          "-n", f"{name}@%h", "-Q", keys.QUEUE, "--loglevel", "INFO", *args]
        svc = services.spawn(name, cmd, self.logs, env=dict(self.env, **(env or {})))
        self.workers.append(svc)
        if wait:
            svc.wait_for_log("ready.", timeout=timeout)
        return svc

    def retire(self, worker: Service) -> None:
        self.workers.remove(worker)
        self.retired.append(worker)

    # --- faults (the chaos harness) ----------------------------------------------------------------
    def kill_redis(self) -> None:
        assert self.redis is not None, "only a private Redis can be killed"
        self.redis.signal(signal.SIGKILL)
        self.redis.proc.wait(10)

    def start_redis_again(self) -> None:
        """Same port, same data dir: with appendonly it replays its AOF, without it starts empty."""
        assert self.redis is not None
        old = self.redis
        for _ in range(50):  # the port may linger a moment after the kill
            try:
                self.redis = services.start_redis(self.root / "redis", self.logs, port=old.extra["port"],
                                                  appendonly=old.extra["appendonly"])
                break
            except (RuntimeError, TimeoutError):
                time.sleep(0.2)
        else:
            raise RuntimeError("redis did not come back")
        self.owned[self.owned.index(old)] = self.redis

    def kill_s3(self) -> None:
        self.s3.signal(signal.SIGKILL)
        self.s3.proc.wait(10)
        self.s3.cleanup()  # the sockets a killed SeaweedFS leaves behind

    def start_s3_again(self) -> None:
        old = self.s3
        self.s3 = services.start_seaweedfs(old.extra["data_dir"], self.exports[PREFIX + "S3_ACCESS_KEY"],
                                           self.exports[PREFIX + "S3_SECRET_KEY"],
                                           [self.exports[PREFIX + "S3_BUCKET"], self.exports[PREFIX + "MODELS_BUCKET"]],
                                           self.logs, port_base=old.extra["port_base"])
        if old in self.owned:
            self.owned[self.owned.index(old)] = self.s3

    # --- the end -----------------------------------------------------------------------------------
    def stop(self) -> None:
        """Workers first (SIGTERM to all, so they drain side by side), then the API, then what was started here."""
        for svc in self.workers:
            svc.signal(signal.SIGTERM)
        for svc in [*self.workers, *([self.api] if self.api else []), *reversed(self.owned)]:
            try:
                svc.stop(timeout=30)
            except Exception:  # noqa: BLE001 - best-effort teardown: the next one must still stop
                svc.signal(signal.SIGKILL)
