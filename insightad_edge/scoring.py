"""From the model's anomaly maps to smoothed maps and one score per image (numpy; training uses it too)."""
from __future__ import annotations

import cv2
import numpy as np

from .metadata import Score


def smooth_maps(raw: np.ndarray, spec: Score) -> np.ndarray:
    """Blurred maps (batch, height, width) from the graph's output (batch, 1, height, width).

    The blur turns scattered single-pixel noise into nothing and a defect-sized blob into a peak.
    """
    raw = np.asarray(raw, np.float32)[:, 0]
    maps = np.empty_like(raw)
    for i, amap in enumerate(raw):
        maps[i] = cv2.GaussianBlur(amap, (0, 0), spec.blur_sigma) if spec.blur_sigma > 0 else amap
    if spec.border:
        b = spec.border
        maps[:, :b, :] = 0.0
        maps[:, -b:, :] = 0.0
        maps[:, :, :b] = 0.0
        maps[:, :, -b:] = 0.0
    return maps


def image_scores(maps: np.ndarray, spec: Score) -> np.ndarray:
    """One score per smoothed map, by the model's score method."""
    return SCORE_METHODS[spec.method](maps).astype(np.float64)


SCORE_METHODS = {
    # the largest value of the blurred map: one local defect is enough to flag a part
    "blurred_map_max": lambda maps: maps.reshape(len(maps), -1).max(axis=1),
}


def map_to_image(amap: np.ndarray, transform: np.ndarray, image_shape: tuple[int, int]) -> np.ndarray:
    """Warp a model-space anomaly map back onto the original image's pixels (0 outside the crop)."""
    height, width = image_shape
    return cv2.warpAffine(amap, transform, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
