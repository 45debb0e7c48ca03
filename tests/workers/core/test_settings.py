import re

import pytest

from workers.core.errors import SettingsError
from workers.core.settings import Settings, env_names, parse_api_keys

HASH = "a" * 64


def test_defaults_are_valid():
    s = Settings.from_env({})
    assert s.max_batch_size == 32 and s.max_wait_ms == 10
    assert s.effective_broker_url == s.redis_url
    assert s.effective_concurrency == 64


def test_values_come_from_the_environment():
    s = Settings.from_env({"TENDERSCAN_MAX_BATCH_SIZE": "8", "TENDERSCAN_LOG_JSON": "false",
                           "TENDERSCAN_API_KEYS": f"acme:{HASH}", "TENDERSCAN_BROKER_URL": "redis://b:1/2"})
    assert s.max_batch_size == 8 and s.effective_concurrency == 16
    assert s.log_json is False
    assert s.api_keys == {HASH: "acme"}
    assert s.effective_broker_url == "redis://b:1/2"


@pytest.mark.parametrize("name,value", [
    ("TENDERSCAN_MAX_BATCH_SIZE", "many"),
    ("TENDERSCAN_MAX_BATCH_SIZE", "0"),
    ("TENDERSCAN_LOG_JSON", "maybe"),
    ("TENDERSCAN_DEVICE", "tpu"),
    ("TENDERSCAN_S3_BUCKET", "x"),
    ("TENDERSCAN_VISIBILITY_TIMEOUT_S", "60"),
    ("TENDERSCAN_API_KEYS", "acme:notahash"),
    ("TENDERSCAN_TRANSIENT_RETRY_WINDOW_S", "0"),
    ("TENDERSCAN_TRANSIENT_RETRY_WINDOW_S", "86400"),  # not below VERDICT_TTL_S: the scan state would expire
])
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(SettingsError, match=name.removeprefix("TENDERSCAN_").split("_")[0]):
        Settings.from_env({name: value})


def test_retry_pauses_stay_below_the_reconcilers_staleness_and_inside_the_visibility_timeout():
    s = Settings.from_env({})
    assert s.transient_retry_window_s == 900 and s.retry_backoff_cap_s == 30  # half of stale_after (60)
    assert Settings.from_env({"TENDERSCAN_RECONCILE_STALE_AFTER_S": "600"}).retry_backoff_cap_s == 60
    # a retry waits up to 1.5 x cap while its worker holds the message: the visibility timeout must cover it
    with pytest.raises(SettingsError, match="VISIBILITY_TIMEOUT_S .* longest retry pause"):
        Settings.from_env({"TENDERSCAN_RECONCILE_STALE_AFTER_S": "600", "TENDERSCAN_TASK_TIME_LIMIT_S": "60",
                           "TENDERSCAN_TASK_SOFT_TIME_LIMIT_S": "60", "TENDERSCAN_VISIBILITY_TIMEOUT_S": "140"})
    Settings.from_env({"TENDERSCAN_TASK_TIME_LIMIT_S": "60", "TENDERSCAN_TASK_SOFT_TIME_LIMIT_S": "60",
                       "TENDERSCAN_VISIBILITY_TIMEOUT_S": "140"})  # cap 30: 60 + 45 < 140


def test_settings_are_frozen():
    s = Settings()
    with pytest.raises(AttributeError):
        s.max_batch_size = 1  # type: ignore[misc]


def test_secrets_stay_out_of_repr():
    s = Settings.from_env({"TENDERSCAN_S3_SECRET_KEY": "hunter2", "TENDERSCAN_API_KEYS": f"acme:{HASH}"})
    assert "hunter2" not in repr(s) and HASH not in repr(s)


def test_api_keys_parse_several_tenants():
    keys = parse_api_keys(f"acme:{HASH}, globex:{'b' * 64}")
    assert keys == {HASH: "acme", "b" * 64: "globex"}
    with pytest.raises(SettingsError):
        parse_api_keys(f"bad tenant:{HASH}")


def test_env_example_lists_every_variable(repo_root):
    from producer.client import API_KEY_ENV, API_URL_ENV, DEFAULT_URL

    text = (repo_root / ".env.example").read_text()
    listed = set(re.findall(r"^(TENDERSCAN_[A-Z0-9_]+)=", text, re.M))
    assert listed == set(env_names()) | {API_URL_ENV, API_KEY_ENV}  # the services' settings, the clients' two
    assert re.search(rf"^{API_URL_ENV}={re.escape(DEFAULT_URL)} ", text, re.M)
