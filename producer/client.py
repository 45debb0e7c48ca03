"""A small synchronous client for the tenderscan API (httpx).

    with TenderscanClient("http://api:8000", api_key) as c:
        scan = c.submit("bill.jpg", store_id="s1", terminal_id="t1")   # {"scan_id", "status", "poll_url"}
        done = c.wait(scan["scan_id"], timeout=60)                       # {"status": "done", "verdict": {...}}
        items = c.submit_many([b1, b2], store_id="s1", terminal_id="t1")  # one result per image, in order
        scan = c.submit_direct("bill.jpg", store_id="s1", terminal_id="t1")  # POS path: the bytes go to S3
                                                                           # (presigned POST), the API gets a reference

From a shell's settings: `TenderscanClient.from_env()` reads TENDERSCAN_API_URL (default
http://127.0.0.1:8000) and TENDERSCAN_API_KEY, as `tenderscan submit` and `tenderscan status` do.

Webhooks: `verify(secret, headers, body)` checks a delivery's Standard Webhooks signature and its
timestamp's age and returns the event (docs/WEBHOOKS.md); it needs nothing from the rest of tenderscan.

Retries: 503 (honouring Retry-After), 502, 504 and connection errors, with exponential backoff and
full jitter. A submit always carries an Idempotency-Key (a fresh uuid unless one is given), so a retry
after a lost answer can never create a second scan. Any other 4xx/5xx raises ClientError(status, reason).
"""

from __future__ import annotations

import hashlib
import random
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import httpx

RETRY_STATUSES = (502, 503, 504)
API_URL_ENV = "TENDERSCAN_API_URL"  # the API's base URL, for clients (the CLI, from_env)
API_KEY_ENV = "TENDERSCAN_API_KEY"  # the key a client sends: a tenant's tsk_ key or a bootstrap key
DEFAULT_URL = "http://127.0.0.1:8000"  # `tenderscan api`'s default address


class ClientError(Exception):
    """The API refused the request. `reason` is the error body's stable code (see producer/errors.py)."""

    def __init__(self, status: int, reason: str, detail: str = "") -> None:
        super().__init__(f"{status} {reason}" + (f": {detail}" if detail else ""))
        self.status = status
        self.reason = reason
        self.detail = detail


class Unavailable(ClientError):
    """Still 503 / unreachable after every retry."""


class MissingApiKey(ValueError):
    """No key given and none in TENDERSCAN_API_KEY."""


def sniff_content_type(data: bytes) -> str:
    """image/png or image/jpeg from the magic bytes; the server judges by content anyway."""
    return "image/png" if data.startswith(b"\x89PNG\r\n\x1a\n") else "image/jpeg"


class TenderscanClient:
    def __init__(self, base_url: str, api_key: str, timeout: float = 10.0, retries: int = 5,
                 backoff_s: float = 0.25, max_backoff_s: float = 10.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.timeout = timeout
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, transport=transport,
                                 headers={"Authorization": f"Bearer {api_key}"})

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, url: str | None = None, key: str | None = None,
                 **kwargs) -> TenderscanClient:
        """`url` / `key` when given, else TENDERSCAN_API_URL (default http://127.0.0.1:8000) and
        TENDERSCAN_API_KEY from `env` (default os.environ). MissingApiKey names the variable."""
        import os

        env = os.environ if env is None else env
        key = key or env.get(API_KEY_ENV)
        if not key:
            raise MissingApiKey(f"no API key: pass one or set {API_KEY_ENV} (a key from `tenderscan tenant create`, "
                                "or the dev tenant's from `tenderscan dev env`)")
        return cls(url or env.get(API_URL_ENV) or DEFAULT_URL, key, **kwargs)

    def __enter__(self) -> TenderscanClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # --- the API ----------------------------------------------------------------------------------
    def submit(self, image: bytes | str | Path, store_id: str, terminal_id: str,
               idempotency_key: str | None = None, content_type: str | None = None,
               deadline_s: float | None = None) -> dict:
        data = image if isinstance(image, bytes | bytearray) else Path(image).read_bytes()
        headers = {"Content-Type": content_type or sniff_content_type(data),
                   "Idempotency-Key": idempotency_key or uuid.uuid4().hex}
        params = {"store_id": store_id, "terminal_id": terminal_id}
        if deadline_s is not None:
            params["deadline_s"] = deadline_s
        return self._request("POST", "/v1/scans", params=params, content=bytes(data), headers=headers)

    def submit_many(self, images: list[bytes | str | Path], store_id: str, terminal_id: str,
                    idempotency_key: str | None = None, deadline_s: float | None = None) -> list[dict]:
        """POST /v1/scans:batch: one result per image, in order (see routes.submit_scans).

        One Idempotency-Key covers the batch (item i is `{key}:{i}` on the server), so a retried call
        replays the items already accepted. Items that came back 503 are retried here, with the same
        keys, up to `retries` times; other per-item errors are returned, not raised.
        """
        blobs = [bytes(i) if isinstance(i, bytes | bytearray) else Path(i).read_bytes() for i in images]
        key = idempotency_key or uuid.uuid4().hex
        params: dict = {"store_id": store_id, "terminal_id": terminal_id}
        if deadline_s is not None:
            params["deadline_s"] = deadline_s
        results: list[dict | None] = [None] * len(blobs)
        todo = list(range(len(blobs)))
        for attempt in range(self.retries + 1):
            # a later round sends only the 503 items, whose claims the server released: a fresh key
            # (the server numbers items by position, which changes between rounds)
            files = [("image", (f"scan-{i}", blobs[i], sniff_content_type(blobs[i]))) for i in todo]
            sub_key = key if attempt == 0 else f"{key[:40]}r{attempt}"
            body = self._request("POST", "/v1/scans:batch", params=params, files=files,
                                 headers={"Idempotency-Key": sub_key})
            retry = []
            for item, i in zip(body["items"], todo, strict=True):
                results[i] = dict(item, index=i)
                if item["status"] == 503:
                    retry.append(i)
            if not retry or attempt == self.retries:
                break
            time.sleep(self._delay(attempt, None))
            todo = retry
        return [r for r in results if r is not None]

    # --- direct upload (producer/uploads.py) ------------------------------------------------------
    def request_upload(self, content_type: str, size: int | None = None) -> dict:
        """POST /v1/uploads: {upload_id, url, fields, expires_at, ...}; `size` pins the exact length."""
        body: dict = {"content_type": content_type}
        if size is not None:
            body["bytes"] = size
        return self._request("POST", "/v1/uploads", json=body)

    def upload(self, grant: dict, data: bytes) -> None:
        """POST the bytes to S3 with the grant's policy (no API key goes to S3). ClientError on refusal."""
        files = {"file": ("scan", data, grant["content_type"])}
        for attempt in range(self.retries + 1):
            try:
                resp = httpx.post(grant["url"], data=grant["fields"], files=files, timeout=self.timeout)
            except httpx.TransportError as exc:
                if attempt == self.retries:
                    raise Unavailable(0, "connection_error", f"{type(exc).__name__}: {exc}") from None
                time.sleep(self._delay(attempt, None))
                continue
            if resp.status_code in RETRY_STATUSES and attempt < self.retries:
                time.sleep(self._delay(attempt, None))
                continue
            if resp.status_code >= 300:
                raise ClientError(resp.status_code, "upload_refused", _s3_error_code(resp.text))
            return

    def submit_reference(self, upload_id: str, sha256: str, store_id: str, terminal_id: str,
                         deadline_s: float | None = None) -> dict:
        """POST /v1/scans by reference; the upload id is the idempotency key, so retries are safe."""
        params = {} if deadline_s is None else {"deadline_s": deadline_s}
        return self._request("POST", "/v1/scans", params=params, json={
            "upload_id": upload_id, "sha256": sha256, "store_id": store_id, "terminal_id": terminal_id})

    def submit_direct(self, image: bytes | str | Path, store_id: str, terminal_id: str,
                      deadline_s: float | None = None) -> dict:
        """Upload-then-reference: a grant for exactly these bytes, the bytes to S3, the scan by reference."""
        data = bytes(image) if isinstance(image, bytes | bytearray) else Path(image).read_bytes()
        grant = self.request_upload(sniff_content_type(data), size=len(data))
        self.upload(grant, data)
        return self.submit_reference(grant["upload_id"], hashlib.sha256(data).hexdigest(), store_id, terminal_id,
                                     deadline_s=deadline_s)

    def get(self, scan_id: str, wait: float | None = None) -> dict:
        params = {} if wait is None else {"wait": wait}
        return self._request("GET", f"/v1/scans/{scan_id}", params=params,
                             timeout=self.timeout + (wait or 0))

    def wait(self, scan_id: str, timeout: float = 60.0) -> dict:
        """Long-poll until the scan is done; TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            scan = self.get(scan_id, wait=max(0.0, min(30.0, remaining)))
            if scan.get("status") == "done":
                return scan
            if deadline - time.monotonic() <= 0:
                raise TimeoutError(f"scan {scan_id} not done after {timeout:.0f}s (status {scan.get('status')})")

    def ready(self) -> bool:
        """GET /readyz once, no retries: True when the API, its Redis and its S3 all answer."""
        try:
            return self.http.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    # --- retries ----------------------------------------------------------------------------------
    def _request(self, method: str, url: str, **kwargs) -> dict:
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                resp = self.http.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                if last:
                    raise Unavailable(0, "connection_error", f"{type(exc).__name__}: {exc}") from None
                time.sleep(self._delay(attempt, None))
                continue
            if resp.status_code in RETRY_STATUSES and not last:
                time.sleep(self._delay(attempt, resp.headers.get("Retry-After")))
                continue
            if resp.status_code >= 400:
                raise _error(resp)
            return resp.json()
        raise AssertionError("unreachable")

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        """Full jitter on an exponential cap; never sooner than the server's Retry-After."""
        delay = random.uniform(0, min(self.max_backoff_s, self.backoff_s * 2**attempt))
        if retry_after and retry_after.replace(".", "", 1).isdigit():  # an HTTP-date: our own backoff
            delay = max(delay, min(float(retry_after), self.max_backoff_s))
        return delay


def _s3_error_code(text: str) -> str:
    """The <Code> of an S3 XML error (EntityTooLarge, AccessDenied, ...), else the start of the body."""
    start, end = text.find("<Code>"), text.find("</Code>")
    return text[start + 6:end] if 0 <= start < end else text[:200]


def _error(resp: httpx.Response) -> ClientError:
    try:
        err = resp.json()["error"]
        reason, detail = str(err["reason"]), str(err.get("detail", ""))
    except (ValueError, KeyError, TypeError):
        reason, detail = "http_error", resp.text[:200]
    cls = Unavailable if resp.status_code in RETRY_STATUSES else ClientError
    return cls(resp.status_code, reason, detail)


# --- receiving webhooks (docs/WEBHOOKS.md) ----------------------------------------------------------
WEBHOOK_TOLERANCE_S = 300  # a delivery signed longer ago (or further ahead) than this is refused: a replay


class WebhookVerificationError(ValueError):
    """A webhook delivery that must not be trusted: missing headers, a stale timestamp, no valid signature."""


def verify(secret: str, headers: Mapping[str, str], body: bytes | str, tolerance_s: float = WEBHOOK_TOLERANCE_S,
           now: float | None = None) -> dict:
    """Check a tenderscan webhook delivery and return its decoded event ({type, timestamp, data, v}).

    `secret` is the endpoint's `whsec_...`; `headers` the request's (any case); `body` the raw bytes,
    exactly as received (verify before parsing). Accepts if any `v1,` signature in webhook-signature
    matches (during a rotation two are sent), and the webhook-timestamp is within `tolerance_s` of now.
    Raises WebhookVerificationError. Deduplicate on the webhook-id header: a retry repeats it.
    """
    import base64
    import hashlib
    import hmac
    import json

    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp, signatures = (lower.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not (msg_id and stamp and signatures):
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from None
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        raise WebhookVerificationError("webhook-timestamp is outside the tolerance (a replay, or a skewed clock)")
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except ValueError:
        raise WebhookVerificationError("the secret is not whsec_ + base64") from None
    raw = body.encode() if isinstance(body, str) else body
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{timestamp}.".encode() + raw, hashlib.sha256).digest())
    for candidate in signatures.split():
        version, _, sig = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(sig.encode(), expected):
            return json.loads(raw)
    raise WebhookVerificationError("no signature matches")
