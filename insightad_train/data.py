"""Find images in an MVTec-AD-layout folder (or a plain folder of good images) and fingerprint them."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from insightad_edge.errors import DataError
from insightad_edge.preprocess import IMAGE_SUFFIXES

GOOD = "good"


@dataclass(frozen=True)
class Sample:
    """One test image, its defect type (``good`` for none) and its ground-truth mask if any."""

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
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _labelled(split: Path, masks: Path) -> tuple[Sample, ...]:
    if not split.is_dir():
        return ()
    samples = []
    for defect_dir in sorted(d for d in split.iterdir() if d.is_dir()):
        for image in list_images(defect_dir):
            mask = masks / defect_dir.name / f"{image.stem}_mask.png"
            samples.append(Sample(image, defect_dir.name, mask if mask.is_file() else None))
    return tuple(samples)


def load_dataset(root: Path) -> Dataset:
    """Read ``root`` as MVTec AD (train/good, test/<type>, ground_truth/<type>) or as a plain folder of good images."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist")
    train_dir = root / "train" / GOOD
    if train_dir.is_dir():
        train = list_images(train_dir)
        test = _labelled(root / "test", root / "ground_truth")
        validation = _labelled(root / "validation", root / "ground_truth_validation")
    else:
        train, test, validation = list_images(root), (), ()
    if not train:
        raise DataError(f"no good training images in {train_dir if train_dir.is_dir() else root}")
    return Dataset(root, tuple(train), test, validation)


def fingerprint(paths: list[Path] | tuple[Path, ...]) -> str:
    """A short hash of the files' names and bytes: two runs on the same data print the same value."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return "sha256:" + digest.hexdigest()[:16]
