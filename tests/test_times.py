"""The one time parser: DAG params, CLI options and API queries read times the same way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from airloop.times import parse_time

NOON = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    ["2026-11-25T12:00:00Z", "2026-11-25T13:00:00+01:00", "2026-11-25T12:00:00", NOON.replace(tzinfo=None), NOON],
)
def test_a_time_is_read_as_an_aware_utc_datetime_and_one_without_an_offset_is_utc(value):
    moment = parse_time(value)

    assert moment == NOON and moment.utcoffset() == timedelta(0)


def test_a_datetime_with_an_offset_is_converted_to_utc():
    assert parse_time(datetime(2026, 11, 25, 13, 0, tzinfo=timezone(timedelta(hours=1)))).tzinfo == UTC


def test_strict_reads_rfc_3339_only_with_a_leap_second_as_59():
    assert parse_time("2026-11-25t12:00:60z", strict=True) == NOON.replace(second=59)
    assert parse_time("2026-11-25", "at") == datetime(2026, 11, 25, tzinfo=UTC)
    with pytest.raises(ValueError, match=r"at '2026-11-25' is not an RFC 3339 time"):
        parse_time("2026-11-25", "at", strict=True)


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01T00:00:00Z", "9999-12-31T23:59:59-23:59"])
def test_a_text_that_is_no_time_is_a_value_error_naming_what_and_the_text(text):
    with pytest.raises(ValueError, match=rf"window_end {text!r} is not an ISO timestamp such as"):
        parse_time(text, "window_end")
