"""`make demo` (producer/dev/demo.py), small: it passes, says which Redis it used (its own, never one
already running here), and leaves nothing behind in its temporary directory."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_the_demo_judges_every_scan_on_its_own_redis_and_cleans_up(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENDERSCAN_")}
    env.update(TMPDIR=str(tmp_path), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "producer.dev.demo", "--count", "6", "--terminals", "2"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "demo passed" in proc.stdout and "verdicts: 6" in proc.stdout
    assert "Redis: a private redis-server at redis://127.0.0.1:" in proc.stdout
    assert list(tmp_path.iterdir()) == [], "the demo left files in its temporary directory"
