"""How long the disk under a station's log lasts: its free space, sampled while the station writes, and the days
left at the rate it falls.

A station on a live camera logs about 1 GB a day and keeps every verdict unless told otherwise (a quality record may
have to be kept for years); the disk holds that for months, not for ever. Without a forecast the first sign was the
full disk itself: verdicts held in memory, then lost, evidence no longer written. Measured on the whole disk, not on
the log alone: evidence, the system's own logs or another program fill it for the station just as well.
"""
from __future__ import annotations

import shutil
import threading
import time
from collections import deque
from pathlib import Path

WARN_DAYS = 14.0              # a forecast shorter than this is shown: time to move verdicts off, or to order a disk
MIN_FREE_BYTES = 1e9          # less free than this is shown whatever the rate (5% of a disk smaller than 20 GB);
MIN_FREE_SHARE = 0.05         # evidence stops short of it, so the log never starves for pictures
SAMPLE_S = 60.0               # the free space is read at most this often (a statvfs)
SPAN_S = 3600.0               # the rate is measured over at least this long (a burst of evidence is not a trend)
WINDOW_S = 6 * 3600.0         # and over at most this long (the last hours' rate, not the night's)


def min_free_bytes(folder: Path) -> float:
    return min(MIN_FREE_BYTES, MIN_FREE_SHARE * shutil.disk_usage(folder).total)


class DiskRoom:
    """The free space of the disk holding ``folder``, and when it runs out at the rate of the last hours."""

    def __init__(self, folder: Path, *, sample_s: float = SAMPLE_S, span_s: float = SPAN_S, window_s: float = WINDOW_S):
        self.folder, self.sample_s, self.span_s, self.window_s = Path(folder), sample_s, span_s, window_s
        self.min_free = min_free_bytes(self.folder)
        self._samples: deque[tuple[float, int]] = deque()  # (monotonic seconds, free bytes), oldest first
        self._lock = threading.Lock()  # sampled by the log's writer, read by the page and the metrics
        self.sample()

    def sample(self) -> None:
        """Read the free space, unless it was read less than ``sample_s`` ago."""
        now = time.monotonic()
        with self._lock:
            if self._samples and now - self._samples[-1][0] < self.sample_s:
                return
        try:
            free = shutil.disk_usage(self.folder).free
        except OSError:  # the folder went away (a log moved): the log's own handling says so
            return
        with self._lock:
            self._samples.append((now, free))
            while len(self._samples) > 2 and now - self._samples[1][0] >= self.window_s:
                self._samples.popleft()

    @property
    def free(self) -> int:
        with self._lock:
            return self._samples[-1][1] if self._samples else 0

    @property
    def days_left(self) -> float:
        """Days until the disk is full at the rate it lost room over the last hours; infinite while it does not."""
        with self._lock:
            if not self._samples:
                return float("inf")
            (began, first), (now, free) = self._samples[0], self._samples[-1]
        if now - began < self.span_s or free >= first:
            return float("inf")
        return free / ((first - free) / (now - began)) / 86400.0

    def shortage(self) -> str | None:
        """What to tell the operator while the disk is short of room, or None."""
        free, days = self.free, self.days_left
        if free >= self.min_free and days >= WARN_DAYS:
            return None
        rate = "" if days == float("inf") else f" and fills in about {_duration(days)} at this rate"
        return (f"the log's disk has {free / 1e9:.1f} GB free{rate}: move old verdicts and evidence off it, or start "
                "the station with --log-keep-days (and --save-max-gb)")


def _duration(days: float) -> str:
    return f"{days:.0f} days" if days >= 2 else f"{days * 24:.0f} hours" if days * 24 >= 2 else f"{days * 1440:.0f} min"
