"""The OpenAPI document against the edge's real answers, its error table, and /docs with no network.

The TestClient talks to the app in-process: there is no network at all, so every asset /docs and
/redoc need must come from the app itself, and each one is fetched here.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import fields

import pytest
from PIL import Image

from producer import errors as e
from producer import openapi, uploads
from producer.openapi import (
    ERRORS,
    Alive,
    BatchResult,
    ErrorBody,
    NotReady,
    Ready,
    ScanAccepted,
    ScanView,
    UploadGrant,
)
from workers.core import clock
from workers.core.schemas import InputRef, ScanMessage, Timestamps, Verdict
from workers.core.settings import Settings

KEY = "key-acme"
AUTH = {"Authorization": f"Bearer {KEY}"}
ASSET = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|\burl:\s*["']([^"']+)["']""")


@pytest.fixture()
def settings(clean_redis) -> Settings:
    return Settings().with_(redis_url=clean_redis, api_keys={hashlib.sha256(KEY.encode()).hexdigest(): "acme"})


@pytest.fixture()
def spec(api) -> dict:
    return api.get("/openapi.json").json()


def png(side: int = 64) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (10, 20, 30)).save(buf, "PNG")
    return buf.getvalue()


# --- /docs and /redoc from the app alone ------------------------------------------------------------
@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_page_and_every_asset_it_names_come_from_the_app(api, page):
    resp = api.get(page)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    assert "http://" not in resp.text and "https://" not in resp.text, "a page that names another host"
    urls = {a or b for a, b in ASSET.findall(resp.text)}
    assert "/openapi.json" in urls and any(u.endswith(".js") for u in urls), urls
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), f"{page} loads {url} from elsewhere"
        asset = api.get(url)
        assert asset.status_code == 200 and asset.content, url
        for ref in re.findall(r"url\(\s*['\"]?([^'\")]+)", asset.text if url.endswith(".css") else ""):
            assert ref.startswith("data:") or api.get(ref).status_code == 200, f"{url} needs {ref}"


def test_the_docs_assets_name_no_cdn(api):
    page = api.get("/docs").text + api.get("/redoc").text
    for url in {a or b for a, b in ASSET.findall(page)} - {"/openapi.json"}:
        body = api.get(url).text if url.endswith((".js", ".css")) else ""
        assert not re.search(r"cdn\.jsdelivr|unpkg\.com|fonts\.googleapis|cdnjs", body), url
    assert '"validatorUrl": null' in page  # Swagger UI would otherwise ask validator.swagger.io


# --- every error in the schema, with its envelope ---------------------------------------------------
def edge_answers() -> set[tuple[int, str]]:
    """(status, reason) of every error the edge documents: producer/errors.py's docstring table and the
    reason constants the code raises with a fixed status."""
    table = {(int(s), r) for s, r in re.findall(r"^\s+(\d{3})\s+([a-z_]+)\s", e.__doc__ or "", re.M)}
    code = {(401, e.UNAUTHORIZED), (401, e.KEY_MALFORMED), (401, e.KEY_REVOKED), (404, e.NOT_FOUND),
            (400, e.BAD_REQUEST), (422, e.IDEMPOTENCY_KEY_REUSED), (429, e.RATE_LIMITED),
            (429, e.TOO_MANY_IN_FLIGHT), (500, e.INTERNAL_ERROR), (503, e.UNAVAILABLE),
            (409, uploads.UPLOAD_ALREADY_SUBMITTED), (422, uploads.UPLOAD_MISSING), (422, uploads.UPLOAD_EXPIRED)}
    code |= {(status, str(reason)) for reason, status in e.REJECTION_STATUS.items()}
    return table | code


def architecture_answers(repo_root) -> set[tuple[int, str]]:
    """The error rows (4xx, 5xx) of docs/ARCHITECTURE.md "The edge's answers"."""
    text = (repo_root / "docs" / "ARCHITECTURE.md").read_text().split("## The edge's answers")[1].split("\n## ")[0]
    out = set()
    for status, reasons in re.findall(r"^\| ([45]\d\d) \| ([^|]+)\|", text, re.M):
        out |= {(int(status), r) for r in re.findall(r"`([a-z_]+)`", reasons)}
    return out


def test_every_documented_error_is_in_the_table_the_schema_is_built_from(repo_root):
    documented = edge_answers() | architecture_answers(repo_root)
    assert architecture_answers(repo_root), "the ARCHITECTURE table was not found"
    in_schema = {(status, str(reason)) for status, reasons in ERRORS.items() for reason in reasons}
    assert documented <= in_schema, sorted(documented - in_schema)
    assert {s for s, _ in in_schema} <= {400, 401, 404, 408, 409, 413, 415, 422, 429, 500, 503}


def test_the_schema_lists_each_routes_errors_with_the_envelope(spec):
    expected = {
        ("/v1/scans", "post"): {400, 401, 408, 409, 413, 415, 422, 429, 503},
        ("/v1/uploads", "post"): {400, 401, 408, 413, 415, 429, 503},
        ("/v1/scans:batch", "post"): {400, 401, 408, 413, 415, 429, 503},
        ("/v1/scans/{scan_id}", "get"): {400, 401, 404, 429, 503},
        ("/readyz", "get"): {503},
    }
    for (path, method), statuses in expected.items():
        responses = spec["paths"][path][method]["responses"]
        assert statuses <= {int(s) for s in responses}, (path, sorted(responses))
        for status in statuses:
            schema = responses[str(status)]["content"]["application/json"]["schema"]["$ref"]
            assert schema.rsplit("/", 1)[1] in ("ErrorBody", "NotReady"), (path, status)
            for reason in ERRORS[status] if path != "/readyz" else ():
                assert f"`{reason}`" in responses[str(status)]["description"] or status in (409, 422), (path, reason)
    envelope = spec["components"]["schemas"]["ErrorBody"]
    assert envelope["required"] == ["error"]
    assert set(spec["components"]["schemas"]["ErrorDetail"]["required"]) == {"status", "reason", "detail"}
    assert "Retry-After" in spec["paths"]["/v1/scans"]["post"]["responses"]["503"]["headers"]
    assert "WWW-Authenticate" in spec["paths"]["/v1/scans"]["post"]["responses"]["401"]["headers"]


def test_no_route_documents_fastapis_422_which_the_edge_never_answers(spec):
    text = json.dumps(spec)
    assert "HTTPValidationError" not in text and "ValidationError" not in spec["components"]["schemas"]
    assert "422" not in spec["paths"]["/v1/scans/{scan_id}"]["get"]["responses"]


def test_every_route_has_typed_bodies_and_every_reference_resolves(spec):
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            ok = [s for s in op["responses"] if s.startswith("2")]
            assert ok and all(op["responses"][s]["content"]["application/json"]["schema"].get("$ref")
                              for s in ok), (path, method)
            for media, body in op.get("requestBody", {}).get("content", {}).items():
                assert body["schema"].get("$ref") or body["schema"].get("format") == "binary", (path, media)
    for ref in re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(spec)):
        assert ref in spec["components"]["schemas"], ref
    scan = spec["paths"]["/v1/scans"]["post"]["requestBody"]["content"]
    assert {"image/jpeg", "image/png", "multipart/form-data", "application/json"} == set(scan)


# --- the models describe what the routes really answer ----------------------------------------------
def test_answers_validate_against_their_documented_models(api, deps):
    assert Alive.model_validate(api.get("/healthz").json())
    assert Ready.model_validate(api.get("/readyz").json())

    resp = api.post("/v1/scans", params={"store_id": "s1", "terminal_id": "t1"}, content=png(),
                    headers={**AUTH, "Content-Type": "image/png"})
    accepted = ScanAccepted.model_validate(resp.json())
    view = api.get(f"/v1/scans/{accepted.scan_id}", headers=AUTH).json()
    assert ScanView.model_validate(view).verdict is None and "verdict" not in view

    m = ScanMessage.decode(deps.enqueuer.sent[0])
    deps.verdicts.save_verdict(Verdict(
        scan_id=m.scan_id, tenant=m.tenant, store_id=m.store_id, terminal_id=m.terminal_id, decision="genuine",
        input=InputRef(m.image_key, m.sha256, m.bytes, 64, 64),
        timestamps=Timestamps(submitted=m.submitted_at, completed=clock.utcnow()), confidence=0.97, p_counterfeit=0.03))
    done = api.get(f"/v1/scans/{accepted.scan_id}", headers=AUTH).json()
    assert ScanView.model_validate(done).verdict.decision == "genuine"
    assert set(done["verdict"]) == {f.name for f in fields(Verdict)}  # the schema's Verdict is the contract's

    batch = api.post("/v1/scans:batch", files=[("image", ("a.png", png(), "image/png")),
                                               ("image", ("b.txt", b"not an image", "image/png"))],
                     data={"store_id": "s1", "terminal_id": "t1"}, headers=AUTH).json()
    result = BatchResult.model_validate(batch)
    assert [type(i).__name__ for i in result.items] == ["BatchItemAccepted", "BatchItemRefused"]

    grant = api.post("/v1/uploads", json={"content_type": "image/jpeg"}, headers=AUTH)
    assert grant.status_code == 201 and UploadGrant.model_validate(grant.json())

    for resp in (api.get("/v1/scans/nope", headers=AUTH), api.get("/v1/scans/x"),
                 api.get("/v1/scans/x", params={"wait": "-1"}, headers=AUTH),
                 api.post("/v1/scans", content=b"x", headers={**AUTH, "Content-Type": "text/plain"})):
        body = ErrorBody.model_validate(resp.json())
        assert (body.error.status, body.error.reason) in {(s, str(r)) for s, rs in ERRORS.items() for r in rs}
        assert body.error.status == resp.status_code

    deps.objects.down = True
    assert NotReady.model_validate(api.get("/readyz").json()).error.reason == "unavailable"


def test_the_models_refuse_an_answer_that_drifted():
    with pytest.raises(ValueError):
        ScanAccepted.model_validate({"scan_id": "a", "status": "queued", "poll_url": "/x", "extra": 1})
    with pytest.raises(ValueError):
        ErrorBody.model_validate({"error": {"status": 400, "reason": "bad_request"}})
    assert openapi.errors(429)[429]["headers"]["Retry-After"]


def test_the_verdict_documents_every_reason_the_model_gives(spec):
    described = spec["components"]["schemas"]["ScanView"]["properties"]["verdict"]["description"]
    for reason in ("not_a_banknote", "note_incomplete", "multiple_notes", "uncertain", "unfamiliar_capture",
                   "not_sure_it_is_a_note"):
        assert f"`{reason}`" in described
