"""Transport security: TLS to Redis (verdict store and Celery broker) and HTTPS to S3.

    secure_redis_url(url, tls)   a `rediss://` URL gets its TLS options as query parameters, which
                                 redis-py and kombu both read from there, so every client built from
                                 the URL (verdict store, API listener, Celery broker, metrics) verifies
                                 the server the same way:
                                     ssl_cert_reqs=required   unless the URL says otherwise; `none` or
                                                              `optional` is refused unless
                                                              TENDERSCAN_REDIS_TLS_INSECURE=true (dev only)
                                     ssl_ca_certs             TENDERSCAN_REDIS_TLS_CA_FILE (else the system store)
                                     ssl_certfile/keyfile     TENDERSCAN_REDIS_TLS_CERT_FILE / _KEY_FILE
                                                              (client certificate, when the server asks)
                                 redis-py also checks the host name against the certificate by default.
    s3_verify(settings)          boto3's `verify=`: TENDERSCAN_S3_CA_FILE, else the system store
    check_tls(settings)          one handshake per TLS endpoint at start; a certificate the configured
                                 CA does not vouch for raises TransportError naming the variable
                                 (a down server is not an error here: /readyz reports it)

Kombu, left alone, treats a bare `rediss://` URL as "TLS without verification" (it logs a warning
and sets CERT_NONE): the query parameters added here are what turn verification on for the broker.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from workers.core.errors import SettingsError

INSECURE_CERT_REQS = ("none", "optional")  # ssl_cert_reqs values (CERT_ prefix dropped) the dev flag must allow
_PREFIX = "TENDERSCAN_"


class TransportError(SettingsError):
    """TLS is configured but cannot work as configured (wrong CA, missing file): fail at start."""


@dataclass(frozen=True)
class RedisTls:
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    insecure: bool = False  # dev only: permits ssl_cert_reqs=none in a rediss:// URL

    def configured(self) -> bool:
        return bool(self.ca_file or self.cert_file or self.key_file)


def is_tls_redis(url: str) -> bool:
    return url.startswith("rediss://")


def secure_redis_url(url: str, tls: RedisTls, name: str) -> str:
    """`url` with the TLS query parameters (idempotent); a plain redis:// URL comes back unchanged."""
    if not is_tls_redis(url):
        return url
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    reqs = query.get("ssl_cert_reqs", "required").lower().removeprefix("cert_")
    query["ssl_cert_reqs"] = reqs  # redis-py knows none/optional/required only (kombu knows both spellings)
    if reqs in INSECURE_CERT_REQS and not tls.insecure:
        raise SettingsError(f"{name}: ssl_cert_reqs={reqs} turns off certificate verification; "
                            f"it is refused unless {_PREFIX}REDIS_TLS_INSECURE=true (development only)")
    if reqs not in ("required", *INSECURE_CERT_REQS):
        raise SettingsError(f"{name}: ssl_cert_reqs must be required (or none with the insecure flag), got {reqs!r}")
    for param, value in (("ssl_ca_certs", tls.ca_file), ("ssl_certfile", tls.cert_file),
                         ("ssl_keyfile", tls.key_file)):
        if value:
            query[param] = value
    return urlunsplit(parts._replace(query=urlencode(query)))


def validate_redis_tls(tls: RedisTls, urls: dict[str, str]) -> None:
    """Files exist, a key comes with a certificate, and TLS files are not set for plain URLs only."""
    for var, path in (("REDIS_TLS_CA_FILE", tls.ca_file), ("REDIS_TLS_CERT_FILE", tls.cert_file),
                      ("REDIS_TLS_KEY_FILE", tls.key_file)):
        if path and not Path(path).is_file():
            raise SettingsError(f"{_PREFIX}{var}: no such file {path!r}")
    if tls.key_file and not tls.cert_file:
        raise SettingsError(f"{_PREFIX}REDIS_TLS_KEY_FILE is set without {_PREFIX}REDIS_TLS_CERT_FILE")
    if tls.configured() and not any(is_tls_redis(u) for u in urls.values()):
        raise SettingsError(f"{_PREFIX}REDIS_TLS_* files are set but {' and '.join(urls)} use plain redis://; "
                            "use rediss:// (or drop the TLS files)")


def s3_verify(settings) -> str | None:
    """boto3's `verify=`: the CA bundle path, or None for the system trust store."""
    return settings.s3_ca_file or None


def validate_s3_tls(ca_file: str) -> None:
    if ca_file and not Path(ca_file).is_file():
        raise SettingsError(f"{_PREFIX}S3_CA_FILE: no such file {ca_file!r}")


# --- start-up check: a wrong CA is a configuration error, not an outage --------------------------
def _handshake(host: str, port: int, context: ssl.SSLContext, timeout_s: float) -> None:
    with socket.create_connection((host, port), timeout=timeout_s) as sock, \
            context.wrap_socket(sock, server_hostname=host):
        pass


def _redis_context(url: str) -> ssl.SSLContext:
    query = dict(parse_qsl(urlsplit(url).query))
    context = ssl.create_default_context(cafile=query.get("ssl_ca_certs") or None)
    if query.get("ssl_certfile"):
        context.load_cert_chain(query["ssl_certfile"], query.get("ssl_keyfile") or None)
    return context


def check_tls(settings, timeout_s: float = 3.0) -> None:
    """One TLS handshake per configured TLS endpoint; TransportError on a certificate failure."""
    endpoints: list[tuple[str, str, int, ssl.SSLContext]] = []
    for var, url in (("REDIS_URL", settings.redis_url), ("BROKER_URL", settings.effective_broker_url)):
        reqs = dict(parse_qsl(urlsplit(url).query)).get("ssl_cert_reqs", "required")
        if is_tls_redis(url) and reqs not in INSECURE_CERT_REQS:
            parts = urlsplit(url)
            endpoints.append((var, parts.hostname or "localhost", parts.port or 6379, _redis_context(url)))
    for var, url in (("S3_ENDPOINT_URL", settings.s3_endpoint_url),):
        if url.startswith("https://"):
            parts = urlsplit(url)
            endpoints.append((var, parts.hostname or "localhost", parts.port or 443,
                              ssl.create_default_context(cafile=settings.s3_ca_file or None)))
    for var, host, port, context in endpoints:
        try:
            _handshake(host, port, context, timeout_s)
        except ssl.SSLCertVerificationError as exc:
            ca = "REDIS_TLS_CA_FILE" if var != "S3_ENDPOINT_URL" else "S3_CA_FILE"
            raise TransportError(f"{_PREFIX}{var}: the server's TLS certificate did not verify "
                                 f"({exc.verify_message}); {_PREFIX}{ca} must name the CA that signed it") from None
        except (OSError, ssl.SSLError):
            continue  # down or not TLS at all: not a configuration verdict; readiness reports it
