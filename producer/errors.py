"""What the HTTP edge answers when something goes wrong, and why.

Every error body has one shape: `{"error": {"status": 413, "reason": "image_too_large", "detail": "..."}}`.
`reason` is a stable code clients branch on; `detail` is for humans and may change.

    status  reason                     when
    400     bad_request                malformed store_id / terminal_id / Idempotency-Key / wait, bad multipart
    401     unauthorized               no `Authorization: Bearer` key, or an unknown one (WWW-Authenticate: Bearer)
    401     key_malformed              a `tsk_` key whose checksum does not match (mistyped, truncated): no lookup made
    401     key_revoked                a key its tenant revoked (`tenderscan tenant key-revoke`)
    404     not_found                  unknown scan, another tenant's scan, malformed scan id (one answer: no oracle)
    413     image_too_large            body above settings.max_body_bytes (checked before and while reading)
    415     unsupported_format         not JPEG/PNG by content, or a body type that is not an image upload
    422     image_empty                zero bytes
    422     image_unreadable           truncated or corrupt JPEG/PNG
    422     too_many_pixels            width * height above settings.max_pixels (decompression bombs)
    422     dimensions_out_of_range    a side below min_side or above max_side
    422     idempotency_key_reused     the Idempotency-Key was used before with a different body
    409     upload_already_submitted   a direct upload submitted again with another sha256 (producer/uploads.py)
    422     upload_missing             a scan by reference names no upload of this tenant
    422     upload_expired             a scan by reference names an upload older than the idempotency window
    429     rate_limited               the tenant's requests per second are spent (Retry-After: when a token is back)
    429     too_many_in_flight         the tenant has its maximum of accepted scans without a verdict (Retry-After)
    503     unavailable                S3, Redis or the broker failed (Retry-After set); retrying is safe

Errors are classified by what the caller does (see workers/core/errors.py): a `RejectedScan` is the
client's fault (4xx, do not retry), a `TransientError` or `StorageError` is ours (503, retry later).
"""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from workers.core.enums import Reason
from workers.core.errors import RejectedScan, StorageError, TransientError
from workers.core.logging import get_logger

log = get_logger("producer.errors")

RETRY_AFTER_S = 2  # what a 503 tells the client to wait before retrying

# Edge-only reasons (the rest come from enums.Reason).
UNAUTHORIZED = "unauthorized"
KEY_MALFORMED = "key_malformed"
KEY_REVOKED = "key_revoked"
RATE_LIMITED = "rate_limited"
TOO_MANY_IN_FLIGHT = "too_many_in_flight"
NOT_FOUND = "not_found"
BAD_REQUEST = "bad_request"
IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
UNAVAILABLE = "unavailable"
INTERNAL_ERROR = "internal_error"

# enums.Reason of a rejected upload -> HTTP status
REJECTION_STATUS: dict[str, int] = {
    Reason.IMAGE_EMPTY: 422,
    Reason.IMAGE_UNREADABLE: 422,
    Reason.TOO_MANY_PIXELS: 422,
    Reason.DIMENSIONS_OUT_OF_RANGE: 422,
    Reason.UNSUPPORTED_FORMAT: 415,
    Reason.IMAGE_TOO_LARGE: 413,
}


class ApiError(Exception):
    """An answer other than 2xx, raised anywhere below a route and rendered by `handle_api_error`."""

    def __init__(self, status: int, reason: str, detail: str = "", headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {reason}: {detail}")
        self.status = status
        self.reason = str(reason)
        self.detail = detail
        self.headers = headers or {}


def unauthorized(detail: str = "a valid `Authorization: Bearer <key>` header is required") -> ApiError:
    return ApiError(401, UNAUTHORIZED, detail, {"WWW-Authenticate": "Bearer"})


def too_many(reason: str, detail: str, retry_after_s: int) -> ApiError:
    """429 with the seconds to wait (at least 1) in Retry-After."""
    return ApiError(429, reason, detail, {"Retry-After": str(max(1, retry_after_s))})


def not_found() -> ApiError:
    return ApiError(404, NOT_FOUND, "no such scan")


def bad_request(detail: str) -> ApiError:
    return ApiError(400, BAD_REQUEST, detail)


def unavailable(detail: str, retry_after_s: int = RETRY_AFTER_S) -> ApiError:
    return ApiError(503, UNAVAILABLE, detail, {"Retry-After": str(retry_after_s)})


def from_rejection(exc: RejectedScan) -> ApiError:
    return ApiError(REJECTION_STATUS.get(exc.reason, 422), exc.reason, exc.detail)


def error_response(err: ApiError, extra: dict | None = None) -> JSONResponse:
    body = {"error": {"status": err.status, "reason": err.reason, "detail": err.detail}, **(extra or {})}
    return JSONResponse(body, status_code=err.status, headers=err.headers)


# --- exception handlers (registered by app.create_app) -----------------------------------------
def _answer(request: Request, err: ApiError) -> JSONResponse:
    request.state.reason = err.reason  # for the request log event
    return error_response(err)


async def handle_api_error(request: Request, exc: ApiError) -> JSONResponse:
    return _answer(request, exc)


async def handle_rejected(request: Request, exc: RejectedScan) -> JSONResponse:
    return _answer(request, from_rejection(exc))


async def handle_infrastructure(request: Request, exc: Exception) -> JSONResponse:
    # TransientError (S3/Redis/broker down) and StorageError (S3 said something unexpected) alike:
    # the client did nothing wrong and may retry; the operator sees the event.
    log.warning("infrastructure_error", error=type(exc).__name__, detail=str(exc))
    return _answer(request, unavailable("a backing service is unavailable; retry later"))


async def handle_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(part) for part in first.get("loc", ()))
    return _answer(request, bad_request(f"{where}: {first.get('msg', 'invalid')}"))


async def handle_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    reason = {401: UNAUTHORIZED, 404: NOT_FOUND, 413: Reason.IMAGE_TOO_LARGE, 503: UNAVAILABLE}.get(
        exc.status_code, BAD_REQUEST)
    return _answer(request, ApiError(exc.status_code, reason, str(exc.detail), dict(exc.headers or {})))


async def handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled_error", error=type(exc).__name__)
    return _answer(request, ApiError(500, INTERNAL_ERROR, "unexpected error"))


HANDLERS = [
    (ApiError, handle_api_error),
    (RejectedScan, handle_rejected),
    (TransientError, handle_infrastructure),
    (StorageError, handle_infrastructure),
    (RequestValidationError, handle_validation),
    (StarletteHTTPException, handle_http),
    (Exception, handle_unexpected),
]
