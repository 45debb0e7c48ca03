"""infra/k8s/: every manifest validated without a cluster.

Core kinds against Kubernetes' own OpenAPI schemas (kubernetes-validate, strict); the KEDA
ScaledObject against tests/schemas/keda-scaledobject-v1alpha1.json, the CRD's fields written down as
a strict JSON schema (jsonschema), so the check needs no network, node or npm. Plus the operational
invariants the manifests must keep: probes, grace periods, GPU requests, the KEDA triggers.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deployed_settings import drift
from workers.core.settings import declared, env_names

K8S = Path(__file__).resolve().parent.parent / "infra" / "k8s"
KEDA_SCHEMA = Path(__file__).resolve().parent / "schemas" / "keda-scaledobject-v1alpha1.json"


def documents() -> list[dict]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def by_kind(kind: str) -> list[dict]:
    return [d for d in documents() if d["kind"] == kind]


@pytest.mark.parametrize("doc", [d for d in documents() if not d["apiVersion"].startswith("keda.sh")],
                         ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_core_manifests_match_the_kubernetes_schema(doc):
    kubernetes_validate.validate(doc, "1.33", strict=True)


def test_the_validator_catches_a_broken_manifest():
    broken = json.loads(json.dumps(by_kind("Deployment")[0]))
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.33", strict=True)


@pytest.fixture(scope="module")
def keda_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(KEDA_SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def keda_errors(validator, doc: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def test_scaled_object_matches_the_keda_crd_schema(keda_validator):
    [so] = by_kind("ScaledObject")
    assert keda_errors(keda_validator, so) == []


@pytest.mark.parametrize("path,value", [
    (("spec", "minReplicaCount"), "zero"),  # a string where the CRD has an integer
    (("spec", "triggers", 0, "metdata"), {}),  # a misspelt field the API server would silently drop
    (("spec", "triggers", 0, "metadata", "listLength"), 256),  # trigger metadata values are strings
    (("spec", "scaleTargetRef", "name"), None),
])
def test_the_keda_validator_catches_a_broken_scaled_object(keda_validator, path, value):
    broken = json.loads(json.dumps(by_kind("ScaledObject")[0]))
    parent = broken
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    assert keda_errors(keda_validator, broken)


def test_scaled_object_combines_backlog_cron_and_scale_to_zero():
    [so] = by_kind("ScaledObject")
    spec = so["spec"]
    types = [t["type"] for t in spec["triggers"]]
    assert "redis" in types and "cron" in types and "prometheus" in types
    redis_trigger = next(t for t in spec["triggers"] if t["type"] == "redis")
    assert redis_trigger["metadata"]["listName"] == "tenderscan.scans"
    assert spec["minReplicaCount"] == 0 and spec["fallback"]["replicas"] >= 1
    assert spec["scaleTargetRef"]["name"] in {d["metadata"]["name"] for d in by_kind("Deployment")}


def test_config_and_secret_set_every_setting():
    config = next(d for d in by_kind("ConfigMap"))["data"]
    secret = next(d for d in by_kind("Secret"))["stringData"]
    missing = set(env_names()) - set(config) - set(secret)
    assert not missing, f"not set in infra/k8s: {sorted(missing)}"
    assert not {"TENDERSCAN_S3_SECRET_KEY", "TENDERSCAN_API_KEYS"} & set(config), "secrets belong in the Secret"


def test_workers_request_gpus_and_outlive_their_batch_on_sigterm():
    config = next(d for d in by_kind("ConfigMap"))["data"]
    hard_limit = int(config["TENDERSCAN_TASK_TIME_LIMIT_S"])
    soft_shutdown = int(config["TENDERSCAN_SHUTDOWN_GRACE_S"])
    for dep in by_kind("Deployment"):
        pod = dep["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert container["resources"]["requests"] and container["resources"]["limits"]
        assert container.get("livenessProbe") and (container.get("readinessProbe") or container.get("startupProbe"))
        if "worker" in dep["metadata"]["name"]:
            assert pod["terminationGracePeriodSeconds"] > max(hard_limit, soft_shutdown)
        if dep["metadata"]["name"].endswith("gpu"):
            assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_every_deployment_has_a_disruption_budget_or_is_the_cpu_floor():
    budgets = {json.dumps(p["spec"]["selector"]["matchLabels"], sort_keys=True) for p in by_kind("PodDisruptionBudget")}
    for dep in by_kind("Deployment"):
        if dep["metadata"]["name"] == "tenderscan-worker-cpu":
            continue
        assert json.dumps(dep["spec"]["selector"]["matchLabels"], sort_keys=True) in budgets, dep["metadata"]["name"]


def test_kustomization_lists_every_manifest_but_the_secret_template():
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert listed == present


def test_gpu_workers_run_one_process_per_requested_core_and_declare_every_metrics_port():
    [dep] = [d for d in by_kind("Deployment") if d["metadata"]["name"] == "tenderscan-worker-gpu"]
    pod = dep["spec"]["template"]
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    processes = int(env["TENDERSCAN_WORKER_PROCESSES"])  # in the env: the probes read it too
    assert processes == int(container["resources"]["requests"]["cpu"]) > 1
    assert "--processes" not in container["args"]
    config = next(d for d in by_kind("ConfigMap"))["data"]
    base = int(config["TENDERSCAN_METRICS_PORT"])
    assert sorted(p["containerPort"] for p in container["ports"]) == list(range(base, base + processes))
    assert "prometheus.io/port" not in pod["metadata"]["annotations"]  # it would scrape one process only
    assert "workers.health" in " ".join(container["livenessProbe"]["exec"]["command"])
    assert env["OMP_NUM_THREADS"] == "1"


def test_the_gpu_prometheus_trigger_counts_a_whole_pods_in_flight_window():
    [so] = by_kind("ScaledObject")
    [dep] = [d for d in by_kind("Deployment") if d["metadata"]["name"] == so["spec"]["scaleTargetRef"]["name"]]
    env = {e["name"]: e["value"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    in_flight = int(env["TENDERSCAN_WORKER_PROCESSES"]) * int(env["TENDERSCAN_WORKER_CONCURRENCY"])
    redis_trigger = next(t for t in so["spec"]["triggers"] if t["type"] == "redis")
    prometheus = next(t for t in so["spec"]["triggers"] if t["type"] == "prometheus")
    assert int(prometheus["metadata"]["threshold"]) == int(redis_trigger["metadata"]["listLength"]) + in_flight


def test_the_api_pods_are_scraped_where_they_serve_the_backlog_gauge():
    """KEDA's prometheus trigger reads tenderscan_backlog, which only the API exports: its pods must be
    scraped, at their container port, and the query must not add up the replicas' identical values."""
    [api] = [d for d in by_kind("Deployment") if d["metadata"]["name"] == "tenderscan-api"]
    pod = api["spec"]["template"]
    notes = pod["metadata"]["annotations"]
    [port] = pod["spec"]["containers"][0]["ports"]
    assert notes["prometheus.io/scrape"] == "true" and notes["prometheus.io/path"] == "/metrics"
    assert int(notes["prometheus.io/port"]) == port["containerPort"]
    [so] = by_kind("ScaledObject")
    query = next(t for t in so["spec"]["triggers"] if t["type"] == "prometheus")["metadata"]["query"]
    assert query.startswith("max(tenderscan_backlog") and "sum(" not in query


# --- the ConfigMap and Secret against workers/core/settings.py (tests/deployed_settings.py) -------
KEDA_ONLY = {"TENDERSCAN_REDIS_HOSTPORT"}  # read by KEDA's redis trigger, not by tenderscan


def test_config_and_secret_match_the_declaration():
    config = next(d for d in by_kind("ConfigMap"))["data"]
    secret = next(d for d in by_kind("Secret"))["stringData"]
    secrets = {d.env for d in declared() if d.secret}
    assert set(secret) == secrets, "the Secret holds exactly the settings declared secret"
    assert set(config) == set(env_names()) - secrets | KEDA_ONLY
    assert not drift(config, allowed_extra=KEDA_ONLY)


@pytest.mark.parametrize("dep", by_kind("Deployment"), ids=lambda d: d["metadata"]["name"])
def test_each_deployments_environment_is_valid_over_the_config_map(dep):
    config = next(d for d in by_kind("ConfigMap"))["data"]
    own = {e["name"]: e["value"] for e in dep["spec"]["template"]["spec"]["containers"][0].get("env", [])
           if "value" in e}
    problems = drift({**config, **own}, allowed_extra=KEDA_ONLY)
    assert not [p for p in problems if "differs from the default" not in p], problems
