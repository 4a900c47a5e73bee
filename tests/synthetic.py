"""Small synthetic part images for the tests: a dark elongated part with a head, on a bright background.

Made here so the suite needs no licensed data. A defect is a bright scratch across the part.
"""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np


def part_image(rng: np.random.Generator, size: int = 128, angle: float | None = None, defect: bool = False,
               brightness: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A uint8 gray image and its uint8 defect mask (255 on the defect)."""
    image = np.full((size, size), 200, np.float32) + rng.normal(0, 3, (size, size)).astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi) if angle is None else angle
    cx, cy = size / 2 + rng.uniform(-size * 0.08, size * 0.08, 2)
    c, s = math.cos(angle), math.sin(angle)
    length, width = 0.30 * size, 0.06 * size

    def at(u, v):
        return int(round(cx + c * u - s * v)), int(round(cy + s * u + c * v))

    shaft = np.array([at(-length, -width), at(length, -width), at(length, width), at(-length, width)], np.int32)
    cv2.fillPoly(image, [shaft], 70)
    cv2.circle(image, at(-length, 0), int(width * 2.0), 60, -1)  # the head: the heavier end
    for k in range(6):  # thread stripes
        u = -0.1 * length + k * 0.18 * length
        cv2.line(image, at(u, -width), at(u + 0.08 * length, width), 110, max(1, size // 100))
    mask = np.zeros((size, size), np.uint8)
    if defect:
        u = rng.uniform(-0.5, 0.8) * length
        cv2.line(mask, at(u, -width), at(u + 0.1 * length, width), 255, max(2, size // 40))
        image[mask > 0] = 230
    image = np.clip(image * brightness, 0, 255)
    return image.astype(np.uint8), mask


def write_category(root: Path, draw, defect: str, n_train: int, n_test: int) -> Path:
    """An MVTec-AD-layout folder: train/good, test/good and test/DEFECT with its ground_truth masks, each image
    and mask drawn by ``draw(defective)``."""
    for folder, count, defective in (("train/good", n_train, False), ("test/good", n_test, False),
                                     (f"test/{defect}", n_test, True)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image, mask = draw(defective)
            cv2.imwrite(str(root / folder / f"{i:03d}.png"), image)
            if defective:
                (root / "ground_truth" / defect).mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(root / "ground_truth" / defect / f"{i:03d}_mask.png"), mask)
    return root


def write_mvtec(root: Path, rng: np.random.Generator, n_train: int = 32, n_test: int = 4, size: int = 96) -> Path:
    """An MVTec-AD-layout folder of the screw-like part, scratched on test/scratch."""
    return write_category(root, lambda defective: part_image(rng, size, defect=defective), "scratch", n_train, n_test)


def background(rng: np.random.Generator, height: int, width: int, level: float = 200.0) -> np.ndarray:
    """An empty fixture: the parts' background with the same sensor noise, uint8."""
    return np.clip(level + rng.normal(0, 3, (height, width)), 0, 255).astype(np.uint8)


def embed(image: np.ndarray, rng: np.random.Generator, height: int, width: int, top: int | None = None,
          left: int | None = None) -> np.ndarray:
    """``image`` placed in a larger (or cut by a smaller) frame of background, centred unless told otherwise."""
    frame = background(rng, height, width)
    top = (height - image.shape[0]) // 2 if top is None else top
    left = (width - image.shape[1]) // 2 if left is None else left
    src_y, src_x = max(0, -top), max(0, -left)
    dst_y, dst_x = max(0, top), max(0, left)
    h = min(image.shape[0] - src_y, height - dst_y)
    w = min(image.shape[1] - src_x, width - dst_x)
    frame[dst_y:dst_y + h, dst_x:dst_x + w] = image[src_y:src_y + h, src_x:src_x + w]
    return frame


PART_BGR = (40, 60, 200)      # a red part: gray level 99.6 (OpenCV's 0.114 B + 0.587 G + 0.299 R)
DEFECT_BGR = (200, 110, 40)   # a blue stain of the same gray level: only colour tells it apart


def colour_part_image(rng: np.random.Generator, size: int = 96, defect: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A BGR uint8 image of a red disc with a white band on a dark background, and its defect mask; the
    defect is a stain that differs from the part in hue only."""
    image = np.full((size, size, 3), 30, np.float32) + rng.normal(0, 2, (size, size, 3)).astype(np.float32)
    centre = (int(size / 2 + rng.uniform(-3, 3)), int(size / 2 + rng.uniform(-3, 3)))
    cv2.circle(image, centre, int(size * 0.32), PART_BGR, -1)
    cv2.rectangle(image, (centre[0] - int(size * 0.3), centre[1] - 3), (centre[0] + int(size * 0.3), centre[1] + 3),
                  (220, 220, 220), -1)
    mask = np.zeros((size, size), np.uint8)
    if defect:
        spot = (centre[0] + int(rng.uniform(-0.15, 0.15) * size), centre[1] + int(rng.choice([-1, 1]) * 0.17 * size))
        cv2.circle(mask, spot, max(3, size // 12), 255, -1)
        image[mask > 0] = DEFECT_BGR
    return np.clip(image, 0, 255).astype(np.uint8), mask


def write_colour_mvtec(root: Path, rng: np.random.Generator, n_train: int = 36, n_test: int = 8, size: int = 64) -> Path:
    """An MVTec-layout folder of colour parts whose only defect is a change of hue."""
    return write_category(root, lambda defective: colour_part_image(rng, size, defective), "stain", n_train, n_test)


def tread_part_image(rng: np.random.Generator, width: int = 72, height: int = 96,
                     defect: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A gray uint8 portrait frame: a black part with a bright tread whose stripes shift from shot to shot (it
    turns about its own axis), on a dark noisy background; the defect is a small bright cut on the part."""
    image = np.full((height, width), 24, np.float32) + rng.normal(0, 4, (height, width)).astype(np.float32)
    left, right, top, bottom = int(width * 0.3), int(width * 0.7), int(height * 0.12), int(height * 0.88)
    image[top:bottom, left:right] = 12
    phase = rng.uniform(0, 10)
    for y in np.arange(top - 10 + phase, bottom, 10.0):
        y0, y1 = int(max(top, y)), int(min(bottom, y + 4))
        if y1 > y0:
            image[y0:y1, left + 3:right - 3] = 70
    image += rng.normal(0, 2, image.shape).astype(np.float32)
    mask = np.zeros((height, width), np.uint8)
    if defect:
        cx = int(rng.uniform(left + 4, right - 4))
        cy = int(rng.uniform(top + 4, bottom - 4))
        cv2.circle(mask, (cx, cy), 3, 255, -1)
        image[mask > 0] = 160
    return np.clip(image, 0, 255).astype(np.uint8), mask


def banded_part_image(rng: np.random.Generator, body: float, width: int = 150, height: int = 200,
                      defect: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A gray uint8 portrait frame: a part of gray level ``body`` (the dark background is 18) whose middle third
    carries a bright band of fine stripes, one blob to a threshold; the part moves a little from shot to shot.
    The defect is a bright cut on the part's plain thirds, outside the band."""
    image = np.full((height, width), 18, np.float32) + rng.normal(0, 3, (height, width)).astype(np.float32)
    dx, dy = rng.integers(-12, 13, 2)
    left, right = int(width * 0.33) + dx, int(width * 0.67) + dx
    top, bottom = int(height * 0.17) + dy, int(height * 0.83) + dy
    image[top:bottom, left:right] += body - 18
    third = (bottom - top) // 3
    for y in np.arange(top + third + rng.uniform(0, 4), bottom - third, 4.0):
        image[int(y):int(y) + 2, left + 4:right - 4] = 90
    mask = np.zeros((height, width), np.uint8)
    if defect:
        upper = rng.random() < 0.5
        cy = int(rng.uniform(top + 6, top + third - 6) if upper else rng.uniform(bottom - third + 6, bottom - 6))
        cv2.circle(mask, (int(rng.uniform(left + 8, right - 8)), cy), 4, 255, -1)
        image[mask > 0] = 120
    return np.clip(image, 0, 255).astype(np.uint8), mask


def write_banded_mvtec(root: Path, rng: np.random.Generator, n_train: int = 40, n_test: int = 10) -> Path:
    """An MVTec-layout folder of the part with a bright band over the middle of a dim body."""
    return write_category(root, lambda defective: banded_part_image(rng, body=34, defect=defective), "cut",
                          n_train, n_test)


def write_tread_mvtec(root: Path, rng: np.random.Generator, n_train: int = 40, n_test: int = 10) -> Path:
    """An MVTec-layout folder of the turning tread part."""
    return write_category(root, lambda defective: tread_part_image(rng, defect=defective), "cut", n_train, n_test)


def paired_marks_image(rng: np.random.Generator, size: int = 64, defect: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A gray uint8 frame: a fixtured product (placed within 2 pixels) with two small marks 22 pixels apart,
    both bright or both dark (two variants); the defect pairs a bright mark with a dark one. Each mark alone,
    with what lies within 7 pixels of it, is as in good frames: a logical anomaly, only wrong beside the other."""
    image = np.full((size, size), 128, np.float32) + rng.normal(0, 3, (size, size)).astype(np.float32)
    cx, cy = (size // 2 + int(v) for v in rng.integers(-2, 3, 2))
    levels = [220, 40] if defect else [rng.choice([220, 40])] * 2
    if defect and rng.random() < 0.5:
        levels.reverse()
    for x, level in zip((cx - 11, cx + 11), levels):
        image[cy - 2:cy + 3, x - 2:x + 3] = level
    mask = np.zeros((size, size), np.uint8)
    if defect:
        mask[cy - 4:cy + 5, cx - 15:cx + 16] = 255
    return np.clip(image, 0, 255).astype(np.uint8), mask


def write_paired_mvtec(root: Path, rng: np.random.Generator, n_train: int = 40, n_test: int = 12) -> Path:
    """An MVTec-layout folder of the paired marks, mismatched on test/mismatch."""
    return write_category(root, lambda defective: paired_marks_image(rng, defect=defective), "mismatch",
                          n_train, n_test)


def corrupt_header_bmp() -> bytes:
    """A BMP whose header claims 5 million rows (a bit flipped in the height field): OpenCV's decoder raises on
    it rather than returning nothing, as it does for about one in forty randomly damaged BMPs."""
    import struct

    import cv2

    data = bytearray(cv2.imencode(".bmp", np.zeros((64, 64), np.uint8))[1].tobytes())
    data[22:26] = struct.pack("<i", 5_000_000)
    return bytes(data)
