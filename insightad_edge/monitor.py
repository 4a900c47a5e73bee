"""Drift: do the parts the line shows now look like the good parts the model was calibrated on?

Fed every verdict, the monitor keeps the last ``WINDOW`` of them and compares, in words a person can act on:
the median score with the held-back good images' scores (the distribution the threshold came from), the
median of each frame statistic (brightness, sharpness, the part's contrast, size and position) with the
range of the good training images, and the rates of defects, frames without a verdict and errors with what
is expected. Its state is ok, warn or alarm. numpy only; safe to feed from several threads.

Why these levels, on the MVTec screw (see README): the 41 good test images' median score sits at the 38th
percentile of calibration and every frame statistic within 1% of the training range, while a lamp 30%
dimmer, a focus blur of sigma 2 or a fixture moved by 10% of the frame leaves the range by far more than
the alarm tolerances below.
"""
from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .config import DRIFT_DEFAULTS
from .metadata import ModelMetadata

WINDOW = 50          # verdicts compared at a time: enough for a stable median, few enough to react in minutes
MIN_PARTS = 20       # no judgement on fewer judged parts
SCORE_RANK = (0.90, 0.975)  # warn / alarm when the median score passes this share of the calibration scores
RATE_TAIL = (1e-2, 1e-4)    # warn / alarm when this many bad verdicts are that unlikely at the expected rate
LEVELS = ("ok", "warn", "alarm")


@dataclass(frozen=True)
class Drift:
    """How far a frame statistic's window median may leave the good training images: (warn, alarm) tolerances.

    Most statistics are held against the training range (relative or absolute gap beyond its ends); a
    position is held against the training median, since parts placed anywhere in a wide range still
    move together when the fixture does.
    """

    name: str
    words: tuple[str, str]  # (below, above): "darker", "brighter"
    tolerance: tuple[float, float]
    relative: bool = True
    noun: str = "training image"
    from_median: bool = False


DRIFTS = (
    Drift("brightness", ("darker", "brighter"), (0.10, 0.25)),        # the gain undoes small exposure changes
    Drift("sharpness", ("less sharp", "sharper"), (0.15, 0.30)),      # focus
    Drift("contrast", ("lower in contrast", "higher in contrast"), (0.03, 0.06), relative=False),
    Drift("part_area", ("smaller", "larger"), (0.10, 0.20), noun="training part"),
    Drift("part_x", ("further left", "further right"), (0.04, 0.08), relative=False, from_median=True),
    Drift("part_y", ("higher", "lower"), (0.04, 0.08), relative=False, from_median=True),
    Drift("outside", ("", "further outside the frame"), (0.05, 0.10), relative=False, noun="training part"),
    Drift("saturated", ("", "more clipped"), (0.01, 0.03), relative=False),
)


@dataclass(frozen=True)
class DriftState:
    """The monitor's word: ``level`` ok / warn / alarm, the ``reasons``, and the numbers behind them."""

    level: str
    reasons: tuple[str, ...]
    parts: int
    statistics: dict = field(default_factory=dict)
    reference: bool = True

    def as_dict(self) -> dict:
        return {"level": self.level, "reasons": list(self.reasons), "parts": self.parts, "min_parts": MIN_PARTS,
                "statistics": self.statistics, "reference": self.reference}


class DriftMonitor:
    """Compares the last WINDOW verdicts with the model's calibration reference."""

    def __init__(self, metadata: ModelMetadata, *, window: int = WINDOW,
                 expected_defect_rate: float = DRIFT_DEFAULTS["expected_defect_rate"],
                 expected_not_inspectable_rate: float = 0.01, expected_error_rate: float = 0.01):
        self.calibration = metadata.calibration
        self.expected = {"defect": expected_defect_rate, "not_inspectable": expected_not_inspectable_rate,
                         "error": expected_error_rate}
        self._recent: deque = deque(maxlen=window)
        self._lock = threading.Lock()
        self._state = DriftState("ok", (), 0, reference=self.calibration is not None)

    def feed(self, status: str, score: Optional[float], stats=None) -> DriftState:
        """Add one verdict (status, score or None, FrameStats or None); the state after it."""
        with self._lock:
            self._recent.append((status, score, stats))
            self._state = self._judge()
            return self._state

    @property
    def state(self) -> DriftState:
        return self._state

    def _judge(self) -> DriftState:
        recent = list(self._recent)
        judged = [(score, stats) for status, score, stats in recent if status in ("ok", "defect")]
        found: list[tuple[int, str]] = []
        numbers: dict = {}
        for status, (noun, verb) in {"defect": ("defects", "were defective"),
                                     "not_inspectable": ("frames without a verdict", "could not be judged"),
                                     "error": ("errors", "failed")}.items():
            count = sum(1 for s, _, _ in recent if s == status)
            numbers[f"{status}_rate"] = count / len(recent)
            level = _tail_level(count, len(recent), self.expected[status])
            if level:
                found.append((level, f"{count} of the last {len(recent)} frames {verb} "
                                     f"(about {self.expected[status] * len(recent):.1f} expected)"))
        if self.calibration is None:
            reasons = [r for _, r in found] + ["the model carries no calibration reference (schema 1): "
                                               "only the rates are watched; re-export it"]
            return DriftState(LEVELS[max([lvl for lvl, _ in found], default=0)], tuple(reasons), len(judged), numbers,
                              reference=False)
        if len(judged) >= MIN_PARTS:
            found += self._score_drift([s for s, _ in judged], numbers)
            found += self._frame_drift([st for _, st in judged if st is not None], numbers)
        level = max([lvl for lvl, _ in found], default=0)
        reasons = tuple(r for lvl, r in sorted(found, key=lambda f: -f[0]))
        return DriftState(LEVELS[level], reasons, len(judged), numbers)

    def _score_drift(self, scores: list[float], numbers: dict) -> list[tuple[int, str]]:
        reference = np.asarray(self.calibration.score)
        median = float(np.median(scores))
        rank = float(np.mean(reference < median))
        numbers["score_median"], numbers["score_rank"] = median, rank
        level = 2 if rank >= SCORE_RANK[1] else 1 if rank >= SCORE_RANK[0] else 0
        if not level:
            return []
        return [(level, f"median score of the last {len(scores)} parts ({median:.3g}) is at the "
                        f"{rank:.0%} point of the calibration scores: good parts score higher than they did")]

    def _frame_drift(self, stats: list, numbers: dict) -> list[tuple[int, str]]:
        found = []
        for drift in DRIFTS:
            reference = self.calibration.stats.get(drift.name)
            values = [getattr(s, drift.name) for s in stats if getattr(s, drift.name, None) is not None]
            if not reference or len(values) < MIN_PARTS:
                continue
            median = float(np.median(values))
            low, high = reference[0], reference[-1]
            numbers[drift.name] = median
            if drift.from_median:  # tolerances widened to 4 / 6 standard errors of a median of this many parts
                centre = float(np.median(reference))
                error = 1.2533 * float(np.std(reference)) / np.sqrt(len(values))
                gap, side = abs(median - centre), int(median > centre)
                warn, alarm = max(drift.tolerance[0], 4 * error), max(drift.tolerance[1], 6 * error)
                level = 2 if gap >= alarm else 1 if gap >= warn else 0
                if level:
                    found.append((level, f"parts sit {gap:.2f} of the frame {drift.words[side]} than in training "
                                         f"({drift.name}: median {median:.3f}, training median {centre:.3f})"))
                continue
            if median < low:
                gap, side = (low - median) / (abs(low) or 1.0) if drift.relative else low - median, 0
            elif median > high:
                gap, side = (median - high) / (abs(high) or 1.0) if drift.relative else median - high, 1
            else:
                continue
            level = 2 if gap >= drift.tolerance[1] else 1 if gap >= drift.tolerance[0] else 0
            if level:
                amount = f"{gap:.0%}" if drift.relative else f"{gap:.3g}"
                found.append((level, f"frames are {amount} {drift.words[side]} than any {drift.noun} "
                                     f"({drift.name}: median {median:.3g}, training {low:.3g}-{high:.3g})"))
        return found


def _tail_level(count: int, n: int, rate: float) -> int:
    """0, 1 (warn) or 2 (alarm): how unlikely ``count`` or more in ``n`` are at the expected ``rate``."""
    if n < MIN_PARTS or count <= rate * n:
        return 0
    tail = binomial_tail(count, n, rate)
    return 2 if tail < RATE_TAIL[1] else 1 if tail < RATE_TAIL[0] else 0


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed in log space (no scipy on the edge)."""
    if k <= 0:
        return 1.0
    p = min(max(p, 1e-12), 1 - 1e-12)
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p)
             + (n - i) * math.log1p(-p) for i in range(k, n + 1)]
    top = max(terms)
    return float(min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms)))
