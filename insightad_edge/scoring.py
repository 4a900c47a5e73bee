"""From reconstruction error to an anomaly map and one score per image (numpy; training uses it too)."""
from __future__ import annotations

import cv2
import numpy as np

from .metadata import Score


def anomaly_maps(inputs: np.ndarray, reconstructions: np.ndarray, spec: Score) -> np.ndarray:
    """Per-pixel anomaly maps (batch, height, width) from batches shaped (batch, channels, h, w)."""
    errors = np.mean((inputs.astype(np.float32) - reconstructions.astype(np.float32)) ** 2, axis=1)
    maps = np.empty_like(errors)
    for i, error in enumerate(errors):
        maps[i] = cv2.GaussianBlur(error, (0, 0), spec.blur_sigma) if spec.blur_sigma > 0 else error
    if spec.border:
        b = spec.border
        maps[:, :b, :] = 0.0
        maps[:, -b:, :] = 0.0
        maps[:, :, :b] = 0.0
        maps[:, :, -b:] = 0.0
    return maps


def image_scores(maps: np.ndarray, spec: Score) -> np.ndarray:
    """One score per map: the largest (blurred) error, so one local defect is enough to flag a part."""
    return maps.reshape(len(maps), -1).max(axis=1).astype(np.float64)


def map_to_image(amap: np.ndarray, transform: np.ndarray, image_shape: tuple[int, int]) -> np.ndarray:
    """Warp a model-space anomaly map back onto the original image's pixels (0 outside the crop)."""
    height, width = image_shape
    return cv2.warpAffine(amap, transform, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
