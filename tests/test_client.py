"""TenderscanClient against a scripted transport: retries, backoff, Retry-After, errors, long-poll loop."""

from __future__ import annotations

import json

import httpx
import pytest

from producer import client as client_mod
from producer.client import ClientError, TenderscanClient, Unavailable, sniff_content_type

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 20
JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 20


def error(status: int, reason: str, headers: dict | None = None) -> httpx.Response:
    return httpx.Response(status, json={"error": {"status": status, "reason": reason, "detail": "x"}},
                          headers=headers)


class Script:
    """A transport answering from a list, recording every request."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture()
def sleeps(monkeypatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(client_mod.time, "sleep", slept.append)
    return slept


def make(script: Script, **kw) -> TenderscanClient:
    return TenderscanClient("http://api.test/", "k-1", transport=httpx.MockTransport(script), **kw)


def test_submit_sends_the_image_ids_key_and_an_idempotency_key(tmp_path):
    script = Script(httpx.Response(202, json={"scan_id": "a" * 32, "status": "queued", "poll_url": "/x"}))
    path = tmp_path / "bill.png"
    path.write_bytes(PNG)
    assert make(script).submit(path, "s1", "t1")["scan_id"] == "a" * 32
    [req] = script.requests
    assert req.method == "POST" and req.url.path == "/v1/scans"
    assert dict(req.url.params) == {"store_id": "s1", "terminal_id": "t1"}
    assert req.headers["Authorization"] == "Bearer k-1"
    assert req.headers["Content-Type"] == "image/png"
    assert len(req.headers["Idempotency-Key"]) == 32
    assert req.content == PNG


def test_retries_of_one_submit_reuse_its_idempotency_key(sleeps):
    script = Script(error(503, "unavailable", {"Retry-After": "2"}), httpx.ConnectError("refused"),
                    httpx.Response(202, json={"scan_id": "b" * 32}))
    assert make(script).submit(JPEG, "s", "t")["scan_id"] == "b" * 32
    keys = {r.headers["Idempotency-Key"] for r in script.requests}
    assert len(script.requests) == 3 and len(keys) == 1
    assert sleeps[0] >= 2.0  # Retry-After honoured
    assert len(sleeps) == 2


def test_backoff_grows_with_jitter_and_gives_up(sleeps):
    script = Script(*[error(503, "unavailable")] * 5)
    with pytest.raises(Unavailable) as info:
        make(script, retries=4, backoff_s=0.5, max_backoff_s=100).get("c" * 32)
    assert info.value.status == 503 and info.value.reason == "unavailable"
    assert len(script.requests) == 5 and len(sleeps) == 4
    assert all(0 <= s <= 0.5 * 2**i for i, s in enumerate(sleeps))


def test_connection_errors_exhausted_raise_unavailable(sleeps):
    script = Script(*[httpx.ConnectError("refused")] * 3)
    with pytest.raises(Unavailable) as info:
        make(script, retries=2).get("c" * 32)
    assert info.value.reason == "connection_error"


@pytest.mark.parametrize(("status", "reason"), [(401, "unauthorized"), (404, "not_found"),
                                                (413, "image_too_large"), (422, "idempotency_key_reused")])
def test_4xx_raise_client_error_at_once(sleeps, status, reason):
    script = Script(error(status, reason))
    with pytest.raises(ClientError) as info:
        make(script).submit(JPEG, "s", "t")
    assert (info.value.status, info.value.reason) == (status, reason)
    assert not isinstance(info.value, Unavailable)
    assert len(script.requests) == 1 and sleeps == []


def test_a_non_json_error_still_raises_client_error():
    with pytest.raises(ClientError) as info:
        make(Script(httpx.Response(400, text="<html>nope</html>"))).get("d" * 32)
    assert info.value.reason == "http_error"


def test_wait_loops_long_polls_until_done():
    queued = httpx.Response(200, json={"scan_id": "e" * 32, "status": "queued"})
    done = httpx.Response(200, json={"scan_id": "e" * 32, "status": "done", "verdict": {"decision": "genuine"}})
    script = Script(queued, queued, done)
    result = make(script).wait("e" * 32, timeout=100)
    assert result["verdict"]["decision"] == "genuine"
    waits = [float(r.url.params["wait"]) for r in script.requests]
    assert len(waits) == 3 and all(0 < w <= 30 for w in waits)


def test_wait_times_out():
    script = Script(*[httpx.Response(200, json={"scan_id": "f" * 32, "status": "queued"})] * 5)
    with pytest.raises(TimeoutError):
        make(script).wait("f" * 32, timeout=0)


def test_get_request_timeout_covers_the_long_poll():
    seen = {}

    def handler(request):
        seen.update(request.extensions["timeout"])
        return httpx.Response(200, content=json.dumps({"status": "queued"}))

    TenderscanClient("http://api.test", "k", timeout=5, transport=httpx.MockTransport(handler)).get("a" * 32, wait=20)
    assert seen["read"] >= 25


def test_sniff_content_type():
    assert sniff_content_type(PNG) == "image/png"
    assert sniff_content_type(JPEG) == "image/jpeg"


def test_ready():
    assert make(Script(httpx.Response(200, json={"status": "ready"}))).ready() is True
    assert make(Script(error(503, "unavailable"))).ready() is False
    assert make(Script(httpx.ConnectError("refused"))).ready() is False


# --- submit_many (POST /v1/scans:batch) ---------------------------------------------------------------
def _batch(*statuses: int) -> httpx.Response:
    items = [{"index": i, "status": s, **({"scan_id": f"{i:032x}"} if s == 202 else
                                          {"error": {"reason": "unavailable" if s == 503 else "image_empty"}})}
             for i, s in enumerate(statuses)]
    return httpx.Response(200, json={"accepted": statuses.count(202), "refused": 0, "items": items})


def test_submit_many_sends_every_image_as_an_image_part_with_one_key(sleeps):
    script = Script(_batch(202, 422))
    out = make(script).submit_many([JPEG, PNG], "s1", "t1")
    assert [o["status"] for o in out] == [202, 422] and [o["index"] for o in out] == [0, 1]
    [req] = script.requests
    assert req.url.path == "/v1/scans:batch" and dict(req.url.params) == {"store_id": "s1", "terminal_id": "t1"}
    assert req.headers["Content-Type"].startswith("multipart/form-data")
    assert req.content.count(b'name="image"') == 2 and len(req.headers["Idempotency-Key"]) == 32


def test_submit_many_retries_only_the_503_items(sleeps):
    script = Script(_batch(202, 503, 202), _batch(202))
    out = make(script).submit_many([JPEG, PNG, JPEG], "s1", "t1")
    assert [o["status"] for o in out] == [202, 202, 202] and [o["index"] for o in out] == [0, 1, 2]
    first, second = script.requests
    assert second.content.count(b'name="image"') == 1 and PNG in second.content
    assert first.headers["Idempotency-Key"] != second.headers["Idempotency-Key"] and len(sleeps) == 1


def test_from_env_reads_the_url_and_key_a_shell_exported():
    c = TenderscanClient.from_env({"TENDERSCAN_API_URL": "http://api.example:9000/", "TENDERSCAN_API_KEY": "k-env"})
    assert str(c.http.base_url) == "http://api.example:9000" and c.http.headers["Authorization"] == "Bearer k-env"
    c = TenderscanClient.from_env({"TENDERSCAN_API_KEY": "k-env"}, url="http://other:1", key="k-arg")
    assert str(c.http.base_url) == "http://other:1" and c.http.headers["Authorization"] == "Bearer k-arg"
    assert str(TenderscanClient.from_env({"TENDERSCAN_API_KEY": "k"}).http.base_url) == client_mod.DEFAULT_URL


def test_from_env_without_a_key_names_the_variable():
    with pytest.raises(client_mod.MissingApiKey, match="TENDERSCAN_API_KEY"):
        TenderscanClient.from_env({"TENDERSCAN_API_URL": "http://api.example:9000"})
