"""Direct upload for POS devices: a presigned POST for one server-chosen key, then a scan by reference.

    1. POST /v1/uploads  {"content_type": "image/jpeg"|"image/png", "bytes": N?}          -> 201
         {"upload_id", "url", "fields", "content_type", "min_bytes", "max_bytes", "expires_at"}
       `grant`: the key is uploads/tenant=T/{upload_id} (keys.upload_s3_key), chosen here; the
       policy pins that key, that Content-Type, a content-length-range of 1..the tenant's body cap
       (exactly N when the device said N), and expires after settings.upload_expiry_s.
    2. the device POSTs the image to `url` as multipart/form-data: every `fields` entry, then `file`.
       S3 checks the policy (SeaweedFS does: tests/integration/test_direct_upload.py).
    3. POST /v1/scans  application/json {"upload_id", "sha256", "store_id", "terminal_id"}   -> 202
       `resolve`: HEAD the tenant's own key for that id (another tenant's id is simply not there),
       size within the cap, Content-Type image/jpeg|png, not older than the idempotency window; then
       producer/submit.py accepts it like any scan (intent in S3 before the 202) without copying bytes.
       The upload id is the idempotency key: the same upload submitted again answers with its scan.
    4. the worker re-checks what actually arrived (workers/runtime/pipeline.py): length, sha256, and the magic
       bytes against the stored Content-Type -> `rejected` size_mismatch / checksum_mismatch /
       type_mismatch / unsupported_format. A policy is reusable until it expires, so the bytes may
       change after step 3: the checksum the device declared is what binds the scan to its image.

    status  reason                     when
    400     bad_request                malformed JSON, upload_id or sha256
    409     upload_already_submitted   this upload was submitted before with another sha256
    413     image_too_large            `bytes` or the stored object above the tenant's body cap
    415     unsupported_format         content_type not image/jpeg or image/png (requested or stored)
    422     image_empty                the stored object has zero bytes
    422     upload_missing             nothing at this tenant's key for that id (never sent, or not yet)
    422     upload_expired             uploaded longer ago than the idempotency window

The policy and its signature are a bearer grant for one key: they are returned, never logged.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fastapi import Request

from producer.errors import ApiError, bad_request
from workers.core import keys, schemas
from workers.core.enums import Reason
from workers.core.errors import ObjectNotFound
from workers.core.logging import get_logger
from workers.core.storage import ObjectStore, PresignedPost

log = get_logger("producer.uploads")

CONTENT_TYPES = ("image/jpeg", "image/png")  # what a device may announce (keys.CONTENT_TYPES' values)
BODY_MAX = 4096  # a JSON request body here is a few ids; anything longer is refused
UPLOAD_MISSING = "upload_missing"
UPLOAD_EXPIRED = "upload_expired"
UPLOAD_ALREADY_SUBMITTED = "upload_already_submitted"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


# --- 1. the grant ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Grant:
    upload_id: str
    post: PresignedPost
    content_type: str
    min_bytes: int
    max_bytes: int
    expires_at: str

    def as_json(self) -> dict:
        return {"upload_id": self.upload_id, "url": self.post.url, "fields": self.post.fields,
                "content_type": self.content_type, "min_bytes": self.min_bytes, "max_bytes": self.max_bytes,
                "expires_at": self.expires_at}


def grant(objects: ObjectStore, tenant: str, content_type: object, declared_bytes: object, max_bytes: int,
          expiry_s: int) -> Grant:
    """A presigned POST for a fresh key under the tenant's prefix (blocking: boto3 signs locally)."""
    if content_type not in CONTENT_TYPES:
        raise ApiError(415, Reason.UNSUPPORTED_FORMAT, f"content_type must be one of {', '.join(CONTENT_TYPES)}")
    if declared_bytes is not None and (isinstance(declared_bytes, bool) or not isinstance(declared_bytes, int)
                                       or declared_bytes < 1):
        raise bad_request("bytes must be a positive integer")
    if declared_bytes is not None and declared_bytes > max_bytes:
        raise ApiError(413, Reason.IMAGE_TOO_LARGE, f"{declared_bytes} bytes > limit {max_bytes}")
    low, high = (declared_bytes, declared_bytes) if declared_bytes else (1, max_bytes)
    upload_id = schemas.new_scan_id()
    post = objects.presigned_post(keys.upload_s3_key(tenant, upload_id), str(content_type), low, high, expiry_s)
    expires_at = (datetime.now(UTC) + timedelta(seconds=expiry_s)).strftime("%Y-%m-%dT%H:%M:%SZ")
    log.info("upload_granted", tenant=tenant, upload_id=upload_id, content_type=content_type, max_bytes=high,
             expiry_s=expiry_s)  # never the policy or its signature
    return Grant(upload_id, post, str(content_type), low, high, expires_at)


# --- 3. the reference -----------------------------------------------------------------------------
@dataclass(frozen=True)
class ReferenceBody:
    upload_id: str
    sha256: str
    store_id: str | None = None
    terminal_id: str | None = None


@dataclass(frozen=True)
class Reference:
    """A direct upload checked at the edge: what producer/submit.py puts in the scan's message."""

    key: str
    sha256: str  # as declared by the device; the worker compares it with the bytes
    bytes: int
    content_type: str


async def read_json(request: Request) -> dict:
    """A small JSON object body (capped at BODY_MAX bytes)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > BODY_MAX:
            raise bad_request(f"a JSON body here is at most {BODY_MAX} bytes")
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise bad_request("the body is not JSON") from None
    if not isinstance(data, dict):
        raise bad_request("the body must be a JSON object")
    return data


async def read_reference(request: Request) -> ReferenceBody:
    data = await read_json(request)
    upload_id, sha256 = data.get("upload_id"), data.get("sha256")
    if not isinstance(upload_id, str) or not schemas.is_scan_id(upload_id):
        raise bad_request("upload_id must be the id POST /v1/uploads answered (32 hex digits)")
    if not isinstance(sha256, str) or not _SHA256.match(sha256):
        raise bad_request("sha256 must be the image's SHA-256, 64 lowercase hex digits")
    ids = {name: data.get(name) for name in ("store_id", "terminal_id")}
    if any(v is not None and not isinstance(v, str) for v in ids.values()):
        raise bad_request("store_id and terminal_id must be strings")
    return ReferenceBody(upload_id, sha256, **ids)


def claim_key(upload_id: str) -> str:
    """The Idempotency-Key claim of a by-reference scan. '/' cannot occur in a client's key."""
    return f"upload/{upload_id}"


def resolve(objects: ObjectStore, tenant: str, body: ReferenceBody, max_bytes: int, max_age_s: int,
            now: datetime | None = None) -> Reference:
    """HEAD the tenant's upload and check it (blocking). Only this tenant's prefix is ever looked at."""
    key = keys.upload_s3_key(tenant, body.upload_id)
    try:
        info = objects.stat(key)
    except ObjectNotFound:
        raise ApiError(422, UPLOAD_MISSING, "no upload with this id for this tenant (not uploaded yet?)") from None
    if info.size == 0:
        raise ApiError(422, Reason.IMAGE_EMPTY, "the upload has zero bytes")
    if info.size > max_bytes:
        raise ApiError(413, Reason.IMAGE_TOO_LARGE, f"{info.size} bytes > limit {max_bytes}")
    if info.content_type not in CONTENT_TYPES:
        raise ApiError(415, Reason.UNSUPPORTED_FORMAT, "the upload's Content-Type is not image/jpeg or image/png")
    age_s = ((now or datetime.now(UTC)) - info.last_modified).total_seconds()
    if age_s > max_age_s:
        raise ApiError(422, UPLOAD_EXPIRED, f"uploaded {age_s:.0f} s ago; submit within {max_age_s} s")
    return Reference(key, body.sha256, info.size, info.content_type)
