"""Find images in an MVTec-layout folder (or a plain folder of good images) and fingerprint them.

Three layouts of the MVTec family are read as they come: MVTec AD (``test/<type>/*.png``, masks
``ground_truth/<type>/<name>_mask.png``), MVTec 3D-AD (colour images in ``rgb/`` next to ``gt/`` masks of the
same name, depth in ``xyz/`` ignored) and MVTec LOCO (``ground_truth/<type>/<name>/`` holds one mask per
anomaly). A ``validation`` split is read like ``test``.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from insightad_edge.errors import DataError, ImageError
from insightad_edge.imagefiles import first_three, holds_images, kinds_text, named_as_image, other_kinds, parts_folder
from insightad_edge.preprocess import decode, load, to_float

GOOD = "good"


@dataclass(frozen=True)
class Sample:
    """One test image, its defect type (``good`` for none) and its ground-truth mask (a file, or a folder of
    masks whose union it is) if any."""

    path: Path
    defect: str
    mask: Path | None = None

    @property
    def is_anomalous(self) -> bool:
        return self.defect != GOOD


@dataclass(frozen=True)
class Dataset:
    """The good training images and the labelled test (and optional validation) images of one category."""

    root: Path
    train: tuple[Path, ...]
    test: tuple[Sample, ...] = field(default=())
    validation: tuple[Sample, ...] = field(default=())

    @property
    def category(self) -> str:
        return self.root.name


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and named_as_image(p.name))


def images_in(folder: Path) -> list[Path]:
    """The images of one split folder: in ``rgb/`` where MVTec 3D-AD keeps them, else in the folder itself."""
    return list_images(folder / "rgb" if (folder / "rgb").is_dir() else folder)


def _mask_of(image: Path, defect_dir: Path, masks: Path) -> Path | None:
    candidates = (masks / defect_dir.name / f"{image.stem}_mask.png",  # MVTec AD
                  defect_dir / "gt" / image.name,                       # MVTec 3D-AD
                  masks / defect_dir.name / image.stem)                 # MVTec LOCO: a folder of masks
    return next((c for c in candidates if c.is_file() or (c.is_dir() and list_images(c))), None)


def _labelled(split: Path, masks: Path) -> tuple[Sample, ...]:
    if not split.is_dir():
        return ()
    samples = []
    for defect_dir in sorted(d for d in split.iterdir() if d.is_dir() and parts_folder(d.name)):
        samples += [Sample(image, defect_dir.name, _mask_of(image, defect_dir, masks)) for image in images_in(defect_dir)]
    return tuple(samples)


def mask_files(mask: Path) -> list[Path]:
    """The files of one ground-truth mask: itself, or those of its folder (MVTec LOCO)."""
    return list_images(mask) if mask.is_dir() else [mask]


def read_mask(mask: Path) -> np.ndarray:
    """The defect region (bool, the image's size): a mask file's nonzero pixels, or the union of a folder's."""
    region = None
    for file in mask_files(mask):
        try:
            pixels = to_float(load(file), 1)  # decoded as the edge decodes every image
        except ImageError as exc:
            raise DataError(f"ground-truth mask: {exc}") from None
        region = pixels > 0 if region is None else region | (pixels > 0)
    return region


def load_dataset(root: Path) -> Dataset:
    """Read ``root`` as an MVTec layout (train/good, test/<type>, masks) or as a plain folder of good images."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist")
    train_dir = root / "train" / GOOD
    if train_dir.is_dir():
        train = images_in(train_dir)
        test = _labelled(root / "test", root / "ground_truth")
        validation = _labelled(root / "validation", root / "ground_truth_validation")
    else:
        train, test, validation = list_images(root), (), ()
    if not train:
        where = train_dir if train_dir.is_dir() else root
        folders = sorted(d.name for d in where.iterdir() if d.is_dir())
        raise DataError(f"no good training images in {where}" + (
            f" (its subfolders {first_three(folders)} are not read: put the "
            "good images in one folder, or in train/good of the MVTec layout)" if folders else ""))
    return Dataset(root, tuple(train), test, validation)


def not_read(folder: Path) -> list[str]:
    """What the folder of the good images holds that is not read as one: files not named as images (by kind) and
    subfolders with images in them, in words; a camera's .raw files or a day's subfolder must not be left out
    unsaid."""
    entries = sorted(folder.iterdir())
    found = []
    if kinds := other_kinds(p.name for p in entries if p.is_file()):
        found.append(f"files not named as images: {kinds_text(kinds)}")
    if held := [p.name for p in entries if p.is_dir() and parts_folder(p.name) and holds_images(p)]:
        found.append(f"subfolders holding images, which are not read: {first_three(held)}")
    return found


def refuse_unreadable(paths: list[Path] | tuple[Path, ...], what: str) -> None:
    """Every image decodes, checked before the work that needs them all: leaving one out unsaid would change the
    result, and meeting it halfway would end the work there."""
    problems = []
    for path in paths:
        try:
            decode(path)
        except ImageError as exc:
            problems.append(str(exc))
    refuse(problems, len(paths), what)


def refuse(problems: list[str], count: int, what: str) -> None:
    """A DataError naming what is wrong with some of ``count`` images, all at once (the first three in words), when
    anything is: the person fixes them in one go, then runs again."""
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise DataError(f"{len(problems)} of the {count} {what} cannot be used (take them out or replace them, "
                        f"then run again): {shown}")


def content_digest(path: Path) -> bytes:
    """The SHA-256 of a file's bytes: what makes two images the same picture, and a dataset the same data."""
    return hashlib.sha256(path.read_bytes()).digest()


def copies_among(paths: list[Path] | tuple[Path, ...]) -> int:
    """How many files repeat another's bytes exactly (a folder of one picture copied 40 times holds 39)."""
    return len(paths) - len({content_digest(path) for path in paths})


def fingerprint(paths: list[Path] | tuple[Path, ...]) -> str:
    """A short hash of the files' names and bytes: two runs on the same data print the same value."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(os.fsencode(path.name))  # the name's own bytes: UTF-8 or not, as the disk holds it
        digest.update(content_digest(path))
    return "sha256:" + digest.hexdigest()[:16]
