"""Opening hours for the gallery: `"10:00-18:00"`, or per weekday `"mon-fri 10:00-18:00, sat 12:00-16:00"`.

One parser, used by the `[gallery] hours` preset key (and through it the director). Entries are separated by commas;
each is an optional day or day range (`mon`, `sat-sun`, `fri-mon` wraps over the week's end) and a time range
`HH:MM-HH:MM`. An end before the start runs past midnight and belongs to the day it starts on (`fri 20:00-02:00` is
Friday evening into Saturday morning); `24:00` is the end of the day. An empty text means always open.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from .validation import ConfigError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # datetime.weekday() order
EXAMPLE = '"10:00-18:00" or "mon-fri 10:00-18:00, sat 12:00-16:00"'
_ENTRY = re.compile(r"(?:(?P<first>[a-z]{3})(?:-(?P<last>[a-z]{3}))?\s+)?"
                    r"(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})")


@dataclass(frozen=True)
class Opening:
    """Open on `days` (0 = Monday) from `start` to `end`, in minutes after midnight; end <= start runs overnight."""

    days: frozenset[int]
    start: int
    end: int

    def covers(self, when: datetime) -> bool:
        minute = when.hour * 60 + when.minute
        if self.start < self.end:
            return when.weekday() in self.days and self.start <= minute < self.end
        # overnight: the evening of an opening day, or the early morning after one
        yesterday = (when - timedelta(days=1)).weekday()
        return (when.weekday() in self.days and minute >= self.start) or (yesterday in self.days
                                                                             and minute < self.end)


@dataclass(frozen=True)
class Schedule:
    openings: tuple[Opening, ...] = ()  # none: always open

    def is_open(self, when: datetime) -> bool:
        return not self.openings or any(o.covers(when) for o in self.openings)


def parse_hours(text: str) -> Schedule:
    """The schedule of an `hours` text; ConfigError (one line, with an example) when it cannot be read."""
    if not isinstance(text, str):
        raise ConfigError(f"hours must be a string like {EXAMPLE}, got {text!r}")
    if not text.strip():
        return Schedule()
    openings = []
    for entry in text.lower().split(","):
        match = _ENTRY.fullmatch(entry.strip())
        if match is None:
            raise ConfigError(f"hours: cannot read {entry.strip()!r}; write e.g. {EXAMPLE}")
        days = _days(match["first"], match["last"], entry.strip())
        start, end = _minutes(match["start"], entry), _minutes(match["end"], entry)
        if start == end:
            raise ConfigError(f"hours: {entry.strip()!r} opens and closes at the same time; give a range")
        if start == 24 * 60:
            raise ConfigError(f"hours: {entry.strip()!r} starts at 24:00; start at 00:00 instead")
        openings.append(Opening(days, start, end))
    return Schedule(tuple(openings))


def _days(first: str | None, last: str | None, entry: str) -> frozenset[int]:
    if first is None:
        return frozenset(range(7))
    for name in (first, last):
        if name is not None and name not in DAYS:
            raise ConfigError(f"hours: unknown day {name!r} in {entry!r}; days are {', '.join(DAYS)}")
    a = DAYS.index(first)
    b = DAYS.index(last) if last is not None else a
    return frozenset((a + i) % 7 for i in range((b - a) % 7 + 1))


def _minutes(clock: str, entry: str) -> int:
    hours, minutes = (int(part) for part in clock.split(":"))
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise ConfigError(f"hours: {clock} in {entry.strip()!r} is not a time of day (00:00 to 24:00)")
    return hours * 60 + minutes
