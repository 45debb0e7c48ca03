"""The one time format in tenderscan's records: ISO-8601 UTC with microseconds and a Z.

    2026-11-28T10:00:00.123456Z     sortable as text, and its first 10 characters are the date
                                    partition (`dt=`) of the scan's S3 keys (keys.py)

Every time a message, a scan state or a verdict carries is written by `format_time` (or `utcnow`,
which is `format_time` of now) and read back by `parse_time`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_SHAPE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")


def format_time(dt: datetime) -> str:
    """An aware datetime (any zone) as the record format, in UTC."""
    return dt.astimezone(UTC).strftime(TIME_FORMAT)


def utcnow() -> str:
    """Now, as the record format."""
    return format_time(datetime.now(UTC))


def parse_time(value: str) -> datetime:
    """The inverse of format_time, an aware UTC datetime. A worker reads a time or two per scan: the
    exact shape format_time writes goes through fromisoformat (about 0.5 µs instead of 7 µs, same
    result); anything else is accepted or refused by strptime."""
    if _SHAPE.fullmatch(value):
        return datetime.fromisoformat(value)
    return datetime.strptime(value, TIME_FORMAT).replace(tzinfo=UTC)
