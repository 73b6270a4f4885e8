"""Swap windows: when a node may switch its model forward, in the node's local time.

    SwapWindow.parse("22:00-04:00")          # every night, across midnight
    SwapWindow.parse("Mon-Fri 12:00-13:00")  # the lunch break on working days
    SwapWindow.parse("Sat,Sun 00:00-24:00")  # the whole weekend

A ring may declare a list of these in ``edgeops.yaml`` (``rings.<ring>.swap_windows``); ``edgeops promote``
copies them into the ring's release file (``rollout.windows``) and the model-updater keeps a newer model
ready, downloaded and verified, until one of them is open. A window is ``[DAYS ]HH:MM-HH:MM``: days are
``Mon`` … ``Sun``, as a range (``Mon-Fri``, which may wrap: ``Fri-Mon``) or a comma list (``Sat,Sun``);
without days it is every day. The end is exclusive; ``24:00`` is the end of the day; an end before the start
crosses midnight, and the days name the day the window *opens* (``Fri 22:00-02:00`` is open until Saturday
02:00). The same text means the same thing on every node: each node reads it in its own local time (the pod's
``TZ``), which is what "the plant's night shift" means on a fleet spread over time zones.

Standard library only: the updater (edge) and the config schema (delivery) both parse windows with it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

__all__ = ["DAYS", "SwapWindow", "any_open", "parse_windows"]

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # datetime.weekday() order
_WINDOW = re.compile(
    r"^(?:(?P<days>[A-Za-z][A-Za-z,\-]*)\s+)?(?P<start>\d\d:\d\d)-(?P<end>\d\d:\d\d)$", re.ASCII
)
_FORM = "[DAYS ]HH:MM-HH:MM, e.g. '22:00-04:00' or 'Mon-Fri 12:00-13:00'"


def _minutes(text: str, window: str, *, end: bool) -> int:
    hours, minutes = int(text[:2]), int(text[3:])
    limit = 24 if end else 23
    if hours > limit or minutes > 59 or (hours == 24 and minutes != 0):
        last = "24:00" if end else "23:59"
        raise ValueError(f"swap window {window!r}: {text} is not a time of day (00:00 to {last})")
    return hours * 60 + minutes


def _day(name: str, window: str) -> int:
    for index, day in enumerate(DAYS):
        if name.lower() == day.lower():
            return index
    raise ValueError(f"swap window {window!r}: {name!r} is not a day ({', '.join(DAYS)})")


def _days(text: str | None, window: str) -> frozenset[int]:
    if text is None:
        return frozenset(range(7))
    days: set[int] = set()
    for part in text.split(","):
        if "-" in part:
            first, _, last = part.partition("-")
            start, stop = _day(first, window), _day(last, window)
            days.update((start + i) % 7 for i in range((stop - start) % 7 + 1))
        else:
            days.add(_day(part, window))
    return frozenset(days)


@dataclass(frozen=True)
class SwapWindow:
    """One window: the days it opens on (0 = Monday) and [start, end) in minutes after midnight."""

    text: str
    days: frozenset[int]
    start: int
    end: int

    @classmethod
    def parse(cls, text: str) -> SwapWindow:
        """The window of ``text``; ValueError naming the window and the expected form otherwise."""
        if not isinstance(text, str):
            raise ValueError(f"swap window {text!r}: expected text of the form {_FORM}")
        match = _WINDOW.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"swap window {text!r}: expected {_FORM}")
        start = _minutes(match["start"], text, end=False)
        end = _minutes(match["end"], text, end=True)
        if start == end:
            raise ValueError(f"swap window {text!r}: it opens and closes at {match['start']}: never open")
        return cls(text.strip(), _days(match["days"], text), start, end)

    def contains(self, moment: datetime) -> bool:
        """Whether the window is open at ``moment``, read as the node's local wall-clock time."""
        minute = moment.hour * 60 + moment.minute
        day = moment.weekday()
        if self.start < self.end:
            return day in self.days and self.start <= minute < self.end
        # Across midnight: open from `start` on an opening day, until `end` on the day after.
        opened_today = day in self.days and minute >= self.start
        return opened_today or ((day - 1) % 7 in self.days and minute < self.end)


def parse_windows(texts: Iterable[str]) -> tuple[SwapWindow, ...]:
    """Every window of ``texts``, or ValueError for the first that does not parse."""
    return tuple(SwapWindow.parse(text) for text in texts)


def any_open(windows: Iterable[SwapWindow], moment: datetime) -> bool:
    """True when no window is declared (always open) or one of them is open at ``moment``."""
    listed = list(windows)
    return not listed or any(w.contains(moment) for w in listed)
