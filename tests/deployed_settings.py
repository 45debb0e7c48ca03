"""A deployment's TENDERSCAN_* block (docker-compose.yml, the k8s ConfigMap) checked against the declaration.

    drift(block)   what disagrees with workers/core/settings.py: a variable that is not a setting (a
                   typo is silently ignored by the services), a value the settings refuse, and a value
                   that differs from its default where the declaration does not mark the setting
                   `per_deployment` (an address, a bucket, a key). Tuning a deployment on purpose
                   belongs on the service or Deployment that needs it, where the tests validate it
                   over the shared block; the shared block repeats the defaults, and this keeps it
                   from drifting when a default changes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from workers.core.errors import SettingsError
from workers.core.settings import PREFIX, Settings, declared

_COMPOSE_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def resolve_compose(value: object) -> str:
    """A compose value as the container sees it with nothing exported: `${VAR:-default}` -> default."""
    return _COMPOSE_VARIABLE.sub(lambda m: m.group(2) or "", str(value))


def drift(block: Mapping[str, object], allowed_extra: Iterable[str] = ()) -> list[str]:
    values = {name: str(value) for name, value in block.items()}
    known = {d.env for d in declared()}
    problems = [f"{name} is not a setting" for name in sorted(values)
                if name.startswith(PREFIX) and name not in known and name not in set(allowed_extra)]
    try:
        settings = Settings.from_env(values)
    except SettingsError as exc:
        return [*problems, str(exc)]
    defaults = Settings()
    for d in declared():
        if d.env in values and not d.per_deployment and getattr(settings, d.name) != getattr(defaults, d.name):
            problems.append(f"{d.env}={values[d.env]!r} differs from the default {getattr(defaults, d.name)!r}")
    return problems
