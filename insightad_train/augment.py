"""Seeded geometric augmentation of good images, applied before preprocessing as a camera would see it.

``seed`` holds the user's original ranges (rotation ±40°, shift ±20%, shear ±20%, zoom ±20%,
horizontal flip). ``light`` keeps small pose jitter and no mirror: a mirrored part (a screw thread,
a printed label) is itself a defect for many parts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Ranges:
    rotation_deg: float
    shift: float
    shear: float
    zoom: float
    flip: bool


PRESETS = {
    "seed": Ranges(rotation_deg=40.0, shift=0.2, shear=0.2, zoom=0.2, flip=True),
    "light": Ranges(rotation_deg=5.0, shift=0.03, shear=0.02, zoom=0.03, flip=False),
    "none": None,
}


def random_affine(rng: np.random.Generator, size: tuple[int, int], ranges: Ranges) -> np.ndarray:
    """A 2x3 map about the image centre: flip, rotate, shear, zoom, then shift."""
    height, width = size
    angle = math.radians(rng.uniform(-ranges.rotation_deg, ranges.rotation_deg))
    shear = rng.uniform(-ranges.shear, ranges.shear)
    zoom = rng.uniform(1.0 - ranges.zoom, 1.0 + ranges.zoom)
    shift = rng.uniform(-ranges.shift, ranges.shift, size=2) * (width, height)
    flip = -1.0 if ranges.flip and rng.random() < 0.5 else 1.0
    c, s = math.cos(angle), math.sin(angle)
    linear = zoom * np.array([[c, -s], [s, c]]) @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag([flip, 1.0])
    centre = np.array([width / 2.0, height / 2.0])
    offset = centre + shift - linear @ centre
    return np.hstack([linear, offset[:, None]])


def augment(image: np.ndarray, rng: np.random.Generator, ranges: Ranges | None) -> np.ndarray:
    """A randomly transformed copy (the image itself when ``ranges`` is None); edges repeat the border."""
    if ranges is None:
        return image
    matrix = random_affine(rng, image.shape[:2], ranges)
    return cv2.warpAffine(image, matrix, (image.shape[1], image.shape[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
