"""workers/core/clock.py: one time format for every record, read back exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from workers.core import clock


def test_format_time_is_utc_with_microseconds_and_sorts_as_text():
    paris = timezone(timedelta(hours=1))
    assert clock.format_time(datetime(2026, 11, 28, 11, 0, 0, 42, tzinfo=paris)) == "2026-11-28T10:00:00.000042Z"
    earlier = clock.utcnow()
    later = clock.format_time(clock.parse_time(earlier) + timedelta(microseconds=1))
    assert earlier < later  # text order is time order
    assert earlier[:10] == clock.parse_time(earlier).date().isoformat()  # the S3 partition's date


def test_parse_time_is_the_inverse_of_format_time():
    at = datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert clock.parse_time(clock.format_time(at)) == at
    now = clock.utcnow()
    assert clock.format_time(clock.parse_time(now)) == now


def test_parse_time_reads_utcnow_as_strptime_does():
    """parse_time's fast path (fromisoformat) gives exactly strptime's result; other shapes still go to strptime."""
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    for value in (clock.utcnow(), "2026-01-01T00:00:00.000000Z", "1999-12-31T23:59:59.999999Z"):
        assert clock.parse_time(value) == datetime.strptime(value, fmt).replace(tzinfo=UTC)
        assert clock.parse_time(value).utcoffset() == UTC.utcoffset(None)
    assert clock.parse_time("2026-01-01T00:00:00.5Z") == datetime(2026, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)
    for bad in ("2026-13-01T00:00:00.000000Z", "2026-02-30T00:00:00.000000Z", "2026-01-01T00:00:00Z", "x"):
        with pytest.raises(ValueError):
            clock.parse_time(bad)
