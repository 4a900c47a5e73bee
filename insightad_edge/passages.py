"""One verdict per part for a free-running camera, which sees each part for many frames and the fixture empty
between parts.

Judged frame by frame, a conveyor under a video camera gave a row per frame: most of them without a verdict (the
empty belt, the part coming in cut by the frame's edge), so the drift monitor alarmed on them, the page showed
NO VERDICT between parts, and a part judged on ten frames had ten verdicts. ``Passages`` groups the frames into
parts instead:

- a frame with no part in view and nothing wrong with the camera gets no row;
- a part is the run of frames between empty ones (EMPTY_FRAMES in a row end it); parts that follow each other
  with no empty frame between them (one leaving while the next comes in) are told apart when a part cut by the
  frame's edge comes between two judged ones that lie NEXT_PART of the frame or more apart;
- it gets one verdict, given as it leaves, from its frame whose part sits nearest where the training parts sat,
  or, when none of its frames could be judged (always cut by the edge, blurred), one row without a verdict that
  says why;
- parts in view for PART_MAX_S without one frame that could be judged (touching parts, never whole in view) get
  a row without a verdict then, and again each PART_MAX_S while it lasts: never a long silence while parts pass;
- frames that fail, and frames the camera itself spoils (too dark, too bright, clipped, too coarse), keep a row
  each, as without passages: a lamp that goes out must not look like an empty belt;
- a part's passage ends with its source: at the end of a video, and when a camera is lost (``end``); and when the
  station looked away from a live camera for STALL_S (a model call starved of the CPU, a sink that blocked): the
  part then in view has gone by the time it looks again, as when the camera is lost.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from . import inspectability
from .detector import ERROR, NOT_INSPECTABLE
from .frames import STALL_S
from .metadata import ModelMetadata

EMPTY_FRAMES = 3   # frames in a row without a part that end one: a single blurred frame does not cut a part in two
PART_MAX_S = 5.0   # parts in view this long with no frame judged whole get a row saying so, without waiting
NEXT_PART = 0.15   # a judged part this far (share of the frame) from the last, with a cut-off frame between: another


def refuse_without_parts(metadata: ModelMetadata) -> None:
    """Passages need a model that finds a part in a frame: a texture (no alignment) or a schema-1 model has none."""
    if metadata.inspection is None or metadata.inspection.contrast_min is None:
        raise ValueError("one verdict per part needs a model that finds a part in the frame, and this one judges "
                         "the whole frame (a texture, or a model exported before inspection limits): every frame "
                         "is judged on its own")


class Passages:
    """Turns a free-running camera's verdicts, frame by frame, into one verdict per part (see the module)."""

    def __init__(self, metadata: ModelMetadata, clock=time.monotonic):
        refuse_without_parts(metadata)
        self.metadata, self.clock = metadata, clock
        reference = metadata.calibration.stats if metadata.calibration is not None else {}
        self.home = tuple(float(np.median(reference[k])) if reference.get(k) else 0.5 for k in ("part_x", "part_y"))
        self.read_at = None  # when the last frame was read (perf_counter)
        self._reset()

    def _reset(self) -> None:
        self.best = None        # the judged frame of this part whose part sits nearest home
        self.fallback = None    # its nearest frame that could not be judged, for a part with none judged
        self.began = None       # when its first frame came (clock)
        self.skipped = 0        # live frames dropped unjudged while it was in view
        self.empty = 0          # frames in a row without a part
        self.edge = False       # a frame touched the edge since its last judged one
        self.last = None        # where its last judged frame showed it (x, y)

    def feed(self, verdict) -> list:
        """What to keep now, given one more frame's verdict. A live frame read STALL_S after the one before, with
        frames dropped between, ends the passage first: the station looked away, and the part it saw last has gone."""
        looked_away = self.read_at is not None and verdict.skipped and verdict.read_at - self.read_at >= STALL_S
        self.read_at = verdict.read_at
        return (self.end() if looked_away else []) + self._fed(verdict)

    def _fed(self, verdict) -> list:
        stats = verdict.result.stats if verdict.result is not None else None
        if verdict.status == ERROR or stats is None:
            return [verdict]
        if verdict.status == NOT_INSPECTABLE and inspectability.frame_problems(stats, self.metadata):
            return [verdict]
        if verdict.status == NOT_INSPECTABLE and inspectability.no_part(stats, self.metadata):
            self.empty += 1
            return self.end() if self.empty >= EMPTY_FRAMES else []
        kept = []
        self.empty = 0
        if verdict.status == NOT_INSPECTABLE:
            self.edge |= inspectability.cut_off(stats, self.metadata)
            self.fallback = self._nearer(self.fallback, verdict)
        else:
            where = self._where(verdict)
            if self.best is not None and self.edge and np.hypot(*np.subtract(where, self.last)) >= NEXT_PART:
                kept += self.end()  # judged, cut by the edge, judged far from there: the next part
            self.best = self._nearer(self.best, verdict)
            self.edge, self.last = False, where
        self.began = self.clock() if self.began is None else self.began
        self.skipped += verdict.skipped
        if self.best is None and self.clock() - self.began >= PART_MAX_S:  # parts pass, and none whole: say so
            kept += self.end()
        return kept

    def end(self) -> list:
        """The verdict of the part that was in view, if one was, on the frames seen of it; and a fresh start. Called
        as the part leaves, and when its passage cannot go on: the source ended, or was lost (the part in view
        before a camera drops has gone by the time it is back, and the one then in view is another)."""
        if self.best is not None:
            chosen = self.best
        elif self.fallback is not None:
            why = self.fallback.error.removeprefix("not inspectable: ")
            chosen = dataclasses.replace(self.fallback, error=f"not inspectable: no frame of this part could be "
                                                               f"judged; where it sat best, {why}")
        else:
            chosen = None
        skipped = self.skipped
        self._reset()
        if chosen is None:
            return []
        return [dataclasses.replace(chosen, skipped=skipped, latency_ms=(time.perf_counter() - chosen.read_at) * 1000.0)]

    def _nearer(self, held, verdict):
        """Whichever of the two frames shows its part nearer where the training parts sat."""
        if held is None:
            return verdict
        return verdict if self._distance(verdict) < self._distance(held) else held

    def _distance(self, verdict) -> float:
        return float(np.hypot(*np.subtract(self._where(verdict), self.home)))

    @staticmethod
    def _where(verdict) -> tuple[float, float]:
        """Where the frame shows its part, as shares of the frame's width and height (a judged frame has one)."""
        stats = verdict.result.stats
        return (stats.part_x, stats.part_y) if stats.part_x is not None else (float("inf"), float("inf"))
