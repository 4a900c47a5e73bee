"""Evidence: the frames behind the verdicts, kept as lossless PNGs with their overlays, within a disk budget.

Files go to ``FOLDER/YYYY-MM-DD/HHMMSS.mmm_<frame>_<status>.png`` (and ``..._overlay.png``); the log row's
``evidence`` column holds that path relative to FOLDER. A writer thread encodes and writes them, so a slow
disk holds up the line by at most 16 frames, and one that hangs not at all; when the folder passes its
budget, the oldest days go first (then the oldest files of the day), so a full disk never stops inspection.
Only day folders count toward the budget, and only their files are ever deleted: FOLDER may hold anything
else of the user's.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import queue
import re
import shutil
import threading
from collections import deque
from pathlib import Path
from time import monotonic

import cv2
import numpy as np

from .diskroom import min_free_bytes
from .overlay import render_overlay
from .preprocess import to_float

log = logging.getLogger(__name__)
DAY = re.compile(r"\d{4}-\d{2}-\d{2}")  # the name of a day's folder, as ``keep`` makes it
PARTIAL = ".part"  # a file being written; it takes its name only once whole and on the disk
STUCK_S = 5.0  # a writer that has finished nothing for this long is stuck (a hung disk): frames are dropped


class Evidence:
    """Keeps evidence files in FOLDER under ``max_bytes`` (None: no limit); ``close`` waits for the writes."""

    def __init__(self, folder: Path, *, max_bytes: int | None = None, save_all: bool = False):
        self.folder, self.max_bytes, self.save_all = Path(folder), max_bytes, save_all
        self.folder.mkdir(parents=True, exist_ok=True)
        self.failed = 0  # frames whose evidence could not be written (a dropped frame's log row names none)
        self._failed_lock = threading.Lock()  # counted by the writer and, for frames dropped, by the station
        self.last_failed: float | None = None  # when the last one was counted (monotonic seconds)
        self._progress = monotonic()  # when the writer last finished a frame (or started)
        for leftover in (p for day in self._days() for p in day.glob("*" + PARTIAL)):  # a station killed mid-write
            leftover.unlink()
        self._total = sum(p.stat().st_size for day in self._days() for p in day.glob("*.png"))
        self.min_free = min_free_bytes(self.folder)  # left free: the log, usually on the same disk, never starves
        self._oldest: deque[Path] = deque()  # the oldest day's files not yet deleted, oldest first
        self._writing = ""  # the day folder the last frame went to
        self._queue: queue.Queue = queue.Queue(maxsize=16)  # a disk slower than the line holds it up, at most 16 behind
                                                            # (one that hangs does not: see ``keep``)
        self._thread = threading.Thread(target=self._write, name="evidence", daemon=True)
        self._thread.start()

    def wants(self, status: str) -> bool:
        """Which verdicts are kept: defects and frames without a verdict, or every frame with ``save_all``."""
        return self.save_all or status in ("defect", "not_inspectable")

    def keep(self, time: str, frame: str, status: str, image: np.ndarray, anomaly_map: np.ndarray | None,
             threshold: float) -> str | None:
        """Queue the frame (and its overlay when there is a map) for writing; its path relative to the folder, or
        None when it is dropped: a writer that has finished nothing for STUCK_S (a hung network share) must not
        stop the line, which waits for a full queue at most that long once, then drops until the writer moves."""
        relative = f"{time[:10]}/{time[11:23].replace(':', '')}_{_safe(frame)}_{status}.png"
        stuck = monotonic() - self._progress > STUCK_S
        try:
            self._queue.put((relative, image, anomaly_map, threshold), timeout=0.001 if stuck else STUCK_S)
        except queue.Full:
            self._count_failed(1)
            log.error("evidence of %s dropped: its writer has written nothing for %.0f s (a hung disk?); "
                      "%d frames without evidence so far", frame, monotonic() - self._progress, self.failed)
            return None
        return relative

    def close(self) -> None:
        """Write everything queued, then stop the writer; one stuck on a hung disk is given up after STUCK_S
        without progress, and what it still held is counted, so the station can stop and flush its log."""
        self._progress = monotonic()  # an idle writer is not a stuck one: it has STUCK_S from now to finish
        try:
            self._queue.put(None, timeout=STUCK_S)
        except queue.Full:
            pass
        while self._thread.is_alive() and monotonic() - self._progress <= STUCK_S:
            self._thread.join(timeout=0.5)
        if self._thread.is_alive():
            self._count_failed(self._queue.qsize() + 1)  # the queued ones, and the one being written
            log.error("evidence writer stuck for %.0f s (a hung disk?): gave up on it", monotonic() - self._progress)

    def _count_failed(self, frames: int) -> None:
        with self._failed_lock:
            self.failed += frames
            self.last_failed = monotonic()

    def _write(self) -> None:
        """The writer thread. It must outlive whatever a disk or a person does to the folder: dead, it would leave
        the station waiting to queue its next frame, and the line would stop being judged."""
        while (item := self._queue.get()) is not None:
            self._tend()  # room first: a budget gives up old evidence before the disk fills
            self._store(*item)  # written, or counted as failed: whatever the folder's trouble, never neither
            self._tend()
            self._progress = monotonic()

    def _tend(self) -> None:
        """The folder made again if it was taken away, and kept within its budget; a problem there is logged and
        left for the next frame, which is written or counted all the same."""
        try:
            self._made_again()
            self._enforce_budget()
        except Exception:
            log.exception("the evidence folder's upkeep hit a problem; the writer goes on")

    def _made_again(self) -> None:
        """The folder, taken away by hand while the station runs (a cleanup), is made again and counted from zero:
        every later frame's evidence would otherwise fail, and the budget count what is no longer there."""
        if not self.folder.is_dir():
            self.folder.mkdir(parents=True, exist_ok=True)
            self._total, self._oldest = 0, deque()
            log.warning("the evidence folder %s was taken away while the station ran: made again", self.folder)

    def _store(self, relative: str, image: np.ndarray, anomaly_map: np.ndarray | None, threshold: float) -> None:
        target = self.folder / relative
        overlay = target.with_name(target.stem + "_overlay.png")
        self._writing = target.parent.name
        try:
            if self._short_of_room():
                raise OSError(errno.ENOSPC, "the disk is nearly full; its last room is kept for the log")
            pictures = [(target, png_pixels(image))]
            if anomaly_map is not None:
                pictures.append((overlay, render_overlay(to_float(image, 3), anomaly_map, threshold)))
            target.parent.mkdir(exist_ok=True)
            for path, picture in pictures:
                _write_whole(path, picture)
        except Exception as exc:  # a full disk, say: no truncated file stays behind, and the writer goes on
            self._count_failed(1)
            for path in (target, overlay, _partial(target), _partial(overlay)):
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
            expected = isinstance(exc, (OSError, ValueError))  # no room, no permission, a frame PNG cannot hold
            if self.failed == 1 or self.failed % 100 == 0 or not expected:
                log.error("could not write evidence %s (%s): %d frames without evidence so far", target,
                          getattr(exc, "strerror", None) or exc, self.failed, exc_info=not expected)
            return
        self._total += sum(path.stat().st_size for path, _ in pictures if path.is_file())  # one taken away at once

    def _short_of_room(self) -> bool:
        return shutil.disk_usage(self.folder).free < self.min_free

    def _enforce_budget(self) -> None:
        """Delete the oldest files until the folder is within its budget, and its disk has room for the log (only
        with a budget: without one, nothing of the user's evidence is deleted, new frames are dropped instead).
        The oldest day's files are listed once and taken from the front, so a day of a million files costs one
        listing, not one per frame."""
        while self.max_bytes is not None and (self._total > self.max_bytes or self._short_of_room()):
            if not self._oldest:
                self._oldest = self._oldest_day()
                if not self._oldest:
                    return  # nothing of the budget's is left to delete
            path = self._oldest.popleft()
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:  # taken away by hand meanwhile
                continue
            self._total -= size
            if not self._oldest:
                self._remove_if_empty(path.parent)

    def _oldest_day(self) -> deque[Path]:
        """The evidence files of the oldest day that has any, oldest first; emptied day folders go on the way. The
        day being written goes last: named by a clock that reads years back it comes first, and its frames were
        deleted as soon as they were written while older days stayed."""
        for day in sorted(self._days(), key=lambda day: day.name == self._writing):  # stable: by name otherwise
            files = sorted(day.glob("*.png"))
            if files:
                return deque(files)
            self._remove_if_empty(day)
        return deque()

    @staticmethod
    def _remove_if_empty(day: Path) -> None:
        """A day folder goes once its evidence has; one that also holds something of the user's stays."""
        try:
            day.rmdir()
        except OSError:
            return
        log.info("evidence budget: removed %s", day)

    def _days(self) -> list[Path]:
        """The day folders evidence was written to, oldest first; nothing else in FOLDER is the budget's."""
        return sorted(d for d in self.folder.iterdir() if DAY.fullmatch(d.name) and d.is_dir())


def _partial(path: Path) -> Path:
    return path.with_name(path.name + PARTIAL)


def _write_whole(path: Path, picture: np.ndarray) -> None:
    """Write the PNG under a temporary name, sync it, then give it its name: OpenCV's imwrite streams the file
    as it encodes, so a station killed (or a power cut) mid-write left a truncated PNG that its log row names."""
    done, encoded = cv2.imencode(".png", picture)
    if not done:
        raise ValueError("the PNG encoder could not encode it")
    partial = _partial(path)
    with open(partial, "wb") as file:
        file.write(encoded.data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)


def png_pixels(image: np.ndarray) -> np.ndarray:
    """The frame as a PNG can hold it: 8- and 16-bit as they are; a float frame in [0, 1] as 16-bit (PNG has
    no float, and OpenCV would write it as 8-bit 0s and 1s: a black picture of the part). Anything else is
    refused rather than written as something it is not."""
    if image.dtype in (np.uint8, np.uint16):
        return image
    if image.dtype in (np.float32, np.float64):  # outside [0, 1] only for a frame refused for it (--save-all)
        return np.rint(np.clip(np.nan_to_num(image), 0.0, 1.0) * 65535.0).astype(np.uint16)
    raise ValueError(f"a frame of dtype {image.dtype} has no lossless PNG form")


def _safe(frame: str) -> str:
    """A file-name-safe short form of a frame's name (a path's last part, or the frame number)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(frame).stem if "/" in frame or "\\" in frame else frame)[-60:]
