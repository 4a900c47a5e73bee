"""The model file as bytes: read once, and refused unless it is exactly the file that was exported.

ONNX carries no checksum: a block of zeros left by a power cut during a copy, or a flipped bit on an old card,
still parses and scores, only differently, and every verdict after it is silently wrong. Export therefore seals
the file: its sha256 goes into the ONNX metadata under ``SEAL_KEY``, computed over the file with the seal's
own 64 characters as zeros (the way a header checksum is), so the edge checks it with hashlib alone.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from .errors import ModelError

SEAL_KEY = "insightad.sha256"
BLANK_SEAL = "0" * 64
_LFS_MAGIC = b"version https://git-lfs"


def read(path: Path) -> bytes:
    """The model file's bytes, with the usual mistakes named: no file, or a Git LFS pointer in its place."""
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist")
    data = path.read_bytes()
    if data.startswith(_LFS_MAGIC):
        raise ModelError(f"{path} is a Git LFS pointer, not a model: run `git lfs pull`")
    return data


def seal(data: bytes) -> bytes:
    """A serialized model holding ``BLANK_SEAL`` once as its ``SEAL_KEY`` value, with the seal filled in."""
    blank = BLANK_SEAL.encode()
    if data.count(blank) != 1:
        raise ValueError(f"the model must hold the blank seal exactly once, not {data.count(blank)} times")
    return data.replace(blank, hashlib.sha256(data).hexdigest().encode())


def is_sealed(data: bytes, recorded: str | None, path: Path) -> bool:
    """True when the file matches its seal, False when it has none (exported before seals; read as before).

    Raises ModelError when it has one and does not match: the file is not the one export wrote.
    """
    if recorded is None:
        return False
    if re.fullmatch("[0-9a-f]{64}", recorded) and data.count(recorded.encode()) == 1:
        at, view = data.find(recorded.encode()), memoryview(data)  # hashed around the seal: no copy of the file
        digest = hashlib.sha256(view[:at])
        digest.update(BLANK_SEAL.encode())
        digest.update(view[at + len(recorded):])
        if digest.hexdigest() == recorded:
            return True
    raise ModelError(f"{path} is damaged: it is not the file that was exported (its content does not match the "
                     "sha256 sealed into it at export); copy it again from the training machine or export it again")


class FileWatch:
    """Whether the file a model was loaded from still holds that model.

    A model exported or copied to a running station's model path is not used until the station starts again;
    unsaid, the engineer who put it there believes the new model judges while the old one does, for weeks.
    ``look`` is cheap (one stat; the file is hashed again only when the stat changes).
    """

    def __init__(self, path: Path, sha256: str, holder: str = "station"):
        self.path, self.sha256, self.holder = path, sha256, holder  # holder: who judges with it, a station or a server
        self.state = "same"  # same, other (another file there) or gone
        self._stat: tuple | None = None  # (size, modified, inode) when last hashed

    def look(self) -> str | None:
        """What changed since the last look, in words (another model at the path, none, the one in service
        again); None when nothing did."""
        try:
            info = self.path.stat()
            stat = (info.st_size, info.st_mtime_ns, info.st_ino)
            state = self.state if stat == self._stat else ("same" if self._digest() == self.sha256 else "other")
            self._stat = stat
        except OSError:
            state, self._stat = "gone", None
        if state == self.state:
            return None
        self.state = state
        return self.words()

    def _digest(self) -> str:
        """The file's sha256, read a megabyte at a time: never a second copy of the model in memory."""
        digest = hashlib.sha256()
        with open(self.path, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()

    def words(self) -> str:
        """The file's state as a person reads it."""
        if self.state == "same":
            return f"{self.path} holds the model in service again (sha256 {self.sha256[:12]})"
        return (f"{self.path} " + ("is gone" if self.state == "gone" else "holds another model now")
                + f": this {self.holder} still judges with the model it loaded (sha256 {self.sha256[:12]}); "
                + ("a restart would find none" if self.state == "gone" else "restart it to use the new one"))
