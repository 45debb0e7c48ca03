"""`tenderscan dev up | env | down` for real: SeaweedFS and a private Redis, stopped by `down`, by
Ctrl-C, and after `up` itself was killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from producer.dev import up as dev
from tests.integration.conftest import wait_until
from workers.core.settings import Settings
from workers.core.storage import S3ObjectStore

pytestmark = pytest.mark.integration

TENDERSCAN = [str(Path(sys.executable).parent / "tenderscan")]


def cli(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([*TENDERSCAN, "dev", *args], capture_output=True, text=True, timeout=timeout,
                          env={k: v for k, v in os.environ.items() if not k.startswith("TENDERSCAN_")})


def start_up(state: Path) -> subprocess.Popen:
    return subprocess.Popen([*TENDERSCAN, "dev", "up", "--dir", str(state)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def exported(text: str) -> dict[str, str]:
    return dict(line.removeprefix("export ").split("=", 1) for line in text.splitlines() if line.startswith("export "))


def pids_of(state: Path) -> list[int]:
    return list((dev.read_state(state) or {}).get("services", {}).values())


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def test_up_prints_working_variables_and_down_stops_everything(tmp_path):
    state = tmp_path / "dev"
    proc = start_up(state)
    try:
        env_out = cli("--dir", str(state), "env", "--wait", "90")
        assert env_out.returncode == 0, env_out.stderr + (proc.stderr.read() if proc.poll() is not None else "")
        env = exported(env_out.stdout)
        assert {"TENDERSCAN_REDIS_URL", "TENDERSCAN_S3_ENDPOINT_URL", "TENDERSCAN_S3_BUCKET", "TENDERSCAN_API_URL",
                "TENDERSCAN_API_KEY", "TENDERSCAN_API_KEYS", "TENDERSCAN_KEY_HMAC_SECRET", "TENDERSCAN_REVIEWER_KEY",
                "TENDERSCAN_REVIEWER_KEYS"} <= set(env)
        settings = Settings.from_env(env)  # the variables are valid settings, and they point at live services
        assert list(settings.reviewer_keys.values()) == ["reviewer@dev"]  # the console login `up` printed
        assert redis.Redis.from_url(settings.redis_url).ping()
        for bucket in (settings.s3_bucket, settings.models_bucket):
            S3ObjectStore.from_settings(settings, bucket).ping()  # the buckets exist
        assert Path(settings.heartbeat_file).is_relative_to(state.resolve())
        assert cli("--dir", str(state), "up").returncode == 1  # one stack per directory

        services = pids_of(state)
        assert len(services) == 2
        down = cli("--dir", str(state), "down")
        assert down.returncode == 0, down.stderr
        assert proc.wait(30) == 0
        assert all(gone(pid) for pid in services)
        assert not (state / "state.json").exists() and not (state / "s3").exists() and (state / "logs").is_dir()
        port_base = int(env["TENDERSCAN_S3_ENDPOINT_URL"].rsplit(":", 1)[1]) - 3
        assert not [p for p in Path("/tmp").glob("seaweedfs-*.sock") if str(port_base + 10000) in p.name]
        assert "no dev stack" in cli("--dir", str(state), "env").stderr
    finally:
        proc.kill()
        cli("--dir", str(state), "down")


def test_ctrl_c_stops_it_and_a_killed_up_is_cleaned_by_down(tmp_path):
    state = tmp_path / "dev"
    proc = start_up(state)
    try:
        assert cli("--dir", str(state), "env", "--wait", "90").returncode == 0
        services = pids_of(state)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0 and "stopped" in proc.stderr.read()
        assert all(gone(pid) for pid in services)

        proc = start_up(state)  # again, in the same directory: it starts empty
        assert cli("--dir", str(state), "env", "--wait", "90").returncode == 0
        services = pids_of(state)
        proc.kill()  # `up` dies without stopping its services
        proc.wait(10)
        assert not any(gone(pid) for pid in services)
        assert cli("--dir", str(state), "down").returncode == 0
        assert wait_until(lambda: all(gone(pid) for pid in services), 10)
    finally:
        proc.kill()
        cli("--dir", str(state), "down")


def test_env_without_a_stack_says_how_to_start_one(tmp_path):
    result = cli("--dir", str(tmp_path / "none"), "env")
    assert result.returncode == 1 and "tenderscan dev up" in result.stderr
    assert cli("--dir", str(tmp_path / "none"), "down").returncode == 0  # nothing to stop is not an error
    started = time.monotonic()
    assert cli("--dir", str(tmp_path / "none"), "env", "--wait", "1").returncode == 1
    assert time.monotonic() - started >= 1
