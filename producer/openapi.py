"""What /openapi.json, /docs and /redoc say about the edge: typed bodies, every error, no CDN.

    bodies     pydantic models of the JSON the routes read and write. The routes keep returning plain
               dicts (`response_model=None`, so no answer is validated and serialised a second time
               on the hot path); the models document them, and tests/test_openapi.py checks real
               answers against them with extra fields forbidden, so the two cannot drift apart.
    errors     ERRORS: every status from 400 to 503 the edge answers, with its reason codes and when
               (the table of producer/errors.py and docs/ARCHITECTURE.md "The edge's answers").
               `errors(400, 401, ...)` is a route's `responses=`: the envelope
               {"error": {"status", "reason", "detail"}} with the reasons that route gives, and the
               headers that come with them (WWW-Authenticate, Retry-After).
    document   `install(app)` adds the request-body models to the components and drops the 422
               FastAPI documents by default: a RequestValidationError is answered 400 `bad_request`
               here (producer/errors.py). Swagger UI and ReDoc are served by the app itself from
               the files of the `fastapi-offline` package (app.create_app), so /docs works with no
               network beyond the API.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from producer import errors as e
from producer.uploads import CONTENT_TYPES, UPLOAD_ALREADY_SUBMITTED, UPLOAD_EXPIRED, UPLOAD_MISSING
from workers.core.enums import Reason, ScanStatus
from workers.core.schemas import Verdict

ScanStatusValue = Literal[tuple(s.value for s in ScanStatus)]  # type: ignore[valid-type]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- requests -------------------------------------------------------------------------------------
class ScanForm(Body):
    """POST /v1/scans as multipart/form-data (ids may also come as query parameters)."""

    image: bytes = Field(description="the scan, JPEG or PNG (judged by its bytes)")
    store_id: str | None = Field(None, description="store the scan comes from")
    terminal_id: str | None = Field(None, description="terminal within the store")


class ScanReference(Body):
    """POST /v1/scans as application/json: a direct upload already in S3 (POST /v1/uploads first)."""

    upload_id: str = Field(pattern=r"^[0-9a-f]{32}$", description="the id POST /v1/uploads answered")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the uploaded bytes, lowercase hex; "
                                                                "the worker checks the bytes against it")
    store_id: str | None = None
    terminal_id: str | None = None


class BatchForm(Body):
    """POST /v1/scans:batch: one `image` part per scan (1..64), the ids for all of them."""

    image: list[bytes] = Field(min_length=1, max_length=64, description="the scans, in order")
    store_id: str | None = None
    terminal_id: str | None = None


class UploadRequest(Body):
    """POST /v1/uploads."""

    content_type: Literal[CONTENT_TYPES]  # type: ignore[valid-type]
    bytes: int | None = Field(None, ge=1, description="exact size, if known: the policy then allows only that")


REQUEST_MODELS: tuple[type[BaseModel], ...] = (ScanForm, ScanReference, BatchForm, UploadRequest)


def body_ref(model: type[BaseModel]) -> dict[str, str]:
    """A request body's schema by reference (install() puts the model in the components)."""
    return {"$ref": f"#/components/schemas/{model.__name__}"}


# --- answers --------------------------------------------------------------------------------------
class ScanAccepted(Body):
    """202: the image and the scan's intent are in S3, the scan is recorded and queued."""

    scan_id: str
    status: ScanStatusValue = Field(description="the scan's status now (`queued`; a replay may find it further)")
    poll_url: str = Field(description="GET it for the verdict (absolute when TENDERSCAN_PUBLIC_URL is set)")


class ItemError(Body):
    reason: str
    detail: str


class BatchItemAccepted(Body):
    index: int
    status: Literal[202]
    scan_id: str
    status_now: ScanStatusValue
    poll_url: str
    replayed: bool = Field(description="an earlier submission with the same Idempotency-Key answered")


class BatchItemRefused(Body):
    index: int
    status: int = Field(description="what a single POST /v1/scans would have answered: 4xx, or 503 (retry it)")
    error: ItemError


class BatchResult(Body):
    """200 whenever the request itself is well-formed: one outcome per image, in order."""

    accepted: int
    refused: int
    items: list[BatchItemAccepted | BatchItemRefused]


class UploadGrant(Body):
    """201: a presigned POST for exactly one key; send the image to `url` with every field, then `file`."""

    upload_id: str
    url: str
    fields: dict[str, str]
    content_type: str
    min_bytes: int
    max_bytes: int
    expires_at: str = Field(description="UTC, ISO-8601")


class ReviewSummary(Body):
    """Who reviewed the scan in the review console, when, and what they found (docs/REVIEW.md)."""

    label: Literal["genuine", "counterfeit", "not_a_banknote"]
    decision: Literal["genuine", "counterfeit", "rejected"] = Field(description="the decision that stands")
    reason: str | None = Field(None, description="`not_a_banknote` when the reviewer found no note")
    reviewed_by: str = Field(description="the reviewer, `name@tenant` (or `name@*`, an auditor)")
    reviewed_at: str
    signs_seen: list[str]


class ScanView(Body):
    """The scan's state; `verdict` once it is `done` (docs/ARCHITECTURE.md, decisions and reasons)."""

    scan_id: str
    status: ScanStatusValue
    submitted_at: str | None
    verdict: Verdict | None = Field(None, description=(
        "present when status is `done`. `decision` is genuine | counterfeit | review | rejected | expired | error. "
        "`reason` (review, rejected, expired, error): for a scan that is not one whole note `not_a_banknote`, "
        "`note_incomplete` or `multiple_notes` (rejected: ask for a new scan); for review `uncertain`, "
        "`unfamiliar_capture` or `not_sure_it_is_a_note` (a person looks); for a bad image the edge's 4xx codes "
        "(image_unreadable, too_many_pixels, ...). Every value: " + ", ".join(f"`{r.value}`" for r in Reason)))
    final_decision: str | None = Field(None, description=(
        "present when status is `done`: the review's decision once a person reviewed the scan, else the "
        "verdict's. The verdict itself never changes."))
    review: ReviewSummary | None = Field(None, description="present once a person reviewed the scan")


class Alive(Body):
    status: Literal["ok"]


class Ready(Body):
    status: Literal["ready"]
    checks: dict[str, str] = Field(description="redis, s3: `ok`")


class ErrorDetail(Body):
    status: int
    reason: str = Field(description="a stable code to branch on")
    detail: str = Field(description="for people; may change")


class ErrorBody(Body):
    """Every answer other than 2xx."""

    error: ErrorDetail


class NotReady(ErrorBody):
    """503 from /readyz: the envelope, and which dependency did not answer."""

    checks: dict[str, str] = Field(description="redis, s3: `ok` or `unavailable: <error>`")


# --- errors ---------------------------------------------------------------------------------------
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}

# status -> (reason -> when); the edge answers nothing else from 400 to 503.
ERRORS: dict[int, dict[str, str]] = {
    400: {e.BAD_REQUEST: "bad or missing `store_id` / `terminal_id`, bad Idempotency-Key, `wait` or `deadline_s`, "
                         "bad multipart or JSON"},
    401: {e.UNAUTHORIZED: "no key, a malformed header or an unknown key (WWW-Authenticate: Bearer)",
          e.KEY_MALFORMED: "a `tsk_` key whose checksum does not match (mistyped or truncated); refused before "
                           "any lookup",
          e.KEY_REVOKED: "a key its tenant revoked"},
    404: {e.NOT_FOUND: "unknown, malformed, or another tenant's scan id: the same answer, so ids leak nothing"},
    408: {e.REQUEST_TIMEOUT: "the body did not arrive whole within BODY_TIMEOUT_S of the request's start "
                             "(Connection: close)"},
    409: {UPLOAD_ALREADY_SUBMITTED: "a scan by reference for an upload already submitted with another `sha256`"},
    413: {Reason.IMAGE_TOO_LARGE: "body over MAX_BODY_BYTES (refused from Content-Length before reading; reads "
                                  "are capped), or `bytes` / the stored upload over it"},
    415: {Reason.UNSUPPORTED_FORMAT: "not JPEG or PNG by content (a PNG declared as JPEG is accepted as the PNG it "
                                     "is), or a body type this route does not take"},
    422: {Reason.IMAGE_EMPTY: "zero bytes",
          Reason.IMAGE_UNREADABLE: "the image header does not parse",
          Reason.TOO_MANY_PIXELS: "width × height over MAX_PIXELS",
          Reason.DIMENSIONS_OUT_OF_RANGE: "a side under MIN_SIDE or over MAX_SIDE",
          e.IDEMPOTENCY_KEY_REUSED: "the Idempotency-Key was used before with a different image",
          UPLOAD_MISSING: "a scan by reference names no upload of this tenant",
          UPLOAD_EXPIRED: "a scan by reference names an upload older than IDEMPOTENCY_TTL_S"},
    429: {e.RATE_LIMITED: "the tenant's requests per second (a token bucket shared by every API replica)",
          e.TOO_MANY_IN_FLIGHT: "the tenant has its maximum of accepted scans without a verdict"},
    500: {e.INTERNAL_ERROR: "a bug of ours (a stored verdict that does not decode, an unexpected error)"},
    503: {e.UNAVAILABLE: "S3, Redis or the broker failed: nothing was durably accepted; retry"},
}
HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
    429: RETRY_AFTER,
    503: RETRY_AFTER,
}


def errors(*statuses: int, only: dict[int, tuple[str, ...]] | None = None) -> dict[int | str, dict[str, Any]]:
    """The `responses=` entries of a route that can answer `statuses` (`only`: that route's reasons of a status)."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        reasons = {r: when for r, when in ERRORS[status].items() if not only or status not in only
                   or r in only[status]}
        lines = "\n".join(f"- `{reason}`: {when}" for reason, when in reasons.items())
        out[status] = {"model": ErrorBody, "description": f"`reason`, by case:\n\n{lines}",
                       **({"headers": HEADERS[status]} if status in HEADERS else {})}
    return out


def install(app: FastAPI) -> None:
    """Complete the app's OpenAPI document once it is built (see the module docstring)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = build()
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            for model in REQUEST_MODELS:
                schemas[model.__name__] = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for path in spec["paths"].values():
                for operation in path.values():
                    default_422 = operation.get("responses", {}).get("422", {})
                    if "HTTPValidationError" in str(default_422):
                        del operation["responses"]["422"]
            schemas.pop("HTTPValidationError", None)
            schemas.pop("ValidationError", None)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
