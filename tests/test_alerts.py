"""infra/prometheus/alerts.yaml, checked by `promtool test rules` (Debian's `prometheus` package, as
tests/integration/test_autoscaling.py uses it): the review-SLA alert fires per tenant once the oldest
queued scan is past the SLA for 5 minutes, counts two API replicas' identical series once, and stays
quiet under the SLA."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

RULES = Path(__file__).resolve().parents[1] / "infra" / "prometheus" / "alerts.yaml"


def test_the_review_sla_alert_fires_per_tenant_past_the_sla_only(tmp_path):
    assert shutil.which("promtool"), "promtool missing: apt-get install prometheus (.ci/run does)"
    age = "tenderscan_review_queue_oldest_age_seconds"
    test = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                # acme: past the SLA (4 h) from minute 0 on, seen by two API replicas
                {"series": f'{age}{{tenant="acme",instance="api-1"}}', "values": "14500+60x20"},
                {"series": f'{age}{{tenant="acme",instance="api-2"}}', "values": "14500+60x20"},
                # globex: under the SLA throughout
                {"series": f'{age}{{tenant="globex",instance="api-1"}}', "values": "100+60x20"},
            ],
            "alert_rule_test": [
                {"eval_time": "3m", "alertname": "TenderscanReviewQueueOverSLA", "exp_alerts": []},  # not 5 min yet
                {"eval_time": "10m", "alertname": "TenderscanReviewQueueOverSLA", "exp_alerts": [{
                    "exp_labels": {"severity": "warning", "tenant": "acme"},
                    "exp_annotations": {
                        "summary": "review queue of acme: oldest scan waiting 4h 11m 40s",
                        "description": "Scans awaiting review are older than the 4 h SLA (docs/REVIEW.md, Metrics).",
                    }}]},
            ],
        }],
    }
    path = tmp_path / "alerts-test.yaml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    result = subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_file_passes_promtool_check():
    assert shutil.which("promtool"), "promtool missing: apt-get install prometheus (.ci/run does)"
    result = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
