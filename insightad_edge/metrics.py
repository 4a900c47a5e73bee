"""Prometheus metrics of a server or station, in their own registry (prometheus-client, the [serve] extra)."""
from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

from .detector import STATUSES, Detector
from .monitor import LEVELS, DriftState

STAGES = ("decode", "preprocess", "reconstruct", "score")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5)
SCORE_BUCKETS = (0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 4.0, 8.0)  # times the threshold


class Metrics:
    """Requests by route and status, stage latencies, verdicts by status, scores, drift, and the model."""

    def __init__(self, detector: Detector):
        self.registry = CollectorRegistry()
        self.requests = Counter("insightad_requests", "HTTP requests answered, by route and status code",
                                ("route", "code"), registry=self.registry)
        self.request_seconds = Histogram("insightad_request_seconds", "Whole /infer requests, seconds",
                                         buckets=LATENCY_BUCKETS, registry=self.registry)
        self.stage_seconds = Histogram("insightad_stage_seconds", "Time per stage of judging one frame, seconds",
                                       ("stage",), buckets=LATENCY_BUCKETS, registry=self.registry)
        self.verdicts = Counter("insightad_verdicts", "Verdicts by status", ("status",), registry=self.registry)
        self.scores = Histogram("insightad_score", "Scores of judged parts", registry=self.registry,
                                buckets=tuple(detector.threshold * b for b in SCORE_BUCKETS))
        self.drift_level = Gauge("insightad_drift_level", "Drift state: 0 ok, 1 warn, 2 alarm", registry=self.registry)
        self.drift_statistic = Gauge("insightad_drift_statistic", "The drift monitor's numbers over its window",
                                     ("name",), registry=self.registry)
        info = Info("insightad_model", "The model in use", registry=self.registry)
        info.info({"name": detector.path.name, "sha256": detector.sha256,
                   "schema": str(detector.metadata.schema_version), "threshold": f"{detector.threshold:.6g}"})
        self.source_up: Gauge | None = None
        self.frames_skipped: Counter | None = None
        self._made = threading.Lock()  # a station's source is told of from its loop and from its stall watch
        for status in STATUSES:
            self.verdicts.labels(status)
        for stage in STAGES:
            self.stage_seconds.labels(stage)

    def verdict(self, status: str, score: float | None, timings_ms: dict, drift: DriftState) -> None:
        self.verdicts.labels(status).inc()
        if score is not None:
            self.scores.observe(score)
        for stage, milliseconds in timings_ms.items():
            if stage in STAGES:
                self.stage_seconds.labels(stage).observe(milliseconds / 1000.0)
        self.drift_level.set(LEVELS.index(drift.level))
        for name, value in drift.statistics.items():
            if isinstance(value, (int, float)):
                self.drift_statistic.labels(name).set(value)

    def source(self, state: str) -> None:
        """A station's source: up while it delivers (a server has no source, and no such gauge)."""
        with self._made:
            if self.source_up is None:
                self.source_up = Gauge("insightad_source_up", "1 while the station's source delivers, 0 while it is "
                                       "lost (or frozen), its loop has stalled, or it has ended", registry=self.registry)
        self.source_up.set(1 if state == "live" else 0)

    def skipped(self, frames: int) -> None:
        """Live frames a station dropped unjudged while the model was busy: parts, when each frame is one."""
        if self.frames_skipped is None:
            self.frames_skipped = Counter("insightad_frames_skipped", "Live frames the station dropped unjudged "
                                          "because the model was busy", registry=self.registry)
        self.frames_skipped.inc(frames)

    def sinks(self, log, evidence) -> None:
        """A station's log and evidence folder, read at each scrape: what waits for a log file that cannot take it
        now (a full disk, a lock), what never reached it, the log's disk room and when it runs out, whether the clock
        stamping it is wrong, and frames whose evidence could not be written."""
        for name, text, sink, value in (
                ("insightad_log_held", "Verdicts and events waiting in memory for the log file to take them", log,
                 lambda: log.held),
                ("insightad_log_lost", "Verdicts and events that never reached the log file", log,
                 lambda: log.unwritten),
                ("insightad_log_disk_free_bytes", "Free space on the log's disk", log, lambda: log.room.free),
                ("insightad_log_disk_days_left", "Days until the log's disk is full at the rate of the last hours "
                 "(+Inf while it is not filling)", log, lambda: log.room.days_left),
                ("insightad_log_clock_wrong", "1 while the PC's clock reads before the model was made or before "
                 "the log's newest record: verdicts are stamped with a wrong time", log,
                 lambda: 0.0 if log.clock.wrong() is None else 1.0),
                ("insightad_evidence_failed", "Frames whose evidence could not be written", evidence,
                 lambda: evidence.failed)):
            if sink is not None:
                Gauge(name, text, registry=self.registry).set_function(value)

    def model_file(self, current) -> None:
        """Whether the file at the model's path still holds the model in service (``current()``, read at each
        scrape): a new model put there is used only from the next start, and a fleet's alert should say so."""
        Gauge("insightad_model_file_current", "1 while the file at the model's path holds the model in service, 0 "
              "once another model (or none) is there: restart to use it", registry=self.registry
              ).set_function(lambda: 1.0 if current() else 0.0)

    def text(self) -> bytes:
        return generate_latest(self.registry)
