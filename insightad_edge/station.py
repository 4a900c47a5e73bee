"""The station: frames from a source, judged by a Detector, one Verdict each, for as long as the line runs.

    for verdict in insightad_edge.watch("rtsp://camera/stream", detector=Detector("part.onnx")):
        if verdict.status == "defect":
            reject(verdict.frame)

``watch`` reads the same sources as `insightad-edge watch` (folder, video file, camera, URL, or any
iterable of frames), survives dropped streams and frames without a part, and never calls a frame it could
not judge "ok". The CLI adds the sinks: the inspection log, the evidence folder and the lines on stdout.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from . import modelfile
from .config import SCORE_KEYS
from .detector import ERROR, NOT_INSPECTABLE, STATUSES, Detector, Result
from .errors import InsightadError
from .frames import STALL_S, Event, Frame, Stop
from .inspections import utc_now
from .passages import Passages
from .sources import open_source, source_kind
from .streams import shown

log = logging.getLogger(__name__)
TROUBLE = ("lost", "unwatched", "ignored")  # a source's events that mean parts may pass unjudged
ROW_KEYS = SCORE_KEYS + ("source", "frame", "status", "skipped", "time")


@dataclass(frozen=True)
class Verdict:
    """The station's word on one frame: ``status`` ok / defect / not_inspectable / error, and why.

    ``latency_ms`` runs from the frame's reading (``read_at``, a perf_counter time) to its verdict;
    ``skipped`` counts the live frames dropped before it because the model was busy. ``image`` is the frame
    as read, ``result`` the Detector's answer.
    """

    time: str
    source: str
    frame: str
    path: Optional[str]
    status: str
    score: Optional[float]
    threshold: float
    anomaly: Optional[bool]
    error: Optional[str]
    latency_ms: float
    skipped: int = 0
    read_at: float = field(default=0.0, compare=False)
    timings_ms: Mapping[str, float] = field(default_factory=dict, compare=False)
    image: Optional[np.ndarray] = field(default=None, repr=False, compare=False)
    result: Optional[Result] = field(default=None, repr=False, compare=False)

    def row(self) -> dict:
        """The JSON Lines form: `score`'s keys plus source, frame, status, skipped and the time it is logged with."""
        return {k: getattr(self, k) for k in ROW_KEYS}


def judge(detector: Detector, frame: Frame, *, with_map: bool = False) -> Verdict:
    """One frame through the detector; any failure becomes an error verdict with the reason, never an exception."""
    from .preprocess import load

    image, result, error, status = frame.image, None, None, ERROR
    try:
        if not isinstance(image, np.ndarray):  # a file, or encoded bytes: decoded here, so the verdict keeps the picture
            image = load(frame.path if image is None else image)
        if frame.not_inspectable is None:
            result = detector(image, with_map=with_map, not_inspectable="report")
        else:  # the source knows there is no part to judge: the model is not asked
            error, status = f"not inspectable: {frame.not_inspectable}", NOT_INSPECTABLE
    except InsightadError as exc:
        error = str(exc)
    except Exception as exc:  # the line goes on; the verdict carries what went wrong
        log.exception("unexpected failure on %s %s", frame.source, frame.frame)
        error = f"{type(exc).__name__}: {exc}"
    return Verdict(
        time=utc_now(), source=frame.source, frame=frame.frame, path=None if frame.path is None else str(frame.path),
        status=status if result is None else result.status, score=None if result is None else result.score,
        threshold=detector.threshold, anomaly=None if result is None else result.anomaly,
        error=error if result is None else result.reason, latency_ms=(time.perf_counter() - frame.read_at) * 1000.0,
        skipped=frame.skipped, read_at=frame.read_at, timings_ms={} if result is None else dict(result.timings_ms),
        image=image if isinstance(image, np.ndarray) else None, result=result)


def watch(source, detector: Detector | None = None, *, existing: bool = False, stride: int = 1,
          stop: Stop | None = None, seen: Callable[[str, str], bool] | None = None, with_map: bool = False,
          on_event: Callable[[Event], None] | None = None,
          last_active: Callable[[str], float | None] | None = None, per_part: bool = False,
          recursive: bool = False, own: Collection[Path] = ()) -> Iterator[Verdict]:
    """Judge every frame SOURCE delivers, one Verdict each, until the source ends or ``stop`` is set.

    SOURCE: a folder (new image files, once each, when complete; ``existing`` also those already there), a
    video file, a camera (an index or its device file), a stream URL, or any iterable of frames (arrays, paths or
    bytes). ``seen`` (source, frame) -> bool skips frames judged before (a restarted folder watch), and
    ``last_active`` (source) -> epoch seconds says when an earlier station on it was last heard of (a folder's
    files written since, and not ``seen``, came while none watched and are judged); ``on_event`` hears of streams
    opened, lost and reopened. ``per_part``: a free-running camera's frames give one verdict per part that passes, and none for
    frames without a part (``passages``). ``recursive``: a folder's subfolders are watched too (a folder of the
    day). ``own``: the files and folders the caller writes, never parts (``own_files``).
    """
    detector = detector or Detector()
    parts = Passages(detector.metadata) if per_part else None  # refuses a model that finds no part, before any frame
    items = open_source(source, stop=Stop() if stop is None else stop, existing=existing, stride=stride,
                        seen=seen or (lambda _source, _frame: False),
                        last_active=last_active or (lambda _source: None), per_part=per_part, recursive=recursive,
                        own=own)

    for item in items:
        if isinstance(item, Event):
            unheard = on_event is None and item.kind in TROUBLE  # a lost camera is never kept quiet
            log.log(logging.WARNING if unheard else logging.INFO, "%s: %s", item.kind, item.message)
            if on_event is not None:
                on_event(item)
            if parts is not None and item.kind == "lost":  # the part in view then is gone when the camera is back
                yield from parts.end()
            continue
        verdict = judge(detector, item, with_map=with_map)
        yield from [verdict] if parts is None else parts.feed(verdict)
    if parts is not None:
        yield from parts.end()  # the part in view when the source ended


class Station:
    """The line's loop, top to bottom: source -> Detector -> drift monitor -> evidence -> log -> ``emit``.

    Everything after the Detector is optional: a DriftMonitor (its changes of state become events), an
    InspectionLog, an Evidence folder, a callable for each verdict (the CLI prints), one for events, and one
    called every second or so while the loop turns (the CLI pings systemd's watchdog with it). At each such
    look the model's file is looked at too (``model_file``): another model put there is an event, since this
    station goes on judging with the one it loaded.
    """

    def __init__(self, detector: Detector, *, monitor=None, log=None, evidence=None,
                 emit: Callable[[Verdict], None] | None = None, on_event: Callable[[Event], None] | None = None,
                 on_alive: Callable[[], None] | None = None):
        self.detector, self.monitor, self.log, self.evidence = detector, monitor, log, evidence
        self.emit, self.on_event, self.on_alive = emit, on_event, on_alive
        self.model_file = modelfile.FileWatch(detector.path, detector.sha256)
        self._level, self._name = "ok", ""

    def run(self, source, *, stop: Stop | None = None, existing: bool = False, stride: int = 1,
            per_part: bool = False, recursive: bool = False) -> Counter:
        """Judge SOURCE until it ends or ``stop`` is set; the counts per status (and frames skipped). A stall of
        the loop is an event (not for an iterable of frames, whose own loop may wait for a part as long as it likes)."""
        counts: Counter = Counter()
        stop = stop or Stop()
        self._name = shown(source)
        if self.log is not None:
            self.log.event("start", f"watch {self._name} with {self.detector.path.name} "
                                    f"(sha256 {self.detector.sha256[:12]})")
        try:
            with stalls_reported(stop, lambda: self._name, self._event, source_kind(source) != "frames", self._alive):
                for verdict in watch(source, self.detector, existing=existing, stride=stride, stop=stop,
                                     seen=None if self.log is None else self.log.seen,
                                     last_active=None if self.log is None else self.log.last_active,
                                     with_map=self.evidence is not None, on_event=self._event, per_part=per_part,
                                     recursive=recursive, own=self._own()):
                    self._keep(verdict)
                    counts[verdict.status] += 1
                    counts["skipped"] += verdict.skipped
        finally:
            if self.log is not None:
                self.log.event("stop", summary_line(counts, "parts" if per_part else "frames"))
        return counts

    def _own(self) -> tuple[Path, ...]:
        return own_files(None if self.log is None else self.log.path, None if self.evidence is None else self.evidence.folder)

    def _keep(self, verdict: Verdict) -> None:
        if self.monitor is not None:
            state = self.monitor.feed(verdict.status, verdict.score, verdict.result.stats if verdict.result else None)
            if state.level != self._level:
                self._level = state.level
                self._event(Event("drift", verdict.source, f"drift {state.level}"
                                  + (": " + "; ".join(state.reasons) if state.reasons else ": back within calibration")))
        kept = None
        if self.evidence is not None and self.evidence.wants(verdict.status) and verdict.image is not None:
            kept = self.evidence.keep(verdict.time, verdict.frame, verdict.status, verdict.image,
                                      verdict.result.anomaly_map if verdict.result else None, verdict.threshold)
        if self.log is not None:
            self.log.record(log_row(verdict, self.detector, kept))
        if self.emit is not None:
            self.emit(verdict)

    def _alive(self) -> None:
        if self.on_alive is not None:
            self.on_alive()
        if (change := self.model_file.look()) is not None:
            self._event(Event("model_changed", self._name, change))

    def _event(self, event: Event) -> None:
        self._name = event.source or self._name  # as the source names itself (a folder: its full path)
        if self.log is not None:
            self.log.event(event.kind, event.message, event.source)
        if self.on_event is not None:
            self.on_event(event)


@contextmanager
def stalls_reported(stop: Stop, name: Callable[[], str], report: Callable[[Event], None], watched: bool = True,
                    alive: Callable[[], None] | None = None):
    """While the block runs, say when the station's loop has not turned (``stop``'s pulse) for STALL_S, and when it
    moves again: a listing hung on a network share, or a sink that blocks (a pipe nobody reads), would otherwise
    leave the page showing a live source and its last verdict while no part is judged. ``alive`` is called at each
    look while it turns (systemd's watchdog), and not while it is stalled."""
    finished = threading.Event()

    def run() -> None:
        stalled = False
        while True:  # a look at once, then every second or so
            quiet = stop.quiet_s()
            if alive is not None and quiet < STALL_S:
                alive()
            if (quiet >= STALL_S) != stalled:
                stalled = not stalled
                report(Event("stalled", name(), f"the station has not moved for {quiet:.0f} s, no part is judged: a "
                                                "folder on a hung network share, or an output that blocks (a full disk, "
                                                "a pipe nobody reads)?") if stalled else
                       Event("resumed", name(), "the station moves again"))
            if finished.wait(min(1.0, STALL_S / 4)):
                return

    thread = threading.Thread(target=run, name="stall watch", daemon=True) if watched else None
    if thread is not None:
        thread.start()
    try:
        yield
    finally:
        finished.set()
        if thread is not None:
            thread.join(timeout=1.0)  # one that is telling a blocked stderr of a stall must not hold the stop up


def own_files(log: Path | None, evidence: Path | None) -> tuple[Path, ...]:
    """What a station writes itself, as absolute paths: its log's files (SQLite's journal and shared memory beside
    it) and its evidence folder. A folder watch leaves them alone, and refuses a folder that lies in the evidence."""
    files = [] if log is None else [log.with_name(log.name + suffix) for suffix in ("", "-wal", "-shm", "-journal")]
    return tuple(path.resolve() for path in files + ([] if evidence is None else [evidence]))


def log_row(verdict: Verdict, detector: Detector, evidence: str | None) -> dict:
    """A verdict as a row of the inspection log (columns named like the JSON Lines keys)."""
    timings = verdict.timings_ms
    return {**verdict.row(), "time": verdict.time, "anomaly": None if verdict.anomaly is None else int(verdict.anomaly),
            "model": detector.path.name, "model_sha256": detector.sha256, "latency_ms": verdict.latency_ms,
            "skipped": verdict.skipped, "evidence": evidence,
            **{f"{stage}_ms": timings.get(stage) for stage in ("decode", "preprocess", "reconstruct", "score")}}


def summary_line(counts: Counter, noun: str = "frames") -> str:
    """``160 frames: 66 ok, 94 defects, ...``; ``parts`` when each verdict is a part's (``per_part``)."""
    return (f"{sum(counts[s] for s in STATUSES)} {noun}: {counts['ok']} ok, {counts['defect']} defects, "
            f"{counts['not_inspectable']} not inspectable, {counts['error']} errors, "
            f"{counts['skipped']} skipped while busy")
