"""`tenderscan webhook` on the real Redis: an operator's round trip, from add to enable."""

from __future__ import annotations

import json

import pytest

from producer import cli
from workers.core.verdict_store import redis_client
from workers.webhooks.outbox import Outbox


@pytest.fixture()
def env(clean_redis, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no developer .env
    monkeypatch.setenv("TENDERSCAN_REDIS_URL", clean_redis)
    return redis_client(clean_redis)


def run(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(["webhook", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_add_list_rotate_test_deliveries_enable(env, capsys):
    code, secret, err = run(capsys, "add", "acme", "https://pos.acme.example/hooks")
    assert code == 0 and secret.strip().startswith("whsec_") and "shown once" in err
    ep_id = err.split("endpoint ")[1].split()[0]

    code, out, _ = run(capsys, "list", "acme", "--json")
    (row,) = json.loads(out)
    assert row["id"] == ep_id and row["health"] == "ok" and row["signing_secrets"] == 1
    assert secret.strip() not in out  # a secret is shown once, never listed

    code, new_secret, _ = run(capsys, "rotate", "acme", ep_id)
    assert new_secret.strip() != secret.strip()
    assert json.loads(run(capsys, "list", "acme", "--json")[1])[0]["signing_secrets"] == 2  # the overlap

    code, out, _ = run(capsys, "test", "acme", ep_id)
    msg_id = json.loads(out)["msg_id"]
    (claim,) = Outbox(env).claim(now=10**10, limit=5)
    assert claim.msg_id == msg_id and json.loads(Outbox(env).message(msg_id)["body"])["type"] == "webhook.test"

    Outbox(env).finish(claim, "parked", {"at": "2026-12-02T00:00:00", "msg_id": msg_id, "attempt": 1,
                                         "outcome": "parked"})
    code, out, _ = run(capsys, "deliveries", "acme", ep_id, "--json")
    assert [r["outcome"] for r in json.loads(out)] == ["parked"]
    code, _, err = run(capsys, "enable", "acme", ep_id)
    assert code == 0 and "1 parked" in err and Outbox(env).pending() == 1


def test_unknown_endpoints_and_bad_urls_are_errors_not_silence(env, capsys):
    assert run(capsys, "test", "acme", "ep_nope")[0] == 1
    code, _, err = run(capsys, "add", "acme", "ftp://pos.acme.example/x")
    assert code == 1 and "http(s)" in err
