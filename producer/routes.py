"""The HTTP routes: thin adapters from requests to `submit.Submitter` and `poll`.

    POST /v1/scans              an image (raw image/jpeg|image/png body, or multipart field `image`) -> 202,
                                or JSON {upload_id, sha256, store_id, terminal_id}: a direct upload by reference
    POST /v1/uploads            JSON {content_type, bytes?} -> 201 a presigned POST for one key (producer/uploads.py)
    POST /v1/scans:batch        up to 64 multipart `image` parts -> 200 with one outcome per image
    GET  /metrics               Prometheus: queue depth, oldest queued scan's age (workers/telemetry.py)
    GET  /v1/scans/{scan_id}    state and verdict; `?wait=S` long-polls up to 30 s for the verdict
    GET  /healthz               the process is up
    GET  /readyz                Redis and S3 answer (503 naming the one that does not)

The body is never read unboundedly: a Content-Length above the limit is refused before reading, and
the read itself stops at the limit (chunked uploads carry no Content-Length).

Content type: a raw body must declare image/jpeg or image/png, a form must be multipart/form-data,
a reference application/json; anything else is 415. The format itself is judged by the bytes (imaging.inspect): a PNG declared as
image/jpeg is accepted as the PNG it is, and a text file declared as image/jpeg is 415.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from producer.auth import identify
from producer.errors import ApiError, bad_request, error_response, from_rejection, unavailable
from producer.limits import admit_request, admit_scans
from producer.openapi import (
    Alive,
    BatchForm,
    BatchResult,
    NotReady,
    Ready,
    ScanAccepted,
    ScanForm,
    ScanReference,
    ScanView,
    UploadGrant,
    UploadRequest,
    body_ref,
    errors,
)
from producer.poll import wait_for_scan
from producer.submit import Upload
from producer.uploads import claim_key, grant, read_json, read_reference, resolve
from workers.core import schemas
from workers.core.enums import Reason
from workers.core.errors import RejectedScan, TenderscanError

router = APIRouter()
bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <API key>`")

RAW_TYPES = ("image/jpeg", "image/png")
MULTIPART_OVERHEAD = 64 * 1024  # boundaries, part headers and the two id fields on top of the image


def require_tenant(request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str:
    """Every tenant-scoped route: 401 without a valid key, 429 past the tenant's request rate.
    Leaves the tenant's limits in request.state.policy (producer/limits.py)."""
    header = f"Bearer {creds.credentials}" if creds else None
    state = request.app.state
    identity = identify(header, state.settings.api_keys, state.tenants)
    request.state.tenant = identity.tenant  # for the request log
    request.state.policy = admit_request(state, identity)
    return identity.tenant


# --- POST /v1/scans ------------------------------------------------------------------------------
_UPLOAD_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {"schema": body_ref(ScanForm)},
            "application/json": {"schema": body_ref(ScanReference)},
        },
    },
}
_ACCEPTED = {"model": ScanAccepted, "description": "accepted (`Idempotent-Replayed: true` on a replay)",
             "headers": {"Location": {"description": "the poll URL", "schema": {"type": "string"}},
                         "Idempotent-Replayed": {"description": "`true` when an earlier request with this "
                                                                "Idempotency-Key answers", "schema": {"type": "string"}}}}


@router.post("/v1/scans", status_code=202, openapi_extra=_UPLOAD_DOC, summary="Submit a scan", response_model=None,
             responses={202: _ACCEPTED, **errors(400, 401, 408, 409, 413, 415, 422, 429, 500, 503)})
async def submit_scan(
    request: Request,
    response: Response,
    tenant: str = Depends(require_tenant),
    store_id: str | None = Query(None, description="store the scan comes from (or a form field)"),
    terminal_id: str | None = Query(None, description="terminal within the store (or a form field)"),
    idempotency_key: str | None = Header(None, alias="Idempotency-Key"),
    deadline_s: float | None = Query(None, gt=0, le=86400, allow_inf_nan=False,
                                     description="a scan dequeued later than this many seconds after "
                                                 "submission gets an `expired` verdict, without inference"),
) -> dict:
    settings = request.app.state.settings
    policy = request.state.policy
    limit = policy.max_body_bytes
    await admit_scans(request, tenant, 1)  # 429 before the body is read
    declared = request.headers.get("content-type", "").split(";")[0].strip().lower()
    reference = None
    if declared == "application/json":  # by reference: a direct upload already in S3 (producer/uploads.py)
        body = await read_reference(request)
        store_id, terminal_id = store_id or body.store_id, terminal_id or body.terminal_id
        reference = await run_in_threadpool(resolve, request.app.state.deps.objects, tenant, body, limit,
                                            settings.idempotency_ttl_s)
        data, idempotency_key = b"", claim_key(body.upload_id)  # the upload id is the idempotency key
    elif declared == "multipart/form-data":
        data, form_ids = await _read_multipart(request, limit)
        store_id = store_id or form_ids.get("store_id")
        terminal_id = terminal_id or form_ids.get("terminal_id")
    elif declared in RAW_TYPES:
        _check_content_length(request, limit)
        data = b"".join([chunk async for chunk in _capped(request, limit)])
    else:
        raise ApiError(415, Reason.UNSUPPORTED_FORMAT,
                       "send a raw image/jpeg or image/png body, multipart/form-data with an `image` field, "
                       "or application/json naming an upload")

    upload = Upload(tenant=tenant, store_id=store_id or "", terminal_id=terminal_id or "", data=data,
                    idempotency_key=idempotency_key, deadline_s=deadline_s,
                    limits=policy.image_limits(settings), reference=reference)
    accepted = await run_in_threadpool(request.app.state.submitter.accept, upload)
    request.state.scan_id = accepted.scan_id
    poll_url = f"{settings.public_url}/v1/scans/{accepted.scan_id}"
    response.headers["Location"] = poll_url
    if accepted.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return {"scan_id": accepted.scan_id, "status": accepted.status, "poll_url": poll_url}


# --- POST /v1/uploads -----------------------------------------------------------------------------
_GRANT_DOC = {"requestBody": {"required": True, "content": {"application/json": {"schema": body_ref(UploadRequest)}}}}


@router.post("/v1/uploads", status_code=201, openapi_extra=_GRANT_DOC, response_model=None,
             summary="A presigned POST for a direct upload (then submit the scan by reference)",
             responses={201: {"model": UploadGrant, "description": "the grant"},
                        **errors(400, 401, 408, 413, 415, 429, 500, 503)})
async def create_upload(request: Request, tenant: str = Depends(require_tenant)) -> dict:
    settings = request.app.state.settings
    data = await read_json(request)
    granted = await run_in_threadpool(grant, request.app.state.deps.objects, tenant, data.get("content_type"),
                                      data.get("bytes"), request.state.policy.max_body_bytes,
                                      settings.upload_expiry_s)
    return granted.as_json()


def _check_content_length(request: Request, limit: int) -> None:
    raw = request.headers.get("content-length")
    if raw is None:
        return  # chunked: _capped stops the read at the limit
    if not raw.isdigit():
        raise bad_request("Content-Length is not a number")
    if int(raw) > limit:
        raise ApiError(413, Reason.IMAGE_TOO_LARGE, f"{raw} bytes > limit {limit}")


async def _capped(request: Request, limit: int):
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise ApiError(413, Reason.IMAGE_TOO_LARGE, f"more than {limit} bytes")
        yield chunk


async def _read_multipart(request: Request, limit: int) -> tuple[bytes, dict[str, str]]:
    """The `image` part's bytes and the text fields; the whole body capped at limit + overhead."""
    _check_content_length(request, limit + MULTIPART_OVERHEAD)
    parser = MultiPartParser(request.headers, _capped(request, limit + MULTIPART_OVERHEAD),
                             max_files=1, max_fields=8, max_part_size=1024)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise bad_request(f"multipart: {exc.message}") from None
    try:
        image = form.get("image")
        if not isinstance(image, UploadFile):
            raise bad_request("multipart/form-data needs a file field named `image`")
        data = await image.read(limit + 1)
        if len(data) > limit:
            raise ApiError(413, Reason.IMAGE_TOO_LARGE, f"more than {limit} bytes")
        fields = {k: v for k, v in form.items() if k in ("store_id", "terminal_id") and isinstance(v, str)}
        return data, fields
    finally:
        await form.close()


# --- POST /v1/scans:batch ------------------------------------------------------------------------
BATCH_MAX_ITEMS = 64  # image parts in one bulk request
BATCH_KEY_MAX = 56  # a batch Idempotency-Key; item i uses "{key}:{i}" (<= 64 characters, like any key)
_BATCH_DOC = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": body_ref(BatchForm)}}}}


@router.post("/v1/scans:batch", status_code=200, openapi_extra=_BATCH_DOC, summary="Submit several scans",
             response_model=None, responses={200: {"model": BatchResult, "description": "one outcome per image"},
                                             **errors(400, 401, 408, 413, 415, 429, 500, 503)})
async def submit_scans(
    request: Request,
    tenant: str = Depends(require_tenant),
    store_id: str | None = Query(None, description="store of every scan in the batch (or a form field)"),
    terminal_id: str | None = Query(None, description="terminal of every scan in the batch (or a form field)"),
    idempotency_key: str | None = Header(None, alias="Idempotency-Key", max_length=BATCH_KEY_MAX,
                                         description="item i is submitted with key `{key}:{i}`"),
    deadline_s: float | None = Query(None, gt=0, le=86400, allow_inf_nan=False),
) -> dict:
    """multipart/form-data with up to 64 `image` parts (the whole body within MAX_BODY_BYTES).

    Always 200 when the request itself is well-formed; each item carries its own outcome, in order:
    `{"index", "status": 202, "scan_id", "status_now", "poll_url", "replayed"}` or
    `{"index", "status": 4xx|503, "error": {"reason", "detail"}}`. One bad image fails only itself;
    a 503 item may be retried (with the same Idempotency-Key, accepted items come back as replays).
    """
    settings = request.app.state.settings
    declared = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if declared != "multipart/form-data":
        raise ApiError(415, Reason.UNSUPPORTED_FORMAT, "send multipart/form-data with one `image` part per scan")
    policy = request.state.policy
    await admit_scans(request, tenant, 1)  # 429 before the body is read
    images, form_ids = await _read_multipart_batch(request, policy.max_body_bytes)
    await admit_scans(request, tenant, len(images))  # a batch is admitted whole or not at all
    store_id = store_id or form_ids.get("store_id")
    terminal_id = terminal_id or form_ids.get("terminal_id")
    image_limits = policy.image_limits(settings)
    uploads = [Upload(tenant=tenant, store_id=store_id or "", terminal_id=terminal_id or "", data=data,
                      idempotency_key=f"{idempotency_key}:{i}" if idempotency_key else None, deadline_s=deadline_s,
                      limits=image_limits)
               for i, data in enumerate(images)]
    outcomes = await run_in_threadpool(request.app.state.submitter.accept_many, uploads)
    items = []
    for i, outcome in enumerate(outcomes):
        if isinstance(outcome, Exception):
            err = _as_api_error(outcome)
            items.append({"index": i, "status": err.status, "error": {"reason": err.reason, "detail": err.detail}})
            continue
        poll_url = f"{settings.public_url}/v1/scans/{outcome.scan_id}"
        items.append({"index": i, "status": 202, "scan_id": outcome.scan_id, "status_now": outcome.status,
                      "poll_url": poll_url, "replayed": outcome.replayed})
    accepted = sum(1 for item in items if item["status"] == 202)
    return {"accepted": accepted, "refused": len(items) - accepted, "items": items}


def _as_api_error(exc: Exception) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, RejectedScan):
        return from_rejection(exc)
    return unavailable("a backing service is unavailable; retry this item later")


async def _read_multipart_batch(request: Request, limit: int) -> tuple[list[bytes], dict[str, str]]:
    """Every `image` part's bytes (1..BATCH_MAX_ITEMS) and the id fields; the body capped at limit."""
    _check_content_length(request, limit + MULTIPART_OVERHEAD)
    parser = MultiPartParser(request.headers, _capped(request, limit + MULTIPART_OVERHEAD),
                             max_files=BATCH_MAX_ITEMS, max_fields=8, max_part_size=1024)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise bad_request(f"multipart: {exc.message}") from None
    try:
        parts = [v for k, v in form.multi_items() if k == "image"]
        if not parts or not all(isinstance(p, UploadFile) for p in parts):
            raise bad_request(f"multipart/form-data needs 1..{BATCH_MAX_ITEMS} file fields named `image`")
        images = [await p.read() for p in parts]
        fields = {k: v for k, v in form.items() if k in ("store_id", "terminal_id") and isinstance(v, str)}
        return images, fields
    finally:
        await form.close()


# --- GET /metrics ---------------------------------------------------------------------------------
@router.get("/metrics", summary="Prometheus metrics: queue depth and the oldest queued scan's age",
            include_in_schema=False)
async def prometheus_metrics(request: Request) -> Response:
    from workers.core import telemetry

    body = await run_in_threadpool(telemetry.render, request.app.state.metrics_registry)
    return Response(body, media_type=telemetry.CONTENT_TYPE)


# --- GET /v1/scans/{scan_id} ----------------------------------------------------------------------
@router.get("/v1/scans/{scan_id}", summary="A scan's state and verdict", response_model=None,
            responses={200: {"model": ScanView, "description": "the scan's state, and its verdict once done"},
                       **errors(400, 401, 404, 429, 500, 503)})
async def get_scan(
    request: Request,
    scan_id: str = Path(description="the id a POST /v1/scans answered"),
    wait: float | None = Query(None, ge=0, allow_inf_nan=False,
                               description="long-poll up to this many seconds for the verdict (max 30)"),
    tenant: str = Depends(require_tenant),
) -> dict:
    request.state.scan_id = scan_id if schemas.is_scan_id(scan_id) else None  # log only well-formed ids
    state = request.app.state
    return await wait_for_scan(state.deps.verdicts, state.listener, tenant, scan_id, wait or 0.0,
                               objects=state.deps.objects, reviews=getattr(state, "reviews", None))


# --- probes ---------------------------------------------------------------------------------------
@router.get("/healthz", summary="Liveness: the process answers", response_model=None,
            responses={200: {"model": Alive, "description": "up"}})
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: Redis and S3 answer", response_model=None,
            responses={200: {"model": Ready, "description": "ready"},
                       503: {"model": NotReady, "headers": errors(503)[503]["headers"],
                             "description": "`unavailable`: Redis or S3 does not answer (`checks` says which)"}})
async def readyz(request: Request):
    deps = request.app.state.deps
    checks = {"redis": await _probe(deps.verdicts.ping), "s3": await _probe(deps.objects.ping)}
    if all(v == "ok" for v in checks.values()):
        return {"status": "ready", "checks": checks}
    failed = ", ".join(name for name, v in checks.items() if v != "ok")
    return error_response(unavailable(f"not reachable: {failed}"), extra={"checks": checks})


async def _probe(ping) -> str:
    try:
        await run_in_threadpool(ping)
    except TenderscanError as exc:
        return f"unavailable: {type(exc).__name__}"
    return "ok"
