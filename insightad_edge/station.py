"""The station: frames from a source, judged by a Detector, one Verdict each, for as long as the line runs.

    for verdict in insightad_edge.watch("rtsp://camera/stream", detector=Detector("part.onnx")):
        if verdict.status == "defect":
            reject(verdict.frame)

``watch`` reads the same sources as `insightad-edge watch` (folder, video file, camera index, URL, or any
iterable of frames), survives dropped streams and frames without a part, and never calls a frame it could
not judge "ok". The CLI adds the sinks: the inspection log, the evidence folder and the lines on stdout.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Optional

import numpy as np

from .detector import ERROR, Detector, Result
from .errors import InsightadError
from .inspections import utc_now
from .sources import Event, Frame, Stop, open_source

log = logging.getLogger(__name__)
ROW_KEYS = ("path", "score", "threshold", "anomaly", "error", "source", "frame", "status")


@dataclass(frozen=True)
class Verdict:
    """The station's word on one frame: ``status`` ok / defect / not_inspectable / error, and why.

    ``latency_ms`` runs from the frame's reading to its verdict; ``skipped`` counts the live frames dropped
    before it because the model was busy. ``image`` is the frame as read, ``result`` the Detector's answer.
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
    timings_ms: Mapping[str, float] = field(default_factory=dict, compare=False)
    image: Optional[np.ndarray] = field(default=None, repr=False, compare=False)
    result: Optional[Result] = field(default=None, repr=False, compare=False)

    def row(self) -> dict:
        """The JSON Lines form: `score`'s keys plus source, frame and status."""
        return {k: getattr(self, k) for k in ROW_KEYS}


def judge(detector: Detector, frame: Frame, *, with_map: bool = False) -> Verdict:
    """One frame through the detector; any failure becomes an error verdict with the reason, never an exception."""
    from .preprocess import load

    image, result, error = frame.image, None, None
    try:
        if image is None:
            image = load(frame.path)
        result = detector(image, with_map=with_map, not_inspectable="report")
    except InsightadError as exc:
        error = str(exc)
    except Exception as exc:  # the line goes on; the verdict carries what went wrong
        log.exception("unexpected failure on %s %s", frame.source, frame.frame)
        error = f"{type(exc).__name__}: {exc}"
    return Verdict(
        time=utc_now(), source=frame.source, frame=frame.frame, path=None if frame.path is None else str(frame.path),
        status=ERROR if result is None else result.status, score=None if result is None else result.score,
        threshold=detector.threshold, anomaly=None if result is None else result.anomaly,
        error=error if result is None else result.reason, latency_ms=(time.perf_counter() - frame.read_at) * 1000.0,
        skipped=frame.skipped, timings_ms={} if result is None else dict(result.timings_ms), image=image,
        result=result)


def watch(source, detector: Detector | None = None, *, existing: bool = False, stride: int = 1,
          stop: Stop | None = None, seen: Callable[[str, str], bool] | None = None, with_map: bool = False,
          on_event: Callable[[Event], None] | None = None) -> Iterator[Verdict]:
    """Judge every frame SOURCE delivers, one Verdict each, until the source ends or ``stop`` is set.

    SOURCE: a folder (new image files, once each, when complete; ``existing`` also those already there), a
    video file, a camera index, a stream URL, or any iterable of frames (arrays, paths or bytes). ``seen``
    (source, frame) -> bool skips frames judged before (a restarted folder watch); ``on_event`` hears of
    streams opened, lost and reopened.
    """
    detector = detector or Detector()
    items = open_source(source, stop=Stop() if stop is None else stop, existing=existing, stride=stride,
                        seen=seen or (lambda _source, _frame: False))
    for item in items:
        if isinstance(item, Event):
            log.info("%s: %s", item.kind, item.message)
            if on_event is not None:
                on_event(item)
            continue
        yield judge(detector, item, with_map=with_map)

