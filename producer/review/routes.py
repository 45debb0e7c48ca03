"""The review console's routes: a server-rendered page, its script, and a small JSON API (docs/REVIEW.md).

    GET  /review                               the console (the login form without a session)
    POST /review/login                         form field `key` -> session cookie (HttpOnly, SameSite=Strict)
    POST /review/logout
    GET  /review/static/{console.js|console.css}
    GET  /review/api/queue                     the oldest 200 scans awaiting review, oldest first, and
                                               `total`: how many wait in all
    POST /review/api/scans/{id}/claim          take the lease and get what to judge
    GET  /review/api/scans/{id}/image          the scan's image
    GET  /review/api/scans/{id}/canonical      the model's canonical view of the note (PNG)
    POST /review/api/scans/{id}/review         JSON {label, signs_seen, note}
    POST /review/api/scans/{id}/undo           within keys.REVIEW_UNDO_S of recording
    POST /review/api/scans/{id}/release        give the lease back without a review

Errors have the edge's envelope ({"error": {status, reason, detail}}, producer/errors.py); the console's own:
    401 unauthorized        no session (the page shows the login form instead)
    403 forbidden           a POST without `X-Tenderscan-Review: 1` (producer/review/access.py, CSRF)
    404 not_found           not awaiting review, not in the reviewer's tenants, or unknown: one answer
    409 claimed             another reviewer holds the scan (the detail names them)
    409 claim_lost          recording without holding the claim (it lapsed, or was never taken): reopen
    409 already_reviewed    a second review of one scan
    409 not_yours / undo_expired / already_undone    an undo by another reviewer, too late, or twice
    400 bad_request         a label, note or sign the contract does not allow
    503 unavailable         Redis or S3 failed; nothing was half-recorded (desk.record puts the scan back)

Nothing here is loaded from another origin (no CDN, no build step): the page works offline. The JSON
API is for the console and stays out of the public OpenAPI document (`include_in_schema=False`).
"""

from __future__ import annotations

import html
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from producer.errors import ApiError, bad_request, not_found
from producer.review import desk as d
from producer.review.access import (
    COOKIE,
    CSRF_HEADER,
    Reviewer,
    console_reviewer,
    end_session,
    require_reviewer,
    reviewer_for_key,
    start_session,
)

router = APIRouter(include_in_schema=False)
ReviewerDep = Annotated[Reviewer, Depends(require_reviewer)]  # 401 without a session, 403 without the header
STATIC = {"console.js": "text/javascript", "console.css": "text/css"}
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self'; frame-ancestors 'none'",
                "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def _asset(name: str) -> str:
    return resources.files("producer.review").joinpath("static", name).read_text(encoding="utf-8")


def _desk(request: Request) -> d.Desk:
    return request.app.state.review_desk


# --- the page ----------------------------------------------------------------------------------
@router.get("/review")
async def console(request: Request) -> HTMLResponse:
    reviewer = await run_in_threadpool(console_reviewer, request)
    if reviewer is None:
        return _login_page()
    page = _asset("console.html").replace("{{reviewer}}", html.escape(reviewer.id)).replace(
        "{{scope}}", "every tenant (auditor)" if reviewer.auditor else html.escape(reviewer.scope)).replace(
        "{{csrf_header}}", CSRF_HEADER)
    return HTMLResponse(page, headers=PAGE_HEADERS)


def _login_page(error: str = "", status: int = 200) -> HTMLResponse:
    page = _asset("login.html").replace("{{error}}", html.escape(error))
    return HTMLResponse(page, status_code=status, headers=PAGE_HEADERS)


@router.post("/review/login")
async def login(request: Request) -> Response:
    form = await request.form(max_files=0, max_fields=4)
    key = form.get("key")
    reviewer = reviewer_for_key(key if isinstance(key, str) else "", request.app.state.settings.reviewer_keys)
    if reviewer is None:
        return _login_page("unknown reviewer key", 401)
    settings = request.app.state.settings
    token = await run_in_threadpool(start_session, request.app.state.deps.verdicts.r, reviewer,
                                    settings.review_session_ttl_s)
    response = RedirectResponse("/review", status_code=303)
    response.set_cookie(COOKIE, token, max_age=settings.review_session_ttl_s, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https" or settings.public_url.startswith("https://"),
                        path="/review")
    return response


@router.post("/review/logout")
async def logout(request: Request) -> Response:
    await run_in_threadpool(end_session, request.app.state.deps.verdicts.r, request.cookies.get(COOKIE))
    response = RedirectResponse("/review", status_code=303)
    response.delete_cookie(COOKIE, path="/review")
    return response


@router.get("/review/static/{name}")
async def static(name: str) -> Response:
    if name not in STATIC:
        raise ApiError(404, "not_found", "no such file")
    return Response(_asset(name), media_type=STATIC[name], headers={"Cache-Control": "no-cache"})


# --- the JSON API ------------------------------------------------------------------------------
@router.get("/review/api/queue")
async def get_queue(request: Request, reviewer: ReviewerDep) -> dict:
    items = await run_in_threadpool(d.queue, _desk(request), reviewer)
    total = len(items) if len(items) < d.QUEUE_PAGE else await run_in_threadpool(d.queue_depth, _desk(request),
                                                                                 reviewer)
    return {"reviewer": reviewer.id, "auditor": reviewer.auditor, "items": items, "total": total}


@router.post("/review/api/scans/{scan_id}/claim")
async def claim(request: Request, scan_id: str, reviewer: ReviewerDep) -> dict:
    return await run_in_threadpool(d.open_scan, _desk(request), reviewer, scan_id)


@router.get("/review/api/scans/{scan_id}/image")
async def image(request: Request, scan_id: str, reviewer: ReviewerDep) -> Response:
    data, content_type = await run_in_threadpool(d.image_of, _desk(request), reviewer, scan_id)
    return Response(data, media_type=content_type, headers={"Cache-Control": "private, no-store"})


@router.get("/review/api/scans/{scan_id}/canonical")
async def canonical(request: Request, scan_id: str, reviewer: ReviewerDep) -> Response:
    data, _ = await run_in_threadpool(d.image_of, _desk(request), reviewer, scan_id)
    try:
        png = await run_in_threadpool(d.canonical_png, data)
    except ImportError:  # an API image without the model extra's scipy: the console shows the scan alone
        raise not_found() from None
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, no-store"})


@router.post("/review/api/scans/{scan_id}/review")
async def review(request: Request, scan_id: str, reviewer: ReviewerDep) -> dict:
    try:
        body = await request.json()
    except ValueError:
        raise bad_request("send JSON {label, signs_seen, note}") from None
    if not isinstance(body, dict):
        raise bad_request("send JSON {label, signs_seen, note}")
    return await run_in_threadpool(d.record, _desk(request), reviewer, scan_id, body)


@router.post("/review/api/scans/{scan_id}/undo")
async def undo(request: Request, scan_id: str, reviewer: ReviewerDep) -> dict:
    return await run_in_threadpool(d.undo, _desk(request), reviewer, scan_id)


@router.post("/review/api/scans/{scan_id}/release")
async def release(request: Request, scan_id: str, reviewer: ReviewerDep) -> JSONResponse:
    return JSONResponse(await run_in_threadpool(d.release, _desk(request), reviewer, scan_id))
