"""`tenderscan settings`: the values a service would use here and where each comes from."""

from __future__ import annotations

import pytest

from producer.cli import main
from producer.cli.commands.settings import effective, env_example
from workers.core.settings import env_names


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in env_names():
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def rows(text: str) -> dict[str, tuple[str, str]]:
    out = {}
    for line in text.splitlines():
        name, source, *value = line.split(maxsplit=2)
        out[name] = (source, value[0] if value else "")
    return out


def test_each_value_names_its_source_and_secrets_stay_hidden(in_tmp, monkeypatch):
    (in_tmp / ".env").write_text("TENDERSCAN_MAX_BATCH_SIZE=8\nTENDERSCAN_S3_SECRET_KEY=hunter2\n"
                                 "TENDERSCAN_LOG_LEVEL=debug\nTENDERSCAN_MAX_BATCH_SIZ=4\n")
    monkeypatch.setenv("TENDERSCAN_LOG_LEVEL", "warning")
    text = effective()
    table = rows(text)
    assert table["TENDERSCAN_MAX_BATCH_SIZE"] == (".env", "8")
    assert table["TENDERSCAN_LOG_LEVEL"] == ("environment", "WARNING")
    assert table["TENDERSCAN_MAX_SIDE"] == ("default", "8000")
    assert table["TENDERSCAN_S3_SECRET_KEY"] == (".env", "(hidden)") and "hunter2" not in text
    assert table["TENDERSCAN_MAX_BATCH_SIZ"][0] == "ignored"  # a typo in .env is pointed out
    assert set(env_names()) <= set(table)


def test_a_bad_value_fails_the_command_naming_the_variable(in_tmp, monkeypatch, capsys):
    monkeypatch.setenv("TENDERSCAN_MAX_BATCH_SIZE", "many")
    assert main(["settings"]) == 1
    assert "TENDERSCAN_MAX_BATCH_SIZE" in capsys.readouterr().err


def test_example_prints_every_variable_with_its_default(in_tmp, capsys):
    assert main(["settings", "--example"]) == 0
    out = capsys.readouterr().out
    assert out == env_example()
    assert "\nTENDERSCAN_MAX_BATCH_SIZE=32 " in out and "\nTENDERSCAN_TENANT_RATE_PER_S=500 " in out
    assert "\nTENDERSCAN_LOG_JSON=true " in out and "\nTENDERSCAN_MODEL= " in out  # no machine's path in it
    assert all(f"\n{name}=" in out for name in env_names())
