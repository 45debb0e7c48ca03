import re

import pytest

from workers.core.errors import SettingsError
from workers.core.settings import Settings, declared, env_names, parse_api_keys

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


def test_env_example_is_generated_from_the_declaration(repo_root):
    from producer.cli.commands.settings import env_example

    assert (repo_root / ".env.example").read_text() == env_example(), \
        "run `tenderscan settings --example > .env.example`"


def test_every_setting_is_declared_once_with_a_description():
    names = [d.env for d in declared()]
    assert names == env_names() and len(set(names)) == len(names)
    assert all(d.description for d in declared()), [d.env for d in declared() if not d.description]
    assert declared()[0].section, "the first setting opens a section"
    secrets = {d.env for d in declared() if d.secret}
    assert {"TENDERSCAN_S3_SECRET_KEY", "TENDERSCAN_API_KEYS", "TENDERSCAN_KEY_HMAC_SECRET",
            "TENDERSCAN_AUDIT_SIGNING_KEY"} <= secrets
    assert all(d.name not in repr(Settings()) for d in declared() if d.secret)


# --- where values come from: the environment, then ./.env, then the default ----------------------
@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in env_names():
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_dotenv_is_read_beneath_the_environment(in_tmp, monkeypatch):
    (in_tmp / ".env").write_text("# a comment\n"
                                 "TENDERSCAN_MAX_BATCH_SIZE=8          # inline comments are comments\n"
                                 "TENDERSCAN_LOG_LEVEL=debug\n"
                                 "TENDERSCAN_MAX_WAIT_MS=25\n"
                                 "TENDERSCAN_S3_SECRET_KEY='has $dollar # and hash'\n")
    monkeypatch.setenv("TENDERSCAN_LOG_LEVEL", "warning")  # the environment wins over .env
    monkeypatch.setenv("TENDERSCAN_MAX_WAIT_MS", "")  # empty counts as unset: .env's value
    s = Settings.from_env()
    assert (s.max_batch_size, s.log_level, s.max_wait_ms) == (8, "WARNING", 25)
    assert s.s3_secret_key == "has $dollar # and hash"  # quoted, taken as written
    assert s.max_side == 8000  # neither: the default


def test_an_empty_value_is_unset_except_where_empty_means_something(in_tmp):
    s = Settings.from_env({"TENDERSCAN_REDIS_URL": "", "TENDERSCAN_S3_ENDPOINT_URL": ""})
    assert s.redis_url == Settings().redis_url
    assert s.s3_endpoint_url == ""  # AWS's own endpoint


def test_an_explicit_mapping_reads_no_dotenv(in_tmp):
    (in_tmp / ".env").write_text("TENDERSCAN_MAX_BATCH_SIZE=8\n")
    assert Settings.from_env({}).max_batch_size == 32
    assert Settings.from_env({}, env_file=in_tmp / ".env").max_batch_size == 8
    assert Settings().max_batch_size == 32  # the bare constructor is the defaults, never the environment


def test_a_bad_value_in_dotenv_names_the_variable(in_tmp):
    (in_tmp / ".env").write_text("TENDERSCAN_MAX_BATCH_SIZE=0\n")
    with pytest.raises(SettingsError, match="TENDERSCAN_MAX_BATCH_SIZE: .*greater than or equal to 1, got '0'"):
        Settings.from_env()


# --- ranges and types, declared with each setting -----------------------------------------------
@pytest.mark.parametrize("name,value,message", [
    ("TENDERSCAN_UPLOAD_EXPIRY_S", "3601", "less than or equal to 3600"),
    ("TENDERSCAN_METRICS_PORT", "70000", "less than or equal to 65535"),
    ("TENDERSCAN_SCANS_PER_MESSAGE", "257", "less than or equal to 256"),  # a message holds at most 256
    ("TENDERSCAN_TENANT_RATE_PER_S", "nan", "finite number"),
    ("TENDERSCAN_TENANT_RATE_PER_S", "-1", "greater than or equal to 0"),
    ("TENDERSCAN_MAX_WAIT_MS", "1.5", "valid integer"),
    ("TENDERSCAN_DEVICE", "cuda:x", "pattern"),
    ("TENDERSCAN_MIN_SIDE", "9000", "at most TENDERSCAN_MAX_SIDE"),
    ("TENDERSCAN_LOG_LEVEL", "loud", "DEBUG, INFO, WARNING or ERROR"),
    ("TENDERSCAN_AUDIT_PUBLIC_KEYS", "ab,cd", "64 hex"),
])
def test_ranges_are_enforced_and_named(name, value, message):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({name: value})
    assert name in str(caught.value) and re.search(message, str(caught.value)), str(caught.value)


def test_a_bad_secret_is_named_but_not_echoed():
    with pytest.raises(SettingsError, match="TENDERSCAN_KEY_HMAC_SECRET") as caught:
        Settings.from_env({"TENDERSCAN_KEY_HMAC_SECRET": "hunter2"})
    assert "hunter2" not in str(caught.value)


def test_with_validates_like_from_env():
    assert Settings().with_(max_batch_size=8).effective_concurrency == 16
    with pytest.raises(SettingsError, match="TENDERSCAN_MAX_BATCH_SIZE"):
        Settings().with_(max_batch_size=0)
    with pytest.raises(SettingsError, match="TENDERSCAN_MAX_BATCH_SIZ: extra"):
        Settings().with_(max_batch_siz=8)  # a typo is not silently ignored
    s = Settings.from_env({"TENDERSCAN_API_KEYS": f"acme:{HASH}", "TENDERSCAN_AUDIT_PUBLIC_KEYS": "A" * 64})
    assert s.with_(max_wait_ms=5) == s.with_(max_wait_ms=5).with_(max_wait_ms=5)  # parsed values go back in
    assert s.with_(max_wait_ms=5).api_keys == {HASH: "acme"} and s.audit_public_keys == ("a" * 64,)


def test_a_default_can_be_read_without_building_settings():
    assert Settings.default("max_attempts") == 5 == Settings().max_attempts


def test_reviewer_keys_name_a_reviewer_and_a_tenant_or_every_tenant():
    from workers.core.errors import SettingsError
    from workers.core.settings import parse_reviewer_keys

    a, b = "a" * 64, "B" * 64
    assert parse_reviewer_keys(f"ann@acme:{a}, audrey@*:{b}") == {a: "ann@acme", b.lower(): "audrey@*"}
    assert Settings.from_env({"TENDERSCAN_REVIEWER_KEYS": f"ann@acme:{a}"}).reviewer_keys == {a: "ann@acme"}
    for bad in (f"ann:{a}", f"@acme:{a}", f"ann@ac me:{a}", "ann@acme:abc", f"ann@acme@x:{a}"):
        with pytest.raises(SettingsError, match="TENDERSCAN_REVIEWER_KEYS"):
            parse_reviewer_keys(bad)
    with pytest.raises(SettingsError, match="TENDERSCAN_REVIEW_QC_SAMPLE"):
        Settings.from_env({"TENDERSCAN_REVIEW_QC_SAMPLE": "1.5"})


def test_the_review_signing_key_is_a_key_and_its_public_half_is_trusted_on_reviews_only():
    from workers.audit.signing import Signer, verifier_from_settings
    from workers.core.errors import SettingsError

    with pytest.raises(SettingsError, match="TENDERSCAN_REVIEW_SIGNING_KEY"):
        Settings.from_env({"TENDERSCAN_REVIEW_SIGNING_KEY": "abc"})
    with pytest.raises(SettingsError, match="TENDERSCAN_REVIEW_PUBLIC_KEYS"):
        Settings.from_env({"TENDERSCAN_REVIEW_PUBLIC_KEYS": "abc"})
    s = Settings.from_env({"TENDERSCAN_REVIEW_SIGNING_KEY": "55" * 32, "TENDERSCAN_AUDIT_SIGNING_KEY": "66" * 32})
    verifier = verifier_from_settings(s)
    review_kid = Signer("55" * 32).key_id
    assert review_kid in verifier.review_keys and review_kid not in verifier.keys
    assert Signer("66" * 32).key_id in verifier.keys
