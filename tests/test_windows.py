"""Swap windows (tools/core/windows.py): the forms a ring may write, and when each one is open."""

from __future__ import annotations

from datetime import datetime

import pytest

from tools.core.windows import DAYS, SwapWindow, any_open, parse_windows

# A week in June 2026, far from any daylight-saving change: Monday the 8th to Sunday the 14th.
MON, TUE, WED, THU, FRI, SAT, SUN = (datetime(2026, 6, day) for day in range(8, 15))


def at(day: datetime, hhmm: str) -> datetime:
    hours, minutes = hhmm.split(":")
    return day.replace(hour=int(hours), minute=int(minutes))


def test_the_week_starts_on_monday_like_datetime() -> None:
    assert [DAYS[d.weekday()] for d in (MON, TUE, WED, THU, FRI, SAT, SUN)] == list(DAYS)


@pytest.mark.parametrize(
    ("text", "days", "start", "end"),
    [
        ("12:00-13:00", set(range(7)), 720, 780),
        ("22:00-04:00", set(range(7)), 1320, 240),
        ("Mon-Fri 12:00-13:00", {0, 1, 2, 3, 4}, 720, 780),
        ("Sat,Sun 00:00-24:00", {5, 6}, 0, 1440),
        ("Fri-Mon 08:30-09:15", {4, 5, 6, 0}, 510, 555),
        ("Sun-Sun 01:00-02:00", {6}, 60, 120),  # a one-day range
        ("mon,WED 23:59-24:00", {0, 2}, 1439, 1440),  # day names in any case
        ("Tue-Wed,Sat 00:00-00:01", {1, 2, 5}, 0, 1),  # ranges and single days mixed
        ("  22:00-04:00 ", set(range(7)), 1320, 240),  # surrounding blanks
    ],
)
def test_the_forms_a_ring_may_write(text: str, days: set[int], start: int, end: int) -> None:
    window = SwapWindow.parse(text)
    assert (set(window.days), window.start, window.end) == (days, start, end)
    assert window.text == text.strip()


def test_a_same_day_window_is_open_from_its_start_until_before_its_end() -> None:
    lunch = SwapWindow.parse("Mon-Fri 12:00-13:00")
    assert not lunch.contains(at(WED, "11:59"))
    assert lunch.contains(at(WED, "12:00"))
    assert lunch.contains(at(WED, "12:59").replace(second=59))
    assert not lunch.contains(at(WED, "13:00"))  # the end is exclusive
    assert not lunch.contains(at(SAT, "12:30"))
    assert lunch.contains(at(FRI, "12:30"))


def test_a_window_across_midnight_is_open_into_the_next_day() -> None:
    night = SwapWindow.parse("22:00-04:00")
    times = ("21:59", "22:00", "23:59", "00:00", "03:59", "04:00")
    assert [night.contains(at(TUE, t)) for t in times] == [False, True, True, True, True, False]
    assert night.contains(at(MON, "00:30"))  # the night from Sunday to Monday: every day opens one


def test_the_days_of_a_window_across_midnight_name_the_day_it_opens() -> None:
    friday_night = SwapWindow.parse("Fri 22:00-02:00")
    assert friday_night.contains(at(FRI, "22:00"))
    assert friday_night.contains(at(SAT, "01:59"))  # opened on Friday, still open on Saturday
    assert not friday_night.contains(at(SAT, "02:00"))
    assert not friday_night.contains(at(SAT, "22:30"))  # Saturday opens none
    assert not friday_night.contains(at(FRI, "01:00"))  # that is Thursday's night, which is not listed
    # Across the end of the week: opened Sunday, open early on Monday.
    sunday_night = SwapWindow.parse("Sun 23:00-01:00")
    assert sunday_night.contains(at(SUN, "23:30")) and sunday_night.contains(at(MON, "00:30"))
    assert not sunday_night.contains(at(SUN, "00:30"))


def test_a_day_range_may_wrap_around_the_week() -> None:
    long_weekend = SwapWindow.parse("Fri-Mon 10:00-11:00")
    week = (MON, TUE, WED, THU, FRI, SAT, SUN)
    open_on = [DAYS[d.weekday()] for d in week if long_weekend.contains(at(d, "10:30"))]
    assert open_on == ["Mon", "Fri", "Sat", "Sun"]


def test_24_00_is_the_end_of_the_day() -> None:
    weekend = SwapWindow.parse("Sat,Sun 00:00-24:00")
    assert weekend.contains(at(SAT, "00:00")) and weekend.contains(at(SUN, "23:59"))
    assert not weekend.contains(at(MON, "00:00")) and not weekend.contains(at(FRI, "23:59"))
    late = SwapWindow.parse("23:00-24:00")
    assert late.contains(at(TUE, "23:59")) and not late.contains(at(WED, "00:00"))


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("22:00", ["'22:00'", "[DAYS ]HH:MM-HH:MM"]),
        ("10-12", ["'10-12'", "expected"]),
        ("22:00 - 04:00", ["'22:00 - 04:00'", "expected"]),
        ("Sat, Sun 00:00-24:00", ["'Sat, Sun 00:00-24:00'", "expected"]),
        ("25:00-04:00", ["'25:00-04:00'", "25:00 is not a time of day (00:00 to 23:59)"]),
        ("24:00-04:00", ["'24:00-04:00'", "24:00 is not a time of day (00:00 to 23:59)"]),
        ("22:60-04:00", ["'22:60-04:00'", "22:60"]),
        ("22:00-24:30", ["'22:00-24:30'", "24:30 is not a time of day (00:00 to 24:00)"]),
        ("12:00-12:00", ["'12:00-12:00'", "never open"]),
        ("Mo-Fr 12:00-13:00", ["'Mo-Fr 12:00-13:00'", "'Mo' is not a day", "Mon, Tue"]),
        ("Mon- 12:00-13:00", ["'Mon- 12:00-13:00'", "'' is not a day"]),
        ("Sat,,Sun 12:00-13:00", ["'Sat,,Sun 12:00-13:00'", "is not a day"]),
        ("", ["''", "expected"]),
    ],
)
def test_errors_name_the_window_and_what_is_wrong(text: str, names: list[str]) -> None:
    with pytest.raises(ValueError, match="swap window") as info:
        SwapWindow.parse(text)
    for name in names:
        assert name in str(info.value), str(info.value)


def test_parse_windows_and_any_open() -> None:
    windows = parse_windows(["22:00-04:00", "Sat,Sun 00:00-24:00"])
    assert [w.text for w in windows] == ["22:00-04:00", "Sat,Sun 00:00-24:00"]
    assert any_open(windows, at(SAT, "12:00")) and any_open(windows, at(WED, "23:00"))
    assert not any_open(windows, at(WED, "12:00"))
    assert any_open((), at(WED, "12:00"))  # no window declared: always open
    with pytest.raises(ValueError, match="'8-9'"):
        parse_windows(["22:00-04:00", "8-9"])
