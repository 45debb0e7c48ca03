"""The HTTP routes: thin adapters from requests to `submit.Submitter` and `poll`.

    POST /v1/scans              an image (raw image/jpeg|image/png body, or multipart field `image`) -> 202
    GET  /v1/scans/{scan_id}    state and verdict; `?wait=S` long-polls up to 30 s for the verdict
    GET  /healthz               the process is up
    GET  /readyz                Redis and S3 answer (503 naming the one that does not)

The body is never read unboundedly: a Content-Length above the limit is refused before reading, and
the read itself stops at the limit (chunked uploads carry no Content-Length).

Content type: a raw body must declare image/jpeg or image/png, a form must be multipart/form-data;
anything else is 415. The format itself is judged by the bytes (imaging.inspect): a PNG declared as
image/jpeg is accepted as the PNG it is, and a text file declared as image/jpeg is 415.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from producer.auth import authenticate
from producer.errors import ApiError, bad_request, error_response, unavailable
from producer.poll import wait_for_scan
from producer.submit import Upload
from workers import contract
from workers.contract import Reason
from workers.errors import TenderscanError

router = APIRouter()
bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <API key>`")

RAW_TYPES = ("image/jpeg", "image/png")
MULTIPART_OVERHEAD = 64 * 1024  # boundaries, part headers and the two id fields on top of the image


def require_tenant(request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str:
    header = f"Bearer {creds.credentials}" if creds else None
    tenant = authenticate(header, request.app.state.settings.api_keys)
    request.state.tenant = tenant  # for the request log
    return tenant


# --- POST /v1/scans ------------------------------------------------------------------------------
_UPLOAD_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {"schema": {
                "type": "object", "required": ["image"],
                "properties": {"image": {"type": "string", "format": "binary"},
                               "store_id": {"type": "string"}, "terminal_id": {"type": "string"}}}},
        },
    },
}


@router.post("/v1/scans", status_code=202, openapi_extra=_UPLOAD_DOC, summary="Submit a scan")
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
    limit = settings.max_body_bytes
    declared = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if declared == "multipart/form-data":
        data, form_ids = await _read_multipart(request, limit)
        store_id = store_id or form_ids.get("store_id")
        terminal_id = terminal_id or form_ids.get("terminal_id")
    elif declared in RAW_TYPES:
        _check_content_length(request, limit)
        data = b"".join([chunk async for chunk in _capped(request, limit)])
    else:
        raise ApiError(415, Reason.UNSUPPORTED_FORMAT,
                       "send a raw image/jpeg or image/png body, or multipart/form-data with an `image` field")

    upload = Upload(tenant=tenant, store_id=store_id or "", terminal_id=terminal_id or "", data=data,
                    idempotency_key=idempotency_key, deadline_s=deadline_s)
    accepted = await run_in_threadpool(request.app.state.submitter.accept, upload)
    request.state.scan_id = accepted.scan_id
    poll_url = f"{settings.public_url}/v1/scans/{accepted.scan_id}"
    response.headers["Location"] = poll_url
    if accepted.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return {"scan_id": accepted.scan_id, "status": accepted.status, "poll_url": poll_url}


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


# --- GET /v1/scans/{scan_id} ----------------------------------------------------------------------
@router.get("/v1/scans/{scan_id}", summary="A scan's state and verdict")
async def get_scan(
    request: Request,
    scan_id: str = Path(description="the id a POST /v1/scans answered"),
    wait: float | None = Query(None, ge=0, allow_inf_nan=False,
                               description="long-poll up to this many seconds for the verdict (max 30)"),
    tenant: str = Depends(require_tenant),
) -> dict:
    request.state.scan_id = scan_id if contract.is_scan_id(scan_id) else None  # log only well-formed ids
    state = request.app.state
    return await wait_for_scan(state.deps.verdicts, state.listener, tenant, scan_id, wait or 0.0,
                               objects=state.deps.objects)


# --- probes ---------------------------------------------------------------------------------------
@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: Redis and S3 answer")
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
