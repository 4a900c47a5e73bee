"""Pick the decision threshold and measure the good images' reference, without touching the test split."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from insightad_edge.detector import run_pipeline
from insightad_edge.inspectability import limits_from, strays
from insightad_edge.metadata import MIN_CALIBRATION_IMAGES, Calibration, ModelMetadata, Threshold, lone_top
from insightad_edge.preprocess import decode, prepare

from .metrics import roc_curve

log = logging.getLogger(__name__)
MIN_HOLDOUT = 10  # a quantile of fewer held-back scores is just their maximum: the false-reject rate is unknown


def quantile_threshold(good_scores: np.ndarray, quantile: float) -> Threshold:
    """The ``quantile`` of held-back good scores: about (1 - quantile) of good parts will be flagged."""
    if len(good_scores) == 0:
        raise ValueError("no held-back good images to calibrate the threshold on")
    value = float(np.quantile(np.asarray(good_scores, np.float64), quantile))
    return Threshold(value=value, method="quantile", quantile=quantile, n_good=len(good_scores))


def youden_threshold(good_scores: np.ndarray, defect_scores: np.ndarray) -> Threshold | None:
    """The ROC point that maximises TPR - FPR (Youden's J) on a validation split that has defects, set in the middle
    of the gap between the scores on either side of it: the ROC's own cut lies just under the weakest validation
    defect, where a new defect a little weaker than any seen would pass, however far above the good parts. None
    when no threshold flags more defects than good images (J 0 at best): its cut would be infinite, passing all."""
    scores = np.concatenate([good_scores, defect_scores]).astype(np.float64)
    labels = np.concatenate([np.zeros(len(good_scores)), np.ones(len(defect_scores))])
    fpr, tpr, thresholds = roc_curve(labels, scores)
    best = int(np.argmax(tpr - fpr))
    if tpr[best] - fpr[best] <= 0:
        return None
    cut = thresholds[best]  # "score >= cut is anomalous"; the edge flags score > threshold
    below = scores[scores < cut]
    value = float((below.max() + cut) / 2 if below.size else np.nextafter(cut, -np.inf))
    return Threshold(value=value, method="youden", quantile=None, n_good=len(good_scores), n_defect=len(defect_scores))


def score_paths(paths, metadata: ModelMetadata, infer, batch_size: int = 8) -> np.ndarray:
    """Scores of image files through the edge's own pipeline with the given model (inspectability unchecked:
    this measures the model, whatever the frames)."""
    metadata = dataclasses.replace(metadata, inspection=None)
    scores = []
    for i in range(0, len(paths), batch_size):
        results = run_pipeline(list(paths[i:i + batch_size]), metadata, 0.0, infer)
        scores.extend(r.score for r in results)
    return np.array(scores, np.float64)


def measure(metadata: ModelMetadata, infer, good: tuple[Path, ...] | list[Path], holdout: list[Path], validation,
            quantile: float) -> ModelMetadata:
    """The metadata with its threshold, inspection limits and drift reference (schema 2).

    Threshold: Youden's J between the good images never trained on and a validation split's defects when the
    data has them, else a quantile of those good images' scores. The good images never trained on are the
    held-back ones and a validation split's good ones (MVTec LOCO and 3D-AD ship good-only validation splits):
    the more of them, the better known the good parts' highest scores. Limits and reference: the edge's own
    frame statistics of every good image; those the others' limits would refuse (``inspectability.strays``) are
    named.
    """
    base = dataclasses.replace(metadata, inspection=None, calibration=None)
    holdout = list(holdout) + [s.path for s in validation if not s.is_anomalous]
    defects = [s.path for s in validation if s.is_anomalous]
    holdout_scores = score_paths(holdout, base, infer)
    threshold = youden_threshold(holdout_scores, score_paths(defects, base, infer)) if defects else None
    if defects and threshold is None:
        log.warning("%s: the model scores the %d defective validation images no higher than the %d good ones never "
                    "trained on, so no threshold there finds them: it is set from the good ones alone; look at those "
                    "defects (are they in view? filed as defects by mistake?) before trusting this model",
                    metadata.arch, len(defects), len(holdout))
    if threshold is None:
        threshold = quantile_threshold(holdout_scores, quantile)
        ratio = lone_top(holdout_scores, threshold)
        if ratio is not None:
            top = int(np.argmax(holdout_scores))
            log.warning("%s: held-back good image %s sets the threshold alone, scoring %.3g, %.1f times the next "
                        "highest: if it shows a defect, take it out of the good images and fit again; if it is a "
                        "good part, more good images like it teach the model its kind",
                        metadata.arch, holdout[top], holdout_scores[top], ratio)
    if len(holdout) < MIN_CALIBRATION_IMAGES:
        log.warning("the threshold rests on %d held-back good images (fewer than %d): its false-reject rate is a "
                    "rough guess; more good images make it firm", len(holdout), MIN_CALIBRATION_IMAGES)
    spec = metadata.preprocess
    stats = [prepare(decode(p, spec.channels), spec).stats for p in good]
    away = strays(stats, base)
    if away:  # named, and kept: a rare good part (one of 40 screws touching the frame's edge) must stay judged
        named = "; ".join(f"{good[i]} ({'; '.join(why)})" for i, why in list(away.items())[:3])
        log.warning("%d of the %d good images would get no verdict from a model whose limits came from the others: "
                    "%s%s. The limits span them, so the edge judges frames like them: if one shows no part, another "
                    "part or a part cut off, take it out and fit again; if it is a good part, keep it (more like it "
                    "make the limits firm)", len(away), len(good), named, "; ..." if len(away) > 3 else "")
    return dataclasses.replace(metadata, threshold=threshold, inspection=limits_from(stats),
                               calibration=Calibration.measured(holdout_scores, stats), schema_version=2)
