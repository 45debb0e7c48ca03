"""structlog set-up: JSON events on stdout, one line each, with bound context (scan_id, batch_id, tenant).

Every line is JSON, ours and everyone else's: the stdlib records of Celery, kombu, uvicorn, botocore
and Python's warnings go through the same processors (a `ProcessorFormatter` on the root logger), with
the logger's name in `logger` and a traceback as one `exception` field, never as bare text lines.

Never log image bytes, API keys or S3 secrets. `redact` replaces
    a field named for a secret    judged on the whole name, split into words (`S3_SECRET_KEY`, `x-api-key`,
                                  `apiKey`): a secret word (secret, password, token, authorization, cookie,
                                  credential(s), apikey), a qualified key (api_key, access_key, private_key,
                                  signing_key, hmac_key, ...), or raw data (body, *_body, image_bytes)
    a secret inside any string    a `tsk_` registry key, `Bearer <credential>`, a URL's password, an AWS
                                  access key id, a PEM private key: cut out, the rest of the text kept
so an S3 object `key`, a `key_id`, `tokens` or `monkey` are logged as they are.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import sys
from datetime import UTC, datetime

import structlog

_SECRET_WORDS = {"secret", "secrets", "password", "passwd", "token", "authorization", "cookie", "credential",
                 "credentials", "apikey"}
_KEY_QUALIFIERS = {"api", "access", "secret", "private", "signing", "hmac", "encryption", "master", "session"}
_RAW_DATA = {"image_bytes"}  # plus any name whose last word is `body`
_WORD_BREAK = re.compile(r"[^a-z0-9]+")
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")


@functools.lru_cache(maxsize=4096)
def _is_secret(name: str) -> bool:
    """Field names come from code, so a handful recur: the answer is cached (it runs for every field of
    every event, e.g. the ~15 of each scan's `scan_done`)."""
    lowered = _CAMEL.sub(r"\1_\2", name).lower()
    words = [w for w in _WORD_BREAK.split(lowered) if w]
    if not words:
        return False
    if lowered in _RAW_DATA or words[-1] == "body" or any(w in _SECRET_WORDS for w in words):
        return True
    return any(w == "key" and i > 0 and words[i - 1] in _KEY_QUALIFIERS for i, w in enumerate(words))


# Secrets recognisable by their shape, wherever they stand in a string (a foreign record's message is
# one string). Each alternative keeps its harmless prefix group and loses the rest.
_SECRET_VALUE = re.compile(
    r"(?P<tsk>\btsk_)[0-9A-Za-z]{38}\b"  # a registry API key (producer/tenants.py); a 12-char key id stays
    r"|(?P<bearer>\b[Bb]earer\s+)[^\s,;\"']+"  # an Authorization value, whatever the key looks like
    r"|(?P<url>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+(?=@)"  # scheme://user:PASSWORD@host
    r"|(?P<aws>)\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"  # an AWS access key id
    r"|(?P<pem>-----BEGIN [A-Z ]*PRIVATE KEY-----)(?s:.*?)-----END [A-Z ]*PRIVATE KEY-----"
)
_AWS_ID = re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")
_HINT = re.compile(r"tsk_|earer|://|AKIA|ASIA|PRIVATE KEY")  # a cheap first look: most strings have none


def _cut(match: re.Match) -> str:
    prefix = next((g for g in match.groups() if g is not None), "")
    if match.lastgroup == "url":
        prefix = _AWS_ID.sub("[redacted]", prefix)  # the user part of an S3 URL may be an access key id
    return prefix + "[redacted]"


def scrub(text: str) -> str:
    """`text` with every secret of a known shape replaced by [redacted]."""
    return _SECRET_VALUE.sub(_cut, text) if _HINT.search(text) else text


def _scrub_value(value):
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, list | tuple):
        return type(value)(_scrub_value(v) for v in value)
    return value


def redact(_logger, _method, event: dict) -> dict:
    for name, value in list(event.items()):
        if _is_secret(name):
            event[name] = "[redacted]"
        elif type(value) is str:
            if _HINT.search(value):
                event[name] = scrub(value)
        elif isinstance(value, list | tuple):
            event[name] = _scrub_value(value)
    return event


class _Stream:
    """sys.stdout or sys.stderr, looked up at each write (so a replaced stream is followed: pytest's
    capture), except Celery's LoggingProxy (worker_redirect_stdouts, in an app that leaves logging to
    Celery): it turns writes into log records, which would come back here and be dropped by its
    recursion guard. The process's own stream is written then."""

    def __init__(self, name: str) -> None:
        self.name = name

    def _target(self):
        stream = getattr(sys, self.name)
        if type(stream).__module__ == "celery.utils.log":  # LoggingProxy, without importing Celery here
            return getattr(sys, f"__{self.name}__")
        return stream

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()


def configure_logging(level: str = "INFO", json_output: bool = True, stream="stdout") -> None:
    """Services log JSON to stdout; CLI commands log to stderr so their stdout stays machine-readable.

    `stream` is "stdout" or "stderr" (looked up at each write, so tests that swap them are followed),
    or an open file. Our events are written by structlog directly; stdlib records (Celery, kombu,
    uvicorn, botocore, `warnings`) reach the same stream through one root handler, rendered alike.
    """
    if stream is sys.stdout or stream is sys.stderr:
        stream = "stdout" if stream is sys.stdout else "stderr"
    target = _Stream(stream) if isinstance(stream, str) else stream
    renderer = structlog.processors.JSONRenderer() if json_output else structlog.dev.ConsoleRenderer()
    shared = [structlog.contextvars.merge_contextvars, structlog.processors.add_log_level,
              structlog.processors.TimeStamper(fmt="iso", utc=True)]
    # redact after format_exc_info: a traceback's text is scrubbed too
    tail = [structlog.processors.format_exc_info, redact, renderer]
    _route_stdlib_records(target, level, structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail]))
    structlog.configure(
        processors=[*shared, *tail],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level)),
        # one write() per event (message + newline): PrintLogger writes the newline separately, and
        # under the threads pool a stdlib record (Celery's own) could land between the two.
        logger_factory=structlog.WriteLoggerFactory(target),
        # no caching: a few log calls per scan cost nothing, and reconfiguring (a CLI command run
        # in-process, structlog.testing.capture_logs in tests) then reaches every logger
        cache_logger_on_first_use=False,
    )


class _RootHandler(logging.StreamHandler):
    """The one handler this module puts on the root logger (replaced, not added to, on reconfiguring)."""


def _route_stdlib_records(target, level: str, formatter: logging.Formatter) -> None:
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _RootHandler)]:
        root.removeHandler(old)
    handler = _RootHandler(target)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level))
    logging.captureWarnings(True)  # `warnings.warn` (Celery's deprecations) as records, not stderr text


def say_as_json(msg: str, f=sys.__stderr__) -> None:
    """A stand-in for Celery's `safe_say` (celery.apps.worker), which prints lines such as "worker: Warm
    shutdown (MainProcess)" from signal handlers as bare text: the same line as one JSON event, written
    with one os.write as Celery does (no buffered stream, no lock: safe inside a signal handler)."""
    event = {"event": scrub(msg.strip()), "level": "warning", "logger": "celery.apps.worker",
             "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
    os.write(f.fileno(), (json.dumps(event) + "\n").encode())


def get_logger(name: str):
    return structlog.get_logger(name)
