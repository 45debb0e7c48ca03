"""workers/core/transport.py: rediss:// URLs verify by default, for the verdict store and the broker alike;
boto3 gets the S3 CA bundle. The real handshakes are in tests/integration/test_transport_tls.py."""

from __future__ import annotations

import ssl
from urllib.parse import parse_qs, urlsplit

import pytest
import redis

from tests.tls import make_pki
from workers.core.celery_app import make_celery
from workers.core.errors import SettingsError
from workers.core.settings import Settings
from workers.core.storage import s3_client
from workers.core.transport import RedisTls, secure_redis_url


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_a_rediss_url_verifies_by_default_and_a_plain_one_is_untouched():
    s = Settings.from_env({"TENDERSCAN_REDIS_URL": "rediss://:pw@redis.example:6380/2"})
    assert query(s.redis_url) == {"ssl_cert_reqs": "required"}
    assert s.redis_url.startswith("rediss://:pw@redis.example:6380/2?")
    assert Settings.from_env({}).redis_url == "redis://127.0.0.1:6379/0"


def test_tls_files_go_to_both_urls_and_survive_with_(pki):
    env = {"TENDERSCAN_REDIS_URL": "rediss://r:6380/0", "TENDERSCAN_BROKER_URL": "rediss://b:6380/1",
           "TENDERSCAN_REDIS_TLS_CA_FILE": str(pki.ca), "TENDERSCAN_REDIS_TLS_CERT_FILE": str(pki.client_cert),
           "TENDERSCAN_REDIS_TLS_KEY_FILE": str(pki.client_key)}
    s = Settings.from_env(env)
    expected = {"ssl_cert_reqs": "required", "ssl_ca_certs": str(pki.ca), "ssl_certfile": str(pki.client_cert),
                "ssl_keyfile": str(pki.client_key)}
    assert query(s.redis_url) == expected and query(s.effective_broker_url) == expected
    assert query(s.with_(max_batch_size=4).redis_url) == expected  # idempotent


@pytest.mark.parametrize("reqs", ["none", "optional", "CERT_NONE"])
def test_switching_verification_off_needs_the_dev_flag(reqs):
    url = f"rediss://r:6380/0?ssl_cert_reqs={reqs}"
    with pytest.raises(SettingsError, match="TENDERSCAN_REDIS_URL.*REDIS_TLS_INSECURE"):
        Settings.from_env({"TENDERSCAN_REDIS_URL": url})
    with pytest.raises(SettingsError, match="TENDERSCAN_BROKER_URL"):
        Settings.from_env({"TENDERSCAN_BROKER_URL": url})
    s = Settings.from_env({"TENDERSCAN_REDIS_URL": url, "TENDERSCAN_REDIS_TLS_INSECURE": "true"})
    assert query(s.redis_url)["ssl_cert_reqs"] == reqs.lower().removeprefix("cert_")  # what redis-py reads


@pytest.mark.parametrize(("env", "names"), [
    ({"TENDERSCAN_REDIS_URL": "rediss://r/0", "TENDERSCAN_REDIS_TLS_CA_FILE": "/no/such/ca.pem"},
     "REDIS_TLS_CA_FILE"),
    ({"TENDERSCAN_S3_CA_FILE": "/no/such/ca.pem"}, "S3_CA_FILE"),
    ({"TENDERSCAN_REDIS_URL": "rediss://r/0?ssl_cert_reqs=maybe"}, "REDIS_URL"),
    ({"TENDERSCAN_UPLOAD_EXPIRY_S": "86400"}, "UPLOAD_EXPIRY_S"),
])
def test_bad_transport_settings_name_the_variable(env, names):
    with pytest.raises(SettingsError, match=names):
        Settings.from_env(env)


def test_tls_files_with_only_plain_urls_are_a_mistake(pki):
    with pytest.raises(SettingsError, match="plain redis://"):
        Settings.from_env({"TENDERSCAN_REDIS_TLS_CA_FILE": str(pki.ca)})
    with pytest.raises(SettingsError, match="KEY_FILE is set without"):
        Settings.from_env({"TENDERSCAN_REDIS_URL": "rediss://r/0", "TENDERSCAN_REDIS_TLS_KEY_FILE": str(pki.ca)})


def test_redis_py_and_kombu_read_the_same_verification(pki):
    s = Settings.from_env({"TENDERSCAN_REDIS_URL": "rediss://127.0.0.1:6380/0",
                           "TENDERSCAN_REDIS_TLS_CA_FILE": str(pki.ca)})
    kwargs = redis.Redis.from_url(s.redis_url).connection_pool.connection_kwargs
    assert (kwargs["ssl_cert_reqs"], kwargs["ssl_ca_certs"]) == ("required", str(pki.ca))
    conn = make_celery(s).connection_for_write()
    assert conn.ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": str(pki.ca)}  # not kombu's CERT_NONE


def test_secure_redis_url_keeps_other_parameters():
    url = secure_redis_url("rediss://h:1/0?socket_timeout=3", RedisTls(ca_file="/ca.pem"), "X")
    assert query(url) == {"socket_timeout": "3", "ssl_cert_reqs": "required", "ssl_ca_certs": "/ca.pem"}


def test_boto3_verifies_s3_with_the_ca_bundle(pki):
    s = Settings().with_(s3_endpoint_url="https://s3.internal:8443", s3_ca_file=str(pki.ca))
    client = s3_client(s)
    assert client._endpoint.http_session._verify == str(pki.ca)
    assert s3_client(Settings())._endpoint.http_session._verify not in (False, str(pki.ca))  # system store
