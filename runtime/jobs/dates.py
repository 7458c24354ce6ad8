"""When a photo was taken: its EXIF DateTimeOriginal, else the file's modification time; and the date ranges
`--after` / `--before` ask for.

Dates are wall-clock times, as the camera's clock showed them (EXIF records no time zone), stored as seconds
since 1970-01-01 00:00 of that wall clock ("naive" seconds); a modification time is turned into this machine's
local wall clock first, so both kinds compare as a person reads them. Recorded at index time, after embedding
(`fill_in`): a file whose row has no date yet gets one at the next `index` without being embedded again.
"""

from __future__ import annotations

import calendar
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from edge_search.runtime.errors import UsageError
from edge_search.runtime.files import open_regular
from edge_search.runtime.jobs.chunked import store_in_chunks
from edge_search.runtime.model import video
from edge_search.runtime.model.preprocess import open_allowed

EXIF_IFD = 0x8769
DATE_TIME_ORIGINAL = 0x9003
CHUNK = 2000
_EXIF_DATE = re.compile(r"^\s*(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_ASKED = re.compile(r"^(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?$")


# A date outside [the first photograph, a day from now) is no date at all: a camera whose clock was never set, a
# file time from a restored archive (2300), an absurd EXIF value (9999:12:31). Such a photo is indexed with its date
# unknown; `--after` / `--before` leave it out, and the page says "date unknown".
EARLIEST = datetime(1826, 1, 1)
UNKNOWN = "unknown"


def plausible(moment: datetime) -> bool:
    """Whether a wall-clock time can be when a photo was taken (a day of slack for time zones)."""
    return EARLIEST <= moment < datetime.now() + timedelta(days=1)


def naive_seconds(moment: datetime) -> float:
    """Seconds since 1970-01-01 of a wall-clock time (no time zone applied)."""
    return float(calendar.timegm(moment.timetuple()))


def wall_clock(seconds: float) -> datetime:
    """The wall-clock time `naive_seconds` made `seconds` from."""
    return datetime(1970, 1, 1) + timedelta(seconds=seconds)


def exif_taken(path: str | os.PathLike[str]) -> float | None:
    """The EXIF DateTimeOriginal of an image file in naive seconds, or None (no EXIF, no such tag, unreadable or
    impossible date). Reads the header only."""
    try:
        fd, _ = open_regular(path)  # a file swapped for a FIFO or a device since it was indexed is not read
        with os.fdopen(fd, "rb") as handle, open_allowed(handle) as image:
            value = image.getexif().get_ifd(EXIF_IFD).get(DATE_TIME_ORIGINAL)
    except Exception:  # noqa: BLE001  any file the header reader trips on simply has no EXIF date
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    match = _EXIF_DATE.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    try:
        year, month, day, hour, minute, second = (int(part) for part in match.groups())
        moment = datetime(year, month, day, hour, minute, second)
    except ValueError:  # 0000:00:00 00:00:00, as some cameras write when their clock was never set; 9999:99:99
        return None
    return naive_seconds(moment) if plausible(moment) else None


def video_taken(path: str | os.PathLike[str]) -> float | None:
    """When a video was recorded, as its container says (UTC, turned into this machine's wall clock), or None."""
    if not video.available():
        return None
    recorded = video.VideoReader.recorded_at(path)
    return None if recorded is None else naive_seconds(recorded.astimezone())


def taken(path: str | os.PathLike[str], mtime_ns: int) -> tuple[float | None, str]:
    """(naive seconds, "exif", "video" or "file"): when the photo or video at `path` was taken; (None, "unknown")
    where neither it nor its modification time holds a plausible date."""
    if video.is_video_name(os.fspath(path)):
        found, source = video_taken(path), "video"
    else:
        found, source = exif_taken(path), "exif"
    if found is not None:
        return found, source
    try:
        modified = datetime.fromtimestamp(mtime_ns / 1e9)
    except (OverflowError, OSError, ValueError):  # beyond what this platform's calendar holds
        return None, UNKNOWN
    return (naive_seconds(modified), "file") if plausible(modified) else (None, UNKNOWN)


def fill_in(
    undated: list[tuple[int, str, int]],
    store: Callable[[list[tuple[int, float | None, str]]], None],
    *,
    stop: threading.Event | None = None,
    unknown: list[str] | None = None,
) -> int:
    """Find and `store` (in chunks, each one transaction) the dates of `undated` (id, path, mtime_ns) rows; returns
    how many were stored. A date found unknown is stored as such (not looked for again until the file changes) and
    its path added to `unknown`. A file that vanished keeps none (the next run removes its row)."""

    def found() -> Iterator[tuple[int, float | None, str]]:
        for key, path, mtime_ns in undated:
            if stop is not None and stop.is_set():
                return
            if os.path.lexists(path):
                seconds, source = taken(path, mtime_ns)
                if source == UNKNOWN and unknown is not None:
                    unknown.append(path)
                yield key, seconds, source

    return store_in_chunks(found(), store, CHUNK)


@dataclass(frozen=True)
class DateRange:
    """Photos taken at or after `after` and before `before` (naive seconds; None: unbounded)."""

    after: float | None = None
    before: float | None = None

    @property
    def empty(self) -> bool:
        return self.after is None and self.before is None

    @classmethod
    def asked(
        cls, after: str | None = None, before: str | None = None, names: tuple[str, str] = ("--after", "--before")
    ) -> DateRange:
        """From `--after X` (taken from the start of X on) and `--before Y` (taken before Y starts), each a year
        (2024), a month (2024-06) or a day (2024-06-15): `--after 2024-06 --before 2024-09` is June to August."""
        start = _start_of(after, names[0]) if after else None
        end = _start_of(before, names[1]) if before else None
        if start is not None and end is not None and end <= start:
            raise UsageError(
                f"{names[1]} {before} is not later than {names[0]} {after}: no photo can be in that range."
            )
        return cls(start, end)

    def holds(self, seconds: float | None) -> bool:
        if seconds is None:
            return self.empty
        return (self.after is None or seconds >= self.after) and (self.before is None or seconds < self.before)


def _start_of(value: str, option: str) -> float:
    match = _ASKED.match(value.strip())
    if match is None:
        raise UsageError(f"{option} takes a year, a month or a day (2024, 2024-06 or 2024-06-15), not {value!r}.")
    year, month, day = (int(part) if part else 1 for part in match.groups())
    try:
        return naive_seconds(datetime(year, month, day))
    except ValueError:
        raise UsageError(f"{option} {value} is not a date in the calendar.") from None


def describe(seconds: float | None) -> str | None:
    """'2024-06-15 14:03' (wall clock), or None."""
    return None if seconds is None else wall_clock(seconds).strftime("%Y-%m-%d %H:%M")
