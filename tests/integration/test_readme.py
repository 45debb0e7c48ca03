"""README.md's commands, run as written.

Every ```bash block of the README runs, in order, in one `bash -e` from a scratch directory that
holds only a `.venv` link to this checkout's: `tenderscan dev up` (SeaweedFS, a private Redis), the
README's own `tenderscan api --port 8000` and workers, a tenant, synthetic scans, verdicts, and the
stack stopped again. It runs in a network namespace of its own (root: `unshare --net`), so the
README's fixed port 8000 is free and nothing reaches this machine's services; without one, port
8000 must be free here. The ``` block of `make` targets is checked against the Makefile.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
# brings the namespace's loopback up without iproute2: SIOCSIFFLAGS(lo, IFF_UP | IFF_LOOPBACK | IFF_RUNNING)
LOOPBACK_UP = ("import fcntl, socket, struct; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
               "fcntl.ioctl(s, 0x8914, struct.pack('16sH14s', b'lo', 0x1 | 0x8 | 0x40, bytes(14)))")


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", text, re.S | re.M)


def make_targets(text: str) -> list[str]:
    blocks = re.findall(r"^```\n(.*?)^```", text, re.S | re.M)
    return [m for block in blocks for m in re.findall(r"^make ([a-z-]+)", block, re.M)]


def test_the_readme_has_the_blocks_this_test_runs():
    text = README.read_text()
    assert len(bash_blocks(text)) >= 1 and "tenderscan dev up &" in bash_blocks(text)[0]
    assert {"demo", "test"} <= set(make_targets(text))


def test_every_make_target_in_the_readme_exists_and_explains_itself():
    makefile = (ROOT / "Makefile").read_text()
    for target in make_targets(README.read_text()):
        assert re.search(rf"^{target}:.*## ", makefile, re.M), f"make {target}: no such target with a ## line"


def in_own_network() -> list[str]:
    """The command prefix that gives the script a network namespace of its own, or [] where that
    is not allowed (then port 8000 must be free)."""
    if shutil.which("unshare") is None:
        return []
    probe = subprocess.run(["unshare", "--net", "--fork", sys.executable, "-c", LOOPBACK_UP],
                           capture_output=True, timeout=30)
    return ["unshare", "--net", "--fork"] if probe.returncode == 0 else []


@pytest.mark.timeout(480)  # the script's own limit is 360 s
def test_every_readme_command_runs_as_written(tmp_path):
    script = "set -euo pipefail\n" + "\n".join(bash_blocks(README.read_text()))
    (tmp_path / "readme.sh").write_text(script)
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    wrapper = tmp_path / "run.sh"
    wrapper.write_text(textwrap.dedent(f"""\
        set -e
        {sys.executable} -c "{LOOPBACK_UP}" 2>/dev/null || true
        exec bash readme.sh
        """))
    prefix = in_own_network()
    if not prefix:
        import socket

        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", 8000)) == 0:
                pytest.fail("port 8000 is taken and no network namespace can be made (unshare --net needs root)")
    # a newcomer's shell: no TENDERSCAN_* variables, the venv not yet on PATH
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENDERSCAN_") and k != "VIRTUAL_ENV"}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if Path(p).resolve() != (ROOT / ".venv" / "bin").resolve())
    env["OMP_NUM_THREADS"] = "1"  # four worker processes share two cores here
    proc = subprocess.Popen([*prefix, "bash", str(wrapper)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=360)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail("the README's commands did not finish in 360 s:\n" + out[-6000:])
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything of the script's still alive
        # a script stopped half-way leaves `dev up`'s SeaweedFS and Redis (their own sessions): take them down
        subprocess.run([str(ROOT / ".venv" / "bin" / "tenderscan"), "dev", "down"], cwd=tmp_path, env=env,
                       capture_output=True, timeout=90)
    assert proc.returncode == 0, out[-8000:]
    verdicts = re.findall(r"\b[0-9a-f]{32}\s+done\s+(?:genuine|counterfeit|review)\b", out)
    assert len(verdicts) >= 5, "the four scans submitted and the one `status` asked for lack verdicts:\n" + out[-6000:]
    assert "tenderscan dev stack stopped" in out, out[-4000:]
    assert not (tmp_path / ".tenderscan" / "dev" / "state.json").exists(), "dev down left its state"
