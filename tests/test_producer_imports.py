"""The HTTP edge never imports torch: not at import, not while building the app or the Celery enqueuer,
not for `tenderscan --help`. Each check runs in a fresh interpreter, so nothing imported by other
tests can hide (or fake) a torch import.

And producer/'s rooms stay apart: the service (the modules directly in producer/) never imports the
CLI (producer/cli/), the benchmark harness (producer/bench/) or the worker runtime, neither at
import nor lazily inside a function.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.imports import forbidden_imports

ROOT = Path(__file__).resolve().parent.parent
MODULES = ["producer", "producer.app", "producer.routes", "producer.submit", "producer.poll", "producer.auth",
           "producer.errors", "producer.client", "producer.cli", "producer.cli.commands.api",
           "producer.cli.commands.submit", "producer.cli.commands.keyhash", "producer.cli.commands.tenant",
           "producer.tenants", "producer.limits", "producer.uploads"]
# the service: every module directly in producer/ but __main__ (which is the CLI); the local stack and
# the demo live in the producer.dev room
NOT_SERVICE = {"__main__"}
SERVICE = sorted(p for p in (ROOT / "producer").glob("*.py") if p.stem not in NOT_SERVICE)
ROOMS = ("producer.cli", "producer.bench", "producer.dev", "workers.runtime", "workers.app")
NO_TORCH = "import sys; assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))"


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_importing_the_edge_does_not_import_torch():
    proc = run_python(f"import {', '.join(MODULES)}; {NO_TORCH}")
    assert proc.returncode == 0, proc.stderr


def test_building_the_app_and_its_enqueuer_does_not_import_torch():
    code = ("from workers.core.settings import Settings; from producer.app import create_app; "
            "from producer.submit import CeleryEnqueuer; s = Settings(); create_app(s); "
            f"CeleryEnqueuer.from_settings(s); {NO_TORCH}")
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr


def test_cli_help_does_not_import_torch():
    code = ("import contextlib, io, sys; from producer.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "    try: main(['--help'])\n"
            "    except SystemExit: pass\n"
            f"assert 'submit' in out.getvalue() and 'api' in out.getvalue()\n{NO_TORCH}")
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr


def test_the_check_can_fail():
    proc = run_python(f"import json; sys_modules = __import__('sys').modules; sys_modules['torch'] = json; {NO_TORCH}")
    assert proc.returncode != 0


def test_the_service_never_imports_the_cli_the_bench_or_the_worker_runtime():
    assert len(SERVICE) >= 10 and ROOT / "producer" / "app.py" in SERVICE
    assert forbidden_imports(SERVICE, ROOMS, ROOT) == {}
    modules = ", ".join(f"producer.{p.stem}" if p.stem != "__init__" else "producer" for p in SERVICE)
    code = (f"import sys, {modules}; from workers.core.settings import Settings; producer.app.create_app(Settings())\n"
            f"loaded = sorted(m for m in sys.modules for r in {ROOMS!r} if m == r or m.startswith(r + '.'))\n"
            "assert not loaded, loaded")
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("body", ["from producer.cli import main\n", "def f():\n    import producer.bench.harness\n"])
def test_the_room_check_can_fail(tmp_path, body):
    (tmp_path / "routes.py").write_text(body)
    assert forbidden_imports([tmp_path / "routes.py"], ROOMS, tmp_path) != {}
