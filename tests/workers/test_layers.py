"""workers/__init__.py's rule, checked: imports run down the floors only, never back up.

    models/           imports neither workers/ nor producer/
    workers/core/     imports neither the runtime nor the audit tools (the edge stands on it alone)
    workers/audit/    does not import the runtime
    workers/webhooks/ uses core/ only
    workers/runtime/  uses core/, audit/ and webhooks/; nothing in workers/ imports producer/

Read from the source (every import statement, inside functions too), so a lazy import cannot hide.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.imports import forbidden_imports

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "models": ("workers", "producer"),
    "workers/core": ("workers.runtime", "workers.audit", "workers.webhooks", "workers.app", "workers.health",
                     "producer"),
    "workers/webhooks": ("workers.runtime", "workers.audit", "workers.app", "workers.health", "producer"),
    "workers/audit": ("workers.runtime", "workers.app", "workers.health", "producer"),
    "workers/runtime": ("producer",),
}


def violations(folder: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    return forbidden_imports(list((ROOT / folder).rglob("*.py")), forbidden, ROOT)


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_no_import_runs_back_up(folder):
    assert violations(folder, FORBIDDEN[folder]) == {}


def test_the_layer_check_can_fail(tmp_path, monkeypatch):
    (tmp_path / "workers" / "core").mkdir(parents=True)
    (tmp_path / "workers" / "core" / "x.py").write_text("def f():\n    from workers.runtime import pipeline\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", tmp_path)
    assert violations("workers/core", FORBIDDEN["workers/core"]) == {
        "workers/core/x.py": ["workers.runtime", "workers.runtime.pipeline"]}
