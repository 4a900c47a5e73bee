"""Frames in from a folder a camera writes to: each new image file judged once, when it is complete; a restart
judges what came while no station watched; subfolders watched with ``recursive`` (``Tree``), or named as unwatched.
"""
from __future__ import annotations

import os
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .frames import BACKOFF_S, Event, Frame, Item, Stop
from .imagefiles import (
    IMAGE_SUFFIXES,
    first_three,
    holds_images,
    kind_of,
    kinds_text,
    named_as_image,
    other_kinds,
    parts_folder,
    readable,
    unjudged,
)

POLL_S = 0.05          # how often a folder is looked at
SETTLE_S = 0.2         # a file must keep its size and modification time this long before it is read
RECHECK_PER_POLL = 256  # files judged before whose modification time is looked at again per poll (a rewrite)
RELIST_S = 1.0         # a folder is listed again at least this often, whatever its modification time says
UNREADABLE_AFTER_S = 5.0  # a settled file that still does not decode after this long is judged (as an error)
IGNORED_AFTER_S = 5.0  # a file not named as an image is said to be unjudged once it has stayed this long
RECENT_S = 60.0        # a subfolder changed this recently is listed again every RELIST_S; an older one, when it changes
RESTART_MARGIN_S = 60.0  # files that came this long before an earlier station was last heard of, and never judged
                         # by it, are judged on a restart too (a crash loses its last moments; clocks are coarse)


def folder_frames(folder: Path, stop: Stop, *, existing: bool, seen: Callable[[str, str], bool],
                  last_active: Callable[[str], Optional[float]] = lambda _source: None,
                  recursive: bool = False, own: Collection[Path] = ()) -> Iterator[Item]:
    """Each new image file in FOLDER (``recursive``: or in its subfolders, see ``Tree``), when it has stopped
    changing and decodes (or is clearly broken); a file written again under the same name (a camera that always
    writes ``last.png``) is a new part, judged again.

    What the station writes itself (``own``: its log's files, its evidence folder) is no part: never judged, nor
    named among the files and subfolders left unjudged (a station started in the camera's folder with its log
    there, or its evidence in a subfolder of a tree it watches, judged its own evidence again and again).
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

    name, own = str(folder), frozenset(map(str, own))
    tree = Tree(folder, own) if recursive else None
    list_folder = tree.listing if tree is not None else lambda: _listing(folder, own)
    images, subfolders, others = list_folder() or ([], set(), [])
    there_before = set(images)  # only these can have been judged by an earlier run (``seen``)
    done: dict[str, int] = {}  # path -> its modification time when judged
    pending: dict[str, tuple[tuple, float, float]] = {}  # path -> ((size, modified), unchanged since, first seen)
    missed = 0
    if not existing:
        done, missed = _came_while_down(name, there_before, stop, seen, last_active(name))
    yield Event("opened", name, f"watching {folder} for new images" + (" (and those already there)" if existing else "")
                + (f" (and {missed} that came while no station watched it)" if missed else ""))
    if holding := {sub for sub in subfolders if holds_images(os.path.join(folder, sub))}:
        yield _unwatched(folder, holding, new=False)
    told: set[str] = set()  # the kinds of files not named as images, once said
    strangers = _lingering({}, others, told, time.monotonic())[0]
    recheck, fresh, judged, listed = 0, [], [], (None, 0.0)  # listed: the folder's modification time, and when
    unreadable, repeats = False, Repeats()
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
            yield Frame(name, key, image=image, path=Path(key), not_inspectable=repeats.of(key, image))
            judging += time.monotonic() - handed
        pause = max(POLL_S, 2.0 * (time.monotonic() - now - judging))  # the watch's own cost, not the model's
        stop.beat(pause)
        stop.wait(pause)


class Repeats:
    """Whether a folder's new picture is its last one again. No two shots of a camera are alike, pixel for pixel
    (its sensor's noise sees to that), so such a file is the last shot written again: a trigger that fired without
    an exposure, a camera or PLC that saved its last buffer for the next part. Judged, it gave the part the camera
    never saw the verdict of the one before: ok, most often."""

    def __init__(self):
        self.last: Optional[tuple[str, np.ndarray]] = None

    def of(self, key: str, image: Optional[np.ndarray]) -> Optional[str]:
        """Why the picture in file KEY cannot be judged when it repeats the last one, else None."""
        if image is None:
            return None
        earlier, self.last = self.last, (key, image)
        if earlier is None or not np.array_equal(earlier[1], image):
            return None
        return (f"the same picture as {readable(earlier[0])}, pixel for pixel: no two shots of a camera are alike, so "
                "this is that one written again (a trigger without an exposure, a buffer saved twice); the part it "
                "was taken for was not seen")


def _came_while_down(name: str, paths: set[str], stop: Stop, seen: Callable[[str, str], bool],
                     since: Optional[float]) -> tuple[dict[str, int], int]:
    """Of the files there at the start, those an earlier station left unjudged that came while no station watched:
    how many, and the others with their modification times (not to be judged). ``since``: when the log last heard
    of the folder (epoch seconds; None: no station watched it before, and every file there is old).

    A file came meanwhile when it arrived (the later of its modification and change times: a copy that keeps its
    source's modification time, as ``rsync -a`` and robocopy make, arrives when it is made) after ``since``, or
    after the newest file judged: on a network share the times are the server's clock, which may run minutes
    behind the station PC's, and by the PC's clock alone the parts that came during a short restart looked old
    and passed unjudged. RESTART_MARGIN_S before either counts too (a crash loses its last moments).
    """
    arrivals: dict[str, tuple[int, int]] = {}
    for path in paths:
        stop.beat()  # a folder of a hundred thousand files on a network share takes a while to look at
        try:
            stat = os.stat(path)
        except OSError:
            continue
        arrivals[path] = (max(stat.st_mtime_ns, stat.st_ctime_ns), stat.st_mtime_ns)
    if since is None:
        return {path: modified for path, (_, modified) in arrivals.items()}, 0
    judged: dict[str, bool] = {}

    def was_judged(path: str) -> bool:  # asked of the log once per file
        if path not in judged:
            judged[path] = seen(name, path)
        return judged[path]

    margin = int(RESTART_MARGIN_S * 1e9)
    cutoff = int(since * 1e9) - margin
    newest_first = sorted(arrivals, key=lambda path: -arrivals[path][0])
    if newest_judged := next((path for path in newest_first if was_judged(path)), None):  # after a few lookups
        cutoff = min(cutoff, arrivals[newest_judged][0] - margin)  # by the folder's own clock
    done, missed = {}, 0
    for path, (arrived, modified) in arrivals.items():
        if arrived >= cutoff and not was_judged(path):
            missed += 1
        else:
            done[path] = modified
    return done, missed


def _listing(folder: Path, own: frozenset[str] = frozenset()) -> Optional[tuple[list[str], set[str], list[str]]]:
    """The image files' paths in FOLDER, sorted by name; its subfolders' names; and the names of its files left
    unjudged (``imagefiles.unjudged``; no stat: the directory says which entries are files); entries whose path is
    in ``own`` (the station's own files) are none of these. None when the folder cannot be read."""
    try:
        with os.scandir(folder) as scan:
            entries = list(scan)
    except OSError:
        return None
    images, others, subfolders = [], [], set()
    for entry in entries:  # one pass: a shift's folder holds tens of thousands, listed every second
        if entry.path in own:
            continue
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

    def __init__(self, root: Path, own: frozenset[str] = frozenset()):
        self.root, self.own = str(root), own  # own: paths the station writes itself (see ``_listing``)
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
            listed = cached[1] if unchanged and time.time() - info.st_mtime >= RECENT_S else _listing(Path(folder), self.own)
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
    shown_names = first_three(sorted(names))
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
