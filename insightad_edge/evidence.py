"""Evidence: the frames behind the verdicts, kept as lossless PNGs with their overlays, within a disk budget.

Files go to ``FOLDER/YYYY-MM-DD/HHMMSS.mmm_<frame>_<status>.png`` (and ``..._overlay.png``); the log row's
``evidence`` column holds that path relative to FOLDER. When the folder passes its budget, the oldest days
go first (then the oldest files of the day), so a full disk never stops inspection.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import cv2
import numpy as np

from .overlay import render_overlay

log = logging.getLogger(__name__)


class Evidence:
    """Writes evidence files and keeps FOLDER under ``max_bytes`` (None: no limit)."""

    def __init__(self, folder: Path, *, max_bytes: int | None = None, save_all: bool = False):
        self.folder, self.max_bytes, self.save_all = Path(folder), max_bytes, save_all
        self.folder.mkdir(parents=True, exist_ok=True)
        self._total = sum(p.stat().st_size for p in self.folder.rglob("*.png"))

    def wants(self, status: str) -> bool:
        """Which verdicts are kept: defects and frames without a verdict, or every frame with ``save_all``."""
        return self.save_all or status in ("defect", "not_inspectable")

    def keep(self, time: str, frame: str, status: str, image: np.ndarray, anomaly_map: np.ndarray | None,
             threshold: float) -> str | None:
        """Save the frame (and its overlay when there is a map); the frame's path relative to the folder."""
        day = self.folder / time[:10]
        day.mkdir(exist_ok=True)
        stem = f"{time[11:23].replace(':', '')}_{_safe(frame)}_{status}"
        written = []
        if not cv2.imwrite(str(day / f"{stem}.png"), image):
            log.error("could not write evidence %s", day / f"{stem}.png")
            return None
        written.append(day / f"{stem}.png")
        if anomaly_map is not None:
            gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY if image.shape[2] == 4
                                                             else cv2.COLOR_BGR2GRAY)
            gray = gray.astype(np.float32) / (65535.0 if gray.dtype == np.uint16 else 255.0)
            if cv2.imwrite(str(day / f"{stem}_overlay.png"), render_overlay(gray, anomaly_map, threshold)):
                written.append(day / f"{stem}_overlay.png")
        self._total += sum(p.stat().st_size for p in written)
        self._enforce_budget()
        return written[0].relative_to(self.folder).as_posix()

    def _enforce_budget(self) -> None:
        if self.max_bytes is None or self._total <= self.max_bytes:
            return
        for day in sorted(d for d in self.folder.iterdir() if d.is_dir()):
            for path in sorted(day.glob("*.png")):
                if self._total <= self.max_bytes:
                    return
                size = path.stat().st_size
                path.unlink()
                self._total -= size
            if not any(day.iterdir()):
                day.rmdir()
                log.info("evidence budget: removed %s", day)


def _safe(frame: str) -> str:
    """A file-name-safe short form of a frame's name (a path's last part, or the frame number)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(frame).stem if "/" in frame or "\\" in frame else frame)[-60:]
