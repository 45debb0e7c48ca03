"""Object storage behind a small interface: S3 (boto3) for real, a dict for unit tests.

botocore's exceptions stop here. Callers see only:
    ObjectNotFound       no such key (or bucket)
    StorageUnavailable   connection refused, timeouts, throttling, 5xx — retry later
    StorageError         anything else (access denied, bad request, a TLS certificate that does not
                         verify against TENDERSCAN_S3_CA_FILE) — an operator must look

Direct uploads: `presigned_post` signs a POST policy for one key with a client built on the public
endpoint (the one POS devices reach), never the internal one; the signature and policy are returned
to the caller and never logged.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from workers.core.errors import ObjectNotFound, StorageError, StorageUnavailable
from workers.core.settings import Settings


@dataclass(frozen=True)
class StoredObject:
    data: bytes
    metadata: dict[str, str]
    content_type: str = "application/octet-stream"


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    content_type: str
    last_modified: datetime  # UTC
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PresignedPost:
    """What a device needs to upload: POST `url` as multipart/form-data, `fields` first, then `file`."""

    url: str
    fields: dict[str, str] = field(repr=False)  # policy and signature: a bearer grant, never logged


class ObjectStore(Protocol):
    bucket: str

    def put(self, key: str, data: bytes, content_type: str = ..., metadata: dict[str, str] | None = ...) -> None: ...
    def get(self, key: str, max_bytes: int | None = None) -> StoredObject: ...
    def head(self, key: str) -> tuple[int, dict[str, str]]: ...
    def stat(self, key: str) -> ObjectInfo: ...
    def presigned_post(self, key: str, content_type: str, min_bytes: int, max_bytes: int,
                       expires_s: int) -> PresignedPost: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str) -> Iterator[str]: ...
    def delete(self, key: str) -> None: ...
    def ping(self) -> None: ...


class TooLarge(StorageError):
    """get(max_bytes=...) found a bigger object; its size is in `size`."""

    def __init__(self, key: str, size: int) -> None:
        super().__init__(f"object {key} has {size} bytes")
        self.size = size


# --- S3 -----------------------------------------------------------------------------------------
_NOT_FOUND = {"404", "NoSuchKey", "NoSuchBucket", "NotFound"}
_RETRYABLE = {"500", "502", "503", "504", "SlowDown", "Throttling", "ThrottlingException",
              "RequestTimeout", "InternalError", "ServiceUnavailable"}


@contextmanager
def _translate(key: str) -> Iterator[None]:
    """Map botocore's exceptions onto ours (httpx's map_httpcore_exceptions, for S3)."""
    import botocore.exceptions as bx

    try:
        yield
    except bx.ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        if code in _NOT_FOUND or status == "404":
            raise ObjectNotFound(key) from None
        if code in _RETRYABLE or status in _RETRYABLE:
            raise StorageUnavailable(f"S3 {code or status} on {key}") from None
        raise StorageError(f"S3 {code or status} on {key}") from None
    except bx.SSLError as exc:
        # A certificate that does not verify is configuration, not an outage: say which setting.
        raise StorageError(f"S3 TLS failed ({str(exc)[:160]}); TENDERSCAN_S3_CA_FILE must name the CA "
                           "that signed the endpoint's certificate") from None
    except (bx.EndpointConnectionError, bx.ConnectionClosedError, bx.ReadTimeoutError,
            bx.ConnectTimeoutError, bx.ProxyConnectionError) as exc:
        raise StorageUnavailable(f"S3 unreachable ({type(exc).__name__})") from None
    except bx.BotoCoreError as exc:
        raise StorageError(f"S3 client error ({type(exc).__name__})") from None


def s3_client(settings: Settings, max_pool: int = 64, endpoint_url: str | None = None):
    """boto3 S3 client; HTTPS endpoints are verified against settings.s3_ca_file (or the system store)."""
    import boto3
    from botocore.config import Config

    from workers.core.transport import s3_verify

    return boto3.client(
        "s3",
        endpoint_url=(settings.s3_endpoint_url if endpoint_url is None else endpoint_url) or None,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key,
        aws_secret_access_key=settings.s3_secret_key,
        verify=s3_verify(settings),
        config=Config(
            max_pool_connections=max_pool,
            connect_timeout=2,
            read_timeout=10,
            retries={"max_attempts": 3, "mode": "standard"},
            signature_version="s3v4",  # presigned POSTs too (boto3 would sign those with SigV2)
            s3={"addressing_style": "path"},
        ),
    )


def presign_client(settings: Settings):
    """Signs presigned POSTs whose URL is the public endpoint (settings.s3_public_endpoint_url)."""
    return s3_client(settings, max_pool=4, endpoint_url=settings.effective_s3_public_endpoint_url)


class S3ObjectStore:
    """One bucket on an S3-compatible server. Thread-safe (boto3 clients are)."""

    def __init__(self, client, bucket: str, presigner=None) -> None:
        self.client = client
        self.bucket = bucket
        self.presigner = presigner or client  # a client on the public endpoint (presign_client)

    @classmethod
    def from_settings(cls, settings: Settings, bucket: str | None = None) -> S3ObjectStore:
        presigner = presign_client(settings) if settings.s3_public_endpoint_url else None
        return cls(s3_client(settings), bucket or settings.s3_bucket, presigner)

    def ensure_bucket(self) -> None:
        with _translate(self.bucket):
            try:
                self.client.head_bucket(Bucket=self.bucket)
                return
            except Exception as exc:  # noqa: BLE001 - decide below whether it is "missing"
                code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
                if code not in _NOT_FOUND:
                    raise
            self.client.create_bucket(Bucket=self.bucket)

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream",
            metadata: dict[str, str] | None = None) -> None:
        with _translate(key):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type,
                                   Metadata=metadata or {})

    def get(self, key: str, max_bytes: int | None = None) -> StoredObject:
        with _translate(key):
            resp = self.client.get_object(Bucket=self.bucket, Key=key)
            size = int(resp.get("ContentLength", 0))
            if max_bytes is not None and size > max_bytes:
                resp["Body"].close()
                raise TooLarge(key, size)
            data = resp["Body"].read()
        return StoredObject(data, dict(resp.get("Metadata", {})), resp.get("ContentType", "application/octet-stream"))

    def head(self, key: str) -> tuple[int, dict[str, str]]:
        with _translate(key):
            resp = self.client.head_object(Bucket=self.bucket, Key=key)
        return int(resp.get("ContentLength", 0)), dict(resp.get("Metadata", {}))

    def stat(self, key: str) -> ObjectInfo:
        with _translate(key):
            resp = self.client.head_object(Bucket=self.bucket, Key=key)
        modified = resp.get("LastModified") or datetime.now(UTC)
        return ObjectInfo(int(resp.get("ContentLength", 0)), resp.get("ContentType", "application/octet-stream"),
                          modified.astimezone(UTC), dict(resp.get("Metadata", {})))

    def presigned_post(self, key: str, content_type: str, min_bytes: int, max_bytes: int,
                       expires_s: int) -> PresignedPost:
        """A POST policy for exactly `key`, exactly `content_type`, min..max bytes, `expires_s` seconds."""
        with _translate(key):
            post = self.presigner.generate_presigned_post(
                self.bucket, key, Fields={"Content-Type": content_type},
                Conditions=[{"Content-Type": content_type}, ["content-length-range", min_bytes, max_bytes]],
                ExpiresIn=expires_s)
        return PresignedPost(post["url"], dict(post["fields"]))

    def exists(self, key: str) -> bool:
        try:
            self.head(key)
        except ObjectNotFound:
            return False
        return True

    def list(self, prefix: str) -> Iterator[str]:
        with _translate(prefix):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield item["Key"]

    def delete(self, key: str) -> None:
        with _translate(key):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def ping(self) -> None:
        with _translate(self.bucket):
            self.client.head_bucket(Bucket=self.bucket)


# --- in-memory twin for unit tests --------------------------------------------------------------
@dataclass
class MemoryObjectStore:
    """A dict that behaves like one bucket. `down = True` makes every call StorageUnavailable."""

    bucket: str = "memory"
    objects: dict[str, StoredObject] = field(default_factory=dict)
    modified: dict[str, datetime] = field(default_factory=dict)  # stat()'s last_modified, when a test sets one
    grants: dict[str, dict] = field(default_factory=dict)  # presigned_post calls, by key
    down: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _check(self) -> None:
        if self.down:
            raise StorageUnavailable("memory store is down")

    def ensure_bucket(self) -> None:
        self._check()

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream",
            metadata: dict[str, str] | None = None) -> None:
        self._check()
        with self._lock:
            self.objects[key] = StoredObject(bytes(data), dict(metadata or {}), content_type)

    def get(self, key: str, max_bytes: int | None = None) -> StoredObject:
        self._check()
        obj = self.objects.get(key)
        if obj is None:
            raise ObjectNotFound(key)
        if max_bytes is not None and len(obj.data) > max_bytes:
            raise TooLarge(key, len(obj.data))
        return obj

    def head(self, key: str) -> tuple[int, dict[str, str]]:
        obj = self.get(key)
        return len(obj.data), dict(obj.metadata)

    def stat(self, key: str) -> ObjectInfo:
        obj = self.get(key)
        return ObjectInfo(len(obj.data), obj.content_type, self.modified.get(key, datetime.now(UTC)),
                          dict(obj.metadata))

    def presigned_post(self, key: str, content_type: str, min_bytes: int, max_bytes: int,
                       expires_s: int) -> PresignedPost:
        """Records the grant (tests read `grants`); the URL is not servable."""
        self._check()
        self.grants[key] = {"content_type": content_type, "min_bytes": min_bytes, "max_bytes": max_bytes,
                            "expires_s": expires_s}
        return PresignedPost(f"memory://{self.bucket}", {"key": key, "Content-Type": content_type,
                                                         "policy": "memory", "x-amz-signature": "memory"})

    def exists(self, key: str) -> bool:
        self._check()
        return key in self.objects

    def list(self, prefix: str) -> Iterator[str]:
        self._check()
        yield from sorted(k for k in list(self.objects) if k.startswith(prefix))

    def delete(self, key: str) -> None:
        self._check()
        with self._lock:
            self.objects.pop(key, None)

    def ping(self) -> None:
        self._check()


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/prefix` -> (bucket, prefix without leading or trailing slash)."""
    if not url.startswith("s3://"):
        raise ValueError(f"not an s3:// URL: {url}")
    bucket, _, prefix = url[5:].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {url}")
    return bucket, prefix.strip("/")
