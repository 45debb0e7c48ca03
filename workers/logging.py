"""structlog set-up: JSON events on stdout, one line each, with bound context (scan_id, batch_id, tenant).

Never log image bytes, API keys or S3 secrets: `redact` drops any field whose name says it holds one.
"""

from __future__ import annotations

import logging
import sys

import structlog

_SECRET_WORDS = ("key", "secret", "token", "password", "authorization", "image_bytes", "body")
_ALLOWED = {"image_key", "verdict_key", "idempotency_key_present"}  # S3 object keys are not secrets


def redact(_logger, _method, event: dict) -> dict:
    for name in list(event):
        lowered = name.lower()
        if name not in _ALLOWED and any(word in lowered for word in _SECRET_WORDS):
            event[name] = "[redacted]"
    return event


def configure_logging(level: str = "INFO", json_output: bool = True, stream=None) -> None:
    """Services log JSON to stdout; CLI commands log to stderr so their stdout stays machine-readable."""
    stream = stream or sys.stdout
    logging.basicConfig(format="%(message)s", stream=stream, level=getattr(logging, level))
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
        logger_factory=structlog.WriteLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str):
    return structlog.get_logger(name)
