"""Full-size synthetic imitations of the two held-out categories, in their own layouts, to run `fit`'s defaults on.

    python scripts/held_out_imitations.py OUT

OUT/bottle_loco (MVTec LOCO layout, 800x1600 colour portrait frames): a bottle in a fixture on a dark
background — a gray glass, a fill of one of three juices under a white label whose disc names the juice;
335 good training images, 54 good validation images, 40 good test images and 40 logical anomalies (a fill far
too low, or a label disc of another juice), one mask each.
OUT/tread_3dad (MVTec 3D-AD layout, 600x800 RGB portrait frames): a black part whose bright tread stripes shift
between shots, on a dark noisy background; 210 good training images, 29 good validation images, 26 good test
images and 30 with a small bright cut, masks in gt/.
OUT/tread_subtle_3dad (the same layout): the tread made as hard to read as rubber is — chevron grooves a little
darker than the blocks, the piece placed by hand (shifted and turned a few degrees), and 3 x 15 defects of
realistic contrast: a thin dark cut, a small dark hole, a dull smear of contamination.
OUT/tread_pitched_3dad: the same, but its blocks are 36, 48 or 60 rows long in a random sequence (tyre makers vary
the pitch so the tread does not sing): no two shots show the same run of blocks.

They test what the defaults do with the held-out categories' frames, layouts and sizes (choices, time,
memory), not how well they detect those categories' real defects.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

JUICES = {"orange": (30, 140, 245), "cherry": (40, 20, 170), "banana": (120, 225, 240)}  # BGR
NORMAL_FILL = 330   # rows below the bottle's top where the juice begins
LOW_FILL = 600


def bottle(rng: np.random.Generator, juice: str, fill: int = NORMAL_FILL,
           label_juice: str | None = None) -> tuple[np.ndarray, int, int]:
    """A BGR 1600x800 frame of the bottle, and its top row and centre column."""
    height, width = 1600, 800
    image = np.full((height, width, 3), 22, np.float32) + rng.normal(0, 3, (height, width, 3)).astype(np.float32)
    cx, top = int(width / 2 + rng.uniform(-12, 12)), int(250 + rng.uniform(-12, 12))
    glass = np.zeros((height, width), np.uint8)
    cv2.rectangle(glass, (cx - 170, top + 250), (cx + 170, top + 1150), 255, -1)
    cv2.rectangle(glass, (cx - 60, top), (cx + 60, top + 250), 255, -1)
    image[glass > 0] = (70, 70, 70)
    glass[:top + fill + int(rng.uniform(-6, 6))] = 0
    image[glass > 0] = np.array(JUICES[juice], np.float32) * rng.uniform(0.95, 1.05)
    cv2.rectangle(image, (cx - 150, top + 600), (cx + 150, top + 900), (235, 235, 235), -1)
    cv2.circle(image, (cx, top + 750), 90, JUICES[label_juice or juice], -1)
    image += rng.normal(0, 2, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8), top, cx


def write_bottle_loco(root: Path, rng: np.random.Generator) -> None:
    names = list(JUICES)
    for folder, count in (("train/good", 335), ("validation/good", 54), ("test/good", 40)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            cv2.imwrite(str(root / folder / f"{i:03d}.png"), bottle(rng, names[i % 3])[0])
    (root / "test/logical_anomalies").mkdir(parents=True, exist_ok=True)
    for i in range(40):
        juice = names[i % 3]
        if i % 2 == 0:
            image, top, cx = bottle(rng, juice, fill=LOW_FILL)
            mask = cv2.rectangle(np.zeros(image.shape[:2], np.uint8), (cx - 170, top + NORMAL_FILL),
                                 (cx + 170, top + LOW_FILL), 255, -1)
        else:
            image, top, cx = bottle(rng, juice, label_juice=names[(i + 1) % 3])
            mask = cv2.circle(np.zeros(image.shape[:2], np.uint8), (cx, top + 750), 90, 255, -1)
        cv2.imwrite(str(root / "test/logical_anomalies" / f"{i:03d}.png"), image)
        (root / "ground_truth/logical_anomalies" / f"{i:03d}").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "ground_truth/logical_anomalies" / f"{i:03d}" / "000.png"), mask)


def tread(rng: np.random.Generator, cut: bool) -> tuple[np.ndarray, np.ndarray]:
    """A BGR 800x600 frame of the tread part, and the cut's mask."""
    height, width = 800, 600
    image = np.full((height, width), 24, np.float32) + rng.normal(0, 4, (height, width)).astype(np.float32)
    left, right, top, bottom = int(width * 0.33), int(width * 0.67), int(height * 0.17), int(height * 0.83)
    image[top:bottom, left:right] = 12
    for y in np.arange(top - 40 + rng.uniform(0, 40), bottom, 40.0):
        y0, y1 = int(max(top, y)), int(min(bottom, y + 16))
        if y1 > y0:
            image[y0:y1, left + 12:right - 12] = 70
    image = cv2.GaussianBlur(image, (0, 0), 1.5) + rng.normal(0, 3, (height, width)).astype(np.float32)
    mask = np.zeros((height, width), np.uint8)
    if cut:
        centre = (int(rng.uniform(left + 20, right - 20)), int(rng.uniform(top + 20, bottom - 20)))
        cv2.circle(mask, centre, 12, 255, -1)
        image[mask > 0] = 150
    return cv2.cvtColor(np.clip(image, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR), mask


DEFECT_KINDS = ("cut", "hole", "contamination")


def subtle_tread(rng: np.random.Generator, defect: str | None, pitches: tuple[int, ...] = (48,)
                 ) -> tuple[np.ndarray, np.ndarray]:
    """A BGR 800x600 frame of a rubber tread piece (blocks about 26, grooves about 10, background 20 with noise),
    and the defect's mask. The piece is drawn upright, then shifted and turned together with its mask. With
    several ``pitches`` the blocks' lengths follow a random sequence of them, as real treads vary theirs."""
    height, width = 800, 600
    left, right, top, bottom = int(width * 0.33), int(width * 0.67), int(height * 0.17), int(height * 0.83)
    image = np.full((height, width), 20, np.float32)
    ys, xs = np.mgrid[top:bottom, left:right].astype(np.float32)
    chevron = ys + 0.6 * np.abs(xs - (left + right) / 2) + rng.uniform(0, max(pitches))
    if len(pitches) == 1:
        into_block = chevron % pitches[0]
    else:
        starts = np.concatenate([[0], np.cumsum(rng.choice(pitches, size=int(chevron.max()) // min(pitches) + 1))])
        into_block = chevron - starts[np.searchsorted(starts, chevron, side="right") - 1]
    image[top:bottom, left:right] = np.where(into_block < 14, 10, 26)
    image[top:bottom, left:right] += cv2.GaussianBlur(rng.normal(0, 3, (bottom - top, right - left)), (0, 0), 2)
    mask = np.zeros((height, width), np.uint8)
    cx, cy = int(rng.uniform(left + 25, right - 25)), int(rng.uniform(top + 25, bottom - 25))
    if defect == "cut":
        angle = rng.uniform(0, np.pi)
        length = rng.uniform(20, 45)
        end = (int(cx + length * np.cos(angle)), int(cy + length * np.sin(angle)))
        cv2.line(mask, (cx, cy), end, 255, 3)
        image[mask > 0] = 4
    elif defect == "hole":
        cv2.circle(mask, (cx, cy), int(rng.uniform(5, 9)), 255, -1)
        image[mask > 0] = 3
    elif defect == "contamination":
        axes = (int(rng.uniform(8, 16)), int(rng.uniform(5, 10)))
        cv2.ellipse(mask, (cx, cy), axes, rng.uniform(0, 180), 0, 360, 255, -1)
        smear = 40 + cv2.GaussianBlur(rng.normal(0, 6, (height, width)), (0, 0), 1.5)
        image[mask > 0] = smear[mask > 0]
    turn = cv2.getRotationMatrix2D((width / 2, height / 2), rng.uniform(-4, 4), 1.0)
    turn[:, 2] += rng.uniform(-15, 15, 2)
    image = cv2.warpAffine(image, turn, (width, height), flags=cv2.INTER_LINEAR, borderValue=20)
    mask = cv2.warpAffine(mask, turn, (width, height), flags=cv2.INTER_NEAREST)
    image = cv2.GaussianBlur(image, (0, 0), 1.0) + rng.normal(0, 3, (height, width)).astype(np.float32)
    return cv2.cvtColor(np.clip(image, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR), mask


def write_3dad(root: Path, rng: np.random.Generator, folders: list, draw) -> None:
    """Frames in rgb/ and, for a defect (any true value, passed on to ``draw``), masks in gt/."""
    for folder, count, defect in folders:
        (root / folder / "rgb").mkdir(parents=True, exist_ok=True)
        if defect:
            (root / folder / "gt").mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image, mask = draw(rng, defect)
            cv2.imwrite(str(root / folder / "rgb" / f"{i:03d}.png"), image)
            if defect:
                cv2.imwrite(str(root / folder / "gt" / f"{i:03d}.png"), mask)


GOOD_3DAD = [("train/good", 210, None), ("validation/good", 29, None), ("test/good", 26, None)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    out = parser.parse_args().out
    write_bottle_loco(out / "bottle_loco", np.random.default_rng(0))
    write_3dad(out / "tread_3dad", np.random.default_rng(1), GOOD_3DAD + [("test/cut", 30, True)], tread)
    write_3dad(out / "tread_subtle_3dad", np.random.default_rng(2),
               GOOD_3DAD + [(f"test/{kind}", 15, kind) for kind in DEFECT_KINDS], subtle_tread)
    write_3dad(out / "tread_pitched_3dad", np.random.default_rng(3),
               GOOD_3DAD + [(f"test/{kind}", 15, kind) for kind in DEFECT_KINDS],
               lambda rng, defect: subtle_tread(rng, defect, pitches=(36, 48, 60)))


if __name__ == "__main__":
    main()
