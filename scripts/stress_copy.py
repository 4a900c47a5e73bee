"""A copy of an MVTec-layout category under harder conditions: real defects, another camera.

    python scripts/stress_copy.py DATA OUT [--gain 0.1] [--noise 3] [--portrait]

Every image is scaled by GAIN (a dark scene), given Gaussian sensor noise of NOISE gray levels, and with
--portrait padded at top and bottom to a 3:4 portrait frame of its median level (a camera of another
aspect); ground-truth masks get the same padding. Then `fit`'s defaults can be run on it and `evaluate`
compared with the original's. OUT must lie outside the repository: the copy is the dataset's images.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from insightad_edge.preprocess import decode


def portrait_padding(height: int, width: int) -> tuple[int, int]:
    """Rows to add above and below so the frame becomes 3:4 (width:height)."""
    extra = max(0, round(width * 4 / 3) - height)
    return extra // 2, extra - extra // 2


def transform(image: np.ndarray, gain: float, noise: float, portrait: bool, rng: np.random.Generator) -> np.ndarray:
    out = image * (255.0 * gain)  # decode gives 0..1
    if portrait:
        top, bottom = portrait_padding(*out.shape[:2])
        out = cv2.copyMakeBorder(out, top, bottom, 0, 0, cv2.BORDER_CONSTANT, value=(float(np.median(out)),) * 3)
    out += rng.normal(0.0, noise, out.shape).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--gain", type=float, default=0.1)
    parser.add_argument("--noise", type=float, default=3.0)
    parser.add_argument("--portrait", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    count = 0
    for source in sorted(args.data.rglob("*.png")):
        relative = source.relative_to(args.data)
        target = args.out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if "ground_truth" in relative.parts:
            mask = cv2.imread(str(source), cv2.IMREAD_GRAYSCALE)
            if args.portrait:
                top, bottom = portrait_padding(*mask.shape)
                mask = cv2.copyMakeBorder(mask, top, bottom, 0, 0, cv2.BORDER_CONSTANT, value=0)
            cv2.imwrite(str(target), mask)
        else:
            cv2.imwrite(str(target), transform(decode(source, channels=3), args.gain, args.noise, args.portrait, rng))
        count += 1
    print(f"wrote {count} files under {args.out}")


if __name__ == "__main__":
    main()
