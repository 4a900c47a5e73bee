"""Pick the decision threshold without touching the test split."""
from __future__ import annotations

import numpy as np

from insightad_edge.metadata import Threshold

from .metrics import roc_curve


def quantile_threshold(good_scores: np.ndarray, quantile: float) -> Threshold:
    """The ``quantile`` of held-back good scores: about (1 - quantile) of good parts will be flagged."""
    if len(good_scores) == 0:
        raise ValueError("no held-back good images to calibrate the threshold on")
    value = float(np.quantile(np.asarray(good_scores, np.float64), quantile))
    return Threshold(value=value, method="quantile", quantile=quantile, n_good=len(good_scores))


def youden_threshold(good_scores: np.ndarray, defect_scores: np.ndarray) -> Threshold:
    """The ROC point that maximises TPR - FPR (Youden's J) on a validation split that has defects."""
    scores = np.concatenate([good_scores, defect_scores])
    labels = np.concatenate([np.zeros(len(good_scores)), np.ones(len(defect_scores))])
    fpr, tpr, thresholds = roc_curve(labels, scores)
    best = int(np.argmax(tpr - fpr))
    # the ROC threshold t means "score >= t is anomalous"; the edge flags score > threshold, so step just below t
    value = float(np.nextafter(thresholds[best], -np.inf))
    return Threshold(value=value, method="youden", quantile=None, n_good=len(good_scores), n_defect=len(defect_scores))
