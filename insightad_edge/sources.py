"""Frames in: a folder that fills up, a video file, a camera, a network stream, or any iterable of frames.

Every source yields ``Frame`` objects, one at a time, and never ends on a dropped stream: it reopens with
backoff and reports the loss as an event. Live sources (cameras, URLs) are read by their own thread that
keeps only the latest frame, so a slow model never builds a backlog; the frames it had to drop are counted.
A live frame identical to the one before is no news and is not judged again; a camera that has sent only
such repeats for a while is frozen, and counts as lost.
"""
from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np

from .preprocess import (
    IMAGE_SUFFIXES,
    holds_images,
    kind_of,
    kinds_text,
    named_as_image,
    other_kinds,
    parts_folder,
    unjudged,
)

log = logging.getLogger(__name__)
STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "udp://", "tcp://")
POLL_S = 0.05          # how often a folder is looked at
SETTLE_S = 0.2         # a file must keep its size and modification time this long before it is read
RECHECK_PER_POLL = 256  # files judged before whose modification time is looked at again per poll (a rewrite)
RELIST_S = 1.0         # a folder is listed again at least this often, whatever its modification time says
UNREADABLE_AFTER_S = 5.0  # a settled file that still does not decode after this long is judged (as an error)
IGNORED_AFTER_S = 5.0  # a file not named as an image is said to be unjudged once it has stayed this long
RECENT_S = 60.0        # a subfolder changed this recently is listed again every RELIST_S; an older one, when it changes
RESTART_MARGIN_S = 60.0  # files that came this long before an earlier station was last heard of, and never judged
                         # by it, are judged on a restart too (a crash loses its last moments; clocks are coarse)
BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)  # waits between attempts to reopen a lost stream
STREAM_TIMEOUT_MS = 5000  # a live source that opens or delivers nothing new for this long counts as lost
NEXT_WAIT_S = 0.5      # how long the station waits for a live source's next frame before it looks at Stop again


@dataclass(frozen=True)
class Frame:
    """One frame to judge: ``image`` (as OpenCV delivers it) and/or ``path`` (its file), where it came from and
    when it was read. A folder's file that never decoded comes with ``image`` None: its verdict is an error."""

    source: str
    frame: str
    image: Optional[np.ndarray] = field(default=None, repr=False)
    path: Optional[Path] = None
    read_at: float = field(default_factory=time.perf_counter)
    skipped: int = 0


@dataclass(frozen=True)
class Event:
    """Something that happened to a source: ``opened``, ``lost``, ``reopened``, ``ended``."""

    kind: str
    source: str
    message: str


Item = Union[Frame, Event]


class Stop:
    """A flag the sources check between frames: set it (from a signal handler) to end them cleanly; and the pulse
    of the station's loop, which a source beats each time it turns (a folder's poll, each frame it hands over).
    A loop that stops beating has stalled: a listing that hangs on a network share, or a sink that blocks."""

    def __init__(self):
        self._event = threading.Event()
        self._alive_until = time.monotonic()

    def set(self) -> None:
        self._event.set()

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


def source_kind(source) -> str:
    """What SOURCE is: ``frames`` (an iterable), ``camera``, ``stream``, ``folder`` or ``video``; a name that is
    none of these raises FileNotFoundError, so a mistyped path stops a station before it starts."""
    if not isinstance(source, (str, os.PathLike, int)):
        return "frames"
    text = str(source)
    if isinstance(source, int) or text.isdigit():
        return "camera"
    if text.lower().startswith(STREAM_SCHEMES):
        return "stream"
    if Path(text).is_dir():
        return "folder"
    if Path(text).is_file():
        return "video"
    raise FileNotFoundError(f"{source} is neither a folder, a video file, a camera index nor a stream URL")


def check_options(source, *, existing: bool, stride: int, per_part: bool = False, recursive: bool = False) -> str:
    """SOURCE's kind, once options that would mean nothing for it are refused rather than ignored (ValueError)."""
    kind = source_kind(source)
    if kind == "folder" and stride > 1:  # judging every N-th file would pass the others unjudged
        raise ValueError("every file in a folder is a part of its own: stride is for videos and streams")
    if existing and kind != "folder":
        raise ValueError("only a folder has images there already: existing is for folders")
    if per_part and kind == "folder":
        raise ValueError("every file in a folder is a part of its own: per part is for a free-running camera")
    if recursive and kind != "folder":
        raise ValueError("only a folder has subfolders: recursive is for folders")
    return kind


def open_source(source, *, stop: Stop, existing: bool = False,
                seen: Callable[[str, str], bool] = lambda _source, _frame: False, stride: int = 1,
                last_active: Callable[[str], Optional[float]] = lambda _source: None,
                per_part: bool = False, recursive: bool = False) -> Iterator[Item]:
    """The right reader for SOURCE: a folder, a video file, a camera index, a URL, or an iterable of frames.
    ``seen`` (source, frame) and ``last_active`` (source) say what an earlier station on it judged, and when it
    was last heard of (see ``folder_frames``)."""
    kind = check_options(source, existing=existing, stride=stride, per_part=per_part, recursive=recursive)
    if kind == "frames":
        return iterable_frames(source, stop, stride)
    if kind == "camera":
        return live_frames(int(source), str(source), stop, stride)
    if kind == "stream":
        return live_frames(str(source), shown(str(source)), stop, stride)
    if kind == "folder":
        return folder_frames(Path(source).resolve(), stop, existing=existing, seen=seen, last_active=last_active,
                             recursive=recursive)
    return video_frames(Path(source), stop, stride)


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


def folder_frames(folder: Path, stop: Stop, *, existing: bool, seen: Callable[[str, str], bool],
                  last_active: Callable[[str], Optional[float]] = lambda _source: None,
                  recursive: bool = False) -> Iterator[Item]:
    """Each new image file in FOLDER (``recursive``: or in its subfolders, see ``Tree``), when it has stopped
    changing and decodes (or is clearly broken); a file written again under the same name (a camera that always
    writes ``last.png``) is a new part, judged again.

    Files present at the start are judged only with ``existing``, or when they came while no station watched:
    an earlier station on FOLDER was ``last_active`` (epoch seconds) before they were written or arrived (the
    later of the modification and change times: a copy that keeps its source's modification time, as ``rsync -a``
    and robocopy make, arrives when it is made), and never judged them (a crash, a reboot, a restart: parts that
    arrived meanwhile are not passed unjudged). Files ``seen``
    (source, frame) are never judged again.
    A folder that fills up over a shift stays cheap to watch: it is listed again when its own modification
    time says files came or went (and every RELIST_S, for file systems with coarse times), files judged before
    are looked at again RECHECK_PER_POLL at a time, and a poll waits at least twice as long as it took.
    A folder that cannot be read (a network share gone) is lost until it can be again, and forgets nothing
    meanwhile: its files are not parts that were taken away, and are not judged twice when it comes back.
    """
    from .errors import ImageError
    from .preprocess import load

    name = str(folder)
    tree = Tree(folder) if recursive else None
    list_folder = tree.listing if tree is not None else lambda: _listing(folder)
    images, subfolders, others = list_folder() or ([], set(), [])
    there_before = set(images)  # only these can have been judged by an earlier run (``seen``)
    done: dict[str, int] = {}  # path -> its modification time when judged
    pending: dict[str, tuple[tuple, float, float]] = {}  # path -> ((size, modified), unchanged since, first seen)
    missed = 0
    if not existing:
        since = last_active(name)  # None: no station watched this folder before
        cutoff_ns = None if since is None else int((since - RESTART_MARGIN_S) * 1e9)
        for path in there_before:
            stop.beat()  # a folder of a hundred thousand files on a network share takes a while to look at
            try:
                stat = os.stat(path)
            except OSError:
                continue
            arrived = max(stat.st_mtime_ns, stat.st_ctime_ns)  # a copy that keeps its source's time (rsync -a,
            if cutoff_ns is not None and arrived >= cutoff_ns and not seen(name, path):  # robocopy) arrives now
                missed += 1  # came after the last station here was last heard of, and never judged: judge it
            else:
                done[path] = stat.st_mtime_ns
    yield Event("opened", name, f"watching {folder} for new images" + (" (and those already there)" if existing else "")
                + (f" (and {missed} that came while no station watched it)" if missed else ""))
    if holding := {sub for sub in subfolders if holds_images(os.path.join(folder, sub))}:
        yield _unwatched(folder, holding, new=False)
    told: set[str] = set()  # the kinds of files not named as images, once said
    strangers = _lingering({}, others, told, time.monotonic())[0]
    recheck, fresh, judged, listed = 0, [], [], (None, 0.0)  # listed: the folder's modification time, and when
    unreadable = False
    while not stop.is_set():
        stop.beat()
        now, judging = time.monotonic(), 0.0  # judging: time spent by the consumer of the frames this poll yields
        changed = tree.signature() if tree is not None else _signature(str(folder))
        if changed != listed[0] or now - listed[1] >= RELIST_S:  # files came or went, or a while has passed
            listing = list_folder()
            if (listing is None) != unreadable:
                unreadable = listing is None
                yield (Event("lost", name, f"cannot read {folder} (a network share gone?); waiting for it") if unreadable
                       else Event("reopened", name, f"{folder} can be read again"))
            if unreadable:
                stop.beat(BACKOFF_S[0])
                stop.wait(BACKOFF_S[0])
                continue
            listed = (changed, now)
            paths, now_subfolders, others = listing
            if new_subfolders := now_subfolders - subfolders:
                yield _unwatched(folder, new_subfolders, new=True)
            subfolders = now_subfolders
            present = set(paths)  # files taken away are forgotten: one written again under their name is new
            done = {path: modified for path, modified in done.items() if path in present}
            there_before &= present
            fresh, judged = [p for p in paths if p not in done], [p for p in paths if p in done]
            strangers, stayed = _lingering(strangers, others, told, now)
            if stayed:
                yield _ignored(folder, stayed)
                told |= set(stayed)
        window = judged[recheck:recheck + RECHECK_PER_POLL]
        recheck = recheck + RECHECK_PER_POLL if recheck + RECHECK_PER_POLL < len(judged) else 0
        for key in sorted({p for p in fresh if p not in done}.union(window, pending)):  # new, being written, rechecked
            if stop.is_set():  # a burst of a thousand files is not judged to its end after Ctrl-C or systemctl stop
                return
            stop.beat()
            signature = _signature(key)
            if signature is None:  # gone again (a temporary file renamed away)
                pending.pop(key, None)
                continue
            if done.get(key) == signature[1]:
                continue
            if key not in done and key in there_before and seen(name, key):
                done[key] = signature[1]
                continue
            before = pending.get(key)
            if before is None or before[0] != signature:  # still being written
                pending[key] = (signature, now, before[2] if before else now)
                continue
            if now - before[1] < SETTLE_S:
                continue
            try:
                image = load(key)
            except ImageError:
                if now - before[2] < UNREADABLE_AFTER_S:
                    continue  # perhaps still being written with pauses: wait for more bytes
                image = None  # settled and still broken: judged, so its row says why
            done[key] = signature[1]
            pending.pop(key, None)
            handed = time.monotonic()
            yield Frame(name, key, image=image, path=Path(key))
            judging += time.monotonic() - handed
        pause = max(POLL_S, 2.0 * (time.monotonic() - now - judging))  # the watch's own cost, not the model's
        stop.beat(pause)
        stop.wait(pause)


def _listing(folder: Path) -> Optional[tuple[list[str], set[str], list[str]]]:
    """The image files' paths in FOLDER, sorted by name; its subfolders' names; and the names of its files left
    unjudged (``preprocess.unjudged``; no stat: the directory says which entries are files). None when the folder
    cannot be read."""
    try:
        with os.scandir(folder) as scan:
            entries = list(scan)
    except OSError:
        return None
    images, others, subfolders = [], [], set()
    for entry in entries:  # one pass: a shift's folder holds tens of thousands, listed every second
        if entry.is_dir():
            if parts_folder(entry.name):
                subfolders.add(entry.name)
        elif entry.is_file():
            if named_as_image(entry.name):
                images.append(entry.path)
            elif unjudged(entry.name):
                others.append(entry.name)
    return sorted(images), subfolders, others


def _lingering(strangers: dict[str, float], names: list[str], told: set[str],
               now: float) -> tuple[dict[str, float], dict[str, str]]:
    """Files left unjudged, of kinds not yet ``told``, with when each was first listed (STRANGERS updated from
    a listing's NAMES); and the kinds, each with an example, of those that stayed IGNORED_AFTER_S. An upload under
    a temporary name (WinSCP's ``.filepart``, a camera's ``.tmp``) is renamed within moments: naming its kind
    would be a false alarm, shown in red until the station stops."""
    strangers = {name: strangers.get(name, now) for name in names if kind_of(name) not in told}
    return strangers, other_kinds(name for name, since in strangers.items() if now - since >= IGNORED_AFTER_S)


class Tree:
    """The image files under a folder and all its subfolders but the hidden and the system's (``parts_folder``):
    a camera that writes into a folder of the day, watched from their parent. Each subfolder is listed again when
    its own modification time changes, and every RELIST_S while it changed in the last RECENT_S (coarse clocks);
    the folder itself at every listing. So a month of day folders costs a stat each per poll, not a listing."""

    def __init__(self, root: Path):
        self.root = str(root)
        self.known: dict[str, tuple[Optional[tuple[int, int]], tuple]] = {}  # folder -> (signature, its _listing)

    def signature(self) -> tuple:
        """What changes when a file comes or goes anywhere known (each folder's size and modification time; the
        folder itself is among them once listed)."""
        return tuple(_signature(folder) for folder in self.known or [self.root])

    def listing(self) -> Optional[tuple[list[str], set[str], list[str]]]:
        """As ``_listing`` gives for one folder, for the whole tree (no subfolder is left unwatched, so none is
        named); None when the folder itself cannot be read. A subfolder that cannot be read now keeps the files it
        had (they are not parts taken away, to be judged again when it can be read); one that is gone loses them.
        A link back up the tree is followed once."""
        images, others, known, waiting, visited = [], [], {}, [self.root], set()
        while waiting:
            folder = waiting.pop()
            try:
                info = os.stat(folder)
            except OSError:
                if folder == self.root:
                    return None
                continue
            if (info.st_dev, info.st_ino) in visited:
                continue
            visited.add((info.st_dev, info.st_ino))
            signature, cached = (info.st_size, info.st_mtime_ns), self.known.get(folder)
            unchanged = cached is not None and cached[0] == signature and folder != self.root
            listed = cached[1] if unchanged and time.time() - info.st_mtime >= RECENT_S else _listing(Path(folder))
            if listed is None:  # cannot be read now
                if folder == self.root:
                    return None
                if cached is None:
                    continue
                listed = cached[1]
            known[folder] = (signature, listed)
            images += listed[0]
            others += listed[2]
            waiting += [os.path.join(folder, sub) for sub in sorted(listed[1])]
        self.known = known
        return sorted(images), set(), others


def _unwatched(folder: Path, names: set[str], new: bool) -> Event:
    """Subfolders are not watched: a camera that writes into a folder of the day would otherwise go unjudged
    from midnight on, with nothing saying why."""
    shown_names = ", ".join(sorted(names)[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return Event("unwatched", str(folder), (f"a new subfolder appeared in {folder} ({shown_names})" if new else
                                            f"subfolders of {folder} hold images ({shown_names})")
                 + ": subfolders are not watched, images there are not judged; watch the folder the camera writes to, "
                   "or this one with --recursive")


def _ignored(folder: Path, others: dict[str, str]) -> Event:
    """Files whose names do not end in an image suffix are not judged: a camera set to write another format, or
    no suffix at all, would otherwise leave the station watching in silence while every part goes unjudged."""
    return Event("ignored", str(folder), f"files in {folder} not named as images are not judged: {kinds_text(others)}; "
                                         f"images end in {', '.join(sorted(IMAGE_SUFFIXES))}")


def _signature(path: str) -> Optional[tuple[int, int]]:
    """(size, modification time in ns) of a file, or None when it is gone."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def video_frames(path: Path, stop: Stop, stride: int = 1) -> Iterator[Item]:
    """Every ``stride``-th frame of a video file, in order; ends at the end of the file."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise FileNotFoundError(f"{path} is not a video OpenCV can read")
    name = str(path)
    declared = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))  # from the container's index; estimated for some formats
    yield Event("opened", name, f"reading video {path}")
    index = 0
    try:
        while not stop.is_set():
            stop.beat()
            read_at = time.perf_counter()
            ok, image = capture.read()
            if not ok:
                break
            if index % stride == 0:
                yield Frame(name, str(index), image=image, read_at=read_at)
            index += 1
    finally:
        capture.release()
    cut_short = not stop.is_set() and declared - index > max(2, declared // 100)
    yield Event("ended", name, f"end of video after {index} frames" + (
        f" of the {declared} its header declares: the file is cut short or damaged" if cut_short else ""))


def iterable_frames(frames: Iterable, stop: Stop, stride: int = 1) -> Iterator[Item]:
    """Frames from any iterable (a GenICam camera's loop, a list): arrays, paths or encoded bytes."""
    name = type(frames).__name__
    for index, item in enumerate(frames):
        if stop.is_set():
            break
        if index % stride:
            continue
        if isinstance(item, (str, os.PathLike)):
            yield Frame(name, str(item), path=Path(item))
        else:
            yield Frame(name, str(index), image=item)


NEW, REPEAT, FROZEN, LOST = "new", "repeat", "frozen", "lost"


class Novelty:
    """Whether a live frame is news. A live sensor's noise makes no two frames equal, so a frame identical to
    the last new one is a hung camera's buffer sent again (or a still scene on a stream that codes no noise);
    repeats alone for STREAM_TIMEOUT_MS since the last new frame, or since the source opened, mean frozen."""

    def __init__(self):
        self.last: Optional[np.ndarray] = None
        self.since = time.monotonic()

    def restart(self) -> None:
        """The source has just (re)opened: its frames get the full time to change again."""
        self.since = time.monotonic()

    def of(self, image: np.ndarray) -> str:
        now = time.monotonic()
        if self.last is None or not np.array_equal(image, self.last):
            self.last, self.since = image, now
            return NEW
        return FROZEN if now - self.since > STREAM_TIMEOUT_MS / 1000.0 else REPEAT


class LatestFrameReader:
    """A thread that reads a live source as fast as it delivers and keeps only the newest frame.

    A lost stream is reopened with backoff; the events (lost, reopened) wait in a queue for the consumer.
    Frames that are no news are dropped, and a frozen source is lost (once) until its images change again
    (``Novelty``): a frozen camera never passes parts it no longer sees.
    """

    def __init__(self, target, name: str, stop: Stop):
        self.target, self.name, self.stop = target, name, stop
        self._closed = threading.Event()
        self._lock = threading.Condition()
        self._frame: Optional[tuple[int, np.ndarray, float]] = None
        self._events: list[Event] = []
        self.delivered = 0
        self._capture = None  # the thread's own, as the rest of its state: how often it tried, frozen or not
        self._attempt, self._ever_opened, self._frozen, self._news = 0, False, False, Novelty()
        self._thread = threading.Thread(target=self._run, name=f"reader {name}", daemon=True)

    def start(self) -> LatestFrameReader:
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
        else:
            capture = cv2.VideoCapture(self.target)
        if capture.isOpened():
            return capture
        capture.release()
        return None

    def _note(self, kind: str, message: str) -> None:
        log.log(logging.WARNING if kind == "lost" else logging.INFO, "%s: %s", self.name, message)
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
                self._frozen = False
                said = str(exc).replace(str(self.target), self.name)  # a driver may name the URL, password and all
                self._note("lost", f"{self.name} failed ({type(exc).__name__}: {said}); reopening with backoff")
                self._back_off()
        self._release()

    def _read_one(self) -> None:
        """Open the source if it is not, read one frame, and deliver it if it is news."""
        if self._capture is None and not self._reopen():
            return
        read_at = time.perf_counter()
        ok, image = self._capture.read()
        kind = self._news.of(image) if ok and image is not None else LOST
        if kind == LOST:
            self._release()
            self._frozen = False
            self._note("lost", f"lost {self.name}; reopening with backoff")
        elif kind == FROZEN:
            self._release()
            if not self._frozen:
                self._note("lost", f"{self.name} has sent the same image for {STREAM_TIMEOUT_MS / 1000.0:g} s: "
                           "the camera is frozen (or the scene is still on a stream that codes no noise)")
            self._frozen = True
            self._back_off()
        elif kind == NEW:
            if self._frozen:
                self._note("reopened", f"{self.name} sends new images again")
                self._frozen, self._attempt = False, 0
            with self._lock:
                self.delivered += 1
                self._frame = (self.delivered, image, read_at)
                self._lock.notify_all()

    def _reopen(self) -> bool:
        """Open the source; say so (a frozen source is back when its images change, not when it opens again)."""
        self._capture = self._open()
        if self._capture is None:
            if self._attempt == 0 and not self._ever_opened:
                self._note("lost", f"cannot open {self.name}; retrying")
            self._back_off()
            return False
        if not self._frozen:
            kind = "reopened" if self._ever_opened else "opened"
            self._note(kind, f"{kind} {self.name}" + (f" after {self._attempt} attempts" if self._attempt else ""))
            self._attempt = 0
        self._ever_opened = True
        self._news.restart()
        return True

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
