"""Each image's extras install into a fresh virtualenv on their own and import their entry points.

The full venv (`.[all]`) hides an undeclared dependency whenever some other extra pulls it in:
`workers/metrics.py` imported prometheus_client, which only flower (a dev extra) brought along, so the
API image (`.[api]`) and the GPU image (`.[model,api]`) would have failed at import (issue #13, bug 1).
Here each image's install is built as its Dockerfile builds it: the same files copied, torch 2.13.0
first where the image has it (any other spec would pull a multi-GB CUDA build), then `pip install
".[extras]"`; then its entry points are imported and its commands asked for --help.

Slow (a fresh venv per image): marked `extras`, run by `make check-extras`; `make lint` runs deptry,
which catches the same class of mistake statically.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.extras, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parent.parent
TORCH = "torch==2.13.0"
# What the Dockerfiles copy before `pip install` (infra/Dockerfile, infra/Dockerfile.gpu).
COPIED = ("pyproject.toml", "README.md", "producer", "workers", "models")

# image -> (extras, torch first?, modules its entry points import, commands that must start)
IMAGES = {
    # the shared floor alone: both sides of the queue, no web framework, no torch
    "core": ("", False,
             ["workers.core.settings", "workers.core.schemas", "workers.core.keys", "workers.core.storage", "workers.core.verdict_store",
              "workers.core.celery_app", "workers.core.telemetry", "workers.core.logging", "workers.runtime.reconcile", "workers.runtime.publish",
              "producer.cli"],
             [["tenderscan", "--help"]]),
    # infra/Dockerfile --target api; also the audit seal CronJob's image
    "api": ("api", False,
            ["producer.app", "producer.routes", "producer.poll", "producer.submit", "workers.core.telemetry",
             "producer.cli.commands.api", "producer.cli.commands.audit", "producer.review.routes",
             "producer.webhooks", "workers.webhooks.deliverer"],
            [["tenderscan", "api", "--help"], ["tenderscan", "audit", "seal", "--help"],
             ["tenderscan", "reconcile", "--help"], ["tenderscan", "webhook", "deliver", "--help"]]),
    # infra/Dockerfile --target worker and infra/Dockerfile.gpu
    "worker": ("model,api", True,
               ["workers.app", "workers.runtime.tasks", "workers.runtime.pipeline", "workers.runtime.runner", "workers.core.telemetry",
                "workers.health", "workers.runtime.supervisor", "models.net"],
               [["tenderscan", "worker", "--help"], ["celery", "-A", "workers.app", "worker", "--help"],
                ["python", "-m", "workers.health", "--help"]]),
}


def dockerfile_extras() -> set[str]:
    """The extras every Dockerfile installs (`pip install ".[a,b]"`), normalised like IMAGES'."""
    found = set()
    for path in (REPO / "infra").glob("Dockerfile*"):
        for extras in re.findall(r'pip install [^\n]*"\.\[([a-z,]+)\]"', path.read_text()):
            found.add(",".join(sorted(extras.split(","))))
    return found


def test_every_dockerfile_install_is_checked_here():
    checked = {",".join(sorted(e.split(","))) for e, *_ in IMAGES.values() if e}
    assert dockerfile_extras() and dockerfile_extras() <= checked


def _run(cmd: list[str], env: dict[str, str], timeout: float, cwd: Path | None = None) -> str:
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} -> {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


@pytest.mark.parametrize("image", list(IMAGES))
def test_the_image_installs_alone_and_its_entry_points_import(image, tmp_path):
    extras, with_torch, modules, commands = IMAGES[image]
    src = tmp_path / "src"
    src.mkdir()
    for name in COPIED:
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy2)(
            REPO / name, src / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if (REPO / name).is_dir()
                                       else {}))
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH", "TENDERSCAN_"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    _run([sys.executable, "-m", "venv", str(venv)], env, 120)
    py = str(venv / "bin" / "python")
    if with_torch:
        _run([py, "-m", "pip", "install", "-q", TORCH], env, 600)
    _run([py, "-m", "pip", "install", "-q", f".[{extras}]" if extras else "."], env, 600, cwd=src)

    # run from an empty directory: the installed package is what gets imported, not the checkout
    probe = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    _run([py, "-c", probe, *modules], env, 300, cwd=tmp_path)
    torch_here = subprocess.run([py, "-c", "import torch"], env=env, cwd=tmp_path, capture_output=True).returncode == 0
    assert torch_here == with_torch, f"{image}: torch importable = {torch_here}"
    for cmd in commands:
        exe = [py, *cmd[1:]] if cmd[0] == "python" else [str(venv / "bin" / cmd[0]), *cmd[1:]]
        _run(exe, env, 300, cwd=tmp_path)
