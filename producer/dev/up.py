"""`tenderscan dev up | env | down`: S3 and Redis for running tenderscan by hand.

    up     SeaweedFS and a private redis-server on free loopback ports, both buckets
           created; prints the TENDERSCAN_* variables to export, then stays in the foreground until
           Ctrl-C, SIGTERM or `dev down`, and stops both. Each `up` starts empty.
    env    prints the running stack's variables again (`eval "$(tenderscan dev env)"` in another shell)
    down   stops the stack `up` started in this directory, and waits until it has

The state lives in DIR (default `.tenderscan/dev` under the current directory): `state.json` (the
`up` process and its variables, present while it runs), `logs/`, and the services' data, removed
when `up` stops.

The variables include a bootstrap API key for tenant `dev` (TENDERSCAN_API_KEY, accepted by an API
started with these variables), TENDERSCAN_API_URL for the default `tenderscan api` port, a fresh
TENDERSCAN_KEY_HMAC_SECRET (so `tenderscan tenant` keys work with that API and no development
default is in use), and a review console login for tenant `dev`'s reviewer (TENDERSCAN_REVIEWER_KEY, its
digest in TENDERSCAN_REVIEWER_KEYS as `reviewer@dev`: open http://127.0.0.1:8000/review; docs/REVIEW.md).
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import signal
import sys
import time
from hashlib import sha256
from pathlib import Path

DEFAULT_DIR = Path(".tenderscan") / "dev"
DEFAULT_API_URL = "http://127.0.0.1:8000"  # `tenderscan api`'s default port
DEV_TENANT = "dev"
STATE = "state.json"


class DevError(Exception):
    """What the person must do is in the message."""


def exports_text(exports: dict[str, str]) -> str:
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in exports.items())


def read_state(state_dir: Path) -> dict | None:
    try:
        return json.loads((state_dir / STATE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")  # a recycled pid is not our `dev up`
    return not cmdline.exists() or b"dev\0up" in cmdline.read_bytes()


def running(state_dir: Path) -> dict | None:
    """The state of a live `dev up` in state_dir, else None."""
    state = read_state(state_dir)
    return state if state and _alive(state["pid"]) else None


def up(state_dir: Path, redis_port: int | None = None, s3_port_base: int | None = None,
       out=sys.stdout, err=sys.stderr, ready=None) -> int:
    """Start, print, wait for a stop signal, stop. `ready(stack)` is called once up (tests)."""
    from producer.dev.stack import DevStack

    if (state := running(state_dir)) is not None:
        raise DevError(f"a dev stack already runs in {state_dir} (pid {state['pid']}); "
                       "`tenderscan dev down` stops it")
    _stop_leftovers(state_dir)
    shutil.rmtree(state_dir, ignore_errors=True)  # each `up` starts empty: a fresh HMAC secret, fresh data
    key = "dev-" + secrets.token_urlsafe(24)
    reviewer_key = "rev-" + secrets.token_urlsafe(24)
    reviewers = f"reviewer@{DEV_TENANT}:{sha256(reviewer_key.encode()).hexdigest()}"  # TENDERSCAN_REVIEWER_KEYS
    stopping = []

    def on_signal(signum, _frame):
        stopping.append(signum)
        raise KeyboardInterrupt

    # SIGINT too: a parent that ignores it (nohup, some runners) would otherwise make Ctrl-C a no-op here
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    stack = None
    try:
        stack = DevStack.start(state_dir.resolve(), api_keys={DEV_TENANT: key}, redis_port=redis_port,
                                 s3_port_base=s3_port_base,
                                 extra={"TENDERSCAN_KEY_HMAC_SECRET": secrets.token_hex(32),
                                        "TENDERSCAN_API_URL": DEFAULT_API_URL, "TENDERSCAN_API_KEY": key,
                                        "TENDERSCAN_REVIEWER_KEY": reviewer_key,
                                        "TENDERSCAN_REVIEWER_KEYS": reviewers})
        state = {"pid": os.getpid(), "started_at": time.time(), "exports": stack.exports,
                 "services": {svc.name: svc.proc.pid for svc in stack.owned},
                 "s3": {"port_base": stack.s3.extra["port_base"], "sockets": str(stack.s3.extra["sockets"])}}
        tmp = state_dir / (STATE + ".tmp")
        tmp.write_text(json.dumps(state, indent=1) + "\n")
        tmp.replace(state_dir / STATE)  # atomic: `dev env` never reads half a file
        out.write(exports_text(stack.exports))
        out.flush()
        print(f"# tenderscan dev stack up: S3 {stack.s3.extra['endpoint']} (buckets "
              f"{stack.exports['TENDERSCAN_S3_BUCKET']}, {stack.exports['TENDERSCAN_MODELS_BUCKET']}), "
              f"Redis {stack.redis.extra['url']}; logs in {stack.logs}\n"
              "# in another shell: eval \"$(tenderscan dev env)\"; then `tenderscan api`, `tenderscan worker`, "
              "...\n# Ctrl-C here or `tenderscan dev down` stops it", file=err, flush=True)
        if ready:
            ready(stack)
        while all(svc.alive() for svc in stack.owned):
            time.sleep(0.5)
        dead = [svc for svc in stack.owned if not svc.alive()]
        print(f"tenderscan dev: {', '.join(s.name for s in dead)} exited; stopping\n"
              + "\n".join(s.log_tail(10) for s in dead), file=err)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if stack is not None:
            stack.stop()
        (state_dir / STATE).unlink(missing_ok=True)
        for data in ("s3", "redis"):
            shutil.rmtree(state_dir / data, ignore_errors=True)
        if stack is not None:
            print("# tenderscan dev stack stopped", file=err, flush=True)


def env(state_dir: Path, wait_s: float = 0.0) -> str:
    """The export lines of the stack running in state_dir; waits up to wait_s for one to come up."""
    deadline = time.monotonic() + wait_s
    while (state := running(state_dir)) is None:
        if time.monotonic() >= deadline:
            raise DevError(f"no dev stack runs in {state_dir}: start one with `tenderscan dev up`")
        time.sleep(0.2)
    return exports_text(state["exports"])


def down(state_dir: Path, timeout: float = 60.0) -> bool:
    """Stop the `up` of state_dir and wait for it. False when none was running."""
    state = read_state(state_dir)
    if state is None:
        return False
    pid = state["pid"]
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    _stop_leftovers(state_dir)  # an `up` that was SIGKILLed leaves its services running
    (state_dir / STATE).unlink(missing_ok=True)
    return True


def _stop_leftovers(state_dir: Path) -> None:
    """Services of a previous `up` that died without stopping them (each leads its own process group)."""
    from producer.dev.services import remove_weed_sockets

    state = read_state(state_dir)
    if not state or _alive(state["pid"]):
        return
    pids = [pid for pid in state.get("services", {}).values() if _is_service(pid)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.killpg(pid, sig)
            except (ProcessLookupError, PermissionError):
                continue
        deadline = time.monotonic() + 5
        while any(_is_service(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
    if "s3" in state:
        remove_weed_sockets(state["s3"]["port_base"], Path(state["s3"]["sockets"]))


def _is_service(pid: int) -> bool:
    """pid is still one of ours: SeaweedFS or redis-server (a recycled pid is left alone)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        status = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return status != "Z" and (b"weed" in cmdline or b"redis-server" in cmdline)
