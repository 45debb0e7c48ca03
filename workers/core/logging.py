"""structlog set-up: JSON events on stdout, one line each, with bound context (scan_id, batch_id, tenant).

Never log image bytes, API keys or S3 secrets: `redact` drops any field whose name says it holds one.
"""

from __future__ import annotations

import functools
import logging
import sys

import structlog

_SECRET_WORDS = ("key", "secret", "token", "password", "authorization", "image_bytes", "body")
_ALLOWED = {"image_key", "verdict_key", "idempotency_key_present"}  # S3 object keys are not secrets


@functools.lru_cache(maxsize=4096)
def _is_secret(name: str) -> bool:
    """Field names come from code, so a handful recur: the answer is cached (it ran for every field of
    every event, e.g. the ~15 of each scan's `scan_done`)."""
    lowered = name.lower()
    return name not in _ALLOWED and any(word in lowered for word in _SECRET_WORDS)


def redact(_logger, _method, event: dict) -> dict:
    for name in list(event):
        if _is_secret(name):
            event[name] = "[redacted]"
    return event


class _Stream:
    """sys.stdout or sys.stderr, looked up at each write (so a replaced stream is followed)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def write(self, text: str) -> int:
        return getattr(sys, self.name).write(text)

    def flush(self) -> None:
        getattr(sys, self.name).flush()


def configure_logging(level: str = "INFO", json_output: bool = True, stream="stdout") -> None:
    """Services log JSON to stdout; CLI commands log to stderr so their stdout stays machine-readable.

    `stream` is "stdout" or "stderr" (looked up at each write, so tests that swap them are followed),
    or an open file.
    """
    if stream is sys.stdout or stream is sys.stderr:
        stream = "stdout" if stream is sys.stdout else "stderr"
    target = _Stream(stream) if isinstance(stream, str) else stream
    logging.basicConfig(format="%(message)s", stream=getattr(sys, stream) if isinstance(stream, str) else stream,
                        level=getattr(logging, level))
    renderer = structlog.processors.JSONRenderer() if json_output else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level)),
        # one write() per event (message + newline): PrintLogger writes the newline separately, and
        # under the threads pool a stdlib record (Celery's own) could land between the two.
        logger_factory=structlog.WriteLoggerFactory(target),
        # no caching: a few log calls per scan cost nothing, and reconfiguring (a CLI command run
        # in-process, structlog.testing.capture_logs in tests) then reaches every logger
        cache_logger_on_first_use=False,
    )


def get_logger(name: str):
    return structlog.get_logger(name)
