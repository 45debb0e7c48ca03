"""A tenant's webhook receiver for tests/integration/test_webhooks.py, run as its own process:

    python -m tests.integration.webhook_receiver PORT SECRET OUT_JSONL FAIL_FIRST

It verifies every request with producer.client.verify (real clock, default tolerance), answers 500
to the first FAIL_FIRST requests it gets (on purpose) and 200 after, and appends one JSON line per
request to OUT_JSONL: {id, verified, answered, body}. Killed and started again, it appends.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from producer.client import WebhookVerificationError, verify


def main(port: int, secret: str, out_path: str, fail_first: int) -> None:
    lock = threading.Lock()
    seen = {"n": 0}
    out = open(out_path, "a", buffering=1)  # noqa: SIM115 - open for the process's life

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                verify(secret, dict(self.headers), body)
                verified = True
            except WebhookVerificationError:
                verified = False
            with lock:
                seen["n"] += 1
                status = 500 if seen["n"] <= fail_first or not verified else 200
                out.write(json.dumps({"id": self.headers.get("webhook-id"), "verified": verified,
                                      "answered": status, "body": body.decode()}) + "\n")
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]))
