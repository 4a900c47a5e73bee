"""Real-data check of the drift monitor: good parts must stay quiet, degradations must raise an alarm quickly.

    python scripts/drift_real_data.py DATA [--model exported/screw.onnx]

DATA is an MVTec-layout folder. The good stream is the held-back training images (as `fit` splits them)
followed by test/good, then all of train/good. Each degradation is applied to the same good images after 50
untouched ones: darkened by 30% and 50%, blurred with sigma 2 and 4, shifted by 10% of the frame. Prints,
per case, after how many degraded parts the monitor warned and alarmed, and what the threshold alone did
meanwhile (how many degraded parts it flagged, how many got no verdict). Writes no image.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from insightad_edge import Detector
from insightad_edge.monitor import DriftMonitor
from insightad_edge.preprocess import load
from insightad_train.config import FitConfig
from insightad_train.data import load_dataset
from insightad_train.fit import split_holdout

DEGRADATIONS = {
    "darkened 30%": lambda f: (f.astype(np.float32) * 0.7).astype(f.dtype),
    "darkened 50%": lambda f: (f.astype(np.float32) * 0.5).astype(f.dtype),
    "blurred sigma 2": lambda f: cv2.GaussianBlur(f, (0, 0), 2.0),
    "blurred sigma 4": lambda f: cv2.GaussianBlur(f, (0, 0), 4.0),
    "shifted 10% of the frame": lambda f: cv2.warpAffine(f, np.float32([[1, 0, 0.1 * f.shape[1]], [0, 1, 0]]),
                                                         (f.shape[1], f.shape[0]), borderMode=cv2.BORDER_REPLICATE),
}


def stream(detector: Detector, monitor: DriftMonitor, frames) -> list[tuple]:
    """(status, score, drift state) for each frame, fed to the monitor in order."""
    out = []
    for frame in frames:
        result = detector(frame, not_inspectable="report")
        out.append((result.status, result.score, monitor.feed(result.status, result.score, result.stats)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("--model", type=Path)
    args = parser.parse_args()
    detector = Detector(args.model)
    dataset = load_dataset(args.data)
    _, holdout = split_holdout(dataset.train, FitConfig.holdout, FitConfig.seed)
    test_good = [s.path for s in dataset.test if not s.is_anomalous]
    goods = [load(p) for p in holdout + test_good]

    for name, frames in (("held-back + test/good", goods), ("all of train/good", map(load, dataset.train))):
        result = stream(detector, DriftMonitor(detector.metadata), frames)
        levels = [state.level for _, _, state in result]
        worst = max(result, key=lambda r: ("ok", "warn", "alarm").index(r[2].level))[2]
        print(f"{name}: {len(result)} parts, levels {sorted(set(levels))}; worst: {worst.level} "
              f"{'; '.join(worst.reasons) or ''} (score rank {worst.statistics.get('score_rank')})")

    print("\n| degradation | warn after | alarm after | first alarm's reason | median score good -> degraded "
          "| degraded parts flagged by the threshold | no verdict |\n|---|---:|---:|---|---|---:|---:|")
    for name, degrade in DEGRADATIONS.items():
        monitor = DriftMonitor(detector.metadata)
        before = stream(detector, monitor, goods[:50])
        after = stream(detector, monitor, [degrade(f) for f in goods])
        levels = [state.level for _, _, state in after]
        warn = next((i + 1 for i, level in enumerate(levels) if level != "ok"), None)
        alarm = next((i + 1 for i, level in enumerate(levels) if level == "alarm"), None)
        reason = after[alarm - 1][2].reasons[0] if alarm else "-"
        scores = [s for _, s, _ in after if s is not None]
        print(f"| {name} | {warn or 'never'} | {alarm or 'never'} | {reason} "
              f"| {np.median([s for _, s, _ in before if s is not None]):.2f} -> "
              f"{np.median(scores) if scores else float('nan'):.2f} "
              f"| {sum(st == 'defect' for st, _, _ in after)} / {len(after)} "
              f"| {sum(st == 'not_inspectable' for st, _, _ in after)} |")


if __name__ == "__main__":
    main()
