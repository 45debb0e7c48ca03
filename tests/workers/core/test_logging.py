"""workers/core/logging.py: secrets never reach a log line, innocent fields do, and every line is JSON."""

import json
import subprocess
import sys
import textwrap

import pytest

from workers.core.logging import redact


def test_redact_hides_fields_named_like_secrets_and_keeps_the_rest():
    event = {"event": "scan_done", "api_key": "tsk_abc", "S3_SECRET": "s", "Authorization": "Bearer x",
             "image_bytes": b"..", "image_key": "scans/x.jpg", "scan_id": "a" * 32, "decision": "genuine"}
    for _ in range(2):  # the second pass answers from the per-name cache
        out = redact(None, "info", dict(event))
        assert out["api_key"] == out["S3_SECRET"] == out["Authorization"] == out["image_bytes"] == "[redacted]"
        assert {k: out[k] for k in ("event", "image_key", "scan_id", "decision")} == \
            {k: event[k] for k in ("event", "image_key", "scan_id", "decision")}


SECRET_FIELDS = ["api_key", "API_KEY", "x-api-key", "apikey", "s3_secret_key", "s3_access_key", "aws_secret_access_key",
                 "aws_access_key_id", "key_hmac_secret", "audit_signing_key", "private_key", "password",
                 "redis_password", "token", "access_token", "Authorization", "cookie", "image_bytes", "body",
                 "raw_body", "credentials", "secret"]
INNOCENT_FIELDS = {"key_id": "k_7f3a", "key": "scans/dt=2026-11-28/tenant=acme/ab.json", "monkey": "george",
                   "image_key": "scans/x.jpg", "verdict_key": "verdicts/x.json", "idempotency_key_present": True,
                   "tokens": 4.5, "bytes": 2048, "max_body_bytes": 10_000_000, "keys": 3, "s3_object": "tenants/a.json",
                   "signature_version": "s3v4", "sign_names": ["microprint"], "keyspace": "db9", "turkey": 1}


@pytest.mark.parametrize("name", SECRET_FIELDS)
def test_a_field_named_for_a_secret_is_redacted(name):
    assert redact(None, "info", {"event": "e", name: "s3cr3t-value"})[name] == "[redacted]"


def test_innocent_fields_that_merely_contain_a_secret_word_are_kept():
    """`key_id`, an S3 object `key`, `monkey`: whole field names decide, not substrings (issue #13, bug 7)."""
    out = redact(None, "info", dict(INNOCENT_FIELDS, event="e"))
    assert {k: out[k] for k in INNOCENT_FIELDS} == INNOCENT_FIELDS


TSK = "tsk_" + "A1b2C3d4E5" * 3 + "F6g7H8i9"  # the registry's key format: tsk_ + 38 base62 (producer/tenants.py)


@pytest.mark.parametrize("text, secret", [
    (f"auth failed for {TSK} here", TSK[4:]),
    ("header was Bearer key-acme-integration, refused", "key-acme-integration"),  # a bootstrap key: any text
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig", "eyJhbGciOiJIUzI1NiJ9"),
    ("Cannot connect to redis://:hunter2@10.0.0.5:6379/0: Connection refused", "hunter2"),
    ("s3 https://AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI@s3.example:443", "wJalrXUtnFEMI"),
    ("access key AKIAIOSFODNN7EXAMPLE refused", "AKIAIOSFODNN7EXAMPLE"),
    ("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIB\n-----END PRIVATE KEY-----", "MC4CAQAwBQYDK2VwBCIEIB"),
])
def test_known_secret_patterns_are_redacted_inside_any_value(text, secret):
    """A foreign record's message (Celery, kombu, uvicorn) is one string: a key, a bearer token, a URL's
    password or a private key inside it is cut out wherever it stands, the rest of the message kept."""
    out = redact(None, "error", {"event": text, "detail": "x " + text, "nested": [text]})
    for value in (out["event"], out["detail"], out["nested"][0]):
        assert secret not in value and "[redacted]" in value
    assert out["event"].split()[0] == text.split()[0]  # the message itself survives


def test_innocent_values_are_left_alone():
    text = ("GET /v1/scans/ab12 -> 200; redis://127.0.0.1:6379/0; key tenants/acme.json; tsk_ is the prefix; "
            "revoked key id tsk_A1b2C3d4; s3://ts-scans/verdicts/dt=2026-11-28/")
    assert redact(None, "info", {"event": text})["event"] == text


def _run_logging(code: str) -> list[str]:
    prog = "from workers.core.logging import configure_logging\nconfigure_logging('INFO', True)\n" + textwrap.dedent(code)
    proc = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]


def test_stdlib_records_from_celery_kombu_and_uvicorn_are_json_with_the_traceback_as_a_field():
    lines = _run_logging("""
        import logging, warnings
        logging.getLogger("celery.worker.consumer.consumer").warning(
            "consumer: Cannot connect to %s: %s.", "redis://:hunter2@127.0.0.1:6379/0", "Error 111")
        try:
            1 / 0
        except ZeroDivisionError:
            logging.getLogger("kombu.connection").exception("connection lost")
            logging.getLogger("uvicorn.error").error("Exception in ASGI application", exc_info=True)
        logging.getLogger("celery.apps.worker").info("%s ready.", "w1@host")
        warnings.warn("a deprecation, as Celery issues them")
    """)
    events = [json.loads(line) for line in lines]  # every line, stdout and stderr: JSON or this fails
    by_logger = {e.get("logger"): e for e in events}
    consumer = by_logger["celery.worker.consumer.consumer"]
    assert consumer["level"] == "warning" and consumer["event"].startswith("consumer: Cannot connect to redis://")
    assert "hunter2" not in json.dumps(events)
    for name in ("kombu.connection", "uvicorn.error"):
        assert by_logger[name]["level"] == "error" and "ZeroDivisionError" in by_logger[name]["exception"]
        assert "Traceback" in by_logger[name]["exception"] and "\n" not in by_logger[name]["event"]
    assert by_logger["celery.apps.worker"]["event"] == "w1@host ready." and "timestamp" in consumer
    assert "a deprecation" in by_logger["py.warnings"]["event"]


def test_structlog_events_and_stdlib_records_share_one_stream_and_one_shape():
    lines = _run_logging("""
        import logging
        from workers.core.logging import get_logger
        get_logger("workers.test").info("scan_done", scan_id="a" * 32, key="scans/x.jpg", api_key="tsk_x")
        logging.getLogger("celery").info("plain %s", "record")
    """)
    ours, theirs = (json.loads(line) for line in lines)
    assert ours["event"] == "scan_done" and ours["key"] == "scans/x.jpg" and ours["api_key"] == "[redacted]"
    assert theirs == {**theirs, "event": "plain record", "level": "info", "logger": "celery"}
    assert set(ours) >= {"timestamp", "level"} and set(theirs) >= {"timestamp", "level"}


def test_celerys_signal_handler_lines_can_be_said_as_json():
    """celery.apps.worker.safe_say ("worker: Warm shutdown (MainProcess)") is replaced by say_as_json
    in workers/app.py: one JSON line, written with os.write."""
    [line] = _run_logging("""
        import sys
        from workers.core.logging import say_as_json
        say_as_json("worker: Warm shutdown (MainProcess)", sys.stdout)
    """)
    event = json.loads(line)
    assert event["event"] == "worker: Warm shutdown (MainProcess)" and event["logger"] == "celery.apps.worker"


def test_records_still_reach_the_stream_when_celery_redirects_stdout_into_logging():
    """A Celery app that leaves logging to Celery (the bench's naive app) redirects sys.stdout into a
    LoggingProxy at worker start: a handler that followed sys.stdout there wrote each record back into
    logging, where the proxy's recursion guard dropped it, so the worker's " ready." never showed."""
    lines = _run_logging("""
        import logging
        from celery import Celery
        from workers.core.logging import get_logger
        Celery(set_as_current=False).log.redirect_stdouts("WARNING")
        logging.getLogger("celery.apps.worker").info("%s ready.", "naive@host")
        get_logger("producer.bench").info("bench_event")
        print("a task's print")
    """)
    events = [json.loads(line) for line in lines]
    assert [e["event"] for e in events] == ["naive@host ready.", "bench_event", "a task's print"]
    assert events[2]["logger"] == "celery.redirected"
