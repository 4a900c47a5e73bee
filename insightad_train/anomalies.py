"""Synthetic defects on held-back good images: a validation that needs no test labels.

Each kind imitates a family of real defects, placed on the part (where the edge's segmentation finds one,
else in the frame's middle) at a realistic size, a few percent of the frame: a patch pasted from another
good image, a scratch, a local blur, a local brightness change, a local colour change (colour frames), a
small dent (local warp), and a missing piece (background painted over the part). How well a model
separates these from the untouched images is how `fit --arch auto` chooses a recipe.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import cv2
import numpy as np

from insightad_edge.preprocess import brightness_level, foreground, gray_of

from .preprocessing import frame_edge

KINDS = ("patch", "scratch", "blur", "brightness", "colour", "dent", "missing")
SIZE = (0.03, 0.08)  # a defect's extent, as a share of the frame's short side


def corrupt(image: np.ndarray, kind: str, rng: np.random.Generator, donor: np.ndarray, dark: bool) -> np.ndarray:
    """A copy of ``image`` (float32 in [0, 1], gray or BGR) with one synthetic defect of ``kind``."""
    height, width = image.shape[:2]
    radius = max(2, int(rng.uniform(*SIZE) * min(height, width) / 2))
    cx, cy = _place(image, rng, dark, radius)
    blob = np.zeros((height, width), np.float32)
    axes = (radius, max(1, int(radius * rng.uniform(0.4, 1.0))))
    cv2.ellipse(blob, (cx, cy), axes, rng.uniform(0, 180), 0, 360, 1.0, -1)
    blob = cv2.GaussianBlur(blob, (0, 0), max(1.0, radius / 6))
    weight = blob[..., None] if image.ndim == 3 else blob
    out = image.copy()
    if kind == "patch":
        sx, sy = rng.integers(radius, width - radius), rng.integers(radius, height - radius)
        shift = np.float32([[1, 0, sx - cx], [0, 1, sy - cy]])
        moved = cv2.warpAffine(donor, shift, (width, height), flags=cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
        out = image * (1 - weight) + moved * weight
    elif kind == "scratch":
        line = np.zeros((height, width), np.float32)
        angle = rng.uniform(0, math.pi)
        dx, dy = math.cos(angle) * radius * 1.5, math.sin(angle) * radius * 1.5
        cv2.line(line, (int(cx - dx), int(cy - dy)), (int(cx + dx), int(cy + dy)), 1.0,
                 max(1, round(min(height, width) / 250)))
        line = cv2.GaussianBlur(line, (0, 0), 0.7)
        level = 1.0 if rng.random() < 0.5 else 0.0
        mix = line[..., None] if image.ndim == 3 else line
        out = image * (1 - mix) + level * mix
    elif kind == "blur":
        out = image * (1 - weight) + cv2.GaussianBlur(image, (0, 0), max(1.5, radius / 3)) * weight
    elif kind == "brightness":
        out = image * (1 + rng.choice([-1, 1]) * rng.uniform(0.2, 0.4) * weight)
    elif kind == "colour" and image.ndim == 3:
        tint = rng.uniform(-0.25, 0.25, 3).astype(np.float32)
        out = image + weight * (tint - tint.mean())
    elif kind == "colour":  # a gray frame has no colour to change: darken instead
        out = image * (1 - 0.3 * weight)
    elif kind == "dent":
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        push = blob * radius * 0.5
        angle = rng.uniform(0, 2 * math.pi)
        out = cv2.remap(image, xs + push * math.cos(angle), ys + push * math.sin(angle), cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REFLECT)
    elif kind == "missing":
        level = float(np.median(frame_edge(image), axis=0).mean())  # gray: the median; colour: its channels' mean
        out = image * (1 - weight) + level * weight
    else:
        raise ValueError(f"unknown synthetic defect {kind!r}; choose one of {KINDS}")
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _place(image: np.ndarray, rng: np.random.Generator, dark: bool, radius: int) -> tuple[int, int]:
    """A point on the part (the segmented foreground, eroded so the defect sits on it), else mid-frame."""
    height, width = image.shape[:2]
    gray = gray_of(image)
    level = brightness_level(gray)
    mask = foreground(np.clip(gray * (0.5 / max(level, 1e-3)), 0, 1), dark)[1]
    share = mask.mean()
    if 0.002 < share < 0.6:
        inner = cv2.erode(mask, np.ones((3, 3), np.uint8), iterations=max(1, radius // 3))
        ys, xs = np.nonzero(inner if inner.any() else mask)
        pick = rng.integers(len(xs))
        return int(xs[pick]), int(ys[pick])
    return (int(rng.uniform(0.2, 0.8) * width), int(rng.uniform(0.2, 0.8) * height))


def validation_set(images: list[np.ndarray], seed: int, dark: bool) -> Iterator[tuple[np.ndarray, str]]:
    """Every held-back image once untouched (kind "good") and once with each kind of synthetic defect, made one
    at a time: all of them at once, for 800x1600 colour frames, took 5 GB."""
    rng = np.random.default_rng([seed, 7])
    for image in images:
        yield image, "good"
    for index, image in enumerate(images):
        donor = images[(index + 1) % len(images)]
        for kind in KINDS:
            yield corrupt(image, kind, rng, donor, dark), kind


def synthetic_validation(metadata, infer, holdout, seed: int) -> dict:
    """AUROC of the model's scores between the held-back good images and their synthetic-defect copies,
    overall and per kind, and what the calibrated threshold catches of them."""
    from insightad_edge.detector import run_pipeline
    from insightad_edge.preprocess import decode

    from .metrics import auroc

    images = [decode(p, metadata.preprocess.channels) for p in holdout]
    labelled = validation_set(images, seed, metadata.preprocess.foreground_dark)
    scores, kinds = [], []
    while batch := list(itertools.islice(labelled, 8)):
        results = run_pipeline([image for image, _ in batch], metadata, metadata.threshold.value, infer,
                               not_inspectable="report")
        scores += [np.inf if r.score is None else r.score for r in results]  # no verdict is never "good"
        kinds += [kind for _, kind in batch]
    scores, kinds = np.array(scores), np.array(kinds)
    good = scores[kinds == "good"]
    by_kind = {kind: auroc(np.r_[np.zeros(len(good)), np.ones(int((kinds == kind).sum()))],
                           np.r_[good, scores[kinds == kind]]) for kind in KINDS}
    defective = kinds != "good"
    return {"auroc": auroc(defective, scores), "by_kind": by_kind,
            "caught_at_threshold": float(np.mean(scores[defective] > metadata.threshold.value)),
            "good_flagged_at_threshold": float(np.mean(good > metadata.threshold.value)),
            "n_good": len(good), "n_synthetic": int(defective.sum())}
