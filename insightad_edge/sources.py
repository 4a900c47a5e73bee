"""Frames in: what a source is (a folder that fills up, a video file, a camera, a network stream, or any iterable
of frames) and the reader for it. Every reader yields ``Frame`` and ``Event`` objects (``frames``), one at a time;
a folder's is in ``folders``, a camera's and a stream's in ``streams``.
"""
from __future__ import annotations

import os
import stat
import time
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import Callable, Optional

from .folders import folder_frames
from .frames import Event, Frame, Item, Stop
from .imagefiles import readable
from .streams import STREAM_SCHEMES, live_frames, shown


def source_kind(source) -> str:
    """What SOURCE is: ``frames`` (an iterable), ``camera``, ``stream``, ``folder`` or ``video``; a name that is
    none of these raises FileNotFoundError, so a mistyped path stops a station before it starts."""
    if not isinstance(source, (str, os.PathLike, int)):
        return "frames"
    text = str(source)
    if isinstance(source, int) or text.isdigit() or camera_device(text):
        return "camera"
    if text.lower().startswith(STREAM_SCHEMES):
        return "stream"
    if Path(text).is_dir():
        return "folder"
    if Path(text).is_file():
        return "video"
    raise FileNotFoundError(f"{source} is neither a folder, a video file, a camera (an index or its device file) nor "
                            "a stream URL")


def camera_device(text: str) -> bool:
    """Whether TEXT names a camera's device file: /dev/video2, or the name udev gives the camera itself
    (/dev/v4l/by-id/usb-...-video-index0), which stays its own where indices follow the order cameras are found at
    boot, and two cameras can swap. One of Video4Linux's names not there (unplugged) is a camera that does not open
    yet; another missing name under /dev (a folder in /dev/shm not made yet) is no camera."""
    try:
        return stat.S_ISCHR(os.stat(text).st_mode)
    except FileNotFoundError:
        return text.startswith(("/dev/v4l/", "/dev/video"))
    except OSError:
        return False


def check_options(source, *, existing: bool, stride: int, per_part: bool = False, recursive: bool = False,
                  own: Collection[Path] = ()) -> str:
    """SOURCE's kind, once options that would mean nothing for it are refused rather than ignored (ValueError), and
    a folder that lies in one the station writes itself (``own``: its evidence folder), whose day folders would
    come among the parts."""
    kind = source_kind(source)
    if kind == "folder" and (holder := next((p for p in own if Path(source).resolve().is_relative_to(p)), None)):
        raise ValueError(f"the station would keep its evidence in {holder}, which holds {source}, the folder it "
                         "watches: the pictures it saves would come among the parts; keep them in a folder of their own")
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
                per_part: bool = False, recursive: bool = False, own: Collection[Path] = ()) -> Iterator[Item]:
    """The right reader for SOURCE: a folder, a video file, a camera (an index or its device file), a URL, or an
    iterable of frames. ``seen`` (source, frame) and ``last_active`` (source) say what an earlier station on it
    judged, and when it was last heard of; ``own``, what the station writes itself (see ``folder_frames``)."""
    kind = check_options(source, existing=existing, stride=stride, per_part=per_part, recursive=recursive, own=own)
    if kind == "frames":
        return iterable_frames(source, stop, stride)
    if kind == "camera":
        return live_frames(int(source) if str(source).isdigit() else Path(source), str(source), stop, stride)
    if kind == "stream":
        return live_frames(str(source), shown(str(source)), stop, stride)
    if kind == "folder":
        return folder_frames(Path(source).resolve(), stop, existing=existing, seen=seen, last_active=last_active,
                             recursive=recursive, own=own)
    return video_frames(Path(source), stop, stride)


def video_frames(path: Path, stop: Stop, stride: int = 1) -> Iterator[Item]:
    """Every ``stride``-th frame of a video file, in order; ends at the end of the file."""
    import cv2

    if readable(str(path)) != str(path):  # OpenCV takes the process down on such a name, before it opens anything
        raise FileNotFoundError(f"{readable(str(path))}: OpenCV cannot open a video whose name is not UTF-8; rename it")
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
