"""Frames in from a camera or a network stream: read by a thread of their own that keeps only the latest frame, so
a slow model never builds a backlog (the frames dropped are counted); a stream that drops is reopened with backoff
and reported as an event. A live frame identical to the one before is no news and is not judged again; a camera
that has sent only such repeats for a while is frozen, and counts as lost.
"""
from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Optional, Union

import numpy as np

from .frames import BACKOFF_S, Event, Frame, Item, Stop

log = logging.getLogger(__name__)
RTSP_SCHEMES = ("rtsp://", "rtsps://")
STREAM_SCHEMES = (*RTSP_SCHEMES, "http://", "https://", "udp://", "tcp://")
STREAM_TIMEOUT_MS = 5000  # a live source that opens or delivers nothing new for this long counts as lost
NEXT_WAIT_S = 0.5      # how long the station waits for a live source's next frame before it looks at Stop again
CAPTURE_OPTIONS = "OPENCV_FFMPEG_CAPTURE_OPTIONS"  # FFmpeg's options for every capture OpenCV opens, key;value|...


SECRET_PARAMETER = re.compile(r"(?i)([?&;][^=&#;]*(?:pass|pwd|secret|token|key|auth|sig)[^=&#;]*=)[^&#;]*")


def shown(source) -> str:
    """SOURCE as logs, events and the operator's page name it: a stream URL's password becomes ***, since the
    page and /health are read by people who need not know it. Read as a person types it, not as a URL parser
    would: the password runs from the first ``:`` of what stands before the last ``@`` (a raw ``#``, ``?``, ``/``
    or ``@`` in it made a parser show the rest), and a query's password or key (``?user=admin&pwd=...``, as
    many MJPEG cameras take it) goes too."""
    text = str(source)
    if not text.lower().startswith(STREAM_SCHEMES):
        return text
    scheme, rest = text.split("://", 1)
    if "@" in rest:
        userinfo, host = rest.rsplit("@", 1)
        user, colon, _ = userinfo.partition(":")
        rest = f"{user}:***@{host}" if colon else rest
    return SECRET_PARAMETER.sub(r"\1***", f"{scheme}://{rest}")


NEW, REPEAT, FROZEN, LOST = "new", "repeat", "frozen", "lost"


class Novelty:
    """Whether a live frame is news. A live sensor's noise makes no two frames equal, so a frame identical to
    the last new one is a hung camera's buffer sent again (or a still scene on a stream that codes no noise);
    repeats alone for STREAM_TIMEOUT_MS since the last new frame, or since the source opened, mean frozen."""

    def __init__(self):
        self.last: Union[np.ndarray, bytes, None] = None  # bytes: a JPEG that does not decode
        self.since = time.monotonic()

    def restart(self) -> None:
        """The source has just (re)opened: its frames get the full time to change again."""
        self.since = time.monotonic()

    def of(self, image: Union[np.ndarray, bytes]) -> str:
        now = time.monotonic()
        if self.last is None or not np.array_equal(image, self.last):
            self.last, self.since = image, now
            return NEW
        return FROZEN if now - self.since > STREAM_TIMEOUT_MS / 1000.0 else REPEAT


class LatestFrameReader:
    """A thread that reads a live source as fast as it delivers and keeps only the newest frame.

    A lost stream is reopened with backoff; the events (lost, reopened) wait in a queue for the consumer.
    Frames that are no news are dropped, and a frozen source is lost until its images change again
    (``Novelty``): a frozen camera never passes parts it no longer sees. A source is lost once, and back when
    it sends a new image, not when it opens again: an RTSP camera whose encoder hangs still answers the
    requests that open its stream, and counting that as back made the station say lost and reopened every
    10 s, the page show the last verdict from before as live between, and the backoff never grow.
    """

    def __init__(self, target, name: str, stop: Stop):
        self.target, self.name, self.stop = target, name, stop
        self._closed = threading.Event()
        self._lock = threading.Condition()
        self._frame: Optional[tuple[int, np.ndarray, float]] = None
        self._events: list[Event] = []
        self.delivered = 0
        self._capture = None  # the thread's own, as the rest of its state: how often it tried, frozen or not
        self._attempt, self._ever_opened, self._news = 0, False, Novelty()
        self._down: Optional[str] = None  # why the source was said lost (LOST or FROZEN), until a new image comes
        self._encoded = False  # a Motion JPEG stream, read as the camera's own JPEGs (``_as_sent``)
        self._thread = threading.Thread(target=self._run, name=f"reader {name}", daemon=True)

    def start(self) -> LatestFrameReader:
        if isinstance(self.target, str) and self.target.lower().startswith(RTSP_SCHEMES):
            rtsp_over_tcp()  # here, before the thread: the environment is the process's, read as the capture opens
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop reading and wait for the thread (a read blocks at most STREAM_TIMEOUT_MS)."""
        self._closed.set()
        self._thread.join(timeout=STREAM_TIMEOUT_MS / 1000.0 + 2.0)

    def _running(self) -> bool:
        return not (self.stop.is_set() or self._closed.is_set())

    def _open(self):
        import cv2

        if isinstance(self.target, str):  # a network stream: bounded waits, so a dead peer is noticed
            capture = cv2.VideoCapture(self.target, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
                                                                     cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS])
        elif isinstance(self.target, Path):  # a camera's device file: Video4Linux's, which reads one by its name
            capture = cv2.VideoCapture(str(self.target), cv2.CAP_V4L2)
        else:
            capture = cv2.VideoCapture(self.target)
        if capture.isOpened():
            self._encoded = isinstance(self.target, str) and _as_sent(capture)
            return capture
        capture.release()
        return None

    def _note(self, kind: str, message: str) -> None:
        log.debug("%s: %s", self.name, message)  # said by whoever hears the events (``station.watch``)
        with self._lock:
            self._events.append(Event(kind, self.name, message))
            self._lock.notify_all()

    def _run(self) -> None:
        """Read until stopped. Whatever the capture raises (a driver's or a decoder's failure) is a lost source,
        reopened like any other: a dead reader would leave the station waiting while the page says live."""
        while self._running():
            try:
                self._read_one()
            except Exception as exc:  # said once, by _note, without a traceback that would name the URL as given
                self._release()
                said = str(exc).replace(str(self.target), self.name)  # a driver may name the URL, password and all
                self._lose(LOST, f"{self.name} failed ({type(exc).__name__}: {said}); reopening with backoff")
                self._back_off()
        self._release()

    def _read_one(self) -> None:
        """Open the source if it is not, read one frame, and deliver it if it is news."""
        if self._capture is None and not self._reopen():
            return
        read_at = time.perf_counter()
        ok, image = self._capture.read()
        if ok and image is not None and self._encoded:
            image = _decoded(image)
        kind = self._news.of(image) if ok and image is not None else LOST
        if kind == LOST:
            self._release()
            if self._down is not None:  # opened again, and still nothing: wait longer each time
                self._back_off()
            self._lose(LOST, f"lost {self.name}; reopening with backoff")
        elif kind == FROZEN:
            self._release()
            self._lose(FROZEN, f"{self.name} has sent the same image for {STREAM_TIMEOUT_MS / 1000.0:g} s: "
                               "the camera is frozen (or the scene is still on a stream that codes no noise)")
            self._back_off()
        elif kind == NEW:
            if self._down is not None:
                self._note("reopened", f"{self.name} sends new images again" if self._down == FROZEN else
                           f"reopened {self.name}" + (f" after {self._attempt} attempts" if self._attempt else ""))
            self._down, self._attempt = None, 0
            with self._lock:
                self.delivered += 1
                self._frame = (self.delivered, image, read_at)
                self._lock.notify_all()

    def _lose(self, why: str, message: str) -> None:
        """The source delivers nothing new: said once, until a new image says it is back."""
        if self._down is None:
            self._note("lost", message)
            self._down = why

    def _reopen(self) -> bool:
        """Open the source. Its first opening is said (after the attempts it took); an opening after a loss is not,
        since a source is back when it sends a new image."""
        self._capture = self._open()
        if self._capture is None:
            if not self._ever_opened:
                self._lose(LOST, f"cannot open {self.name} ({self._what_to_check()}); retrying")
            self._back_off()
            return False
        if not self._ever_opened:
            self._note("opened", f"opened {self.name}" + (f" after {self._attempt} attempts" if self._attempt else ""))
            self._ever_opened, self._down, self._attempt = True, None, 0
        self._news.restart()
        return True

    def _what_to_check(self) -> str:
        """What a person checks when a source never opens: OpenCV does not say why (a refused password, no route,
        a camera held by another program all read the same)."""
        if isinstance(self.target, str):
            return "is the camera on the network, and are its address, port, path, user and password right?"
        return "is the camera connected, not used by another program, and may this user open it (group video)?"

    def _back_off(self) -> None:
        self.stop.wait(BACKOFF_S[min(self._attempt, len(BACKOFF_S) - 1)])
        self._attempt += 1

    def _release(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def next(self, after: int, timeout: float):
        """The newest frame delivered after number ``after``, or None; pending events come first."""
        with self._lock:
            self._lock.wait_for(lambda: self._events or (self._frame and self._frame[0] > after)
                                or not self._running(), timeout)
            if self._events:
                return self._events.pop(0)
            if self._frame and self._frame[0] > after:
                return self._frame
            return None


def rtsp_over_tcp() -> None:
    """Have OpenCV's FFmpeg read RTSP over TCP, so a network that loses packets stalls the stream (a lost camera,
    said) rather than tearing its frames into gray smears (judged as the part): OpenCV 4 asks for UDP, and so does
    OpenCV 5 once a site sets capture options of its own. A site whose options name a transport keeps its choice."""
    options = os.environ.get(CAPTURE_OPTIONS, "")
    if "rtsp_transport" not in options:
        os.environ[CAPTURE_OPTIONS] = "|".join(filter(None, (options, "rtsp_transport;tcp")))


def _as_sent(capture) -> bool:
    """Read a Motion JPEG stream as the camera's own JPEG of each frame (``_decoded``): a frame the camera sent
    damaged (cut short) was filled with gray by FFmpeg's decoder, and the station judged it as if it were the part."""
    import cv2

    fourcc = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little")
    return fourcc == b"MJPG" and capture.set(cv2.CAP_PROP_FORMAT, -1)


def _decoded(packet: np.ndarray):
    """A camera's JPEG decoded as a file of it is (its own channels, by the same decoder), here, while the model
    judges the frame before; or, when it does not decode, its bytes, which the detector refuses with the reason."""
    import cv2

    if packet.ndim != 2 or packet.shape[0] != 1:  # a picture already: this capture decoded it after all
        return packet
    image = cv2.imdecode(packet.reshape(-1), cv2.IMREAD_UNCHANGED)
    return packet.tobytes() if image is None else image


def live_frames(target, name: str, stop: Stop, stride: int = 1) -> Iterator[Item]:
    """The latest frame of a camera or stream each time the consumer is ready; every ``stride``-th delivered
    frame at most. ``Frame.skipped`` counts the frames that arrived meanwhile and were never judged."""
    reader = LatestFrameReader(target, name, stop).start()
    last = 0
    try:
        while not stop.is_set():
            stop.beat(NEXT_WAIT_S)
            item = reader.next(last + stride - 1, NEXT_WAIT_S)
            if item is None:
                continue
            if isinstance(item, Event):
                yield item
                continue
            number, image, read_at = item
            skipped, last = number - last - stride, number
            yield Frame(name, str(number), image=image, read_at=read_at, skipped=max(0, skipped))
    finally:
        reader.close()
