"""workers/core/logging.py: secrets never reach a log line."""

from workers.core.logging import redact


def test_redact_hides_fields_named_like_secrets_and_keeps_the_rest():
    event = {"event": "scan_done", "api_key": "tsk_abc", "S3_SECRET": "s", "Authorization": "Bearer x",
             "image_bytes": b"..", "image_key": "scans/x.jpg", "scan_id": "a" * 32, "decision": "genuine"}
    for _ in range(2):  # the second pass answers from the per-name cache
        out = redact(None, "info", dict(event))
        assert out["api_key"] == out["S3_SECRET"] == out["Authorization"] == out["image_bytes"] == "[redacted]"
        assert {k: out[k] for k in ("event", "image_key", "scan_id", "decision")} == \
            {k: event[k] for k in ("event", "image_key", "scan_id", "decision")}
