"""`tenderscan settings`: what this process would run with, and `.env.example`, from the one declaration.

    tenderscan settings             every TENDERSCAN_* setting: the value this shell would give a
                                    service and where it comes from (environment, .env, default);
                                    secrets hidden. A bad value fails here, naming the variable.
    tenderscan settings --example   the text of .env.example, generated from workers/core/settings.py
                                    (tests/workers/core/test_settings.py checks the committed file)
"""

from __future__ import annotations

import argparse
import os
import sys

HEADER = """\
# Every variable tenderscan reads, with its default. Generated from workers/core/settings.py by
# `tenderscan settings --example > .env.example`; tests/workers/core/test_settings.py checks that they agree.
# Copy to .env and edit: the services read ./.env beneath the process environment (environment, then .env,
# then the default; an empty value counts as unset). `tenderscan settings` shows what a service would use.
"""
COMMENT_COLUMN = 55  # where a variable's comment starts, when the assignment leaves room


def client_variables() -> list[tuple[str, str, str]]:
    """(variable, example value, description) of what the client commands read; the services do not."""
    from producer.client import API_KEY_ENV, API_URL_ENV, DEFAULT_URL

    return [(API_URL_ENV, DEFAULT_URL, "the API's base URL"),
            (API_KEY_ENV, "", "the key clients send: a tenant's tsk_ key (`tenderscan tenant create`) "
                                       "or a bootstrap key")]


def register(subparsers) -> None:
    p = subparsers.add_parser("settings", help="show the settings a service would use here; print .env.example",
                              description="Every TENDERSCAN_* setting with the value a service started from this "
                              "shell would use and its source: the environment, then ./.env, then the default.")
    p.add_argument("--example", action="store_true",
                   help="print .env.example (every variable with its default), generated from the declaration")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    sys.stdout.write(env_example() if args.example else effective())
    return 0


def format_value(value: object) -> str:
    """A default as an environment variable spells it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict | tuple | list):
        return ",".join(str(v) for v in value)
    return str(value)


def _line(name: str, value: str, description: str) -> str:
    assignment = f"{name}={value}"
    if not description:
        return assignment
    return assignment + " " * max(COMMENT_COLUMN - len(assignment), 2) + "# " + description


def env_example() -> str:
    from workers.core.settings import declared

    lines = [HEADER]
    for d in declared():
        if d.section:
            lines.append(f"# --- {d.section}")
        lines.append(_line(d.env, d.example if d.example is not None else format_value(d.default), d.description))
    lines.append("# --- clients: `tenderscan submit` / `status`, from the environment (not read by the services)")
    lines += [_line(name, value, description) for name, value, description in client_variables()]
    return "\n".join(lines) + "\n"


def effective() -> str:
    from workers.core.settings import ENV_FILE, Settings, declared, read_env_file, values_from

    file_values = read_env_file(ENV_FILE)
    settings = Settings.from_env()  # raises SettingsError naming a bad variable
    chosen = values_from(os.environ, file_values)
    rows = []
    for d in declared():
        source = "default"
        if d.name in chosen:
            source = "environment" if chosen[d.name] == os.environ.get(d.env) else ENV_FILE
        value = "(hidden)" if d.secret and source != "default" else format_value(getattr(settings, d.name))
        rows.append((d.env, value, source))
    width = max(len(r[0]) for r in rows)
    out = [f"{name:<{width}}  {source:<11}  {value}" for name, value, source in rows]
    known = {d.env for d in declared()} | {name for name, _, _ in client_variables()}
    out += [f"{name:<{width}}  {'ignored':<11}  not a setting (in {ENV_FILE})" for name in sorted(file_values)
            if name not in known]
    return "\n".join(out) + "\n"
