"""What every source yields, one at a time: a ``Frame`` to judge, or an ``Event`` that says what happened to the
source (opened, lost, reopened, ended); and the ``Stop`` flag and pulse a source shares with the station's loop."""
from __future__ import annotations

import queue
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np

BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)  # waits between attempts to reach a lost source again
STALL_S = 10.0  # a station loop that has not turned for this long has stalled: no healthy step takes a tenth of it


@dataclass(frozen=True)
class Frame:
    """One frame to judge: ``image`` (as OpenCV delivers it) and/or ``path`` (its file), where it came from and
    when it was read. A folder's file that never decoded comes with ``image`` None, a camera's JPEG that does not
    decode as its bytes: their verdicts are errors that say why. ``not_inspectable`` says why the source itself
    knows the frame shows no part to judge (a picture the camera wrote before, again)."""

    source: str
    frame: str
    image: Union[np.ndarray, bytes, None] = field(default=None, repr=False)
    path: Optional[Path] = None
    read_at: float = field(default_factory=time.perf_counter)
    skipped: int = 0
    not_inspectable: Optional[str] = None


@dataclass(frozen=True)
class Event:
    """Something that happened to a source: ``opened``, ``lost``, ``reopened``, ``ended``."""

    kind: str
    source: str
    message: str


Item = Union[Frame, Event]


class Stop:
    """A flag the sources check between frames: set it (or have signals set it, ``on_signals``) to end them cleanly;
    and the pulse of the station's loop, which a source beats each time it turns (a folder's poll, each frame it
    hands over). A loop that stops beating has stalled: a listing that hangs on a network share, or a sink that
    blocks."""

    def __init__(self):
        self._event = threading.Event()
        self._alive_until = time.monotonic()

    def set(self) -> None:
        self._event.set()

    def on_signals(self, *numbers: int) -> None:
        """Set when one of these signals arrives. Not by the handler itself: a handler runs in the main thread,
        maybe inside this flag's own ``wait``, holding the lock ``set`` takes, and Ctrl-C then hung the station for
        good (once in a CI run). The handler hands the signal to a thread that sets the flag: SimpleQueue's put
        may interrupt anything in its own thread."""
        arrived: queue.SimpleQueue = queue.SimpleQueue()

        def set_when_told() -> None:
            arrived.get()
            self.set()

        threading.Thread(target=set_when_told, name="stop on signal", daemon=True).start()
        for number in numbers:
            signal.signal(number, lambda *_: arrived.put(None))

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        return self._event.wait(seconds)

    def beat(self, ahead_s: float = 0.0) -> None:
        """The loop is turning now (and is, waiting on purpose, for ``ahead_s`` more)."""
        self._alive_until = time.monotonic() + ahead_s

    def quiet_s(self) -> float:
        """Seconds since the loop last turned, waits it announced left out."""
        return max(0.0, time.monotonic() - self._alive_until)
