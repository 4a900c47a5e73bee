"""Pictures an operator can read: the anomaly map as a heat map over the part, the threshold as a contour."""
from __future__ import annotations

import cv2
import numpy as np


def render_overlay(picture: np.ndarray, anomaly_map: np.ndarray, threshold: float) -> np.ndarray:
    """A BGR uint8 picture: the part as the camera saw it (float gray or BGR in [0, 1]: a stain of the wrong
    colour shows as one), heat where the map is high, red outline where it passes the threshold.

    The colour scale runs from 0 to twice the threshold, so the same colour means the same thing on every
    part; the heat fades in up to the threshold, so quiet regions stay as they were.
    """
    base = (np.clip(picture, 0, 1) * 255).astype(np.uint8)
    base = cv2.cvtColor(base, cv2.COLOR_GRAY2BGR) if base.ndim == 2 else base
    scale = threshold if threshold > 0 else float(anomaly_map.max() or 1.0)
    heat = cv2.applyColorMap((np.clip(anomaly_map / (2 * scale), 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    weight = np.clip(anomaly_map / scale, 0, 1)[:, :, None] * 0.65
    shown = (base * (1 - weight) + heat * weight).astype(np.uint8)
    above = (anomaly_map > threshold).astype(np.uint8)
    contours, _ = cv2.findContours(above, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    thickness = max(1, round(max(base.shape[:2]) / 300))
    cv2.drawContours(shown, contours, -1, (0, 0, 255), thickness)
    return shown
