"""`tenderscan` as a newcomer meets it: every option explains itself, defaults that work, no noise."""

from __future__ import annotations

import argparse
import json
import logging

import httpx
import pytest

from producer import cli
from producer.client import TenderscanClient


def all_parsers(parser: argparse.ArgumentParser, path: str = "tenderscan"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from all_parsers(sub, f"{path} {name}")


def test_every_option_of_every_command_has_help():
    missing = [f"{path} {'/'.join(action.option_strings)}" for path, parser in all_parsers(cli.build_parser())
               for action in parser._actions
               if action.option_strings and action.help in (None, "") and action.dest != "help"]
    assert not missing, missing


def test_the_check_can_fail():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port")
    assert [a for a in parser._actions if a.option_strings and not a.help and a.dest != "help"]


def test_dataset_generate_has_a_documented_default_seed():
    args = cli.build_parser().parse_args(["dataset", "generate", "--out", "x", "--count", "2"])
    assert args.seed == 0


def test_the_cli_silences_httpx_request_lines(monkeypatch):
    monkeypatch.setattr(logging.getLogger("httpx"), "level", logging.NOTSET)
    assert cli.main(["scale-plan", "--peak-rate", "10", "--per-worker", "5"]) == 0
    assert logging.getLogger("httpx").getEffectiveLevel() >= logging.WARNING


def scripted_client(monkeypatch, handler):
    real = TenderscanClient.from_env

    def from_env(env=None, **kw):
        kw.pop("timeout", None)
        return real({"TENDERSCAN_API_KEY": "k"}, transport=httpx.MockTransport(handler), **kw)

    monkeypatch.setattr(TenderscanClient, "from_env", from_env)


def test_submit_quiet_prints_only_scan_ids(monkeypatch, tmp_path, capsys):
    ids = iter(["a" * 32, "b" * 32])
    scripted_client(monkeypatch, lambda req: httpx.Response(202, json={"scan_id": next(ids), "status": "queued"}))
    images = [tmp_path / "1.jpg", tmp_path / "2.jpg"]
    for path in images:
        path.write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 20)
    assert cli.main(["submit", *map(str, images), "--store", "s1", "--terminal", "t1", "-q"]) == 0
    assert capsys.readouterr().out.split() == ["a" * 32, "b" * 32]


def test_status_reads_the_url_and_key_from_the_environment(monkeypatch, capsys):
    monkeypatch.setenv("TENDERSCAN_API_KEY", "k-env")
    monkeypatch.setenv("TENDERSCAN_API_URL", "http://api.test")
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(200, json={"scan_id": "c" * 32, "status": "queued"})

    real = httpx.Client
    monkeypatch.setattr(httpx, "Client", lambda **kw: real(**dict(kw, transport=httpx.MockTransport(handler))))
    assert cli.main(["status", "c" * 32, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "queued"
    assert seen[0].headers["Authorization"] == "Bearer k-env" and seen[0].url.host == "api.test"


def test_status_without_a_key_says_which_variable(monkeypatch, capsys):
    monkeypatch.delenv("TENDERSCAN_API_KEY", raising=False)
    with pytest.raises(SystemExit, match="TENDERSCAN_API_KEY"):
        cli.main(["status", "c" * 32])


def test_tenant_warns_about_the_dev_hmac_secret_only_when_it_makes_a_key(monkeypatch, capsys):
    from producer.cli.commands import tenant

    monkeypatch.delenv("TENDERSCAN_KEY_HMAC_SECRET", raising=False)
    tenant._context()
    assert "warning" not in capsys.readouterr().err
    tenant._context(makes_keys=True)
    assert "TENDERSCAN_KEY_HMAC_SECRET" in capsys.readouterr().err
