"""KEDA's prometheus trigger (infra/k8s/keda-scaledobject.yaml), evaluated on what a running stack exports.

A stack as a cluster runs it: two API replicas and a worker (its exporter on TENDERSCAN_METRICS_PORT)
on one Redis and SeaweedFS. A backlog is built through the API while the worker is stopped (SIGSTOP:
a stuck worker, so nothing moves), every /metrics endpoint is scraped as Prometheus' `kubernetes-pods`
job would (adding job, namespace, pod, instance), and the ScaledObject's own query is evaluated over
those series by `promtool test rules` (Debian's `prometheus` package; .ci/run installs it). The answer
must be the backlog Redis holds (the scans list plus kombu's unacked hash), once, however many API
replicas export it: `sum()` over two replicas counted it twice (issue #13, bug 5).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest
import redis
import yaml

from producer.dev import services as devstack
from tests.integration.conftest import BIN, start_stack, tenant_clients
from workers.core import keys
from workers.core import telemetry as metrics

pytestmark = pytest.mark.integration

SCANS = 12
K8S = Path(__file__).resolve().parents[2] / "infra" / "k8s"


def prometheus_trigger_query() -> str:
    scaled = yaml.safe_load((K8S / "keda-scaledobject.yaml").read_text())
    [trigger] = [t for t in scaled["spec"]["triggers"] if t["type"] == "prometheus"]
    return trigger["metadata"]["query"]


def scrape(url: str, target_labels: dict[str, str]) -> list[str]:
    """One target's /metrics as promtool input series: every sample, with the target's labels added."""
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(url, timeout=10).read().decode()
    series = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = {**sample.labels, **target_labels}
            inner = ",".join(f'{k}="{json.dumps(str(v))[1:-1]}"' for k, v in sorted(labels.items()))
            series.append((f"{sample.name}{{{inner}}}", sample.value))
    return series


def promtool_eval(tmp: Path, series: list[tuple[str, float]], query: str, expected: float) -> subprocess.CompletedProcess:
    """`promtool test rules`: the query over the scraped series (held for a minute), expected to be one
    sample without labels of value `expected`."""
    test = {"rule_files": [], "evaluation_interval": "15s", "tests": [{
        "interval": "15s",
        "input_series": [{"series": name, "values": f"{value!r}x4"} for name, value in series],
        "promql_expr_test": [{"expr": query, "eval_time": "30s",
                              "exp_samples": [{"labels": "{}", "value": expected}]}],
    }]}
    path = tmp / "keda-query-test.yaml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    return subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True, text=True, timeout=60)


@pytest.fixture()
def fleet(tmp_path, seaweedfs):
    metrics_port = devstack.free_port()
    stack = start_stack(tmp_path, seaweedfs, workers=0)
    second = devstack.free_port()
    api2 = devstack.spawn("api-2", [str(BIN / "tenderscan"), "api", "--host", "127.0.0.1", "--port", str(second)],
                          stack.logs, env=stack.env)
    stack.owned.append(api2)  # stopped with the stack
    worker = stack.start_worker(env={"TENDERSCAN_METRICS_PORT": str(metrics_port),
                                           "TENDERSCAN_RECONCILE_INTERVAL_S": "0"})
    try:
        devstack.wait_for_port(second, 60, api2.proc)
        worker.wait_for_log(" ready.", timeout=120)
        yield stack, [stack.api_url, f"http://127.0.0.1:{second}"], worker, metrics_port
    finally:
        if worker.alive():
            worker.signal(signal.SIGCONT)
        stack.stop()


def test_the_scaledobject_query_reads_the_backlog_once_from_a_running_stack(fleet, tmp_path):
    assert shutil.which("promtool"), "promtool missing: apt-get install prometheus (.ci/run does)"
    stack, api_urls, worker, metrics_port = fleet
    from tests.integration.test_api import jpeg

    worker.signal(signal.SIGSTOP)  # stuck: whatever it took stays unacked, the rest stays queued
    with tenant_clients(stack) as clients:
        for _ in range(SCANS):
            clients["acme"].submit(jpeg(), store_id="store-1", terminal_id="pos-1")
    broker = redis.Redis.from_url(stack.settings.effective_broker_url)
    backlog = broker.llen(keys.QUEUE) + broker.hlen(metrics.UNACKED_KEY)
    # the stopped worker's pending BRPOP may have taken one message that never reached the unacked hash
    assert SCANS - 1 <= backlog <= SCANS

    series = []
    for i, url in enumerate(api_urls):  # the kubernetes-pods job: one target per pod and port
        series += scrape(f"{url}/metrics", {"job": "kubernetes-pods", "namespace": "tenderscan",
                                            "pod": f"tenderscan-api-{i}", "instance": url.split("//")[1]})
    worker.signal(signal.SIGCONT)  # the exporter is a thread of the worker: it answers once it runs
    series += scrape(f"http://127.0.0.1:{metrics_port}/metrics",
                     {"job": "kubernetes-pods", "namespace": "tenderscan", "pod": "tenderscan-worker-gpu-0",
                      "instance": f"127.0.0.1:{metrics_port}"})
    assert sum(name.startswith("tenderscan_backlog{") for name, _ in series) == len(api_urls)
    assert any(name.startswith("tenderscan_stage_seconds") for name, _ in series)  # the worker's series too

    query = prometheus_trigger_query()
    result = promtool_eval(tmp_path, series, query, float(backlog))
    assert result.returncode == 0, f"{query} over the scraped series:\n{result.stdout}\n{result.stderr}"


def test_promtool_catches_a_query_that_counts_each_replica(tmp_path):
    """The check can fail: `sum()` over the same two replicas' series is off by the replica count."""
    assert shutil.which("promtool"), "promtool missing: apt-get install prometheus (.ci/run does)"
    series = [(f'tenderscan_backlog{{job="kubernetes-pods",namespace="tenderscan",pod="api-{i}"}}', 7.0)
              for i in range(2)]
    assert promtool_eval(tmp_path, series, "sum(tenderscan_backlog)", 7.0).returncode != 0
    assert promtool_eval(tmp_path, series, prometheus_trigger_query(), 7.0).returncode == 0
