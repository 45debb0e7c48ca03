"""infra/prometheus/alerts.yaml: the rules parse, name only metrics the worker exports, and fire under
`promtool test rules` on a simulated counterfeit spike at one store (not at its neighbour), a score
drift (the PSI recording rules: near 0 for a steady week, above 0.25 once scores move) and a model that
fails to load."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from workers.core import telemetry

RULES = Path(__file__).resolve().parents[1] / "infra" / "prometheus"


def test_promtool_fires_on_a_simulated_counterfeit_spike():
    if shutil.which("promtool") is None:
        pytest.fail("promtool is missing: apt-get install prometheus")
    checked = subprocess.run(["promtool", "check", "rules", str(RULES / "alerts.yaml")], capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    run = subprocess.run(["promtool", "test", "rules", str(RULES / "alerts.test.yaml")], capture_output=True,
                         text=True, timeout=600)  # a week of series at 10 min: about a minute on 2 busy cores
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


def test_the_rules_name_only_exported_metrics(clean_redis):
    """Every series a rule reads is exported: by the worker's registry, or by the API's scrape-time
    collectors (queue and review queue, read from a real Redis holding one queued review)."""
    import redis

    from workers.core.review_queue import ReviewQueue
    from workers.core.schemas import InputRef, ModelRef, Timestamps, Verdict

    client = redis.Redis.from_url(clean_redis)
    ReviewQueue(client).enqueue([Verdict("a" * 32, "acme", "s1", "t1", "review", InputRef("k", "0" * 64, 1, 320, 160),
                                         Timestamps("2026-12-02T00:00:00.000000Z"), reason="uncertain",
                                         model=ModelRef("tenderscan", "v1", "cd" * 32))])
    exported = {m.name for m in telemetry.REGISTRY.collect()}
    for collector in (telemetry.QueueCollector(client), telemetry.ReviewQueueCollector(client)):
        exported |= {m.name for m in collector.collect()}
    exported |= {n + suffix for n in exported for suffix in ("_total", "_sum", "_count", "_bucket")}
    rules = yaml.safe_load((RULES / "alerts.yaml").read_text())
    names = {name for group in rules["groups"] for rule in group["rules"]
             for name in re.findall(r"\b(tenderscan_[a-z_]+)\b", rule["expr"])}
    assert names and names <= exported, names - exported
