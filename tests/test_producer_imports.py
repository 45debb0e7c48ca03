"""The HTTP edge never imports torch: not at import, not while building the app or the Celery enqueuer,
not for `tenderscan --help`. Each check runs in a fresh interpreter, so nothing imported by other
tests can hide (or fake) a torch import.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = ["producer", "producer.app", "producer.routes", "producer.submit", "producer.poll", "producer.auth",
           "producer.errors", "producer.client", "producer.cli", "producer.commands.api",
           "producer.commands.submit", "producer.commands.keyhash", "producer.commands.tenant", "producer.tenants",
           "producer.limits"]
NO_TORCH = "import sys; assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))"


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_importing_the_edge_does_not_import_torch():
    proc = run_python(f"import {', '.join(MODULES)}; {NO_TORCH}")
    assert proc.returncode == 0, proc.stderr


def test_building_the_app_and_its_enqueuer_does_not_import_torch():
    code = ("from workers.settings import Settings; from producer.app import create_app; "
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


def test_the_service_never_imports_the_local_stack():
    """producer/dev/ (launcher, demo, `tenderscan dev`) is for people and tests, never the service."""
    code = ("from workers.settings import Settings; from producer.app import create_app; create_app(Settings()); "
            f"import {', '.join(m for m in MODULES if m != 'producer.cli')}; import sys; "
            "assert not [m for m in sys.modules if m.startswith('producer.dev')], "
            "sorted(m for m in sys.modules if m.startswith('producer.dev'))")
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
