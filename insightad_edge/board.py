"""What the operator's page shows: the last judged part with its overlay, the last hour at a glance, and
whether a station's camera still delivers (a green verdict from before the camera was lost must not stand).

Fed by the server (each /infer) or by a station (each verdict, each source event); the page asks for it as
JSON. The overlay is drawn only when the page asks, and only for the newest part, so feeding costs next to
nothing.
"""
from __future__ import annotations

import base64
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Optional

import cv2
import numpy as np

from .errors import ImageError
from .monitor import DriftMonitor
from .overlay import render_overlay
from .preprocess import to_float

HOUR_S = 3600.0
MINUTE_S = 60.0  # the last hour is tallied per minute: 60 small counts, however fast the line
TALLIES = ("ok", "defect", "not_inspectable", "error", "skipped")
PAGE_SIDE = 640  # the overlay is sent at most this many pixels wide or high
SOURCE_STATES = {"opened": "live", "reopened": "live", "lost": "lost", "ended": "ended"}  # by event kind


class Board:
    """The newest verdict and the statuses of the last hour; thread-safe."""

    def __init__(self, monitor: DriftMonitor):
        self.monitor = monitor
        self._lock = threading.Lock()
        self._hour: deque[tuple[float, dict]] = deque()  # (minute's start, tallies) of the last hour
        self._last: Optional[dict] = None
        self._picture: Optional[tuple] = None
        self._overlay: Optional[tuple[int, str]] = None
        self._count = 0
        self._source: Optional[dict] = None  # a station's source: state, since (UTC), message; None when serving
        self._before_stall: Optional[dict] = None  # what the source was when the station's loop stalled
        self.trouble: Callable[[], list[str]] = list  # what a station's sinks cannot do now (the log, the evidence)
        self._warnings: deque[str] = deque(maxlen=3)  # what its source said it does not watch, newest last

    def add(self, *, time_utc: str, status: str, score: float | None, threshold: float, error: str | None,
            image: np.ndarray | None = None, anomaly_map: np.ndarray | None = None, skipped: int = 0) -> None:
        """One verdict; ``skipped``: the live frames a station dropped unjudged before it."""
        now = time.monotonic()
        with self._lock:
            self._count += 1
            while self._hour and self._hour[0][0] < now - HOUR_S:
                self._hour.popleft()
            self._count_in(now, status, skipped)
            self._last = {"id": self._count, "time": time_utc, "status": status, "score": score,
                          "threshold": threshold, "anomaly": None if score is None else status == "defect",
                          "error": error}
            self._picture = (self._count, image, anomaly_map, threshold)

    def seed(self, earlier: Iterable[tuple[float, str, int]]) -> None:
        """Verdicts of the last hour from before this board existed, as (age in seconds, status, skipped), oldest
        first: a restarted station's page counts the hour its log holds, not only the minutes since the restart."""
        now = time.monotonic()
        with self._lock:
            for age, status, skipped in earlier:
                if age <= HOUR_S:
                    self._count_in(now - age, status, skipped)

    def _count_in(self, moment: float, status: str, skipped: int) -> None:
        """Count a verdict in its minute's tally (under the lock, oldest first)."""
        minute = moment - moment % MINUTE_S
        if not self._hour or self._hour[-1][0] != minute:
            self._hour.append((minute, dict.fromkeys(TALLIES, 0)))
        self._hour[-1][1][status] += 1
        self._hour[-1][1]["skipped"] += skipped

    def source_event(self, kind: str, message: str, time_utc: str) -> None:
        """A station's source opened, was lost, came back or ended; or its loop stalled, and moved again, which
        brings back what the source was before the stall unless the source has said otherwise meanwhile (the loop
        unblocked by a listing that found the folder gone says ``lost``, from another thread, about as it moves).
        Other events leave the state as it is."""
        with self._lock:
            if kind == "stalled":
                if self._source is None or self._source["state"] != "stalled":
                    self._before_stall = self._source
                self._source = {"state": "stalled", "since": time_utc, "message": message}
            elif kind == "resumed":
                if self._source is not None and self._source["state"] == "stalled":
                    self._source = self._before_stall
            elif kind in SOURCE_STATES:
                self._source = {"state": SOURCE_STATES[kind], "since": time_utc, "message": message}

    def warn(self, message: str) -> None:
        """Something the station's source does not watch (images in a subfolder): shown until the station stops."""
        with self._lock:
            self._warnings.append(message)

    @property
    def source_state(self) -> str | None:
        """``live``, ``lost``, ``stalled`` or ``ended`` for a station's source; None for a server, which has none."""
        with self._lock:
            return None if self._source is None else self._source["state"]

    def last(self) -> dict | None:
        """The newest verdict, with its overlay as a PNG data URL (drawn once per part)."""
        with self._lock:
            last, picture, overlay = self._last, self._picture, self._overlay
        if last is None:
            return None
        if picture is not None and picture[1] is not None and (overlay is None or overlay[0] != picture[0]):
            overlay = (picture[0], _data_url(picture[1], picture[2], picture[3]))
            with self._lock:
                self._overlay = overlay
        return {**last, "overlay": overlay[1] if overlay and overlay[0] == last["id"] else None}

    def summary(self) -> dict:
        """The last hour: parts, defects, defect rate among judged parts, frames without verdict, errors, frames
        skipped while busy; drift; a station's source; what its sinks cannot do now."""
        since = time.monotonic() - HOUR_S  # a station idle for hours shows an empty hour, not its last busy one
        with self._lock:
            hour = [tally for minute, tally in self._hour if minute >= since]
            counts = {name: sum(tally[name] for tally in hour) for name in TALLIES}
            source, warnings = self._source, list(self._warnings)
        judged = counts["ok"] + counts["defect"]
        return {"last_hour": {"parts": judged + counts["not_inspectable"] + counts["error"], "defects": counts["defect"],
                              "defect_rate": counts["defect"] / judged if judged else None,
                              "not_inspectable": counts["not_inspectable"], "errors": counts["error"],
                              "skipped": counts["skipped"]},
                "drift": self.monitor.state.as_dict(), "source": source, "trouble": self.trouble() + warnings}


def _data_url(image: np.ndarray, anomaly_map: np.ndarray | None, threshold: float) -> str | None:
    """The part (and its heat map, when there is one) as a PNG data URL at most PAGE_SIDE wide or high; None for
    a frame that has no picture (the error verdict of a frame that cannot be read as an image is shown without)."""
    try:
        part = to_float(image, 3)
    except ImageError:
        return None
    scale = min(1.0, PAGE_SIDE / max(part.shape[:2]))
    size = (max(1, round(part.shape[1] * scale)), max(1, round(part.shape[0] * scale)))
    part = cv2.resize(part, size, interpolation=cv2.INTER_AREA)
    if anomaly_map is not None:
        picture = render_overlay(part, cv2.resize(anomaly_map, size, interpolation=cv2.INTER_AREA), threshold)
    else:
        picture = (np.clip(part, 0, 1) * 255).astype(np.uint8)
    return "data:image/png;base64," + base64.b64encode(cv2.imencode(".png", picture)[1].tobytes()).decode()
