"""docker-compose.yml and the Dockerfiles, checked without a Docker engine.

The compose file is validated against the Compose Specification's JSON schema (the copy vendored by
check-jsonschema), and every variable Settings reads must be set for the api and worker services.
"""

from __future__ import annotations

import json
import re
from importlib import resources

import jsonschema
import pytest
import yaml

from tests.deployed_settings import drift, resolve_compose
from workers.core.settings import env_names


@pytest.fixture(scope="module")
def compose(repo_root):
    return yaml.safe_load((repo_root / "docker-compose.yml").read_text())


def test_compose_matches_the_compose_specification(compose):
    schema_text = resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    jsonschema.validate(compose, json.loads(schema_text))


def test_schema_check_catches_a_broken_file(compose):
    broken = dict(compose, services={"api": {"image": "x", "ports": {"not": "a list"}}})
    schema = json.loads(resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


@pytest.mark.parametrize("service", ["api", "worker", "worker-gpu", "webhooks", "flower"])
def test_every_setting_is_configured(compose, service):
    env = compose["services"][service]["environment"]
    missing = sorted(set(env_names()) - set(env))
    assert not missing, f"{service} does not set {missing}"


def test_redis_is_durable_and_never_evicts(repo_root, compose):
    conf = (repo_root / "infra" / "redis.conf").read_text()
    assert re.search(r"^appendonly yes$", conf, re.M)
    assert re.search(r"^maxmemory-policy noeviction$", conf, re.M)
    assert "redis.conf" in " ".join(compose["services"]["redis"]["command"])


def test_gpu_worker_reserves_an_nvidia_device(compose):
    devices = compose["services"]["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert "gpu" in compose["services"]["worker-gpu"]["profiles"]


def test_services_have_healthchecks(compose):
    for name in ("redis", "s3", "api", "worker"):
        assert compose["services"][name]["healthcheck"]["test"], name


def test_dockerfiles_exist_and_define_the_targets_compose_uses(repo_root, compose):
    for name, service in compose["services"].items():
        build = service.get("build")
        if not build:
            continue
        dockerfile = repo_root / build["dockerfile"]
        assert dockerfile.exists(), f"{name}: {dockerfile} is missing"
        text = dockerfile.read_text()
        assert text.lstrip().startswith("#") or text.lstrip().startswith("FROM")
        if "target" in build:
            assert re.search(rf"^FROM .+ AS {build['target']}$", text, re.M), f"{name}: no stage {build['target']}"


def test_worker_grace_period_exceeds_the_hard_time_limit(compose):
    env = compose["services"]["worker"]["environment"]
    grace = int(compose["services"]["worker"]["stop_grace_period"].rstrip("s"))
    assert grace > int(env["TENDERSCAN_TASK_TIME_LIMIT_S"])


def test_gpu_worker_runs_several_processes_and_probes_them_all(compose):
    service = compose["services"]["worker-gpu"]
    assert service["environment"]["TENDERSCAN_WORKER_PROCESSES"] == "${GPU_WORKER_PROCESSES:-8}"
    assert "workers.health" in service["healthcheck"]["test"]
    assert compose["services"]["worker"]["environment"]["TENDERSCAN_WORKER_PROCESSES"] == "1"


# --- the shared environment against workers/core/settings.py (tests/deployed_settings.py) ---------
def test_the_shared_environment_matches_the_declaration(compose):
    block = {name: resolve_compose(value) for name, value in compose["x-tenderscan-env"].items()}
    assert set(block) == set(env_names())
    assert not drift(block)


@pytest.mark.parametrize("service", ["api", "worker", "worker-gpu", "flower"])
def test_each_services_environment_is_valid(compose, service):
    env = {name: resolve_compose(value) for name, value in compose["services"][service]["environment"].items()}
    problems = drift(env)
    # a service may tune (worker-gpu: device, processes, threads): only validity and names are its own
    assert not [p for p in problems if "differs from the default" not in p], problems


@pytest.mark.parametrize("broken,expected", [
    ({"TENDERSCAN_MAX_BATCH_SIZ": "8"}, "TENDERSCAN_MAX_BATCH_SIZ is not a setting"),
    ({"TENDERSCAN_MAX_BATCH_SIZE": "0"}, "TENDERSCAN_MAX_BATCH_SIZE: input should be greater"),
    ({"TENDERSCAN_MAX_WAIT_MS": "20"}, "TENDERSCAN_MAX_WAIT_MS='20' differs from the default 10"),
])
def test_the_declaration_check_catches_drift(compose, broken, expected):
    block = {name: resolve_compose(value) for name, value in compose["x-tenderscan-env"].items()}
    assert expected in " | ".join(drift({**block, **broken}))
