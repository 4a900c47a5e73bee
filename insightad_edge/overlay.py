"""Pictures an operator can read: the anomaly map as a heat map over the part, the threshold as a contour."""
from __future__ import annotations

import cv2
import numpy as np


def render_overlay(gray: np.ndarray, anomaly_map: np.ndarray, threshold: float) -> np.ndarray:
    """A BGR uint8 picture: the part in gray, heat where the map is high, red outline where it passes the threshold.

    The colour scale runs from 0 to twice the threshold, so the same colour means the same thing on every
    part; the heat fades in up to the threshold, so quiet regions stay plain gray.
    """
    base = cv2.cvtColor((np.clip(gray, 0, 1) * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    scale = threshold if threshold > 0 else float(anomaly_map.max() or 1.0)
    heat = cv2.applyColorMap((np.clip(anomaly_map / (2 * scale), 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    weight = np.clip(anomaly_map / scale, 0, 1)[:, :, None] * 0.65
    picture = (base * (1 - weight) + heat * weight).astype(np.uint8)
    above = (anomaly_map > threshold).astype(np.uint8)
    contours, _ = cv2.findContours(above, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    thickness = max(1, round(max(gray.shape) / 300))
    cv2.drawContours(picture, contours, -1, (0, 0, 255), thickness)
    return picture
