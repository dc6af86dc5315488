"""Business-hours arithmetic (`traza.rules.hours`) with explicit, time-zone-aware instants."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import holidays
import pytest

from traza.rules.hours import BusinessHours
from traza.rules.schema import Hours

MADRID = ZoneInfo("Europe/Madrid")
MEXICO = ZoneInfo("America/Mexico_City")
SPLIT = ["09:00-14:00", "16:00-19:00"]


@pytest.fixture(autouse=True)
def clean_db() -> None:
    """Plain functions: no database (overrides the conftest fixture of the same name)."""


def business_hours(
    weekly: dict[str, list[str]], tz: str = "Europe/Madrid", **extra: Any
) -> BusinessHours:
    return BusinessHours(Hours.model_validate({"timezone": tz, "weekly": weekly, **extra}))


def madrid(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    """Wall-clock time in Madrid (fold=0: the first of a repeated hour)."""
    return datetime(y, mo, d, h, mi, s, tzinfo=MADRID)


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=UTC)


def split_week(**extra: Any) -> BusinessHours:
    """Monday to Friday 09:00-14:00 and 16:00-19:00 in Madrid; closed on weekends."""
    return business_hours(dict.fromkeys(("mon", "tue", "wed", "thu", "fri"), SPLIT), **extra)


# --- split shifts -----------------------------------------------------------------------

# 2026-03-02 is a Monday; Madrid is on CET (UTC+1) until 2026-03-29.
MONDAY: tuple[int, int, int] = (2026, 3, 2)


def test_calendar_assumptions() -> None:
    assert date(*MONDAY).strftime("%a") == "Mon"
    assert madrid(*MONDAY, 10).utcoffset() == timedelta(hours=1)
    assert date(2026, 3, 6).strftime("%a") == "Fri"
    assert date(2026, 12, 25).strftime("%a") == "Fri"
    assert date(2026, 1, 6).strftime("%a") == "Tue"
    assert date(2026, 4, 2).strftime("%a") == "Thu"
    assert date(2026, 3, 29).strftime("%a") == "Sun"


@pytest.mark.parametrize(
    ("hour", "minute", "open_"),
    [
        (8, 59, False),
        (9, 0, True),
        (10, 0, True),
        (13, 59, True),
        (14, 0, False),  # the end of a range is not open
        (15, 0, False),  # the lunch gap
        (16, 0, True),
        (18, 59, True),
        (19, 0, False),
        (23, 0, False),
    ],
)
def test_split_shift_is_open(hour: int, minute: int, open_: bool) -> None:
    assert split_week().is_open(madrid(*MONDAY, hour, minute)) is open_


def test_is_open_takes_any_time_zone_for_the_instant() -> None:
    bh = split_week()
    assert bh.is_open(utc(*MONDAY, 9)) is True  # 10:00 in Madrid
    assert bh.is_open(utc(*MONDAY, 14)) is False  # 15:00 in Madrid


def test_next_open_in_the_lunch_gap_is_the_afternoon_shift() -> None:
    assert split_week().next_open(madrid(*MONDAY, 15)) == madrid(*MONDAY, 16)
    assert split_week().next_open(madrid(*MONDAY, 15)) == utc(*MONDAY, 15)


def test_next_open_when_open_is_the_instant_itself() -> None:
    at = madrid(*MONDAY, 10, 17)
    assert split_week().next_open(at) == at


def test_next_open_before_opening_and_after_closing() -> None:
    bh = split_week()
    assert bh.next_open(madrid(*MONDAY, 7)) == madrid(*MONDAY, 9)
    assert bh.next_open(madrid(*MONDAY, 19)) == madrid(2026, 3, 3, 9)
    assert bh.next_open(madrid(*MONDAY, 23, 30)) == madrid(2026, 3, 3, 9)


def test_add_skips_the_lunch_gap() -> None:
    assert split_week().add(madrid(*MONDAY, 13, 30), timedelta(hours=1)) == madrid(*MONDAY, 16, 30)


def test_add_inside_one_range() -> None:
    assert split_week().add(madrid(*MONDAY, 9), timedelta(minutes=45)) == madrid(*MONDAY, 9, 45)


def test_add_ending_exactly_at_closing_time() -> None:
    assert split_week().add(madrid(*MONDAY, 13), timedelta(hours=1)) == madrid(*MONDAY, 14)


def test_add_from_a_closed_instant_starts_counting_at_opening() -> None:
    assert split_week().add(madrid(*MONDAY, 14, 30), timedelta(minutes=30)) == madrid(
        *MONDAY, 16, 30
    )
    assert split_week().add(madrid(*MONDAY, 6), timedelta(hours=6)) == madrid(*MONDAY, 17)


def test_add_a_full_day_of_open_time_spans_several_days() -> None:
    # 8 h of open time a day: 24 h from Monday 09:00 is Wednesday's close (19:00).
    assert split_week().add(madrid(*MONDAY, 9), timedelta(hours=24)) == madrid(2026, 3, 4, 19)


# --- weekends and holidays --------------------------------------------------------------


def test_deadline_crossing_a_weekend() -> None:
    friday = madrid(2026, 3, 6, 18, 30)
    assert split_week().add(friday, timedelta(hours=1)) == madrid(2026, 3, 9, 9, 30)


def test_closed_all_weekend() -> None:
    bh = split_week()
    assert bh.is_open(madrid(2026, 3, 7, 11)) is False
    assert bh.is_open(madrid(2026, 3, 8, 17)) is False
    assert bh.next_open(madrid(2026, 3, 7, 11)) == madrid(2026, 3, 9, 9)


def test_national_holiday_christmas() -> None:
    bh = split_week(holidays={"country": "ES"})
    assert bh.is_holiday(date(2026, 12, 25)) is True
    assert bh.is_open(madrid(2026, 12, 25, 10)) is False
    # Friday 25 is a holiday, then the weekend: Monday 28 at 09:00.
    assert bh.next_open(madrid(2026, 12, 25, 10)) == madrid(2026, 12, 28, 9)
    assert bh.is_holiday(date(2026, 12, 24)) is False
    assert bh.is_open(madrid(2026, 12, 24, 10)) is True
    # Thursday 18:30 + 1 h: 30 min on Thursday, 30 min on Monday.
    assert bh.add(madrid(2026, 12, 24, 18, 30), timedelta(hours=1)) == madrid(2026, 12, 28, 9, 30)


def test_national_holiday_epiphany() -> None:
    bh = split_week(holidays={"country": "ES"})
    assert bh.is_holiday(date(2026, 1, 6)) is True
    assert bh.is_open(madrid(2026, 1, 6, 10)) is False
    assert bh.is_open(madrid(2026, 1, 5, 10)) is True
    assert bh.next_open(madrid(2026, 1, 6, 10)) == madrid(2026, 1, 7, 9)
    assert bh.add(madrid(2026, 1, 5, 18, 30), timedelta(hours=1)) == madrid(2026, 1, 7, 9, 30)
    assert bh.open_time_between(madrid(2026, 1, 6), madrid(2026, 1, 7)) == timedelta()


def test_without_a_country_public_holidays_are_working_days() -> None:
    bh = split_week()
    assert bh.is_holiday(date(2026, 12, 25)) is False
    assert bh.is_open(madrid(2026, 12, 25, 10)) is True


def test_explicit_holiday_dates() -> None:
    bh = split_week(holidays={"dates": ["2026-03-10"]})  # a Tuesday
    assert bh.is_holiday(date(2026, 3, 10)) is True
    assert bh.is_holiday(date(2026, 3, 11)) is False
    assert bh.is_open(madrid(2026, 3, 10, 10)) is False
    assert bh.next_open(madrid(2026, 3, 9, 19, 30)) == madrid(2026, 3, 11, 9)


def test_explicit_dates_add_to_the_country_holidays() -> None:
    bh = split_week(holidays={"country": "ES", "dates": ["2026-12-24"]})
    assert bh.is_holiday(date(2026, 12, 24)) is True
    assert bh.is_holiday(date(2026, 12, 25)) is True
    assert bh.next_open(madrid(2026, 12, 23, 19, 30)) == madrid(2026, 12, 28, 9)


def test_subdivision_holiday() -> None:
    # Maundy Thursday (2026-04-02) is a holiday in Madrid (ES-MD) but not nationally.
    assert date(2026, 4, 2) in holidays.country_holidays("ES", subdiv="MD", years=2026)
    assert date(2026, 4, 2) not in holidays.country_holidays("ES", years=2026)
    national = split_week(holidays={"country": "ES"})
    regional = split_week(holidays={"country": "ES", "subdivision": "MD"})
    thursday = madrid(2026, 4, 2, 10)
    assert national.is_holiday(thursday.date()) is False
    assert national.is_open(thursday) is True
    assert regional.is_holiday(thursday.date()) is True
    assert regional.is_open(thursday) is False
    # Friday 3 (Good Friday, national) and the weekend are closed too: Monday 6 at 09:00,
    # which is already summer time (UTC+2).
    opens = regional.next_open(thursday)
    assert opens == madrid(2026, 4, 6, 9)
    assert opens == utc(2026, 4, 6, 7)


# --- time zones -------------------------------------------------------------------------


def test_time_zone_boundary_in_mexico_city() -> None:
    bh = business_hours(
        {d: ["09:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")}, tz="America/Mexico_City"
    )
    at = utc(2026, 3, 3, 2)  # Monday 2026-03-02 20:00 in Mexico City (UTC-6)
    assert at.astimezone(MEXICO) == datetime(2026, 3, 2, 20, tzinfo=MEXICO)
    assert bh.is_open(at) is False
    assert bh.next_open(at) == utc(2026, 3, 3, 15)
    assert bh.is_open(utc(2026, 3, 3, 15)) is True
    assert bh.is_open(utc(2026, 3, 3, 23, 59)) is True  # 17:59 local
    assert bh.is_open(utc(2026, 3, 4, 0)) is False  # 18:00 local
    # In UTC it is already Tuesday at 02:00, but Monday's local hours are what count:
    # a Monday-only team is closed and opens the following Monday.
    monday_only = business_hours({"mon": ["09:00-18:00"]}, tz="America/Mexico_City")
    assert monday_only.is_open(utc(2026, 3, 2, 23)) is True  # Monday 17:00 local
    assert monday_only.next_open(at) == utc(2026, 3, 9, 15)


def test_results_are_the_same_instants_whatever_the_input_zone() -> None:
    bh = split_week()
    local = madrid(*MONDAY, 13, 30)
    assert bh.add(local, timedelta(hours=1)) == bh.add(local.astimezone(UTC), timedelta(hours=1))
    assert bh.next_open(madrid(*MONDAY, 15)) == bh.next_open(utc(*MONDAY, 14))


# --- daylight saving time ---------------------------------------------------------------


def test_dst_spring_forward_offsets() -> None:
    # Europe/Madrid on 2026-03-29: 02:00 CET becomes 03:00 CEST.
    assert madrid(2026, 3, 27, 9).utcoffset() == timedelta(hours=1)
    assert madrid(2026, 3, 30, 9).utcoffset() == timedelta(hours=2)
    bh = business_hours({d: ["09:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")})
    assert bh.next_open(utc(2026, 3, 27, 7)) == utc(2026, 3, 27, 8)  # 09:00 CET
    assert bh.next_open(utc(2026, 3, 28, 12)) == utc(2026, 3, 30, 7)  # 09:00 CEST
    assert bh.is_open(utc(2026, 3, 30, 7)) is True
    assert bh.is_open(utc(2026, 3, 30, 6, 59)) is False
    assert bh.is_open(utc(2026, 3, 30, 15, 59)) is True  # 17:59 CEST
    assert bh.is_open(utc(2026, 3, 30, 16)) is False  # 18:00 CEST
    # Friday 17:30 CET (16:30Z) + 1 h: 30 min on Friday, then Monday 09:30 CEST (07:30Z).
    assert bh.add(utc(2026, 3, 27, 16, 30), timedelta(hours=1)) == utc(2026, 3, 30, 7, 30)
    # Friday and Monday are both 9 h of open time although the offset changed between them.
    assert bh.open_time_between(utc(2026, 3, 27), utc(2026, 3, 31)) == timedelta(hours=18)


def test_dst_day_is_23_hours_long() -> None:
    bh = business_hours({"sun": ["00:00-24:00"]})
    start, end = madrid(2026, 3, 29), madrid(2026, 3, 30)
    assert start.utcoffset() == timedelta(hours=1)
    assert end.utcoffset() == timedelta(hours=2)
    assert bh.open_time_between(start, end) == timedelta(hours=23)
    assert bh.next_open(madrid(2026, 3, 28, 12)) == utc(2026, 3, 28, 23)
    # 01:30 CET is 00:30Z; 2 h of open time later is 02:30Z, i.e. 04:30 CEST.
    assert bh.add(utc(2026, 3, 29, 0, 30), timedelta(hours=2)) == utc(2026, 3, 29, 2, 30)


def test_dst_add_from_a_local_start_counts_real_time() -> None:
    # Same instant as above given in Madrid time: the answer must not change. Adding the
    # amount to the local wall clock would give 03:30 CEST (01:30Z), an hour early.
    bh = business_hours({"sun": ["00:00-24:00"]})
    start = madrid(2026, 3, 29, 1, 30)
    assert start == utc(2026, 3, 29, 0, 30)
    assert bh.add(start, timedelta(hours=2)) == utc(2026, 3, 29, 2, 30)


def test_dst_range_across_the_missing_hour() -> None:
    # 01:00-04:00 on the spring-forward day lasts 2 h (01:00 CET = 00:00Z to 04:00 CEST = 02:00Z).
    bh = business_hours({"sun": ["01:00-04:00"]})
    assert bh.next_open(madrid(2026, 3, 29)) == utc(2026, 3, 29, 0)
    assert bh.open_time_between(madrid(2026, 3, 29), madrid(2026, 3, 30)) == timedelta(hours=2)
    assert bh.add(utc(2026, 3, 29, 0), timedelta(hours=2)) == utc(2026, 3, 29, 2)
    assert bh.is_open(utc(2026, 3, 29, 1, 30)) is True  # 03:30 CEST
    assert bh.is_open(utc(2026, 3, 29, 2)) is False  # 04:00 CEST


def test_dst_fall_back_day_is_25_hours_long() -> None:
    bh = business_hours({"sun": ["00:00-24:00"]})
    start, end = madrid(2026, 10, 25), madrid(2026, 10, 26)
    assert start.utcoffset() == timedelta(hours=2)
    assert end.utcoffset() == timedelta(hours=1)
    assert bh.open_time_between(start, end) == timedelta(hours=25)


# --- 24:00 and open time ----------------------------------------------------------------


def test_range_ending_at_midnight() -> None:
    bh = business_hours({"sat": ["20:00-24:00"], "sun": ["00:00-02:00"]})
    assert bh.is_open(madrid(2026, 3, 7, 23, 59)) is True
    assert bh.is_open(madrid(2026, 3, 8, 0)) is True
    assert bh.is_open(madrid(2026, 3, 8, 2)) is False
    # Saturday's 24:00 and Sunday's 00:00 are the same instant: no gap.
    assert bh.add(madrid(2026, 3, 7, 23, 30), timedelta(hours=1)) == madrid(2026, 3, 8, 0, 30)
    assert bh.open_time_between(madrid(2026, 3, 7), madrid(2026, 3, 9)) == timedelta(hours=6)


def test_range_ending_at_midnight_alone() -> None:
    bh = business_hours({"sat": ["20:00-24:00"]})
    assert bh.is_open(madrid(2026, 3, 7, 23, 59, 59)) is True
    assert bh.is_open(madrid(2026, 3, 8, 0)) is False
    assert bh.next_open(madrid(2026, 3, 8, 0)) == madrid(2026, 3, 14, 20)
    assert bh.add(madrid(2026, 3, 7, 23), timedelta(hours=2)) == madrid(2026, 3, 14, 21)


def test_whole_day_open() -> None:
    bh = business_hours({"mon": ["00:00-24:00"]})
    assert bh.open_time_between(madrid(*MONDAY), madrid(2026, 3, 3)) == timedelta(hours=24)
    assert bh.is_open(madrid(*MONDAY, 0)) is True
    assert bh.is_open(madrid(*MONDAY, 23, 59)) is True


@pytest.mark.parametrize(
    ("a", "b", "hours"),
    [
        (madrid(*MONDAY, 8), madrid(*MONDAY, 20), 8),
        (madrid(*MONDAY, 10), madrid(*MONDAY, 17), 5),  # 4 h + 1 h
        (madrid(*MONDAY, 10), madrid(2026, 3, 3, 10), 8),  # 4 + 3 + 1 on Tuesday
        (madrid(*MONDAY, 14), madrid(*MONDAY, 16), 0),  # the lunch gap
        (madrid(2026, 3, 6, 18), madrid(2026, 3, 9, 10), 2),  # over the weekend
        (madrid(*MONDAY), madrid(2026, 3, 9), 40),  # a whole week
    ],
)
def test_open_time_between(a: datetime, b: datetime, hours: int) -> None:
    assert split_week().open_time_between(a, b) == timedelta(hours=hours)


def test_open_time_between_an_empty_or_reversed_span() -> None:
    bh = split_week()
    at = madrid(*MONDAY, 10)
    assert bh.open_time_between(at, at) == timedelta()
    assert bh.open_time_between(at, madrid(*MONDAY, 9)) == timedelta()


def test_open_time_between_is_consistent_with_add() -> None:
    bh = split_week(holidays={"country": "ES", "subdivision": "MD"})
    start = madrid(2026, 3, 31, 17)
    due = bh.add(start, timedelta(hours=20))
    assert due is not None
    assert bh.open_time_between(start, due) == timedelta(hours=20)


def test_deadline_beyond_the_horizon_is_none() -> None:
    # One hour a week: 400 days hold fewer than 60 hours of open time.
    bh = business_hours({"mon": ["09:00-10:00"]})
    assert bh.add(madrid(*MONDAY, 9), timedelta(hours=100)) is None
    assert bh.add(madrid(*MONDAY, 9), timedelta(hours=50)) is not None


# --- no hours: always open ---------------------------------------------------------------


def test_no_hours_is_always_open() -> None:
    bh = BusinessHours(None)
    for at in (madrid(2026, 12, 25, 3), utc(2026, 3, 8, 23, 59), madrid(2026, 3, 29, 2, 30)):
        assert bh.is_open(at) is True
        assert bh.next_open(at) == at.astimezone(UTC)  # a time in the DST gap compares by UTC
    assert bh.is_holiday(date(2026, 12, 25)) is False
    start = utc(2026, 3, 6, 18, 30)
    assert bh.add(start, timedelta(hours=1)) == utc(2026, 3, 6, 19, 30)
    assert bh.add(start, timedelta(days=3)) == utc(2026, 3, 9, 18, 30)
    assert bh.open_time_between(start, utc(2026, 3, 9, 18, 30)) == timedelta(days=3)
