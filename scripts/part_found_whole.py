"""Real-data check of alignment's "whole part" rule: how much of what stands out from the background the
segmented part is, per training image.

    python scripts/part_found_whole.py DATA [DATA ...]

For each MVTec-layout (or plain) DATA folder, its good training images are measured as `fit` measures them
(analysis copies, brightness-normalised) and the segmented part's share of what the background model finds
around it is printed as min / 10th percentile / median, next to the share below which alignment is refused
in 10% of the images. Writes no image.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from insightad_edge.errors import NotInspectable
from insightad_edge.preprocess import decode, normalise_brightness
from insightad_train.data import load_dataset
from insightad_train.fit import analysis_copy
from insightad_train.preprocessing import WHOLE_SHARE, derive_preprocess, whole_share


def analysis_gray(path: Path) -> np.ndarray:
    return cv2.cvtColor(analysis_copy(decode(path, channels=3)), cv2.COLOR_BGR2GRAY)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, nargs="+")
    for folder in parser.parse_args().data:
        paths = load_dataset(folder).train
        gray = [analysis_gray(p) for p in paths]
        spec, why = derive_preprocess(gray, 256, decode(paths[0]).shape[:2])
        shares = []
        for image in gray:
            try:
                shares.append(whole_share(normalise_brightness(image, spec), spec.foreground_dark))
            except NotInspectable:
                shares.append(0.0)
        low, p10, median = np.min(shares), np.percentile(shares, 10), np.median(shares)
        print(f"{folder}: {len(shares)} images, share min {low:.2f} / 10th pct {p10:.2f} / median {median:.2f} "
              f"(alignment refused below {WHOLE_SHARE} in over 10%); chose {spec.align}: {why}")


if __name__ == "__main__":
    main()
